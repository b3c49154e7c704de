// SPDX-License-Identifier: GPL-2.0
/*
 * upcall: subscribers, upcall_emit() and delivery.
 *
 * An emitter stamps the event and queues it on every subscriber under the
 * subscriber's raw spinlock.  A QUEUE subscriber's reader blocked in
 * read(2) is woken there and then, as uio_event_notify() does, through a
 * simple wait queue, whose lock is raw too.  Everything else goes through
 * the subscriber's irq_work: it hands the events to the transport in order
 * (signal) or tells the other readers that the queue has events (poll,
 * SIGIO, eventfd), which take locks that sleep on PREEMPT_RT; a QUEUE
 * subscriber with none of those queues no irq_work at all.
 * Netlink allocates and sends skbs, which hard IRQ context (where irq_work
 * runs) must not, so the irq_work passes NETLINK subscribers on to a work
 * item: one more wake-up, of a kworker, between emit and delivery.  The
 * high-priority workqueue keeps that kworker ahead of ordinary emitters,
 * whose events would otherwise overflow the queue while it waits.  So
 * upcall_emit() never sleeps and never waits on a receiver, and nothing
 * that takes a sleeping lock on PREEMPT_RT runs under a raw lock.
 */
#include <linux/atomic.h>
#include <linux/export.h>
#include <linux/hashtable.h>
#include <linux/log2.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/rculist.h>
#include <linux/rcupdate.h>
#include <linux/sched/clock.h>
#include <linux/signal.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>

#include "upcall_compat.h"
#include "upcall_internal.h"

/*
 * What each user may hold: its open files of /dev/upcall and their queues,
 * in KiB (0: no limit).  The memory is also charged to the opener's memory
 * cgroup (GFP_KERNEL_ACCOUNT); this bound holds where no cgroup limits it.
 */
static unsigned int upcall_max_user_mem_kb = 128 * 1024;
module_param_named(max_user_mem_kb, upcall_max_user_mem_kb, uint, 0644);
MODULE_PARM_DESC(max_user_mem_kb,
		 "KiB of memory each user's open /dev/upcall files and their queues may hold, 0 for no limit (default 131072); beyond it open(2) and UPCALL_IOC_SUBSCRIBE fail with EDQUOT");

/**
 * struct upcall_user - what one user holds, for max_user_mem_kb
 * @node: entry in upcall_users
 * @uid: the user (real uid of the opener)
 * @files: its open files: the entry lives while there is one
 * @bytes: what they and their queues hold
 */
struct upcall_user {
	struct hlist_node node;
	kuid_t uid;
	unsigned int files;
	size_t bytes;
};

static DEFINE_HASHTABLE(upcall_users, 6);
/* Serialises upcall_users and every user's fields. */
static DEFINE_MUTEX(upcall_users_lock);

/* Charge @user @new bytes instead of @old; more only within the limit. */
static int upcall_user_charge(struct upcall_user *user, size_t old, size_t new)
{
	size_t limit = (size_t)READ_ONCE(upcall_max_user_mem_kb) * SZ_1K;
	int ret = 0;

	mutex_lock(&upcall_users_lock);
	if (new > old && limit && user->bytes - old + new > limit)
		ret = -EDQUOT;
	else
		user->bytes = user->bytes - old + new;
	mutex_unlock(&upcall_users_lock);
	return ret;
}

/* The entry of @uid with one more file, charged @bytes for it. */
static struct upcall_user *upcall_user_get(kuid_t uid, size_t bytes)
{
	size_t limit = (size_t)READ_ONCE(upcall_max_user_mem_kb) * SZ_1K;
	struct upcall_user *user;
	u32 key = __kuid_val(uid);

