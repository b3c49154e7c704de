"""Kernel tests: they run inside a guest kernel with upcall.ko loaded.

`make test-kernel` (or `python -m upcall_dev vm -- python -m pytest
tests/kernel`) boots the kernel and runs this directory in one pytest
process; outside such a guest there is no module to test, so the whole
directory is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import upcall


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from figures import RECORDED

    if RECORDED:
        terminalreporter.section("figures")
        for line in RECORDED:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("UPCALL_IN_VM") == "1" or os.path.exists("/dev/upcall"):
        return
    skip = pytest.mark.skip(reason="needs /dev/upcall: run through `make test-kernel`")
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(skip)


@pytest.fixture
def dev() -> Iterator[upcall.Device]:
    with upcall.open() as device:
        yield device


@pytest.fixture
def no_source_modules() -> Iterator[None]:
    """upcall.ko alone: its source modules unloaded, loaded back afterwards."""
    from modules import sources_unloaded

    with sources_unloaded():
        yield
