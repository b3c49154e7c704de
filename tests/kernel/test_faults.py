"""Faults under load: killed emitters, a closed eventfd, a reader that never reads,
RLIMIT_SIGPENDING at 1, the edu device unbound under interrupts, a reused pid.

Each test checks the books of the subscribers that survive (delivered +
dropped == emitted, the seqno gaps are the drops), that the module still
does a normal round trip, and prints its figure on a line starting with
"FIGURE:" for RELIABILITY.md.
"""

from __future__ import annotations

import ctypes
import errno
import os
import random
import select
import signal
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from accounting import check_accounting, check_seqnos, drain, settle
from figures import figure
from guest import REDUCED
from load import kill_all, spawn_emitter
from rawioctl import ioctl, stats, subscribe

import upcall
from upcall import abi
from upcall._edu import DRIVER, find_device
from upcall._edu import sysfs_write as write
from upcall._transports import netlink

SIG = signal.SIGRTMIN + 7
NOBODY = 65534


def round_trip(dev: upcall.Device) -> None:
    with dev.subscribe("queue") as sub:
        assert dev.emit(4242, source=0x209) >= 1
        [ev] = sub.read(1, timeout=30)
        assert (ev.seqno, ev.value, ev.source) == (1, 4242, 0x209)


def read_records(fd: int) -> list[int]:
    """Seqnos of every record queued on a non-blocking QUEUE file, read now."""
    seqnos: list[int] = []
    while True:
        try:
            data = os.read(fd, 256 * abi.UPCALL_EVENT_SIZE)
        except BlockingIOError:
            return seqnos
        seqnos += [
            abi.EVENT_RECORD.unpack_from(data, off)[0]
            for off in range(0, len(data), abi.UPCALL_EVENT_SIZE)
        ]


def test_emitters_killed_mid_ioctl(dev: upcall.Device) -> None:
    """Four emitters SIGKILLed at random moments; the subscriber's books stay exact."""
    rng = random.Random(6)  # fixed: a failure reproduces
    n_emitters = 4
    with dev.subscribe("queue", queue_size=abi.UPCALL_QUEUE_MAX) as sub:
        pids = [spawn_emitter(first=k << 32) for k in range(n_emitters)]
        kill_at = sorted(rng.uniform(0.3, 3.0) for _ in pids)
        events: list[upcall.Event] = []
        start = time.monotonic()
        while pids:
            events += sub.read(4096, timeout=0.02)
            if time.monotonic() - start >= kill_at[0]:
                kill_at.pop(0)
                kill_all([pids.pop(rng.randrange(len(pids)))])
        drain(sub, events)
        st = check_accounting(sub, events)
    # Each emitter's events arrive in its order; without drops, none is missing.
    per_emitter = {
        k: [e.value & 0xFFFFFFFF for e in events if e.value >> 32 == k] for k in range(n_emitters)
    }
    for k, values in per_emitter.items():
        assert values == sorted(set(values)), f"emitter {k} out of order"
        if st.dropped == 0:
            assert values == list(range(len(values))), f"emitter {k} has a hole"
    assert all(per_emitter.values()), "an emitter was killed before it emitted"
    round_trip(dev)
    figure(
        f"faults: {n_emitters} emitters SIGKILLed mid-stream: emitted {st.emitted} "
        f"delivered {st.delivered} dropped {st.dropped} (exact)"
    )


def test_eventfd_closed_while_the_module_holds_it(dev: upcall.Device) -> None:
    """The user closes its only eventfd descriptor mid-stream: the module's reference
    keeps the eventfd alive until SET_EVENTFD replaces it or the file closes."""
    n = 2_000 if REDUCED else 20_000
    fd = os.open("/dev/upcall", os.O_RDONLY | os.O_NONBLOCK)
    seqnos: list[int] = []
    try:
        req = abi.UpcallSubscribe(
            transport=abi.UPCALL_TRANSPORT_QUEUE, queue_size=abi.UPCALL_QUEUE_MAX
        )
        assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, req) == 0
        efd = os.eventfd(0, os.EFD_NONBLOCK)
        assert ioctl(fd, abi.UPCALL_IOC_SET_EVENTFD, abi.UpcallEventfd(fd=efd)) == 0
        pid = spawn_emitter(n)
        assert select.select([efd], [], [], 30)[0] == [efd]
        os.close(efd)  # the module's is now the only reference
        while not os.waitpid(pid, os.WNOHANG)[0]:
            seqnos += read_records(fd)
            time.sleep(0.01)
        # The replacement releases the old eventfd; the new one is told.
        efd2 = os.eventfd(0, os.EFD_NONBLOCK)
        assert ioctl(fd, abi.UPCALL_IOC_SET_EVENTFD, abi.UpcallEventfd(fd=efd2)) == 0
        assert dev.emit(7) >= 1
        assert select.select([efd2], [], [], 30)[0] == [efd2]
        os.close(efd2)  # and this one goes with the file, below
        assert dev.emit(8) >= 1
        deadline = time.monotonic() + 30
        while (st := stats(fd)).pending or len(seqnos) < st.delivered:
            assert time.monotonic() < deadline, st
            seqnos += read_records(fd)
        check_seqnos(st, seqnos)
        assert st.emitted == n + 2
    finally:
        os.close(fd)
    round_trip(dev)
    figure(
        f"faults: eventfd closed by its user mid-stream: emitted {st.emitted} "
        f"delivered {st.delivered} dropped {st.dropped}; replaced and released cleanly"
    )


