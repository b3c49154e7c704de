"""The compiled core, upcall._core.Reader: its edge cases, on real descriptors.

The contract (test_contract.py) runs every queue-record transport through
the core and through the pure-Python path; here the C functions themselves:
bad descriptors, a closed wake-up, a torn record, timeouts, counts out of
range, out-of-order seqnos, and the adaptive read-first logic. Errors are
Python exceptions, never a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import inspect
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import tracemalloc
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeQueueFile

from upcall import _accel, abi
from upcall._errors import ClosedError, UpcallError
from upcall._event import Event, make_event
from upcall._signals import SIGNALFD_SIGINFO_SIZE
from upcall._subscription import Subscription
from upcall._transports.fasync import FasyncSubscription
from upcall._transports.queue import QueueSubscription
from upcall._transports.records import encode

if _accel.Reader is None:  # UPCALL_PURE_PYTHON=1, or not built
    if os.environ.get("UPCALL_PURE_PYTHON", "") in ("", "0"):
        pytest.fail("upcall._core is not built: pip install -e . (make deps) builds it")
    pytest.skip("UPCALL_PURE_PYTHON is set", allow_module_level=True)

from upcall._core import Lock, Reader, State


class FakeSub(State):
    """The State, lock and buffer of a Subscription that the Reader uses, and nothing else."""

    def __init__(self) -> None:
        self._lock = Lock()
        self._buffer: deque[Event] = deque()
        self._closed = False
        self._busy = 0
        self._drained = True
        self._last_seqno = 0
        self._received = 0
        self._lost = 0
        self._dispatcher: object | None = None
        self._signalled = 0
        self._sigio = 0
        self._foreign = 0
        self._malformed = 0
        self._overruns = 0
        self.finished = 0

    def _finish(self) -> None:
        self.finished += 1


class Pipe:
    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.sub = FakeSub()

    def reader(self, **options: Any) -> Reader:
        return Reader(
            self.sub, self.r, self.r, self.wake, "queue", Event, ClosedError, UpcallError, **options
        )

    def close(self) -> None:
        for fd in (self.r, self.w, self.wake):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    p = Pipe()
    try:
        yield p
    finally:
        p.close()


def test_events_are_events(pipe: Pipe) -> None:
    reader = pipe.reader()
    os.write(pipe.w, encode(1, 42, 3, 1000, 5) + encode(2, (1 << 64) - 1, 1 << 31, 2000))
    before = time.monotonic_ns()
    events = reader.read_queue(10)
    assert [type(e) for e in events] == [Event, Event]
    a, b = events
    assert a == make_event(1, 42, 3, "queue", 1000, a.received_ns, None, 5)
    assert b == make_event(2, (1 << 64) - 1, 1 << 31, "queue", 2000, a.received_ns, None, 0)
    assert a.received_ns == b.received_ns >= before
    assert hash(a) == hash(make_event(1, 42, 3, "queue", 1000, a.received_ns, None, 5))
    assert repr(a).startswith("Event(seqno=1, value=42, source=3, transport='queue'")
    assert a.latency_ns == a.received_ns - 1000
    with pytest.raises(AttributeError):
        a.value = 1  # frozen, as ever
    assert (pipe.sub._received, pipe.sub._last_seqno, pipe.sub._lost) == (2, 2, 0)


def test_gaps_are_lost_and_disorder_is_an_error(pipe: Pipe) -> None:
    reader = pipe.reader()
    os.write(pipe.w, encode(3, 0) + encode(7, 0))
    assert len(reader.read_queue(2)) == 2
    assert (pipe.sub._received, pipe.sub._last_seqno, pipe.sub._lost) == (2, 7, 5)
    os.write(pipe.w, encode(7, 0))
    with pytest.raises(UpcallError, match="out of order"):
        reader.read_queue(1)


def test_nothing_pending_is_empty_and_timeout_zero_does_not_wait(pipe: Pipe) -> None:
    reader = pipe.reader(read_first=True)
    assert reader.read_queue(64) == []
    start = time.monotonic()
    assert reader.get(1, 64, 0) == []
    assert reader.get(5, 64, 0.0) == []
    assert reader.get(1, 64, -3) == []
    assert time.monotonic() - start < 0.5
    assert pipe.sub._busy == 0


def test_timeout_waits_that_long(pipe: Pipe) -> None:
    reader = pipe.reader()
    start = time.monotonic()
    assert reader.get(1, 64, 0.05) == []
    assert 0.05 <= time.monotonic() - start < 2
    assert pipe.sub._busy == 0


def test_a_torn_record_is_an_error(pipe: Pipe) -> None:
    reader = pipe.reader()
    os.write(pipe.w, encode(1, 0)[:47])
    with pytest.raises(ValueError, match="whole number"):
        reader.get(1, 64, 0)
    assert pipe.sub._busy == 0
    os.write(pipe.w, encode(1, 0)[:20])
    with pytest.raises(ValueError, match="whole number"):
        reader.read_queue(1)


@pytest.mark.parametrize("count", [0, -1, 1 << 62, 1 << 200, -(1 << 200)])
def test_counts_out_of_range_are_value_errors(pipe: Pipe, count: int) -> None:
    reader = pipe.reader()
    with pytest.raises(ValueError):
        reader.read_queue(count)
    with pytest.raises(ValueError):
        reader.get(count, 64, 0)
    with pytest.raises(ValueError):
        reader.get(1, count, 0)
    with pytest.raises(TypeError):
        reader.read_queue(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        reader.get(1, 64, "soon")  # type: ignore[arg-type]


def test_a_large_count_reads_in_chunks(pipe: Pipe) -> None:
    reader = pipe.reader()
    os.write(pipe.w, b"".join(encode(i, i) for i in range(1, 1301)))  # < 64 KiB, the pipe's room
    events = reader.read_queue(1 << 20)
    assert [e.value for e in events] == list(range(1, 1301))


def test_a_bad_descriptor_is_an_os_error(pipe: Pipe) -> None:
    reader = pipe.reader()
    os.close(pipe.r)
    with pytest.raises(OSError):
        reader.read_queue(1)
    with pytest.raises(OSError):
        reader.get(1, 64, 1.0)
    assert pipe.sub._busy == 0


def test_a_closed_wake_up_is_an_os_error_not_a_spin(pipe: Pipe) -> None:
    reader = pipe.reader()
    os.close(pipe.wake)
    start = time.monotonic()
    with pytest.raises(OSError):
        reader.get(1, 64, 5.0)
    assert time.monotonic() - start < 2


def test_closed_is_closed_error_and_finishes_once_not_busy(pipe: Pipe) -> None:
    reader = pipe.reader()
    pipe.sub._closed = True
    with pytest.raises(ClosedError, match="queue subscription is closed"):
        reader.get(1, 64, None)
    assert pipe.sub.finished == 0  # never busy: close() finished it itself


def test_close_from_another_thread_wakes_a_blocked_get(pipe: Pipe) -> None:
    reader = pipe.reader(read_first=True)
    sub = pipe.sub

    def close() -> None:
        time.sleep(0.1)
        with sub._lock:
            sub._closed = True
            os.eventfd_write(pipe.wake, 1)
            busy = sub._busy
        assert busy == 1

    t = threading.Thread(target=close)
    t.start()
    with pytest.raises(ClosedError, match="was closed"):
        reader.get(1, 64, None)
    t.join()
    assert sub._busy == 0 and sub.finished == 1  # the last one busy finished the close


# -- the blocking read (block=True: the module unsubscribes) ----------------------------


def test_blocking_read_is_woken_by_the_unsubscribe(pipe: Pipe) -> None:
    """get() waiting for ever blocks in read(2); close() ends it as the module's unsubscribe does.

    The pipe's writing end closing stands for the module failing the read
    with EINVAL: either way the reader finds the subscription closed.
    """
    reader = pipe.reader(read_first=True, block=True)
    sub = pipe.sub

    def close() -> None:
        time.sleep(0.2)
        with sub._lock:
            sub._closed = True
            os.close(pipe.w)  # the unsubscribe
            busy = sub._busy
        assert busy == 1

    t = threading.Thread(target=close)
    t.start()
    with pytest.raises(ClosedError, match="was closed"):
        reader.get(1, 64, None)
    t.join()
    assert os.get_blocking(pipe.r)  # it waited in read(2), not in poll(2)
    assert sub._busy == 0 and sub.finished == 1


def test_blocking_read_switches_modes_only_when_needed(pipe: Pipe) -> None:
    reader = pipe.reader(read_first=True, block=True)

    def wait_for(value: int) -> list[int]:
        t = threading.Timer(0.1, os.write, (pipe.w, encode(value, value * 10)))
        t.start()
        try:
            return [e.value for e in reader.get(1, 64, None)]
        finally:
            t.join()

    assert wait_for(1) == [10]
    assert os.get_blocking(pipe.r)  # left so for the next wait
    # Anything that must not wait puts it back first: get(timeout=0),
    # read_queue(), nonblocking().
    assert reader.get(1, 64, 0) == [] and not os.get_blocking(pipe.r)
    assert wait_for(2) == [20] and os.get_blocking(pipe.r)
    assert reader.read_queue(8) == [] and not os.get_blocking(pipe.r)
    assert wait_for(3) == [30] and os.get_blocking(pipe.r)
    reader.nonblocking()
    assert not os.get_blocking(pipe.r)
    # An event already there: read at once, without blocking mode.
    os.write(pipe.w, encode(4, 40))
    assert [e.value for e in reader.get(1, 64, 5.0)] == [40] and not os.get_blocking(pipe.r)
    assert (pipe.sub._received, pipe.sub._lost) == (4, 0)


def test_blocking_read_of_the_counter(pipe: Pipe) -> None:
    """eventfd: a get() that waits for ever blocks in read(2) of the counter, then reads the queue.

    close() ends that wait by writing to the counter.
    """
    efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    try:
        reader = pipe.reader(counter_fd=efd, block=True)
        sub = pipe.sub

        def announce() -> None:
            os.write(pipe.w, encode(1, 10) + encode(2, 20))
            os.eventfd_write(efd, 1)

        t = threading.Timer(0.1, announce)
        t.start()
        assert [e.value for e in reader.get(1, 64, None)] == [10]
        t.join()
        assert os.get_blocking(efd) and not os.get_blocking(pipe.r)  # the counter's mode only
        assert sub._signalled == 1 and [e.value for e in sub._buffer] == [20]
        assert [e.value for e in reader.get(1, 64, 0)] == [20]  # buffered: no system call

        def close() -> None:
            time.sleep(0.2)
            with sub._lock:
                sub._closed = True
                os.eventfd_write(efd, 1)

        closer = threading.Thread(target=close)
        closer.start()
        with pytest.raises(ClosedError, match="was closed"):
            reader.get(1, 64, None)
        closer.join()
        assert sub._busy == 0 and sub.finished == 1
        reader.nonblocking()
        assert not os.get_blocking(efd)
    finally:
        os.close(efd)


def test_blocking_read_takes_a_late_run(pipe: Pipe) -> None:
    """Records older than the last seqno accounted fill the gap they were counted in.

    That happens when another thread reads later records while a blocking
    read(2) is on its way back with earlier ones; the state is set up here
    as if it had (8 to 10 read, 5 to 7 counted lost meanwhile).
    """
    reader = pipe.reader(block=True)
    sub = pipe.sub
    sub._last_seqno, sub._lost, sub._received = 10, 3, 7
    t = threading.Timer(0.1, os.write, (pipe.w, encode(5, 50) + encode(6, 60)))
    t.start()
    assert [e.seqno for e in reader.get(2, 64, None)] == [5, 6]
    t.join()
    assert (sub._last_seqno, sub._lost, sub._received) == (10, 1, 9)
    # Not a blocking read's: out of order, as ever.
    os.write(pipe.w, encode(7, 70))
    with pytest.raises(UpcallError, match="out of order"):
        reader.read_queue(1)


def test_dispatched_subscription_is_not_read_but_fetched(pipe: Pipe) -> None:
    # get() is read()'s; fetch() is run()'s, which dispatches what it reads.
    reader = pipe.reader()
    pipe.sub._dispatcher = object()
    with pytest.raises(UpcallError, match="on_event"):
        reader.get(1, 64, 0)
    os.write(pipe.w, encode(1, 0) + encode(2, 0))
    assert [e.seqno for e in reader.fetch(1, 64, 0)] == [1]
    assert [e.seqno for e in reader.fetch(5, 64, None)] == [2]
    assert reader.fetch(1, 64, 0) == []
    with pytest.raises(TypeError, match="fetch"):
        reader.fetch(1, 64)  # type: ignore[call-arg]
    pipe.sub._closed = True
    with pytest.raises(ClosedError):
        reader.fetch(1, 64, 0)


def test_check_thread_runs_before_a_read(pipe: Pipe) -> None:
    def refuse() -> None:
        raise RuntimeError("not this thread")

    os.write(pipe.w, encode(1, 9))
    with pytest.raises(RuntimeError, match="not this thread"):
        pipe.reader(check_thread=refuse).get(1, 64, 0)
    assert [e.value for e in pipe.reader(check_thread=lambda: None).get(1, 64, 0)] == [9]


def _siginfo(signo: int, code: int, fd: int = 0, errno: int = 0, ptr: int = 0) -> bytes:
    """A struct signalfd_siginfo: ssi_signo, ssi_errno, ssi_code, ssi_fd and ssi_ptr set."""
    info = bytearray(SIGNALFD_SIGINFO_SIZE)
    struct.pack_into("=Iii", info, 0, signo, errno, code)
    struct.pack_into("=i", info, 20, fd)
    struct.pack_into("=Q", info, 48, ptr)
    return bytes(info)


def test_signal_fd_is_drained_and_counted_by_kind(pipe: Pipe) -> None:
    """fasync's notifications: this file's POLL_IN signal, a plain SIGIO, or foreign.

    A pipe plays the signalfd: the core reads whole siginfos from it, more
    than one read(2) holds (32), until it is empty.
    """
    sr, sw = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        signo = signal.SIGRTMIN + 3
        infos = [_siginfo(signo, 1, pipe.r)] * 40 + [
            _siginfo(signal.SIGIO, 1, pipe.r),
            _siginfo(signo, 1, pipe.r + 100),  # another file's
            _siginfo(signo, 0, pipe.r),  # not POLL_IN
            _siginfo(signo + 1, 1, pipe.r),
        ]
        os.write(sw, b"".join(infos))
        os.write(pipe.w, encode(1, 9))
        pipe.sub._foreign = 2  # stale ones counted at subscribe are kept
        reader = pipe.reader(signal_fd=sr, signo=signo)
        assert [e.value for e in reader.get(1, 64, 0)] == [9]
        assert (pipe.sub._signalled, pipe.sub._sigio, pipe.sub._foreign) == (40, 1, 5)
        with pytest.raises(BlockingIOError):
            os.read(sr, 1)
    finally:
        os.close(sr)
        os.close(sw)


def test_siginfos_are_the_signal_transports_events(pipe: Pipe) -> None:
    """The signal transport: each upcall signal an event, its seqno's low 32 bits extended.

    A pipe plays the signalfd. Signals without upcall's si_code, or of
    another number, are foreign; a seqno's low bits that wrap go on past
    2**32; a gap is lost.
    """
    signo = signal.SIGRTMIN + 2
    pipe.sub._last_seqno = (1 << 32) - 2
    infos = [
        _siginfo(signo, abi.si_code_for_source(0), errno=-1, ptr=10),  # 2**32 - 1
        _siginfo(signo, -6, errno=0, ptr=11),  # SI_TKILL: not upcall's
        _siginfo(signo + 1, abi.si_code_for_source(0), errno=0),  # another signal
        _siginfo(signo, abi.si_code_for_source(7), errno=0, ptr=(1 << 64) - 1),  # 2**32
        _siginfo(signo, abi.si_code_for_source(abi.UPCALL_SOURCE_MAX), errno=3, ptr=12),
    ]
    os.write(pipe.w, b"".join(infos))
    before = time.monotonic_ns()
    reader = Reader(
        pipe.sub, pipe.r, pipe.r, pipe.wake, "signal", Event, ClosedError, UpcallError,
        siginfos=True, signo=signo,
    )  # fmt: skip
    events = reader.get(5, 64, 0)
    assert [(e.seqno, e.value, e.source, e.signo) for e in events] == [
        ((1 << 32) - 1, 10, 0, signo),
        (1 << 32, (1 << 64) - 1, 7, signo),
        ((1 << 32) + 3, 12, abi.UPCALL_SOURCE_MAX, signo),
    ]
    e = events[0]
    assert (e.transport, e.timestamp_ns, e.flags) == ("signal", None, 0)
    assert e.received_ns >= before and e == make_event(
        (1 << 32) - 1, 10, 0, "signal", None, e.received_ns, signo, 0
    )
    st = pipe.sub
    assert (st._received, st._lost, st._foreign, st._last_seqno) == (3, 2, 2, (1 << 32) + 3)
    os.write(pipe.w, b"x" * 100)  # not whole siginfos
    with pytest.raises(ValueError, match="multiple of 128"):
        reader.get(1, 64, 0)
    with pytest.raises(ValueError, match="siginfos"):
        pipe.reader(siginfos=True, signo=signo, block=True)


def test_check_thread_is_skipped_in_its_thread_and_called_in_another(pipe: Pipe) -> None:
    """``tid``: the thread that may read, told without calling ``check_thread``."""
    calls: list[int] = []

    def check() -> None:
        calls.append(threading.get_native_id())
        raise UpcallError("not this thread")

    reader = pipe.reader(check_thread=check, tid=threading.get_native_id())
    os.write(pipe.w, encode(1, 5))
    assert [e.value for e in reader.get(1, 64, 0)] == [5]
    assert calls == []
    errors: list[BaseException] = []

    def other() -> None:
        try:
            reader.get(1, 64, 0)
        except UpcallError as exc:
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(calls) == 1 and calls[0] != threading.get_native_id() and len(errors) == 1
    # This thread's id is read once, and again in a child process: its
    # thread is another one, so the check is called there.
    os.write(pipe.w, encode(2, 6))
    pid = os.fork()
    if pid == 0:
        try:
            reader.get(1, 64, 0)
            code = 1  # the check was skipped
        except UpcallError:
            code = 0 if calls[-1] == threading.get_native_id() else 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [e.value for e in reader.get(1, 64, 0)] == [6]  # the parent's thread still may


def _nl_event(
    sub: int, seqno: int, value: int, *, family: int = 0x1234, pad: bool = False
) -> bytes:
    """An UPCALL_CMD_EVENT message: the kernel's own layout, or with PAD attributes."""
    attrs = b""
    for atype, v in ((2, sub), (3, seqno), (4, seqno * 10), (5, value)):
        if pad:
            attrs += struct.pack("=HH", 4, abi.UPCALL_ATTR_PAD)
        attrs += struct.pack("=HHQ", 12, atype, v)
    body = struct.pack("=BBH", abi.UPCALL_CMD_EVENT, 1, 0) + attrs + struct.pack("=HHI", 8, 6, 7)
    return struct.pack("=IHHII", 16 + len(body), family, 0, 0, 0) + body


