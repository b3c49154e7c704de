"""``python -m upcall_dev``, the checkout's tooling: exit statuses and one-line errors."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import upcall_dev
from upcall_dev import cli, vm

COMMANDS = ["vm", "bench", "bench-bpf"]


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err.splitlines()


def one_error(err: list[str]) -> str:
    assert len(err) == 1, f"expected one line on stderr, got {err}"
    assert err[0].startswith("upcall_dev: ")
    return err[0]


def test_it_finds_its_checkout() -> None:
    assert (upcall_dev.REPO / "kmod" / "Kbuild").is_file()
    assert vm.KMOD_SOURCES == upcall_dev.REPO / "kmod"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench-bpf", "--events", "0"], "argument --events: count 0 out of range 1..2**62"),
        (["bench", "--latency-events", "x"], "argument --latency-events: not a number: 'x'"),
        (["bench", "--timeout", "inf"], "argument --timeout: seconds inf out of range 0..1000000"),
        (["bench", "--transports", "queue,pigeon"],
         "argument --transports: unknown transport(s) 'pigeon': choose from "
         "signal, queue, fasync, eventfd, netlink"),
        (["vm", "--timeout", "nan"], "argument --timeout: seconds nan out of range 0..1000000"),
        (["vm", "--timeout", "inf"], "argument --timeout: seconds inf out of range 0..1000000"),
        (["vm", "--timeout", "-1"], "argument --timeout: seconds -1 out of range 0..1000000"),
        (["vm", "--timeout", "1e20"], "argument --timeout: seconds 1e20 out of range 0..1000000"),
        (["vm", "--timeout", "0"], "argument --timeout: seconds must be more than 0"),
        (["vm", "--cpus", "0"], "argument --cpus: cpus 0 out of range 1..64"),
        (["vm", "--cpus", "two"], "argument --cpus: not a number: 'two'"),
        (["vm", "--memory", "1"], "argument --memory: memory 1 out of range 64M..1T"),
        (["vm", "--memory", "2P"],
         "argument --memory: not a size: '2P' (MiB, or a number with K, M, G or T)"),
        (["vm", "--memory", "65537K"],
         "argument --memory: memory 65537K is not a whole number of MiB"),
    ],
)  # fmt: skip
def test_bad_numbers_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    rc, out, err = run_main(capsys, *argv)
    assert (rc, out) == (2, [])
    assert one_error(err) == f"upcall_dev: {message}"


def test_user_commands_are_upcall_s(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_main(capsys, "listen")
    assert (rc, out) == (2, [])
    assert "invalid choice: 'listen'" in one_error(err)


@pytest.mark.parametrize(
    "argv",
    [["--timeout", "nan"], ["--timeout", "inf"], ["--timeout", "-1"], ["--timeout", "1e20"],
     ["--cpus", "-2"], ["--memory", "lots"]],
)  # fmt: skip
def test_vm_bad_numbers_no_traceback_in_a_process(argv: list[str]) -> None:
    """``python -m upcall_dev vm``: one line, status 2, no boot."""
    r = subprocess.run(
        [sys.executable, "-m", "upcall_dev", "vm", *argv, "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (r.returncode, r.stdout) == (2, "")
    assert one_error(r.stderr.splitlines()).startswith(f"upcall_dev: argument {argv[0]}: ")


def test_vm_runtime_error_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_main(capsys, "vm", "--kernel", "no-such-kernel", "--print-headers")
    assert (rc, out) == (1, [])
    assert one_error(err).startswith("upcall_dev: no installed kernel matches 'no-such-kernel'")


@pytest.mark.parametrize(
    ("text", "qemu"), [("2G", "2048M"), ("512", "512M"), ("64m", "64M"), ("1048576K", "1024M")]
)
def test_vm_memory_as_qemu_takes_it(text: str, qemu: str) -> None:
    assert vm.parse_memory(text) == qemu


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_and_every_command_an_example(command: str) -> None:
    parser = cli.build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        command
    ]
    assert sub.epilog and "python -m upcall_dev " + command in sub.epilog
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings or action.dest}: no help"


@pytest.mark.parametrize("command", ["bench", "bench-bpf"])
def test_every_result_printing_command_has_json(command: str) -> None:
    parser = cli.build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        command
    ]
    assert "--json" in sub._option_string_actions


def test_one_command_imports_only_its_module() -> None:
    """``bench --in-guest`` runs in a guest, where every import costs seconds."""
    code = (
        "import sys; from upcall_dev import cli; cli.build_parser('vm'); "
        "print(sorted(m for m in sys.modules if m.startswith(('upcall_dev.', 'upcall.bpf'))))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["['upcall_dev.cli',", "'upcall_dev.progress',", "'upcall_dev.vm']"]


def test_vm_report_of_a_guest_that_died_shows_its_console(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A guest that panics leaves no dmesg: its console says why."""
    panic = "[  385.1] Kernel panic - not syncing: Fatal exception in interrupt"
    result = vm.VmResult(
        255, "....\n", console=f"[  385.0] Oops: 0000 [#1] PREEMPT_RT SMP\n{panic}\n"
    )
    kernel = vm.Kernel("6.12-test", Path("/nonexistent"), Path("/nonexistent"))
    assert vm.report(result, kernel) == 255
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [
        "upcall_dev vm: 6.12-test: exit 255 in 0 s",
        "upcall_dev vm: the guest left no kernel log (it died before the end)",
    ]
    assert err[-3:] == ["upcall_dev vm: the end of the guest's console:",
                        "[  385.0] Oops: 0000 [#1] PREEMPT_RT SMP", panic]  # fmt: skip
