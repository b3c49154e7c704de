"""Every transport end to end in a real kernel: queue, fasync, eventfd, netlink, signal.

Bursts are emitted by a child process (its own CPU time, no GIL shared with
the reader) while this process reads; everything is checked by counting:
received + dropped == emitted, and the gaps in the seqnos are the drops.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from types import FrameType

import pytest
from accounting import check_accounting, drain, settle
from guest import REDUCED
from rawioctl import ioctl, stats

import upcall
from upcall import _signals as signals
from upcall import abi
from upcall._transports.fasync import FasyncSubscription
from upcall._transports.netlink import send_command

U64 = (1 << 64) - 1
NETLINK_GENERIC = 16
F_SETSIG = 10
CLONE_NEWNET = 0x40000000
VIAS = ["queue", "fasync", "eventfd", "netlink", "signal"]
QUEUED = ["queue", "fasync", "eventfd"]  # the ones that read the module's queue
POLL_IN = 1
_EMIT = struct.Struct("=QII16x")


@pytest.fixture(params=VIAS)
def via(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def start_emitter(n: int, *, first: int = 0, source: int = 0) -> int:
    """Fork a child that emits values first .. first+n-1 as fast as it can; its pid."""
    pid = os.fork()
    if pid:
        return pid
    try:
        fd = os.open("/dev/upcall", os.O_WRONLY)
        req = bytearray(_EMIT.size)
        for value in range(first, first + n):
            _EMIT.pack_into(req, 0, value, source, 0)
            fcntl.ioctl(fd, abi.UPCALL_IOC_EMIT, req, False)
        os._exit(0)
    finally:
        os._exit(1)


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail, instead of hanging the guest, if a blocking call outlives ``seconds``."""

    def expired(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def reap(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the emitter failed"


def burst(subs: list[upcall.Subscription], n: int) -> list[list[upcall.Event]]:
    """Emit ``n`` events from a child while reading every subscription; their events."""
    got: list[list[upcall.Event]] = [[] for _ in subs]
    pid = start_emitter(n)
    running = True
    while running:
        for sub, events in zip(subs, got, strict=True):
            events += sub.read(4096, timeout=0.05)
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            running = False
            assert done == pid
    for sub, events in zip(subs, got, strict=True):
        drain(sub, events)
    return got


def round_trip(dev: upcall.Device, via: str) -> None:
    with dev.subscribe(via) as sub:
        assert dev.emit(4242, source=0x209) >= 1
        [ev] = sub.read(1, timeout=30)
        assert (ev.value, ev.source) == (4242, 0x209)


# -- every transport -------------------------------------------------------------------


def test_round_trip(dev: upcall.Device, via: str) -> None:
    sent = [(0, 0), (-1, 0x207), (U64, abi.UPCALL_SOURCE_MAX)]
    with dev.subscribe(via) as sub:
        for value, source in sent:
            assert dev.emit(value, source) == 1
        events = sub.read(10, timeout=30)
        while len(events) < 3:
            events += sub.read(10, timeout=30)
    assert [(e.seqno, e.value, e.source) for e in events] == [
        (1, 0, 0),
        (2, U64, 0x207),
        (3, U64, abi.UPCALL_SOURCE_MAX),
    ]
    assert [e.signed_value for e in events] == [0, -1, -1]
    assert {e.transport for e in events} == {via}
    for e in events:
        if via == "signal":
            assert e.timestamp_ns is None and e.signo == sub.signo  # type: ignore[attr-defined]
        else:
            assert e.timestamp_ns is not None and e.signo is None
            assert e.latency_ns is not None and 0 <= e.latency_ns < 60 * 10**9
    assert sub.lost == 0


def test_the_descriptor_to_wait_on_wakes(dev: upcall.Device, via: str) -> None:
    """fileno() becomes readable by the transport's own notification, before any read."""
    with dev.subscribe(via) as sub:
        assert select.select([sub.fileno()], [], [], 0)[0] == []
        dev.emit(1)
        assert select.select([sub.fileno()], [], [], 30)[0] == [sub.fileno()]
        assert [e.value for e in sub.read(1, timeout=0)] == [1]
        if via == "eventfd":
            assert sub.signalled >= 1  # type: ignore[attr-defined]
        if via == "fasync":
            assert sub.notifications >= 1 and sub.foreign == 0  # type: ignore[attr-defined]


def test_burst_of_100000_is_accounted(dev: upcall.Device, via: str) -> None:
    # The debug kernel (KASAN, lockdep) is 5-10x slower: a tenth there, so
    # the whole suite fits CI's time on both kernels.
    n = 10_000 if REDUCED else 100_000
    with dev.subscribe(via) as sub:
        [events] = burst([sub], n)
        st = check_accounting(sub, events)
    assert st.emitted == n
    assert all(e.value == e.seqno - 1 for e in events)
    print(f"\nburst {via}: received {len(events)} dropped {st.dropped} of {n}")


@pytest.mark.parametrize("via_q", QUEUED)
def test_small_queue_keeps_the_newest(dev: upcall.Device, via_q: str) -> None:
    with dev.subscribe(via_q, queue_size=16) as sub:
        for i in range(100):
            dev.emit(i)
        st = sub.stats()
        assert (st.emitted, st.dropped, st.queued, st.queue_size) == (100, 84, 16, 16)
        events = sub.read(100, timeout=10)
        assert [e.seqno for e in events] == list(range(85, 101))
        assert [e.value for e in events] == list(range(84, 100))
        assert sub.lost == 84
        check_accounting(sub, events)


def test_netlink_overrun_is_counted_loss(dev: upcall.Device) -> None:
    with dev.subscribe("netlink", rcvbuf=1) as sub:
        for i in range(100):
            dev.emit(i)
        events: list[upcall.Event] = []
        drain(sub, events)
        st = check_accounting(sub, events)
        assert st.dropped > 0 and sub.overruns >= 1
        dev.emit(1000)
        events += sub.read(1, timeout=30)
        assert events[-1].seqno == 101 and events[-1].value == 1000
        check_accounting(sub, events)


def test_closing_mid_stream(dev: upcall.Device, via: str) -> None:
    sub = dev.subscribe(via)
    pid = start_emitter(20_000)
    got: list[upcall.Event] = []
    while len(got) < 100:
        got += sub.read(100, timeout=30)
    sub.close()  # while the child still emits
    reap(pid)
    assert dev.emit(0) == 0, "the closed subscriber must be gone"
    round_trip(dev, via)


def test_subscriber_killed_mid_stream(dev: upcall.Device, via: str) -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with upcall.open() as d, d.subscribe(via) as sub:
                os.write(w, b"r")
                while True:
                    sub.read(256, timeout=1)
        finally:
            os._exit(1)
    assert os.read(r, 1) == b"r"
    os.close(r)
    os.close(w)
    for i in range(3000):
        dev.emit(i)
        if i == 1000:
            os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert dev.emit(0) == 0, "the dead subscriber's file must be gone"
    round_trip(dev, via)


@pytest.mark.parametrize(
    ("a", "b"),
    [("queue", "netlink"), ("fasync", "eventfd"), ("signal", "fasync"), ("eventfd", "signal")],
)
def test_two_transports_at_once(dev: upcall.Device, a: str, b: str) -> None:
    n = 1000
    with dev.subscribe(a) as sa, dev.subscribe(b) as sb:
        got_a, got_b = burst([sa, sb], n)
        for sub, events, name in ((sa, got_a, a), (sb, got_b, b)):
            st = check_accounting(sub, events)
            assert st.emitted == n
            assert {e.transport for e in events} <= {name}


@pytest.mark.parametrize("multicast", [False, True])
def test_two_netlink_subscribers_keep_their_own(dev: upcall.Device, multicast: bool) -> None:
    with (
        dev.subscribe_netlink(multicast=multicast) as sa,
        dev.subscribe_netlink(multicast=multicast) as sb,
    ):
        for i in range(50):
            dev.emit(i)
        events_a: list[upcall.Event] = []
        events_b: list[upcall.Event] = []
        drain(sa, events_a)
        drain(sb, events_b)
        assert len(events_a) == len(events_b) == 50
        # Unicast: each socket gets its own subscriber's messages only.
        assert sa.foreign == sb.foreign == (50 if multicast else 0)
        check_accounting(sa, events_a)
        check_accounting(sb, events_b)


def _two_netlink(
    dev: upcall.Device, stack: contextlib.ExitStack[bool | None], *, multicast: bool = False
) -> tuple[upcall.Subscription, list[upcall.Event], upcall.Subscription, list[upcall.Event]]:
    stuck = stack.enter_context(dev.subscribe_netlink(rcvbuf=1, multicast=multicast))
    reader = stack.enter_context(dev.subscribe_netlink(multicast=multicast))
    got_reader: list[upcall.Event] = []
    for i in range(200):
        dev.emit(i)
        got_reader += reader.read(256, timeout=0)
    got_stuck: list[upcall.Event] = []
    drain(reader, got_reader)
    drain(stuck, got_stuck)
    assert stuck.stats().emitted == reader.stats().emitted == 200
    return stuck, got_stuck, reader, got_reader


@pytest.mark.parametrize("multicast", [False, True])
def test_netlink_listener_without_room_counts_its_own_loss(
    dev: upcall.Device, multicast: bool
) -> None:
    """Lost to the full socket: counted, not silent, unicast or multicast."""
    with contextlib.ExitStack() as stack:
        stuck, got_stuck, _, _ = _two_netlink(dev, stack, multicast=multicast)
        st = check_accounting(stuck, got_stuck)
        assert st.dropped > 0 and stuck.overruns >= 1  # type: ignore[attr-defined]


def test_netlink_listener_without_room_costs_the_others_nothing(dev: upcall.Device) -> None:
    with contextlib.ExitStack() as stack:
        stuck, _, reader, got_reader = _two_netlink(dev, stack)
        st = check_accounting(reader, got_reader)
        assert (st.emitted, st.delivered, st.dropped) == (200, 200, 0)
        assert [e.value for e in got_reader] == list(range(200))
        assert stuck.stats().dropped > 0


def test_netlink_stuck_listener_never_read_costs_a_burst_nothing(dev: upcall.Device) -> None:
    """One subscriber's socket stays full for a whole burst; the other gets every event."""
    n = 2_000 if REDUCED else 20_000
    # Room for the whole burst in the module's queue and the reader's socket:
    # any loss of the reader's would be the stuck one's doing.
    with (
        dev.subscribe_netlink(rcvbuf=1) as stuck,
        dev.subscribe_netlink(rcvbuf=1 << 25, queue_size=32768) as reader,
    ):
        [got] = burst([reader], n)  # ``stuck`` is never read meanwhile
        st = check_accounting(reader, got)
        assert (st.emitted, st.dropped, len(got)) == (n, 0, n)
        st_stuck = settle(stuck)
        assert st_stuck.emitted == n and st_stuck.dropped >= n - 100
        assert st_stuck.delivered + st_stuck.dropped == n
        print(f"\nstuck netlink listener: dropped {st_stuck.dropped} of {n}; the reader none")


def test_netlink_socket_is_held_until_the_subscriber_goes(dev: upcall.Device) -> None:
    """Closing the socket does not free its port id for another socket to take the events."""
    fd = os.open("/dev/upcall", os.O_RDONLY)
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
    try:
        sock.bind((0, 0))
        portid = sock.getsockname()[0]
        req = netlink_req(sock.fileno())
        assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, req) == 0
        sock.close()
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC) as other:
            with pytest.raises(OSError) as e:
                other.bind((portid, 0))
            assert e.value.errno == errno.EADDRINUSE
        assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, queue_req()) == 0  # lets go of it
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC) as other:
            other.bind((portid, 0))
    finally:
        sock.close()
        os.close(fd)