def test_netlink_datagrams_in_the_kernels_layout_and_the_rest(pipe: Pipe) -> None:
    """The netlink transport: a datagram socket plays the netlink socket.

    The kernel's own layout is decoded in C (ours an event, another
    subscriber's foreign); any other datagram goes to decode_datagram, in
    order; a truncated one is malformed.
    """
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    slow: list[bytes] = []
    sub = pipe.sub

    def decode_datagram(data: bytes) -> list[Event]:
        slow.append(data)
        sub._foreign += 1  # what the Python parser would count, here by hand
        return [make_event(3, 30, 0, "netlink", 0, 0, None, 0)]

    try:
        b.setblocking(False)
        datagrams = [
            _nl_event(77, 1, 10),
            _nl_event(78, 2, 20),  # another subscriber's
            _nl_event(77, 3, 30, pad=True),  # not the fast layout: Python's
            b"\0" * 300,  # longer than a slot (256): truncated
            _nl_event(77, 5, (1 << 64) - 1),
        ]
        for d in datagrams:
            a.send(d)
        reader = Reader(
            sub, b.fileno(), b.fileno(), pipe.wake, "netlink", Event, ClosedError, UpcallError,
            netlink_family=0x1234, netlink_id=77, decode_datagram=decode_datagram,
        )  # fmt: skip
        before = time.monotonic_ns()
        events = reader.get(10, 64, 0)
        assert [(e.seqno, e.value, e.source) for e in events] == [
            (1, 10, 7),
            (3, 30, 0),
            (5, (1 << 64) - 1, 7),
        ]
        e = events[0]
        assert (e.transport, e.timestamp_ns, e.signo, e.flags) == ("netlink", 10, None, 0)
        assert e.received_ns >= before
        assert slow == [datagrams[2]]
        assert (sub._foreign, sub._malformed, sub._overruns) == (2, 1, 0)
        # 1 and 5 accounted here (decode_datagram accounts its own): 2 and 4 lost
        assert (sub._received, sub._last_seqno, sub._lost) == (2, 5, 3)
        assert reader.get(1, 64, 0) == []
        a.send(_nl_event(77, 4, 0))  # out of order
        with pytest.raises(UpcallError, match="out of order"):
            reader.get(1, 64, 0)
        with pytest.raises(ValueError, match="decode_datagram"):
            pipe.reader(netlink_family=0x1234)
        with pytest.raises(ValueError, match="netlink_family"):
            pipe.reader(netlink_family=0x1234, decode_datagram=decode_datagram, block=True)
    finally:
        a.close()
        b.close()