def test_netlink_receiver_that_never_reads(dev: upcall.Device) -> None:
    """A netlink subscriber with a tiny buffer that never reads loses events, counted.

    Each netlink subscriber here has its own socket (UPCALL_SUBSCRIBE_UNICAST,
    the library's default), so the stuck one's overflow is its own: its books
    are checked exactly, and so are those of the reading netlink subscriber
    (it received what was counted delivered) and of a QUEUE subscriber, which
    lose nothing by it; a raw member of the multicast group with a tiny
    buffer, told of no overflow, is a bystander of no subscriber's.
    """
    n = 300
    family = netlink.resolve_family()
    bystander = netlink.open_event_socket(family, rcvbuf=1)
    # Without NETLINK_BROADCAST_ERROR its overflow is nobody's business.
    bystander.setsockopt(270, 4, 0)  # SOL_NETLINK, NETLINK_BROADCAST_ERROR
    try:
        with (
            dev.subscribe("netlink", rcvbuf=1) as stuck,
            dev.subscribe("netlink") as reader,
            dev.subscribe("queue") as witness,
        ):
            got_reader: list[upcall.Event] = []
            got_witness: list[upcall.Event] = []
            for i in range(n):
                dev.emit(i)
                got_reader += reader.read(256, timeout=0)
                got_witness += witness.read(256, timeout=0)
            drain(reader, got_reader)
            drain(witness, got_witness)
            st_stuck = settle(stuck)  # before it ever reads
            assert st_stuck.emitted == n and st_stuck.dropped > 0
            assert st_stuck.delivered + st_stuck.dropped == n
            got_stuck: list[upcall.Event] = []
            drain(stuck, got_stuck)
            check_accounting(stuck, got_stuck)

            st_w = check_accounting(witness, got_witness)
            assert (st_w.emitted, st_w.dropped, len(got_witness)) == (n, 0, n)

            st_r = settle(reader)
            assert st_r.delivered + st_r.dropped == st_r.emitted == n
            seqnos = [e.seqno for e in got_reader]
            assert seqnos == sorted(set(seqnos)) and set(seqnos) <= set(range(1, n + 1))
            assert len(got_reader) == st_r.delivered
    finally:
        bystander.close()
    round_trip(dev)
    figure(
        f"faults: netlink receiver that never reads (rcvbuf 1): {st_stuck.dropped} of {n} "
        f"dropped and counted; queue subscriber 0 dropped; reading netlink subscriber "
        f"received {len(got_reader)} of {n}, counted {st_r.dropped} dropped"
    )


def test_rlimit_sigpending_at_one(dev: upcall.Device) -> None:
    """With RLIMIT_SIGPENDING 1, one signal waits and every other is an exact, counted drop.

    The child subscribes as root and then becomes nobody, so that the pending
    count is nobody's alone (the limit counts a user's signals, not a process's).
    """
    n = 50
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, {SIG})
            fd = os.open("/dev/upcall", os.O_RDONLY)
            assert subscribe(fd, SIG) == 0
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            import resource

            resource.setrlimit(resource.RLIMIT_SIGPENDING, (1, 1))
            os.write(from_child_w, b"r")
            for _ in range(2):  # two rounds: n events, then one more
                assert os.read(to_child_r, 1) == b"e"
                deadline = time.monotonic() + 30
                while stats(fd).pending:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
                got = []
                while (info := signal.sigtimedwait({SIG}, 0)) is not None:
                    got.append(info.si_errno)
                st = stats(fd)
                os.write(
                    from_child_w,
                    struct.pack("=4Q", st.delivered, st.dropped, len(got), got[0] if got else 0),
                )
            code = 0
        finally:
            os._exit(code)
    # Only the child writes here: its death ends our reads instead of hanging them.
    os.close(from_child_w)
    os.close(to_child_r)
    try:
        assert os.read(from_child_r, 1) == b"r"
        results = []
        for count in (n, 1):
            for i in range(count):
                dev.emit(i)
            os.write(to_child_w, b"e")
            results.append(struct.unpack("=4Q", os.read(from_child_r, 32)))
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(to_child_w)
        os.close(from_child_r)
    # Round one: seqno 1 queued, 2..n refused by the limit; round two: n+1 queued.
    assert results == [(1, n - 1, 1, 1), (2, n - 1, 1, n + 1)]
    figure(
        f"faults: RLIMIT_SIGPENDING 1, {n} signals: 1 delivered, {n - 1} dropped and "
        f"counted exactly; the next one after reading delivered"
    )


