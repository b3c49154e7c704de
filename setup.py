# SPDX-License-Identifier: LGPL-2.1-or-later
"""Build hooks: the compiled core, and the BPF object compiled when the wheel is built.

Everything else is in pyproject.toml. ``ext_modules`` builds
``upcall._core`` (src/upcall/_core.c, see ``CORE`` below) in ``pip
install -e`` and in the wheel. ``build_py`` runs ``mk/bpf.mk`` (the one
place the compiler flags are written) to compile ``bpf/upcall.bpf.c`` against
a ``vmlinux.h`` generated from the build machine's kernel BTF, and puts
``upcall.bpf.o`` in the package as ``upcall/bpf/upcall.bpf.o``. The object is
CO-RE: libbpf relocates it at load time, so one object serves every kernel
with BTF. Without clang, bpftool, make or BTF the wheel build fails with one
line saying what to install: a wheel without the object is useless for the
BPF path. An editable install (``pip install -e``) builds no BPF object: in a
source checkout ``make bpf-build`` links ``build/bpf/upcall.bpf.o`` to
``src/upcall/bpf/upcall.bpf.o``, where the library looks as it does in a
wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py
from setuptools.errors import ExecError

HERE = Path(__file__).resolve().parent
OBJ_NAME = "upcall.bpf.o"
BTF = Path(os.environ.get("BPF_BTF", "/sys/kernel/btf/vmlinux"))
INSTALL = "apt-get install clang llvm libbpf-dev bpftool make"


def _missing_tool() -> str | None:
    """The first build tool or input missing on this machine, said in one line."""
    for tool, hint in (("make", INSTALL), ("clang", INSTALL)):
        if shutil.which(tool) is None:
            return f"{tool} not found ({hint})"
    if shutil.which("bpftool") is None and not Path("/usr/sbin/bpftool").exists():
        return f"bpftool not found ({INSTALL})"
    if not Path("/usr/include/bpf/bpf_helpers.h").is_file():
        return f"libbpf headers (/usr/include/bpf) not found ({INSTALL})"
    if not BTF.is_file():
        return f"{BTF} missing: the build machine's kernel has no BTF (CONFIG_DEBUG_INFO_BTF=y)"
    return None


def build_bpf_object(out_dir: Path) -> Path:
    """Compile the BPF object into ``out_dir`` with mk/bpf.mk; return its path."""
    why = _missing_tool()
    if why is not None:
        raise ExecError(f"upcall: cannot build the BPF object {OBJ_NAME}: {why}")
    out_dir.mkdir(parents=True, exist_ok=True)
    obj = out_dir / OBJ_NAME
    cmd = ["make", "--no-print-directory", "-f", "mk/bpf.mk", f"BPF_OUT={out_dir}", str(obj)]
    if subprocess.run(cmd, cwd=HERE).returncode != 0:
        raise ExecError(f"upcall: building the BPF object failed: {' '.join(cmd)} (output above)")
    return obj


class BuildPyWithBpf(build_py):
    """build_py, plus the BPF object as package data of ``upcall.bpf``."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        build_temp = Path(self.get_finalized_command("build").build_temp)
        obj = build_bpf_object(build_temp.resolve() / "bpf")
        dest = Path(self.build_lib) / "upcall" / "bpf" / OBJ_NAME
        self.copy_file(str(obj), str(dest))


class PlatformWheel(bdist_wheel):
    """Tag the wheel for this platform (``cp311-cp311-linux_x86_64`` here).

    The compiled core (``upcall._core``) alone makes the wheel per Python
    version and platform; the BPF object would make it per architecture even
    without it: ``vmlinux.h`` comes from the build machine's kernel BTF and
    the programs are compiled with ``-D__TARGET_ARCH_<arch>`` (register
    access in kprobes). CO-RE relocates field offsets between kernels, not
    between architectures. Not ``manylinux``: that tag promises that native
    code links only against an old-enough glibc, which auditwheel checks and
    this build does not; and what the BPF path needs from the system is
    ``libbpf.so.1``, loaded with ctypes, which no manylinux policy provides
    (``upcall doctor`` checks for it).
    """

    def finalize_options(self) -> None:
        super().finalize_options()
        # A platform wheel even if the core is left out: as if --plat-name
        # had been given (bdist set it).
        self.plat_name_supplied = True


#: upcall._core, the per-event read path in C (src/upcall/_core.c); the library
#: falls back to pure Python without it (or with UPCALL_PURE_PYTHON=1). Built
#: by ``pip install -e`` (make deps) and into the wheel; it needs Python.h
#: (Debian: python3-dev). Not the limited API: the wheel is per Python version.
CORE = Extension(
    "upcall._core",
    sources=["src/upcall/_core.c"],
    extra_compile_args=["-Wall", "-Wextra", "-Werror=implicit-function-declaration", "-O2"],
)

setup(
    cmdclass={"build_py": BuildPyWithBpf, "bdist_wheel": PlatformWheel},
    ext_modules=[CORE],
)
