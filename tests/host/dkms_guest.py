"""Run in the guest by test_dkms.py: the DKMS-built upcall and its client modules.

    python tests/host/dkms_guest.py VERSION HARD_KO OPTIONAL_KO

Loads upcall with ``modprobe`` (so from /lib/modules/<kernel>/updates/dkms,
where the installed package put it, never the build tree), checks its
version, runs a round trip through the queue, then the two client modules
of examples/client-module/: the hard one (emits from its init and on a
parameter write) and the optional one with upcall loaded before it, never,
and after it; and upcall's own source modules. Prints one line per step;
exits non-zero on the first failure.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import upcall

HARD_SOURCE = 0x200
OPTIONAL_SOURCE = 0x201


def sh(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"FAILED: {' '.join(argv)}: {proc.stdout}{proc.stderr}")
    return proc.stdout


def loaded(name: str) -> bool:
    return Path(f"/sys/module/{name}").exists()


def write_param(module: str, name: str, value: int) -> None:
    """Write a module parameter; OSError with the set callback's errno."""
    fd = os.open(f"/sys/module/{module}/parameters/{name}", os.O_WRONLY)
    try:
        os.write(fd, f"{value}\n".encode())
    finally:
        os.close(fd)


def collect(sub: upcall.Subscription, count: int, timeout: float = 60.0) -> list[tuple[int, int]]:
    """(source, value) of the next ``count`` events, in order."""
    got: list[tuple[int, int]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += [(e.source, e.value) for e in sub.read(count - len(got), timeout=1.0)]
    return got


def expect(what: str, got: object, want: object) -> None:
    if got != want:
        raise SystemExit(f"FAILED: {what}: got {got!r}, want {want!r}")
    print(f"ok: {what}")


def main(version: str, hard_ko: str, optional_ko: str) -> None:
    expect("upcall not loaded at start", loaded("upcall"), False)
    sh("modprobe", "upcall")
    expect("module version", Path("/sys/module/upcall/version").read_text().strip(), version)
    filename = sh("modinfo", "-F", "filename", "upcall").strip()
    expect("modprobe found the DKMS module", "/updates/dkms/upcall.ko" in filename, True)

    with upcall.open() as dev, dev.subscribe("queue") as sub:
        dev.emit(42)
        expect("round trip", collect(sub, 1), [(0, 42)])

        # upcall's own sources, from the package too (modprobe: by depmod's
        # record of their dependency on upcall).
        sh("modprobe", "upcall_edu")
        sh("modprobe", "upcall_timer")
        expect(
            "the sources are the DKMS modules",
            [
                "/updates/dkms/" in sh("modinfo", "-F", "filename", m)
                for m in ("upcall_edu", "upcall_timer")
            ],
            [True, True],
        )
        sh("rmmod", "upcall_timer", "upcall_edu")

        sh("insmod", hard_ko)
        write_param("upcall_client_hard", "emit", 7)
        expect("hard client", collect(sub, 2), [(HARD_SOURCE, 1), (HARD_SOURCE, 7)])
        sh("rmmod", "upcall_client_hard")

        sh("insmod", optional_ko)
        write_param("upcall_client_optional", "emit", 8)
        expect(
            "optional client, upcall loaded before",
            collect(sub, 2),
            [(OPTIONAL_SOURCE, 1), (OPTIONAL_SOURCE, 8)],
        )
        sh("rmmod", "upcall_client_optional")
    sh("rmmod", "upcall")

    sh("insmod", optional_ko)
    expect("the optional client does not load upcall", loaded("upcall"), False)
    err: int | None = 0
    try:
        write_param("upcall_client_optional", "emit", 9)
    except OSError as e:
        err = e.errno
    expect("optional client, upcall never loaded: emit fails", err, errno.ENODEV)
    log = sh("dmesg")
    expect("optional client says it has no upcall", "loaded without upcall" in log, True)
    sh("rmmod", "upcall_client_optional")

    sh("insmod", optional_ko)
    sh("modprobe", "upcall")
    with upcall.open() as dev, dev.subscribe("queue") as sub:
        write_param("upcall_client_optional", "emit", 10)
        expect("optional client, upcall loaded after", collect(sub, 1), [(OPTIONAL_SOURCE, 10)])
    # symbol_put() gave the reference back: upcall unloads under its client.
    sh("rmmod", "upcall")
    sh("rmmod", "upcall_client_optional")
    print("dkms guest: all passed")


if __name__ == "__main__":
    main(*sys.argv[1:4])
