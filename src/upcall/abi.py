# SPDX-License-Identifier: LGPL-2.1-or-later
"""The kernel ABI of /dev/upcall, mirrored from ``kmod/include/uapi/linux/upcall.h``.

The header is the one source of truth; ``tests/host/test_abi.py`` compiles a C
program against it and fails if any number, size or offset here differs.
"""

from __future__ import annotations

import ctypes
import enum
import struct
from dataclasses import dataclass

# _IOC encoding of asm-generic/ioctl.h, which x86_64 (and arm64, riscv) use:
# bits 0-7 number, 8-15 type (the magic), 16-29 argument size, 30-31 direction.
_IOC_NRBITS = 8
_IOC_TYPEBITS = 8
_IOC_SIZEBITS = 14
_IOC_DIRBITS = 2
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
IOC_NONE = 0
IOC_WRITE = 1
IOC_READ = 2


def IOC(direction: int, type_: int, nr: int, size: int) -> int:
    """Encode an ioctl request number like the kernel's ``_IOC`` macro."""
    if not 0 <= direction < 1 << _IOC_DIRBITS:
        raise ValueError(f"ioctl direction {direction} out of range")
    if not 0 <= type_ < 1 << _IOC_TYPEBITS:
        raise ValueError(f"ioctl type {type_:#x} out of range")
    if not 0 <= nr < 1 << _IOC_NRBITS:
        raise ValueError(f"ioctl number {nr:#x} out of range")
    if not 0 <= size < 1 << _IOC_SIZEBITS:
        raise ValueError(f"ioctl argument size {size} out of range")
    return (
        (direction << _IOC_DIRSHIFT)
        | (type_ << _IOC_TYPESHIFT)
        | (nr << _IOC_NRSHIFT)
        | (size << _IOC_SIZESHIFT)
    )


def IOW(type_: int, nr: int, struct: type[ctypes.Structure]) -> int:
    """``_IOW``: user space writes a ``struct`` to the kernel."""
    return IOC(IOC_WRITE, type_, nr, ctypes.sizeof(struct))


def IOR(type_: int, nr: int, struct: type[ctypes.Structure]) -> int:
    """``_IOR``: the kernel fills a ``struct`` for user space."""
    return IOC(IOC_READ, type_, nr, ctypes.sizeof(struct))


UPCALL_IOC_MAGIC = 0xB9


class Transport(enum.IntEnum):
    """``enum upcall_transport``: how a subscriber receives its events.

    QUEUE also serves the fasync (SIGIO) and eventfd notifications, which are
    ways to learn that the queue has records, not transports of their own.
    """

    NONE = 0
    SIGNAL = 1
    QUEUE = 2
    NETLINK = 3


UPCALL_TRANSPORT_NONE = Transport.NONE.value
UPCALL_TRANSPORT_SIGNAL = Transport.SIGNAL.value
UPCALL_TRANSPORT_QUEUE = Transport.QUEUE.value
UPCALL_TRANSPORT_NETLINK = Transport.NETLINK.value

# Queue lengths in events; the module rounds a size up to a power of two, and
# UpcallSubscribe.queue_size 0 asks for UPCALL_QUEUE_DEFAULT.
UPCALL_QUEUE_DEFAULT = 1024
UPCALL_QUEUE_MIN = 2
UPCALL_QUEUE_MAX = 65536

UPCALL_SUBSCRIBE_THREAD = 1 << 0
UPCALL_SUBSCRIBE_UNICAST = 1 << 1
UPCALL_SUBSCRIBE_SOURCES = 1 << 2
UPCALL_SUBSCRIBE_FLAGS = (
    UPCALL_SUBSCRIBE_THREAD | UPCALL_SUBSCRIBE_UNICAST | UPCALL_SUBSCRIBE_SOURCES
)

#: The ABI version this library speaks; the module reports its own through
#: UPCALL_IOC_VERSION.
UPCALL_ABI_VERSION = 1
#: ``UpcallVersion.flags``: UPCALL_IOC_SUBSCRIBE takes UPCALL_TRANSPORT_NONE (unsubscribe).
UPCALL_VERSION_UNSUBSCRIBE = 1 << 0

UPCALL_SOURCE_MAX = 0xFFFF
#: Source ids 1 to this are upcall's own (its sources, its sample modules):
#: user space emits as UPCALL_SOURCE_USER (0) or above it.
UPCALL_SOURCE_RESERVED_MAX = 0x1FF
UPCALL_SOURCE_USER = 0
UPCALL_SOURCE_TIMER = 1
UPCALL_SOURCE_EDU = 2

