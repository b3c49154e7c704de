# SPDX-License-Identifier: LGPL-2.1-or-later
"""The kernel harness: build the module, boot a real kernel under QEMU, run a command.

This machine's own kernel may not load modules, so the module is tested in
an installed Debian kernel booted by virtme-ng, with the host's filesystem
shared read-only and one directory (the run's output directory) writable.
After the command the guest saves its kernel log, which is scanned for
reports (WARN, BUG, oops, KASAN, lockdep, refcount, kmemleak): any report
fails the run, whatever the command's exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from upcall._args import parse_mib_size, parse_wait, ranged
from upcall._errors import UpcallError
from upcall._version import __version__

from . import REPO
from .progress import Steps, steps

KMOD_SOURCES = REPO / "kmod"
BUILD_DIR = REPO / "build"

# What the kernel prints when something is wrong, as its developers match it.
REPORT_PATTERNS = [
    r"WARNING: CPU: \d+",
    r"WARNING: .* at ",
    r"BUG: ",
    r"kernel BUG at",
    r"------------\[ cut here \]------------",
    r"Oops: ",
    r"general protection fault",
    r"KASAN: ",
    r"UBSAN: ",
    r"possible circular locking dependency",
    r"possible recursive locking",
    r"inconsistent lock state",
    r"Invalid wait context",
    r"suspicious RCU usage",
    r"refcount_t: ",
    r"kmemleak: \d+ new suspected memory leaks",
    r"unreferenced object 0x",
    r"Kernel panic",
    # PREEMPT_RT turns spinlocks into sleeping locks: code that holds a raw
    # lock or runs in hard IRQ context and takes one is reported so.
    r"sleeping function called from invalid context",
    r"scheduling while atomic",
    r"INFO: task .* blocked for more than",
    r"rcu: INFO: .* detected stalls",
]
_REPORT_RE = re.compile("|".join(f"(?:{p})" for p in REPORT_PATTERNS))

# Taint bits that a test run may cause without anything being wrong:
# O (out-of-tree module, 4096) and E (unsigned module, 8192).
_BENIGN_TAINT = 4096 | 8192


class VmError(UpcallError):
    """The harness could not build or boot (missing kernel, headers, QEMU...)."""


@dataclass(frozen=True)
class Kernel:
    """An installed kernel the harness can boot and build for."""

    version: str
    image: Path
    headers: Path

    @property
    def is_debug(self) -> bool:
        """True for a kernel built with KASAN (it needs ``no5lvl`` to boot)."""
        config = Path(f"/boot/config-{self.version}")
        try:
            return "CONFIG_KASAN=y" in config.read_text()
        except OSError:
            return "debug" in self.version


@dataclass
class VmResult:
    """What a run in the guest gave.

    returncode: the command's exit status (the guest's, if it died first).
    output: what the command printed (stdout and stderr).
    kernel_log: the guest's dmesg after the command; empty if it died.
    console: what the kernel printed on its console: emergencies only
        (vng's ``loglevel=1``) until an oops or a panic, which print in full (console_verbose()),
        so it says why a guest that left no kernel_log died.
    reports: the lines of kernel_log that are kernel reports.
    taint: /proc/sys/kernel/tainted at the end, or None if unknown.
    seconds: wall time of the whole run, boot included.
    outdir: the run's directory on the host, the one the guest may write to
        (the command finds it in $UPCALL_VM_OUTDIR).
    """

    returncode: int
    output: str
    kernel_log: str = ""
    console: str = ""
    reports: list[str] = field(default_factory=list)
    taint: int | None = None
    seconds: float = 0.0
    outdir: Path | None = None

    @property
    def bad_taint(self) -> int:
        """Taint bits other than the ones loading our own module sets."""
        return (self.taint or 0) & ~_BENIGN_TAINT

    @property
    def ok(self) -> bool:
        """The command passed, the kernel stayed clean and nothing tainted it."""
        return (
            self.returncode == 0
            and not self.reports
            and self.taint is not None
            and not self.bad_taint
        )


def scan_kernel_log(text: str) -> list[str]:
    """Return the lines of a kernel log that report a kernel problem."""
    return [line for line in text.splitlines() if _REPORT_RE.search(line)]


#: The kernels upcall is tested on, by flavour: each is the version that a
#: Debian meta-package depends on, so installing another kernel never changes
#: which one a flavour boots.
KERNEL_FLAVOURS = {
    "6.1": "linux-image-amd64",
    "6.1-rt": "linux-image-rt-amd64",
    "6.12": "linux-image-6.12-amd64",
    "6.12-rt": "linux-image-6.12-rt-amd64",
}
#: What ``python -m upcall_dev vm`` boots when no --kernel is given.
DEFAULT_FLAVOUR = "6.1"


def installed_kernels() -> list[Kernel]:
    """Kernels with both an image in /boot and headers to build against."""
    kernels = []
    for image in sorted(Path("/boot").glob("vmlinuz-*")):
        version = image.name.removeprefix("vmlinuz-")
        for headers in (
            Path(f"/usr/src/linux-headers-{version}"),
            Path(f"/lib/modules/{version}/build"),
        ):
            if (headers / "Makefile").exists():
                kernels.append(Kernel(version, image, headers.resolve()))
                break
    return kernels


def flavour_version(flavour: str) -> str:
    """The kernel version behind a flavour's meta-package, as dpkg knows it.

    ``linux-image-amd64`` depends on ``linux-image-6.1.0-57-amd64 (= ...)``:
    the version is what follows ``linux-image-``.
    """
    package = KERNEL_FLAVOURS[flavour]
    try:
        depends = subprocess.run(
            ["dpkg-query", "-W", "-f=${Depends}", package],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        raise VmError(
            f"kernel {flavour}: {package} is not installed "
            f"(apt-get install {package} {package.replace('image', 'headers')}; "
            "make deps does it)"
        ) from None
    for dep in depends.split(","):
        name = dep.split()[0] if dep.split() else ""
        if name.startswith("linux-image-"):
            return name.removeprefix("linux-image-")
    raise VmError(f"kernel {flavour}: {package} depends on no kernel image ({depends!r})")


def pick_kernel(spec: str | None = None, *, debug: bool = False) -> Kernel:
    """Choose a kernel: a flavour (``6.1``, ``6.1-rt``, ``6.12``, ``6.12-rt``),
    an installed version (or part of its image's path), or the debug kernel.

    With neither ``spec`` nor ``debug`` it is the default flavour, never
    simply the newest kernel installed.
    """
    kernels = installed_kernels()
    have = ", ".join(k.version for k in kernels) or "none"
    if debug and not spec:
        debug_kernels = [k for k in kernels if k.is_debug]
        if not debug_kernels:
            raise VmError(
                "no debug kernel installed: dpkg -i ../shared/kernels/*.deb "
                "(see ../shared/kernels/README.md; make deps does it)"
            )
        return debug_kernels[-1]
    spec = spec or DEFAULT_FLAVOUR
    if spec in KERNEL_FLAVOURS:
        version = flavour_version(spec)
        for k in kernels:
            if k.version == version:
                return k
        raise VmError(
            f"kernel {spec} ({version}) has no image or headers installed (installed: {have}); "
            "make deps installs them"
        )
    matches = [k for k in kernels if spec == k.version or spec in str(k.image)]
    if not matches:
        raise VmError(f"no installed kernel matches {spec!r} (installed: {have})")
    return matches[-1]


_SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def tool_environment() -> dict[str, str]:
    """The environment for the tools the harness starts.

    virtme-ng's ``vng`` starts ``virtme-run`` and others through PATH, so the
    directory of this Python (the venv's bin, where ``make deps`` installs
    them) comes first: the harness must not depend on the caller's PATH.
    """
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    rest = [d for d in env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(os.pathsep) if d]
    # The system directories too: QEMU and kmod live there, and an
    # environment made with env -i may name none of them.
    rest += [d for d in _SYSTEM_PATH if d not in rest]
    env["PATH"] = os.pathsep.join([bindir, *(d for d in rest if d != bindir)])
    return env


def kvm_usable() -> bool:
    """Whether to run the guest with KVM: only when asked (UPCALL_VM_KVM=1)
    and QEMU can start with it.

    Software emulation (TCG) is the default because it works everywhere the
    same way: /dev/kvm may exist yet abort a guest ("failed to set MSR",
    "KVM internal error"), or hang it silently after the BIOS hands over,
    which no probe tells apart from a slow boot. Where KVM works, the
    variable makes the runs much faster. QEMU is asked whether it starts at
    all: a broken KVM fails within a fraction of a second, a working one is
    still running after a moment.
    """
    if os.environ.get("UPCALL_VM_KVM") != "1":
        return False
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    qemu = shutil.which("qemu-system-x86_64", path=tool_environment()["PATH"])
    if qemu is None:
        return False
    probe = subprocess.Popen(
        [qemu, "-accel", "kvm", "-cpu", "host", "-nodefaults", "-nographic",
         "-machine", "q35", "-m", "64", "-no-reboot", "-S"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        probe.wait(timeout=2)
    except subprocess.TimeoutExpired:
        probe.kill()
        probe.wait()
        return True
    return False


#: The modules kmod/ builds, in the order they load: the core, then upcall's
#: own sources, which are clients of its upcall_emit().
MODULES = ("upcall", "upcall_edu", "upcall_timer")


def build_module(kernel: Kernel, *, extra: Sequence[str] = ()) -> list[Path]:
    """Build kmod/ for ``kernel`` in build/kmod/<version>/; return the paths of
    :data:`MODULES`' .ko files, upcall.ko first.

    Each kernel gets its own copy of the sources, so builds for different
    kernels never mix their objects.
    """
    if not (KMOD_SOURCES / "Kbuild").exists():
        raise VmError(f"module sources not found at {KMOD_SOURCES} (a source checkout is needed)")
    out = BUILD_DIR / "kmod" / kernel.version
    shutil.copytree(
        KMOD_SOURCES,
        out,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("*.o", "*.ko", "*.mod*", ".*.cmd", "Module.symvers"),
    )
    # The copy has no src/upcall/_version.py beside it: hand it the version.
    (out / "VERSION").write_text(f"{__version__}\n")
    cmd = ["make", "-C", str(kernel.headers), f"M={out}", "W=1", *extra, "modules"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise VmError(f"module build failed for {kernel.version}:\n{proc.stdout}{proc.stderr}")
    warnings = [line for line in proc.stderr.splitlines() if "warning:" in line]
    if warnings:
        raise VmError("module build has warnings:\n" + "\n".join(warnings))
    return [out / f"{name}.ko" for name in MODULES]


def _guest_script(modules: Sequence[Path], command: str, outdir: Path, *, debug: bool) -> str:
    """The shell script the guest runs: load, run, save the log, unload."""
    inserts = "\n".join(
        f"insmod {shlex.quote(str(m))} || {{ echo 'upcall_dev vm: insmod {m.name} failed'; "
        f"dmesg | tail -20; exit 125; }}"
        for m in modules
    )
    removes = "\n".join(
        f"rmmod {m.stem} || {{ echo 'upcall_dev vm: rmmod {m.stem} failed'; rc=126; }}"
        for m in reversed(modules)
    )
    out = shlex.quote(str(outdir))
    ko = shlex.quote(str(modules[0])) if modules else "''"
    # The sample client modules are built beside upcall.ko (kmod/samples/).
    samples = shlex.quote(str(modules[0].parent / "samples")) if modules else "''"
    # The host's PYTHONPATH (a worktree's src and tools): the guest imports
    # the same tree, not the one the venv's editable install names.
    host_path = os.environ.get("PYTHONPATH")
    pythonpath = f"export PYTHONPATH={shlex.quote(host_path)}" if host_path else ""
    return f"""
set -u
# Unbuffered, so a slow guest shows progress and a hang shows where.
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UPCALL_IN_VM=1
export PATH={shlex.quote(tool_environment()["PATH"])}
export UPCALL_KO={ko} UPCALL_SAMPLES_DIR={samples}
export UPCALL_VM_OUTDIR={out} UPCALL_DEBUG_KERNEL={int(debug)}
{pythonpath}
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug 2>/dev/null
{inserts}
cd {shlex.quote(str(REPO))}
( {command} ); rc=$?
{removes}
if [ -w /sys/kernel/debug/kmemleak ]; then
    echo scan > /sys/kernel/debug/kmemleak; sleep 1
    echo scan > /sys/kernel/debug/kmemleak
    cat /sys/kernel/debug/kmemleak > {out}/kmemleak.txt
fi
cat /proc/sys/kernel/tainted > {out}/tainted
dmesg > {out}/dmesg.txt
exit $rc
"""


def run(
    command: str | Sequence[str],
    *,
    kernel: Kernel | None = None,
    edu: bool = False,
    modules: Sequence[Path] | None = None,
    build: bool = True,
    cpus: int = 2,
    memory: str = "2G",
    timeout: float = 1800,
    stream: bool = False,
) -> VmResult:
    """Boot ``kernel`` with the module loaded, run ``command`` and return the result.

    command: a shell command line, or an argv list.
    modules: the .ko files to insmod in order; None builds and loads
        :data:`MODULES` (upcall.ko and its source modules).
    edu: give the guest QEMU's edu PCI device (needs the full, non-microvm machine).
    stream: also copy the guest's output to our stdout as it comes, and
        show the progress (the build, the boot) on stderr: a bar on a
        terminal, a line a step elsewhere.
    """
    kernel = kernel or pick_kernel()
    if not stream:
        return _run(command, kernel, edu, modules, build, cpus, memory, timeout, stream, None)
    label = f"upcall_dev vm: {kernel.version}"
    with steps(label, 2 if modules is None and build else 1) as progress:
        return _run(command, kernel, edu, modules, build, cpus, memory, timeout, stream, progress)


def _run(
    command: str | Sequence[str],
    kernel: Kernel,
    edu: bool,
    modules: Sequence[Path] | None,
    build: bool,
    cpus: int,
    memory: str,
    timeout: float,
    stream: bool,
    progress: Steps | None,
) -> VmResult:
    env = tool_environment()
    vng = shutil.which("vng", path=env["PATH"])
    if vng is None:
        raise VmError("virtme-ng is not installed: pip install virtme-ng (make deps does it)")
    if shutil.which("qemu-system-x86_64", path=env["PATH"]) is None:
        raise VmError("QEMU is not installed: apt-get install qemu-system-x86 (make deps does it)")
    if modules is None:
        if progress is not None and build:
            progress.step("building the module")
        modules = (
            build_module(kernel)
            if build
            else [BUILD_DIR / "kmod" / kernel.version / f"{name}.ko" for name in MODULES]
        )
    if not isinstance(command, str):
        command = shlex.join(command)

    outdir = BUILD_DIR / "vm" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    outdir.mkdir(parents=True, exist_ok=True)
    args = [vng, "--run", str(kernel.image), "--cpus", str(cpus), "--memory", memory,
            "--rwdir", str(outdir), "--user", "root"]  # fmt: skip
    kvm = kvm_usable()
    if not kvm:
        args.append("--disable-kvm")
    # The guest shares the host's /lib/modules: a build of upcall installed
    # there (the DKMS package) must not be loaded by alias (udev, for the
    # edu device) in place of the one under test. An explicit modprobe by
    # name still loads it.
    append = [f"modprobe.blacklist={','.join(MODULES)}"]
    if kernel.is_debug:
        # failslab's cache filter marks a cache only at boot (6.1's
        # /sys/kernel/slab/*/failslab is read-only): the allocation failure
        # tests aim at the signal's sigqueue cache.
        append += ["no5lvl", "slub_debug=A,sigqueue"]
    # A second console, a virtio one (hvc0) into a file: vng sends the
    # serial console to /dev/null, so a guest that panics would die without
    # a word. (The 8250 driver has one console: ttyS1 cannot be a second.)
    console = outdir / "console.txt"
    args += [
        "--qemu-opts=-device virtio-serial-pci,id=upcallcon",
        "--qemu-opts=-device virtconsole,bus=upcallcon.0,chardev=upcallcon",
        f"--qemu-opts=-chardev file,id=upcallcon,path={console}",
    ]
    append.append("console=hvc0")
    args += ["--append", " ".join(append)]
    if edu:
        args += ["--disable-microvm", "--qemu-opts=-device edu"]
    # virtme-ng passes --exec on the kernel command line, which x86 cuts at
    # 2048 bytes (cutting off init= and hanging the boot): hand it a short
    # command that runs the script from the shared output directory instead.
    script = outdir / "guest.sh"
    script.write_text(_guest_script(modules, command, outdir, debug=kernel.is_debug))
    args += ["--exec", f"sh {shlex.quote(str(script))}"]

    if progress is not None:
        progress.step(
            f"booting {kernel.version} ({'KVM' if kvm else 'TCG'}, {cpus} CPUs), then: "
            f"{command if len(command) <= 60 else command[:57] + '...'}"
        )
    start = time.monotonic()
    returncode, lines = _boot(args, timeout, stream, env)
    if "--disable-kvm" not in args and _kvm_aborted(lines):
        # KVM passed the probe but aborted the guest: this host's KVM is not
        # usable after all, so boot again under TCG.
        lines.append("upcall_dev vm: KVM aborted the guest; booting again without KVM\n")
        retry_code, retry = _boot([*args, "--disable-kvm"], timeout, stream, env)
        returncode, lines = retry_code, lines + retry

    result = VmResult(returncode, "".join(lines), seconds=time.monotonic() - start, outdir=outdir)
    if console.exists():
        result.console = console.read_text(errors="replace")
    log = outdir / "dmesg.txt"
    if log.exists():
        result.kernel_log = log.read_text(errors="replace")
        leaks = outdir / "kmemleak.txt"
        if leaks.exists():
            result.kernel_log += leaks.read_text(errors="replace")
        result.reports = scan_kernel_log(result.kernel_log)
    tainted = outdir / "tainted"
    if tainted.exists():
        result.taint = int(tainted.read_text().strip() or 0)
    return result


#: What QEMU prints when KVM cannot run the guest after all. On "KVM
#: internal error" QEMU pauses the guest instead of exiting, so the line
#: itself ends the boot.
_KVM_ABORT_RE = re.compile(r"failed to set MSR|KVM run failed|KVM internal error", re.IGNORECASE)


def _kvm_aborted(lines: Sequence[str]) -> bool:
    return any(_KVM_ABORT_RE.search(line) for line in lines[-200:])


def _boot(
    args: Sequence[str], timeout: float, stream: bool, env: dict[str, str]
) -> tuple[int, list[str]]:
    """Run vng with a watchdog: (exit status, its output lines)."""
    lines: list[str] = []
    with subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=env,
        start_new_session=True,  # so the watchdog can kill QEMU with vng
    ) as proc:
        assert proc.stdout is not None
        # A watchdog, not a check per line: a guest that hangs prints nothing.
        expired = threading.Event()

        def kill_guest_now() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        def kill_guest() -> None:
            expired.set()
            kill_guest_now()

        watchdog = threading.Timer(timeout, kill_guest)
        watchdog.daemon = True
        watchdog.start()
        try:
            for line in proc.stdout:
                lines.append(line)
                if stream:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                if "--disable-kvm" not in args and _KVM_ABORT_RE.search(line):
                    kill_guest_now()
        finally:
            watchdog.cancel()
            returncode = proc.wait()
        if expired.is_set():
            lines.append(f"upcall_dev vm: killed after {timeout:.0f} s\n")
            returncode = returncode or 124

    return returncode, lines


#: The most virtual CPUs a guest is given (QEMU's q35 takes 288; a test
#: guest needs a few).
CPUS_MAX = 64
parse_cpus = ranged("cpus", 1, CPUS_MAX)
parse_memory = parse_mib_size("memory", 64 << 20, 1 << 40)


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``vm`` on the developer command line's subcommands."""
    p = subparsers.add_parser(
        "vm",
        help="build the module, boot a kernel under QEMU, run a command inside",
        description="Build kmod/ for an installed kernel, boot it with virtme-ng, insmod "
        "upcall.ko and its source modules, run CMD, and fail on any kernel report in the "
        "guest's log. Needs a source checkout (kmod/).",
        epilog="examples:\n"
        "  python -m upcall_dev vm --kernel 6.12 -- upcall listen --count 1 --timeout 5\n"
        "  python -m upcall_dev vm --edu --timeout 600 -- "
        "python -m pytest -q tests/kernel/test_edu.py",
    )
    p.add_argument(
        "--kernel",
        help=f"kernel to boot: a flavour ({', '.join(KERNEL_FLAVOURS)}) or an installed "
        f"version (default: {DEFAULT_FLAVOUR})",
    )
    p.add_argument("--debug-kernel", action="store_true", help="boot the newest debug kernel")
    p.add_argument("--edu", action="store_true", help="give the guest QEMU's edu PCI device")
    p.add_argument("--no-module", action="store_true", help="do not build or load the modules")
    p.add_argument(
        "--cpus",
        type=parse_cpus,
        default=2,
        metavar="N",
        help=f"the guest's virtual CPUs, 1..{CPUS_MAX} (default 2)",
    )
    p.add_argument(
        "--memory",
        type=parse_memory,
        default="2G",
        metavar="SIZE",
        help="the guest's memory: MiB, or with K, M, G or T (64M..1T; default 2G)",
    )
    p.add_argument(
        "--timeout",
        type=parse_wait,
        default=1800.0,
        metavar="S",
        help="seconds before the guest is killed (default 1800)",
    )
    p.add_argument("--log", action="store_true", help="print the guest's kernel log at the end")
    p.add_argument(
        "--print-headers",
        action="store_true",
        help="print the chosen kernel's headers directory and exit (no boot)",
    )
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="command to run in the guest (after --)")
    p.set_defaults(func=_cli_vm)


def _cli_vm(args: argparse.Namespace) -> int:
    cmd = list(args.cmd)
    if cmd[:1] == ["--"]:
        cmd = cmd[1:]
    if not cmd:
        cmd = ["cat", "/proc/version"]
    kernel = pick_kernel(args.kernel, debug=args.debug_kernel)
    if args.print_headers:
        print(kernel.headers)
        return 0
    result = run(
        cmd,
        kernel=kernel,
        edu=args.edu,
        modules=[] if args.no_module else None,
        cpus=args.cpus,
        memory=args.memory,
        timeout=args.timeout,
        stream=True,
    )
    if args.log:
        sys.stdout.write(result.kernel_log)
    return report(result, kernel)


def report(result: VmResult, kernel: Kernel) -> int:
    """Print the verdict on a run to stderr; return the exit status it deserves."""
    say = sys.stderr.write
    say(f"upcall_dev vm: {kernel.version}: exit {result.returncode} in {result.seconds:.0f} s\n")
    if not result.kernel_log:
        say("upcall_dev vm: the guest left no kernel log (it died before the end)\n")
        tail = result.output.splitlines()[-30:]
        say("\n".join(tail) + "\n")
        if result.console.strip():
            say("upcall_dev vm: the end of the guest's console:\n")
            say("\n".join(result.console.splitlines()[-80:]) + "\n")
        return result.returncode or 1
    for line in result.reports:
        say(f"upcall_dev vm: kernel report: {line}\n")
    if result.bad_taint:
        say(f"upcall_dev vm: kernel tainted: {result.taint}\n")
    if result.reports or result.bad_taint:
        return result.returncode or 1
    return result.returncode
