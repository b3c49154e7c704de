"""Documentation/netlink/specs/upcall.yaml against the kernel's YNL tools and the module.

The spec must validate against the kernel's genetlink-c schema, the uAPI
header that the kernel's generator (``ynl-gen-c.py --mode uapi``) makes from
it must give every name the values that kmod/include/uapi/linux/upcall.h
gives it (compared as the C compiler reads both, not as text), and the
policy the generator makes (``--mode kernel``) must be the one that
kmod/upcall_netlink.c declares; and the kernel's scripts/kernel-doc must
find the header's comments whole. The tools come from Debian's
linux-source-6.12 (``make ynl-build``, in build/ynl/). The mutation tests
prove that each check can fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "Documentation" / "netlink" / "specs" / "upcall.yaml"
UAPI = ROOT / "kmod" / "include" / "uapi"
HEADER = UAPI / "linux" / "upcall.h"
NETLINK_C = ROOT / "kmod" / "upcall_netlink.c"
YNL = ROOT / "build" / "ynl"
SCHEMA = YNL / "Documentation" / "netlink" / "genetlink-c.yaml"
GEN_C = YNL / "tools" / "net" / "ynl" / "ynl-gen-c.py"
LICENSE = "((GPL-2.0 WITH Linux-syscall-note) OR BSD-3-Clause)"

Spec = dict[str, Any]


@pytest.fixture(scope="module", autouse=True)
def ynl_tools() -> None:
    if not GEN_C.exists() or not SCHEMA.exists():
        pytest.fail(f"{YNL} is missing the kernel's YNL tools: run `make ynl-build` first")


def load_spec() -> Spec:
    spec: Spec = yaml.safe_load(SPEC.read_text())
    return spec


def kernel_tree(tmp: Path, spec: Spec | str) -> Path:
    """A minimal kernel tree holding ``spec``, where ynl-gen-c.py finds what it looks for.

    The generator validates the spec against ../genetlink-c.yaml next to
    its specs/ directory and names the spec relative to the directory that
    holds MAINTAINERS.
    """
    specs = tmp / "Documentation" / "netlink" / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    (tmp / "MAINTAINERS").touch()
    shutil.copy(SCHEMA, specs.parent)
    path = specs / "upcall.yaml"
    if isinstance(spec, str):
        text = spec
    else:
        text = f"# SPDX-License-Identifier: {LICENSE}\n" + yaml.safe_dump(spec, sort_keys=False)
    path.write_text(text)
    return path


def generate(spec_path: Path, mode: str, kind: str = "--header") -> str:
    """What ynl-gen-c.py writes for ``spec_path`` (``--mode uapi``: the uAPI header)."""
    out = spec_path.parent.parent.parent.parent / f"gen-{mode}{kind.replace('-', '_')}"
    proc = subprocess.run(
        [
            sys.executable,
            str(GEN_C),
            "--mode",
            mode,
            kind,
            "--spec",
            str(spec_path),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"ynl-gen-c.py --mode {mode} {kind} failed:\n{proc.stdout}{proc.stderr}"
        )
    return out.read_text()


def header_names(text: str) -> tuple[set[str], set[str]]:
    """The object-like macros and the enumerators a header defines (numbers, strings)."""
    numbers: set[str] = set()
    strings: set[str] = set()
    for name, value in re.findall(r"^#define\s+(UPCALL_\w+)\b(?!\()\s+(.*)$", text, re.M):
        (strings if value.strip().startswith('"') else numbers).add(name)
    enumerators = r"^\s+(_*UPCALL_\w+)\s*(?:=[^,\n]*)?,?\s*(?:/\*.*\*/)?\s*$"
    numbers |= set(re.findall(enumerators, text, re.M))
    return numbers, strings


def c_values(header: Path, numbers: set[str], strings: set[str], tmp: Path) -> dict[str, Any]:
    """The value of each name as the C compiler reads ``header``."""
    lines = ["#include <stdio.h>", f'#include "{header}"', "int main(void)", "{"]
    for name in sorted(numbers):
        lines.append(f'\tprintf("%s %lld\\n", "{name}", (long long)({name}));')
    for name in sorted(strings):
        lines.append(f'\tprintf("%s \\"%s\\"\\n", "{name}", {name});')
    lines += ["\treturn 0;", "}", ""]
    src = tmp / f"{header.stem}-values.c"
    src.write_text("\n".join(lines))
    exe = tmp / f"{header.stem}-values"
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "no C compiler"
    built = subprocess.run(
        [cc, "-std=c11", "-Wall", "-Werror", "-I", str(UAPI), str(src), "-o", str(exe)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, f"{src} does not build:\n{built.stderr}"
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    values: dict[str, Any] = {}
    for line in out.splitlines():
        name, value = line.split(" ", 1)
        values[name] = value[1:-1] if value.startswith('"') else int(value)
    return values


def uapi_differences(spec: Spec | str, tmp: Path) -> dict[str, Any]:
    """Every name on which the header generated from ``spec`` and upcall.h disagree.

    A name the generated header defines must have the same value in
    upcall.h; a netlink name of upcall.h (UPCALL_GENL_*, UPCALL_CMD_*,
    UPCALL_ATTR_*) must be generated.
    """
    generated = tmp / "upcall-generated.h"
    generated.write_text(generate(kernel_tree(tmp / "tree", spec), "uapi"))
    numbers, strings = header_names(generated.read_text())
    ours_numbers, ours_strings = header_names(HEADER.read_text())
    netlink = re.compile(r"^_*UPCALL_(GENL|CMD|ATTR)_")
    diff: dict[str, Any] = {}
    for name in sorted((ours_numbers | ours_strings) - numbers - strings):
        if netlink.match(name):
            diff[name] = ("in upcall.h", "not generated")
    missing = (numbers | strings) - ours_numbers - ours_strings
    for name in sorted(missing):
        diff[name] = ("not in upcall.h", "generated")
    numbers -= missing
    strings -= missing
    want = c_values(generated, numbers, strings, tmp)
    have = c_values(HEADER, numbers, strings, tmp)
    diff.update({k: (have[k], want[k]) for k in want if have[k] != want[k]})
    return diff


# -- the spec ------------------------------------------------------------------------------


def test_spec_validates_against_the_kernel_schema() -> None:
    import jsonschema

    schema = yaml.safe_load(SCHEMA.read_text())
    spec = load_spec()
    jsonschema.Draft7Validator(schema).validate(spec)  # the schema's own $schema
    assert spec["protocol"] == "genetlink-c"
    assert SPEC.read_text().splitlines()[0] == f"# SPDX-License-Identifier: {LICENSE}"


def test_ynl_loads_the_spec_with_the_schema() -> None:
    """YNL's own loader, as cli.py and the guest test use it, with its schema check."""
    lib = YNL / "tools" / "net" / "ynl"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from lib import SpecFamily; "
        "f = SpecFamily(sys.argv[2], sys.argv[3]); "
        "print(sorted(f.ops), sorted(f.ntfs), sorted(f.mcast_groups))"
    )
    args = [str(lib), str(SPEC), str(SCHEMA)]
    proc = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['emit'] ['event'] ['events']"


