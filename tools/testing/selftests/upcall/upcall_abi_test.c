// SPDX-License-Identifier: GPL-2.0
/*
 * The /dev/upcall ABI (include/uapi/linux/upcall.h) from plain C, with the
 * kernel's own kselftest harness: open and close, the argument checks of
 * SUBSCRIBE, EMIT and read(2) of a queue record, the strict read sizes,
 * the signal layout, the STATS counters, the eventfd announcement and
 * unsubscribing, which wakes a read(2) or poll(2) blocked in another thread.
 *
 * Needs upcall.ko loaded and the right to open /dev/upcall read-write
 * (root, with the default mode 0600); skips otherwise.  Every test runs in
 * its own process, as the harness forks one per test.  Other subscribers
 * may exist while it runs: the tests count only their own files' events.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/upcall.h>

#include "kselftest_harness.h"

#define UPCALL_DEV	"/dev/upcall"
/* A real-time signal glibc does not keep for itself. */
#define TEST_SIGNO	40
#define WAIT_MS		10000	/* the guest may be emulated: be generous */

static int open_dev(struct __test_metadata *_metadata, int flags)
{
	int fd = open(UPCALL_DEV, flags | O_CLOEXEC);

	if (fd < 0 && (errno == ENOENT || errno == EACCES))
		SKIP(return -1, UPCALL_DEV ": %s (module not loaded, or not root)",
		     strerror(errno));
	ASSERT_LE(0, fd) TH_LOG("open " UPCALL_DEV ": %s", strerror(errno));
	return fd;
}

/* ioctl(2)'s errno, or 0 if it succeeded. */
static int ioctl_errno(int fd, unsigned long request, void *arg)
{
	return ioctl(fd, request, arg) < 0 ? errno : 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static int emit(int fd, uint64_t value, uint32_t source)
{
	struct upcall_emit req = { .value = value, .source = source };

	return ioctl(fd, UPCALL_IOC_EMIT, &req);
}

/* SUBSCRIBE to UPCALL_TRANSPORT_NONE: ioctl(2)'s errno, or 0. */
static int unsubscribe(int fd)
{
	struct upcall_subscribe req = { .transport = UPCALL_TRANSPORT_NONE };

	return ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, &req);
}

TEST(open_close)
{
	struct upcall_stats st, st2;
	struct stat sb;
	int fd, fd2;

	fd = open_dev(_metadata, O_RDWR);
	if (fd < 0)
		return;
	ASSERT_EQ(0, fstat(fd, &sb));
	EXPECT_TRUE(S_ISCHR(sb.st_mode));

	/* A fresh file is a subscriber of nothing, with its own id, no queue. */
	memset(&st, 0xff, sizeof(st));
	ASSERT_EQ(0, ioctl(fd, UPCALL_IOC_STATS, &st));
	EXPECT_EQ((__u32)UPCALL_TRANSPORT_NONE, st.transport);
	EXPECT_EQ(0ULL, st.emitted);
	EXPECT_EQ(0ULL, st.seqno);
	EXPECT_EQ(0U, st.signo);
	EXPECT_EQ(0U, st.queue_size);
	EXPECT_EQ(0U, st.queued);
	EXPECT_EQ(0ULL, st.reserved[0]);
	EXPECT_EQ(0ULL, st.reserved[1]);
	EXPECT_NE(0ULL, st.id);

	fd2 = open_dev(_metadata, O_RDONLY);
	ASSERT_LE(0, fd2);
	ASSERT_EQ(0, ioctl(fd2, UPCALL_IOC_STATS, &st2));
	EXPECT_NE(st.id, st2.id);
	EXPECT_EQ(0, close(fd2));
	EXPECT_EQ(0, close(fd));
}

