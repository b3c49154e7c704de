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
 *
 * Queue.  Every subscriber has a queue of events between emit and delivery,
 * UPCALL_QUEUE_DEFAULT long unless it asks for another size.  When an event
 * arrives at a full queue the oldest queued event is dropped and counted,
 * so the reader sees the loss as a gap in the sequence numbers and in the
 * dropped counter.  The QUEUE transport hands the queue itself to user
 * space: read(2) returns whole struct upcall_event records.
 */
#ifndef _UAPI_LINUX_UPCALL_H
#define _UAPI_LINUX_UPCALL_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Not listed in ioctl-number.rst; 0xB9 is unused by in-tree drivers. */
#define UPCALL_IOC_MAGIC	0xB9

/**
 * enum upcall_transport - how a subscriber receives its events
 * @UPCALL_TRANSPORT_NONE: not subscribed; events are not counted.  A
 *	SUBSCRIBE to NONE unsubscribes the file (see struct upcall_subscribe)
 * @UPCALL_TRANSPORT_SIGNAL: a real-time signal per event, laid out as
 *	SI_QUEUE so that signalfd(2) keeps the value (see "Signal layout")
 * @UPCALL_TRANSPORT_QUEUE: records read(2) from the file; poll(2) reports
 *	EPOLLIN while any is queued.  The file also notifies, if asked, by
 *	SIGIO (fcntl F_SETOWN, F_SETSIG, O_ASYNC) and by an eventfd
 *	(UPCALL_IOC_SET_EVENTFD); an event counts as delivered once read.
 *	SIGIO is edge-triggered: one is sent when records are queued and none
 *	was sent since the last read(2) (or since O_ASYNC was turned on), so
 *	after each SIGIO read until EAGAIN or records may wait unannounced
 * @UPCALL_TRANSPORT_NETLINK: one message per event on the generic netlink
 *	family %UPCALL_GENL_NAME, tagged with the subscriber's id
 *	(UPCALL_ATTR_SUBSCRIBER).  With %UPCALL_SUBSCRIBE_UNICAST it goes to
 *	the subscriber's own socket only, and counts as delivered once that
 *	socket took it; else to the multicast group %UPCALL_GENL_MCGRP_EVENTS,
 *	delivered once every listener took it, dropped if any listener's
 *	socket was full or none listens (see "Generic netlink")
 */
enum upcall_transport {
	UPCALL_TRANSPORT_NONE = 0,
	UPCALL_TRANSPORT_SIGNAL = 1,
	UPCALL_TRANSPORT_QUEUE = 2,
	UPCALL_TRANSPORT_NETLINK = 3,
};

/* Queue lengths, in events; a size that is not a power of two is rounded up. */
#define UPCALL_QUEUE_DEFAULT	1024
#define UPCALL_QUEUE_MIN	2
#define UPCALL_QUEUE_MAX	65536

/**
 * struct upcall_event - one event, as read(2) from a QUEUE subscriber
 * @seqno: the subscriber's sequence number for it, from 1; a gap means
 *	events were dropped (and counted) in between
 * @timestamp_ns: CLOCK_MONOTONIC when it was emitted
 * @value: the payload
 * @source: what emitted it (&enum upcall_source or another module's id)
 * @flags: zero
 * @reserved: zero
 *
 * read(2) returns whole records only: a buffer shorter than one record is
 * EINVAL, and a longer one gets as many records as fit and are queued.
 *
 * A file that is not a QUEUE subscriber (not yet subscribed, or subscribed
 * to SIGNAL or NETLINK) has no records to read: read(2) fails with EINVAL
 * and poll(2) reports EPOLLERR, at once.  A read(2) or poll(2) that waits
 * for records when another thread subscribes the file to another transport
 * is woken and gets the same answer.
 */
struct upcall_event {
	__aligned_u64 seqno;
	__aligned_u64 timestamp_ns;
	__aligned_u64 value;
	__u32 source;
	__u32 flags;
	__u32 reserved[4];
};

/*
 * SIGNAL only (EINVAL with another transport): direct the signal at the
 * subscribing thread instead of its process.
 */
#define UPCALL_SUBSCRIBE_THREAD		(1U << 0)
/* NETLINK: send to the socket @netlink_fd alone, not to the group. */
#define UPCALL_SUBSCRIBE_UNICAST	(1U << 1)
/* Only events of the sources @source_first to @source_last. */
#define UPCALL_SUBSCRIBE_SOURCES	(1U << 2)
#define UPCALL_SUBSCRIBE_FLAGS		(UPCALL_SUBSCRIBE_THREAD | \
					 UPCALL_SUBSCRIBE_UNICAST | \
					 UPCALL_SUBSCRIBE_SOURCES)

