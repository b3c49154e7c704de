"""Source ids: the version query, upcall's reserved ids, the per-subscriber filter.

A subscriber that names its sources at SUBSCRIBE gets only their events:
the others are not queued and not counted for it, so one source's flood
cannot push another's events out of its queue. User space may emit only as
source 0 or above ``UPCALL_SOURCE_RESERVED_MAX``: no emitter can pose as
the edu interrupt or the timer.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from modules import TIMER_HZ
from rawioctl import ioctl, stats

import upcall
from upcall import abi
from upcall._transports.netlink import send_command

USER_SOURCES = [0, abi.UPCALL_SOURCE_RESERVED_MAX + 1, abi.UPCALL_SOURCE_MAX]
RESERVED = [abi.UPCALL_SOURCE_TIMER, abi.UPCALL_SOURCE_EDU, 0x100, abi.UPCALL_SOURCE_RESERVED_MAX]


def netlink_emit(value: int, source: int) -> None:
    send_command(
        abi.UPCALL_CMD_EMIT, [("UPCALL_ATTR_VALUE", value), ("UPCALL_ATTR_SOURCE", source)]
    )


# -- the version query ------------------------------------------------------------------


@pytest.mark.parametrize("mode", [os.O_RDONLY, os.O_WRONLY, os.O_RDWR])
def test_version_query_answers_every_open_file(mode: int) -> None:
    fd = os.open("/dev/upcall", mode)
    try:
        version = abi.UpcallVersion()
        version.flags = 0xFFFF  # the module fills every field
        assert ioctl(fd, abi.UPCALL_IOC_VERSION, version) == 0
    finally:
        os.close(fd)
    module = version.module.decode()
    # flags: UPCALL_VERSION_UNSUBSCRIBE, the one addition to ABI 1.
    assert (version.abi, version.flags, list(version.reserved)) == (
        1,
        abi.UPCALL_VERSION_UNSUBSCRIBE,
        [0] * 6,
    )
    assert module == upcall.__version__ == Path("/sys/module/upcall/version").read_text().strip()


def test_version_query_with_a_bad_pointer_is_efault() -> None:
    fd = os.open("/dev/upcall", os.O_RDONLY)
    try:
        assert ioctl(fd, abi.UPCALL_IOC_VERSION, 8) == -errno.EFAULT
    finally:
        os.close(fd)


def test_device_knows_the_module_version(dev: upcall.Device) -> None:
    assert (dev.abi_version, dev.module_version) == (abi.UPCALL_ABI_VERSION, upcall.__version__)


# -- reserved source ids ----------------------------------------------------------------


@pytest.mark.parametrize("source", RESERVED)
def test_user_space_cannot_emit_as_upcall(dev: upcall.Device, source: int) -> None:
    with dev.subscribe("queue") as sub:
        req = abi.UpcallEmit(value=1, source=source)
        assert ioctl(dev.fileno(), abi.UPCALL_IOC_EMIT, req) == -errno.EINVAL
        with pytest.raises(OSError) as e:
            send_command(
                abi.UPCALL_CMD_EMIT, [("UPCALL_ATTR_VALUE", 1), ("UPCALL_ATTR_SOURCE", source)]
            )
        assert e.value.errno == errno.EINVAL
        with pytest.raises(ValueError, match="reserved for upcall's own sources"):
            dev.emit(1, source=source)
        assert sub.stats().emitted == 0, "a refused emit reached a subscriber"


@pytest.mark.parametrize("source", USER_SOURCES)
def test_user_space_emits_outside_the_reserved_range(dev: upcall.Device, source: int) -> None:
    with dev.subscribe("queue") as sub:
        assert dev.emit(5, source=source) == 1
        send_command(
            abi.UPCALL_CMD_EMIT, [("UPCALL_ATTR_VALUE", 6), ("UPCALL_ATTR_SOURCE", source)]
        )
        events = sub.read(2, timeout=30)
        while len(events) < 2:
            events += sub.read(2 - len(events), timeout=30)
    assert [(e.value, e.source) for e in events] == [(5, source), (6, source)]


# -- the source filter ------------------------------------------------------------------


def raw_subscribe(fd: int, **fields: int) -> int:
    return ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, abi.UpcallSubscribe(**fields))


@pytest.mark.parametrize(
    "fields",
    [
        # first after last; last past the largest id
        {"flags": abi.UPCALL_SUBSCRIBE_SOURCES, "source_first": 9, "source_last": 8},
        {"flags": abi.UPCALL_SUBSCRIBE_SOURCES, "source_last": abi.UPCALL_SOURCE_MAX + 1},
        # the fields without the flag; the last reserved word
        {"source_last": 5},
        {"source_first": 5, "source_last": 5},
        {"reserved": 1},
    ],
)
def test_bad_source_filters_are_einval(fields: dict[str, int]) -> None:
    fd = os.open("/dev/upcall", os.O_RDONLY)
    try:
        assert raw_subscribe(fd, transport=abi.UPCALL_TRANSPORT_QUEUE, **fields) == -errno.EINVAL
        st = stats(fd)
        assert (st.transport, st.queue_size) == (abi.UPCALL_TRANSPORT_NONE, 0)
    finally:
        os.close(fd)


@pytest.mark.parametrize("via", ["queue", "signal", "netlink"])
def test_a_flood_of_one_source_drops_nothing_of_another(dev: upcall.Device, via: str) -> None:
    """The filtered subscriber's queue holds 4; another source floods it 64 times over."""
    quiet, loud = 0x300, 0x400
    with (
        dev.subscribe(via, queue_size=4, sources=quiet) as mine,
        dev.subscribe("queue", queue_size=4) as everyone,
    ):
        for i in range(256):
            assert dev.emit(i, source=loud) == 1, "the filtered subscriber took a loud event"
            if i % 100 == 0:
                assert dev.emit(1000 + i, source=quiet) == 2
        events = mine.read(3, timeout=30)
        while len(events) < 3:
            events += mine.read(3 - len(events), timeout=30)
        st, other = mine.stats(), everyone.stats()
    assert [(e.seqno, e.value, e.source) for e in events] == [
        (1, 1000, quiet),
        (2, 1100, quiet),
        (3, 1200, quiet),
    ]
    assert (st.emitted, st.delivered, st.dropped) == (3, 3, 0)
    # The unfiltered one saw all 259 and kept the 4 newest.
    assert (other.emitted, other.dropped, other.queued) == (259, 255, 4)


