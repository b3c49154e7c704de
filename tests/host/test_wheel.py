"""The wheel as a new user gets it: built from the sdist, installed in a clean venv.

A session fixture (``built``, wheel_venv.py) builds the sdist and, from the
unpacked sdist alone, the wheel (``python -m build --no-isolation``:
offline, with this venv's setuptools); ``installed`` installs the wheel with
``pip --no-index`` into a fresh venv in a temporary directory (no system
site-packages, no pyroute2, no ``src/`` on the path; wheel_venv.py, the
steps test_dkms.py repeats in a guest with the DKMS-built module). Every
command runs from that directory, through the venv's own ``upcall`` script,
on this host's kernel.

Needs root, a kernel with BTF and the BPF build tools (clang, bpftool,
make, libbpf headers): skipped with the reason where one is missing, but
with CI=true as root a missing one fails.
"""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
import tarfile
import time
import zipfile

import pytest
import wheel_venv
from wheel_venv import Built

import upcall


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return wheel_venv.built(tmp_path_factory)


@pytest.fixture(scope="session")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> wheel_venv.Venv:
    return wheel_venv.install(built.wheel, tmp_path_factory.mktemp("wheel"))


def test_wheel_carries_the_bpf_object_and_the_sdist_its_sources(built: Built) -> None:
    # The compiled core makes it a CPython wheel of this version (not abi3).
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert built.wheel.name.endswith(f"-{tag}-{tag}-linux_{os.uname().machine}.whl")
    with zipfile.ZipFile(built.wheel) as z:
        names = set(z.namelist())
    assert "upcall/bpf/upcall.bpf.o" in names
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]  # .cpython-311-x86_64-linux-gnu.so
    assert {n for n in names if n.startswith("upcall/_core")} == {
        f"upcall/_core{suffix}",
        "upcall/_core.pyi",
    }
    assert "upcall/_core.c" not in names
    assert not any(n.startswith(("tests/", "bpf/", "src/")) for n in names)
    with tarfile.open(built.sdist) as t:
        top = f"upcall-{upcall.__version__}/"
        members = {m.name.removeprefix(top) for m in t.getmembers()}
    assert {"setup.py", "mk/bpf.mk", "bpf/upcall.bpf.c", "bpf/upcall_bpf.h"} <= members
    assert "src/upcall/_core.c" in members  # built from the sdist too
    # The checkout's tooling (tools/upcall_dev: the harness, the benchmarks)
    # is in neither, nor anything of it left in the library.
    assert "upcall/_cli.py" in names and "upcall/bpf/_cli.py" in names
    dev = ["upcall_dev/", "upcall/vm.py", "upcall/bench.py", "upcall/bpf/bench.py",
           "upcall/_progress.py"]  # fmt: skip
    assert not [n for n in names if n.startswith((*dev, "tools/"))]
    assert not [m for m in members if m.startswith((*dev, "tools/", *("src/" + d for d in dev)))]
    # make bpf-build's link to build/bpf/ is the checkout's, not the sdist's.
    assert "src/upcall/bpf/upcall.bpf.o" not in members


def test_import_without_any_dependency(installed: wheel_venv.Venv) -> None:
    code = (
        "import importlib.util, upcall, upcall.bpf; "
        "print(upcall.__version__, upcall.__file__, importlib.util.find_spec('pyroute2'))"
    )
    r = installed.run(str(installed.bin / "python"), "-c", code)
    assert r.returncode == 0, r.stderr
    version, path, pyroute2 = r.stdout.split()
    assert version == upcall.__version__
    assert path.startswith(str(installed.path)) and pyroute2 == "None"


def test_the_compiled_core_is_used(installed: wheel_venv.Venv) -> None:
    code = "import upcall._accel as a, upcall._core as c; print(a.compiled(), c.__file__)"
    r = installed.run(str(installed.bin / "python"), "-c", code)
    assert r.returncode == 0, r.stderr
    compiled, path = r.stdout.split()
    assert compiled == "True" and path.startswith(str(installed.path)) and path.endswith(".so")


def test_no_developer_tooling(installed: wheel_venv.Venv) -> None:
    """A user's upcall has the user's commands; the harness and benchmarks stay behind."""
    r = installed.run(str(installed.bin / "python"), "-c", "import upcall_dev")
    assert r.returncode == 1 and "No module named 'upcall_dev'" in r.stderr
    for command in ("vm", "bench", "bench-bpf"):
        r = installed.run("upcall", command)
        assert (r.returncode, r.stdout) == (2, ""), command
        assert f"invalid choice: '{command}'" in r.stderr


def test_version(installed: wheel_venv.Venv) -> None:
    r = installed.run("upcall", "--version")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.startswith(f"upcall {upcall.__version__}")


def test_doctor_finds_the_packaged_object(installed: wheel_venv.Venv) -> None:
    r = installed.run("upcall", "doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {line.split()[1]: line for line in r.stdout.splitlines()}
    packaged = next(installed.path.glob("lib/python3*/site-packages/upcall/bpf/upcall.bpf.o"))
    assert rows["object"] == f"ok  object      {packaged}"
    for name in ("libbpf", "privileges", "BTF", "ringbuf", "tracefs"):
        assert rows[name].startswith("ok "), rows[name]


def test_watch_a_tracepoint(installed: wheel_venv.Venv) -> None:
    watch = ["upcall", "watch", "--tracepoint", "sched:sched_process_exec", "--comm", "true"]
    proc = installed.popen(*watch, "--count", "3")
    try:
        assert proc.stderr is not None
        ready = proc.stderr.readline()
        assert ready == "watching Tracepoint(name='sched:sched_process_exec') via ringbuf\n"
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            subprocess.run(["/bin/true"], check=True)
            time.sleep(0.05)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    lines = out.splitlines()
    assert proc.returncode == 0, err
    assert [line.split()[0] for line in lines[:3]] == ["seqno=1", "seqno=2", "seqno=3"]
    assert all(" source=1 transport=ringbuf latency=" in line for line in lines[:3])
    assert lines[3].startswith("summary received=3 dropped=0 ")
    assert len(lines) == 4
