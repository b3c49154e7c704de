# SPDX-License-Identifier: LGPL-2.1-or-later
"""A subscription to one kernel hook through BPF, with the module's surface.

One BPF object is loaded per subscription, so its programs, maps and links
are this process's alone: closing the subscription (or the process dying)
closes their fds and the kernel detaches and frees them. Nothing is pinned.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import select
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from upcall import _signals as signals
from upcall._batch import Batch
from upcall._errors import ClosedError, WrongThreadError
from upcall._event import Event, make_event, monotonic_ns
from upcall._subscription import Subscription
from upcall.abi import Stats

from . import _abi, _libbpf, _sig
from . import _probe as probe
from ._errors import BpfError
from ._object import object_path
from ._ringbuf import RING_LAYOUT, RingReader

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
class BpfStats(Stats):
    """The kernel's counters of one BPF subscription, in the module's :class:`~upcall.Stats` shape.

    emitted: events that passed the filter in the kernel and got a seqno.
    delivered: handed to the transport (signal queued, record committed).
    dropped: could not be handed over (ring full, signal refused): the seqno
        gaps the reader sees.
    seqno: the last seqno given out (every emitted event gets the next one).
    pending: emitted, not yet delivered or dropped (a hook running now).
    transport: 0: the subscription is no subscriber of the module.
    signo: the real-time signal of signal delivery, else 0.
    filtered: hook hits that the pid/comm filter refused in the kernel.

    Events this process has read are the subscription's
    :attr:`~upcall.Subscription.received`, as for the module's transports.
    """

    filtered: int = 0


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


class _Loaded:
    """The BPF object of one subscription: its programs, maps and links.

    What the subscription holds in the kernel (its :class:`~upcall._subscription.Handle`):
    :meth:`close` detaches the hook and closes every program and map fd, so
    the kernel frees them; nothing is pinned.
    """

    def __init__(self) -> None:
        self.obj: int | None = None
        self.links: list[int] = []
        self.stats_map: mmap.mmap | None = None
        self.signo = 0

    def stats(self) -> BpfStats:
        """The counters, read from the mmap'd stats map (no system call)."""
        if self.stats_map is None:
            raise ClosedError("the BPF subscription is closed")
        emitted, delivered, dropped, filtered, _slots = _abi.STATS.unpack_from(self.stats_map, 0)
        return BpfStats(
            emitted=emitted,
            delivered=delivered,
            dropped=dropped,
            seqno=emitted,
            pending=max(0, emitted - delivered - dropped),
            transport=0,
            signo=self.signo,
            filtered=filtered,
        )

    def close(self) -> None:
        lb = _libbpf.lib()
        links, self.links = self.links, []
        for link in links:
            lb.bpf_link__destroy(link)
        if self.stats_map is not None:
            self.stats_map.close()
            self.stats_map = None
        if self.obj is not None:
            obj, self.obj = self.obj, None
            lb.bpf_object__close(obj)  # closes the program and map fds