def test_spec_that_breaks_the_schema_is_refused() -> None:
    import jsonschema

    schema = yaml.safe_load(SCHEMA.read_text())
    spec = load_spec()
    spec["attribute-sets"][0]["attributes"][-1]["type"] = "u31"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(spec)


def test_generated_uapi_agrees_with_the_header(tmp_path: Path) -> None:
    diff = uapi_differences(SPEC.read_text(), tmp_path)
    assert not diff, f"spec != upcall.h (name: (upcall.h, generated)): {diff}"


def _attr(spec: Spec, name: str) -> dict[str, Any]:
    attrs: list[dict[str, Any]] = spec["attribute-sets"][0]["attributes"]
    return next(a for a in attrs if a["name"] == name)


def _drop_pad(spec: Spec) -> None:
    spec["attribute-sets"][0]["attributes"].remove(_attr(spec, "pad"))


def _rename_group(spec: Spec) -> None:
    spec["mcast-groups"]["list"][0]["name"] = "event"
    spec["operations"]["list"][1]["mcgrp"] = "event"


def _swap_ops(spec: Spec) -> None:
    ops = spec["operations"]["list"]
    ops[1], ops[2] = ops[2], ops[1]


def _new_attr(spec: Spec) -> None:
    spec["attribute-sets"][0]["attributes"].append({"name": "flags", "type": "u32"})


def _source_max(spec: Spec) -> None:
    spec["definitions"][0]["value"] = 0xFFFFF


@pytest.mark.parametrize(
    ("mutate", "names"),
    [
        (_drop_pad, {"UPCALL_ATTR_SUBSCRIBER", "UPCALL_ATTR_SOURCE", "UPCALL_ATTR_MAX"}),
        (_rename_group, {"UPCALL_GENL_MCGRP_EVENTS"}),
        (_swap_ops, {"UPCALL_CMD_EVENT", "UPCALL_CMD_EMIT"}),
        (_new_attr, {"UPCALL_ATTR_FLAGS", "UPCALL_ATTR_MAX"}),
        (_source_max, {"UPCALL_SOURCE_MAX"}),
    ],
)
def test_mutated_spec_disagrees(
    tmp_path: Path, mutate: Callable[[Spec], None], names: set[str]
) -> None:
    spec = load_spec()
    mutate(spec)
    diff = uapi_differences(spec, tmp_path)
    assert names <= set(diff), diff


# -- the kernel's policy -------------------------------------------------------------------


def _policy(text: str) -> dict[str, str]:
    """``[UPCALL_ATTR_X] = ...`` entries of nla_policy arrays, normalised."""
    entries = {}
    for name, rule in re.findall(r"^\s*\[(UPCALL_ATTR_\w+)\]\s*=\s*(.+?),?\s*$", text, re.M):
        rule = re.sub(r"&\w+", "&range", rule)  # the range struct's name is the file's own
        entries[name] = re.sub(r",?\s*\}$", " }", rule)
    return entries


