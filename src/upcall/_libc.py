# SPDX-License-Identifier: LGPL-2.1-or-later
"""upcall's one binding of the C library, for what CPython lacks.

signalfd(2), sigtimedwait(2) with the whole siginfo, recvmmsg(2), the raw
syscall(2) for rt_tgsigqueueinfo, mount(2) for tracefs and vsnprintf(3) for
libbpf's log: loaded once, with ``use_errno``. The prototypes are declared
here, but for sigtimedwait's, which takes the ctypes structures of
:mod:`upcall.bpf._sig` and is declared there; each function is bound in
one place only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library (``use_errno=True``), its prototypes set."""
    c = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    c.signalfd.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
    c.signalfd.restype = ctypes.c_int
    c.sigemptyset.argtypes = (ctypes.c_void_p,)
    c.sigaddset.argtypes = (ctypes.c_void_p, ctypes.c_int)
    c.syscall.restype = ctypes.c_long
    c.recvmmsg.argtypes = (
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_void_p,
    )
    c.recvmmsg.restype = ctypes.c_int
    c.mount.argtypes = (
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
    )
    c.mount.restype = ctypes.c_int
    return c
