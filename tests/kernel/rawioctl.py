"""Raw ioctl calls with any argument, for the bad-input tests.

The library validates what it sends; these go around it, straight to the
module, so every errno the module returns can be checked.
"""

from __future__ import annotations

import ctypes
import os

from upcall import abi

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_libc.ioctl.restype = ctypes.c_int


def ioctl(fd: int, request: int, arg: ctypes.Structure | int | None) -> int:
    """ioctl(2) with a structure, a raw address or NULL; return its result or -errno."""
    ptr = ctypes.addressof(arg) if isinstance(arg, ctypes.Structure) else arg
    ret = _libc.ioctl(fd, request, ptr)
    return -ctypes.get_errno() if ret < 0 else ret


def subscribe(
    fd: int, signo: int, *, transport: int = abi.UPCALL_TRANSPORT_SIGNAL, flags: int = 0
) -> int:
    """UPCALL_IOC_SUBSCRIBE on ``fd`` for the calling thread; result or -errno."""
    req = abi.UpcallSubscribe(transport=transport, flags=flags, signo=signo)
    return ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, req)


def stats(fd: int) -> abi.UpcallStats:
    """UPCALL_IOC_STATS on ``fd``; raises OSError on failure."""
    st = abi.UpcallStats()
    ret = ioctl(fd, abi.UPCALL_IOC_STATS, st)
    if ret < 0:
        raise OSError(-ret, os.strerror(-ret))
    return st
