"""The sample client modules in kmod/samples/, which call the exported upcall_emit().

upcall_sample_initfail: its init fails, and tells a waiting program why first
(source 0x100, value the negative errno). upcall_sample_timer: emits a counter
from a delayed work item every period_ms (source 0x101).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from modules import insmod

import upcall

SIG = signal.SIGRTMIN + 8
INITFAIL_SOURCE = 0x100
TIMER_SOURCE = 0x101


def sample(name: str) -> str:
    d = os.environ.get("UPCALL_SAMPLES_DIR")
    if not d:
        pytest.fail("UPCALL_SAMPLES_DIR is not set: run through `make test-kernel`")
    path = Path(d) / f"upcall_sample_{name}.ko"
    assert path.exists(), f"{path} was not built"
    return str(path)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def settle(sub: upcall.Subscription, timeout: float = 30.0) -> upcall.Stats:
    """Wait until every event accepted for ``sub`` is delivered or dropped."""
    deadline = time.monotonic() + timeout
    while (st := sub.stats()).pending:
        assert time.monotonic() < deadline, f"events still pending after {timeout} s: {st}"
        time.sleep(0.01)
    return st


def _waiting_child(ready_w: int, result_w: int) -> None:
    """A separate program that subscribes, says so, and waits for one event."""
    code = 1
    try:
        with upcall.open() as dev, dev.subscribe_signal(SIG) as sub:
            os.write(ready_w, b"r")
            events = sub.read(1, timeout=60)
            out = [{"seqno": e.seqno, "source": e.source, "value": e.signed_value} for e in events]
            os.write(result_w, json.dumps(out).encode())
        code = 0
    finally:
        os._exit(code)


@pytest.mark.parametrize(
    ("args", "err"),
    [((), errno.ENODEV), (("err=-5",), errno.EIO), (("err=-110",), errno.ETIMEDOUT)],
)
def test_init_failure_reaches_waiting_program(
    dev: upcall.Device, args: tuple[str, ...], err: int
) -> None:
    ready_r, ready_w = os.pipe()
    result_r, result_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _waiting_child(ready_w, result_w)
    os.close(ready_w)
    os.close(result_w)
    try:
        assert os.read(ready_r, 1) == b"r", "the waiting program did not subscribe"
        with dev.subscribe_signal(SIG) as sub:
            failed = run("insmod", sample("initfail"), *args)
            # The event was emitted and counted before init returned its error.
            assert sub.stats().emitted == 1
            assert failed.returncode != 0
            assert os.strerror(err) in failed.stderr, failed.stderr
            [ev] = sub.read(1, timeout=10)
            assert (ev.source, ev.signed_value) == (INITFAIL_SOURCE, -err)
        data = b""
        while chunk := os.read(result_r, 4096):
            data += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(ready_r)
        os.close(result_r)
    assert os.waitstatus_to_exitcode(status) == 0
    assert json.loads(data) == [{"seqno": 1, "source": INITFAIL_SOURCE, "value": -err}]
    assert "upcall_sample_initfail" not in Path("/proc/modules").read_text()


def test_init_success_reports_zero(dev: upcall.Device) -> None:
    with dev.subscribe_signal(SIG) as sub:
        loaded = run("insmod", sample("initfail"), "fail=0")
        try:
            assert loaded.returncode == 0, loaded.stderr
            [ev] = sub.read(1, timeout=10)
            assert (ev.source, ev.value) == (INITFAIL_SOURCE, 0)
        finally:
            run("rmmod", "upcall_sample_initfail")


def test_timer_sample_emits_and_holds_upcall(dev: upcall.Device) -> None:
    with dev.subscribe_signal(SIG) as sub:
        loaded = run("insmod", sample("timer"), "period_ms=5")
        assert loaded.returncode == 0, loaded.stderr
        try:
            events: list[upcall.Event] = []
            while len(events) < 20:
                got = sub.read(20, timeout=10)
                assert got, f"only {len(events)} events from the timer sample"
                events += got
            busy = run("rmmod", "upcall")
            assert busy.returncode != 0
            assert "upcall_sample_timer" in busy.stderr, busy.stderr
        finally:
            gone = run("rmmod", "upcall_sample_timer")
        assert gone.returncode == 0, gone.stderr
        # The work item was cancelled and waited for: nothing comes after.
        stopped = sub.stats().emitted
        settle(sub)
        events += sub.read(100_000, timeout=0)
        assert not sub.read(1, timeout=1.0), "an event after the sample was unloaded"
        st = settle(sub)
    assert st.emitted == stopped == st.delivered + st.dropped
    assert {e.source for e in events} == {TIMER_SOURCE}
    # Subscribed before loading: the counter and the seqno both start at 1.
    assert all(e.value == e.seqno for e in events)
    assert len(events) == st.delivered


@pytest.mark.usefixtures("no_source_modules")
def test_samples_need_upcall() -> None:
    gone = run("rmmod", "upcall")
    assert gone.returncode == 0, gone.stderr
    try:
        for argv in (("initfail", "fail=0"), ("timer",)):
            refused = run("insmod", sample(argv[0]), *argv[1:])
            assert refused.returncode != 0
            assert "Unknown symbol" in refused.stderr, refused.stderr
    finally:
        insmod("upcall")