TEST(subscribe_validation)
{
	static const uint32_t bad_transports[] = {
		UPCALL_TRANSPORT_NETLINK + 1, 0xffffffff,
	};
	static const uint32_t bad_flags[] = {
		1U << 3, 1U << 31, UPCALL_SUBSCRIBE_UNICAST,	/* not NETLINK */
	};
	static const uint32_t bad_sizes[] = {
		1, UPCALL_QUEUE_MAX + 1, 0xffffffff,
	};
	struct upcall_subscribe req;
	struct upcall_stats st;
	unsigned int i;
	int fd;

	fd = open_dev(_metadata, O_RDWR);
	if (fd < 0)
		return;

	for (i = 0; i < ARRAY_SIZE(bad_transports); i++) {
		memset(&req, 0, sizeof(req));
		req.transport = bad_transports[i];
		EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, &req))
			TH_LOG("transport %u", req.transport);
	}
	for (i = 0; i < ARRAY_SIZE(bad_flags); i++) {
		memset(&req, 0, sizeof(req));
		req.transport = UPCALL_TRANSPORT_QUEUE;
		req.flags = bad_flags[i];
		EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, &req))
			TH_LOG("flags %#x", req.flags);
	}
	memset(&req, 0, sizeof(req));
	req.transport = UPCALL_TRANSPORT_QUEUE;
	req.reserved = 1;
	EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, &req));
	/* A source range: only with its flag, first <= last <= the largest id. */
	memset(&req, 0, sizeof(req));
	req.transport = UPCALL_TRANSPORT_QUEUE;
	req.source_last = 5;
	EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, &req));
	req.flags = UPCALL_SUBSCRIBE_SOURCES;
	req.source_first = 6;
	EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, &req));
	req.source_first = 0;
	req.source_last = UPCALL_SOURCE_MAX + 1;
	EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, &req));
	for (i = 0; i < ARRAY_SIZE(bad_sizes); i++) {
		memset(&req, 0, sizeof(req));
		req.transport = UPCALL_TRANSPORT_QUEUE;
		req.queue_size = bad_sizes[i];
		EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, &req))
			TH_LOG("queue_size %u", req.queue_size);
	}
	/* Not a real-time signal; a signal number for another transport. */
	memset(&req, 0, sizeof(req));
	req.transport = UPCALL_TRANSPORT_SIGNAL;
	req.signo = SIGUSR1;
	EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, &req));
	req.signo = 65;
	EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, &req));
	req.transport = UPCALL_TRANSPORT_QUEUE;
	req.signo = TEST_SIGNO;
	EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, &req));
	/* Unsubscribe takes nothing but the transport. */
	req.transport = UPCALL_TRANSPORT_NONE;
	EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, &req));
	memset(&req, 0, sizeof(req));
	req.queue_size = 4;
	EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, &req));
	for (i = 0; i < 3; i++) {
		memset(&req, 0, sizeof(req));
		req.flags = 1U << i;
		EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, &req))
			TH_LOG("NONE with flags %#x", req.flags);
	}
	memset(&req, 0, sizeof(req));
	req.flags = UPCALL_SUBSCRIBE_SOURCES;
	req.source_last = 5;
	EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, &req));
	memset(&req, 0, sizeof(req));
	req.netlink_fd = 1;
	EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, &req));

	/* None of that subscribed the file. */
	ASSERT_EQ(0, ioctl(fd, UPCALL_IOC_STATS, &st));
	EXPECT_EQ((__u32)UPCALL_TRANSPORT_NONE, st.transport);

	/* Unsubscribing a file that never subscribed changes nothing. */
	EXPECT_EQ(0, unsubscribe(fd));
	ASSERT_EQ(0, ioctl(fd, UPCALL_IOC_STATS, &st));
	EXPECT_EQ((__u32)UPCALL_TRANSPORT_NONE, st.transport);
	EXPECT_EQ(0U, st.queue_size);
	EXPECT_EQ(0ULL, st.emitted);
	EXPECT_EQ(0ULL, st.dropped);

	/* A size that is not a power of two is rounded up. */
	memset(&req, 0, sizeof(req));
	req.transport = UPCALL_TRANSPORT_QUEUE;
	req.queue_size = 3;
	ASSERT_EQ(0, ioctl(fd, UPCALL_IOC_SUBSCRIBE, &req));
	ASSERT_EQ(0, ioctl(fd, UPCALL_IOC_STATS, &st));
	EXPECT_EQ((__u32)UPCALL_TRANSPORT_QUEUE, st.transport);
	EXPECT_EQ(4U, st.queue_size);
	close(fd);
}

