"""Figures the kernel tests measure, for RELIABILITY.md.

Each goes to stdout as a line starting with "FIGURE:", into the terminal
summary at the end of the run (pytest -q hides a passing test's output),
and, inside the guest, into $UPCALL_VM_OUTDIR/figures.txt.
"""

from __future__ import annotations

import os

RECORDED: list[str] = []


def figure(text: str) -> None:
    line = f"FIGURE: {text}"
    print(f"\n{line}", flush=True)
    RECORDED.append(line)
    outdir = os.environ.get("UPCALL_VM_OUTDIR")
    if outdir:
        with open(os.path.join(outdir, "figures.txt"), "a") as f:
            f.write(line + "\n")