def test_netlink_socket_that_refuses_gets_nothing_more(dev: upcall.Device) -> None:
    """A socket connected to another peer refuses the kernel's messages: all counted."""
    fd = os.open("/dev/upcall", os.O_RDONLY)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC) as sock:
        try:
            sock.bind((0, 0))
            sock.connect((0x7FFF0001, 0))
            assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, netlink_req(sock.fileno())) == 0
            for i in range(5):
                dev.emit(i)
            deadline = time.monotonic() + 30
            while (st := stats(fd)).pending and time.monotonic() < deadline:
                time.sleep(0.01)
            assert (st.emitted, st.delivered, st.dropped) == (5, 0, 5)
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(4096)
        finally:
            os.close(fd)
    round_trip(dev, "netlink")


def test_fasync_signal_names_the_file(dev: upcall.Device) -> None:
    with dev.subscribe("fasync") as sub:
        dev.emit(5)
        assert select.select([sub.fileno()], [], [], 30)[0]
        infos = signals.read_siginfos(sub.fileno(), 64)
        assert infos, "no signal"
        assert isinstance(sub, FasyncSubscription)
        for info in infos:
            assert (info.signo, info.code, info.fd) == (sub.signo, POLL_IN, sub.file_fd)
            assert info.band & select.POLLIN
        assert [e.value for e in sub.read(1, timeout=0)] == [5]


