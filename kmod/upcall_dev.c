// SPDX-License-Identifier: GPL-2.0
/*
 * upcall: the /dev/upcall misc device.
 *
 * Each open file is one subscriber.  Subscribing and reading counters need
 * the file open for reading; emitting needs it open for writing, so the
 * device's mode decides who may do what (0600, root only, by default).
 */
#include <linux/build_bug.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/uaccess.h>

#include "upcall_internal.h"

/* The ABI is fixed-size and the same for 32- and 64-bit callers. */
static_assert(sizeof(struct upcall_subscribe) == 32);
static_assert(sizeof(struct upcall_emit) == 32);
static_assert(sizeof(struct upcall_stats) == 80);
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

	sub = upcall_sub_alloc();
	if (!sub)
		return -ENOMEM;

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
	if (req.flags & ~UPCALL_SUBSCRIBE_FLAGS || req.padding ||
	    !upcall_all_zero(req.reserved, ARRAY_SIZE(req.reserved)))
		return -EINVAL;

	switch (req.transport) {
	case UPCALL_TRANSPORT_SIGNAL:
		if (req.signo > INT_MAX)
			return -EINVAL;
		return upcall_sub_subscribe_signal(sub, req.signo,
						   req.flags & UPCALL_SUBSCRIBE_THREAD);
	default:
		return -EINVAL;
	}
}

static long upcall_ioctl_emit(struct file *file, void __user *argp)
{
	struct upcall_emit req;

	if (!(file->f_mode & FMODE_WRITE))
		return -EBADF;
	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.source > UPCALL_SOURCE_MAX ||
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
	default:
		return -ENOTTY;
	}
}

static const struct file_operations upcall_fops = {
	.owner = THIS_MODULE,
	.open = upcall_open,
	.release = upcall_release,
	.unlocked_ioctl = upcall_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = no_llseek,
};

static struct miscdevice upcall_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "upcall",
	.fops = &upcall_fops,
	.mode = 0600,
};

static int __init upcall_init(void)
{
	return misc_register(&upcall_misc);
}

static void __exit upcall_exit(void)
{
	misc_deregister(&upcall_misc);
}

module_init(upcall_init);
module_exit(upcall_exit);

MODULE_DESCRIPTION("Kernel events delivered to user space with a value");
MODULE_AUTHOR("The upcall developers");
MODULE_LICENSE("GPL");
