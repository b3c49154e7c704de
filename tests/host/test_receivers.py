"""The queue, fasync, eventfd and netlink receivers, against honest stand-ins.

The host kernel cannot load the module: :class:`fakes.FakeQueueFile` plays
one QUEUE subscriber's file with a pipe (whole records, poll, the kernel's
own SIGIO-style signal, an eventfd signalled per record). Everything on the
receiving side is the real code.

Netlink messages are parsed from hand-built bytes, received through a real
netlink socket with recvmmsg(2), and, in a private network namespace (root
only), multicast to a real group to see ENOBUFS counted as loss.
"""

from __future__ import annotations

import array
import ctypes
import errno
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import FakeQueueFile, is_eventfd, reads_in_main_thread, signal_state_guard  # noqa: F401 - fixture
from hypothesis import given, settings
from hypothesis import strategies as st

import upcall
from upcall import _accel, abi
from upcall import _device as device
from upcall import _signals as signals
from upcall._errors import DeviceError, SignalSetupError, WrongThreadError
from upcall._event import Event, monotonic_ns
from upcall._signals import choose_signal
from upcall._transports import nlmsg, records
from upcall._transports.eventfd import EventfdSubscription
from upcall._transports.fasync import FasyncSubscription
from upcall._transports.mmsg import DatagramReader
from upcall._transports.netlink import resolve_family, send_command
from upcall._transports.queue import QueueSubscription

pytestmark = pytest.mark.usefixtures("signal_state_guard")

U64 = (1 << 64) - 1


KINDS = ["queue", "fasync", "eventfd"]


def make(kind: str, file: FakeQueueFile, queue_size: int | None = None) -> QueueSubscription:
    if kind == "fasync":
        return FasyncSubscription(file, queue_size=queue_size)
    if kind == "eventfd":
        return EventfdSubscription(file, queue_size)
    return QueueSubscription(file, queue_size)


@pytest.fixture
def file() -> FakeQueueFile:
    return FakeQueueFile()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sub(kind: str, file: FakeQueueFile) -> Iterator[QueueSubscription]:
    with make(kind, file) as s:
        yield s


def values(events: list[Event]) -> list[int]:
    return [e.value for e in events]


# -- records ------------------------------------------------------------------------------


@given(
    st.lists(
        st.tuples(
            st.integers(1, U64),
            st.integers(0, U64),
            st.integers(0, U64),
            st.integers(0, 0xFFFFFFFF),
            st.integers(0, 0xFFFFFFFF),
        ),
        max_size=20,
    )
)
def test_records_decode_as_the_header_lays_them_out(
    fields: list[tuple[int, int, int, int, int]],
) -> None:
    data = b"".join(
        bytes(abi.UpcallEvent(seqno=s, timestamp_ns=t, value=v, source=src, flags=f))
        for s, t, v, src, f in fields
    )
    # Equal to what the public constructor builds (decode uses make_event).
    assert records.decode(data, "queue", 123) == [
        Event(s, v, src, "queue", t, 123, None, f) for s, t, v, src, f in fields
    ]


def test_reserved_bytes_are_ignored() -> None:
    ev = abi.UpcallEvent(seqno=1, value=2)
    ev.reserved[3] = 0xFFFFFFFF
    assert records.decode(bytes(ev), "queue", 0)[0].value == 2


@pytest.mark.parametrize("size", [1, 47, 49, 95])
def test_partial_record_refused(size: int) -> None:
    with pytest.raises(ValueError, match="whole number"):
        records.decode(bytes(size), "queue", 0)


# -- the queue, with each way of waiting for it ---------------------------------------------


@pytest.mark.parametrize(
    ("sent", "unsigned"), [(0, 0), (-1, U64), (U64, U64), (-(1 << 63), 1 << 63)]
)
def test_value_round_trip(
    kind: str, file: FakeQueueFile, sub: QueueSubscription, sent: int, unsigned: int
) -> None:
    file.emit(sent, source=abi.UPCALL_SOURCE_MAX, timestamp_ns=monotonic_ns() - 5000)
    (ev,) = sub.read(1, timeout=5)
    assert (ev.seqno, ev.value, ev.source, ev.transport) == (1, unsigned, 0xFFFF, kind)
    assert ev.signed_value == (sent if sent < 1 << 63 else sent - (1 << 64))
    assert ev.signo is None and ev.flags == 0
    assert ev.latency_ns is not None and ev.latency_ns >= 5000


def test_subscribes_as_queue_with_the_size(kind: str, file: FakeQueueFile) -> None:
    with make(kind, file, queue_size=16):
        assert file.transport == abi.UPCALL_TRANSPORT_QUEUE
        assert file.queue_sizes == [16]
        assert os.get_blocking(file.fileno()) is False
        assert (file.eventfd >= 0) == (kind == "eventfd")
    assert file.closed


