"""A real hardware interrupt: QEMU's edu PCI device, its handler emitting events.

The module's edu driver binds to 1234:11e8; writing to the device's sysfs
attribute ``raise`` raises an interrupt whose handler emits the value with
UPCALL_SOURCE_EDU. Needs the guest booted with the edu device (``python -m
upcall_dev vm --edu``, which `make test` does); without it these tests skip.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from accounting import settle
from modules import insmod, rmmod

import upcall
from upcall import _edu as edu_sysfs
from upcall import abi

SIG = signal.SIGRTMIN + 6
DRIVER = edu_sysfs.DRIVER
FACT_IRQ = edu_sysfs.FACTORIAL_IRQ
write = edu_sysfs.sysfs_write
irq_count = edu_sysfs.irq_count


def bound(dev: Path) -> bool:
    return (dev / "driver").resolve() == DRIVER.resolve() if DRIVER.exists() else False


def unbind(dev: Path) -> None:
    write(DRIVER / "unbind", dev.name)


def bind(dev: Path, mode: str = "msi") -> None:
    """Bind the upcall driver to ``dev`` with interrupt ``mode`` ("msi" or "intx")."""
    write(edu_sysfs.FORCE_INTX, "Y" if mode == "intx" else "N")
    if bound(dev):
        unbind(dev)
    write(DRIVER / "bind", dev.name)
    assert (dev / "irq_mode").read_text().strip() == mode


@pytest.fixture(scope="module")
def edu_dev() -> Path:
    dev = edu_sysfs.find_device()
    if dev is None:
        pytest.skip(
            "no QEMU edu PCI device (1234:11e8): "
            "boot the guest with `python -m upcall_dev vm --edu`"
        )
    return dev


@pytest.fixture(params=["msi", "intx"])
def edu(request: pytest.FixtureRequest, edu_dev: Path) -> Iterator[Path]:
    """The edu device, bound to upcall in each interrupt mode in turn; MSI again after."""
    bind(edu_dev, request.param)
    try:
        yield edu_dev
    finally:
        if DRIVER.exists():
            bind(edu_dev, "msi")


def test_raise_n_interrupts_gives_n_events(edu: Path) -> None:
    n = 100
    before = irq_count(edu)
    with upcall.open() as dev, dev.subscribe_signal(SIG) as sub:
        values = [(i * 0x9E3779B1) & 0xFFFFFFFF or 1 for i in range(1, n + 1)]
        events = []
        for v in values:
            # One at a time: the device ORs raised values into one status
            # register, so raises closer together than the handler may merge.
            write(edu / "raise", f"{v:#x}")
            got = sub.read(1, timeout=10)
            assert got, f"no event for raise {v:#x}"
            events += got
        st = settle(sub)
        events += sub.read(n, timeout=0)
    assert [e.value for e in events] == values
    assert {e.source for e in events} == {abi.UPCALL_SOURCE_EDU}
    assert [e.seqno for e in events] == list(range(1, n + 1))
    assert (st.emitted, st.delivered, st.dropped) == (n, n, 0)
    assert st.emitted == st.delivered + st.dropped
    assert irq_count(edu) - before == n


def test_burst_every_raised_bit_reported_once(edu: Path) -> None:
    """Raises back to back may share an interrupt, but no raised bit is lost or doubled."""
    before = irq_count(edu)
    with upcall.open() as dev, dev.subscribe_signal(SIG) as sub:
        fd = os.open(edu / "raise", os.O_WRONLY)
        try:
            for bit in range(32):
                os.pwrite(fd, b"%d" % (1 << bit), 0)
        finally:
            os.close(fd)
        events: list[upcall.Event] = []
        seen = 0
        deadline = time.monotonic() + 30
        while seen != 0xFFFFFFFF and time.monotonic() < deadline:
            for e in sub.read(64, timeout=1):
                assert e.value & seen == 0, f"bits {e.value & seen:#x} reported twice"
                seen |= e.value
                events.append(e)
        assert seen == 0xFFFFFFFF
        st = settle(sub)
        assert not sub.read(64, timeout=0.2), "an event without a raise"
    assert (st.emitted, st.delivered, st.dropped) == (len(events), len(events), 0)
    assert irq_count(edu) - before == len(events)


def test_factorial_completion_interrupt(edu: Path) -> None:
    with upcall.open() as dev, dev.subscribe_signal(SIG) as sub:
        write(edu / "factorial", "10")
        [ev] = sub.read(1, timeout=10)
        assert (ev.source, ev.value) == (abi.UPCALL_SOURCE_EDU, FACT_IRQ)
        assert not sub.read(1, timeout=0.2)


@pytest.mark.parametrize("text", ["0", "-1", "0x100000000", "nope"])
def test_raise_rejects_bad_values(edu_dev: Path, text: str) -> None:
    bind(edu_dev, "msi")
    before = irq_count(edu_dev)
    with pytest.raises(OSError) as exc:
        write(edu_dev / "raise", text)
    assert exc.value.errno in (errno.EINVAL, errno.ERANGE)
    assert irq_count(edu_dev) == before


def test_unbind_rebind_under_live_subscriber(edu_dev: Path) -> None:
    with upcall.open() as dev, dev.subscribe_signal(SIG) as sub:
        received: list[upcall.Event] = []
        for round_, mode in enumerate(["msi", "intx", "msi"], start=1):
            bind(edu_dev, mode)
            assert irq_count(edu_dev) == 0, "a fresh probe starts counting from 0"
            write(edu_dev / "raise", f"{round_ << 8:#x}")
            while not any(e.value == round_ << 8 for e in received):
                got = sub.read(16, timeout=10)
                assert got, f"no event for the raise of round {round_}"
                received += got
            # A factorial running at unbind: its interrupt is handled before
            # remove or not at all, never after.
            write(edu_dev / "factorial", "12")
            unbind(edu_dev)
            assert not (edu_dev / "raise").exists()
        st = settle(sub)
        received += sub.read(64, timeout=0.5)
    raised = [e.value for e in received if e.value != FACT_IRQ]
    assert raised == [0x100, 0x200, 0x300]
    assert [e.seqno for e in received] == list(range(1, len(received) + 1))
    assert (st.emitted, st.delivered, st.dropped) == (len(received), len(received), 0)
    bind(edu_dev, "msi")


def test_unbind_while_raising(edu_dev: Path) -> None:
    """Interrupts raised in a loop while the driver goes and comes back.

    Each binding, in either mode, delivers the raiser's interrupts; every
    event read is one of them, in seqno order, and none is lost uncounted.
    The raiser tolerates only the errors of a driver in between bindings.
    """
    stop = threading.Event()
    raised = [0]
    failed: list[BaseException] = []

    def raiser() -> None:
        try:
            while not stop.is_set():
                try:
                    write(edu_dev / "raise", "1")
                    raised[0] += 1
                except OSError as e:
                    # Unbound: no attribute to open (ENOENT), or it went
                    # while open (ENODEV); anything else is a failure.
                    if e.errno not in (errno.ENOENT, errno.ENODEV):
                        raise
        except BaseException as e:
            failed.append(e)

    def read_until(done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 60
        while not done():
            if failed:
                raise failed[0]
            assert time.monotonic() < deadline, f"{what} in 60 s; {raised[0]} raised"
            events.extend(sub.read(1000, timeout=1))

    events: list[upcall.Event] = []
    bind(edu_dev, "msi")
    with upcall.open() as dev, dev.subscribe_signal(SIG) as sub:
        t = threading.Thread(target=raiser)
        t.start()
        try:
            read_until(lambda: bool(events), "no event")
            for mode in ["intx", "msi", "intx", "msi"]:
                bind(edu_dev, mode)
                # The count starts from 0 at each probe: this binding's own.
                read_until(lambda: irq_count(edu_dev) > 0, f"no interrupt handled in {mode}")
        finally:
            stop.set()
            t.join(30)
        assert not t.is_alive(), "the raiser did not stop"
        if failed:
            raise failed[0]
        st = settle(sub)
        events += sub.read(100000, timeout=0.5)
        assert st.emitted == st.delivered + st.dropped
        assert 0 < st.emitted <= raised[0]
    assert {(e.source, e.value) for e in events} == {(abi.UPCALL_SOURCE_EDU, 1)}
    assert [e.seqno for e in events] == list(range(1, len(events) + 1))
    assert len(events) == st.delivered
    assert (edu_dev / "irq_mode").read_text().strip() == "msi"


def test_rmmod_insmod_with_edu_bound(edu_dev: Path) -> None:
    """upcall_edu holds the core; unloading it with an interrupt pending is clean."""
    bind(edu_dev, "intx")
    with upcall.open() as dev, dev.subscribe_signal(SIG) as sub:
        write(edu_dev / "raise", "5")
        busy = rmmod("upcall")
        assert busy.returncode != 0 and "upcall_edu" in busy.stderr, busy.stderr
        # The refused rmmod left the driver working.
        [ev] = sub.read(1, timeout=10)
        assert ev.value == 5
        write(edu_dev / "raise", "6")
        [ev] = sub.read(1, timeout=10)
        assert ev.value == 6
        # An interrupt pending at rmmod must be handled or lowered by remove.
        write(edu_dev / "factorial", "12")
        try:
            gone = rmmod("upcall_edu")
            assert gone.returncode == 0, gone.stderr
            assert not DRIVER.exists()
            assert not (edu_dev / "driver").exists()
        finally:
            insmod("upcall_edu")
    # Loading binds the device again, in MSI mode (the parameter's default).
    assert (edu_dev / "irq_mode").read_text().strip() == "msi"
    with upcall.open() as dev, dev.subscribe_signal(SIG) as sub:
        write(edu_dev / "raise", "7")
        [ev] = sub.read(1, timeout=10)
        assert (ev.seqno, ev.value, ev.source) == (1, 7, abi.UPCALL_SOURCE_EDU)


# -- the command: `upcall trigger edu` and `upcall listen --source edu` ------------------


def upcall_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "upcall", *args]


def kill_if_running(p: subprocess.Popen[str]) -> None:
    if p.poll() is None:
        p.kill()


def listen_edu(
    vias: Sequence[str], n: int, trigger: list[str]
) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """Run ``upcall listen --source edu`` per transport while a user event, then ``trigger``, come.

    The listeners run side by side (a Python start is slow in the guest).
    Returns each listener's JSON lines after its "listening" line, and what
    the trigger printed.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        procs = {}
        for via in vias:
            cmd = upcall_cmd("listen", "--json", "--via", via, "--source", "edu")
            cmd += ["--count", str(n), "--timeout", "300"]
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            stack.enter_context(p)
            stack.callback(kill_if_running, p)
            procs[via] = p
        for via, p in procs.items():
            assert p.stdout is not None
            first = json.loads(p.stdout.readline() or "{}")
            assert first.get("type") == "listening", f"{via}: {p.communicate()}"
        # Another source's event: the module keeps it from every listener.
        with upcall.open() as dev:
            assert dev.emit(0xAB) == 0
        trig = subprocess.run(trigger, capture_output=True, text=True, timeout=300)
        assert trig.returncode == 0, trig.stderr
        for via, p in procs.items():
            stdout, stderr = p.communicate(timeout=300)
            assert p.returncode == 0, f"{via}: {stderr}"
            out[via] = [json.loads(line) for line in stdout.splitlines()]
    return out, trig.stdout


