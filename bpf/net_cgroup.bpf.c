// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup backend, destination rules: cgroup/connect4+6 (TCP and UDP
 * connect) and cgroup/sendmsg4+6 (UDP sendto/sendmsg with a destination),
 * attached to each scope's cgroup, which covers every descendant. Returning 0
 * makes the syscall fail with EPERM before any packet leaves. The connect
 * hooks also refuse a TCP Fast Open send whose payload the syscall
 * tracepoint (fast_open_tp.bpf.c) found to be Stratum.
 */
/* cgroup/sockops/sk_msg programs: the task is read only where the probe
 * allowed it (common.h). */
#define MG_PROC_GUARDED
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "net_match.h"
#include "stratum_reader.h"
#include "scope_cache.h"

/* IPPROTO_MPTCP, include/uapi/linux/in.h */
#define MG_IPPROTO_MPTCP 262
/* SOL_TCP and TCP_FASTOPEN_CONNECT, include/uapi/linux/tcp.h */
#define MG_SOL_TCP 6
#define MG_TCP_FASTOPEN_CONNECT 30

/*
 * Set by userspace before load when this kernel allows bpf_send_signal in
 * cgroup programs; the verifier prunes the call otherwise, so the object
 * still loads where the helper is missing (userspace then does the kill).
 */
const volatile bool mg_signal_in_cgroup = false;

static __always_inline int mg_judge(struct bpf_sock_addr *ctx, __u32 ip[4],
				    __u8 family)
{
	struct mg_scope here;
	struct mg_scope *scope = mg_current_scope_cached(&here);
	struct mg_rule_ref *ref;
	__u16 port;
	__u8 taken;

	if (!scope)
		return 1;
	if (family == MG_AF_INET6)
		family = mg_unmap_v4(ip);
	port = bpf_ntohs((__u16)ctx->user_port);

	/* A stratum scope's connection the full sockhash could not take
	 * would send unjudged: refused (fail closed). */
	if (ctx->protocol == 6 /* IPPROTO_TCP */ && mg_tracking_full()) {
		ref = bpf_map_lookup_elem(&mg_stratum, &scope->policy_id);
		if (ref) {
			taken = ref->action == MG_ACTION_AUDIT ? MG_ACTION_AUDIT : MG_ACTION_DENY;
			mg_tfo_event(scope, ref, taken, family, ip, port, MG_SIG_UNTRACKED);
			if (taken != MG_ACTION_AUDIT)
				return 0;
		}
	}

	/* A TCP Fast Open sendto connects here, before its SYN carries the
	 * payload: refuse it when the payload is Stratum. */
	if (ctx->protocol == 6 /* IPPROTO_TCP */) {
		__u8 sig = mg_take_tfo_signature();

		ref = sig ? bpf_map_lookup_elem(&mg_stratum, &scope->policy_id) : NULL;
		if (ref) {
			taken = ref->action;
			if (taken == MG_ACTION_KILL && mg_signal_in_cgroup)
				bpf_send_signal(MG_SIGKILL);
			mg_tfo_event(scope, ref, taken, family, ip, port, sig);
			return taken == MG_ACTION_AUDIT ? 1 : 0;
		}
	}

	ref = mg_net_match(scope, family, ip, port);
	if (!ref)
		return 1;

	taken = ref->action;
	if (taken == MG_ACTION_KILL && mg_signal_in_cgroup)
		bpf_send_signal(MG_SIGKILL);
	mg_net_event(scope, ref, taken, family, ip, port, (__u8)ctx->protocol);
	return taken == MG_ACTION_AUDIT ? 1 : 0;
}

static __always_inline int mg_judge4(struct bpf_sock_addr *ctx)
{
	__u32 ip[4] = { ctx->user_ip4, 0, 0, 0 };

	return mg_judge(ctx, ip, MG_AF_INET);
}

static __always_inline int mg_judge6(struct bpf_sock_addr *ctx)
{
	__u32 ip[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2],
			ctx->user_ip6[3] };

	return mg_judge(ctx, ip, MG_AF_INET6);
}

SEC("cgroup/connect4")
int mg_connect4(struct bpf_sock_addr *ctx)
{
	return mg_judge4(ctx);
}

SEC("cgroup/connect6")
int mg_connect6(struct bpf_sock_addr *ctx)
{
	return mg_judge6(ctx);
}

SEC("cgroup/sendmsg4")
int mg_sendmsg4(struct bpf_sock_addr *ctx)
{
	return mg_judge4(ctx);
}

SEC("cgroup/sendmsg6")
int mg_sendmsg6(struct bpf_sock_addr *ctx)
{
	return mg_judge6(ctx);
}

/*
 * TCP_FASTOPEN_CONNECT: connect() returns at once and the first write()
 * carries its bytes in the SYN, through no call the Fast Open tracepoints
 * watch and before the socket is in the sockhash. In a scope with a stratum
 * rule the option is refused (EPERM; clients fall back to a plain connect
 * or to MSG_FASTOPEN, which are judged), with a Stratum event, unless the
 * egress judge reads Stratum: it reads those bytes in the packet that
 * carries them, as it does every other.
 */
SEC("cgroup/setsockopt")
int mg_setsockopt(struct bpf_sockopt *ctx)
{
	const __u32 none[4] = {};
	struct mg_scope here, *scope;
	struct mg_rule_ref *ref;
	struct mg_config *cfg;
	__u32 zero = 0;
	__u8 taken;

	if (ctx->level != MG_SOL_TCP || ctx->optname != MG_TCP_FASTOPEN_CONNECT)
		return 1;
	cfg = bpf_map_lookup_elem(&mg_config, &zero);
	if (cfg && (cfg->flags & MG_CONFIG_EGRESS_JUDGE))
		return 1;
	scope = mg_current_scope_cached(&here);
	if (!scope)
		return 1;
	ref = bpf_map_lookup_elem(&mg_stratum, &scope->policy_id);
	if (!ref)
		return 1;
	taken = ref->action;
	if (taken == MG_ACTION_KILL && mg_signal_in_cgroup)
		bpf_send_signal(MG_SIGKILL);
	mg_tfo_event(scope, ref, taken, 0, none, 0, MG_SIG_TFO_CONNECT);
	return taken == MG_ACTION_AUDIT ? 1 : 0;
}

/*
 * MPTCP: the data of an MPTCP socket reaches its TCP subflows inside the
 * kernel, never through the sk_msg verdict that reads a stream here, so in
 * a scope with a stratum rule an MPTCP socket is refused when it is made
 * (socket() fails with EPERM; the program that asked falls back to TCP or
 * stops), with a Stratum event.
 */
SEC("cgroup/sock_create")
int mg_sock_create(struct bpf_sock *sk)
{
	const __u32 none[4] = {};
	struct mg_scope here, *scope;
	struct mg_rule_ref *ref;
	__u8 taken;

	if (sk->protocol != MG_IPPROTO_MPTCP)
		return 1;
	scope = mg_current_scope_cached(&here);
	if (!scope)
		return 1;
	ref = bpf_map_lookup_elem(&mg_stratum, &scope->policy_id);
	if (!ref)
		return 1;
	taken = ref->action;
	if (taken == MG_ACTION_KILL && mg_signal_in_cgroup)
		bpf_send_signal(MG_SIGKILL);
	mg_tfo_event(scope, ref, taken, sk->family, none, 0, MG_SIG_MPTCP);
	return taken == MG_ACTION_AUDIT ? 1 : 0;
}

char LICENSE[] SEC("license") = "GPL";