@pytest.mark.parametrize("size", [1, abi.UPCALL_QUEUE_MAX + 1])
def test_queue_size_out_of_range(kind: str, file: FakeQueueFile, size: int) -> None:
    with pytest.raises(ValueError, match="queue_size"):
        make(kind, file, queue_size=size)
    assert file.closed and file.queue_sizes == []


def test_fileno_is_ready_after_an_emit(
    kind: str, file: FakeQueueFile, sub: QueueSubscription
) -> None:
    """The descriptor to wait on becomes readable: the notification itself works."""
    assert select.select([sub.fileno()], [], [], 0)[0] == []
    file.emit(1)
    assert select.select([sub.fileno()], [], [], 5)[0] == [sub.fileno()]
    expected = {"queue": file.fileno(), "eventfd": file.eventfd}.get(kind)
    if expected is not None:
        assert sub.fileno() == expected


def test_seqnos_carry_on_from_an_earlier_subscription(kind: str, file: FakeQueueFile) -> None:
    file.seqno = 41  # the file subscribed before, and its seqno carries on
    with make(kind, file) as sub:
        file.emit(5)
        (ev,) = sub.read(1, timeout=5)
    assert ev.seqno == 42 and sub.lost == 0


def test_one_read_takes_the_whole_batch(file: FakeQueueFile, sub: QueueSubscription) -> None:
    for v in range(200):
        file.emit(v)
    events = sub.read(500, timeout=5)
    assert values(events) == list(range(200))
    assert len({e.received_ns for e in events}) == 1  # one read(2)


def test_small_reads_after_one_notification_miss_nothing(
    file: FakeQueueFile, sub: QueueSubscription
) -> None:
    # The first read consumes the notification (eventfd counter, signal):
    # the records left must still be found, without a new one.
    for v in range(5):
        file.emit(v)
    got = [sub.read(1, timeout=0) for _ in range(5)]
    assert [values(g) for g in got] == [[0], [1], [2], [3], [4]]
    assert sub.wait(0) is False
    file.emit(9)
    assert sub.wait(5) is True and values(sub.read()) == [9]


def test_on_event_in_the_main_thread_drains_past_a_batch(
    file: FakeQueueFile, sub: QueueSubscription
) -> None:
    # More than one batch behind one notification: the watcher must read on.
    got: list[tuple[int, bool]] = []
    file.emit(-1)
    sub.on_event(
        lambda ev: got.append((ev.seqno, threading.current_thread() is threading.main_thread()))
    )
    file.emit_many(list(range(200)))
    deadline = time.monotonic() + 10
    while len(got) < 201 and time.monotonic() < deadline:
        sub.run(0.05)
    assert got == [(n, True) for n in range(1, 202)]


def test_run_until_a_callback_closes(file: FakeQueueFile, sub: QueueSubscription) -> None:
    seen: list[int] = []

    @sub.on_event
    def record(ev: Event) -> None:
        seen.append(ev.value)
        if len(seen) == 3:
            sub.close()

    timer = threading.Timer(0.05, lambda: [file.emit(v) for v in range(3)])
    timer.start()
    n = sub.run(timeout=5)
    timer.join()
    assert (seen, n) == ([0, 1, 2], 3)
    assert file.closed


def test_run_reads_in_the_main_thread_then_hands_back(
    file: FakeQueueFile, sub: QueueSubscription, monkeypatch: pytest.MonkeyPatch
) -> None:
    # run() pauses the watcher and reads itself (no hop to the main thread);
    # once it returns, the watcher reads again and the handler dispatches.
    in_main = reads_in_main_thread(sub, monkeypatch)
    got: list[int] = []
    sub.on_event(lambda ev: got.append(ev.seqno))
    # More than a batch behind one notification: run() must read on too.
    timer = threading.Timer(0.05, lambda: file.emit_many(list(range(200))))
    timer.start()
    assert sub.run(timeout=1.0) == 200
    timer.join()
    assert got == list(range(1, 201)) and in_main == [True] * 200
    in_main.clear()
    file.emit(7)
    deadline = time.monotonic() + 10
    while len(got) < 201 and time.monotonic() < deadline:
        time.sleep(0.001)  # Python code runs: the handler dispatches
    assert got[200:] == [201] and in_main == [False]
    assert (sub.received, sub.lost) == (201, 0)


def test_run_from_a_callback_of_run(file: FakeQueueFile, sub: QueueSubscription) -> None:
    # The inner run() must not wait for the watcher the outer one paused.
    got: list[int] = []

    @sub.on_event
    def record(ev: Event) -> None:
        got.append(ev.seqno)
        if ev.seqno == 1:
            file.emit(2)
            sub.run(timeout=0.2)  # dispatches nothing (already dispatching) and returns

    timer = threading.Timer(0.05, lambda: file.emit(1))
    timer.start()
    assert sub.run(timeout=1.0) == 2
    timer.join()
    assert got == [1, 2]