TEST(bad_pointers_and_requests)
{
	struct upcall_subscribe req = { .transport = UPCALL_TRANSPORT_QUEUE };
	void *unmapped;
	int fd;

	fd = open_dev(_metadata, O_RDWR);
	if (fd < 0)
		return;
	unmapped = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, unmapped);
	ASSERT_EQ(0, munmap(unmapped, 4096));

	EXPECT_EQ(EFAULT, ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, NULL));
	EXPECT_EQ(EFAULT, ioctl_errno(fd, UPCALL_IOC_SUBSCRIBE, unmapped));
	EXPECT_EQ(EFAULT, ioctl_errno(fd, UPCALL_IOC_EMIT, unmapped));
	EXPECT_EQ(EFAULT, ioctl_errno(fd, UPCALL_IOC_STATS, NULL));
	EXPECT_EQ(EFAULT, ioctl_errno(fd, UPCALL_IOC_SET_EVENTFD, unmapped));

	/* Unknown numbers, and a known number with another size. */
	EXPECT_EQ(ENOTTY, ioctl_errno(fd, _IO(UPCALL_IOC_MAGIC, 0x7f), NULL));
	EXPECT_EQ(ENOTTY, ioctl_errno(fd, _IOW(UPCALL_IOC_MAGIC, 0x10, __u32), &req));
	EXPECT_EQ(ENOTTY, ioctl_errno(fd, _IOW('x', 0x10, struct upcall_subscribe), &req));
	close(fd);
}

TEST(emit_validation)
{
	struct upcall_emit req;
	int fd, ro;

	fd = open_dev(_metadata, O_RDWR);
	if (fd < 0)
		return;
	memset(&req, 0, sizeof(req));
	req.source = UPCALL_SOURCE_MAX + 1;
	EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_EMIT, &req));
	/* upcall's own source ids are not for user space. */
	req.source = UPCALL_SOURCE_EDU;
	EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_EMIT, &req));
	req.source = UPCALL_SOURCE_RESERVED_MAX;
	EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_EMIT, &req));
	memset(&req, 0, sizeof(req));
	req.flags = 1;
	EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_EMIT, &req));
	memset(&req, 0, sizeof(req));
	req.reserved[3] = 1;
	EXPECT_EQ(EINVAL, ioctl_errno(fd, UPCALL_IOC_EMIT, &req));

	/* Emitting needs the file open for writing. */
	ro = open_dev(_metadata, O_RDONLY);
	ASSERT_LE(0, ro);
	memset(&req, 0, sizeof(req));
	EXPECT_EQ(EBADF, ioctl_errno(ro, UPCALL_IOC_EMIT, &req));
	close(ro);
	close(fd);
}

TEST(version)
{
	struct upcall_version v;
	int fd;

	fd = open_dev(_metadata, O_RDONLY);
	if (fd < 0)
		return;
	memset(&v, 0xff, sizeof(v));
	ASSERT_EQ(0, ioctl(fd, UPCALL_IOC_VERSION, &v));
	EXPECT_EQ((__u32)UPCALL_ABI_VERSION, v.abi);
	/* The additions to ABI 1 this module has: all that this header knows. */
	EXPECT_TRUE(v.flags & UPCALL_VERSION_UNSUBSCRIBE);
	EXPECT_EQ((__u32)UPCALL_VERSION_UNSUBSCRIBE, v.flags);
	EXPECT_NE(NULL, memchr(v.module, '\0', sizeof(v.module)));
	EXPECT_NE('\0', v.module[0]);
	EXPECT_EQ(EFAULT, ioctl_errno(fd, UPCALL_IOC_VERSION, NULL));
	close(fd);
}

/* A QUEUE subscriber of @queue_size events, non-blocking. */
FIXTURE(queue) {
	int fd;
};

FIXTURE_SETUP(queue)
{
	struct upcall_subscribe req = {
		.transport = UPCALL_TRANSPORT_QUEUE,
		.queue_size = 4,
	};

	self->fd = open_dev(_metadata, O_RDWR | O_NONBLOCK);
	if (self->fd < 0)
		return;
	ASSERT_EQ(0, ioctl(self->fd, UPCALL_IOC_SUBSCRIBE, &req));
}

FIXTURE_TEARDOWN(queue)
{
	if (self->fd >= 0)
		close(self->fd);
}

