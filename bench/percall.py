"""In the guest: what one ``read(1)`` costs the CPU, per transport, beside a bare system call.

No one waits here: the events are emitted first (``Device.emit``), then
read without waiting (``timeout=0``), so each figure is the time of the
calls alone, best of 5 rounds: ``emit`` + ``read(1)`` minus ``emit`` (a
read(1) that reads one event from the kernel: its system call, the decode,
the accounting, the ``Event``), ``read(1)`` of an event already read into the
subscription's buffer (no system call), and for scale an ``os.read`` that
finds nothing (one system call, no data), ``time.monotonic_ns()`` (each
``Event.received_ns`` is one), a pure-Python ``make_event`` and an empty
call.

    python -m upcall_dev vm -- .venv/bin/python bench/percall.py
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable

import upcall
from upcall._event import make_event

TRANSPORTS = ("queue", "eventfd", "fasync", "signal", "netlink")


def per_call_us(fn: Callable[[], object], n: int) -> float:
    """µs per call of ``fn``, the best of 5 rounds of ``n`` calls."""
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - t) / n / 1000)
    return best


def measure(dev: upcall.Device, via: str) -> tuple[float, float]:
    """µs of a read(1) of one event from the kernel, and of one from the buffer."""
    sub = dev.subscribe(via=via, queue_size=None if via == "netlink" else 65536)

    def drain() -> None:
        while sub.read(4096, timeout=0):
            pass

    def emit64() -> None:
        for _ in range(64):
            dev.emit(1)

    def buffered() -> None:  # one read(2) of 64, then 63 read(1)s from the buffer
        emit64()
        for _ in range(64):
            sub.read(1, timeout=0)

    def one() -> None:
        dev.emit(1)
        sub.read(1, timeout=0)

    try:
        emit = per_call_us(lambda: dev.emit(1), 2000)
        drain()
        emit_read = per_call_us(one, 2000)
        drain()
        burst = per_call_us(buffered, 50)
        drain()
        emits = per_call_us(emit64, 50)
    finally:
        sub.close()
    return emit_read - emit, (burst - emits) / 64


def main() -> None:
    with upcall.open() as dev:
        for via in TRANSPORTS:
            kernel, buffer = measure(dev, via)
            print(
                f"{via:8s} read(1) of one event from the kernel {kernel:6.2f} µs; "
                f"from the buffer {buffer:5.2f} µs",
                flush=True,
            )
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def nothing() -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(r, 48)

    try:
        print(f"os.read that finds nothing {per_call_us(nothing, 3000):.2f} µs")
    finally:
        os.close(r)
        os.close(w)
    print(f"time.monotonic_ns() {per_call_us(time.monotonic_ns, 3000):.2f} µs")
    print(
        "make_event() in Python "
        f"{per_call_us(lambda: make_event(1, 2, 3, 'queue', 4, 5, None, 0), 3000):.2f} µs"
    )
    print(f"an empty call {per_call_us(lambda: None, 3000):.2f} µs")


if __name__ == "__main__":
    main()
