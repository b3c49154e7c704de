"""Facts about the guest kernel that the tests scale by."""

from __future__ import annotations

import os

#: The debug kernel (KASAN, lockdep, ...) runs 5-10x slower: tests use
#: smaller counts there. The harness exports UPCALL_DEBUG_KERNEL; the
#: kernel's name says it too, for a suite started by hand in a guest.
DEBUG_KERNEL = os.environ.get("UPCALL_DEBUG_KERNEL") == "1" or "debug" in os.uname().release

#: The core suite that `make test` runs on the kernels other than the
#: stock 6.1 and the debug one (UPCALL_CORE=1): the same tests at the
#: debug kernel's smaller counts, so that every kernel gets every check in
#: a fast boot.
CORE_SUITE = os.environ.get("UPCALL_CORE") == "1"

#: Run the smaller counts: on the debug kernel, or in the core suite.
REDUCED = DEBUG_KERNEL or CORE_SUITE


def meminfo_kib(field: str) -> int:
    """One /proc/meminfo figure (e.g. "MemFree", "SUnreclaim"), in KiB."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/meminfo")