def test_fasync_burst_sends_one_sigio_until_read(dev: upcall.Device) -> None:
    """Edge-triggered: N events queued while nobody reads are announced once."""
    n = 3000
    with dev.subscribe("fasync", queue_size=4096) as sub:
        assert isinstance(sub, FasyncSubscription)
        got: list[upcall.Event] = []
        for round_ in (1, 2):
            for i in range(n):
                dev.emit(i)
            assert sub.stats().queued == n
            assert select.select([sub.fileno()], [], [], 30)[0]
            got += sub.read(10, timeout=0)  # takes 10, keeps the rest buffered
            assert sub.notifications == round_ and sub.foreign == 0 and sub.sigio == 0
            assert sub.stats().queued == 0, "one SIGIO: the receiver empties the queue"
            drain(sub, got)
        st = check_accounting(sub, got)
        assert (st.emitted, st.dropped, len(got)) == (2 * n, 0, 2 * n)
        assert sub.notifications == 2
        print(f"\nfasync: {sub.notifications} SIGIOs for {2 * n} events")


def test_fasync_burst_with_a_reader_costs_few_sigios(dev: upcall.Device) -> None:
    n = 2_000 if REDUCED else 20_000
    with dev.subscribe("fasync") as sub:
        [got] = burst([sub], n)
        st = check_accounting(sub, got)
        assert st.emitted == n
        signals_read = sub.notifications + sub.sigio
        # One per read(2) that found the queue empty at most, never per event.
        assert 1 <= signals_read < n
        print(f"\nfasync burst: {signals_read} SIGIOs for {n} events ({st.dropped} dropped)")


