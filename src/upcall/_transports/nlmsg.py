# SPDX-License-Identifier: LGPL-2.1-or-later
"""Parsing upcall's generic netlink event messages from raw bytes.

A datagram holds one or more netlink messages, each ``struct nlmsghdr``
(length, type = the family's id, flags, seq, port id), ``struct genlmsghdr``
(cmd, version, reserved) and attributes (``struct nlattr``: u16 length
including itself, u16 type, payload padded to 4 bytes), all in the host's
byte order.

The kernel lays an UPCALL_CMD_EVENT message out the same way every time, so
:func:`parse` first tries one :mod:`struct` unpack of that exact layout and
checks every length and type in it; anything else (padding attributes, which
some architectures need before a u64, another order, attributes added by a
later module) goes through the general walk over the attributes.
"""

from __future__ import annotations

import struct
from typing import cast

from .. import abi

NLMSG_HDR = struct.Struct("=IHHII")  # nlmsg_len, type, flags, seq, pid
GENL_HDR = struct.Struct("=BBH")  # cmd, version, reserved
NLA_HDR = struct.Struct("=HH")  # nla_len, nla_type
NLMSG_HDRLEN = NLMSG_HDR.size
GENL_HDRLEN = GENL_HDR.size
NLA_HDRLEN = NLA_HDR.size
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
NLMSG_MIN_TYPE = 0x10  # below: NOOP, ERROR, DONE, OVERRUN

_U64 = struct.Struct("=Q")
_U32 = struct.Struct("=I")

# The kernel's layout: SUBSCRIBER, SEQNO, TIMESTAMP, VALUE (u64 each, no
# padding needed where unaligned u64 access is cheap), SOURCE (u32).
_FAST = struct.Struct("=IHHIIBBHHHQHHQHHQHHQHHI")
FAST_SIZE = _FAST.size  # 76

_U64_ATTRS = {
    abi.UPCALL_ATTR_SUBSCRIBER: 0,
    abi.UPCALL_ATTR_SEQNO: 1,
    abi.UPCALL_ATTR_TIMESTAMP: 2,
    abi.UPCALL_ATTR_VALUE: 3,
}
_NAMES = ("SUBSCRIBER", "SEQNO", "TIMESTAMP", "VALUE", "SOURCE")

#: One event: (subscriber, seqno, timestamp_ns, value, source).
EventFields = tuple[int, int, int, int, int]

#: Why a message was not an event: it is someone else's (another family, a
#: control message, another command) or it is upcall's and broken.
FOREIGN = "foreign"


def _align4(n: int) -> int:
    return (n + 3) & ~3


def parse(
    data: bytes | bytearray | memoryview, offset: int, length: int, family_id: int
) -> list[EventFields | str]:
    """The messages of one datagram, ``data[offset:offset + length]``.

    Each is an :data:`EventFields` tuple, :data:`FOREIGN` for a message that
    is not an upcall event, or a string starting ``"malformed: "`` that says
    what is wrong with an upcall message that cannot be read.
    """
    if length == FAST_SIZE:
        (
            mlen,
            mtype,
            _flags,
            _seq,
            _pid,
            cmd,
            _version,
            _reserved,
            l1,
            t1,
            subscriber,
            l2,
            t2,
            seqno,
            l3,
            t3,
            timestamp,
            l4,
            t4,
            value,
            l5,
            t5,
            source,
        ) = _FAST.unpack_from(data, offset)
        if (
            mlen == FAST_SIZE
            and mtype == family_id
            and cmd == abi.UPCALL_CMD_EVENT
            and l1 == l2 == l3 == l4 == 12
            and l5 == 8
            and (t1, t2, t3, t4, t5) == (2, 3, 4, 5, 6)
        ):
            return [(subscriber, seqno, timestamp, value, source)]
    out: list[EventFields | str] = []
    end = offset + length
    pos = offset
    while end - pos >= NLMSG_HDRLEN:
        mlen, mtype, _flags, _seq, _pid = NLMSG_HDR.unpack_from(data, pos)
        if mlen < NLMSG_HDRLEN or mlen > end - pos:
            if mtype != family_id:
                out.append(FOREIGN)
            else:
                out.append(f"malformed: nlmsg_len {mlen} outside {NLMSG_HDRLEN}..{end - pos}")
            return out
        out.append(_parse_one(data, pos, mlen, mtype, family_id))
        pos += _align4(mlen)
    return out


