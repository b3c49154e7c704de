# SPDX-License-Identifier: LGPL-2.1-or-later
"""Decoding of ``struct upcall_event`` records, as read(2) returns them."""

from __future__ import annotations

from .. import abi
from .._event import Event, make_event

RECORD_SIZE = abi.UPCALL_EVENT_SIZE
_iter_unpack = abi.EVENT_RECORD.iter_unpack


def decode(data: bytes | bytearray | memoryview, transport: str, received_ns: int) -> list[Event]:
    """The events of ``data``, whole records back to back (a multiple of 48 bytes).

    Every event gets ``transport`` and the one receipt time ``received_ns``
    (they came in one read). ``reserved`` is not looked at, so that a later
    module may use it. ValueError if ``data`` ends inside a record.
    """
    if len(data) % RECORD_SIZE:
        raise ValueError(f"{len(data)} bytes is not a whole number of {RECORD_SIZE}-byte records")
    # One tuple per record from C, then an Event each: make_event, because
    # the dataclass constructor would be most of the cost.
    return [
        make_event(seqno, value, source, transport, timestamp, received_ns, None, flags)
        for seqno, timestamp, value, source, flags in _iter_unpack(data)
    ]


def encode(seqno: int, value: int, source: int = 0, timestamp_ns: int = 0, flags: int = 0) -> bytes:
    """One record as the module writes it (for tests and fakes)."""
    return abi.EVENT_RECORD.pack(seqno, timestamp_ns, value, source, flags)