def test_close_from_another_thread_ends_run(file: FakeQueueFile, sub: QueueSubscription) -> None:
    sub.on_event(lambda ev: None)
    timer = threading.Timer(0.05, sub.close)
    timer.start()
    started = time.monotonic()
    assert sub.run(timeout=30) == 0
    timer.join()
    assert time.monotonic() - started < 20 and file.closed


# -- fasync ------------------------------------------------------------------------------


def test_queue_read_one_ready_is_one_read_no_poll(
    file: FakeQueueFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pure-Python path's system calls (test_core.py: the compiled one's).
    monkeypatch.setattr(_accel, "Reader", None)
    with QueueSubscription(file) as q:
        calls: list[str] = []
        real_read = os.read

        def counted_read(fd: int, n: int) -> bytes:
            calls.append("read")
            return real_read(fd, n)

        class NoPoll:
            def __init__(self) -> None:
                calls.append("poll")

        monkeypatch.setattr("upcall._transports.queue.os.read", counted_read)
        monkeypatch.setattr("upcall._subscription.select.poll", NoPoll)
        file.emit(5)
        assert values(q.read(1, timeout=5)) == [5]
        assert calls == ["read"]  # no poll(2) first, though the last read emptied the queue
        file.emit(6)
        file.emit(7)
        assert values(q.read(1, timeout=5)) == [6]
        event = q.poll()
        assert event is not None and event.value == 7
        assert calls == ["read", "read"]  # 7 came with 6, from the buffer


