"""The ``upcall`` command: exit statuses, one-line errors, listen output."""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import ClassVar

import pytest
from fakes import FakeModule, FakeQueueFile, signal_state_guard  # noqa: F401 - fixture

from upcall import _cli as cli
from upcall import _edu as edu
from upcall._args import parse_int
from upcall._subscription import SignalSubscription, Subscription
from upcall._transports.eventfd import EventfdSubscription
from upcall._transports.fasync import FasyncSubscription
from upcall._transports.queue import QueueSubscription
from upcall.abi import Stats

pytestmark = pytest.mark.usefixtures("signal_state_guard")

MISSING = "/nonexistent/upcall"


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err.splitlines()


def without_latency(line: str) -> str:
    """An event line without its latency field (the queue's depends on the timing)."""
    return re.sub(r" latency=(-|\d+\.\dus)$", "", line)


def one_error(err: list[str]) -> str:
    assert len(err) == 1, f"expected one line on stderr, got {err}"
    assert err[0].startswith("upcall: ")
    return err[0]


# -- usage errors: exit status 2 ------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["emit", "0xZZ"], "not a number: '0xZZ'"),
        (["emit", "12abc"], "not a number"),
        (["emit", str(1 << 64)], "out of range"),
        (["emit", str(-(1 << 63) - 1)], "out of range"),
        (["emit", "1", "--source", "65536"], "source 65536 out of range"),
        (["emit", "1", "--count", "0"], "count 0 out of range"),
        (["listen", "--signal", "10"], "signal 10 out of range"),
        (["listen", "--timeout", "soon"], "not a number of seconds"),
        (["listen", "--timeout", "nan"], "argument --timeout: seconds nan out of range 0..1000000"),
        (["listen", "--timeout", "-1"], "argument --timeout: seconds -1 out of range 0..1000000"),
        (["trigger", "edu", "--timeout", "0"], "argument --timeout: seconds must be more than 0"),
        (["listen", "--via", "carrier-pigeon"], "invalid choice"),
        (["listen", "--queue-size", "1"], "queue size 1 out of range 2..65536"),
        (["listen", "--queue-size", "65537"], "out of range"),
        (["listen", "--queue-size", "lots"], "not a number"),
        (["listen", "--via", "queue", "--signal", "40"], "--signal and --thread apply"),
        (
            ["listen", "--signal", "40"],
            "--signal and --thread apply to --via signal or fasync, not queue",
        ),
        (["listen", "--via", "netlink", "--thread"], "--signal and --thread apply"),
        (["listen", "--via", "eventfd", "--rcvbuf", "4096"], "--rcvbuf applies"),
        (["listen", "--via", "netlink", "--rcvbuf", "0"], "receive buffer 0 out of range"),
        (["emit"], "required"),
        ([], "required"),
        (["frobnicate"], "invalid choice"),
        (["stats", "--bogus"], "unrecognized arguments"),
    ],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    rc, out, err = run_main(capsys, *argv)
    assert rc == 2
    assert needle in one_error(err)
    assert out == []


def test_help_is_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_main(capsys, "emit", "--help")
    assert rc == 0 and err == []
    assert any("VALUE" in line for line in out)


@pytest.mark.parametrize(
    "value", ["-1", "-0x10", "0x10", "18446744073709551615", "-9223372036854775808"]
)
def test_numbers_accepted(capsys: pytest.CaptureFixture[str], value: str) -> None:
    # Parsing succeeds; the run then fails on the missing device (status 1, not 2).
    rc, _, err = run_main(capsys, "emit", value, "--device", MISSING)
    assert rc == 1
    assert "does not exist" in one_error(err)


def test_parse_int() -> None:
    assert parse_int("-0x10") == -16
    assert parse_int("0b101") == 5
    assert parse_int(" 42 ") == 42
    assert cli.parse_value("-1") == -1


# -- runtime errors: exit status 1 --------------------------------------------------------