def _parse_one(
    data: bytes | bytearray | memoryview, pos: int, mlen: int, mtype: int, family_id: int
) -> EventFields | str:
    if mtype != family_id or mtype < NLMSG_MIN_TYPE:
        return FOREIGN
    if mlen < NLMSG_HDRLEN + GENL_HDRLEN:
        return f"malformed: {mlen} bytes, too short for a generic netlink header"
    (cmd, _version, _reserved) = GENL_HDR.unpack_from(data, pos + NLMSG_HDRLEN)
    if cmd != abi.UPCALL_CMD_EVENT:
        return FOREIGN
    fields: list[int | None] = [None, None, None, None, None]
    end = pos + mlen
    at = pos + NLMSG_HDRLEN + GENL_HDRLEN
    while end - at >= NLA_HDRLEN:
        alen, atype = NLA_HDR.unpack_from(data, at)
        if alen < NLA_HDRLEN or alen > end - at:
            return f"malformed: attribute length {alen} at offset {at - pos}"
        atype &= NLA_TYPE_MASK
        size = alen - NLA_HDRLEN
        index = _U64_ATTRS.get(atype)
        if index is not None:
            if size != 8:
                return f"malformed: {_NAMES[index]} has {size} bytes, not 8"
            fields[index] = _U64.unpack_from(data, at + NLA_HDRLEN)[0]
        elif atype == abi.UPCALL_ATTR_SOURCE:
            if size != 4:
                return f"malformed: SOURCE has {size} bytes, not 4"
            fields[4] = _U32.unpack_from(data, at + NLA_HDRLEN)[0]
        # PAD, and attributes a later module may add, are skipped.
        at += _align4(alen)
    missing = [name for name, v in zip(_NAMES, fields, strict=True) if v is None]
    if missing:
        return f"malformed: no {', '.join(missing)} attribute"
    return cast(EventFields, tuple(fields))


# The kernel's layout (_FAST) as 32-bit words, for decoding a batch a column
# at a time: the word holding nlmsg_len, each attribute's header word (its
# length | type << 16) with the value it must have, and the words of the
# fields a batch keeps.
_W_LEN = 0
_NLA_HEADERS = (
    (5, 12 | abi.UPCALL_ATTR_SUBSCRIBER << 16),
    (8, 12 | abi.UPCALL_ATTR_SEQNO << 16),
    (11, 12 | abi.UPCALL_ATTR_TIMESTAMP << 16),
    (14, 12 | abi.UPCALL_ATTR_VALUE << 16),
    (17, 8 | abi.UPCALL_ATTR_SOURCE << 16),
)
_W_SUBSCRIBER = 6
# (word in the message, word in the queue record): seqno, timestamp, value
# (two words each, copied as they are, so byte order is kept), source.
_W_COPY = ((9, 0), (10, 1), (12, 2), (13, 3), (15, 4), (16, 5), (18, 6))
_H_TYPE = 2  # nlmsg_type, as 16-bit words
_B_CMD = NLMSG_HDRLEN  # genlmsghdr.cmd, as bytes
assert struct.calcsize("=IHHIIBBH") == 5 * 4 and struct.calcsize("=IHHIIBBHHHQHH") == 9 * 4
assert struct.calcsize("=IHHIIBBHHHQHHQHHQHHQHH") == 18 * 4 == FAST_SIZE - 4


def pack_events(
    buffer: bytearray,
    slot_size: int,
    n: int,
    lengths: memoryview,
    flags: memoryview,
    family_id: int,
    subscriber: int,
) -> bytearray | None:
    """``n`` datagrams of one recvmmsg(2) as queue records, decoded a column at a time.

    Datagram ``i`` is at ``i * slot_size`` in ``buffer``; ``lengths`` and
    ``flags`` are their lengths and msg_flags. The result is ``struct
    upcall_event`` records (abi.EVENT_RECORD: seqno, timestamp, value,
    source, 0), made with a few strided copies over the whole batch instead
    of a tuple and an Event per message. None unless every datagram is one
    event of ``subscriber`` in the kernel's own layout, untruncated: the
    caller then parses message by message (:func:`parse`), which counts
    what is foreign or malformed.
    """
    if n < 1 or slot_size % 4 or len(buffer) < n * slot_size:
        return None
    if lengths.tolist().count(FAST_SIZE) != n or flags.tolist().count(0) != n:
        return None
    data = memoryview(buffer)[: n * slot_size]
    words, step = data.cast("I"), slot_size // 4
    if data.cast("H")[_H_TYPE :: slot_size // 2].tolist().count(family_id) != n:
        return None
    if data[_B_CMD::slot_size].tolist().count(abi.UPCALL_CMD_EVENT) != n:
        return None
    if words[_W_LEN::step].tolist().count(FAST_SIZE) != n:
        return None
    for word, expected in _NLA_HEADERS:
        if words[word::step].tolist().count(expected) != n:
            return None
    for word, expected in zip(
        (_W_SUBSCRIBER, _W_SUBSCRIBER + 1), struct.unpack("=II", _U64.pack(subscriber)), strict=True
    ):
        if words[word::step].tolist().count(expected) != n:
            return None
    out = bytearray(abi.EVENT_RECORD.size * n)
    record = memoryview(out).cast("I")
    rstep = abi.EVENT_RECORD.size // 4
    for word, at in _W_COPY:
        record[at::rstep] = words[word::step]
    return out
