"""What an upstream review asked of the module: wake-ups, strict flags, signals
nobody can take, set-uid receivers, the per-user memory cap.

The C helper (upstream_helper.c) is built with the host's cc, which the
guest shares.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from figures import figure
from guest import meminfo_kib
from rawioctl import ioctl, stats, subscribe

from upcall import abi

HERE = Path(__file__).parent
INCLUDE = HERE.parent.parent / "kmod" / "include" / "uapi"
SIG = signal.SIGRTMIN + 7
NOBODY = 65534
PARAM = Path("/sys/module/upcall/parameters/max_user_mem_kb")


@pytest.fixture(scope="module")
def helper() -> Iterator[Path]:
    """The C helper, compiled into a temporary directory."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler in the guest (cc)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "upstream_helper"
        subprocess.run(
            [
                cc,
                "-O2",
                "-Wall",
                "-Werror",
                "-pthread",
                f"-I{INCLUDE}",
                "-o",
                str(out),
                str(HERE / "upstream_helper.c"),
            ],
            check=True,
        )
        yield out


def emit(value: int, count: int = 1) -> None:
    fd = os.open("/dev/upcall", os.O_WRONLY)
    try:
        for i in range(count):
            assert (
                ioctl(fd, abi.UPCALL_IOC_EMIT, abi.UpcallEmit(value=value + i, source=0x3F0)) >= 1
            )
    finally:
        os.close(fd)


def subscribe_req(fd: int, **fields: int) -> int:
    return ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, abi.UpcallSubscribe(**fields))


def wait_settled(fd: int, timeout: float = 30) -> abi.UpcallStats:
    """Stats once nothing is pending (the irq_work and the worker are done)."""
    deadline = time.monotonic() + timeout
    while True:
        st = stats(fd)
        if st.pending == 0 or time.monotonic() > deadline:
            return st
        time.sleep(0.01)


def wait_sleeping(tid: int, timeout: float = 30) -> None:
    """Wait until thread ``tid`` of this process sleeps (in read or poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        if stat.rpartition(")")[2].split()[0] == "S":
            return
        time.sleep(0.01)
    pytest.fail(f"thread {tid} never slept")


# -- finding 4: a blocked reader or poller learns that the file left QUEUE --


def start_sleeper(fd: int, wait: Callable[[], None]) -> threading.Thread:
    """Subscribe ``fd`` to QUEUE, run ``wait`` in a thread, return once it sleeps."""
    tid: list[int] = []

    def run() -> None:
        tid.append(threading.get_native_id())
        wait()

    assert subscribe(fd, 0, transport=abi.UPCALL_TRANSPORT_QUEUE) == 0
    t = threading.Thread(target=run, daemon=True)
    t.start()
    while not tid:
        time.sleep(0.01)
    wait_sleeping(tid[0])
    return t


@pytest.mark.parametrize("to", ["signal", "netlink"])
def test_blocked_reader_woken_by_resubscribe(to: str) -> None:
    """A read() blocked on a QUEUE subscriber returns EINVAL once another
    thread subscribes the file to another transport."""
    fd = os.open("/dev/upcall", os.O_RDONLY)
    result: list[object] = []

    def reader() -> None:
        try:
            result.append(os.read(fd, 48))
        except OSError as e:
            result.append(e.errno)

    try:
        t = start_sleeper(fd, reader)
        if to == "signal":
            assert subscribe(fd, SIG) == 0
        else:
            assert subscribe(fd, 0, transport=abi.UPCALL_TRANSPORT_NETLINK) == 0
        t.join(10)
        woken = not t.is_alive()
        if not woken:
            # Unblock it for the next tests: back to QUEUE, one event.
            assert subscribe(fd, 0, transport=abi.UPCALL_TRANSPORT_QUEUE) == 0
            emit(1)
            t.join(10)
        assert woken, "read() still blocked after the file left QUEUE"
        assert result == [errno.EINVAL]
    finally:
        os.close(fd)


def test_poll_on_non_queue_subscriber_reports_error() -> None:
    """poll() agrees with read(): POLLERR (read fails at once with EINVAL) for
    a file that is not a QUEUE subscriber, before SUBSCRIBE and after."""
    fd = os.open("/dev/upcall", os.O_RDONLY)
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        assert p.poll(0) == [(fd, select.POLLERR)]
        with pytest.raises(OSError) as e:
            os.read(fd, 48)
        assert e.value.errno == errno.EINVAL
        assert subscribe(fd, 0, transport=abi.UPCALL_TRANSPORT_QUEUE) == 0
        assert p.poll(0) == []
        emit(5)
        assert p.poll(10_000) == [(fd, select.POLLIN)]
        os.read(fd, 48)
        assert subscribe(fd, 0, transport=abi.UPCALL_TRANSPORT_NETLINK) == 0
        assert p.poll(0) == [(fd, select.POLLERR)]
    finally:
        os.close(fd)


def test_blocked_poller_woken_by_resubscribe() -> None:
    fd = os.open("/dev/upcall", os.O_RDONLY)
    result: list[list[tuple[int, int]]] = []

    def poller() -> None:
        p = select.poll()
        p.register(fd, select.POLLIN)
        result.append(p.poll(15_000))

    try:
        t = start_sleeper(fd, poller)
        start = time.monotonic()
        assert subscribe(fd, 0, transport=abi.UPCALL_TRANSPORT_NETLINK) == 0
        t.join(20)
        assert result == [[(fd, select.POLLERR)]]
        assert time.monotonic() - start < 10, "poll() woke by its timeout, not the subscribe"
    finally:
        os.close(fd)


# -- a reader blocked in read() is woken by the emitter itself -------------

# x86_64 system call numbers, as /proc/PID/syscall gives them.
SYS_READ = 0
SYS_POLL = 7


def irq_work_interrupts() -> int:
    """The IWI (irq_work self-interrupt) count of every CPU, from /proc/interrupts."""
    with open("/proc/interrupts") as f:
        cpus = len(f.readline().split())
        for line in f:
            fields = line.split()
            if fields[0] == "IWI:":
                return sum(int(n) for n in fields[1 : 1 + cpus])
    raise AssertionError("no IWI line in /proc/interrupts")


def wait_in_syscall(tid: int, nr: int, timeout: float = 30) -> None:
    """Wait until thread ``tid`` of this process is blocked in system call ``nr``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(f"/proc/self/task/{tid}/syscall").read_text().split()[0] == str(nr):
            return
        time.sleep(0.001)
    pytest.fail(f"thread {tid} never blocked in system call {nr}")


