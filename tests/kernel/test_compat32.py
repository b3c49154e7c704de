"""32-bit user space: a receiver built with ``-m32`` (compat_receiver.c) goes
through the module's compat_ioctl and gets every file-based transport: the
queue, a signal through signalfd (all 64 bits of the value) and through a
32-bit siginfo_t (32 bits of ``si_ptr``), an eventfd, a netlink socket of
its own (the family resolved and the event parsed by bench/upcall_genl.h,
as the C benchmark receiver does).

Needs Debian's gcc-multilib on the host, which the guest shares; without it
the test is skipped, except under CI=true where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
INCLUDE = ROOT / "kmod" / "include" / "uapi"


def build_m32(out: Path) -> str | None:
    """Build the receiver; None, or why it cannot be built."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return "no C compiler"
    r = subprocess.run(
        [
            cc,
            "-m32",
            "-O2",
            "-Wall",
            "-Werror",
            f"-I{INCLUDE}",
            f"-I{ROOT / 'bench'}",
            "-o",
            str(out),
            str(HERE / "compat_receiver.c"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode:
        return f"gcc -m32 failed (install gcc-multilib): {r.stderr.strip().splitlines()[-1:]}"
    return None


def test_m32_receiver_gets_every_transport() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "compat_receiver"
        why = build_m32(exe)
        if why is not None:
            if os.environ.get("CI") == "true":
                pytest.fail(why)
            pytest.skip(why)
        r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [line.split()[1] for line in r.stdout.splitlines()]
    assert lines == ["version", "queue", "eventfd", "signalfd", "siginfo-32", "netlink"], r.stdout
