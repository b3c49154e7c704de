# SPDX-License-Identifier: LGPL-2.1-or-later
"""The compiled core (``upcall._core``), when it is built and not turned off.

Every module transport (queue, fasync, eventfd, signal, netlink) reads its
events through :class:`upcall._core.Reader` when it is importable: the
per-event ``read(1)``/``poll()``/iteration path in one C call, on the
subscription's state kept in C fields (:class:`upcall._core.State`, every
Subscription's base). Without it, or with the environment variable
``UPCALL_PURE_PYTHON`` set to anything but ``""`` or ``"0"`` when upcall is
imported, the same path runs in pure Python: same semantics, slower (the
bench and the tests measure and run both).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._core import Reader as _Reader


class PyState:
    """:class:`upcall._core.State`'s place in pure Python: no fields of its own.

    The subscription's state (``_closed``, ``_busy``, ``_lost``...) is then
    in the instance's dict, set by ``Subscription.__init__`` as it is with
    the compiled State.
    """

    __slots__ = ()


#: The compiled Reader type, or None: pure Python.
Reader: type[_Reader] | None

if os.environ.get("UPCALL_PURE_PYTHON", "") not in ("", "0"):
    Reader = None
else:
    try:
        from ._core import Reader
    except ImportError:
        Reader = None

# Subscription's base: where its state lives. With the core, C fields that
# the Reader reads and writes directly instead of through attribute lookups.
# And its lock: with the core, one the Reader takes with a C call.
if TYPE_CHECKING:
    from ._core import Lock as Lock
    from ._core import State as State
elif Reader is None:
    State = PyState
    Lock = threading.RLock
else:
    from ._core import Lock as Lock
    from ._core import State as State


def compiled() -> bool:
    """Whether the compiled core is in use."""
    return Reader is not None
