# SPDX-License-Identifier: LGPL-2.1-or-later
"""Callback dispatch: ``on_event``/``run`` and the watcher thread behind them.

A :class:`Dispatcher` belongs to one subscription once it has a callback.
Its daemon watcher thread waits on the subscription's descriptor, reads the
events into the subscription's buffer and calls
``_thread.interrupt_main(signo)``; the Python handler installed for
``signo`` then calls the callbacks in the main thread, between two
bytecodes, like a Python signal handler. :meth:`Dispatcher.run` pauses the
watcher and reads in the main thread itself, without that hop.

The subscription keeps the buffer, the lock and the reading; this module
only needs what :class:`Dispatched` lists.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import select
import signal
import threading
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import Protocol, cast

from . import _accel
from . import _signals as signals
from ._errors import ClosedError, UpcallError
from ._event import Event
from ._timeout import poll_ms, remaining

Callback = Callable[[Event], object]
Handler = signal.Handlers | Callable[[int, FrameType | None], object] | int | None


class Dispatched(Protocol):
    """What a :class:`Dispatcher` uses of its subscription."""

    _lock: _accel.Lock
    _buffer: deque[Event]
    _wake_fd: int
    #: ``closed``, read as the attribute: this is every event's path.
    _closed: bool

    def fileno(self) -> int: ...

    def _collect(self, max_records: int) -> int: ...

    def _fetch(self, take: int, batch: int, timeout: float | None) -> list[Event]: ...

    def _wait_readable(self, timeout: float | None) -> None: ...

    def _choose_dispatch_signal(self) -> int: ...

    def _watcher_attach(self) -> None: ...

    def _main_attach(self) -> None: ...


def _run_pending_python_handlers() -> None:
    """Do nothing; calling a Python function lets CPython run tripped signal handlers."""


def _eventfd() -> int:
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


class Dispatcher:
    """The callbacks of one subscription and the watcher thread that feeds them."""

    def __init__(self, sub: Dispatched, batch: int) -> None:
        self._sub = sub
        self._batch = batch
        #: A tuple, replaced on a change: a dispatch calls the ones it began with.
        self.callbacks: tuple[Callback, ...] = ()
        #: Events handed to the callbacks so far.
        self.dispatched = 0
        self._dispatching = False
        self._notify_fd = -1
        self._watcher: threading.Thread | None = None
        self._watch_error: BaseException | None = None
        # run() pauses the watcher and reads in the main thread (no hop).
        self._pause_fd = -1
        self._pause = False
        self._parked = threading.Event()
        self._resume = threading.Event()
        self._reattached = threading.Event()
        self._rego = threading.Event()
        self._watcher_gone = False
        self._watch_go = threading.Event()
        self._signo = 0
        self._prev_handler: Handler = None

    @property
    def started(self) -> bool:
        """Whether the watcher thread runs (or ran): :meth:`join` and :meth:`release` apply."""
        return self._watcher is not None

    # -- starting ----------------------------------------------------------------

    def start(self) -> None:
        """Install the handler and start the watcher; undone if that fails."""
        sub = self._sub
        signo = sub._choose_dispatch_signal()
        attached, go = threading.Event(), self._watch_go
        with contextlib.ExitStack() as undo:
            undo.callback(self.release)
            self._notify_fd = _eventfd()
            self._pause_fd = _eventfd()
            self._prev_handler = signal.signal(signo, self._on_dispatch_signal)
            self._signo = signo
            # The watcher inherits this thread's mask: have the signal blocked
            # in it from its first instruction.
            was_blocked = signals.block(signo)
            try:
                watcher = threading.Thread(
                    target=self._watch,
                    args=(attached, go),
                    name=f"upcall-watch-{signo}",
                    daemon=True,
                )
                watcher.start()
            finally:
                if not was_blocked:
                    signals.unblock(signo)
            self._watcher = watcher
            undo.pop_all()  # the watcher runs: the subscription's close() ends it
        attached.wait()
        if self._watch_error is not None:
            watcher.join()
            self._watcher = None
            self.release()
            error, self._watch_error = self._watch_error, None
            raise error
        # Events sent to this thread before the watcher took over: read them
        # now, before the watcher reads newer ones, to keep the order.
        while sub._collect(self._batch):
            pass
        go.set()
        if sub._buffer:
            self._kick()  # the handler may run (and a callback raise) before we return

    # -- the watcher thread --------------------------------------------------------

    def _watch(self, attached: threading.Event, go: threading.Event) -> None:
        sub = self._sub
        try:
            sub._watcher_attach()
        except BaseException as e:
            self._watch_error = e
            attached.set()
            return
        attached.set()
        go.wait()  # close() sets it too
        try:
            p = select.poll()
            p.register(sub.fileno(), select.POLLIN)
            p.register(sub._wake_fd, select.POLLIN)
            p.register(self._pause_fd, select.POLLIN)
            while not sub._closed:
                p.poll()
                if sub._closed:
                    break
                if self._pause:
                    self._park()
                    continue
                # Drain: a notification (eventfd, SIGIO) is consumed by the
                # first read, so what is left must be read before waiting again.
                got = 0
                while n := sub._collect(self._batch):
                    got += n
                    if n < self._batch:
                        break
                if got:
                    self._kick()
        except BaseException as e:
            # Never stop silently: the next dispatch raises it in the main thread.
            if not sub._closed:
                self._watch_error = e
                self._kick()
        finally:
            # Never leave run() waiting for a watcher that is gone (flag
            # first: run() clears the events, then looks at the flag).
            self._watcher_gone = True
            self._parked.set()
            self._reattached.set()

    def _park(self) -> None:
        """In the watcher: hand the reading over to run() until it returns.

        run() has directed new events at the main thread already; what came
        here before is older, so it is read first, and run() reads on. On
        resume the watcher takes the events back (``_watcher_attach``)
        and waits while run() reads what the main thread got meanwhile.
        """
        sub = self._sub
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._pause_fd)
        while sub._collect(self._batch):  # finite: no new ones come here
            pass
        self._parked.set()
        self._resume.wait()  # close() sets it too
        if sub._closed:
            return
        sub._watcher_attach()
        self._reattached.set()
        self._rego.wait()  # close() sets it too

    def _kick(self) -> None:
        os.eventfd_write(self._notify_fd, 1)
        # typeshed wants a Signals member; real-time signals have none.
        _thread.interrupt_main(cast(signal.Signals, self._signo))

    # -- in the main thread --------------------------------------------------------

    def _on_dispatch_signal(self, signum: int, frame: FrameType | None) -> None:
        self.dispatch()

    def dispatch(self) -> int:
        """Call the callbacks for every buffered event, in the main thread."""
        if self._dispatching:
            return 0  # a callback is running further up this stack; it drains
        sub = self._sub
        if self._watch_error is not None and not sub._closed:
            error, self._watch_error = self._watch_error, None
            raise UpcallError(f"the event watcher thread failed: {error}") from error
        self._dispatching = True
        n = 0
        try:
            while True:
                with sub._lock:
                    if sub._closed or not sub._buffer:
                        break
                    event = sub._buffer.popleft()
                self._call(event)
                n += 1
        finally:
            self._dispatching = False
        return n

    def _call(self, event: Event) -> None:
        self.dispatched += 1
        for callback in self.callbacks:
            callback(event)

    def _run_direct(self, deadline: float | None) -> None:
        """run()'s loop with the watcher paused: read and call, one event at a time.

        The subscription's own read (``_fetch``: the compiled one where there
        is one) waits and reads, so an event costs what a ``read(1)`` does,
        plus the callbacks. A callback that raises leaves the events not yet
        taken buffered, for the next dispatch.
        """
        sub = self._sub
        fetch = sub._fetch
        batch = self._batch
        self._dispatching = True  # what the handler would dispatch, this loop does
        try:
            while not sub._closed:
                left = None if deadline is None else remaining(deadline)
                if left == 0.0:
                    break
                try:
                    events = fetch(1, batch, left)
                except ClosedError:
                    break  # by a callback or another thread: run() ends
                if events:
                    self._call(events[0])
        finally:
            self._dispatching = False

    def run(self, deadline: float | None) -> int:
        """Dispatch until ``deadline`` (a ``time.monotonic()``; None: close()).

        See ``Subscription.run``; the caller holds the subscription busy.
        """
        sub = self._sub
        # Count every dispatch meanwhile, also those the handler runs.
        start = self.dispatched
        # run() from a callback of run(): the outer one holds the watcher.
        nested = self._pause
        direct = False
        try:
            if self._watcher is not None and not nested:
                sub._main_attach()
                direct = True
                self._pause_watcher()
            self.dispatch()
            if direct and not self._dispatching:
                self._run_direct(deadline)
            else:
                self._run_buffered(deadline, direct or nested)
        finally:
            if direct:
                self._resume_watcher()
        self.dispatch()  # what the main thread got before the watcher took over
        return self.dispatched - start

    def _run_buffered(self, deadline: float | None, paused: bool) -> None:
        """run()'s loop otherwise: read into the buffer (``paused``: here,
        else the watcher does), then dispatch, which does nothing inside a
        callback (the dispatch further up the stack takes the events on)."""
        sub = self._sub
        while not sub._closed:
            left = remaining(deadline)
            if left == 0.0:
                break
            if paused:
                # The watcher is paused: read here, and save the
                # hop to this thread (a wake-up and a signal handler).
                sub._wait_readable(left)
                while sub._collect(self._batch) == self._batch:
                    pass
            else:
                self._wait_notified(left)
            self.dispatch()

    def _wait_notified(self, timeout: float | None) -> None:
        p = select.poll()
        p.register(self._notify_fd, select.POLLIN)
        p.register(self._sub._wake_fd, select.POLLIN)
        p.poll(poll_ms(timeout))  # EINTR is retried by Python (PEP 475)
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._notify_fd)

    def _pause_watcher(self) -> None:
        """Have the watcher stop reading, and wait until it does."""
        self._parked.clear()
        self._resume.clear()
        self._reattached.clear()
        self._rego.clear()
        self._pause = True
        os.eventfd_write(self._pause_fd, 1)
        if not self._watcher_gone:
            self._parked.wait()

    def _resume_watcher(self) -> None:
        """Give the reading back to the watcher, in order."""
        sub = self._sub
        self._pause = False
        self._resume.set()
        if sub._closed:
            return  # close() has released the watcher
        self._reattached.wait()  # set by _park(), or by a watcher that ended
        try:
            # Sent here before the watcher took them back: older than
            # anything the watcher reads next.
            while sub._collect(self._batch):
                pass
        finally:
            self._rego.set()

    # -- closing -----------------------------------------------------------------

    def stop(self) -> None:
        """The subscription is closing: let a waiting or paused watcher go."""
        self._watch_go.set()  # a watcher still waiting for on_event() to finish
        self._resume.set()  # a watcher paused by run()
        self._rego.set()

    def join(self) -> None:
        """Wait for the watcher to end (after :meth:`stop` and the close wake-up)."""
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
            # The watcher's last interrupt_main() may still be pending:
            # let it run now, while our handler is still installed.
            _run_pending_python_handlers()

    def release(self) -> None:
        """Restore the previous handler (main thread only) and close the eventfds."""
        signo, self._signo = self._signo, 0
        if signo and threading.current_thread() is threading.main_thread():
            signal.signal(signo, self._prev_handler)
        for fd in (self._notify_fd, self._pause_fd):
            if fd >= 0:
                os.close(fd)
        self._notify_fd = self._pause_fd = -1
