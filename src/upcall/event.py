"""The one event type that every transport yields."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

U64_MASK = (1 << 64) - 1


def monotonic_ns() -> int:
    """CLOCK_MONOTONIC in nanoseconds: the clock the kernel stamps events with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


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
