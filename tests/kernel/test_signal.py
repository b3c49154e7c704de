"""The real-time signal transport, end to end in a real kernel."""

from __future__ import annotations

import ctypes
import os
import resource
import select
import signal
import threading

import pytest
from accounting import check_accounting, settle

import upcall
from upcall import _signals as signals
from upcall import abi
from upcall.bpf import _sig

SIG = signal.SIGRTMIN + 4
U64 = (1 << 64) - 1


@pytest.mark.parametrize(
    "value",
    [0, 1, 5, -1, -5, -(2**31), 2**31 - 1, 2**32, 0x0123456789ABCDEF, U64, -(2**63)],
)
def test_value_round_trip(dev: upcall.Device, value: int) -> None:
    with dev.subscribe_signal(SIG) as sub:
        assert dev.emit(value, source=0x207) == 1
        [ev] = sub.read(1, timeout=10)
    assert ev.value == value & U64
    assert ev.signed_value == (value if value < 2**63 else value - 2**64)
    assert ev.source == 0x207
    assert ev.seqno == 1
    assert ev.signo == SIG
    assert ev.transport == "signal"


def sigwaitinfo_raw(signo: int, timeout: int) -> _sig.SigInfo:
    """sigtimedwait(2) through ctypes: the whole siginfo, which CPython's wrapper hides."""
    libc = ctypes.CDLL(None, use_errno=True)
    info = _sig.SigInfo()
    sigset = _sig.sigset_of(signo)
    ts = _sig.TimeSpec(timeout, 0)
    if libc.sigtimedwait(ctypes.byref(sigset), ctypes.byref(info), ctypes.byref(ts)) != signo:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return info


@pytest.mark.parametrize("value", [-7, 0x123456789ABCDEF0, 0x7FFFFFFF_00000000, 0x80000000])
def test_si_int_carries_low_32_bits(dev: upcall.Device, value: int) -> None:
    """The classic receiver reads si_int: it must be the value's low 32 bits.

    Read twice, by sigtimedwait's siginfo (si_int, si_ptr) and by signalfd
    (ssi_int, ssi_ptr); the values chosen have high halves that differ from
    the sign extension of their low ones, so a kernel that sent the wrong half
    or truncated si_ptr is caught.
    """
    low = ctypes.c_int(value & 0xFFFFFFFF).value  # the signed 32-bit si_int
    signal.pthread_sigmask(signal.SIG_BLOCK, {SIG})
    fd = os.open("/dev/upcall", os.O_RDWR)
    sfd = -1
    try:
        from rawioctl import subscribe

        assert subscribe(fd, SIG) == 0
        assert dev.emit(value, source=0x203) == 1
        info = sigwaitinfo_raw(SIG, 10)
        assert (info.si_signo, info.si_errno) == (SIG, 1)  # seqno 1
        assert info.si_code == abi.si_code_for_source(0x203)
        # si_int is the union's int member: the first 4 bytes of si_ptr.
        si_int = ctypes.c_int.from_buffer(info, _sig.SigInfo.si_value.offset).value
        assert si_int == low
        assert info.si_value == value & U64  # si_ptr

        sfd = signals.open_signalfd(SIG)
        assert dev.emit(value, source=0x203) == 1
        assert select.select([sfd], [], [], 10)[0] == [sfd]
        [ssi] = signals.read_siginfos(sfd, 4)
        assert (ssi.signo, ssi.errno, ssi.code) == (SIG, 2, abi.si_code_for_source(0x203))
        assert ctypes.c_int(ssi.int_).value == low
        assert ssi.ptr == value & U64
    finally:
        os.close(fd)
        if sfd >= 0:
            os.close(sfd)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {SIG})


