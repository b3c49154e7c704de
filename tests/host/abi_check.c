// SPDX-License-Identifier: GPL-2.0
/*
 * Print every number of the upcall ABI as the C compiler sees it, one
 * "NAME VALUE" line each, for tests/host/test_abi.py to compare with
 * upcall.abi.  Build: cc -I kmod/include/uapi tests/host/abi_check.c
 */
#include <stddef.h>
#include <stdio.h>

#include <linux/upcall.h>

#define NUM(name)	printf("%s %lld\n", #name, (long long)(name))
#define SIZE(s)		printf("sizeof.%s %zu\n", #s, sizeof(struct s))
#define ALIGN(s)	printf("alignof.%s %zu\n", #s, _Alignof(struct s))
#define OFF(s, f)	printf("offsetof.%s.%s %zu\n", #s, #f, offsetof(struct s, f))
#define FSIZE(s, f)	printf("fieldsize.%s.%s %zu\n", #s, #f, sizeof(((struct s *)0)->f))
#define FIELD(s, f)	do { OFF(s, f); FSIZE(s, f); } while (0)
/* A scalar field: also whether its type is signed. */
#define FTYPE(s, f)	__typeof__(((struct s *)0)->f)
#define SIGNED(s, f)	printf("signed.%s.%s %d\n", #s, #f, \
			       (FTYPE(s, f))-1 < (FTYPE(s, f))1)
#define SCALAR(s, f)	do { FIELD(s, f); SIGNED(s, f); } while (0)
#define STR(name)	printf("%s \"%s\"\n", #name, name)

int main(void)
{
	NUM(UPCALL_IOC_MAGIC);
	NUM(UPCALL_IOC_SUBSCRIBE);
	NUM(UPCALL_IOC_EMIT);
	NUM(UPCALL_IOC_STATS);
	NUM(UPCALL_IOC_SET_EVENTFD);
	NUM(UPCALL_IOC_VERSION);
	NUM(UPCALL_ABI_VERSION);
	NUM(UPCALL_VERSION_UNSUBSCRIBE);
	NUM(UPCALL_TRANSPORT_NONE);
	NUM(UPCALL_TRANSPORT_SIGNAL);
	NUM(UPCALL_TRANSPORT_QUEUE);
	NUM(UPCALL_TRANSPORT_NETLINK);
	NUM(UPCALL_QUEUE_DEFAULT);
	NUM(UPCALL_QUEUE_MIN);
	NUM(UPCALL_QUEUE_MAX);
	NUM(UPCALL_SUBSCRIBE_THREAD);
	NUM(UPCALL_SUBSCRIBE_UNICAST);
	NUM(UPCALL_SUBSCRIBE_SOURCES);
	NUM(UPCALL_SUBSCRIBE_FLAGS);
	NUM(UPCALL_SOURCE_MAX);
	NUM(UPCALL_SOURCE_RESERVED_MAX);
	NUM(UPCALL_SOURCE_USER);
	NUM(UPCALL_SOURCE_TIMER);
	NUM(UPCALL_SOURCE_EDU);
	NUM(UPCALL_SI_CODE_BASE);
	printf("UPCALL_SI_CODE.0 %d\n", UPCALL_SI_CODE(0));
	printf("UPCALL_SI_CODE.1 %d\n", UPCALL_SI_CODE(1));
	printf("UPCALL_SI_CODE.SOURCE_MAX %d\n", UPCALL_SI_CODE(UPCALL_SOURCE_MAX));

	STR(UPCALL_GENL_NAME);
	NUM(UPCALL_GENL_VERSION);
	STR(UPCALL_GENL_MCGRP_EVENTS);
	NUM(UPCALL_CMD_UNSPEC);
	NUM(UPCALL_CMD_EVENT);
	NUM(UPCALL_CMD_EMIT);
	NUM(UPCALL_CMD_MAX);
	NUM(UPCALL_ATTR_UNSPEC);
	NUM(UPCALL_ATTR_PAD);
	NUM(UPCALL_ATTR_SUBSCRIBER);
	NUM(UPCALL_ATTR_SEQNO);
	NUM(UPCALL_ATTR_TIMESTAMP);
	NUM(UPCALL_ATTR_VALUE);
	NUM(UPCALL_ATTR_SOURCE);
	NUM(UPCALL_ATTR_MAX);

	SIZE(upcall_event);
	ALIGN(upcall_event);
	SCALAR(upcall_event, seqno);
	SCALAR(upcall_event, timestamp_ns);
	SCALAR(upcall_event, value);
	SCALAR(upcall_event, source);
	SCALAR(upcall_event, flags);
	FIELD(upcall_event, reserved);

	SIZE(upcall_subscribe);
	ALIGN(upcall_subscribe);
	SCALAR(upcall_subscribe, transport);
	SCALAR(upcall_subscribe, flags);
	SCALAR(upcall_subscribe, signo);
	SCALAR(upcall_subscribe, queue_size);
	SCALAR(upcall_subscribe, netlink_fd);
	SCALAR(upcall_subscribe, source_first);
	SCALAR(upcall_subscribe, source_last);
	SCALAR(upcall_subscribe, reserved);

	SIZE(upcall_emit);
	ALIGN(upcall_emit);
	SCALAR(upcall_emit, value);
	SCALAR(upcall_emit, source);
	SCALAR(upcall_emit, flags);
	FIELD(upcall_emit, reserved);

	SIZE(upcall_stats);
	ALIGN(upcall_stats);
	SCALAR(upcall_stats, emitted);
	SCALAR(upcall_stats, delivered);
	SCALAR(upcall_stats, dropped);
	SCALAR(upcall_stats, seqno);
	SCALAR(upcall_stats, pending);
	SCALAR(upcall_stats, transport);
	SCALAR(upcall_stats, signo);
	SCALAR(upcall_stats, id);
	SCALAR(upcall_stats, queue_size);
	SCALAR(upcall_stats, queued);
	FIELD(upcall_stats, reserved);

	SIZE(upcall_eventfd);
	ALIGN(upcall_eventfd);
	SCALAR(upcall_eventfd, fd);
	SCALAR(upcall_eventfd, flags);
	FIELD(upcall_eventfd, reserved);

	SIZE(upcall_version);
	ALIGN(upcall_version);
	SCALAR(upcall_version, abi);
	SCALAR(upcall_version, flags);
	FIELD(upcall_version, module);
	FIELD(upcall_version, reserved);
	return 0;
}
