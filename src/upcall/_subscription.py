# SPDX-License-Identifier: LGPL-2.1-or-later
"""Subscriptions: one subscriber of /dev/upcall and the ways to receive its events.

:class:`Subscription` is the surface every transport shares: ``wait``,
``read``, ``poll``, blocking and ``async`` iteration, ``on_event`` callbacks,
``stats`` and the counters ``received``/``lost``. :class:`SignalSubscription`
is the real-time signal transport, received through a signalfd.

Each subscription owns its own open file of the device (one subscriber in the
kernel); closing the subscription closes that file, which is the only way to
make the module stop sending.
"""

from __future__ import annotations

import abc
import contextlib
import os
import select
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from . import _accel, abi
from . import _signals as signals
from ._aio import Waiter
from ._batch import Batch
from ._closing import Closing
from ._dispatch import Callback, Dispatcher
from ._errors import ClosedError, SignalSetupError, UpcallError, WrongThreadError
from ._event import Event, make_event, monotonic_ns
from ._timeout import deadline as _deadline
from ._timeout import poll_ms as _poll_ms
from ._timeout import remaining as _remaining
from .abi import Stats

if TYPE_CHECKING:
    from ._core import Reader as _CoreReader

#: Records read from the kernel in one read(2) when the caller sets no bound.
DEFAULT_BATCH = 64


class Handle(Protocol):
    """What a subscription holds in the kernel: counters to read, and a close that ends it.

    For the module's transports, an open file of the device (a
    :class:`SubscriberFile`); for the BPF path, the loaded BPF object.
    """

    def stats(self) -> Stats: ...

    def close(self) -> None: ...


class SubscriberFile(Handle, Protocol):
    """One open file of the device, i.e. one subscriber in the kernel.

    :meth:`subscribe` issues UPCALL_IOC_SUBSCRIBE *from the calling thread*
    (which matters for thread-directed signals); ``queue_size`` 0 asks for the
    module's default; ``netlink_fd`` is the socket of a UNICAST netlink
    subscription. :meth:`close` ends the subscription in the kernel.
    ``unsubscribes``: whether the module ends it before that too, on a
    subscribe to ``UPCALL_TRANSPORT_NONE`` (which wakes a read(2) that waits).
    """

    unsubscribes: bool

    def subscribe(
        self,
        transport: int,
        signo: int = 0,
        flags: int = 0,
        queue_size: int = 0,
        netlink_fd: int = 0,
    ) -> None: ...


class QueueFile(SubscriberFile, Protocol):
    """A subscriber file whose records are read(2) from it (the QUEUE transport).

    :meth:`fileno` is the descriptor to read and poll (raising
    :class:`ClosedError` once closed); :meth:`set_eventfd` is
    UPCALL_IOC_SET_EVENTFD (-1 stops the notifications).
    """

    def fileno(self) -> int: ...

    def set_eventfd(self, fd: int) -> None: ...


def detach(file: SubscriberFile, queue_size: int) -> None:
    """Stop the kernel sending ``file``'s events anywhere, before it is closed.

    Unsubscribe where the module can (it also wakes a read(2) that waits in
    another thread); else re-subscribe as QUEUE, the one transport that
    sends nothing by itself. Best effort (a close path): errors are ignored.
    """
    with contextlib.suppress(OSError, UpcallError):
        if file.unsubscribes:
            file.subscribe(abi.UPCALL_TRANSPORT_NONE)
        else:
            file.subscribe(abi.UPCALL_TRANSPORT_QUEUE, 0, 0, queue_size)


def check_queue_size(queue_size: int | None) -> int:
    """The ``queue_size`` field for ``queue_size``: 0 (the module's default) for None or 0.

    Otherwise it must be from ``abi.UPCALL_QUEUE_MIN`` to ``abi.UPCALL_QUEUE_MAX``
    (ValueError if not); the module rounds it up to a power of two.
    """
    if queue_size is None:
        return 0
    if isinstance(queue_size, bool) or not isinstance(queue_size, int):
        raise TypeError(f"queue_size must be an int, not {type(queue_size).__name__}")
    if queue_size != 0 and not abi.UPCALL_QUEUE_MIN <= queue_size <= abi.UPCALL_QUEUE_MAX:
        raise ValueError(
            f"queue_size {queue_size} out of range {abi.UPCALL_QUEUE_MIN}.."
            f"{abi.UPCALL_QUEUE_MAX} (None or 0: the module's default, "
            f"{abi.UPCALL_QUEUE_DEFAULT})"
        )
    return queue_size


