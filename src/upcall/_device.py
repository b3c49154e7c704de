# SPDX-License-Identifier: LGPL-2.1-or-later
"""The /dev/upcall character device: open it, emit events, subscribe."""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import errno
import fcntl
import os
import stat
import threading
from typing import Literal, get_args, overload

from . import abi
from ._closing import Closing
from ._errors import ClosedError, DeviceError, ModuleVersionError
from ._subscription import SignalSubscription, Subscription
from ._transports.eventfd import EventfdSubscription
from ._transports.fasync import FasyncSubscription
from ._transports.netlink import NetlinkSubscription
from ._transports.queue import QueueSubscription
from ._version import __version__
from .abi import Stats

DEFAULT_PATH = "/dev/upcall"
"""The device node the module creates, which :func:`open` opens by default."""

Via = Literal["queue", "signal", "fasync", "eventfd", "netlink"]
"""The names :meth:`Device.subscribe` takes for ``via``, as a type."""

TRANSPORTS: tuple[Via, ...] = get_args(Via)
"""The names :meth:`Device.subscribe` takes for ``via``; the first is the default."""

# Queue readers never block in read(2): they poll first, then read what is there.
_QUEUE_OPEN = os.O_RDONLY | os.O_NONBLOCK


def _open_error(path: str, err: OSError) -> DeviceError:
    code = err.errno or 0
    if code == errno.ENOENT:
        msg = (
            f"{path} does not exist: the upcall module is not loaded (load it with "
            "`modprobe upcall` from the upcall-dkms package or `insmod upcall.ko`, or use "
            "the module-free BPF path: `upcall watch`)"
        )
    elif code in (errno.EACCES, errno.EPERM):
        try:
            st = os.stat(path)
            mode = f" (mode {stat.filemode(st.st_mode)}, owner {st.st_uid}:{st.st_gid})"
        except OSError:
            mode = ""
        msg = (
            f"permission denied opening {path}{mode}: run as root or give your user "
            "access to the device (see README, device permissions)"
        )
    elif code in (errno.ENXIO, errno.ENODEV):
        msg = f"{path} has no driver behind it: is the upcall module loaded?"
    else:
        msg = f"cannot open {path}: {os.strerror(code) if code else err}"
    return DeviceError(code, msg)


def _open_fd(path: str, flags: int = os.O_RDWR) -> int:
    try:
        fd = os.open(path, flags | os.O_CLOEXEC)
    except OSError as e:
        raise _open_error(path, e) from None
    with contextlib.ExitStack() as undo:
        undo.callback(os.close, fd)
        if not stat.S_ISCHR(os.fstat(fd).st_mode):
            raise DeviceError(errno.ENOTTY, f"{path} is not a character device")
        undo.pop_all()
    return fd


def _ioctl(fd: int, request: int, arg: ctypes.Structure, what: str, path: str) -> int:
    while True:
        try:
            return int(fcntl.ioctl(fd, request, arg, True))
        except InterruptedError:
            continue
        except OSError as e:
            code = e.errno or 0
            if code == errno.ENOTTY:
                detail = "not an upcall device, or a module with a different ABI"
            else:
                detail = os.strerror(code)
            raise DeviceError(code, f"{path}: {what} failed: {detail}") from None


Sources = int | range | None
"""What ``sources=`` takes: one source id, a ``range`` of them, or None for all."""


def check_sources(sources: Sources) -> tuple[int, int] | None:
    """The (first, last) source ids of ``sources``; ValueError if it is not a run of ids."""
    if sources is None:
        return None
    if isinstance(sources, bool) or not isinstance(sources, int | range):
        raise TypeError(f"sources must be an int or a range, not {type(sources).__name__}")
    if isinstance(sources, int):
        first = last = sources
    elif sources.step != 1 or not sources:
        raise ValueError(f"sources {sources!r} must be a non-empty range with step 1")
    else:
        first, last = sources.start, sources.stop - 1
    if not 0 <= first <= last <= abi.UPCALL_SOURCE_MAX:
        raise ValueError(f"sources {sources!r} out of range 0..{abi.UPCALL_SOURCE_MAX}")
    return first, last


#: Where the kernel shows a loaded module's MODULE_VERSION.
_SYSFS_VERSION = "/sys/module/upcall/version"


