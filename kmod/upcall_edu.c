// SPDX-License-Identifier: GPL-2.0
/*
 * upcall_edu: a driver for QEMU's edu PCI device (1234:11e8), whose
 * interrupt handler emits an event: a real hardware interrupt, end to end.
 * A module of its own, a client of upcall_emit() like any other driver.
 *
 * The device is described in QEMU's docs/specs/edu.rst.  Writing a value to
 * its raise register ORs it into the interrupt status register and raises
 * an interrupt; the handler reads the status, acknowledges exactly those
 * bits and emits them with UPCALL_SOURCE_EDU.  A factorial computation can
 * also raise an interrupt when it finishes (status bit 0x1).
 *
 * The interrupt is MSI when the device and the kernel allow it, else the
 * legacy INTx line, which may be shared; the module parameter force_intx
 * makes the next probe use INTx.  sysfs attributes on the
 * PCI device trigger interrupts and show what happened:
 *
 *	raise		(write) a non-zero u32 to OR into the status register
 *	factorial	(write) n: compute n! and interrupt when done
 *	irq_count	(read) interrupts this device handled since probe
 *	irq_mode	(read) "msi" or "intx"
 */
#include <linux/atomic.h>
#include <linux/device.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/iopoll.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/sysfs.h>

#include <linux/upcall.h>

#include "upcall_compat.h"

#define EDU_DRV_NAME		"upcall_edu"
#define EDU_VENDOR_ID		0x1234
#define EDU_DEVICE_ID		0x11e8

#define EDU_REG_ID		0x00
#define EDU_REG_FACTORIAL	0x08
#define EDU_REG_STATUS		0x20
#define EDU_REG_IRQ_STATUS	0x24
#define EDU_REG_IRQ_RAISE	0x60
#define EDU_REG_IRQ_ACK		0x64

/* The id register reads 0xRRrr00ed: major and minor version, then 0xed. */
#define EDU_ID_MAGIC_MASK	0xffff
#define EDU_ID_MAGIC		0x00ed

#define EDU_STATUS_COMPUTING	0x01
#define EDU_STATUS_IRQFACT	0x80

/* How long remove waits for a factorial computation to end. */
#define EDU_COMPUTE_TIMEOUT_US	100000

static bool edu_force_intx;
module_param_named(force_intx, edu_force_intx, bool, 0644);
MODULE_PARM_DESC(force_intx,
		 "Use the edu device's legacy INTx line even where MSI works (read at probe)");

/**
 * struct upcall_edu - one bound edu device
 * @pdev: the PCI device
 * @regs: BAR0, mapped for as long as the driver is bound
 * @irq: the Linux interrupt number in use
 * @msi: @irq is an MSI vector, not the (possibly shared) INTx line
 * @irq_count: interrupts the handler claimed
 * @lock: serialises factorial_store()
 */
struct upcall_edu {
	struct pci_dev *pdev;
	void __iomem *regs;
	int irq;
	bool msi;
	atomic_long_t irq_count;
	/* Serialises the two register writes that start a factorial. */
	struct mutex lock;
};

static irqreturn_t upcall_edu_irq(int irq, void *dev_id)
{
	struct upcall_edu *edu = dev_id;
	u32 status;

	status = readl(edu->regs + EDU_REG_IRQ_STATUS);
	/* Nothing raised: the interrupt is another device's on a shared line. */
	if (!status)
		return IRQ_NONE;

	/* Acknowledge only what we saw: a later raise must interrupt again. */
	writel(status, edu->regs + EDU_REG_IRQ_ACK);
	upcall_emit(UPCALL_SOURCE_EDU, status);
	/*
	 * Count after the emit: whoever sees irq_count go up (upcall trigger)
	 * knows the event has its seqno and is on its way.
	 */
	smp_mb__before_atomic();
	atomic_long_inc(&edu->irq_count);
	return IRQ_HANDLED;
}

/* Lower whatever interrupt is pending, ours or a previous driver's. */
static void upcall_edu_ack_all(struct upcall_edu *edu)
{
	u32 status = readl(edu->regs + EDU_REG_IRQ_STATUS);

	if (status)
		writel(status, edu->regs + EDU_REG_IRQ_ACK);
}

static ssize_t raise_store(struct device *dev, struct device_attribute *attr,
			   const char *buf, size_t count)
{
	struct upcall_edu *edu = dev_get_drvdata(dev);
	u32 value;
	int ret;

	ret = kstrtou32(buf, 0, &value);
	if (ret)
		return ret;
	/* Raising 0 sets no status bit: the device would not interrupt. */
	if (!value)
		return -EINVAL;

	writel(value, edu->regs + EDU_REG_IRQ_RAISE);
	return count;
}
static DEVICE_ATTR_WO(raise);

static ssize_t factorial_store(struct device *dev,
			       struct device_attribute *attr,
			       const char *buf, size_t count)
{
	struct upcall_edu *edu = dev_get_drvdata(dev);
	u32 n;
	int ret;

	ret = kstrtou32(buf, 0, &n);
	if (ret)
		return ret;

	mutex_lock(&edu->lock);
	/* The device ignores a new operand while it computes. */
	if (readl(edu->regs + EDU_REG_STATUS) & EDU_STATUS_COMPUTING) {
		ret = -EBUSY;
		goto out_unlock;
	}
	writel(EDU_STATUS_IRQFACT, edu->regs + EDU_REG_STATUS);
	writel(n, edu->regs + EDU_REG_FACTORIAL);
	ret = count;
out_unlock:
	mutex_unlock(&edu->lock);
	return ret;
}
static DEVICE_ATTR_WO(factorial);

