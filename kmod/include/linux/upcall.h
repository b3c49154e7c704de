/* SPDX-License-Identifier: GPL-2.0 */
/*
 * upcall: the in-kernel interface, for modules that tell user space
 * that something happened, with a value.
 */
#ifndef _LINUX_UPCALL_H
#define _LINUX_UPCALL_H

#include <linux/types.h>
#include <uapi/linux/upcall.h>

/**
 * upcall_emit() - send an event to every subscriber of /dev/upcall
 * @source: what emitted it: an id above %UPCALL_SOURCE_RESERVED_MAX and at
 *	most %UPCALL_SOURCE_MAX (ids up to %UPCALL_SOURCE_RESERVED_MAX are
 *	upcall's own sources and samples)
 * @value: the payload
 *
 * Context: any context but NMI, hard interrupt and raw spinlock sections
 * included.  Never sleeps and never waits for a subscriber: the event is
 * stamped and queued per subscriber, and each transport delivers it from
 * irq_work (hard interrupt context on most kernels, a kernel thread on
 * PREEMPT_RT).  Takes time proportional to the number of subscribers.
 *
 * Return: the number of subscribers the event was queued for (0 when
 * nobody listens), or -EINVAL if @source is out of range.  An event that
 * a subscriber's queue has no room for displaces its oldest pending event,
 * which is counted as dropped for that subscriber.
 */
int upcall_emit(u32 source, u64 value);

#endif /* _LINUX_UPCALL_H */
