// SPDX-License-Identifier: GPL-2.0
/*
 * upcall: the /dev/upcall misc device.
 *
 * Each open file is one subscriber.  Subscribing, reading events and
 * counters need the file open for reading; emitting needs it open for
 * writing, so the device's mode decides who may do what (0600, root only,
 * by default).
 */
#include <linux/build_bug.h>
#include <linux/cred.h>
#include <linux/err.h>
#include <linux/eventfd.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/poll.h>
#include <linux/sched.h>
#include <linux/uaccess.h>

#include "upcall_internal.h"

/*
 * The ABI is fixed-size and the same for 32- and 64-bit callers: every
 * 64-bit field is __aligned_u64 (i386 aligns a plain __u64 to 4), and
 * every ioctl takes a pointer to one of these, which is why
 * compat_ptr_ioctl() is the whole compat_ioctl.
 */
static_assert(sizeof(struct upcall_subscribe) == 32);
static_assert(sizeof(struct upcall_emit) == 32);
static_assert(sizeof(struct upcall_stats) == 80);
static_assert(sizeof(struct upcall_event) == 48);
static_assert(sizeof(struct upcall_eventfd) == 16);
static_assert(sizeof(struct upcall_version) == 64);
static_assert(UPCALL_SI_CODE(UPCALL_SOURCE_MAX) < UPCALL_SI_CODE_BASE);

static bool upcall_all_zero(const __u32 *words, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (words[i])
			return false;
	return true;
}

static int upcall_open(struct inode *inode, struct file *file)
{
	struct upcall_sub *sub;

	sub = upcall_sub_alloc(current_uid());
	if (IS_ERR(sub))
		return PTR_ERR(sub);

	file->private_data = sub;
	return nonseekable_open(inode, file);
}

static int upcall_release(struct inode *inode, struct file *file)
{
	upcall_sub_free(file->private_data);
	return 0;
}

static long upcall_ioctl_subscribe(struct upcall_sub *sub, struct file *file,
				   void __user *argp)
{
	struct upcall_subscribe req;

	if (!(file->f_mode & FMODE_READ))
		return -EBADF;
	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (req.flags & ~UPCALL_SUBSCRIBE_FLAGS || req.reserved)
		return -EINVAL;
	if (req.flags & UPCALL_SUBSCRIBE_SOURCES ?
	    req.source_first > req.source_last ||
	    req.source_last > UPCALL_SOURCE_MAX :
	    req.source_first || req.source_last)
		return -EINVAL;

	return upcall_sub_subscribe(sub, &req);
}

static long upcall_ioctl_set_eventfd(struct upcall_sub *sub, struct file *file,
				     void __user *argp)
{
	struct eventfd_ctx *ctx = NULL;
	struct upcall_eventfd req;

	if (!(file->f_mode & FMODE_READ))
		return -EBADF;
	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (req.flags || !upcall_all_zero(req.reserved, ARRAY_SIZE(req.reserved)))
		return -EINVAL;

	if (req.fd != -1) {
		ctx = eventfd_ctx_fdget(req.fd);
		if (IS_ERR(ctx))
			return PTR_ERR(ctx);
	}
	return upcall_sub_set_eventfd(sub, ctx);
}

static long upcall_ioctl_emit(struct file *file, void __user *argp)
{
	struct upcall_emit req;

	if (!(file->f_mode & FMODE_WRITE))
		return -EBADF;
	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (req.flags || !upcall_source_user_ok(req.source) ||
	    !upcall_all_zero(req.reserved, ARRAY_SIZE(req.reserved)))
		return -EINVAL;

	return upcall_emit(req.source, req.value);
}

static long upcall_ioctl_stats(struct upcall_sub *sub, struct file *file,
			       void __user *argp)
{
	struct upcall_stats stats;

	if (!(file->f_mode & FMODE_READ))
		return -EBADF;
	upcall_sub_stats(sub, &stats);
	if (copy_to_user(argp, &stats, sizeof(stats)))
		return -EFAULT;
	return 0;
}

