"""In the guest: what close(2) of a subscribed /dev/upcall costs, against an
eventfd's close in the same boot (the baseline: a file with nothing behind
it). Before subscribers were freed by call_rcu(), each close waited for an
RCU grace period.

    python -m upcall_dev vm -- .venv/bin/python bench/close_cost.py
"""

from __future__ import annotations

import fcntl
import os
import statistics
import time
from collections.abc import Callable

from upcall import abi

N = 500
ROUNDS = 3


def median_close_us(make: Callable[[], int]) -> float:
    times = []
    for _ in range(N):
        fd = make()
        t0 = time.perf_counter_ns()
        os.close(fd)
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1000


def queue_subscriber() -> int:
    fd = os.open("/dev/upcall", os.O_RDWR)
    fcntl.ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE,
                bytes(abi.UpcallSubscribe(transport=abi.UPCALL_TRANSPORT_QUEUE)))  # fmt: skip
    return fd


def main() -> None:
    for n in range(ROUNDS):
        base = median_close_us(lambda: os.eventfd(0))
        sub = median_close_us(queue_subscriber)
        print(f"close p50, round {n}: subscriber {sub:.1f} µs, eventfd {base:.1f} µs, "
              f"ratio {sub / base:.1f}x ({N} each)")  # fmt: skip


if __name__ == "__main__":
    main()