def test_queue_waiting_read_one_waits_first_until_an_event_is_found_waiting(
    file: FakeQueueFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read(1) that had to wait makes the next wait first: poll(2) then one read(2).

    Reading first would find nothing each time (read(2), poll(2), read(2)).
    Once an event is found already waiting, read(1) reads first again.
    """
    # The pure-Python path's system calls (test_core.py: the compiled one's).
    monkeypatch.setattr(_accel, "Reader", None)
    calls: list[str] = []
    real_read = os.read
    real_poll = select.poll

    def counted_read(fd: int, n: int) -> bytes:
        try:
            data = real_read(fd, n)
        except BlockingIOError:
            calls.append("read-empty")
            raise
        calls.append("read")
        return data

    class CountedPoll:
        def __init__(self) -> None:
            self._poll = real_poll()

        def register(self, fd: int, mask: int) -> None:
            self._poll.register(fd, mask)

        def poll(self, timeout: int | None = None) -> list[tuple[int, int]]:
            calls.append("poll")
            return self._poll.poll(timeout)

    monkeypatch.setattr("upcall._transports.queue.os.read", counted_read)
    monkeypatch.setattr("upcall._subscription.select.poll", CountedPoll)

    def later(value: int) -> None:
        timer = threading.Timer(0.05, file.emit, (value,))
        timer.start()
        try:
            assert values(q.read(1)) == [value]
        finally:
            timer.join()

    with QueueSubscription(file) as q:
        later(1)
        assert calls == ["read-empty", "poll", "read"]
        calls.clear()
        later(2)
        assert calls == ["poll", "read"]
        calls.clear()
        file.emit(3)  # there before the call: the next read(1) reads first again
        assert values(q.read(1)) == [3]
        file.emit(4)
        assert values(q.read(1)) == [4]
        assert calls == ["poll", "read", "read"]


@pytest.fixture
def fsub(file: FakeQueueFile) -> Iterator[FasyncSubscription]:
    with FasyncSubscription(file) as s:
        yield s


def test_fasync_notification_is_the_files_poll_in(
    file: FakeQueueFile, fsub: FasyncSubscription
) -> None:
    file.emit(3)
    assert select.select([fsub.fileno()], [], [], 5)[0] == [fsub.fileno()]
    (info,) = signals.read_siginfos(fsub.fileno(), 8)  # what the kernel sent
    assert (info.signo, info.fd, info.code) == (fsub.signo, file.fileno(), 1)  # POLL_IN
    assert info.band & select.POLLIN
    assert values(fsub.read(timeout=5)) == [3]


def test_fasync_counts_and_skips_other_signals(
    file: FakeQueueFile, fsub: FasyncSubscription
) -> None:
    pid = os.getpid()
    # A POLL_IN siginfo forged from user space: its si_fd is the low half of
    # the si_value bytes (SIL_POLL layout), here another descriptor's.
    signals.queue_signal(pid, fsub.signo, code=1, value=file.fileno() + 100)
    signals.queue_signal(pid, fsub.signo, code=-1, value=5)  # sigqueue(3)
    os.kill(pid, signal.SIGIO)  # a plain SIGIO: the kernel's fallback looks so
    file.emit(8)
    assert values(fsub.read(timeout=5)) == [8]
    assert (fsub.foreign, fsub.sigio, fsub.notifications) == (2, 1, 1)


def test_fasync_masks_restored(file: FakeQueueFile) -> None:
    signo = choose_signal()
    assert not signals.is_blocked(signo) and not signals.is_blocked(signal.SIGIO)
    with FasyncSubscription(file, signo) as sub:
        assert signals.is_blocked(signo) and signals.is_blocked(signal.SIGIO)
        for v in range(5):
            file.emit(v)  # notifications left pending at close
        assert sub.signo == signo
    assert not signals.is_blocked(signo) and not signals.is_blocked(signal.SIGIO)


def test_fasync_refused_while_another_thread_has_the_signals(file: FakeQueueFile) -> None:
    release = threading.Event()
    t = threading.Thread(target=release.wait)
    t.start()
    try:
        with pytest.raises(SignalSetupError, match="thread=True"):
            FasyncSubscription(file)
        assert file.closed
    finally:
        release.set()
        t.join()


def test_fasync_refused_when_sigio_has_a_handler(file: FakeQueueFile) -> None:
    previous = signal.signal(signal.SIGIO, lambda n, f: None)
    try:
        with pytest.raises(SignalSetupError, match="SIGIO"):
            FasyncSubscription(file)
        assert file.closed
    finally:
        signal.signal(signal.SIGIO, previous)


def test_fasync_thread_directed(file: FakeQueueFile) -> None:
    result: list[object] = []
    ready, done = threading.Event(), threading.Event()
    holder: list[FasyncSubscription] = []

    def worker() -> None:
        try:
            with FasyncSubscription(file, thread=True) as sub:
                holder.append(sub)
                ready.set()
                file.emit(21)
                result.extend(values(sub.read(timeout=5)))
                done.wait(10)
        except BaseException as e:
            result.append(e)
            ready.set()

    t = threading.Thread(target=worker)
    t.start()
    try:
        assert ready.wait(10)
        # Only the owner thread is signalled, so only it may wait.
        with pytest.raises(WrongThreadError):
            holder[0].poll()
    finally:
        done.set()
        t.join()
    assert result == [21]


FORKED_CHILD_KEEPS_THE_FILE = r"""
import os, signal, sys
sys.path[:0] = [sys.argv[1]]
from fakes import FakeQueueFile
from upcall._transports.fasync import FasyncSubscription
f = FakeQueueFile()
go_r, go_w = os.pipe()
with FasyncSubscription(f) as sub:
    signo = sub.signo
    pid = os.fork()
    if pid == 0:  # shares the open file, like a multiprocessing worker
        os.close(go_w)
        os.read(go_r, 1)  # until the parent closed its subscription
        for _ in range(20):
            f.emit(1)  # the pipe's own kill_fasync would signal the parent
        os._exit(0)
assert signo not in signal.pthread_sigmask(signal.SIG_BLOCK, set())  # unblocked again
os.write(go_w, b"g")
os.waitpid(pid, 0)
print("alive")
"""


def test_fasync_close_stops_the_signals_a_forked_child_would_cause() -> None:
    # Without O_ASYNC turned off at close, the child's writes signal the
    # parent, whose signal is unblocked by then: it dies. In a child, to survive.
    here = str(Path(__file__).parent)
    r = subprocess.run(
        [sys.executable, "-c", FORKED_CHILD_KEEPS_THE_FILE, here],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (r.returncode, r.stdout.strip()) == (0, "alive"), r.stderr


# -- eventfd -----------------------------------------------------------------------------


def test_eventfd_handed_over_and_counted(file: FakeQueueFile) -> None:
    with EventfdSubscription(file) as sub:
        assert is_eventfd(file.eventfd) and sub.fileno() == file.eventfd
        for v in range(3):
            file.emit(v)
        assert values(sub.read(timeout=5)) == [0, 1, 2]
        assert sub.signalled == 3


def test_eventfd_handed_back_on_close(file: FakeQueueFile) -> None:
    with EventfdSubscription(file):
        assert file.eventfd >= 0
    assert file.eventfd == -1  # the module lets go of it even if the file lives on


def test_eventfd_refused_leaves_nothing_open(file: FakeQueueFile) -> None:
    before = set(os.listdir("/proc/self/fd"))

    def refuse(fd: int) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    file.set_eventfd = refuse  # type: ignore[method-assign]
    with pytest.raises(OSError, match="Invalid"):
        EventfdSubscription(file)
    assert file.closed
    assert set(os.listdir("/proc/self/fd")) <= before


# -- Device.subscribe ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("via", "kw", "needle"),
    [
        ("pigeon", {}, "unknown transport"),
        ("queue", {"signo": 40}, "signo and thread"),
        ("eventfd", {"thread": True}, "signo and thread"),
        ("netlink", {"signo": 40}, "signo and thread"),
        ("signal", {"rcvbuf": 4096}, "rcvbuf applies"),
        ("queue", {"queue_size": 1}, "queue_size 1 out of range"),
        ("fasync", {"queue_size": 70000}, "out of range"),
    ],
)
def test_subscribe_arguments_checked(
    via: str, kw: dict[str, object], needle: str, stand_in_device: upcall.Device
) -> None:
    with pytest.raises(ValueError, match=needle):
        stand_in_device.subscribe(via, **kw)  # type: ignore[call-overload]


@pytest.fixture
def stand_in_device(monkeypatch: pytest.MonkeyPatch) -> Iterator[upcall.Device]:
    """/dev/null as the device, past the version check: for what fails before the kernel."""
    version = abi.UpcallVersion(abi=abi.UPCALL_ABI_VERSION, module=b"0")
    monkeypatch.setattr(device, "_module_version", lambda fd, path: version)
    with upcall.open("/dev/null") as dev:
        yield dev


def test_open_of_a_device_without_upcall() -> None:
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(DeviceError, match="/dev/null is not an upcall device"):
        upcall.open("/dev/null")
    assert set(os.listdir("/proc/self/fd")) <= before


@pytest.mark.parametrize(("abi_version", "needle"), [(2, r"module 9\.9 \(ABI 2\)"), (None, "")])
def test_open_names_both_versions_when_they_differ(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, abi_version: int | None, needle: str
) -> None:
    """A module of another ABI, or one older than the version query: one line, both versions."""

    def answer(fd: int, request: int, arg: abi.UpcallVersion, what: str, path: str) -> int:
        if abi_version is None:  # no UPCALL_IOC_VERSION: ENOTTY, and sysfs names it
            raise DeviceError(errno.ENOTTY, "no such ioctl")
        arg.abi, arg.module = abi_version, b"9.9"
        return 0

    sysfs = tmp_path / "version"
    sysfs.write_text("0.1.0\n")
    monkeypatch.setattr(device, "_ioctl", answer)
    monkeypatch.setattr(device, "_SYSFS_VERSION", str(sysfs))
    with pytest.raises(upcall.ModuleVersionError) as e:
        upcall.open("/dev/null")
    line = str(e.value)
    assert "\n" not in line and f"library {upcall.__version__}" in line
    assert re.search(needle or r"module 0\.1\.0 predates ABI versions", line), line


def test_unsubscribe_of_a_filtered_file_sends_no_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    # The module refuses an unsubscribe with any other field (EINVAL), and
    # close() ignores that: a source filter sent with it left the file
    # subscribed, and a blocking read in another thread asleep for ever.
    sent: list[tuple[int, int, int, int]] = []

    def answer(fd: int, request: int, arg: abi.UpcallSubscribe, what: str, path: str) -> int:
        sent.append((arg.transport, arg.flags, arg.source_first, arg.source_last))
        return 0

    monkeypatch.setattr(device, "_ioctl", answer)
    f = device._File("/dev/null", os.O_RDONLY, sources=(0x200, 0x2FF), unsubscribes=True)
    try:
        f.subscribe(abi.UPCALL_TRANSPORT_QUEUE, queue_size=64)
        f.subscribe(abi.UPCALL_TRANSPORT_NONE)
    finally:
        f.close()
    assert sent == [
        (abi.UPCALL_TRANSPORT_QUEUE, abi.UPCALL_SUBSCRIBE_SOURCES, 0x200, 0x2FF),
        (abi.UPCALL_TRANSPORT_NONE, 0, 0, 0),
    ]


@pytest.mark.parametrize("via", ["queue", "fasync", "eventfd"])
def test_subscribe_on_a_device_without_upcall(via: str, stand_in_device: upcall.Device) -> None:
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(DeviceError, match="not an upcall device"):
        stand_in_device.subscribe(via)
    assert set(os.listdir("/proc/self/fd")) - before <= {str(stand_in_device.fileno())}


# -- netlink: parsing hand-built messages --------------------------------------------------

FAMILY = 0x1234
ME = 77


def nla(atype: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), atype) + payload
    return raw + bytes(-len(raw) % 4)


def message(
    attrs: bytes, *, family: int = FAMILY, cmd: int = 1, length: int | None = None
) -> bytes:
    body = struct.pack("=BBH", cmd, 1, 0) + attrs
    n = 16 + len(body) if length is None else length
    return struct.pack("=IHHII", n, family, 0, 0, 0) + body


def kernel_attrs(
    sub: int = ME, seqno: int = 1, ts: int = 2, value: int = 3, source: int = 4, pad: bool = False
) -> bytes:
    """The attributes in the kernel's order; ``pad`` puts a PAD before every u64."""
    out = b""
    for atype, v in ((2, sub), (3, seqno), (4, ts), (5, value)):
        if pad:
            out += nla(abi.UPCALL_ATTR_PAD, b"")
        out += nla(atype, struct.pack("=Q", v))
    return out + nla(6, struct.pack("=I", source))


def parse(data: bytes) -> list[nlmsg.EventFields | str]:
    return nlmsg.parse(data, 0, len(data), FAMILY)


def test_netlink_kernel_layout() -> None:
    data = message(kernel_attrs(seqno=9, ts=10, value=U64, source=0xFFFF))
    assert len(data) == nlmsg.FAST_SIZE == 76
    assert parse(data) == [(ME, 9, 10, U64, 0xFFFF)]


@settings(max_examples=50)
@given(
    st.tuples(*(st.integers(0, U64) for _ in range(4)), st.integers(0, 0xFFFFFFFF)),
    st.booleans(),
)
def test_netlink_round_trip(fields: tuple[int, int, int, int, int], pad: bool) -> None:
    sub, seqno, ts, value, source = fields
    assert parse(message(kernel_attrs(sub, seqno, ts, value, source, pad=pad))) == [fields]


def test_netlink_other_order_and_unknown_attributes() -> None:
    attrs = (
        nla(6, struct.pack("=I", 4))
        + nla(99, b"future")
        + nla(5 | 0x4000, struct.pack("=Q", 3))  # flag bits are not part of the type
        + nla(4, struct.pack("=Q", 2))
        + nla(3, struct.pack("=Q", 1))
        + nla(2, struct.pack("=Q", ME))
    )
    assert parse(message(attrs)) == [(ME, 1, 2, 3, 4)]


def test_netlink_two_messages_in_one_datagram() -> None:
    data = message(kernel_attrs(seqno=1)) + message(kernel_attrs(seqno=2, pad=True))
    assert [m[1] for m in parse(data) if isinstance(m, tuple)] == [1, 2]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (message(kernel_attrs(), family=FAMILY + 1), nlmsg.FOREIGN),
        (message(kernel_attrs(), cmd=abi.UPCALL_CMD_EMIT), nlmsg.FOREIGN),
        (struct.pack("=IHHIIi", 20, 2, 0, 0, 0, 0), nlmsg.FOREIGN),  # NLMSG_ERROR
        (message(kernel_attrs()[12:]), "malformed: no SUBSCRIBER attribute"),
        (message(nla(3, b"1234") + kernel_attrs()[12:]), "malformed: SEQNO has 4 bytes, not 8"),
        (message(kernel_attrs()[:-8] + nla(6, b"12345678")), "malformed: SOURCE has 8 bytes"),
        (message(kernel_attrs(), length=200), "malformed: nlmsg_len 200 outside 16..76"),
        (message(struct.pack("=HH", 40, 2) + bytes(4)), "malformed: attribute length 40"),
        (struct.pack("=IHHII", 18, FAMILY, 0, 0, 0) + b"\x01\x01", "malformed: 18 bytes"),
    ],
)
def test_netlink_not_an_event(data: bytes, expected: str) -> None:
    (got,) = parse(data)
    assert isinstance(got, str) and got.startswith(expected)


