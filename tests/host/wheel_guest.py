"""Run in the guest by test_dkms.py: a user's whole path, no source checkout.

    python tests/host/wheel_guest.py VERSION WHEEL COUNT

The module from the installed upcall-dkms package (``modprobe``), the
library from the wheel, ``pip install``-ed into a fresh venv in the guest's
own /tmp (wheel_venv.py, the steps test_wheel.py takes on the host): no
``src/`` on the path, every command run from there through the venv's
``upcall``. Checks ``upcall --version`` (library, module and ABI),
``upcall doctor``, and that ``upcall listen --count COUNT`` receives the
COUNT events ``upcall emit`` sends. Prints one line per step; exits
non-zero on the first failure.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import wheel_venv
from dkms_guest import expect, loaded, sh

from upcall import abi


def main(version: str, wheel: str, count: int) -> None:
    expect("upcall not loaded at start", loaded("upcall"), False)
    sh("modprobe", "upcall")
    filename = sh("modinfo", "-F", "filename", "upcall").strip()
    expect("modprobe found the DKMS module", "/updates/dkms/upcall.ko" in filename, True)

    venv = wheel_venv.install(Path(wheel), Path(tempfile.mkdtemp(prefix="upcall-user-")))
    print(f"ok: pip install {Path(wheel).name} into {venv.path}")
    where = venv.run(
        str(venv.bin / "python"), "-c", "import sys, upcall; print(upcall.__file__, *sys.path)"
    )
    module_file, *path = where.stdout.split()
    expect("import upcall finds the wheel's", module_file.startswith(f"{venv.path}/"), True)
    checkout = str(Path(__file__).resolve().parents[2])
    expect("no source tree on sys.path", [p for p in path if p.startswith(checkout)], [])

    r = venv.run("upcall", "--version")
    ours = f"{version} (ABI {abi.UPCALL_ABI_VERSION})"
    expect(
        "upcall --version",
        (r.returncode, r.stdout, r.stderr),
        (0, f"upcall {ours}, module {ours}\n", ""),
    )

    r = venv.run("upcall", "doctor", timeout=120)
    print(r.stdout, end="")
    expect("upcall doctor passes", (r.returncode, r.stderr), (0, ""))

    listen = venv.popen("upcall", "listen", "--count", str(count), "--timeout", "60")
    try:
        assert listen.stdout is not None
        first = listen.stdout.readline()
        expect("upcall listen subscribed", first.startswith("listening via=queue "), True)
        r = venv.run("upcall", "emit", "7", "--count", str(count))
        expect("upcall emit", r.returncode, 0)
        out, err = listen.communicate(timeout=120)
    finally:
        listen.kill()
        listen.wait()
    lines = out.splitlines()
    expect("upcall listen's exit status", (listen.returncode, err), (0, ""))
    expect(
        "upcall listen received every event",
        [line.split()[:3] for line in lines[:-1]],
        [[f"seqno={i}", "value=7", "source=0"] for i in range(1, count + 1)],
    )
    expect("its summary", lines[-1], f"summary received={count} lost=0 dropped=0 foreign=0")
    sh("rmmod", "upcall")
    print("wheel guest: all passed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
