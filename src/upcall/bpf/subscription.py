# SPDX-License-Identifier: LGPL-2.1-or-later
"""A subscription to one kernel hook through BPF, with the module's surface.

One BPF object is loaded per subscription, so its programs, maps and links
are this process's alone: closing the subscription (or the process dying)
closes their fds and the kernel detaches and frees them. Nothing is pinned.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import mmap
import os
import select
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from upcall import signals
from upcall._batch import Batch
from upcall.errors import ClosedError
from upcall.event import Event, make_event, monotonic_ns

from . import _abi, _libbpf, _sig, probe
from ._object import object_path
from ._ringbuf import RING_LAYOUT, RingReader
from .errors import BpfError

DEFAULT_RING_SIZE = 1 << 20
# upcall_bpf_stats.slots alone: the last of its five u64s.
_STATS_SLOTS = struct.Struct("=Q")
_STATS_SLOTS_OFF = _abi.STATS.size - _STATS_SLOTS.size
SLOT_WINDOW = 256  # how far ahead a signal may be matched to its slot


# ---- hooks ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trigger:
    """The user-triggered test hook: :meth:`BpfSubscription.trigger` fires it."""


@dataclass(frozen=True, slots=True)
class Tracepoint:
    """A tracepoint by ``"category:name"`` (as under /sys/kernel/tracing/events)."""

    name: str


@dataclass(frozen=True, slots=True)
class Kprobe:
    """A kernel function: fentry where BTF has it, else a kprobe.

    attach: "auto" (that choice), "fentry" or "kprobe" to insist on one,
        e.g. a kprobe where a policy refuses BPF trampolines.
    """

    function: str
    attach: str = "auto"


@dataclass(frozen=True, slots=True)
class Irq:
    """A hardware interrupt line, through the ``irq_handler_entry`` tracepoint."""

    line: int


Hook = Trigger | Tracepoint | Kprobe | Irq

_PROGRAMS = (
    "upcall_trigger",
    "upcall_whoami",
    "upcall_tracepoint",
    "upcall_irq",
    "upcall_fentry",
    "upcall_fentry_noarg",
    "upcall_kprobe",
)


@dataclass(frozen=True, slots=True)
class BpfStats:
    """Counters of one subscription.

    emitted: events that passed the filter in the kernel and got a seqno.
    delivered: handed to the transport (signal queued, record committed).
    dropped: could not be handed over (ring full, signal refused): the seqno
        gaps the reader sees.
    filtered: hook hits that the pid/comm filter refused in the kernel.
    received: events this process has read so far.
    """

    emitted: int
    delivered: int
    dropped: int
    filtered: int
    received: int


def _validate_hook(hook: Hook) -> tuple[str, str | None]:
    """Check the hook exists on this kernel: (program name, attach target)."""
    if isinstance(hook, Trigger):
        return "upcall_trigger", None
    if isinstance(hook, Tracepoint):
        cat, sep, name = hook.name.partition(":")
        if not sep or not cat or not name or "/" in hook.name:
            raise BpfError(f"tracepoint must be CATEGORY:NAME, got {hook.name!r}")
        events = probe.ensure_tracefs()
        if not (events / cat / name / "id").is_file():
            raise BpfError(f"unknown tracepoint {hook.name!r} (not in {events})")
        return "upcall_tracepoint", hook.name
    if isinstance(hook, Irq):
        if hook.line < 0 or not Path(f"/sys/kernel/irq/{hook.line}").is_dir():
            lines = sorted(int(p.name) for p in Path("/sys/kernel/irq").iterdir())
            have = f"{lines[0]}..{lines[-1]}" if lines else "none"
            raise BpfError(f"IRQ {hook.line} out of range: this machine has IRQ lines {have}")
        return "upcall_irq", None
    func = hook.function
    if hook.attach not in ("auto", "fentry", "kprobe"):
        raise BpfError(f"attach must be auto, fentry or kprobe, got {hook.attach!r}")
    if not func.isidentifier() and not func.replace(".", "_").isidentifier():
        raise BpfError(f"not a kernel function name: {func!r}")
    if hook.attach != "kprobe":
        nargs = _libbpf.kernel_btf_func_args(probe.vmlinux_btf(), func)
        if nargs is not None:
            return ("upcall_fentry" if nargs else "upcall_fentry_noarg"), func
        if hook.attach == "fentry":
            known = "has no BTF" if _in_kallsyms(func) else "is unknown"
            raise BpfError(f"kernel function {func!r} {known}: cannot fentry it")
    if not _in_kallsyms(func):
        raise BpfError(f"unknown kernel function {func!r} (not in kernel BTF or /proc/kallsyms)")
    if probe.has_kprobes():
        return "upcall_kprobe", func
    if hook.attach == "kprobe":
        raise BpfError("this kernel has no kprobes (CONFIG_KPROBES off)")
    raise BpfError(
        f"kernel function {func!r} has no BTF (cannot fentry) and this kernel has no kprobes"
    )


def _in_kallsyms(func: str) -> bool:
    with open("/proc/kallsyms") as f:
        return any(line.split()[2] == func for line in f if len(line.split()) >= 3)


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


class BpfSubscription:
    """Events from one kernel hook, delivered by signal or ring buffer.

    via: ``"ringbuf"`` (records with seqno, timestamp and value in a BPF ring
        buffer) or ``"signal"`` (a real-time signal to the subscribing thread
        with the value in ``si_value``; seqno and timestamp from a per-signal
        slot). Signal delivery is read in the thread that subscribed.
    pid: only events whose current task belongs to this process (tgid);
        None: any. Decided in the kernel.
    comm: only events whose current task has this comm (exact); None: any.
    ring_size: ring buffer bytes (a power of two, at least a page).
    signo: the real-time signal to use; None picks a free one.
    """

    def __init__(
        self,
        hook: Hook,
        *,
        via: str = "ringbuf",
        pid: int | None = None,
        comm: str | None = None,
        ring_size: int = DEFAULT_RING_SIZE,
        signo: int | None = None,
        kfunc: bool | None = None,
    ) -> None:
        self.hook = hook
        self._closed = True  # until fully open, close() has nothing to undo
        self._obj: int | None = None
        self._links: list[int] = []
        self._ring: RingReader | None = None
        self._stats_map: mmap.mmap | None = None
        self._slots_map: mmap.mmap | None = None
        self._epoll: select.epoll | None = None
        self._sigfd = -1
        self._signo: int | None = None
        self._claim: signals.SignalClaim | None = None
        self._pending: deque[Event] = deque()
        self._callbacks: list[Callable[[Event], None]] = []
        self._received = 0
        self._last_seq = 0
        self._slot_cursor = 0
        self._slot_taken: set[int] = set()
        self._owner = threading.get_ident()
        self._prog: int | None = None
        if via not in ("ringbuf", "signal"):
            raise BpfError(f"--via must be signal or ringbuf, got {via!r}")
        if pid is not None and pid <= 0:
            raise BpfError(f"pid filter must be positive, got {pid}")
        if comm is not None and not 0 < len(comm.encode()) <= 15:
            raise BpfError(f"comm filter must be 1 to 15 bytes, got {comm!r}")
        if ring_size < mmap.PAGESIZE or ring_size & (ring_size - 1):
            raise BpfError(f"ring_size must be a power of two >= {mmap.PAGESIZE}")
        with contextlib.ExitStack() as undo:
            undo.callback(self._close_partial)
            self._open(hook, via, pid, comm, ring_size, signo, kfunc)
            undo.pop_all()

    def _close_partial(self) -> None:
        """Undo whatever :meth:`_open` did before it failed."""
        self._closed = False
        self.close()

    # ---- setup --------------------------------------------------------

    def _open(
        self,
        hook: Hook,
        via: str,
        pid: int | None,
        comm: str | None,
        ring_size: int,
        signo: int | None,
        kfunc: bool | None,
    ) -> None:
        for chk in (probe.check_btf(), probe.check_privilege()):
            if not chk.ok:
                raise BpfError(chk.detail)
        prog_name, target = _validate_hook(hook)
        path = object_path()
        lb = _libbpf.lib()

        mode = _abi.VIA_RINGBUF
        if via == "signal":
            if kfunc is None:
                kfunc = probe.check_kfunc().ok
            if kfunc:
                mode = _abi.VIA_SIGNAL
            elif isinstance(hook, Trigger) or (pid is not None and pid == os.getpid()):
                # bpf_send_signal_thread() reaches only current: correct when
                # current is the subscriber (checked again in the kernel).
                mode = _abi.VIA_SIGNAL_CURRENT
            else:
                raise BpfError(
                    "signal delivery to another task needs the bpf_send_signal_task kfunc "
                    f"(Linux {probe.KFUNC_MIN_KERNEL}+, this kernel is "
                    f"{probe.kernel_release()}); use --via ringbuf, or a pid filter "
                    "of this very process"
                )
        self.via = via
        self.transport = "ringbuf" if via == "ringbuf" else "bpf-signal"
        self._mode = mode

        _libbpf.clear_log()
        obj = lb.bpf_object__open_file(str(path).encode(), None)
        self._obj = _libbpf.check_ptr(obj, f"cannot open {path}")
        self._closed = False

        progs: dict[str, int] = {}
        for name in _PROGRAMS:
            p = _libbpf.check_ptr(
                lb.bpf_object__find_program_by_name(obj, name.encode()), f"program {name}"
            )
            progs[name] = p
            lb.bpf_program__set_autoload(p, name in (prog_name, "upcall_whoami"))
        prog = progs[prog_name]
        if prog_name.startswith("upcall_fentry") and target:
            _libbpf.check_rc(
                lb.bpf_program__set_attach_target(prog, 0, target.encode()),
                f"fentry target {target}",
            )

        slots = 1
        if mode == _abi.VIA_SIGNAL:
            # Room for every signal that can be queued at once (RLIMIT_SIGPENDING).
            import resource

            soft, _hard = resource.getrlimit(resource.RLIMIT_SIGPENDING)
            want = soft if 0 < soft < (1 << 20) else 1 << 20
            slots = _pow2_at_least(max(want + SLOT_WINDOW, 1024))
        if mode != _abi.VIA_RINGBUF:
            self._signo = signals.choose_signal(from_top=True) if signo is None else signo
        comm_b = (comm or "").encode()
        cfg = _abi.CFG.pack(
            mode,
            self._signo or 0,
            pid or 0,
            hook.line if isinstance(hook, Irq) else 0,
            1 if comm else 0,
            slots - 1,
            comm_b,
        )
        self._set_map(obj, ".rodata", initial=cfg)
        ring_map = self._set_map(obj, "events", max_entries=ring_size)
        slot_map = self._set_map(obj, "sigslots", max_entries=slots)

        rc = lb.bpf_object__load(obj)
        if rc < 0:
            raise self._load_error(-rc, prog_name, target)
        self._prog = lb.bpf_program__fd(prog)

        # Whom to signal: the kernel's id of this thread (pid namespaces aside).
        who = ctypes.create_string_buffer(_abi.WHOAMI.size)
        self._test_run(lb.bpf_program__fd(progs["upcall_whoami"]), who)
        pid_tgid = _abi.WHOAMI.unpack(who.raw)[0]
        self._tgid, self._tid = pid_tgid >> 32, pid_tgid & 0xFFFFFFFF
        self._target_fd = lb.bpf_map__fd(self._find_map(obj, "target"))
        self._published = 0
        self._set_target(0)

        self._stats_map = mmap.mmap(
            lb.bpf_map__fd(self._find_map(obj, "stats")),
            mmap.PAGESIZE,
            mmap.MAP_SHARED,
            mmap.PROT_READ,
        )
        if mode in (_abi.VIA_RINGBUF, _abi.VIA_SIGNAL_CURRENT):
            self._ring = RingReader(lb.bpf_map__fd(ring_map), ring_size)
        if mode == _abi.VIA_SIGNAL:
            length = (slots * _abi.SIGSLOT.size + mmap.PAGESIZE - 1) & ~(mmap.PAGESIZE - 1)
            self._slots_map = mmap.mmap(
                lb.bpf_map__fd(slot_map), length, mmap.MAP_SHARED, mmap.PROT_READ
            )
            self._slot_mask = slots - 1
        if self._signo is not None:
            # Blocked before attach: an unblocked RT signal would kill us.
            # The claim's signalfd is for readiness only: SigWaiter reads.
            self._claim = signals.SignalClaim(self._signo).open()
            self._waiter = _sig.SigWaiter(self._signo)
            self._sigfd = self._claim.fd
        if mode != _abi.VIA_SIGNAL:
            self._epoll = select.epoll()
            self._epoll.register(lb.bpf_map__fd(ring_map), select.EPOLLIN)

        self._attach(prog, prog_name, target)

    def _set_target(self, consumed: int) -> None:
        lb = _libbpf.lib()
        tgt = ctypes.create_string_buffer(
            _abi.TARGET.pack(self._tgid, self._tid, consumed), _abi.TARGET.size
        )
        key = ctypes.c_uint32(0)
        _libbpf.check_rc(
            lb.bpf_map_update_elem(self._target_fd, ctypes.byref(key), tgt, 0), "set target"
        )
        self._published = consumed

    def _find_map(self, obj: int, suffix: str) -> int:
        lb = _libbpf.lib()
        m = lb.bpf_object__next_map(obj, None)
        while m:
            name = (lb.bpf_map__name(m) or b"").decode()
            if name == suffix or (suffix.startswith(".") and name.endswith(suffix)):
                return int(m)
            m = lb.bpf_object__next_map(obj, m)
        raise BpfError(f"BPF object has no map {suffix}: rebuild it with `make bpf-build`")

    def _set_map(
        self, obj: int, name: str, *, initial: bytes | None = None, max_entries: int = 0
    ) -> int:
        lb = _libbpf.lib()
        m = self._find_map(obj, name)
        if initial is not None:
            buf = ctypes.create_string_buffer(initial, len(initial))
            _libbpf.check_rc(
                lb.bpf_map__set_initial_value(m, buf, len(initial)),
                "BPF object config layout differs from upcall_bpf.h: rebuild it",
            )
        if max_entries:
            _libbpf.check_rc(lb.bpf_map__set_max_entries(m, max_entries), f"size {name}")
        return m

    def _load_error(self, err: int, prog_name: str, target: str | None) -> BpfError:
        if err in (errno.EPERM, errno.EACCES) and not probe.check_privilege().ok:
            return BpfError(probe.check_privilege().detail, errno_=err)
        why = _libbpf.log_tail(3)
        if prog_name.startswith("upcall_fentry"):
            if err == errno.EPERM:
                why = "this kernel refuses BPF trampolines (fentry) even as root, e.g. by policy"
            else:
                why = f"{os.strerror(err)}: it may be notrace or inlined"
            kp = "" if probe.has_kprobes() else ", and it has no kprobes (CONFIG_KPROBES off)"
            return BpfError(
                f"cannot hook kernel function {target!r}: {why}{kp}",
                errno_=err,
            )
        last = why.splitlines()[-1] if why else os.strerror(err)
        return BpfError(f"the kernel refused the BPF program {prog_name}: {last}", errno_=err)

    def _attach(self, prog: int, prog_name: str, target: str | None) -> None:
        lb = _libbpf.lib()
        if prog_name == "upcall_trigger":
            return  # run on demand, nothing to attach
        if prog_name == "upcall_tracepoint":
            assert target is not None
            cat, _, name = target.partition(":")
            link = lb.bpf_program__attach_tracepoint(prog, cat.encode(), name.encode())
        elif prog_name == "upcall_kprobe":
            assert target is not None
            link = lb.bpf_program__attach_kprobe(prog, False, target.encode())
        else:
            link = lb.bpf_program__attach_trace(prog)
        if not link:
            err = ctypes.get_errno() or errno.EINVAL
            raise BpfError(f"cannot attach {prog_name} to {target}: {os.strerror(err)}")
        self._links.append(link)

    def _test_run(self, prog_fd: int, ctx: ctypes.Array[ctypes.c_char]) -> None:
        opts = _libbpf.TestRunOpts()
        opts.sz = ctypes.sizeof(opts)
        opts.ctx_in = ctypes.cast(ctx, ctypes.c_void_p)
        opts.ctx_size_in = len(ctx)  # a syscall program's ctx is copied back here
        rc = _libbpf.lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts))
        _libbpf.check_rc(rc, "run BPF program")

    # ---- the user-triggered hook ---------------------------------------

    def trigger(
        self, value: int = 0, count: int = 1, *, seq: bool = False, stamp: bool = False
    ) -> None:
        """Fire the user-triggered hook: ``count`` events in one system call.

        seq: the i-th event of the burst carries ``value + i``.
        stamp: each event carries the BPF program's ``bpf_ktime_get_ns()`` as
            its value (latency measurements).
        Any thread may call it; the pid/comm filter applies to the caller.
        """
        self._check_open()
        if not isinstance(self.hook, Trigger) or self._prog is None:
            raise BpfError("trigger() needs a subscription to the Trigger hook")
        if not 1 <= count <= (1 << 23):
            raise BpfError(f"count must be 1..{1 << 23}")
        flags = (_abi.TRIG_SEQ if seq else 0) | (_abi.TRIG_STAMP if stamp else 0)
        ctx = ctypes.create_string_buffer(
            _abi.TRIGGER.pack(value & _abi_mask, count, flags), _abi.TRIGGER.size
        )
        self._test_run(self._prog, ctx)

    # ---- reading -------------------------------------------------------

    def fileno(self) -> int:
        """A file descriptor that polls readable when events are waiting.

        For signal delivery it is a signalfd that only reports readiness to
        the subscribing thread; read with :meth:`read`, never from the fd.
        """
        self._check_open()
        if self._mode == _abi.VIA_SIGNAL or self._epoll is None:
            return self._sigfd
        return self._epoll.fileno()

    def _stats_raw(self) -> tuple[int, int, int, int, int]:
        assert self._stats_map is not None
        e, d, dr, f, sl = _abi.STATS.unpack_from(self._stats_map, 0)
        return int(e), int(d), int(dr), int(f), int(sl)

    def _fill(self, max_events: int, timeout: float | None) -> int:
        """Move up to ``max_events`` events into the pending queue; the count."""
        self._check_open()
        if self._mode == _abi.VIA_SIGNAL:
            return self._fill_signal(max_events, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        ring = self._ring
        assert ring is not None
        while True:
            if self._mode == _abi.VIA_SIGNAL_CURRENT:
                # Consume the doorbells; the records are in the ring.
                while self._waiter.wait(0) is not None:
                    pass
            got: list[Event] = []
            n = ring.read(max_events, monotonic_ns(), got)
            if n:
                if self._mode == _abi.VIA_SIGNAL_CURRENT:
                    got = [_as_transport(e, "bpf-signal", self._signo) for e in got]
                self._pending.extend(got)
                self._last_seq = got[-1].seqno
                return n
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return 0
            if self._mode == _abi.VIA_SIGNAL_CURRENT:
                self._waiter.wait(left)
            else:
                assert self._epoll is not None
                with contextlib.suppress(InterruptedError):
                    self._epoll.poll(-1 if left is None else left)

    def _fill_signal(self, max_events: int, timeout: float | None) -> int:
        if threading.get_ident() != self._owner:
            raise BpfError("signal delivery is read in the thread that subscribed")
        waiter = self._waiter
        got = 0
        r = waiter.wait(timeout)
        source = _source_of(self.hook)
        while r is not None:
            now = monotonic_ns()
            seq, ts = self._match_slot(r.value)
            self._pending.append(
                make_event(seq, r.value, source, "bpf-signal", ts, now, r.signo, 0)
            )
            got += 1
            if got >= max_events:
                break
            r = waiter.wait(0)
        # Tell the kernel which slots are free again (one syscall per quarter
        # of the slots, so this costs nothing per event).
        if self._slot_cursor - self._published > (self._slot_mask + 1) // 4:
            self._set_target(self._slot_cursor)
        return got

    def _match_slot(self, value: int) -> tuple[int, int | None]:
        """The seqno and timestamp of a received signal, from its slot."""
        assert self._slots_map is not None
        sm = self._slots_map
        mask = self._slot_mask
        size = _abi.SIGSLOT.size
        assert self._stats_map is not None
        limit = _STATS_SLOTS.unpack_from(self._stats_map, _STATS_SLOTS_OFF)[0]  # once per signal
        c = self._slot_cursor
        found = -1
        i = c
        while i < limit and i - c < SLOT_WINDOW:
            if i not in self._slot_taken:
                seq, ts, v, state = _abi.SIGSLOT.unpack_from(sm, (i & mask) * size)
                if state == _abi.SLOT_SENT and v == value:
                    found = i
                    break
            i += 1
        if found < 0:
            # Not found (overwritten by a backlog larger than the slots): keep
            # the order, say nothing about the time.
            self._last_seq += 1
            return self._last_seq, None
        self._slot_taken.add(found)
        # Advance past what is consumed or failed (failed slots are the gaps).
        while c < limit:
            if c in self._slot_taken:
                self._slot_taken.discard(c)
            elif _abi.SIGSLOT.unpack_from(sm, (c & mask) * size)[3] != _abi.SLOT_FAILED:
                break
            c += 1
        self._slot_cursor = c
        self._last_seq = max(self._last_seq, seq)
        return seq, ts

    def _take(self, n: int) -> list[Event]:
        pending = self._pending
        if n >= len(pending):
            out = list(pending)
            pending.clear()
        else:
            out = [pending.popleft() for _ in range(n)]
        self._received += len(out)
        for cb in self._callbacks:
            for ev in out:
                cb(ev)
        return out

    def wait(self, timeout: float | None = None) -> bool:
        """True when an event is ready to read; False after ``timeout`` seconds.

        timeout None waits forever; 0 only checks.
        """
        return bool(self._pending) or self._fill(1024, timeout) > 0

    def read(self, max_events: int = 1024, timeout: float | None = None) -> list[Event]:
        """Up to ``max_events`` events, in a batch.

        timeout None blocks until at least one event; 0 returns at once
        (possibly with an empty list); otherwise waits up to that many seconds.
        """
        if max_events <= 0:
            raise ValueError("max_events must be positive")
        if len(self._pending) < max_events:
            self._fill(max_events - len(self._pending), 0 if self._pending else timeout)
        return self._take(max_events)

    def read_batch(self, max_events: int = 1024, timeout: float | None = None) -> Batch:
        """Up to ``max_events`` events as one :class:`~upcall.Batch`, waiting as :meth:`read`.

        Ring buffer delivery copies the run of records out of the ring in
        one go and builds no object per event; signal delivery dequeues one
        siginfo per system call (sigtimedwait) and packs them.
        """
        if max_events <= 0:
            raise ValueError("max_events must be positive")
        self._check_open()
        if self._pending or self._mode != _abi.VIA_RINGBUF or self._callbacks:
            return Batch.from_events(self.read(max_events, timeout), self.transport, monotonic_ns())
        ring, epoll = self._ring, self._epoll
        assert ring is not None and epoll is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            data = ring.read_run(max_events)
            if data:
                batch = Batch(data, self.transport, monotonic_ns(), layout=RING_LAYOUT)
                self._received += len(batch)
                self._last_seq = batch.seqno[-1]
                return batch
            if ring.available() and self._fill(max_events, 0):
                # A record of another shape (discarded...): the decoding path.
                return Batch.from_events(self._take(max_events), self.transport, monotonic_ns())
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return Batch.empty(self.transport)
            with contextlib.suppress(InterruptedError):
                epoll.poll(-1 if left is None else left)
            self._check_open()

    def on_event(self, callback: Callable[[Event], None]) -> Callable[[Event], None]:
        """Call ``callback`` with every event this subscription hands out.

        Callbacks run in the reading thread, from :meth:`read`, iteration or
        ``async for``; returns the callback so it can be used as a decorator.
        """
        self._callbacks.append(callback)
        return callback

    def __iter__(self) -> Iterator[Event]:
        """Blocks for each next event; ends when the subscription is closed."""
        while not self._closed:
            yield from self.read(256, timeout=None)

    def __aiter__(self) -> BpfSubscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._pending or self._fill(256, 0):
                return self._take(1)[0]
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            fd = self.fileno()

            def ready(f: asyncio.Future[None] = fut) -> None:
                if not f.done():
                    f.set_result(None)

            loop.add_reader(fd, ready)
            try:
                await fut
            finally:
                loop.remove_reader(fd)

    def stats(self) -> BpfStats:
        """The kernel's counters (read from the mmap'd map, no system call)."""
        self._check_open()
        emitted, delivered, dropped, filtered, _slots = self._stats_raw()
        return BpfStats(emitted, delivered, dropped, filtered, self._received)

    def bpf_ids(self) -> dict[str, list[int]]:
        """Kernel ids of this subscription's programs, maps and links (for bpftool)."""
        self._check_open()
        lb = _libbpf.lib()
        assert self._obj is not None
        progs = []
        p = lb.bpf_object__next_program(self._obj, None)
        while p:
            fd = lb.bpf_program__fd(p)
            if fd >= 0:
                progs.append(_libbpf.obj_id(fd))
            p = lb.bpf_object__next_program(self._obj, p)
        maps = []
        m = lb.bpf_object__next_map(self._obj, None)
        while m:
            fd = lb.bpf_map__fd(m)
            if fd >= 0:
                maps.append(_libbpf.obj_id(fd))
            m = lb.bpf_object__next_map(self._obj, m)
        links = [_libbpf.obj_id(lb.bpf_link__fd(lk)) for lk in self._links]
        return {"progs": progs, "maps": maps, "links": links}

    @property
    def signo(self) -> int | None:
        """The real-time signal used, or None for ring-buffer delivery."""
        return self._signo

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("BPF subscription is closed")

    # ---- teardown ------------------------------------------------------

    def close(self) -> None:
        """Detach, free the maps, give the signal back. Idempotent."""
        if self._closed:
            return
        self._closed = True
        lb = _libbpf.lib()
        for link in self._links:
            lb.bpf_link__destroy(link)
        self._links.clear()
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        for m in (self._stats_map, self._slots_map):
            if m is not None:
                m.close()
        self._stats_map = self._slots_map = None
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if self._obj is not None:
            lb.bpf_object__close(self._obj)  # closes prog and map fds
            self._obj = None
        self._sigfd = -1
        if self._claim is not None:
            self._release_signal(self._claim)

    def _release_signal(self, claim: signals.SignalClaim) -> None:
        if threading.get_ident() == self._owner:
            # Links are gone; drop what is still queued. A hook that can run
            # with interrupts off defers its send to irq_work, which runs
            # within microseconds: give one such straggler a moment to land
            # before the mask is restored, since unblocked it would kill us.
            waiter = _sig.SigWaiter(claim.signo)
            while waiter.wait(0) is not None:
                pass
            if not isinstance(self.hook, Trigger):
                while waiter.wait(0.002) is not None:
                    pass
        # Drains again, closes the signalfd, restores the mask (in the
        # owner thread only) and gives the signal back.
        claim.close()
        self._claim = None
        self._signo = None

    def __enter__(self) -> BpfSubscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()


_abi_mask = (1 << 64) - 1


def _source_of(hook: Hook) -> int:
    if isinstance(hook, Trigger):
        return _abi.SRC_TRIGGER
    if isinstance(hook, Tracepoint):
        return _abi.SRC_TRACEPOINT
    if isinstance(hook, Kprobe):
        return _abi.SRC_KPROBE
    return _abi.SRC_IRQ


def _as_transport(ev: Event, transport: str, signo: int | None) -> Event:
    return make_event(
        ev.seqno, ev.value, ev.source, transport, ev.timestamp_ns, ev.received_ns, signo, ev.flags
    )


def subscribe(hook: Hook, **kwargs: object) -> BpfSubscription:
    """Shorthand for :class:`BpfSubscription` (same keyword arguments)."""
    return BpfSubscription(hook, **kwargs)  # type: ignore[arg-type]
