# SPDX-License-Identifier: LGPL-2.1-or-later
"""The context-manager half of everything that has a ``close()``."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self


class Closing(abc.ABC):
    """``with thing:`` closes ``thing`` on the way out, whatever happened."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what is held; idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