def test_counter_fd_is_read_and_summed(pipe: Pipe) -> None:
    efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    try:
        reader = pipe.reader(counter_fd=efd)
        os.eventfd_write(efd, 3)
        os.write(pipe.w, encode(1, 1))
        assert len(reader.get(1, 64, 0)) == 1
        assert pipe.sub._signalled == 3
    finally:
        os.close(efd)


def test_surplus_is_buffered_in_order(pipe: Pipe) -> None:
    reader = pipe.reader(read_first=True)
    os.write(pipe.w, b"".join(encode(i, i) for i in range(1, 6)))
    assert [e.value for e in reader.get(1, 64, 0)] == [1]
    assert [e.value for e in pipe.sub._buffer] == [2, 3, 4, 5]
    assert [e.value for e in reader.get(2, 64, 0)] == [2, 3]
    os.write(pipe.w, encode(6, 6))
    assert [e.value for e in reader.get(5, 64, 0)] == [4, 5, 6]
    assert not pipe.sub._buffer


def test_rounds_read_until_a_short_read(pipe: Pipe) -> None:
    reader = pipe.reader(min_read=2, rounds=64)
    os.write(pipe.w, b"".join(encode(i, i) for i in range(1, 8)))
    assert [e.value for e in reader.get(1, 1, 0)] == [1]
    assert len(pipe.sub._buffer) == 6


