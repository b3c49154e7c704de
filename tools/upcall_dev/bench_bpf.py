# SPDX-License-Identifier: LGPL-2.1-or-later
"""``python -m upcall_dev bench-bpf``: BPF signal and ring buffer, Python consumer against C.

Both consumers load the same object and fire the same user-triggered hook,
in the same run; C from a producer thread, Python from a forked producer
process (a thread would share the consumer's GIL, a cost C's consumer does
not pay and a real event source would not cause); both producers spin on a
shared counter in latency mode:

- throughput: bursts of 1,000 events per system call (``bpf_loop`` in the
  kernel) until ``events`` were emitted; events/s = received / wall time from
  the first burst to the last event read. Drops are counted, not hidden.
  Python reads lists of events (``sub.read(8192)``) and, in a second run,
  columns (``sub.read_batch(8192)``, no object per event), which issue 14's
  target holds to >= 80% of C's events/s.
- latency: one event in flight at a time; each carries the BPF program's
  ``bpf_ktime_get_ns()``; latency = CLOCK_MONOTONIC in the callback minus it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import os
import signal
import statistics
import struct
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from upcall._args import parse_count
from upcall._event import Event, monotonic_ns
from upcall.bpf._errors import BpfError
from upcall.bpf._object import object_path
from upcall.bpf._subscription import BpfSubscription, Trigger

from . import REPO
from .progress import steps

BURST = 1000
RING = 16 << 20
TARGET_BATCH_EPS = 0.8  # read_batch() events/s against the C consumer's (issue 14)


def _consumer_path() -> Path:
    p = REPO / "build" / "bpf" / "upcall-bpf-consumer"
    if not p.is_file():
        raise BpfError(f"C consumer {p} not built: run `make bpf-build`")
    return p


_COUNTER = struct.Struct("=Q")


@contextlib.contextmanager
def _producer(fire: Callable[[], None]) -> Iterator[Callable[[], bool]]:
    """Run ``fire`` in a forked child; yield a function telling whether it ended."""
    pid = os.fork()
    if pid == 0:  # the child: no cleanup of the parent's objects, just exit
        code = 1
        try:
            fire()
            code = 0
        finally:
            os._exit(code)
    status: list[int] = []

    def done() -> bool:
        if not status:
            p, st = os.waitpid(pid, os.WNOHANG)
            if p:
                status.append(st)
        return bool(status)

    try:
        yield done
    except BaseException:
        if not done():
            os.kill(pid, signal.SIGKILL)
            status.append(os.waitpid(pid, 0)[1])
        raise
    if not status:
        status.append(os.waitpid(pid, 0)[1])  # it ends within its own timeouts
    if os.waitstatus_to_exitcode(status[0]) != 0:
        raise BpfError(f"the producer process failed: exit status {status[0]:#x}")


def py_throughput(via: str, events: int, api: str = "read") -> dict[str, Any]:
    """Python consumer's events/s; ``api`` ``read`` (lists of events) or ``read_batch``."""
    with BpfSubscription(Trigger(), via=via, ring_size=RING) as sub:

        def produce() -> None:
            sent = 0
            while sent < events:
                n = min(BURST, events - sent)
                sub.trigger(sent, n, seq=True)
                sent += n

        got = 0
        t0 = time.perf_counter()
        with _producer(produce) as done:
            while True:
                if api == "read_batch":
                    got += len(sub.read_batch(8192, timeout=0.01))
                else:
                    got += len(sub.read(8192, timeout=0.01))
                if done():
                    st = sub.stats()
                    if got + st.dropped >= st.emitted:
                        break
            t1 = time.perf_counter()
        st = sub.stats()
    return {
        "consumer": "python",
        "api": api,
        "via": via,
        "mode": "throughput",
        "emitted": st.emitted,
        "received": got,
        "dropped": st.dropped,
        "seconds": t1 - t0,
    }