def _ranges(text: str) -> list[str]:
    """The bounds of each netlink_range_validation, in order."""
    blocks = re.findall(r"struct netlink_range_validation \w+ = \{(.*?)\};", text, re.S)
    return [" ".join(re.sub(r"\s+", " ", b).replace(" = ", "=").split()) for b in blocks]


def _admin_cmds(text: str) -> set[str]:
    ops = re.findall(r"\{[^{}]*\.cmd\s*=\s*(UPCALL_CMD_\w+),[^{}]*\}", text, re.S)
    blocks = re.findall(r"\{[^{}]*\.cmd\s*=\s*UPCALL_CMD_\w+,[^{}]*\}", text, re.S)
    return {cmd for cmd, block in zip(ops, blocks, strict=True) if "GENL_ADMIN_PERM" in block}


def test_generated_policy_is_the_modules(tmp_path: Path) -> None:
    generated = generate(kernel_tree(tmp_path, SPEC.read_text()), "kernel", "--source")
    module = NETLINK_C.read_text()
    assert _policy(module), "no nla_policy found in upcall_netlink.c"
    assert _policy(generated) == _policy(module)
    assert _ranges(generated) == _ranges(module) == [".max=UPCALL_SOURCE_MAX,"]
    assert _admin_cmds(generated) == _admin_cmds(module) == {"UPCALL_CMD_EMIT"}


def test_mutated_check_changes_the_policy(tmp_path: Path) -> None:
    spec = load_spec()
    del _attr(spec, "source")["checks"]
    _attr(spec, "value")["type"] = "u32"
    generated = generate(kernel_tree(tmp_path, spec), "kernel", "--source")
    policy = _policy(generated)
    assert policy["UPCALL_ATTR_SOURCE"] == "{ .type = NLA_U32 }"
    assert policy != _policy(NETLINK_C.read_text())


def test_multicast_group_needs_cap_net_admin_in_both() -> None:
    # ynl-gen-c.py (6.12) does not render a group's flags: check them here.
    spec = load_spec()
    (group,) = spec["mcast-groups"]["list"]
    assert group["flags"] == ["admin-perm"]
    block = re.search(r"upcall_genl_mcgrps\[\] = \{(.*?)\n\};", NETLINK_C.read_text(), re.S)
    assert block and ".flags = GENL_MCAST_CAP_NET_ADMIN" in block.group(1)
    event = next(op for op in spec["operations"]["list"] if op["name"] == "event")
    assert event["mcgrp"] == group["name"]


# -- the header's kernel-doc ---------------------------------------------------------------


def kernel_doc_warnings(header: Path) -> str:
    """What the kernel's scripts/kernel-doc -Wall says of ``header`` (nothing when clean)."""
    if not shutil.which("perl"):
        pytest.skip("no perl to run scripts/kernel-doc with")
    proc = subprocess.run(
        ["perl", str(YNL / "scripts" / "kernel-doc"), "-none", "-Wall", str(header)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.strip()


def test_uapi_header_kernel_doc_is_clean() -> None:
    # Documentation/userspace-api/upcall.rst pulls these comments in.
    assert kernel_doc_warnings(HEADER) == ""


def test_kernel_doc_sees_a_member_left_undescribed(tmp_path: Path) -> None:
    bad = tmp_path / "upcall.h"
    bad.write_text(HEADER.read_text().replace(" * @source_last:", " * @source_lsat:", 1))
    assert "'source_last' not described in 'upcall_subscribe'" in kernel_doc_warnings(bad)


def test_userspace_api_doc_pulls_in_every_kernel_doc_comment() -> None:
    """Each kernel-doc directive of upcall.rst names comments that exist; none is left out."""
    rst = ROOT / "Documentation" / "userspace-api" / "upcall.rst"
    directives = re.findall(
        r"^\.\. kernel-doc:: (\S+)\n\s+:identifiers: (.+)$", rst.read_text(), re.M
    )
    assert directives, "no kernel-doc directive in upcall.rst"
    pulled: set[str] = set()
    for path, identifiers in directives:
        assert (ROOT / path).resolve() == HEADER
        names = identifiers.split()
        proc = subprocess.run(
            ["perl", str(YNL / "scripts" / "kernel-doc"), "-rst", "-sphinx-version", "7.2"]
            + [arg for name in names for arg in ("-function", name)]
            + [str(HEADER)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
        for name in names:
            assert re.search(
                rf"^\.\. c:(type|struct|enum):: (struct |enum )?{name}$", proc.stdout, re.M
            ), name
        pulled.update(names)
    documented = set(re.findall(r"^/\*\*\n \* (?:struct|enum) (\w+) - ", HEADER.read_text(), re.M))
    assert documented and documented == pulled