def test_fasync_turned_on_with_records_queued_announces_them(dev: upcall.Device) -> None:
    fd = os.open("/dev/upcall", os.O_RDONLY | os.O_NONBLOCK)
    signo = signal.SIGRTMIN + 7
    signal.pthread_sigmask(signal.SIG_BLOCK, {signo})
    try:
        assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, queue_req()) == 0
        dev.emit(1)
        dev.emit(2)  # announced (to nobody yet)
        fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
        fcntl.fcntl(fd, F_SETSIG, signo)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
        info = signal.sigtimedwait({signo}, 30)
        assert info is not None and info.si_code == POLL_IN
        assert len(os.read(fd, 4 * abi.UPCALL_EVENT_SIZE)) == 2 * abi.UPCALL_EVENT_SIZE
    finally:
        os.close(fd)
        while signal.sigtimedwait({signo}, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signo})


def test_fasync_thread_directed(dev: upcall.Device) -> None:
    result: list[object] = []
    signo = signal.SIGRTMIN + 9
    signal.pthread_sigmask(signal.SIG_BLOCK, {signo})  # threads inherit it
    try:

        def worker() -> None:
            try:
                with dev.subscribe("fasync", signo=signo, thread=True) as sub:
                    dev.emit(33)
                    result.extend(e.value for e in sub.read(1, timeout=30))
                    result.append(sub.notifications)
            except BaseException as e:
                result.append(e)

        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert signo not in signal.sigpending()  # nothing went to this thread
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signo})
    assert result[0] == 33 and isinstance(result[1], int) and result[1] >= 1


def test_queue_blocking_read_waits_for_an_event(dev: upcall.Device) -> None:
    fd = os.open("/dev/upcall", os.O_RDONLY)
    try:
        assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, queue_req()) == 0
        t = threading.Thread(target=dev.emit, args=(77,))
        t.start()
        with deadline(60):
            data = os.read(fd, 10 * abi.UPCALL_EVENT_SIZE)  # blocks until the emit
        t.join()
        seqno, _, value, _, _ = abi.EVENT_RECORD.unpack(data)
        assert (seqno, value) == (1, 77)
    finally:
        os.close(fd)