def test_bad_arguments_are_refused(pipe: Pipe) -> None:
    class NoSlots:
        pass

    with pytest.raises(TypeError):
        Reader(pipe.sub, pipe.r, pipe.r, pipe.wake, "q", NoSlots, ClosedError, UpcallError)
    with pytest.raises(TypeError, match="State"):
        Reader(object(), pipe.r, pipe.r, pipe.wake, "q", Event, ClosedError, UpcallError)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Reader(pipe.sub, -1, pipe.r, pipe.wake, "q", Event, ClosedError, UpcallError)
    with pytest.raises(ValueError):
        pipe.reader(rounds=0)
    with pytest.raises(TypeError):
        pipe.reader(check_thread=3)
    with pytest.raises(ValueError, match="signo"):
        pipe.reader(signal_fd=pipe.r)
    with pytest.raises(RuntimeError):
        Reader.__new__(Reader).get(1, 1, 0)


@pytest.mark.parametrize("unsubscribes", [False, True])
def test_read_first_adapts(unsubscribes: bool) -> None:
    """A read(1) that had to wait waits first next time, until one finds its event waiting.

    Not a read(1) that waits in a blocking read(2) (the module unsubscribes):
    that is one system call whether the event came or not, so it never reads first.
    """
    file = FakeQueueFile(unsubscribes=unsubscribes)
    with QueueSubscription(file) as q:
        assert q._core is not None

        def later(value: int) -> None:
            timer = threading.Timer(0.05, file.emit, (value,))
            timer.start()
            try:
                assert [e.value for e in q.read(1)] == [value]
            finally:
                timer.join()

        later(1)
        assert q._missed is not unsubscribes
        later(2)
        assert q._missed is not unsubscribes
        file.emit(3)
        assert [e.value for e in q.read(1)] == [3]  # found waiting
        assert not q._missed


