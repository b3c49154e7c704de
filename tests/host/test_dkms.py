"""The upcall-dkms package as a machine gets it (packaging/, kmod/dkms.conf).

One module fixture builds the package (``make dkms-deb``) and installs it on
this machine with ``dpkg -i``: DKMS builds upcall for every kernel with
headers. The tests then check each kernel's build, boot the 6.1 kernel to
``modprobe upcall`` (the DKMS module, not the build tree), run a round trip
and the client modules of examples/client-module/ built against the
installed package (tests/host/dkms_guest.py); boot it again for a user's
whole path: the DKMS module with the library from the wheel, installed in
a fresh venv in the guest (tests/host/wheel_guest.py); and remove the
package. The
fixture removes it in any case, and the ``upcall`` group if the package
made it: the machine is left as it was found.

It changes the machine while it runs (a package, modules in
/lib/modules/*/updates/dkms that modprobe prefers, a group), so it runs only
when asked: with CI=true (as `make test` in CI runs it) or
UPCALL_TEST_DKMS=1 (``make test-dkms``); a bare ``pytest tests/host``
elsewhere skips it. Needs root, dpkg and dkms, and no upcall-dkms installed
already: skipped with the reason where one is missing, but with CI=true a
missing one fails. Takes about 5 minutes (DKMS builds five kernels, the
wheel is built, two boots).
"""

from __future__ import annotations

import grp
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import wheel_venv

import upcall_dev.vm
from upcall import __version__

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "upcall-dkms"
DEB = ROOT / "build" / "dkms" / f"{PACKAGE}_{__version__}_all.deb"
DKMS_TREE = Path("/var/lib/dkms/upcall")
SRC = Path(f"/usr/src/upcall-{__version__}")
ARCH = platform.machine()
GUEST_FLAVOUR = "6.1"
#: The modules the package must install (kmod/dkms.conf lists them): the
#: ones the harness builds and loads.
MODULES = upcall_dev.vm.MODULES


def _run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=timeout, cwd=ROOT
    )


def _installed() -> bool:
    status = _run("dpkg-query", "-W", "-f=${Status}", PACKAGE).stdout
    return "installed" in status and "not-installed" not in status


