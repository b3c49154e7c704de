# SPDX-License-Identifier: LGPL-2.1-or-later
"""ctypes bindings for the few libbpf 1.x calls upcall needs.

Why ctypes over the system ``libbpf.so.1`` and not a Python package: no
maintained Python binding of libbpf exists on PyPI (bcc is a different,
compile-at-run-time stack with its own LLVM and is not on PyPI), and the
distribution's libbpf is the same library the C consumer links, so both
benchmark sides load the program identically. Only stable libbpf 1.0 API
is used (no skeletons), so any libbpf >= 1.0 works.

libbpf 1.x returns NULL/negative and sets ``errno``; every wrapper here turns
that into :class:`BpfError` with libbpf's own last log lines attached.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections import deque
from typing import Any

from upcall._libc import libc

from ._errors import BpfError

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None

# libbpf's log (verifier output, "failed to find BTF for ...") is kept so
# that an error can say why instead of printing to stderr.
_log: deque[str] = deque(maxlen=200)

_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


def _on_print(level: int, fmt: bytes | None, ap: int | None) -> int:
    # va_list on x86-64/arm64 is passed as a pointer: hand it to vsnprintf.
    buf = ctypes.create_string_buffer(4096)
    libc().vsnprintf(buf, ctypes.c_size_t(len(buf)), fmt, ctypes.c_void_p(ap))
    text = buf.value.decode(errors="replace").rstrip()
    if text:
        _log.append(text)
    return 0


_print_cb = _PRINT_FN(_on_print)  # kept alive for the process


class TestRunOpts(ctypes.Structure):
    _fields_ = (
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    )


class BtfType(ctypes.Structure):
    _fields_ = (
        ("name_off", ctypes.c_uint32),
        ("info", ctypes.c_uint32),
        ("size_or_type", ctypes.c_uint32),
    )


BTF_KIND_FUNC = 12
BTF_KIND_FUNC_PROTO = 13
BPF_PROG_TYPE_TRACING = 26
BPF_MAP_TYPE_RINGBUF = 27

_P = ctypes.c_void_p
_S = ctypes.c_char_p
_I = ctypes.c_int

_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "libbpf_set_print": (_P, [_PRINT_FN]),
    "libbpf_get_error": (ctypes.c_long, [_P]),
    "bpf_object__open_file": (_P, [_S, _P]),
    "bpf_object__load": (_I, [_P]),
    "bpf_object__close": (None, [_P]),
    "bpf_object__find_program_by_name": (_P, [_P, _S]),
    "bpf_object__next_program": (_P, [_P, _P]),
    "bpf_object__find_map_by_name": (_P, [_P, _S]),
    "bpf_object__next_map": (_P, [_P, _P]),
    "bpf_program__name": (_S, [_P]),
    "bpf_program__set_autoload": (_I, [_P, ctypes.c_bool]),
    "bpf_program__set_attach_target": (_I, [_P, _I, _S]),
    "bpf_program__fd": (_I, [_P]),
    "bpf_program__attach_tracepoint": (_P, [_P, _S, _S]),
    "bpf_program__attach_trace": (_P, [_P]),
    "bpf_program__attach_kprobe": (_P, [_P, ctypes.c_bool, _S]),
    "bpf_link__destroy": (_I, [_P]),
    "bpf_link__fd": (_I, [_P]),
    "bpf_obj_get_info_by_fd": (_I, [_I, _P, ctypes.POINTER(ctypes.c_uint32)]),
    "bpf_map__name": (_S, [_P]),
    "bpf_map__fd": (_I, [_P]),
    "bpf_map__set_max_entries": (_I, [_P, ctypes.c_uint32]),
    "bpf_map__set_initial_value": (_I, [_P, _P, ctypes.c_size_t]),
    "bpf_map_update_elem": (_I, [_I, _P, _P, ctypes.c_uint64]),
    "bpf_map_lookup_elem": (_I, [_I, _P, _P]),
    "bpf_prog_test_run_opts": (_I, [_I, ctypes.POINTER(TestRunOpts)]),
    "btf__load_vmlinux_btf": (_P, []),
    "btf__free": (None, [_P]),
    "btf__find_by_name_kind": (ctypes.c_int32, [_P, _S, ctypes.c_uint32]),
    "btf__type_by_id": (ctypes.POINTER(BtfType), [_P, ctypes.c_uint32]),
    "libbpf_probe_bpf_map_type": (_I, [_I, _P]),
    "libbpf_probe_bpf_prog_type": (_I, [_I, _P]),
}


def lib() -> ctypes.CDLL:
    """The loaded libbpf, with argument types set (once per process)."""
    global _lib
    with _lock:
        if _lib is None:
            name = ctypes.util.find_library("bpf") or "libbpf.so.1"
            try:
                loaded = ctypes.CDLL(name, use_errno=True)
            except OSError as e:
                raise BpfError(
                    f"cannot load libbpf ({name}): install libbpf1 (Debian: apt-get install "
                    "libbpf1, or `make bpf-deps`)"
                ) from e
            for fn, (res, args) in _SIGNATURES.items():
                f = getattr(loaded, fn)
                f.restype = res
                f.argtypes = args
            loaded.libbpf_set_print(_print_cb)
            _lib = loaded
        return _lib


def clear_log() -> None:
    _log.clear()


def log_tail(n: int = 6, *, grep: str | None = None) -> str:
    """The last libbpf log lines (optionally only those containing ``grep``)."""
    lines = [ln for ln in _log if grep is None or grep in ln]
    return "\n".join(lines[-n:])


def check_ptr(ptr: int | None, what: str) -> int:
    """Raise for a NULL pointer result, with errno and libbpf's reason."""
    err = ctypes.get_errno()
    if not ptr:
        raise BpfError(f"{what}: {os.strerror(err or 1)}", errno_=err or None)
    return ptr


def check_rc(rc: int, what: str) -> int:
    """Raise for a negative return (libbpf returns -errno)."""
    if rc < 0:
        raise BpfError(f"{what}: {os.strerror(-rc)}", errno_=-rc)
    return rc


def kernel_btf_func_args(btf: int, name: str) -> int | None:
    """Number of arguments of kernel function ``name`` per BTF, or None if absent."""
    lb = lib()
    tid = lb.btf__find_by_name_kind(btf, name.encode(), BTF_KIND_FUNC)
    if tid < 0:
        return None
    func = lb.btf__type_by_id(btf, tid).contents
    proto = lb.btf__type_by_id(btf, func.size_or_type).contents
    if (proto.info >> 24) & 0x1F != BTF_KIND_FUNC_PROTO:
        return None
    return int(proto.info) & 0xFFFF


def obj_id(fd: int) -> int:
    """The kernel id of a BPF prog/map/link fd (``id`` is the second u32 of each info)."""
    buf = (ctypes.c_uint8 * 256)()
    n = ctypes.c_uint32(ctypes.sizeof(buf))
    check_rc(lib().bpf_obj_get_info_by_fd(fd, ctypes.cast(buf, ctypes.c_void_p), n), "info")
    return int.from_bytes(bytes(buf[4:8]), "little")
