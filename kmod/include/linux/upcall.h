/* SPDX-License-Identifier: GPL-2.0 */
/*
 * upcall: the in-kernel interface, for modules that tell user space
 * that something happened, with a value.
 */
#ifndef _LINUX_UPCALL_H
#define _LINUX_UPCALL_H

#include <linux/types.h>
#include <uapi/linux/upcall.h>

/*
 * upcall_emit() - send an event to every subscriber of /dev/upcall.
 * Callable from hard interrupt context, but not from NMI, noinstr code or
 * where RCU is not watching (the idle loop): see its kernel-doc at the
 * definition, kmod/upcall_core.c.
 */
int upcall_emit(u32 source, u64 value);

#endif /* _LINUX_UPCALL_H */