STRACED = """
import os, sys, threading, time
sys.path[:0] = sys.argv[3:]
from fakes import FakeQueueFile
from upcall._transports.fasync import FasyncSubscription
from upcall._transports.queue import QueueSubscription
file = FakeQueueFile(unsubscribes=sys.argv[1] == "1")
q = (FasyncSubscription if sys.argv[2] == "fasync" else QueueSubscription)(file)
file.emit(1)
os.write(2, b"MARK1\\n")
assert [e.value for e in q.read(1, timeout=5)] == [1]
os.write(2, b"MARK2\\n")
t = threading.Timer(0.2, file.emit, (2,))
t.start()
assert [e.value for e in q.read(1)] == [2]
os.write(2, b"MARK3\\n")
t.join()
t = threading.Timer(0.2, file.emit, (3,))
t.start()
assert [e.value for e in q.read(1)] == [3]
os.write(2, b"MARK4\\n")
t.join()
file.emit(4)
assert [e.value for e in q.read(1)] == [4]
os.write(2, b"MARK5\\n")
q.close()
"""


def traced_reads(tmp_path: Path, unsubscribes: bool, kind: str) -> tuple[list[list[str]], str]:
    """STRACED's four reads under strace: each one's read(2), poll(2) and F_SETFL calls; the trace.

    A read(2) that found nothing (EAGAIN) is "read-empty".
    """
    out = tmp_path / "trace"
    here = Path(__file__).parent
    subprocess.run(
        ["strace", "-o", str(out), "-e", "trace=read,poll,ppoll,write,fcntl", sys.executable,
         "-c", STRACED, "1" if unsubscribes else "0", kind, str(here),
         str(here.parents[1] / "src")],
        check=True,
        capture_output=True,
    )  # fmt: skip
    text = out.read_text()
    main_calls = []
    for piece in text.split("MARK")[1:5]:
        calls = []
        for line in piece.splitlines()[1:]:
            name = line.split("(")[0]
            if name in ("read", "poll", "ppoll") or "F_SETFL" in line:
                calls.append(name + ("-empty" if "EAGAIN" in line else ""))
        main_calls.append(calls)
    return main_calls, text


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
@pytest.mark.parametrize("unsubscribes", [True, False])
def test_system_calls_per_read_one(tmp_path: Path, unsubscribes: bool) -> None:
    """An event waiting: one read(2); a wait: one blocking read(2), or poll(2) and read(2).

    Where the module unsubscribes (so close() can end a blocking read), a
    read(1) that waits for ever is one blocking read(2) per event, as a bare
    loop's, whether the event came first or not; the file is put in
    blocking mode once. Elsewhere it is poll(2), then read(2).
    """
    main_calls, text = traced_reads(tmp_path, unsubscribes, "queue")
    # Event waiting: one read(2), non-blocking.
    assert main_calls[0] == ["read"], text
    if unsubscribes:
        # First wait: blocking mode, one read. The next wait, and an event
        # found waiting: one read, nothing else.
        assert main_calls[1:] == [["fcntl", "read"], ["read"], ["read"]], text
    else:
        # First wait: read finds nothing, poll, read. The next, and the
        # event found waiting after it: poll (at once for that one), read.
        waits = [["read-empty", "poll", "read"], ["poll", "read"], ["poll", "read"]]
        assert main_calls[1:] == waits, text


