"""Work done with interrupts off is bounded, whatever the emitters do.

On most kernels a subscriber's irq_work runs in hard IRQ.  One run sends at
most UPCALL_IRQ_BATCH signals and never raises itself again: the rest of
the backlog goes to the workqueue, where interrupts are on and the
scheduler can switch.  Were the run to raise itself again, emitters on the
other CPUs could refill the queue as fast as it drains and keep this CPU in
hard IRQ for as long as they emit.

ftrace shows it from outside the module: the irq_vectors:irq_work_entry and
irq_work_exit events bracket each irq_work interrupt, and kprobe events on
upcall_sub_drain (one subscriber's run) and upcall_signal_send (one signal)
count what each run sent, and what was sent elsewhere.  On PREEMPT_RT these
irq_works run in a thread, so nothing is sent in hard IRQ at all.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import rawioctl
from figures import figure
from guest import CORE_SUITE
from load import emitters_on_all_cpus, kill_all

import upcall
from upcall import abi
from upcall._edu import sysfs_write

TRACING = Path("/sys/kernel/tracing")
KPROBES = (
    "p:upcall_irqb/drain upcall:upcall_sub_drain",
    "p:upcall_irqb/send upcall:upcall_signal_send",
)
EVENTS = (
    "irq_vectors/irq_work_entry",
    "irq_vectors/irq_work_exit",
    "upcall_irqb/drain",
    "upcall_irqb/send",
)
SUBSCRIBERS = 16 if CORE_SUITE else 32
SIGNO = signal.SIGRTMIN + 3
QUEUE_SIZE = abi.UPCALL_QUEUE_DEFAULT


def irq_batch() -> int:
    """UPCALL_IRQ_BATCH as the module was built with it."""
    header = Path(__file__).parents[2] / "kmod" / "upcall_internal.h"
    m = re.search(r"#define UPCALL_IRQ_BATCH\s+(\d+)", header.read_text())
    assert m, f"UPCALL_IRQ_BATCH not found in {header}"
    return int(m.group(1))


def preempt_rt() -> bool:
    return Path("/sys/kernel/realtime").exists() or "PREEMPT_RT" in os.uname().version


def write(name: str, text: str) -> None:
    sysfs_write(TRACING / name, text + "\n")


def append(name: str, text: str) -> None:
    # O_APPEND adds a probe; Python's append mode would also seek, which
    # tracefs refuses.
    fd = os.open(TRACING / name, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode() + b"\n")
    finally:
        os.close(fd)


@pytest.fixture
def tracing() -> Iterator[None]:
    if not (TRACING / "trace").exists():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACING)], check=False)
    if not (TRACING / "events/irq_vectors/irq_work_entry").exists():
        pytest.skip("this kernel has no irq_vectors:irq_work_entry event (x86 only)")
    write("tracing_on", "0")
    write("trace", "")
    for probe in KPROBES:
        append("kprobe_events", probe)
    try:
        write("buffer_size_kb", "32768")
        for event in EVENTS:
            write(f"events/{event}/enable", "1")
        yield
    finally:
        write("tracing_on", "0")
        for event in EVENTS:
            write(f"events/{event}/enable", "0")
        append("kprobe_events", "-:upcall_irqb/drain")
        append("kprobe_events", "-:upcall_irqb/send")
        write("trace", "")
        write("buffer_size_kb", "1408")


@dataclass
class Cpu:
    """What one CPU's trace shows."""

    irqs: int = 0  # irq_work interrupts
    irq_ns: int = 0  # time in them
    longest_irq_ns: int = 0
    most_sends_per_irq: int = 0
    most_sends_per_drain: int = 0  # one subscriber's run in hard IRQ
    sends_in_irq: int = 0
    sends_elsewhere: int = 0  # the workqueue (and the irq_work thread on RT)
    span_ns: int = 0


LINE = re.compile(r"\s(\d+)\.(\d+): (irq_work_entry|irq_work_exit|drain|send):")


def parse(cpu: int) -> Cpu:
    out = Cpu()
    entry = None
    first = last = 0
    sends_irq = sends_drain = 0
    with open(TRACING / f"per_cpu/cpu{cpu}/trace") as f:
        for line in f:
            m = LINE.search(line)
            if not m:
                continue
            ts = int(m.group(1)) * 1_000_000_000 + int(m.group(2).ljust(9, "0"))
            first = first or ts
            last = ts
            what = m.group(3)
            if what == "irq_work_entry":
                entry, sends_irq, sends_drain = ts, 0, 0
            elif what == "irq_work_exit" and entry is not None:
                out.irqs += 1
                out.irq_ns += ts - entry
                out.longest_irq_ns = max(out.longest_irq_ns, ts - entry)
                out.most_sends_per_irq = max(out.most_sends_per_irq, sends_irq)
                entry = None
            elif what == "drain" and entry is not None:
                sends_drain = 0
            elif what == "send" and entry is not None:
                sends_irq += 1
                sends_drain += 1
                out.sends_in_irq += 1
                out.most_sends_per_drain = max(out.most_sends_per_drain, sends_drain)
            elif what == "send":
                out.sends_elsewhere += 1
    out.span_ns = last - first
    return out


