"""In the guest: a queue's blocking ``read(1)`` against bare loops doing more of its work.

One event in flight, the reader asleep in read(2) when it comes, raised
four ways in the same boot:

- ``timer``: the module's own hrtimer source (upcall_timer, 2,000 Hz): no
  other task, the CPU idle between events, the reader woken from the timer;
- ``thread``: an emitter thread in the reader's process, which sleeps
  300 µs after each acknowledgment, then emits (``Device.emit``);
- ``process``: the same emitter in a child process: the same work, but
  each event is a switch to another address space and back;
- ``bench``: the bench's own queue rows (``upcall_dev.bench.py_latency``,
  its C emitter process, which sleeps 300 µs after each acknowledgment).

The loops, each on a fresh subscription:

- ``bare 48``: ``os.read(fd, 48)``, one record asked for, stamped at once;
- ``bare 3072`` (timer): the same asking for 64 records (what ``read(1)``
  asks the kernel for, so that a burst is taken in one system call);
- ``bare 3072 + decode`` (timer): that, then the library's work done in
  Python: the ``Event`` with its ``received_ns`` (records.decode), then the
  stamp;
- ``read(1)``: the library (the compiled core where it is built).

Latency is ``time.monotonic_ns()`` after the read minus the event's
``timestamp_ns``; p50 of 2,000 events, 3 interleaved rounds. A timer event
that came while the one before was still being read (the guest's CPU is a
host thread, which the host may stall) is read with it and not timed; the
script prints how many there were, and fails if the module dropped any.

    python -m upcall_dev vm -- .venv/bin/python bench/blocking_read.py
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import upcall
from upcall import abi
from upcall._transports.records import decode

N = 2000
ROUNDS = 3
HZ = 2000
GAP_S = 300e-6
CPU = 0
TIMER_HZ = Path("/sys/module/upcall_timer/parameters/hz")


def set_hz(hz: int) -> None:
    TIMER_HZ.write_text(str(hz))


def emit_on_ack(dev: upcall.Device, ack: int) -> None:
    """The thread or process emitter: one event GAP_S after each b"a" on ``ack``; b"q" ends."""
    while os.read(ack, 1) == b"a":
        time.sleep(GAP_S)
        dev.emit(1)


@contextlib.contextmanager
def emitter(dev: upcall.Device, how: str) -> Iterator[Callable[[], None]]:
    """Raise the events ``how`` (module docstring); yields the call made before each read."""
    if how == "timer":
        set_hz(HZ)
        try:
            yield lambda: None
        finally:
            set_hz(0)
        return
    ack_r, ack_w = os.pipe()
    if how == "thread":
        thread = threading.Thread(target=emit_on_ack, args=(dev, ack_r))
        thread.start()
    else:
        pid = os.fork()
        if pid == 0:
            os.close(ack_w)
            try:
                with upcall.open() as own:
                    emit_on_ack(own, ack_r)
            finally:
                os._exit(0)

    def ack() -> None:
        os.write(ack_w, b"a")

    try:
        yield ack
    finally:
        os.write(ack_w, b"q")
        if how == "thread":
            thread.join()
        else:
            os.waitpid(pid, 0)
        os.close(ack_r)
        os.close(ack_w)


def p50_us(dev: upcall.Device, how: str, kind: str, doubled: list[int]) -> float:
    """p50 µs of ``kind`` over N events raised ``how``; those read with another to ``doubled``."""
    unpack = abi.EVENT_RECORD.unpack_from
    mono = time.monotonic_ns
    lat: list[int] = []
    extra = 0
    source = abi.UPCALL_SOURCE_TIMER if how == "timer" else abi.UPCALL_SOURCE_USER
    with dev.subscribe(via="queue", sources=source) as sub:
        fd = sub.fileno()

        def bare(size: int) -> int:
            nonlocal extra
            data = os.read(fd, size)
            now = mono()
            extra += len(data) // abi.UPCALL_EVENT_SIZE - 1
            stamp: int = unpack(data)[1]
            return now - stamp

        def bare_decode() -> int:
            nonlocal extra
            events = decode(os.read(fd, 3072), "queue", mono())
            now = mono()
            extra += len(events) - 1
            return now - (events[0].timestamp_ns or 0)

        def library() -> int:
            nonlocal extra
            events = sub.read(1)
            now = mono()
            extra += len(sub.read(64, timeout=0))  # read with it into the buffer
            return now - (events[0].timestamp_ns or 0)

        reads: dict[str, Callable[[], int]] = {
            "bare 48": lambda: bare(abi.UPCALL_EVENT_SIZE),
            "bare 3072": lambda: bare(3072),
            "bare 3072 + decode": bare_decode,
            "read(1)": library,
        }
        one = reads[kind]
        if kind != "read(1)":
            os.set_blocking(fd, True)  # the library never reads this subscription
        with emitter(dev, how) as before:
            for _ in range(N):
                before()
                lat.append(one())
        doubled.append(extra)
        st = sub.stats()
        if st.dropped:
            raise RuntimeError(f"{kind}: {st.dropped} events dropped")
    return statistics.median(lat) / 1000


def bench_p50_us(api: str, out: Path) -> float:
    """p50 µs of the bench's own queue row ``api`` ("bare" or "read")."""
    from upcall_dev.bench import py_latency

    res = py_latency("queue", N, out, api=api, cpu=CPU)
    if res["lost"] or res["received"] != N:
        raise RuntimeError(f"bench {api}: {res['received']} received, {res['lost']} lost")
    return float(res["p50_ns"]) / 1000


def main() -> None:
    # The timer is started, and fires, on this CPU; the emitters run on it too.
    os.sched_setaffinity(0, {CPU})
    loops = [
        ("timer", "bare 48"),
        ("timer", "bare 3072"),
        ("timer", "bare 3072 + decode"),
        ("timer", "read(1)"),
        ("thread", "bare 48"),
        ("thread", "read(1)"),
        ("process", "bare 48"),
        ("process", "read(1)"),
    ]
    res: dict[tuple[str, str], list[float]] = {}
    doubled: list[int] = []
    with upcall.open() as dev, tempfile.TemporaryDirectory() as tmp:
        for _ in range(ROUNDS):
            for how, kind in loops:
                res.setdefault((how, kind), []).append(p50_us(dev, how, kind, doubled))
            for api, kind in (("bare", "bare 48"), ("read", "read(1)")):
                res.setdefault(("bench", kind), []).append(bench_p50_us(api, Path(tmp)))
    for (how, kind), values in res.items():
        print(f"{how:7s} {kind:20s} p50 µs " + " ".join(f"{v:6.1f}" for v in values), flush=True)
    print(f"events read with the one before (not timed): {sum(doubled)} of {len(doubled) * N}")
    for how in ("timer", "thread", "process", "bench"):
        f = statistics.median(res[how, "bare 48"])
        r = statistics.median(res[how, "read(1)"])
        print(
            f"{how:7s} read(1) / bare 48: {r / f:.2f}x, {r - f:.1f} µs more (medians)", flush=True
        )


if __name__ == "__main__":
    main()
