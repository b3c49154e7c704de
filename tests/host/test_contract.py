"""One contract for every subscription, whatever carries its events.

Each test runs on every transport the host can feed: the module's queue,
fasync, eventfd and signal transports through the stand-ins of
:mod:`fakes` (real pipes, real signals), and the BPF path's ring buffer
and signal delivery through real BPF programs (the user-triggered hook; as
root, as tests/host/test_bpf.py). What a user relies on is the same for
all: events in order with their values, ``received``/``lost``, ``wait``,
``read``, ``poll``, ``read_batch``, iteration, ``async for``, ``on_event``
in the main thread, and ``close`` from any thread. The per-transport test
modules keep only what is a transport's own (signal masks, threads, its
notification, its decoding).

The netlink transport needs the module's generic netlink family, which the
host kernel cannot have: tests/kernel/test_contract_module.py runs these
same tests against the real module, on every transport.
"""

from __future__ import annotations

import asyncio
import select
import threading
import time
from collections.abc import Iterator

import pytest
from fakes import Source, make_source, signal_state_guard  # noqa: F401 - fixture

from upcall import _accel
from upcall._errors import ClosedError, UpcallError
from upcall._event import Event
from upcall._subscription import Subscription

pytestmark = pytest.mark.usefixtures("signal_state_guard")

U64 = (1 << 64) - 1
MODULE = ["queue", "fasync", "eventfd", "signal"]
BPF = ["bpf-ringbuf", "bpf-signal"]
# The module's transports read through the compiled core when it is built
# (upcall._accel); "-pure" runs the same test on the pure-Python path.
PURE = ["queue-pure", "fasync-pure", "eventfd-pure", "signal-pure"]


@pytest.fixture(params=MODULE + PURE + BPF)
def source(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Source]:
    kind = str(request.param)
    if kind.endswith("-pure"):
        kind = kind.removesuffix("-pure")
        monkeypatch.setattr(_accel, "Reader", None)
    src = make_source(kind)
    if kind in MODULE:
        assert (src.sub._core is not None) == (_accel.compiled() and kind == request.param)
    with src.sub:
        yield src


def read_n(sub: Subscription, n: int, seconds: float = 10.0) -> list[int]:
    values: list[int] = []
    deadline = time.monotonic() + seconds
    while len(values) < n and time.monotonic() < deadline:
        values += [e.value for e in sub.read(n - len(values), timeout=0.5)]
    return values


# -- delivery ---------------------------------------------------------------


def test_events_in_order_with_their_values(source: Source) -> None:
    sub = source.sub
    values = [0, 1, 42, 1 << 63, U64]
    source.emit(values)
    events: list[Event] = []
    deadline = time.monotonic() + 10
    while len(events) < len(values) and time.monotonic() < deadline:
        events += sub.read(len(values) - len(events), timeout=0.5)
    assert [e.value for e in events] == values
    seqnos = [e.seqno for e in events]
    assert seqnos == list(range(seqnos[0], seqnos[0] + len(values)))
    assert {e.transport for e in events} == {sub.transport}
    assert (sub.received, sub.lost, sub.last_seqno) == (5, 0, seqnos[-1])
    st = sub.stats()
    assert st.emitted >= 5 and st.dropped == 0


def test_a_drop_is_a_gap_counted_as_lost(source: Source) -> None:
    if source.drop is None:
        pytest.skip(
            "this source drops only when its queue is full (the burst tests count those drops)"
        )
    source.emit([1])
    source.drop()
    source.emit([3])
    assert read_n(source.sub, 2) == [1, 3]
    assert (source.sub.received, source.sub.lost) == (2, 1)
    assert source.sub.stats().dropped == 1


def test_nothing_pending(source: Source) -> None:
    sub = source.sub
    assert sub.wait(0) is False
    assert sub.poll() is None
    assert sub.read(timeout=0) == []
    assert sub.read(4, block=False) == []
    assert not sub.read_batch(8, timeout=0)
    t0 = time.monotonic()
    assert sub.read(1, timeout=0.05) == []
    assert time.monotonic() - t0 >= 0.05
    t0 = time.monotonic()
    assert sub.wait(0.05) is False
    assert time.monotonic() - t0 >= 0.05


def test_read_takes_what_is_there_without_waiting_for_more(source: Source) -> None:
    source.emit([7, 8])
    assert source.sub.wait(10)
    t0 = time.monotonic()
    got = source.sub.read(100, timeout=30)
    assert time.monotonic() - t0 < 10
    assert [e.value for e in got] + read_n(source.sub, 2 - len(got)) == [7, 8]


def test_wait_wakes_on_an_event_from_another_thread(source: Source) -> None:
    timer = threading.Timer(0.05, source.emit, ([99],))
    timer.start()
    try:
        assert source.sub.wait(10) is True
        assert read_n(source.sub, 1) == [99]
    finally:
        timer.join()


def test_fileno_polls_readable_while_events_wait(source: Source) -> None:
    fd = source.sub.fileno()
    assert select.select([fd], [], [], 0)[0] == []
    source.emit([1])
    assert select.select([fd], [], [], 10)[0] == [fd]
    assert read_n(source.sub, 1) == [1]


