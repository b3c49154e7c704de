// SPDX-License-Identifier: GPL-2.0
/*
 * upcall: the generic netlink transport.
 *
 * Events of NETLINK subscribers are messages of the "upcall" family, one
 * each, tagged with the subscriber's id.  A subscriber that handed over its
 * socket gets its own messages by unicast, so a full socket costs only its
 * owner; the others share the "events" multicast group.  Joining the group
 * needs CAP_NET_ADMIN, as emitting over netlink does: the events are no
 * more public than /dev/upcall itself.
 *
 * The unicast target is held by its file, as audit holds auditd's socket:
 * a port id alone could pass to another process's socket once the first
 * is closed.
 */
#include <linux/net.h>
#include <linux/netlink.h>
#include <linux/nsproxy.h>
#include <linux/upcall.h>
#include <net/genetlink.h>
#include <net/net_namespace.h>
#include <net/sock.h>

#include "upcall_internal.h"

enum upcall_genl_group {
	UPCALL_GENL_GROUP_EVENTS,
};

/*
 * NLA_POLICY_MAX() holds an s16: too small for UPCALL_SOURCE_MAX.  Not
 * const: 6.1 takes a plain pointer.
 */
static struct netlink_range_validation upcall_source_range = {
	.max = UPCALL_SOURCE_MAX,
};

static const struct nla_policy upcall_genl_policy[UPCALL_ATTR_MAX + 1] = {
	[UPCALL_ATTR_VALUE] = { .type = NLA_U64 },
	[UPCALL_ATTR_SOURCE] = NLA_POLICY_FULL_RANGE(NLA_U32, &upcall_source_range),
};

static int upcall_genl_emit(struct sk_buff *skb, struct genl_info *info)
{
	u32 source = UPCALL_SOURCE_USER;
	int ret;

	if (GENL_REQ_ATTR_CHECK(info, UPCALL_ATTR_VALUE))
		return -EINVAL;
	if (info->attrs[UPCALL_ATTR_SOURCE])
		source = nla_get_u32(info->attrs[UPCALL_ATTR_SOURCE]);
	if (!upcall_source_user_ok(source)) {
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[UPCALL_ATTR_SOURCE],
				    "source id reserved for upcall's own sources");
		return -EINVAL;
	}

	ret = upcall_emit(source, nla_get_u64(info->attrs[UPCALL_ATTR_VALUE]));
	return ret < 0 ? ret : 0;
}

static const struct genl_small_ops upcall_genl_ops[] = {
	{
		.cmd = UPCALL_CMD_EMIT,
		.flags = GENL_ADMIN_PERM,
		.doit = upcall_genl_emit,
	},
};

static const struct genl_multicast_group upcall_genl_mcgrps[] = {
	[UPCALL_GENL_GROUP_EVENTS] = {
		.name = UPCALL_GENL_MCGRP_EVENTS,
		/*
		 * A group takes GENL_MCAST_CAP_*: an op's GENL_*_PERM here is
		 * not checked, and let any user listen to every subscriber.
		 */
		.flags = GENL_MCAST_CAP_NET_ADMIN,
	},
};

static struct genl_family upcall_genl_family __ro_after_init = {
	.name = UPCALL_GENL_NAME,
	.version = UPCALL_GENL_VERSION,
	.maxattr = UPCALL_ATTR_MAX,
	.policy = upcall_genl_policy,
	.module = THIS_MODULE,
	.small_ops = upcall_genl_ops,
	.n_small_ops = ARRAY_SIZE(upcall_genl_ops),
	.mcgrps = upcall_genl_mcgrps,
	.n_mcgrps = ARRAY_SIZE(upcall_genl_mcgrps),
};

static size_t upcall_netlink_msg_size(void)
{
	return 4 * nla_total_size_64bit(sizeof(u64)) +
	       nla_total_size(sizeof(u32));
}

/**
 * upcall_netlink_target_init() - take the caller's socket as a unicast target
 * @target: filled on success
 * @fd: the caller's bound NETLINK_GENERIC socket
 *
 * The family exists in the initial network namespace only, so the socket
 * must be there, and be the caller's own namespace's.
 *
 * Context: process, the subscribing task.
 * Return: 0; -EBADF or -ENOTSOCK for a descriptor that is not a socket;
 * -EINVAL for another kind of socket, one elsewhere or one not bound.
 */
