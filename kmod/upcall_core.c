// SPDX-License-Identifier: GPL-2.0
/*
 * upcall: subscribers, upcall_emit() and delivery.
 *
 * An emitter stamps the event and queues it on every subscriber under the
 * subscriber's raw spinlock, then queues the subscriber's irq_work; the
 * irq_work hands the events to the transport in order.  So upcall_emit()
 * never sleeps and never waits on a receiver, and transports that take
 * sleeping locks on PREEMPT_RT (signals do) never run under a raw lock.
 */
#include <linux/export.h>
#include <linux/mutex.h>
#include <linux/rculist.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>

#include "upcall_internal.h"

static LIST_HEAD(upcall_subs);
/* Serialises writers of upcall_subs; readers use RCU. */
static DEFINE_MUTEX(upcall_subs_lock);

static int upcall_deliver(u32 transport,
			  const struct upcall_signal_target *target,
			  const struct upcall_record *rec)
{
	switch (transport) {
	case UPCALL_TRANSPORT_SIGNAL:
		return upcall_signal_send(target, rec);
	default:
		return -EINVAL;
	}
}

static void upcall_sub_drain(struct irq_work *work)
{
	struct upcall_sub *sub = container_of(work, struct upcall_sub, work);
	struct upcall_signal_target target;
	struct upcall_record rec;
	u32 transport;
	unsigned long flags;
	unsigned int done;
	int ret;

	raw_spin_lock_irqsave(&sub->lock, flags);
	if (sub->draining) {
		raw_spin_unlock_irqrestore(&sub->lock, flags);
		return;
	}
	sub->draining = true;

	for (done = 0; done < UPCALL_DRAIN_BATCH; done++) {
		if (sub->closing) {
			sub->dropped += kfifo_len(&sub->pending);
			kfifo_reset(&sub->pending);
		}
		if (!kfifo_get(&sub->pending, &rec))
			break;
		/*
		 * The target may be replaced while we send; the old one is
		 * released only after this run ends (irq_work_sync()).
		 */
		transport = sub->transport;
		target = sub->target;
		raw_spin_unlock_irqrestore(&sub->lock, flags);

		ret = upcall_deliver(transport, &target, &rec);

		raw_spin_lock_irqsave(&sub->lock, flags);
		if (ret)
			sub->dropped++;
		else
			sub->delivered++;
	}

	sub->draining = false;
	if (!kfifo_is_empty(&sub->pending))
		irq_work_queue(&sub->work);
	raw_spin_unlock_irqrestore(&sub->lock, flags);
}

static bool upcall_sub_push(struct upcall_sub *sub, u32 source, u64 value,
			    u64 now)
{
	struct upcall_record rec = {
		.timestamp_ns = now,
		.value = value,
		.source = source,
	};
	unsigned long flags;

	raw_spin_lock_irqsave(&sub->lock, flags);
	if (sub->transport == UPCALL_TRANSPORT_NONE || sub->closing) {
		raw_spin_unlock_irqrestore(&sub->lock, flags);
		return false;
	}
	rec.seqno = ++sub->seqno;
	sub->emitted++;
	/* Drop the oldest: the newest says most about the present. */
	if (kfifo_is_full(&sub->pending)) {
		kfifo_skip(&sub->pending);
		sub->dropped++;
	}
	kfifo_put(&sub->pending, rec);
	raw_spin_unlock_irqrestore(&sub->lock, flags);

	irq_work_queue(&sub->work);
	return true;
}

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

struct upcall_sub *upcall_sub_alloc(void)
{
	struct upcall_sub *sub;

	sub = kzalloc(sizeof(*sub), GFP_KERNEL);
	if (!sub)
		return NULL;

	if (kfifo_alloc(&sub->pending, UPCALL_PENDING_SIZE, GFP_KERNEL)) {
		kfree(sub);
		return NULL;
	}
	raw_spin_lock_init(&sub->lock);
	init_irq_work(&sub->work, upcall_sub_drain);

	mutex_lock(&upcall_subs_lock);
	list_add_tail_rcu(&sub->node, &upcall_subs);
	mutex_unlock(&upcall_subs_lock);

	return sub;
}

void upcall_sub_free(struct upcall_sub *sub)
{
	unsigned long flags;

	mutex_lock(&upcall_subs_lock);
	list_del_rcu(&sub->node);
	mutex_unlock(&upcall_subs_lock);
	/* After this no emitter can reach @sub... */
	synchronize_rcu();

	/* ...and after this no irq_work runs for it. */
	raw_spin_lock_irqsave(&sub->lock, flags);
	sub->closing = true;
	raw_spin_unlock_irqrestore(&sub->lock, flags);
	irq_work_sync(&sub->work);

	upcall_signal_target_release(&sub->target);
	kfifo_free(&sub->pending);
	kfree(sub);
}

int upcall_sub_subscribe_signal(struct upcall_sub *sub, int signo, bool thread)
{
	struct upcall_signal_target target, old;
	unsigned long flags;
	int ret;

	ret = upcall_signal_target_init(&target, signo, thread);
	if (ret)
		return ret;

	raw_spin_lock_irqsave(&sub->lock, flags);
	old = sub->target;
	sub->target = target;
	sub->transport = UPCALL_TRANSPORT_SIGNAL;
	raw_spin_unlock_irqrestore(&sub->lock, flags);

	/* A run that copied the old target must finish before we drop it. */
	irq_work_sync(&sub->work);
	upcall_signal_target_release(&old);
	return 0;
}

void upcall_sub_stats(struct upcall_sub *sub, struct upcall_stats *stats)
{
	unsigned long flags;

	memset(stats, 0, sizeof(*stats));
	raw_spin_lock_irqsave(&sub->lock, flags);
	stats->emitted = sub->emitted;
	stats->delivered = sub->delivered;
	stats->dropped = sub->dropped;
	stats->seqno = sub->seqno;
	stats->transport = sub->transport;
	if (sub->transport == UPCALL_TRANSPORT_SIGNAL)
		stats->signo = sub->target.signo;
	raw_spin_unlock_irqrestore(&sub->lock, flags);
	stats->pending = stats->emitted - stats->delivered - stats->dropped;
}
