"""Background load for the kernel tests: emitter processes, one per CPU if asked.

An emitter is a forked child (its own CPU time, no GIL shared with the test)
that emits UPCALL_IOC_EMIT in a loop; the tests kill it (SIGKILL, at any
point of the loop, including inside the ioctl) or let it finish.
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct

from upcall import abi

_EMIT = struct.Struct("=QII16x")


def spawn_emitter(
    count: int | None = None,
    *,
    first: int = 0,
    source: int = 0,
    cpu: int | None = None,
    nice: int = 0,
) -> int:
    """Fork a child that emits values ``first``, ``first + 1``, ... ; its pid.

    ``count`` None emits until killed. ``cpu`` pins it; ``nice`` lowers its
    priority so that the test's own loop still gets the CPU.
    """
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        if nice:
            os.nice(nice)
        fd = os.open("/dev/upcall", os.O_WRONLY)
        req = bytearray(_EMIT.size)
        value = first
        while count is None or value < first + count:
            _EMIT.pack_into(req, 0, value, source, 0)
            fcntl.ioctl(fd, abi.UPCALL_IOC_EMIT, req, False)
            value += 1
        code = 0
    finally:
        os._exit(code)


def emitters_on_all_cpus(*, nice: int = 10) -> list[int]:
    """One endless emitter pinned to each CPU this process may use; their pids."""
    return [
        spawn_emitter(first=i << 32, cpu=cpu, nice=nice)
        for i, cpu in enumerate(sorted(os.sched_getaffinity(0)))
    ]


def kill_all(pids: list[int]) -> None:
    """SIGKILL and reap ``pids``; each must have died of that SIGKILL."""
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
            f"emitter {pid} ended otherwise: status {status:#x}"
        )