def test_burst_of_10000_is_accounted(dev: upcall.Device) -> None:
    n = 10_000
    with dev.subscribe_signal(SIG) as sub:
        # Threads inherit the mask of their creator: start the emitter after
        # subscribing, so the signal is blocked in it too.
        emitter = threading.Thread(target=lambda: [dev.emit(i) for i in range(n)])
        emitter.start()
        events: list[upcall.Event] = []
        while emitter.is_alive() or sub.stats().pending or sub.wait(0):
            events += sub.read(4096, timeout=0.2)
        emitter.join()
        events += sub.read(4096, timeout=0)
        st = check_accounting(sub, events)
    assert st.emitted == n
    assert [e.value for e in events] == [e.seqno - 1 for e in events]


def queued_signals_of_my_user() -> int:
    """Signals queued for this real uid, all processes together (SigQ in status)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("SigQ:"):
                return int(line.split()[1].split("/")[0])
    raise AssertionError("no SigQ line in /proc/self/status")


def test_rlimit_sigpending_drops_are_counted_exactly(dev: upcall.Device) -> None:
    emitted = 100
    old = resource.getrlimit(resource.RLIMIT_SIGPENDING)
    with dev.subscribe_signal(SIG) as sub:
        # The limit counts every signal queued for this user, ours or not.
        limit = 10 - queued_signals_of_my_user()
        assert limit > 0
        resource.setrlimit(resource.RLIMIT_SIGPENDING, (10, old[1]))
        try:
            for i in range(emitted):
                dev.emit(i)
            st = settle(sub)
        finally:
            resource.setrlimit(resource.RLIMIT_SIGPENDING, old)
        assert (st.emitted, st.delivered, st.dropped) == (emitted, limit, emitted - limit)
        events = sub.read(emitted, timeout=5)
        assert [e.seqno for e in events] == list(range(1, limit + 1))
        # With room again, the next event arrives and its seqno shows the gap.
        dev.emit(12345)
        [ev] = sub.read(1, timeout=10)
        assert ev.seqno == emitted + 1 and ev.value == 12345
        assert sub.lost == emitted - limit
        check_accounting(sub, [*events, ev])


def test_two_subscribers_thread_and_process_directed(dev: upcall.Device) -> None:
    sig_thread = SIG + 1
    signal.pthread_sigmask(signal.SIG_BLOCK, {sig_thread})
    try:
        with dev.subscribe_signal(SIG) as proc_sub:
            got: dict[str, list[upcall.Event]] = {}
            subscribed = threading.Event()
            emitted = threading.Event()

            def worker() -> None:
                with dev.subscribe_signal(sig_thread, thread=True) as thread_sub:
                    subscribed.set()
                    emitted.wait(30)
                    got["events"] = thread_sub.read(10, timeout=10)

            t = threading.Thread(target=worker)
            t.start()
            assert subscribed.wait(30)
            assert dev.emit(42) == 2
            emitted.set()
            t.join(30)
            [ev] = proc_sub.read(10, timeout=10)
            assert ev.value == 42 and ev.signo == SIG
            [tev] = got["events"]
            assert tev.value == 42 and tev.signo == sig_thread
            # The thread-directed signal went to the worker alone: nothing
            # for sig_thread is pending on the main thread or the process.
            assert sig_thread not in signal.sigpending()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig_thread})


def test_second_subscribe_replaces_the_first(dev: upcall.Device) -> None:
    from rawioctl import stats, subscribe

    sig_a, sig_b = SIG, SIG + 2
    signal.pthread_sigmask(signal.SIG_BLOCK, {sig_a, sig_b})
    fd = os.open("/dev/upcall", os.O_RDONLY)
    try:
        assert subscribe(fd, sig_a) == 0
        dev.emit(1)
        assert subscribe(fd, sig_b) == 0
        dev.emit(2)
        first = signal.sigtimedwait({sig_a}, 10)
        second = signal.sigtimedwait({sig_b}, 10)
        assert first is not None and first.si_errno == 1
        assert second is not None and second.si_errno == 2
        assert signal.sigtimedwait({sig_a}, 0.2) is None
        st = stats(fd)
        assert (st.emitted, st.delivered, st.seqno, st.signo) == (2, 2, 2, sig_b)
    finally:
        os.close(fd)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig_a, sig_b})


class _CloneArgs(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in ("flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack",
                     "stack_size", "tls", "set_tid", "set_tid_size", "cgroup")
    ]  # fmt: skip


def fork_with_pid(pid: int) -> int:
    """fork(), but the child gets ``pid`` (clone3 with set_tid; needs CAP_SYS_ADMIN).

    Like os.fork() it returns 0 in the child, which must only do simple
    work and os._exit(): Python's own after-fork hooks do not run.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    tids = (ctypes.c_int * 1)(pid)
    args = _CloneArgs(exit_signal=signal.SIGCHLD, set_tid=ctypes.addressof(tids), set_tid_size=1)
    ret = libc.syscall(435, ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"clone3 with pid {pid}: {os.strerror(err)}")
    return int(ret)