def _missing() -> str | None:
    """Why this test cannot run here, or None."""
    if os.environ.get("CI") != "true" and os.environ.get("UPCALL_TEST_DKMS") != "1":
        return "installs upcall-dkms on this machine: run with UPCALL_TEST_DKMS=1 (make test-dkms)"
    if os.geteuid() != 0:
        return "installing a package needs root"
    for tool in ("dpkg", "dkms", "make"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if _installed():
        return f"{PACKAGE} is already installed here: the test will not replace it"
    return None


@pytest.fixture(scope="module", autouse=True)
def _can_run() -> None:
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the DKMS package test cannot run in CI: {reason}")
    pytest.skip(reason)


@dataclass
class Installed:
    kernels: list[str]
    install_log: str


def _remove() -> subprocess.CompletedProcess[str]:
    return _run("dpkg", "-r", PACKAGE, timeout=300)


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    had_group = _has_group("upcall")
    try:
        build = _run("make", "dkms-deb", timeout=300)
        assert build.returncode == 0, f"make dkms-deb failed:\n{build.stdout}{build.stderr}"
        assert DEB.is_file(), f"make dkms-deb did not make {DEB}"
        install = _run("dpkg", "-i", str(DEB), timeout=1200)
        assert install.returncode == 0, f"dpkg -i failed:\n{install.stdout}{install.stderr}"
        kernels = [k.version for k in upcall_dev.vm.installed_kernels()]
        if Path(f"/lib/modules/{platform.release()}").is_dir():
            # Debian's DKMS builds for the running and the newest kernel
            # only where the running kernel is installed (everywhere else,
            # as here and in CI, for every kernel): build the others.
            for k in kernels:
                _run("dkms", "autoinstall", "-k", k, timeout=600)
        yield Installed(kernels, install.stdout + install.stderr)
    finally:
        if _installed():
            _remove()
        if not had_group and _has_group("upcall"):
            _run("groupdel", "upcall")


def _has_group(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def test_dkms_built_and_installed_upcall_for_every_kernel(installed: Installed) -> None:
    assert installed.kernels, "no kernel with headers installed"
    status = _run("dkms", "status", "upcall").stdout
    for k in installed.kernels:
        line = f"upcall/{__version__}, {k}, {ARCH}: installed"
        assert line in status.splitlines(), f"{k}: not in dkms status:\n{status}"
        for module in MODULES:
            filename = _run("modinfo", "-k", k, "-F", "filename", module).stdout.strip()
            assert filename.startswith(f"/lib/modules/{k}/updates/dkms/{module}.ko"), filename
        version = _run("modinfo", "-k", k, "-F", "version", "upcall").stdout.strip()
        assert version == __version__, f"{k}: MODULE_VERSION {version!r}"
        symvers = DKMS_TREE / __version__ / k / ARCH / "Module.symvers"
        assert "\tupcall_emit\t" in symvers.read_text(), f"{symvers}: no upcall_emit"
        log = (DKMS_TREE / __version__ / k / ARCH / "log" / "make.log").read_text()
        assert "warning:" not in log, f"{k}: the DKMS build has warnings:\n{log}"


def test_package_files(installed: Installed) -> None:
    assert (SRC / "include" / "linux" / "upcall.h").is_file()
    assert (SRC / "VERSION").read_text().strip() == __version__
    rule = Path("/lib/udev/rules.d/60-upcall.rules").read_text()
    assert 'KERNEL=="upcall"' in rule and 'GROUP="upcall"' in rule and 'MODE="0640"' in rule
    assert _has_group("upcall"), "the package did not make the group its udev rule names"
    doc = Path("/usr/share/doc/upcall-dkms/examples")
    assert (doc / "modules-load.d" / "upcall.conf").read_text().split("\n")[-2] == "upcall"
    assert (doc / "client-module" / "hard" / "Makefile").is_file()


def _build_client(variant: str, kernel: upcall_dev.vm.Kernel) -> Path:
    """Build examples/client-module/<variant> from a copy, as a driver author would."""
    # Under build/: the guest sees the host's files, but /tmp is its own.
    out = ROOT / "build" / "dkms-clients" / variant
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(ROOT / "examples" / "client-module" / variant, out)
    proc = _run("make", "-C", str(out), f"KVER={kernel.version}", "W=1", timeout=300)
    assert proc.returncode == 0, f"{variant}: build failed:\n{proc.stdout}{proc.stderr}"
    assert "warning:" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return out / f"upcall_client_{variant}.ko"


def test_guest_modprobes_the_dkms_module_and_loads_its_clients(installed: Installed) -> None:
    kernel = upcall_dev.vm.pick_kernel(GUEST_FLAVOUR)
    hard = _build_client("hard", kernel)
    optional = _build_client("optional", kernel)
    depends = _run("modinfo", "-F", "depends", str(optional)).stdout.strip()
    assert depends == "", f"the optional client depends on {depends!r}"
    helper = Path(__file__).with_name("dkms_guest.py")
    result = upcall_dev.vm.run(
        [sys.executable, str(helper), __version__, str(hard), str(optional)],
        kernel=kernel,
        modules=[],
        edu=False,
        timeout=600,
        stream=True,  # where it stands, if it hangs
    )
    assert "dkms guest: all passed" in result.output, result.output
    assert result.ok, f"{result.output}\nreports: {result.reports}, taint: {result.taint}"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> wheel_venv.Built:
    return wheel_venv.built(tmp_path_factory)


def test_guest_runs_the_wheel_with_the_dkms_module(
    installed: Installed, built: wheel_venv.Built
) -> None:
    """A user's whole path: the DKMS package's module, the wheel's library, no checkout."""
    kernel = upcall_dev.vm.pick_kernel(GUEST_FLAVOUR)
    # Under build/: the guest sees the host's files, but /tmp is its own.
    wheels = ROOT / "build" / "dkms-wheel"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    wheel = Path(shutil.copy2(built.wheel, wheels))
    helper = Path(__file__).with_name("wheel_guest.py")
    result = upcall_dev.vm.run(
        [sys.executable, str(helper), __version__, str(wheel), "5"],
        kernel=kernel,
        modules=[],
        timeout=1800,  # pip under TCG, on a host other guests share: minutes
        stream=True,
    )
    assert "wheel guest: all passed" in result.output, result.output
    assert result.ok, f"{result.output}\nreports: {result.reports}, taint: {result.taint}"


def test_removing_the_package_removes_the_module_for_every_kernel(installed: Installed) -> None:
    proc = _remove()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    left = sorted(str(p) for p in Path("/lib/modules").glob("*/updates/dkms/upcall*.ko*"))
    assert not left, f"left behind: {left}"
    assert not _run("dkms", "status", "upcall").stdout.strip()
    assert not (DKMS_TREE / __version__).exists()
    assert not SRC.exists()
