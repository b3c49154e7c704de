/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The upcall generic netlink family for C receivers, without libnl:
 * resolve the family and its events group (CTRL_CMD_GETFAMILY) and parse
 * an UPCALL_CMD_EVENT message.  Used by bench/receiver.c and by the
 * 32-bit receiver of tests/kernel/compat_receiver.c.
 */
#ifndef UPCALL_GENL_H
#define UPCALL_GENL_H

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/upcall.h>

/* One UPCALL_CMD_EVENT message. */
struct upcall_genl_event {
	uint64_t subscriber;
	uint64_t seqno;
	uint64_t timestamp_ns;
	uint64_t value;
	uint32_t source;
};

static inline struct nlattr *nla_next(struct nlattr *a, int *rem)
{
	int len = NLA_ALIGN(a->nla_len);

	*rem -= len;
	return (struct nlattr *)((char *)a + len);
}

static inline int nla_ok(const struct nlattr *a, int rem)
{
	return rem >= (int)sizeof(*a) && a->nla_len >= sizeof(*a) && a->nla_len <= rem;
}

static inline void *nla_data(struct nlattr *a)
{
	return (char *)a + NLA_HDRLEN;
}

static inline uint64_t nla_u64(struct nlattr *a)
{
	uint64_t v;

	memcpy(&v, nla_data(a), sizeof(v));
	return v;
}

/* NLMSG_OK and NLMSG_NEXT, without their signed/unsigned comparisons. */
static inline int nlmsg_ok(const struct nlmsghdr *nh, long len)
{
	return len >= (long)sizeof(*nh) && nh->nlmsg_len >= sizeof(*nh) &&
	       (long)nh->nlmsg_len <= len;
}

static inline struct nlmsghdr *nlmsg_next(struct nlmsghdr *nh, long *len)
{
	long step = NLMSG_ALIGN(nh->nlmsg_len);

	*len -= step;
	return (struct nlmsghdr *)((char *)nh + step);
}

static inline struct nlattr *genl_attrs(struct nlmsghdr *nh, int *rem)
{
	*rem = nh->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN);
	return (struct nlattr *)((char *)NLMSG_DATA(nh) + GENL_HDRLEN);
}

/* The id of @grp, a CTRL_ATTR_MCAST_GROUPS entry, if it is the events group. */
static inline uint32_t genl_events_group(struct nlattr *grp)
{
	struct nlattr *f = nla_data(grp);
	int rem = grp->nla_len - NLA_HDRLEN;
	const char *name = NULL;
	uint32_t id = 0;

	for (; nla_ok(f, rem); f = nla_next(f, &rem)) {
		if (f->nla_type == CTRL_ATTR_MCAST_GRP_NAME)
			name = nla_data(f);
		else if (f->nla_type == CTRL_ATTR_MCAST_GRP_ID)
			memcpy(&id, nla_data(f), sizeof(id));
	}
	return name && !strcmp(name, UPCALL_GENL_MCGRP_EVENTS) ? id : 0;
}

/*
 * Ask the bound NETLINK_GENERIC socket @fd for the upcall family's id and
 * its events group.  0 on success; -1 with errno set (ENOENT: the module
 * is not loaded, or its answer lacks the family or the group).
 */
static inline int upcall_genl_resolve(int fd, uint16_t *family, uint32_t *group)
{
	struct {
		struct nlmsghdr n;
		struct genlmsghdr g;
		char attrs[64];
	} req = { 0 };
	static char buf[64 * 1024];
	size_t name_len = strlen(UPCALL_GENL_NAME) + 1;
	struct nlattr *a;
	long len;

	*family = 0;
	*group = 0;
	req.n.nlmsg_type = GENL_ID_CTRL;
	req.n.nlmsg_flags = NLM_F_REQUEST;
	req.n.nlmsg_seq = 1;
	req.g.cmd = CTRL_CMD_GETFAMILY;
	req.g.version = 1;
	a = (struct nlattr *)req.attrs;
	a->nla_type = CTRL_ATTR_FAMILY_NAME;
	a->nla_len = NLA_HDRLEN + name_len;
	memcpy(nla_data(a), UPCALL_GENL_NAME, name_len);
	req.n.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN) + NLA_ALIGN(a->nla_len);
	if (send(fd, &req, req.n.nlmsg_len, 0) < 0)
		return -1;
	len = recv(fd, buf, sizeof(buf), 0);
	if (len < 0)
		return -1;

	for (struct nlmsghdr *n = (struct nlmsghdr *)buf; nlmsg_ok(n, len);
	     n = nlmsg_next(n, &len)) {
		int rem;

		if (n->nlmsg_type == NLMSG_ERROR) {
			errno = -((struct nlmsgerr *)NLMSG_DATA(n))->error;
			return -1;
		}
		for (a = genl_attrs(n, &rem); nla_ok(a, rem); a = nla_next(a, &rem)) {
			if (a->nla_type == CTRL_ATTR_FAMILY_ID) {
				memcpy(family, nla_data(a), sizeof(*family));
			} else if ((a->nla_type & NLA_TYPE_MASK) == CTRL_ATTR_MCAST_GROUPS) {
				struct nlattr *g = nla_data(a);
				int grem = a->nla_len - NLA_HDRLEN;

				for (; nla_ok(g, grem); g = nla_next(g, &grem)) {
					uint32_t id = genl_events_group(g);

					if (id)
						*group = id;
				}
			}
		}
	}
	if (!*family || !*group) {
		errno = ENOENT;
		return -1;
	}
	return 0;
}

/* Parse @nh into @ev: 1 if it is an event of the upcall family @family. */
static inline int upcall_genl_parse(struct nlmsghdr *nh, uint16_t family,
				    struct upcall_genl_event *ev)
{
	struct nlattr *a;
	int rem;

	if (nh->nlmsg_type != family || nh->nlmsg_len < NLMSG_LENGTH(GENL_HDRLEN))
		return 0;
	memset(ev, 0, sizeof(*ev));
	for (a = genl_attrs(nh, &rem); nla_ok(a, rem); a = nla_next(a, &rem)) {
		switch (a->nla_type) {
		case UPCALL_ATTR_SUBSCRIBER:
			ev->subscriber = nla_u64(a);
			break;
		case UPCALL_ATTR_SEQNO:
			ev->seqno = nla_u64(a);
			break;
		case UPCALL_ATTR_TIMESTAMP:
			ev->timestamp_ns = nla_u64(a);
			break;
		case UPCALL_ATTR_VALUE:
			ev->value = nla_u64(a);
			break;
		case UPCALL_ATTR_SOURCE:
			memcpy(&ev->source, nla_data(a), sizeof(ev->source));
			break;
		}
	}
	return 1;
}

#endif /* UPCALL_GENL_H */
