"""Allocation failure: every allocation on the module's paths fails in turn.

Debug kernel only (CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC,
CONFIG_FAULT_INJECTION_DEBUG_FS); the stock kernel has no fault injection,
and `make test` always runs the debug pass, which runs these.

Paths that run in the caller's task (open, SUBSCRIBE, SET_EVENTFD, EMIT) are
swept with /proc/thread-self/fail-nth: the call is made with its 1st, then
2nd, ... fallible allocation failing (failslab and fail_page_alloc both
count), until a call passes them all. Each failure must be -ENOMEM and leave
the subscriber as it was. Delivery (signals, netlink messages) allocates with
GFP_ATOMIC in irq_work, outside any task, so there failslab is aimed at the
one cache that allocation uses (cache-filter) for a few allocations; each
failure must be a counted drop. After each, the module does a normal round
trip; kmemleak (scanned by the harness after the suite) finds no leak.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from accounting import check_accounting, drain
from figures import figure
from guest import DEBUG_KERNEL as DEBUG
from rawioctl import ioctl, stats

import upcall
from upcall import abi

DEBUGFS = Path("/sys/kernel/debug")
FAILSLAB = DEBUGFS / "failslab"
FAIL_PAGE = DEBUGFS / "fail_page_alloc"
SIG = signal.SIGRTMIN + 11

pytestmark = pytest.mark.skipif(
    not (DEBUG or FAILSLAB.exists()),
    reason="fault injection (failslab, fail_page_alloc) is built only into the debug "
    "kernel; make test's debug pass runs these",
)


def knob(path: Path, value: str) -> None:
    path.write_text(value)


@pytest.fixture
def injection() -> Iterator[None]:
    """Both injectors armed for fail-nth only, quiet; restored afterwards."""
    if not DEBUGFS.joinpath("failslab").exists():
        os.system("mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug")
    assert FAILSLAB.exists() and FAIL_PAGE.exists(), "debug kernel without fault injection?"
    common = {"verbose": "0", "probability": "0", "interval": "1", "times": "-1",
              "space": "0", "task-filter": "N", "ignore-gfp-wait": "N"}  # fmt: skip
    settings = {
        FAILSLAB: {**common, "cache-filter": "N"},
        # min-order 1: user page faults (order 0) never fail under the test.
        FAIL_PAGE: {**common, "ignore-gfp-highmem": "Y", "min-order": "1"},
    }
    saved = {d: {k: (d / k).read_text().strip() for k in kv} for d, kv in settings.items()}
    try:
        for d, kv in settings.items():
            for k, v in kv.items():
                knob(d / k, v)
        yield
    finally:
        for d, kv in saved.items():
            for k, v in kv.items():
                knob(d / k, v)


def sweep(
    prepare: Callable[[], int],
    call: Callable[[int], int],
    cleanup: Callable[[int, int], None],
    limit: int = 200,
) -> tuple[list[int], int]:
    """Fail the 1st, 2nd, ... fallible allocation of ``call`` in turn.

    ``prepare`` makes its argument (outside the injection), ``cleanup`` gets
    the argument and the result. Returns the results of the calls that had
    an allocation failed (a success there means the failure was absorbed: on
    the debug kernel kmemleak's own allocations count too, and fall back to
    its pool) and
    the result of the first call that passed all its allocations.
    """
    failed: list[int] = []
    nth = os.open("/proc/thread-self/fail-nth", os.O_RDWR)
    try:
        arg = prepare()  # once untouched: Python's own first-time costs
        cleanup(arg, call(arg))
        for n in range(1, limit):
            arg = prepare()
            os.pwrite(nth, str(n).encode(), 0)
            ret = call(arg)
            left = int(os.pread(nth, 32, 0) or b"0")
            os.pwrite(nth, b"0", 0)
            cleanup(arg, ret)
            if left:  # the call made fewer than n: nothing was failed
                return failed, ret
            failed.append(ret)
        raise AssertionError(f"still failing allocations after {limit}: {failed}")
    finally:
        os.pwrite(nth, b"0", 0)
        os.close(nth)


def raw_open(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError as e:
        return -(e.errno or 0)


def close_result(_: int, ret: int) -> None:
    if ret >= 0:
        os.close(ret)


def round_trip(dev: upcall.Device) -> None:
    with dev.subscribe("queue") as sub:
        assert dev.emit(4242, source=9) >= 1
        [ev] = sub.read(1, timeout=30)
        assert (ev.value, ev.source) == (4242, 9)


@pytest.mark.usefixtures("injection")
def test_open_fails_cleanly(dev: upcall.Device) -> None:
    null_results, _ = sweep(lambda: 0, lambda _: raw_open("/dev/null"), close_result)
    results, final = sweep(lambda: 0, lambda _: raw_open("/dev/upcall"), close_result)
    assert final >= 0
    assert all(r >= 0 or r == -errno.ENOMEM for r in results), results
    failed = [r for r in results if r < 0]
    null_failed = [r for r in null_results if r < 0]
    # The VFS's own allocations, and then at least one of the module's
    # (subscriber, queue): the injection reaches upcall's open. The debug
    # kernel showed one -ENOMEM more than /dev/null, not two: why the second
    # point is absorbed is an open question (see issue 6's note).
    assert len(failed) >= len(null_failed) + 1, (failed, null_failed, results)
    assert dev.emit(1) == 0, "a failed open left a subscriber behind"
    round_trip(dev)
    figure(
        f"allocation failure: open: {len(results)} allocations failed in turn, {len(failed)} "
        f"made it fail ({len(failed) - len(null_failed)} more than /dev/null's), all -ENOMEM, "
        f"the rest absorbed; no subscriber left behind, module healthy"
    )


@pytest.mark.usefixtures("injection")
@pytest.mark.parametrize("transport", ["queue", "signal", "netlink"])
def test_subscribe_with_a_big_queue_fails_cleanly(dev: upcall.Device, transport: str) -> None:
    """A re-subscription to a 65536-event queue (3 MiB): each failure leaves it as it was."""
    t = getattr(abi, f"UPCALL_TRANSPORT_{transport.upper()}")
    big = abi.UpcallSubscribe(
        transport=t, signo=SIG if transport == "signal" else 0, queue_size=abi.UPCALL_QUEUE_MAX
    )
    small = abi.UpcallSubscribe(transport=abi.UPCALL_TRANSPORT_QUEUE, queue_size=16)

    def prepare() -> int:
        fd = os.open("/dev/upcall", os.O_RDONLY | os.O_NONBLOCK)
        assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, small) == 0
        assert dev.emit(5) >= 1
        return fd

    def cleanup(fd: int, ret: int) -> None:
        st = stats(fd)
        if ret == 0:
            assert (st.transport, st.queue_size, st.dropped) == (t, abi.UPCALL_QUEUE_MAX, 1)
        else:  # as before the call: its queue, its event
            assert (st.transport, st.queue_size, st.queued, st.dropped) == (
                abi.UPCALL_TRANSPORT_QUEUE,
                16,
                1,
                0,
            )
            assert len(os.read(fd, 4 * abi.UPCALL_EVENT_SIZE)) == abi.UPCALL_EVENT_SIZE
        os.close(fd)

    signal.pthread_sigmask(signal.SIG_BLOCK, {SIG})
    try:
        resub = lambda fd: ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, big)  # noqa: E731
        results, final = sweep(prepare, resub, cleanup)
    finally:
        while signal.sigtimedwait({SIG}, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {SIG})
    assert final == 0
    failed = [r for r in results if r < 0]
    assert failed and set(failed) == {-errno.ENOMEM}, results
    round_trip(dev)
    figure(
        f"allocation failure: SUBSCRIBE {transport} with queue_size 65536: {len(failed)} "
        f"allocation point(s), each -ENOMEM with the old queue and its events intact"
    )


@pytest.mark.usefixtures("injection")
def test_set_eventfd_and_emit_allocate_nothing(dev: upcall.Device) -> None:
    """The eventfd hand-over takes a reference; EMIT only fills queues: nothing can fail."""
    fd = os.open("/dev/upcall", os.O_RDWR | os.O_NONBLOCK)
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        q = abi.UpcallSubscribe(transport=abi.UPCALL_TRANSPORT_QUEUE)
        assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, q) == 0
        setfd = abi.UpcallEventfd(fd=efd)
        results, final = sweep(
            lambda: fd, lambda f: ioctl(f, abi.UPCALL_IOC_SET_EVENTFD, setfd), lambda f, r: None
        )
        assert final == 0 and all(r == 0 for r in results), results
        points = len(results)
        emit = abi.UpcallEmit(value=3)
        results, final = sweep(
            lambda: fd, lambda f: ioctl(f, abi.UPCALL_IOC_EMIT, emit), lambda f, r: None
        )
        assert final == 1 and all(r == 1 for r in results), results
        points += len(results)
        st = stats(fd)
        # The warm-up emit, one per point, the final one: every one queued.
        assert (st.emitted, st.dropped) == (2 + len(results), 0)
    finally:
        os.close(efd)
        os.close(fd)
    round_trip(dev)
    figure(
        f"allocation failure: SET_EVENTFD and EMIT: {points} allocation points in the caller, "
        "none can fail the call; delivery is tested below"
    )


@contextlib.contextmanager
def failing(cache: str, times: int) -> Iterator[str]:
    """failslab for the next ``times`` allocations from ``cache``, by anyone.

    A cache merged with others cannot be singled out: then any atomic slab
    allocation may fail (ignore-gfp-wait), briefly. Yields which was armed.
    """
    flag = Path(f"/sys/kernel/slab/{cache}/failslab")
    try:
        knob(flag, "1")
        filters = {"cache-filter": "Y"}
        armed = f"cache {cache}"
    except OSError:
        filters = {"ignore-gfp-wait": "Y"}
        armed = f"any atomic slab allocation ({cache} is merged)"
    try:
        for k, v in filters.items():
            knob(FAILSLAB / k, v)
        knob(FAILSLAB / "times", str(times))
        knob(FAILSLAB / "probability", "100")
        yield armed
    finally:
        knob(FAILSLAB / "probability", "0")
        knob(FAILSLAB / "times", "-1")
        knob(FAILSLAB / "cache-filter", "N")
        knob(FAILSLAB / "ignore-gfp-wait", "N")
        if armed.startswith("cache"):
            knob(flag, "0")


@pytest.mark.usefixtures("injection")
@pytest.mark.parametrize(
    ("via", "cache"), [("netlink", "skbuff_head_cache"), ("signal", "sigqueue")]
)
def test_delivery_allocation_failure_is_counted_loss(
    dev: upcall.Device, via: str, cache: str
) -> None:
    times, n = 5, 20
    with dev.subscribe(via) as sub:
        events: list[upcall.Event] = []
        with failing(cache, times) as armed:
            for i in range(n):
                dev.emit(i)
            deadline = time.monotonic() + 30
            while sub.stats().pending:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        drain(sub, events)
        st = check_accounting(sub, events)
        assert st.emitted == n and st.dropped <= times
        if armed.startswith("cache"):
            assert st.dropped >= 1, "no allocation of the armed cache failed"
        dev.emit(n)
        events += sub.read(1, timeout=30)
        assert events[-1].value == n  # and the next one is delivered
        check_accounting(sub, events)
    round_trip(dev)
    figure(
        f"allocation failure: {via} delivery with failslab on {armed} for {times} "
        f"allocations: {st.dropped} of {n} events dropped and counted, no leak"
    )
