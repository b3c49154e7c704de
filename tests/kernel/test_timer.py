"""The periodic hrtimer source, upcall_timer.ko: /sys/module/upcall_timer/parameters/hz.

Rates are checked by counting events, never by timing them: the guest is
emulated and its clock says little about how fast the host runs it.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Iterator

import pytest
from modules import TIMER_HZ, insmod, rmmod

import upcall
from upcall import abi

SIG = signal.SIGRTMIN + 7
MAX_HZ = 100_000


def set_hz(hz: int | str) -> None:
    fd = os.open(TIMER_HZ, os.O_WRONLY)
    try:
        os.write(fd, str(hz).encode())
    finally:
        os.close(fd)


def get_hz() -> int:
    return int(TIMER_HZ.read_text())


def settle(sub: upcall.Subscription, timeout: float = 30.0) -> upcall.Stats:
    """Wait until every event accepted for ``sub`` is delivered or dropped."""
    deadline = time.monotonic() + timeout
    while (st := sub.stats()).pending:
        assert time.monotonic() < deadline, f"events still pending after {timeout} s: {st}"
        time.sleep(0.01)
    return st


def collect(sub: upcall.Subscription, n: int, timeout: float = 120.0) -> list[upcall.Event]:
    """Read until ``n`` events have come."""
    events: list[upcall.Event] = []
    deadline = time.monotonic() + timeout
    while len(events) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(events)} of {n} events in {timeout} s"
        events += sub.read(n - len(events), timeout=left)
    return events


def check_ticks(events: list[upcall.Event]) -> None:
    """One tick, one event: the value counts ticks as the seqno counts events."""
    assert events
    assert {e.source for e in events} == {abi.UPCALL_SOURCE_TIMER}
    offset = events[0].value - events[0].seqno
    assert all(e.value - e.seqno == offset for e in events)


@pytest.fixture(autouse=True)
def stopped_timer() -> Iterator[None]:
    """Every test starts and ends with the timer stopped."""
    set_hz(0)
    yield
    if TIMER_HZ.exists():
        set_hz(0)


def reload_module(*params: str) -> None:
    """rmmod upcall_timer, then insmod it again with ``params`` (none: the defaults)."""
    gone = rmmod("upcall_timer")
    try:
        assert gone.returncode == 0, gone.stderr
    finally:
        insmod("upcall_timer", *params)


def test_default_is_stopped() -> None:
    """Loaded without hz, the timer does not run: read before anyone writes the rate.

    The fixture's write of 0 is undone by the reload, so what is read here
    is the module's own default, not the fixture's value.
    """
    reload_module()
    assert get_hz() == 0
    with upcall.open() as dev, dev.subscribe_signal(SIG) as sub:
        # A user event as a marker: had the timer run, its ticks would come
        # first or take the seqnos around it.
        assert dev.emit(5) == 1
        [ev] = sub.read(1, timeout=10)
        assert (ev.seqno, ev.source, ev.value) == (1, abi.UPCALL_SOURCE_USER, 5)
        assert not sub.read(1, timeout=0.5)
        st = sub.stats()
    assert (st.emitted, st.delivered, st.dropped) == (1, 1, 0)


def test_count_events_then_stop(dev: upcall.Device) -> None:
    with dev.subscribe_signal(SIG) as sub:
        set_hz(1000)
        assert get_hz() == 1000
        events = collect(sub, 500)
        # Stopping cancels the timer before the write returns: whatever was
        # emitted by then is all there will be.
        set_hz(0)
        stopped = sub.stats().emitted
        settle(sub)
        events += sub.read(100_000, timeout=0)
        assert not sub.read(1, timeout=1.0), "an event after the timer was stopped"
        st = settle(sub)
    assert st.emitted == stopped >= 500
    assert st.emitted == st.delivered + st.dropped
    assert len(events) == st.delivered
    check_ticks(events)


def test_rate_change_while_running(dev: upcall.Device) -> None:
    with dev.subscribe_signal(SIG) as sub:
        events = []
        for hz in (200, 5000, 50):
            set_hz(hz)
            events += collect(sub, 50)
        set_hz(0)
        settle(sub)
        events += sub.read(100_000, timeout=0)
        st = settle(sub)
    assert st.emitted == st.delivered + st.dropped
    check_ticks(events)


@pytest.mark.parametrize("text", [str(MAX_HZ + 1), "4294967296", "-1", "fast", "1.5"])
def test_rejects_bad_rates(text: str) -> None:
    set_hz(100)
    with pytest.raises(OSError) as exc:
        set_hz(text)
    assert exc.value.errno in (errno.EINVAL, errno.ERANGE)
    assert get_hz() == 100, "a rejected rate must leave the old one"


def test_unload_while_running_and_rate_at_load() -> None:
    set_hz(2000)
    reload_module("hz=300")
    assert get_hz() == 300
    with upcall.open() as dev, dev.subscribe_signal(SIG) as sub:
        events = collect(sub, 50)
        set_hz(0)
    check_ticks(events)