/**
 * struct upcall_subscribe - argument of UPCALL_IOC_SUBSCRIBE
 * @transport: one of &enum upcall_transport; NONE unsubscribes
 * @flags: UPCALL_SUBSCRIBE_* bits; unknown bits are rejected with EINVAL
 * @signo: for UPCALL_TRANSPORT_SIGNAL, the real-time signal to send, from
 *	the kernel's SIGRTMIN (32) to SIGRTMAX (64); note that glibc reserves
 *	the first two or three for itself; zero for other transports
 * @queue_size: the queue's length in events, from %UPCALL_QUEUE_MIN to
 *	%UPCALL_QUEUE_MAX; 0 for %UPCALL_QUEUE_DEFAULT.  EDQUOT if it would
 *	take the user who opened the file past the module's per-user memory
 *	cap (parameter max_user_mem_kb), which open(2) also applies
 * @netlink_fd: with %UPCALL_SUBSCRIBE_UNICAST (NETLINK only), the caller's
 *	bound NETLINK_GENERIC socket, in the initial network namespace, that
 *	receives this subscriber's events; else zero.  The module holds the
 *	socket until the next SUBSCRIBE or the file's close, so its port id
 *	cannot pass to another socket meanwhile.  EBADF or ENOTSOCK if it is
 *	not an open socket, EINVAL if it is another kind or not bound.
 * @source_first: with %UPCALL_SUBSCRIBE_SOURCES, the first source id the
 *	subscriber takes; else zero
 * @source_last: with %UPCALL_SUBSCRIBE_SOURCES, the last source id the
 *	subscriber takes, from @source_first to %UPCALL_SOURCE_MAX; else zero
 * @reserved: must be zero
 *
 * The subscriber is always the caller: the module records the calling
 * thread (UPCALL_SUBSCRIBE_THREAD) or the calling process as a counted
 * reference to its struct pid, never as a number, and drops it on close.
 * A second SUBSCRIBE on the same file replaces the first; the sequence
 * number and the counters carry on.  If it changes the queue's size, the
 * events still queued are dropped and counted.  On success the ioctl
 * returns 0 and the subscriber's id, which netlink messages carry, is
 * in UPCALL_IOC_STATS.
 *
 * Unsubscribe.  SUBSCRIBE with @transport NONE (every other field zero,
 * else EINVAL) ends the subscription and keeps the file: no event reaches
 * it any more, and none is counted for it; the events still queued are
 * dropped and counted; a read(2) or poll(2) waiting for records in another
 * thread is woken (read(2) fails with EINVAL, poll(2) reports EPOLLERR), so
 * a program can end a blocking read(2) before it closes the file.  The
 * counters and the sequence number stay, and a later SUBSCRIBE carries on
 * from them.  Modules that have this set %UPCALL_VERSION_UNSUBSCRIBE.
 *
 * Source filter.  With %UPCALL_SUBSCRIBE_SOURCES the subscriber takes the
 * events of the sources @source_first to @source_last only: the others
 * are not queued and not counted (no sequence number, no drop), so one
 * source's flood cannot push another's events out of this queue.  Without
 * it, every source's events.
 *
 * Process-directed signals are queued on one thread of the process: the
 * main thread while it runs, else (after it called pthread_exit()) the
 * first thread that is not exiting; the functions that queue a
 * payload-carrying signal on a whole thread group are not exported to
 * modules.  A signal that nobody can take (no live thread, or SIG_IGN and
 * not blocked) counts as dropped, never as delivered.
 */
struct upcall_subscribe {
	__u32 transport;
	__u32 flags;
	__u32 signo;
	__u32 queue_size;
	__s32 netlink_fd;
	__u32 source_first;
	__u32 source_last;
	__u32 reserved;
};

/* The largest source id; the signal layout has room for no more. */
#define UPCALL_SOURCE_MAX	0xffffU
/*
 * Source ids 1 to UPCALL_SOURCE_RESERVED_MAX are upcall's own: its
 * sources (&enum upcall_source) below 0x100, its sample and example
 * modules from 0x100.  User space (UPCALL_IOC_EMIT, UPCALL_CMD_EMIT) may
 * emit only as %UPCALL_SOURCE_USER or above that range, so no emitter can
 * pose as them; other kernel code takes its ids from above it too.
 */
