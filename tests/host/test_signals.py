"""The signalfd receiver, fed with real signals laid out as the module sends them.

:class:`fakes.FakeModule` plays the module's part for one subscriber (real
signals through rt_tgsigqueueinfo(2)); everything on the receiving side
(signal masks, signalfd, decoding, callbacks, asyncio) is the real code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest
from fakes import FakeModule, reads_in_main_thread, signal_state_guard  # noqa: F401 - fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from upcall import _signals as signals
from upcall import abi
from upcall._errors import ClosedError, SignalSetupError, UpcallError, WrongThreadError
from upcall._event import Event
from upcall._signals import choose_signal
from upcall._subscription import SignalSubscription


@pytest.fixture
def module() -> FakeModule:
    return FakeModule()


pytestmark = pytest.mark.usefixtures("signal_state_guard")


U64 = (1 << 64) - 1


@pytest.fixture
def sub(module: FakeModule) -> Iterator[SignalSubscription]:
    with SignalSubscription(module) as s:
        yield s


def seqnos(events: list[Event]) -> list[int]:
    return [e.seqno for e in events]


# -- decoding ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "unsigned"),
    [
        (0, 0),
        (1, 1),
        (-1, U64),  # 64-bit -1
        (0xFFFFFFFF, 0xFFFFFFFF),  # 32-bit -1 stays a positive 64-bit value
        (U64, U64),
        (-(1 << 63), 1 << 63),
        ((1 << 32) + 5, (1 << 32) + 5),  # above 32 bits: si_ptr, not si_int
    ],
)
def test_value_round_trip(
    module: FakeModule, sub: SignalSubscription, sent: int, unsigned: int
) -> None:
    module.emit(sent, source=7)
    (ev,) = sub.read(1, timeout=5)
    assert ev.value == unsigned
    assert ev.signed_value == (sent if sent < 1 << 63 else sent - (1 << 64))
    assert (ev.seqno, ev.source, ev.transport, ev.signo) == (1, 7, "signal", sub.signo)
    assert ev.timestamp_ns is None and ev.latency_ns is None
    assert sub.received == 1 and sub.lost == 0


def test_source_extremes(module: FakeModule, sub: SignalSubscription) -> None:
    module.emit(1, source=0)
    module.emit(2, source=abi.UPCALL_SOURCE_MAX)
    assert [e.source for e in sub.read(2, timeout=5)] == [0, abi.UPCALL_SOURCE_MAX]


def test_seqno_wraps_past_32_bits(module: FakeModule) -> None:
    module.seqno = (1 << 32) - 2  # the subscriber's seqno before subscribing
    with SignalSubscription(module) as sub:
        for v in range(4):
            module.emit(v)
        events = sub.read(10, timeout=5)
    assert seqnos(events) == [(1 << 32) - 1, 1 << 32, (1 << 32) + 1, (1 << 32) + 2]
    assert [e.value for e in events] == [0, 1, 2, 3]
    assert sub.lost == 0


def test_gap_counted_as_lost(module: FakeModule, sub: SignalSubscription) -> None:
    module.emit(1)
    module.emit(2, drop=True)
    module.emit(3, drop=True)
    module.emit(4)
    events = sub.read(10, timeout=5)
    assert seqnos(events) == [1, 4]
    assert [e.value for e in events] == [1, 4]
    assert sub.lost == 2 == sub.stats().dropped


def test_gap_across_wrap(module: FakeModule) -> None:
    module.seqno = (1 << 32) - 10
    with SignalSubscription(module) as sub:
        for _ in range(20):
            module.emit(0, drop=True)
        module.emit(99)
        (ev,) = sub.read(5, timeout=5)
    assert ev.seqno == (1 << 32) + 11
    assert sub.lost == 20


def test_foreign_signals_counted_and_skipped(module: FakeModule, sub: SignalSubscription) -> None:
    os.kill(os.getpid(), sub.signo)  # SI_USER
    signals.queue_signal(os.getpid(), sub.signo, code=-1, value=5)  # SI_QUEUE, like sigqueue(3)
    module.emit(42)
    signals.queue_signal(os.getpid(), sub.signo, code=abi.UPCALL_SI_CODE_MIN - 1, errno=9)
    events = sub.read(10, timeout=5)
    assert [(e.seqno, e.value) for e in events] == [(1, 42)]
    assert sub.foreign == 3
    assert sub.received == 1 and sub.lost == 0


def test_stale_signal_before_subscribing_is_not_an_event(module: FakeModule) -> None:
    signo = choose_signal()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signo})
    try:
        signals.queue_upcall_signal(os.getpid(), signo, seqno=77, value=1)
        with SignalSubscription(module, signo) as sub:
            assert sub.foreign == 1
            assert sub.poll() is None
            module.emit(2)
            ev = sub.poll(5)
            assert ev is not None and (ev.seqno, ev.value) == (1, 2)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signo})


# -- reading ------------------------------------------------------------------------


def test_batch_read_and_order(module: FakeModule, sub: SignalSubscription) -> None:
    for v in range(50):
        module.emit(v)
    first = sub.read(10, timeout=5)
    t0 = time.monotonic()
    rest = sub.read(100, timeout=5)  # 40 buffered: returned at once, not after 5 s
    assert time.monotonic() - t0 < 2.5
    assert [e.value for e in first] == list(range(10))
    assert [e.value for e in rest] == list(range(10, 50))
    assert seqnos(first + rest) == list(range(1, 51))
    assert sub.read(100, block=False) == []


def test_one_read_takes_the_whole_batch(module: FakeModule, sub: SignalSubscription) -> None:
    for v in range(20):
        module.emit(v)
    events = sub.read(20, timeout=5)
    assert len(events) == 20
    # all decoded from the same read(2): one receipt timestamp
    assert len({e.received_ns for e in events}) == 1


def test_read_rejects_bad_max(sub: SignalSubscription) -> None:
    with pytest.raises(ValueError):
        sub.read(0)


# -- callbacks ------------------------------------------------------------------------


def test_on_event_runs_callbacks_in_main_thread(module: FakeModule) -> None:
    got: list[tuple[int, bool]] = []
    with SignalSubscription(module) as sub:
        module.emit(1)  # queued before the callback: on the main thread
        module.emit(2)
        sub.on_event(
            lambda ev: got.append((ev.value, threading.current_thread() is threading.main_thread()))
        )
        # The module now signals the watcher thread, not this one.
        assert module.subscribe_tids[0] == os.getpid()
        assert module.target_tid != os.getpid() and module.flags == abi.UPCALL_SUBSCRIBE_THREAD
        module.emit(3)
        module.emit(4)
        deadline = time.monotonic() + 5
        while len(got) < 4 and time.monotonic() < deadline:
            time.sleep(0.001)  # plain Python code: the handler runs between bytecodes
        assert got == [(1, True), (2, True), (3, True), (4, True)]
        assert sub.last_seqno == 4 and sub.lost == 0
        with pytest.raises(UpcallError, match="callbacks"):
            sub.read(block=False)


def test_run_dispatches_and_counts(module: FakeModule) -> None:
    seen: list[int] = []
    with SignalSubscription(module) as sub:

        @sub.on_event
        def record(ev: Event) -> None:
            seen.append(ev.seqno)
            if ev.seqno == 3:
                sub.close()  # ends run()

        timer = threading.Timer(0.05, lambda: [module.emit(v) for v in range(3)])
        timer.start()
        n = sub.run(timeout=5)
        timer.join()
    assert seen == [1, 2, 3]
    assert n == 3


def test_run_reads_in_the_main_thread_then_hands_back(
    module: FakeModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    # run() directs the signals back at the main thread and reads them there
    # (no hop); when it returns, the watcher takes them again.
    got: list[int] = []
    with SignalSubscription(module) as sub:
        in_main = reads_in_main_thread(sub, monkeypatch)
        sub.on_event(lambda ev: got.append(ev.seqno))
        watcher_tid = module.target_tid
        assert watcher_tid != os.getpid()
        targets: list[int] = []

        def emit() -> None:
            targets.append(module.target_tid)
            for v in range(3):
                module.emit(v)

        timer = threading.Timer(0.05, emit)
        timer.start()
        assert sub.run(timeout=1.0) == 3
        timer.join()
        assert targets == [os.getpid()] and module.target_tid == watcher_tid
        assert got == [1, 2, 3] and in_main == [True] * 3
        module.emit(4)
        deadline = time.monotonic() + 10
        while len(got) < 4 and time.monotonic() < deadline:
            time.sleep(0.001)  # Python code runs: the handler dispatches
        assert got == [1, 2, 3, 4] and in_main[3:] == [False]
        assert (sub.received, sub.lost) == (4, 0)


def test_run_times_out(module: FakeModule) -> None:
    with SignalSubscription(module) as sub:
        sub.on_event(lambda ev: None)
        t0 = time.monotonic()
        assert sub.run(0.1) == 0
        assert time.monotonic() - t0 >= 0.09


def test_callback_exception_propagates_and_keeps_the_rest(module: FakeModule) -> None:
    seen: list[int] = []

    def cb(ev: Event) -> None:
        seen.append(ev.value)
        if ev.value == 2:
            raise RuntimeError("boom")

    with SignalSubscription(module) as sub:
        for v in (1, 2, 3):
            module.emit(v)
        with pytest.raises(RuntimeError, match="boom"):
            # Events already queued are dispatched at once: maybe before
            # on_event() returns, else in run().
            sub.on_event(cb)
            sub.run(5)
        assert seen == [1, 2]
        sub.run(0.05)
        assert seen == [1, 2, 3]


def test_on_event_refused_by_the_module_leaves_things_as_they_were(module: FakeModule) -> None:
    with SignalSubscription(module) as sub:
        before = signal.getsignal(sub.signo)
        module.refuse = OSError(22, "Invalid argument")
        with pytest.raises(OSError, match="Invalid argument"):
            sub.on_event(print)
        module.refuse = None
        assert signal.getsignal(sub.signo) is before
        assert module.target_tid == os.getpid()  # still the main thread's
        module.emit(4)
        assert [e.value for e in sub.read(timeout=5)] == [4]  # readable again


def test_on_event_outside_main_thread_refused(module: FakeModule, sub: SignalSubscription) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            sub.on_event(print)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], WrongThreadError)


# -- setup, threads, closing --------------------------------------------------------------


def test_blocked_while_open_restored_after(module: FakeModule) -> None:
    signo = choose_signal()
    assert not signals.is_blocked(signo)
    before = signal.getsignal(signo)
    with SignalSubscription(module, signo) as sub:
        assert signals.is_blocked(signo)
        sub.on_event(lambda ev: None)
        assert signal.getsignal(signo) is not before
    assert not signals.is_blocked(signo)
    assert signal.getsignal(signo) is before
    assert module.closed


def test_already_blocked_stays_blocked(module: FakeModule) -> None:
    signo = choose_signal()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signo})
    try:
        with SignalSubscription(module, signo):
            pass
        assert signals.is_blocked(signo)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signo})


def test_close_with_pending_events_does_not_kill() -> None:
    # Unblocking with an upcall signal still queued would run the default
    # action (terminate): close must drain first. In a child, to survive failure.
    code = textwrap.dedent(
        """
        import os, signal, sys
        sys.path.insert(0, sys.argv[1])
        from fakes import FakeModule
        from upcall._subscription import SignalSubscription
        m = FakeModule()
        with SignalSubscription(m) as sub:
            for v in range(5):
                m.emit(v)
            signo = sub.signo
        assert signo not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
        print("alive")
        """
    )
    here = os.path.dirname(__file__)
    r = subprocess.run(
        [sys.executable, "-c", code, here], capture_output=True, text=True, timeout=60
    )
    assert (r.returncode, r.stdout.strip()) == (0, "alive"), r.stderr


def test_another_thread_with_signal_unblocked_is_refused(module: FakeModule) -> None:
    signo = choose_signal()
    release = threading.Event()
    t = threading.Thread(target=release.wait)  # created with signo unblocked
    t.start()
    try:
        with pytest.raises(SignalSetupError, match="block it before starting threads"):
            SignalSubscription(module, signo)
        assert module.closed  # its file is not left subscribed
        assert not signals.is_blocked(signo)  # mask restored on failure
    finally:
        release.set()
        t.join()


def test_threads_started_after_blocking_are_fine(module: FakeModule) -> None:
    signo = choose_signal()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signo})
    release = threading.Event()
    t = threading.Thread(target=release.wait)  # inherits the blocked mask
    t.start()
    try:
        with SignalSubscription(module, signo) as sub:
            module.emit(3)
            assert [e.value for e in sub.read(timeout=5)] == [3]
    finally:
        release.set()
        t.join()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signo})


def test_thread_directed_subscription_read_in_its_thread() -> None:
    module = FakeModule()
    signo = choose_signal()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signo})  # before starting the thread
    result: list[object] = []

    def worker() -> None:
        try:
            with SignalSubscription(module, signo, thread=True) as sub:
                assert module.target_tid == threading.get_native_id() != os.getpid()
                module.emit(21)
                result.extend(e.value for e in sub.read(timeout=5))
                result.append(module.flags)
        except BaseException as e:
            result.append(e)

    try:
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signo})
    assert result == [21, abi.UPCALL_SUBSCRIBE_THREAD]


def test_process_subscription_only_from_main_thread() -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            SignalSubscription(FakeModule())
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], WrongThreadError)


def test_reading_from_another_thread_refused(sub: SignalSubscription) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            sub.poll()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], WrongThreadError)
    assert "main" in str(errors[0])


def test_close_from_another_thread_wakes_reader(sub: SignalSubscription) -> None:
    timer = threading.Timer(0.1, sub.close)
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(ClosedError):
        sub.read(timeout=10)
    timer.join()
    assert time.monotonic() - t0 < 5
    # the reader, in the subscribing thread, finished the close: mask restored
    assert not signals.is_blocked(sub.signo)


# -- signal numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "signo", [0, signal.SIGUSR1, signal.SIGRTMIN - 1, signal.SIGRTMAX + 1, 200]
)
def test_signal_out_of_range(module: FakeModule, signo: int) -> None:
    with pytest.raises(ValueError, match="SIGRTMIN"):
        SignalSubscription(module, signo)
    assert module.closed and module.transport == abi.UPCALL_TRANSPORT_NONE


def test_default_signal_skips_handled_and_used(module: FakeModule) -> None:
    first = choose_signal()
    previous = signal.signal(first, lambda n, f: None)
    try:
        with SignalSubscription(module) as a:
            assert a.signo != first
            assert signal.SIGRTMIN <= a.signo <= signal.SIGRTMAX
            assert choose_signal() not in (first, a.signo)
    finally:
        signal.signal(first, previous)


def test_same_signal_twice_in_a_thread_refused(sub: SignalSubscription) -> None:
    other = FakeModule()
    with pytest.raises(SignalSetupError, match="already used"):
        SignalSubscription(other, sub.signo)
    assert other.closed
    assert signals.is_blocked(sub.signo)  # the first subscription is untouched


# -- properties ------------------------------------------------------------------------------


@given(last=st.integers(0, (1 << 64) - (1 << 33)), d=st.integers(1, 1 << 32))
def test_extend_seqno(last: int, d: int) -> None:
    assert signals.extend_seqno(last, (last + d) % (1 << 32)) == last + d


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.one_of(st.integers(0, 1 << 40), st.integers((1 << 32) - 40, (1 << 32) + 40)),
    script=st.lists(
        st.tuples(
            st.integers(0, 3),  # events dropped before this one
            st.integers(abi.S64_MIN, abi.U64_MAX),
            st.integers(0, abi.UPCALL_SOURCE_MAX),
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_real_signals_round_trip(start: int, script: list[tuple[int, int, int]]) -> None:
    module = FakeModule()
    module.seqno = start
    expected = []
    with SignalSubscription(module) as sub:
        for drops, value, source in script:
            for _ in range(drops):
                module.emit(0, drop=True)
            module.emit(value, source)
            expected.append((module.seqno, abi.encode_value(value), source))
        got = sub.read(len(script), timeout=5)
        assert [(e.seqno, e.value, e.source) for e in got] == expected
        assert sub.lost == sum(d for d, _, _ in script) == sub.stats().dropped


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.one_of(st.integers(0, 1 << 40), st.integers((1 << 32) - 40, (1 << 32) + 40)),
    script=st.lists(
        st.tuples(
            st.integers(0, 2),  # events dropped before this one
            st.booleans(),  # a foreign signal (sigqueue(3)-style) before it
            st.integers(abi.S64_MIN, abi.U64_MAX),
            st.integers(0, abi.UPCALL_SOURCE_MAX),
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_read_batch_round_trip(start: int, script: list[tuple[int, bool, int, int]]) -> None:
    """read_batch's columns hold what read() would give, runs and irregular reads alike."""
    module = FakeModule()
    module.seqno = start
    expected = []
    with SignalSubscription(module) as sub:
        for drops, foreign, value, source in script:
            for _ in range(drops):
                module.emit(0, drop=True)
            if foreign:
                signals.queue_signal(os.getpid(), sub.signo, code=-1, value=value)
            module.emit(value, source)
            expected.append((module.seqno, abi.encode_value(value), source))
        batch = sub.read_batch(len(script) * 2, timeout=5)
        cols = (batch.seqno.tolist(), batch.value.tolist(), batch.source.tolist())
        columns = list(zip(*cols, strict=True))
        assert columns == expected
        assert [(e.seqno, e.value, e.source, e.signo) for e in batch] == [
            (*x, sub.signo) for x in expected
        ]
        assert not batch.stamped and set(batch.timestamp_ns.tolist()) == {0}
        assert batch.signo == sub.signo and batch.transport == "signal"
        assert sub.received == len(script)
        assert sub.lost == sum(d for d, _, _, _ in script) == sub.stats().dropped
        assert sub.foreign == sum(f for _, f, _, _ in script)


