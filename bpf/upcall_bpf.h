/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Layouts shared by the BPF programs (upcall.bpf.c), the C benchmark
 * consumer (consumer.c) and the Python loader (src/upcall/bpf/_abi.py,
 * which mirrors them with struct formats; tests/host/test_bpf_abi.py
 * compares the two as the C compiler sees them).
 *
 * Fixed-width types only, explicit padding, sizes a multiple of 8 so a
 * ring-buffer record plus its 8-byte header is a fixed stride.
 */
#ifndef UPCALL_BPF_H
#define UPCALL_BPF_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* cfg.via */
#define UPCALL_VIA_SIGNAL 0
#define UPCALL_VIA_RINGBUF 1
/* signal without the kfunc: bpf_send_signal_thread() to current as a
 * doorbell, the record itself goes through the ring buffer */
#define UPCALL_VIA_SIGNAL_CURRENT 2

/* Event.source for each hook kind */
#define UPCALL_SRC_TRIGGER 0
#define UPCALL_SRC_TRACEPOINT 1
#define UPCALL_SRC_KPROBE 2
#define UPCALL_SRC_IRQ 3

/* trigger flags */
#define UPCALL_TRIG_STAMP 1 /* value = bpf_ktime_get_ns() (latency runs) */
#define UPCALL_TRIG_SEQ 2   /* value = value + i for the i-th event of a burst */

/* record flags */
#define UPCALL_REC_STAMPED 1

/* Read-only configuration, fixed before load (the verifier prunes on it). */
struct upcall_bpf_cfg {
	__u32 via;
	__s32 signo;
	__u32 filter_tgid; /* 0: any process */
	__u32 irq;         /* irq_handler_entry: only this line */
	__u32 has_comm;
	__u32 slot_mask;   /* signal: sigslots has slot_mask + 1 entries */
	char comm[16];     /* filter on the task's comm, exact */
};

/* The one writable setting: whom to signal (kernel's view of our thread). */
struct upcall_bpf_target {
	__u32 tgid;
	__u32 tid;
	__u64 consumed; /* signal: sigslots the reader is done with (backpressure) */
};

/* One ring-buffer record (32 bytes; 40 with the ring-buffer header). */
struct upcall_bpf_record {
	__u64 seqno;
	__u64 timestamp_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 value;
	__u32 source;
	__u32 flags;
};

/* Counters, in an mmapable array map: user space reads them without a syscall. */
struct upcall_bpf_stats {
	__u64 emitted;   /* passed the filter: got a seqno */
	__u64 delivered; /* handed to the transport */
	__u64 dropped;   /* could not be handed over (ring full, signal refused) */
	__u64 filtered;  /* hook fired but the pid/comm filter said no */
	__u64 slots;     /* signal: sigslots entries used so far */
};

/*
 * Signal delivery carries only si_value (the value) in the siginfo. The
 * seqno and timestamp of each signal attempt go into the next slot of an
 * mmapable array, in sending order, before the signal is sent; the reader
 * matches each received signal to its slot (by order, checked by value).
 * A failed send marks its slot, so the reader sees the gap where it was.
 */
#define UPCALL_SLOT_SENT 1
#define UPCALL_SLOT_FAILED 2
struct upcall_bpf_sigslot {
	__u64 seqno;
	__u64 timestamp_ns;
	__u64 value;
	__u64 state; /* UPCALL_SLOT_* */
};

/* ctx of the user-triggered hook (BPF_PROG_TEST_RUN of a syscall program) */
struct upcall_bpf_trigger {
	__u64 value;
	__u32 count; /* events in this burst (>= 1) */
	__u32 flags; /* UPCALL_TRIG_* */
};

/* ctx of the whoami program */
struct upcall_bpf_whoami {
	__u64 pid_tgid;
};

#endif /* UPCALL_BPF_H */
