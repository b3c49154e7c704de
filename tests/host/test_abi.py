"""upcall.abi against the C header, as the C compiler reads it."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upcall import abi

ROOT = Path(__file__).resolve().parents[2]
UAPI = ROOT / "kmod" / "include" / "uapi"
HEADER = UAPI / "linux" / "upcall.h"
SOURCE = Path(__file__).with_name("abi_check.c")

STRUCTS: dict[str, type[ctypes.Structure]] = {
    "upcall_event": abi.UpcallEvent,
    "upcall_subscribe": abi.UpcallSubscribe,
    "upcall_emit": abi.UpcallEmit,
    "upcall_stats": abi.UpcallStats,
    "upcall_eventfd": abi.UpcallEventfd,
    "upcall_version": abi.UpcallVersion,
}

NUMBERS = [
    "UPCALL_IOC_MAGIC",
    "UPCALL_IOC_SUBSCRIBE",
    "UPCALL_IOC_EMIT",
    "UPCALL_IOC_STATS",
    "UPCALL_IOC_SET_EVENTFD",
    "UPCALL_IOC_VERSION",
    "UPCALL_ABI_VERSION",
    "UPCALL_VERSION_UNSUBSCRIBE",
    "UPCALL_TRANSPORT_NONE",
    "UPCALL_TRANSPORT_SIGNAL",
    "UPCALL_TRANSPORT_QUEUE",
    "UPCALL_TRANSPORT_NETLINK",
    "UPCALL_QUEUE_DEFAULT",
    "UPCALL_QUEUE_MIN",
    "UPCALL_QUEUE_MAX",
    "UPCALL_SUBSCRIBE_THREAD",
    "UPCALL_SUBSCRIBE_UNICAST",
    "UPCALL_SUBSCRIBE_SOURCES",
    "UPCALL_SUBSCRIBE_FLAGS",
    "UPCALL_SOURCE_MAX",
    "UPCALL_SOURCE_RESERVED_MAX",
    "UPCALL_SOURCE_USER",
    "UPCALL_SOURCE_TIMER",
    "UPCALL_SOURCE_EDU",
    "UPCALL_SI_CODE_BASE",
    "UPCALL_GENL_VERSION",
    "UPCALL_CMD_UNSPEC",
    "UPCALL_CMD_EVENT",
    "UPCALL_CMD_EMIT",
    "UPCALL_CMD_MAX",
    "UPCALL_ATTR_UNSPEC",
    "UPCALL_ATTR_PAD",
    "UPCALL_ATTR_SUBSCRIBER",
    "UPCALL_ATTR_SEQNO",
    "UPCALL_ATTR_TIMESTAMP",
    "UPCALL_ATTR_VALUE",
    "UPCALL_ATTR_SOURCE",
    "UPCALL_ATTR_MAX",
]
STRINGS = ["UPCALL_GENL_NAME", "UPCALL_GENL_MCGRP_EVENTS"]
_SIGNED_CTYPES = (ctypes.c_int8, ctypes.c_int16, ctypes.c_int32, ctypes.c_int64)


def python_view() -> dict[str, int | str]:
    """Every line abi_check.c prints, computed from upcall.abi."""
    view: dict[str, int | str] = {name: int(getattr(abi, name)) for name in NUMBERS}
    view.update({name: str(getattr(abi, name)) for name in STRINGS})
    view["UPCALL_SI_CODE.0"] = abi.si_code_for_source(0)
    view["UPCALL_SI_CODE.1"] = abi.si_code_for_source(1)
    view["UPCALL_SI_CODE.SOURCE_MAX"] = abi.si_code_for_source(abi.UPCALL_SOURCE_MAX)
    for sname, struct in STRUCTS.items():
        view[f"sizeof.{sname}"] = ctypes.sizeof(struct)
        view[f"alignof.{sname}"] = ctypes.alignment(struct)
        for spec in struct._fields_:
            fname = spec[0]
            field = getattr(struct, fname)
            view[f"offsetof.{sname}.{fname}"] = field.offset
            view[f"fieldsize.{sname}.{fname}"] = field.size
            ctype = spec[1]
            if not issubclass(ctype, ctypes.Array):
                view[f"signed.{sname}.{fname}"] = int(issubclass(ctype, _SIGNED_CTYPES))
    return view


@pytest.fixture(scope="module")
def c_view(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int | str]:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) to read the header with")
    out = tmp_path_factory.mktemp("abi") / "abi_check"
    # -I kmod/include/uapi puts <linux/upcall.h> first; <linux/ioctl.h> and
    # <linux/types.h>, absent there, still come from the system.
    cmd = [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", str(UAPI), str(SOURCE)]
    built = subprocess.run([*cmd, "-o", str(out)], capture_output=True, text=True)
    assert built.returncode == 0, f"{' '.join(cmd)} failed:\n{built.stderr}"
    deps = subprocess.run([*cmd, "-M"], capture_output=True, text=True, check=True).stdout
    assert str(HEADER) in deps.replace("\\\n", " "), "compiled against another upcall.h"
    run = subprocess.run([str(out)], capture_output=True, text=True, check=True)
    view: dict[str, int | str] = {}
    for line in run.stdout.splitlines():
        name, value = line.split(" ", 1)
        assert name not in view, f"{name} printed twice"
        view[name] = value[1:-1] if value.startswith('"') else int(value)
    return view


def test_c_and_python_agree(c_view: dict[str, int | str]) -> None:
    py = python_view()
    assert sorted(c_view) == sorted(py), "abi_check.c and test_abi.py cover different names"
    diff = {k: (c_view[k], py[k]) for k in c_view if c_view[k] != py[k]}
    assert not diff, f"C != Python (name: (C, Python)): {diff}"


def test_every_struct_field_checked(c_view: dict[str, int | str]) -> None:
    # A field added to a ctypes Structure but not to abi_check.c must fail.
    for sname, struct in STRUCTS.items():
        for spec in struct._fields_:
            fname = spec[0]
            assert f"offsetof.{sname}.{fname}" in c_view


def test_every_header_name_checked() -> None:
    # A constant added to the header but not mirrored and checked must fail.
    text = HEADER.read_text()
    macros = set(re.findall(r"^#define\s+(UPCALL_\w+)\b(?!\()", text, re.M))
    # Enumerators with or without "= value" (the __UPCALL_*_MAX sentinels are
    # the header's own bookkeeping, mirrored as UPCALL_*_MAX).
    enumerators = set(re.findall(r"^\s+(UPCALL_\w+)\s*(?:=[^,]*)?,", text, re.M))
    assert {"UPCALL_SOURCE_USER", "UPCALL_CMD_EVENT", "UPCALL_ATTR_SOURCE"} <= enumerators
    checked = set(python_view())
    missing = (macros | enumerators) - checked
    assert not missing, f"header names not mirrored in upcall.abi / abi_check.c: {sorted(missing)}"


def test_every_header_struct_checked() -> None:
    structs = set(re.findall(r"^struct\s+(upcall_\w+)\s*\{", HEADER.read_text(), re.M))
    assert structs == set(STRUCTS)


def test_event_record_matches_the_ctypes_layout() -> None:
    # EVENT_RECORD is what the readers decode with; the ctypes class is the
    # one abi_check.c verified. Distinct bytes in every field catch a swap.
    ev = abi.UpcallEvent(
        seqno=0x0102030405060708,
        timestamp_ns=0x1112131415161718,
        value=0xF1F2F3F4F5F6F7F8,
        source=0x21222324,
        flags=0x31323334,
    )
    assert abi.UPCALL_EVENT_SIZE == ctypes.sizeof(ev) == 48
    assert abi.EVENT_RECORD.unpack(bytes(ev)) == (
        0x0102030405060708,
        0x1112131415161718,
        0xF1F2F3F4F5F6F7F8,
        0x21222324,
        0x31323334,
    )


def test_enums_match_their_constants() -> None:
    assert [t.value for t in abi.Transport] == [0, 1, 2, 3]
    assert abi.Transport.QUEUE == abi.UPCALL_TRANSPORT_QUEUE
    assert abi.GenlCmd.EMIT == abi.UPCALL_CMD_EMIT == abi.UPCALL_CMD_MAX
    assert abi.GenlAttr.SOURCE == abi.UPCALL_ATTR_SOURCE == abi.UPCALL_ATTR_MAX


def test_ioc_encoding_matches_known_numbers() -> None:
    # FIONREAD-style reference values from the kernel headers.
    assert abi.IOC(abi.IOC_NONE, ord("T"), 0x1B, 0) == 0x541B
    # FS_IOC_GETFLAGS = _IOR('f', 1, long) on x86_64
    assert abi.IOC(abi.IOC_READ, ord("f"), 1, 8) == 0x80086601
    with pytest.raises(ValueError):
        abi.IOC(abi.IOC_READ, 0x100, 1, 8)
    with pytest.raises(ValueError):
        abi.IOC(abi.IOC_READ, 1, 1, 1 << 14)


@given(st.integers(0, abi.UPCALL_SOURCE_MAX))
def test_si_code_round_trip(source: int) -> None:
    code = abi.si_code_for_source(source)
    assert code < 0
    assert abi.source_from_si_code(code) == source


@given(st.integers(-(1 << 31), (1 << 31) - 1))
def test_foreign_si_codes_have_no_source(code: int) -> None:
    expected = abi.UPCALL_SI_CODE_BASE - code if -0x1FFFF <= code <= -0x10000 else None
    assert abi.source_from_si_code(code) == expected


def test_source_range_enforced() -> None:
    with pytest.raises(ValueError):
        abi.si_code_for_source(abi.UPCALL_SOURCE_MAX + 1)
    with pytest.raises(ValueError):
        abi.si_code_for_source(-1)
    # SI_USER, SI_QUEUE, SI_TKILL are never upcall's
    assert abi.source_from_si_code(0) is None
    assert abi.source_from_si_code(-1) is None
    assert abi.source_from_si_code(-6) is None


@given(st.integers(abi.S64_MIN, abi.U64_MAX))
def test_value_encoding_round_trip(value: int) -> None:
    encoded = abi.encode_value(value)
    assert 0 <= encoded <= abi.U64_MAX
    signed = encoded - (1 << 64) if encoded >> 63 else encoded
    assert value in (encoded, signed)


@given(st.one_of(st.integers(max_value=abi.S64_MIN - 1), st.integers(min_value=abi.U64_MAX + 1)))
def test_value_out_of_range_rejected(value: int) -> None:
    with pytest.raises(ValueError):
        abi.encode_value(value)