class Subscription(_accel.State, Closing):
    """The events of one subscriber, whatever the transport.

    Events are read in order into an internal buffer and handed out from it,
    so nothing read from the kernel is lost when a caller takes fewer events
    than were read (e.g. leaves an ``async for`` early).

    A subscription is either *read* (``wait``/``read``/``poll``/iteration) or
    *dispatched* to callbacks (:meth:`on_event`), not both.

    Counters: :attr:`received` events handed out or buffered, :attr:`lost` the
    sum of the gaps seen in sequence numbers (events the kernel dropped).
    """

    #: The transport's name, carried by every :class:`Event` (``event.transport``).
    transport: str
    #: One event asked for and none buffered: read at once rather than wait
    #: first, even when the last read emptied the kernel's queue. For a
    #: transport whose read is one system call that says EAGAIN when there
    #: is nothing (the queue): the common ``read(1)``/``poll()`` after the
    #: event came costs one read(2), not a poll(2) and a read(2).
    _read_first: bool = False
    #: The compiled read path (upcall._accel), if the transport set one up:
    #: then it is what _get() does.
    _core: _CoreReader | None = None

    def __init__(self, file: Handle) -> None:
        self._file = file
        self._lock = _accel.Lock()
        self._buffer: deque[Event] = deque()
        self._closed = False
        self._finished = False
        self._busy = 0
        # The last read found the kernel's queue empty: wait before reading.
        self._drained = True
        # A read(1) of a read-first transport came before its event: the
        # next waits first (one read(2) that finds nothing saved per event)
        # until an event is found already waiting again.
        self._missed = False
        self._last_seqno = 0
        self._received = 0
        self._lost = 0
        # Readable once close() ran: wakes every waiter (poll, async, watcher).
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._waiter: Waiter | None = None  # what async waits watch, made by the first
        self._poller: select.poll | None = None
        # on_event()'s callbacks and watcher thread, once there is one.
        self._dispatcher: Dispatcher | None = None

    # -- what a transport provides ------------------------------------------

    @abc.abstractmethod
    def fileno(self) -> int:
        """The file descriptor that becomes readable when events are pending."""

    @abc.abstractmethod
    def _read_records(self, max_records: int) -> list[Event]:
        """Read at most ``max_records`` pending records without blocking, decode them.

        Called with the lock held; calls :meth:`_account` for every event.
        """

    @abc.abstractmethod
    def _teardown(self) -> None:
        """Release what the transport holds; the kernel subscription is closed already."""

    def _check_thread(self) -> None:
        """Raise WrongThreadError if the calling thread cannot read the events."""

    def _use_core(self, fd: int, wait_fd: int, **options: Any) -> None:
        """Read ``fd`` through the compiled core when it is built (upcall._accel).

        ``wait_fd`` is what a wait polls; ``options`` are the transport's
        Reader options. The Reader is then what _get() does, and read() and
        poll() become its own: the same calls, without a Python frame per
        event in front of the C one.
        """
        if _accel.Reader is None:
            return
        core = self._core = _accel.Reader(
            self,
            fd,
            wait_fd,
            self._wake_fd,
            self.transport,
            Event,
            ClosedError,
            UpcallError,
            batch=DEFAULT_BATCH,
            **options,
        )
        self.read = core.read  # type: ignore[method-assign]
        self.poll = core.poll  # type: ignore[method-assign]
        self._fetch = core.fetch  # type: ignore[method-assign,assignment]

    def _watcher_attach(self) -> None:
        """Run in the watcher thread before it waits, to direct events at it."""

    def _main_attach(self) -> None:
        """Run in the main thread by :meth:`run`: direct events back at it.

        Undoes :meth:`_watcher_attach` while run() reads in the main thread.
        """

    @abc.abstractmethod
    def _choose_dispatch_signal(self) -> int:
        """The signal number whose Python handler dispatches callbacks."""

    def _detach(self) -> None:
        """Stop the kernel notifying this process, before the file is closed.

        Best effort: errors are the caller's to ignore. The file may be
        shared with a forked child, so closing it need not end the kernel
        subscription.
        """

    def _abandon(self) -> None:
        """Undo the base's part of a constructor that failed: close the file and the wake-up."""
        self._closed = self._finished = True
        try:
            self._file.close()
        finally:
            os.close(self._wake_fd)

    # -- counters ------------------------------------------------------------

    def _account(self, seqno: int) -> None:
        if seqno > self._last_seqno + 1:
            self._lost += seqno - self._last_seqno - 1
        self._last_seqno = max(self._last_seqno, seqno)
        self._received += 1

    def _account_run(self, first: int, last: int, n: int) -> None:
        """Count ``n`` events whose seqnos rise strictly from ``first`` to ``last``.

        The gaps of a strictly rising run add up to ``last - previous - n``, so
        a batch is counted in constant time. A run that cannot be strictly
        rising (the kernel broke its contract) raises UpcallError.
        """
        if n <= 0:
            return
        if first <= self._last_seqno or last - first < n - 1:
            raise UpcallError(
                f"sequence numbers out of order: {n} events from {first} to {last} "
                f"after {self._last_seqno}"
            )
        self._lost += last - self._last_seqno - n
        self._last_seqno = last
        self._received += n

    def _account_unordered(self, n: int, highest: int) -> None:
        """Count ``n`` events, the highest seqno among them ``highest``, in any order.

        For a source whose events may arrive out of seqno order (a BPF ring
        buffer filled from several CPUs at once): ``lost`` is kept equal to
        the seqnos not seen up to the highest seen, so a late event makes up
        for the gap it was counted in.
        """
        if highest > self._last_seqno:
            self._lost += highest - self._last_seqno
            self._last_seqno = highest
        self._lost -= n
        self._received += n

    @property
    def received(self) -> int:
        """Events read from the kernel so far (handed out or still buffered)."""
        return self._received

    @property
    def lost(self) -> int:
        """Events missing from the sequence numbers seen so far; 0 means no gap.

        The kernel counts every drop in ``stats().dropped``; ``lost`` is what
        this reader can tell from the gaps, so the two agree once the events
        after the last drop have been read.
        """
        return self._lost

    @property
    def last_seqno(self) -> int:
        """The sequence number of the last event read; 0 before the first one."""
        return self._last_seqno

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def stats(self) -> Stats:
        """The kernel's counters for this subscriber (emitted, delivered, dropped...)."""
        if self._closed:
            raise ClosedError("the subscription is closed")
        return self._file.stats()

    # -- guarded use -----------------------------------------------------------

    def _enter(self, dispatching: bool = False) -> None:
        """Mark the subscription busy (undo with :meth:`_leave`)."""
        with self._lock:
            self._check_readable(dispatching)
            self._busy += 1

    def _leave(self) -> None:
        """No longer busy; a close() meanwhile is finished here."""
        with self._lock:
            self._busy -= 1
            finish = self._closed and self._busy == 0
        if finish:
            self._finish()

    @contextlib.contextmanager
    def _using(self, *, dispatching: bool = False) -> Iterator[None]:
        """:meth:`_enter` and :meth:`_leave` around a block."""
        self._enter(dispatching)
        try:
            yield
        finally:
            self._leave()

    def _collect(self, max_records: int) -> int:
        with self._lock:
            # Closed (maybe by another thread): its descriptors may be gone,
            # and their numbers already reused by someone else.
            if self._closed:
                return 0
            events = self._read_records(max_records)
            self._drained = len(events) < max_records
            self._buffer.extend(events)
        return len(events)

    def _take(self, max_events: int) -> list[Event]:
        with self._lock:
            buffer = self._buffer
            if max_events >= len(buffer):
                events = list(buffer)
                buffer.clear()
                return events
            return [buffer.popleft() for _ in range(max_events)]

    def _make_poller(self) -> select.poll:
        # One poll object for the subscription's life: the descriptors do
        # not change, and building one per wait costs per event.
        poller = self._poller = select.poll()
        poller.register(self.fileno(), select.POLLIN)
        poller.register(self._wake_fd, select.POLLIN)
        return poller

    def _wait_readable(self, timeout: float | None) -> None:
        """Wait until the transport's descriptor or the close wake-up is readable."""
        # EINTR is retried by Python (PEP 475).
        (self._poller or self._make_poller()).poll(_poll_ms(timeout))

    def _fill(self, want: int, deadline: float | None) -> bool:
        """Read until the buffer holds an event or ``deadline`` passes; True if it does."""
        while True:
            if self._buffer:
                if len(self._buffer) < want:
                    self._collect(want - len(self._buffer))
                return True
            self._collect(max(want, 1))
            if self._buffer:
                return True
            remaining = _remaining(deadline)
            if remaining == 0.0:
                return False
            self._wait_readable(remaining)
            if self._closed:
                raise ClosedError(f"the {self.transport} subscription was closed")

    # -- reading ----------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until an event can be read; True if one can, False on timeout.

        ``timeout`` is in seconds: None waits for ever, 0 only checks.
        """
        with self._using():
            return self._fill(1, _deadline(timeout))

    def read(
        self, max_events: int = DEFAULT_BATCH, timeout: float | None = None, *, block: bool = True
    ) -> list[Event]:
        """Up to ``max_events`` events, oldest first; [] if none came in time.

        Waits for the first event at most ``timeout`` seconds (None: for ever,
        0: not at all), then takes whatever else is already pending, with one
        read(2) of the kernel for the whole batch (at least
        :data:`DEFAULT_BATCH` records: what is not taken now waits in the
        subscription for the next call, which then costs no system call).
        ``block=False`` is ``timeout=0``.
        """
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        # The compiled path without _get's frame: this is every read(1).
        return (self._get if self._core is None else self._core.get)(
            max_events,
            max_events if max_events > DEFAULT_BATCH else DEFAULT_BATCH,
            timeout if block else 0.0,
        )

    def read_batch(self, max_events: int = 1024, timeout: float | None = None) -> Batch:
        """Up to ``max_events`` events as one :class:`Batch`: columns, no object per event.

        Waits as :meth:`read` does (``timeout`` None: for ever, 0: not at
        all); an empty batch (false) if none came in time. Events already
        read by :meth:`read` or :meth:`poll` and not yet taken come first.
        """
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        if self._buffer:
            return Batch.from_events(self._get(max_events, 0, 0.0), self.transport, monotonic_ns())
        self._enter()
        try:
            deadline: float | None = None
            first = True
            while True:
                if not (first and self._drained and timeout != 0):
                    with self._lock:
                        if self._closed:
                            raise ClosedError(f"the {self.transport} subscription was closed")
                        batch = self._read_batch(max_events)
                        self._drained = len(batch) < max_events
                    if batch:
                        return batch
                first = False
                waited, deadline = self._wait_step(timeout, deadline)
                if not waited:
                    return Batch.empty(self.transport)
        finally:
            self._leave()

    def _read_batch(self, max_records: int) -> Batch:
        """Read up to ``max_records`` without blocking, as a Batch (accounted).

        Called with the lock held. This default decodes events and packs
        them back; a transport whose records are the queue's overrides it.
        """
        return Batch.from_events(self._read_records(max_records), self.transport, monotonic_ns())

    def _check_readable(self, dispatching: bool = False) -> None:
        """Raise unless the calling thread may read events now (lock held).

        ``dispatching``: for on_event() and run(), which may read the events
        of a subscription that dispatches them.
        """
        if self._closed:
            raise ClosedError(f"the {self.transport} subscription is closed")
        if self._dispatcher is not None and not dispatching:
            raise UpcallError(
                "this subscription dispatches its events to on_event() callbacks; "
                "use run() or another subscription to read events"
            )
        self._check_thread()

    def _wait_step(
        self, timeout: float | None, deadline: float | None
    ) -> tuple[bool, float | None]:
        """Wait until readable within ``timeout`` (the deadline set on the first call).

        (False, deadline) once the deadline has passed, without waiting;
        ClosedError if the subscription was closed meanwhile.
        """
        remaining = None
        if timeout is not None:
            if deadline is None:
                deadline = time.monotonic() + max(0.0, timeout)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False, deadline
        self._wait_readable(remaining)
        if self._closed:
            raise ClosedError(f"the {self.transport} subscription was closed")
        return True, deadline

    def _fetch(self, take: int, batch: int, timeout: float | None) -> list[Event]:
        """:meth:`_get` for run(), which reads the events it dispatches."""
        return self._get(take, batch, timeout, dispatching=True)

    def _get(
        self, take: int, batch: int, timeout: float | None, dispatching: bool = False
    ) -> list[Event]:
        core = self._core
        if core is not None and batch:
            return (core.fetch if dispatching else core.get)(take, batch, timeout)
        buffer = self._buffer
        since = 0
        with self._lock:
            self._check_readable(dispatching)
            n = len(buffer)
            if n and (n >= take or batch == 0):
                # Read before and not taken yet: no system call at all.
                if take == 1:
                    return [buffer.popleft()]
                if take >= n:
                    events = list(buffer)
                    buffer.clear()
                    return events
                return [buffer.popleft() for _ in range(take)]
            if take == 1 and not n and batch and self._read_first:
                if not self._missed or timeout == 0:
                    events = self._read_records(batch)
                    if events:
                        self._drained = len(events) < batch
                        if len(events) > 1:
                            buffer.extend(events[1:])
                            del events[1:]
                        return events
                    self._drained = True  # found empty: wait before the next read
                    if timeout == 0:
                        return events
                    # The caller came before the event: until one is found
                    # waiting again, wait first, then read once (see below).
                    self._missed = True
                else:
                    since = monotonic_ns()
            self._busy += 1
        try:
            deadline: float | None = None
            # The last read emptied the kernel's queue: wait first (poll says
            # at once if something came meanwhile) rather than read, find
            # nothing, then wait: one system call saved per waiting call.
            first = self._drained and timeout != 0 and not buffer
            while True:
                if not first:
                    with self._lock:
                        if self._closed:
                            raise ClosedError(f"the {self.transport} subscription was closed")
                        want = batch - len(buffer)
                        events = self._read_records(want)
                        self._drained = len(events) < want
                        if buffer:
                            buffer.extend(events)
                            return self._take(take)
                        if len(events) > take:
                            buffer.extend(events[take:])
                            del events[take:]
                    if events:
                        if since:
                            # Stamped before this call began: reading first
                            # would have found it, so do that again.
                            stamp = events[0].timestamp_ns
                            self._missed = stamp is None or stamp >= since
                        return events
                first = False
                if timeout is None:
                    # The blocking read(1) of an event loop's worth of code:
                    # the poll, without the deadline's bookkeeping.
                    (self._poller or self._make_poller()).poll()
                    if self._closed:
                        raise ClosedError(f"the {self.transport} subscription was closed")
                    continue
                waited, deadline = self._wait_step(timeout, deadline)
                if not waited:
                    return []
        finally:
            self._leave()

    def poll(self, timeout: float | None = 0.0) -> Event | None:
        """The next event, or None if none came within ``timeout`` seconds.

        The default 0 does not wait; None waits for ever.
        """
        events = (self._get if self._core is None else self._core.get)(1, DEFAULT_BATCH, timeout)
        return events[0] if events else None

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Iterate over events as they arrive.

        The iteration ends when no event arrives within ``timeout`` seconds of
        the previous one (None: it never ends that way) or when the
        subscription is closed. Events are read from the kernel in batches
        but taken one at a time, so leaving the loop early loses none.
        """
        get = self._get if self._core is None else self._core.get
        while True:
            try:
                batch = get(1, DEFAULT_BATCH, timeout)
            except ClosedError:
                return
            if not batch:
                return
            yield batch[0]

    def __iter__(self) -> Iterator[Event]:
        """Blocking iteration: ``events(timeout=None)``."""
        return self.events()

    async def aread(
        self, max_events: int = DEFAULT_BATCH, timeout: float | None = None
    ) -> list[Event]:
        """Async version of :meth:`read`, under asyncio, trio or anyio: never waits busily.

        The descriptors are watched by the running loop only while this
        coroutine waits. Cancellation (``Task.cancel()``, a trio or anyio
        cancel scope, ``anyio.fail_after``) loses no event: events are only
        taken once they are returned, and the subscription stays usable.
        """
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        # At least DEFAULT_BATCH records per read(2), as read() reads: a
        # surplus waits in the subscription, and a short read says the
        # kernel's queue is empty, so the next call waits at once.
        return await self._aget(
            max_events, max_events if max_events > DEFAULT_BATCH else DEFAULT_BATCH, timeout
        )

    async def _aget(self, take: int, batch: int, timeout: float | None) -> list[Event]:
        get = self._get if self._core is None else self._core.get
        if not self._drained or self._buffer or timeout == 0:
            events = get(take, batch, 0.0)
            if events or timeout == 0:
                return events
        deadline = _deadline(timeout)
        # Busy while waiting: a close() meanwhile keeps the descriptors open
        # (the loop watches them) until this returns. _enter/_leave, not
        # _using(): a generator context costs per event.
        self._enter()
        try:
            waiter = self._waiter or self._async_waiter()
            while True:
                await waiter.wait(None if deadline is None else _remaining(deadline))
                if self._closed:
                    raise ClosedError(f"the {self.transport} subscription was closed")
                events = get(take, batch, 0.0)
                if events or (deadline is not None and _remaining(deadline) == 0.0):
                    return events
        finally:
            self._leave()

    def _async_waiter(self) -> Waiter:
        """The async waits' one descriptor, readable when events or close() come."""
        with self._lock:
            if self._closed:  # the transport's descriptor may be gone already
                raise ClosedError(f"the {self.transport} subscription was closed")
            if self._waiter is None:
                self._waiter = Waiter(self.fileno(), self._wake_fd)
            return self._waiter

    async def aevents(self, timeout: float | None = None) -> AsyncIterator[Event]:
        """Async version of :meth:`events` (same ``timeout`` and end rules)."""
        while True:
            try:
                batch = await self._aget(1, DEFAULT_BATCH, timeout)
            except ClosedError:
                return
            if not batch:
                return
            yield batch[0]

    def __aiter__(self) -> AsyncIterator[Event]:
        """``async for event in sub``: ``aevents(timeout=None)``."""
        return self.aevents()

    # -- callbacks ---------------------------------------------------------------

    def on_event(self, callback: Callback) -> Callback:
        """Call ``callback(event)`` in the main thread for every event from now on.

        Returns ``callback``, so this works as a decorator. Call it from the
        main thread (Python only lets that thread set signal handlers).

        How: a daemon watcher thread waits on the transport's descriptor, reads
        the events and calls ``_thread.interrupt_main(signo)``; the Python
        handler installed for ``signo`` then runs in the main thread between
        two bytecodes, exactly like a Python signal handler, and calls the
        callbacks there, never in async-signal context. So callbacks run
        while the main thread executes Python code; a blocking call (e.g.
        ``time.sleep``, ``signal.pause``) delays them until it returns: wait
        with :meth:`run` instead (which also reads in the main thread, without
        the watcher's hop). An exception raised by a callback propagates
        out of whatever the main thread was running, as from a signal handler;
        the events not yet dispatched stay queued for the next dispatch.

        From then on the subscription is dispatched, not read: ``read`` and
        the iterators raise :class:`UpcallError`. :meth:`close` stops the
        thread and restores the previous handler.
        """
        if threading.current_thread() is not threading.main_thread():
            raise WrongThreadError("on_event() must be called from the main thread")
        with self._using(dispatching=True):
            if self._dispatcher is not None:
                self._dispatcher.callbacks += (callback,)
                return callback
            dispatcher = self._dispatcher = Dispatcher(self, DEFAULT_BATCH)
            dispatcher.callbacks += (callback,)
            try:
                dispatcher.start()
            except BaseException:
                # Not if dispatching started: a callback raised (see above).
                if not dispatcher.started:
                    self._dispatcher = None
                raise
        return callback

    def run(self, timeout: float | None = None) -> int:
        """Dispatch events to the callbacks until ``timeout`` seconds pass or close().

        Returns the number of events dispatched. None runs until the
        subscription is closed (e.g. by a callback); 0 dispatches what is
        already queued and returns. Main thread only.

        Meanwhile the watcher thread is paused and this thread reads the
        events itself, so a callback does not wait for the watcher's hop;
        thread-directed notifications are re-subscribed to this thread for
        the time, and back to the watcher on return, in order.
        """
        if threading.current_thread() is not threading.main_thread():
            raise WrongThreadError("run() must be called from the main thread")
        deadline = _deadline(timeout)
        with self._using(dispatching=True):
            if self._dispatcher is None:
                raise UpcallError("run() needs a callback: register one with on_event()")
            return self._dispatcher.run(deadline)

    # -- closing -----------------------------------------------------------------

    def close(self) -> None:
        """End the subscription: the kernel stops sending, state is restored.

        Idempotent. Close from the thread that subscribed so that its signal
        mask can be restored (another thread's mask cannot be changed);
        from elsewhere the signal simply stays blocked there, which is safe.

        A process forked meanwhile shares the subscriber's open file, which
        then outlives this close: so the transport's notifications are
        turned off first (:meth:`_detach`), and nothing more reaches this
        process whoever still holds the file.
        """
        with contextlib.ExitStack() as after, self._lock:
            if self._closed:
                return
            self._closed = True
            os.eventfd_write(self._wake_fd, 1)
            # Once the lock is released, even if _detach() fails: the
            # watcher ends, then (unless a busy caller will) _finish().
            if not self._busy:
                after.callback(self._finish)
            dispatcher = self._dispatcher
            if dispatcher is not None:
                dispatcher.stop()
                after.callback(dispatcher.join)
            # Under the lock: a caller it wakes (from a blocking read(2))
            # sees the subscription closed only once it is detached, and
            # the file stays open until the last busy caller has left.
            self._detach()

    def _finish(self) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
        try:
            # Closed only now: a read(2) of a caller still busy (woken by
            # _detach()) must not find its descriptor reused meanwhile.
            self._file.close()
            self._teardown()
        finally:
            if self._dispatcher is not None:
                self._dispatcher.release()
            if self._waiter is not None:
                self._waiter.close()
            os.close(self._wake_fd)
            self._buffer.clear()


