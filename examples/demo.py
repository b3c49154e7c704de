"""upcall demo: the kernel sends values to this Python program as real-time signals.

Run by `make demo` inside a guest kernel with upcall.ko loaded. A second
process asks the module to emit (the `upcall emit` command); the module
sends each event to this process as an RT signal whose siginfo carries the
value, and the handler below runs in the main thread, like a signal handler
would, but with the value, the sequence number and the source.
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

console = Console(highlight=False)
VALUES = [0, 1, 42, -1, -(2**31), 2**32 + 7, 2**64 - 1]
BURST = 10_000


def emit(*args: str) -> None:
    """Emit from another process, as a driver or a test rig would."""
    subprocess.run([sys.executable, "-m", "upcall", "emit", *args], check=True)


def main() -> int:
    console.rule("[bold]upcall demo: kernel events as real-time signals")
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
        emit(str(value), "--source", "3")
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
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