int upcall_netlink_target_init(struct upcall_netlink_target *target, int fd)
{
	struct sockaddr_nl addr = {};
	struct socket *sock;
	struct net *net;
	int ret;

	sock = sockfd_lookup(fd, &ret);
	if (!sock)
		return ret;

	ret = -EINVAL;
	if (sock->sk->sk_family != AF_NETLINK ||
	    sock->sk->sk_protocol != NETLINK_GENERIC)
		goto put_sock;
	net = sock_net(sock->sk);
	if (!net_eq(net, &init_net) || !net_eq(net, current->nsproxy->net_ns))
		goto put_sock;
	ret = kernel_getsockname(sock, (struct sockaddr *)&addr);
	if (ret < 0)
		goto put_sock;
	/* Unbound: no port id yet, and none to send to. */
	ret = -EINVAL;
	if (!addr.nl_pid)
		goto put_sock;

	target->sock = sock;
	target->portid = addr.nl_pid;
	target->refused = false;
	return 0;

put_sock:
	sockfd_put(sock);
	return ret;
}

void upcall_netlink_target_release(struct upcall_netlink_target *target)
{
	if (target->sock)
		sockfd_put(target->sock);
	target->sock = NULL;
}

/**
 * upcall_netlink_send() - send one event to its subscriber or the group
 * @target: the subscriber's socket, or none for the multicast group
 * @id: the subscriber's id
 * @ev: the event
 *
 * Context: process (the subscriber's netlink work); never blocks on a
 * receiver.
 * Return: 0 when the socket, or every listener, took it; -EAGAIN when the
 * socket's receive buffer was full; -ECONNREFUSED when it refuses messages
 * from the kernel; -ESRCH when nobody listens to the group; -ENOBUFS when a
 * listener's receive buffer was full; -ENOMEM or -EMSGSIZE when the message
 * could not be built.
 */
int upcall_netlink_send(const struct upcall_netlink_target *target, u64 id,
			const struct upcall_event *ev)
{
	struct sk_buff *skb;
	void *hdr;

	if (target->refused)
		return -ECONNREFUSED;

	skb = genlmsg_new(upcall_netlink_msg_size(), GFP_KERNEL);
	if (!skb)
		return -ENOMEM;

	hdr = genlmsg_put(skb, 0, 0, &upcall_genl_family, 0, UPCALL_CMD_EVENT);
	if (!hdr)
		goto free_skb;

	if (nla_put_u64_64bit(skb, UPCALL_ATTR_SUBSCRIBER, id, UPCALL_ATTR_PAD) ||
	    nla_put_u64_64bit(skb, UPCALL_ATTR_SEQNO, ev->seqno, UPCALL_ATTR_PAD) ||
	    nla_put_u64_64bit(skb, UPCALL_ATTR_TIMESTAMP, ev->timestamp_ns,
			      UPCALL_ATTR_PAD) ||
	    nla_put_u64_64bit(skb, UPCALL_ATTR_VALUE, ev->value, UPCALL_ATTR_PAD) ||
	    nla_put_u32(skb, UPCALL_ATTR_SOURCE, ev->source))
		goto cancel_msg;

	genlmsg_end(skb, hdr);
	/* Both consume @skb; unicast with MSG_DONTWAIT. */
	if (target->sock)
		return genlmsg_unicast(sock_net(target->sock->sk), skb,
				       target->portid);
	return genlmsg_multicast(&upcall_genl_family, skb, 0,
				 UPCALL_GENL_GROUP_EVENTS, GFP_KERNEL);

cancel_msg:
	genlmsg_cancel(skb, hdr);
free_skb:
	nlmsg_free(skb);
	return -EMSGSIZE;
}

int __init upcall_netlink_init(void)
{
	return genl_register_family(&upcall_genl_family);
}

void upcall_netlink_exit(void)
{
	genl_unregister_family(&upcall_genl_family);
}
