"""upcall.bpf._abi against bpf/upcall_bpf.h, as the C compiler reads it.

The BPF loader mirrors the header with struct formats (no field names), so
this test names each format's fields in the header's order and compares
offsets, sizes and signedness with what bpf_abi_check.c prints.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from upcall.bpf import _abi

ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "bpf" / "upcall_bpf.h"
SOURCE = Path(__file__).with_name("bpf_abi_check.c")

# struct name -> (its mirror, the mirror's byte offset of the struct, field names in order)
STRUCTS: dict[str, tuple[struct.Struct, int, tuple[str, ...]]] = {
    "upcall_bpf_cfg": (
        _abi.CFG,
        0,
        ("via", "signo", "filter_tgid", "irq", "has_comm", "slot_mask", "comm"),
    ),
    "upcall_bpf_target": (_abi.TARGET, 0, ("tgid", "tid", "consumed")),
    # The ring record follows the ring buffer's 8-byte header (len, pg_off).
    "upcall_bpf_record": (
        _abi.RING_RECORD,
        8,
        ("seqno", "timestamp_ns", "value", "source", "flags"),
    ),
    "upcall_bpf_stats": (
        _abi.STATS,
        0,
        ("emitted", "delivered", "dropped", "filtered", "slots"),
    ),
    "upcall_bpf_sigslot": (_abi.SIGSLOT, 0, ("seqno", "timestamp_ns", "value", "state")),
    "upcall_bpf_trigger": (_abi.TRIGGER, 0, ("value", "count", "flags")),
    "upcall_bpf_whoami": (_abi.WHOAMI, 0, ("pid_tgid",)),
}
# header macro -> its mirror in _abi
NUMBERS = {
    "UPCALL_VIA_SIGNAL": _abi.VIA_SIGNAL,
    "UPCALL_VIA_RINGBUF": _abi.VIA_RINGBUF,
    "UPCALL_VIA_SIGNAL_CURRENT": _abi.VIA_SIGNAL_CURRENT,
    "UPCALL_SRC_TRIGGER": _abi.SRC_TRIGGER,
    "UPCALL_SRC_TRACEPOINT": _abi.SRC_TRACEPOINT,
    "UPCALL_SRC_KPROBE": _abi.SRC_KPROBE,
    "UPCALL_SRC_IRQ": _abi.SRC_IRQ,
    "UPCALL_TRIG_STAMP": _abi.TRIG_STAMP,
    "UPCALL_TRIG_SEQ": _abi.TRIG_SEQ,
    "UPCALL_REC_STAMPED": _abi.REC_STAMPED,
    "UPCALL_SLOT_SENT": _abi.SLOT_SENT,
    "UPCALL_SLOT_FAILED": _abi.SLOT_FAILED,
}


def format_items(fmt: struct.Struct) -> list[tuple[int, int, bool]]:
    """(offset, size, signed) of each item of a struct format, in order."""
    order, body = fmt.format[0], fmt.format[1:]
    items = []
    offset = 0
    for count, code in re.findall(r"(\d*)([a-zA-Z?])", body):
        n = int(count) if count else 1
        one = struct.calcsize(order + code)
        if code == "s":  # a char array is one field
            items.append((offset, n, False))
            offset += n
            continue
        for _ in range(n):
            items.append((offset, one, code in "bhilq"))
            offset += one
    assert offset == fmt.size
    return items


def python_view() -> dict[str, int]:
    """Every line bpf_abi_check.c prints, computed from upcall.bpf._abi."""
    view = dict(NUMBERS)
    for sname, (fmt, base, fields) in STRUCTS.items():
        items = format_items(fmt)
        # The header before the struct (the ring record's) is not one of its fields.
        struct_items = [(off - base, size, signed) for off, size, signed in items if off >= base]
        assert len(struct_items) == len(fields), f"{sname}: format and field names differ"
        view[f"sizeof.{sname}"] = fmt.size - base
        for fname, (off, size, signed) in zip(fields, struct_items, strict=True):
            view[f"offsetof.{sname}.{fname}"] = off
            view[f"fieldsize.{sname}.{fname}"] = size
            if fname != "comm":
                view[f"signed.{sname}.{fname}"] = int(signed)
    return view


@pytest.fixture(scope="module")
def c_view(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) to read the header with")
    out = tmp_path_factory.mktemp("bpf_abi") / "bpf_abi_check"
    cmd = [cc, "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-I", str(HEADER.parent)]
    built = subprocess.run([*cmd, str(SOURCE), "-o", str(out)], capture_output=True, text=True)
    assert built.returncode == 0, f"{' '.join(cmd)} failed:\n{built.stderr}"
    run = subprocess.run([str(out)], capture_output=True, text=True, check=True)
    view: dict[str, int] = {}
    for line in run.stdout.splitlines():
        name, value = line.split(" ", 1)
        assert name not in view, f"{name} printed twice"
        view[name] = int(value)
    return view


def test_c_and_python_agree(c_view: dict[str, int]) -> None:
    py = python_view()
    assert sorted(c_view) == sorted(py), "bpf_abi_check.c and test_bpf_abi.py cover different names"
    diff = {k: (c_view[k], py[k]) for k in c_view if c_view[k] != py[k]}
    assert not diff, f"C != Python (name: (C, Python)): {diff}"


def test_every_header_name_checked() -> None:
    # A macro or struct added to the header but not mirrored must fail.
    text = HEADER.read_text()
    macros = set(re.findall(r"^#define\s+(UPCALL_\w+)\b(?!\()", text, re.M)) - {"UPCALL_BPF_H"}
    assert macros == set(NUMBERS)
    structs = set(re.findall(r"^struct\s+(upcall_bpf_\w+)\s*\{", text, re.M))
    assert structs == set(STRUCTS)


def test_record_size_is_the_c_record(c_view: dict[str, int]) -> None:
    # The readers step through the ring by RECORD_SIZE + the 8-byte header.
    assert c_view["sizeof.upcall_bpf_record"] == _abi.RECORD_SIZE
