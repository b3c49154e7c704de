# SPDX-License-Identifier: LGPL-2.1-or-later
"""upcall's module-free path: kernel hooks delivered by BPF (signal or ring buffer).

>>> from upcall.bpf import BpfSubscription, Tracepoint
>>> with BpfSubscription(Tracepoint("syscalls:sys_enter_getpid"), via="signal") as sub:
...     for event in sub:
...         print(event.seqno, event.value)
"""

from __future__ import annotations

from ._errors import BpfError
from ._subscription import (
    BpfStats,
    BpfSubscription,
    Hook,
    Irq,
    Kprobe,
    Tracepoint,
    Trigger,
    subscribe,
)

__all__ = [
    "BpfError",
    "BpfStats",
    "BpfSubscription",
    "Hook",
    "Irq",
    "Kprobe",
    "Tracepoint",
    "Trigger",
    "subscribe",
]
