"""In the guest: the system calls a receiver makes per event, the bare read against the library.

For each transport, the bench's own latency rows (``upcall_dev.bench.py_latency``:
its C emitter process, one event in flight, the receiver on CPU 0) run with
the kernel's ``raw_syscalls:sys_enter`` tracepoint on for CPU 0. For each
event, the receiver's system calls from the emitter's emit (its
``ioctl``) to the receiver's acknowledgment (its ``write`` to the emitter)
are one sequence; the script prints the most common sequence of each row
and how many of the events had it. The wait itself was entered before the
emit, so it is not in the sequence; what follows the wake-up is.

Rows: ``bare`` (the bench's bare read: the minimal loop on the
subscription's own descriptors), ``read`` (``read(1)``) and ``callback``
(``on_event`` under ``run()``).

    python -m upcall_dev vm -- .venv/bin/python bench/syscalls.py [TRANSPORTS]
"""

from __future__ import annotations

import collections
import os
import re
import sys
import tempfile
from pathlib import Path

from upcall_dev.bench import py_latency

TRACING = Path("/sys/kernel/tracing")
TRANSPORTS = "signal,queue,fasync,eventfd,netlink"
EVENTS = 300
CPU = 0
# x86-64 system call numbers of the calls a receiver makes.
NAMES = {
    0: "read",
    1: "write",
    7: "poll",
    16: "ioctl",
    19: "readv",
    45: "recvfrom",
    47: "recvmsg",
    72: "fcntl",
    186: "gettid",
    202: "futex",
    228: "clock_gettime",
    232: "epoll_wait",
    271: "ppoll",
    281: "epoll_pwait",
    299: "recvmmsg",
}
LINE = re.compile(r"^\s*(.+?)-(\d+)\s+\[\d+\].*?: sys_enter: NR (\d+) ")


def trace(name: str, value: str) -> None:
    (TRACING / name).write_text(value)


def sequences(transport: str, api: str, out: Path) -> collections.Counter[str]:
    """The receiver's system calls from each emit to its acknowledgment, counted."""
    trace("tracing_on", "0")
    trace("trace", "")
    trace("set_event", "raw_syscalls:sys_enter")
    trace("tracing_on", "1")
    try:
        py_latency(transport, EVENTS, out, api=api, cpu=CPU)
    finally:
        trace("tracing_on", "0")
    me = os.getpid()
    seen: collections.Counter[str] = collections.Counter()
    current: list[str] | None = None
    for line in (TRACING / "trace").read_text().splitlines():
        m = LINE.match(line)
        if not m:
            continue
        comm, pid, nr = m.group(1), int(m.group(2)), int(m.group(3))
        if comm.endswith("upcall-bench") and nr == 16:  # the emitter's ioctl
            current = []
        elif current is not None and pid == me:
            current.append(NAMES.get(nr, str(nr)))
            if nr == 1:  # the acknowledgment
                seen[" ".join(current)] += 1
                current = None
    trace("set_event", "")
    return seen


def main() -> None:
    os.sched_setaffinity(0, {CPU})
    trace("tracing_on", "0")
    trace("tracing_cpumask", f"{1 << CPU:x}")
    trace("buffer_size_kb", "2048")  # per CPU; an event's calls are some 10 entries
    transports = (sys.argv[1] if len(sys.argv) > 1 else TRANSPORTS).split(",")
    with tempfile.TemporaryDirectory() as tmp:
        for transport in transports:
            for api in ("bare", "read", "callback"):
                seen = sequences(transport, api, Path(tmp))
                total = sum(seen.values())
                common, count = seen.most_common(1)[0] if seen else ("-", 0)
                print(f"{transport:8s} {api:8s} {count:4d}/{total:<4d} {common}", flush=True)


if __name__ == "__main__":
    main()
