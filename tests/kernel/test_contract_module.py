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
from upcall import abi

USER = abi.UPCALL_SOURCE_USER


# In place of the contract's own fixture: the real module's subscriptions.
@pytest.fixture(params=["queue", "fasync", "eventfd", "signal", "netlink"])  # type: ignore[no-redef]
def source(request: pytest.FixtureRequest, dev: upcall.Device) -> Iterator[Source]:
    sub = dev.subscribe(str(request.param), sources=USER)

    def emit(values: list[int]) -> None:
        for v in values:
            assert dev.emit(v) >= 1

    with sub:
        yield Source(sub, emit, None)
