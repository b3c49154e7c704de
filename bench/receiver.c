// SPDX-License-Identifier: GPL-2.0
/*
 * The C side of `python -m upcall_dev bench`: a small receiver for every
 * transport of the upcall module, and the emitter that both it and the
 * Python receiver are measured against.
 *
 * usage:
 *   upcall-bench recv TRANSPORT MODE N [--sync-fd FD] [--samples PATH]
 *                     [--queue-size N] [--signo N] [--raise PATH] [--device PATH]
 *   upcall-bench emit MODE N --sync-fd FD [--gap-us N] [--device PATH]
 *                    [--threads N] [--raise PATH]
 *   upcall-bench uio N --uio /dev/uioX --pci /sys/bus/pci/devices/D [--samples PATH]
 *   (each also takes --cpu N: run pinned to that CPU)
 *
 * --blocking (queue, latency): no poll(2), one read(2) that sleeps, as a
 * UIO reader does.
 *
 * TRANSPORT is signal, queue, fasync, eventfd or netlink; MODE is latency,
 * throughput or (recv only) soak.  Each prints one JSON line on stdout.
 *
 * soak (tools/soak, `make soak`): N is ignored; the receiver reads until
 * --stop-fd becomes readable (a byte or EOF), then until the module has
 * nothing pending, and reports its counts per source and the module's.
 * The emitter's --threads N splits its N events over N threads; --raise
 * PATH makes it write the edu "raise" attribute N times instead of
 * emitting (one interrupt each, unless the device coalesces them).
 *
 * Receiver and emitter meet on a pipe: the receiver writes one byte to
 * --sync-fd once it is subscribed and, in latency mode, one after each
 * event but the last; the emitter reads one byte before its first emit and,
 * in latency mode, before each one (one event in flight).  Each event's value
 * is CLOCK_MONOTONIC in ns just before UPCALL_IOC_EMIT, so the signal
 * transport, which carries no timestamp, can be timed too; the other
 * transports are timed from the module's timestamp_ns (stamped in
 * upcall_emit()).
 *
 * --raise PATH (latency mode, no emitter): the receiver itself writes to the
 * edu device's sysfs "raise" attribute for each event, and also reports the
 * latency from just before that write.  "uio" times the same loop through
 * uio_pci_generic: raise by BAR0 (0x60), read(2) /dev/uioX, acknowledge
 * (0x64), unmask INTx in the command register.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/upcall.h>

#include "upcall_genl.h"

enum transport { T_SIGNAL, T_QUEUE, T_FASYNC, T_EVENTFD, T_NETLINK };
static const char *const transport_names[] = { "signal", "queue", "fasync", "eventfd", "netlink" };

/* Records (or siginfos) taken per read(2). */
#define BATCH 1024
/* Seconds without an event after which a run gives up. */
#define IDLE_TIMEOUT_MS 20000
/* A throughput run checks the counters after this long without an event. */
#define SETTLE_MS 200

struct event {
	uint64_t seqno;
	uint64_t timestamp_ns;	/* 0: not carried (signal) */
	uint64_t value;
	uint32_t source;
};

static struct {
	enum transport transport;
	int latency;
	int soak;
	int stop_fd;
	uint64_t n;
	int sync_fd;
	const char *samples;
	const char *device;
	const char *raise_path;
	int blocking;
	unsigned int queue_size;
	int signo;
} opt = { .sync_fd = -1, .stop_fd = -1, .device = "/dev/upcall", .signo = 40 };

static int dev_fd = -1, wait_fd = -1, sock_fd = -1, efd = -1, raise_fd = -1;
static uint64_t sub_id;
static uint16_t genl_family;

static uint64_t received, lost, last_seqno, batches;
/* Received per source: user, timer, edu, any other. */
static uint64_t by_source[4];
static uint64_t t_last;
static uint64_t *lat, *lat_raise, *stamp_off;
static uint64_t n_lat, n_stamp_off;
static uint64_t t_raise;

