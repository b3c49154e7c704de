"""The module cannot go while a file is open, and goes cleanly once all are closed.

Runs last in the guest (file order); it loads the module again at the end so
that the harness's own final rmmod still checks the module's reference count.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import time
from pathlib import Path

import pytest
from accounting import check_accounting, drain
from figures import figure
from load import emitters_on_all_cpus, kill_all
from modules import insmod
from modules import rmmod as rmmod_module

import upcall

REFCNT = Path("/sys/module/upcall/refcnt")


def rmmod() -> subprocess.CompletedProcess[str]:
    return rmmod_module("upcall")


def delete_module() -> int:
    """delete_module(2) as rmmod calls it (O_NONBLOCK); 0 or the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    ret = libc.syscall(176, b"upcall", os.O_NONBLOCK)  # __NR_delete_module
    return ctypes.get_errno() if ret else 0


@pytest.mark.usefixtures("no_source_modules")
def test_rmmod_refused_under_load() -> None:
    """Emitters on every CPU and a subscriber: each rmmod is refused, nothing breaks."""
    attempts = 5
    with upcall.open() as dev, dev.subscribe("queue", queue_size=65536) as sub:
        pids = emitters_on_all_cpus(nice=0)
        events: list[upcall.Event] = []
        refused = []
        try:
            for _ in range(attempts):
                events += sub.read(4096, timeout=0.1)
                refused.append(delete_module())
        finally:
            kill_all(pids)
        drain(sub, events)
        st = check_accounting(sub, events)
        assert st.emitted > 0
        assert dev.emit(1) == 1
    assert refused == [errno.EWOULDBLOCK] * attempts
    # Every file is closed: nothing holds the module any more (the next test unloads it).
    deadline = time.monotonic() + 10
    while int(REFCNT.read_text()) != 0:
        assert time.monotonic() < deadline, f"refcnt {REFCNT.read_text().strip()}"
        time.sleep(0.05)
    figure(
        f"faults: rmmod under load refused {attempts}/{attempts} times "
        f"(EWOULDBLOCK) while {st.emitted} events flowed, {st.dropped} dropped (exact); "
        "unloaded cleanly once closed"
    )


@pytest.mark.usefixtures("no_source_modules")
def test_rmmod_refused_while_open_then_clean() -> None:
    dev = upcall.open()
    with dev.subscribe_signal() as sub:
        dev.emit(1)
        assert sub.read(1, timeout=10)
        busy = rmmod()
        assert busy.returncode != 0 and "in use" in busy.stderr
    dev.close()
    gone = rmmod()
    try:
        assert gone.returncode == 0, gone.stderr
        assert not os.path.exists("/dev/upcall")
    finally:
        insmod("upcall")
    with upcall.open() as dev, dev.subscribe_signal() as sub:
        dev.emit(2)
        [ev] = sub.read(1, timeout=10)
        assert (ev.seqno, ev.value) == (1, 2)