class BpfSubscription(Subscription):
    """Events from one kernel hook, delivered by BPF: by signal or ring buffer.

    The surface is :class:`upcall.Subscription`'s, as for the module's
    transports: ``wait``, ``read``, ``read_batch``, ``poll``, iteration,
    ``aread``/``async for``, ``on_event``/``run`` (callbacks in the main
    thread), ``received``/``lost``, ``stats()`` and ``close``.

    via: ``"ringbuf"`` (records with seqno, timestamp and value in a BPF ring
        buffer; read from any thread) or ``"signal"`` (a real-time signal to
        the subscribing thread with the value in ``si_value``; seqno and
        timestamp from a per-signal slot; read in the thread that subscribed).
    pid: only events whose current task belongs to this process (tgid);
        None: any. Decided in the kernel.
    comm: only events whose current task has this comm (exact); None: any.
    ring_size: ring buffer bytes (a power of two, at least a page).
    signo: the real-time signal to use; None picks a free one.
    """

    _file: _Loaded

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
        if via not in ("ringbuf", "signal"):
            raise BpfError(f"--via must be signal or ringbuf, got {via!r}")
        if pid is not None and pid <= 0:
            raise BpfError(f"pid filter must be positive, got {pid}")
        if comm is not None and not 0 < len(comm.encode()) <= 15:
            raise BpfError(f"comm filter must be 1 to 15 bytes, got {comm!r}")
        if ring_size < mmap.PAGESIZE or ring_size & (ring_size - 1):
            raise BpfError(f"ring_size must be a power of two >= {mmap.PAGESIZE}")
        super().__init__(_Loaded())
        self.hook = hook
        self.via = via
        self.transport = "ringbuf" if via == "ringbuf" else "bpf-signal"
        self._source = _source_of(hook)
        self._ring: RingReader | None = None
        self._slots_map: mmap.mmap | None = None
        self._epoll: select.epoll | None = None
        self._sigfd = -1
        self._signo: int | None = None
        self._claim: signals.SignalClaim | None = None
        self._sigwait: _sig.SigWaiter | None = None
        self._slot_cursor = 0
        self._slot_taken: set[int] = set()
        self._sig_seq = 0  # the highest seqno a signal was matched to
        self._owner = threading.get_ident()
        self._prog: int | None = None
        self._whoami = -1
        with contextlib.ExitStack() as undo:
            # Unwound last in, first out: the hook detached, then the rest.
            undo.callback(self._teardown)
            undo.callback(self._abandon)
            self._open(hook, via, pid, comm, ring_size, signo, kfunc)
            undo.pop_all()  # from here on close() releases everything

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
        self._mode = mode
        # The ring is read without a system call: try it before waiting.
        self._read_first = mode == _abi.VIA_RINGBUF

        _libbpf.clear_log()
        obj = lb.bpf_object__open_file(str(path).encode(), None)
        self._file.obj = _libbpf.check_ptr(obj, f"cannot open {path}")

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
            self._file.signo = self._signo
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
        self._whoami = lb.bpf_program__fd(progs["upcall_whoami"])

        self._target_fd = lb.bpf_map__fd(self._find_map(obj, "target"))
        self._published = 0
        self._tgid, self._tid = self._kernel_ids()
        self._set_target(0)

        self._file.stats_map = mmap.mmap(
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
            self._sigwait = _sig.SigWaiter(self._signo)
            self._sigfd = self._claim.fd
        if mode != _abi.VIA_SIGNAL:
            self._epoll = select.epoll()
            self._epoll.register(lb.bpf_map__fd(ring_map), select.EPOLLIN)

        self._attach(prog, prog_name, target)

    def _kernel_ids(self) -> tuple[int, int]:
        """The kernel's (tgid, tid) of the calling thread (pid namespaces aside)."""
        who = ctypes.create_string_buffer(_abi.WHOAMI.size)
        self._test_run(self._whoami, who)
        pid_tgid = _abi.WHOAMI.unpack(who.raw)[0]
        return pid_tgid >> 32, pid_tgid & 0xFFFFFFFF

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
        self._file.links.append(link)

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
        if self._closed:
            raise ClosedError("the BPF subscription is closed")
        if not isinstance(self.hook, Trigger) or self._prog is None:
            raise BpfError("trigger() needs a subscription to the Trigger hook")
        if not 1 <= count <= (1 << 23):
            raise BpfError(f"count must be 1..{1 << 23}")
        flags = (_abi.TRIG_SEQ if seq else 0) | (_abi.TRIG_STAMP if stamp else 0)
        ctx = ctypes.create_string_buffer(
            _abi.TRIGGER.pack(value & _abi_mask, count, flags), _abi.TRIGGER.size
        )
        self._test_run(self._prog, ctx)

    # ---- what Subscription asks of a transport ---------------------------

    def fileno(self) -> int:
        """A file descriptor that polls readable when events are waiting.

        For signal delivery it is a signalfd that only reports readiness to
        the thread the signals are sent to; read with :meth:`read`, never
        from the fd.
        """
        if self._closed:
            raise ClosedError("the BPF subscription is closed")
        if self._epoll is None:
            return self._sigfd
        return self._epoll.fileno()

    def _check_thread(self) -> None:
        if self._mode == _abi.VIA_SIGNAL and threading.get_ident() != self._owner:
            raise WrongThreadError(
                "the signals of this BPF subscription are sent to the thread that "
                "subscribed, and only it can read them"
            )

    def _read_records(self, max_records: int) -> list[Event]:
        if self._mode == _abi.VIA_SIGNAL:
            return self._read_signals(max_records)
        ring = self._ring
        assert ring is not None
        if self._mode == _abi.VIA_SIGNAL_CURRENT and threading.get_ident() == self._owner:
            # Consume the doorbells (sent to the thread that ran the hook,
            # this one for trigger()); the records are in the ring.
            waiter = self._sigwait
            assert waiter is not None
            while waiter.wait(0) is not None:
                pass
        got: list[Event] = []
        n = ring.read(max_records, monotonic_ns(), got)
        if not n:
            return got
        if self._mode == _abi.VIA_SIGNAL_CURRENT:
            got = [_as_transport(e, "bpf-signal", self._signo) for e in got]
        self._account_unordered(n, max(e.seqno for e in got))
        return got

    def _read_batch(self, max_records: int) -> Batch:
        ring = self._ring
        if self._mode != _abi.VIA_RINGBUF or ring is None:
            return super()._read_batch(max_records)
        data = ring.read_run(max_records)
        if data:
            # One copy out of the ring, no object per event.
            batch = Batch(data, self.transport, monotonic_ns(), layout=RING_LAYOUT)
            self._account_unordered(len(batch), max(batch.seqno))
            return batch
        if ring.available():
            # A record of another shape (discarded...): the decoding path.
            return super()._read_batch(max_records)
        return Batch.empty(self.transport)

    def _read_signals(self, max_records: int) -> list[Event]:
        waiter = self._sigwait
        assert waiter is not None
        events: list[Event] = []
        r = waiter.wait(0)
        while r is not None:
            seq, ts = self._match_slot(r.value)
            events.append(
                make_event(seq, r.value, self._source, "bpf-signal", ts, monotonic_ns(), r.signo, 0)
            )
            if len(events) >= max_records:
                break
            r = waiter.wait(0)
        if events:
            self._account_unordered(len(events), max(e.seqno for e in events))
        # Tell the kernel which slots are free again (one syscall per quarter
        # of the slots, so this costs nothing per event).
        if self._slot_cursor - self._published > (self._slot_mask + 1) // 4:
            self._set_target(self._slot_cursor)
        return events

    def _match_slot(self, value: int) -> tuple[int, int | None]:
        """The seqno and timestamp of a received signal, from its slot."""
        assert self._slots_map is not None and self._file.stats_map is not None
        sm = self._slots_map
        mask = self._slot_mask
        size = _abi.SIGSLOT.size
        limit = _STATS_SLOTS.unpack_from(self._file.stats_map, _STATS_SLOTS_OFF)[0]
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
            self._sig_seq += 1
            return self._sig_seq, None
        self._slot_taken.add(found)
        # Advance past what is consumed or failed (failed slots are the gaps).
        while c < limit:
            if c in self._slot_taken:
                self._slot_taken.discard(c)
            elif _abi.SIGSLOT.unpack_from(sm, (c & mask) * size)[3] != _abi.SLOT_FAILED:
                break
            c += 1
        self._slot_cursor = c
        self._sig_seq = max(self._sig_seq, seq)
        return seq, ts

    def _choose_dispatch_signal(self) -> int:
        if self._mode != _abi.VIA_SIGNAL:
            return signals.choose_signal()  # a token for _thread.interrupt_main(); never sent
        if self._owner != threading.main_thread().ident:
            raise WrongThreadError(
                "on_event() needs a signal subscription made in the main thread, which "
                "can hand its signals over to the watcher thread"
            )
        assert self._signo is not None
        return self._signo

    def _watcher_attach(self) -> None:
        # A signal is read by the thread it is sent to: send them to the
        # watcher from now on (the seqno slots go on as they were).
        if self._mode == _abi.VIA_SIGNAL:
            assert self._signo is not None
            if not signals.is_blocked(self._signo):
                signals.block(self._signo)
            self._tgid, self._tid = self._kernel_ids()
            self._set_target(self._slot_cursor)

    def _main_attach(self) -> None:
        if self._mode == _abi.VIA_SIGNAL:
            self._tgid, self._tid = self._kernel_ids()
            self._set_target(self._slot_cursor)

    def _teardown(self) -> None:
        # The links and the object are gone (the handle's close): nothing
        # sends any more. Unmap, then give the signal back.
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._slots_map is not None:
            self._slots_map.close()
            self._slots_map = None
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        self._sigfd = -1
        if self._claim is not None:
            self._release_signal(self._claim)

    def _release_signal(self, claim: signals.SignalClaim) -> None:
        if threading.get_ident() == self._owner:
            # Drop what is still queued. A hook that can run with interrupts
            # off defers its send to irq_work, which runs within microseconds:
            # give one such straggler a moment to land before the mask is
            # restored, since unblocked it would kill us.
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

    # ---- BPF's own ----------------------------------------------------

    def stats(self) -> BpfStats:
        """The kernel's counters (read from the mmap'd map, no system call)."""
        if self._closed:
            raise ClosedError("the BPF subscription is closed")
        return self._file.stats()

    def bpf_ids(self) -> dict[str, list[int]]:
        """Kernel ids of this subscription's programs, maps and links (for bpftool)."""
        obj = self._file.obj
        if self._closed or obj is None:
            raise ClosedError("the BPF subscription is closed")
        lb = _libbpf.lib()

        def ids(next_of: Callable[..., Any], fd_of: Callable[..., int]) -> list[int]:
            # libbpf's iterators: next_of(obj, None) is the first, NULL ends.
            out, item = [], next_of(obj, None)
            while item:
                if (fd := fd_of(item)) >= 0:
                    out.append(_libbpf.obj_id(fd))
                item = next_of(obj, item)
            return out

        return {
            "progs": ids(lb.bpf_object__next_program, lb.bpf_program__fd),
            "maps": ids(lb.bpf_object__next_map, lb.bpf_map__fd),
            "links": [_libbpf.obj_id(lb.bpf_link__fd(lk)) for lk in self._file.links],
        }

    @property
    def signo(self) -> int | None:
        """The real-time signal used, or None for ring-buffer delivery."""
        return self._signo if self._claim is not None else None

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"hook={self.hook!r}"
        return (
            f"<BpfSubscription via={self.via} {state} received={self._received} lost={self._lost}>"
        )

    def __del__(self) -> None:
        # A subscription dropped unclosed: the kernel would keep the hook
        # attached for as long as the process lives.
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):
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
