"""The BPF path on the guest kernels: what the host cannot show.

The host kernel refuses BPF trampolines and has no kprobes, and it has both
BTF and bpf_send_signal_task. The guests are the other cases: the stock 6.1
kernel has BTF, fentry and kprobes but no kfunc; the debug kernel has no BTF
at all. Each test asserts what this kernel must do, whichever it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from upcall.bpf import BpfError, BpfSubscription, Kprobe, Tracepoint, Trigger
from upcall.bpf import _subscription as subscription
from upcall.bpf._abi import SRC_KPROBE
from upcall.bpf._object import object_path

HAS_BTF = Path("/sys/kernel/btf/vmlinux").is_file()
FDS = list(range(900, 905))  # closing fds that are not open: close(fd) -> -EBADF


def _close_function() -> str:
    """The kernel function close(2) hands its fd to: close_fd() on 6.1,
    file_close_fd() on 6.12 (which keeps close_fd() for other callers)."""
    with open("/proc/kallsyms") as f:
        names = {line.split()[2] for line in f}
    return "file_close_fd" if "file_close_fd" in names else "close_fd"


CLOSE_FN = _close_function()


@pytest.fixture(scope="module", autouse=True)
def bpf_object() -> None:
    # `make test` builds it before booting; a missing object is a failure here.
    assert object_path().is_file()


def _upcall_progs() -> set[int]:
    out = subprocess.run(
        ["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True
    ).stdout
    return {p["id"] for p in json.loads(out) if str(p.get("name", "")).startswith("upcall_")}


@pytest.fixture
def nothing_left_attached() -> Iterator[None]:
    before = _upcall_progs()
    yield
    assert _upcall_progs() <= before, "a BPF program outlived its subscription"


def _child_closing(fds: list[int]) -> tuple[int, int]:
    """A child that closes ``fds`` once told to: (pid, the pipe end that tells it)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        os._exit(0)
    os.close(r)
    return pid, w


def _refused_for_no_btf(hook: subscription.Hook, via: str) -> None:
    with pytest.raises(BpfError, match="no BTF"):
        BpfSubscription(hook, via=via)


@pytest.mark.parametrize("attach", ["fentry", "kprobe"])
@pytest.mark.usefixtures("nothing_left_attached")
def test_kernel_function_hook_carries_its_first_argument(attach: str) -> None:
    """fentry and kprobe on close(2)'s fd function: the child's fds arrive, in order, exactly."""
    if not HAS_BTF:
        _refused_for_no_btf(Kprobe(CLOSE_FN, attach=attach), "ringbuf")
        return
    pid, go = _child_closing(FDS)
    try:
        with BpfSubscription(Kprobe(CLOSE_FN, attach=attach), via="ringbuf", pid=pid) as sub:
            os.write(go, b"g")
            os.waitpid(pid, 0)
            events = sub.read(len(FDS) + 10, timeout=30)
            while len(events) < len(FDS):
                more = sub.read(len(FDS), timeout=10)
                assert more, f"{len(events)} of {len(FDS)} events: {sub.stats()}"
                events += more
            st = sub.stats()
    finally:
        os.close(go)
    assert [e.value for e in events] == FDS
    assert [e.seqno for e in events] == list(range(1, len(FDS) + 1))
    assert {e.source for e in events} == {SRC_KPROBE}
    assert (st.emitted, st.delivered, st.dropped) == (len(FDS), len(FDS), 0)


@pytest.mark.usefixtures("nothing_left_attached")
def test_without_the_kfunc_a_signal_reaches_only_the_current_task() -> None:
    """6.1 has no bpf_send_signal_task: the fallback signals current, or refuses."""
    if not HAS_BTF:
        _refused_for_no_btf(Trigger(), "signal")
        return
    with BpfSubscription(Trigger(), via="signal") as sub:
        sub.trigger(41, count=3, seq=True)
        events = sub.read(3, timeout=30)
    assert [(e.seqno, e.value, e.transport) for e in events] == [
        (1, 41, "bpf-signal"),
        (2, 42, "bpf-signal"),
        (3, 43, "bpf-signal"),
    ]
    with pytest.raises(BpfError, match=r"Linux 6\.13\+"):
        BpfSubscription(Tracepoint("sched:sched_process_exec"), via="signal")


@pytest.mark.usefixtures("nothing_left_attached")
def test_watch_cli_on_this_kernel() -> None:
    """`upcall watch --kprobe`: events with BTF; one clear line without it (debug kernel)."""
    pid, go = _child_closing(FDS[:2])
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "upcall",
                "watch",
                "--kprobe",
                CLOSE_FN,
                "--pid",
                str(pid),
                "--count",
                "2",
                "--timeout",
                "120",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        ready = proc.stderr.readline()  # "watching ..." once attached
        if HAS_BTF:
            assert ready.startswith("watching Kprobe"), ready
        os.write(go, b"g")
        out, err = proc.communicate(timeout=300)
    finally:
        os.close(go)
        os.waitpid(pid, 0)
    if HAS_BTF:
        assert proc.returncode == 0, err
        *lines, summary = out.splitlines()
        assert [line.split()[1] for line in lines] == [f"value={fd}" for fd in FDS[:2]]
        assert summary.startswith("summary received=2 dropped=0"), summary
    else:
        lines = (ready + err).strip().splitlines()
        assert proc.returncode == 1
        assert len(lines) == 1 and lines[0].startswith("upcall: "), lines
        assert "no BTF" in lines[0] and "CONFIG_DEBUG_INFO_BTF" in lines[0]
