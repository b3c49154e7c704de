// SPDX-License-Identifier: GPL-2.0
/*
 * Helper processes for tests/kernel/test_upstream.py, built by the test
 * with the host's cc (the guest shares the host's files).
 *
 *   zombie SIGNO COUNT
 *	Subscribe the process to SIGNO, then end the main thread with
 *	pthread_exit() while a second thread lives on and waits for the
 *	signals.  Prints "ready" once the main thread is a zombie, then
 *	"RECEIVED DELIVERED DROPPED PENDING" after COUNT signals or 3 s
 *	without one.
 *
 *   subscribe SIGNO PROGRAM
 *	Subscribe the process to SIGNO (blocked) and exec PROGRAM (a set-uid
 *	copy of this helper) as "PROGRAM setuid SIGNO FD".
 *
 *   setuid SIGNO FD
 *	Prints "ready UID EUID", then reads the lines "COUNT" from stdin: for
 *	each, waits for COUNT signals (or 3 s without one) and prints how many
 *	came.  A line "drop" makes every uid root (setresuid(0, 0, 0)) and
 *	prints "dropped"; "stats" prints "DELIVERED DROPPED PENDING" of FD.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/upcall.h>

static int dev_fd = -1;

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void subscribe_process(int signo)
{
	struct upcall_subscribe req = {
		.transport = UPCALL_TRANSPORT_SIGNAL,
		.signo = signo,
	};
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, signo);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		die("sigprocmask");
	dev_fd = open("/dev/upcall", O_RDONLY);
	if (dev_fd < 0)
		die("open /dev/upcall");
	if (ioctl(dev_fd, UPCALL_IOC_SUBSCRIBE, &req))
		die("UPCALL_IOC_SUBSCRIBE");
}

/* Signals received, up to @count, until 3 s pass without one. */
static unsigned long receive(int signo, unsigned long count)
{
	struct timespec timeout = { .tv_sec = 3 };
	unsigned long got = 0;
	siginfo_t info;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, signo);
	while (got < count) {
		if (sigtimedwait(&set, &info, &timeout) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		got++;
	}
	return got;
}

static struct upcall_stats stats(void)
{
	struct upcall_stats st;

	memset(&st, 0, sizeof(st));
	if (ioctl(dev_fd, UPCALL_IOC_STATS, &st))
		die("UPCALL_IOC_STATS");
	return st;
}

static int zombie_signo;
static unsigned long zombie_count;
static pid_t zombie_leader;

static int leader_is_zombie(void)
{
	char path[64], buf[256], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", zombie_leader,
		 zombie_leader);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] == 'Z';
}

static void *zombie_thread(void *arg)
{
	struct timespec tick = { .tv_nsec = 10 * 1000 * 1000 };
	struct upcall_stats st;
	unsigned long got;

	(void)arg;
	while (!leader_is_zombie())
		nanosleep(&tick, NULL);
	printf("ready\n");
	fflush(stdout);
	got = receive(zombie_signo, zombie_count);
	/* Let the module finish with the events that nobody took. */
	do {
		st = stats();
		if (st.pending)
			nanosleep(&tick, NULL);
	} while (st.pending);
	printf("%lu %llu %llu %llu\n", got, (unsigned long long)st.delivered,
	       (unsigned long long)st.dropped, (unsigned long long)st.pending);
	fflush(stdout);
	exit(0);
}

static int run_zombie(int signo, unsigned long count)
{
	pthread_t thread;

	zombie_signo = signo;
	zombie_count = count;
	zombie_leader = getpid();
	subscribe_process(signo);
	if (pthread_create(&thread, NULL, zombie_thread, NULL))
		die("pthread_create");
	pthread_exit(NULL);
}

static int run_setuid(int signo)
{
	struct upcall_stats st;
	char line[64];

	printf("ready %d %d\n", (int)getuid(), (int)geteuid());
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		if (!strncmp(line, "drop", 4)) {
			if (setresuid(0, 0, 0))
				die("setresuid");
			printf("dropped\n");
		} else if (!strncmp(line, "stats", 5)) {
			st = stats();
			printf("%llu %llu %llu\n",
			       (unsigned long long)st.delivered,
			       (unsigned long long)st.dropped,
			       (unsigned long long)st.pending);
		} else {
			printf("%lu\n", receive(signo, strtoul(line, NULL, 0)));
		}
		fflush(stdout);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "zombie"))
		return run_zombie(atoi(argv[2]), strtoul(argv[3], NULL, 0));
	if (argc == 4 && !strcmp(argv[1], "subscribe")) {
		char fd[16], signo[16];

		subscribe_process(atoi(argv[2]));
		snprintf(fd, sizeof(fd), "%d", dev_fd);
		snprintf(signo, sizeof(signo), "%d", atoi(argv[2]));
		execl(argv[3], argv[3], "setuid", signo, fd, (char *)NULL);
		die("execl");
	}
	if (argc == 4 && !strcmp(argv[1], "setuid")) {
		dev_fd = atoi(argv[3]);
		return run_setuid(atoi(argv[2]));
	}
	fprintf(stderr, "usage: see the comment at the top of %s\n", __FILE__);
	return 2;
}