TEST_F(queue, emit_and_read)
{
	struct upcall_event ev[2];
	uint64_t before, after;
	unsigned int i;

	if (self->fd < 0)
		return;
	before = now_ns();
	ASSERT_LE(1, emit(self->fd, 0x8000000000000001ULL, 0x1234));
	after = now_ns();
	ASSERT_LE(1, emit(self->fd, 7, UPCALL_SOURCE_USER));

	ASSERT_EQ((ssize_t)sizeof(ev), read(self->fd, ev, sizeof(ev)));
	EXPECT_EQ(1ULL, ev[0].seqno);
	EXPECT_EQ((__u64)0x8000000000000001ULL, ev[0].value);
	EXPECT_EQ(0x1234U, ev[0].source);
	EXPECT_LE((__u64)before, ev[0].timestamp_ns);
	EXPECT_GE((__u64)after, ev[0].timestamp_ns);
	EXPECT_EQ(2ULL, ev[1].seqno);
	EXPECT_EQ(7ULL, ev[1].value);
	EXPECT_EQ((__u32)UPCALL_SOURCE_USER, ev[1].source);
	EXPECT_LE(ev[0].timestamp_ns, ev[1].timestamp_ns);
	EXPECT_GE(now_ns(), ev[1].timestamp_ns);
	for (i = 0; i < ARRAY_SIZE(ev); i++) {
		EXPECT_EQ(0U, ev[i].flags);
		EXPECT_EQ(0U, ev[i].reserved[0] | ev[i].reserved[1] |
			     ev[i].reserved[2] | ev[i].reserved[3]);
	}
}

TEST_F(queue, short_read)
{
	unsigned char buf[sizeof(struct upcall_event) + 8];
	struct upcall_event ev;

	if (self->fd < 0)
		return;
	ASSERT_LE(1, emit(self->fd, 42, 0));

	/* Shorter than a record: EINVAL, and the record stays queued. */
	EXPECT_EQ(-1, read(self->fd, buf, sizeof(ev) - 1));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, read(self->fd, buf, 0));
	EXPECT_EQ(EINVAL, errno);

	/* Longer: whole records only. */
	EXPECT_EQ((ssize_t)sizeof(ev), read(self->fd, buf, sizeof(buf)));
	memcpy(&ev, buf, sizeof(ev));
	EXPECT_EQ(1ULL, ev.seqno);
	EXPECT_EQ(42ULL, ev.value);
}

TEST_F(queue, nonblocking_empty)
{
	struct upcall_event ev;
	struct pollfd p;

	if (self->fd < 0)
		return;
	p.fd = self->fd;
	p.events = POLLIN;
	EXPECT_EQ(0, poll(&p, 1, 0));
	EXPECT_EQ(-1, read(self->fd, &ev, sizeof(ev)));
	EXPECT_EQ(EAGAIN, errno);

	ASSERT_LE(1, emit(self->fd, 1, 0));
	EXPECT_EQ(1, poll(&p, 1, 0));
	EXPECT_TRUE(p.revents & POLLIN);
	EXPECT_EQ((ssize_t)sizeof(ev), read(self->fd, &ev, sizeof(ev)));
	EXPECT_EQ(-1, read(self->fd, &ev, sizeof(ev)));
	EXPECT_EQ(EAGAIN, errno);
}

TEST_F(queue, stats_accounting)
{
	struct upcall_event ev[8];
	struct upcall_stats st;
	unsigned int i;
	ssize_t n;

	if (self->fd < 0)
		return;
	/* Six events into a queue of four: the two oldest are dropped. */
	for (i = 1; i <= 6; i++)
		ASSERT_LE(1, emit(self->fd, 100 + i, 0));

	ASSERT_EQ(0, ioctl(self->fd, UPCALL_IOC_STATS, &st));
	EXPECT_EQ((__u32)UPCALL_TRANSPORT_QUEUE, st.transport);
	EXPECT_EQ(4U, st.queue_size);
	EXPECT_EQ(6ULL, st.emitted);
	EXPECT_EQ(6ULL, st.seqno);
	EXPECT_EQ(0ULL, st.delivered);
	EXPECT_EQ(2ULL, st.dropped);
	EXPECT_EQ(4U, st.queued);
	EXPECT_EQ(4ULL, st.pending);

	n = read(self->fd, ev, sizeof(ev));
	ASSERT_EQ((ssize_t)(4 * sizeof(ev[0])), n);
	for (i = 0; i < 4; i++) {
		EXPECT_EQ(3 + i, ev[i].seqno);
		EXPECT_EQ(103 + i, ev[i].value);
	}

	ASSERT_EQ(0, ioctl(self->fd, UPCALL_IOC_STATS, &st));
	EXPECT_EQ(6ULL, st.emitted);
	EXPECT_EQ(4ULL, st.delivered);
	EXPECT_EQ(2ULL, st.dropped);
	EXPECT_EQ(0U, st.queued);
	EXPECT_EQ(0ULL, st.pending);
}

