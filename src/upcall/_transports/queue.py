# SPDX-License-Identifier: LGPL-2.1-or-later
"""The QUEUE transport: ``struct upcall_event`` records read(2) from the file."""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from typing import Any

from .. import _signals as signals
from .. import abi
from .._batch import Batch
from .._errors import ClosedError
from .._event import Event, monotonic_ns
from .._subscription import QueueFile, Subscription, check_queue_size, detach
from .records import RECORD_SIZE, decode

_seqno_at = struct.Struct("=Q").unpack_from


class QueueSubscription(Subscription):
    """Events queued in the module and read as records from the subscriber's file.

    poll(2) reports the file readable while records are queued, so
    :meth:`fileno` can go into any event loop; read the records through the
    subscription (a :meth:`read` that waits for ever may leave the file in
    blocking mode). A batch :meth:`read` is one read(2) of up to
    ``max_events`` records. When the queue is full the module drops the
    oldest record and counts it: the loss shows as a gap in ``seqno`` and in
    ``stats().dropped``. Events carry ``timestamp_ns`` (the emit time), so
    ``latency_ns`` is known.

    Records can be read from any thread, one at a time (the subscription
    serialises its readers). :class:`FasyncSubscription` and
    :class:`EventfdSubscription` read the same queue but wait on something
    else.
    """

    transport = "queue"
    _read_first = True

    def __init__(self, file: QueueFile, queue_size: int | None = None) -> None:
        """Subscribe ``file``; ``queue_size`` None (or 0) keeps the module's default length."""
        super().__init__(file)
        self._qfile = file
        self._fd = -1
        self._queue_size = 0
        with contextlib.ExitStack() as undo:
            undo.callback(self._abandon)
            self._queue_size = check_queue_size(queue_size)
            self._fd = file.fileno()
            flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
            if not flags & os.O_NONBLOCK:
                fcntl.fcntl(self._fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
            self._before_subscribe(undo)
            self._last_seqno = file.stats().seqno
            file.subscribe(abi.UPCALL_TRANSPORT_QUEUE, 0, 0, self._queue_size)
            self._after_subscribe()
            self._use_core(
                self._fd, self.fileno(), read_first=self._read_first, **self._core_options()
            )
            undo.pop_all()  # from here on close() releases everything

    # -- hooks for the notifying variants -------------------------------------

    def _before_subscribe(self, undo: contextlib.ExitStack) -> None:
        """Set up what must exist before events arrive (signal masks, an eventfd).

        What is set up and must be undone if the subscription fails goes on ``undo``.
        """

    def _after_subscribe(self) -> None:
        """Ask the module for the notifications (F_SETOWN..., SET_EVENTFD)."""

    def _core_options(self) -> dict[str, Any]:
        """The compiled Reader's transport options: what ``_read_records`` does first.

        The queue's own: a read(1) that waits for ever waits in one blocking
        read(2), where the module lets close() end that wait (it unsubscribes).
        """
        return {"block": self._qfile.unsubscribes}

    # -- Subscription ---------------------------------------------------------

    def fileno(self) -> int:
        """The subscriber's file: poll(2) reports it readable while records are queued."""
        return self._qfile.fileno()

    @property
    def file_fd(self) -> int:
        """The subscriber's open file of the device: what read(2) reads, and ``si_fd`` names."""
        return self._qfile.fileno()

    def _read_queue(self, max_records: int) -> list[Event]:
        if self._core is not None:
            return self._core.read_queue(max_records)
        try:
            data = os.read(self._fd, RECORD_SIZE * max_records)
        except BlockingIOError:
            return []
        if not data:
            return []
        events = decode(data, self.transport, monotonic_ns())
        self._account_run(events[0].seqno, events[-1].seqno, len(events))
        return events

    def _read_queue_batch(self, max_records: int) -> Batch:
        """One read(2) of up to ``max_records`` records, kept as they are: a Batch."""
        if self._core is not None:
            self._core.nonblocking()
        try:
            data = os.read(self._fd, RECORD_SIZE * max_records)
        except BlockingIOError:
            data = b""
        batch = Batch(data, self.transport, monotonic_ns())
        if data:
            self._account_run(
                _seqno_at(data, 0)[0], _seqno_at(data, len(data) - RECORD_SIZE)[0], len(batch)
            )
        return batch

    def _read_batch(self, max_records: int) -> Batch:
        return self._read_queue_batch(max_records)

    # The queue's records are its events: no hop (this is every read(1)'s path).
    _read_records = _read_queue

    def _choose_dispatch_signal(self) -> int:
        # Only a token for _thread.interrupt_main(): no such signal is sent.
        return signals.choose_signal()

    def _detach(self) -> None:
        # Also ends a read(1) blocked in read(2) in another thread.
        detach(self._qfile, self._queue_size)

    def _teardown(self) -> None:
        self._fd = -1

    @property
    def queue_size(self) -> int | None:
        """The queue length asked for; None for the module's default (see ``stats()``)."""
        return self._queue_size or None

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"the {self.transport} subscription is closed")

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd}"
        return f"<{type(self).__name__} {state} received={self._received} lost={self._lost}>"
