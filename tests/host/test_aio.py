"""The async API (aread, aevents, async for) under asyncio, trio, and anyio on either backend.

One contract, run under each library: reads with and without a timeout,
``async for``, cancellation (a cancelled task, a cancel scope, a deadline)
that loses no event and leaves the subscription usable, and a close from
another thread or task that wakes the waiter. The subscriptions are the
real code, fed by the stand-ins of the other host tests: FakeQueueFile (the
module's queue, over a pipe) and FakeModule (real signals, read through a
signalfd), and, as root, by real BPF programs (the BPF path's ring buffer
and signal delivery through the user-triggered hook).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import anyio
import pytest
import trio
from fakes import make_source, signal_state_guard  # noqa: F401 - fixture

from upcall import _aio
from upcall._errors import ClosedError, UpcallError
from upcall._event import Event
from upcall._subscription import Subscription

pytestmark = pytest.mark.usefixtures("signal_state_guard")

T = TypeVar("T")


class Backend:
    """Runs a test's coroutine under one library, with that library's own primitives."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.anyio = name.startswith("anyio-")

    def run(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        if self.name == "asyncio":
            return asyncio.run(fn())
        if self.name == "trio":
            return trio.run(fn)
        return anyio.run(fn, backend=self.name.removeprefix("anyio-"))

    async def sleep(self, seconds: float) -> None:
        if self.anyio:
            await anyio.sleep(seconds)
        elif self.name == "trio":
            await trio.sleep(seconds)
        else:
            await asyncio.sleep(seconds)

    async def cancelled(
        self, fn: Callable[[], Awaitable[None]], after: float, just_before: Callable[[], Any]
    ) -> bool:
        """Run ``fn``, cancel it ``after`` seconds later right after ``just_before()``.

        True if the cancellation stopped it: a task's cancel() under asyncio,
        a cancel scope under trio and anyio.
        """
        if self.name == "asyncio":

            async def wrapped() -> None:
                await fn()

            task = asyncio.ensure_future(wrapped())
            await asyncio.sleep(after)
            just_before()
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                return True
            return False
        done = False

        async def child(scope: trio.CancelScope | anyio.CancelScope) -> None:
            nonlocal done
            with scope:
                await fn()
                done = True

        if self.anyio:
            ascope = anyio.CancelScope()
            async with anyio.create_task_group() as tg:
                tg.start_soon(child, ascope)
                await anyio.sleep(after)
                just_before()
                ascope.cancel()
        else:
            tscope = trio.CancelScope()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(child, tscope)
                await trio.sleep(after)
                just_before()
                tscope.cancel()
        return not done

    async def timed_out(self, fn: Callable[[], Awaitable[None]], seconds: float) -> bool:
        """Run ``fn`` under the library's raising deadline; True if it expired.

        ``asyncio.timeout``, ``trio.fail_after``, ``anyio.fail_after``.
        """
        try:
            if self.anyio:
                with anyio.fail_after(seconds):
                    await fn()
            elif self.name == "trio":
                with trio.fail_after(seconds):
                    await fn()
            else:
                async with asyncio.timeout(seconds):
                    await fn()
        except (TimeoutError, trio.TooSlowError):
            return True
        return False

    async def alongside(
        self, main: Callable[[], Awaitable[T]], other: Callable[[], Awaitable[None]]
    ) -> T:
        """``main()``'s result, with ``other()`` run as a second task meanwhile."""
        result: list[T] = []

        async def run_main() -> None:
            result.append(await main())

        async def run_other() -> None:
            await other()

        if self.anyio:
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_other)
                tg.start_soon(run_main)
        elif self.name == "trio":
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_other)
                nursery.start_soon(run_main)
        else:
            await asyncio.gather(run_other(), run_main())
        return result[0]


