# SPDX-License-Identifier: LGPL-2.1-or-later
"""The one event type that every transport yields."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

U64_MASK = (1 << 64) - 1


def _clock_monotonic_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


#: ``monotonic_ns()``: CLOCK_MONOTONIC in nanoseconds, the clock the kernel
#: stamps events with. ``time.monotonic_ns`` where that is the same clock
#: (Linux): it is read once per batch, and a Python frame costs per event.
monotonic_ns: Callable[[], int] = (
    time.monotonic_ns
    if time.get_clock_info("monotonic").implementation == "clock_gettime(CLOCK_MONOTONIC)"
    else _clock_monotonic_ns
)


@dataclass(frozen=True, slots=True)
class Event:
    """One event, as received by one subscriber.

    seqno: the subscriber's sequence number, 1 for its first event; a gap
        means events were dropped (and counted) in between.
    value: the 64-bit payload, unsigned (see :attr:`signed_value`).
    source: the id of what emitted it (0 is a user-space emit).
    transport: how it arrived: ``"signal"``, ``"bpf-signal"``, ``"ringbuf"``...
    timestamp_ns: CLOCK_MONOTONIC when it was emitted, or None when the
        transport does not carry it (a signal has no room for it).
    received_ns: CLOCK_MONOTONIC when this library read it.
    signo: the signal number, for signal transports; else None.
    flags: transport-specific flag bits, 0 when there are none.
    """

    seqno: int
    value: int
    source: int
    transport: str
    timestamp_ns: int | None = None
    received_ns: int = field(default_factory=monotonic_ns)
    signo: int | None = None
    flags: int = 0

    @property
    def signed_value(self) -> int:
        """The value read as a two's complement signed 64-bit integer."""
        v = self.value & U64_MASK
        return v - (1 << 64) if v >> 63 else v

    @property
    def latency_ns(self) -> int | None:
        """Nanoseconds from emit to receipt, or None without an emit timestamp."""
        if self.timestamp_ns is None:
            return None
        return self.received_ns - self.timestamp_ns


class _EventBuilder:
    """A mutable twin of :class:`Event` (same slots, same order), for decoders.

    The dataclass's ``__init__`` stores each field through
    ``object.__setattr__`` (it is frozen), about 1 µs per event; plain slot
    stores plus a ``__class__`` switch to the identical layout cost about a
    third of that. The result *is* an :class:`Event`: same type, equality,
    hash and repr.
    """

    __slots__ = Event.__slots__

    def __init__(
        self,
        seqno: int,
        value: int,
        source: int,
        transport: str,
        timestamp_ns: int | None,
        received_ns: int,
        signo: int | None,
        flags: int,
    ) -> None:
        self.seqno = seqno
        self.value = value
        self.source = source
        self.transport = transport
        self.timestamp_ns = timestamp_ns
        self.received_ns = received_ns
        self.signo = signo
        self.flags = flags
        self.__class__ = Event  # type: ignore[assignment]


#: ``make_event(seqno, value, source, transport, timestamp_ns, received_ns,
#: signo, flags)``, every field given in order and none checked: the
#: decoders' fast :class:`Event` constructor.
make_event: Callable[[int, int, int, str, int | None, int, int | None, int], Event]
make_event = _EventBuilder  # type: ignore[assignment]
