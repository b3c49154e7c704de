"""The async API on every transport of the real module, under asyncio and trio.

The host tests check the contract on stand-ins; here the descriptors the
loop watches are the module's own (its queue's poll, the signalfd, the
netlink socket), so what is checked is that they wake a waiting task
through the loop. Each step waits for readiness, never a fixed time: the
reader task is blocked in its wait before the event is emitted or the
subscription closed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

import upcall
from upcall._errors import ClosedError

VIAS = ["queue", "fasync", "eventfd", "netlink", "signal"]


def with_reader_blocked(
    library: str, reader: Callable[[], Awaitable[None]], then: Callable[[], object]
) -> None:
    """Run ``reader`` as a task; once it is blocked in its wait, call ``then()``."""
    if library == "trio":

        async def trio_main() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await trio.testing.wait_all_tasks_blocked()
                then()

        trio.run(trio_main)
        return

    async def asyncio_main() -> None:
        async def task_body() -> None:
            await reader()

        task = asyncio.ensure_future(task_body())
        await asyncio.sleep(0)  # the task runs up to its wait on the loop
        then()
        await asyncio.wait_for(task, 60)

    asyncio.run(asyncio_main())


@pytest.mark.parametrize("library", ["asyncio", "trio"])
@pytest.mark.parametrize("via", VIAS)
def test_a_waiting_reader_is_woken(dev: upcall.Device, via: str, library: str) -> None:
    with dev.subscribe(via) as sub:
        got: list[int] = []

        async def reader() -> None:
            got.extend(e.value for e in await sub.aread(8, timeout=60))

        with_reader_blocked(library, reader, lambda: dev.emit(4242))
        assert got == [4242]

        # a cancelled wait loses nothing: the next one gets what came meanwhile
        async def cancelled_then_read() -> None:
            if library == "trio":
                with trio.move_on_after(0.01):
                    await sub.aread(1)
            else:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.01):
                        await sub.aread(1)
            assert dev.emit(7) >= 1
            got.extend(e.value for e in await sub.aread(8, timeout=60))

        if library == "trio":
            trio.run(cancelled_then_read)
        else:
            asyncio.run(cancelled_then_read())
        assert got == [4242, 7]


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_close_from_another_thread_wakes_the_reader(dev: upcall.Device, library: str) -> None:
    with dev.subscribe("queue") as sub:
        raised: list[type[BaseException]] = []

        async def reader() -> None:
            try:
                await sub.aread(timeout=60)
            except ClosedError as e:
                raised.append(type(e))

        def close_from_a_thread() -> None:
            t = threading.Thread(target=sub.close)
            t.start()
            t.join()

        with_reader_blocked(library, reader, close_from_a_thread)
        assert raised == [ClosedError]
