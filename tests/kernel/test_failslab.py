"""Allocation failure: every allocation on the module's paths fails in turn.

Debug kernel only (CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC,
CONFIG_FAULT_INJECTION_DEBUG_FS); the stock kernel has no fault injection,
and `make test` always runs the debug pass, which runs these.

Paths that run in the caller's task (open, SUBSCRIBE, SET_EVENTFD, EMIT) are
swept with /proc/thread-self/fail-nth: the call is made with its 1st, then
2nd, ... fallible allocation failing (failslab and fail_page_alloc both
count), until a call passes them all. Each failure must be -ENOMEM and leave
the subscriber as it was. Delivery runs outside the caller's task: signals
allocate with GFP_ATOMIC in irq_work, so failslab is aimed at their cache
(cache-filter; the harness boots the debug kernel with slub_debug=A,sigqueue,
which marks it); netlink messages are built with GFP_KERNEL by a work item on
the high-priority workqueue, so failslab is aimed at those workers
(task-filter). Each failure must be a counted drop. After each, the module does a normal round
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


@contextlib.contextmanager
def every_allocation_failing() -> Iterator[None]:
    """Every slab allocation, and every page allocation of order 1 or more,
    of this thread fails (task-filter, make-it-fail) while inside.

    fail-nth fails one allocation, which a fallback may absorb: the queue is
    kvmalloc'ed, so a failed contiguous allocation falls back to vmalloc.
    This fails the fallback's allocations too, so the caller's -ENOMEM path
    runs.
    """
    me = os.open("/proc/thread-self/make-it-fail", os.O_WRONLY)
    try:
        for d in (FAILSLAB, FAIL_PAGE):
            knob(d / "task-filter", "Y")
            knob(d / "probability", "100")
        os.pwrite(me, b"1", 0)
        try:
            yield
        finally:
            os.pwrite(me, b"0", 0)
    finally:
        for d in (FAILSLAB, FAIL_PAGE):
            knob(d / "probability", "0")
            knob(d / "task-filter", "N")
        os.close(me)


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
        assert dev.emit(4242, source=0x209) >= 1
        [ev] = sub.read(1, timeout=30)
        assert (ev.value, ev.source) == (4242, 0x209)


@pytest.mark.usefixtures("injection")
def test_open_fails_cleanly(dev: upcall.Device) -> None:
    # The VFS's own points: the fewest failures of three sweeps of /dev/null.
    vfs = min(
        sum(r < 0 for r in sweep(lambda: 0, lambda _: raw_open("/dev/null"), close_result)[0])
        for _ in range(3)
    )
    # Beyond the VFS's own allocations, the module's one: the subscriber
    # (slab; its queue comes with the first SUBSCRIBE). fail-nth counts
    # every injection point the task passes, the debug kernel's bookkeeping
    # too: kmemleak's metadata after each allocation (absorbed by its pool:
    # the even points) and, now and then, a page for KASAN's stack depot.
    # When that one takes a number within a call, the numbering shifts by
    # one and a module point goes untried in that sweep (a second sweep
    # tries it); other rare points of the kernel's own can add a failure,
    # to either sweep.
    sweeps = 0
    while sweeps < 3:
        sweeps += 1
        results, final = sweep(lambda: 0, lambda _: raw_open("/dev/upcall"), close_result)
        assert final >= 0
        assert all(r >= 0 or r == -errno.ENOMEM for r in results), results
        failed = [r for r in results if r < 0]
        if len(failed) >= vfs + 1:
            break
    assert len(failed) >= vfs + 1, (failed, vfs, results, sweeps)
    assert dev.emit(1) == 0, "a failed open left a subscriber behind"
    round_trip(dev)
    figure(
        f"allocation failure: open: {len(results)} allocations failed in turn, {len(failed)} "
        f"made it fail ({len(failed) - vfs} more than /dev/null's: at least the "
        f"module's subscriber), all -ENOMEM, the rest absorbed; no subscriber left "
        f"behind, module healthy ({sweeps} sweep(s))"
    )


def sweep_subscribe(
    req: abi.UpcallSubscribe,
    prepare: Callable[[], int],
    cleanup: Callable[[int, int], None],
) -> tuple[list[int], list[int]]:
    """SUBSCRIBE ``req`` with each allocation failing in turn, then with all failing.

    The signal is blocked meanwhile and what it queued drained. Checks the
    results: every failure the call saw is -ENOMEM (a failed contiguous
    queue falls back to vmalloc, so single failures may all be absorbed), the
    last call passed, and with every allocation failing the call is -ENOMEM.
    Returns the swept results and the failures among them.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {SIG})
    try:
        results, final = sweep(
            prepare, lambda fd: ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, req), cleanup
        )
        # Every allocation failing: the fallback cannot absorb it.
        fd = prepare()
        with every_allocation_failing():
            none_left = ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, req)
        cleanup(fd, none_left)
    finally:
        while signal.sigtimedwait({SIG}, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {SIG})
    assert final == 0
    failed = [r for r in results if r < 0]
    assert results and set(failed) <= {-errno.ENOMEM}, results
    assert none_left == -errno.ENOMEM
    return results, failed