TEST_F(queue, eventfd_announce)
{
	struct upcall_eventfd req = { .fd = -1 };
	struct upcall_event ev;
	uint64_t count = 0;
	struct pollfd p;
	int efd;

	if (self->fd < 0)
		return;
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ASSERT_LE(0, efd);

	/* Not an eventfd; not open. */
	req.fd = self->fd;
	EXPECT_EQ(EINVAL, ioctl_errno(self->fd, UPCALL_IOC_SET_EVENTFD, &req));
	req.fd = 1000;
	EXPECT_EQ(EBADF, ioctl_errno(self->fd, UPCALL_IOC_SET_EVENTFD, &req));
	req.fd = efd;
	req.flags = 1;
	EXPECT_EQ(EINVAL, ioctl_errno(self->fd, UPCALL_IOC_SET_EVENTFD, &req));

	req.flags = 0;
	ASSERT_EQ(0, ioctl(self->fd, UPCALL_IOC_SET_EVENTFD, &req));
	EXPECT_EQ(-1, read(efd, &count, sizeof(count)));
	EXPECT_EQ(EAGAIN, errno);

	ASSERT_LE(1, emit(self->fd, 0xabc, 0));
	p.fd = efd;
	p.events = POLLIN;
	ASSERT_EQ(1, poll(&p, 1, WAIT_MS));
	ASSERT_EQ((ssize_t)sizeof(count), read(efd, &count, sizeof(count)));
	EXPECT_LE(1ULL, count);

	/* The counter says that there are events; the file has them. */
	ASSERT_EQ((ssize_t)sizeof(ev), read(self->fd, &ev, sizeof(ev)));
	EXPECT_EQ(1ULL, ev.seqno);
	EXPECT_EQ(0xabcULL, ev.value);

	req.fd = -1;
	EXPECT_EQ(0, ioctl(self->fd, UPCALL_IOC_SET_EVENTFD, &req));
	close(efd);
}

