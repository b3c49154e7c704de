"""upcall demo: the kernel sends values to this Python program.

Run by `make demo` inside a guest kernel with upcall.ko loaded and QEMU's edu
PCI device attached. Part 1: a second process asks the module to emit (the
`upcall emit` command); the module sends each event to this process as an RT
signal whose siginfo carries the value, and the handler below runs in the
main thread, like a signal handler would, but with the value, the sequence
number and the source. Part 2: the edu device raises real hardware
interrupts (`upcall trigger edu`); the driver's interrupt handler emits each
interrupt's status register, which arrives here through the queue transport
with its emit timestamp, next to ordinary `upcall emit` events.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table

import upcall
from upcall import _edu as edu
from upcall import abi

console = Console(highlight=False)
VALUES = [0, 1, 42, -1, -(2**31), 2**32 + 7, 2**64 - 1]
BURST = 10_000


SOURCE_NAMES = {abi.UPCALL_SOURCE_USER: "user", abi.UPCALL_SOURCE_EDU: "edu"}
#: Part 2's commands, each run in another process: the events each gives, and why.
EDU_STEPS: list[tuple[list[str], int, str]] = [
    (["emit", "42"], 1, "user emit"),
    (["trigger", "edu", "--value", "0xcafe"], 1, "edu raise register"),
    (["trigger", "edu", "--count", "3"], 3, "edu raise x3"),
    (["emit", "-1"], 1, "user emit"),
    (["trigger", "edu", "--factorial", "10"], 1, "edu 10! computed"),
]


def emit(*args: str) -> None:
    """Emit from another process, as a driver or a test rig would."""
    subprocess.run([sys.executable, "-m", "upcall", "emit", *args], check=True)


def fmt_ns(ns: int) -> str:
    return f"{ns / 1e6:.1f} ms" if ns >= 10_000_000 else f"{ns / 1e3:.0f} µs"


def upcall_cmd(*args: str) -> subprocess.Popen[bytes]:
    """Start the ``upcall`` command in another process."""
    return subprocess.Popen([sys.executable, "-m", "upcall", *args], stdout=subprocess.DEVNULL)


def main() -> int:
    ok = signals_part()
    return 0 if edu_part() and ok else 1


def signals_part() -> bool:
    console.rule("[bold]1. kernel events as real-time signals")
    dev = upcall.open()
    sub = dev.subscribe_signal(signal.SIGRTMIN + 2)
    console.print(f"pid {os.getpid()} subscribed to signal {sub.signo} (SIGRTMIN+2)")

    table = Table("seqno", "value", "signed", "source", "signal", title="handler calls")
    received: list[upcall.Event] = []

    @sub.on_event
    def handler(event: upcall.Event) -> None:
        # Runs in the main thread between bytecodes, never in signal context.
        received.append(event)
        if len(received) <= len(VALUES):
            table.add_row(
                str(event.seqno),
                f"{event.value:#x}",
                str(event.signed_value),
                str(event.source),
                str(event.signo),
            )

    for value in VALUES:
        emit(str(value), "--source", "0x203")
    deadline = time.monotonic() + 10
    while len(received) < len(VALUES) and time.monotonic() < deadline:
        sub.run(timeout=0.5)
    console.print(table)

    console.print(f"\nburst: {BURST} events from one emitter process ...")
    first = len(received)
    emit("--count", str(BURST), "7")
    while True:
        sub.run(timeout=1.0)
        st = sub.stats()
        if st.pending == 0 and sub.received >= st.delivered:
            break
    burst = received[first:]
    # The rate while events flowed, not counting the emitter's start-up.
    elapsed = (burst[-1].received_ns - burst[0].received_ns) / 1e9 if len(burst) > 1 else 0.0
    st = sub.stats()
    sub.close()
    dev.close()

    summary = Table("emitted", "delivered", "received", "dropped", "seqno gaps", "events/s",
                    title="summary (kernel counters and what Python saw)")  # fmt: skip
    summary.add_row(
        str(st.emitted),
        str(st.delivered),
        str(len(received)),
        str(st.dropped),
        str(sub.lost),
        f"{len(burst) / elapsed:,.0f}" if elapsed else "-",
    )
    console.print(summary)
    ok = len(received) == st.delivered and st.delivered + st.dropped == st.emitted
    console.print(
        "[green]every event delivered or counted[/]" if ok else "[red]accounting broken[/]"
    )
    return ok


def edu_part() -> bool:
    console.rule("[bold]2. real hardware interrupts: QEMU's edu PCI device")
    try:
        pci = edu.bound_device()
    except edu.EduError as e:
        console.print(f"[yellow]skipped: {e}[/]")
        return True
    before = edu.irq_count(pci)
    console.print(f"edu {pci.name} bound to upcall, interrupt via {edu.irq_mode(pci).upper()}")
    table = Table(
        "seqno",
        "source",
        "value",
        "latency",
        "from",
        title="one queue subscriber: user emits and edu interrupts",
    )
    with upcall.open() as dev, dev.subscribe_queue() as sub:
        for argv, n, what in EDU_STEPS:
            # Read while the other process runs: the latency is the wake-up's.
            with upcall_cmd(*argv) as proc:
                events: list[upcall.Event] = []
                while len(events) < n:
                    got = sub.read(n - len(events), timeout=1)
                    events += got
                    if not got and proc.poll() is not None:
                        break  # it ended, and nothing more came
            if proc.returncode:
                raise SystemExit(f"`upcall {' '.join(argv)}` failed")
            for ev in events:
                latency = "-" if ev.latency_ns is None else fmt_ns(ev.latency_ns)
                source = SOURCE_NAMES.get(ev.source, str(ev.source))
                table.add_row(str(ev.seqno), source, f"{ev.value:#x}", latency, what)
        st = sub.stats()
        received, lost = sub.received, sub.lost
    console.print(table)
    interrupts = edu.irq_count(pci) - before
    console.print(
        f"edu interrupts handled: {interrupts}; subscriber: emitted={st.emitted} "
        f"delivered={st.delivered} dropped={st.dropped} received={received} gaps={lost}"
    )
    console.print(
        "latency: from upcall_emit() (in the interrupt handler for edu) to the read in Python,\n"
        "in a TCG guest whose 2 CPUs also start the other process's Python"
    )
    expected = sum(n for _, n, _ in EDU_STEPS)
    raised = sum(n for argv, n, _ in EDU_STEPS if argv[0] == "trigger")
    ok = interrupts == raised and received == st.delivered == st.emitted == expected and lost == 0
    console.print(
        "[green]every interrupt arrived, with its status value[/]"
        if ok
        else "[red]events missing[/]"
    )
    return ok


if __name__ == "__main__":
    sys.exit(main())