	mutex_lock(&upcall_users_lock);
	hash_for_each_possible(upcall_users, user, node, key)
		if (uid_eq(user->uid, uid))
			goto found;
	user = kzalloc(sizeof(*user), GFP_KERNEL);
	if (!user) {
		user = ERR_PTR(-ENOMEM);
		goto unlock;
	}
	user->uid = uid;
	hash_add(upcall_users, &user->node, key);
found:
	if (limit && user->bytes + bytes > limit) {
		if (!user->files) {
			hash_del(&user->node);
			kfree(user);
		}
		user = ERR_PTR(-EDQUOT);
		goto unlock;
	}
	user->files++;
	user->bytes += bytes;
unlock:
	mutex_unlock(&upcall_users_lock);
	return user;
}

/* One file of @user closed, which held @bytes. */
static void upcall_user_put(struct upcall_user *user, size_t bytes)
{
	mutex_lock(&upcall_users_lock);
	user->bytes -= bytes;
	if (!--user->files) {
		hash_del(&user->node);
		kfree(user);
	}
	mutex_unlock(&upcall_users_lock);
}

static LIST_HEAD(upcall_subs);
/* Serialises writers of upcall_subs; readers use RCU. */
static DEFINE_MUTEX(upcall_subs_lock);
static atomic64_t upcall_next_id = ATOMIC64_INIT(0);

/* QUEUE: the events stay for read(2); tell whoever waits for them. */
static void upcall_sub_announce(struct upcall_sub *sub, unsigned long flags)
	__releases(&sub->lock)
{
	struct eventfd_ctx *eventfd = sub->eventfd;
	/* Edge-triggered, like a pipe: one SIGIO until the reader comes back. */
	bool sigio = !sub->sigio_sent;

	sub->sigio_sent = true;
	raw_spin_unlock_irqrestore(&sub->lock, flags);

	wake_up_interruptible_poll(&sub->wait, EPOLLIN | EPOLLRDNORM);
	if (sigio)
		kill_fasync(&sub->fasync, SIGIO, POLL_IN);
	if (eventfd)
		upcall_eventfd_signal(eventfd);
}

/* QUEUE: whether anyone besides read(2) waits to hear of new events. */
static bool upcall_sub_announced(struct upcall_sub *sub)
{
	return wq_has_sleeper(&sub->wait) || READ_ONCE(sub->fasync) ||
	       sub->eventfd;
}

static void upcall_sub_drop_all(struct upcall_sub *sub)
{
	sub->dropped += kfifo_len(&sub->queue);
	kfifo_reset(&sub->queue);
}

/*
 * Hand queued events to the transport, a batch at a time and in order.
 * @in_task: run from @wq_work, where netlink may send.  From @work (hard IRQ
 * on most machines) NETLINK events are passed on to @wq_work, and SIGNAL
 * events are sent at most %UPCALL_IRQ_BATCH at a time: what is left goes to
 * @wq_work too, so that emitters on other CPUs cannot keep this one in
 * hard IRQ by refilling the queue.
 */
