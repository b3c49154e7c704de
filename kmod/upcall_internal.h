/* SPDX-License-Identifier: GPL-2.0 */
/*
 * upcall: state shared by the module's files.
 */
#ifndef _UPCALL_INTERNAL_H
#define _UPCALL_INTERNAL_H

#include <linux/eventfd.h>
#include <linux/fs.h>
#include <linux/irq_work.h>
#include <linux/kfifo.h>
#include <linux/list.h>
#include <linux/pid.h>
#include <linux/spinlock.h>
#include <linux/swait.h>
#include <linux/types.h>
#include <linux/uidgid.h>
#include <linux/upcall.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

/*
 * Signals one irq_work run sends (with interrupts off, on most kernels);
 * the rest of the backlog goes to the workqueue.
 */
#define UPCALL_IRQ_BATCH	16
/* Events one workqueue run sends before it queues itself again. */
#define UPCALL_TASK_BATCH	1024

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
 * struct upcall_netlink_target - where a netlink subscription sends
 * @sock: the subscriber's socket, holding its file so that its port id
 *	stays its own; NULL for the multicast group
 * @portid: @sock's port id
 * @refused: the socket refused a message (ECONNREFUSED): send no more
 */
struct upcall_netlink_target {
	struct socket *sock;
	u32 portid;
	bool refused;
};

struct upcall_user;

/**
 * struct upcall_sub - one subscriber: an open file of /dev/upcall
 * @node: entry in the list of subscribers, walked under RCU by emitters
 * @listed: on the list, from its first SUBSCRIBE to a transport (it stays
 *	there once unsubscribed); under the list's mutex
 * @id: unique while the module is loaded; tags its netlink messages
 * @rwait: readers blocked in read(2) of a QUEUE subscriber, woken by the
 *	emitter itself: a simple wait queue's lock is raw, so the wake-up is
 *	allowed wherever upcall_emit() is, PREEMPT_RT included
 * @wait: pollers (poll, select, epoll) of a QUEUE subscriber, woken from
 *	@work: their wait queue's lock sleeps on PREEMPT_RT
 * @fasync: SIGIO owners (fcntl O_ASYNC) of a QUEUE subscriber
 * @lock: raw, so that emitters may take it from any context; protects
 *	every field below
 * @transport: the &enum upcall_transport in use
 * @draining: an irq_work or @wq_work run is delivering; others leave it
 *	alone so that events keep their order
 * @closing: release has begun; undelivered events are dropped
 * @sigio_sent: a SIGIO was sent since the last read(2): the next waits
 *	until the reader has been back
 * @target: the signal transport's destination
 * @nl: the netlink transport's destination
 * @eventfd: notified when a QUEUE subscriber's queue gets events, or NULL
 * @source_first: the first source id it takes
 * @source_last: the last source id it takes
 * @seqno: last sequence number given out
 * @emitted: events given a sequence number
 * @delivered: events the transport handed over
 * @dropped: events lost, each counted once
 * @queue: events between emit and delivery; for QUEUE, until read(2);
 *	no buffer before the first SUBSCRIBE
 * @work: delivers or announces @queue outside the emitter's context
 * @wq_work: delivers in process context, from the workqueue: NETLINK
 *	events, and the backlog of SIGNAL events that one run of @work leaves
 * @user: the user who opened the file, charged for it and its queue
 * @charged: what @user is charged for this file, in bytes
 *
 * @target, @nl and @eventfd are replaced under @lock, and the old ones
 * released only after irq_work_sync() and flush_work(): a run of @work or
 * @wq_work uses them without references.
 */
struct upcall_sub {
	struct list_head node;
	bool listed;
	u64 id;
	struct swait_queue_head rwait;
	wait_queue_head_t wait;
	struct fasync_struct *fasync;
	raw_spinlock_t lock;
	u32 transport;
	bool draining;
	bool closing;
	bool sigio_sent;
	struct upcall_signal_target target;
	struct upcall_netlink_target nl;
	struct eventfd_ctx *eventfd;
	u32 source_first;
	u32 source_last;
	u64 seqno;
	u64 emitted;
	u64 delivered;
	u64 dropped;
	DECLARE_KFIFO_PTR(queue, struct upcall_event);
	struct irq_work work;
	struct work_struct wq_work;
	struct upcall_user *user;
	size_t charged;
	struct rcu_head rcu;
};

/* What user space may emit as: not one of upcall's own sources. */
static inline bool upcall_source_user_ok(u32 source)
{
	return source == UPCALL_SOURCE_USER ||
	       (source > UPCALL_SOURCE_RESERVED_MAX &&
		source <= UPCALL_SOURCE_MAX);
}

struct upcall_sub *upcall_sub_alloc(kuid_t uid);
void upcall_sub_free(struct upcall_sub *sub);
void upcall_core_exit(void);
int upcall_sub_subscribe(struct upcall_sub *sub,
			 const struct upcall_subscribe *req);
void upcall_sub_fasync_on(struct upcall_sub *sub);
int upcall_sub_set_eventfd(struct upcall_sub *sub, struct eventfd_ctx *ctx);
void upcall_sub_stats(struct upcall_sub *sub, struct upcall_stats *stats);
int upcall_sub_pop(struct upcall_sub *sub, struct upcall_event *events,
		   unsigned int max);
bool upcall_sub_readable(struct upcall_sub *sub);
void upcall_sub_read_aborted(struct upcall_sub *sub);
__poll_t upcall_sub_poll(struct upcall_sub *sub);
void upcall_sub_unpop(struct upcall_sub *sub, unsigned int lost);

int upcall_signal_target_init(struct upcall_signal_target *target, int signo,
			      bool thread);
void upcall_signal_target_release(struct upcall_signal_target *target);
int upcall_signal_send(const struct upcall_signal_target *target,
		       const struct upcall_event *ev);

int upcall_netlink_init(void);
void upcall_netlink_exit(void);
int upcall_netlink_target_init(struct upcall_netlink_target *target, int fd);
void upcall_netlink_target_release(struct upcall_netlink_target *target);
int upcall_netlink_send(const struct upcall_netlink_target *target, u64 id,
			const struct upcall_event *ev);

#endif /* _UPCALL_INTERNAL_H */
