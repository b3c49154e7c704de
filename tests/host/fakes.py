"""Honest stand-ins for the kernel module, shared by the host tests.

The host kernel cannot load the module, so these play one subscriber's file
as the module serves it, with real kernel objects underneath:

- :class:`FakeModule` (a SubscriberFile for the SIGNAL transport) records
  who subscribed (the calling thread for a thread-directed subscription,
  else the thread group leader, as the module does), numbers events and
  queues each one as a real signal with the module's layout through
  rt_tgsigqueueinfo(2).
- :class:`FakeQueueFile` (a QueueFile) queues the module's 48-byte records
  in a pipe (each write atomic, below PIPE_BUF): read(2) returns whole
  records, poll(2) reports it readable, and O_ASYNC with F_SETOWN/F_SETSIG
  makes the kernel's pipe code send the SIGIO-style signal (kill_fasync,
  si_fd, POLL_IN) as the module's file does; its eventfd is signalled after
  each record, as the module's is.

Everything on the receiving side is the real code. They live here, not in a
conftest.py, which would clash with tests/kernel/conftest.py (one
"conftest" module for mypy, and for ``import conftest``).
"""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from upcall import _signals as signals
from upcall import abi
from upcall._errors import ClosedError
from upcall._event import Event, monotonic_ns
from upcall._subscription import SignalSubscription, Subscription
from upcall._transports.eventfd import EventfdSubscription
from upcall._transports.fasync import FasyncSubscription
from upcall._transports.queue import QueueSubscription
from upcall.abi import Stats


class FakeModule:
    """One subscriber file as the module would serve it (SubscriberFile)."""

    unsubscribes = False  # as a module without UPCALL_VERSION_UNSUBSCRIBE

    def __init__(self) -> None:
        self.transport = abi.UPCALL_TRANSPORT_NONE
        self.signo = 0
        self.flags = 0
        self.target_tid = 0
        self.subscribe_tids: list[int] = []
        self.seqno = 0
        self.emitted = 0
        self.delivered = 0
        self.dropped = 0
        self.closed = False
        self.refuse: OSError | None = None  # raised by the next subscribe()
        self.queue_sizes: list[int] = []  # queue_size of every subscribe()

    # SubscriberFile
    def subscribe(
        self,
        transport: int,
        signo: int = 0,
        flags: int = 0,
        queue_size: int = 0,
        netlink_fd: int = 0,
    ) -> None:
        assert not self.closed
        if self.refuse is not None:
            raise self.refuse
        tid = signals.current_tid()
        self.transport, self.signo, self.flags = transport, signo, flags
        self.queue_sizes.append(queue_size)
        self.target_tid = tid if flags & abi.UPCALL_SUBSCRIBE_THREAD else os.getpid()
        self.subscribe_tids.append(tid)

    def stats(self) -> Stats:
        return Stats(
            emitted=self.emitted,
            delivered=self.delivered,
            dropped=self.dropped,
            seqno=self.seqno,
            pending=0,
            transport=self.transport,
            signo=self.signo,
        )

    def close(self) -> None:
        self.closed = True

    # the kernel side
    def emit(self, value: int, source: int = 0, *, drop: bool = False) -> int:
        """Give the event the next seqno and queue it, or count it dropped."""
        if self.closed or self.transport == abi.UPCALL_TRANSPORT_NONE:
            return 0
        self.seqno += 1
        self.emitted += 1
        if drop:
            self.dropped += 1
            return 1
        signals.queue_upcall_signal(self.target_tid, self.signo, self.seqno, value, source)
        self.delivered += 1
        return 1


def is_eventfd(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]"
    except OSError:
        return False


class FakeQueueFile:
    """One QUEUE subscriber's file as the module serves it, over a pipe (QueueFile).

    With ``unsubscribes`` (the module's UPCALL_VERSION_UNSUBSCRIBE), a
    subscribe to NONE drops and counts what is queued and ends a read(2)
    that waits: the pipe's writing end is closed, so it returns 0 (the
    module fails it with EINVAL).
    """

    def __init__(self, unsubscribes: bool = True) -> None:
        self.unsubscribes = unsubscribes
        self._r, self._w = os.pipe2(os.O_CLOEXEC)
        self.transport = abi.UPCALL_TRANSPORT_NONE
        self.queue_sizes: list[int] = []
        self.eventfd = -1
        self.seqno = 0
        self.emitted = 0
        self.dropped = 0
        self.closed = False

    # QueueFile
    def fileno(self) -> int:
        if self.closed:
            raise ClosedError("closed")
        return self._r

    def subscribe(
        self,
        transport: int,
        signo: int = 0,
        flags: int = 0,
        queue_size: int = 0,
        netlink_fd: int = 0,
    ) -> None:
        assert not self.closed and signo == 0 and flags == 0
        self.transport = transport
        if transport == abi.UPCALL_TRANSPORT_NONE:
            assert self.unsubscribes and queue_size == 0
            self._unsubscribe()
            return
        self.queue_sizes.append(queue_size)

    def _unsubscribe(self) -> None:
        while select.select([self._r], [], [], 0)[0]:
            data = os.read(self._r, abi.UPCALL_EVENT_SIZE * 64)
            if not data:
                break
            self.dropped += len(data) // abi.UPCALL_EVENT_SIZE
        if self._w >= 0:
            os.close(self._w)
            self._w = -1

    def set_eventfd(self, fd: int) -> None:
        if fd != -1 and not is_eventfd(fd):
            raise OSError(errno.EINVAL, "not an eventfd")
        self.eventfd = fd

    def stats(self) -> Stats:
        return Stats(
            emitted=self.emitted,
            delivered=self.emitted - self.dropped,
            dropped=self.dropped,
            seqno=self.seqno,
            pending=0,
            transport=self.transport,
            signo=0,
            id=7,
        )

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._r)
            if self._w >= 0:
                os.close(self._w)

    # the kernel side
    def emit(
        self, value: int, source: int = 0, *, drop: bool = False, timestamp_ns: int | None = None
    ) -> int:
        """Number the event and queue its record (or count it dropped)."""
        if self.closed or self.transport != abi.UPCALL_TRANSPORT_QUEUE:
            return 0
        self.seqno += 1
        self.emitted += 1
        if drop:
            self.dropped += 1
            return 1
        record = abi.UpcallEvent(
            seqno=self.seqno,
            timestamp_ns=monotonic_ns() if timestamp_ns is None else timestamp_ns,
            value=abi.encode_value(value),
            source=source,
        )
        assert os.write(self._w, bytes(record)) == abi.UPCALL_EVENT_SIZE
        if self.eventfd >= 0:
            os.eventfd_write(self.eventfd, 1)
        return 1

    def emit_many(self, values: list[int]) -> None:
        """Queue several records with one notification, as one irq_work run announces them."""
        recs = []
        for value in values:
            self.seqno += 1
            self.emitted += 1
            recs.append(bytes(abi.UpcallEvent(seqno=self.seqno, value=value)))
        data = b"".join(recs)
        assert os.write(self._w, data) == len(data)  # one write: one SIGIO
        if self.eventfd >= 0:
            os.eventfd_write(self.eventfd, 1)