class SignalSubscription(signals.SignalCarried, Subscription):
    """Events delivered as one real-time signal each, read through a signalfd.

    Where the signals go decides where they can be read. The module queues a
    process subscription's signals on the *main thread* (the thread group
    leader), so it must be created and read there; a ``thread=True``
    subscription's signals go to the thread that created it, and only that
    thread can read them (:class:`WrongThreadError` otherwise).

    The signal is blocked in the subscribing thread (and must be in every
    other thread: block it before starting threads, which inherit the mask)
    so that it stays queued for the signalfd instead of running a handler.
    On close, the previous mask of the subscribing thread is restored after
    the pending signals have been drained.

    Signals of the same number that do not carry upcall's si_code (kill(1),
    sigqueue(3)...) are not events: they are counted in :attr:`foreign` and
    skipped. Each event has ``transport="signal"``, ``signo`` set and
    ``timestamp_ns`` None (a siginfo has no room for it), and its 64-bit
    seqno rebuilt from the 32 bits the signal carries.
    """

    transport = "signal"
    _file: SubscriberFile

    def __init__(
        self,
        file: SubscriberFile,
        signo: int | None = None,
        *,
        thread: bool = False,
        queue_size: int | None = None,
    ):
        """Subscribe ``file`` to ``signo``; None picks a free one (see
        :func:`upcall._signals.choose_signal`).

        ``queue_size`` is the length of the module's queue of events on their
        way to the signal; None (or 0) leaves the module's default.
        """
        super().__init__(file)
        self._queue_size = 0
        self._sfd = -1
        self._claim: signals.SignalClaim | None = None
        self._foreign = 0
        self._thread = thread
        with contextlib.ExitStack() as undo:
            undo.callback(self._abandon)
            self._queue_size = check_queue_size(queue_size)
            self._signo = (
                signals.choose_signal() if signo is None else signals.valid_rt_signal(signo)
            )
            self._tid = signals.current_tid()
            self._target_tid = self._tid
            if not thread and self._tid != os.getpid():
                raise WrongThreadError(
                    "the module queues process-directed signals on the main thread: "
                    "subscribe from the main thread, or pass thread=True"
                )
            self._claim = undo.enter_context(signals.SignalClaim(self._signo))
            self._sfd = self._claim.fd
            # Signals left pending from before are not events of this subscription.
            self._foreign = self._claim.stale
            self._setup()
            self._use_core(
                self._sfd,
                self._sfd,
                siginfos=True,
                signo=self._signo,
                check_thread=self._check_thread,
                tid=self._tid,
            )
            undo.pop_all()  # from here on close() releases the claim

    def _setup(self) -> None:
        signo, tid = self._signo, self._tid
        others = signals.threads_not_blocking(signo, except_tid=tid)
        if others:
            raise SignalSetupError(
                f"signal {signo} is not blocked in thread(s) {', '.join(map(str, others))} "
                "of this process, which could take the events: block it before starting "
                f"threads (signal.pthread_sigmask(signal.SIG_BLOCK, {{{signo}}}) in the main "
                "thread first; threads inherit the mask), or subscribe before starting them"
            )
        self._last_seqno = self._file.stats().seqno
        flags = abi.UPCALL_SUBSCRIBE_THREAD if self._thread else 0
        self._file.subscribe(abi.UPCALL_TRANSPORT_SIGNAL, signo, flags, self._queue_size)

    @property
    def tid(self) -> int:
        """The kernel thread id the events are read in (the subscribing thread)."""
        return self._tid

    def _check_thread(self) -> None:
        if signals.current_tid() != self._tid:
            raise WrongThreadError(
                f"the signals of this subscription are queued on thread {self._tid} "
                f"(the {'subscribing' if self._thread else 'main'} thread) and only it "
                f"can read them, not thread {signals.current_tid()}"
            )

    def _read_records(self, max_records: int) -> list[Event]:
        data = signals.read_signalfd(self._sfd, max_records)
        return self._decode(data, monotonic_ns()) if data else []

    def _read_batch(self, max_records: int) -> Batch:
        data = signals.read_signalfd(self._sfd, max_records)
        now = monotonic_ns()
        records = signals.pack_siginfos(data, self._signo, self._last_seqno)
        if records is None:  # none read, or not a plain run: signal by signal
            return Batch.from_events(self._decode(data, now), self.transport, now)
        batch = Batch(records, self.transport, now, signo=self._signo, stamped=False)
        seqnos = batch.seqno
        self._account_run(seqnos[0], seqnos[-1], len(batch))
        return batch

    def _decode(self, data: bytes, now: int) -> list[Event]:
        """The events among the signals of one signalfd read (accounted)."""
        events: list[Event] = []
        for info in signals.parse_siginfos(data):
            source = abi.source_from_si_code(info.code)
            if source is None or info.signo != self._signo:
                self._foreign += 1
                continue
            seqno = signals.extend_seqno(self._last_seqno, info.errno)
            self._account(seqno)
            events.append(
                make_event(seqno, info.ptr, source, self.transport, None, now, info.signo, 0)
            )
        return events

    def _choose_dispatch_signal(self) -> int:
        if self._tid != os.getpid():
            raise WrongThreadError(
                "on_event() needs a subscription made in the main thread, which can "
                "hand its pending signals over to the watcher thread"
            )
        return self._signo

    def _watcher_attach(self) -> None:
        # Signals can only be read by the thread they are queued on: subscribe
        # again from the watcher, thread-directed, so they are queued on it.
        # The kernel keeps the sequence number and counters.
        if not signals.is_blocked(self._signo):
            signals.block(self._signo)
        # The same queue size: another would drop what is queued.
        self._file.subscribe(
            abi.UPCALL_TRANSPORT_SIGNAL, self._signo, abi.UPCALL_SUBSCRIBE_THREAD, self._queue_size
        )
        self._target_tid = signals.current_tid()

    def _main_attach(self) -> None:
        # As subscribed: to this (the main) thread, or to the process, whose
        # signals the module queues on the main thread.
        flags = abi.UPCALL_SUBSCRIBE_THREAD if self._thread else 0
        self._file.subscribe(abi.UPCALL_TRANSPORT_SIGNAL, self._signo, flags, self._queue_size)
        self._target_tid = self._tid

    def _detach(self) -> None:
        # Otherwise a forked child holding the file keeps the signals coming
        # here, and once unblocked their default action ends the process.
        detach(self._file, self._queue_size)

    def _teardown(self) -> None:
        # Discard what is still queued, then unblock: a pending signal would
        # otherwise run its default action (terminate).
        self._release_claim()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"tid={self._target_tid}"
        return (
            f"<SignalSubscription signo={self._signo} thread={self._thread} {state} "
            f"received={self._received} lost={self._lost} foreign={self._foreign}>"
        )