def py_latency(via: str, events: int) -> tuple[dict[str, Any], list[int]]:
    lat: list[int] = []
    # The consumer's count, shared with the producer process (C: an atomic).
    shared = mmap.mmap(-1, _COUNTER.size)
    with BpfSubscription(Trigger(), via=via) as sub:

        @sub.on_event
        def _cb(ev: Event) -> None:
            assert ev.timestamp_ns is not None
            lat.append(monotonic_ns() - ev.timestamp_ns)
            _COUNTER.pack_into(shared, 0, len(lat))

        def produce() -> None:
            # One event in flight: spin until the last one was received.
            for i in range(events):
                deadline = time.monotonic() + 10
                while _COUNTER.unpack_from(shared, 0)[0] < i:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the consumer stopped")
                sub.trigger(0, 1, stamp=True)

        t0 = time.perf_counter()
        with _producer(produce) as done:
            while len(lat) < events:
                # The callbacks run here, in the main thread, as run() reads.
                if not sub.run(1.0) and done():
                    break
            t1 = time.perf_counter()
        st = sub.stats()
    shared.close()
    res = {
        "consumer": "python",
        "via": via,
        "mode": "latency",
        "emitted": st.emitted,
        "received": len(lat),
        "dropped": st.dropped,
        "seconds": t1 - t0,
    }
    return res, lat


def c_run(via: str, mode: str, events: int, out: Path) -> tuple[dict[str, Any], list[int]]:
    samples = out / f"c-{via}-{mode}.bin"
    burst = 1 if mode == "latency" else BURST
    r = subprocess.run(
        [
            str(_consumer_path()),
            str(object_path()),
            via,
            mode,
            str(events),
            str(burst),
            str(samples),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode != 0:
        raise BpfError(f"C consumer failed: {r.stderr.strip()}")
    res: dict[str, Any] = json.loads(r.stdout)
    lat: list[int] = []
    if mode == "latency" and samples.is_file():
        a = array("Q")
        a.frombytes(samples.read_bytes())
        lat = list(a)
        samples.unlink()
    return res, lat


def _pct(xs: list[int], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] / 1000.0


def run(*, events: int, latency_events: int, out: str, plots: bool, as_json: bool = False) -> int:
    """Run the four measurements on both transports; print the table (or JSON with ``as_json``)."""
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    lats: dict[str, list[int]] = {}
    with steps("upcall_dev bench-bpf", 10) as progress:
        for via in ("ringbuf", "signal"):
            progress.step(f"{via}: C throughput, {events:,} events")
            c_tp, _ = c_run(via, "throughput", events, outdir)
            progress.step(f"{via}: Python throughput, {events:,} events")
            py_tp = py_throughput(via, events)
            progress.step(f"{via}: Python read_batch throughput, {events:,} events")
            py_batch = py_throughput(via, events, api="read_batch")
            progress.step(f"{via}: C latency, {latency_events:,} events")
            c_lat_res, c_lat = c_run(via, "latency", latency_events, outdir)
            progress.step(f"{via}: Python latency, {latency_events:,} events")
            py_lat_res, py_lat = py_latency(via, latency_events)
            for who, tp, lr, lat in (
                ("c", c_tp, c_lat_res, c_lat),
                ("python", py_tp, py_lat_res, py_lat),
            ):
                key = f"{who}-{via}"
                lats[key] = lat
                rows.append(
                    {
                        "consumer": who,
                        "via": via,
                        "events_per_s": tp["received"] / tp["seconds"],
                        "received": tp["received"],
                        "dropped": tp["dropped"],
                        "p50_us": _pct(lat, 0.50),
                        "p90_us": _pct(lat, 0.90),
                        "p99_us": _pct(lat, 0.99),
                        "mean_us": statistics.fmean(lat) / 1000.0,
                        "lat_samples": lr["received"],
                    }
                )
            rows[-1].update(
                batch_events_per_s=py_batch["received"] / py_batch["seconds"],
                batch_received=py_batch["received"],
                batch_dropped=py_batch["dropped"],
            )
    table = _table(rows)
    if as_json:
        print(json.dumps({"kernel": os.uname().release, "results": rows}), flush=True)
    else:
        print(table)
    (outdir / "bpf-bench.json").write_text(json.dumps(rows, indent=2) + "\n")
    (outdir / "bpf-bench.md").write_text(table + "\n")
    if plots:
        _plots(rows, lats, outdir)
    return 0


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| transport | consumer | events/s | received | dropped | p50 µs | p90 µs | p99 µs |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['via']} | {r['consumer']} | {r['events_per_s']:,.0f} | {r['received']:,} | "
            f"{r['dropped']:,} | {r['p50_us']:.1f} | {r['p90_us']:.1f} | {r['p99_us']:.1f} |"
        )
    by = {(r["via"], r["consumer"]): r for r in rows}
    lines.append("")
    for via in ("ringbuf", "signal"):
        c, py = by[(via, "c")], by[(via, "python")]
        lines.append(
            f"- {via}: Python/C events/s = {py['events_per_s'] / c['events_per_s']:.0%}; "
            f"p50 Python/C = {py['p50_us'] / c['p50_us']:.2f}x"
        )
        if "batch_events_per_s" in py:
            ratio = py["batch_events_per_s"] / c["events_per_s"]
            lines.append(
                f"- {via}: Python `read_batch(8192)` {py['batch_events_per_s']:,.0f} events/s "
                f"({py['batch_received']:,} received, {py['batch_dropped']:,} dropped) = "
                f"{ratio:.0%} of C's (target >= {TARGET_BATCH_EPS:.0%}: "
                + ("met" if ratio >= TARGET_BATCH_EPS else "**missed**")
                + ")"
            )
    lines.append(f"- kernel {os.uname().release}, {os.cpu_count()} CPUs")
    return "\n".join(lines)


