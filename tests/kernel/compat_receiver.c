// SPDX-License-Identifier: GPL-2.0
/*
 * A receiver of every file-based transport, built by
 * tests/kernel/test_compat32.py with -m32 so that its ioctls go through
 * the module's compat_ioctl: the queue (read), a signal through signalfd
 * and through sigtimedwait's siginfo_t, an eventfd, netlink (unicast to
 * this socket).  Prints "ok NAME" for each check; exits 1 at the first
 * that fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <linux/upcall.h>

#include "upcall_genl.h"

#define VALUE	0x8877665544332211ULL
#define SOURCE	0x3f2

static int dev;

#define CHECK(cond, name) do {						\
	if (!(cond)) {							\
		printf("FAIL %s (%s): %s\n", name, #cond, strerror(errno)); \
		exit(1);						\
	}								\
} while (0)

static void emit(uint64_t value)
{
	struct upcall_emit req = { .value = value, .source = SOURCE };

	CHECK(ioctl(dev, UPCALL_IOC_EMIT, &req) >= 1, "emit");
}

static void subscribe(uint32_t transport, uint32_t signo, int32_t netlink_fd)
{
	struct upcall_subscribe req = { .transport = transport, .signo = signo };

	if (netlink_fd >= 0) {
		req.flags = UPCALL_SUBSCRIBE_UNICAST;
		req.netlink_fd = netlink_fd;
	}

	CHECK(ioctl(dev, UPCALL_IOC_SUBSCRIBE, &req) == 0, "subscribe");
}

static struct upcall_stats stats(void)
{
	struct upcall_stats st;

	memset(&st, 0xff, sizeof(st));
	CHECK(ioctl(dev, UPCALL_IOC_STATS, &st) == 0, "stats");
	return st;
}

/* A bound NETLINK_GENERIC socket; *family: the upcall family's id. */
static int netlink_socket(uint16_t *family)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	uint32_t group;
	int fd;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	CHECK(fd >= 0, "netlink socket");
	CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind netlink");
	CHECK(upcall_genl_resolve(fd, family, &group) == 0, "resolve " UPCALL_GENL_NAME);
	return fd;
}

static void read_record(uint64_t seqno)
{
	struct upcall_event ev;

	CHECK(read(dev, &ev, sizeof(ev)) == sizeof(ev), "read");
	CHECK(ev.seqno == seqno && ev.value == VALUE && ev.source == SOURCE &&
	      ev.timestamp_ns && !ev.flags, "record");
}

int main(void)
{
	struct upcall_version version;
	struct upcall_genl_event ev;
	static char buf[4096];
	struct nlmsghdr *nh;
	uint16_t family;
	uint64_t id;
	int sock;
	long len;
	struct signalfd_siginfo ssi;
	struct upcall_eventfd efd;
	struct upcall_stats st;
	int signo = SIGRTMIN + 9;
	uint64_t count;
	siginfo_t info;
	sigset_t set;
	int sfd;

	CHECK(sizeof(void *) == 4, "built -m32");
	dev = open("/dev/upcall", O_RDWR);
	CHECK(dev >= 0, "open");

	memset(&version, 0xff, sizeof(version));
	CHECK(ioctl(dev, UPCALL_IOC_VERSION, &version) == 0 &&
	      version.abi == UPCALL_ABI_VERSION &&
	      version.flags == UPCALL_VERSION_UNSUBSCRIBE, "version");
	printf("ok version %s\n", version.module);

	subscribe(UPCALL_TRANSPORT_QUEUE, 0, -1);
	emit(VALUE);
	read_record(1);
	st = stats();
	CHECK(st.emitted == 1 && st.delivered == 1 && !st.dropped &&
	      !st.pending && st.transport == UPCALL_TRANSPORT_QUEUE &&
	      st.queue_size == UPCALL_QUEUE_DEFAULT && st.id &&
	      !st.reserved[0] && !st.reserved[1], "queue stats");
	printf("ok queue\n");

	efd.fd = eventfd(0, 0);
	efd.flags = 0;
	efd.reserved[0] = efd.reserved[1] = 0;
	CHECK(efd.fd >= 0 && ioctl(dev, UPCALL_IOC_SET_EVENTFD, &efd) == 0,
	      "set eventfd");
	emit(VALUE);
	CHECK(read(efd.fd, &count, sizeof(count)) == sizeof(count) && count >= 1,
	      "eventfd counter");
	read_record(2);
	printf("ok eventfd\n");

	sigemptyset(&set);
	sigaddset(&set, signo);
	CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0, "block");
	sfd = signalfd(-1, &set, 0);
	CHECK(sfd >= 0, "signalfd");
	subscribe(UPCALL_TRANSPORT_SIGNAL, signo, -1);
	emit(VALUE);
	CHECK(read(sfd, &ssi, sizeof(ssi)) == sizeof(ssi), "read signalfd");
	/* signalfd gives all 64 bits of the value. */
	CHECK(ssi.ssi_signo == (uint32_t)signo &&
	      ssi.ssi_code == UPCALL_SI_CODE(SOURCE) && ssi.ssi_errno == 3 &&
	      ssi.ssi_ptr == VALUE && ssi.ssi_int == (int32_t)VALUE,
	      "signalfd siginfo");
	printf("ok signalfd\n");

	/* A 32-bit siginfo_t has room for 32 bits of si_ptr. */
	emit(VALUE);
	CHECK(sigwaitinfo(&set, &info) == signo, "sigwaitinfo");
	CHECK(info.si_code == UPCALL_SI_CODE(SOURCE) && info.si_errno == 4 &&
	      (uintptr_t)info.si_ptr == (uint32_t)VALUE &&
	      info.si_int == (int32_t)VALUE, "compat siginfo");
	printf("ok siginfo-32\n");

	sock = netlink_socket(&family);
	subscribe(UPCALL_TRANSPORT_NETLINK, 0, sock);
	id = stats().id;
	emit(VALUE);
	len = recv(sock, buf, sizeof(buf), 0);
	CHECK(len > 0, "recv netlink");
	nh = (struct nlmsghdr *)buf;
	CHECK(nlmsg_ok(nh, len) && upcall_genl_parse(nh, family, &ev), "netlink message");
	CHECK(ev.subscriber == id && ev.seqno == 5 && ev.value == VALUE &&
	      ev.source == SOURCE && ev.timestamp_ns, "netlink event");
	printf("ok netlink\n");

	st = stats();
	CHECK(st.emitted == 5 && st.delivered == 5 && !st.dropped &&
	      st.transport == UPCALL_TRANSPORT_NETLINK, "stats");
	return 0;
}
