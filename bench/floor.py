"""In the guest: the queue transport's p50 latency for the C receiver, a bare
Python loop (poll, os.read, struct.unpack: no library) and ``sub.read(1)``,
in interleaved rounds, pinned as ``python -m upcall_dev bench`` pins them. It
tells how much of Python's gap to C is the interpreter and how much the
library.

    python -m upcall_dev vm --edu -- .venv/bin/python bench/floor.py
"""

from __future__ import annotations

import json
import os
import select
import statistics
from array import array
from pathlib import Path

from upcall import abi
from upcall._event import monotonic_ns
from upcall_dev import bench

N = 2000
ROUNDS = 3
CPU = 0


def bare_loop(n: int) -> float:
    """p50 µs of the least Python can do: wait, read one record, stamp."""
    lat = array("q")
    r, w = os.pipe()
    emit = bench._emitter("latency", n, r, bench.GAP_US, CPU)
    os.close(r)
    try:
        with bench._pinned(CPU), bench._subscribe("queue", queue_size=None) as sub:
            fd = sub.file_fd
            p = select.poll()
            p.register(fd, select.POLLIN)
            unpack = abi.EVENT_RECORD.unpack_from
            os.write(w, b"r")
            while len(lat) < n:
                p.poll(20_000)
                try:
                    data = os.read(fd, abi.UPCALL_EVENT_SIZE)
                except BlockingIOError:
                    continue
                lat.append(monotonic_ns() - unpack(data)[1])
                if len(lat) < n:
                    os.write(w, b"a")
    finally:
        os.close(w)
    bench._finish_emitter(emit, 60)
    return statistics.median(lat) / 1000


def main() -> None:
    tmp = Path("/tmp")
    res: dict[str, list[float]] = {"c": [], "bare": [], "read": []}
    for k in range(ROUNDS):
        c = bench.c_run("queue", "latency", N, tmp, cpu=CPU, emit_cpu=CPU)
        res["c"].append(c["p50_ns"] / 1000)
        res["bare"].append(bare_loop(N))
        py = bench.py_latency("queue", N, tmp, api="read", cpu=CPU)
        res["read"].append(py["p50_ns"] / 1000)
        print(k, {name: v[-1] for name, v in res.items()}, flush=True)
    out = Path(os.environ.get("UPCALL_VM_OUTDIR", "/tmp")) / "floor.json"
    out.write_text(json.dumps(res) + "\n")
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