@pytest.mark.parametrize("how", ["read", "poll"])
def test_blocked_reader_is_woken_by_the_emitter(how: str) -> None:
    """A read() blocked on a QUEUE subscriber is woken by upcall_emit() itself,
    as UIO's handler wakes its reader: no irq_work, so no self-interrupt. A
    poll() waiter is still told through the irq_work (its wait queue's lock
    sleeps on PREEMPT_RT), which is what shows that the count sees them."""
    n = 200
    fd = os.open("/dev/upcall", os.O_RDONLY)
    tid: list[int] = []
    got: list[bytes] = []

    def reader() -> None:
        tid.append(threading.get_native_id())
        p = select.poll()
        p.register(fd, select.POLLIN)
        for _ in range(n):
            if how == "poll":
                p.poll(30_000)
            got.append(os.read(fd, 48))

    try:
        assert subscribe(fd, 0, transport=abi.UPCALL_TRANSPORT_QUEUE) == 0
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        while not tid:
            time.sleep(0.01)
        before = irq_work_interrupts()
        for i in range(n):
            wait_in_syscall(tid[0], SYS_READ if how == "read" else SYS_POLL)
            emit(i)
        t.join(30)
        iwi = irq_work_interrupts() - before
        assert not t.is_alive(), f"the reader took {len(got)} of {n}"
    finally:
        os.close(fd)
    assert [abi.EVENT_RECORD.unpack(r)[:3:2] for r in got] == [(i + 1, i) for i in range(n)]
    figure(f"{n} events to a reader blocked in {how}(): {iwi} irq_work interrupts")
    if how == "read":
        assert iwi < n // 4, f"{iwi} irq_work interrupts for {n} events to a blocked read()"
    else:
        assert iwi >= n * 3 // 4, f"only {iwi} irq_work interrupts for {n} events to poll()"


# -- finding 5: strict flags -----------------------------------------------


@pytest.mark.parametrize("transport", [abi.UPCALL_TRANSPORT_QUEUE, abi.UPCALL_TRANSPORT_NETLINK])
def test_thread_flag_refused_without_signal(transport: int) -> None:
    fd = os.open("/dev/upcall", os.O_RDONLY)
    try:
        assert (
            subscribe(fd, 0, transport=transport, flags=abi.UPCALL_SUBSCRIBE_THREAD)
            == -errno.EINVAL
        )
        assert stats(fd).transport == abi.UPCALL_TRANSPORT_NONE
    finally:
        os.close(fd)