def _plots(rows: list[dict[str, Any]], lats: dict[str, list[int]], outdir: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("upcall_dev: matplotlib missing: no plots (make deps installs it)", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, lat in sorted(lats.items()):
        xs = sorted(x / 1000.0 for x in lat)
        ys = [i / len(xs) for i in range(len(xs))]
        ax.plot(xs, ys, label=key)
    ax.set_xscale("log")
    ax.set_xlabel("latency, BPF timestamp to callback (µs, log)")
    ax.set_ylabel("fraction of events")
    ax.set_title("BPF path latency CDF")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(outdir / "bpf-latency.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = [f"{r['via']}\n{r['consumer']}" for r in rows]
    vals = [r["events_per_s"] / 1e6 for r in rows]
    colors = ["#4c72b0" if r["consumer"] == "c" else "#dd8452" for r in rows]
    ax.bar(labels, vals, color=colors)
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:.2f}", ha="center", va="bottom")
    ax.set_ylabel("million events/s")
    ax.set_title(f"BPF path throughput (bursts of {BURST} per syscall)")
    fig.tight_layout()
    fig.savefig(outdir / "bpf-throughput.png", dpi=110)
    plt.close(fig)


def cmd_bench(args: argparse.Namespace) -> int:
    """Time the BPF signal and ring buffer, a Python and a C consumer each."""
    return run(
        events=args.events,
        latency_events=args.latency_events,
        out=args.out,
        plots=not args.no_plots,
        as_json=args.json,
    )


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bench-bpf`` on the developer command line's subcommands."""
    b = subparsers.add_parser(
        "bench-bpf",
        help="latency and throughput of BPF signal and ring buffer, Python vs C",
        description=cmd_bench.__doc__,
        epilog="example:\n"
        "  sudo .venv/bin/python -m upcall_dev bench-bpf --events 20000 --latency-events 2000 "
        "--no-plots",
    )
    b.add_argument(
        "--events",
        type=parse_count,
        default=200_000,
        metavar="N",
        help="events per throughput run (default 200,000)",
    )
    b.add_argument(
        "--latency-events",
        type=parse_count,
        default=20_000,
        metavar="N",
        help="events per latency run (default 20,000)",
    )
    b.add_argument("--out", default="build/bench", metavar="DIR", help="where results and plots go")
    b.add_argument("--no-plots", action="store_true", help="write no PNG plots (no matplotlib)")
    b.add_argument("--json", action="store_true", help="print the results as one JSON object")
    b.set_defaults(func=cmd_bench)
