# SPDX-License-Identifier: LGPL-2.1-or-later
"""What this kernel and process support for the BPF path, and why not.

Each check returns a :class:`Check` (ok plus a one-line reason) so that
``upcall doctor`` and the subscription's refusals say the same thing.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

from upcall._libc import libc

from . import _libbpf
from ._errors import BpfError
from ._object import OBJ_ENV, OBJ_NAME, object_path

KFUNC_MIN_KERNEL = "6.13"
TRACEFS = Path("/sys/kernel/tracing")

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


@dataclass(frozen=True, slots=True)
class Check:
    """One thing the BPF path may need: whether this machine has it, and why not.

    ``fix``: what to do about it, in a few words ("" when ok or nothing can be done).
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""

    @property
    def needed(self) -> bool:
        """Whether the BPF path cannot run at all without it (else it narrows what runs)."""
        return self.name in NEEDED


#: The checks without which no subscription can work: ``upcall doctor`` exits 1
#: when one fails. kfunc, fentry and kprobes only narrow the hooks and transports.
NEEDED = frozenset({"libbpf", "object", "privileges", "BTF", "ringbuf", "tracefs"})


def btf_path() -> Path:
    # Overridable so the "kernel without BTF" refusal can be tested on a
    # kernel that has it.
    return Path(os.environ.get("UPCALL_BPF_BTF", "/sys/kernel/btf/vmlinux"))


def kernel_release() -> str:
    return os.uname().release


def _cap_eff() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def check_privilege() -> Check:
    caps = _cap_eff()
    has = bool(caps & (1 << CAP_SYS_ADMIN)) or (
        bool(caps & (1 << CAP_BPF)) and bool(caps & (1 << CAP_PERFMON))
    )
    if has:
        return Check("privileges", True, f"uid {os.getuid()} has CAP_BPF+CAP_PERFMON")
    return Check(
        "privileges",
        False,
        f"loading BPF programs needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN); "
        f"this process (uid {os.getuid()}) has neither",
        "run as root (sudo upcall ...)",
    )


def check_btf() -> Check:
    p = btf_path()
    if p.is_file() and os.access(p, os.R_OK):
        return Check("BTF", True, f"{p} present")
    return Check(
        "BTF",
        False,
        f"this kernel has no BTF ({p} missing): the BPF path needs a kernel built with "
        "CONFIG_DEBUG_INFO_BTF=y",
        "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's stock kernels are)",
    )


_btf_handle: int | None = None


def vmlinux_btf() -> int:
    """libbpf's handle on the kernel BTF, loaded once per process."""
    global _btf_handle
    if _btf_handle is None:
        chk = check_btf()
        if not chk.ok:
            raise BpfError(chk.detail)
        h = _libbpf.lib().btf__load_vmlinux_btf()
        if not h:
            raise BpfError(f"cannot read kernel BTF: {os.strerror(ctypes.get_errno() or 1)}")
        _btf_handle = h
    return _btf_handle


def has_kernel_func(name: str) -> bool:
    return _libbpf.kernel_btf_func_args(vmlinux_btf(), name) is not None


def check_kfunc() -> Check:
    if not check_btf().ok:
        return Check("kfunc", False, "unknown without BTF")
    if has_kernel_func("bpf_send_signal_task") and has_kernel_func("bpf_task_from_pid"):
        return Check("kfunc", True, "bpf_send_signal_task: signals with a value to any task")
    return Check(
        "kfunc",
        False,
        f"bpf_send_signal_task missing (kernel {kernel_release()}; needs Linux "
        f"{KFUNC_MIN_KERNEL}+): signal delivery only to the current task",
    )


def check_ringbuf() -> Check:
    if not check_privilege().ok:
        return Check("ringbuf", False, "cannot probe without privileges", "run as root")
    rc = _libbpf.lib().libbpf_probe_bpf_map_type(_libbpf.BPF_MAP_TYPE_RINGBUF, None)
    if rc == 1:
        return Check("ringbuf", True, "BPF_MAP_TYPE_RINGBUF")
    return Check(
        "ringbuf", False, "BPF ring buffer missing (needs Linux 5.8+)", "boot Linux 5.8 or later"
    )


def has_kprobes() -> bool:
    return Path("/sys/bus/event_source/devices/kprobe/type").exists()


def check_kprobes() -> Check:
    if has_kprobes():
        return Check("kprobes", True, "kprobe PMU present")
    return Check(
        "kprobes",
        False,
        "no kprobes (CONFIG_KPROBES off): --kprobe uses fentry, so the function needs BTF",
    )


def ensure_tracefs() -> Path:
    """The tracefs events directory, mounting tracefs first if root and unmounted."""
    events = TRACEFS / "events"
    if events.is_dir():
        return events
    if TRACEFS.is_dir() and os.geteuid() == 0:
        rc = libc().mount(b"tracefs", str(TRACEFS).encode(), b"tracefs", 0, None)
        if rc == 0 and events.is_dir():
            return events
    raise BpfError(
        f"tracefs is not mounted at {TRACEFS} (mount -t tracefs tracefs {TRACEFS}) "
        "and it is needed to find tracepoints"
    )


def check_tracefs() -> Check:
    try:
        ensure_tracefs()
    except BpfError as e:
        return Check("tracefs", False, str(e), f"mount -t tracefs tracefs {TRACEFS}")
    return Check("tracefs", True, f"{TRACEFS}/events")


def check_libbpf() -> Check:
    try:
        _libbpf.lib()
    except BpfError as e:
        return Check("libbpf", False, str(e), "apt-get install libbpf1")
    return Check("libbpf", True, "the system's libbpf.so.1 loads")


def check_object() -> Check:
    try:
        path = object_path()
    except BpfError as e:
        fix = (
            f"unset {OBJ_ENV} or point it at {OBJ_NAME}"
            if os.environ.get(OBJ_ENV)
            else f"reinstall the upcall wheel (it carries {OBJ_NAME}), run `make bpf-build` "
            f"in a source checkout, or set {OBJ_ENV}=/path/to/{OBJ_NAME}"
        )
        return Check("object", False, str(e), fix)
    return Check("object", True, str(path))
