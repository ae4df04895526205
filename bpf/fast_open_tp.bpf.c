// SPDX-License-Identifier: GPL-2.0
/*
 * TCP Fast Open carries the first bytes in the SYN, before the socket is in
 * the sockhash the sk_msg verdict judges. The sendto/sendmsg/sendmmsg syscall
 * tracepoints read the payload of a MSG_FASTOPEN send (user memory, at
 * syscall entry) and, when it carries a Stratum signature in a scope with a
 * stratum rule, mark the thread in `mg_tfo`; the connect hook the send goes
 * through next (cgroup/connect4/6 on the cgroup backend, lsm/socket_sendmsg
 * on the lsm backend) refuses it with EPERM before the SYN is built, within
 * microseconds of the mark. A mark nobody took (the socket was connected
 * already, so sk_msg judges the bytes instead) expires after a second, or
 * goes at the thread's next Fast Open send. No exit tracepoint: every
 * send() on the host would pay for it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "stratum_reader.h"

/* MSG_FASTOPEN, include/linux/socket.h */
#define MG_MSG_FASTOPEN 0x20000000

/* This CPU's copy of a Fast Open payload, and a reader for it. */
struct mg_tfo_scratch {
	__u8 buf[MG_READ_BUDGET];
	struct mg_reader r;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_tfo_scratch);
} mg_tfo_scratch SEC(".maps");

/* struct user_msghdr's head and struct iovec, as user space lays them out. */
struct mg_user_msghdr {
	void *name;
	int namelen;
	void *iov;
	__u64 iovlen;
};

struct mg_iovec {
	void *base;
	__u64 len;
};

/* Reads the payload (up to the reader's budget) and marks the thread when
 * it carries a mining method. */
static __always_inline void mg_tfo_judge(const void *ubuf, __u64 size)
{
	struct mg_scope *scope = mg_current_scope();
	struct mg_tfo_scratch *scratch;
	struct mg_tfo_mark mark = {};
	struct mg_rule_ref *ref;
	__u64 id, *armed;
	__u32 zero = 0, len;
	__u8 sig = MG_SIG_NONE;

	if (!scope || !ubuf)
		return;
	ref = bpf_map_lookup_elem(&mg_stratum, &scope->policy_id);
	if (!ref)
		return;
	scratch = bpf_map_lookup_elem(&mg_tfo_scratch, &zero);
	if (!scratch)
		return;
	len = size > MG_READ_BUDGET ? MG_READ_BUDGET : size;
	len &= 2 * MG_READ_BUDGET - 1;
	if (len > MG_READ_BUDGET || !len)
		return;
	mg_reader_init(&scratch->r, scope->policy_id, ref);
	/* A non-sleepable program cannot fault a page in: a payload that is
	 * not resident is refused unjudged (fail closed), or a miner could
	 * send from an untouched file mapping. */
	if (bpf_probe_read_user(scratch->buf, len, ubuf))
		sig = MG_SIG_UNREADABLE;
	else if (mg_reader_feed(&scratch->r, scratch->buf, len) == MG_READ_MINING)
		sig = scratch->r.sig;
	id = bpf_get_current_pid_tgid();
	armed = bpf_map_lookup_elem(&mg_tfo_armed, &zero);
	if (!armed)
		return;
	if (sig == MG_SIG_NONE) {
		/* A clean Fast Open send: an old mark of this thread goes. */
		if (*armed && !bpf_map_delete_elem(&mg_tfo, &id))
			__sync_fetch_and_sub(armed, 1);
		return;
	}
	mark.sig = sig;
	mark.at_ns = bpf_ktime_get_ns();
	if (!bpf_map_update_elem(&mg_tfo, &id, &mark, BPF_NOEXIST))
		__sync_fetch_and_add(armed, 1);
	else
		bpf_map_update_elem(&mg_tfo, &id, &mark, BPF_EXIST);
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int mg_tfo_sendto(struct trace_event_raw_sys_enter *ctx)
{
	/* sendto(fd, buf, len, flags, addr, addrlen) */
	if (ctx->args[3] & MG_MSG_FASTOPEN)
		mg_tfo_judge((const void *)ctx->args[1], ctx->args[2]);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int mg_tfo_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	struct mg_user_msghdr m = {};
	struct mg_iovec iov = {};

	/* sendmsg(fd, msg, flags): the first iovec holds the first bytes. */
	if (!(ctx->args[2] & MG_MSG_FASTOPEN))
		return 0;
	if (bpf_probe_read_user(&m, sizeof(m), (const void *)ctx->args[1]) ||
	    !m.iovlen || bpf_probe_read_user(&iov, sizeof(iov), m.iov))
		return 0;
	mg_tfo_judge(iov.base, iov.len);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int mg_tfo_sendmmsg(struct trace_event_raw_sys_enter *ctx)
{
	struct mg_user_msghdr m = {};
	struct mg_iovec iov = {};

	/* sendmmsg(fd, msgvec, vlen, flags): the first message's first iovec
	 * holds the bytes the SYN carries (struct mmsghdr starts with its
	 * msghdr). */
	if (!(ctx->args[3] & MG_MSG_FASTOPEN) || !ctx->args[2])
		return 0;
	if (bpf_probe_read_user(&m, sizeof(m), (const void *)ctx->args[1]) ||
	    !m.iovlen || bpf_probe_read_user(&iov, sizeof(iov), m.iov))
		return 0;
	mg_tfo_judge(iov.base, iov.len);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
