# SPDX-License-Identifier: LGPL-2.1-or-later
"""QEMU's edu PCI device, driven through the sysfs attributes of upcall's driver.

upcall_edu.ko, a client module of upcall.ko, binds its ``upcall_edu`` driver
to the edu device (1234:11e8) and adds attributes to the PCI device's sysfs
directory (see kmod/upcall_edu.c):
``raise`` and ``factorial`` (write, root only) make the device interrupt,
``irq_count`` and ``irq_mode`` tell what happened. The interrupt handler
emits each interrupt's status value with source ``UPCALL_SOURCE_EDU``.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from ._errors import UpcallError

PCI_DEVICES = Path("/sys/bus/pci/devices")
DRIVER = Path("/sys/bus/pci/drivers/upcall_edu")
FORCE_INTX = Path("/sys/module/upcall_edu/parameters/force_intx")
VENDOR_ID = 0x1234
DEVICE_ID = 0x11E8
#: The ids as the drivers' ``new_id``/``remove_id`` files take them.
PCI_ID = f"{VENDOR_ID:04x} {DEVICE_ID:04x}"
#: The status bit of a finished factorial computation.
FACTORIAL_IRQ = 0x1
#: The largest n whose n! fits the device's 32-bit factorial register.
FACTORIAL_MAX = 12


class EduError(UpcallError):
    """The edu device is absent, not bound to upcall, or refused a request."""


def find_device(pci_devices: Path | None = None) -> Path | None:
    """The sysfs directory of the first edu device, whatever its driver, or None."""
    root = PCI_DEVICES if pci_devices is None else pci_devices
    if not root.is_dir():
        return None
    want = (f"{VENDOR_ID:#06x}", f"{DEVICE_ID:#06x}")
    for dev in sorted(root.iterdir()):
        try:
            ids = ((dev / "vendor").read_text().strip(), (dev / "device").read_text().strip())
        except OSError:
            continue
        if ids == want:
            return dev
    return None


def driver_of(dev: Path) -> str | None:
    """The name of the driver bound to ``dev``, or None."""
    link = dev / "driver"
    return link.resolve().name if link.exists() else None


def bound_device(pci_devices: Path | None = None) -> Path:
    """The edu device bound to upcall's driver; else :class:`EduError` saying why not."""
    dev = find_device(pci_devices)
    if dev is None:
        raise EduError(
            f"no edu PCI device ({PCI_ID.replace(' ', ':')}): "
            "start the QEMU guest with it (`-device edu`)"
        )
    drv = driver_of(dev)
    if drv != DRIVER.name:
        who = f"bound to {drv}" if drv else "bound to no driver (is upcall.ko loaded?)"
        raise EduError(f"edu device {dev.name} is {who}, not {DRIVER.name}")
    return dev


def sysfs_write(path: Path, text: str) -> None:
    """One write(2) of ``text``, as sysfs store functions expect; OSError carries the errno."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def irq_count(dev: Path) -> int:
    """Interrupts the driver handled on ``dev`` since it was bound."""
    return int((dev / "irq_count").read_text())


def irq_mode(dev: Path) -> str:
    """``"msi"`` or ``"intx"``."""
    return (dev / "irq_mode").read_text().strip()


def _store(dev: Path, attr: str, text: str) -> None:
    try:
        sysfs_write(dev / attr, text)
    except PermissionError:
        raise EduError(f"permission denied writing {dev / attr}: needs root") from None
    except OSError as e:
        if e.errno == errno.EBUSY:
            raise EduError("edu device busy: a factorial is still computing") from None
        raise EduError(f"{dev / attr}: {os.strerror(e.errno or 0)}") from None


def _wait_handled(dev: Path, before: int, timeout: float, what: str) -> int:
    deadline = time.monotonic() + timeout
    while (now := irq_count(dev)) == before:
        if time.monotonic() > deadline:
            raise EduError(f"{what}: no interrupt handled within {timeout:g} s")
        time.sleep(0.0002)
    return now


def raise_irq(dev: Path, value: int, *, wait: float | None = 5.0) -> None:
    """Raise an interrupt whose status is ``value`` (1..0xffffffff).

    With ``wait`` (seconds), return once the handler took it: the device ORs
    raises into one status register, so raises closer together than the
    handler would share one interrupt and one event.
    """
    if not 0 < value <= 0xFFFFFFFF:
        raise ValueError(f"raise value {value} out of range 1..0xffffffff")
    before = irq_count(dev)
    _store(dev, "raise", f"{value:#x}")
    if wait is not None:
        _wait_handled(dev, before, wait, f"raise {value:#x}")


def factorial(dev: Path, n: int, *, wait: float | None = 5.0) -> None:
    """Start computing n!; its completion interrupts with status :data:`FACTORIAL_IRQ`.

    With ``wait`` (seconds), return once the handler took that interrupt.
    """
    if not 0 <= n <= 0xFFFFFFFF:
        raise ValueError(f"factorial operand {n} out of range 0..0xffffffff")
    before = irq_count(dev)
    _store(dev, "factorial", str(n))
    if wait is not None:
        _wait_handled(dev, before, wait, f"factorial {n}")
