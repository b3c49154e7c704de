// SPDX-License-Identifier: GPL-2.0
/*
 * upcall_fuzz: drive /dev/upcall with random ioctls, reads and eventfds,
 * and check that every call gets an errno the ABI allows and the module
 * stays healthy.
 *
 *   upcall_fuzz [--seed S] [--calls N] [--kcov [--pcs FILE]] [--device PATH]
 *
 * With --kcov (a kernel with CONFIG_KCOV and the module built with
 * KCOV_INSTRUMENT := y), inputs that reach new module code are kept in a
 * corpus and mutated further; the number of distinct PCs reached is
 * reported.  The run is reproducible from its seed.  The last line printed
 * is a JSON summary; the exit status is 0 only if every call was answered
 * as allowed and the final round trip worked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/upcall.h>

#define KCOV_INIT_TRACE	_IOR('c', 1, unsigned long)
#define KCOV_ENABLE	_IO('c', 100)
#define KCOV_DISABLE	_IO('c', 101)
#define KCOV_TRACE_PC	0
#define KCOV_WORDS	(64 << 10)

#define KERNEL_SIGSET_SIZE	8	/* the kernel's sigset_t: 64 signals */
#define ARG_SIZE	64	/* larger than any upcall request */
#define CORPUS_MAX	4096
#define PC_TABLE	(1 << 16)

struct input {
	unsigned int request;
	unsigned char arg[ARG_SIZE];
};

static uint64_t rng_state;
static struct input corpus[CORPUS_MAX];
static unsigned int corpus_len;
static uint64_t pcs[PC_TABLE];
static unsigned int pcs_seen;
static unsigned long *kcov_area;
static unsigned long calls, bad_answers, errno_count[256], ok_count;

static uint64_t rnd(void)
{
	/* xorshift64*: small, fast, and the same sequence for the same seed. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

static uint64_t interesting(void)
{
	static const uint64_t values[] = {
		0, 1, 2, 15, 16, 31, 32, 33, 63, 64, 65, 0x7f, 0x80, 0xff,
		0x100, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff,
		UPCALL_QUEUE_MIN, UPCALL_QUEUE_MAX, UPCALL_QUEUE_MAX + 1,
		UPCALL_QUEUE_DEFAULT, UPCALL_TRANSPORT_SIGNAL,
		UPCALL_TRANSPORT_QUEUE, UPCALL_TRANSPORT_NETLINK,
		UPCALL_SOURCE_MAX, UPCALL_SOURCE_MAX + 1, (uint64_t)-1,
	};

	return values[rnd() % (sizeof(values) / sizeof(values[0]))];
}

static const unsigned int requests[] = {
	UPCALL_IOC_SUBSCRIBE, UPCALL_IOC_EMIT, UPCALL_IOC_STATS,
	UPCALL_IOC_SET_EVENTFD,
};
#define N_REQUESTS (sizeof(requests) / sizeof(requests[0]))

/*
 * Descriptors a SUBSCRIBE may name as its netlink socket: the right kind
 * (a bound generic netlink socket), the wrong kinds and no socket at all.
 */
static int subscribe_fds[7];
#define N_SUBSCRIBE_FDS (sizeof(subscribe_fds) / sizeof(subscribe_fds[0]))

static void setup_sockets(int efd)
{
	struct sockaddr_nl any = { .nl_family = AF_NETLINK };
	int genl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	int route = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);

	if (genl < 0 || route < 0 ||
	    bind(genl, (struct sockaddr *)&any, sizeof(any)) ||
	    bind(route, (struct sockaddr *)&any, sizeof(any))) {
		perror("netlink socket");
		exit(2);
	}
	subscribe_fds[0] = genl;
	subscribe_fds[1] = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	subscribe_fds[2] = route;
	subscribe_fds[3] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	subscribe_fds[4] = efd;
	subscribe_fds[5] = -1;
	subscribe_fds[6] = 1000;	/* not open */
}

