// SPDX-License-Identifier: GPL-2.0
/*
 * upcall client, hard dependency: a module that calls upcall_emit().
 *
 * Built against the installed upcall-dkms package as any driver would be
 * (see ../README.md): the header from /usr/src/upcall-<version>/include,
 * upcall_emit()'s CRC from the Module.symvers DKMS kept for the kernel,
 * through KBUILD_EXTRA_SYMBOLS.  depmod records that it needs upcall, so
 * modprobe loads upcall first; insmod fails unless upcall is loaded.
 *
 * It emits once from its init (value 1), then once for each value written
 * to its "emit" parameter, with a source id of its own (0x200):
 *
 *	echo 42 > /sys/module/upcall_client_hard/parameters/emit
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/upcall.h>

/* Ids up to 0x1ff are upcall's own and its samples': take one above. */
#define UPCALL_CLIENT_HARD_SOURCE	0x200

static int upcall_client_hard_set_emit(const char *val,
				       const struct kernel_param *kp)
{
	u64 value;
	int ret;

	ret = kstrtou64(val, 0, &value);
	if (ret)
		return ret;
	ret = upcall_emit(UPCALL_CLIENT_HARD_SOURCE, value);
	return ret < 0 ? ret : 0;
}

static const struct kernel_param_ops upcall_client_hard_emit_ops = {
	.set = upcall_client_hard_set_emit,
};

module_param_cb(emit, &upcall_client_hard_emit_ops, NULL, 0200);
MODULE_PARM_DESC(emit, "Write a value to emit it (source 0x200)");

static int __init upcall_client_hard_init(void)
{
	int ret;

	ret = upcall_emit(UPCALL_CLIENT_HARD_SOURCE, 1);
	if (ret < 0)
		return ret;
	pr_info("loaded: event 1 queued for %d subscribers\n", ret);
	return 0;
}

static void __exit upcall_client_hard_exit(void)
{
}

module_init(upcall_client_hard_init);
module_exit(upcall_client_hard_exit);

MODULE_DESCRIPTION("upcall client example: calls upcall_emit() (hard dependency)");
MODULE_AUTHOR("The upcall developers");
MODULE_LICENSE("GPL");
