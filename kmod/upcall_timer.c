// SPDX-License-Identifier: GPL-2.0
/*
 * upcall_timer: a periodic hrtimer that emits events, a load generator; a
 * module of its own, a client of upcall_emit() like any other.
 *
 * Writing a rate in Hz to /sys/module/upcall_timer/parameters/hz starts
 * the timer (or changes its rate); 0 stops it.  Each tick emits one event
 * with UPCALL_SOURCE_TIMER whose value is the number of ticks since the
 * module was loaded, so a subscriber sees consecutive values unless events
 * were dropped.  The rate may also be given at load time
 * (modprobe upcall_timer hz=100).
 *
 * The timer is HRTIMER_MODE_REL, not _HARD: its callback runs in hard
 * interrupt context on most kernels and in softirq context on PREEMPT_RT.
 * upcall_emit() takes only raw spinlocks, so either is fine.
 */
#include <linux/hrtimer.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/upcall.h>

/* The highest rate accepted: one tick every 10 us. */
#define UPCALL_TIMER_MAX_HZ	100000U

/* Serialises rate changes with each other and with init and exit. */
static DEFINE_MUTEX(upcall_timer_lock);
/* The timer exists: set by init, cleared by exit (under the lock). */
static bool upcall_timer_ready;
static unsigned int upcall_timer_hz;
static ktime_t upcall_timer_period;
/* Touched by the callback only, which never runs twice at once. */
static u64 upcall_timer_ticks;
static struct hrtimer upcall_timer;

static enum hrtimer_restart upcall_timer_fn(struct hrtimer *timer)
{
	upcall_emit(UPCALL_SOURCE_TIMER, ++upcall_timer_ticks);
	/* Skips the ticks it was late for rather than bunching them up. */
	hrtimer_forward_now(timer, upcall_timer_period);
	return HRTIMER_RESTART;
}

/* Called with upcall_timer_lock held, once the timer exists. */
static void upcall_timer_apply(void)
{
	hrtimer_cancel(&upcall_timer);
	if (!upcall_timer_hz)
		return;
	upcall_timer_period = ns_to_ktime(div_u64(NSEC_PER_SEC, upcall_timer_hz));
	hrtimer_start(&upcall_timer, upcall_timer_period, HRTIMER_MODE_REL);
}

static int upcall_timer_hz_set(const char *val, const struct kernel_param *kp)
{
	unsigned int hz;
	int ret;

	ret = kstrtouint(val, 0, &hz);
	if (ret)
		return ret;
	if (hz > UPCALL_TIMER_MAX_HZ)
		return -EINVAL;

	/*
	 * At load time this runs before upcall_timer_init(); through sysfs
	 * it may run while the module is still initialising or already
	 * exiting.  The lock and the ready flag cover all three.
	 */
	mutex_lock(&upcall_timer_lock);
	upcall_timer_hz = hz;
	if (upcall_timer_ready)
		upcall_timer_apply();
	mutex_unlock(&upcall_timer_lock);
	return 0;
}

static int upcall_timer_hz_get(char *buf, const struct kernel_param *kp)
{
	unsigned int hz;

	mutex_lock(&upcall_timer_lock);
	hz = upcall_timer_hz;
	mutex_unlock(&upcall_timer_lock);
	return scnprintf(buf, PAGE_SIZE, "%u\n", hz);
}

static const struct kernel_param_ops upcall_timer_hz_ops = {
	.set = upcall_timer_hz_set,
	.get = upcall_timer_hz_get,
};
module_param_cb(hz, &upcall_timer_hz_ops, NULL, 0644);
MODULE_PARM_DESC(hz,
		 "Rate in Hz of the periodic UPCALL_SOURCE_TIMER events; 0 (default) stops them, at most 100000");

static int __init upcall_timer_init(void)
{
	mutex_lock(&upcall_timer_lock);
	hrtimer_init(&upcall_timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL);
	upcall_timer.function = upcall_timer_fn;
	upcall_timer_ready = true;
	upcall_timer_apply();
	mutex_unlock(&upcall_timer_lock);
	return 0;
}

static void __exit upcall_timer_exit(void)
{
	mutex_lock(&upcall_timer_lock);
	upcall_timer_ready = false;
	hrtimer_cancel(&upcall_timer);
	mutex_unlock(&upcall_timer_lock);
}

module_init(upcall_timer_init);
module_exit(upcall_timer_exit);

MODULE_DESCRIPTION("upcall: a periodic hrtimer that emits upcall events");
MODULE_AUTHOR("The upcall developers");
MODULE_LICENSE("GPL");
MODULE_VERSION(UPCALL_VERSION);
