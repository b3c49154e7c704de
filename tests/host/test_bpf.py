"""The BPF path on the host kernel: real programs, real hooks, nothing mocked.

Needs root (CAP_BPF + CAP_PERFMON) and a kernel with BTF, the BPF ring
buffer and bpf_send_signal_task (6.13+). The BPF object is built with
``make bpf-build`` (built here if missing).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import ensure_bpf_object

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the BPF path loads BPF programs: needs root"
)

VIAS = ["ringbuf", "signal"]


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    ensure_bpf_object()


def _cli(*args: str, env: dict[str, str] | None = None, user: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "upcall.bpf", *args]
    if user:
        # Unprivileged: uid/gid nobody, no groups, no capabilities at all.
        cmd = [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            *cmd,
        ]
    return cmd


def _upcall_prog_ids() -> set[int]:
    out = subprocess.run(
        ["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True
    ).stdout
    return {p["id"] for p in json.loads(out) if str(p.get("name", "")).startswith("upcall_")}


def _bpftool_has(kind: str, obj_id: int) -> bool:
    r = subprocess.run(["bpftool", kind, "show", "id", str(obj_id)], capture_output=True)
    return r.returncode == 0


def _wait_gone(kind: str, ids: list[int], seconds: float = 20.0) -> list[int]:
    """Bounded wait for the kernel to free objects (maps go after an RCU grace period)."""
    deadline = time.monotonic() + seconds
    left = ids
    while left and time.monotonic() < deadline:
        left = [i for i in left if _bpftool_has(kind, i)]
        if left:
            time.sleep(0.05)
    return left


def _read_until(sub: object, n: int, seconds: float = 30.0) -> list[object]:
    from upcall.bpf import BpfSubscription

    assert isinstance(sub, BpfSubscription)
    got: list[object] = []
    deadline = time.monotonic() + seconds
    while len(got) < n and time.monotonic() < deadline:
        got.extend(sub.read(n - len(got), timeout=0.5))
    return got


# ---- delivery of exact values through the user-triggered hook -------------


@pytest.mark.parametrize("via", VIAS)
def test_trigger_delivers_exact_values(via: str) -> None:
    from upcall._event import Event
    from upcall.bpf import BpfSubscription, Trigger

    values = [0, 1, 42, 0xDEADBEEFCAFEBABE, (1 << 64) - 1, 1 << 63]
    with BpfSubscription(Trigger(), via=via) as sub:
        for v in values:
            sub.trigger(v)
        events = _read_until(sub, len(values))
        st = sub.stats()
    assert all(isinstance(e, Event) for e in events)
    evs = [e for e in events if isinstance(e, Event)]
    assert [e.value for e in evs] == values
    assert [e.seqno for e in evs] == list(range(1, len(values) + 1))
    assert {e.transport for e in evs} == {"ringbuf" if via == "ringbuf" else "bpf-signal"}
    assert all(e.source == 0 and e.timestamp_ns is not None for e in evs)
    assert all(e.latency_ns is not None and e.latency_ns >= 0 for e in evs)
    assert (st.emitted, st.delivered, st.dropped, sub.received, sub.lost) == (6, 6, 0, 6, 0)
    if via == "signal":
        assert evs[0].signo is not None and evs[0].signo >= 34
    assert evs[4].signed_value == -1


def test_signal_fallback_without_kfunc_reaches_current() -> None:
    """bpf_send_signal_thread() path: a doorbell to current, the record by ring."""
    from upcall.bpf import BpfSubscription, Trigger

    with BpfSubscription(Trigger(), via="signal", kfunc=False) as sub:
        sub.trigger(7, count=3, seq=True)
        evs = _read_until(sub, 3)
    assert [(e.seqno, e.value, e.transport) for e in evs] == [  # type: ignore[attr-defined]
        (1, 7, "bpf-signal"),
        (2, 8, "bpf-signal"),
        (3, 9, "bpf-signal"),
    ]


def test_signal_fallback_refused_for_another_task() -> None:
    from upcall.bpf import BpfError, BpfSubscription, Tracepoint

    with pytest.raises(BpfError, match=r"Linux 6\.13\+"):
        BpfSubscription(Tracepoint("sched:sched_process_exec"), via="signal", kfunc=False)


# ---- a tracepoint fired by a real kernel event, pid filter in the kernel --


@pytest.mark.parametrize("via", VIAS)
def test_tracepoint_fires_for_child_syscalls_with_pid_filter(via: str) -> None:
    from upcall.bpf import BpfSubscription, Tracepoint

    # The child blocks on stdin until we are attached: readiness, not sleep.
    child = subprocess.Popen(
        [sys.executable, "-c", "import os,sys; sys.stdin.read(); [os.getppid() for _ in range(3)]"],
        stdin=subprocess.PIPE,
    )
    try:
        with BpfSubscription(
            Tracepoint("syscalls:sys_enter_getppid"), via=via, pid=child.pid
        ) as sub:
            for _ in range(5):
                os.getppid()  # ours: must be filtered out in the kernel
            child.communicate(b"", timeout=30)
            evs = _read_until(sub, 3)
            extra = sub.read(10, timeout=0)
            st = sub.stats()
    finally:
        child.kill()
        child.wait()
    assert [e.value for e in evs] == [child.pid] * 3  # type: ignore[attr-defined]
    assert [e.seqno for e in evs] == [1, 2, 3]  # type: ignore[attr-defined]
    assert [e.source for e in evs] == [1, 1, 1]  # type: ignore[attr-defined]
    assert extra == []
    assert st.emitted == 3
    assert st.filtered >= 5


def test_comm_filter_in_kernel() -> None:
    from upcall.bpf import BpfSubscription, Tracepoint

    true = shutil.which("true") or "/bin/true"
    with BpfSubscription(Tracepoint("sched:sched_process_exec"), via="ringbuf", comm="true") as sub:
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        subprocess.run([true], check=True)
        evs = _read_until(sub, 1)
        st = sub.stats()
    assert len(evs) == 1
    assert st.filtered >= 1


def test_irq_line_hook_counts_a_real_interrupt() -> None:
    """irq_handler_entry for the busiest device line, driven by disk writes."""
    from upcall.bpf import BpfSubscription, Irq

    line = _busiest_irq()
    if line is None:
        pytest.skip("no device interrupt line with activity on this machine")
    with BpfSubscription(Irq(line), via="ringbuf") as sub:
        evs: list[Any] = []
        deadline = time.monotonic() + 20
        n = 0
        while not evs and time.monotonic() < deadline:
            p = Path(f"/tmp/upcall-irq-{os.getpid()}")
            p.write_bytes(os.urandom(1 << 16) * (n + 1))
            fd = os.open(p, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            p.unlink()
            n += 1
            evs = sub.read(16, timeout=0.2)
    if not evs:
        pytest.skip(f"IRQ {line} did not fire in 20 s of disk writes")
    assert {e.value for e in evs} == {line}
    assert {e.source for e in evs} == {3}


def _busiest_irq() -> int | None:
    best: tuple[int, int] | None = None
    for row in Path("/proc/interrupts").read_text().splitlines()[1:]:
        head, _, rest = row.partition(":")
        if not head.strip().isdigit():
            continue
        counts = [int(x) for x in rest.split() if x.isdigit()]
        if "virtio" in rest and ("req" in rest or "blk" in rest):
            total = sum(counts)
            if best is None or total > best[1]:
                best = (int(head), total)
    return None if best is None else best[0]


# ---- a 100,000-event burst with exact accounting --------------------------


@pytest.mark.parametrize("via", VIAS)
def test_burst_of_100k_is_exactly_accounted(via: str) -> None:
    from upcall.bpf import BpfSubscription, Trigger

    n = 100_000
    base = 1_000_000
    with BpfSubscription(Trigger(), via=via, ring_size=1 << 20) as sub:
        # The burst comes from another thread in bursts of 10,000 per system
        # call while this thread reads: the consumer races the producer.
        def produce() -> None:
            for i in range(0, n, 10_000):
                sub.trigger(base + i, 10_000, seq=True)

        producer = threading.Thread(target=produce)
        producer.start()
        seqnos: list[int] = []
        ok_values = True
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for e in sub.read(4096, timeout=0.2):
                seqnos.append(e.seqno)
                ok_values = ok_values and e.value == base + e.seqno - 1
            st = sub.stats()
            if not producer.is_alive() and st.emitted == n and len(seqnos) + st.dropped == n:
                break
        producer.join()
        st = sub.stats()
    assert st.emitted == n
    assert st.delivered + st.dropped == n
    assert len(seqnos) == sub.received == st.delivered
    # The gaps seen are the drops counted, but for those after the last event read.
    assert sub.lost == st.dropped - (n - seqnos[-1])
    assert seqnos == sorted(set(seqnos))  # strictly increasing: gaps are drops
    assert seqnos[-1] <= n
    assert ok_values  # every value matches its seqno, across the gaps


# ---- closing (the surface shared with the module: tests/host/test_contract.py)


def test_close_detaches_and_frees() -> None:
    from upcall.bpf import BpfSubscription, Tracepoint

    sub = BpfSubscription(Tracepoint("sched:sched_process_exec"), via="signal")
    ids = sub.bpf_ids()
    assert ids["links"] and ids["progs"] and ids["maps"]
    assert all(_bpftool_has("link", i) for i in ids["links"])
    sub.close()
    assert _wait_gone("link", ids["links"]) == []
    assert _wait_gone("prog", ids["progs"]) == []
    assert _wait_gone("map", ids["maps"]) == []
    sub.close()  # idempotent


@pytest.mark.parametrize("via", VIAS)
def test_subscriber_exit_detaches_everything(via: str) -> None:
    code = (
        "import json, sys\n"
        "from upcall.bpf import BpfSubscription, Tracepoint\n"
        f"sub = BpfSubscription(Tracepoint('sched:sched_process_exec'), via={via!r})\n"
        "print(json.dumps(sub.bpf_ids()), flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        ids = json.loads(child.stdout.readline())  # readiness: attached
        assert all(_bpftool_has("link", i) for i in ids["links"])
        assert all(_bpftool_has("prog", i) for i in ids["progs"])
    finally:
        child.kill()  # no close(): the kernel must clean up after the process
        child.wait()
    assert _wait_gone("link", ids["links"]) == []
    assert _wait_gone("prog", ids["progs"]) == []
    assert _wait_gone("map", ids["maps"]) == []
    pinned = subprocess.run(
        ["find", "/sys/fs/bpf", "-name", "*upcall*"], capture_output=True, text=True
    ).stdout
    assert pinned == ""


# ---- bad input and missing privilege: one line, non-zero, nothing left ----

BAD_CASES = {
    "unknown tracepoint": (["watch", "--tracepoint", "nosuch:event"], {}, "unknown tracepoint"),
    "malformed tracepoint": (["watch", "--tracepoint", "nocolon"], {}, "CATEGORY:NAME"),
    "unknown function": (["watch", "--kprobe", "no_such_function_xyz"], {}, "unknown kernel"),
    "irq out of range": (["watch", "--irq", "100000"], {}, "out of range"),
    "negative irq": (["watch", "--irq", "-3"], {}, "out of range"),
    "no BTF": (
        ["watch", "--tracepoint", "sched:sched_process_exec"],
        {"UPCALL_BPF_BTF": "/nonexistent/vmlinux"},
        "no BTF",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_one_clear_line(case: str) -> None:
    args, env_extra, needle = BAD_CASES[case]
    before = _upcall_prog_ids()
    r = subprocess.run(
        _cli(*args), capture_output=True, text=True, env={**os.environ, **env_extra}, timeout=60
    )
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("upcall: ") and needle in lines[0]
    assert _upcall_prog_ids() <= before


def test_unprivileged_user_is_refused_cleanly() -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) missing")
    before = _upcall_prog_ids()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run(
        _cli("watch", "--tracepoint", "sched:sched_process_exec", user=True),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd="/",
    )
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "needs root" in lines[0] and "uid 65534" in lines[0]
    assert _upcall_prog_ids() <= before


def test_watch_cli_prints_events() -> None:
    proc = subprocess.Popen(
        _cli(
            "watch",
            "--tracepoint",
            "sched:sched_process_exec",
            "--comm",
            "true",
            "--count",
            "2",
            "--via",
            "signal",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith("watching")  # readiness
        true = shutil.which("true") or "/bin/true"
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            subprocess.run([true], check=True)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    lines = out.splitlines()
    assert proc.returncode == 0
    assert lines[0].startswith("seqno=1 ") and "transport=bpf-signal" in lines[0]
    assert lines[1].startswith("seqno=2 ")


def test_doctor_reports_this_kernel() -> None:
    r = subprocess.run(_cli("doctor"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    names = {line.split()[1]: line.split()[0] for line in r.stdout.splitlines()}
    for key in ("privileges", "BTF", "kfunc", "ringbuf", "fentry", "kprobes", "tracefs"):
        assert key in names
    assert names["BTF"] == "ok" and names["ringbuf"] == "ok" and names["kfunc"] == "ok"


def test_watch_count_not_reached_exits_1() -> None:
    args = ["watch", "--tracepoint", "sched:sched_process_exec", "--comm", "no-such-comm"]
    r = subprocess.run(
        _cli(*args, "--count", "1", "--timeout", "0.3", "--json"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["received"] == 0
    assert r.stderr.startswith("watching ")


def test_signal_claimed_like_the_module_transports() -> None:
    from upcall import _signals as signals
    from upcall._errors import SignalSetupError
    from upcall.bpf import BpfSubscription, Trigger

    with BpfSubscription(Trigger(), via="signal") as sub:
        signo = sub.signo
        assert signo is not None and signals.is_blocked(signo)
        # One registry for both paths: the module's transports cannot take it.
        assert signals.choose_signal() != signo
        with pytest.raises(SignalSetupError, match="already used"), signals.SignalClaim(signo):
            pass
    assert not signals.is_blocked(signo)
    with signals.SignalClaim(signo):  # given back
        pass