static long upcall_ioctl_version(void __user *argp)
{
	struct upcall_version version = {
		.abi = UPCALL_ABI_VERSION,
		.flags = UPCALL_VERSION_UNSUBSCRIBE,
	};

	strscpy(version.module, UPCALL_VERSION, sizeof(version.module));
	if (copy_to_user(argp, &version, sizeof(version)))
		return -EFAULT;
	return 0;
}

static long upcall_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct upcall_sub *sub = file->private_data;
	void __user *argp = (void __user *)arg;

	switch (cmd) {
	case UPCALL_IOC_SUBSCRIBE:
		return upcall_ioctl_subscribe(sub, file, argp);
	case UPCALL_IOC_EMIT:
		return upcall_ioctl_emit(file, argp);
	case UPCALL_IOC_STATS:
		return upcall_ioctl_stats(sub, file, argp);
	case UPCALL_IOC_SET_EVENTFD:
		return upcall_ioctl_set_eventfd(sub, file, argp);
	case UPCALL_IOC_VERSION:
		return upcall_ioctl_version(argp);
	default:
		return -ENOTTY;
	}
}

/* Records copied to user space per trip: bounded stack, few lock rounds. */
#define UPCALL_READ_CHUNK	8

static ssize_t upcall_read(struct file *file, char __user *buf, size_t count,
			   loff_t *ppos)
{
	struct upcall_event events[UPCALL_READ_CHUNK];
	struct upcall_sub *sub = file->private_data;
	size_t want, copied = 0;
	int n, ret;

	if (count < sizeof(events[0]))
		return -EINVAL;

	while (count - copied >= sizeof(events[0])) {
		want = min_t(size_t, (count - copied) / sizeof(events[0]),
			     ARRAY_SIZE(events));
		n = upcall_sub_pop(sub, events, want);
		/*
		 * No longer a QUEUE subscriber (unsubscribed, or another
		 * transport): what was copied already is the caller's.
		 */
		if (n < 0)
			return copied ? copied : n;
		if (!n) {
			if (copied)
				break;
			if (file->f_flags & O_NONBLOCK)
				return -EAGAIN;
			ret = swait_event_interruptible_exclusive(sub->rwait,
								  upcall_sub_readable(sub));
			if (ret) {
				upcall_sub_read_aborted(sub);
				return ret;
			}
			continue;
		}
		if (copy_to_user(buf + copied, events, n * sizeof(events[0]))) {
			/* Taken from the queue but never seen: count them. */
			upcall_sub_unpop(sub, n);
			return copied ? copied : -EFAULT;
		}
		copied += n * sizeof(events[0]);
		/* A buffer for the whole queue is 8192 trips: let others run. */
		cond_resched();
	}
	return copied;
}

static __poll_t upcall_poll(struct file *file, struct poll_table_struct *wait)
{
	struct upcall_sub *sub = file->private_data;

	poll_wait(file, &sub->wait, wait);
	return upcall_sub_poll(sub);
}

static int upcall_fasync(int fd, struct file *file, int on)
{
	struct upcall_sub *sub = file->private_data;
	int ret;

	ret = fasync_helper(fd, file, on, &sub->fasync);
	if (ret >= 0 && on)
		upcall_sub_fasync_on(sub);
	return ret;
}

static const struct file_operations upcall_fops = {
	.owner = THIS_MODULE,
	.open = upcall_open,
	.release = upcall_release,
	.read = upcall_read,
	.poll = upcall_poll,
	.fasync = upcall_fasync,
	.unlocked_ioctl = upcall_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice upcall_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "upcall",
	.fops = &upcall_fops,
	.mode = 0600,
};

static int __init upcall_init(void)
{
	int ret;

	ret = upcall_netlink_init();
	if (ret)
		return ret;
	ret = misc_register(&upcall_misc);
	if (ret)
		goto unregister_netlink;
	return 0;

unregister_netlink:
	upcall_netlink_exit();
	return ret;
}

static void __exit upcall_exit(void)
{
	misc_deregister(&upcall_misc);
	upcall_netlink_exit();
	upcall_core_exit();
}

module_init(upcall_init);
module_exit(upcall_exit);

MODULE_DESCRIPTION("Kernel events delivered to user space with a value");
MODULE_AUTHOR("The upcall developers");
MODULE_LICENSE("GPL");
MODULE_VERSION(UPCALL_VERSION);
