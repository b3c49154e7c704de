"""What one async wait for a readable descriptor costs, per async library.

An eventfd is written before each wait, so every wait finds it readable at
once: what is measured is the registration with the loop, one turn of the
loop and the unregistration, then the eventfd's read. The figures are in
src/upcall/_aio.py. On the host, no module needed:

    .venv/bin/python bench/aio_wait.py [N]
"""

from __future__ import annotations

import asyncio
import os
import select
import sys
import time
from collections.abc import Awaitable, Callable

import anyio
import trio

from upcall import _aio

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
ROUNDS = 7


async def asyncio_two_fds(fd: int, wake: int, timeout: float | None) -> None:
    """The asyncio path before upcall._aio: a reader on each descriptor, asyncio.timeout."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    for f in (fd, wake):
        loop.add_reader(f, ready)
    try:
        async with asyncio.timeout(timeout):
            await fut
    finally:
        for f in (fd, wake):
            loop.remove_reader(f)


async def anyio_wait(fd: int, timeout: float | None) -> None:
    if timeout is None:
        await anyio.wait_readable(fd)
    else:
        with anyio.move_on_after(timeout):
            await anyio.wait_readable(fd)


Wait = Callable[[int, int, int, float | None], Awaitable[None]]


async def per_wait_us(wait: Wait, timeout: float | None) -> float:
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    wake = os.eventfd(0, os.EFD_NONBLOCK)
    ep = select.epoll()
    ep.register(efd, select.EPOLLIN)
    ep.register(wake, select.EPOLLIN)
    try:
        t0 = time.perf_counter_ns()
        for _ in range(N):
            os.eventfd_write(efd, 1)
            await wait(efd, wake, ep.fileno(), timeout)
            os.eventfd_read(efd)
        return (time.perf_counter_ns() - t0) / N / 1000
    finally:
        ep.close()
        os.close(efd)
        os.close(wake)


PATHS: list[tuple[str, str, Wait]] = [
    ("asyncio add_reader of the epoll (upcall._aio)", "asyncio",
     lambda fd, wake, ep, t: _aio.wait_readable(ep, t)),
    ("asyncio add_reader of both descriptors (before)", "asyncio",
     lambda fd, wake, ep, t: asyncio_two_fds(fd, wake, t)),
    ("anyio wait_readable(epoll) on asyncio", "anyio-asyncio",
     lambda fd, wake, ep, t: anyio_wait(ep, t)),
    ("trio lowlevel.wait_readable(epoll) (upcall._aio)", "trio",
     lambda fd, wake, ep, t: _aio.wait_readable(ep, t)),
    ("anyio wait_readable(epoll) on trio", "anyio-trio",
     lambda fd, wake, ep, t: anyio_wait(ep, t)),
]  # fmt: skip


def run(backend: str, wait: Wait, timeout: float | None) -> float:
    async def main() -> float:
        return await per_wait_us(wait, timeout)

    if backend == "asyncio":
        return asyncio.run(main())
    if backend == "trio":
        return trio.run(main)
    return anyio.run(main, backend=backend.removeprefix("anyio-"))


def main() -> None:
    # Round-robin, the best of the rounds: the host is shared, and a burst of
    # load elsewhere then slows one round of every path, not all of one.
    best: dict[tuple[str, float | None], float] = {}
    for _ in range(ROUNDS):
        for name, backend, wait in PATHS:
            for timeout in (10.0, None):
                us = run(backend, wait, timeout)
                best[name, timeout] = min(us, best.get((name, timeout), us))
    print(f"{N} waits, the best of {ROUNDS} rounds, microseconds per wait")
    print(f"{'path':52} {'timeout=10':>10} {'None':>8}")
    for name, _, _ in PATHS:
        print(f"{name:52} {best[name, 10.0]:10.1f} {best[name, None]:8.1f}")


if __name__ == "__main__":
    main()
