// SPDX-License-Identifier: GPL-2.0
/*
 * upcall's module-free path: BPF programs that turn a kernel hook into an
 * upcall event and deliver it by a real-time signal with a value
 * (bpf_send_signal_task, Linux 6.13+) or by the BPF ring buffer.
 *
 * One object is loaded per subscription: its maps (ring buffer, counters,
 * target) belong to that subscription alone and die with it. Only the
 * program for the chosen hook is loaded; the loader sets the others'
 * autoload off.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "upcall_bpf.h"

/* bpf_send_signal*, the kfuncs and ring buffers need a GPL program */
char LICENSE[] SEC("license") = "GPL";

/*
 * kfuncs (not helpers: no prototype in bpf_helper_defs.h). Weak, so the
 * object still loads on a kernel without them when the fallback path is
 * chosen; the loader only loads a program that calls them when this
 * kernel's BTF has them.
 */
extern int bpf_send_signal_task(struct task_struct *task, int sig, enum pid_type type,
				u64 value) __ksym __weak;
extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym __weak;
extern void bpf_task_release(struct task_struct *p) __ksym __weak;

const volatile struct upcall_bpf_cfg cfg = {};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); /* the loader resizes it */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct upcall_bpf_stats);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct upcall_bpf_target);
} target SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1); /* the loader sizes it: slot_mask + 1 */
	__type(key, u32);
	__type(value, struct upcall_bpf_sigslot);
} sigslots SEC(".maps");

static __always_inline bool filter_ok(void)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	char comm[16];

	if (cfg.filter_tgid && (u32)cur->tgid != cfg.filter_tgid)
		return false;
	if (!cfg.has_comm)
		return true;
	/* comm is a char[16] inside task_struct: a BTF pointer read */
	bpf_probe_read_kernel_str(comm, sizeof(comm), cur->comm);
	for (int i = 0; i < 16; i++) {
		if (comm[i] != cfg.comm[i])
			return false;
		if (!comm[i])
			break;
	}
	return true;
}

static __always_inline int send_record(u64 seq, u64 value, u32 source, u64 ts, u32 flags)
{
	struct upcall_bpf_record *r;

	r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r)
		return -1;
	r->seqno = seq;
	r->timestamp_ns = ts;
	r->value = value;
	r->source = source;
	r->flags = flags;
	bpf_ringbuf_submit(r, 0);
	return 0;
}

static __always_inline int send_signal(struct upcall_bpf_stats *st, u64 seq, u64 value, u64 ts)
{
	struct upcall_bpf_sigslot *slot;
	struct upcall_bpf_target *tg;
	struct task_struct *t;
	u32 zero = 0, idx;
	int ret = -1;

	tg = bpf_map_lookup_elem(&target, &zero);
	if (!tg || !tg->tid)
		return -1;
	/* never lap the reader: a slot it has not matched yet is still needed */
	if (st->slots - tg->consumed > cfg.slot_mask)
		return -1;
	/* the slot is written before the send: the reader may run at once */
	idx = (u32)__sync_fetch_and_add(&st->slots, 1) & cfg.slot_mask;
	slot = bpf_map_lookup_elem(&sigslots, &idx);
	if (!slot)
		return -1;
	slot->seqno = seq;
	slot->timestamp_ns = ts;
	slot->value = value;
	slot->state = UPCALL_SLOT_SENT;

	/* a reference for the call: the subscriber may be exiting */
	t = bpf_task_from_pid(tg->tid);
	if (t) {
		/* PIDTYPE_PID: to the subscribing thread, which blocks it */
		ret = bpf_send_signal_task(t, cfg.signo, PIDTYPE_PID, value);
		bpf_task_release(t);
	}
	if (ret)
		slot->state = UPCALL_SLOT_FAILED;
	return ret;
}

