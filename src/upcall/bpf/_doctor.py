# SPDX-License-Identifier: LGPL-2.1-or-later
"""``upcall doctor``: every check of :mod:`.probe`, and one that loads a program.

Apart from :mod:`.probe` because :func:`check_fentry` needs a whole
:class:`~upcall.bpf.BpfSubscription`, which itself asks :mod:`.probe`
why it cannot load: the doctor sits above both.
"""

from __future__ import annotations

import os

from ._errors import BpfError
from ._probe import (
    Check,
    check_btf,
    check_kfunc,
    check_kprobes,
    check_libbpf,
    check_object,
    check_privilege,
    check_ringbuf,
    check_tracefs,
    kernel_release,
)
from ._subscription import BpfSubscription, Kprobe


def check_fentry() -> Check:
    """Load (not attach) an fentry program on vfs_read: the only sure test."""
    if not check_privilege().ok:
        return Check("fentry", False, "cannot probe without privileges")
    try:
        BpfSubscription(Kprobe("vfs_read"), via="ringbuf", pid=os.getpid()).close()
    except BpfError as e:
        return Check("fentry", False, str(e))
    return Check("fentry", True, "BPF trampolines: --kprobe FUNC uses fentry")


def all_checks() -> list[Check]:
    """Every check, in the order ``upcall doctor`` prints them."""
    libbpf = check_libbpf()
    if not libbpf.ok:  # every probe below but BTF's goes through libbpf
        return [Check("kernel", True, kernel_release()), libbpf, check_object(), check_btf()]
    checks = [
        Check("kernel", True, kernel_release()),
        libbpf,
        check_object(),
        check_privilege(),
        check_btf(),
        check_kfunc(),
        check_ringbuf(),
        check_fentry(),
        check_kprobes(),
        check_tracefs(),
    ]
    return checks
