# SPDX-License-Identifier: LGPL-2.1-or-later
"""sigtimedwait(2) and signalfd(2) through ctypes.

A signal sent by ``bpf_send_signal_task`` has ``si_code == SI_KERNEL``;
signalfd copies ``ssi_int``/``ssi_ptr`` only for negative (SI_QUEUE-style)
codes, so its value would read as 0. sigtimedwait returns the whole
siginfo, value included. The signalfd here is used only for readiness
(poll/epoll/asyncio); it is never read, so it never consumes a signal.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import NamedTuple

from upcall._libc import libc

_libc = libc()

SI_KERNEL = 0x80


class SigSet(ctypes.Structure):
    _fields_ = (("val", ctypes.c_ulong * 16),)  # glibc sigset_t: 1024 bits


class SigInfo(ctypes.Structure):
    # The kernel's siginfo: 3 ints, padding, then the union; for the _rt
    # member (what SI_KERNEL from BPF fills): pid, uid, then si_value at 24.
    _fields_ = (
        ("si_signo", ctypes.c_int),
        ("si_errno", ctypes.c_int),
        ("si_code", ctypes.c_int),
        ("_pad0", ctypes.c_int),
        ("si_pid", ctypes.c_int),
        ("si_uid", ctypes.c_uint),
        ("si_value", ctypes.c_uint64),
        ("_rest", ctypes.c_byte * (128 - 32)),
    )


class TimeSpec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


assert ctypes.sizeof(SigInfo) == 128

_sigtimedwait = _libc.sigtimedwait
_sigtimedwait.restype = ctypes.c_int
_sigtimedwait.argtypes = (
    ctypes.POINTER(SigSet),
    ctypes.POINTER(SigInfo),
    ctypes.POINTER(TimeSpec),
)


def sigset_of(signo: int) -> SigSet:
    s = SigSet()
    _libc.sigemptyset(ctypes.byref(s))
    _libc.sigaddset(ctypes.byref(s), signo)
    return s


class Received(NamedTuple):
    """One dequeued signal (a tuple: a frozen dataclass costs twice as much per signal)."""

    signo: int
    code: int
    value: int


class SigWaiter:
    """Dequeues one real-time signal at a time with its whole siginfo."""

    def __init__(self, signo: int) -> None:
        self.signo = signo
        self._set = sigset_of(signo)
        self._info = SigInfo()
        self._zero = TimeSpec(0, 0)
        # Built once: each costs a ctypes object per call, i.e. per event.
        self._set_p = ctypes.byref(self._set)
        self._info_p = ctypes.byref(self._info)
        self._zero_p = ctypes.pointer(self._zero)

    def wait(self, timeout: float | None) -> Received | None:
        """One signal, or None when ``timeout`` seconds pass (None: forever, 0: poll).

        EINTR (another signal ran a handler) is retried with the time left.
        """
        info = self._info
        if timeout is None:
            ts_p = None
        elif timeout <= 0:
            ts_p = self._zero_p
        else:
            sec = int(timeout)
            ts_p = ctypes.pointer(TimeSpec(sec, int((timeout - sec) * 1e9)))
        while True:
            rc = _sigtimedwait(self._set_p, self._info_p, ts_p)
            if rc >= 0:
                return Received(info.si_signo, info.si_code, info.si_value)
            err = ctypes.get_errno()
            if err == errno.EAGAIN:
                return None
            if err != errno.EINTR:
                raise OSError(err, os.strerror(err))
            # EINTR: retry (a coarse retry keeps the original timeout)