static void upcall_sub_deliver(struct upcall_sub *sub, bool in_task)
{
	struct upcall_signal_target target;
	struct upcall_netlink_target nl;
	unsigned int batch = in_task ? UPCALL_TASK_BATCH : UPCALL_IRQ_BATCH;
	struct upcall_event ev;
	unsigned long flags;
	unsigned int done;
	u32 transport;
	int ret;

	raw_spin_lock_irqsave(&sub->lock, flags);
	if (sub->draining) {
		raw_spin_unlock_irqrestore(&sub->lock, flags);
		return;
	}
	/* Nowhere to send: closed, or unsubscribed. */
	if (sub->closing || sub->transport == UPCALL_TRANSPORT_NONE)
		upcall_sub_drop_all(sub);
	if (kfifo_is_empty(&sub->queue)) {
		raw_spin_unlock_irqrestore(&sub->lock, flags);
		return;
	}
	if (sub->transport == UPCALL_TRANSPORT_QUEUE) {
		upcall_sub_announce(sub, flags);
		return;
	}
	if (sub->transport == UPCALL_TRANSPORT_NETLINK && !in_task) {
		raw_spin_unlock_irqrestore(&sub->lock, flags);
		queue_work(system_highpri_wq, &sub->wq_work);
		return;
	}
	sub->draining = true;

	for (done = 0; done < batch; done++) {
		transport = sub->transport;
		if (transport == UPCALL_TRANSPORT_NONE ||
		    transport == UPCALL_TRANSPORT_QUEUE ||
		    (transport == UPCALL_TRANSPORT_NETLINK && !in_task) ||
		    !kfifo_get(&sub->queue, &ev))
			break;
		target = sub->target;
		nl = sub->nl;
		raw_spin_unlock_irqrestore(&sub->lock, flags);

		if (transport == UPCALL_TRANSPORT_SIGNAL)
			ret = upcall_signal_send(&target, &ev);
		else
			ret = upcall_netlink_send(&nl, sub->id, &ev);

		raw_spin_lock_irqsave(&sub->lock, flags);
		if (ret)
			sub->dropped++;
		else
			sub->delivered++;
		/* The socket is still held, so its pointer names it still. */
		if (ret == -ECONNREFUSED && nl.sock && sub->nl.sock == nl.sock)
			sub->nl.refused = true;
		if (sub->closing)
			upcall_sub_drop_all(sub);
	}

	sub->draining = false;
	if (!kfifo_is_empty(&sub->queue))
		queue_work(system_highpri_wq, &sub->wq_work);
	raw_spin_unlock_irqrestore(&sub->lock, flags);
}

static void upcall_sub_drain(struct irq_work *work)
{
	upcall_sub_deliver(container_of(work, struct upcall_sub, work), false);
}

static void upcall_sub_wq_drain(struct work_struct *work)
{
	upcall_sub_deliver(container_of(work, struct upcall_sub, wq_work), true);
}

/* Wait until no run of @work or @wq_work uses what was replaced. */
static void upcall_sub_sync(struct upcall_sub *sub)
{
	irq_work_sync(&sub->work);
	flush_work(&sub->wq_work);
}

static bool upcall_sub_push(struct upcall_sub *sub, u32 source, u64 value,
			    u64 now)
{
	struct upcall_event ev = {
		.timestamp_ns = now,
		.value = value,
		.source = source,
	};
	unsigned long flags;

	raw_spin_lock_irqsave(&sub->lock, flags);
	if (sub->transport == UPCALL_TRANSPORT_NONE || sub->closing ||
	    source < sub->source_first || source > sub->source_last) {
		raw_spin_unlock_irqrestore(&sub->lock, flags);
		return false;
	}
	ev.seqno = ++sub->seqno;
	sub->emitted++;
	/* Drop the oldest: the newest says most about the present. */
	if (kfifo_is_full(&sub->queue)) {
		kfifo_skip(&sub->queue);
		sub->dropped++;
	}
	kfifo_put(&sub->queue, ev);
	/*
	 * Under the lock: once upcall_sub_free() has set @closing, nobody
	 * queues the work again, so one irq_work_sync() there is enough.  A
	 * reader or poller that starts waiting adds itself to its queue before
	 * it takes the lock to look at @queue, so it has seen this event or is
	 * seen here.
	 */
	if (sub->transport != UPCALL_TRANSPORT_QUEUE || upcall_sub_announced(sub))
		irq_work_queue(&sub->work);
	if (swq_has_sleeper(&sub->rwait))
		swake_up_one(&sub->rwait);
	raw_spin_unlock_irqrestore(&sub->lock, flags);
	return true;
}

