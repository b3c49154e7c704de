"""The wheel as a new user gets it: built from the sdist, installed in a clean venv.

One session fixture builds the sdist and, from the unpacked sdist alone, the
wheel (``python -m build --no-isolation``: offline, with this venv's
setuptools), then installs the wheel with ``pip --no-index`` into a fresh
venv in a temporary directory (no system site-packages, no pyroute2, no
``src/`` on the path). Every command runs from that directory, through the
venv's own ``upcall`` script, on this host's kernel.

Needs root, a kernel with BTF and the BPF build tools (clang, bpftool,
make, libbpf headers): skipped with the reason where one is missing, but
with CI=true as root a missing one fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import upcall

ROOT = Path(__file__).resolve().parents[2]
BTF = Path("/sys/kernel/btf/vmlinux")


def _missing() -> str | None:
    """Why this test cannot run here, or None."""
    if os.geteuid() != 0:
        return "the BPF path needs root"
    if not BTF.is_file():
        return f"{BTF} missing: this kernel has no BTF"
    for tool in ("clang", "make"):
        if shutil.which(tool) is None:
            return f"{tool} missing (make bpf-deps)"
    if shutil.which("bpftool") is None and not Path("/usr/sbin/bpftool").exists():
        return "bpftool missing (make bpf-deps)"
    try:
        import build  # noqa: F401
    except ImportError:
        return "the `build` package is missing (pip install -e '.[dev]')"
    return None


@dataclass(frozen=True)
class Installed:
    wheel: Path
    sdist: Path
    venv: Path
    cwd: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    why = _missing()
    if why is not None:
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail(f"the wheel test cannot run in CI as root: {why}")
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("upcall-*.whl")
    (sdist,) = dist.glob("upcall-*.tar.gz")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {
        "PATH": f"{venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(tmp),
        "LC_ALL": "C.UTF-8",
    }
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", str(wheel)],
        check=True,
        env=env,
        cwd=tmp,
        timeout=120,
    )
    return Installed(wheel, sdist, venv, tmp, env)


def test_wheel_carries_the_bpf_object_and_the_sdist_its_sources(installed: Installed) -> None:
    assert installed.wheel.name.endswith(f"-py3-none-linux_{os.uname().machine}.whl")
    with zipfile.ZipFile(installed.wheel) as z:
        names = set(z.namelist())
    assert "upcall/bpf/upcall.bpf.o" in names
    assert not any(n.startswith(("tests/", "bpf/", "src/")) for n in names)
    with tarfile.open(installed.sdist) as t:
        top = f"upcall-{upcall.__version__}/"
        members = {m.name.removeprefix(top) for m in t.getmembers()}
    assert {"setup.py", "mk/bpf.mk", "bpf/upcall.bpf.c", "bpf/upcall_bpf.h"} <= members


def test_import_without_any_dependency(installed: Installed) -> None:
    code = (
        "import importlib.util, upcall, upcall.bpf; "
        "print(upcall.__version__, upcall.__file__, importlib.util.find_spec('pyroute2'))"
    )
    r = installed.run(str(installed.venv / "bin" / "python"), "-c", code)
    assert r.returncode == 0, r.stderr
    version, path, pyroute2 = r.stdout.split()
    assert version == upcall.__version__
    assert path.startswith(str(installed.venv)) and pyroute2 == "None"


def test_version(installed: Installed) -> None:
    r = installed.run("upcall", "--version")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.startswith(f"upcall {upcall.__version__}")


def test_doctor_finds_the_packaged_object(installed: Installed) -> None:
    r = installed.run("upcall", "doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {line.split()[1]: line for line in r.stdout.splitlines()}
    packaged = next(installed.venv.glob("lib/python3*/site-packages/upcall/bpf/upcall.bpf.o"))
    assert rows["object"] == f"ok  object      {packaged}"
    for name in ("libbpf", "privileges", "BTF", "ringbuf", "tracefs"):
        assert rows[name].startswith("ok "), rows[name]


def test_watch_a_tracepoint(installed: Installed) -> None:
    watch = ["upcall", "watch", "--tracepoint", "sched:sched_process_exec", "--comm", "true"]
    proc = subprocess.Popen(
        [*watch, "--count", "3"],
        cwd=installed.cwd,
        env=installed.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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