static ssize_t irq_count_show(struct device *dev,
			      struct device_attribute *attr, char *buf)
{
	struct upcall_edu *edu = dev_get_drvdata(dev);

	return sysfs_emit(buf, "%lu\n",
			  (unsigned long)atomic_long_read(&edu->irq_count));
}
static DEVICE_ATTR_RO(irq_count);

static ssize_t irq_mode_show(struct device *dev,
			     struct device_attribute *attr, char *buf)
{
	struct upcall_edu *edu = dev_get_drvdata(dev);

	return sysfs_emit(buf, "%s\n", edu->msi ? "msi" : "intx");
}
static DEVICE_ATTR_RO(irq_mode);

static struct attribute *upcall_edu_attrs[] = {
	&dev_attr_raise.attr,
	&dev_attr_factorial.attr,
	&dev_attr_irq_count.attr,
	&dev_attr_irq_mode.attr,
	NULL
};
ATTRIBUTE_GROUPS(upcall_edu);

static int upcall_edu_probe(struct pci_dev *pdev,
			    const struct pci_device_id *id)
{
	unsigned int types = PCI_IRQ_MSI | PCI_IRQ_INTX;
	struct device *dev = &pdev->dev;
	struct upcall_edu *edu;
	u32 ident;
	int ret;

	edu = devm_kzalloc(dev, sizeof(*edu), GFP_KERNEL);
	if (!edu)
		return -ENOMEM;
	edu->pdev = pdev;
	mutex_init(&edu->lock);
	atomic_long_set(&edu->irq_count, 0);

	/* Managed: disabled and unmapped after remove, or on a failed probe. */
	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	ret = pcim_iomap_regions(pdev, BIT(0), EDU_DRV_NAME);
	if (ret)
		return ret;
	edu->regs = pcim_iomap_table(pdev)[0];

	ident = readl(edu->regs + EDU_REG_ID);
	if ((ident & EDU_ID_MAGIC_MASK) != EDU_ID_MAGIC) {
		dev_err(dev, "not an edu device: id register reads %#010x\n",
			ident);
		return -ENODEV;
	}

	/* MSI is a memory write by the device: it needs bus mastering. */
	pci_set_master(pdev);
	upcall_edu_ack_all(edu);

	if (READ_ONCE(edu_force_intx))
		types = PCI_IRQ_INTX;
	ret = pci_alloc_irq_vectors(pdev, 1, 1, types);
	if (ret < 0)
		return ret;
	edu->msi = pdev->msi_enabled;
	edu->irq = pci_irq_vector(pdev, 0);
	if (edu->irq < 0) {
		ret = edu->irq;
		goto free_vectors;
	}

	pci_set_drvdata(pdev, edu);
	ret = request_irq(edu->irq, upcall_edu_irq, edu->msi ? 0 : IRQF_SHARED,
			  EDU_DRV_NAME, edu);
	if (ret)
		goto free_vectors;

	dev_info(dev, "edu %u.%u, interrupt %d (%s)\n", ident >> 24,
		 (ident >> 16) & 0xff, edu->irq, edu->msi ? "MSI" : "INTx");
	return 0;

free_vectors:
	pci_free_irq_vectors(pdev);
	return ret;
}

static void upcall_edu_remove(struct pci_dev *pdev)
{
	struct upcall_edu *edu = pci_get_drvdata(pdev);
	u32 status;

	/*
	 * The sysfs attributes are gone already, so nothing starts a new
	 * computation; keep a running one from interrupting once it ends.
	 */
	writel(0, edu->regs + EDU_REG_STATUS);
	if (readl_poll_timeout(edu->regs + EDU_REG_STATUS, status,
			       !(status & EDU_STATUS_COMPUTING), 10,
			       EDU_COMPUTE_TIMEOUT_US))
		dev_warn(&pdev->dev, "factorial still computing at remove\n");

	/* Waits for a running handler; none runs after this. */
	free_irq(edu->irq, edu);
	/* A level-triggered INTx left asserted would hit the line's sharers. */
	upcall_edu_ack_all(edu);
	pci_free_irq_vectors(pdev);
	/* BAR0 is unmapped and the device disabled by devres after this. */
}

static const struct pci_device_id upcall_edu_ids[] = {
	{ PCI_DEVICE(EDU_VENDOR_ID, EDU_DEVICE_ID) },
	{ }
};
MODULE_DEVICE_TABLE(pci, upcall_edu_ids);

static struct pci_driver upcall_edu_driver = {
	.name = EDU_DRV_NAME,
	.id_table = upcall_edu_ids,
	.probe = upcall_edu_probe,
	.remove = upcall_edu_remove,
	.dev_groups = upcall_edu_groups,
};

module_pci_driver(upcall_edu_driver);

MODULE_DESCRIPTION("upcall: QEMU's edu PCI device, whose interrupts become upcall events");
MODULE_AUTHOR("The upcall developers");
MODULE_LICENSE("GPL");
MODULE_VERSION(UPCALL_VERSION);