def test_read_batch_of_a_run_decodes_no_signal_alone(
    module: FakeModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain run of events is decoded in columns, not one siginfo object each."""
    module.seqno = (1 << 32) - 3  # and across the 32-bit wrap of si_errno
    with SignalSubscription(module) as sub:
        for v in range(6):
            module.emit(v, source=v % 2)
        with monkeypatch.context() as m:
            m.setattr(SignalSubscription, "_decode", None)  # the signal-by-signal path
            batch = sub.read_batch(64, timeout=5)
        assert batch.seqno.tolist() == [(1 << 32) - 2 + i for i in range(6)]
        assert batch.value.tolist() == list(range(6)) and batch.source.tolist() == [0, 1] * 3
        assert sub.last_seqno == (1 << 32) + 3 and sub.received == 6 and sub.lost == 0


# -- queue size ------------------------------------------------------------------------------


def test_queue_size_kept_when_the_watcher_subscribes_again(module: FakeModule) -> None:
    # A SUBSCRIBE with another size drops what is queued: on_event() and
    # the detach at close must not.
    with SignalSubscription(module, queue_size=16) as sub:
        sub.on_event(lambda ev: None)
    assert module.queue_sizes == [16, 16, 16]


def test_default_queue_size_is_zero_in_the_request(module: FakeModule) -> None:
    with SignalSubscription(module):
        pass
    assert module.queue_sizes == [0, 0]


@pytest.mark.parametrize("unsubscribes", [False, True])
def test_close_turns_the_signals_off_before_closing(module: FakeModule, unsubscribes: bool) -> None:
    # A forked child may hold the file: unsubscribed (or, where the module
    # cannot, re-subscribed as a queue), it sends this process no more signals.
    module.unsubscribes = unsubscribes
    with SignalSubscription(module, queue_size=16):
        assert module.transport == abi.UPCALL_TRANSPORT_SIGNAL
    after = abi.UPCALL_TRANSPORT_NONE if unsubscribes else abi.UPCALL_TRANSPORT_QUEUE
    assert module.transport == after and module.closed
    # NONE takes every other field zero (EINVAL if not); the queue keeps its size.
    assert module.queue_sizes == [16, 0 if unsubscribes else 16]


def test_close_survives_a_refused_detach(module: FakeModule) -> None:
    sub = SignalSubscription(module)
    module.refuse = OSError(22, "Invalid argument")  # e.g. a module without QUEUE
    sub.close()
    assert sub.closed and module.closed


@pytest.mark.parametrize("size", [1, abi.UPCALL_QUEUE_MAX + 1, -1])
def test_queue_size_out_of_range(module: FakeModule, size: int) -> None:
    with pytest.raises(ValueError, match="queue_size"):
        SignalSubscription(module, queue_size=size)
    assert module.closed and module.queue_sizes == []


def test_signal_claim_blocks_then_drains_and_restores() -> None:
    signo = choose_signal()
    assert not signals.is_blocked(signo)
    with signals.SignalClaim(signo) as claim:
        assert signals.is_blocked(signo) and claim.fd >= 0 and claim.stale == 0
        with pytest.raises(SignalSetupError), signals.SignalClaim(signo):
            pass
        assert signals.is_blocked(signo)  # the refused claim changed nothing
        signals.queue_upcall_signal(signals.current_tid(), signo, 2, 0)
        assert signo in signal.sigpending()
    # Drained on exit, so the unblock cannot run the default action (terminate).
    assert claim.fd == -1 and not signals.is_blocked(signo)
    assert signo not in signal.sigpending()
    signals.block(signo)
    try:
        signals.queue_upcall_signal(signals.current_tid(), signo, 3, 0)
        with signals.SignalClaim(signo) as again:  # released: can be claimed again
            assert again.stale == 1  # pending before: not the claim's
        assert signals.is_blocked(signo)  # blocked before: stays blocked
    finally:
        signals.unblock(signo)


def test_signal_claim_undoes_a_failed_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    signo = choose_signal()

    def refuse(*signos: int) -> int:
        raise OSError(24, "too many open files")

    monkeypatch.setattr(signals, "open_signalfd", refuse)
    with pytest.raises(OSError), signals.SignalClaim(signo):
        pass
    assert not signals.is_blocked(signo)
    assert choose_signal() == signo  # not left reserved


def test_refused_subscription_leaves_nothing_behind(module: FakeModule) -> None:
    signo = choose_signal()
    before = set(os.listdir("/proc/self/fd"))
    module.refuse = OSError(22, "Invalid argument")
    with pytest.raises(OSError, match="Invalid"):
        SignalSubscription(module, signo)
    assert module.closed
    assert set(os.listdir("/proc/self/fd")) <= before  # signalfd and wake-up closed
    assert not signals.is_blocked(signo)  # mask restored
    assert choose_signal() == signo  # and the signal given back
