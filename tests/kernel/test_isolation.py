"""Who may do what: device permissions, namespaces, and nobody else's events.

The permission model (README, "Permissions"): the device's mode decides who
may open it; reading (subscribe, counters) needs it open for reading and
emitting needs it open for writing; a subscriber only ever subscribes
itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from rawioctl import ioctl, stats, subscribe

from upcall import abi
from upcall._transports import netlink

SIG = signal.SIGRTMIN + 6
NOBODY = 65534


@pytest.fixture
def device_mode() -> Iterator[None]:
    """Restore the device's mode and group after a test changes them."""
    st = os.stat("/dev/upcall")
    yield
    os.chown("/dev/upcall", st.st_uid, st.st_gid)
    os.chmod("/dev/upcall", st.st_mode & 0o777)


def as_nobody(code: str) -> str:
    """Python code that drops to uid/gid 65534, no capabilities, then runs ``code``."""
    # Import first: root's Python installation may be unreadable to nobody.
    prelude = f"""
import errno, os, signal, struct, sys
sys.path.insert(0, {os.path.dirname(__file__)!r})
from rawioctl import ioctl, subscribe
from upcall import abi
os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})
"""
    return prelude + textwrap.dedent(code)


def test_unprivileged_user_cannot_open_by_default() -> None:
    code = """
        for flags in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR):
            try:
                os.open("/dev/upcall", flags)
                sys.exit(f"opened with flags {flags}")
            except PermissionError:
                pass
        """
    r = subprocess.run(
        [sys.executable, "-c", as_nobody(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr


def test_read_only_subscriber_receives(device_mode: None) -> None:
    os.chown("/dev/upcall", 0, NOBODY)
    os.chmod("/dev/upcall", 0o640)
    child = subprocess.Popen(
        [sys.executable, "-c", as_nobody(NOBODY_LISTENER)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.strip() == "ready", child.stderr.read() if child.stderr else ""
    fd = os.open("/dev/upcall", os.O_WRONLY)
    try:
        assert ioctl(fd, abi.UPCALL_IOC_EMIT, abi.UpcallEmit(value=77, source=0x205)) == 1
    finally:
        os.close(fd)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert out.split() == ["77", str(0x205), "1"]


NOBODY_LISTENER = """
    try:
        os.open("/dev/upcall", os.O_RDWR)
        sys.exit("nobody opened the device for writing")
    except PermissionError:
        pass
    fd = os.open("/dev/upcall", os.O_RDONLY)
    assert ioctl(fd, abi.UPCALL_IOC_EMIT, abi.UpcallEmit(value=1)) == -errno.EBADF
    assert subscribe(fd, 0, transport=abi.UPCALL_TRANSPORT_QUEUE) == 0
    print("ready", flush=True)
    rec = abi.UpcallEvent.from_buffer_copy(os.read(fd, 48))
    print(rec.value, rec.source, rec.seqno)
    """


def test_subscriber_in_new_pid_and_user_namespace() -> None:
    """A subscriber in its own pid and user namespace gets its events, intact."""
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from rawioctl import subscribe
        assert os.getpid() == 1, os.getpid()
        signal.pthread_sigmask(signal.SIG_BLOCK, {{{SIG}}})
        fd = os.open("/dev/upcall", os.O_RDONLY)
        assert subscribe(fd, {SIG}) == 0
        print("ready", flush=True)
        got = []
        while True:
            info = signal.sigtimedwait({{{SIG}}}, 30)
            if info is None:
                break
            got.append((info.si_errno, info.si_code))
            if len(got) == 3:
                break
        # Nothing more comes: only this subscriber's three events.
        assert signal.sigtimedwait({{{SIG}}}, 1) is None
        print(" ".join(f"{{s}}:{{c}}" for s, c in got))
        """
    )
    child = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--user", "--map-root-user", sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    fd = os.open("/dev/upcall", os.O_WRONLY)
    try:
        for source in (1, 2, 3):
            ioctl(fd, abi.UPCALL_IOC_EMIT, abi.UpcallEmit(value=source, source=0x200 + source))
    finally:
        os.close(fd)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    expected = [f"{seq}:{abi.UPCALL_SI_CODE_BASE - (0x200 + seq)}" for seq in (1, 2, 3)]
    assert out.split() == expected


def test_events_of_one_subscriber_never_reach_another() -> None:
    """Each open file has its own queue: reading one never yields another's records."""
    a = os.open("/dev/upcall", os.O_RDWR | os.O_NONBLOCK)
    b = os.open("/dev/upcall", os.O_RDWR | os.O_NONBLOCK)
    try:
        assert subscribe(a, 0, transport=abi.UPCALL_TRANSPORT_QUEUE) == 0
        assert ioctl(a, abi.UPCALL_IOC_EMIT, abi.UpcallEmit(value=5)) == 1
        assert subscribe(b, 0, transport=abi.UPCALL_TRANSPORT_QUEUE) == 0
        # b subscribed after the event: it has nothing, a has exactly one.
        with pytest.raises(BlockingIOError):
            os.read(b, 48)
        data = os.read(a, 48 * 4)
        assert len(data) == 48
        rec = abi.UpcallEvent.from_buffer_copy(data)
        assert (rec.seqno, rec.value) == (1, 5)
        st = abi.UpcallStats()
        assert ioctl(b, abi.UPCALL_IOC_STATS, st) == 0
        assert (st.emitted, st.queued) == (0, 0)
    finally:
        os.close(a)
        os.close(b)


def run_as_nobody(code: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", as_nobody(code)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_nobody_cannot_attach_to_another_users_subscriber(device_mode: None) -> None:
    """A file descriptor is the subscriber: another user can neither take nor reopen it."""
    os.chown("/dev/upcall", 0, NOBODY)
    os.chmod("/dev/upcall", 0o640)  # nobody may open the device itself
    fd = os.open("/dev/upcall", os.O_RDWR | os.O_NONBLOCK)
    try:
        assert subscribe(fd, 0, transport=abi.UPCALL_TRANSPORT_QUEUE) == 0
        assert ioctl(fd, abi.UPCALL_IOC_EMIT, abi.UpcallEmit(value=99)) == 1
        code = f"""
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            try:
                os.open("/proc/{os.getpid()}/fd/{fd}", os.O_RDONLY)
                sys.exit("opened root's subscriber through /proc")
            except PermissionError:
                pass
            pidfd = os.pidfd_open({os.getpid()})
            if libc.syscall(438, pidfd, {fd}, 0) >= 0:  # pidfd_getfd
                sys.exit("took root's subscriber with pidfd_getfd")
            assert ctypes.get_errno() == errno.EPERM, ctypes.get_errno()
            own = os.open("/dev/upcall", os.O_RDONLY | os.O_NONBLOCK)
            assert subscribe(own, 0, transport=abi.UPCALL_TRANSPORT_QUEUE) == 0
            try:
                os.read(own, 48)
                sys.exit("nobody's own subscriber read an event")
            except BlockingIOError:
                pass
            """
        r = run_as_nobody(code)
        assert r.returncode == 0, r.stderr
        # Even root reopening it through /proc gets a new subscriber, not this one.
        again = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
        try:
            assert (stats(again).transport, stats(again).emitted) == (0, 0)
            assert stats(again).id != stats(fd).id
        finally:
            os.close(again)
        rec = abi.UpcallEvent.from_buffer_copy(os.read(fd, 48))
        assert (rec.seqno, rec.value) == (1, 99)  # still there, for its owner only
    finally:
        os.close(fd)


def test_nobody_cannot_aim_signals_at_another_process(device_mode: None) -> None:
    """SUBSCRIBE names no process; F_SETOWN at root's process sends it nothing.

    Nobody's file aimed at root's process (the victim) announces its records
    like any other: its eventfd, which the module signals after kill_fasync()
    in the same announcement, says the attempt was made before the victim
    looks. The victim looks only then, when told, not after a fixed wait; a
    file nobody aims at itself shows that the same F_SETSIG does reach a
    process nobody may signal.
    """
    os.chown("/dev/upcall", 0, NOBODY)
    os.chmod("/dev/upcall", 0o640)
    ready_r, ready_w = os.pipe()
    look_r, look_w = os.pipe()
    victim = os.fork()
    if victim == 0:  # root's process: reports by exit code what is pending when told to look
        exit_code = 3
        try:
            os.close(look_w)  # so that the read below ends if the test does
            signal.pthread_sigmask(signal.SIG_BLOCK, {SIG, signal.SIGIO})
            os.write(ready_w, b"r")
            if os.read(look_r, 1) == b"l":
                got = signal.sigtimedwait({SIG, signal.SIGIO}, 0)
                exit_code = 2 if got or signal.sigpending() & {SIG, signal.SIGIO} else 0
        finally:
            os._exit(exit_code)
    reaped = False
    try:
        assert os.read(ready_r, 1) == b"r"
        code = f"""
            import fcntl, select
            signal.pthread_sigmask(signal.SIG_BLOCK, {{{SIG}}})
            def aimed(pid):
                f = os.open("/dev/upcall", os.O_RDONLY | os.O_NONBLOCK)
                assert subscribe(f, 0, transport=abi.UPCALL_TRANSPORT_QUEUE) == 0
                fcntl.fcntl(f, fcntl.F_SETOWN, pid)  # the kernel checks at send time
                fcntl.fcntl(f, 10, {SIG})  # F_SETSIG
                fcntl.fcntl(f, fcntl.F_SETFL, os.O_NONBLOCK | fcntl.FASYNC)
                return f
            fd = aimed({victim})
            efd = os.eventfd(0, os.EFD_NONBLOCK)
            assert ioctl(fd, abi.UPCALL_IOC_SET_EVENTFD, abi.UpcallEventfd(fd=efd)) == 0
            mine = aimed(os.getpid())
            own = os.open("/dev/upcall", os.O_RDONLY)
            assert subscribe(own, {SIG}) == 0  # signals for the caller: nobody itself
            print("ready", flush=True)
            sys.stdin.readline()
            # Announced: kill_fasync() towards the victim has run.
            assert select.select([efd], [], [], 60)[0] == [efd], "no announcement"
            announced = os.eventfd_read(efd)
            got = [signal.sigtimedwait({{{SIG}}}, 30) for _ in range(4)]
            assert all(i is not None for i in got), got
            codes = sorted(i.si_code for i in got)
            assert codes == [abi.UPCALL_SI_CODE_BASE] * 3 + [1], codes  # + POLL_IN from mine
            assert all(i.si_pid == 0 for i in got if i.si_code != 1), got
            records = len(os.read(fd, 48 * 4)) // 48
            print(f"announced {{announced}} records {{records}} own {{len(got) - 1}}", flush=True)
            """
        child = subprocess.Popen(
            [sys.executable, "-c", as_nobody(code)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready", (
            child.stderr.read() if child.stderr else ""
        )
        fd = os.open("/dev/upcall", os.O_WRONLY)
        try:
            for i in range(3):
                # Nobody's three subscribers, and no other.
                assert ioctl(fd, abi.UPCALL_IOC_EMIT, abi.UpcallEmit(value=i)) == 3
        finally:
            os.close(fd)
        out, err = child.communicate("go\n", timeout=120)
        assert child.returncode == 0, err
        announced, records, own = (int(w) for w in out.split()[1::2])
        assert announced >= 1 and (records, own) == (3, 3), out
        os.write(look_w, b"l")
        _, status = os.waitpid(victim, 0)
        reaped = True
        assert os.waitstatus_to_exitcode(status) == 0, "root's process received a signal"
    finally:
        for end in (ready_r, ready_w, look_r, look_w):
            os.close(end)
        if not reaped:
            os.waitpid(victim, 0)  # it reads EOF and exits


def test_nobody_cannot_listen_or_emit_over_netlink() -> None:
    """The netlink group and EMIT command need CAP_NET_ADMIN, as the README says."""
    family = netlink.resolve_family()
    code = f"""
        import socket
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)  # NETLINK_GENERIC
        s.bind((0, 0))
        try:
            s.setsockopt(270, 1, {family.group_id})  # SOL_NETLINK, NETLINK_ADD_MEMBERSHIP
            sys.exit("nobody joined the event group")
        except PermissionError:
            pass
        attr = struct.pack("=HHQ", 12, abi.UPCALL_ATTR_VALUE, 1)
        genl = struct.pack("=BBH", abi.UPCALL_CMD_EMIT, abi.UPCALL_GENL_VERSION, 0)
        hdr = struct.pack("=IHHII", 20 + len(attr), {family.family_id}, 0x5, 1, 0)
        s.send(hdr + genl + attr)  # NLM_F_REQUEST | NLM_F_ACK
        ack = s.recv(4096)
        assert struct.unpack_from("=i", ack, 16)[0] == -errno.EPERM, ack
        """
    fd = os.open("/dev/upcall", os.O_RDONLY)
    try:
        assert subscribe(fd, 0, transport=abi.UPCALL_TRANSPORT_QUEUE) == 0
        r = run_as_nobody(code)
        assert r.returncode == 0, r.stderr
        assert stats(fd).emitted == 0  # nobody's EMIT emitted nothing
    finally:
        os.close(fd)