/**
 * upcall_emit() - send an event to every subscriber of /dev/upcall
 * @source: what emitted it: an id above %UPCALL_SOURCE_RESERVED_MAX and at
 *	most %UPCALL_SOURCE_MAX (ids up to %UPCALL_SOURCE_RESERVED_MAX are
 *	upcall's own sources and samples)
 * @value: the payload
 *
 * Context: task, softirq or hard interrupt context, with or without raw
 * spinlocks held or interrupts disabled.  Not from NMI context, not from
 * noinstr code (entry code, before instrumentation is allowed) and not
 * where RCU is not watching (the idle loop between rcu_idle_enter() and
 * rcu_idle_exit(), or ct_idle_enter()/exit()): it walks the subscribers
 * under rcu_read_lock(), reads the clock with ktime_get_ns() and queues
 * irq_work, none of which is allowed there.  Never sleeps and never waits
 * for a subscriber: the event is stamped and queued per subscriber, and
 * each transport delivers it later (see upcall_sub_deliver()).  Takes time
 * proportional to the number of subscribers.
 *
 * Return: the number of subscribers the event was queued for (0 when
 * nobody listens), or -EINVAL if @source is out of range.  An event that
 * a subscriber's queue has no room for displaces its oldest pending event,
 * which is counted as dropped for that subscriber.
 */
int upcall_emit(u32 source, u64 value)
{
	u64 now = ktime_get_ns();
	struct upcall_sub *sub;
	int queued = 0;

	if (source > UPCALL_SOURCE_MAX)
		return -EINVAL;

	rcu_read_lock();
	list_for_each_entry_rcu(sub, &upcall_subs, node)
		queued += upcall_sub_push(sub, source, value, now);
	rcu_read_unlock();

	return queued;
}
EXPORT_SYMBOL_GPL(upcall_emit);

/*
 * A new open file: no queue and not on the emitters' list until its first
 * SUBSCRIBE, so an open file costs one small allocation, charged, like the
 * queue, to the opener's memory cgroup and to @uid's max_user_mem_kb.
 *
 * Return: the subscriber; ERR_PTR(-EDQUOT) when @uid holds its limit,
 * ERR_PTR(-ENOMEM).
 */
struct upcall_sub *upcall_sub_alloc(kuid_t uid)
{
	struct upcall_user *user;
	struct upcall_sub *sub;

	user = upcall_user_get(uid, sizeof(*sub));
	if (IS_ERR(user))
		return ERR_CAST(user);
	sub = kzalloc(sizeof(*sub), GFP_KERNEL_ACCOUNT);
	if (!sub) {
		upcall_user_put(user, sizeof(*sub));
		return ERR_PTR(-ENOMEM);
	}

	sub->user = user;
	sub->charged = sizeof(*sub);

	sub->id = atomic64_inc_return(&upcall_next_id);
	INIT_LIST_HEAD(&sub->node);
	init_swait_queue_head(&sub->rwait);
	init_waitqueue_head(&sub->wait);
	raw_spin_lock_init(&sub->lock);
	init_irq_work(&sub->work, upcall_sub_drain);
	INIT_WORK(&sub->wq_work, upcall_sub_wq_drain);
	return sub;
}

/* The first SUBSCRIBE puts @sub where upcall_emit() finds it. */
static void upcall_sub_join(struct upcall_sub *sub)
{
	mutex_lock(&upcall_subs_lock);
	if (!sub->listed) {
		list_add_tail_rcu(&sub->node, &upcall_subs);
		sub->listed = true;
	}
	mutex_unlock(&upcall_subs_lock);
}

/*
 * A queue of @size records (a power of two), charged to the caller's memory
 * cgroup; vmalloc'ed when no contiguous pages are at hand (the largest is
 * 3 MiB).
 */
static int upcall_queue_alloc(struct __kfifo *fifo, unsigned int size)
{
	const size_t esize = sizeof(struct upcall_event);
	void *buf;
	int ret;

	buf = kvmalloc_array(size, esize, GFP_KERNEL_ACCOUNT);
	if (!buf)
		return -ENOMEM;
	ret = __kfifo_init(fifo, buf, size * esize, esize);
	if (ret)
		kvfree(buf);
	return ret;
}

/* The queue's length in records; 0 before the first SUBSCRIBE. */
static unsigned int upcall_sub_queue_size(struct upcall_sub *sub)
{
	return sub->queue.kfifo.data ? kfifo_size(&sub->queue) : 0;
}