#define UPCALL_SOURCE_RESERVED_MAX	0x1ffU

/**
 * enum upcall_source - well-known event sources
 * @UPCALL_SOURCE_USER: UPCALL_IOC_EMIT from user space (the default)
 * @UPCALL_SOURCE_TIMER: the module's periodic hrtimer, started by writing
 *	a rate to /sys/module/upcall/parameters/timer_hz; the value counts
 *	its ticks, one more for each event
 * @UPCALL_SOURCE_EDU: the interrupt handler of QEMU's edu PCI device; the
 *	value is the device's interrupt status register (the bits written
 *	to its raise register, or 1 when a factorial computation finished)
 *
 * Other kernel code passes its own id, above %UPCALL_SOURCE_RESERVED_MAX
 * and up to %UPCALL_SOURCE_MAX, to upcall_emit().
 */
enum upcall_source {
	UPCALL_SOURCE_USER = 0,
	UPCALL_SOURCE_TIMER = 1,
	UPCALL_SOURCE_EDU = 2,
};

/**
 * struct upcall_emit - argument of UPCALL_IOC_EMIT
 * @value: the payload delivered to every subscriber
 * @source: the source id reported with the event: %UPCALL_SOURCE_USER, or
 *	above %UPCALL_SOURCE_RESERVED_MAX and at most %UPCALL_SOURCE_MAX;
 *	EINVAL for another
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
 * @delivered: events the transport handed over: a signal queued, a record
 *	read, a netlink message taken by its listeners
 * @dropped: events lost: the queue was full, the kernel refused to queue
 *	the signal (RLIMIT_SIGPENDING), a netlink listener had no room, or
 *	the receiver was gone
 * @seqno: the last sequence number given out; the first event is 1
 * @pending: events accepted but not yet delivered or dropped;
 *	emitted == delivered + dropped + pending at every instant
 * @transport: the current &enum upcall_transport
 * @signo: the signal of a signal subscription, else 0
 * @id: the subscriber's id, unique while the module is loaded
 * @queue_size: the queue's length in events; 0 before the first SUBSCRIBE, which
 *	allocates it
 * @queued: events in the queue now
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
	__aligned_u64 id;
	__u32 queue_size;
	__u32 queued;
	__aligned_u64 reserved[2];
};

/**
 * struct upcall_eventfd - argument of UPCALL_IOC_SET_EVENTFD
 * @fd: an eventfd(2) to add 1 to whenever events are queued, or -1 to stop
 * @flags: must be zero
 * @reserved: must be zero
 *
 * The module holds the eventfd until it is replaced, or the file closed.
 * The counter says that the queue has events, not how many: read the
 * records from the file.  EBADF if @fd is not open, EINVAL if it is not an
 * eventfd.
 */
struct upcall_eventfd {
	__s32 fd;
	__u32 flags;
	__u32 reserved[2];
};

/*
 * The ABI's version: raised when a change would make a caller written for
 * the previous one wrong.  Additions that old callers cannot see (a new
 * flag, a new ioctl) leave it as it is.
 */
#define UPCALL_ABI_VERSION	1

/**
 * struct upcall_version - argument of UPCALL_IOC_VERSION, filled by the module
 * @abi: the module's %UPCALL_ABI_VERSION
 * @flags: the additions to that version the module has, UPCALL_VERSION_*
 * @module: the module's version (as modinfo shows it), NUL-terminated
 * @reserved: zero
 *
 * Any open file may ask, whatever its mode.  A module without this ioctl
 * (ENOTTY) predates ABI version 1.
 */
struct upcall_version {
	__u32 abi;
	__u32 flags;
	char module[32];
	__u32 reserved[6];
};

/* UPCALL_IOC_SUBSCRIBE takes UPCALL_TRANSPORT_NONE: unsubscribe. */
#define UPCALL_VERSION_UNSUBSCRIBE	(1U << 0)

#define UPCALL_IOC_SUBSCRIBE	_IOW(UPCALL_IOC_MAGIC, 0x10, struct upcall_subscribe)
#define UPCALL_IOC_EMIT		_IOW(UPCALL_IOC_MAGIC, 0x20, struct upcall_emit)
#define UPCALL_IOC_STATS	_IOR(UPCALL_IOC_MAGIC, 0x30, struct upcall_stats)
#define UPCALL_IOC_SET_EVENTFD	_IOW(UPCALL_IOC_MAGIC, 0x40, struct upcall_eventfd)
#define UPCALL_IOC_VERSION	_IOR(UPCALL_IOC_MAGIC, 0x50, struct upcall_version)

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
 *
 * A 32-bit process on a 64-bit kernel gets the same signal, but its
 * siginfo_t (an SA_SIGINFO handler, sigwaitinfo(2)) has room for 32 bits
 * of si_ptr: the high half of the value is lost there.  signalfd(2) has
 * the same 64-bit ssi_ptr for every caller and keeps all of it.
 */
