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
 * The subscriber may since have exec'd a set-uid program; signal it only
 * while its credentials still match the subscriber's, as fcntl(F_SETOWN)
 * signals are checked (sigio_perm() in fs/fcntl.c).
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

/**
 * upcall_signal_send() - queue one event's signal on the subscriber
 * @target: the subscriber
 * @ev: the event
 *
 * Context: irq_work; takes the target's siglock.
 * Return: 0 when the signal was queued; -ESRCH when the subscriber is gone;
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
	if (task) {
		if (upcall_signal_allowed(target, task))
			ret = send_sig_info(target->signo, &info, task);
		else
			ret = -EPERM;
	}
	rcu_read_unlock();
	return ret;
}