static void upcall_sub_free_rcu(struct rcu_head *rcu)
{
	struct upcall_sub *sub = container_of(rcu, struct upcall_sub, rcu);

	kvfree(sub->queue.kfifo.data);
	kfree(sub);
}

/*
 * Close without waiting for a grace period (a process that exits with many
 * subscribers would wait for one per subscriber): stop delivery now and
 * free the memory once no emitter can still be looking at it.
 */
void upcall_sub_free(struct upcall_sub *sub)
{
	unsigned long flags;

	mutex_lock(&upcall_subs_lock);
	if (sub->listed)
		list_del_rcu(&sub->node);
	mutex_unlock(&upcall_subs_lock);

	/*
	 * An emitter that still finds @sub leaves it alone from now on, and a
	 * run of @work or @wq_work drops the queue, so it queues neither
	 * again: once they are synced, nothing uses the targets.
	 */
	raw_spin_lock_irqsave(&sub->lock, flags);
	sub->closing = true;
	raw_spin_unlock_irqrestore(&sub->lock, flags);
	upcall_sub_sync(sub);

	if (sub->transport == UPCALL_TRANSPORT_SIGNAL)
		upcall_signal_target_release(&sub->target);
	upcall_netlink_target_release(&sub->nl);
	if (sub->eventfd)
		eventfd_ctx_put(sub->eventfd);
	upcall_user_put(sub->user, sub->charged);
	call_rcu(&sub->rcu, upcall_sub_free_rcu);
}

/* Module exit: the last upcall_sub_free_rcu() has run. */
void upcall_core_exit(void)
{
	rcu_barrier();
}

static int upcall_queue_size(u32 requested, unsigned int *size)
{
	if (!requested)
		requested = UPCALL_QUEUE_DEFAULT;
	if (requested < UPCALL_QUEUE_MIN || requested > UPCALL_QUEUE_MAX)
		return -EINVAL;
	*size = roundup_pow_of_two(requested);
	return 0;
}

