// SPDX-License-Identifier: GPL-2.0
/*
 * upcall sample: a module whose init fails, and tells user space why.
 *
 * The question this answers: "my module's init hits an error; how does the
 * user-space program waiting for it learn what went wrong?"  insmod's exit
 * status says only that loading failed, and the kernel log is not an
 * interface.  Before returning its error, init emits an event whose value
 * is that error (a negative errno, as a two's complement u64), so a
 * program subscribed to /dev/upcall receives it even though the module
 * never finished loading.  The event is copied into each subscriber's
 * queue by upcall_emit(), so it outlives this module.
 *
 * Source id: UPCALL_SAMPLE_INITFAIL_SOURCE (0x100).  With fail=0 the
 * module loads and emits 0 instead.
 *
 *	insmod upcall_sample_initfail.ko		fails with ENODEV
 *	insmod upcall_sample_initfail.ko err=-5	fails with EIO
 *	insmod upcall_sample_initfail.ko fail=0	loads, emits 0
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/err.h>
#include <linux/errno.h>
#include <linux/module.h>
#include <linux/upcall.h>

/* The first id outside the range upcall reserves for itself. */
#define UPCALL_SAMPLE_INITFAIL_SOURCE	0x100

static bool fail = true;
module_param(fail, bool, 0444);
MODULE_PARM_DESC(fail, "Fail init, as if the hardware were missing (default: yes)");

static int err = -ENODEV;
module_param(err, int, 0444);
MODULE_PARM_DESC(err, "The error init fails with, a negative errno (default: -ENODEV)");

static int __init upcall_sample_initfail_init(void)
{
	int ret = 0;

	if (fail) {
		/* A simulated probe failure; anything not an errno is -EINVAL. */
		ret = (err < 0 && err >= -MAX_ERRNO) ? err : -EINVAL;
		pr_info("init fails with %d; telling user space\n", ret);
	}
	upcall_emit(UPCALL_SAMPLE_INITFAIL_SOURCE, (u64)(s64)ret);
	return ret;
}

static void __exit upcall_sample_initfail_exit(void)
{
}

module_init(upcall_sample_initfail_init);
module_exit(upcall_sample_initfail_exit);

MODULE_DESCRIPTION("upcall sample: report an init failure to user space");
MODULE_AUTHOR("The upcall developers");
MODULE_LICENSE("GPL");