/* A SUBSCRIBE that gets past the front checks, to reach what lies behind. */
static void well_formed_subscribe(struct input *in)
{
	struct upcall_subscribe req = {
		.transport = 1 + rnd() % 3,
		.flags = rnd() % 4,	/* THREAD, UNICAST */
		.queue_size = rnd() % 2 ? 0 : (uint32_t)interesting(),
	};

	if (req.transport == UPCALL_TRANSPORT_SIGNAL)
		req.signo = rnd() % 2 ? (uint32_t)SIGRTMIN + rnd() % 8 : (uint32_t)interesting();
	if (req.flags & UPCALL_SUBSCRIBE_UNICAST)
		req.netlink_fd = subscribe_fds[rnd() % N_SUBSCRIBE_FDS];
	/* Now and then an unsubscribe, which takes nothing but the transport. */
	if (!(rnd() % 8))
		memset(&req, 0, sizeof(req));
	in->request = UPCALL_IOC_SUBSCRIBE;
	memset(in->arg, 0, ARG_SIZE);
	memcpy(in->arg, &req, sizeof(req));
}

static void random_input(struct input *in)
{
	unsigned int i;

	if (rnd() % 8 == 0) {
		well_formed_subscribe(in);
		return;
	}
	switch (rnd() % 8) {
	case 0:	/* anything at all */
		in->request = (unsigned int)rnd();
		break;
	case 1:	/* our magic, any number, size and direction */
		in->request = _IOC(rnd() % 4, UPCALL_IOC_MAGIC, rnd() % 0x50,
				   rnd() % 128);
		break;
	default:
		in->request = requests[rnd() % N_REQUESTS];
	}
	for (i = 0; i < ARG_SIZE; i += 4) {
		uint32_t word = rnd() % 3 ? (uint32_t)interesting() : (uint32_t)rnd();

		if (rnd() % 4 == 0)
			word = 0;
		memcpy(in->arg + i, &word, 4);
	}
}

static void mutate(struct input *in)
{
	unsigned int n = 1 + rnd() % 4;

	while (n--) {
		unsigned int at = rnd() % (ARG_SIZE / 4) * 4;
		uint32_t word = rnd() % 2 ? (uint32_t)interesting() : (uint32_t)rnd();

		if (rnd() % 8 == 0)
			in->request = requests[rnd() % N_REQUESTS];
		memcpy(in->arg + at, &word, 4);
	}
}

/* Addresses an argument may point at, good and bad. */
static unsigned char *good_page, *guard_end, *ro_page, *unmapped;