int upcall_sub_subscribe(struct upcall_sub *sub,
			 const struct upcall_subscribe *req)
{
	struct upcall_signal_target target = {}, old_target;
	struct upcall_netlink_target nl = {}, old_nl;
	const size_t esize = sizeof(struct upcall_event);
	struct __kfifo queue = {};
	size_t old_bytes, new_bytes;
	unsigned int size;
	unsigned long flags;
	bool resize, had_signal;
	int ret;

	/* The socket only with UNICAST, and UNICAST only for NETLINK. */
	if (req->flags & UPCALL_SUBSCRIBE_UNICAST ?
	    req->transport != UPCALL_TRANSPORT_NETLINK : req->netlink_fd)
		return -EINVAL;
	switch (req->transport) {
	case UPCALL_TRANSPORT_NONE:
		/* Unsubscribe: no signal, no flag and no queue to size. */
		if (req->signo || req->flags || req->queue_size)
			return -EINVAL;
		break;
	case UPCALL_TRANSPORT_SIGNAL:
		if (req->signo > INT_MAX)
			return -EINVAL;
		break;
	case UPCALL_TRANSPORT_QUEUE:
	case UPCALL_TRANSPORT_NETLINK:
		/* No signal to send, so no thread to direct it at. */
		if (req->signo || req->flags & UPCALL_SUBSCRIBE_THREAD)
			return -EINVAL;
		break;
	default:
		return -EINVAL;
	}
	if (req->transport == UPCALL_TRANSPORT_NONE) {
		/* The queue stays as it is, for a later SUBSCRIBE. */
		size = upcall_sub_queue_size(sub);
	} else {
		ret = upcall_queue_size(req->queue_size, &size);
		if (ret)
			return ret;
	}

	/* The queue's size changes only here, serialised by the file's users. */
	old_bytes = upcall_sub_queue_size(sub) * esize;
	new_bytes = size * esize;
	resize = new_bytes != old_bytes;
	if (resize) {
		ret = upcall_user_charge(sub->user, old_bytes, new_bytes);
		if (ret)
			return ret;
		ret = upcall_queue_alloc(&queue, size);
		if (ret)
			goto uncharge;
	}
	if (req->transport == UPCALL_TRANSPORT_SIGNAL) {
		ret = upcall_signal_target_init(&target, req->signo,
						req->flags & UPCALL_SUBSCRIBE_THREAD);
		if (ret)
			goto free_queue;
	}
	if (req->flags & UPCALL_SUBSCRIBE_UNICAST) {
		ret = upcall_netlink_target_init(&nl, req->netlink_fd);
		if (ret)
			goto free_queue;
	}

	raw_spin_lock_irqsave(&sub->lock, flags);
	had_signal = sub->transport == UPCALL_TRANSPORT_SIGNAL;
	old_target = sub->target;
	sub->target = target;
	old_nl = sub->nl;
	sub->nl = nl;
	sub->transport = req->transport;
	if (req->flags & UPCALL_SUBSCRIBE_SOURCES) {
		sub->source_first = req->source_first;
		sub->source_last = req->source_last;
	} else {
		sub->source_first = 0;
		sub->source_last = UPCALL_SOURCE_MAX;
	}
	sub->sigio_sent = false;
	/* Unsubscribed: what is queued will be neither read nor sent. */
	if (req->transport == UPCALL_TRANSPORT_NONE)
		upcall_sub_drop_all(sub);
	if (resize) {
		sub->dropped += kfifo_len(&sub->queue);
		swap(sub->queue.kfifo, queue);
	}
	raw_spin_unlock_irqrestore(&sub->lock, flags);
	/* Once listed, it stays so: upcall_sub_push() skips it while NONE. */
	if (req->transport != UPCALL_TRANSPORT_NONE)
		upcall_sub_join(sub);
	/*
	 * A reader or poller waiting for records of a file that is no longer
	 * a QUEUE subscriber would wait forever: wake it to find out (read(2)
	 * fails with EINVAL, poll(2) reports EPOLLERR).
	 */
	if (req->transport != UPCALL_TRANSPORT_QUEUE) {
		swake_up_all(&sub->rwait);
		wake_up_interruptible_poll(&sub->wait, EPOLLERR);
	}

	/* A run that copied the old targets must finish before we drop them. */
	upcall_sub_sync(sub);
	if (had_signal)
		upcall_signal_target_release(&old_target);
	upcall_netlink_target_release(&old_nl);
	/* Events queued under the old transport go out by the new one. */
	irq_work_queue(&sub->work);
	if (resize)
		sub->charged += new_bytes - old_bytes;
	/* The old queue. */
	kvfree(queue.data);
	return 0;

free_queue:
	kvfree(queue.data);
uncharge:
	if (resize)
		upcall_user_charge(sub->user, new_bytes, old_bytes);
	return ret;
}

int upcall_sub_set_eventfd(struct upcall_sub *sub, struct eventfd_ctx *ctx)
{
	struct eventfd_ctx *old;
	unsigned long flags;

	raw_spin_lock_irqsave(&sub->lock, flags);
	old = sub->eventfd;
	sub->eventfd = ctx;
	raw_spin_unlock_irqrestore(&sub->lock, flags);

	upcall_sub_sync(sub);
	if (old)
		eventfd_ctx_put(old);
	/* Events already queued are announced on the new eventfd too. */
	irq_work_queue(&sub->work);
	return 0;
}

void upcall_sub_stats(struct upcall_sub *sub, struct upcall_stats *stats)
{
	unsigned long flags;

	memset(stats, 0, sizeof(*stats));
	stats->id = sub->id;
	raw_spin_lock_irqsave(&sub->lock, flags);
	stats->emitted = sub->emitted;
	stats->delivered = sub->delivered;
	stats->dropped = sub->dropped;
	stats->seqno = sub->seqno;
	stats->transport = sub->transport;
	if (sub->transport == UPCALL_TRANSPORT_SIGNAL)
		stats->signo = sub->target.signo;
	stats->queue_size = upcall_sub_queue_size(sub);
	stats->queued = kfifo_len(&sub->queue);
	raw_spin_unlock_irqrestore(&sub->lock, flags);
	stats->pending = stats->emitted - stats->delivered - stats->dropped;
}

