"""The ioctl fuzzer: every call answered with an allowed errno, module healthy after.

tools/fuzz/upcall_fuzz.c does the work (C: a million calls in Python would
take the emulated guest too long); this test runs it with a fixed seed, so
a failure reproduces with the command it prints.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from guest import DEBUG_KERNEL

FUZZER = Path(__file__).resolve().parents[2] / "build" / "fuzz" / "upcall-fuzz"
# A million calls per seed on the stock kernel; the debug kernel is five to
# ten times slower, so a fifth of that there.
DEFAULT_CALLS = 200_000 if DEBUG_KERNEL else 1_000_000
CALLS = int(os.environ.get("UPCALL_FUZZ_CALLS", DEFAULT_CALLS))


def kcov_available() -> bool:
    return os.path.exists("/sys/kernel/debug/kcov")


@pytest.mark.parametrize("seed", [1])
def test_ioctl_fuzz(seed: int) -> None:
    if not FUZZER.exists():
        pytest.fail(f"{FUZZER} is missing: run `make fuzz-build` first")
    cmd = [str(FUZZER), "--seed", str(seed), "--calls", str(CALLS)]
    if kcov_available():
        cmd.append("--kcov")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"fuzz: {' '.join(cmd)} -> {summary}")
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
    assert summary["calls"] == CALLS
    assert summary["bad_answers"] == 0
    assert summary["healthy"] is True
    # The fuzzer must get past the front door, not only bounce off it.
    assert summary["ok"] > 0 and summary["einval"] > 0 and summary["efault"] > 0
    if kcov_available():
        assert summary["kcov"] is True and summary["pcs"] > 0
