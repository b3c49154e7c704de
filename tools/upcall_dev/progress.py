# SPDX-License-Identifier: LGPL-2.1-or-later
"""Progress of a long run (a benchmark, a soak, a guest's boot), on stderr so
stdout keeps the results.

On a terminal, a rich progress bar with the elapsed time, when rich is
installed (upcall-dev depends on it); everywhere else (a log, CI, a pipe, a
test guest's console, ``TERM=dumb``) plain lines, which a log keeps and
nothing redraws.

A progress opened inside another adds its line to the bar already shown:
one live display at a time, as rich allows.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: The rich Progress on screen, if any: a nested progress adds its task to it.
_live: Any = None


def interactive() -> bool:
    """Whether to draw a live bar: stderr is a terminal, not a test guest's console nor dumb."""
    if os.environ.get("UPCALL_IN_VM") == "1" or os.environ.get("TERM") == "dumb":
        return False
    return sys.stderr.isatty()


def _rich_progress() -> Any:
    """A transient rich Progress on stderr, or None without rich."""
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
    except ImportError:
        return None
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        # Results printed meanwhile go above the bar, but only when stdout is
        # this terminal too: redirected results stay where they were sent.
        redirect_stdout=sys.stdout.isatty(),
    )


@contextmanager
def _task(label: str, total: int) -> Iterator[tuple[Any, Any]]:
    """(the bar, this task on it), or (None, None) where plain lines are wanted."""
    global _live
    if _live is not None:
        task = _live.add_task(label, total=total)
        try:
            yield _live, task
        finally:
            _live.remove_task(task)
        return
    bar = _rich_progress() if interactive() else None
    if bar is None:
        yield None, None
        return
    with bar:
        _live = bar
        try:
            yield bar, bar.add_task(label, total=total)
        finally:
            _live = None


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class Steps:
    """``total`` named steps; :meth:`step` announces the next one."""

    def __init__(self, label: str, total: int, bar: Any = None, task: Any = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._bar = bar
        self._task = task
        self._t0 = time.monotonic()

    def step(self, what: str) -> None:
        """Start step ``what`` (the previous one is finished)."""
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, description=f"{self.label}: {what}")
        else:
            elapsed = time.monotonic() - self._t0
            _say(f"{self.label}: [{self.done + 1}/{self.total}] {what} ({elapsed:.0f} s)")
        self.done += 1


@contextmanager
def steps(label: str, total: int) -> Iterator[Steps]:
    """A :class:`Steps` for the duration of the ``with`` block."""
    with _task(label, total) as (bar, task):
        yield Steps(label, total, bar, task)


class Count:
    """A count towards ``total``; :meth:`update` reports how far it is."""

    def __init__(
        self, label: str, total: int, every: float, bar: Any = None, task: Any = None
    ) -> None:
        self.label = label
        self.total = total
        self.every = every
        self._bar = bar
        self._task = task
        self._t0 = self._last = time.monotonic()

    def update(self, n: int) -> None:
        """``n`` of ``total`` done: the bar moves; a plain line at most every ``every`` s."""
        if self._bar is not None:
            self._bar.update(self._task, completed=min(n, self.total))
            return
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            _say(f"{self.label}: {n:,}/{self.total:,} ({now - self._t0:.0f} s)")


@contextmanager
def counting(label: str, total: int, *, every: float = 30.0) -> Iterator[Count]:
    """A :class:`Count` for the duration of the ``with`` block."""
    with _task(label, total) as (bar, task):
        yield Count(label, total, every, bar, task)