static void setup_memory(void)
{
	unsigned char *two;

	two = mmap(NULL, 8192, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (two == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	mprotect(two + 4096, 4096, PROT_NONE);
	good_page = two;
	guard_end = two + 4096;	/* a struct placed just before it crosses */
	ro_page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unmapped = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(unmapped, 4096);
}

static void *place_arg(const struct input *in, unsigned int *kind)
{
	unsigned int size = _IOC_SIZE(in->request);

	/* A random request may claim any size; we only ever hold ARG_SIZE. */
	if (!size || size > ARG_SIZE)
		size = ARG_SIZE;

	*kind = rnd() % 16;
	switch (*kind) {
	case 0:
		return NULL;
	case 1:
		return unmapped;
	case 2:
		return (void *)0xffffffff81000000UL;	/* kernel text */
	case 3:
		return ro_page;
	case 4:	/* crosses into the guard page */
		memcpy(guard_end - size / 2, in->arg, size / 2);
		return guard_end - size / 2;
	case 5:	/* misaligned */
		memcpy(good_page + 1 + rnd() % 7, in->arg, ARG_SIZE);
		return good_page + 1 + rnd() % 7;
	default:
		memcpy(good_page, in->arg, ARG_SIZE);
		return good_page;
	}
}

static bool allowed_errno(int err)
{
	switch (err) {
	case EINVAL: case EFAULT: case ENOTTY: case EBADF: case ENOMEM:
	case EAGAIN: case ENOTSOCK:
		return true;
	default:
		return false;
	}
}

static int kcov_fd = -1;

static bool kcov_setup(void)
{
	kcov_fd = open("/sys/kernel/debug/kcov", O_RDWR);
	if (kcov_fd < 0)
		return false;
	if (ioctl(kcov_fd, KCOV_INIT_TRACE, KCOV_WORDS))
		return false;
	kcov_area = mmap(NULL, KCOV_WORDS * sizeof(unsigned long),
			 PROT_READ | PROT_WRITE, MAP_SHARED, kcov_fd, 0);
	if (kcov_area == MAP_FAILED)
		return false;
	return ioctl(kcov_fd, KCOV_ENABLE, KCOV_TRACE_PC) == 0;
}

/* Record the PCs of the last call; true if any was new. */
static bool kcov_collect(void)
{
	unsigned long n = __atomic_load_n(&kcov_area[0], __ATOMIC_RELAXED);
	bool fresh = false;
	unsigned long i;

	for (i = 0; i < n && i < KCOV_WORDS - 1; i++) {
		uint64_t pc = kcov_area[i + 1];
		unsigned int h = (unsigned int)((pc * 0x9E3779B97F4A7C15ULL) >> 48);

		while (pcs[h] && pcs[h] != pc)
			h = (h + 1) % PC_TABLE;
		if (!pcs[h] && pcs_seen < PC_TABLE - 1) {
			pcs[h] = pc;
			pcs_seen++;
			fresh = true;
		}
	}
	return fresh;
}

/* The module PCs reached, one hexadecimal address per line, for mapping. */
static bool write_pcs(const char *file)
{
	FILE *f = fopen(file, "w");
	unsigned int h;

	if (!f) {
		fprintf(stderr, "upcall_fuzz: %s: %s\n", file, strerror(errno));
		return false;
	}
	for (h = 0; h < PC_TABLE; h++)
		if (pcs[h])
			fprintf(f, "%#" PRIx64 "\n", pcs[h]);
	return fclose(f) == 0;
}

static void count_answer(long ret, int err, unsigned int request)
{
	calls++;
	if (ret >= 0) {
		ok_count++;
		return;
	}
	errno_count[err & 0xff]++;
	if (!allowed_errno(err)) {
		bad_answers++;
		fprintf(stderr, "upcall_fuzz: request %#x answered %s\n",
			request, strerror(err));
	}
}

static int open_device(const char *path)
{
	int flags = rnd() % 4 == 0 ? O_RDONLY : O_RDWR;
	int fd;

	fd = open(path, flags | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		perror(path);
		exit(2);
	}
	return fd;
}

static void side_call(int fd, int efd)
{
	unsigned char buf[48 * 9];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t ret;

	switch (rnd() % 4) {
	case 0:
		ret = read(fd, buf, rnd() % sizeof(buf));
		count_answer(ret, errno, 0);
		break;
	case 1:
		count_answer(poll(&p, 1, 0), errno, 0);
		break;
	case 2: {
		struct upcall_eventfd req = { .fd = rnd() % 2 ? efd : (int)interesting() };

		ret = ioctl(fd, UPCALL_IOC_SET_EVENTFD, &req);
		count_answer(ret, errno, UPCALL_IOC_SET_EVENTFD);
		break;
	}
	default: {
		int fl = fcntl(fd, F_GETFL);

		fcntl(fd, F_SETOWN, getpid());
		ret = fcntl(fd, F_SETFL, rnd() % 2 ? fl | O_ASYNC : fl & ~O_ASYNC);
		count_answer(ret, errno, 0);
	}
	}
}

/* Report a failed round-trip check; false, so that callers can return it. */
static bool expect_failed(const char *what, int line)
{
	fprintf(stderr, "upcall_fuzz: round trip: %s is false (line %d)\n",
		what, line);
	return false;
}

#define EXPECT(cond)	((cond) || expect_failed(#cond, __LINE__))

#define RT_EVENTS	20	/* more than RT_QUEUE: the first ones are dropped */
#define RT_QUEUE	16
#define RT_SIGNALS	8
#define RT_SOURCE	0x209	/* user space may emit above 0x1ff */
#define RT_VALUE(i)	(0x0123456789abcdefULL + (i))

/* Emit RT_VALUE(0) to RT_VALUE(n - 1), each to one subscriber at least. */
static bool emit_n(int fd, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		struct upcall_emit emit = {
			.value = RT_VALUE(i), .source = RT_SOURCE,
		};

		if (!EXPECT(ioctl(fd, UPCALL_IOC_EMIT, &emit) >= 1))
			return false;
	}
	return true;
}

/*
 * After the storm, a plain QUEUE subscriber must still get exactly what is
 * sent, and its counters must agree with what can be seen from outside:
 * the records queued are the records a read drains, the drops are the gap
 * before the first seqno read.  (pending is emitted - delivered - dropped
 * by construction, so it is checked against the queue, never by itself.)
 */
static bool queue_round_trip(const char *path)
{
	struct upcall_subscribe sub = {
		.transport = UPCALL_TRANSPORT_QUEUE, .queue_size = RT_QUEUE,
	};
	struct upcall_event ev[2 * RT_QUEUE];
	struct upcall_stats st;
	unsigned int i, n;
	bool ok = true;
	ssize_t got;
	int fd;

	fd = open(path, O_RDWR | O_NONBLOCK);
	if (!EXPECT(fd >= 0) || !EXPECT(!ioctl(fd, UPCALL_IOC_SUBSCRIBE, &sub)))
		goto out;
	if (!emit_n(fd, RT_EVENTS))
		goto out;
	if (!EXPECT(!ioctl(fd, UPCALL_IOC_STATS, &st)))
		goto out;
	ok &= EXPECT(st.emitted == RT_EVENTS && st.seqno == RT_EVENTS);
	ok &= EXPECT(st.queue_size == RT_QUEUE && st.queued == RT_QUEUE);
	ok &= EXPECT(st.pending == st.queued);
	ok &= EXPECT(st.delivered == 0 && st.dropped == RT_EVENTS - RT_QUEUE);

	got = read(fd, ev, sizeof(ev));
	if (!EXPECT(got > 0 && got % sizeof(ev[0]) == 0))
		goto out;
	n = got / sizeof(ev[0]);
	ok &= EXPECT(n == st.queued);
	for (i = 0; i < n; i++) {
		uint64_t seqno = RT_EVENTS - n + 1 + i;

		ok &= EXPECT(ev[i].seqno == seqno);
		ok &= EXPECT(ev[i].value == RT_VALUE(seqno - 1));
		ok &= EXPECT(ev[i].source == RT_SOURCE && !ev[i].flags);
		ok &= EXPECT(!i || ev[i].timestamp_ns >= ev[i - 1].timestamp_ns);
	}
	ok &= EXPECT(read(fd, ev, sizeof(ev)) < 0 && errno == EAGAIN);

	if (!EXPECT(!ioctl(fd, UPCALL_IOC_STATS, &st)))
		goto out;
	ok &= EXPECT(st.emitted == RT_EVENTS && st.queued == 0 && st.pending == 0);
	ok &= EXPECT(st.delivered == n && st.dropped == RT_EVENTS - n);
	close(fd);
	return ok;
out:
	if (fd >= 0)
		close(fd);
	return false;
}

/*
 * The same for a SIGNAL subscriber, whose events leave the queue for the
 * process's signal queue: once nothing is pending in the module, the
 * signals waiting here are exactly the delivered ones, in order.
 */
static bool signal_round_trip(const char *path)
{
	const int signo = 40;	/* real-time, and none of glibc's own */
	struct upcall_subscribe sub = {
		.transport = UPCALL_TRANSPORT_SIGNAL, .signo = signo,
	};
	struct timespec zero = { 0 };
	struct upcall_stats st;
	unsigned int i, tries;
	bool ok = true;
	sigset_t set;
	siginfo_t si;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, signo);
	/* The storm's subscriptions may have left some queued: not ours. */
	while (sigtimedwait(&set, &si, &zero) > 0)
		;

	fd = open(path, O_RDWR);
	if (!EXPECT(fd >= 0) || !EXPECT(!ioctl(fd, UPCALL_IOC_SUBSCRIBE, &sub)))
		goto out;
	if (!emit_n(fd, RT_SIGNALS))
		goto out;
	/* Delivery runs from irq_work: wait for it, by the counter, bounded. */
	for (tries = 0; tries < 10000; tries++) {
		if (!EXPECT(!ioctl(fd, UPCALL_IOC_STATS, &st)))
			goto out;
		if (!st.pending)
			break;
		sched_yield();
	}
	ok &= EXPECT(st.pending == 0 && st.queued == 0);
	ok &= EXPECT(st.emitted == RT_SIGNALS && st.dropped == 0);

	for (i = 0; sigtimedwait(&set, &si, &zero) == signo; i++) {
		ok &= EXPECT(si.si_code == UPCALL_SI_CODE(RT_SOURCE));
		ok &= EXPECT(si.si_errno == (int)(i + 1));
		ok &= EXPECT((uint64_t)(uintptr_t)si.si_value.sival_ptr == RT_VALUE(i));
	}
	ok &= EXPECT(i == st.delivered && i == RT_SIGNALS);
	close(fd);
	return ok;
out:
	if (fd >= 0)
		close(fd);
	return false;
}