def _module_version(fd: int, path: str) -> abi.UpcallVersion:
    """Ask the module at ``fd`` for its ABI version, its additions to it and its version.

    Raises ModuleVersionError, in one line naming both sides, when the
    module speaks another ABI than this library, and DeviceError when
    ``path`` is not an upcall device at all.
    """
    ours = f"library {__version__} (ABI {abi.UPCALL_ABI_VERSION})"
    version = abi.UpcallVersion()
    try:
        _ioctl(fd, abi.UPCALL_IOC_VERSION, version, "version query", path)
    except DeviceError as e:
        if e.errno != errno.ENOTTY:
            raise
        try:
            with builtins.open(_SYSFS_VERSION) as f:
                theirs = f"module {f.read().strip()}"
        except OSError:
            raise DeviceError(errno.ENOTTY, f"{path} is not an upcall device") from None
        raise ModuleVersionError(
            f"{path}: the loaded {theirs} predates ABI versions and does not match the {ours}: "
            f"load the module of version {__version__}"
        ) from None
    if version.abi != abi.UPCALL_ABI_VERSION:
        module = version.module.decode(errors="replace")
        raise ModuleVersionError(
            f"{path}: the loaded module {module} (ABI {version.abi}) does not match the {ours}: "
            "install the library and the module of one version"
        )
    return version