@pytest.fixture
def edu() -> Iterator[str]:
    dev = find_device()
    if dev is None:
        pytest.skip("no edu device: boot with `python -m upcall_dev vm --edu` (make test does)")
    yield dev.name
    if not (DRIVER / dev.name).exists():
        write(DRIVER / "bind", dev.name)


def test_edu_unbind_rebind_under_interrupts(dev: upcall.Device, edu: str) -> None:
    """Interrupts raised in a loop while the driver is unbound and bound again."""
    cycles = 3 if REDUCED else 10
    raise_path = Path(f"/sys/bus/pci/devices/{edu}/raise")
    counts = {"ok": 0, "refused": 0}
    stop = threading.Event()

    def raiser() -> None:
        while not stop.is_set():
            try:
                write(raise_path, "4")
                counts["ok"] += 1
            except OSError as e:  # the attribute is gone while unbound
                assert e.errno in (errno.ENOENT, errno.ENODEV), e
                counts["refused"] += 1
                time.sleep(0.001)

    with dev.subscribe("queue", queue_size=abi.UPCALL_QUEUE_MAX) as sub:
        thread = threading.Thread(target=raiser)
        thread.start()
        try:
            for _ in range(cycles):
                time.sleep(0.1)
                write(DRIVER / "unbind", edu)
                time.sleep(0.05)
                write(DRIVER / "bind", edu)
        finally:
            stop.set()
            thread.join()
        write(raise_path, "8")
        events: list[upcall.Event] = []
        deadline = time.monotonic() + 30
        # The status register ORs raises the handler has not read yet: the
        # raiser's last 4 may come in the same interrupt (value 12).
        while not any(e.value & 8 for e in events):
            events += sub.read(4096, timeout=1)
            assert time.monotonic() < deadline, "no interrupt after the last bind"
        drain(sub, events)
        st = check_accounting(sub, events)
    assert {e.source for e in events} == {abi.UPCALL_SOURCE_EDU}
    assert counts["ok"] > 0 and st.emitted <= counts["ok"] + 1
    round_trip(dev)
    figure(
        f"faults: edu unbound/bound {cycles} times under interrupts: {counts['ok']} raises "
        f"taken, {counts['refused']} refused while unbound, {st.emitted} interrupts "
        f"emitted, {st.dropped} dropped"
    )


class CloneArgs(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "flags",
            "pidfd",
            "child_tid",
            "parent_tid",
            "exit_signal",
            "stack",
            "stack_size",
            "tls",
            "set_tid",
            "set_tid_size",
        )
    ]


def fork_with_pid(pid: int) -> int:
    """fork(), giving the child the number ``pid`` (clone3 with set_tid; needs root)."""
    tid = ctypes.c_int32(pid)
    args = CloneArgs(exit_signal=signal.SIGCHLD, set_tid=ctypes.addressof(tid), set_tid_size=1)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    ret = libc.syscall(435, ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"clone3 with set_tid {pid}: {os.strerror(err)}")
    return int(ret)


def test_reused_pid_never_receives_the_dead_subscribers_signals(dev: upcall.Device) -> None:
    """The subscriber dies; a new process gets its very pid; it receives nothing.

    The debug kernel has no ns_last_pid (CHECKPOINT_RESTORE is off), and
    forking until the pid wraps takes too long under TCG: clone3's set_tid
    (root only) hands the dead subscriber's number to the new process.
    """
    n = 5
    fd = os.open("/dev/upcall", os.O_RDONLY)
    signal.pthread_sigmask(signal.SIG_BLOCK, {SIG})
    r, w = os.pipe()
    try:
        dead = os.fork()
        if dead == 0:  # subscribes the shared file to itself, then dies
            os._exit(0 if subscribe(fd, SIG) == 0 else 1)
        _, status = os.waitpid(dead, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert stats(fd).transport == abi.UPCALL_TRANSPORT_SIGNAL

        reborn = fork_with_pid(dead)
        if reborn == 0:
            # No Python after a raw clone beyond this: it reports by exit code.
            code = 3 if os.getpid() != dead else 0
            os.write(w, b"r")
            if signal.sigtimedwait({SIG}, 3) is not None:
                code = 2
            os._exit(code)
        assert reborn == dead
        assert os.read(r, 1) == b"r"
        for i in range(n):
            dev.emit(i)
        _, status = os.waitpid(reborn, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the reused pid got a signal"
        deadline = time.monotonic() + 30
        while (st := stats(fd)).pending:
            assert time.monotonic() < deadline, st
            time.sleep(0.01)
        assert (st.emitted, st.delivered, st.dropped) == (n, 0, n)
        assert signal.sigtimedwait({SIG}, 0) is None  # nor did anyone else
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {SIG})
        os.close(fd)
        os.close(r)
        os.close(w)
    round_trip(dev)
    figure(
        f"faults: pid {dead} reused (clone3 set_tid) after its subscriber died: "
        f"0 of {n} signals reached it, {n} counted dropped"
    )
