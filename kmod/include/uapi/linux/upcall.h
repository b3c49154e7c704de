/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * upcall: kernel events delivered to user space, with a value.
 *
 * This header is the ABI between the upcall module and user space, and the
 * one source of truth for it: the Python package mirrors it and a test fails
 * if the two drift apart.
 *
 * Each open file of /dev/upcall is one subscriber.  A subscriber chooses how
 * events reach it with UPCALL_IOC_SUBSCRIBE; every event emitted after that
 * is given the subscriber's next sequence number and is either delivered or
 * counted as dropped (UPCALL_IOC_STATS): loss is never silent.
 */
#ifndef _UAPI_LINUX_UPCALL_H
#define _UAPI_LINUX_UPCALL_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Not listed in ioctl-number.rst; 0xB9 is unused by in-tree drivers. */
#define UPCALL_IOC_MAGIC	0xB9

/**
 * enum upcall_transport - how a subscriber receives its events
 * @UPCALL_TRANSPORT_NONE: not subscribed; events are not counted
 * @UPCALL_TRANSPORT_SIGNAL: a real-time signal per event, laid out as
 *	SI_QUEUE so that signalfd(2) keeps the value (see "Signal layout")
 */
enum upcall_transport {
	UPCALL_TRANSPORT_NONE = 0,
	UPCALL_TRANSPORT_SIGNAL = 1,
};

/* Direct the signal at the subscribing thread instead of its process. */
#define UPCALL_SUBSCRIBE_THREAD		(1U << 0)
#define UPCALL_SUBSCRIBE_FLAGS		(UPCALL_SUBSCRIBE_THREAD)

/**
 * struct upcall_subscribe - argument of UPCALL_IOC_SUBSCRIBE
 * @transport: one of &enum upcall_transport, not NONE
 * @flags: UPCALL_SUBSCRIBE_* bits; unknown bits are rejected with EINVAL
 * @signo: for UPCALL_TRANSPORT_SIGNAL, the real-time signal to send, from
 *	the kernel's SIGRTMIN (32) to SIGRTMAX (64); note that glibc reserves
 *	the first two or three for itself
 * @padding: must be zero
 * @reserved: must be zero
 *
 * The subscriber is always the caller: the module records the calling
 * thread (UPCALL_SUBSCRIBE_THREAD) or the calling process as a counted
 * reference to its struct pid, never as a number, and drops it on close.
 * A second SUBSCRIBE on the same file replaces the first; the sequence
 * number and the counters carry on.
 *
 * Process-directed signals are queued on the thread group leader (the main
 * thread): the functions that queue a payload-carrying signal on a whole
 * thread group are not exported to modules.
 */
struct upcall_subscribe {
	__u32 transport;
	__u32 flags;
	__u32 signo;
	__u32 padding;
	__u32 reserved[4];
};

/* The largest source id; the signal layout has room for no more. */
#define UPCALL_SOURCE_MAX	0xffffU

/**
 * enum upcall_source - well-known event sources
 * @UPCALL_SOURCE_USER: UPCALL_IOC_EMIT from user space (the default)
 *
 * Other kernel code passes its own id, up to %UPCALL_SOURCE_MAX, to
 * upcall_emit(); ids below 0x100 are reserved for upcall itself.
 */
enum upcall_source {
	UPCALL_SOURCE_USER = 0,
};

/**
 * struct upcall_emit - argument of UPCALL_IOC_EMIT
 * @value: the payload delivered to every subscriber
 * @source: the source id reported with the event, at most
 *	%UPCALL_SOURCE_MAX
 * @flags: must be zero
 * @reserved: must be zero
 *
 * On success the ioctl returns the number of subscribers the event was
 * queued for (which may be 0).
 */
struct upcall_emit {
	__aligned_u64 value;
	__u32 source;
	__u32 flags;
	__u32 reserved[4];
};

/**
 * struct upcall_stats - argument of UPCALL_IOC_STATS, filled by the module
 * @emitted: events given a sequence number for this subscriber
 * @delivered: events handed to the transport (a signal queued)
 * @dropped: events lost: the internal queue was full, the kernel refused
 *	to queue the signal (RLIMIT_SIGPENDING) or the receiver was gone
 * @seqno: the last sequence number given out; the first event is 1
 * @pending: events accepted but not yet delivered or dropped;
 *	emitted == delivered + dropped + pending at every instant
 * @transport: the current &enum upcall_transport
 * @signo: the signal of a signal subscription, else 0
 * @reserved: zero
 */
struct upcall_stats {
	__aligned_u64 emitted;
	__aligned_u64 delivered;
	__aligned_u64 dropped;
	__aligned_u64 seqno;
	__aligned_u64 pending;
	__u32 transport;
	__u32 signo;
	__aligned_u64 reserved[4];
};

#define UPCALL_IOC_SUBSCRIBE	_IOW(UPCALL_IOC_MAGIC, 0x10, struct upcall_subscribe)
#define UPCALL_IOC_EMIT		_IOW(UPCALL_IOC_MAGIC, 0x20, struct upcall_emit)
#define UPCALL_IOC_STATS	_IOR(UPCALL_IOC_MAGIC, 0x30, struct upcall_stats)

/*
 * Signal layout.  Each event is one signal whose siginfo carries:
 *
 *	si_signo	the subscribed signal
 *	si_code		UPCALL_SI_CODE(source): negative, so that the kernel
 *			and signalfd treat it as SI_QUEUE-style and keep the
 *			value; it also tells upcall's signals from kill(2)'s
 *	si_errno	the low 32 bits of the event's sequence number
 *	si_ptr		the 64-bit value (si_int is its low 32 bits)
 *
 * si_pid and si_uid are not used: the kernel rewrites them when the
 * receiver is in another pid or user namespace.
 */
#define UPCALL_SI_CODE_BASE	(-0x10000)
#define UPCALL_SI_CODE(source)	(UPCALL_SI_CODE_BASE - (int)(source))

#endif /* _UAPI_LINUX_UPCALL_H */