class _File:
    """One open file of the device, used as one subscriber (QueueFile).

    ``flags`` are the open(2) flags; subscribing only needs the file open for
    reading, so a subscriber's file is opened O_RDONLY (a group given read
    access to the device may subscribe, but not emit).
    """

    def __init__(
        self,
        path: str,
        flags: int = os.O_RDWR,
        sources: tuple[int, int] | None = None,
        unsubscribes: bool = False,
    ) -> None:
        self.path = path
        #: The (first, last) source ids every SUBSCRIBE of this file asks for.
        self.sources = sources
        #: Whether the module takes a SUBSCRIBE to NONE (UPCALL_VERSION_UNSUBSCRIBE).
        self.unsubscribes = unsubscribes
        self._fd = _open_fd(path, flags)
        self._lock = threading.Lock()

    def fileno(self) -> int:
        fd = self._fd
        if fd < 0:
            raise ClosedError(f"{self.path} is closed")
        return fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def subscribe(
        self,
        transport: int,
        signo: int = 0,
        flags: int = 0,
        queue_size: int = 0,
        netlink_fd: int = 0,
    ) -> None:
        req = abi.UpcallSubscribe(
            transport=transport,
            flags=flags,
            signo=signo,
            queue_size=queue_size,
            netlink_fd=netlink_fd,
        )
        # An unsubscribe takes no other field (EINVAL): no filter either.
        if self.sources is not None and transport != abi.UPCALL_TRANSPORT_NONE:
            req.flags |= abi.UPCALL_SUBSCRIBE_SOURCES
            req.source_first, req.source_last = self.sources
        _ioctl(self.fileno(), abi.UPCALL_IOC_SUBSCRIBE, req, "subscribe", self.path)

    def set_eventfd(self, fd: int) -> None:
        req = abi.UpcallEventfd(fd=fd)
        _ioctl(self.fileno(), abi.UPCALL_IOC_SET_EVENTFD, req, "set eventfd", self.path)

    def stats(self) -> Stats:
        st = abi.UpcallStats()
        _ioctl(self.fileno(), abi.UPCALL_IOC_STATS, st, "stats", self.path)
        return Stats.from_struct(st)

    def emit(self, value: int, source: int) -> int:
        req = abi.UpcallEmit(value=value, source=source)
        return _ioctl(self.fileno(), abi.UPCALL_IOC_EMIT, req, "emit", self.path)

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class Device(Closing):
    """An open /dev/upcall: emit events, read counters, make subscriptions.

    Each subscription opens the device again (the kernel has one subscriber
    per open file), so the Device itself is not subscribed: its
    :meth:`stats` are 0 unless that changes, and closing it does not end its
    subscriptions.
    """

    module_version: str
    """The loaded module's version, as ``modinfo`` shows it."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH) -> None:
        """Open ``path`` and check that the module speaks this library's ABI.

        Raises DeviceError with a readable message when it cannot open it or
        it is no upcall device, ModuleVersionError when the module's ABI
        differs from the library's.
        """
        self.path = os.fspath(path)
        self._file = _File(self.path)
        with contextlib.ExitStack() as undo:
            undo.callback(self._file.close)
            version = _module_version(self._file.fileno(), self.path)
            undo.pop_all()
        self.module_version = version.module.decode(errors="replace")
        #: The ABI version the module speaks (the same as the library's).
        self.abi_version: int = version.abi
        self._unsubscribes = bool(version.flags & abi.UPCALL_VERSION_UNSUBSCRIBE)

    def fileno(self) -> int:
        """The file descriptor of this open file."""
        return self._file.fileno()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._file.closed

    def close(self) -> None:
        """Close the device; idempotent. Subscriptions stay open until closed themselves."""
        self._file.close()

    def emit(self, value: int, source: int = abi.UPCALL_SOURCE_USER) -> int:
        """Emit one event to every subscriber; return how many it was queued for.

        ``value`` is anything from -2**63 to 2**64-1 (negative values travel as
        two's complement u64; ``Event.signed_value`` reads them back). ``source``
        is 0 (a user-space emit, the default) or an id above
        ``abi.UPCALL_SOURCE_RESERVED_MAX`` (the ids below are upcall's own
        sources) up to ``abi.UPCALL_SOURCE_MAX``; ValueError for another.
        A return of 0 means no one is subscribed, not an error.
        """
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"value must be an int, not {type(value).__name__}")
        if isinstance(source, bool) or not isinstance(source, int):
            raise TypeError(f"source must be an int, not {type(source).__name__}")
        encoded = abi.encode_value(value)
        if not 0 <= source <= abi.UPCALL_SOURCE_MAX:
            raise ValueError(f"source {source} out of range 0..{abi.UPCALL_SOURCE_MAX}")
        if 0 < source <= abi.UPCALL_SOURCE_RESERVED_MAX:
            raise ValueError(
                f"source {source:#x} is reserved for upcall's own sources (1..."
                f"{abi.UPCALL_SOURCE_RESERVED_MAX:#x}): emit as 0 or "
                f"{abi.UPCALL_SOURCE_RESERVED_MAX + 1:#x}..{abi.UPCALL_SOURCE_MAX:#x}"
            )
        return self._file.emit(encoded, source)

    def stats(self) -> Stats:
        """The counters of this open file (all 0 for a Device: it is not subscribed)."""
        return self._file.stats()

    def _subscriber_file(self, flags: int, sources: Sources) -> _File:
        if self.closed:
            raise ClosedError(f"{self.path} is closed")
        return _File(self.path, flags, check_sources(sources), self._unsubscribes)

    def subscribe_signal(
        self,
        signo: int | None = None,
        *,
        thread: bool = False,
        queue_size: int | None = None,
        sources: Sources = None,
    ) -> SignalSubscription:
        """Subscribe to events as real-time signals, received through a signalfd.

        ``signo`` None picks a free real-time signal (no handler, not blocked,
        not used by another subscription); otherwise it must be from
        ``signal.SIGRTMIN`` to ``signal.SIGRTMAX`` (ValueError if not).
        ``thread=False`` (process subscription) must be called from the main
        thread, where the module queues the signals; ``thread=True`` directs
        them at the calling thread, which then reads them. Either way the
        signal is blocked here and must be blocked in every other thread
        already (SignalSetupError otherwise). ``queue_size``: see
        :meth:`subscribe`, as is ``sources``. See :class:`SignalSubscription`.
        """
        file = self._subscriber_file(os.O_RDONLY, sources)
        return SignalSubscription(file, signo, thread=thread, queue_size=queue_size)

    def subscribe_queue(
        self, *, queue_size: int | None = None, sources: Sources = None
    ) -> QueueSubscription:
        """Subscribe to events as records read(2) from the file: :class:`QueueSubscription`."""
        return QueueSubscription(self._subscriber_file(_QUEUE_OPEN, sources), queue_size)

    def subscribe_fasync(
        self,
        signo: int | None = None,
        *,
        thread: bool = False,
        queue_size: int | None = None,
        sources: Sources = None,
    ) -> FasyncSubscription:
        """The queue, with a SIGIO-style real-time signal per notification.

        ``signo`` and ``thread`` as for :meth:`subscribe_signal`, except that a
        process subscription may be made and read in any thread.
        See :class:`FasyncSubscription`.
        """
        file = self._subscriber_file(_QUEUE_OPEN, sources)
        return FasyncSubscription(file, signo, thread=thread, queue_size=queue_size)

    def subscribe_eventfd(
        self, *, queue_size: int | None = None, sources: Sources = None
    ) -> EventfdSubscription:
        """The queue, with an eventfd as the descriptor to wait on: :class:`EventfdSubscription`."""
        return EventfdSubscription(self._subscriber_file(_QUEUE_OPEN, sources), queue_size)

    def subscribe_netlink(
        self,
        *,
        queue_size: int | None = None,
        rcvbuf: int | None = None,
        multicast: bool = False,
        sources: Sources = None,
    ) -> NetlinkSubscription:
        """Subscribe to events as generic netlink messages: :class:`NetlinkSubscription`.

        ``rcvbuf`` is the socket's receive buffer in bytes; None keeps the
        system's default (``net.core.rmem_default``). ``multicast`` False
        sends the events to this subscription's socket alone; True to the
        ``events`` group, where every listener gets them.
        """
        file = self._subscriber_file(os.O_RDONLY, sources)
        return NetlinkSubscription(file, queue_size=queue_size, rcvbuf=rcvbuf, multicast=multicast)

    @overload
    def subscribe(
        self,
        via: Literal["queue"] = "queue",
        *,
        queue_size: int | None = None,
        signo: int | None = None,
        thread: bool = False,
        rcvbuf: int | None = None,
        sources: Sources = None,
    ) -> QueueSubscription: ...

    @overload
    def subscribe(
        self,
        via: Literal["signal"],
        *,
        queue_size: int | None = None,
        signo: int | None = None,
        thread: bool = False,
        rcvbuf: int | None = None,
        sources: Sources = None,
    ) -> SignalSubscription: ...

    @overload
    def subscribe(
        self,
        via: Literal["fasync"],
        *,
        queue_size: int | None = None,
        signo: int | None = None,
        thread: bool = False,
        rcvbuf: int | None = None,
        sources: Sources = None,
    ) -> FasyncSubscription: ...

    @overload
    def subscribe(
        self,
        via: Literal["eventfd"],
        *,
        queue_size: int | None = None,
        signo: int | None = None,
        thread: bool = False,
        rcvbuf: int | None = None,
        sources: Sources = None,
    ) -> EventfdSubscription: ...

    @overload
    def subscribe(
        self,
        via: Literal["netlink"],
        *,
        queue_size: int | None = None,
        signo: int | None = None,
        thread: bool = False,
        rcvbuf: int | None = None,
        sources: Sources = None,
    ) -> NetlinkSubscription: ...

    @overload
    def subscribe(
        self,
        via: str,
        *,
        queue_size: int | None = None,
        signo: int | None = None,
        thread: bool = False,
        rcvbuf: int | None = None,
        sources: Sources = None,
    ) -> Subscription: ...

    def subscribe(
        self,
        via: str = "queue",
        *,
        queue_size: int | None = None,
        signo: int | None = None,
        thread: bool = False,
        rcvbuf: int | None = None,
        sources: Sources = None,
    ) -> Subscription:
        """Subscribe with the transport named by ``via``, one of :data:`TRANSPORTS`.

        The default is ``"queue"``, the fastest from Python (see BENCHMARKS.md).

        - ``"queue"``: records read(2) from the file, which poll(2) reports
          readable (:class:`QueueSubscription`);
        - ``"signal"``: a real-time signal per event (:class:`SignalSubscription`);
        - ``"fasync"``: the queue, notified by SIGIO-style signals
          (:class:`FasyncSubscription`);
        - ``"eventfd"``: the queue, notified through an eventfd
          (:class:`EventfdSubscription`);
        - ``"netlink"``: generic netlink messages to a socket of this
          subscription's own (:class:`NetlinkSubscription`).

        ``queue_size`` is the length of the subscriber's queue in the module,
        in events, from ``abi.UPCALL_QUEUE_MIN`` to ``abi.UPCALL_QUEUE_MAX``
        (rounded up to a power of two); None or 0 leaves the module's default
        (``abi.UPCALL_QUEUE_DEFAULT``). When it is full the oldest event is
        dropped and counted. ``signo`` and ``thread`` are for ``"signal"`` and
        ``"fasync"`` only, ``rcvbuf`` for ``"netlink"`` only (ValueError
        otherwise). ``sources``, a source id or a ``range`` of them, makes
        the module queue only those sources' events: the others are not
        counted and take no room in the queue; None takes every source.
        Every subscription has the same reading surface
        (:class:`Subscription`) and yields the same :class:`Event`.
        """
        if via not in TRANSPORTS:
            raise ValueError(f"unknown transport {via!r}: choose one of {', '.join(TRANSPORTS)}")
        if (signo is not None or thread) and via not in ("signal", "fasync"):
            raise ValueError(f"signo and thread apply to via='signal' or 'fasync', not {via!r}")
        if rcvbuf is not None and via != "netlink":
            raise ValueError(f"rcvbuf applies to via='netlink', not {via!r}")
        if via == "signal":
            return self.subscribe_signal(
                signo, thread=thread, queue_size=queue_size, sources=sources
            )
        if via == "fasync":
            return self.subscribe_fasync(
                signo, thread=thread, queue_size=queue_size, sources=sources
            )
        if via == "queue":
            return self.subscribe_queue(queue_size=queue_size, sources=sources)
        if via == "eventfd":
            return self.subscribe_eventfd(queue_size=queue_size, sources=sources)
        return self.subscribe_netlink(queue_size=queue_size, rcvbuf=rcvbuf, sources=sources)

    def __repr__(self) -> str:
        return f"<upcall.Device {self.path!r}{' closed' if self.closed else ''}>"


def open(path: str | os.PathLike[str] = DEFAULT_PATH) -> Device:
    """Open the upcall device at ``path`` (default ``/dev/upcall``).

    Raises DeviceError when it cannot: the message says whether the module is
    not loaded (no such file), access is denied (device mode) or what else.
    """
    return Device(path)
