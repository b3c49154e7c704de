# SPDX-License-Identifier: LGPL-2.1-or-later
"""upcall: kernel events delivered to user space, with a value.

Typical use (the queue transport, the default)::

    import upcall

    with upcall.open() as dev, dev.subscribe() as sub:
        dev.emit(5)
        for event in sub.read(1, timeout=5):
            print(event.seqno, event.value)
"""

from __future__ import annotations

from ._batch import Batch
from ._device import DEFAULT_PATH, TRANSPORTS, Device, open
from ._errors import (
    ClosedError,
    DeviceError,
    ModuleVersionError,
    SignalSetupError,
    UpcallError,
    WrongThreadError,
)
from ._event import Event
from ._subscription import SignalSubscription, Subscription
from ._transports.eventfd import EventfdSubscription
from ._transports.fasync import FasyncSubscription
from ._transports.netlink import NetlinkSubscription
from ._transports.queue import QueueSubscription
from ._version import __version__
from .abi import Stats

__all__ = [
    "DEFAULT_PATH",
    "TRANSPORTS",
    "Batch",
    "ClosedError",
    "Device",
    "DeviceError",
    "Event",
    "EventfdSubscription",
    "FasyncSubscription",
    "ModuleVersionError",
    "NetlinkSubscription",
    "QueueSubscription",
    "SignalSetupError",
    "SignalSubscription",
    "Stats",
    "Subscription",
    "UpcallError",
    "WrongThreadError",
    "__version__",
    "open",
]