def test_fasync_wait_for_ever_leaves_no_record_unannounced() -> None:
    """After a fasync read(1) that waited for ever, every record left in the file has its signal.

    The module signals again only for records queued after a read(2), so a
    read must empty the file (or leave a signal pending) for a wait of the
    signalfd, fileno(), to see what is left: a blocking read of a full batch
    reads on until the file is empty, as any other read of fasync does.
    """
    file = FakeQueueFile(unsubscribes=True)
    with FasyncSubscription(file) as q:
        assert q._core is not None
        for i in range(1, 101):  # more than one blocking read(2) takes
            file.emit(i)
        assert [e.value for e in q.read(1)] == [1]
        left = struct.unpack("i", fcntl.ioctl(file.fileno(), termios.FIONREAD, b"\0" * 4))[0]
        announced = select.select([q.fileno()], [], [], 0)[0]
        assert left == 0 or announced, (left, announced)
        assert [e.value for e in q.read(99, timeout=0)] == list(range(2, 101))
        # A record queued after the read: its signal wakes a wait of fileno().
        file.emit(101)
        assert select.select([q.fileno()], [], [], 5)[0]
        assert [e.value for e in q.read(1, timeout=5)] == [101]


CLOCK_COUNTER = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <time.h>

static unsigned long calls;

