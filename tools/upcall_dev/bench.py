# SPDX-License-Identifier: LGPL-2.1-or-later
"""``python -m upcall_dev bench``: the module's transports, Python receiver against C, in one boot.

On the host, ``bench`` builds the C receiver (``bench/receiver.c``,
``make -f mk/bench.mk bench-build``) and the module, boots one guest kernel
(:func:`upcall_dev.vm.run`) and runs ``python -m upcall_dev bench --in-guest`` there;
the guest writes its results to the harness's run directory
(``$UPCALL_VM_OUTDIR/bench``), which the host copies to ``OUT/guest``. For
every transport (signal, queue, fasync, eventfd, netlink) the C receiver and
the Python receiver take events from the same emitter (the C program's
``emit`` mode, one ``UPCALL_IOC_EMIT`` per event):

- throughput: the emitter emits ``throughput_events`` back to back once the
  receiver is subscribed (queue of ``UPCALL_QUEUE_MAX`` events); events/s =
  events received / time from the go signal to the last event read. Python
  reads with ``sub.read(4096)`` batches (a list of events) and, in a second
  run, with ``sub.read_batch(4096)`` (columns, no object per event). Emitter
  on CPU 0, receiver on CPU 1.
- latency: ``latency_events``, one in flight: the receiver acknowledges each
  event through a pipe, the emitter waits ``gap_us`` and emits the next, so
  each event finds the receiver asleep. Latency = CLOCK_MONOTONIC at receipt
  (C: after the read; Python: in the ``on_event`` callback, and for
  comparison after a blocking ``sub.read(1)``) minus the module's
  ``timestamp_ns`` (stamped in ``upcall_emit()``), or, for the signal
  transport, which carries no timestamp, minus the emitter's clock just before
  the ioctl, sent as the value. Split into interleaved rounds, emitter and
  receiver on CPU 0 (see :func:`guest_main`). Every transport is delivered
  from the module's irq_work, so every figure includes that hop.
- the library's reading calls against the floor: one event in flight as
  above, received with ``sub.read(1)``, ``sub.poll()``, ``for ev in
  sub.events()`` and ``await sub.aread(1)``, each against the "bare read" of
  the same transport, the minimal system-call loop a user would write on the
  subscription's own descriptors (:func:`py_latency`, ``api="bare"``): queue,
  a blocking ``os.read(sub.fileno(), 48)``; signal, a blocking read(2) of the
  signalfd (``sub.fileno()``; the library blocked the signal); fasync, a
  blocking read(2) of its signalfd (``sub.fileno()``), then one read(2) of a
  record from the queue (``sub.file_fd``); eventfd, a blocking read(2) of the
  eventfd (``sub.fileno()``), then one record from the queue; netlink, a
  blocking ``recv`` on the socket (``sub.fileno()``). The time is taken as
  soon as that read returns; decoding the record comes after it. And
  asyncio's own floor for ``aread``, the "bare asyncio read": the same read,
  non-blocking, after a wait in a running asyncio loop (``add_reader`` of a
  future, ``await``, ``remove_reader``; ``api="abare"``).
- accounting, every run: received + dropped (the module's STATS) == emitted,
  and the receiver's seqno gaps equal the drops.

With ``--edu`` the guest also gets QEMU's edu PCI device: the C receiver
raises the device's interrupt itself (sysfs ``raise``) and times raise (and
the handler's timestamp) to receipt for each transport, MSI and INTx; ftrace
times the irq_work hop; then the device is bound to ``uio_pci_generic`` and
the same loop is timed through ``/dev/uioX`` (:func:`edu_runs`).

The host then prints the tables (rich) and the ratios against the targets,
writes ``results.json``, ``module-bench.md`` and PNG plots to ``--out``
(build/bench/), and with ``--publish DIR`` copies the plots there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from upcall import _accel, abi
from upcall._args import parse_count, parse_wait, ranged
from upcall._edu import DRIVER as EDU_DRIVER
from upcall._edu import FORCE_INTX, find_device, sysfs_write
from upcall._edu import PCI_ID as EDU_ID
from upcall._event import Event, monotonic_ns

from . import REPO
from .progress import steps

BENCH_BIN = REPO / "build" / "bench" / "upcall-bench"
TRANSPORTS = ("signal", "queue", "fasync", "eventfd", "netlink")
QUEUE_MAX = 65536
NETLINK_RCVBUF = 64 << 20
PY_BATCH = 4096
IDLE_S = 20.0
DEFAULTS = {"latency": 10_000, "throughput": 200_000, "edu": 10_000}
SMALL = {"latency": 2_000, "throughput": 20_000, "edu": 500}
GAP_US = 300
ROUNDS = 5
# The targets, as ratios within one run.
TARGET_QUEUE_EPS = 0.5
TARGET_P50 = 1.5  # on_event against the C receiver of the same transport
TARGET_UIO = 1.2  # edu interrupt into Python: the library against a Python UIO reader
TARGET_KERNEL_UIO = 1.0  # edu interrupt to the C receiver against UIO's
TARGET_BARE = 1.2  # read(1), poll(), iteration, aread(1) against the bare read
TARGET_BATCH_EPS = 0.8  # read_batch() events/s against C's
# The library's one-event reading calls, compared with the bare read (api "bare").
READ_APIS = ("read", "poll", "iter", "aread")

Result = dict[str, Any]

# -- in the guest ------------------------------------------------------------


def _bin() -> str:
    if not BENCH_BIN.is_file():
        raise FileNotFoundError(
            f"{BENCH_BIN} not built: run `make -f mk/bench.mk bench-build` on the host"
        )
    return str(BENCH_BIN)


def _pcts(lat: Sequence[int], prefix: str = "") -> Result:
    """The C receiver's percentile fields, computed the same way."""
    if not lat:
        return {}
    s = sorted(lat)
    n = len(s)
    return {
        f"{prefix}p50_ns": s[n // 2],
        f"{prefix}p90_ns": s[n * 90 // 100],
        f"{prefix}p99_ns": s[n * 99 // 100],
        f"{prefix}max_ns": s[-1],
        f"{prefix}min_ns": s[0],
        f"{prefix}mean_ns": sum(s) / n,
    }


def _cpu_args(cpu: int | None) -> list[str]:
    return [] if cpu is None else ["--cpu", str(cpu)]


@contextlib.contextmanager
def _pinned(cpu: int | None) -> Iterator[None]:
    """Run the calling thread (and the threads it starts) on ``cpu`` only, if not None."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _emitter(
    mode: str, n: int, sync_r: int, gap_us: int, cpu: int | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            _bin(),
            "emit",
            mode,
            str(n),
            "--sync-fd",
            str(sync_r),
            "--gap-us",
            str(gap_us),
            *_cpu_args(cpu),
        ],
        pass_fds=(sync_r,),
        stdout=subprocess.PIPE,
        text=True,
    )


def _finish_emitter(proc: subprocess.Popen[str], timeout: float) -> Result:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"emitter failed with status {proc.returncode}")
    result: Result = json.loads(out)
    return result


def _timeout(n: int) -> float:
    return 120.0 + n * 0.01


def c_run(
    transport: str,
    mode: str,
    n: int,
    outdir: Path,
    *,
    gap_us: int = GAP_US,
    queue_size: int = 0,
    raise_path: Path | None = None,
    samples_name: str = "",
    cpu: int | None = None,
    emit_cpu: int | None = None,
    extra: Sequence[str] = (),
) -> Result:
    """Run the C receiver (and, unless it raises edu interrupts itself, the emitter).

    ``cpu`` and ``emit_cpu``: the CPUs the receiver and the emitter are pinned
    to, None for none.
    """
    samples = outdir / (samples_name or f"lat-c-{transport}.bin")
    cmd = [_bin(), "recv", transport, mode, str(n), *_cpu_args(cpu), *extra]
    if mode == "latency":
        cmd += ["--samples", str(samples)]
    if queue_size:
        cmd += ["--queue-size", str(queue_size)]
    if raise_path is not None:
        cmd += ["--raise", str(raise_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_timeout(n))
        if proc.returncode != 0:
            raise RuntimeError(f"C receiver {transport}: {proc.stderr.strip()}")
        res: Result = json.loads(proc.stdout)
    else:
        r, w = os.pipe()
        try:
            recv = subprocess.Popen(
                [*cmd, "--sync-fd", str(w)],
                pass_fds=(w,),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            emit = _emitter(mode, n, r, gap_us, emit_cpu)
        finally:
            os.close(r)
            os.close(w)
        out, err = recv.communicate(timeout=_timeout(n))
        emitted = _finish_emitter(emit, 30)
        if recv.returncode != 0:
            raise RuntimeError(f"C receiver {transport} {mode}: {err.strip()}")
        res = json.loads(out)
        res["emitter"] = emitted
    res["api"] = "c"
    if mode == "latency" and samples.exists():
        res["samples"] = samples.name
    return res


def _subscribe(transport: str, *, queue_size: int | None) -> Any:
    import upcall

    with upcall.open() as dev:
        if transport == "netlink":
            return dev.subscribe("netlink", queue_size=queue_size, rcvbuf=NETLINK_RCVBUF)
        return dev.subscribe(transport, queue_size=queue_size)


def _event_latency(ev: Event, now: int) -> int:
    # No timestamp in a signal: the emitter sent its clock as the value.
    return now - (ev.timestamp_ns if ev.timestamp_ns is not None else ev.value)


def py_latency(
    transport: str,
    n: int,
    outdir: Path,
    *,
    api: str,
    gap_us: int = GAP_US,
    samples_name: str = "",
    cpu: int | None = None,
) -> Result:
    """The Python receiver, one event in flight: ``on_event`` callbacks or ``read(1)``.

    ``cpu``: the CPU this thread (and the watcher thread ``on_event``
    starts) and the emitter are pinned to, None for none.

    In callback mode the time from the library's read of the event
    (``Event.received_ns``) to the callback is kept apart too: ``hop_*``.
    ``run()``, without a timeout, reads in the main thread itself, so this
    is decoding and dispatch; the callback ends it with an exception once
    it has its events.
    """
    lat, hop = array("q"), array("q")
    r, w = os.pipe()
    try:
        emit = _emitter("latency", n, r, gap_us, cpu)
    finally:
        os.close(r)
    try:
        with _pinned(cpu), _subscribe(transport, queue_size=None) as sub:
            t0 = monotonic_ns()
            if api == "callback":

                def on_event(ev: Event) -> None:
                    now = monotonic_ns()
                    lat.append(_event_latency(ev, now))
                    hop.append(now - ev.received_ns)
                    if len(lat) < n:
                        os.write(w, b"a")
                    else:
                        raise _Done  # out of run(), as a callback may end it

                sub.on_event(on_event)
                os.write(w, b"r")
                # run() for ever, as a program that only handles events
                # does, and as the C receiver's blocking read waits.
                with contextlib.suppress(_Done):
                    sub.run()
            elif api in ("bare", "abare"):
                lost = _bare_latency(sub, transport, n, w, lat, asyncio_wait=api == "abare")
            else:
                _api_latency(sub, transport, api, n, w, lat)
            t1 = monotonic_ns()
            res = _py_result(sub, transport, "latency", n, len(lat), (t1 - t0) / 1e9)
            if api in ("bare", "abare"):  # the library read nothing: the loop's own count
                res["lost"] = lost
    finally:
        os.close(w)
    res["api"] = api
    res["emitter"] = _finish_emitter(emit, 60)
    samples = outdir / (samples_name or f"lat-py{api}-{transport}.bin")
    samples.write_bytes(lat.tobytes())
    res["samples"] = samples.name
    res.update(_pcts(lat))
    res.update(_pcts(hop, "hop_"))
    return res


class _Done(Exception):
    """Raised by the bench's on_event callback once it has its events: run() returns."""


def _api_latency(sub: Any, transport: str, api: str, n: int, w: int, lat: array[int]) -> None:
    """Receive ``n`` events one at a time with the library's ``api`` (:data:`READ_APIS`)."""

    def got(ev: Event | None) -> None:
        now = monotonic_ns()
        if ev is None:
            raise TimeoutError(f"python {transport} {api}: no event for {IDLE_S} s")
        lat.append(_event_latency(ev, now))
        if len(lat) < n:
            os.write(w, b"a")

    os.write(w, b"r")
    # Waiting for ever, as the bare read's blocking read(2) does (a wait
    # with a timeout is poll(2), then read(2)), and aread as the bare
    # asyncio read waits (a timeout is a timer handle more per wait).
    if api == "read":
        while len(lat) < n:
            events = sub.read(1)
            got(events[0] if events else None)
    elif api == "poll":
        while len(lat) < n:
            got(sub.poll(timeout=None))
    elif api == "iter":
        for ev in sub.events():
            got(ev)
            if len(lat) >= n:
                break
        else:
            got(None)
    elif api == "aread":
        import asyncio

        async def loop() -> None:
            while len(lat) < n:
                events = await sub.aread(1)
                got(events[0] if events else None)

        asyncio.run(loop())
    else:
        raise ValueError(f"unknown api {api!r}")


def _bare_latency(
    sub: Any, transport: str, n: int, w: int, lat: array[int], *, asyncio_wait: bool = False
) -> int:
    """Receive ``n`` events with the bare read of ``transport`` (module docstring); lost ones.

    The library set the subscription up (signal blocked, eventfd handed
    over, socket subscribed) and reads nothing here. The descriptors are
    made blocking for the loop, non-blocking again after it.

    ``asyncio_wait``: the bare asyncio read, asyncio's own floor for
    ``aread``: the descriptor stays non-blocking and each read waits for it
    in a running asyncio loop, as a user would write it with nothing
    registered between waits (as ``aread`` leaves nothing registered):
    ``loop.add_reader`` of a future's result, ``await``, ``remove_reader``.
    """
    fd = sub.fileno()
    blocking = os.get_blocking(fd)
    os.set_blocking(fd, not asyncio_wait)
    start = int(sub.last_seqno)
    seen = [start, 0]  # the last seqno, the events received
    try:
        with contextlib.ExitStack() as stack:
            step = _bare_step(sub, transport, fd, lat, seen, stack)
            os.write(w, b"r")
            if not asyncio_wait:
                while seen[1] < n:
                    step()
                    if seen[1] < n:
                        os.write(w, b"a")
            else:
                import asyncio

                async def loop() -> None:
                    ev_loop = asyncio.get_running_loop()
                    while seen[1] < n:
                        fut: asyncio.Future[None] = ev_loop.create_future()
                        ev_loop.add_reader(fd, fut.set_result, None)
                        try:
                            await fut  # for ever, as the bare blocking read(2) waits
                        finally:
                            ev_loop.remove_reader(fd)
                        step()
                        if seen[1] < n:
                            os.write(w, b"a")

                asyncio.run(loop())
    finally:
        os.set_blocking(fd, blocking)
    last, received = seen
    return (last - start - received) + max(0, n - (last - start))


def _bare_step(
    sub: Any, transport: str, fd: int, lat: array[int], seen: list[int], stack: Any
) -> Callable[[], None]:
    """One bare read of ``transport`` on ``fd``: latencies to ``lat``, ``seen`` = [last, count]."""
    from upcall._signals import SIGNALFD_SIGINFO_SIZE, extend_seqno, parse_siginfos
    from upcall._transports import nlmsg
    from upcall._transports.records import RECORD_SIZE, decode

    if transport == "netlink":
        import socket

        family_id = sub.family.family_id
        sock = stack.enter_context(socket.socket(fileno=os.dup(fd)))

        def step() -> None:
            data = sock.recv(4096)
            now = monotonic_ns()
            for item in nlmsg.parse(data, 0, len(data), family_id):
                if isinstance(item, str):
                    continue
                _sub, seqno, stamp, _value, _source = item
                lat.append(now - stamp)
                seen[0] = seqno
                seen[1] += 1

    elif transport == "signal":

        def step() -> None:
            data = os.read(fd, SIGNALFD_SIGINFO_SIZE)
            now = monotonic_ns()
            for info in parse_siginfos(data):
                lat.append(now - info.ptr)  # the emitter's clock, as for the library
                seen[0] = extend_seqno(seen[0], info.errno)
                seen[1] += 1

    else:
        qfd = sub.file_fd  # the queue: the subscriber's file (non-blocking)
        note = {"queue": 0, "fasync": SIGNALFD_SIGINFO_SIZE, "eventfd": 8}[transport]

        def step() -> None:
            if note:
                os.read(fd, note)  # the notification: the signal, the counter
            data = os.read(qfd, RECORD_SIZE)
            now = monotonic_ns()
            for ev in decode(data, transport, now):
                lat.append(now - (ev.timestamp_ns or 0))
                seen[0] = ev.seqno
                seen[1] += 1

    return step


def py_throughput(
    transport: str,
    n: int,
    *,
    cpu: int | None = None,
    emit_cpu: int | None = None,
    api: str = "read",
) -> Result:
    """The Python receiver reading batches while the emitter emits ``n`` back to back.

    ``api``: ``read``, lists of events from ``sub.read(PY_BATCH)``; ``read_batch``,
    columns from ``sub.read_batch(PY_BATCH)``.
    """

    def take(sub: Any, timeout: float) -> Any:
        if api == "read":
            return sub.read(PY_BATCH, timeout=timeout)
        return sub.read_batch(PY_BATCH, timeout=timeout)

    r, w = os.pipe()
    try:
        emit = _emitter("throughput", n, r, 0, emit_cpu)
    finally:
        os.close(r)
    got = 0
    try:
        with _pinned(cpu), _subscribe(transport, queue_size=QUEUE_MAX) as sub:
            t0 = t_last = monotonic_ns()
            os.write(w, b"r")
            idle = 0.0
            while sub.last_seqno < n:
                events = take(sub, 0.2)
                if events:
                    got += len(events)
                    t_last = monotonic_ns()
                    idle = 0.0
                    continue
                st = sub.stats()
                if st.emitted >= n and st.pending == 0:
                    break
                idle += 0.2
                if idle > IDLE_S:
                    raise TimeoutError(f"python {transport}: no event for {IDLE_S} s")
            while events := take(sub, 0):
                got += len(events)
            res = _py_result(sub, transport, "throughput", n, got, (t_last - t0) / 1e9)
    finally:
        os.close(w)
    res["api"] = api
    res["emitter"] = _finish_emitter(emit, 60)
    return res


def _py_result(sub: Any, transport: str, mode: str, n: int, received: int, secs: float) -> Result:
    st = sub.stats()
    return {
        "receiver": "python",
        "transport": transport,
        "mode": mode,
        "events": n,
        "received": received,
        "emitted": st.emitted,
        "delivered": st.delivered,
        "dropped": st.dropped,
        "pending": st.pending,
        "lost": sub.lost + max(0, n - sub.last_seqno),
        "seconds": secs,
    }


def accounting_ok(r: Result) -> bool:
    """Every event received or counted as dropped, and the seqno gaps say the same."""
    return bool(
        r["emitted"] == r["events"]
        and r["received"] + r["dropped"] == r["emitted"]
        and r["lost"] == r["dropped"]
        and r["pending"] == 0
    )


# -- edu and UIO (phase 2) ----------------------------------------------------

UIO_DRIVER = Path("/sys/bus/pci/drivers/uio_pci_generic")


def _driver_of(dev: Path) -> str | None:
    link = dev / "driver"
    return link.resolve().name if link.exists() else None


def _unbind(dev: Path) -> None:
    drv = _driver_of(dev)
    if drv is not None:
        sysfs_write(dev / "driver" / "unbind", dev.name)


def _bind_upcall(dev: Path, mode: str) -> None:
    sysfs_write(FORCE_INTX, "Y" if mode == "intx" else "N")
    _unbind(dev)
    sysfs_write(EDU_DRIVER / "bind", dev.name)
    got = (dev / "irq_mode").read_text().strip()
    if got != mode:
        raise RuntimeError(f"edu bound with {got}, not {mode}")


def _irq_to_cpu(dev: Path, cpu: int | None) -> None:
    """Steer the device's interrupt(s) to ``cpu``, where the receiver runs too."""
    if cpu is None:
        return
    msi = dev / "msi_irqs"
    irqs = [p.name for p in msi.iterdir()] if msi.is_dir() else []
    irqs = irqs or [(dev / "irq").read_text().strip()]
    for irq in irqs:
        with contextlib.suppress(OSError):
            Path(f"/proc/irq/{irq}/smp_affinity_list").write_text(f"{cpu}\n")


HOP_EVENTS = 2000
_TRACE_RE = re.compile(
    r"\[(\d+)\].*?\s(\d+\.\d+): (irq_handler_entry|irq_handler_exit|irq_work_entry|"
    r"irq_work_exit):"
)
_HOP_EVENTS = (
    "irq/irq_handler_entry",
    "irq/irq_handler_exit",
    "irq_vectors/irq_work_entry",
    "irq_vectors/irq_work_exit",
)


def _tracefs() -> Path | None:
    for p in (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing")):
        if (p / "trace").exists():
            return p
    subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=False)
    return Path("/sys/kernel/tracing") if Path("/sys/kernel/tracing/trace").exists() else None


def irq_work_hop(dev: Path, n: int, outdir: Path, cpu: int | None) -> Result:
    """What deferring delivery to irq_work costs, from the kernel's own tracepoints.

    The queue receiver raises ``n`` edu interrupts while ftrace records the
    handler's entry and exit (``irq:irq_handler_*``, filtered on the edu
    interrupt) and the irq_work interrupt's (``irq_vectors:irq_work_*``) on
    every CPU; the hop is handler exit to the next irq_work entry on the same
    CPU, the irq_work's own run is its entry to exit. Trace timestamps have
    microsecond resolution, and tracing slows the path it watches.
    """
    tr = _tracefs()
    msi = dev / "msi_irqs"
    irqs = sorted(p.name for p in msi.iterdir()) if msi.is_dir() else []
    if tr is None or not irqs:
        return {"skipped": "no tracefs or no MSI interrupt"}
    flt = " || ".join(f"irq == {i}" for i in irqs)
    (tr / "tracing_on").write_text("0\n")
    (tr / "trace").write_text("")
    (tr / "buffer_size_kb").write_text("16384\n")
    try:
        for ev in _HOP_EVENTS:
            if ev.startswith("irq/"):
                (tr / "events" / ev / "filter").write_text(flt + "\n")
            (tr / "events" / ev / "enable").write_text("1\n")
        (tr / "tracing_on").write_text("1\n")
        c_run("queue", "latency", n, outdir, raise_path=dev / "raise", cpu=cpu,
              samples_name="lat-traced.bin")  # fmt: skip
        (tr / "tracing_on").write_text("0\n")
        text = (tr / "trace").read_text()
    finally:
        (tr / "tracing_on").write_text("0\n")
        for ev in _HOP_EVENTS:
            (tr / "events" / ev / "enable").write_text("0\n")
            if ev.startswith("irq/"):
                (tr / "events" / ev / "filter").write_text("0\n")
        (tr / "trace").write_text("")
        (outdir / "lat-traced.bin").unlink(missing_ok=True)
    handler, hop, work = array("q"), array("q"), array("q")
    entered: dict[str, int] = {}
    exited: dict[str, int] = {}
    work_start: dict[str, int] = {}
    for m in _TRACE_RE.finditer(text):
        cpu_id, what = m.group(1), m.group(3)
        t = round(float(m.group(2)) * 1e9)
        if what == "irq_handler_entry":
            entered[cpu_id] = t
        elif what == "irq_handler_exit" and cpu_id in entered:
            handler.append(t - entered.pop(cpu_id))
            exited[cpu_id] = t
        elif what == "irq_work_entry":
            if cpu_id in exited:
                hop.append(t - exited.pop(cpu_id))
                work_start[cpu_id] = t
        elif what == "irq_work_exit" and cpu_id in work_start:
            work.append(t - work_start.pop(cpu_id))
    return {
        "interrupts": len(handler),
        "hops": len(hop),
        **_pcts(handler, "handler_"),
        **_pcts(hop, "hop_"),
        **_pcts(work, "work_"),
    }


# The edu device's registers (QEMU docs/specs/edu.txt) and the PCI command
# register's INTx mask, as bench/receiver.c's UIO reader uses them.
EDU_IRQ_STATUS, EDU_IRQ_RAISE, EDU_IRQ_ACK = 0x24, 0x60, 0x64
PCI_COMMAND, PCI_COMMAND_INTX_DISABLE = 0x04, 0x400


@contextlib.contextmanager
def _edu_registers(dev: Path) -> Iterator[memoryview]:
    """BAR0 as 32-bit words: an item assignment is one 32-bit MMIO write."""
    fd = os.open(dev / "resource0", os.O_RDWR | os.O_SYNC)
    try:
        with mmap.mmap(fd, 4096) as mm:
            regs = memoryview(mm).cast("I")
            try:
                yield regs
            finally:
                regs.release()
    finally:
        os.close(fd)


def _intx_unmask(cfg: int) -> None:
    cmd = int.from_bytes(os.pread(cfg, 2, PCI_COMMAND), "little")
    if cmd & PCI_COMMAND_INTX_DISABLE:
        os.pwrite(cfg, (cmd & ~PCI_COMMAND_INTX_DISABLE).to_bytes(2, "little"), PCI_COMMAND)


def py_edu_latency(dev: Path, n: int, how: str, *, uio: str = "", cpu: int | None = None) -> Result:
    """A Python receiver of ``n`` edu interrupts, each raised by the receiver.

    ``uio``: bound to uio_pci_generic, raised by a store to BAR0, read(2) of
    /dev/uioX, then acknowledge and unmask INTx (bench/receiver.c's loop).
    Bound to upcall (whose driver holds BAR0, so user space may not map it),
    raised through the sysfs ``raise`` attribute as the C rows are:
    ``os.read``, a bare blocking read(2) of a queue subscription's file (the
    floor), and ``read``, the library's ``Subscription.read(1)``.  The
    UIO row's trigger is cheaper (no system call), so the bare ``os.read``
    row is the fair comparison for the kernel path, and ``read`` against it
    is the library's own cost.
    """
    import upcall

    lat = array("q")
    with _pinned(cpu), contextlib.ExitStack() as stack:
        if how == "uio":
            regs = stack.enter_context(_edu_registers(dev))
            ufd = os.open(uio, os.O_RDONLY)
            stack.callback(os.close, ufd)
            cfg = os.open(dev / "config", os.O_RDWR)
            stack.callback(os.close, cfg)
            status = regs[EDU_IRQ_STATUS // 4]
            if status:
                regs[EDU_IRQ_ACK // 4] = status
            _intx_unmask(cfg)
            for _ in range(n):
                t0 = monotonic_ns()
                regs[EDU_IRQ_RAISE // 4] = 1
                os.read(ufd, 4)
                lat.append(monotonic_ns() - t0)
                regs[EDU_IRQ_ACK // 4] = regs[EDU_IRQ_STATUS // 4]
                _intx_unmask(cfg)
            books: Result = {"emitted": n, "delivered": n, "dropped": 0, "pending": 0}
        else:
            rfd = os.open(dev / "raise", os.O_WRONLY)
            stack.callback(os.close, rfd)
            device = stack.enter_context(upcall.open())
            sub = stack.enter_context(device.subscribe("queue", sources=abi.UPCALL_SOURCE_EDU))
            if how == "os.read":
                fd = sub.fileno()
                os.set_blocking(fd, True)
                stack.callback(os.set_blocking, fd, False)
                for _ in range(n):
                    t0 = monotonic_ns()
                    os.pwrite(rfd, b"1", 0)
                    os.read(fd, abi.UPCALL_EVENT_SIZE)
                    lat.append(monotonic_ns() - t0)
            else:
                for _ in range(n):
                    t0 = monotonic_ns()
                    os.pwrite(rfd, b"1", 0)
                    # For ever, as the os.read floor above waits.
                    if not sub.read(1):
                        raise TimeoutError(f"python edu {how}: no event")
                    lat.append(monotonic_ns() - t0)
            st = sub.stats()
            books = {
                "emitted": st.emitted,
                "delivered": st.delivered,
                "dropped": st.dropped,
                "pending": st.pending,
            }
    res: Result = {
        "receiver": "python",
        "api": how,
        "transport": "uio" if how == "uio" else "queue",
        "mode": "latency",
        "events": n,
        "received": len(lat),
        "lost": 0,
        **books,
    }
    res.update(_pcts(lat, "raise_"))
    return res


def edu_runs(
    n: int,
    transports: Sequence[str],
    outdir: Path,
    log: Callable[[str], None],
    *,
    cpu: int | None = None,
) -> Result:
    """Interrupt to receiver through upcall (MSI, INTx) and through uio_pci_generic.

    The receiver raises each interrupt itself and waits for it: a loop on
    ``cpu`` (and the interrupt steered there), with no other process involved.
    """
    dev = find_device()
    if dev is None:
        return {"skipped": "no edu PCI device (boot with --edu)"}
    runs: list[Result] = []
    hop: Result = {"skipped": "not measured"}
    # Every transport, and the queue read the way a UIO reader reads.
    variants: list[tuple[str, str, tuple[str, ...]]] = [(t, t, ()) for t in transports]
    if "queue" in transports:
        variants.append(("queue-blocking", "queue", ("--blocking",)))
    for mode in ("msi", "intx"):
        _bind_upcall(dev, mode)
        _irq_to_cpu(dev, cpu)
        for name, t, extra in variants:
            log(f"edu {mode}: C {name} latency x{n}")
            res = c_run(
                t,
                "latency",
                n,
                outdir,
                raise_path=dev / "raise",
                samples_name=f"lat-edu{mode}-c-{name}.bin",
                cpu=cpu,
                extra=extra,
            )
            res.update(transport=name, irq=mode)
            runs.append(res)
        if mode == "msi" and "queue" in transports:
            log(f"edu {mode}: irq_work hop, traced, x{min(n, HOP_EVENTS)}")
            hop = irq_work_hop(dev, min(n, HOP_EVENTS), outdir, cpu)
        if mode == "intx" and "queue" in transports:  # INTx, as UIO's
            for how in ("os.read", "read"):
                log(f"edu {mode}: Python queue {how} latency x{n}")
                res = py_edu_latency(dev, n, how, cpu=cpu)
                res["irq"] = mode
                runs.append(res)
    _bind_upcall(dev, "msi")
    _unbind(dev)
    subprocess.run(["modprobe", "uio_pci_generic"], check=True)
    with contextlib.suppress(FileExistsError):  # an earlier run added the id
        sysfs_write(UIO_DRIVER / "new_id", EDU_ID)
    if _driver_of(dev) != "uio_pci_generic":
        sysfs_write(UIO_DRIVER / "bind", dev.name)
    uio = sorted((dev / "uio").iterdir())[0].name
    _irq_to_cpu(dev, cpu)
    log(f"uio_pci_generic: C /dev/{uio} latency x{n}")
    samples = outdir / "lat-eduintx-c-uio.bin"
    proc = subprocess.run(
        [
            _bin(),
            "uio",
            str(n),
            "--uio",
            f"/dev/{uio}",
            "--pci",
            str(dev),
            "--samples",
            str(samples),
            *_cpu_args(cpu),
        ],
        capture_output=True,
        text=True,
        timeout=_timeout(n),
    )
    try:
        if proc.returncode != 0:
            raise RuntimeError(f"C uio receiver: {proc.stderr.strip()}")
        res = json.loads(proc.stdout)
        res.update(api="c", irq="intx", samples=samples.name)
        runs.append(res)
        log(f"uio_pci_generic: Python /dev/{uio} latency x{n}")
        res = py_edu_latency(dev, n, "uio", uio=f"/dev/{uio}", cpu=cpu)
        res["irq"] = "intx"
        runs.append(res)
    finally:
        _unbind(dev)
        sysfs_write(UIO_DRIVER / "remove_id", EDU_ID)
        subprocess.run(["modprobe", "-r", "uio_pci_generic"], check=False)
        _bind_upcall(dev, "msi")
    return {"runs": runs, "irq_work_hop": hop}


def _read_samples(path: Path) -> array[int]:
    a = array("q")
    a.frombytes(path.read_bytes())
    return a


_SUMMED = ("events", "received", "emitted", "delivered", "dropped", "pending", "lost", "seconds")


def merge_rounds(rounds: Sequence[Result], outdir: Path, samples_name: str) -> Result:
    """One result from interleaved rounds: counters summed, percentiles over all samples.

    The rounds' sample files are joined into ``samples_name``; percentiles
    of other series (``stamp_``, ``hop_``) are the median of the rounds'.
    """
    res: Result = {k: v for k, v in rounds[0].items() if not k.endswith("_ns")}
    for k in _SUMMED:
        res[k] = sum(r[k] for r in rounds)
    lat: array[int] = array("q")
    for r in rounds:
        if r.get("samples"):
            path = outdir / r["samples"]
            lat.extend(_read_samples(path))
            path.unlink()
    (outdir / samples_name).write_bytes(lat.tobytes())
    res["samples"] = samples_name
    res.update(_pcts(lat))
    for key in {k for r in rounds for k in r if k.startswith(("stamp_", "hop_"))}:
        vals = sorted(r[key] for r in rounds if key in r)
        res[key] = vals[len(vals) // 2]
    res["rounds"] = len(rounds)
    res.pop("emitter", None)
    return res


def guest_main(
    outdir: Path,
    *,
    latency_events: int,
    throughput_events: int,
    transports: Sequence[str] = TRANSPORTS,
    gap_us: int = GAP_US,
    rounds: int = ROUNDS,
    edu_events: int = 0,
    py_read_latency: bool = True,
    pin: bool = True,
    log: Callable[[str], None] = print,
) -> Result:
    """Every run of the benchmark, in this kernel; writes ``outdir/results.json``.

    Latency runs are split into ``rounds`` interleaved rounds (C, Python
    on_event, Python read, C...), so that a change in the host's load
    (other guests share its CPUs) weighs on every receiver alike.

    ``pin`` (with 2 CPUs or more): latency runs put the emitter and the
    receiver on CPU 0, so that a wake-up is a local context switch, not an
    inter-processor interrupt to a halted virtual CPU whose host thread must
    first be scheduled (milliseconds on a shared host); throughput runs put
    the emitter on CPU 0 and the receiver on CPU 1.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    pin = pin and (os.cpu_count() or 1) >= 2
    lat_cpu, tp_emit_cpu, tp_cpu = (0, 0, 1) if pin else (None, None, None)
    runs: list[Result] = []

    def record(what: str, res: Result, started: float) -> None:
        res["accounting_ok"] = accounting_ok(res)
        runs.append(res)
        eps = res["received"] / res["seconds"] if res["seconds"] else 0.0
        p50 = res.get("p50_ns")
        log(
            f"{what}: received {res['received']} dropped {res['dropped']} lost {res['lost']} "
            f"{eps:,.0f}/s"
            + (f" p50 {p50 / 1000:.1f} us" if p50 else "")
            + f" ({time.monotonic() - started:.0f} s)"
            + ("" if res["accounting_ok"] else " ACCOUNTING MISMATCH")
        )

    tp = throughput_events
    per_round = max(1, -(-latency_events // rounds))
    apis = ("c", "callback", "bare", "abare", *READ_APIS) if py_read_latency else ("c", "callback")
    for t in transports:
        started = time.monotonic()
        res = c_run(
            t, "throughput", tp, outdir, queue_size=QUEUE_MAX, cpu=tp_cpu, emit_cpu=tp_emit_cpu
        )
        record(f"{t} C throughput", res, started)
        started = time.monotonic()
        res = py_throughput(t, tp, cpu=tp_cpu, emit_cpu=tp_emit_cpu)
        record(f"{t} python throughput", res, started)
        started = time.monotonic()
        res = py_throughput(t, tp, cpu=tp_cpu, emit_cpu=tp_emit_cpu, api="read_batch")
        record(f"{t} python read_batch throughput", res, started)
        started = time.monotonic()
        done: dict[str, list[Result]] = {api: [] for api in apis}
        for k in range(rounds):
            for api in apis:
                name = f"lat-r{k}-{api}-{t}.bin"
                if api == "c":
                    res = c_run(
                        t, "latency", per_round, outdir, gap_us=gap_us, samples_name=name,
                        cpu=lat_cpu, emit_cpu=lat_cpu,
                    )  # fmt: skip
                else:
                    res = py_latency(
                        t, per_round, outdir, api=api, gap_us=gap_us, samples_name=name,
                        cpu=lat_cpu,
                    )  # fmt: skip
                done[api].append(res)
            log(f"{t} latency: round {k + 1}/{rounds} done")
        for api in apis:
            merged = merge_rounds(done[api], outdir, f"lat-{api}-{t}.bin")
            record(f"{t} {api} latency", merged, started)
    result: Result = {
        "kernel": os.uname().release,
        # The Python receivers' read path: upcall._core, or UPCALL_PURE_PYTHON=1's.
        "read_path": "compiled core" if _accel.compiled() else "pure Python",
        "cpus": os.cpu_count(),
        "latency_events": per_round * rounds,
        "latency_rounds": rounds,
        "throughput_events": throughput_events,
        "gap_us": gap_us,
        "queue_size_throughput": QUEUE_MAX,
        "pinned": pin,
        "runs": runs,
    }
    path = outdir / "results.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    if edu_events:
        try:
            result["edu"] = edu_runs(edu_events, transports, outdir, log, cpu=lat_cpu)
        except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
            log(f"edu: failed: {exc}")
            result["edu"] = {"skipped": f"failed: {exc}"}
        path.write_text(json.dumps(result, indent=1) + "\n")
    return result


# -- on the host: summary, tables, plots ---------------------------------------


def _us(ns: float | None) -> str:
    return "-" if ns is None else f"{ns / 1000:.1f}"


def _label(r: Result) -> str:
    if r["receiver"] == "c":
        return "C"
    return {
        "callback": "Python on_event",
        "read": "Python read()",
        "read_batch": "Python read_batch()",
        "bare": "Python bare read",
        "abare": "Python bare asyncio read",
        "poll": "Python poll()",
        "iter": "Python iteration",
        "aread": "Python aread(1)",
    }.get(r["api"], "Python")


def _find(runs: Sequence[Result], transport: str, mode: str, api: str) -> Result | None:
    for r in runs:
        if r["transport"] == transport and r["mode"] == mode and r["api"] == api:
            return r
    return None


def summarize(result: Result) -> Result:
    """Ratios within the run and the targets they meet or miss."""
    runs: list[Result] = result["runs"]
    transports = list(dict.fromkeys(r["transport"] for r in runs))
    ratios: list[Result] = []
    for t in transports:
        c_tp, py_tp = _find(runs, t, "throughput", "c"), _find(runs, t, "throughput", "read")
        c_lat = _find(runs, t, "latency", "c")
        py_cb, py_rd = _find(runs, t, "latency", "callback"), _find(runs, t, "latency", "read")
        row: Result = {"transport": t}
        if c_tp and py_tp and c_tp["seconds"] and py_tp["seconds"]:
            row["eps_ratio"] = (py_tp["received"] / py_tp["seconds"]) / (
                c_tp["received"] / c_tp["seconds"]
            )
        if c_lat and py_cb:
            row["p50_ratio_callback"] = py_cb["p50_ns"] / c_lat["p50_ns"]
            row["p50_met"] = row["p50_ratio_callback"] <= TARGET_P50
            if "hop_p50_ns" in py_cb:
                row["hop_p50_ns"] = py_cb["hop_p50_ns"]
        if c_lat and py_rd:
            row["p50_ratio_read"] = py_rd["p50_ns"] / c_lat["p50_ns"]
        if t == "queue" and "eps_ratio" in row:
            row["eps_met"] = row["eps_ratio"] >= TARGET_QUEUE_EPS
        py_batch = _find(runs, t, "throughput", "read_batch")
        if c_tp and py_batch and c_tp["seconds"] and py_batch["seconds"]:
            row["eps_ratio_batch"] = (py_batch["received"] / py_batch["seconds"]) / (
                c_tp["received"] / c_tp["seconds"]
            )
        bare = _find(runs, t, "latency", "bare")
        if bare:
            row["bare_p50_ns"] = bare["p50_ns"]
            if c_lat:  # Python's own floor against C: what on_event cannot go below
                row["p50_ratio_c_bare"] = bare["p50_ns"] / c_lat["p50_ns"]
            for api in READ_APIS:
                r = _find(runs, t, "latency", api)
                if r:
                    row[f"p50_ratio_bare_{api}"] = r["p50_ns"] / bare["p50_ns"]
            abare, aread = _find(runs, t, "latency", "abare"), _find(runs, t, "latency", "aread")
            if abare:  # asyncio's own floor, and aread against it
                row["abare_p50_ns"] = abare["p50_ns"]
                row["p50_ratio_bare_abare"] = abare["p50_ns"] / bare["p50_ns"]
                if aread:
                    row["p50_ratio_abare_aread"] = aread["p50_ns"] / abare["p50_ns"]
        ratios.append(row)
    summary: Result = {
        "ratios": ratios,
        "accounting_ok": all(r.get("accounting_ok", False) for r in runs),
    }
    edu = result.get("edu", {}).get("runs")
    if edu:
        py = {r["api"]: r for r in edu if r.get("receiver") == "python"}
        if "uio" in py and "read" in py:
            ratio = py["read"]["raise_p50_ns"] / py["uio"]["raise_p50_ns"]
            summary["python_uio"] = {
                "uio_p50_ns": py["uio"]["raise_p50_ns"],
                "read_p50_ns": py["read"]["raise_p50_ns"],
                "ratio": ratio,
                "met": ratio <= TARGET_UIO,
            }
            if "os.read" in py:
                summary["python_uio"]["floor_p50_ns"] = py["os.read"]["raise_p50_ns"]
                summary["python_uio"]["read_vs_floor"] = (
                    py["read"]["raise_p50_ns"] / py["os.read"]["raise_p50_ns"]
                )
                summary["python_uio"]["floor_vs_uio"] = (
                    py["os.read"]["raise_p50_ns"] / py["uio"]["raise_p50_ns"]
                )
        edu = [r for r in edu if r.get("receiver") != "python"]
        uio = next((r for r in edu if r["transport"] == "uio"), None)
        best = min(
            (r for r in edu if r["transport"] != "uio"),
            key=lambda r: r["raise_p50_ns"],
            default=None,
        )
        if uio and best:
            summary["uio"] = {
                "uio_p50_ns": uio["raise_p50_ns"],
                "best": f"{best['transport']} ({best['irq']})",
                "best_p50_ns": best["raise_p50_ns"],
                "ratio": best["raise_p50_ns"] / uio["raise_p50_ns"],
                "met": best["raise_p50_ns"] / uio["raise_p50_ns"] <= TARGET_KERNEL_UIO,
            }
    summary["targets"] = targets(summary)
    return summary


_API_NAMES = {
    "read": "`read(1)`",
    "poll": "`poll()`",
    "iter": "`for ev in sub.events()`",
    "aread": "`await aread(1)`",
}


def targets(summary: Result) -> list[Result]:
    """Issue 14's targets: one row each, with the ratio measured in this run.

    ``op`` says how the ratio must compare with ``threshold`` (``<=`` or
    ``>=``); ``ratio`` None when the run did not measure it.
    """
    rows: list[Result] = []

    def add(target: str, ratio: float | None, op: str, threshold: float) -> None:
        met = None if ratio is None else (ratio <= threshold if op == "<=" else ratio >= threshold)
        rows.append(
            {"target": target, "ratio": ratio, "op": op, "threshold": threshold, "met": met}
        )

    for row in summary["ratios"]:
        t = row["transport"]
        for api in READ_APIS:
            add(
                f"{t}: p50 {_API_NAMES[api]} / bare read",
                row.get(f"p50_ratio_bare_{api}"),
                "<=",
                TARGET_BARE,
            )
    for row in summary["ratios"]:
        add(
            f"{row['transport']}: p50 `on_event` / C receiver",
            row.get("p50_ratio_callback"),
            "<=",
            TARGET_P50,
        )
    pu, u = summary.get("python_uio"), summary.get("uio")
    add(
        "edu interrupt → Python `read(1)` / Python UIO reader (p50)",
        pu["ratio"] if pu else None,
        "<=",
        TARGET_UIO,
    )
    add(
        "edu interrupt → C receiver, fastest transport"
        + (f" ({u['best']})" if u else "")
        + " / C UIO (p50)",
        u["ratio"] if u else None,
        "<=",
        TARGET_KERNEL_UIO,
    )
    for row in summary["ratios"]:
        add(
            f"{row['transport']}: events/s `read_batch(4096)` / C receiver",
            row.get("eps_ratio_batch"),
            ">=",
            TARGET_BATCH_EPS,
        )
    return rows


def targets_markdown(rows: Sequence[Result]) -> list[str]:
    """The targets table's lines."""
    out = [
        "| target | measured | threshold | result |",
        "|---|---:|---:|:-:|",
    ]
    for r in rows:
        pct = r["op"] == ">="
        ratio = r["ratio"]
        shown = "-" if ratio is None else (f"{ratio:.0%}" if pct else f"{ratio:.2f}x")
        limit = f"{r['threshold']:.0%}" if pct else f"{r['threshold']:.1f}x"
        result = {None: "not measured", True: "met", False: "**missed**"}[r["met"]]
        out.append(f"| {r['target']} | {shown} | {r['op']} {limit} | {result} |")
    return out


def markdown(result: Result, summary: Result) -> str:
    """The tables and ratio lines, as BENCHMARKS.md shows them."""
    runs: list[Result] = result["runs"]
    out = [
        f"Kernel {result['kernel']} in QEMU (TCG), {result['cpus']} vCPUs; "
        f"throughput {result['throughput_events']:,} events back to back, latency "
        f"{result['latency_events']:,} events one in flight ({result['gap_us']} µs gap, "
        f"{result.get('latency_rounds', 1)} interleaved rounds); "
        + (
            "latency: emitter and receiver on vCPU 0, throughput: emitter on vCPU 0, "
            "receiver on vCPU 1."
            if result.get("pinned")
            else "not pinned."
        ),
        "",
        "| transport | receiver | events/s | received | dropped | lost (seqno) | exact "
        "| emitter events/s |",
        "|---|---|---:|---:|---:|---:|:-:|---:|",
    ]
    for r in runs:
        if r["mode"] != "throughput":
            continue
        eps = r["received"] / r["seconds"] if r["seconds"] else 0.0
        em = r.get("emitter", {})
        em_eps = f"{em['emitted'] / em['seconds']:,.0f}" if em.get("seconds") else "-"
        out.append(
            f"| {r['transport']} | {_label(r)} | {eps:,.0f} | {r['received']:,} | "
            f"{r['dropped']:,} | {r['lost']:,} | {'yes' if r['accounting_ok'] else 'NO'} "
            f"| {em_eps} |"
        )
    out += [
        "",
        "| transport | receiver | p50 µs | p90 µs | p99 µs | max µs | events |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        if r["mode"] != "latency":
            continue
        out.append(
            f"| {r['transport']} | {_label(r)} | {_us(r.get('p50_ns'))} | "
            f"{_us(r.get('p90_ns'))} | {_us(r.get('p99_ns'))} | {_us(r.get('max_ns'))} | "
            f"{r['received']:,} |"
        )
    out.append("")
    for row in summary["ratios"]:
        parts = []
        if "eps_ratio" in row:
            mark = ""
            if "eps_met" in row:
                mark = " (target >= 50%: " + ("met" if row["eps_met"] else "**missed**") + ")"
            parts.append(f"Python/C events/s = {row['eps_ratio']:.0%}{mark}")
        if "p50_ratio_callback" in row:
            parts.append(
                f"p50 Python on_event/C = {row['p50_ratio_callback']:.2f}x "
                f"(target <= {TARGET_P50}x: " + ("met" if row["p50_met"] else "**missed**") + ")"
            )
        if "hop_p50_ns" in row:
            parts.append(f"on_event's read-to-callback time p50 {_us(row['hop_p50_ns'])} µs")
        if "p50_ratio_read" in row:
            parts.append(f"p50 Python read(1)/C = {row['p50_ratio_read']:.2f}x")
        if "bare_p50_ns" in row:
            parts.append(
                f"bare read p50 {_us(row['bare_p50_ns'])} µs"
                + (
                    f" ({row['p50_ratio_c_bare']:.2f}x the C receiver)"
                    if "p50_ratio_c_bare" in row
                    else ""
                )
                + "; against it "
                + ", ".join(
                    f"{api} {row[f'p50_ratio_bare_{api}']:.2f}x"
                    for api in READ_APIS
                    if f"p50_ratio_bare_{api}" in row
                )
            )
        if "abare_p50_ns" in row:
            parts.append(
                f"bare asyncio read p50 {_us(row['abare_p50_ns'])} µs, "
                f"{row['p50_ratio_bare_abare']:.2f}x the bare read"
                + (
                    f"; aread {row['p50_ratio_abare_aread']:.2f}x it"
                    if "p50_ratio_abare_aread" in row
                    else ""
                )
            )
        if "eps_ratio_batch" in row:
            parts.append(f"Python read_batch/C events/s = {row['eps_ratio_batch']:.0%}")
        out.append(f"- {row['transport']}: " + "; ".join(parts))
    edu = result.get("edu", {})
    if edu.get("runs"):
        out += [
            "",
            f"Interrupt to receiver, QEMU edu device, {edu['runs'][0]['received']:,} "
            "interrupts each, the receiver raising them itself:",
            "",
            "| path | interrupt | raise→receiver p50 µs | p99 µs | IRQ stamp→receiver p50 µs "
            "| trigger alone p50 µs |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in edu["runs"]:
            name = {"uio": "uio_pci_generic", "queue-blocking": "upcall queue, blocking read"}.get(
                r["transport"], f"upcall {r['transport']}"
            )
            if r.get("receiver") == "python":
                name = {
                    "uio": "Python, uio_pci_generic os.read",
                    "os.read": "Python, upcall queue, bare os.read",
                    "read": "Python, upcall queue, Subscription.read(1)",
                }[r["api"]]
            out.append(
                f"| {name} | {r['irq']} | {_us(r.get('raise_p50_ns'))} | "
                f"{_us(r.get('raise_p99_ns'))} | {_us(r.get('p50_ns'))} | "
                f"{_us(r.get('trigger_p50_ns'))} |"
            )
        hop = edu.get("irq_work_hop", {})
        if hop.get("hop_p50_ns") is not None:
            out += [
                "",
                f"- irq_work hop (ftrace, {hop['hops']:,} edu interrupts, µs resolution): "
                f"handler exit → irq_work entry p50 {_us(hop['hop_p50_ns'])} µs, p99 "
                f"{_us(hop['hop_p99_ns'])} µs; the irq_work's run (queue: wake-up) p50 "
                f"{_us(hop['work_p50_ns'])} µs; the edu handler itself p50 "
                f"{_us(hop['handler_p50_ns'])} µs",
            ]
        elif hop.get("skipped"):
            out += ["", f"- irq_work hop: not measured ({hop['skipped']})"]
        u = summary.get("uio")
        if u:
            out += [
                "",
                f"- fastest upcall transport {u['best']}: {_us(u['best_p50_ns'])} µs p50 against "
                f"UIO's {_us(u['uio_p50_ns'])} µs = {u['ratio']:.2f}x "
                f"(target <= {TARGET_KERNEL_UIO}x: " + ("met" if u["met"] else "**missed**") + ")",
            ]
        pu = summary.get("python_uio")
        if pu:
            out += [
                f"- Python: `Subscription.read(1)` {_us(pu['read_p50_ns'])} µs p50 against a "
                f"Python UIO reader's {_us(pu['uio_p50_ns'])} µs = {pu['ratio']:.2f}x "
                "(target <= 1.2x: "
                + ("met" if pu["met"] else "**missed**")
                + ")"
                + (
                    f"; a bare os.read of the same file takes {_us(pu['floor_p50_ns'])} µs, "
                    f"{pu['floor_vs_uio']:.2f}x UIO's, and read(1) {pu['read_vs_floor']:.2f}x it"
                    if "floor_p50_ns" in pu
                    else ""
                ),
            ]
    elif edu.get("skipped"):
        out += ["", f"edu/UIO: skipped ({edu['skipped']})"]
    if summary.get("targets"):
        path = result.get("read_path", "pure Python")
        out += ["", f"Targets (issue 14), ratios within this run (Python read path: {path}):", ""]
        out += targets_markdown(summary["targets"])
    return "\n".join(out)


def print_tables(result: Result, summary: Result) -> None:
    """The tables on stdout, with rich when it is installed."""
    md = markdown(result, summary)
    try:
        from rich.console import Console
        from rich.markdown import Markdown
    except ImportError:
        print(md)
        return
    Console().print(Markdown(md))


def _samples(guest: Path, name: str | None) -> list[float]:
    if not name or not (guest / name).exists():
        return []
    a = array("q")
    a.frombytes((guest / name).read_bytes())
    return [x / 1000.0 for x in a]


def plots(result: Result, guest: Path, out: Path) -> list[Path]:
    """Latency histograms per transport and throughput bars; returns the PNG paths."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError:
        print("matplotlib missing: no plots (pip install matplotlib)")
        return []
    import math

    runs: list[Result] = result["runs"]
    transports = list(dict.fromkeys(r["transport"] for r in runs))
    colors = {"C": "#4c72b0", "Python on_event": "#dd8452", "Python read()": "#55a868"}
    written = []

    def hist(ax: Any, series: list[tuple[str, list[float]]], title: str) -> None:
        allv = sorted(v for _, vs in series for v in vs if v > 0)
        if not allv:
            return
        # Up to the 99.9th percentile: the last few events would stretch the axis.
        lo, hi = max(allv[0], 0.1), allv[min(len(allv) - 1, len(allv) * 999 // 1000)]
        edges = [lo * (hi / lo) ** (i / 60) for i in range(61)] if hi > lo else [lo, lo * 2]
        for label, vs in series:
            if vs:
                ax.hist(vs, bins=edges, histtype="step", lw=1.4, label=label,
                        color=colors.get(label))  # fmt: skip
        ax.set_xscale("log")
        # A panel spans about a decade: matplotlib's log labels on the
        # minor ticks then overlap. Plain numbers at 1, 2, 5 x 10^k instead.
        ticks = [
            m * 10.0**k
            for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            for m in (1, 2, 5)
            if lo <= m * 10.0**k <= hi
        ]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="both", alpha=0.25)

    cols = 3
    rows = math.ceil(len(transports) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(10, 3.0 * rows), squeeze=False)
    for i, t in enumerate(transports):
        series = []
        for api in ("c", "callback", "read"):
            r = _find(runs, t, "latency", api)
            if r:
                series.append((_label(r), _samples(guest, r.get("samples"))))
        hist(axes[i // cols][i % cols], series, t)
    for j in range(len(transports), rows * cols):
        axes[j // cols][j % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower right", fontsize=8)
    fig.supxlabel("latency, emit to receiver (µs, log; up to the 99.9th percentile)", fontsize=9)
    fig.supylabel("events", fontsize=9)
    fig.suptitle(f"upcall module transports, kernel {result['kernel']} in QEMU", fontsize=10)
    fig.tight_layout()
    path = out / "module-latency.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)

    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.38
    for k, api in enumerate(("c", "read")):
        xs, vals = [], []
        for i, t in enumerate(transports):
            r = _find(runs, t, "throughput", api)
            if r and r["seconds"]:
                xs.append(i + (k - 0.5) * width)
                vals.append(r["received"] / r["seconds"] / 1e3)
        label = "C" if api == "c" else "Python read() batches"
        ax.bar(xs, vals, width, label=label, color="#4c72b0" if api == "c" else "#dd8452")
        for x, v in zip(xs, vals, strict=True):
            ax.text(x, v, f"{v:.0f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(transports)), transports)
    ax.set_ylabel("thousand events/s received")
    ax.set_title(f"throughput, {result['throughput_events']:,} events back to back", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "module-throughput.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)

    edu = result.get("edu", {}).get("runs")
    if edu:
        fig, ax = plt.subplots(figsize=(8, 3.8))
        cmap = plt.get_cmap("tab10")
        names = list(dict.fromkeys(r["transport"] for r in edu))
        right = 0.0
        for r in edu:
            vs = _samples(guest, r.get("samples"))
            if not vs:
                continue
            xs = sorted(vs)
            right = max(right, xs[len(xs) * 99 // 100] * 1.5)
            name = "uio_pci_generic" if r["transport"] == "uio" else r["transport"]
            ax.plot(xs, [i / len(xs) for i in range(len(xs))], label=f"{name} ({r['irq']})",
                    color="black" if r["transport"] == "uio" else cmap(names.index(r["transport"])),
                    lw=2.2 if r["transport"] == "uio" else 1.1,
                    ls="-" if r["irq"] == "intx" else "--")  # fmt: skip
        ax.set_xscale("log")
        if right:
            ax.set_xlim(right=right)
        ax.set_xlabel("raise to receiver (µs, log; up to 1.5x the largest 99th percentile)")
        ax.set_ylabel("fraction")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7, ncol=2)
        ax.set_title("edu interrupt to user space: upcall against uio_pci_generic", fontsize=10)
        fig.tight_layout()
        path = out / "edu-latency.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def report(
    result: Result, guest: Path, out: Path, publish: Path | None, *, as_json: bool = False
) -> int:
    """Tables (or, with ``as_json``, the results as one JSON line), files, plots.

    0 if every run's accounting is exact. With ``as_json`` stdout holds the
    JSON alone; what was written where goes to stderr.
    """
    summary = summarize(result)
    result = {**result, "summary": summary}
    note = sys.stderr if as_json else sys.stdout
    if as_json:
        print(json.dumps(result), flush=True)
    else:
        print_tables(result, summary)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    md = markdown(result, summary)
    (out / "module-bench.md").write_text(md + "\n")
    pngs = plots(result, guest, out)
    written = ", ".join(map(str, [out / "results.json", out / "module-bench.md", *pngs]))
    print(f"wrote {written}", file=note)
    if publish is not None:
        publish.mkdir(parents=True, exist_ok=True)
        for p in pngs:
            shutil.copy2(p, publish / p.name)
        print(f"copied the plots to {publish}/", file=note)
    if not summary["accounting_ok"]:
        print(
            "upcall_dev: bench: accounting mismatch in at least one run (see results.json)",
            file=sys.stderr,
        )
        return 1
    return 0


# -- the command -------------------------------------------------------------------


def build_receiver() -> None:
    """``make -f mk/bench.mk bench-build`` in the repository."""
    subprocess.run(["make", "-s", "-f", "mk/bench.mk", "bench-build"], cwd=REPO, check=True)


def _sizes(args: argparse.Namespace) -> tuple[int, int, int]:
    base = SMALL if args.small else DEFAULTS
    return (
        args.latency_events or base["latency"],
        args.throughput_events or base["throughput"],
        (args.edu_events or base["edu"]) if args.edu else 0,
    )


def cmd_bench(args: argparse.Namespace) -> int:
    """Boot one guest, run every transport's receivers there, report on the host."""
    transports: list[str] = args.transports
    lat, tp, edu = _sizes(args)
    out = Path(args.out).resolve()
    guest = out / "guest"
    if args.in_guest:
        # The harness's run directory is the one the guest may write to.
        vm_out = os.environ.get("UPCALL_VM_OUTDIR")
        guest_main(
            Path(vm_out) / "bench" if vm_out else guest,
            latency_events=lat,
            throughput_events=tp,
            transports=transports,
            gap_us=args.gap_us,
            rounds=args.rounds,
            pin=not args.no_pin,
            edu_events=edu,
            log=lambda s: print(s, flush=True),
        )
        return 0
    publish = Path(args.publish).resolve() if args.publish else None
    if args.from_guest:
        result = json.loads((guest / "results.json").read_text())
        return report(result, guest, out, publish, as_json=args.json)

    from . import vm

    cmd = [sys.executable, "-m", "upcall_dev", "bench", "--in-guest",
           "--latency-events", str(lat), "--throughput-events", str(tp),
           "--transports", ",".join(transports), "--gap-us", str(args.gap_us),
           "--rounds", str(args.rounds)] + (["--no-pin"] if args.no_pin else [])  # fmt: skip
    if args.edu:
        cmd += ["--edu", "--edu-events", str(edu)]
    if args.pure_python:
        cmd = ["env", "UPCALL_PURE_PYTHON=1", *cmd]
    kernel = vm.pick_kernel(args.kernel)
    # The guest's own lines (one a run) stream above the bar, or after these.
    with steps("upcall_dev bench", 2) as progress:
        progress.step("building the C receiver")
        build_receiver()
        progress.step(f"every run of {', '.join(transports)} in a {kernel.version} guest")
        res = vm.run(
            shlex.join(cmd), kernel=kernel, edu=args.edu, timeout=args.timeout, stream=True
        )
    status = vm.report(res, kernel)
    written = res.outdir / "bench" if res.outdir else None
    if written is None or not (written / "results.json").exists():
        sys.stderr.write("upcall_dev: bench: the guest wrote no results\n")
        return status or 1
    if guest.exists():
        shutil.rmtree(guest)
    shutil.copytree(written, guest)
    result = json.loads((guest / "results.json").read_text())
    return report(result, guest, out, publish, as_json=args.json) or status


def _transport_list(text: str) -> list[str]:
    names = [t for t in text.split(",") if t]
    bad = sorted(set(names) - set(TRANSPORTS))
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown transport(s) {', '.join(bad) or text!r}: choose from {', '.join(TRANSPORTS)}"
        )
    return names


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--small", action="store_true", help="CI-sized run (2,000/20,000 events)")
    p.add_argument("--latency-events", type=parse_count, metavar="N", help="default 10,000")
    p.add_argument("--throughput-events", type=parse_count, metavar="N", help="default 200,000")
    p.add_argument("--transports", type=_transport_list, default=list(TRANSPORTS),
                   metavar="LIST", help="comma-separated, default: all")  # fmt: skip
    p.add_argument("--gap-us", type=ranged("gap", 0, 1_000_000), default=GAP_US, metavar="US",
                   help="the emitter's pause before each latency event")  # fmt: skip
    p.add_argument("--rounds", type=ranged("rounds", 1, 10_000), default=ROUNDS, metavar="N",
                   help="interleaved rounds the latency events are split into")  # fmt: skip
    p.add_argument("--no-pin", action="store_true",
                   help="let the scheduler place emitter and receivers")  # fmt: skip
    p.add_argument("--edu", action="store_true",
                   help="also time edu interrupts through upcall and uio_pci_generic")  # fmt: skip
    p.add_argument(
        "--pure-python",
        action="store_true",
        help="the Python receivers without the compiled core (UPCALL_PURE_PYTHON=1)",
    )
    p.add_argument("--edu-events", type=parse_count, metavar="N", help="default 10,000")
    p.add_argument("--out", default=str(REPO / "build" / "bench"), metavar="DIR",
                   help="where results.json, the tables and the plots go")  # fmt: skip
    p.add_argument(
        "--publish", metavar="DIR", help="copy the plots here (bench/ for BENCHMARKS.md)"
    )
    p.add_argument("--kernel", metavar="KERNEL",
                   help="kernel to boot, as for `vm --kernel`")  # fmt: skip
    p.add_argument("--timeout", type=parse_wait, default=3600, metavar="S",
                   help="seconds before the guest is killed (default 3600)")  # fmt: skip
    p.add_argument("--from-guest", action="store_true",
                   help="do not boot: report on OUT/guest/results.json again")  # fmt: skip
    p.add_argument("--json", action="store_true",
                   help="print the results as one JSON object instead of tables")  # fmt: skip
    p.add_argument("--in-guest", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_bench)


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bench`` on the developer command line's subcommands."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark the module's transports, Python against C, in a guest kernel",
        description="Boot a guest kernel with the module, time every transport with a C "
        "and a Python receiver against the same emitter, print the tables, write JSON "
        "and PNG plots.",
        epilog="examples:\n  python -m upcall_dev bench --small\n"
        "  python -m upcall_dev bench --transports queue,signal --json",
    )
    _add_arguments(p)