TEST_F(queue, unsubscribe)
{
	struct upcall_subscribe req = {
		.transport = UPCALL_TRANSPORT_QUEUE,
		.queue_size = 4,
	};
	struct upcall_event ev;
	struct upcall_stats st;
	struct pollfd p;
	unsigned int i;

	if (self->fd < 0)
		return;
	for (i = 1; i <= 3; i++)
		ASSERT_LE(1, emit(self->fd, 200 + i, 0));
	ASSERT_EQ((ssize_t)sizeof(ev), read(self->fd, &ev, sizeof(ev)));
	EXPECT_EQ(1ULL, ev.seqno);

	/* The two still queued are dropped and counted. */
	ASSERT_EQ(0, unsubscribe(self->fd));
	memset(&st, 0xff, sizeof(st));
	ASSERT_EQ(0, ioctl(self->fd, UPCALL_IOC_STATS, &st));
	EXPECT_EQ((__u32)UPCALL_TRANSPORT_NONE, st.transport);
	EXPECT_EQ(0U, st.signo);
	EXPECT_EQ(4U, st.queue_size);
	EXPECT_EQ(0U, st.queued);
	EXPECT_EQ(3ULL, st.emitted);
	EXPECT_EQ(3ULL, st.seqno);
	EXPECT_EQ(1ULL, st.delivered);
	EXPECT_EQ(2ULL, st.dropped);
	EXPECT_EQ(0ULL, st.pending);

	/* Events no longer reach the file, nor are they counted for it. */
	ASSERT_LE(0, emit(self->fd, 204, 0));
	ASSERT_EQ(0, ioctl(self->fd, UPCALL_IOC_STATS, &st));
	EXPECT_EQ(3ULL, st.emitted);
	EXPECT_EQ(3ULL, st.seqno);
	EXPECT_EQ(2ULL, st.dropped);
	EXPECT_EQ(0U, st.queued);

	/* read(2) and poll(2) say that the file is not a queue. */
	EXPECT_EQ(-1, read(self->fd, &ev, sizeof(ev)));
	EXPECT_EQ(EINVAL, errno);
	p.fd = self->fd;
	p.events = POLLIN;
	EXPECT_EQ(1, poll(&p, 1, 0));
	EXPECT_TRUE(p.revents & POLLERR);
	EXPECT_FALSE(p.revents & POLLIN);

	/* Again: nothing more to drop. */
	EXPECT_EQ(0, unsubscribe(self->fd));
	ASSERT_EQ(0, ioctl(self->fd, UPCALL_IOC_STATS, &st));
	EXPECT_EQ(2ULL, st.dropped);

	/* A later SUBSCRIBE carries on from the counters and the seqno. */
	ASSERT_EQ(0, ioctl(self->fd, UPCALL_IOC_SUBSCRIBE, &req));
	EXPECT_EQ(0, poll(&p, 1, 0));
	ASSERT_LE(1, emit(self->fd, 205, 0));
	ASSERT_EQ((ssize_t)sizeof(ev), read(self->fd, &ev, sizeof(ev)));
	EXPECT_EQ(4ULL, ev.seqno);
	EXPECT_EQ(205ULL, ev.value);
	ASSERT_EQ(0, ioctl(self->fd, UPCALL_IOC_STATS, &st));
	EXPECT_EQ((__u32)UPCALL_TRANSPORT_QUEUE, st.transport);
	EXPECT_EQ(4ULL, st.emitted);
	EXPECT_EQ(4ULL, st.seqno);
	EXPECT_EQ(2ULL, st.delivered);
	EXPECT_EQ(2ULL, st.dropped);
	EXPECT_EQ(0ULL, st.pending);
}

/* A thread that waits for a record in read(2) or poll(2). */
struct waiter {
	int fd;
	bool use_poll;
	pid_t tid;		/* set once it is about to wait */
	ssize_t ret;
	int err;
	short revents;
};

static void *waiter_run(void *arg)
{
	struct waiter *w = arg;
	struct upcall_event ev;
	struct pollfd p = { .fd = w->fd, .events = POLLIN };

	__atomic_store_n(&w->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
	if (w->use_poll) {
		w->ret = poll(&p, 1, WAIT_MS);
		w->revents = p.revents;
	} else {
		w->ret = read(w->fd, &ev, sizeof(ev));
	}
	w->err = errno;
	return NULL;
}

/*
 * Until the thread @tid sleeps (most likely in the call it was started
 * for), or a second has passed: either way the test holds, this only makes
 * it likelier that the wake-up is what it tests.  Whether it was seen asleep.
 */
static bool wait_until_asleep(pid_t tid)
{
	char path[64], buf[256], *state;
	unsigned int i;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	for (i = 0; i < 100; i++) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return false;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			return false;
		buf[n] = '\0';
		/* "tid (comm) S ...": the state follows the last ')'. */
		state = strrchr(buf, ')');
		if (state && state[1] == ' ' && state[2] == 'S')
			return true;
		usleep(10000);
	}
	return false;
}

/*
 * An unsubscribe ends a read(2) or a poll(2) that another thread is
 * blocked in: read(2) fails with EINVAL, poll(2) reports POLLERR, whether
 * the call began before the unsubscribe or after it.
 */