#define UPCALL_SI_CODE_BASE	(-0x10000)
#define UPCALL_SI_CODE(source)	(UPCALL_SI_CODE_BASE - (int)(source))

/*
 * Generic netlink.  The family %UPCALL_GENL_NAME lives in the initial
 * network namespace.  Each event of a NETLINK subscriber is one
 * UPCALL_CMD_EVENT message with the attributes SUBSCRIBER, SEQNO,
 * TIMESTAMP, VALUE and SOURCE, sent from a workqueue (never from the
 * emitter's context).
 *
 * Unicast (UPCALL_SUBSCRIBE_UNICAST): the messages go to the subscriber's
 * socket alone, without blocking.  A message that finds the socket's
 * receive buffer full is dropped and counted for that subscriber only, and
 * the socket reports ENOBUFS on its next receive; other subscribers lose
 * nothing by it.
 *
 * Multicast: the messages go to the group %UPCALL_GENL_MCGRP_EVENTS
 * (joining it needs CAP_NET_ADMIN); every listener gets every multicast
 * subscriber's events and keeps those whose SUBSCRIBER is its own.  The
 * group reports one result per message, so an event counts as dropped
 * when any listener had no room (ask for NETLINK_BROADCAST_ERROR to be
 * told) or nobody listens, even if its own subscriber got it.
 *
 * UPCALL_CMD_EMIT (VALUE, and optionally SOURCE) emits like UPCALL_IOC_EMIT
 * and needs CAP_NET_ADMIN.
 */
#define UPCALL_GENL_NAME		"upcall"
#define UPCALL_GENL_VERSION		1
#define UPCALL_GENL_MCGRP_EVENTS	"events"

/**
 * enum upcall_genl_cmd - the commands of the generic netlink family
 * @UPCALL_CMD_UNSPEC: unused
 * @UPCALL_CMD_EVENT: one event of a NETLINK subscriber, from the kernel:
 *	SUBSCRIBER, SEQNO, TIMESTAMP, VALUE and SOURCE
 * @UPCALL_CMD_EMIT: emit an event, as UPCALL_IOC_EMIT does: VALUE
 *	(required) and SOURCE (optional, %UPCALL_SOURCE_USER by default);
 *	needs CAP_NET_ADMIN
 * @__UPCALL_CMD_MAX: the number of commands
 */
enum upcall_genl_cmd {
	UPCALL_CMD_UNSPEC,
	UPCALL_CMD_EVENT,
	UPCALL_CMD_EMIT,
	__UPCALL_CMD_MAX,
};

#define UPCALL_CMD_MAX	(__UPCALL_CMD_MAX - 1)

/**
 * enum upcall_genl_attr - the attributes of the generic netlink family
 * @UPCALL_ATTR_UNSPEC: unused
 * @UPCALL_ATTR_PAD: padding for the 64-bit attributes
 * @UPCALL_ATTR_SUBSCRIBER: u64, the subscriber's id (as in
 *	&struct upcall_stats)
 * @UPCALL_ATTR_SEQNO: u64, the subscriber's sequence number for the event
 * @UPCALL_ATTR_TIMESTAMP: u64, CLOCK_MONOTONIC when it was emitted, in ns
 * @UPCALL_ATTR_VALUE: u64, the payload
 * @UPCALL_ATTR_SOURCE: u32, what emitted it; at most %UPCALL_SOURCE_MAX
 * @__UPCALL_ATTR_MAX: the number of attributes
 *
 * Documentation/netlink/specs/upcall.yaml describes the family in the
 * kernel's YNL format.
 */
enum upcall_genl_attr {
	UPCALL_ATTR_UNSPEC,
	UPCALL_ATTR_PAD,
	UPCALL_ATTR_SUBSCRIBER,
	UPCALL_ATTR_SEQNO,
	UPCALL_ATTR_TIMESTAMP,
	UPCALL_ATTR_VALUE,
	UPCALL_ATTR_SOURCE,
	__UPCALL_ATTR_MAX,
};

#define UPCALL_ATTR_MAX	(__UPCALL_ATTR_MAX - 1)

#endif /* _UAPI_LINUX_UPCALL_H */
