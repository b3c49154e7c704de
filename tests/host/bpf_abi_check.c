// SPDX-License-Identifier: GPL-2.0
/*
 * Print every number of bpf/upcall_bpf.h as the C compiler sees it, one
 * "NAME VALUE" line each, for tests/host/test_bpf_abi.py to compare with
 * upcall.bpf._abi.  Build: cc -I bpf tests/host/bpf_abi_check.c
 */
#include <stddef.h>
#include <stdio.h>

#include "upcall_bpf.h"

#define NUM(name)	printf("%s %lld\n", #name, (long long)(name))
#define SIZE(s)		printf("sizeof.%s %zu\n", #s, sizeof(struct s))
#define FTYPE(s, f)	__typeof__(((struct s *)0)->f)
#define FIELD(s, f)	do { \
	printf("offsetof.%s.%s %zu\n", #s, #f, offsetof(struct s, f)); \
	printf("fieldsize.%s.%s %zu\n", #s, #f, sizeof(FTYPE(s, f))); \
} while (0)
/* A scalar field: also whether its type is signed. */
#define SCALAR(s, f)	do { \
	FIELD(s, f); \
	printf("signed.%s.%s %d\n", #s, #f, (FTYPE(s, f))-1 < (FTYPE(s, f))1); \
} while (0)

int main(void)
{
	NUM(UPCALL_VIA_SIGNAL);
	NUM(UPCALL_VIA_RINGBUF);
	NUM(UPCALL_VIA_SIGNAL_CURRENT);
	NUM(UPCALL_SRC_TRIGGER);
	NUM(UPCALL_SRC_TRACEPOINT);
	NUM(UPCALL_SRC_KPROBE);
	NUM(UPCALL_SRC_IRQ);
	NUM(UPCALL_TRIG_STAMP);
	NUM(UPCALL_TRIG_SEQ);
	NUM(UPCALL_REC_STAMPED);
	NUM(UPCALL_SLOT_SENT);
	NUM(UPCALL_SLOT_FAILED);

	SIZE(upcall_bpf_cfg);
	SCALAR(upcall_bpf_cfg, via);
	SCALAR(upcall_bpf_cfg, signo);
	SCALAR(upcall_bpf_cfg, filter_tgid);
	SCALAR(upcall_bpf_cfg, irq);
	SCALAR(upcall_bpf_cfg, has_comm);
	SCALAR(upcall_bpf_cfg, slot_mask);
	FIELD(upcall_bpf_cfg, comm);

	SIZE(upcall_bpf_target);
	SCALAR(upcall_bpf_target, tgid);
	SCALAR(upcall_bpf_target, tid);
	SCALAR(upcall_bpf_target, consumed);

	SIZE(upcall_bpf_record);
	SCALAR(upcall_bpf_record, seqno);
	SCALAR(upcall_bpf_record, timestamp_ns);
	SCALAR(upcall_bpf_record, value);
	SCALAR(upcall_bpf_record, source);
	SCALAR(upcall_bpf_record, flags);

	SIZE(upcall_bpf_stats);
	SCALAR(upcall_bpf_stats, emitted);
	SCALAR(upcall_bpf_stats, delivered);
	SCALAR(upcall_bpf_stats, dropped);
	SCALAR(upcall_bpf_stats, filtered);
	SCALAR(upcall_bpf_stats, slots);

	SIZE(upcall_bpf_sigslot);
	SCALAR(upcall_bpf_sigslot, seqno);
	SCALAR(upcall_bpf_sigslot, timestamp_ns);
	SCALAR(upcall_bpf_sigslot, value);
	SCALAR(upcall_bpf_sigslot, state);

	SIZE(upcall_bpf_trigger);
	SCALAR(upcall_bpf_trigger, value);
	SCALAR(upcall_bpf_trigger, count);
	SCALAR(upcall_bpf_trigger, flags);

	SIZE(upcall_bpf_whoami);
	SCALAR(upcall_bpf_whoami, pid_tgid);
	return 0;
}