def test_resubscribing_with_another_size_counts_the_queued_as_dropped(dev: upcall.Device) -> None:
    fd = os.open("/dev/upcall", os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, queue_req(16)) == 0
        for i in range(10):
            dev.emit(i)
        assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, queue_req(32)) == 0
        st = stats(fd)
        assert (st.emitted, st.dropped, st.queued, st.queue_size) == (10, 10, 0, 32)
        dev.emit(10)
        seqno, _, value, _, _ = abi.EVENT_RECORD.unpack(os.read(fd, abi.UPCALL_EVENT_SIZE))
        assert (seqno, value) == (11, 10)
    finally:
        os.close(fd)


def test_set_eventfd_minus_one_stops_the_notifications(dev: upcall.Device) -> None:
    fd = os.open("/dev/upcall", os.O_RDONLY | os.O_NONBLOCK)
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, queue_req()) == 0
        assert ioctl(fd, abi.UPCALL_IOC_SET_EVENTFD, abi.UpcallEventfd(fd=efd)) == 0
        dev.emit(1)
        assert select.select([efd], [], [], 30)[0] == [efd]
        assert os.eventfd_read(efd) >= 1
        assert ioctl(fd, abi.UPCALL_IOC_SET_EVENTFD, abi.UpcallEventfd(fd=-1)) == 0
        dev.emit(2)
        # The record is there (poll says so) but the eventfd stays quiet.
        assert select.select([fd], [], [], 30)[0] == [fd]
        assert select.select([efd], [], [], 0)[0] == []
        assert len(os.read(fd, 4 * abi.UPCALL_EVENT_SIZE)) == 2 * abi.UPCALL_EVENT_SIZE
    finally:
        os.close(efd)
        os.close(fd)


def test_netlink_emit_command(dev: upcall.Device) -> None:
    with dev.subscribe("queue") as sub:
        send_command(
            abi.UPCALL_CMD_EMIT, [("UPCALL_ATTR_VALUE", U64), ("UPCALL_ATTR_SOURCE", 0x300)]
        )
        send_command(abi.UPCALL_CMD_EMIT, [("UPCALL_ATTR_VALUE", 5)])
        events = sub.read(2, timeout=30)
    assert [(e.value, e.source) for e in events] == [(U64, 0x300), (5, 0)]


# -- bad input: each gets its errno and leaves the module healthy -------------------------


def queue_req(size: int = 0, **fields: int) -> abi.UpcallSubscribe:
    return abi.UpcallSubscribe(transport=abi.UPCALL_TRANSPORT_QUEUE, queue_size=size, **fields)


def socket_in_another_netns() -> int:
    """A bound NETLINK_GENERIC socket made in a new network namespace, passed back here."""
    here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    pid = os.fork()
    if pid == 0:
        try:
            if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) == 0:
                s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
                s.bind((0, 0))
                socket.send_fds(there, [b"s"], [s.fileno()])
                os._exit(0)
        finally:
            os._exit(1)
    with here, there:
        reap(pid)
        _, fds, _, _ = socket.recv_fds(here, 1, 1)
    return fds[0]


def netlink_req(netlink_fd: int, **fields: int) -> abi.UpcallSubscribe:
    return abi.UpcallSubscribe(
        transport=abi.UPCALL_TRANSPORT_NETLINK,
        flags=abi.UPCALL_SUBSCRIBE_UNICAST,
        netlink_fd=netlink_fd,
        **fields,
    )


@pytest.fixture
def healthy_after(dev: upcall.Device) -> Iterator[None]:
    yield
    round_trip(dev, "queue")


@pytest.fixture
def rfd() -> Iterator[int]:
    fd = os.open("/dev/upcall", os.O_RDONLY | os.O_NONBLOCK)
    yield fd
    os.close(fd)


def read_errno(fd: int, n: int) -> int:
    with pytest.raises(OSError) as e:
        os.read(fd, n)
    return e.value.errno or 0


