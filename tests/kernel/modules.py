"""upcall's modules in the guest: the core and its two source modules.

The harness loads ``upcall.ko``, then ``upcall_edu.ko`` and
``upcall_timer.ko``, which use its ``upcall_emit()`` like any driver would,
so the core cannot be unloaded while they are loaded. Tests that unload the
core take the sources out first and put everything back as it was.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

#: The source modules, clients of upcall.ko, in the order they load.
SOURCES = ("upcall_edu", "upcall_timer")
#: Where the timer module takes its rate.
TIMER_HZ = Path("/sys/module/upcall_timer/parameters/hz")


def ko(name: str = "upcall") -> str:
    """The path of a module the harness built (beside upcall.ko)."""
    core = os.environ.get("UPCALL_KO")
    if not core:
        pytest.fail("UPCALL_KO is not set: run through `make test-kernel`")
    return str(Path(core).with_name(f"{name}.ko"))


def rmmod(name: str) -> subprocess.CompletedProcess[str]:
    """rmmod ``name``, its result whatever it is."""
    return subprocess.run(["rmmod", name], capture_output=True, text=True, check=False)


def insmod(name: str, *params: str) -> None:
    """insmod the harness's build of ``name``; fails the test if refused."""
    subprocess.run(["insmod", ko(name), *params], check=True, capture_output=True, text=True)


def loaded(name: str) -> bool:
    return Path("/sys/module", name).is_dir()


@contextmanager
def sources_unloaded(*names: str) -> Iterator[None]:
    """Unload the source modules (all by default) and load them back afterwards.

    Inside, the core has no module holding it, so an rmmod of it that is
    refused is refused for the reason the test sets up.
    """
    names = names or SOURCES
    was = [n for n in names if loaded(n)]
    for name in reversed(was):
        gone = rmmod(name)
        assert gone.returncode == 0, f"rmmod {name}: {gone.stderr}"
    try:
        yield
    finally:
        for name in was:
            if not loaded(name):
                insmod(name)