class Source:
    """A subscription and the kernel side that emits its events (fakes.make_source), with timers."""

    def __init__(self, kind: str) -> None:
        source = make_source(kind)
        self.sub: Subscription = source.sub
        self._emit = source.emit
        self._timers: list[threading.Timer] = []

    def emit(self, *values: int) -> None:
        self._emit(list(values))

    def later(self, seconds: float, fn: Callable[[], object]) -> None:
        """Call ``fn`` from another thread ``seconds`` from now (the kernel's way)."""
        timer = threading.Timer(seconds, fn)
        self._timers.append(timer)
        timer.start()

    def close(self) -> None:
        for timer in self._timers:
            timer.join()
        self.sub.close()


@pytest.fixture(params=["asyncio", "trio", "anyio-asyncio", "anyio-trio"])
def backend(request: pytest.FixtureRequest) -> Backend:
    return Backend(str(request.param))


@pytest.fixture(params=["queue", "signal", "bpf-ringbuf", "bpf-signal"])
def src(request: pytest.FixtureRequest) -> Iterator[Source]:
    s = Source(str(request.param))
    try:
        yield s
    finally:
        s.close()


def values(events: list[Event]) -> list[int]:
    return [e.value for e in events]


# -- reading -----------------------------------------------------------------------------


def test_aread_waits_for_events(backend: Backend, src: Source) -> None:
    async def main() -> list[list[int]]:
        src.emit(1, 2)
        got = [values(await src.sub.aread())]  # pending already: no wait
        src.later(0.05, lambda: src.emit(3))
        got.append(values(await src.sub.aread()))  # no timeout
        src.later(0.05, lambda: src.emit(4, 5))
        got.append(values(await src.sub.aread(1, timeout=5)))
        got.append(values(await src.sub.aread(timeout=5)))
        return got

    assert backend.run(main) == [[1, 2], [3], [4], [5]]


def test_aread_timeout(backend: Backend, src: Source) -> None:
    async def main() -> tuple[list[Event], list[Event], float]:
        t0 = time.monotonic()
        waited = await src.sub.aread(timeout=0.05)
        elapsed = time.monotonic() - t0
        return await src.sub.aread(timeout=0), waited, elapsed

    now, waited, elapsed = backend.run(main)
    assert now == [] and waited == []
    assert elapsed >= 0.05


def test_async_for_and_leaving_early_loses_nothing(backend: Backend, src: Source) -> None:
    async def main() -> tuple[list[int], list[int]]:
        src.emit(0, 1, 2)
        src.later(0.05, lambda: src.emit(-1))
        got = []
        async for ev in src.sub:
            got.append(ev.signed_value)
            if len(got) == 4:
                break
        src.emit(5, 6, 7)
        async for ev in src.sub:
            assert ev.value == 5
            break  # 6 and 7 read with it, still buffered
        rest = values(await src.sub.aread(10, timeout=1))
        return got, rest

    assert backend.run(main) == ([0, 1, 2, -1], [6, 7])


def test_aevents_ends_after_the_timeout(backend: Backend, src: Source) -> None:
    async def main() -> list[int]:
        src.emit(1, 2)
        return [e.value async for e in src.sub.aevents(timeout=0.05)]

    assert backend.run(main) == [1, 2]


# -- cancellation ------------------------------------------------------------------------


@pytest.mark.parametrize("emit_at_cancel", [False, True])
def test_cancelled_wait_loses_nothing(backend: Backend, src: Source, emit_at_cancel: bool) -> None:
    """Cancelled while waiting (with the event arriving as it is cancelled, or not)."""

    async def main() -> tuple[bool, list[int], list[int]]:
        got: list[int] = []

        async def reader() -> None:
            got.extend(values(await src.sub.aread(1)))

        stopped = await backend.cancelled(
            reader, 0.05, lambda: src.emit(8) if emit_at_cancel else None
        )
        if not emit_at_cancel:
            src.emit(8)
        got.extend(values(await src.sub.aread(5, timeout=1)))
        # still usable: another wait, woken by an event from another thread
        src.later(0.05, lambda: src.emit(9))
        return stopped, got, values(await src.sub.aread(5, timeout=5))

    stopped, got, after = backend.run(main)
    assert got == [8] and after == [9]
    if not emit_at_cancel:
        assert stopped


