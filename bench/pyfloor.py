"""On the host: what the library adds to a bare ``os.read`` of the same fd.

No module is needed: a pipe plays one QUEUE subscriber's file (48-byte
records written whole, poll(2) readable while some wait), as the host
tests' stand-in does, and the BPF ring buffer runs for real (root). Each
case runs the bare loop and the library's call on the same fd, in the same
process, interleaved, and prints the ratio library/bare:

- ``latency``: a writer process sends one record when the reader asks for
  it (a byte on another pipe) and the reader times the round trip; p50 of
  bare ``poll`` + ``os.read(fd, 48)`` against ``sub.read(1)``,
  ``sub.poll(None)``, ``next(iter(sub))``, ``await sub.aread(1)``.
- ``drain``: the queue holds N records; per-event time of bare
  ``os.read(fd, 48)`` against ``sub.read(1)`` and ``sub.read_batch(1024)``.
- ``ringbuf`` (root, libbpf and the BPF object): N events triggered at once,
  drained by ``read(1)`` and ``read_batch``, against a bare Python decode of
  the ring (struct.unpack_from per record, no library).

    sudo .venv/bin/python bench/pyfloor.py [--n 20000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import select
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from upcall import abi

F_SETPIPE_SZ = 1031
REC = abi.UPCALL_EVENT_SIZE


class PipeFile:
    """One QUEUE subscriber's file over a pipe (the host tests' FakeQueueFile, minimal).

    It cannot unsubscribe (nothing would end a blocking read at close), so
    read(1) waits in poll(2): the module's blocking read is measured in the guest.
    """

    unsubscribes = False

    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_CLOEXEC)
        fcntl.fcntl(self.w, F_SETPIPE_SZ, 1 << 20)
        self.seqno = 0

    def fileno(self) -> int:
        return self.r

    def subscribe(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_eventfd(self, fd: int) -> None:
        pass

    def stats(self) -> Any:
        from upcall import Stats

        return Stats(self.seqno, self.seqno, 0, self.seqno, 0, abi.UPCALL_TRANSPORT_QUEUE, 0)

    def close(self) -> None:
        for fd in (self.r, self.w):
            os.close(fd)

    def records(self, n: int) -> bytes:
        out = b"".join(abi.EVENT_RECORD.pack(self.seqno + i + 1, 0, i, 0, 0) for i in range(n))
        self.seqno += n
        return out


def _queue_sub(file: PipeFile) -> Any:
    from upcall._transports.queue import QueueSubscription

    return QueueSubscription(file)


def _blocking(fd: int, on: bool) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK if on else flags | os.O_NONBLOCK)


def latency(n: int) -> dict[str, float]:
    """p50 µs of a round trip through a writer process, bare and per API."""
    file = PipeFile()
    ask_r, ask_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer: one record per byte asked
        os.close(ask_w)
        seq = 0
        while b := os.read(ask_r, 1):
            seq += 1
            os.write(file.w, abi.EVENT_RECORD.pack(seq, 0, seq, 0, 0))
            if b == b"q":
                break
        os._exit(0)
    os.close(ask_r)
    sub = _queue_sub(file)
    fd = file.r
    loop = asyncio.new_event_loop()

    def bare() -> None:
        os.write(ask_w, b"a")
        p = select.poll()
        p.register(fd, select.POLLIN)
        p.poll()
        os.read(fd, REC)

    def bare_blocking() -> None:
        os.write(ask_w, b"a")
        os.read(fd, REC)

    def read1() -> None:
        os.write(ask_w, b"a")
        sub.read(1)

    def poll_() -> None:
        os.write(ask_w, b"a")
        sub.poll(None)

    it = iter(sub)

    def iterate() -> None:
        os.write(ask_w, b"a")
        next(it)

    def aread() -> None:
        os.write(ask_w, b"a")
        loop.run_until_complete(sub.aread(1))

    cases: dict[str, Callable[[], None]] = {
        "bare poll+read": bare,
        "read(1)": read1,
        "poll(None)": poll_,
        "iteration": iterate,
        "aread(1)": aread,
    }
    lat: dict[str, list[float]] = {k: [] for k in cases}
    lat["bare blocking read"] = []
    try:
        for _ in range(5):
            for name, fn in cases.items():
                for _ in range(n // 5):
                    t = time.perf_counter_ns()
                    fn()
                    lat[name].append(time.perf_counter_ns() - t)
            _blocking(fd, True)
            for _ in range(n // 5):
                t = time.perf_counter_ns()
                bare_blocking()
                lat["bare blocking read"].append(time.perf_counter_ns() - t)
            _blocking(fd, False)
    finally:
        os.write(ask_w, b"q")
        os.waitpid(pid, 0)
        os.close(ask_w)
        sub.close()
        loop.close()
    return {k: statistics.median(v) / 1000 for k, v in lat.items()}


def drain(n: int) -> dict[str, float]:
    """Per-event ns of draining ``n`` queued records, bare and per API."""
    file = PipeFile()
    sub = _queue_sub(file)
    fd = file.r

    def bare() -> int:
        got = 0
        try:
            while True:
                os.read(fd, REC)
                got += 1
        except BlockingIOError:
            return got

    def bare_batch() -> int:
        got = 0
        unpack = abi.EVENT_RECORD.iter_unpack
        try:
            while True:
                for _rec in unpack(os.read(fd, REC * 1024)):
                    got += 1
        except BlockingIOError:
            return got

    cases: dict[str, Callable[[], int]] = {
        "bare read(48)": bare,
        "bare read(48*1024)+iter_unpack": bare_batch,
        "read(1)": lambda: _drain_read1(sub),
    }
    if hasattr(sub, "read_batch"):
        cases["read_batch(1024)"] = lambda: _drain_batch(sub)
    per: dict[str, list[float]] = {k: [] for k in cases}
    try:
        for _ in range(3):
            for name, fn in cases.items():
                chunk = 16384
                left = n
                total = 0
                while left:
                    k = min(chunk, left)
                    os.write(file.w, file.records(k))
                    t = time.perf_counter_ns()
                    assert fn() == k
                    total += time.perf_counter_ns() - t
                    left -= k
                per[name].append(total / n)
    finally:
        sub.close()
    return {k: min(v) for k, v in per.items()}


def ringbuf(n: int) -> dict[str, float] | str:
    """Per-event ns draining ``n`` BPF ring buffer events: bare decode vs library."""
    if os.geteuid() != 0:
        return "skipped: needs root"
    try:
        from upcall.bpf import BpfSubscription, Trigger
        from upcall.bpf._abi import RING_RECORD

        sub = BpfSubscription(Trigger(), via="ringbuf", ring_size=1 << 22)
    except Exception as e:
        return f"skipped: {e}"
    with sub:
        ring = _ring_of(sub)
        per: dict[str, list[float]] = {"bare decode": [], "read(1)": [], "read_batch(1024)": []}

        def bare() -> int:
            # The least Python can do: positions, one unpack_from per record.
            cons = ring._cons.value
            prod = ring.available() + cons
            data, mask, unpack = ring._data, ring._mask, RING_RECORD.unpack_from
            got = 0
            while cons < prod:
                unpack(data, cons & mask)
                cons += RING_RECORD.size
                got += 1
            ring._cons.value = cons
            return got

        cases: dict[str, Callable[[], int]] = {
            "bare decode": bare,
            "read(1)": lambda: _drain_read1(sub),
        }
        if hasattr(sub, "read_batch"):
            cases["read_batch(1024)"] = lambda: _drain_batch(sub)
        for _ in range(3):
            for name, fn in cases.items():
                left, total = n, 0
                while left:
                    k = min(50000, left)
                    sub.trigger(0, k, seq=True)
                    t = time.perf_counter_ns()
                    assert fn() == k
                    total += time.perf_counter_ns() - t
                    left -= k
                per[name].append(total / n)
        return {k: min(v) for k, v in per.items() if v}


def _drain_read1(sub: Any) -> int:
    got = 0
    while sub.read(1, timeout=0):
        got += 1
    return got


def _drain_batch(sub: Any) -> int:
    got = 0
    while b := sub.read_batch(1024, timeout=0):
        got += len(b)
    return got


def _ring_of(sub: Any) -> Any:
    for attr in ("_ring", "_reader"):
        r = getattr(sub, attr, None)
        if r is not None and hasattr(r, "_cons"):
            return r
        inner = getattr(r, "_ring", None)
        if inner is not None:
            return inner
    raise RuntimeError("no ring reader found")


def _ratios(d: dict[str, float], base: str) -> dict[str, str]:
    return {k: f"{v:.2f} ({v / d[base]:.2f}x)" for k, v in d.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res: dict[str, Any] = {
        "latency_p50_us": latency(min(args.n, 10000)),
        "drain_ns_per_event": drain(args.n),
        "ringbuf_ns_per_event": ringbuf(args.n * 5),
    }
    if args.json:
        print(json.dumps(res))
        return
    print("latency p50 us (ratio to bare poll+read):")
    for k, v in _ratios(res["latency_p50_us"], "bare poll+read").items():
        print(f"  {k:32} {v}")
    print("drain ns/event (ratio to bare read(48)):")
    for k, v in _ratios(res["drain_ns_per_event"], "bare read(48)").items():
        print(f"  {k:32} {v}")
    rb = res["ringbuf_ns_per_event"]
    print("ringbuf ns/event (ratio to bare decode):")
    if isinstance(rb, str):
        print("  " + rb)
    else:
        for k, v in _ratios(rb, "bare decode").items():
            print(f"  {k:32} {v}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
