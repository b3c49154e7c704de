// SPDX-License-Identifier: GPL-2.0
/*
 * upcall client, optional dependency: uses upcall when it is loaded and
 * works without it.
 *
 * Each use looks upcall_emit() up with symbol_get(), which holds a
 * reference on upcall.ko until symbol_put(): upcall may be loaded before
 * this module, after it, or never, and may be unloaded while this module
 * stays.  Nothing links the two: depmod records no dependency, modprobe
 * does not load upcall for it, and the build needs upcall's header only
 * (no KBUILD_EXTRA_SYMBOLS).
 *
 * It emits once from its init (value 1) if upcall is there, and says so
 * either way; then once for each value written to its "emit" parameter,
 * with a source id of its own (0x201).  Without upcall the write fails
 * with ENODEV:
 *
 *	echo 42 > /sys/module/upcall_client_optional/parameters/emit
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/upcall.h>

/* Ids up to 0x1ff are upcall's own and its samples': take one above. */
#define UPCALL_CLIENT_OPTIONAL_SOURCE	0x201

/* Returns what upcall_emit() returns, or -ENODEV if upcall is not loaded. */
static int upcall_client_optional_emit(u64 value)
{
	int (*emit)(u32 source, u64 value);
	int ret;

	emit = symbol_get(upcall_emit);
	if (!emit)
		return -ENODEV;
	ret = emit(UPCALL_CLIENT_OPTIONAL_SOURCE, value);
	symbol_put(upcall_emit);
	return ret;
}

static int upcall_client_optional_set_emit(const char *val,
					   const struct kernel_param *kp)
{
	u64 value;
	int ret;

	ret = kstrtou64(val, 0, &value);
	if (ret)
		return ret;
	ret = upcall_client_optional_emit(value);
	if (ret == -ENODEV)
		pr_info("no upcall: event %llu not sent\n", value);
	return ret < 0 ? ret : 0;
}

static const struct kernel_param_ops upcall_client_optional_emit_ops = {
	.set = upcall_client_optional_set_emit,
};

module_param_cb(emit, &upcall_client_optional_emit_ops, NULL, 0200);
MODULE_PARM_DESC(emit, "Write a value to emit it (source 0x201), if upcall is loaded");

static int __init upcall_client_optional_init(void)
{
	int ret;

	ret = upcall_client_optional_emit(1);
	if (ret == -ENODEV)
		pr_info("loaded without upcall: nothing is sent until it is loaded\n");
	else if (ret < 0)
		pr_warn("loaded; upcall refused event 1: %d\n", ret);
	else
		pr_info("loaded with upcall: event 1 queued for %d subscribers\n", ret);
	return 0;
}

static void __exit upcall_client_optional_exit(void)
{
}

module_init(upcall_client_optional_init);
module_exit(upcall_client_optional_exit);

MODULE_DESCRIPTION("upcall client example: uses upcall_emit() if upcall is loaded");
MODULE_AUTHOR("The upcall developers");
MODULE_LICENSE("GPL");