static void die(const char *what)
{
	fprintf(stderr, "upcall-bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void fail(const char *msg)
{
	fprintf(stderr, "upcall-bench: %s\n", msg);
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sync_write(void)
{
	char c = 'x';

	if (opt.sync_fd >= 0 && write(opt.sync_fd, &c, 1) != 1)
		die("write sync pipe");
}

static struct upcall_stats get_stats(void)
{
	struct upcall_stats st;

	if (ioctl(dev_fd, UPCALL_IOC_STATS, &st))
		die("UPCALL_IOC_STATS");
	return st;
}

static void subscribe(uint32_t transport, uint32_t signo)
{
	struct upcall_subscribe req = {
		.transport = transport,
		.signo = signo,
		.queue_size = opt.queue_size,
	};

	/* Netlink: this socket alone gets the events, as the Python side asks. */
	if (transport == UPCALL_TRANSPORT_NETLINK) {
		req.flags = UPCALL_SUBSCRIBE_UNICAST;
		req.netlink_fd = sock_fd;
	}

	if (ioctl(dev_fd, UPCALL_IOC_SUBSCRIBE, &req))
		die("UPCALL_IOC_SUBSCRIBE");
	sub_id = get_stats().id;
}

/* Block @signo (and SIGIO) and return a non-blocking signalfd for them. */
static int signal_fd(int signo, int with_sigio)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, signo);
	if (with_sigio)
		sigaddset(&set, SIGIO);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		die("sigprocmask");
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		die("signalfd");
	return fd;
}

/* --- generic netlink ---------------------------------------------------- */

/* Resolve the family id (kept for parsing) and the events group's id. */
static uint32_t genl_resolve(int fd)
{
	uint32_t group;

	if (upcall_genl_resolve(fd, &genl_family, &group))
		die("generic netlink family " UPCALL_GENL_NAME " (is the module loaded?)");
	return group;
}

static int netlink_open(void)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	int fd, size = 64 << 20;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	if (fd < 0)
		die("socket(NETLINK_GENERIC)");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("bind netlink");
	genl_resolve(fd);
	/* As root the limit does not apply; else take what rmem_max allows. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)))
		die("SO_RCVBUF");
	if (fcntl(fd, F_SETFL, O_NONBLOCK))
		die("O_NONBLOCK");
	return fd;
}

/* --- setup and reading ---------------------------------------------------- */

static void setup(void)
{
	struct upcall_eventfd req = { 0 };

	dev_fd = open(opt.device, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (dev_fd < 0)
		die(opt.device);

	switch (opt.transport) {
	case T_SIGNAL:
		wait_fd = signal_fd(opt.signo, 0);
		subscribe(UPCALL_TRANSPORT_SIGNAL, opt.signo);
		break;
	case T_QUEUE:
		subscribe(UPCALL_TRANSPORT_QUEUE, 0);
		wait_fd = dev_fd;
		/* UIO's way: one read(2) that sleeps until there is an event. */
		if (opt.blocking && fcntl(dev_fd, F_SETFL, 0))
			die("fcntl");
		break;
	case T_FASYNC:
		wait_fd = signal_fd(opt.signo, 1);
		if (fcntl(dev_fd, F_SETOWN, getpid()) || fcntl(dev_fd, F_SETSIG, opt.signo) ||
		    fcntl(dev_fd, F_SETFL, O_NONBLOCK | O_ASYNC))
			die("fcntl F_SETOWN/F_SETSIG/O_ASYNC");
		subscribe(UPCALL_TRANSPORT_QUEUE, 0);
		break;
	case T_EVENTFD:
		efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (efd < 0)
			die("eventfd");
		req.fd = efd;
		subscribe(UPCALL_TRANSPORT_QUEUE, 0);
		if (ioctl(dev_fd, UPCALL_IOC_SET_EVENTFD, &req))
			die("UPCALL_IOC_SET_EVENTFD");
		wait_fd = efd;
		break;
	case T_NETLINK:
		sock_fd = netlink_open();
		subscribe(UPCALL_TRANSPORT_NETLINK, 0);
		wait_fd = sock_fd;
		break;
	}
}

static void account(uint64_t seqno, uint32_t source)
{
	by_source[source < 3 ? source : 3]++;
	if (seqno > last_seqno + 1)
		lost += seqno - last_seqno - 1;
	if (seqno > last_seqno)
		last_seqno = seqno;
	received++;
}

static void got(const struct event *ev, uint64_t t)
{
	account(ev->seqno, ev->source);
	if (!opt.latency || n_lat >= opt.n)
		return;
	if (opt.transport == T_SIGNAL) {
		/* No timestamp in a signal: the emitter put its clock in the value. */
		lat[n_lat] = opt.raise_path ? 0 : t - ev->value;
	} else {
		lat[n_lat] = t - ev->timestamp_ns;
		if (!opt.raise_path && ev->timestamp_ns >= ev->value)
			stamp_off[n_stamp_off++] = ev->timestamp_ns - ev->value;
	}
	if (opt.raise_path)
		lat_raise[n_lat] = t - t_raise;
	n_lat++;
}

/* Read the queue's records until it is empty; return how many. */
static uint64_t read_queue(void)
{
	static struct upcall_event recs[BATCH];
	uint64_t n = 0;

	for (;;) {
		ssize_t len = read(dev_fd, recs, sizeof(recs));
		uint64_t t = now_ns();

		if (len < 0) {
			if (errno == EAGAIN)
				return n;
			die("read /dev/upcall");
		}
		batches++;
		for (size_t i = 0; i < (size_t)len / sizeof(recs[0]); i++) {
			struct event ev = { recs[i].seqno, recs[i].timestamp_ns, recs[i].value,
					    recs[i].source };

			got(&ev, t);
			n++;
		}
		if ((size_t)len < sizeof(recs))
			return n;
	}
}

static void drain_signalfd(void)
{
	static struct signalfd_siginfo si[64];

	while (read(wait_fd, si, sizeof(si)) > 0)
		;
}

/* One message of the upcall family: an event if it is this subscriber's. */
static int parse_genl(struct nlmsghdr *nh, struct event *ev)
{
	struct upcall_genl_event g;

	if (!upcall_genl_parse(nh, genl_family, &g) || g.subscriber != sub_id)
		return 0;
	ev->seqno = g.seqno;
	ev->timestamp_ns = g.timestamp_ns;
	ev->value = g.value;
	ev->source = g.source;
	return 1;
}

/* Datagrams per recvmmsg(2), as the Python receiver does. */
#define NL_BATCH 256
#define NL_SLOT 256

static uint64_t drain_netlink(void)
{
	static char bufs[NL_BATCH][NL_SLOT];
	static struct mmsghdr msgs[NL_BATCH];
	static struct iovec iov[NL_BATCH];
	uint64_t n = 0;

	for (int i = 0; i < NL_BATCH; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = NL_SLOT;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	for (;;) {
		int got_n = recvmmsg(sock_fd, msgs, NL_BATCH, MSG_DONTWAIT, NULL);
		uint64_t t = now_ns();

		if (got_n < 0) {
			if (errno == EAGAIN)
				return n;
			if (errno == ENOBUFS)
				continue; /* overrun: the module counted the drops */
			die("recvmmsg netlink");
		}
		batches++;
		for (int i = 0; i < got_n; i++) {
			long len = msgs[i].msg_len;

			for (struct nlmsghdr *nh = (struct nlmsghdr *)bufs[i]; nlmsg_ok(nh, len);
			     nh = nlmsg_next(nh, &len)) {
				struct event ev = { 0 };

				if (parse_genl(nh, &ev)) {
					got(&ev, t);
					n++;
				}
			}
		}
		if (got_n < NL_BATCH)
			return n;
	}
}

/* Take whatever is pending now, without blocking; return the event count. */
static uint64_t drain(void)
{
	static struct signalfd_siginfo si[BATCH];
	uint64_t n = 0, cnt;
	ssize_t len;

	switch (opt.transport) {
	case T_SIGNAL:
		for (;;) {
			uint64_t t;

			len = read(wait_fd, si, sizeof(si));
			t = now_ns();
			if (len < 0) {
				if (errno == EAGAIN)
					return n;
				die("read signalfd");
			}
			batches++;
			for (size_t i = 0; i < (size_t)len / sizeof(si[0]); i++) {
				uint64_t lo = (uint32_t)si[i].ssi_errno;
				struct event ev = { 0, 0, si[i].ssi_ptr,
						    (uint32_t)(UPCALL_SI_CODE_BASE - si[i].ssi_code) };

				if (si[i].ssi_code > UPCALL_SI_CODE_BASE)
					continue; /* not an upcall signal */
				/* si_errno has the low 32 bits of the seqno. */
				ev.seqno = (last_seqno & ~0xffffffffull) | lo;
				if (ev.seqno <= last_seqno)
					ev.seqno += 1ull << 32;
				got(&ev, t);
				n++;
			}
			if ((size_t)len < sizeof(si))
				return n;
		}
	case T_QUEUE:
		return read_queue();
	case T_FASYNC:
		drain_signalfd();
		return read_queue();
	case T_EVENTFD:
		if (read(efd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
			die("read eventfd");
		return read_queue();
	case T_NETLINK:
		return drain_netlink();
	}
	return n;
}

/* Wait until the transport's descriptor is readable; 0 on timeout. */
static int wait_ready(int timeout_ms)
{
	struct pollfd p = { .fd = wait_fd, .events = POLLIN };
	int r;

	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		die("poll");
	return r;
}

/*
 * What the trigger alone costs: write(2) of "0" to the raise attribute,
 * refused (EINVAL) after the same system call and sysfs path, with no
 * register write and no interrupt.
 */
#define TRIGGER_SAMPLES 1000

static void time_trigger(uint64_t *v)
{
	for (int i = 0; i < TRIGGER_SAMPLES; i++) {
		uint64_t t0 = now_ns();

		if (pwrite(raise_fd, "0", 1, 0) >= 0 || errno != EINVAL)
			fail("writing 0 to the raise attribute did not fail with EINVAL");
		v[i] = now_ns() - t0;
	}
}

static void raise_edu(void)
{
	t_raise = now_ns();
	if (pwrite(raise_fd, "1", 1, 0) != 1)
		die(opt.raise_path);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void print_pcts(const char *prefix, uint64_t *v, uint64_t n)
{
	uint64_t *s;
	double sum = 0;

	if (!n)
		return;
	s = malloc(n * sizeof(*s));
	if (!s)
		die("malloc");
	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_u64);
	for (uint64_t i = 0; i < n; i++)
		sum += (double)s[i];
	printf(", \"%sp50_ns\": %llu, \"%sp90_ns\": %llu, \"%sp99_ns\": %llu, "
	       "\"%smax_ns\": %llu, \"%smin_ns\": %llu, \"%smean_ns\": %.0f",
	       prefix, (unsigned long long)s[n / 2], prefix, (unsigned long long)s[n * 90 / 100],
	       prefix, (unsigned long long)s[n * 99 / 100], prefix, (unsigned long long)s[n - 1],
	       prefix, (unsigned long long)s[0], prefix, sum / (double)n);
	free(s);
}

static void write_samples(const char *path, const uint64_t *v, uint64_t n)
{
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(v, sizeof(*v), n, f) != n || fclose(f))
		die(path);
}

/* Read until --stop-fd is readable, then until the module holds nothing. */
static void run_soak(void)
{
	struct pollfd p[2] = {
		{ .fd = wait_fd, .events = POLLIN },
		{ .fd = opt.stop_fd, .events = POLLIN },
	};
	struct upcall_stats st;
	uint64_t idle_ms = 0;

	for (;;) {
		if (poll(p, 2, SETTLE_MS) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		if (p[0].revents && drain())
			t_last = now_ns();
		if (p[1].revents)
			break;
	}
	/* Every emitter has stopped: take what is in flight. */
	for (;;) {
		if (drain()) {
			idle_ms = 0;
			continue;
		}
		st = get_stats();
		if (!st.pending && !drain())
			break;
		if (!wait_ready(SETTLE_MS)) {
			idle_ms += SETTLE_MS;
			if (idle_ms > IDLE_TIMEOUT_MS)
				fail("events still pending after the idle timeout");
		}
	}
	t_last = now_ns();
}

static int cmd_recv(void)
{
	uint64_t *trigger = NULL;
	struct upcall_stats st;
	uint64_t t0, idle_ms = 0;

	if (opt.latency) {
		lat = calloc(opt.n, sizeof(*lat));
		lat_raise = calloc(opt.n, sizeof(*lat_raise));
		stamp_off = calloc(opt.n, sizeof(*stamp_off));
		if (!lat || !lat_raise || !stamp_off)
			die("calloc");
	}
	if (opt.raise_path) {
		raise_fd = open(opt.raise_path, O_WRONLY | O_CLOEXEC);
		if (raise_fd < 0)
			die(opt.raise_path);
	}
	setup();
	if (opt.raise_path) {
		trigger = calloc(TRIGGER_SAMPLES, sizeof(*trigger));
		if (!trigger)
			die("calloc");
		time_trigger(trigger);
	}

	t0 = now_ns();
	sync_write();
	if (opt.soak) {
		run_soak();
	} else if (opt.latency) {
		while (n_lat < opt.n) {
			uint64_t before = n_lat;

			if (opt.raise_path)
				raise_edu();
			while (n_lat == before) {
				if (!opt.blocking && !wait_ready(IDLE_TIMEOUT_MS))
					fail("no event within the idle timeout");
				drain();
			}
			t_last = now_ns();
			if (n_lat < opt.n && !opt.raise_path)
				sync_write();
		}
	} else {
		/*
		 * Until the last sequence number arrives, or, if the tail was
		 * dropped, until the module has nothing pending and nothing
		 * came for a while.
		 */
		while (last_seqno < opt.n) {
			if (wait_ready(SETTLE_MS)) {
				if (drain()) {
					t_last = now_ns();
					idle_ms = 0;
				}
				continue;
			}
			st = get_stats();
			if (st.emitted >= opt.n && !st.pending && !st.queued)
				break;
			idle_ms += SETTLE_MS;
			if (idle_ms > IDLE_TIMEOUT_MS)
				fail("no event within the idle timeout");
		}
	}
	/* Anything still in flight when the last seqno came is read too. */
	if (opt.blocking && fcntl(dev_fd, F_SETFL, O_NONBLOCK))
		die("fcntl");
	drain();
	st = get_stats();
	/* Drops after the last event received leave no gap: count them too. */
	if (opt.soak)
		lost += st.seqno - last_seqno;
	else if (opt.n > last_seqno)
		lost += opt.n - last_seqno;

	printf("{\"receiver\": \"c\", \"transport\": \"%s\", \"mode\": \"%s\", \"events\": %llu, "
	       "\"received\": %llu, \"emitted\": %llu, \"delivered\": %llu, \"dropped\": %llu, "
	       "\"pending\": %llu, \"lost\": %llu, \"reads\": %llu, \"seconds\": %.6f, "
	       "\"seqno\": %llu, \"by_source\": {\"user\": %llu, \"timer\": %llu, \"edu\": %llu, "
	       "\"other\": %llu}",
	       transport_names[opt.transport],
	       opt.soak ? "soak" : opt.latency ? "latency" : "throughput",
	       (unsigned long long)opt.n, (unsigned long long)received,
	       (unsigned long long)st.emitted, (unsigned long long)st.delivered,
	       (unsigned long long)st.dropped, (unsigned long long)st.pending,
	       (unsigned long long)lost, (unsigned long long)batches, (double)(t_last - t0) / 1e9,
	       (unsigned long long)st.seqno, (unsigned long long)by_source[0],
	       (unsigned long long)by_source[1], (unsigned long long)by_source[2],
	       (unsigned long long)by_source[3]);
	if (opt.latency) {
		if (opt.transport != T_SIGNAL || !opt.raise_path)
			print_pcts("", lat, n_lat);
		if (opt.raise_path) {
			print_pcts("raise_", lat_raise, n_lat);
			print_pcts("trigger_", trigger, TRIGGER_SAMPLES);
		} else
			print_pcts("stamp_", stamp_off, n_stamp_off);
	}
	printf("}\n");
	if (opt.samples && opt.latency) {
		int irq = opt.transport != T_SIGNAL || !opt.raise_path;

		write_samples(opt.samples, irq ? lat : lat_raise, n_lat);
	}
	return 0;
}

/* --- the emitter ------------------------------------------------------------ */

/* One emitting thread's share of a throughput run. */
struct emit_share {
	pthread_t thread;
	uint64_t n, done, queued, failed;
	int fd;
};

static const char *raise_attr;

static void *emit_thread(void *arg)
{
	struct emit_share *sh = arg;
	struct upcall_emit req = { 0 };

	for (sh->done = 0; sh->done < sh->n; sh->done++) {
		int r;

		if (raise_attr) {
			if (pwrite(sh->fd, "1", 1, 0) != 1)
				die(raise_attr);
			continue;
		}
		req.value = now_ns();
		r = ioctl(sh->fd, UPCALL_IOC_EMIT, &req);
		if (r > 0)
			sh->queued += (uint64_t)r;
		else
			sh->failed++;
	}
	return NULL;
}

static int cmd_emit(unsigned int gap_us, unsigned int threads)
{
	struct upcall_emit req = { 0 };
	struct timespec gap = { .tv_sec = gap_us / 1000000, .tv_nsec = (gap_us % 1000000) * 1000L };
	struct emit_share *sh;
	uint64_t i = 0, t0 = 0, failed = 0, queued = 0;
	char c;
	ssize_t r;

	dev_fd = raise_attr ? open(raise_attr, O_WRONLY | O_CLOEXEC) :
			      open(opt.device, O_WRONLY | O_CLOEXEC);
	if (dev_fd < 0)
		die(raise_attr ? raise_attr : opt.device);
	if (!opt.latency) {
		/* Threads share the file, as the threads of one program would. */
		sh = calloc(threads, sizeof(*sh));
		if (!sh)
			die("calloc");
		r = read(opt.sync_fd, &c, 1);
		if (r < 0)
			die("read sync pipe");
		if (r && gap_us)
			nanosleep(&gap, NULL);
		t0 = now_ns();
		for (unsigned int k = 0; r && k < threads; k++) {
			sh[k].n = opt.n / threads + (k < opt.n % threads);
			sh[k].fd = dev_fd;
			errno = pthread_create(&sh[k].thread, NULL, emit_thread, &sh[k]);
			if (errno)
				die("pthread_create");
		}
		for (unsigned int k = 0; r && k < threads; k++) {
			pthread_join(sh[k].thread, NULL);
			i += sh[k].done;
			queued += sh[k].queued;
			failed += sh[k].failed;
		}
		free(sh);
	}
	for (; opt.latency && i < opt.n; i++) {
		r = read(opt.sync_fd, &c, 1);
		if (r == 0)
			break; /* the receiver is gone */
		if (r < 0)
			die("read sync pipe");
		if (gap_us)
			nanosleep(&gap, NULL);
		if (i == 0)
			t0 = now_ns();
		req.value = now_ns();
		r = ioctl(dev_fd, UPCALL_IOC_EMIT, &req);
		if (r > 0)
			queued += (uint64_t)r;
		else
			failed++;
	}
	printf("{\"emitter\": \"c\", \"mode\": \"%s\", \"emitted\": %llu, \"unqueued\": %llu, "
	       "\"queued\": %llu, \"threads\": %u, \"raise\": %s, \"seconds\": %.6f}\n",
	       opt.latency ? "latency" : "throughput", (unsigned long long)i,
	       (unsigned long long)failed, (unsigned long long)queued, opt.latency ? 1 : threads,
	       raise_attr ? "true" : "false", (double)(now_ns() - t0) / 1e9);
	return 0;
}

/* --- uio_pci_generic: the same interrupt, the minimal kernel path --------- */

#define EDU_REG_IRQ_STATUS 0x24
#define EDU_REG_IRQ_RAISE 0x60
#define EDU_REG_IRQ_ACK 0x64
#define PCI_COMMAND_OFF 0x04
#define PCI_COMMAND_INTX_DISABLE 0x400

static void intx_unmask(int cfg_fd)
{
	uint16_t cmd;

	if (pread(cfg_fd, &cmd, sizeof(cmd), PCI_COMMAND_OFF) != sizeof(cmd))
		die("read PCI command");
	if (!(cmd & PCI_COMMAND_INTX_DISABLE))
		return;
	cmd &= ~PCI_COMMAND_INTX_DISABLE;
	if (pwrite(cfg_fd, &cmd, sizeof(cmd), PCI_COMMAND_OFF) != sizeof(cmd))
		die("write PCI command");
}

static int cmd_uio(const char *uio, const char *pci)
{
	char path[512];
	volatile uint32_t *regs;
	uint32_t count, status;
	int uio_fd, cfg_fd, res_fd;
	uint64_t i, t0, t1, start;

	lat = calloc(opt.n, sizeof(*lat));
	if (!lat)
		die("calloc");
	uio_fd = open(uio, O_RDONLY | O_CLOEXEC);
	if (uio_fd < 0)
		die(uio);
	snprintf(path, sizeof(path), "%s/config", pci);
	cfg_fd = open(path, O_RDWR | O_CLOEXEC);
	if (cfg_fd < 0)
		die(path);
	snprintf(path, sizeof(path), "%s/resource0", pci);
	res_fd = open(path, O_RDWR | O_SYNC | O_CLOEXEC);
	if (res_fd < 0)
		die(path);
	regs = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, res_fd, 0);
	if (regs == MAP_FAILED)
		die("mmap resource0");

	status = regs[EDU_REG_IRQ_STATUS / 4];
	if (status)
		regs[EDU_REG_IRQ_ACK / 4] = status;
	intx_unmask(cfg_fd);
	start = now_ns();
	for (i = 0; i < opt.n; i++) {
		t0 = now_ns();
		regs[EDU_REG_IRQ_RAISE / 4] = 1;
		if (read(uio_fd, &count, sizeof(count)) != sizeof(count))
			die("read uio");
		t1 = now_ns();
		lat[i] = t1 - t0;
		/* uio_pci_generic masked INTx in its handler: ack, then unmask. */
		status = regs[EDU_REG_IRQ_STATUS / 4];
		regs[EDU_REG_IRQ_ACK / 4] = status;
		intx_unmask(cfg_fd);
	}
	printf("{\"receiver\": \"c\", \"transport\": \"uio\", \"mode\": \"latency\", "
	       "\"events\": %llu, \"received\": %llu, \"emitted\": %llu, \"delivered\": %llu, "
	       "\"dropped\": 0, \"pending\": 0, \"lost\": 0, \"seconds\": %.6f",
	       (unsigned long long)opt.n, (unsigned long long)i, (unsigned long long)i,
	       (unsigned long long)i, (double)(now_ns() - start) / 1e9);
	print_pcts("raise_", lat, i);
	printf("}\n");
	if (opt.samples)
		write_samples(opt.samples, lat, i);
	return 0;
}

/* --- command line --------------------------------------------------------- */

static void usage(void)
{
	fputs("usage: upcall-bench recv signal|queue|fasync|eventfd|netlink latency|throughput N\n"
	      "                    [--sync-fd FD] [--samples PATH] [--queue-size N] [--signo N]\n"
	      "                    [--raise PATH] [--device PATH] [--blocking]\n"
	      "       upcall-bench recv TRANSPORT soak 0 --stop-fd FD [--sync-fd FD] ...\n"
	      "       upcall-bench emit latency|throughput N --sync-fd FD [--gap-us N]\n"
	      "                    [--threads N] [--raise PATH]\n"
	      "       upcall-bench uio N --uio /dev/uioX --pci /sys/bus/pci/devices/D\n"
	      "                    [--samples PATH]\n"
	      "each takes --cpu N to run pinned to CPU N\n",
	      stderr);
	exit(2);
}

static unsigned long long number(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || !*s || *end)
		usage();
	return v;
}

int main(int argc, char **argv)
{
	const char *cmd, *uio = NULL, *pci = NULL;
	unsigned int gap_us = 0, threads = 1;
	int cpu = -1;
	int i, pos = 0;
	const char *args[3] = { 0 };

	if (argc < 2)
		usage();
	cmd = argv[1];
	for (i = 2; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--blocking")) {
			opt.blocking = 1;
		} else if (!strncmp(a, "--", 2)) {
			if (i + 1 >= argc)
				usage();
			if (!strcmp(a, "--sync-fd"))
				opt.sync_fd = (int)number(argv[++i]);
			else if (!strcmp(a, "--samples"))
				opt.samples = argv[++i];
			else if (!strcmp(a, "--queue-size"))
				opt.queue_size = (unsigned int)number(argv[++i]);
			else if (!strcmp(a, "--signo"))
				opt.signo = (int)number(argv[++i]);
			else if (!strcmp(a, "--raise"))
				opt.raise_path = argv[++i];
			else if (!strcmp(a, "--device"))
				opt.device = argv[++i];
			else if (!strcmp(a, "--gap-us"))
				gap_us = (unsigned int)number(argv[++i]);
			else if (!strcmp(a, "--uio"))
				uio = argv[++i];
			else if (!strcmp(a, "--pci"))
				pci = argv[++i];
			else if (!strcmp(a, "--threads"))
				threads = (unsigned int)number(argv[++i]);
			else if (!strcmp(a, "--stop-fd"))
				opt.stop_fd = (int)number(argv[++i]);
			else if (!strcmp(a, "--cpu"))
				cpu = (int)number(argv[++i]);
			else
				usage();
		} else if (pos < 3) {
			args[pos++] = a;
		} else {
			usage();
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			die("sched_setaffinity");
	}

	if (!strcmp(cmd, "uio")) {
		if (pos != 1 || !uio || !pci)
			usage();
		opt.n = number(args[0]);
		return cmd_uio(uio, pci);
	}
	if (!strcmp(cmd, "emit")) {
		if (pos != 2 || opt.sync_fd < 0)
			usage();
		opt.latency = !strcmp(args[0], "latency");
		if (!opt.latency && strcmp(args[0], "throughput"))
			usage();
		opt.n = number(args[1]);
		raise_attr = opt.raise_path;
		if (!threads || threads > 64 || (raise_attr && opt.latency))
			usage();
		return cmd_emit(gap_us, threads);
	}
	if (strcmp(cmd, "recv") || pos != 3)
		usage();
	for (i = 0; i < 5; i++)
		if (!strcmp(args[0], transport_names[i]))
			break;
	if (i == 5)
		usage();
	opt.transport = (enum transport)i;
	opt.latency = !strcmp(args[1], "latency");
	opt.soak = !strcmp(args[1], "soak");
	if (!opt.latency && !opt.soak && strcmp(args[1], "throughput"))
		usage();
	opt.n = number(args[2]);
	if ((opt.soak != (opt.stop_fd >= 0)) || (!opt.n && !opt.soak) || (opt.soak && opt.latency) ||
	    ((!opt.latency && (opt.raise_path || opt.blocking))) ||
	    (opt.blocking && opt.transport != T_QUEUE))
		usage();
	return cmd_recv();
}