def test_expired_deadline_loses_nothing(backend: Backend, src: Source) -> None:
    """asyncio.timeout, trio.fail_after, anyio.fail_after around a wait."""

    async def main() -> tuple[bool, list[int]]:
        async def reader() -> None:
            await src.sub.aread(1)

        expired = await backend.timed_out(reader, 0.05)
        src.emit(3, 4)
        got = [e.value async for e in src.sub.aevents(timeout=0.05)]
        return expired, got

    assert backend.run(main) == (True, [3, 4])


def test_cancelled_consumer_leaves_read_events_buffered(backend: Backend, src: Source) -> None:
    """An ``async for`` body cancelled mid-way: the events read with its one stay."""

    async def main() -> tuple[bool, list[int], list[int]]:
        got: list[int] = []

        async def consume() -> None:
            async for ev in src.sub:
                got.append(ev.value)
                await backend.sleep(10)  # cancelled here, 2 and 3 read and buffered

        src.emit(1, 2, 3)
        stopped = await backend.cancelled(consume, 0.05, lambda: None)
        src.emit(4)
        return stopped, got, values(await src.sub.aread(10, timeout=1))

    assert backend.run(main) == (True, [1], [2, 3, 4])


# -- one waiter, and close ---------------------------------------------------------------


def test_a_second_waiter_is_refused(backend: Backend, src: Source) -> None:
    async def main() -> list[int]:
        async def second() -> None:
            await backend.sleep(0.02)
            with pytest.raises(UpcallError, match="already waiting"):
                await src.sub.aread(1)
            src.emit(6)

        return values(await backend.alongside(lambda: src.sub.aread(1), second))

    assert backend.run(main) == [6]


def test_close_from_another_thread_wakes_the_waiter(backend: Backend, src: Source) -> None:
    async def main() -> None:
        src.later(0.05, src.sub.close)
        with pytest.raises(ClosedError):
            await src.sub.aread(timeout=5)

    t0 = time.monotonic()
    backend.run(main)
    assert src.sub.closed
    assert time.monotonic() - t0 < 4  # woken by the close, not by the timeout


def test_close_from_another_task_ends_async_for(backend: Backend, src: Source) -> None:
    async def main() -> list[Event]:
        async def closer() -> None:
            await backend.sleep(0.05)
            src.sub.close()

        async def collect() -> list[Event]:
            return [e async for e in src.sub.aevents(timeout=5)]

        return await backend.alongside(collect, closer)

    t0 = time.monotonic()
    assert backend.run(main) == []
    assert src.sub.closed
    assert time.monotonic() - t0 < 4  # woken by the close, not ended by the timeout


def test_aread_after_close_raises(backend: Backend, src: Source) -> None:
    src.sub.close()

    async def main() -> None:
        with pytest.raises(ClosedError):
            await src.sub.aread()

    backend.run(main)


# -- which library ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("asyncio", "asyncio"),
        ("trio", "trio"),
        ("anyio-asyncio", "asyncio"),
        ("anyio-trio", "trio"),
    ],
)
def test_the_running_library_is_detected(name: str, expected: str) -> None:
    async def main() -> str:
        return _aio.current_library()

    assert Backend(name).run(main) == expected


def test_an_unknown_library_is_refused() -> None:
    import sniffio

    async def main() -> None:
        token = sniffio.current_async_library_cvar.set("curio")
        try:
            with pytest.raises(UpcallError, match="not curio"):
                await _aio.wait_readable(0, 0)
        finally:
            sniffio.current_async_library_cvar.reset(token)

    asyncio.run(main())


def test_import_and_asyncio_use_load_no_async_library() -> None:
    """``import upcall`` and an asyncio wait load neither trio, anyio nor sniffio."""
    code = (
        "import asyncio, os, sys, upcall\n"
        "from upcall import _aio\n"
        "fd = os.eventfd(1)\n"
        "asyncio.run(_aio.wait_readable(fd, 5))\n"
        "print(sorted({'trio', 'anyio', 'sniffio'} & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