# The kernel's own signal range; Python's signal.SIGRTMIN is higher because the
# C library keeps the first few for itself.
KERNEL_SIGRTMIN = 32
KERNEL_SIGRTMAX = 64


class UpcallEvent(ctypes.Structure):
    """``struct upcall_event``: one record as read(2) from a QUEUE subscriber.

    For decoding many records at once use :data:`EVENT_RECORD` (a
    :class:`struct.Struct` of the same layout) rather than this class.
    """

    _fields_ = (
        ("seqno", ctypes.c_uint64),
        ("timestamp_ns", ctypes.c_uint64),
        ("value", ctypes.c_uint64),
        ("source", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 4),
    )


#: ``struct upcall_event`` for :mod:`struct`: seqno, timestamp_ns, value,
#: source, flags (``reserved`` skipped). Native byte order, like the kernel's.
EVENT_RECORD = struct.Struct("=QQQII16x")
UPCALL_EVENT_SIZE = EVENT_RECORD.size


class UpcallSubscribe(ctypes.Structure):
    """``struct upcall_subscribe``; every field not set must stay zero.

    ``queue_size`` 0 asks for the module's default (UPCALL_QUEUE_DEFAULT);
    ``netlink_fd`` is the socket of a UPCALL_SUBSCRIBE_UNICAST subscription;
    ``source_first``..``source_last`` the sources taken, with
    UPCALL_SUBSCRIBE_SOURCES.
    """

    _fields_ = (
        ("transport", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("signo", ctypes.c_uint32),
        ("queue_size", ctypes.c_uint32),
        ("netlink_fd", ctypes.c_int32),
        ("source_first", ctypes.c_uint32),
        ("source_last", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
    )


class UpcallEmit(ctypes.Structure):
    """``struct upcall_emit``; ``flags`` and ``reserved`` must stay zero."""

    # c_uint64 is 8-byte aligned on 64-bit targets, as __aligned_u64 demands.
    _fields_ = (
        ("value", ctypes.c_uint64),
        ("source", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 4),
    )


class UpcallStats(ctypes.Structure):
    """``struct upcall_stats``, filled by UPCALL_IOC_STATS."""

    _fields_ = (
        ("emitted", ctypes.c_uint64),
        ("delivered", ctypes.c_uint64),
        ("dropped", ctypes.c_uint64),
        ("seqno", ctypes.c_uint64),
        ("pending", ctypes.c_uint64),
        ("transport", ctypes.c_uint32),
        ("signo", ctypes.c_uint32),
        ("id", ctypes.c_uint64),
        ("queue_size", ctypes.c_uint32),
        ("queued", ctypes.c_uint32),
        ("reserved", ctypes.c_uint64 * 2),
    )


@dataclass(frozen=True, slots=True)
class Stats:
    """The counters of one subscriber (one open file), from UPCALL_IOC_STATS.

    emitted: events given a sequence number for this subscriber.
    delivered: events handed to the transport (for signals: a signal queued).
    dropped: events lost (queue full, RLIMIT_SIGPENDING, receiver gone).
    seqno: the last sequence number given out; 0 before the first event.
    pending: events accepted but not yet delivered or dropped;
        ``emitted == delivered + dropped + pending`` at every instant.
    transport: the subscription's :class:`upcall.abi.Transport`; 0 (NONE)
        for a file that never subscribed, whose counters are all 0.
    signo: the signal of a signal subscription, else 0.
    id: the subscriber's id, unique while the module is loaded; netlink
        messages carry it. 0 where unknown (a stand-in file of a test).
    queue_size: the length of the subscriber's queue, in events.
    queued: events in that queue now (for QUEUE: records not read yet).
    """

    emitted: int
    delivered: int
    dropped: int
    seqno: int
    pending: int
    transport: int
    signo: int
    id: int = 0
    queue_size: int = 0
    queued: int = 0

    @classmethod
    def from_struct(cls, s: UpcallStats) -> Stats:
        """Copy the fields of a filled ``struct upcall_stats``, leaving out ``reserved``."""
        return cls(
            emitted=s.emitted,
            delivered=s.delivered,
            dropped=s.dropped,
            seqno=s.seqno,
            pending=s.pending,
            transport=s.transport,
            signo=s.signo,
            id=s.id,
            queue_size=s.queue_size,
            queued=s.queued,
        )

    @property
    def transport_name(self) -> str:
        """The transport in lower case (``"none"``, ``"queue"``...), or its number if unknown."""
        try:
            return Transport(self.transport).name.lower()
        except ValueError:
            return str(self.transport)


class UpcallEventfd(ctypes.Structure):
    """``struct upcall_eventfd``: ``fd`` an eventfd, or -1 to stop; the rest zero."""

    _fields_ = (
        ("fd", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 2),
    )


class UpcallVersion(ctypes.Structure):
    """``struct upcall_version``, filled by UPCALL_IOC_VERSION: ``abi``, ``flags``, ``module``."""

    _fields_ = (
        ("abi", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("module", ctypes.c_char * 32),
        ("reserved", ctypes.c_uint32 * 6),
    )


UPCALL_IOC_SUBSCRIBE = IOW(UPCALL_IOC_MAGIC, 0x10, UpcallSubscribe)
UPCALL_IOC_EMIT = IOW(UPCALL_IOC_MAGIC, 0x20, UpcallEmit)
UPCALL_IOC_STATS = IOR(UPCALL_IOC_MAGIC, 0x30, UpcallStats)
UPCALL_IOC_SET_EVENTFD = IOW(UPCALL_IOC_MAGIC, 0x40, UpcallEventfd)
UPCALL_IOC_VERSION = IOR(UPCALL_IOC_MAGIC, 0x50, UpcallVersion)

# Generic netlink: the family, its one multicast group, commands, attributes.
UPCALL_GENL_NAME = "upcall"
UPCALL_GENL_VERSION = 1
UPCALL_GENL_MCGRP_EVENTS = "events"


class GenlCmd(enum.IntEnum):
    """``enum upcall_genl_cmd``."""

    UNSPEC = 0
    EVENT = 1  # kernel to listeners: one event
    EMIT = 2  # user to kernel: emit (VALUE, optional SOURCE); CAP_NET_ADMIN


UPCALL_CMD_UNSPEC = GenlCmd.UNSPEC.value
UPCALL_CMD_EVENT = GenlCmd.EVENT.value
UPCALL_CMD_EMIT = GenlCmd.EMIT.value
UPCALL_CMD_MAX = int(max(GenlCmd))


class GenlAttr(enum.IntEnum):
    """``enum upcall_genl_attr``; the comment says each attribute's type."""

    UNSPEC = 0
    PAD = 1  # alignment padding before a u64, no payload
    SUBSCRIBER = 2  # u64: the subscriber id (UPCALL_IOC_STATS ``id``)
    SEQNO = 3  # u64
    TIMESTAMP = 4  # u64, CLOCK_MONOTONIC ns at emit
    VALUE = 5  # u64
    SOURCE = 6  # u32


UPCALL_ATTR_UNSPEC = GenlAttr.UNSPEC.value
UPCALL_ATTR_PAD = GenlAttr.PAD.value
UPCALL_ATTR_SUBSCRIBER = GenlAttr.SUBSCRIBER.value
UPCALL_ATTR_SEQNO = GenlAttr.SEQNO.value
UPCALL_ATTR_TIMESTAMP = GenlAttr.TIMESTAMP.value
UPCALL_ATTR_VALUE = GenlAttr.VALUE.value
UPCALL_ATTR_SOURCE = GenlAttr.SOURCE.value
UPCALL_ATTR_MAX = int(max(GenlAttr))

# Signal layout: si_code = UPCALL_SI_CODE_BASE - source (negative, so SI_QUEUE
# style), si_errno = low 32 bits of the seqno, si_ptr = the 64-bit value.
UPCALL_SI_CODE_BASE = -0x10000
UPCALL_SI_CODE_MIN = UPCALL_SI_CODE_BASE - UPCALL_SOURCE_MAX


def si_code_for_source(source: int) -> int:
    """``UPCALL_SI_CODE(source)``: the si_code of a signal carrying ``source``."""
    if not 0 <= source <= UPCALL_SOURCE_MAX:
        raise ValueError(f"source {source} out of range 0..{UPCALL_SOURCE_MAX}")
    return UPCALL_SI_CODE_BASE - source


def source_from_si_code(si_code: int) -> int | None:
    """The source id an upcall si_code carries, or None if ``si_code`` is not upcall's.

    None means the signal came from somewhere else (kill(2), sigqueue(3), the
    kernel itself...); 0 is a valid source (a user-space emit).
    """
    if UPCALL_SI_CODE_MIN <= si_code <= UPCALL_SI_CODE_BASE:
        return UPCALL_SI_CODE_BASE - si_code
    return None


U64_MAX = (1 << 64) - 1
S64_MIN = -(1 << 63)


def encode_value(value: int) -> int:
    """Map a value in -2**63 .. 2**64-1 to the u64 the kernel carries.

    Negative values are stored as two's complement, so -1 becomes 2**64-1;
    :attr:`upcall._event.Event.signed_value` reads them back.
    """
    if not S64_MIN <= value <= U64_MAX:
        raise ValueError(f"value {value} does not fit in 64 bits (-2**63 .. 2**64-1)")
    return value & U64_MAX