def _child_subscribe_and_exit(fd: int, ready_w: int) -> None:
    from rawioctl import subscribe

    signal.pthread_sigmask(signal.SIG_BLOCK, {SIG})
    os.write(ready_w, b"%d" % subscribe(fd, SIG))
    os._exit(0)


def test_dead_subscriber_pid_reused_gets_nothing(dev: upcall.Device) -> None:
    """A subscriber dies, its pid is given to a newcomer: the newcomer gets no signal."""
    from rawioctl import stats

    fd = os.open("/dev/upcall", os.O_RDONLY)
    try:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            _child_subscribe_and_exit(fd, w)
        assert os.read(r, 16) == b"0"
        os.waitpid(pid, 0)

        # The next process takes the dead subscriber's pid.
        newcomer = fork_with_pid(pid)
        if newcomer == 0:
            signal.pthread_sigmask(signal.SIG_BLOCK, {SIG})
            os.write(w, b"r")
            info = signal.sigtimedwait({SIG}, 3)
            os._exit(0 if info is None else 1)
        assert newcomer == pid
        assert os.read(r, 1) == b"r"

        for i in range(5):
            dev.emit(i)
        _, status = os.waitpid(newcomer, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the newcomer received a signal"
        st = stats(fd)
        assert (st.emitted, st.delivered, st.dropped) == (5, 0, 5)
    finally:
        os.close(fd)


def test_subscriber_killed_mid_stream(dev: upcall.Device) -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with upcall.open() as d, d.subscribe_signal(SIG) as sub:
                os.write(w, b"r")
                while True:
                    sub.read(256, timeout=1)
        finally:
            os._exit(1)
    assert os.read(r, 1) == b"r"
    for i in range(3000):
        dev.emit(i)
        if i == 1000:
            os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert dev.emit(0) == 0, "the dead subscriber's file must be gone"
    # The module is healthy: a new subscriber gets the next event.
    with dev.subscribe_signal(SIG) as sub:
        dev.emit(77)
        [ev] = sub.read(1, timeout=10)
        assert ev.value == 77


def test_events_before_subscribe_are_not_counted(dev: upcall.Device) -> None:
    from rawioctl import stats

    fd = os.open("/dev/upcall", os.O_RDONLY)
    try:
        dev.emit(1)
        st = stats(fd)
        assert (st.emitted, st.seqno, st.transport) == (0, 0, abi.UPCALL_TRANSPORT_NONE)
    finally:
        os.close(fd)


def test_device_is_root_only_by_default() -> None:
    mode = os.stat("/dev/upcall").st_mode & 0o777
    assert mode == 0o600


def test_signal_wakes_select() -> None:
    """The signalfd behind a subscription is an ordinary pollable descriptor."""
    with upcall.open() as d, d.subscribe_signal(SIG) as sub:
        d.emit(3)
        readable, _, _ = select.select([sub.fileno()], [], [], 10)
        assert readable == [sub.fileno()]