def test_cli_trigger_reaches_listen_source_edu(edu_dev: Path) -> None:
    """`upcall trigger edu --count N`: N events in `upcall listen --source edu`, every transport."""
    n = 20
    bind(edu_dev, "msi")
    before = irq_count(edu_dev)
    outputs, trig = listen_edu(
        upcall.TRANSPORTS, n, upcall_cmd("trigger", "edu", "--count", str(n))
    )
    assert f"count={n} values=1..{n}" in trig
    assert irq_count(edu_dev) - before == n
    for via, lines in outputs.items():
        *events, summary = lines
        assert [e["value"] for e in events] == list(range(1, n + 1)), via
        assert {e["source"] for e in events} == {abi.UPCALL_SOURCE_EDU}, via
        # The user event never reached the subscriber: no seqno was spent on it.
        assert [e["seqno"] for e in events] == list(range(1, n + 1)), via
        assert summary == {
            "type": "summary",
            "received": n,
            "lost": 0,
            "dropped": 0,
            "foreign": 0,
        }, via


def test_cli_factorial_on_intx(edu_dev: Path) -> None:
    """`upcall trigger edu --factorial`: each completion interrupt gives one event."""
    bind(edu_dev, "intx")
    try:
        with upcall.open() as dev, dev.subscribe_queue() as sub:
            trigger = upcall_cmd("trigger", "edu", "--factorial", "12", "--count", "3", "--json")
            r = subprocess.run(trigger, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr
            # irq_count, which trigger waits on, counts just before the emit.
            events: list[upcall.Event] = []
            while len(events) < 3 and (got := sub.read(3, timeout=10)):
                events += got
            st = settle(sub)
            events += sub.read(16, timeout=0)
    finally:
        bind(edu_dev, "msi")
    assert json.loads(r.stdout)["irq_mode"] == "intx"
    assert [(e.seqno, e.value, e.source) for e in events] == [
        (s, FACT_IRQ, abi.UPCALL_SOURCE_EDU) for s in (1, 2, 3)
    ]
    assert (st.emitted, st.delivered, st.dropped) == (3, 3, 0)


def test_cli_trigger_not_root(edu_dev: Path) -> None:
    bind(edu_dev, "msi")
    before = irq_count(edu_dev)
    code = (
        "import os, sys\n"
        "from upcall._cli import build_parser, main\n"
        "build_parser()  # import everything before dropping privileges\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "sys.exit(main(['trigger', 'edu']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (1, "")
    [line] = r.stderr.splitlines()
    assert line.startswith("upcall: permission denied writing") and "needs root" in line
    assert irq_count(edu_dev) == before


def test_cli_without_upcall_driver(edu_dev: Path) -> None:
    bind(edu_dev, "msi")
    unbind(edu_dev)
    try:
        cmds = [["trigger", "edu"], ["listen", "--source", "edu", "--count", "1"]]
        procs = [
            subprocess.Popen(
                upcall_cmd(*c), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for c in cmds
        ]
        for cmd, p in zip(cmds, procs, strict=True):
            stdout, stderr = p.communicate(timeout=300)
            assert (p.returncode, stdout) == (1, ""), cmd
            assert (
                stderr == f"upcall: edu device {edu_dev.name} is bound to no driver "
                "(is upcall.ko loaded?), not upcall_edu\n"
            )
    finally:
        bind(edu_dev, "msi")