int clock_gettime(clockid_t clock, struct timespec *ts)
{
	static int (*real)(clockid_t, struct timespec *);

	if (!real)
		real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
	calls++;
	return real(clock, ts);
}

unsigned long clock_calls(void)
{
	return calls;
}
"""

CLOCKED = """
import ctypes, os, sys
sys.path[:0] = sys.argv[2:]
from fakes import FakeQueueFile
from upcall._core import Lock
from upcall._transports.queue import QueueSubscription
counter = ctypes.CDLL(sys.argv[1]).clock_calls
counter.restype = ctypes.c_ulong
file = FakeQueueFile(unsubscribes=True)
q = QueueSubscription(file)
lock = Lock()
def calls(f):
    before = counter()
    f()
    return counter() - before
def read_one():
    assert len(q.read(1)) == 1
file.emit(1)  # the fake module stamps it with the clock too
waiting = calls(read_one)
file.emit(2)
file.emit(3)
read_one()  # 2, and 3 into the buffer
print(waiting, calls(read_one), calls(lambda: (lock.acquire(), lock.release())))
q.close()
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc)")
def test_read_one_reads_the_clock_once(tmp_path: Path) -> None:
    """A read(1) of an event from the kernel reads the clock once (its received_ns); the lock none.

    Where the clocksource has no vDSO reading (an emulated HPET) each
    clock_gettime() is a system call: CPython 3.11's own locks read the
    clock on every acquire, so the core's Lock is a pthread mutex. Counted
    with an LD_PRELOAD wrapper of clock_gettime().
    """
    src, lib = tmp_path / "clock.c", tmp_path / "clock.so"
    src.write_text(CLOCK_COUNTER)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"], check=True)
    here = Path(__file__).parent
    out = subprocess.run(
        [sys.executable, "-c", CLOCKED, str(lib), str(here), str(here.parents[1] / "src")],
        env={**os.environ, "LD_PRELOAD": str(lib)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    # From the kernel: one stamp; from the buffer: none; the lock: none.
    assert out == ["1", "0", "0"]


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_system_calls_per_fasync_read_one(tmp_path: Path) -> None:
    """fasync drains its signalfd, then waits as the queue does, in a blocking read(2) of the file.

    Per event, the bare loop's count: a read of the records and one of the
    signalfd (the bare loop blocks in that one, then reads the records).
    The signalfd is read before the wait, so that the signal of a record
    queued after the read stays pending for a wait of the signalfd.
    """
    main_calls, text = traced_reads(tmp_path, True, "fasync")
    # With a timeout, the notification first: poll(2), the signalfd, the
    # records. Waiting for ever: the signalfd (empty: the first read took
    # the signal), the file put in blocking mode once, the blocking read;
    # then the signalfd (the last event's signal) and the blocking read, for
    # the next event and for one found waiting.
    assert main_calls == [
        ["poll", "read", "read"],
        ["read-empty", "fcntl", "read"],
        ["read", "read"],
        ["read", "read"],
    ], text


def test_no_leak_per_event(pipe: Pipe) -> None:
    """Events read and dropped, errors raised: the process's memory stays flat."""
    reader = pipe.reader(read_first=True)
    record = encode(1, 0)

    def rounds(first: int, n: int) -> None:
        for i in range(first, first + n):
            os.write(pipe.w, encode(i, i))
            assert len(reader.get(1, 64, None)) == 1
            os.write(pipe.w, record[:7])
            with pytest.raises(ValueError):
                reader.get(1, 64, 0)

    rounds(1, 2000)  # warm up: the read buffer, interned ints, exception caches
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rounds(2001, 20000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, grown


def test_lock_is_recursive_and_excludes_other_threads() -> None:
    """The subscription's Lock, as an RLock: re-entered by its holder, waited for by others."""
    lock = Lock()
    assert not lock._is_owned()
    with pytest.raises(RuntimeError, match="un-acquired"):
        lock.release()
    taken = threading.Event()
    order: list[str] = []

    def other() -> None:
        with lock:
            order.append("other")
        taken.set()

    with lock:
        with lock:  # re-entered
            assert lock._is_owned()
        thread = threading.Thread(target=other)
        thread.start()
        assert not taken.wait(0.1)  # still held once: the other thread waits
        order.append("holder")
    assert taken.wait(5)
    thread.join()
    assert order == ["holder", "other"]
    assert not lock._is_owned()
    with pytest.raises(TypeError):
        Lock(1)  # type: ignore[call-arg]
    with pytest.raises(RuntimeError, match="not initialised"):
        Lock.__new__(Lock).acquire()


def test_reader_needs_the_core_lock(pipe: Pipe) -> None:
    pipe.sub._lock = threading.RLock()  # type: ignore[assignment]
    with pytest.raises(TypeError, match="Lock"):
        pipe.reader()


def test_read_and_poll_are_the_readers_own() -> None:
    """With the core, read() and poll() are the Reader's: same arguments, same errors, no frame."""
    file = FakeQueueFile()
    with QueueSubscription(file) as q:
        assert q._core is not None
        assert q.read == q._core.read
        assert q.poll == q._core.poll
        for name in ("read", "poll"):  # the Python methods' parameters and defaults
            python = inspect.signature(getattr(Subscription, name)).parameters
            compiled = inspect.signature(getattr(q, name)).parameters
            assert [(p.name, p.kind, p.default) for p in compiled.values()] == [
                (p.name, p.kind, p.default) for p in list(python.values())[1:]
            ]
        for value in range(1, 5):
            file.emit(value)
        assert [e.value for e in q.read(max_events=2, timeout=0)] == [1, 2]
        assert q.poll().value == 3  # type: ignore[union-attr]
        assert [e.value for e in q.read(10**30, block=False)] == [4]  # as many as there are
        assert q.read(block=False) == []
        assert q.poll() is None
        assert q.poll(timeout=0.01) is None
        assert q.read(1, 0.01) == []
        for bad, error, match in [
            ((0,), ValueError, "at least 1"),
            ((-(10**30),), ValueError, "at least 1"),
            (("1",), TypeError, "must be an int"),
            ((1, "soon"), TypeError, "real number"),
            ((1, None, True), TypeError, "at most 2 positional"),
        ]:
            with pytest.raises(error, match=match):
                q.read(*bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="unexpected keyword argument 'wait'"):
            q.read(1, wait=1)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="multiple values for argument 'max_events'"):
            q.read(1, max_events=1)  # type: ignore[misc]
        with pytest.raises(TypeError, match="at most 1 positional"):
            q.poll(0, 1)  # type: ignore[call-arg]
        file.emit(5)
        assert [e.value for e in q.read()] == [5]  # nothing lost to the errors
    with pytest.raises(ClosedError):
        q.read(1, 0)
    with pytest.raises(ClosedError):
        q.poll()
