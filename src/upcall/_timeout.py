# SPDX-License-Identifier: LGPL-2.1-or-later
"""Timeouts in seconds (None: for ever) as deadlines, and as poll(2) milliseconds."""

from __future__ import annotations

import time


def deadline(timeout: float | None) -> float | None:
    """The ``time.monotonic()`` at which ``timeout`` seconds from now end; None for ever."""
    if timeout is None:
        return None
    return time.monotonic() + max(0.0, timeout)


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (0.0 once passed); None for no deadline."""
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


def poll_ms(seconds: float | None) -> int:
    """``seconds`` as poll(2)'s timeout: -1 for None, rounded up (never wake early)."""
    if seconds is None:
        return -1
    return max(0, int(seconds * 1000 + 0.999))