@pytest.mark.parametrize("command", [["stats"], ["emit", "5"], ["listen", "--count", "1"]])
def test_missing_device_option(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    rc, out, err = run_main(capsys, *command, "--device", MISSING)
    line = one_error(err)
    assert rc == 1
    assert MISSING in line and "insmod upcall.ko" in line and "modprobe upcall" in line
    assert "module-free BPF path: `upcall watch`" in line
    assert out == []


def test_missing_device_from_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cli.DEVICE_ENV, MISSING)
    rc, _, err = run_main(capsys, "stats")
    assert rc == 1 and MISSING in one_error(err)


def test_option_beats_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cli.DEVICE_ENV, "/dev/null")
    rc, _, err = run_main(capsys, "stats", "--device", MISSING)
    assert rc == 1 and MISSING in one_error(err)


def test_permission_denied_message(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(path: str, flags: int, mode: int = 0o777) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr("upcall._device.os.open", denied)
    rc, _, err = run_main(capsys, "emit", "1", "--device", "/dev/null")
    line = one_error(err)
    assert rc == 1
    assert "permission denied opening /dev/null" in line
    assert "crw-rw-rw-" in line and "README" in line


@pytest.fixture
def unreadable_file() -> Iterator[str]:
    fd, path = tempfile.mkstemp(prefix="upcall-test-")
    os.close(fd)
    os.chmod(path, 0)
    yield path
    os.unlink(path)


def test_permission_denied_for_real(unreadable_file: str) -> None:
    # As root, drop to nobody in the child after importing, so the open is refused.
    code = (
        "import os, sys\n"
        "from upcall._cli import build_parser, main\n"
        "build_parser()  # import everything while /root's Python is still readable\n"
        "if os.getuid() == 0:\n"
        "    os.setgid(65534); os.setuid(65534)\n"
        "sys.exit(main(['stats', '--device', sys.argv[1]]))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, unreadable_file], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1
    line = one_error(r.stderr.splitlines())
    assert "permission denied" in line and "----------" in line
    assert r.stdout == ""


def test_not_a_character_device(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "plain"
    f.write_text("")
    rc, _, err = run_main(capsys, "stats", "--device", str(f))
    assert rc == 1 and "not a character device" in one_error(err)


def test_device_without_upcall_ioctls(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_main(capsys, "emit", "1", "--device", "/dev/null")
    assert rc == 1 and "not an upcall device" in one_error(err)


def test_console_script_process() -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from upcall._cli import main; sys.exit(main())",
            "emit",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "not a number: 'x'" in one_error(r.stderr.splitlines())


# -- listen, against the fake module ---------------------------------------------------------


class FakeDevice:
    """Stands in for upcall._device.Device in cli: subscriptions use a FakeModule.

    ``queue`` events are emitted right after subscribing; ``then`` runs after
    that (in the main thread, with the signal already blocked).
    """

    queue: ClassVar[list[tuple[int, int, bool]]] = []
    then: ClassVar[list[Callable[[], object]]] = []
    calls: ClassVar[list[dict[str, object]]] = []

    def __init__(self, path: str) -> None:
        self.path = path
        self.module = FakeModule()

    def __enter__(self) -> FakeDevice:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass

    def stats(self) -> Stats:
        return self.module.stats()

    def subscribe(
        self,
        via: str,
        *,
        queue_size: int | None = None,
        signo: int | None = None,
        thread: bool = False,
        rcvbuf: int | None = None,
        sources: int | None = None,
    ) -> Subscription:
        call: dict[str, object] = {
            "via": via,
            "queue_size": queue_size,
            "signo": signo,
            "thread": thread,
        }
        if sources is not None:
            call["sources"] = sources
        self.calls.append(call)
        sub: Subscription
        if via == "signal":
            sub = SignalSubscription(self.module, signo, thread=thread, queue_size=queue_size)
            emit: Callable[..., int] = self.module.emit
        else:
            qfile = FakeQueueFile()
            if via == "fasync":
                sub = FasyncSubscription(qfile, signo, thread=thread, queue_size=queue_size)
            elif via == "eventfd":
                sub = EventfdSubscription(qfile, queue_size)
            else:
                assert via == "queue"
                sub = QueueSubscription(qfile, queue_size)
            emit = qfile.emit
        for value, source, drop in self.queue:
            if sources is None or source == sources:  # the module's source filter
                emit(value, source, drop=drop)
        for action in self.then:
            action()
        return sub


@pytest.fixture
def fake_device(monkeypatch: pytest.MonkeyPatch) -> type[FakeDevice]:
    monkeypatch.setattr(cli, "Device", FakeDevice)
    monkeypatch.setattr(FakeDevice, "queue", [])
    monkeypatch.setattr(FakeDevice, "then", [])
    monkeypatch.setattr(FakeDevice, "calls", [])
    return FakeDevice


@pytest.mark.parametrize("api", ["read", "callback", "asyncio"])
def test_listen_prints_events_and_summary(
    capsys: pytest.CaptureFixture[str], fake_device: type[FakeDevice], api: str
) -> None:
    fake_device.queue = [(5, 0, False), (0, 0, True), (-1, 3, False), (0x10, 0, False)]
    rc, out, err = run_main(capsys, "listen", "--count", "3", "--timeout", "5", "--api", api)
    assert (rc, err) == (0, [])
    assert out[0].startswith("listening via=queue signo=None ")
    assert out[0].endswith(f"pid={os.getpid()}")
    # The queue's events carry the module's timestamp: a latency, in microseconds.
    want = [
        r"seqno=1 value=5 source=0 latency=\d+\.\dus",
        r"seqno=3 value=18446744073709551615 \(-1\) source=3 latency=\d+\.\dus",
        r"seqno=4 value=16 source=0 latency=\d+\.\dus",
        r"summary received=3 lost=1 dropped=1 foreign=0",
    ]
    assert len(out) == 1 + len(want), out
    for pattern, line in zip(want, out[1:], strict=True):
        assert re.fullmatch(pattern, line), line


def test_listen_json(capsys: pytest.CaptureFixture[str], fake_device: type[FakeDevice]) -> None:
    fake_device.queue = [(-2, 9, False)]
    rc, out, _ = run_main(
        capsys, "listen", "--via", "signal", "--count", "1", "--json", "--signal", "40"
    )
    assert rc == 0
    lines = [json.loads(line) for line in out]
    assert lines[0] == {"type": "listening", "via": "signal", "signo": 40, "pid": os.getpid()}
    assert lines[1]["value"] == (1 << 64) - 2 and lines[1]["signed_value"] == -2
    assert lines[1]["latency_ns"] is None and lines[1]["source"] == 9
    assert lines[2] == {"type": "summary", "received": 1, "lost": 0, "dropped": 0, "foreign": 0}


def test_listen_timeout_without_events(
    capsys: pytest.CaptureFixture[str], fake_device: type[FakeDevice]
) -> None:
    rc, out, _ = run_main(capsys, "listen", "--timeout", "0.1")
    assert rc == 1
    assert out[-1] == "summary received=0 lost=0 dropped=0 foreign=0"


def test_listen_count_not_reached(
    capsys: pytest.CaptureFixture[str], fake_device: type[FakeDevice]
) -> None:
    fake_device.queue = [(1, 0, False)]
    rc, out, _ = run_main(capsys, "listen", "--count", "2", "--timeout", "0.1")
    assert rc == 1
    assert out[-1].startswith("summary received=1 ")


def test_listen_foreign_signal_counted(
    capsys: pytest.CaptureFixture[str], fake_device: type[FakeDevice]
) -> None:
    fake_device.queue = [(1, 0, False)]
    fake_device.then = [lambda: os.kill(os.getpid(), 40)]
    rc, out, _ = run_main(capsys, "listen", "--via", "signal", "--signal", "40", "--timeout", "0.1")
    assert rc == 0
    assert out[-1] == "summary received=1 lost=0 dropped=0 foreign=1"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_listen_interrupted_prints_summary(
    capsys: pytest.CaptureFixture[str], fake_device: type[FakeDevice], signum: int
) -> None:
    main_thread = threading.get_ident()
    timers: list[threading.Timer] = []

    def interrupt_later() -> None:
        # Started after the subscription blocked its signal, so it inherits that.
        t = threading.Timer(0.1, signal.pthread_kill, args=(main_thread, signum))
        timers.append(t)
        t.start()

    fake_device.queue = [(7, 0, False)]
    fake_device.then = [interrupt_later]
    previous = signal.getsignal(signal.SIGTERM)
    # Started in the background by a non-interactive shell, this process
    # inherits SIGINT ignored, and Python then raises no KeyboardInterrupt:
    # give it the handler an interactive `upcall listen` has.
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        rc, out, err = run_main(capsys, "listen")
    finally:
        signal.signal(signal.SIGINT, ignored)
    for t in timers:
        t.join()
    assert (rc, err) == (0, [])
    assert [without_latency(line) for line in out[1:]] == [
        "seqno=1 value=7 source=0",
        "summary received=1 lost=0 dropped=0 foreign=0",
    ]
    assert signal.getsignal(signal.SIGTERM) == previous


def test_emit_output(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    class Dev(FakeDevice):
        def emit(self, value: int, source: int = 0) -> int:
            calls.append((value, source))
            return 2

    monkeypatch.setattr(cli, "Device", Dev)
    rc, out, _ = run_main(capsys, "emit", "-0x10", "--source", "0x203", "--count", "3")
    assert rc == 0
    assert calls == [(-16, 0x203)] * 3
    assert out == ["emitted count=3 value=-16 source=515 queued=6"]
    # upcall's own sources are refused before any emit
    rc, out, err = run_main(capsys, "emit", "1", "--source", "2")
    assert rc == 2 and out == [] and calls == [(-16, 0x203)] * 3
    assert "source 2 is reserved for upcall's own sources" in one_error(err)


def test_stats_output(capsys: pytest.CaptureFixture[str], fake_device: type[FakeDevice]) -> None:
    rc, out, _ = run_main(capsys, "stats", "--json", "--device", "/x")
    assert rc == 0
    doc = json.loads(out[0])
    assert doc["device"] == "/x"
    assert doc["stats"] == {
        "transport": "none",
        "signo": 0,
        "emitted": 0,
        "delivered": 0,
        "dropped": 0,
        "seqno": 0,
        "pending": 0,
        "id": 0,
        "queue_size": 0,
        "queued": 0,
    }


@pytest.mark.parametrize("via", ["queue", "fasync", "eventfd"])
@pytest.mark.parametrize("api", ["read", "callback", "asyncio"])
def test_listen_via_the_queue_shows_latency(
    capsys: pytest.CaptureFixture[str], fake_device: type[FakeDevice], via: str, api: str
) -> None:
    fake_device.queue = [(5, 0, False), (0, 0, True), (-1, 3, False)]
    rc, out, err = run_main(
        capsys, "listen", "--via", via, "--count", "2", "--timeout", "5", "--api", api
    )
    assert (rc, err) == (0, [])
    signo = r"\d+" if via == "fasync" else "None"  # fasync's signal is the F_SETSIG one
    assert re.fullmatch(f"listening via={via} signo={signo} pid={os.getpid()}", out[0])
    assert re.fullmatch(r"seqno=1 value=5 source=0 latency=\d+\.\dus", out[1]), out[1]
    assert re.fullmatch(
        r"seqno=3 value=18446744073709551615 \(-1\) source=3 latency=\d+\.\dus", out[2]
    ), out[2]
    assert out[3] == "summary received=2 lost=1 dropped=1 foreign=0"


@pytest.mark.parametrize(
    ("argv", "call"),
    [
        ([], {"via": "queue", "queue_size": None, "signo": None, "thread": False}),
        (
            ["--via", "signal"],
            {"via": "signal", "queue_size": None, "signo": None, "thread": False},
        ),
        (
            ["--via", "fasync", "--signal", "40", "--queue-size", "16"],
            {"via": "fasync", "queue_size": 16, "signo": 40, "thread": False},
        ),
        (
            ["--via", "eventfd", "--queue-size", "3"],
            {"via": "eventfd", "queue_size": 3, "signo": None, "thread": False},
        ),
    ],
)
def test_listen_passes_the_options(
    capsys: pytest.CaptureFixture[str],
    fake_device: type[FakeDevice],
    argv: list[str],
    call: dict[str, object],
) -> None:
    rc, _, _ = run_main(capsys, "listen", "--timeout", "0", *argv)
    assert rc == 1  # no event came
    assert fake_device.calls == [call]


# -- listen --source and trigger edu, against a fake sysfs ------------------------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["listen", "--source", "bogus"], "not one of user, timer, edu nor a number"),
        (["listen", "--source", "65536"], "not one of user, timer, edu nor a number 0..65535"),
        (["listen", "--source", "-1"], "source '-1'"),
        (["trigger"], "required"),
        (["trigger", "usb"], "invalid choice"),
        (["trigger", "edu", "--count", "0"], "count 0 out of range"),
        (["trigger", "edu", "--count", "x"], "not a number: 'x'"),
        (["trigger", "edu", "--value", "0"], "raise value 0 out of range 1..4294967295"),
        (["trigger", "edu", "--value", "0x100000000"], "out of range"),
        (["trigger", "edu", "--factorial", "13"], "factorial operand 13 out of range 0..12"),
        (["trigger", "edu", "--value", "1", "--factorial", "3"], "not allowed with"),
        (["trigger", "edu", "--timeout", "0"], "more than 0"),
        (["trigger", "edu", "--device", "/dev/upcall"], "unrecognized arguments"),
    ],
)
def test_edu_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    rc, out, err = run_main(capsys, *argv)
    assert rc == 2
    assert needle in one_error(err)
    assert out == []


class FakeEdu:
    """A sysfs tree with one edu device; writes to its attributes "interrupt" at once."""

    def __init__(self, root: Path, driver: str | None = "upcall_edu") -> None:
        self.devices = root / "devices"
        self.dev = self.devices / "0000:00:04.0"
        self.dev.mkdir(parents=True)
        other = self.devices / "0000:00:01.0"
        other.mkdir()
        (other / "vendor").write_text("0x8086\n")
        (other / "device").write_text("0x7000\n")
        (self.dev / "vendor").write_text("0x1234\n")
        (self.dev / "device").write_text("0x11e8\n")
        (self.dev / "irq_count").write_text("0\n")
        (self.dev / "irq_mode").write_text("msi\n")
        if driver is not None:
            (root / "drivers" / driver).mkdir(parents=True)
            (self.dev / "driver").symlink_to(root / "drivers" / driver)
        self.writes: list[tuple[str, str]] = []
        self.handles = True

    def write(self, path: Path, text: str) -> None:
        self.writes.append((path.name, text))
        if self.handles:
            n = int((self.dev / "irq_count").read_text()) + 1
            (self.dev / "irq_count").write_text(f"{n}\n")


@pytest.fixture
def fake_edu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeEdu:
    fake = FakeEdu(tmp_path)
    monkeypatch.setattr(edu, "PCI_DEVICES", fake.devices)
    monkeypatch.setattr(edu, "sysfs_write", fake.write)
    return fake


def test_trigger_raises_one_value_per_interrupt(
    capsys: pytest.CaptureFixture[str], fake_edu: FakeEdu
) -> None:
    rc, out, err = run_main(capsys, "trigger", "edu", "--count", "3")
    assert (rc, err) == (0, [])
    assert fake_edu.writes == [("raise", "0x1"), ("raise", "0x2"), ("raise", "0x3")]
    assert out == [
        "triggered edu device=0000:00:04.0 irq_mode=msi count=3 values=1..3 irq_count=0->3"
    ]


def test_trigger_factorial_json(capsys: pytest.CaptureFixture[str], fake_edu: FakeEdu) -> None:
    rc, out, _ = run_main(capsys, "trigger", "edu", "--factorial", "10", "--count", "2", "--json")
    assert rc == 0
    assert fake_edu.writes == [("factorial", "10")] * 2
    assert json.loads(out[0])["factorial"] == 10


def test_trigger_fixed_value(capsys: pytest.CaptureFixture[str], fake_edu: FakeEdu) -> None:
    rc, out, _ = run_main(capsys, "trigger", "edu", "--value", "0xbeef", "--count", "2")
    assert rc == 0
    assert fake_edu.writes == [("raise", "0xbeef")] * 2
    assert "value=48879" in out[0]


def test_trigger_interrupt_not_handled(
    capsys: pytest.CaptureFixture[str], fake_edu: FakeEdu
) -> None:
    fake_edu.handles = False
    rc, out, err = run_main(capsys, "trigger", "edu", "--timeout", "0.05")
    assert (rc, out) == (1, [])
    assert "raise 0x1: no interrupt handled within 0.05 s" in one_error(err)


@pytest.mark.parametrize("command", [["trigger", "edu"], ["listen", "--source", "edu"]])
def test_no_edu_device(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    command: list[str],
) -> None:
    monkeypatch.setattr(edu, "PCI_DEVICES", tmp_path / "absent")
    rc, out, err = run_main(capsys, *command)
    assert (rc, out) == (1, [])
    assert "no edu PCI device (1234:11e8)" in one_error(err) and "-device edu" in err[0]


@pytest.mark.parametrize(
    ("driver", "needle"), [(None, "bound to no driver"), ("uio_pci_generic", "uio_pci_generic")]
)
def test_edu_not_bound_to_upcall(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    driver: str | None,
    needle: str,
) -> None:
    monkeypatch.setattr(edu, "PCI_DEVICES", FakeEdu(tmp_path, driver).devices)
    rc, _, err = run_main(capsys, "trigger", "edu")
    assert rc == 1
    assert needle in one_error(err) and "not upcall_edu" in err[0]


def test_trigger_not_root(
    capsys: pytest.CaptureFixture[str], fake_edu: FakeEdu, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(path: Path, text: str) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(edu, "sysfs_write", denied)
    rc, out, err = run_main(capsys, "trigger", "edu")
    assert (rc, out) == (1, [])
    assert "permission denied writing" in one_error(err) and "needs root" in err[0]


def test_trigger_busy(
    capsys: pytest.CaptureFixture[str], fake_edu: FakeEdu, monkeypatch: pytest.MonkeyPatch
) -> None:
    def busy(path: Path, text: str) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(edu, "sysfs_write", busy)
    rc, _, err = run_main(capsys, "trigger", "edu", "--factorial", "5")
    assert rc == 1 and "a factorial is still computing" in one_error(err)


@pytest.mark.parametrize(("source", "number"), [("user", 0), ("3", 3), ("TIMER", 1)])
def test_listen_source_filters(
    capsys: pytest.CaptureFixture[str], fake_device: type[FakeDevice], source: str, number: int
) -> None:
    fake_device.queue = [(10, 0, False), (11, 3, False), (12, 1, False), (13, 3, False)]
    rc, out, err = run_main(capsys, "listen", "--source", source, "--timeout", "0.1")
    assert (rc, err) == (0, [])
    # The module filters: the CLI asks for the one source at subscribe.
    assert fake_device.calls[0]["sources"] == number
    want = [f"value={v} source={s}" for v, s, _ in fake_device.queue if s == number]
    assert [without_latency(line.split(" ", 1)[1]) for line in out[1:-1]] == want
    assert out[-1] == f"summary received={len(want)} lost=0 dropped=0 foreign=0"


def test_listen_source_edu_needs_the_device_bound(
    capsys: pytest.CaptureFixture[str], fake_device: type[FakeDevice], fake_edu: FakeEdu
) -> None:
    fake_device.queue = [(1, 0, False), (0x40, 2, False)]
    rc, out, _ = run_main(capsys, "listen", "--source", "edu", "--count", "1")
    assert rc == 0
    assert [without_latency(line) for line in out[1:]] == [
        "seqno=1 value=64 source=2",
        "summary received=1 lost=0 dropped=0 foreign=0",
    ]


# -- the numbers and durations of every command: one line, exit status 2 ----------------

WATCH = ["watch", "--tracepoint", "sched:sched_process_exec"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*WATCH, "--timeout", "nan"], "argument --timeout: seconds nan out of range 0..1000000"),
        ([*WATCH, "--timeout", "inf"], "argument --timeout: seconds inf out of range 0..1000000"),
        ([*WATCH, "--timeout", "1e20"], "argument --timeout: seconds 1e20 out of range 0..1000000"),
        ([*WATCH, "--timeout", "-1"], "argument --timeout: seconds -1 out of range 0..1000000"),
        ([*WATCH, "--timeout", "soon"], "argument --timeout: not a number of seconds: 'soon'"),
        ([*WATCH, "--count", "0"], "argument --count: count 0 out of range 1..2**62"),
        ([*WATCH, "--count", "many"], "argument --count: not a number: 'many'"),
        (
            [*WATCH, "--comm", "a-very-long-task-name"],
            "argument --comm: comm 'a-very-long-task-name' must be 1 to 15 bytes (TASK_COMM_LEN)",
        ),
        (["watch", "--irq", "-3"], "argument --irq: IRQ -3 out of range 0..2147483647"),
        (["watch"], "one of the arguments --irq --tracepoint --kprobe is required"),
        (["doctor", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_numbers_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    rc, out, err = run_main(capsys, *argv)
    assert (rc, out) == (2, [])
    assert one_error(err) == f"upcall: {message}"


def test_pid_beyond_pid_max(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_main(capsys, *WATCH, "--pid", "99999999")
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert rc == 2
    assert one_error(err) == f"upcall: argument --pid: pid 99999999 out of range 1..{pid_max}"


@pytest.mark.parametrize("argv", [["--timeout", "nan"], ["--pid", "0"], ["--count", "-1"]])
def test_bad_numbers_no_traceback_in_a_process(argv: list[str]) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "upcall", *WATCH, *argv], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and r.stdout == ""
    assert "Traceback" not in r.stderr
    one_error(r.stderr.splitlines())


def test_version(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import upcall

    monkeypatch.setattr(cli, "SYSFS_MODULE", Path("/nonexistent/module/upcall"))
    rc, out, err = run_main(capsys, "--version")
    assert (rc, out, err) == (0, [f"upcall {upcall.__version__} (ABI 1)"], [])


class _VersionDevice:
    """A device whose module speaks ``abi``, or that raises ``error`` on open."""

    abi: ClassVar[int] = 1
    error: ClassVar[Exception | None] = None

    def __init__(self, path: str) -> None:
        if self.error is not None:
            raise self.error
        self.abi_version = self.abi

    def __enter__(self) -> _VersionDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_version_with_the_module_loaded(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import upcall
    from upcall._errors import DeviceError, ModuleVersionError

    lib = f"upcall {upcall.__version__} (ABI 1)"
    (tmp_path / "version").write_text("0.1.0\n")
    monkeypatch.setattr(cli, "SYSFS_MODULE", tmp_path)
    monkeypatch.setattr(cli, "Device", _VersionDevice)
    rc, out, _ = run_main(capsys, "--version")
    assert rc == 0 and out == [f"{lib}, module 0.1.0 (ABI 1)"]
    monkeypatch.setattr(_VersionDevice, "error", DeviceError(errno.EACCES, "denied"))
    rc, out, _ = run_main(capsys, "--version")
    assert rc == 0 and out == [f"{lib}, module 0.1.0"]
    monkeypatch.setattr(_VersionDevice, "error", ModuleVersionError("ABI 2"))
    rc, out, _ = run_main(capsys, "--version")
    assert out == [f"{lib}, module 0.1.0 (a different ABI: see `upcall stats`)"]
    (tmp_path / "version").unlink()
    monkeypatch.setattr(_VersionDevice, "error", DeviceError(errno.ENOENT, "gone"))
    rc, out, _ = run_main(capsys, "--version")
    assert out == [f"{lib}, module loaded (no version)"]


COMMANDS = ["stats", "emit", "listen", "trigger", "watch", "doctor"]


def test_the_commands_are_the_users(capsys: pytest.CaptureFixture[str]) -> None:
    """The developer tooling (python -m upcall_dev) is no command of upcall's."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(sub.choices) == sorted(COMMANDS)
    for command in ("vm", "bench", "bench-bpf"):
        rc, out, err = run_main(capsys, command)
        assert (rc, out) == (2, [])
        assert f"invalid choice: '{command}'" in one_error(err)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_and_every_command_an_example(command: str) -> None:
    parser = cli.build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        command
    ]
    assert sub.epilog and "upcall " + command in sub.epilog
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings or action.dest}: no help"


@pytest.mark.parametrize("command", ["stats", "emit", "listen", "trigger", "watch", "doctor"])
def test_every_result_printing_command_has_json(command: str) -> None:
    parser = cli.build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        command
    ]
    assert "--json" in sub._option_string_actions


# -- doctor: exit 1 and the fix in one line when something needed is missing --------------


def test_doctor_missing_object_exits_1_with_the_fix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from upcall.bpf import _doctor
    from upcall.bpf import _probe as probe

    def checks() -> list[probe.Check]:
        return [
            probe.Check("kernel", True, "6.1"),
            probe.Check("object", False, "BPF object upcall.bpf.o not found", "run make"),
            probe.Check("BTF", True, "present"),
            probe.Check("kprobes", False, "no kprobes"),
        ]

    monkeypatch.setattr(_doctor, "all_checks", checks)
    rc, out, err = run_main(capsys, "doctor")
    assert rc == 1
    assert out[1] == "NO  object      BPF object upcall.bpf.o not found"
    assert one_error(err) == "upcall: the BPF path cannot run here: object: run make"
    rc, out, _ = run_main(capsys, "doctor", "--json")
    doc = json.loads(out[0])
    assert rc == 1 and doc["ok"] is False
    assert [c["name"] for c in doc["checks"] if c["needed"] and not c["ok"]] == ["object"]


def test_doctor_names_a_wrong_object_override(monkeypatch: pytest.MonkeyPatch) -> None:
    from upcall.bpf import _probe as probe

    monkeypatch.setenv("UPCALL_BPF_OBJ", "/nonexistent/upcall.bpf.o")
    chk = probe.check_object()
    assert not chk.ok and chk.needed
    assert chk.detail.startswith("UPCALL_BPF_OBJ=/nonexistent/upcall.bpf.o: no such file")
    assert chk.fix == "unset UPCALL_BPF_OBJ or point it at upcall.bpf.o"


def test_the_object_is_looked_for_in_the_package_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Beside upcall/bpf (a wheel's object, or make bpf-build's link), nowhere else."""
    import importlib.resources

    from upcall.bpf import _object
    from upcall.bpf._errors import BpfError

    monkeypatch.delenv("UPCALL_BPF_OBJ", raising=False)
    package = Path(str(importlib.resources.files("upcall.bpf")))
    if (package / "upcall.bpf.o").is_file():
        assert _object.object_path() == package / "upcall.bpf.o"
    # A package directory without the object, inside a tree that has a
    # build/bpf/upcall.bpf.o above it: not taken.
    (tmp_path / "build" / "bpf").mkdir(parents=True)
    (tmp_path / "build" / "bpf" / "upcall.bpf.o").write_bytes(b"\x7fELF")
    (tmp_path / "src" / "upcall" / "bpf").mkdir(parents=True)
    monkeypatch.setattr(
        importlib.resources, "files", lambda name: tmp_path / "src" / "upcall" / "bpf"
    )
    with pytest.raises(BpfError, match=r"not found in the package .*: reinstall the wheel"):
        _object.object_path()


def test_netlink_without_pyroute2_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from upcall._errors import UpcallError
    from upcall._transports import netlink

    monkeypatch.setitem(sys.modules, "pyroute2", None)  # import fails as if not installed
    with pytest.raises(UpcallError, match=r"pip install 'upcall\[netlink\]'"):
        netlink.resolve_family()
