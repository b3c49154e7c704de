"""The module cannot go while a file is open, and goes cleanly once all are closed.

Runs last in the guest (file order); it loads the module again at the end so
that the harness's own final rmmod still checks the module's reference count.
"""

from __future__ import annotations

import os
import subprocess

import pytest

import upcall


def rmmod() -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rmmod", "upcall"], capture_output=True, text=True, check=False)


def test_rmmod_refused_while_open_then_clean() -> None:
    ko = os.environ.get("UPCALL_KO")
    if not ko:
        pytest.fail("UPCALL_KO is not set: run through `make test-kernel`")
    dev = upcall.open()
    with dev.subscribe_signal() as sub:
        dev.emit(1)
        assert sub.read(1, timeout=10)
        busy = rmmod()
        assert busy.returncode != 0 and "in use" in busy.stderr
    dev.close()
    gone = rmmod()
    assert gone.returncode == 0, gone.stderr
    assert not os.path.exists("/dev/upcall")
    subprocess.run(["insmod", ko], check=True)
    with upcall.open() as dev, dev.subscribe_signal() as sub:
        dev.emit(2)
        [ev] = sub.read(1, timeout=10)
        assert (ev.seqno, ev.value) == (1, 2)