def lost_entries(cpu: int) -> int:
    stats = (TRACING / f"per_cpu/cpu{cpu}/stats").read_text()
    return sum(int(m.group(1)) for m in re.finditer(r"(?:overrun|dropped events): (\d+)", stats))


def test_hard_irq_work_is_bounded_under_an_emit_flood(tracing: None) -> None:
    """A backlog of a full queue per subscriber, handed to SIGNAL at once.

    Each subscriber first takes QUEUE and nobody reads it, so a full queue
    (QUEUE_SIZE events) waits; the re-SUBSCRIBE to SIGNAL sends them by the
    new transport, from the irq_work, while emitters run on every CPU.
    """
    cpus = sorted(os.sched_getaffinity(0))
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {SIGNO})
    fds = [os.open("/dev/upcall", os.O_RDONLY) for _ in range(SUBSCRIBERS)]
    emitters: list[int] = []
    try:
        for fd in fds:
            assert rawioctl.subscribe(fd, 0, transport=abi.UPCALL_TRANSPORT_QUEUE) == 0
        with upcall.open() as dev:
            for value in range(QUEUE_SIZE):
                assert dev.emit(value) >= SUBSCRIBERS
        assert all(rawioctl.stats(fd).queued == QUEUE_SIZE for fd in fds)
        emitters = emitters_on_all_cpus()
        write("tracing_on", "1")
        for fd in fds:
            assert rawioctl.subscribe(fd, SIGNO) == 0
        # Until each backlog has gone out (delivered, or displaced by the
        # emitters' events and counted dropped).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            books = [rawioctl.stats(fd) for fd in fds]
            if all(s.delivered + s.dropped >= QUEUE_SIZE for s in books):
                break
            time.sleep(0.02)
        write("tracing_on", "0")
        kill_all(emitters)
        emitters = []

        lost = {cpu: lost_entries(cpu) for cpu in cpus}
        assert not any(lost.values()), f"trace entries lost (buffer too small): {lost}"
        seen = {cpu: parse(cpu) for cpu in cpus}

        # Every event is delivered or counted dropped once the queues are empty.
        deadline = time.monotonic() + 30
        while True:
            books = [rawioctl.stats(fd) for fd in fds]
            if all(s.queued == 0 for s in books) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for s in books:
            assert s.queued == 0
            assert s.delivered + s.dropped >= QUEUE_SIZE
            assert s.emitted == s.delivered + s.dropped, (s.emitted, s.delivered, s.dropped)
    finally:
        kill_all(emitters)
        for fd in fds:
            os.close(fd)
        while signal.sigtimedwait({SIGNO}, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    for cpu, c in seen.items():
        share = c.irq_ns / c.span_ns if c.span_ns else 0.0
        figure(
            f"hard-IRQ bound, {SUBSCRIBERS} signal subscribers with {QUEUE_SIZE} events "
            f"waiting each, emitters on every CPU, cpu{cpu}: {c.irqs} irq_work interrupts, "
            f"longest {c.longest_irq_ns / 1000:.1f} us, {share:.0%} of the traced "
            f"{c.span_ns / 1e6:.0f} ms in them; most signals in one interrupt "
            f"{c.most_sends_per_irq}, in one subscriber's run {c.most_sends_per_drain}; "
            f"sent in hard IRQ {c.sends_in_irq}, outside it {c.sends_elsewhere}"
        )
    batch = irq_batch()
    in_irq = sum(c.sends_in_irq for c in seen.values())
    elsewhere = sum(c.sends_elsewhere for c in seen.values())
    assert in_irq + elsewhere > 0, "the trace saw no signal: the probes did not fire"
    if preempt_rt():
        # irq_work without IRQ_WORK_HARD_IRQ runs in a thread on PREEMPT_RT.
        assert in_irq == 0
    else:
        assert all(c.most_sends_per_drain <= batch for c in seen.values()), (
            f"a hard-IRQ run sent more than UPCALL_IRQ_BATCH={batch} signals"
        )
        # The backlog went on from the workqueue, not by raising the irq_work again.
        assert elsewhere > 0, "no signal was sent from the workqueue"