def test_huge_read_returns_what_is_queued() -> None:
    """A read() with a buffer far larger than the queue takes what is queued
    (the loop copies in chunks and may reschedule between them)."""
    fd = os.open("/dev/upcall", os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert subscribe_req(fd, transport=abi.UPCALL_TRANSPORT_QUEUE, queue_size=65536) == 0
        emit(0, 2000)
        data = os.read(fd, 48 * 100_000)
        assert len(data) == 48 * 2000
    finally:
        os.close(fd)


# -- finding 1: a process whose main thread has exited ----------------------


def test_signal_reaches_live_thread_after_main_thread_exit(helper: Path) -> None:
    """The main thread pthread_exit()s; another thread waits for the signals.
    Every event counted delivered is received."""
    n = 50
    child = subprocess.Popen(
        [str(helper), "zombie", str(SIG), str(n)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        emit(100, n)
        got, delivered, dropped, pending = map(int, child.stdout.readline().split())
    finally:
        child.kill()
        child.wait()
    assert (delivered, dropped, pending) == (got, n - got, 0)
    assert got == n


IGNORING_CHILD = f"""
import os, signal, sys, time
sys.path.insert(0, {str(HERE)!r})
from rawioctl import stats, subscribe
signal.signal({SIG}, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {{{SIG}}})
fd = os.open("/dev/upcall", os.O_RDONLY)
assert subscribe(fd, {SIG}) == 0
print("ready", flush=True)
sys.stdin.readline()
while stats(fd).pending:
    time.sleep(0.01)
st = stats(fd)
print(st.delivered, st.dropped, flush=True)
"""


def test_ignored_signal_counts_as_dropped() -> None:
    """A subscriber whose signal is SIG_IGN (and not blocked) receives
    nothing: its events are dropped, not delivered."""
    n = 20
    child = subprocess.Popen(
        [sys.executable, "-c", IGNORING_CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        emit(7, n)
        child.stdin.write("go\n")
        child.stdin.flush()
        delivered, dropped = map(int, child.stdout.readline().split())
    finally:
        child.kill()
        child.wait()
    assert (delivered, dropped) == (0, n)


# -- finding 7: set-uid receivers --------------------------------------------


@pytest.fixture
def suid_dir(helper: Path) -> Iterator[tuple[Path, Path]]:
    """A tmpfs (which honours set-uid) with the helper, plain and set-uid root,
    and the device readable by nobody."""
    st = os.stat("/dev/upcall")
    mnt = Path(tempfile.mkdtemp())
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "upcall-suid", str(mnt)], check=True)
    try:
        plain, suid = mnt / "plain", mnt / "suid"
        shutil.copy(helper, plain)
        shutil.copy(helper, suid)
        os.chown(suid, 0, 0)
        os.chmod(plain, 0o755)
        os.chmod(suid, 0o4755)
        os.chown("/dev/upcall", 0, NOBODY)
        os.chmod("/dev/upcall", 0o640)
        yield plain, suid
    finally:
        os.chown("/dev/upcall", st.st_uid, st.st_gid)
        os.chmod("/dev/upcall", st.st_mode & 0o777)
        subprocess.run(["umount", str(mnt)], check=False)
        os.rmdir(mnt)


def as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def test_setuid_exec_keeps_signals_until_every_uid_changes(
    suid_dir: tuple[Path, Path],
) -> None:
    """README, "Permissions": nobody subscribes and execs a set-uid-root
    program. Its real uid is still nobody's, so the signals go on, as for
    F_SETOWN and kill(2); once it makes every uid root they stop, counted
    as dropped."""
    plain, suid = suid_dir
    child = subprocess.Popen(
        [str(plain), "subscribe", str(SIG), str(suid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=as_nobody,
    )
    assert child.stdin is not None and child.stdout is not None

    def ask(line: str) -> str:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(line + "\n")
        child.stdin.flush()
        return child.stdout.readline().strip()

    try:
        assert child.stdout.readline().split() == ["ready", str(NOBODY), "0"]
        emit(1, 10)
        assert ask("10") == "10"
        assert ask("drop") == "dropped"
        emit(1, 10)
        assert ask("10") == "0"
        delivered, dropped, pending = map(int, ask("stats").split())
    finally:
        child.kill()
        child.wait()
    assert (delivered, dropped, pending) == (10, 10, 0)


# -- finding 3: the per-user memory cap -------------------------------------


@pytest.fixture
def user_cap() -> Iterator[int]:
    """Lower the per-user cap to 2 MiB for the test."""
    if not PARAM.exists():
        pytest.fail(f"{PARAM} missing: the module has no per-user cap")
    old = PARAM.read_text().strip()
    PARAM.write_text("2048")
    try:
        yield 2048 * 1024
    finally:
        PARAM.write_text(old)


def test_user_cap_refuses_with_edquot(user_cap: int) -> None:
    """Default-sized subscribers (48 KiB each) until the cap: then EDQUOT,
    cleanly, and closing one makes room again."""
    fds: list[int] = []
    try:
        err = 0
        for _ in range(10_000):
            try:
                fd = os.open("/dev/upcall", os.O_RDONLY)
            except OSError as e:
                err = e.errno or 0
                break
            fds.append(fd)
            ret = subscribe(fd, 0, transport=abi.UPCALL_TRANSPORT_QUEUE)
            if ret < 0:
                err = -ret
                break
        assert err == errno.EDQUOT
        per_sub = 1024 * 48
        assert user_cap // per_sub - 4 <= len(fds) <= user_cap // per_sub + 1
        # The refused subscriber stays usable with a smaller queue.
        assert subscribe_req(fds[-1], transport=abi.UPCALL_TRANSPORT_QUEUE, queue_size=2) == 0
        os.close(fds.pop(0))
        fd = os.open("/dev/upcall", os.O_RDONLY)
        fds.append(fd)
        assert subscribe(fd, 0, transport=abi.UPCALL_TRANSPORT_QUEUE) == 0
    finally:
        for fd in fds:
            os.close(fd)


def test_user_cap_applies_to_open_files(user_cap: int) -> None:
    """Files that never subscribe count too: 10,000 of them do not fit 2 MiB."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 20_000), max(hard, 20_000)))
    fds: list[int] = []
    try:
        with pytest.raises(OSError) as e:
            for _ in range(10_000):
                fds.append(os.open("/dev/upcall", os.O_RDONLY))
        assert e.value.errno == errno.EDQUOT
    finally:
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


CGROUP_CHILD = f"""
import os, sys
sys.path.insert(0, {str(HERE)!r})
from upcall import abi
from rawioctl import ioctl
cg = sys.argv[1]
with open(os.path.join(cg, "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
def current():
    with open(os.path.join(cg, "memory.current")) as f:
        return int(f.read())
before = current()
fds = []
for _ in range(8):
    fd = os.open("/dev/upcall", os.O_RDONLY)
    req = abi.UpcallSubscribe(transport=abi.UPCALL_TRANSPORT_QUEUE, queue_size=65536)
    assert ioctl(fd, abi.UPCALL_IOC_SUBSCRIBE, req) == 0
    fds.append(fd)
after = current()
for fd in fds:
    os.close(fd)
print(before, after)
"""


def test_queue_memory_charged_to_memory_cgroup() -> None:
    """Eight 65536-event queues (3 MiB each) show in the subscriber's
    memory cgroup."""
    root = Path("/sys/fs/cgroup")
    if not (root / "cgroup.controllers").exists():
        pytest.skip("cgroup2 is not mounted at /sys/fs/cgroup in this guest")
    if "memory" not in (root / "cgroup.controllers").read_text().split():
        pytest.skip("the memory controller is not available in this guest's cgroup2")
    with contextlib.suppress(OSError):
        (root / "cgroup.subtree_control").write_text("+memory")
    cg = root / f"upcall-test-{os.getpid()}"
    cg.mkdir()
    try:
        r = subprocess.run(
            [sys.executable, "-c", CGROUP_CHILD, str(cg)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        before, after = map(int, r.stdout.split())
        figure(
            f"memory cgroup: 8 subscribers with 65,536-event queues: "
            f"memory.current +{(after - before) / 2**20:.1f} MiB"
        )
        assert after - before >= 8 * 65536 * 48 * 9 // 10, (before, after)
    finally:
        cg.rmdir()


def test_open_costs_the_subscriber_alone() -> None:
    """An open file that has not subscribed holds no queue: a thousand of them
    take well under a queue's 48 KiB each, and a thousand default queues
    take at least that much once they subscribe."""
    files = 1000
    fds: list[int] = []
    try:  # 48 MiB of queues: within the default per-user cap
        free0 = meminfo_kib("MemFree")
        fds = [os.open("/dev/upcall", os.O_RDONLY) for _ in range(files)]
        free1 = meminfo_kib("MemFree")
        for fd in fds:
            assert subscribe(fd, 0, transport=abi.UPCALL_TRANSPORT_QUEUE) == 0
        free2 = meminfo_kib("MemFree")
    finally:
        for fd in fds:
            os.close(fd)
    per_open = (free0 - free1) / files
    per_queue = (free1 - free2) / files
    figure(
        f"memory: {files} open files before SUBSCRIBE take {per_open:.1f} KiB each "
        f"(MemFree), their default queues {per_queue:.1f} KiB each once subscribed"
    )
    assert per_open < 8, f"{per_open:.1f} KiB per open file: open() allocates a queue"
    assert per_queue >= 40, f"{per_queue:.1f} KiB per subscribed queue"
