"""The kernel-native ABI tests: tools/testing/selftests/upcall, run in the guest.

`make kselftest-build` builds them against the kernel's own kselftest
harness (build/kselftest/upcall_abi_test); the binary prints TAP. This
passes only if every test reported ``ok``, none ``not ok`` and none was
skipped: a skip here means the ABI went untested.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

KSELFTEST = Path(__file__).resolve().parents[2] / "build" / "kselftest" / "upcall_abi_test"


def tap_results(out: str) -> tuple[int, list[str]]:
    """The plan's test count and the result lines (``ok``/``not ok``) of TAP output."""
    plan = re.search(r"^1\.\.(\d+)$", out, re.MULTILINE)
    assert plan, f"no TAP plan:\n{out}"
    return int(plan.group(1)), re.findall(r"^(?:not )?ok \d+.*$", out, re.MULTILINE)


def test_tap_results_parse() -> None:
    """The parser itself: a failure and a skip are seen as such."""
    out = "TAP version 13\n1..3\nok 1 a\nnot ok 2 b\nok 3 # SKIP why\n# Totals: ...\n"
    plan, results = tap_results(out)
    assert plan == 3
    assert results == ["ok 1 a", "not ok 2 b", "ok 3 # SKIP why"]


def test_upcall_abi_kselftest() -> None:
    if not KSELFTEST.exists():
        pytest.fail(f"{KSELFTEST} is missing: run `make kselftest-build` first")
    proc = subprocess.run(
        [str(KSELFTEST)], capture_output=True, text=True, timeout=600, check=False
    )
    print(proc.stdout)
    report = f"{proc.stdout}\n{proc.stderr}"
    plan, results = tap_results(proc.stdout)
    failed = [r for r in results if r.startswith("not ok")]
    skipped = [r for r in results if "# SKIP" in r]
    assert not failed, report
    assert not skipped, report
    assert len(results) == plan >= 11, report
    assert all(r.startswith("ok ") for r in results), report
    assert proc.returncode == 0, report
