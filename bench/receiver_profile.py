# SPDX-License-Identifier: LGPL-2.1-or-later
"""Where a Python receiver's time goes, per event: cProfile of ``upcall_dev bench``'s own loops.

Run in a guest with the module (and, for the edu rows, ``--edu``)::

    python -m upcall_dev vm --edu --kernel 6.1 -- \
        .venv/bin/python bench/receiver_profile.py 500 20000

For every transport it runs :func:`upcall_dev.bench.py_latency` (one event in
flight, the bench's emitter) with each API (the bare read, ``read(1)``,
``poll()``, iteration, ``aread(1)``, ``on_event``) and
:func:`upcall_dev.bench.py_throughput` with ``read_batch``, each under cProfile,
and prints per event: Python function calls, and the functions with the
most own time (calls per event, own µs per event under the profiler, which
inflates Python code against C). With an edu device, the bench's Python edu
loops too (bare ``os.read``, ``Subscription.read(1)``, the UIO reader is
not profiled: it needs the device bound to uio_pci_generic). Timings under a
profiler are not the bench's figures; the call counts are exact.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import os
import pstats
import sys
from pathlib import Path

from upcall._edu import find_device
from upcall_dev import bench

TOP = 14


def show(title: str, prof: cProfile.Profile, events: int) -> None:
    """Print the profile's totals and top functions, per event."""
    st = pstats.Stats(prof, stream=io.StringIO())
    total_calls = st.total_calls  # type: ignore[attr-defined]
    total_tt = st.total_tt  # type: ignore[attr-defined]
    print(f"## {title}: {events:,} events, {total_calls / events:.1f} Python calls/event, "
          f"{total_tt / events * 1e6:.1f} µs/event profiled")  # fmt: skip
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    for (path, line, name), (_cc, nc, tt, _ct, _callers) in rows[:TOP]:
        where = f"{Path(path).name}:{line}" if line else "~"
        print(f"  {nc / events:8.2f} calls/ev {tt / events * 1e6:8.2f} µs/ev  {name} ({where})")
    print(flush=True)


def main() -> int:
    """Profile every transport's receive loops, then the edu ones if there is a device."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    tp = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    out = Path(os.environ.get("UPCALL_VM_OUTDIR", "build")) / "profile"
    out.mkdir(parents=True, exist_ok=True)
    for t in bench.TRANSPORTS:
        for api in ("bare", *bench.READ_APIS, "callback"):
            prof = cProfile.Profile()
            prof.enable()
            res = bench.py_latency(t, n, out, api=api, cpu=0)
            prof.disable()
            show(f"{t} latency {api} (p50 {res['p50_ns'] / 1000:.1f} µs)", prof, res["received"])
        prof = cProfile.Profile()
        prof.enable()
        res = bench.py_throughput(t, tp, cpu=1, emit_cpu=0, api="read_batch")
        prof.disable()
        eps = res["received"] / res["seconds"]
        show(f"{t} throughput read_batch ({eps:,.0f} events/s profiled)", prof, res["received"])
    dev = find_device()
    if dev is not None:
        bench._bind_upcall(dev, "intx")
        bench._irq_to_cpu(dev, 0)
        for how in ("os.read", "read"):
            prof = cProfile.Profile()
            prof.enable()
            res = bench.py_edu_latency(dev, n, how, cpu=0)
            prof.disable()
            p50 = res["raise_p50_ns"] / 1000
            show(f"edu intx python {how} (p50 {p50:.1f} µs)", prof, res["received"])
        with contextlib.suppress(OSError):
            bench._bind_upcall(dev, "msi")
    return 0


if __name__ == "__main__":
    sys.exit(main())
