# SPDX-License-Identifier: LGPL-2.1-or-later
"""A batch of events as columns over the bytes read: no object per event.

:meth:`Subscription.read_batch` returns a :class:`Batch`. Its columns
(``seqno``, ``timestamp_ns``, ``value``, ``source``, ``flags``) are strided
memoryviews over the records as the kernel wrote them (the read buffer, or a
copy of a ring buffer's run), so taking a batch costs one system call and no
Python object per event. ``Event`` objects are only made when the batch is
iterated or indexed. :attr:`Batch.records` is the raw buffer and
:attr:`Batch.dtype` describes it for numpy::

    batch = sub.read_batch(4096)
    values = batch.value.tolist()                     # list[int], in C
    arr = numpy.frombuffer(batch.records, dtype=numpy.dtype(batch.dtype))
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from ._event import Event, make_event
from .abi import EVENT_RECORD


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the fields of one record are, in bytes; every offset is aligned to its size."""

    stride: int
    seqno: int
    timestamp_ns: int
    value: int
    source: int
    flags: int

    def unpacker(self) -> struct.Struct:
        """A Struct yielding (seqno, timestamp_ns, value, source, flags) per record."""
        fields = sorted(
            [
                (self.seqno, "Q", 0),
                (self.timestamp_ns, "Q", 1),
                (self.value, "Q", 2),
                (self.source, "I", 3),
                (self.flags, "I", 4),
            ]
        )
        if [i for _o, _f, i in fields] != [0, 1, 2, 3, 4]:
            raise ValueError("fields must be laid out as seqno, timestamp, value, source, flags")
        fmt, at = "=", 0
        for offset, code, _i in fields:
            fmt += f"{offset - at}x{code}" if offset > at else code
            at = offset + struct.calcsize(code)
        return struct.Struct(fmt + (f"{self.stride - at}x" if self.stride > at else ""))


#: ``struct upcall_event``, as read(2) from the module's queue (48 bytes).
QUEUE_LAYOUT: Final = Layout(48, 0, 8, 16, 24, 28)
assert QUEUE_LAYOUT.unpacker().format == EVENT_RECORD.format

_UNPACKERS: dict[Layout, struct.Struct] = {QUEUE_LAYOUT: EVENT_RECORD}


class Batch:
    """Events read in one go, held as the bytes of their records.

    ``len(batch)`` events; ``batch.seqno[i]``, ``batch.value.tolist()``...
    are columns (memoryviews of unsigned ints, no copy); iterating or
    indexing makes :class:`Event` objects, one at a time. A batch is false
    when empty (a ``read_batch`` that timed out).

    ``timestamp_ns`` of a transport that carries no emit time (signals)
    reads 0 in the column and None in the events.
    """

    __slots__ = ("_buf", "_layout", "_n", "received_ns", "signo", "stamped", "transport")

    def __init__(
        self,
        records: bytes | bytearray | memoryview,
        transport: str,
        received_ns: int,
        *,
        layout: Layout = QUEUE_LAYOUT,
        signo: int | None = None,
        stamped: bool = True,
    ) -> None:
        """``records``: whole records back to back (ValueError otherwise)."""
        n, rest = divmod(len(records), layout.stride)
        if rest:
            raise ValueError(
                f"{len(records)} bytes is not a whole number of {layout.stride}-byte records"
            )
        self._buf = records
        self._layout = layout
        self._n = n
        #: How the events came: ``"queue"``, ``"ringbuf"``... as ``Event.transport``.
        self.transport = transport
        #: CLOCK_MONOTONIC when the batch was read (every event's ``received_ns``).
        self.received_ns = received_ns
        #: The signal number of a signal transport's events, else None.
        self.signo = signo
        #: Whether ``timestamp_ns`` holds emit times (False: the transport has none).
        self.stamped = stamped

    @classmethod
    def empty(cls, transport: str, received_ns: int = 0) -> Batch:
        """A batch of no events."""
        return cls(b"", transport, received_ns)

    @classmethod
    def from_events(cls, events: list[Event], transport: str, received_ns: int) -> Batch:
        """A batch holding ``events`` (packed into queue records)."""
        buf = bytearray(EVENT_RECORD.size * len(events))
        pack = EVENT_RECORD.pack_into
        stamped = True
        signo = None
        for i, e in enumerate(events):
            ts = e.timestamp_ns
            if ts is None:
                stamped, ts = False, 0
            signo = e.signo
            pack(buf, i * EVENT_RECORD.size, e.seqno, ts, e.value, e.source, e.flags)
        return cls(buf, transport, received_ns, signo=signo, stamped=stamped)

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    @property
    def records(self) -> memoryview:
        """The records' bytes, read-only (the buffer protocol: numpy.frombuffer)."""
        return memoryview(self._buf).toreadonly()

    def __buffer__(self, flags: int) -> memoryview:  # Python 3.12+: numpy.frombuffer(batch)
        return self.records

    @property
    def dtype(self) -> dict[str, Any]:
        """The record layout as a numpy dtype specification: ``numpy.dtype(batch.dtype)``."""
        lay = self._layout
        return {
            "names": ["seqno", "timestamp_ns", "value", "source", "flags"],
            "formats": ["=u8", "=u8", "=u8", "=u4", "=u4"],
            "offsets": [lay.seqno, lay.timestamp_ns, lay.value, lay.source, lay.flags],
            "itemsize": lay.stride,
        }

    def _column(self, offset: int, size: int) -> memoryview:
        step = self._layout.stride // size
        view = memoryview(self._buf).cast("Q" if size == 8 else "I")
        return view[offset // size :: step].toreadonly()

    @property
    def seqno(self) -> memoryview:
        """Sequence numbers (u64), oldest first."""
        return self._column(self._layout.seqno, 8)

    @property
    def timestamp_ns(self) -> memoryview:
        """CLOCK_MONOTONIC emit times (u64); 0 where :attr:`stamped` is False."""
        return self._column(self._layout.timestamp_ns, 8)

    @property
    def value(self) -> memoryview:
        """The 64-bit values, unsigned."""
        return self._column(self._layout.value, 8)

    @property
    def source(self) -> memoryview:
        """The source ids (u32)."""
        return self._column(self._layout.source, 4)

    @property
    def flags(self) -> memoryview:
        """The flag bits (u32)."""
        return self._column(self._layout.flags, 4)

    def _unpacker(self) -> struct.Struct:
        s = _UNPACKERS.get(self._layout)
        if s is None:
            s = _UNPACKERS[self._layout] = self._layout.unpacker()
        return s

    def __iter__(self) -> Iterator[Event]:
        """The events, made one at a time."""
        transport, now, signo, stamped = self.transport, self.received_ns, self.signo, self.stamped
        for seqno, ts, value, source, flags in self._unpacker().iter_unpack(self._buf):
            yield make_event(
                seqno, value, source, transport, ts if stamped else None, now, signo, flags
            )

    def __getitem__(self, i: int) -> Event:
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("batch index out of range")
        stride = self._layout.stride
        return next(
            iter(
                Batch(
                    memoryview(self._buf)[i * stride : (i + 1) * stride],
                    self.transport,
                    self.received_ns,
                    layout=self._layout,
                    signo=self.signo,
                    stamped=self.stamped,
                )
            )
        )

    def events(self) -> list[Event]:
        """Every event as an :class:`Event`, in a list."""
        return list(self)

    def __repr__(self) -> str:
        if not self._n:
            return f"<Batch {self.transport} empty>"
        seq = self.seqno
        return f"<Batch {self.transport} {self._n} events seqno {seq[0]}..{seq[-1]}>"
