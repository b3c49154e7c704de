"""The upcall wheel as a user gets it: built, then ``pip install``-ed in a fresh venv.

:func:`built` builds the sdist and, from the unpacked sdist alone, the
wheel, once a session for every test module that asks (test_wheel.py,
test_dkms.py). :func:`install` makes the venv: on the host for
test_wheel.py, in a guest for test_dkms.py (wheel_guest.py), the same steps
in both places. The venv has no system site-packages and nothing but
the wheel (``pip --no-index``: offline, so no dependency can come along);
every command runs from the venv's parent directory, with an environment
that names no source tree, so ``import upcall`` can only find the wheel's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BTF = Path("/sys/kernel/btf/vmlinux")


def build_missing() -> str | None:
    """Why the wheel cannot be built and tried here, or None."""
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
class Built:
    """The sdist, and the wheel built from the unpacked sdist alone."""

    wheel: Path
    sdist: Path


def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The session's wheel and sdist (``python -m build --no-isolation``: offline,
    with this venv's setuptools), built by the first test module that asks.

    Skips with the reason where a build tool is missing; with CI=true as
    root a missing one fails.
    """
    why = build_missing()
    if why is not None:
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail(f"the wheel cannot be built in CI as root: {why}")
        pytest.skip(why)
    dist = tmp_path_factory.getbasetemp() / "upcall-dist"
    if not dist.is_dir():
        partial = dist.with_name(dist.name + ".partial")  # a failed build leaves no dist
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(partial), str(ROOT)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        partial.rename(dist)
    (wheel,) = dist.glob("upcall-*.whl")
    (sdist,) = dist.glob("upcall-*.tar.gz")
    return Built(wheel, sdist)


@dataclass(frozen=True)
class Venv:
    """A venv at ``path`` with the wheel installed; commands run in ``cwd`` with ``env``."""

    path: Path
    cwd: Path
    env: dict[str, str]

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``args`` (a name in the venv's bin is found first) and capture its output."""
        return subprocess.run(
            list(args), cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start ``args`` with its stdout and stderr piped, as :meth:`run` would run it."""
        return subprocess.Popen(
            list(args),
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def install(wheel: Path, where: Path, *, timeout: float = 300) -> Venv:
    """Make a venv in ``where``/venv and ``pip install --no-index`` the wheel into it."""
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=timeout)
    env = {
        "PATH": f"{venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(where),
        "LC_ALL": "C.UTF-8",
    }
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", str(wheel)],
        check=True,
        env=env,
        cwd=where,
        timeout=timeout,
    )
    return Venv(venv, where, env)
