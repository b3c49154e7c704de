"""The ioctl fuzzer: every call answered with an allowed errno, module healthy after.

tools/fuzz/upcall_fuzz.c does the work (C: a million calls in Python would
take the emulated guest too long); this test runs it with a fixed seed, so
a failure reproduces with the command it prints.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from figures import figure
from guest import DEBUG_KERNEL

FUZZER = Path(__file__).resolve().parents[2] / "build" / "fuzz" / "upcall-fuzz"
# A million calls per seed on the stock kernel; the debug kernel is five to
# ten times slower, so a fifth of that there.
DEFAULT_CALLS = 200_000 if DEBUG_KERNEL else 1_000_000
CALLS = int(os.environ.get("UPCALL_FUZZ_CALLS", DEFAULT_CALLS))


def kcov_available() -> bool:
    return os.path.exists("/sys/kernel/debug/kcov")


# x86-64's __START_KERNEL: KCOV reports PCs minus the KASLR offset.
START_KERNEL = 0xFFFFFFFF81000000
# What the ioctls run (upcall_ioctl_*() are inlined into upcall_ioctl()): a
# fuzzer that misses any of these only knocks at the door.
IOCTL_PATH = {"upcall_ioctl", "upcall_sub_subscribe", "upcall_sub_set_eventfd", "upcall_sub_stats",
              "upcall_emit", "upcall_signal_target_init", "upcall_netlink_target_init"}  # fmt: skip


def instrumented_sites(ko: Path) -> Counter[str]:
    """Calls to the KCOV hook in each function of the module file."""
    out = subprocess.run(["objdump", "-dr", str(ko)], capture_output=True, text=True, check=True)
    sites: Counter[str] = Counter()
    func = ""
    for line in out.stdout.splitlines():
        if m := re.match(r"^[0-9a-f]+ <(.+)>:$", line):
            func = m.group(1)
        elif "__sanitizer_cov_trace_pc" in line and "R_X86_64" in line:
            sites[func] += 1
    return sites


def reached_functions(pcs: list[int]) -> Counter[str]:
    """The module function each KCOV PC lies in, by /proc/kallsyms."""
    syms = []
    text = 0
    for line in Path("/proc/kallsyms").read_text().splitlines():
        addr, kind, name, *mod = line.split()
        if name == "_text" and not mod:
            text = int(addr, 16)
        elif mod == ["[upcall]"] and kind in "tT":
            syms.append((int(addr, 16), name))
    assert text and syms, "no kernel or module text symbols in /proc/kallsyms"
    syms.sort()
    starts = [a for a, _ in syms]
    reached: Counter[str] = Counter()
    for pc in pcs:
        i = bisect.bisect_right(starts, pc + text - START_KERNEL) - 1
        assert i >= 0, f"PC {pc:#x} is below the module's text"
        reached[syms[i][1]] += 1
    return reached


def coverage(pcs_file: Path, summary: dict[str, object]) -> None:
    ko = Path(os.environ.get("UPCALL_KO", ""))
    if not ko.is_file():
        pytest.fail("UPCALL_KO is not set: run through `make test-kernel-debug`")
    pcs = [int(line, 16) for line in pcs_file.read_text().split()]
    assert len(pcs) == summary["pcs"]
    sites = instrumented_sites(ko)
    all_sites = sum(sites.values())
    reached = reached_functions(pcs)
    missed = IOCTL_PATH - set(reached)
    assert not missed, f"functions of the ioctl path never reached: {missed}"
    ioctl_sites = sum(sites[f] for f in IOCTL_PATH)
    ioctl_reached = sum(reached[f] for f in IOCTL_PATH)
    figure(
        f"ioctl fuzz coverage (KCOV, {summary['calls']} calls, seed {summary['seed']}): "
        f"{len(pcs)} of the module's {all_sites} instrumented PCs "
        f"({100 * len(pcs) / all_sites:.0f}%) in {len(reached)} of {len(sites)} "
        f"functions; the ioctl path's {ioctl_reached} of {ioctl_sites} "
        f"({100 * ioctl_reached / ioctl_sites:.0f}%); {summary['corpus']} corpus entries kept. "
        f"Functions reached: {', '.join(f'{f} {reached[f]}/{sites[f]}' for f in sorted(reached))}"
    )


@pytest.mark.parametrize("seed", [1])
def test_ioctl_fuzz(seed: int, tmp_path: Path) -> None:
    if not FUZZER.exists():
        pytest.fail(f"{FUZZER} is missing: run `make fuzz-build` first")
    cmd = [str(FUZZER), "--seed", str(seed), "--calls", str(CALLS)]
    pcs_file = tmp_path / "pcs.txt"
    if kcov_available():
        cmd += ["--kcov", "--pcs", str(pcs_file)]
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
        coverage(pcs_file, summary)
