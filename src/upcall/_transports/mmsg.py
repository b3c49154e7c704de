# SPDX-License-Identifier: LGPL-2.1-or-later
"""Many datagrams per system call: recvmmsg(2) through ctypes.

CPython's socket module receives one datagram per call. A netlink multicast
listener gets one datagram per event, so at high rates the system calls, not
the decoding, would set the pace; recvmmsg(2) fills a whole array of
fixed-size slots in one call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import struct
from collections.abc import Callable
from typing import cast

from .._libc import libc

MSG_DONTWAIT = socket.MSG_DONTWAIT
MSG_TRUNC = socket.MSG_TRUNC


class _IoVec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class _MsgHdr(ctypes.Structure):
    _fields_ = (
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_IoVec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    )


class _MMsgHdr(ctypes.Structure):
    _fields_ = (("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint))


_MMSG_SIZE = ctypes.sizeof(_MMsgHdr)
# msg_flags and msg_len of one struct mmsghdr, read with struct from the array.
_FLAGS_AT = _MsgHdr.msg_flags.offset
_LEN_AT = _MMsgHdr.msg_len.offset
# One whole struct mmsghdr, keeping msg_flags and msg_len, for iter_unpack.
_FLAGS_AND_LEN = struct.Struct(
    f"={_FLAGS_AT}xi{_LEN_AT - _FLAGS_AT - 4}xI{_MMSG_SIZE - _LEN_AT - 4}x"
)
assert _FLAGS_AND_LEN.size == _MMSG_SIZE


def _recvmmsg() -> Callable[[int, int, int, int, None], int]:
    return cast("Callable[[int, int, int, int, None], int]", libc().recvmmsg)


class DatagramReader:
    """Receives up to ``capacity`` datagrams of at most ``slot_size`` bytes per call.

    After :meth:`recv` returned ``n``, datagram ``i < n`` starts at
    ``i * slot_size`` in :attr:`buffer`; :meth:`lengths` gives its length and
    flags (MSG_TRUNC: it was longer than a slot, and was cut).
    """

    def __init__(self, fd: int, *, slot_size: int, capacity: int) -> None:
        if slot_size < 1 or capacity < 1:
            raise ValueError("slot_size and capacity must be at least 1")
        self.fd = fd
        self.slot_size = slot_size
        self.capacity = capacity
        self.buffer = bytearray(slot_size * capacity)
        base = ctypes.addressof((ctypes.c_char * len(self.buffer)).from_buffer(self.buffer))
        self._iovs = (_IoVec * capacity)()
        self._hdrs = (_MMsgHdr * capacity)()
        for i in range(capacity):
            self._iovs[i].iov_base = base + i * slot_size
            self._iovs[i].iov_len = slot_size
            self._hdrs[i].msg_hdr.msg_iov = ctypes.pointer(self._iovs[i])
            self._hdrs[i].msg_hdr.msg_iovlen = 1
        self._hdrs_addr = ctypes.addressof(self._hdrs)
        self._call = _recvmmsg()

    def recv(self, max_datagrams: int) -> int:
        """Receive up to ``max_datagrams`` (at most ``capacity``) without blocking.

        Returns how many were received, 0 if none was waiting. A socket error
        (ENOBUFS: the receive buffer overflowed) raises OSError; the kernel
        reports it before the datagrams still queued, which the next call gets.
        """
        n = min(max_datagrams, self.capacity)
        while True:
            got = self._call(self.fd, self._hdrs_addr, n, MSG_DONTWAIT, None)
            if got >= 0:
                return int(got)
            err = ctypes.get_errno()
            if err == errno.EINTR:
                continue
            if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                return 0
            raise OSError(err, os.strerror(err))

    def columns(self, n: int) -> tuple[memoryview, memoryview]:
        """The lengths and the msg_flags of the first ``n`` datagrams, as two u32 columns.

        :meth:`lengths` without an object per datagram (for a batch decoder).
        """
        words = memoryview(ctypes.string_at(self._hdrs_addr, n * _MMSG_SIZE)).cast("I")
        step = _MMSG_SIZE // 4
        return words[_LEN_AT // 4 :: step], words[_FLAGS_AT // 4 :: step]

    def lengths(self, n: int) -> list[tuple[int, int]]:
        """(length, msg_flags) of the first ``n`` datagrams of the last :meth:`recv`.

        The length is what was stored, at most ``slot_size``.
        """
        raw = ctypes.string_at(self._hdrs_addr, n * _MMSG_SIZE)
        return [(length, flags) for flags, length in _FLAGS_AND_LEN.iter_unpack(raw)]
