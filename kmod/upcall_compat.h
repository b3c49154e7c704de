/* SPDX-License-Identifier: GPL-2.0 */
/*
 * upcall: the differences between the kernel versions upcall builds for,
 * in one place.
 */
#ifndef _UPCALL_COMPAT_H
#define _UPCALL_COMPAT_H

#include <linux/eventfd.h>
#include <linux/pci.h>
#include <linux/version.h>

/* eventfd_signal() lost its count argument in 6.8. */
static inline void upcall_eventfd_signal(struct eventfd_ctx *ctx)
{
#if KERNEL_VERSION(6, 8, 0) <= LINUX_VERSION_CODE
	eventfd_signal(ctx);
#else
	eventfd_signal(ctx, 1);
#endif
}

/*
 * PCI_IRQ_INTX appeared in 6.8 as the new name of PCI_IRQ_LEGACY, which
 * 6.10 removed; 6.1 (Debian 12) has only the old name.
 */
#ifndef PCI_IRQ_INTX
#define PCI_IRQ_INTX		PCI_IRQ_LEGACY
#endif

/*
 * 6.12 removed no_llseek. A file opened with nonseekable_open() and no
 * .llseek fails lseek(2) with ESPIPE on every version upcall builds for, so
 * the device leaves .llseek out and nothing here switches on it.
 */

#endif /* _UPCALL_COMPAT_H */
