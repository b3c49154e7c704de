# SPDX-License-Identifier: LGPL-2.1-or-later
"""The queue, with a SIGIO-style signal per notification (fasync).

The kernel's own way for a driver to signal a process: ``F_SETOWN`` (or
``F_SETOWN_EX`` for one thread) names who gets the signal, ``F_SETSIG`` makes
it a real-time signal, which the kernel queues with ``si_fd`` (the file) and
``si_code`` POLL_IN, and ``O_ASYNC`` turns it on. The signal says "the queue
has records"; the records, with their values, are then read from the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import struct
from collections import Counter
from typing import Any

from .. import _signals as signals
from .._batch import Batch
from .._errors import SignalSetupError, WrongThreadError
from .._event import Event
from .._subscription import QueueFile
from .queue import QueueSubscription

# <fcntl.h> values the fcntl module lacks (F_SETSIG is there on Linux).
F_SETSIG = getattr(fcntl, "F_SETSIG", 10)
F_SETOWN_EX = 15
F_OWNER_TID = 0
POLL_IN = 1  # si_code of a SIGIO for "input available"
_F_OWNER_EX = struct.Struct("=ii")  # struct f_owner_ex: type, pid
_DRAIN = 256  # siginfos per read(2) of the signalfd
_QUEUE_BATCH = 1024  # records per read(2) of the queue while draining it
# Reads of a full batch before giving up on emptying the queue: a producer
# that outruns them still queues more, and each of those reads re-armed the
# module's SIGIO, so the next record announces itself.
_MAX_ROUNDS = 64
# struct signalfd_siginfo: ssi_signo (0), ssi_code (8), ssi_fd (20) of 128 bytes.
_SIGINFO_KEY = struct.Struct("=I4xi8xi104x")
assert _SIGINFO_KEY.size == signals.SIGNALFD_SIGINFO_SIZE


class FasyncSubscription(signals.SignalCarried, QueueSubscription):
    """The QUEUE transport, woken by a real-time signal that the kernel sends as SIGIO.

    The signal is read through a signalfd (:meth:`fileno`); every one must
    carry ``si_fd`` equal to the subscriber's file and ``si_code`` POLL_IN,
    or it is counted in :attr:`foreign` and otherwise ignored. Then the
    queue is read: each event is one record, with ``transport="fasync"``,
    ``timestamp_ns`` set and ``signo`` None (the signal carries no event).

    The module's SIGIO is edge-triggered: it sends one when records are
    queued and none was sent since the last read(2). So every read here
    empties the queue (read(2) until a short read), whatever ``max_events``
    asks for; the surplus waits in the subscription's buffer, and a burst
    costs a few signals, not one per event.

    When the kernel cannot queue the real-time signal (``RLIMIT_SIGPENDING``
    reached) it sends a plain SIGIO instead, so SIGIO is blocked and read
    through the same signalfd; those are counted in :attr:`sigio` and still
    wake the reader. Nothing is lost either way: the records wait in the queue.

    ``thread=False`` directs the signals at the process (``F_SETOWN``): the
    signal and SIGIO must then be blocked in every thread (subscribe before
    starting threads, which inherit the mask; SignalSetupError otherwise),
    and any thread may read. ``thread=True`` directs them at the subscribing
    thread (``F_SETOWN_EX``), which alone can wait for them.
    """

    transport = "fasync"
    _read_first = False  # the notification first, then the queue

    def __init__(
        self,
        file: QueueFile,
        signo: int | None = None,
        *,
        thread: bool = False,
        queue_size: int | None = None,
    ) -> None:
        """Subscribe ``file``; ``signo`` None picks a free real-time signal."""
        self._requested_signo = signo
        self._signo = 0
        self._thread = thread
        self._tid = signals.current_tid()
        self._owner_tid = self._tid
        self._sfd = -1
        self._claim: signals.SignalClaim | None = None
        self._foreign = 0
        self._sigio = 0
        self._signalled = 0  # this file's POLL_IN signals: notifications
        self._sigbuf = bytearray(_DRAIN * signals.SIGNALFD_SIGINFO_SIZE)
        super().__init__(file, queue_size)

    # -- setup ----------------------------------------------------------------

    def _before_subscribe(self, undo: contextlib.ExitStack) -> None:
        if signal.getsignal(signal.SIGIO) not in (signal.SIG_DFL, signal.SIG_IGN, None):
            raise SignalSetupError(
                "SIGIO has a Python handler: a fasync subscription reads SIGIO itself "
                "(the kernel's fallback when the real-time signal cannot be queued)"
            )
        requested = self._requested_signo
        self._signo = (
            signals.choose_signal() if requested is None else signals.valid_rt_signal(requested)
        )
        self._claim = undo.enter_context(signals.SignalClaim(self._signo, signal.SIGIO))
        self._sfd = self._claim.fd
        # Signals left pending from before are not notifications of this file.
        self._foreign = self._claim.stale
        if not self._thread:
            others = sorted(
                set(signals.threads_not_blocking(self._signo, except_tid=self._tid))
                | set(signals.threads_not_blocking(signal.SIGIO, except_tid=self._tid))
            )
            if others:
                raise SignalSetupError(
                    f"signal {self._signo} or SIGIO is not blocked in thread(s) "
                    f"{', '.join(map(str, others))} of this process, which could take the "
                    "notifications: block both before starting threads (threads inherit the "
                    "mask), subscribe before starting them, or pass thread=True"
                )

    def _after_subscribe(self) -> None:
        fd = self._fd
        if self._thread:
            fcntl.fcntl(fd, F_SETOWN_EX, _F_OWNER_EX.pack(F_OWNER_TID, self._tid))
        else:
            fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
        fcntl.fcntl(fd, F_SETSIG, self._signo)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)

    # -- reading ----------------------------------------------------------------

    @property
    def sigio(self) -> int:
        """Plain SIGIOs read (the kernel's fallback when the RT signal queue is full)."""
        return self._sigio

    @property
    def notifications(self) -> int:
        """This file's POLL_IN signals read so far."""
        return self._signalled

    def _check_thread(self) -> None:
        if self._thread and signals.current_tid() != self._owner_tid:
            raise WrongThreadError(
                f"the signals of this thread=True subscription go to thread "
                f"{self._owner_tid} and only it can read them, not thread "
                f"{signals.current_tid()}"
            )

    def _take_notifications(self) -> None:
        # A burst can queue a signal per record: count them by kind from the
        # raw bytes (no object per signal), many per read(2). The compiled
        # core does the same in C before each of its reads (signal_fd).
        mine = (self._signo, POLL_IN, self._fd)
        buf = self._sigbuf
        while True:
            try:
                n = os.readv(self._sfd, [buf])
            except BlockingIOError:
                return
            for key, count in Counter(_SIGINFO_KEY.iter_unpack(memoryview(buf)[:n])).items():
                if key == mine:
                    self._signalled += count
                elif key[0] == signal.SIGIO:
                    self._sigio += count
                else:
                    self._foreign += count
            if n < len(buf):
                return

    def _read_records(self, max_records: int) -> list[Event]:
        # Notifications first, then the whole queue: the module signals again
        # only for records queued after a read(2), so a wait after a short
        # read never misses one, and one after a full read could.
        self._take_notifications()
        want = max(max_records, _QUEUE_BATCH)
        events: list[Event] = []
        for _ in range(_MAX_ROUNDS):
            batch = self._read_queue(want)
            events += batch
            if len(batch) < want:
                break
        return events

    def _core_options(self) -> dict[str, Any]:
        # What _read_records() does: notifications, then the queue to empty.
        # A read(1) that waits for ever takes the notifications, then waits
        # as the queue's does, in one blocking read(2) of the file (close()
        # ends it: the module unsubscribes), not in a poll(2) of the signalfd.
        return {
            "signal_fd": self._sfd,
            "signo": self._signo,
            "check_thread": self._check_thread if self._thread else None,
            "min_read": _QUEUE_BATCH,
            "rounds": _MAX_ROUNDS,
            "block": self._qfile.unsubscribes,
        }

    def _read_batch(self, max_records: int) -> Batch:
        # A full batch leaves records queued that no new SIGIO announces:
        # the subscription then reads again before it waits (_drained).
        self._take_notifications()
        return self._read_queue_batch(max_records)

    def _choose_dispatch_signal(self) -> int:
        return self._signo

    def _main_attach(self) -> None:
        if self._thread:  # back from the watcher to this thread
            fcntl.fcntl(self._fd, F_SETOWN_EX, _F_OWNER_EX.pack(F_OWNER_TID, self._tid))
            self._owner_tid = self._tid

    def _watcher_attach(self) -> None:
        if not self._thread:
            return  # process-directed: the watcher blocks the signals like every thread
        signals.block(self._signo)
        signals.block(signal.SIGIO)
        tid = signals.current_tid()
        fcntl.fcntl(self._fd, F_SETOWN_EX, _F_OWNER_EX.pack(F_OWNER_TID, tid))
        self._owner_tid = tid

    # -- closing ----------------------------------------------------------------

    def _detach(self) -> None:
        # A forked child may share the open file: turn SIGIO off on it, or
        # the signals keep coming here after close, where their default
        # action (once unblocked) ends the process.
        with contextlib.suppress(OSError):
            fd = self._fd
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_ASYNC)
            fcntl.fcntl(fd, fcntl.F_SETOWN, 0)
        super()._detach()

    def _teardown(self) -> None:
        try:
            self._release_claim()
        finally:
            super()._teardown()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd} owner={self._owner_tid}"
        return (
            f"<FasyncSubscription signo={self._signo} thread={self._thread} {state} "
            f"received={self._received} lost={self._lost} foreign={self._foreign}>"
        )