def test_a_range_of_sources(dev: upcall.Device) -> None:
    first, last = 0x500, 0x502
    with dev.subscribe("queue", sources=range(first, last + 1)) as sub:
        for source in (first - 1, first, last, last + 1, 0):
            dev.emit(source, source=source)
        events = sub.read(10, timeout=30)
        while len(events) < 2:
            events += sub.read(10, timeout=30)
        assert sub.stats().emitted == 2
    assert [(e.seqno, e.source) for e in events] == [(1, first), (2, last)]


def test_the_kernel_sources_pass_a_filter_for_them(dev: upcall.Device) -> None:
    """upcall's own timer (source 1) reaches a subscriber filtered to it, user emits do not."""
    hz = TIMER_HZ
    with dev.subscribe("queue", sources=abi.UPCALL_SOURCE_TIMER) as sub:
        dev.emit(7)
        hz.write_text("1000")
        try:
            events = sub.read(3, timeout=60)
            while len(events) < 3:
                events += sub.read(3 - len(events), timeout=60)
        finally:
            hz.write_text("0")
    assert {e.source for e in events} == {abi.UPCALL_SOURCE_TIMER}
    assert events[0].seqno == 1


@pytest.mark.parametrize(
    ("sources", "error"),
    [(range(5, 1), ValueError), (range(0, 10, 2), ValueError), (-1, ValueError),
     (abi.UPCALL_SOURCE_MAX + 1, ValueError), ("edu", TypeError)],
)  # fmt: skip
def test_the_library_checks_sources(
    dev: upcall.Device, sources: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        dev.subscribe("queue", sources=sources)  # type: ignore[call-overload]
