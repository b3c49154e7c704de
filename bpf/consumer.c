// SPDX-License-Identifier: GPL-2.0
/*
 * The C side of `python -m upcall_dev bench-bpf`: loads the same BPF object the Python
 * library loads, fires the same user-triggered hook from a producer thread,
 * and consumes with libbpf's ring_buffer__poll() or sigtimedwait(), so the
 * Python consumer can be compared with C in the same run.
 *
 * usage: upcall-bpf-consumer OBJ ringbuf|signal latency|throughput EVENTS BURST [SAMPLES]
 * prints one JSON line; latency mode writes one u64 ns per event to SAMPLES.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "upcall_bpf.h"

#define RING_SIZE (16u << 20)
#define SLOTS (1u << 17)

static int trig_fd, stats_fd, target_fd;
static struct upcall_bpf_target tgt;
static int via, latency_mode;
static unsigned long long n_events, burst;
static atomic_ullong received;
static atomic_int producer_done;
static uint64_t *samples;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static struct upcall_bpf_stats read_stats(void)
{
	struct upcall_bpf_stats st = { 0 };
	__u32 zero = 0;

	bpf_map_lookup_elem(stats_fd, &zero, &st);
	return st;
}

static int fire(__u64 value, __u32 count, __u32 flags)
{
	struct upcall_bpf_trigger t = { .value = value, .count = count, .flags = flags };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &t, .ctx_size_in = sizeof(t));

	return bpf_prog_test_run_opts(trig_fd, &opts);
}

static void *producer(void *arg)
{
	unsigned long long sent = 0;

	(void)arg;
	while (sent < n_events) {
		__u32 n = latency_mode ? 1 : (n_events - sent < burst ? n_events - sent : burst);

		/* latency: one event in flight at a time, so it measures delivery,
		 * not queueing behind earlier events */
		if (latency_mode)
			while (atomic_load(&received) < sent)
				;
		if (fire(sent, n, latency_mode ? UPCALL_TRIG_STAMP : UPCALL_TRIG_SEQ))
			break;
		sent += n;
	}
	atomic_store(&producer_done, 1);
	return NULL;
}

static void record(uint64_t stamp)
{
	unsigned long long i = atomic_load(&received);

	if (latency_mode && samples && i < n_events)
		samples[i] = now_ns() - stamp;
	atomic_store(&received, i + 1);
	/* signal: free the slots already read (the kernel never laps them) */
	if (via == UPCALL_VIA_SIGNAL && !((i + 1) & 16383)) {
		__u32 zero = 0;

		tgt.consumed = i + 1;
		bpf_map_update_elem(target_fd, &zero, &tgt, 0);
	}
}

static int on_record(void *ctx, void *data, size_t len)
{
	const struct upcall_bpf_record *r = data;

	(void)ctx;
	if (len >= sizeof(*r))
		record(r->timestamp_ns);
	return 0;
}

static int all_in(void)
{
	struct upcall_bpf_stats st;

	if (!atomic_load(&producer_done))
		return 0;
	st = read_stats();
	return atomic_load(&received) + st.dropped >= st.emitted;
}

int main(int argc, char **argv)
{
	struct upcall_bpf_cfg cfg = { 0 };
	struct upcall_bpf_whoami who = { 0 };
	struct bpf_object *obj;
	struct bpf_program *p;
	struct ring_buffer *rb = NULL;
	struct upcall_bpf_stats st;
	pthread_t th;
	sigset_t set;
	uint64_t t0, t1;
	__u32 zero = 0;
	int sig = SIGRTMAX - 1;
	LIBBPF_OPTS(bpf_test_run_opts, wopts, .ctx_in = &who, .ctx_size_in = sizeof(who));

	if (argc < 6) {
		fprintf(stderr, "usage: %s OBJ ringbuf|signal latency|throughput EVENTS BURST [SAMPLES]\n",
			argv[0]);
		return 2;
	}
	via = strcmp(argv[2], "ringbuf") == 0 ? UPCALL_VIA_RINGBUF : UPCALL_VIA_SIGNAL;
	latency_mode = strcmp(argv[3], "latency") == 0;
	n_events = strtoull(argv[4], NULL, 10);
	burst = strtoull(argv[5], NULL, 10);
	if (!n_events || !burst)
		return 2;
	samples = calloc(n_events, sizeof(*samples));
	libbpf_set_print(NULL);

	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	bpf_object__for_each_program(p, obj) {
		const char *name = bpf_program__name(p);

		bpf_program__set_autoload(p, !strcmp(name, "upcall_trigger") ||
					      !strcmp(name, "upcall_whoami"));
	}
	cfg.via = via;
	cfg.signo = sig;
	cfg.slot_mask = SLOTS - 1;
	{
		struct bpf_map *m;

		bpf_object__for_each_map(m, obj) {
			const char *name = bpf_map__name(m);
			size_t l = strlen(name);

			if (l > 7 && !strcmp(name + l - 7, ".rodata"))
				bpf_map__set_initial_value(m, &cfg, sizeof(cfg));
			else if (!strcmp(name, "events"))
				bpf_map__set_max_entries(m, RING_SIZE);
			else if (!strcmp(name, "sigslots"))
				bpf_map__set_max_entries(m, via == UPCALL_VIA_SIGNAL ? SLOTS : 1);
		}
	}
	if (bpf_object__load(obj)) {
		fprintf(stderr, "load: %s\n", strerror(errno));
		return 1;
	}
	trig_fd = bpf_program__fd(bpf_object__find_program_by_name(obj, "upcall_trigger"));
	stats_fd = bpf_object__find_map_fd_by_name(obj, "stats");
	if (bpf_prog_test_run_opts(bpf_program__fd(bpf_object__find_program_by_name(obj,
			"upcall_whoami")), &wopts))
		return 1;
	tgt.tgid = who.pid_tgid >> 32;
	tgt.tid = (__u32)who.pid_tgid;
	target_fd = bpf_object__find_map_fd_by_name(obj, "target");
	bpf_map_update_elem(target_fd, &zero, &tgt, 0);

	/* blocked here, before the producer thread starts: it inherits the mask */
	sigemptyset(&set);
	sigaddset(&set, sig);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (via == UPCALL_VIA_RINGBUF)
		rb = ring_buffer__new(bpf_object__find_map_fd_by_name(obj, "events"), on_record,
				      NULL, NULL);

	t0 = now_ns();
	pthread_create(&th, NULL, producer, NULL);
	while (!all_in()) {
		if (rb) {
			ring_buffer__poll(rb, 10);
		} else {
			struct timespec to = { 0, 10 * 1000 * 1000 };
			siginfo_t si;

			if (sigtimedwait(&set, &si, &to) == sig)
				record((uint64_t)si.si_value.sival_ptr);
		}
	}
	t1 = now_ns();
	pthread_join(th, NULL);
	st = read_stats();

	if (latency_mode && argc > 6) {
		FILE *f = fopen(argv[6], "wb");

		if (f) {
			fwrite(samples, sizeof(*samples), atomic_load(&received), f);
			fclose(f);
		}
	}
	printf("{\"consumer\": \"c\", \"via\": \"%s\", \"mode\": \"%s\", \"emitted\": %llu, "
	       "\"received\": %llu, \"dropped\": %llu, \"seconds\": %.6f}\n",
	       argv[2], argv[3], (unsigned long long)st.emitted,
	       (unsigned long long)atomic_load(&received), (unsigned long long)st.dropped,
	       (t1 - t0) / 1e9);
	ring_buffer__free(rb);
	bpf_object__close(obj);
	free(samples);
	return 0;
}
