"""Bad input: every invalid request gets its errno and the module stays healthy."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
from collections.abc import Iterator

import pytest
from rawioctl import ioctl, stats, subscribe

import upcall
from upcall import abi

SIG = signal.SIGRTMIN + 4


@pytest.fixture
def fd() -> Iterator[int]:
    fd = os.open("/dev/upcall", os.O_RDWR)
    yield fd
    os.close(fd)


@pytest.fixture(autouse=True)
def healthy_after() -> Iterator[None]:
    """After each bad call, a normal round trip still works."""
    yield
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {SIG})
    with upcall.open() as dev, dev.subscribe_signal(SIG) as sub:
        dev.emit(99)
        [ev] = sub.read(1, timeout=10)
        assert ev.value == 99


def test_unknown_ioctl_is_enotty(fd: int) -> None:
    for request in (
        abi.IOC(abi.IOC_NONE, abi.UPCALL_IOC_MAGIC, 0x7F, 0),
        abi.IOW(abi.UPCALL_IOC_MAGIC, 0x11, abi.UpcallSubscribe),
        # The right number with the wrong size is another request.
        abi.IOC(abi.IOC_WRITE, abi.UPCALL_IOC_MAGIC, 0x10, 16),
        abi.IOC(abi.IOC_READ, abi.UPCALL_IOC_MAGIC, 0x20, 32),
        0x5401,  # TCGETS
    ):
        assert ioctl(fd, request, None) == -errno.ENOTTY, hex(request)


@pytest.mark.parametrize(
    "address",
    [0, 1, 0xDEAD0000, 0xFFFFFFFF81000000, (1 << 64) - 8],
    ids=["null", "one", "unmapped", "kernel", "top"],
)
@pytest.mark.parametrize("call", ["subscribe", "emit", "stats"])
def test_bad_pointer_is_efault(fd: int, call: str, address: int) -> None:
    number = {
        "subscribe": abi.UPCALL_IOC_SUBSCRIBE,
        "emit": abi.UPCALL_IOC_EMIT,
        "stats": abi.UPCALL_IOC_STATS,
    }[call]
    assert ioctl(fd, number, address) == -errno.EFAULT


def test_stats_into_read_only_memory_is_efault(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    prot_read, map_private_anonymous = 0x1, 0x2 | 0x20
    address = libc.mmap(None, 4096, prot_read, map_private_anonymous, -1, 0)
    assert address not in (None, ctypes.c_void_p(-1).value)
    try:
        assert ioctl(fd, abi.UPCALL_IOC_STATS, address) == -errno.EFAULT
        # Reading a request from it is fine: all zeroes, an unsubscribe.
        assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, address) == 0
    finally:
        libc.munmap(ctypes.c_void_p(address), ctypes.c_size_t(4096))


@pytest.mark.parametrize("signo", [0, 1, 9, 31, 65, 128, 2**31, 2**32 - 1])
def test_invalid_signal_is_einval(fd: int, signo: int) -> None:
    assert subscribe(fd, signo) == -errno.EINVAL


@pytest.mark.filterwarnings("ignore:invalid signal number:RuntimeWarning")
@pytest.mark.parametrize("signo", [32, 64])
def test_kernel_rt_range_is_accepted(fd: int, signo: int) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signo})
    try:
        assert subscribe(fd, signo) == 0
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signo})


@pytest.mark.parametrize("transport", [abi.UPCALL_TRANSPORT_NETLINK + 1, 99, 2**32 - 1])
def test_unknown_transport_is_einval(fd: int, transport: int) -> None:
    assert subscribe(fd, SIG, transport=transport) == -errno.EINVAL


@pytest.mark.parametrize(
    "field, value",
    [
        ("signo", SIG),
        ("flags", abi.UPCALL_SUBSCRIBE_THREAD),
        ("flags", abi.UPCALL_SUBSCRIBE_UNICAST),
        ("flags", abi.UPCALL_SUBSCRIBE_SOURCES),
        ("queue_size", abi.UPCALL_QUEUE_MIN),
        ("netlink_fd", 1),
    ],
)
def test_unsubscribe_with_anything_else_is_einval(fd: int, field: str, value: int) -> None:
    """SUBSCRIBE to NONE unsubscribes, and takes no other field."""
    req = abi.UpcallSubscribe(transport=abi.UPCALL_TRANSPORT_QUEUE)
    assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, req) == 0
    req = abi.UpcallSubscribe(transport=abi.UPCALL_TRANSPORT_NONE)
    setattr(req, field, value)
    assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, req) == -errno.EINVAL
    assert stats(fd).transport == abi.UPCALL_TRANSPORT_QUEUE
    req = abi.UpcallSubscribe(transport=abi.UPCALL_TRANSPORT_NONE)
    assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, req) == 0
    assert stats(fd).transport == abi.UPCALL_TRANSPORT_NONE


@pytest.mark.parametrize("flags", [1 << 1, 1 << 31, 0xFFFFFFFF])
def test_unknown_flags_are_einval(fd: int, flags: int) -> None:
    assert subscribe(fd, SIG, flags=flags) == -errno.EINVAL


@pytest.mark.parametrize("value", [1, 1 << 31])
def test_nonzero_reserved_subscribe_is_einval(fd: int, value: int) -> None:
    req = abi.UpcallSubscribe(transport=abi.UPCALL_TRANSPORT_QUEUE, reserved=value)
    assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, req) == -errno.EINVAL


@pytest.mark.parametrize(
    "queue_size", [abi.UPCALL_QUEUE_MIN - 1, abi.UPCALL_QUEUE_MAX + 1, 2**32 - 1]
)
def test_queue_size_out_of_range_is_einval(fd: int, queue_size: int) -> None:
    req = abi.UpcallSubscribe(transport=abi.UPCALL_TRANSPORT_QUEUE, queue_size=queue_size)
    assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, req) == -errno.EINVAL


@pytest.mark.parametrize("transport", [abi.UPCALL_TRANSPORT_QUEUE, abi.UPCALL_TRANSPORT_NETLINK])
def test_signal_number_without_signal_transport_is_einval(fd: int, transport: int) -> None:
    assert subscribe(fd, SIG, transport=transport) == -errno.EINVAL


@pytest.mark.parametrize("case", ["source", "flags", "reserved"])
def test_bad_emit_is_einval(fd: int, case: str) -> None:
    req = abi.UpcallEmit(value=1)
    if case == "source":
        req.source = abi.UPCALL_SOURCE_MAX + 1
    elif case == "flags":
        req.flags = 1
    else:
        req.reserved[2] = 7
    assert ioctl(fd, abi.UPCALL_IOC_EMIT, req) == -errno.EINVAL


def test_emit_needs_write_access() -> None:
    fd = os.open("/dev/upcall", os.O_RDONLY)
    try:
        assert ioctl(fd, abi.UPCALL_IOC_EMIT, abi.UpcallEmit(value=1)) == -errno.EBADF
    finally:
        os.close(fd)


def test_subscribe_and_stats_need_read_access() -> None:
    fd = os.open("/dev/upcall", os.O_WRONLY)
    try:
        assert subscribe(fd, SIG) == -errno.EBADF
        assert ioctl(fd, abi.UPCALL_IOC_STATS, abi.UpcallStats()) == -errno.EBADF
    finally:
        os.close(fd)


def test_failed_subscribe_changes_nothing(fd: int) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {SIG})
    try:
        assert subscribe(fd, SIG) == 0
        assert subscribe(fd, 0) == -errno.EINVAL
        st = abi.UpcallStats()
        assert ioctl(fd, abi.UPCALL_IOC_STATS, st) == 0
        assert (st.transport, st.signo) == (abi.UPCALL_TRANSPORT_SIGNAL, SIG)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {SIG})


def test_device_refuses_read_write_and_seek(fd: int) -> None:
    with pytest.raises(OSError) as e:
        os.read(fd, 8)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        os.write(fd, b"x")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        os.lseek(fd, 0, os.SEEK_SET)
    assert e.value.errno == errno.ESPIPE