/* After the storm, plain subscribers must still get exactly what is sent. */
static bool round_trip(const char *path)
{
	bool queue = queue_round_trip(path);

	return signal_round_trip(path) && queue;
}

int main(int argc, char **argv)
{
	const char *path = "/dev/upcall", *pcs_path = NULL;
	unsigned long n_calls = 100000, i;
	uint64_t seed = 1;
	bool use_kcov = false, kcov = false, healthy;
	struct timespec t0, t1;
	sigset_t all;
	int fd, efd, a;

	for (a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--seed") && a + 1 < argc)
			seed = strtoull(argv[++a], NULL, 0);
		else if (!strcmp(argv[a], "--calls") && a + 1 < argc)
			n_calls = strtoul(argv[++a], NULL, 0);
		else if (!strcmp(argv[a], "--device") && a + 1 < argc)
			path = argv[++a];
		else if (!strcmp(argv[a], "--kcov"))
			use_kcov = true;
		else if (!strcmp(argv[a], "--pcs") && a + 1 < argc)
			pcs_path = argv[++a];
		else {
			fprintf(stderr, "usage: %s [--seed S] [--calls N] [--kcov [--pcs FILE]] "
				"[--device PATH]\n", argv[0]);
			return 2;
		}
	}
	rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;

	/*
	 * Subscriptions to random signals aim them at us: keep them queued.
	 * The raw system call, since glibc's sigprocmask() will not block the
	 * two real-time signals it keeps for itself (32 and 33).
	 */
	memset(&all, 0xff, sizeof(all));
	syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, NULL, KERNEL_SIGSET_SIZE);
	setup_memory();
	if (use_kcov) {
		kcov = kcov_setup();
		if (!kcov)
			fprintf(stderr, "upcall_fuzz: no KCOV here (%s); running blind\n",
				strerror(errno));
	}

	fd = open_device(path);
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	setup_sockets(efd);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < n_calls; i++) {
		struct input in;
		unsigned int kind;
		void *arg;
		long ret;
		int err;

		if (rnd() % 1024 == 0) {	/* churn: a new subscriber */
			close(fd);
			fd = open_device(path);
		}
		if (rnd() % 8 == 0) {
			side_call(fd, efd);
			continue;
		}
		if (corpus_len && rnd() % 2) {
			in = corpus[rnd() % corpus_len];
			mutate(&in);
		} else {
			random_input(&in);
		}
		arg = place_arg(&in, &kind);
		if (kcov)
			__atomic_store_n(&kcov_area[0], 0, __ATOMIC_RELAXED);
		ret = ioctl(fd, in.request, arg);
		err = errno;
		if (kcov && kcov_collect() && corpus_len < CORPUS_MAX && kind >= 6)
			corpus[corpus_len++] = in;
		count_answer(ret, err, in.request);
		if (rnd() % 4096 == 0) {	/* empty the signal queue */
			struct timespec zero = { 0 };

			while (syscall(SYS_rt_sigtimedwait, &all, NULL, &zero,
				       KERNEL_SIGSET_SIZE) > 0)
				;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	close(fd);
	if (kcov)
		ioctl(kcov_fd, KCOV_DISABLE, 0);

	if (kcov && pcs_path && !write_pcs(pcs_path))
		return 2;

	healthy = round_trip(path);
	printf("{\"seed\": %" PRIu64 ", \"calls\": %lu, \"ok\": %lu, \"einval\": %lu, "
	       "\"efault\": %lu, \"enotty\": %lu, \"ebadf\": %lu, \"enomem\": %lu, "
	       "\"eagain\": %lu, \"bad_answers\": %lu, \"kcov\": %s, \"pcs\": %u, "
	       "\"corpus\": %u, \"seconds\": %.1f, \"healthy\": %s}\n",
	       seed, calls, ok_count, errno_count[EINVAL], errno_count[EFAULT],
	       errno_count[ENOTTY], errno_count[EBADF], errno_count[ENOMEM],
	       errno_count[EAGAIN], bad_answers, kcov ? "true" : "false",
	       pcs_seen, corpus_len,
	       (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
	       healthy ? "true" : "false");
	return bad_answers || !healthy;
}
