# SPDX-License-Identifier: LGPL-2.1-or-later
"""The queue, with an eventfd that the module signals when records are queued.

The VFIO / KVM irqfd pattern: user space hands an eventfd(2) to the driver
(UPCALL_IOC_SET_EVENTFD), the driver adds to its counter, and user space
waits on the eventfd, reads (and so resets) the counter, then reads the
records from the file.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from .._batch import Batch
from .._errors import ClosedError
from .._event import Event
from .._subscription import QueueFile
from .queue import QueueSubscription


class EventfdSubscription(QueueSubscription):
    """The QUEUE transport, woken through an eventfd (:meth:`fileno`).

    The counter only says that records were queued, not how many, nor which:
    on each wake-up the counter is read first, then the queue, so a record
    queued after that read signals the eventfd again and no wake-up is lost.
    Events have ``transport="eventfd"`` and ``timestamp_ns`` set.
    """

    transport = "eventfd"
    _read_first = False  # the notification first, then the queue

    def __init__(self, file: QueueFile, queue_size: int | None = None) -> None:
        """Subscribe ``file``; ``queue_size`` None (or 0) keeps the module's default length."""
        self._efd = -1
        self._signalled = 0
        super().__init__(file, queue_size)

    def _before_subscribe(self, undo: contextlib.ExitStack) -> None:
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        undo.callback(self._close_eventfd)

    def _after_subscribe(self) -> None:
        self._qfile.set_eventfd(self._efd)

    def _core_options(self) -> dict[str, Any]:
        # The counter is read in C, as _take_counter() does; a read(1) that
        # waits for ever waits in a blocking read(2) of it (close() ends
        # that wait by writing to it).
        return {"counter_fd": self._efd, "block": True}

    def _close_eventfd(self) -> None:
        if self._efd >= 0:
            os.close(self._efd)
            self._efd = -1

    @property
    def signalled(self) -> int:
        """The sum of the counter values read so far: how often the module signalled."""
        return self._signalled

    def fileno(self) -> int:
        """The eventfd: readable once the module signalled it."""
        if self._efd < 0 or self._closed:
            raise ClosedError("the eventfd subscription is closed")
        return self._efd

    def _take_counter(self) -> None:
        if self._core is not None:
            self._core.nonblocking()
        with contextlib.suppress(BlockingIOError):
            self._signalled += os.eventfd_read(self._efd)

    def _read_records(self, max_records: int) -> list[Event]:
        self._take_counter()
        return self._read_queue(max_records)

    def _read_batch(self, max_records: int) -> Batch:
        self._take_counter()
        return self._read_queue_batch(max_records)

    def _detach(self) -> None:
        # The module keeps the eventfd while the file lives, maybe in a child.
        with contextlib.suppress(OSError):
            self._qfile.set_eventfd(-1)
            # Ends a read(1) blocked in read(2) of the counter in another thread.
            os.eventfd_write(self._efd, 1)
        super()._detach()

    def _teardown(self) -> None:
        try:
            self._close_eventfd()
        finally:
            super()._teardown()