@pytest.mark.usefixtures("healthy_after")
class TestBadInput:
    @pytest.mark.parametrize("n", [0, 1, abi.UPCALL_EVENT_SIZE - 1])
    def test_read_shorter_than_a_record(self, dev: upcall.Device, rfd: int, n: int) -> None:
        assert ioctl(rfd, abi.UPCALL_IOC_SUBSCRIBE, queue_req()) == 0
        dev.emit(8)
        assert read_errno(rfd, n) == errno.EINVAL
        # The record is still there, whole.
        data = os.read(rfd, abi.UPCALL_EVENT_SIZE + n)
        assert len(data) == abi.UPCALL_EVENT_SIZE
        assert abi.EVENT_RECORD.unpack(data)[2] == 8

    @pytest.mark.parametrize("transport", ["none", "signal", "netlink"])
    def test_read_on_a_subscriber_that_is_not_a_queue(
        self, dev: upcall.Device, rfd: int, transport: str
    ) -> None:
        sig = signal.SIGRTMIN + 8
        signal.pthread_sigmask(signal.SIG_BLOCK, {sig})
        try:
            if transport == "signal":
                req = abi.UpcallSubscribe(transport=abi.UPCALL_TRANSPORT_SIGNAL, signo=sig)
                assert ioctl(rfd, abi.UPCALL_IOC_SUBSCRIBE, req) == 0
            elif transport == "netlink":
                req = abi.UpcallSubscribe(transport=abi.UPCALL_TRANSPORT_NETLINK)
                assert ioctl(rfd, abi.UPCALL_IOC_SUBSCRIBE, req) == 0
            dev.emit(1)
            assert read_errno(rfd, abi.UPCALL_EVENT_SIZE) == errno.EINVAL
            # Blocking or not: never waits for records that cannot come.
            fcntl.fcntl(rfd, fcntl.F_SETFL, 0)
            with deadline(30):
                assert read_errno(rfd, abi.UPCALL_EVENT_SIZE) == errno.EINVAL
        finally:
            while signal.sigtimedwait({sig}, 0) is not None:
                pass
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})

    @pytest.mark.parametrize("kind", ["pipe", "devnull", "itself", "socket", "signalfd"])
    def test_set_eventfd_with_something_else(self, rfd: int, kind: str) -> None:
        fds: list[int] = []
        if kind == "pipe":
            fds = list(os.pipe())
            other = fds[0]
        elif kind == "devnull":
            other = os.open(os.devnull, os.O_RDONLY)
            fds = [other]
        elif kind == "socket":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            other = s.detach()
            fds = [other]
        elif kind == "signalfd":
            other = signals.open_signalfd(signal.SIGRTMIN + 8)
            fds = [other]
        else:
            other = rfd
        try:
            assert ioctl(rfd, abi.UPCALL_IOC_SUBSCRIBE, queue_req()) == 0
            req = abi.UpcallEventfd(fd=other)
            assert ioctl(rfd, abi.UPCALL_IOC_SET_EVENTFD, req) == -errno.EINVAL
        finally:
            for fd in fds:
                os.close(fd)

    @pytest.mark.parametrize("fd", ["closed", "huge", "minus_two"])
    def test_set_eventfd_with_no_file(self, rfd: int, fd: str) -> None:
        if fd == "closed":
            number = os.eventfd(0)
            os.close(number)
        else:
            number = {"huge": 1 << 30, "minus_two": -2}[fd]
        req = abi.UpcallEventfd(fd=number)
        assert ioctl(rfd, abi.UPCALL_IOC_SET_EVENTFD, req) == -errno.EBADF

    @pytest.mark.parametrize("field", ["flags", "reserved0", "reserved1"])
    def test_set_eventfd_nonzero_fields(self, rfd: int, field: str) -> None:
        efd = os.eventfd(0)
        try:
            req = abi.UpcallEventfd(fd=efd)
            if field == "flags":
                req.flags = 1
            else:
                req.reserved[int(field[-1])] = 1
            assert ioctl(rfd, abi.UPCALL_IOC_SET_EVENTFD, req) == -errno.EINVAL
        finally:
            os.close(efd)

    def test_set_eventfd_needs_read_access(self) -> None:
        fd = os.open("/dev/upcall", os.O_WRONLY)
        efd = os.eventfd(0)
        try:
            assert ioctl(fd, abi.UPCALL_IOC_SET_EVENTFD, abi.UpcallEventfd(fd=efd)) == -errno.EBADF
        finally:
            os.close(efd)
            os.close(fd)

    @pytest.mark.parametrize("transport", [4, 99, 2**32 - 1])
    def test_unknown_transport(self, rfd: int, transport: int) -> None:
        req = abi.UpcallSubscribe(transport=transport)
        assert ioctl(rfd, abi.UPCALL_IOC_SUBSCRIBE, req) == -errno.EINVAL

    @pytest.mark.parametrize(
        "transport", [abi.UPCALL_TRANSPORT_QUEUE, abi.UPCALL_TRANSPORT_NETLINK]
    )
    def test_signo_with_a_transport_without_signals(self, rfd: int, transport: int) -> None:
        req = abi.UpcallSubscribe(transport=transport, signo=signal.SIGRTMIN + 8)
        assert ioctl(rfd, abi.UPCALL_IOC_SUBSCRIBE, req) == -errno.EINVAL

    @pytest.mark.parametrize(
        "kind", ["pipe", "closed", "udp", "route", "unbound", "queue", "no_flag", "other_netns"]
    )
    def test_netlink_unicast_with_a_bad_socket(self, rfd: int, kind: str) -> None:
        want = errno.EINVAL
        fds: list[int] = []
        req = None
        if kind == "pipe":
            fds = list(os.pipe())
            req, want = netlink_req(fds[0]), errno.ENOTSOCK
        elif kind == "closed":
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
            number = s.fileno()
            s.close()
            req, want = netlink_req(number), errno.EBADF
        else:
            if kind == "udp":
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            elif kind == "route":
                s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
                s.bind((0, 0))
            else:
                s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
                if kind != "unbound":
                    s.bind((0, 0))
            fds = [s.detach()]
            req = netlink_req(fds[0])
            if kind == "queue":
                req.transport = abi.UPCALL_TRANSPORT_QUEUE
            elif kind == "no_flag":
                req.flags = 0
            elif kind == "other_netns":
                fds.append(socket_in_another_netns())
                req.netlink_fd = fds[-1]
        try:
            assert ioctl(rfd, abi.UPCALL_IOC_SUBSCRIBE, req) == -want
            assert stats(rfd).transport == abi.UPCALL_TRANSPORT_NONE
        finally:
            for fd in fds:
                os.close(fd)

    @pytest.mark.parametrize("size", [1, abi.UPCALL_QUEUE_MAX + 1, 2**31, 2**32 - 1])
    @pytest.mark.parametrize("transport", ["queue", "netlink", "signal"])
    def test_queue_size_out_of_range(self, rfd: int, size: int, transport: str) -> None:
        sig = signal.SIGRTMIN + 8
        req = abi.UpcallSubscribe(
            transport=getattr(abi, f"UPCALL_TRANSPORT_{transport.upper()}"),
            signo=sig if transport == "signal" else 0,
            queue_size=size,
        )
        assert ioctl(rfd, abi.UPCALL_IOC_SUBSCRIBE, req) == -errno.EINVAL
        assert stats(rfd).transport == abi.UPCALL_TRANSPORT_NONE

    @pytest.mark.parametrize(
        ("size", "actual"),
        [(0, abi.UPCALL_QUEUE_DEFAULT), (2, 2), (3, 4), (1000, 1024), (65536, 65536)],
    )
    def test_queue_size_rounded_up(self, rfd: int, size: int, actual: int) -> None:
        assert ioctl(rfd, abi.UPCALL_IOC_SUBSCRIBE, queue_req(size)) == 0
        assert stats(rfd).queue_size == actual

    @pytest.mark.parametrize(
        ("attrs", "errnos"),
        [
            ([], {errno.EINVAL}),
            ([("UPCALL_ATTR_SOURCE", 1)], {errno.EINVAL}),
            (
                [("UPCALL_ATTR_VALUE", 1), ("UPCALL_ATTR_SOURCE", 0x10000)],
                {errno.ERANGE, errno.EINVAL},
            ),
            (
                [("UPCALL_ATTR_VALUE", 1), ("UPCALL_ATTR_SOURCE", 2**32 - 1)],
                {errno.ERANGE, errno.EINVAL},
            ),
        ],
    )
    def test_netlink_emit_with_bad_attributes(
        self, dev: upcall.Device, attrs: list[tuple[str, int]], errnos: set[int]
    ) -> None:
        with dev.subscribe("queue") as sub:
            with pytest.raises(OSError) as e:
                send_command(abi.UPCALL_CMD_EMIT, attrs)
            assert e.value.errno in errnos
            assert sub.stats().emitted == 0  # nothing was emitted