def test_poll_then_read(source: Source) -> None:
    source.emit([5, 6, 7])
    assert source.sub.wait(10) is True
    assert source.sub.wait(0) is True  # waiting takes nothing
    first = source.sub.poll(10)
    assert first is not None and first.value == 5
    assert read_n(source.sub, 2) == [6, 7]


def test_leaving_an_iteration_early_loses_nothing(source: Source) -> None:
    source.emit(list(range(5)))
    taken = []
    for event in source.sub.events(timeout=10):
        taken.append(event.value)
        if len(taken) == 2:
            break
    assert taken + read_n(source.sub, 3) == [0, 1, 2, 3, 4]
    assert source.sub.received == 5


def test_read_batch_is_columns_and_takes_leftovers_first(source: Source) -> None:
    sub = source.sub
    source.emit([10, 11, 12, 13])
    assert sub.wait(10)
    first = sub.poll(10)
    assert first is not None and first.value == 10
    values: list[int] = []
    seqnos: list[int] = []
    deadline = time.monotonic() + 10
    while len(values) < 3 and time.monotonic() < deadline:
        batch = sub.read_batch(16, timeout=0.5)
        values += batch.value.tolist()
        seqnos += batch.seqno.tolist()
        assert all(e.transport == sub.transport for e in batch)
    assert values == [11, 12, 13]
    assert seqnos == [first.seqno + 1, first.seqno + 2, first.seqno + 3]
    assert (sub.received, sub.lost) == (4, 0)


def test_aread_and_async_for(source: Source) -> None:
    sub = source.sub

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, source.emit, [1, 2, 3])
        first = await sub.aread(1, timeout=10)
        out = [e.value for e in first]
        async with asyncio.timeout(10):
            async for event in sub:
                out.append(event.value)
                if len(out) == 3:
                    break
        assert await sub.aread(1, timeout=0.01) == []
        return out

    assert asyncio.run(main()) == [1, 2, 3]


def test_on_event_runs_callbacks_in_the_main_thread(source: Source) -> None:
    sub = source.sub
    seen: list[tuple[int, bool]] = []

    @sub.on_event
    def _(event: object) -> None:
        from upcall._event import Event

        assert isinstance(event, Event)
        seen.append((event.value, threading.current_thread() is threading.main_thread()))

    with pytest.raises(UpcallError, match="dispatches its events"):
        sub.read(1, timeout=0)
    source.emit([1, 2])  # the watcher reads, the main thread calls back
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    source.emit([3])  # run() reads in this thread
    deadline = time.monotonic() + 10
    while len(seen) < 3 and time.monotonic() < deadline:
        sub.run(0.05)
    assert seen == [(1, True), (2, True), (3, True)]


def test_run_calls_back_in_order_and_a_raise_keeps_the_rest(source: Source) -> None:
    sub = source.sub
    seen: list[int] = []

    @sub.on_event
    def _(event: Event) -> None:
        seen.append(event.value)
        if event.value == 2:
            raise RuntimeError("boom")

    # Sent while run() waits: run() reads them, in this thread.
    timer = threading.Timer(0.05, source.emit, ([1, 2, 3, 4],))
    timer.start()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            sub.run(10)
    finally:
        timer.join()
    # The rest are dispatched later: by the watcher's handler as soon as it
    # reads them (maybe already), or by the next run(); once each, in order.
    deadline = time.monotonic() + 10
    while len(seen) < 4 and time.monotonic() < deadline:
        sub.run(0.05)
    assert seen == [1, 2, 3, 4]
    assert (sub.received, sub.lost) == (4, 0)


def test_close_from_another_thread_ends_run_without_a_timeout(source: Source) -> None:
    sub = source.sub
    seen: list[int] = []
    sub.on_event(lambda event: seen.append(event.value))
    emitter = threading.Timer(0.05, source.emit, ([1],))
    timer = threading.Timer(0.3, sub.close)
    emitter.start()
    timer.start()
    try:
        # Waits for ever in the transport's read: only the close ends it.
        n = sub.run()
    finally:
        emitter.join()
        timer.join()
    assert (seen, n) == ([1], 1) and sub.closed


# -- closing ----------------------------------------------------------------


def test_close_from_another_thread_wakes_a_waiting_reader(source: Source) -> None:
    timer = threading.Timer(0.1, source.sub.close)
    timer.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(ClosedError):
            source.sub.read(1, timeout=30)
        assert time.monotonic() - t0 < 20
    finally:
        timer.join()


def test_a_closed_subscription_refuses_use(source: Source) -> None:
    sub = source.sub
    source.emit([1])
    sub.close()
    sub.close()  # idempotent
    assert sub.closed
    for use in (
        lambda: sub.read(1, timeout=0),
        lambda: sub.wait(0),
        lambda: sub.poll(),
        lambda: sub.read_batch(1, timeout=0),
        sub.stats,
        sub.fileno,
        lambda: sub.run(0),
        lambda: sub.on_event(print),
    ):
        with pytest.raises(ClosedError):
            use()
    assert list(sub.events(0)) == []  # iterating a closed subscription just ends
    assert "received=0" in repr(sub)
