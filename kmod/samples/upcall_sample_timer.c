// SPDX-License-Identifier: GPL-2.0
/*
 * upcall sample: emit from a workqueue every period_ms milliseconds.
 *
 * A client of upcall_emit() in process context: a delayed work item that
 * re-queues itself, emitting a counter (1, 2, 3...) with source id
 * UPCALL_SAMPLE_TIMER_SOURCE (0x101) each time.  Unloading cancels it and
 * waits for a running one.  While this module is loaded, upcall.ko cannot
 * be unloaded: it uses the exported upcall_emit().
 *
 *	insmod upcall_sample_timer.ko period_ms=10
 */
#include <linux/jiffies.h>
#include <linux/module.h>
#include <linux/upcall.h>
#include <linux/workqueue.h>

/* The second id outside the range upcall reserves for itself. */
#define UPCALL_SAMPLE_TIMER_SOURCE	0x101

static unsigned int period_ms = 100;
module_param(period_ms, uint, 0444);
MODULE_PARM_DESC(period_ms, "Milliseconds between events, at least 1 (default: 100)");

static u64 ticks;

static void upcall_sample_timer_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(upcall_sample_work, upcall_sample_timer_fn);

static void upcall_sample_timer_fn(struct work_struct *work)
{
	upcall_emit(UPCALL_SAMPLE_TIMER_SOURCE, ++ticks);
	schedule_delayed_work(&upcall_sample_work,
			      msecs_to_jiffies(period_ms));
}

static int __init upcall_sample_timer_init(void)
{
	if (!period_ms)
		return -EINVAL;
	schedule_delayed_work(&upcall_sample_work,
			      msecs_to_jiffies(period_ms));
	return 0;
}

static void __exit upcall_sample_timer_exit(void)
{
	/* Also stops a work item that is about to re-queue itself. */
	cancel_delayed_work_sync(&upcall_sample_work);
}

module_init(upcall_sample_timer_init);
module_exit(upcall_sample_timer_exit);

MODULE_DESCRIPTION("upcall sample: periodic events from a workqueue");
MODULE_AUTHOR("The upcall developers");
MODULE_LICENSE("GPL");