static void unsubscribe_wakes(struct __test_metadata *_metadata, bool use_poll)
{
	/* A source no test emits, so that nothing else ends the wait. */
	struct upcall_subscribe req = {
		.transport = UPCALL_TRANSPORT_QUEUE,
		.flags = UPCALL_SUBSCRIBE_SOURCES,
		.source_first = 0xfedc,
		.source_last = 0xfedc,
	};
	struct upcall_stats st;
	struct timespec deadline;
	struct waiter w = { .use_poll = use_poll };
	pthread_t thread;
	pid_t tid;

	w.fd = open_dev(_metadata, O_RDWR);
	if (w.fd < 0)
		return;
	ASSERT_EQ(0, ioctl(w.fd, UPCALL_IOC_SUBSCRIBE, &req));
	ASSERT_EQ(0, pthread_create(&thread, NULL, waiter_run, &w));
	while (!(tid = __atomic_load_n(&w.tid, __ATOMIC_SEQ_CST)))
		usleep(1000);
	if (!wait_until_asleep(tid))
		TH_LOG("the thread was not seen asleep: it may wait after the unsubscribe");

	ASSERT_EQ(0, unsubscribe(w.fd));
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += WAIT_MS / 1000;
	ASSERT_EQ(0, pthread_timedjoin_np(thread, NULL, &deadline))
		TH_LOG("the waiting thread was not woken");
	if (use_poll) {
		EXPECT_EQ(1, w.ret) TH_LOG("poll: %s", strerror(w.err));
		EXPECT_TRUE(w.revents & POLLERR);
	} else {
		EXPECT_EQ(-1, w.ret);
		EXPECT_EQ(EINVAL, w.err);
	}
	ASSERT_EQ(0, ioctl(w.fd, UPCALL_IOC_STATS, &st));
	EXPECT_EQ((__u32)UPCALL_TRANSPORT_NONE, st.transport);
	close(w.fd);
}

TEST(unsubscribe_wakes_reader)
{
	unsubscribe_wakes(_metadata, false);
}

TEST(unsubscribe_wakes_poller)
{
	unsubscribe_wakes(_metadata, true);
}

TEST(signal_round_trip)
{
	struct upcall_subscribe req = {
		.transport = UPCALL_TRANSPORT_SIGNAL,
		.signo = TEST_SIGNO,
	};
	const struct timespec wait = { .tv_sec = WAIT_MS / 1000 };
	const struct timespec zero = { 0 };
	const uint64_t value = 0xfedcba9876543210ULL;
	struct upcall_stats st;
	unsigned int i;
	sigset_t set;
	siginfo_t si;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, TEST_SIGNO);
	ASSERT_EQ(0, sigprocmask(SIG_BLOCK, &set, NULL));
	fd = open_dev(_metadata, O_RDWR);
	if (fd < 0)
		return;
	ASSERT_EQ(0, ioctl(fd, UPCALL_IOC_SUBSCRIBE, &req));
	ASSERT_EQ(0, ioctl(fd, UPCALL_IOC_STATS, &st));
	EXPECT_EQ((__u32)UPCALL_TRANSPORT_SIGNAL, st.transport);
	EXPECT_EQ((__u32)TEST_SIGNO, st.signo);

	for (i = 0; i < 2; i++)
		ASSERT_LE(1, emit(fd, value + i, 0x1234));
	for (i = 0; i < 2; i++) {
		memset(&si, 0, sizeof(si));
		ASSERT_EQ(TEST_SIGNO, sigtimedwait(&set, &si, &wait))
			TH_LOG("signal %u: %s", i + 1, strerror(errno));
		EXPECT_EQ(TEST_SIGNO, si.si_signo);
		EXPECT_EQ(UPCALL_SI_CODE(0x1234), si.si_code);
		EXPECT_GT(0, si.si_code);	/* SI_QUEUE-style: keeps the value */
		EXPECT_EQ((int)i + 1, si.si_errno);	/* the seqno's low 32 bits */
		EXPECT_EQ(value + i, (uint64_t)(uintptr_t)si.si_value.sival_ptr);
		EXPECT_EQ((int)(uint32_t)(value + i), si.si_value.sival_int);
	}

	/* Delivered once the signals are queued; nothing more is pending. */
	ASSERT_EQ(0, ioctl(fd, UPCALL_IOC_STATS, &st));
	EXPECT_EQ(2ULL, st.emitted);
	EXPECT_EQ(0ULL, st.dropped);
	EXPECT_EQ(0U, st.queued);
	EXPECT_EQ(-1, sigtimedwait(&set, &si, &zero));
	EXPECT_EQ(EAGAIN, errno);
	close(fd);
}

TEST_HARNESS_MAIN
