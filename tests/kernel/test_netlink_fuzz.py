"""Generic netlink fuzzing: every message answered with an allowed errno, module healthy after.

tests/kernel/nlfuzz.py sends seeded random messages to the "upcall" family
(random commands, versions, flags and attributes); this runs it as root and
as an unprivileged user and then checks that a normal netlink EMIT still
makes the round trip.  A failure reproduces with the command it prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from guest import DEBUG_KERNEL as DEBUG

import upcall
from upcall import abi
from upcall._transports.netlink import send_command

FUZZER = Path(__file__).resolve().parent / "nlfuzz.py"
# Python builds each message: about 1.5 ms apiece under TCG, so `make test`
# sends 20,000 (4,000 on the debug kernel) and `make soak` the larger runs.
MESSAGES = int(os.environ.get("UPCALL_NLFUZZ_MESSAGES", 4_000 if DEBUG else 20_000))
NOBODY = 65534


def fuzz(seed: int, messages: int, user: int | None) -> dict[str, object]:
    cmd = [sys.executable, str(FUZZER), "--seed", str(seed), "--messages", str(messages)]
    if user is not None:
        cmd += ["--user", str(user)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    assert proc.stdout, f"{' '.join(cmd)}: {proc.stderr}"
    summary: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    who = "root" if user is None else f"uid {user}"
    print(f"FIGURE: netlink fuzz {who}: {summary['messages']} messages, "
          f"{summary['bad']} bad answers, answers {summary['answers']}, "
          f"{summary['seconds']} s ({' '.join(cmd)})")  # fmt: skip
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{summary}\n{proc.stderr}"
    assert summary["messages"] == messages
    return summary


def round_trip(dev: upcall.Device) -> None:
    with dev.subscribe("netlink") as sub:
        send_command(
            abi.UPCALL_CMD_EMIT, [("UPCALL_ATTR_VALUE", 77), ("UPCALL_ATTR_SOURCE", 0x205)]
        )
        [ev] = sub.read(1, timeout=30)
        assert (ev.value, ev.source, ev.seqno) == (77, 0x205, 1)


@pytest.mark.parametrize(("seed", "user"), [(1, None), (2, NOBODY)], ids=["root", "nobody"])
def test_netlink_fuzz(dev: upcall.Device, seed: int, user: int | None) -> None:
    # The unprivileged pass needs fewer: every EMIT stops at the same check.
    summary = fuzz(seed, MESSAGES if user is None else MESSAGES // 5, user)
    answers = summary["answers"]
    valid = summary["valid_answers"]
    kinds = summary["kinds"]
    assert isinstance(answers, dict) and isinstance(valid, dict) and isinstance(kinds, dict)
    # It got past the front door and was turned away at each kind of check.
    assert answers.get("EINVAL", 0) > 0 and answers.get("EOPNOTSUPP", 0) > 0
    assert kinds["framing"] > 0
    if user is None:
        assert valid == {"ack": kinds["valid"]}, "a valid EMIT was refused"
    else:
        assert valid == {"EPERM": kinds["valid"]}, "an unprivileged EMIT was not refused"
    round_trip(dev)
