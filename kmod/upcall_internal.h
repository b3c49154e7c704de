/* SPDX-License-Identifier: GPL-2.0 */
/*
 * upcall: state shared by the module's files.
 */
#ifndef _UPCALL_INTERNAL_H
#define _UPCALL_INTERNAL_H

#include <linux/cred.h>
#include <linux/irq_work.h>
#include <linux/kfifo.h>
#include <linux/list.h>
#include <linux/pid.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/upcall.h>

/* Events a subscriber may have between emit and delivery. */
#define UPCALL_PENDING_SIZE	256
/* Events one irq_work run delivers before it yields the CPU. */
#define UPCALL_DRAIN_BATCH	64

/**
 * struct upcall_record - an event on its way to one subscriber
 * @seqno: the subscriber's sequence number for it
 * @timestamp_ns: CLOCK_MONOTONIC at emit
 * @value: the payload
 * @source: the emitter's id
 */
struct upcall_record {
	u64 seqno;
	u64 timestamp_ns;
	u64 value;
	u32 source;
};

/**
 * struct upcall_signal_target - where a signal subscription sends
 * @pid: counted reference to the subscribing thread or process
 * @type: PIDTYPE_PID (the thread) or PIDTYPE_TGID (its process)
 * @signo: the real-time signal
 * @uid: real uid of the subscriber when it subscribed
 * @euid: effective uid of the subscriber when it subscribed
 */
struct upcall_signal_target {
	struct pid *pid;
	enum pid_type type;
	int signo;
	kuid_t uid;
	kuid_t euid;
};

/**
 * struct upcall_sub - one subscriber: an open file of /dev/upcall
 * @node: entry in the list of subscribers, walked under RCU by emitters
 * @lock: raw, so that emitters may take it from any context; protects
 *	every field below
 * @transport: the &enum upcall_transport in use
 * @draining: an irq_work run is delivering; others leave it alone so that
 *	events keep their order
 * @closing: release has begun; undelivered events are dropped
 * @target: the signal transport's destination
 * @seqno: last sequence number given out
 * @emitted: events given a sequence number
 * @delivered: events the transport accepted
 * @dropped: events lost, each counted once
 * @pending: events between emit and delivery
 * @work: delivers @pending outside the emitter's context
 */
struct upcall_sub {
	struct list_head node;
	raw_spinlock_t lock;
	u32 transport;
	bool draining;
	bool closing;
	struct upcall_signal_target target;
	u64 seqno;
	u64 emitted;
	u64 delivered;
	u64 dropped;
	DECLARE_KFIFO_PTR(pending, struct upcall_record);
	struct irq_work work;
};

struct upcall_sub *upcall_sub_alloc(void);
void upcall_sub_free(struct upcall_sub *sub);
int upcall_sub_subscribe_signal(struct upcall_sub *sub, int signo, bool thread);
void upcall_sub_stats(struct upcall_sub *sub, struct upcall_stats *stats);

int upcall_signal_target_init(struct upcall_signal_target *target, int signo,
			      bool thread);
void upcall_signal_target_release(struct upcall_signal_target *target);
int upcall_signal_send(const struct upcall_signal_target *target,
		       const struct upcall_record *rec);

#endif /* _UPCALL_INTERNAL_H */
