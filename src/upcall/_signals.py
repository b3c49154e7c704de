# SPDX-License-Identifier: LGPL-2.1-or-later
"""Signal machinery CPython lacks, and upcall's signal bookkeeping.

signalfd, siginfo decoding and per-thread masks; the registry of the
(signal, thread) pairs upcall's subscriptions read (:func:`reserve_signal`,
:func:`choose_signal`) and :class:`SignalClaim`, which claims a signal,
blocks it, and on exit drains it and restores the mask.

CPython exposes neither ``si_value`` nor ``sigqueue``; this module reaches the
C library through ctypes for ``signalfd(2)`` and the raw
``rt_tgsigqueueinfo(2)`` system call (the latter only to forge upcall-shaped
signals in tests, the way the module sends them).
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import ctypes.util
import os
import platform
import signal
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Self

from . import abi
from ._errors import ClosedError, SignalSetupError
from ._libc import libc

SIGNALFD_SIGINFO_SIZE = 128
SFD_NONBLOCK = os.O_NONBLOCK  # the kernel defines SFD_* as these O_* values
SFD_CLOEXEC = os.O_CLOEXEC

# struct signalfd_siginfo up to ssi_ptr; the rest (times, addr...) is unused.
_SSI = struct.Struct("<IiiIIiIIIIiiQ72x")
assert _SSI.size == SIGNALFD_SIGINFO_SIZE

# siginfo_t for a SI_QUEUE-style (_rt) signal on a 64-bit target: si_signo,
# si_errno, si_code, padding to the 8-byte aligned union, si_pid, si_uid,
# si_value; 128 bytes in all.
_SIGINFO_RT = struct.Struct("<iii4xiIQ96x")
assert _SIGINFO_RT.size == 128

# System call numbers of rt_tgsigqueueinfo per machine (x86_64 and the
# asm-generic table that arm64 and riscv64 use).
_NR_RT_TGSIGQUEUEINFO = {"x86_64": 297, "aarch64": 240, "riscv64": 240}


def _oserror() -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err))


def open_signalfd(signo: int, *more: int) -> int:
    """A new non-blocking, close-on-exec signalfd for ``signo`` (and ``more`` signals).

    A read of it dequeues those signals pending for the *calling thread*
    (its own queue and the process-wide one) but only while they are blocked;
    poll(2) on it likewise reports the polling thread's pending signals.
    """
    c = libc()
    sigset = ctypes.create_string_buffer(128)  # glibc's sigset_t is 1024 bits
    if c.sigemptyset(sigset) != 0:
        raise OSError("sigemptyset failed")
    for n in (signo, *more):
        if c.sigaddset(sigset, n) != 0:
            raise ValueError(f"invalid signal number {n}")
    fd = int(c.signalfd(-1, sigset, SFD_NONBLOCK | SFD_CLOEXEC))
    if fd < 0:
        raise _oserror()
    return fd


@dataclass(frozen=True, slots=True)
class SignalfdSiginfo:
    """The fields of ``struct signalfd_siginfo`` upcall uses.

    ``errno`` is ``ssi_errno`` and ``ptr`` is ``ssi_ptr`` (0 when the kernel did
    not copy a value, i.e. for a si_code that is not SI_QUEUE-style). ``fd``
    and ``band`` are ``ssi_fd`` and ``ssi_band``, which only a SIGIO-style
    signal (F_SETSIG, si_code POLL_IN...) carries; 0 otherwise.
    """

    signo: int
    errno: int
    code: int
    pid: int
    uid: int
    int_: int
    ptr: int
    fd: int = 0
    band: int = 0


def parse_siginfos(data: bytes) -> Iterator[SignalfdSiginfo]:
    """Decode the records of one signalfd read(2); ``data`` is a multiple of 128 bytes."""
    if len(data) % SIGNALFD_SIGINFO_SIZE:
        raise ValueError(f"signalfd read returned {len(data)} bytes, not a multiple of 128")
    for (
        signo,
        err,
        code,
        pid,
        uid,
        fd,
        _tid,
        band,
        _ovr,
        _trap,
        _st,
        sint,
        ptr,
    ) in _SSI.iter_unpack(data):
        yield SignalfdSiginfo(signo, err, code, pid, uid, sint, ptr, fd, band)


def read_signalfd(fd: int, max_records: int) -> bytes:
    """Up to ``max_records`` pending signals' records in one read(2); b"" if none is pending.

    ``fd`` must be non-blocking; ``max_records`` must be at least 1.
    """
    if max_records < 1:
        raise ValueError("max_records must be at least 1")
    try:
        return os.read(fd, SIGNALFD_SIGINFO_SIZE * max_records)
    except BlockingIOError:
        return b""


def read_siginfos(fd: int, max_records: int) -> list[SignalfdSiginfo]:
    """Read up to ``max_records`` pending signals in one read(2); [] if none is pending.

    ``fd`` must be non-blocking; ``max_records`` must be at least 1.
    """
    return list(parse_siginfos(read_signalfd(fd, max_records)))


# struct signalfd_siginfo as 32-bit words: ssi_signo, ssi_errno, ssi_code
# are words 0, 1, 2 of the 32 in a record; as 64-bit words, ssi_ptr is 6 of 16.
_SSI_WORDS = SIGNALFD_SIGINFO_SIZE // 4
_SSI_PTR_QWORD = 48 // 8
assert struct.calcsize("<IiiIIiIIIIii") == _SSI_PTR_QWORD * 8  # _SSI up to ssi_ptr
# struct upcall_event (abi.EVENT_RECORD) as 64-bit words: seqno 0, value 2 of
# 6; as 32-bit words, source is 6 of 12 (timestamp and flags stay 0).
_REC_QWORDS = abi.EVENT_RECORD.size // 8
_REC_SOURCE_WORD = 24 // 4
assert abi.EVENT_RECORD.format == "=QQQII16x" and struct.calcsize("=QQQ") == 24


def pack_siginfos(data: bytes, signo: int, last_seqno: int) -> bytearray | None:
    """The upcall signals of one signalfd read as queue records, decoded a column at a time.

    ``data`` is a read(2) of the signalfd of ``signo``, ``last_seqno`` the
    subscriber's seqno before them. The result is ``struct upcall_event``
    records (:data:`abi.EVENT_RECORD`: seqno, 0, value, source, 0), built
    with a few copies over the whole read rather than an object per signal.
    None when the read is not a plain run of upcall events, for the caller to
    decode signal by signal: a signal that is not upcall's (another
    signo or si_code), or seqnos that are not consecutive (a drop among them).
    """
    n = len(data) // SIGNALFD_SIGINFO_SIZE
    if not n or len(data) % SIGNALFD_SIGINFO_SIZE:
        return None
    words = memoryview(data).cast("i")
    codes = words[2::_SSI_WORDS].tolist()
    lo, hi = min(codes), max(codes)
    if lo < abi.UPCALL_SI_CODE_MIN or hi > abi.UPCALL_SI_CODE_BASE:
        return None
    if words[0::_SSI_WORDS].tolist().count(signo) != n:
        return None
    lows = memoryview(data).cast("I")[1::_SSI_WORDS]
    if (lows[n - 1] - lows[0]) % SEQNO_LOW_MOD != n - 1:
        return None
    first = extend_seqno(last_seqno, lows[0])
    out = bytearray(abi.EVENT_RECORD.size * n)
    qwords = memoryview(out).cast("Q")
    qwords[0::_REC_QWORDS] = array.array("Q", range(first, first + n))
    qwords[2::_REC_QWORDS] = memoryview(data).cast("Q")[_SSI_PTR_QWORD :: _SSI_WORDS // 2]
    base = abi.UPCALL_SI_CODE_BASE
    sources = (
        array.array("I", [base - lo]) * n
        if lo == hi
        else array.array("I", [base - c for c in codes])
    )
    memoryview(out).cast("I")[_REC_SOURCE_WORD :: _REC_QWORDS * 2] = sources
    return out


SEQNO_LOW_MOD = 1 << 32


def extend_seqno(last: int, low: int) -> int:
    """The 64-bit seqno whose low 32 bits are ``low`` and that comes after ``last``.

    Sequence numbers only grow, so the next one is ``last + d`` with
    ``d = (low - last) mod 2**32`` in 1 .. 2**32; ``d == 0`` (``low`` equal to
    the low bits of ``last``) is read as a full turn of 2**32, since a seqno is
    never repeated. A gap of 2**32 events or more cannot be told apart from a
    smaller one: ``stats().dropped`` still counts every loss.
    """
    low &= SEQNO_LOW_MOD - 1
    d = (low - last) % SEQNO_LOW_MOD
    return last + (d or SEQNO_LOW_MOD)


def valid_rt_signal(signo: int) -> int:
    """Check that ``signo`` is a real-time signal Python leaves free; return it.

    The range is Python's ``signal.SIGRTMIN .. signal.SIGRTMAX`` (34..64 with
    glibc, which keeps 32 and 33 for its threads).
    """
    if isinstance(signo, bool) or not isinstance(signo, int):
        raise TypeError(f"signal number must be an int, not {type(signo).__name__}")
    lo, hi = int(signal.SIGRTMIN), int(signal.SIGRTMAX)
    if not lo <= signo <= hi:
        raise ValueError(
            f"signal {signo} is not a usable real-time signal: choose one from "
            f"SIGRTMIN ({lo}) to SIGRTMAX ({hi})"
        )
    return signo


def sigmask_of_threads(signo: int) -> dict[int, bool]:
    """For every thread of this process, whether it blocks ``signo``.

    Read from ``/proc/self/task/*/status`` (``SigBlk``); threads that exit
    while being read are left out, and an unreadable /proc gives {}.
    """
    bit = 1 << (signo - 1)
    result: dict[int, bool] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return result
    for name in tids:
        try:
            with open(f"/proc/self/task/{name}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("SigBlk:"):
                        result[int(name)] = bool(int(line.split()[1], 16) & bit)
                        break
        except (OSError, ValueError):
            continue
    return result


def threads_not_blocking(
    signo: int, *, except_tid: int | None = None, grace: float = 0.5
) -> list[int]:
    """Thread ids (other than ``except_tid``) that have ``signo`` unblocked.

    A Python thread that was just joined may still be listed by the kernel
    for a moment while it exits: threads that Python does not know as alive
    are given up to ``grace`` seconds to go (0: no wait).
    """
    deadline = time.monotonic() + grace
    while True:
        found = sorted(
            tid
            for tid, blocked in sigmask_of_threads(signo).items()
            if not blocked and tid != except_tid
        )
        alive = {t.native_id for t in threading.enumerate()}
        if not found or any(tid in alive for tid in found) or time.monotonic() >= deadline:
            return found
        time.sleep(0.005)


def block(signo: int) -> bool:
    """Block ``signo`` in the calling thread; return whether it was blocked before."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signo})
    return signo in old


def unblock(signo: int) -> None:
    """Unblock ``signo`` in the calling thread."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signo})


def is_blocked(signo: int) -> bool:
    """Whether the calling thread blocks ``signo``."""
    return signo in signal.pthread_sigmask(signal.SIG_BLOCK, set())


def current_tid() -> int:
    """The kernel id of the calling thread (gettid(2))."""
    return threading.get_native_id()


def queue_signal(
    tid: int,
    signo: int,
    *,
    code: int,
    errno: int = 0,
    value: int = 0,
    tgid: int | None = None,
) -> None:
    """Queue ``signo`` on thread ``tid`` of this process with a chosen siginfo.

    A thin wrapper over rt_tgsigqueueinfo(2), meant for tests: it forges the
    signals the module sends (see :func:`queue_upcall_signal`). The kernel
    accepts a negative ``code`` only for a signal a process sends to itself.
    ``errno`` is stored as a signed 32-bit int, ``value`` as the u64 si_ptr.
    """
    nr = _NR_RT_TGSIGQUEUEINFO.get(platform.machine())
    if nr is None:
        raise OSError(f"rt_tgsigqueueinfo number unknown on {platform.machine()}")
    if errno >= 1 << 31:
        errno -= 1 << 32
    pid = os.getpid()
    info = ctypes.create_string_buffer(
        _SIGINFO_RT.pack(signo, errno, code, pid, os.getuid(), value & abi.U64_MAX),
        _SIGINFO_RT.size,
    )
    rc = libc().syscall(
        ctypes.c_long(nr),
        ctypes.c_int(pid if tgid is None else tgid),
        ctypes.c_int(tid),
        ctypes.c_int(signo),
        info,
    )
    if rc != 0:
        raise _oserror()


def queue_upcall_signal(tid: int, signo: int, seqno: int, value: int, source: int = 0) -> None:
    """Queue on ``tid`` exactly what the module sends for one event (the Signal layout)."""
    queue_signal(
        tid,
        signo,
        code=abi.si_code_for_source(source),
        errno=seqno & (SEQNO_LOW_MOD - 1),
        value=abi.encode_value(value),
    )


# Signals in use by live subscriptions of this process: (signo, receiving tid).
_signals_in_use: set[tuple[int, int]] = set()
_signals_lock = threading.Lock()


def reserve_signal(signo: int, tid: int) -> None:
    """Record that an upcall subscription reads ``signo`` in thread ``tid``.

    SignalSetupError if one already does: two readers of one signal in one
    thread would take each other's signals.
    """
    with _signals_lock:
        if (signo, tid) in _signals_in_use:
            raise SignalSetupError(
                f"signal {signo} is already used by another upcall subscription "
                "in this thread: choose another signal"
            )
        _signals_in_use.add((signo, tid))


def release_signal(signo: int, tid: int) -> None:
    """Undo :func:`reserve_signal`; nothing if it was not reserved."""
    with _signals_lock:
        _signals_in_use.discard((signo, tid))


def choose_signal(*, from_top: bool = False) -> int:
    """A real-time signal nobody in this process seems to use.

    The first from ``signal.SIGRTMIN`` up (``from_top``: from
    ``signal.SIGRTMAX`` down, as the BPF path picks, to keep clear of the
    module's transports) that has no handler (Python's ``getsignal`` gives
    SIG_DFL), is not blocked by the calling thread and is not used by
    another upcall subscription.
    """
    with _signals_lock:
        used = {s for s, _ in _signals_in_use}
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    candidates = range(int(signal.SIGRTMIN), int(signal.SIGRTMAX) + 1)
    for signo in reversed(candidates) if from_top else candidates:
        if signo in used or signo in blocked:
            continue
        if signal.getsignal(signo) is signal.SIG_DFL:
            return signo
    raise SignalSetupError("no free real-time signal: pass signo explicitly")


#: siginfos per read(2) while draining a signalfd.
_DRAIN_BATCH = 256


class SignalClaim:
    """A context manager: ``signo`` read through a signalfd by the calling thread.

    On entry it reserves (``signo``, calling thread) in the registry
    (SignalSetupError if another subscription holds it), blocks ``signo``
    and ``also`` (e.g. SIGIO) in the calling thread, opens :attr:`fd`, a
    signalfd for all of them, and discards the signals already pending
    (counted in :attr:`stale`): they are no events of the new claim.

    On exit, whatever failed or was interrupted, it drains what is still
    pending (a pending real-time signal's default action, once unblocked,
    terminates the process), closes the signalfd, unblocks the signals that
    were not blocked before (only in the claiming thread, whose mask only it
    can change, and only those no longer pending) and releases the
    reservation: in the spirit of trio's ``_signal_handler``, state is
    restored on exit.
    """

    def __init__(self, signo: int, *also: int) -> None:
        self.signo = signo
        #: The claiming thread (the one that enters).
        self.tid = 0
        self.signals = (signo, *also)
        #: The signalfd; -1 before entry and after exit.
        self.fd = -1
        #: Signals found pending on entry, discarded.
        self.stale = 0
        self._unblock: list[int] = []
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Self:
        return self.open()

    def open(self) -> Self:
        """Claim: what entering the context manager does (undo with :meth:`close`)."""
        with contextlib.ExitStack() as stack:
            self.tid = current_tid()
            reserve_signal(self.signo, self.tid)
            stack.callback(release_signal, self.signo, self.tid)
            stack.callback(self._restore_mask)
            for signo in self.signals:
                if not block(signo):
                    self._unblock.append(signo)
            self.fd = open_signalfd(*self.signals)
            stack.callback(self._close)
            stack.callback(self.drain)
            while stale := read_siginfos(self.fd, _DRAIN_BATCH):
                self.stale += len(stale)
            self._stack = stack.pop_all()
        return self

    def drain(self) -> None:
        """Discard the claimed signals pending for the calling thread (and the process)."""
        if self.fd < 0:
            return
        for _ in range(8):
            while read_siginfos(self.fd, _DRAIN_BATCH):
                pass
            pending = signal.sigpending()
            if not any(signo in pending for signo in self.signals):
                break

    def _close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def _restore_mask(self) -> None:
        unblock, self._unblock = self._unblock, []
        if current_tid() != self.tid:
            return  # another thread's mask cannot be changed: it stays blocked, safely
        pending = signal.sigpending()
        for signo in unblock:
            if signo not in pending:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signo})

    def close(self) -> None:
        """Drain, close the signalfd, restore the mask, release; idempotent."""
        self._stack.close()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SignalCarried:
    """The face of a subscription that a real-time signal reaches, read through a signalfd.

    A mixin for the signal transport (the signal is the event) and fasync
    (the signal announces records): their :attr:`signo`, :attr:`thread`,
    :attr:`foreign` and :meth:`fileno`, and the release of their
    :class:`SignalClaim`. It goes before the subscription class in the bases.
    """

    transport: str
    _signo: int
    _thread: bool
    _foreign: int
    _sfd: int
    _claim: SignalClaim | None

    @property
    def signo(self) -> int:
        """The real-time signal that arrives (for fasync, the one ``F_SETSIG`` names)."""
        return self._signo

    @property
    def thread(self) -> bool:
        """True if the signals are directed at the subscribing thread only."""
        return self._thread

    @property
    def foreign(self) -> int:
        """Signals of :attr:`signo` read that were not upcall's, skipped; 0 if none."""
        return self._foreign

    def fileno(self) -> int:
        """The signalfd: readable when a signal is pending for the *polling* thread.

        Poll it from a thread the signals go to: the kernel reports the
        pending signals of the thread that polls.
        """
        if self._sfd < 0:
            raise ClosedError(f"the {self.transport} subscription is closed")
        return self._sfd

    def _release_claim(self) -> None:
        # No more signals come once the file is closed or detached: the claim
        # discards what is queued, then unblocks (a pending real-time
        # signal's default action terminates the process).
        self._sfd = -1
        claim, self._claim = self._claim, None
        if claim is not None:
            claim.close()
