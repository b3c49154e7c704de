"""Exact accounting at volume: every transport at once, from several emitters.

One C receiver per transport (``upcall-bench recv TRANSPORT soak``, built from
bench/receiver.c) and one Python queue receiver subscribe; then emitter
processes, several threads each, send EVENTS events by UPCALL_IOC_EMIT while
the module's hrtimer runs (timer_hz) and, when the guest has one, the edu
device is raised through its sysfs attribute.  Afterwards, for every
subscriber: delivered + dropped == emitted, the receiver got exactly the
delivered events, and its seqno gaps (trailing ones included) are the drops.

The Python receiver reads a smaller share (SHARE of the events, then it
stops reading; its queue keeps dropping the oldest, counted) because Python
cannot keep up with C in an emulated guest.

`make test` runs a small count; `make soak` sets UPCALL_SOAK_EVENTS to run the
same test at 10,000,000 events per transport.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from typing import Any

import pytest
from accounting import check_accounting, drain
from guest import REDUCED
from modules import TIMER_HZ as TIMER

import upcall
from upcall import _edu as edu_sysfs
from upcall_dev import bench
from upcall_dev.progress import counting

EVENTS = int(os.environ.get("UPCALL_SOAK_EVENTS", 20_000 if REDUCED else 100_000))
EMITTERS = int(os.environ.get("UPCALL_SOAK_EMITTERS", 2))
THREADS = int(os.environ.get("UPCALL_SOAK_THREADS", 2))
TIMER_HZ = int(os.environ.get("UPCALL_SOAK_TIMER_HZ", 1000))
# One edu raise per this many ioctl events: the interrupt path is the slow one.
EDU_RATIO = 50
SHARE = 20  # the Python receiver reads EVENTS / SHARE events


def start_receiver(transport: str, stop_r: int, ready_w: int) -> subprocess.Popen[str]:
    cmd = [str(bench.BENCH_BIN), "recv", transport, "soak", "0",
           "--stop-fd", str(stop_r), "--sync-fd", str(ready_w)]  # fmt: skip
    if transport == "netlink":
        return subprocess.Popen(cmd, pass_fds=(stop_r, ready_w), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
    # The module's largest queue: drops come from real overload only.
    cmd += ["--queue-size", str(bench.QUEUE_MAX)]
    return subprocess.Popen(cmd, pass_fds=(stop_r, ready_w), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def start_emitter(n: int, sync_r: int, extra: list[str]) -> subprocess.Popen[str]:
    cmd = [str(bench.BENCH_BIN), "emit", "throughput", str(n), "--sync-fd", str(sync_r), *extra]
    return subprocess.Popen(cmd, pass_fds=(sync_r,), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def finish(proc: subprocess.Popen[str], what: str, timeout: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{what} failed: {err.strip()}"
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def python_reader(
    sub: upcall.Subscription, events: list[upcall.Event], share: int, stop: threading.Event
) -> None:
    """Read until ``share`` events came or the emitters are done."""
    while len(events) < share and not stop.is_set():
        events += sub.read(4096, timeout=0.2)


def test_soak_every_transport_exact(dev: upcall.Device) -> None:
    if not bench.BENCH_BIN.is_file():
        pytest.fail(f"{bench.BENCH_BIN} is missing: run `make bench-build` first")
    edu = edu_sysfs.find_device()
    stop_r, stop_w = os.pipe()
    ready_r, ready_w = os.pipe()
    sync_r, sync_w = os.pipe()
    receivers = {t: start_receiver(t, stop_r, ready_w) for t in bench.TRANSPORTS}
    os.close(ready_w)
    for t in bench.TRANSPORTS:
        assert os.read(ready_r, 1) == b"x", f"C receiver {t} did not subscribe"
    py_events: list[upcall.Event] = []
    stop_py = threading.Event()
    t0 = time.monotonic()
    with dev.subscribe("queue") as py_sub:
        reader = threading.Thread(
            target=python_reader, args=(py_sub, py_events, EVENTS // SHARE, stop_py)
        )
        reader.start()
        emitters = [
            start_emitter(EVENTS // EMITTERS + (k < EVENTS % EMITTERS), sync_r,
                          ["--threads", str(THREADS)])
            for k in range(EMITTERS)
        ]  # fmt: skip
        if edu is not None:
            emitters.append(
                start_emitter(max(1, EVENTS // EDU_RATIO), sync_r, ["--raise", str(edu / "raise")])
            )
        edu_sysfs.sysfs_write(TIMER, str(TIMER_HZ))
        try:
            os.write(sync_w, b"x" * len(emitters))
            # Progress (make soak runs for many minutes): what the module
            # emitted to each subscriber so far, the Python one's count.
            deadline = time.monotonic() + 7200
            with counting("soak: events emitted to each subscriber", EVENTS) as progress:
                while any(e.poll() is None for e in emitters) and time.monotonic() < deadline:
                    progress.update(py_sub.stats().emitted)
                    time.sleep(1)
            results = [finish(p, "emitter", 7200) for p in emitters]
        finally:
            edu_sysfs.sysfs_write(TIMER, "0")
            stop_py.set()
            reader.join()
            os.close(stop_w)  # EOF: the C receivers finish
        recv = {t: finish(p, f"C receiver {t}", 600) for t, p in receivers.items()}
        drain(py_sub, py_events)
        py_stats = check_accounting(py_sub, py_events)
    seconds = time.monotonic() - t0
    for fd in (stop_r, ready_r, sync_r, sync_w):
        os.close(fd)

    ioctl = [r for r in results if not r["raise"]]
    assert sum(r["emitted"] for r in ioctl) == EVENTS
    assert all(r["unqueued"] == 0 for r in ioctl), "an EMIT reached no subscriber"
    # Each ioctl reached every subscriber: five C, one Python, nobody else.
    assert sum(r["queued"] for r in ioctl) == EVENTS * (len(recv) + 1)
    raises = sum(r["emitted"] for r in results if r["raise"])

    emitted = {r["emitted"] for r in recv.values()} | {py_stats.emitted}
    assert len(emitted) == 1, f"every subscriber saw every event: {recv} {py_stats}"
    total = emitted.pop()
    for t, r in recv.items():
        assert r["pending"] == 0, r
        assert r["delivered"] + r["dropped"] == r["emitted"], r
        assert r["received"] == r["delivered"], r
        assert r["lost"] == r["dropped"], r
        assert r["seqno"] == r["emitted"], r
        src = r["by_source"]
        assert src["other"] == 0, r
        print(f"FIGURE: soak {t} C: emitted {r['emitted']} delivered {r['delivered']} "
              f"dropped {r['dropped']} seqno-gaps {r['lost']} received {r['received']} "
              f"(user {src['user']} timer {src['timer']} edu {src['edu']}) "
              f"exact yes")  # fmt: skip
    by = {k: sum(r["by_source"][k] for r in recv.values()) for k in ("user", "timer", "edu")}
    # The kernel's own sources ran beside the ioctls and were delivered too.
    assert total > EVENTS and by["timer"] > 0
    if edu is not None:
        assert by["edu"] > 0
    print(f"FIGURE: soak python queue: emitted {py_stats.emitted} delivered "
          f"{py_stats.delivered} dropped {py_stats.dropped} seqno-gaps {py_sub.lost} "
          f"exact yes")  # fmt: skip
    print(f"FIGURE: soak total: {EVENTS} ioctl events from {EMITTERS}x{THREADS} threads, "
          f"{total - EVENTS} from timer ({TIMER_HZ} Hz) and edu ({raises} raises), "
          f"{total} per subscriber, {len(recv) + 1} subscribers, {seconds:.0f} s")  # fmt: skip
