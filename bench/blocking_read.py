"""In the guest: a queue's blocking ``read(1)`` against bare loops doing more of its work.

One event in flight, as the bench's latency rows: a child process, pinned
to the same CPU, emits one event 300 µs after each acknowledgment, so each
finds the reader asleep in read(2). Latency is ``time.monotonic_ns()`` after
the read minus the module's ``timestamp_ns``, p50 of 2,000 events, 3
interleaved rounds, each loop on a fresh subscription:

- ``bare 48``: ``os.read(fd, 48)``, one record asked for, stamped at once;
- ``bare 3072``: the same asking for 64 records (what ``read(1)`` asks the
  kernel for, so that a burst is taken in one system call);
- ``bare 3072 + decode``: that, then the library's work done in Python:
  the ``Event`` with its ``received_ns`` (records.decode), then the stamp;
- ``read(1)``: the library (the compiled core where it is built).

    python -m upcall_dev vm -- .venv/bin/python bench/blocking_read.py
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import upcall
from upcall import abi
from upcall._transports.records import decode

N = 2000
ROUNDS = 3
GAP_S = 300e-6
CPU = 0


def emitter(ask: int) -> None:
    """The child: one event per acknowledgment byte, GAP_S after it; b"q" ends."""
    os.sched_setaffinity(0, {CPU})
    with upcall.open() as dev:
        while os.read(ask, 1) == b"a":
            until = time.monotonic() + GAP_S
            while time.monotonic() < until:
                pass
            dev.emit(1)


def p50_us(dev: upcall.Device, ack: int, kind: str) -> float:
    unpack = abi.EVENT_RECORD.unpack_from
    mono = time.monotonic_ns
    lat: list[int] = []
    with dev.subscribe(via="queue") as sub:
        fd = sub.fileno()

        def bare(size: int) -> int:
            stamp: int = unpack(os.read(fd, size))[1]
            return mono() - stamp

        def bare_decode() -> int:
            ev = decode(os.read(fd, 3072), "queue", mono())[0]
            return mono() - (ev.timestamp_ns or 0)

        def library() -> int:
            ev = sub.read(1)[0]
            return mono() - (ev.timestamp_ns or 0)

        reads: dict[str, Callable[[], int]] = {
            "bare 48": lambda: bare(48),
            "bare 3072": lambda: bare(3072),
            "bare 3072 + decode": bare_decode,
            "read(1)": library,
        }
        one = reads[kind]
        if kind != "read(1)":
            os.set_blocking(fd, True)  # the library never reads this subscription
        for _ in range(N):
            os.write(ack, b"a")
            lat.append(one())
    return statistics.median(lat) / 1000


def main() -> None:
    os.sched_setaffinity(0, {CPU})
    ask_r, ask_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ask_w)
        try:
            emitter(ask_r)
        finally:
            os._exit(0)
    os.close(ask_r)
    kinds = ("bare 48", "bare 3072", "bare 3072 + decode", "read(1)")
    res: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        with upcall.open() as dev:
            for _ in range(ROUNDS):
                for kind in kinds:
                    res[kind].append(p50_us(dev, ask_w, kind))
    finally:
        os.write(ask_w, b"q")
        os.close(ask_w)
        os.waitpid(pid, 0)
    for kind, values in res.items():
        print(f"{kind:20s} p50 µs " + " ".join(f"{v:6.1f}" for v in values), flush=True)


if __name__ == "__main__":
    main()