@pytest.fixture
def signal_state_guard() -> Iterator[None]:
    """Fail a test that leaks a blocked signal, a handler or a thread.

    Used by the signal and CLI tests (pytestmark), not by other modules here.
    """
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    handlers = {n: signal.getsignal(n) for n in range(signal.SIGRTMIN, signal.SIGRTMAX + 1)}
    threads = set(threading.enumerate())
    yield
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == mask, "signal mask leaked"
    for n, h in handlers.items():
        assert signal.getsignal(n) == h, f"handler of signal {n} leaked"
    assert set(threading.enumerate()) <= threads, "thread leaked"


def reads_in_main_thread(sub: Subscription, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each event ``sub`` reads from now on: whether the main thread read it.

    The Python reads go through ``_read_records``. run()'s read, ``_fetch``,
    is the compiled core's own where there is one, which reads in C: an
    event it hands out that no ``_read_records`` returned before was read
    there, in the calling thread (or by an earlier ``_fetch`` of it).
    """
    in_main: list[bool] = []
    seen: set[int] = set()
    read, fetch = sub._read_records, sub._fetch

    def note(events: list[Event]) -> list[Event]:
        main = threading.current_thread() is threading.main_thread()
        for ev in events:
            if ev.seqno not in seen:
                seen.add(ev.seqno)
                in_main.append(main)
        return events

    monkeypatch.setattr(sub, "_read_records", lambda n: note(read(n)))
    monkeypatch.setattr(sub, "_fetch", lambda t, b, timeout: note(fetch(t, b, timeout)))
    return in_main


ROOT = Path(__file__).resolve().parents[2]
#: Where the BPF path looks for its object in a checkout (``make bpf-build``
#: links it there, as the wheel carries it).
BPF_OBJECT = ROOT / "src" / "upcall" / "bpf" / "upcall.bpf.o"


def ensure_bpf_object() -> None:
    """Build the BPF object (and its link into the package) if it is missing."""
    if not BPF_OBJECT.is_file():
        subprocess.run(["make", "-f", "mk/bpf.mk", "bpf-build"], cwd=ROOT, check=True)


@dataclass
class Source:
    """A subscription and the kernel side that feeds it."""

    sub: Subscription
    #: Emit one event per value, in order.
    emit: Callable[[list[int]], None]
    #: Emit one event that the kernel counts as dropped, where the source can.
    drop: Callable[[], object] | None


def _module_source(kind: str) -> Source:
    if kind == "signal":
        module = FakeModule()
        sig = SignalSubscription(module)

        def emit_signals(values: list[int]) -> None:
            for v in values:
                module.emit(v)

        return Source(sig, emit_signals, lambda: module.emit(0, drop=True))
    file = FakeQueueFile()
    sub: QueueSubscription
    if kind == "fasync":
        sub = FasyncSubscription(file)
    elif kind == "eventfd":
        sub = EventfdSubscription(file)
    else:
        sub = QueueSubscription(file)

    def emit_records(values: list[int]) -> None:
        for v in values:
            file.emit(v)

    return Source(sub, emit_records, lambda: file.emit(0, drop=True))


def _bpf_source(kind: str) -> Source:
    if os.geteuid() != 0:
        pytest.skip("the BPF path loads BPF programs: needs root")
    ensure_bpf_object()
    from upcall.bpf import BpfSubscription, Trigger

    sub = BpfSubscription(Trigger(), via=kind.removeprefix("bpf-"))

    def emit(values: list[int]) -> None:
        for v in values:
            sub.trigger(v)

    return Source(sub, emit, None)


def make_source(kind: str) -> Source:
    """A subscription of ``kind`` (queue, fasync, eventfd, signal, bpf-ringbuf or
    bpf-signal) and the kernel side that feeds it; BPF needs root (skipped otherwise)."""
    return _bpf_source(kind) if kind.startswith("bpf-") else _module_source(kind)
