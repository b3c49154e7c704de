// SPDX-License-Identifier: GPL-2.0
/*
 * upcall: the real-time signal transport.
 *
 * Each event is one signal laid out as SI_QUEUE (see the "Signal layout"
 * comment in the UAPI header), so signalfd(2) and sigwaitinfo(2) both see
 * the value.  The subscriber is held as a counted struct pid: if it exits
 * its number may be reused, but not its struct pid, so a newcomer never
 * receives its signals.
 */
#include <linux/cred.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/signal.h>
#include <linux/uidgid.h>

#include "upcall_internal.h"

int upcall_signal_target_init(struct upcall_signal_target *target, int signo,
			      bool thread)
{
	const struct cred *cred = current_cred();

	if (signo < SIGRTMIN || signo > SIGRTMAX)
		return -EINVAL;

	target->type = thread ? PIDTYPE_PID : PIDTYPE_TGID;
	target->pid = get_task_pid(current, target->type);
	target->signo = signo;
	target->uid = cred->uid;
	target->euid = cred->euid;
	return 0;
}

void upcall_signal_target_release(struct upcall_signal_target *target)
{
	put_pid(target->pid);
	target->pid = NULL;
}

/*
 * The subscriber may since have changed its credentials; signal it only
 * while it shares a uid with the subscriber, as fcntl(F_SETOWN) signals
 * are checked (sigio_perm() in fs/fcntl.c).  A set-uid exec keeps the real
 * uid, so its signals go on (the same user may kill(2) the program anyway);
 * they stop once no uid of the subscriber's is left.  No LSM hook is
 * called: send_sig_info() has none, and the one sigio_perm()'s callers
 * add (security_file_send_sigiotask()) is not exported.
 */
static bool upcall_signal_allowed(const struct upcall_signal_target *target,
				  struct task_struct *task)
{
	const struct cred *cred = __task_cred(task);

	return uid_eq(target->euid, GLOBAL_ROOT_UID) ||
	       uid_eq(target->euid, cred->suid) ||
	       uid_eq(target->euid, cred->uid) ||
	       uid_eq(target->uid, cred->suid) ||
	       uid_eq(target->uid, cred->uid);
}

/*
 * The thread to queue a process-directed signal on.  The functions that
 * queue a siginfo on the thread group's shared pending set are not
 * exported to modules (kill_pid_info(), group_send_sig_info()), and
 * kill_pid_usb_asyncio(), which is, fixes si_code; so the signal goes to
 * one thread: the main thread while it runs, else the first live thread.
 * A thread that has begun to exit never dequeues another signal, and the
 * main thread, once it has called pthread_exit(), stays a zombie until the
 * whole process ends: a signal queued there would count as delivered and
 * never be seen.  Called under rcu_read_lock().
 */
static struct task_struct *upcall_signal_thread(struct task_struct *leader)
{
	struct task_struct *t;

	for_each_thread(leader, t)
		if (!(READ_ONCE(t->flags) & PF_EXITING))
			return t;
	return NULL;
}

/*
 * A signal that @task ignores (SIG_IGN, and not blocked, as sig_ignored()
 * in kernel/signal.c decides) is discarded by send_sig_info(), which still
 * returns 0.  The handler is read without the siglock: one that changes
 * while the event is sent decides for that event either way.
 */
static bool upcall_signal_ignored(struct task_struct *task, int signo)
{
	struct sighand_struct *sighand = rcu_dereference(task->sighand);

	if (!sighand || sigismember(&task->blocked, signo) ||
	    sigismember(&task->real_blocked, signo))
		return false;
	return READ_ONCE(sighand->action[signo - 1].sa.sa_handler) == SIG_IGN;
}

/**
 * upcall_signal_send() - queue one event's signal on the subscriber
 * @target: the subscriber
 * @ev: the event
 *
 * A process-directed signal is queued on a live thread of the process (see
 * upcall_signal_thread()), so that one whose main thread has exited still
 * gets it.
 *
 * Context: irq_work; takes the target's siglock.
 * Return: 0 when the signal was queued; -ESRCH when nobody can take it: the
 * subscriber is gone, has no live thread, or ignores the signal (SIG_IGN);
 * -EPERM when its credentials changed; -EAGAIN when the kernel refused to
 * queue more signals (RLIMIT_SIGPENDING) or had no memory for one.
 */
int upcall_signal_send(const struct upcall_signal_target *target,
		       const struct upcall_event *ev)
{
	struct kernel_siginfo info;
	struct task_struct *task;
	int ret = -ESRCH;

	clear_siginfo(&info);
	info.si_signo = target->signo;
	info.si_errno = (int)lower_32_bits(ev->seqno);
	info.si_code = UPCALL_SI_CODE(ev->source);
	info.si_ptr = u64_to_user_ptr(ev->value);

	rcu_read_lock();
	task = pid_task(target->pid, target->type);
	if (task && target->type == PIDTYPE_TGID)
		task = upcall_signal_thread(task);
	else if (task && (READ_ONCE(task->flags) & PF_EXITING))
		task = NULL;
	if (!task || upcall_signal_ignored(task, target->signo))
		ret = -ESRCH;
	else if (!upcall_signal_allowed(target, task))
		ret = -EPERM;
	else
		ret = send_sig_info(target->signo, &info, task);
	rcu_read_unlock();
	return ret;
}
