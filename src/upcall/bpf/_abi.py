# SPDX-License-Identifier: LGPL-2.1-or-later
"""Python mirror of bpf/upcall_bpf.h, checked by tests/host/test_bpf_abi.py against C."""

from __future__ import annotations

import struct

VIA_SIGNAL = 0
VIA_RINGBUF = 1
VIA_SIGNAL_CURRENT = 2

SRC_TRIGGER = 0
SRC_TRACEPOINT = 1
SRC_KPROBE = 2
SRC_IRQ = 3
SOURCE_NAMES = {
    SRC_TRIGGER: "trigger",
    SRC_TRACEPOINT: "tracepoint",
    SRC_KPROBE: "kprobe",
    SRC_IRQ: "irq",
}

TRIG_STAMP = 1
TRIG_SEQ = 2

REC_STAMPED = 1

# struct upcall_bpf_cfg: via, signo, filter_tgid, irq, has_comm, slot_mask, comm[16]
CFG = struct.Struct("=IiIIII16s")  # ..., has_comm, slot_mask, comm
# struct upcall_bpf_target: tgid, tid
TARGET = struct.Struct("=IIQ")  # tgid, tid, consumed
# struct upcall_bpf_record, preceded in the ring by its 8-byte header (len, pg_off)
RECORD_SIZE = 32
RING_RECORD = struct.Struct("<IIQQQII")  # header + record: one fixed stride
# struct upcall_bpf_stats
STATS = struct.Struct("=QQQQQ")  # emitted, delivered, dropped, filtered, slots
SIGSLOT = struct.Struct("=QQQQ")  # seqno, timestamp_ns, value, state
SLOT_SENT = 1
SLOT_FAILED = 2
# struct upcall_bpf_trigger
TRIGGER = struct.Struct("=QII")
WHOAMI = struct.Struct("=Q")

assert CFG.size == 40
assert RING_RECORD.size == 8 + RECORD_SIZE == 40
assert STATS.size == 40
assert TRIGGER.size == 16