@pytest.mark.usefixtures("injection")
@pytest.mark.parametrize("transport", ["queue", "signal", "netlink"])
def test_first_subscribe_fails_cleanly(dev: upcall.Device, transport: str) -> None:
    """The first SUBSCRIBE allocates the queue: each failure leaves the file unsubscribed."""
    t = getattr(abi, f"UPCALL_TRANSPORT_{transport.upper()}")
    req = abi.UpcallSubscribe(transport=t, signo=SIG if transport == "signal" else 0)

    def prepare() -> int:
        return os.open("/dev/upcall", os.O_RDONLY | os.O_NONBLOCK)

    def cleanup(fd: int, ret: int) -> None:
        st = stats(fd)
        if ret == 0:
            assert (st.transport, st.queue_size) == (t, abi.UPCALL_QUEUE_DEFAULT)
        else:  # as it was: no transport, no queue, not counted by emitters
            assert (st.transport, st.queue_size, st.emitted) == (abi.UPCALL_TRANSPORT_NONE, 0, 0)
            assert dev.emit(6) == 0, "an unsubscribed file was given an event"
        os.close(fd)

    results, failed = sweep_subscribe(req, prepare, cleanup)
    round_trip(dev)
    figure(
        f"allocation failure: first SUBSCRIBE {transport}: {len(results)} allocation point(s) "
        f"failed in turn, {len(failed)} made it fail (-ENOMEM), the rest absorbed; with every "
        f"allocation failing -ENOMEM; each failure left the file unsubscribed"
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

    results, failed = sweep_subscribe(big, prepare, cleanup)
    round_trip(dev)
    figure(
        f"allocation failure: SUBSCRIBE {transport} with queue_size 65536: {len(results)} "
        f"allocation point(s) failed in turn, {len(failed)} made it fail, the rest absorbed; "
        f"with every allocation failing -ENOMEM; each failure left the old queue and its "
        f"events intact"
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


def highpri_kworkers() -> list[Path]:
    """/proc entries of the high-priority workqueue's workers ("kworker/0:1H")."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            comm = (proc / "comm").read_text().strip() if proc.name.isdigit() else ""
        except OSError:  # exited meanwhile
            continue
        # While running a work item the name gains "-<workqueue>".
        if comm.startswith("kworker/") and comm.split("-")[0].endswith("H"):
            found.append(proc)
    return found


def mark(procs: list[Path], value: str) -> None:
    for proc in procs:
        with contextlib.suppress(OSError):  # a worker may exit
            knob(proc / "make-it-fail", value)


@contextlib.contextmanager
def armed(only: str, times: int) -> Iterator[None]:
    """failslab on for the next ``times`` allocations that pass filter ``only``; off after."""
    try:
        knob(FAILSLAB / only, "Y")
        knob(FAILSLAB / "times", str(times))
        knob(FAILSLAB / "probability", "100")
        yield
    finally:
        knob(FAILSLAB / "probability", "0")
        knob(FAILSLAB / "times", "-1")
        knob(FAILSLAB / only, "N")


@contextlib.contextmanager
def failing_in_kworkers(times: int) -> Iterator[Callable[[], None]]:
    """failslab for the next ``times`` slab allocations of the high-priority workers.

    The netlink send allocates with GFP_KERNEL in a work item on
    system_highpri_wq: no fail-nth (that is per task, and only the task
    itself may write it) and no cache filter (skbuff_head_cache is merged)
    reaches it, but task-filter does: only tasks whose make-it-fail is set
    fail. Yields a function that marks workers started since.
    """
    marked: list[Path] = []

    def remark() -> None:
        new = [p for p in highpri_kworkers() if p not in marked]
        mark(new, "1")
        marked.extend(new)

    try:
        remark()
        with armed("task-filter", times):
            yield remark
    finally:
        mark(marked, "0")


@contextlib.contextmanager
def failing_in_cache(cache: str, times: int) -> Iterator[Callable[[], None]]:
    """failslab for the next ``times`` allocations from ``cache``, by anyone."""
    flag = Path(f"/sys/kernel/slab/{cache}/failslab").read_text().strip()
    assert flag == "1", f"{cache} is not marked for failslab: boot with slub_debug=A,{cache}"
    with armed("cache-filter", times):
        yield lambda: None  # no workers to mark


@pytest.mark.usefixtures("injection")
@pytest.mark.parametrize("via", ["netlink", "signal"])
def test_delivery_allocation_failure_is_counted_loss(dev: upcall.Device, via: str) -> None:
    """Delivery fails ``times`` allocations: each is a counted drop, nothing else is lost."""
    times, most = 5, 200
    # Signals allocate their sigqueue in the irq_work (any CPU, atomic): aim
    # at that cache. Netlink sends from the high-priority workers.
    armed, aimed = (
        ("the high-priority kworkers (task-filter)", failing_in_kworkers(times))
        if via == "netlink"
        else ("cache sigqueue (cache-filter)", failing_in_cache("sigqueue", times))
    )
    with dev.subscribe(via) as sub:
        events: list[upcall.Event] = []
        with aimed as remark:
            # One event at a time until the armed failures are used up (a
            # worker started after the marking would be missed: mark again).
            sent = 0
            while sent < most and int((FAILSLAB / "times").read_text()) > 0:
                if sent % 10 == 0:
                    remark()
                dev.emit(sent)
                sent += 1
                deadline = time.monotonic() + 30
                while sub.stats().pending:
                    assert time.monotonic() < deadline, "delivery stalled"
                    time.sleep(0.001)
                events += sub.read(16, timeout=0)
        drain(sub, events)
        st = check_accounting(sub, events)
        assert st.emitted == sent
        assert 1 <= st.dropped <= times, f"no {via} delivery allocation failed in {sent} events"
        dev.emit(sent)
        events += sub.read(1, timeout=30)
        assert events[-1].value == sent  # and the next one is delivered
        check_accounting(sub, events)
    round_trip(dev)
    figure(
        f"allocation failure: {via} delivery with failslab on {armed}: "
        f"{st.dropped} of {sent} events dropped and counted, the next one delivered, no leak"
    )