/*
 * Readers wait exclusively, one woken per event: what one of them leaves
 * in the queue (it asked for fewer, or a signal took it away) is the next
 * one's to take.  Under @lock.
 */
static void upcall_sub_pass_wake(struct upcall_sub *sub)
{
	if (!kfifo_is_empty(&sub->queue) && swq_has_sleeper(&sub->rwait))
		swake_up_one(&sub->rwait);
}

/**
 * upcall_sub_pop() - take queued events for read(2)
 * @sub: a QUEUE subscriber
 * @events: where to put them
 * @max: how many at most
 *
 * The events count as delivered; the caller that cannot copy them to user
 * space gives them back to the dropped count with upcall_sub_unpop().
 *
 * Return: the number taken, 0 if none is queued, -EINVAL if @sub is not a
 * QUEUE subscriber.
 */
int upcall_sub_pop(struct upcall_sub *sub, struct upcall_event *events,
		   unsigned int max)
{
	unsigned long flags;
	unsigned int n;

	raw_spin_lock_irqsave(&sub->lock, flags);
	if (sub->transport != UPCALL_TRANSPORT_QUEUE) {
		raw_spin_unlock_irqrestore(&sub->lock, flags);
		return -EINVAL;
	}
	n = kfifo_out(&sub->queue, events, max);
	sub->delivered += n;
	/* The reader came back: records queued from now on are news. */
	sub->sigio_sent = false;
	upcall_sub_pass_wake(sub);
	raw_spin_unlock_irqrestore(&sub->lock, flags);
	return n;
}

/* A reader gave up waiting (a signal): pass on a wake-up it may have had. */
void upcall_sub_read_aborted(struct upcall_sub *sub)
{
	unsigned long flags;

	raw_spin_lock_irqsave(&sub->lock, flags);
	upcall_sub_pass_wake(sub);
	raw_spin_unlock_irqrestore(&sub->lock, flags);
}

/* O_ASYNC was turned on: announce the records already queued too. */
void upcall_sub_fasync_on(struct upcall_sub *sub)
{
	unsigned long flags;

	raw_spin_lock_irqsave(&sub->lock, flags);
	sub->sigio_sent = false;
	raw_spin_unlock_irqrestore(&sub->lock, flags);
	irq_work_queue(&sub->work);
}

void upcall_sub_unpop(struct upcall_sub *sub, unsigned int lost)
{
	unsigned long flags;

	raw_spin_lock_irqsave(&sub->lock, flags);
	sub->delivered -= lost;
	sub->dropped += lost;
	raw_spin_unlock_irqrestore(&sub->lock, flags);
}

/* Whether read(2) would not block: events queued, or not a queue at all. */
bool upcall_sub_readable(struct upcall_sub *sub)
{
	unsigned long flags;
	bool readable;

	raw_spin_lock_irqsave(&sub->lock, flags);
	readable = sub->transport != UPCALL_TRANSPORT_QUEUE ||
		   !kfifo_is_empty(&sub->queue);
	raw_spin_unlock_irqrestore(&sub->lock, flags);
	return readable;
}

/*
 * poll(2)'s answer, as read(2) would have it: EPOLLIN while a QUEUE
 * subscriber has records, EPOLLERR for a file that is not one (read(2)
 * fails with EINVAL at once), else nothing.
 */
__poll_t upcall_sub_poll(struct upcall_sub *sub)
{
	unsigned long flags;
	__poll_t mask = 0;

	raw_spin_lock_irqsave(&sub->lock, flags);
	if (sub->transport != UPCALL_TRANSPORT_QUEUE)
		mask = EPOLLERR;
	else if (!kfifo_is_empty(&sub->queue))
		mask = EPOLLIN | EPOLLRDNORM;
	raw_spin_unlock_irqrestore(&sub->lock, flags);
	return mask;
}
