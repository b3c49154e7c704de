"""The generic netlink family driven by the kernel's own YNL library, from the spec alone.

Documentation/netlink/specs/upcall.yaml is all that YNL (tools/net/ynl from
Linux 6.12, extracted by ``make ynl-build`` into build/ynl/) knows of the
family: it resolves the family, sends EMIT, joins the ``events`` group and
decodes EVENT messages by the spec. The kernel's answers, errors included,
must be what the spec and the header say.

One import and two YnlFamily objects serve the whole module, one that
sends requests and one whose socket is in the events group: in an emulated
guest each Python start costs seconds, so nothing here starts another
interpreter.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import select
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from rawioctl import ioctl, stats

import upcall
from upcall import abi

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "Documentation" / "netlink" / "specs" / "upcall.yaml"
YNL = ROOT / "build" / "ynl"
YNL_LIB = YNL / "tools" / "net" / "ynl" / "lib"
U64 = (1 << 64) - 1
NOBODY = 65534
TIMEOUT = 30.0


def import_ynl() -> ModuleType:
    """The kernel's YNL library (its package is called ``lib``), as ``kernel_ynl``."""
    if "kernel_ynl" in sys.modules:
        return sys.modules["kernel_ynl"]
    init = YNL_LIB / "__init__.py"
    if not init.exists():
        pytest.fail(f"{init} is missing: run `make ynl-build` first")
    spec = importlib.util.spec_from_file_location(
        "kernel_ynl", init, submodule_search_locations=[str(YNL_LIB)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kernel_ynl"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ynl() -> ModuleType:
    return import_ynl()


def load_family(ynl: ModuleType) -> Any:
    """A YnlFamily from the spec, resolved in the kernel.

    Not checked against the schema here (``schema=""``): importing
    jsonschema and checking cost some 8 s in an emulated guest, and
    tests/host/test_ynl_spec.py checks the same spec with the same schema.
    """
    return ynl.YnlFamily(str(SPEC), schema="")


@pytest.fixture(scope="module")
def family(ynl: ModuleType) -> Iterator[Any]:
    """The family: sends requests."""
    fam = load_family(ynl)
    yield fam
    fam.sock.close()


@pytest.fixture(scope="module")
def listener(ynl: ModuleType) -> Iterator[Any]:
    """The family again, its socket in the events group: receives events only.

    Requests go through ``family``: YNL 6.12's do() fails on a socket where
    a notification arrives before the request's answer.
    """
    fam = load_family(ynl)
    fam.ntf_subscribe("events")
    yield fam
    fam.sock.close()


def fresh_socket(ynl: ModuleType) -> socket.socket:
    """A socket set up as YnlFamily sets up its own."""
    nl = ynl.Netlink
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_GENERIC)
    for opt in (nl.NETLINK_CAP_ACK, nl.NETLINK_EXT_ACK, nl.NETLINK_GET_STRICT_CHK):
        sock.setsockopt(nl.SOL_NETLINK, opt, 1)
    return sock


def take_notifications(listener: Any) -> list[dict[str, Any]]:
    """The notifications YNL has received and decoded so far, taken from its queue."""
    listener.check_ntf()
    queue = listener.async_msg_queue
    taken = list(queue)
    queue.clear()
    return taken


def receive_events(listener: Any, subscriber: int, n: int) -> list[dict[str, Any]]:
    """The next ``n`` EVENT messages for ``subscriber``, as YNL decodes them."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT
    while True:
        for ntf in take_notifications(listener):
            assert ntf["name"] == "event", ntf
            if ntf["msg"]["subscriber"] == subscriber:
                got.append(ntf["msg"])
        if len(got) >= n:
            return got
        left = deadline - time.monotonic()
        assert left > 0, f"{len(got)} of {n} events after {TIMEOUT} s: {got}"
        select.select([listener.sock], [], [], left)


@pytest.fixture
def netlink_subscriber() -> Iterator[int]:
    """An open /dev/upcall file, not yet subscribed."""
    fd = os.open("/dev/upcall", os.O_RDWR)
    yield fd
    os.close(fd)


def subscribe_netlink(fd: int, *, unicast_to: socket.socket | None = None) -> int:
    """Subscribe ``fd`` to NETLINK (the group, or ``unicast_to`` alone); its subscriber id."""
    req = abi.UpcallSubscribe(transport=abi.UPCALL_TRANSPORT_NETLINK)
    if unicast_to is not None:
        req.flags = abi.UPCALL_SUBSCRIBE_UNICAST
        req.netlink_fd = unicast_to.fileno()
    assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, req) == 0
    return int(stats(fd).id)


def settled(fd: int) -> abi.UpcallStats:
    deadline = time.monotonic() + TIMEOUT
    while (st := stats(fd)).pending:
        assert time.monotonic() < deadline, f"events still pending: {st}"
        time.sleep(0.01)
    return st


# -- the family ----------------------------------------------------------------------------


def test_family_resolves_as_the_spec_says(family: Any) -> None:
    kernel = family.nlproto.genl_family
    assert kernel["name"] == abi.UPCALL_GENL_NAME == family.yaml["name"]
    assert set(kernel["mcast"]) == set(family.mcast_groups) == {abi.UPCALL_GENL_MCGRP_EVENTS}
    # The kernel's maxattr is the spec's last attribute.
    assert kernel["maxattr"] == max(family.attr_sets["upcall"].attrs_by_val) == abi.UPCALL_ATTR_MAX
    assert set(family.ops) == {"emit"}
    assert set(family.ntfs) == {"event"}
    assert family.msgs["emit"].req_value == abi.UPCALL_CMD_EMIT
    assert family.msgs["event"].rsp_value == abi.UPCALL_CMD_EVENT


def test_emit_reaches_a_queue_subscriber(family: Any, dev: upcall.Device) -> None:
    with dev.subscribe("queue") as sub:
        assert family.do("emit", {"value": U64, "source": 0x300}) is None
        assert family.do("emit", {"value": 5}) is None
        events = sub.read(2, timeout=TIMEOUT)
    assert [(e.value, e.source) for e in events] == [(U64, 0x300), (5, abi.UPCALL_SOURCE_USER)]


@pytest.mark.parametrize(
    ("attrs", "error", "extack"),
    [
        ({}, errno.EINVAL, {"miss-type": "value"}),
        ({"source": 0x300}, errno.EINVAL, {"miss-type": "value"}),
        (
            {"value": 1, "source": abi.UPCALL_SOURCE_MAX + 1},
            errno.ERANGE,
            {"bad-attr": ".source", "msg": "integer out of range"},
        ),
        (
            {"value": 1, "source": (1 << 32) - 1},
            errno.ERANGE,
            {"bad-attr": ".source", "msg": "integer out of range"},
        ),
        (
            {"value": 1, "source": abi.UPCALL_SOURCE_EDU},
            errno.EINVAL,
            {"bad-attr": ".source", "msg": "source id reserved for upcall's own sources"},
        ),
        (
            {"value": 1, "source": abi.UPCALL_SOURCE_RESERVED_MAX},
            errno.EINVAL,
            {"bad-attr": ".source", "msg": "source id reserved for upcall's own sources"},
        ),
    ],
)
def test_emit_with_bad_attributes(
    family: Any,
    ynl: ModuleType,
    dev: upcall.Device,
    attrs: dict[str, int],
    error: int,
    extack: dict[str, str],
) -> None:
    with dev.subscribe("queue") as sub:
        with pytest.raises(ynl.NlError) as e:
            family.do("emit", attrs)
        assert e.value.error == error, e.value
        got = e.value.nl_msg.extack or {}
        assert {k: got.get(k) for k in extack} == extack, got
        if error == errno.ERANGE:
            assert got["policy"]["max-value"] == abi.UPCALL_SOURCE_MAX
        assert sub.stats().emitted == 0  # nothing was emitted


def test_emit_and_group_need_cap_net_admin(family: Any, ynl: ModuleType) -> None:
    """As uid 65534 without capabilities: EMIT is EPERM, joining the group too."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            family.sock = fresh_socket(ynl)  # this child's own, made without privileges
            code = 2
            try:
                family.do("emit", {"value": 1})
            except ynl.NlError as e:
                code = 0 if e.error == errno.EPERM else 3
            if code == 0:
                code = 4
                family.sock = fresh_socket(ynl)  # ntf_subscribe() binds it
                try:
                    family.ntf_subscribe("events")
                except PermissionError:
                    code = 0
        except BaseException as e:
            os.write(2, f"unprivileged child: {e!r}\n".encode())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    # 2: EMIT was taken, 3: another error, 4: the group was joined.
    assert os.waitstatus_to_exitcode(status) == 0


# -- events --------------------------------------------------------------------------------


def check_events(got: list[dict[str, Any]], subscriber: int, sent: list[tuple[int, int]]) -> None:
    assert [e["seqno"] for e in got] == list(range(1, len(sent) + 1))
    assert [(e["value"], e["source"]) for e in got] == sent
    assert all(e["subscriber"] == subscriber for e in got)
    stamps = [e["timestamp"] for e in got]
    assert stamps[0] > 0 and stamps == sorted(stamps) and stamps[-1] <= time.monotonic_ns()
    assert set(got[0]) == {"subscriber", "seqno", "timestamp", "value", "source"}


def test_events_from_the_group(
    family: Any, listener: Any, netlink_subscriber: int, dev: upcall.Device
) -> None:
    take_notifications(listener)
    sid = subscribe_netlink(netlink_subscriber)
    sent = [(U64, 0x200), (0, abi.UPCALL_SOURCE_USER), (1 << 63, abi.UPCALL_SOURCE_MAX)]
    for value, source in sent:
        family.do("emit", {"value": value, "source": source})
    dev.emit(42, source=0x201)  # the ioctl's events arrive the same way
    sent.append((42, 0x201))
    check_events(receive_events(listener, sid, len(sent)), sid, sent)
    st = settled(netlink_subscriber)
    assert (st.emitted, st.delivered, st.dropped) == (len(sent), len(sent), 0)


def test_events_to_the_subscribers_own_socket(
    family: Any, listener: Any, netlink_subscriber: int
) -> None:
    """UPCALL_SUBSCRIBE_UNICAST with YNL's own socket: YNL decodes them alike."""
    take_notifications(listener)
    sid = subscribe_netlink(netlink_subscriber, unicast_to=listener.sock)
    sent = [(value, 0x300) for value in range(1, 65)]
    family.do_multi([("emit", {"value": v, "source": s}, []) for v, s in sent])
    check_events(receive_events(listener, sid, len(sent)), sid, sent)
    st = settled(netlink_subscriber)
    assert (st.emitted, st.delivered, st.dropped) == (len(sent), len(sent), 0)
