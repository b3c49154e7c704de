# SPDX-License-Identifier: LGPL-2.1-or-later
"""The NETLINK transport: generic netlink, one message per event.

The control plane uses pyroute2: it resolves the family ``upcall`` and its
``events`` multicast group (CTRL_CMD_GETFAMILY) and sends commands. The data
plane does not: pyroute2 0.9 reads through an asyncio datagram endpoint, one
datagram per call, and decodes each message into nested Python objects,
which costs tens of microseconds an event and cannot keep up with a burst.
So the event socket is a plain AF_NETLINK socket, handed to the module
(unicast: this subscriber's events only) or joined to the group, read with
recvmmsg(2), many datagrams per system call (:mod:`.mmsg`), and the
messages are parsed from the raw bytes with :mod:`struct` (:mod:`.nlmsg`).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import _signals as signals
from .. import abi
from .._batch import Batch
from .._errors import ClosedError, DeviceError, UpcallError
from .._event import Event, make_event, monotonic_ns
from .._subscription import (
    SubscriberFile,
    Subscription,
    check_queue_size,
    detach,
)
from . import nlmsg
from .mmsg import DatagramReader

NETLINK_GENERIC = 16
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_BROADCAST_ERROR = 4
SO_RCVBUFFORCE = 33

#: Bytes kept of each datagram: an event message is 76 bytes (more with
#: padding attributes); a longer datagram is cut and counted as malformed.
SLOT_SIZE = 256
#: Datagrams received by one recvmmsg(2) at most.
MAX_BATCH = 1024


@dataclass(frozen=True, slots=True)
class GenlFamily:
    """What generic netlink calls upcall here: its family id and event group id."""

    family_id: int
    group_id: int


_msg_class: Any = None
_msg_class_lock = threading.Lock()


def _pyroute2(name: str) -> Any:
    """pyroute2's module ``pyroute2.<name>``, imported on first use.

    pyroute2 is the optional extra ``upcall[netlink]``: nothing else in upcall
    needs it, so ``import upcall`` works without it.
    """
    try:
        return importlib.import_module(f"pyroute2.{name}")
    except ImportError as e:
        raise UpcallError(
            f"the netlink transport needs pyroute2 >= 0.9 ({e}): pip install 'upcall[netlink]'"
        ) from None


def genl_message_class() -> Any:
    """pyroute2's message class for the upcall family (its attributes, by name).

    Attribute names are the header's: ``UPCALL_ATTR_VALUE``...
    """
    global _msg_class
    with _msg_class_lock:
        if _msg_class is None:
            genlmsg: Any = _pyroute2("netlink").genlmsg

            class UpcallGenlMsg(genlmsg):  # type: ignore[misc]
                nla_map = (
                    ("UPCALL_ATTR_UNSPEC", "none"),
                    ("UPCALL_ATTR_PAD", "none"),
                    ("UPCALL_ATTR_SUBSCRIBER", "uint64"),
                    ("UPCALL_ATTR_SEQNO", "uint64"),
                    ("UPCALL_ATTR_TIMESTAMP", "uint64"),
                    ("UPCALL_ATTR_VALUE", "uint64"),
                    ("UPCALL_ATTR_SOURCE", "uint32"),
                )

            _msg_class = UpcallGenlMsg
        return _msg_class


def _genl_socket() -> Any:
    """A pyroute2 GenericNetlinkSocket that does not log a missing family."""
    generic = _pyroute2("netlink.generic")
    async_base: Any = generic.AsyncGenericNetlinkSocket
    sync_base: Any = generic.GenericNetlinkSocket

    class _QuietAsync(async_base):  # type: ignore[misc]
        module_err_level = "debug"

    class _Quiet(sync_base):  # type: ignore[misc]
        async_class = _QuietAsync

    return _Quiet()


def _no_family(err: int) -> DeviceError:
    if err == errno.ENOENT:
        return DeviceError(
            errno.ENOENT,
            f"no generic netlink family {abi.UPCALL_GENL_NAME!r}: is the upcall module loaded?",
        )
    return DeviceError(
        err, f"generic netlink family {abi.UPCALL_GENL_NAME!r}: {errno.errorcode.get(err, err)}"
    )


def resolve_family() -> GenlFamily:
    """Ask the kernel (through pyroute2) for the upcall family and its event group.

    DeviceError(ENOENT) if the module, and so the family, is not there.
    Ask again after the module was reloaded: the ids may change.
    """
    sock = _genl_socket()
    NetlinkError = _pyroute2("netlink.exceptions").NetlinkError

    try:
        sock.bind(abi.UPCALL_GENL_NAME, genl_message_class())
        family_id, groups = int(sock.prid), dict(sock.mcast_groups)
    except NetlinkError as e:
        raise _no_family(int(e.code)) from None
    finally:
        sock.close()
    group = groups.get(abi.UPCALL_GENL_MCGRP_EVENTS)
    if group is None:
        raise DeviceError(
            errno.ENOENT,
            f"generic netlink family {abi.UPCALL_GENL_NAME!r} has no group "
            f"{abi.UPCALL_GENL_MCGRP_EVENTS!r} (groups: {sorted(groups)})",
        )
    return GenlFamily(family_id, int(group))


def send_command(cmd: int, attrs: Sequence[tuple[str, int]]) -> None:
    """Send one request of the upcall family and wait for its acknowledgement.

    ``attrs`` are (name, value) pairs such as ``("UPCALL_ATTR_VALUE", 5)``.
    A refusal raises OSError with the kernel's errno (EINVAL, ERANGE, EPERM...).
    """
    sock = _genl_socket()
    netlink = _pyroute2("netlink")
    NLM_F_ACK, NLM_F_REQUEST = netlink.NLM_F_ACK, netlink.NLM_F_REQUEST
    NetlinkError = _pyroute2("netlink.exceptions").NetlinkError

    msg = genl_message_class()()
    msg["cmd"] = cmd
    msg["version"] = abi.UPCALL_GENL_VERSION
    msg["attrs"] = [list(a) for a in attrs]
    try:
        try:
            sock.bind(abi.UPCALL_GENL_NAME, genl_message_class())
        except NetlinkError as e:
            raise _no_family(int(e.code)) from None
        try:
            sock.nlm_request(msg, msg_type=sock.prid, msg_flags=NLM_F_REQUEST | NLM_F_ACK)
        except NetlinkError as e:
            raise OSError(int(e.code), f"{abi.UPCALL_GENL_NAME} command {cmd}: {e}") from None
    finally:
        sock.close()


def open_event_socket(
    family: GenlFamily, rcvbuf: int | None = None, *, multicast: bool = True
) -> socket.socket:
    """A non-blocking, bound netlink socket; with ``multicast``, joined to the event group.

    A group member asks for NETLINK_BROADCAST_ERROR, so that when it has no
    room for a message the module learns of it and counts the event as
    dropped. (A unicast socket needs no such thing: the sender is told.)

    ``rcvbuf`` None keeps the system default; else it is set with
    SO_RCVBUFFORCE when allowed (CAP_NET_ADMIN: beyond ``net.core.rmem_max``),
    SO_RCVBUF otherwise. Either way the kernel doubles it for its bookkeeping.
    """
    with contextlib.ExitStack() as undo:
        sock = undo.enter_context(
            socket.socket(
                socket.AF_NETLINK,
                socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                NETLINK_GENERIC,
            )
        )
        sock.bind((0, 0))
        if rcvbuf is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if multicast:
            # Without it the kernel does not tell the sender that this socket
            # had no room (it reports a failure only when nobody took the
            # message), so the module could not count this listener's losses.
            sock.setsockopt(SOL_NETLINK, NETLINK_BROADCAST_ERROR, 1)
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, family.group_id)
        undo.pop_all()
    return sock


class NetlinkSubscription(Subscription):
    """Events as generic netlink messages, one UPCALL_CMD_EVENT each.

    By default the module sends this subscriber's events to its own socket
    alone (UPCALL_SUBSCRIBE_UNICAST: the socket is handed over with the
    subscription and held by the module until :meth:`close`). When the
    socket's receive buffer is full the kernel drops the message, counts it
    for this subscriber only (``stats().dropped``) and reports ENOBUFS on
    the socket: that is counted in :attr:`overruns` and reading goes on; the
    lost events show as a gap in ``seqno`` (:attr:`lost`). A bigger
    ``rcvbuf`` makes that rarer. Events carry ``timestamp_ns``.

    ``multicast=True`` joins the ``events`` group instead (CAP_NET_ADMIN),
    before subscribing, since the module drops an event nobody listens to.
    Every listener of the group then gets every multicast subscriber's
    messages; this one keeps those whose SUBSCRIBER attribute is its own id
    (from ``stats().id``) and counts the others in :attr:`foreign`. The
    group reports one result per message, so the module counts an event as
    dropped when *any* listener's socket was full, even if its own
    subscriber got it: ``received + dropped`` may then exceed ``emitted``,
    never fall short of it.
    """

    transport = "netlink"
    _file: SubscriberFile

    def __init__(
        self,
        file: SubscriberFile,
        *,
        queue_size: int | None = None,
        rcvbuf: int | None = None,
        family: GenlFamily | None = None,
        multicast: bool = False,
    ) -> None:
        """Subscribe ``file``. ``queue_size`` None (or 0): the module's default;
        ``rcvbuf`` None: the system's default buffer (see :func:`open_event_socket`);
        ``family`` None: ask the kernel (:func:`resolve_family`); ``multicast``
        False: this socket alone gets the events, True: the group does.
        """
        super().__init__(file)
        self._sock: socket.socket | None = None
        self._id = 0
        self._foreign = 0
        self._malformed = 0
        self._overruns = 0
        self._queue_size = 0
        self._multicast = multicast
        with contextlib.ExitStack() as undo:
            undo.callback(self._abandon)
            self._queue_size = size = check_queue_size(queue_size)
            if rcvbuf is not None and (
                isinstance(rcvbuf, bool) or not isinstance(rcvbuf, int) or rcvbuf < 1
            ):
                raise ValueError(f"rcvbuf must be a positive number of bytes, not {rcvbuf!r}")
            self._family = family if family is not None else resolve_family()
            self._sock = undo.enter_context(
                open_event_socket(self._family, rcvbuf, multicast=multicast)
            )
            self._reader = DatagramReader(self._sock.fileno(), slot_size=SLOT_SIZE, capacity=64)
            self._last_seqno = file.stats().seqno
            if multicast:
                file.subscribe(abi.UPCALL_TRANSPORT_NETLINK, 0, 0, size)
            else:
                file.subscribe(
                    abi.UPCALL_TRANSPORT_NETLINK,
                    0,
                    abi.UPCALL_SUBSCRIBE_UNICAST,
                    size,
                    netlink_fd=self._sock.fileno(),
                )
            self._id = file.stats().id
            fd = self._sock.fileno()
            self._use_core(
                fd,
                fd,
                netlink_family=self._family.family_id,
                netlink_id=self._id,
                decode_datagram=self._decode_datagram,
            )
            undo.pop_all()  # from here on close() releases everything

    @property
    def id(self) -> int:
        """The subscriber id the module tags this subscription's messages with."""
        return self._id

    @property
    def multicast(self) -> bool:
        """True if the events go to the group, False if to this socket alone."""
        return self._multicast

    @property
    def portid(self) -> int:
        """The socket's netlink port id: where unicast events are sent."""
        return int(self._socket().getsockname()[0])

    @property
    def family(self) -> GenlFamily:
        """The family and group ids in use."""
        return self._family

    @property
    def rcvbuf(self) -> int:
        """The socket's receive buffer in bytes, as the kernel reports it (doubled)."""
        return self._socket().getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    @property
    def foreign(self) -> int:
        """Messages read that were not this subscriber's events; 0 if none."""
        return self._foreign

    @property
    def malformed(self) -> int:
        """upcall messages that could not be parsed (skipped); 0 unless the kernel errs."""
        return self._malformed

    @property
    def overruns(self) -> int:
        """ENOBUFS reports: times the receive buffer overflowed; 0 if it never did."""
        return self._overruns

    def _socket(self) -> socket.socket:
        if self._sock is None or self._closed:
            raise ClosedError("the netlink subscription is closed")
        return self._sock

    def fileno(self) -> int:
        """The netlink socket: readable when messages are waiting."""
        return self._socket().fileno()

    def _receive(self, want: int) -> int:
        reader = self._reader
        if want > reader.capacity and reader.capacity < MAX_BATCH:
            reader = self._reader = DatagramReader(
                reader.fd, slot_size=SLOT_SIZE, capacity=min(MAX_BATCH, max(want, 64))
            )
        for _ in range(4):
            try:
                return reader.recv(want)
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                # Reported before what is still queued: count it, read on.
                self._overruns += 1
        return 0

    def _read_records(self, max_records: int) -> list[Event]:
        n = self._receive(max_records)
        return self._decode(n, monotonic_ns()) if n else []

    def _read_batch(self, max_records: int) -> Batch:
        n = self._receive(max_records)
        now = monotonic_ns()
        if not n:
            return Batch.empty(self.transport, now)
        reader = self._reader
        lengths, flags = reader.columns(n)
        records = nlmsg.pack_events(
            reader.buffer, reader.slot_size, n, lengths, flags, self._family.family_id, self._id
        )
        if records is None:  # not one plain event per datagram: message by message
            return Batch.from_events(self._decode(n, now), self.transport, now)
        batch = Batch(records, self.transport, now)
        seqnos = batch.seqno
        self._account_run(seqnos[0], seqnos[-1], n)
        return batch

    def _decode(self, n: int, now: int) -> list[Event]:
        """The events among the ``n`` datagrams just received (accounted)."""
        reader = self._reader
        buf, slot = reader.buffer, reader.slot_size
        events: list[Event] = []
        for i, (length, flags) in enumerate(reader.lengths(n)):
            if flags & socket.MSG_TRUNC:
                self._malformed += 1
                continue
            self._parse(buf, i * slot, length, now, events)
        if events:
            self._account_run(events[0].seqno, events[-1].seqno, len(events))
        return events

    def _decode_datagram(self, data: bytes) -> list[Event]:
        """The events of one datagram (accounted): the compiled core's, when not in
        the kernel's own layout, which the core decodes itself."""
        events: list[Event] = []
        self._parse(data, 0, len(data), monotonic_ns(), events)
        if events:
            self._account_run(events[0].seqno, events[-1].seqno, len(events))
        return events

    def _parse(
        self, data: bytes | bytearray, offset: int, length: int, now: int, events: list[Event]
    ) -> None:
        """Append the events of the datagram at ``data[offset:]`` to ``events``; count the rest."""
        me = self._id
        for item in nlmsg.parse(data, offset, length, self._family.family_id):
            if isinstance(item, str):
                if item == nlmsg.FOREIGN:
                    self._foreign += 1
                else:
                    self._malformed += 1
                continue
            subscriber, seqno, timestamp, value, source = item
            if subscriber != me:
                self._foreign += 1
                continue
            events.append(make_event(seqno, value, source, self.transport, timestamp, now, None, 0))

    def _choose_dispatch_signal(self) -> int:
        return signals.choose_signal()  # a token for _thread.interrupt_main(); never sent

    def _detach(self) -> None:
        # Stop this subscriber's messages (the file may live on in a forked
        # child): the group's listeners would get them, or the module would
        # keep holding our socket.
        detach(self._file, self._queue_size)

    def _teardown(self) -> None:
        if self._sock is not None:
            self._sock.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"id={self._id}"
        return (
            f"<NetlinkSubscription {state} received={self._received} lost={self._lost} "
            f"foreign={self._foreign} overruns={self._overruns}>"
        )