SLOT = 128


@settings(max_examples=80)
@given(
    st.lists(
        st.tuples(
            st.tuples(st.integers(0, U64), st.integers(0, U64), st.integers(0, U64)),
            st.integers(0, 0xFFFFFFFF),
            st.sampled_from(["plain", "plain", "plain", "pad", "other-sub", "family", "cut"]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_netlink_batch_in_columns_is_what_parsing_gives(
    datagrams: list[tuple[tuple[int, int, int], int, str]],
) -> None:
    """pack_events: every datagram one plain event of ours, or None (parse each)."""
    buf = bytearray(SLOT * len(datagrams))
    lengths, flags = [], []
    for i, ((seqno, ts, value), source, kind) in enumerate(datagrams):
        data = message(
            kernel_attrs(ME + (kind == "other-sub"), seqno, ts, value, source, pad=kind == "pad"),
            family=FAMILY + (kind == "family"),
        )
        buf[i * SLOT : i * SLOT + len(data)] = data
        lengths.append(len(data) - 4 * (kind == "cut"))
        flags.append(socket.MSG_TRUNC if kind == "cut" else 0)
    got = nlmsg.pack_events(
        buf,
        SLOT,
        len(datagrams),
        memoryview(array.array("I", lengths)),
        memoryview(array.array("I", flags)),
        FAMILY,
        ME,
    )
    if any(kind != "plain" for _, _, kind in datagrams):
        assert got is None
        return
    assert got is not None
    records = [abi.EVENT_RECORD.unpack_from(got, i * 48) for i in range(len(datagrams))]
    parsed = [parse(bytes(buf[i * SLOT : i * SLOT + 76]))[0] for i in range(len(datagrams))]
    assert all(isinstance(p, tuple) for p in parsed)
    assert records == [(p[1], p[2], p[3], p[4], 0) for p in parsed if isinstance(p, tuple)]


# -- netlink: the socket -----------------------------------------------------------------


def test_no_family_without_the_module() -> None:
    # pyroute2 asks the kernel (CTRL_CMD_GETFAMILY); this kernel has no module.
    with pytest.raises(DeviceError, match="is the upcall module loaded") as e:
        resolve_family()
    assert e.value.errno == errno.ENOENT
    with pytest.raises(DeviceError, match="is the upcall module loaded"):
        send_command(abi.UPCALL_CMD_EMIT, [("UPCALL_ATTR_VALUE", 1)])


def test_netlink_subscription_without_the_module_leaves_nothing_open(
    stand_in_device: upcall.Device,
) -> None:
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(DeviceError, match="module loaded"):
        stand_in_device.subscribe("netlink")
    assert set(os.listdir("/proc/self/fd")) - before <= {str(stand_in_device.fileno())}


def test_recvmmsg_takes_many_datagrams_per_call() -> None:
    rx = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, 16)
    tx = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)
    with rx, tx:
        rx.bind((0, 0))
        tx.bind((0, 0))
        port = rx.getsockname()[0]
        reader = DatagramReader(rx.fileno(), slot_size=128, capacity=8)
        assert reader.recv(8) == 0
        sizes = [20, 76, 128, 200]
        for i, n in enumerate(sizes):
            tx.sendto(struct.pack("=IHHII", n, 0x100 + i, 0, 0, 0) + bytes(n - 16), (port, 0))
        assert reader.recv(8) == 4
        got = reader.lengths(4)
        assert [length for length, _ in got] == [20, 76, 128, 128]
        assert [bool(flags & socket.MSG_TRUNC) for _, flags in got] == [False] * 3 + [True]
        types = [struct.unpack_from("=H", reader.buffer, i * 128 + 4)[0] for i in range(4)]
        assert types == [0x100, 0x101, 0x102, 0x103]


NETNS_CHILD = r"""
import ctypes, json, os, socket, struct, sys
sys.path[:0] = [sys.argv[1]]
if ctypes.CDLL(None, use_errno=True).unshare(0x40000000) != 0:  # CLONE_NEWNET
    print(json.dumps({"skip": os.strerror(ctypes.get_errno())}))
    sys.exit(0)
from test_receivers import kernel_attrs, message, FAMILY, ME
from upcall import abi
from upcall.abi import Stats
from upcall._transports.netlink import GenlFamily, NetlinkSubscription

GROUP = 16  # in this private namespace, nobody else listens to nlctrl's group

class File:
    # One NETLINK subscriber file: the id is what the messages are tagged with.
    unsubscribes = False
    def __init__(self): self.calls = []
    def subscribe(self, transport, signo=0, flags=0, queue_size=0, netlink_fd=0):
        self.calls.append((transport, queue_size, flags, netlink_fd))
    def stats(self): return Stats(0, 0, 0, 0, 0, abi.UPCALL_TRANSPORT_NETLINK, 0, id=ME)
    def close(self): pass

tx = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)
tx.bind((0, 0))
def send(seqno, sub=ME, port=0):
    dest = (port, 0) if port else (0, 1 << (GROUP - 1))
    tx.sendto(message(kernel_attrs(sub=sub, seqno=seqno, value=seqno * 10)), dest)

out = {}
f = File()
with NetlinkSubscription(f, queue_size=16, family=GenlFamily(FAMILY, GROUP)) as sub:
    # Unicast: the socket handed over is the one the events come to.
    out["unicast_fd_ok"] = f.calls[0][3] == sub.fileno() and not sub.multicast
    send(1, port=sub.portid); send(2, port=sub.portid)
    out["unicast"] = [[e.seqno, e.value] for e in sub.read(10, timeout=5)]
    out["unicast_calls"] = f.calls
f = File()
with NetlinkSubscription(f, queue_size=16, family=GenlFamily(FAMILY, GROUP), multicast=True) as sub:
    out["calls"] = f.calls
    send(1); send(2, sub=ME + 1); send(3)
    ev = sub.read(10, timeout=5)
    out["small"] = [[e.seqno, e.value, e.transport] for e in ev]
    out["small_foreign"] = sub.foreign
    # read_batch: a plain run in columns, then one with a foreign message in it.
    send(4); send(5); send(6)
    b = sub.read_batch(10, timeout=5)
    out["batch"] = [b.seqno.tolist(), b.value.tolist(), b.transport, len(b)]
    send(7); send(8, sub=ME + 1); send(9)
    b = sub.read_batch(10, timeout=5)
    out["batch_mixed"] = [b.seqno.tolist(), sub.foreign, sub.received, sub.lost]
with NetlinkSubscription(File(), rcvbuf=1, family=GenlFamily(FAMILY, GROUP), multicast=True) as sub:
    n = 300
    for s in range(1, n + 1):
        send(s)  # nobody reads meanwhile: the tiny buffer overflows
    got = sub.read(1000, timeout=5)
    send(n + 1)  # after the overflow, one more arrives
    got += sub.read(1000, timeout=5)
    seqnos = [e.seqno for e in got]
    out["burst"] = {"received": len(got), "lost": sub.lost, "overruns": sub.overruns,
                    "last": seqnos[-1], "seqnos_rise": seqnos == sorted(set(seqnos))}
print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="multicasts in a private network namespace: root")
def test_netlink_multicast_and_overrun_in_a_private_namespace() -> None:
    here = str(Path(__file__).parent)
    r = subprocess.run(
        [sys.executable, "-c", NETNS_CHILD, here], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    if "skip" in out:
        pytest.skip(f"no private network namespace here: {out['skip']}")
    # Subscribed, then on close re-subscribed as a queue: the messages stop.
    assert out["unicast_fd_ok"] and out["unicast"] == [[1, 10], [2, 20]]
    unicast = abi.UPCALL_SUBSCRIBE_UNICAST
    assert [c[:3] for c in out["unicast_calls"]] == [
        [abi.UPCALL_TRANSPORT_NETLINK, 16, unicast],
        [abi.UPCALL_TRANSPORT_QUEUE, 16, 0],
    ]
    assert out["calls"] == [
        [abi.UPCALL_TRANSPORT_NETLINK, 16, 0, 0],
        [abi.UPCALL_TRANSPORT_QUEUE, 16, 0, 0],
    ]
    assert out["small"] == [[1, 10, "netlink"], [3, 30, "netlink"]]
    assert out["small_foreign"] == 1
    assert out["batch"] == [[4, 5, 6], [40, 50, 60], "netlink", 3]
    # 2 and 8 went to another subscriber: foreign here, and gaps in this one's seqnos
    assert out["batch_mixed"] == [[7, 9], 2, 7, 2]
    burst = out["burst"]
    assert burst["overruns"] >= 1, burst
    assert burst["last"] == 301 and burst["seqnos_rise"]
    assert burst["received"] + burst["lost"] == 301
    assert burst["lost"] > 0


# -- batches ----------------------------------------------------------------------------


def test_read_batch_is_columns_over_the_records(
    file: FakeQueueFile, sub: QueueSubscription
) -> None:
    for v in range(100):
        file.emit(v, source=0x300 + v % 3, timestamp_ns=1000 + v)
    batch = sub.read_batch(64, timeout=5)
    assert len(batch) == 64 and batch
    assert batch.seqno.tolist() == list(range(1, 65))
    assert batch.value.tolist() == list(range(64))
    assert batch.source.tolist() == [0x300 + v % 3 for v in range(64)]
    assert batch.timestamp_ns.tolist() == [1000 + v for v in range(64)]
    assert batch.flags.tolist() == [0] * 64
    assert len(batch.records) == 64 * abi.UPCALL_EVENT_SIZE
    events = list(batch)
    assert events == batch.events() and batch[-1] == events[-1] and batch[0] == events[0]
    assert {e.transport for e in events} == {sub.transport}
    assert values(sub.read(100, timeout=5)) == list(range(64, 100))
    assert sub.received == 100 and sub.lost == 0
    assert not sub.read_batch(10, timeout=0)


def test_read_batch_waits_and_times_out(file: FakeQueueFile, sub: QueueSubscription) -> None:
    t = time.monotonic()
    assert len(sub.read_batch(8, timeout=0.05)) == 0
    assert time.monotonic() - t >= 0.04
    timer = threading.Timer(0.05, file.emit, (9,))
    timer.start()
    try:
        assert sub.read_batch(8, timeout=5).value.tolist() == [9]
    finally:
        timer.join()


def test_read_batch_dtype_is_the_records_layout(
    file: FakeQueueFile, sub: QueueSubscription
) -> None:
    # numpy.dtype(batch.dtype) over batch.records; numpy itself is not imported
    # here: its threads would leave the signals unblocked for the fasync tests.
    file.emit(3, source=0x200)
    dtype = sub.read_batch(5, timeout=5).dtype
    assert dtype["itemsize"] == ctypes.sizeof(abi.UpcallEvent)
    assert dtype["offsets"] == [getattr(abi.UpcallEvent, name).offset for name in dtype["names"]]


def test_many_read_one_after_a_burst_cost_no_extra_reads(
    file: FakeQueueFile, sub: QueueSubscription
) -> None:
    for v in range(50):
        file.emit(v)
    got = [sub.read(1, timeout=5)[0].value for _ in range(50)]
    assert got == list(range(50))
    assert sub.read(1, timeout=0) == []