/* Emit one event: give it the next seqno, hand it over, count the outcome. */
static __always_inline int emit(u64 value, u32 source, u32 flags)
{
	struct upcall_bpf_stats *st;
	u32 zero = 0;
	u64 seq, ts;
	int ret;

	st = bpf_map_lookup_elem(&stats, &zero);
	if (!st)
		return 0;
	seq = __sync_fetch_and_add(&st->emitted, 1) + 1;
	ts = bpf_ktime_get_ns();
	if (flags & UPCALL_REC_STAMPED)
		value = ts;

	if (cfg.via == UPCALL_VIA_RINGBUF) {
		ret = send_record(seq, value, source, ts, flags);
	} else if (cfg.via == UPCALL_VIA_SIGNAL) {
		ret = send_signal(st, seq, value, ts);
	} else {
		/*
		 * No kfunc: the record goes through the ring buffer and
		 * bpf_send_signal_thread() rings current's doorbell. The loader
		 * only allows this when current is the subscriber; check anyway.
		 */
		struct upcall_bpf_target *tg = bpf_map_lookup_elem(&target, &zero);

		if (!tg || (u32)bpf_get_current_pid_tgid() != tg->tid)
			ret = -1;
		else
			ret = send_record(seq, value, source, ts, flags);
		if (!ret)
			ret = bpf_send_signal_thread(cfg.signo);
	}
	if (ret)
		__sync_fetch_and_add(&st->dropped, 1);
	else
		__sync_fetch_and_add(&st->delivered, 1);
	return 0;
}

static __always_inline bool pass(void)
{
	struct upcall_bpf_stats *st;
	u32 zero = 0;

	if (filter_ok())
		return true;
	st = bpf_map_lookup_elem(&stats, &zero);
	if (st)
		__sync_fetch_and_add(&st->filtered, 1);
	return false;
}

/* ---- user-triggered hook: BPF_PROG_TEST_RUN with struct upcall_bpf_trigger */

struct burst {
	u64 value;
	u32 flags;
};

static long burst_one(u32 i, void *data)
{
	struct burst *b = data;
	u64 v = b->value;
	u32 rflags = 0;

	if (b->flags & UPCALL_TRIG_SEQ)
		v += i;
	if (b->flags & UPCALL_TRIG_STAMP)
		rflags |= UPCALL_REC_STAMPED;
	emit(v, UPCALL_SRC_TRIGGER, rflags);
	return 0;
}

SEC("syscall")
int upcall_trigger(struct upcall_bpf_trigger *ctx)
{
	struct burst b = { .value = ctx->value, .flags = ctx->flags };
	u32 n = ctx->count;

	if (!pass())
		return 0;
	if (n <= 1)
		return burst_one(0, &b);
	/* one syscall, many events: a burst the consumer must keep up with */
	bpf_loop(n, burst_one, &b, 0);
	return 0;
}

/* The kernel's view of the calling thread (pid namespaces aside). */
SEC("syscall")
int upcall_whoami(struct upcall_bpf_whoami *ctx)
{
	ctx->pid_tgid = bpf_get_current_pid_tgid();
	return 0;
}

/* ---- a tracepoint by name (classic tracepoint: syscalls:* included) */

SEC("tracepoint")
int upcall_tracepoint(void *ctx)
{
	if (pass())
		emit(bpf_get_current_pid_tgid() >> 32, UPCALL_SRC_TRACEPOINT, 0);
	return 0;
}

/* ---- a hardware interrupt line, filtered on its number in the kernel */

SEC("tp_btf/irq_handler_entry")
int BPF_PROG(upcall_irq, int irq, struct irqaction *action)
{
	if ((u32)irq != cfg.irq)
		return 0;
	if (pass())
		emit(irq, UPCALL_SRC_IRQ, 0);
	return 0;
}

/* ---- a kernel function: fentry (trampoline) where BTF allows, else kprobe.
 * The attach target is set by the loader; the value is the first argument,
 * so a function without arguments gets the variant that reads none
 * (the verifier refuses a read past the last argument). */

SEC("fentry")
int upcall_fentry(u64 *ctx)
{
	if (pass())
		emit(ctx[0], UPCALL_SRC_KPROBE, 0);
	return 0;
}

SEC("fentry")
int upcall_fentry_noarg(u64 *ctx)
{
	if (pass())
		emit(0, UPCALL_SRC_KPROBE, 0);
	return 0;
}

SEC("kprobe")
int BPF_KPROBE(upcall_kprobe, u64 arg0)
{
	if (pass())
		emit(arg0, UPCALL_SRC_KPROBE, 0);
	return 0;
}
