# SPDX-License-Identifier: LGPL-2.1-or-later
"""The BPF path's error type."""

from __future__ import annotations

from upcall._errors import UpcallError


class BpfError(UpcallError):
    """The BPF path cannot do what was asked; the message says why in one line.

    ``errno`` is the system error number behind it, or None.
    """

    def __init__(self, message: str, *, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_
