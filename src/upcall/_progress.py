# SPDX-License-Identifier: LGPL-2.1-or-later
"""Progress of a long run (a benchmark, a soak), on stderr so stdout keeps the results.

A rich progress bar when rich is installed (the ``bench``/``demo``/``dev``
extras) and stderr is a terminal; otherwise one plain line a step, which a
log or CI keeps. The core needs no rich.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Steps:
    """``total`` named steps; :meth:`step` announces the next one."""

    def __init__(self, label: str, total: int, bar: Any = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._bar = bar
        self._task: Any = None if bar is None else bar.add_task(label, total=total)
        self._t0 = time.monotonic()

    def step(self, what: str) -> None:
        """Start step ``what`` (the previous one is finished)."""
        if self._bar is not None:
            if self.done:
                self._bar.advance(self._task)
            self._bar.update(self._task, description=f"{self.label}: {what}")
        else:
            elapsed = time.monotonic() - self._t0
            sys.stderr.write(
                f"{self.label}: [{self.done + 1}/{self.total}] {what} ({elapsed:.0f} s)\n"
            )
            sys.stderr.flush()
        self.done += 1


@contextmanager
def steps(label: str, total: int) -> Iterator[Steps]:
    """A :class:`Steps` for the duration of the ``with`` block."""
    if sys.stderr.isatty():
        try:
            from rich.progress import Progress
        except ImportError:
            pass
        else:
            with Progress(transient=True) as bar:
                s = Steps(label, total, bar)
                yield s
                bar.advance(s._task)
            return
    yield Steps(label, total)
