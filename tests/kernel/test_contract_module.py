"""tests/host/test_contract.py's contract, held against the real module.

The same tests, with the subscription made by ``Device.subscribe`` for each
of the module's transports (netlink included, which the host cannot have)
and the events emitted by ``UPCALL_IOC_EMIT``. A subscription takes user
space's source alone, so that the module's own sources (the timer, edu)
cannot add events to a test's count.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))

from fakes import Source
from test_contract import *  # noqa: F403 - the contract's tests and helpers

import upcall
from upcall import _accel, abi

USER = abi.UPCALL_SOURCE_USER


# In place of the contract's own fixture: the real module's subscriptions,
# each also on the pure-Python path (as on the host).
@pytest.fixture(  # type: ignore[no-redef]
    params=["queue", "fasync", "eventfd", "signal", "netlink", *PURE, "netlink-pure"]  # noqa: F405
)
def source(
    request: pytest.FixtureRequest, dev: upcall.Device, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Source]:
    via = str(request.param)
    if via.endswith("-pure"):
        via = via.removesuffix("-pure")
        monkeypatch.setattr(_accel, "Reader", None)
    sub = dev.subscribe(via, sources=USER)
    assert (sub._core is not None) == (_accel.compiled() and via == request.param)

    def emit(values: list[int]) -> None:
        for v in values:
            assert dev.emit(v) >= 1

    with sub:
        yield Source(sub, emit, None)
