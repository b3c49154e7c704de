"""Progress of long runs (the benchmarks, the harness, the soak): plain lines off a terminal.

On a terminal a rich bar is drawn on stderr; in a log (CI, a pipe, a test
guest's console) each step is one plain line on stderr, stdout keeps only
the results, and nothing is redrawn (no escape sequences).
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from upcall_dev import progress, vm

ESC = "\x1b"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_steps_off_a_terminal_are_plain_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert not progress.interactive()  # pytest captures stderr: no terminal
    with progress.steps("upcall_dev bench", 2) as run:
        run.step("building the C receiver")
        run.step("every run in a guest")
    out, err = capsys.readouterr()
    assert out == ""
    assert re.fullmatch(
        r"upcall_dev bench: \[1/2\] building the C receiver \(0 s\)\n"
        r"upcall_dev bench: \[2/2\] every run in a guest \(\d+ s\)\n",
        err,
    ), err


def test_count_off_a_terminal_says_at_most_one_line_per_period(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with progress.counting("soak", 1000, every=3600) as count:
        for n in (10, 500, 1000):
            count.update(n)
    assert capsys.readouterr() == ("", "")
    with progress.counting("soak", 10_000_000, every=0) as count:
        count.update(1_234_567)
    assert re.fullmatch(r"soak: 1,234,567/10,000,000 \(\d+ s\)\n", capsys.readouterr().err)


@pytest.mark.parametrize(
    ("env", "tty"),
    [({}, False), ({"UPCALL_IN_VM": "1"}, True), ({"TERM": "dumb"}, True)],
)
def test_no_bar_in_a_log_a_guest_or_a_dumb_terminal(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], tty: bool
) -> None:
    monkeypatch.delenv("UPCALL_IN_VM", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stderr = _Tty() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert not progress.interactive()
    with progress.steps("upcall_dev vm: 6.1", 1) as run:
        run.step("booting")
    assert stderr.getvalue() == "upcall_dev vm: 6.1: [1/1] booting (0 s)\n"


def test_a_terminal_gets_one_bar_for_nested_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench's steps hold vm's: one live display, as rich allows."""
    pytest.importorskip("rich", reason="the bar is rich's (the bench/dev extras)")
    monkeypatch.setattr(progress, "interactive", lambda: True)
    with progress.steps("upcall_dev bench", 2) as outer:
        outer.step("building")
        bar = progress._live
        assert bar is not None
        with progress.steps("upcall_dev vm: 6.1", 1) as inner:
            inner.step("booting")
            assert progress._live is bar and len(bar.tasks) == 2
        assert len(bar.tasks) == 1
    assert progress._live is None


def test_vm_boot_progress_off_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``vm.run`` (stream=True): a line a step on stderr, the guest's output on stdout."""
    kernel = vm.Kernel("6.1.0-test-amd64", tmp_path / "vmlinuz", tmp_path)
    monkeypatch.setattr(vm, "BUILD_DIR", tmp_path / "build")
    monkeypatch.setattr(vm, "build_module", lambda k: [tmp_path / "upcall.ko"])
    monkeypatch.setattr(vm, "kvm_usable", lambda: False)
    monkeypatch.setattr("shutil.which", lambda name, path=None: f"/usr/bin/{name}")

    def boot(
        args: list[str], timeout: float, stream: bool, env: dict[str, str]
    ) -> tuple[int, list[str]]:
        if stream:
            print("guest says hi")
        return 0, ["guest says hi\n"]

    monkeypatch.setattr(vm, "_boot", boot)
    result = vm.run("echo hi", kernel=kernel, stream=True)
    out, err = capsys.readouterr()
    assert result.returncode == 0 and out == "guest says hi\n"
    assert ESC not in err
    assert re.fullmatch(
        r"upcall_dev vm: 6\.1\.0-test-amd64: \[1/2\] building the module \(0 s\)\n"
        r"upcall_dev vm: 6\.1\.0-test-amd64: \[2/2\] booting 6\.1\.0-test-amd64 \(TCG, 2 CPUs\), "
        r"then: echo hi \(\d+ s\)\n",
        err,
    ), err
    result = vm.run("echo hi", kernel=kernel, stream=False)
    assert result.output == "guest says hi\n"
    assert capsys.readouterr() == ("", "")  # a library call: no progress
