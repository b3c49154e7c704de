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
from rawioctl import ioctl, subscribe

from upcall import abi

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
    r = subprocess.run([sys.executable, "-c", as_nobody(code)], capture_output=True,
                       text=True, timeout=120, check=False)  # fmt: skip
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
        assert ioctl(fd, abi.UPCALL_IOC_EMIT, abi.UpcallEmit(value=77, source=5)) == 1
    finally:
        os.close(fd)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert out.split() == ["77", "5", "1"]


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
            ioctl(fd, abi.UPCALL_IOC_EMIT, abi.UpcallEmit(value=source, source=source + 10))
    finally:
        os.close(fd)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    expected = [f"{seq}:{abi.UPCALL_SI_CODE_BASE - (seq + 10)}" for seq in (1, 2, 3)]
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
