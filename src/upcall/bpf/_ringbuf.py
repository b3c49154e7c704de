# SPDX-License-Identifier: LGPL-2.1-or-later
"""A BPF ring buffer consumer in Python: mmap'd positions, batch decode.

Layout (kernel/bpf/ringbuf.c): page 0 is the consumer position, writable
by us; from page 1 on, read-only, the producer position page and then the
data area mapped twice in a row, so a record that wraps is contiguous.
Each record has an 8-byte header (length with BUSY/DISCARD bits, page
offset). upcall's records all have one size, so a run of committed records
is a fixed stride and decodes in one ``struct.iter_unpack`` pass.
"""

from __future__ import annotations

import ctypes
import mmap
import struct

from upcall._batch import Layout
from upcall._event import Event, make_event

from ._abi import RECORD_SIZE, RING_RECORD

#: Where the fields are in a ring record (8-byte header, then the record).
RING_LAYOUT = Layout(RING_RECORD.size, 8, 16, 24, 32, 36)

_BUSY = 1 << 31
_DISCARD = 1 << 30
_HDR = struct.Struct("=II")
_POS = struct.Struct("=Q")  # native: an aligned 8-byte load
_STRIDE = RING_RECORD.size
_iter_unpack = RING_RECORD.iter_unpack
assert _STRIDE % 4 == 0


class RingReader:
    """Reads upcall records out of one BPF ring buffer map."""

    def __init__(self, map_fd: int, size: int) -> None:
        page = mmap.PAGESIZE
        self.size = size
        self._mask = size - 1
        self._cons_map = mmap.mmap(
            map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0
        )
        self._prod_map = mmap.mmap(
            map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
        )
        self._data = memoryview(self._prod_map)[page:]
        # One 8-byte store, so the producer never sees a torn position.
        self._cons = ctypes.c_uint64.from_buffer(self._cons_map, 0)

    def available(self) -> int:
        """Bytes between the consumer and producer positions."""
        prod = int(_POS.unpack_from(self._prod_map, 0)[0])
        return prod - int(self._cons.value)

    def read(self, max_events: int, received_ns: int, out: list[Event]) -> int:
        """Decode up to ``max_events`` committed records into ``out``; return the count."""
        cons = int(self._cons.value)
        prod = int(_POS.unpack_from(self._prod_map, 0)[0])
        data = self._data
        mask = self._mask
        got = 0
        while cons < prod and got < max_events:
            off = cons & mask
            n = min((prod - cons) // _STRIDE, max_events - got)
            k = 0
            if n > 1:
                # Fast path: a run of fixed-size records, up to the first one
                # still being written (BUSY) or of another shape. Headers
                # checked in C (every header is one u32 a stride apart), then
                # one iter_unpack and make_event per record.
                run = data[off : off + n * _STRIDE]
                lengths = run.cast("I")[:: _STRIDE // 4].tolist()
                k = n
                if lengths.count(RECORD_SIZE) != n:
                    k = next(i for i, length in enumerate(lengths) if length != RECORD_SIZE)
                if k:
                    out.extend(
                        [
                            make_event(seq, value, src, "ringbuf", ts, received_ns, None, flags)
                            for _l, _p, seq, ts, value, src, flags in _iter_unpack(
                                run[: k * _STRIDE]
                            )
                        ]
                    )
                    got += k
                    cons += k * _STRIDE
                run.release()
            if n > 1 and k == n:
                continue
            # One record by header: a lone one (what a waiting reader mostly
            # finds), or what stopped the run.
            hdr_len, _pg = _HDR.unpack_from(data, off)
            if hdr_len & _BUSY:
                break  # not committed yet: stop here, keep order
            length = hdr_len & ~(_BUSY | _DISCARD)
            if not hdr_len & _DISCARD and length == RECORD_SIZE:
                _l, _p, seq, ts, value, src, flags = RING_RECORD.unpack_from(data, off)
                out.append(make_event(seq, value, src, "ringbuf", ts, received_ns, None, flags))
                got += 1
            cons += (length + 8 + 7) & ~7
        # Release the space in one store, after the records were copied out.
        self._cons.value = cons
        return got

    def read_run(self, max_events: int) -> bytes:
        """Copy out up to ``max_events`` committed records, headers included; consume them.

        The bytes are a run of whole records (``RING_LAYOUT``), stopping
        before the first one still being written or of another shape (those
        are left for :meth:`read`). One copy, no object per record.
        """
        cons = int(self._cons.value)
        prod = int(_POS.unpack_from(self._prod_map, 0)[0])
        n = min((prod - cons) // _STRIDE, max_events)
        if n <= 0:
            return b""
        off = cons & self._mask
        run = self._data[off : off + n * _STRIDE]
        try:
            lengths = run.cast("I")[:: _STRIDE // 4].tolist()
            if lengths.count(RECORD_SIZE) != n:
                n = next(i for i, length in enumerate(lengths) if length != RECORD_SIZE)
            data = run[: n * _STRIDE].tobytes()
        finally:
            run.release()
        self._cons.value = cons + n * _STRIDE
        return data

    def close(self) -> None:
        del self._cons
        self._data.release()
        self._cons_map.close()
        self._prod_map.close()
