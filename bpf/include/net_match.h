/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * Destination matching shared by the network hooks of both backends
 * (cgroup/connect*, cgroup/sendmsg*, lsm/socket_connect, lsm/socket_sendmsg).
 */
#ifndef MINERGUARD_NET_MATCH_H
#define MINERGUARD_NET_MATCH_H

#include "common.h"

#define MG_AF_INET 2
#define MG_AF_INET6 10

/*
 * The rule deciding a destination (ip in network order, IPv4 in ip[0]; port
 * in host order): the stronger of the port rule and the CIDR rule. The LPM
 * lookups run only for policies that have CIDRs (scope flags).
 */
static __always_inline struct mg_rule_ref *
mg_net_match(const struct mg_scope *scope, __u8 family, const __u32 ip[4],
	     __u16 port)
{
	struct mg_port_key pk = {};
	struct mg_rule_ref *best, *cidr = NULL;

	pk.policy_id = scope->policy_id;
	pk.port = port;
	best = bpf_map_lookup_elem(&mg_ports, &pk);

	if (family == MG_AF_INET && (scope->flags & MG_SCOPE_CIDR4)) {
		struct mg_cidr4_key k = {};

		k.prefixlen = 32 + 32;
		k.policy_id = scope->policy_id;
		__builtin_memcpy(k.addr, &ip[0], 4);
		cidr = bpf_map_lookup_elem(&mg_cidr4, &k);
	} else if (family == MG_AF_INET6 && (scope->flags & MG_SCOPE_CIDR6)) {
		struct mg_cidr6_key k = {};

		k.prefixlen = 32 + 128;
		k.policy_id = scope->policy_id;
		__builtin_memcpy(k.addr, ip, 16);
		cidr = bpf_map_lookup_elem(&mg_cidr6, &k);
	}
	return mg_stronger(best, cidr);
}

/* ::ffff:a.b.c.d is an IPv4 destination reached through a v6 socket:
 * rewrites ip to IPv4 form and returns AF_INET; AF_INET6 otherwise. */
static __always_inline __u8 mg_unmap_v4(__u32 ip[4])
{
	if (ip[0] == 0 && ip[1] == 0 && ip[2] == bpf_htonl(0xffff)) {
		ip[0] = ip[3];
		ip[1] = ip[2] = ip[3] = 0;
		return MG_AF_INET;
	}
	return MG_AF_INET6;
}

/*
 * A TCP Fast Open send of the current thread that the syscall tracepoint
 * found to carry a Stratum signature (taken: each is judged once), or 0.
 */
static __always_inline __u8 mg_take_tfo_signature(void)
{
	__u32 zero = 0;
	__u64 *armed = bpf_map_lookup_elem(&mg_tfo_armed, &zero);
	struct mg_tfo_mark *mark;
	__u8 found;
	__u64 id;

	if (!armed || !*armed)
		return 0;
	id = bpf_get_current_pid_tgid();
	mark = bpf_map_lookup_elem(&mg_tfo, &id);
	if (!mark)
		return 0;
	found = bpf_ktime_get_ns() - mark->at_ns < MG_TFO_MARK_NS ? (__u8)mark->sig : 0;
	if (!bpf_map_delete_elem(&mg_tfo, &id))
		__sync_fetch_and_sub(armed, 1);
	return found;
}

/* Reports a network decision. */
static __always_inline void mg_net_event(const struct mg_scope *scope,
					 const struct mg_rule_ref *ref,
					 __u8 taken, __u8 family,
					 const __u32 ip[4], __u16 port,
					 __u8 protocol)
{
	struct mg_event *e = mg_event_start(MG_KIND_CONNECT, scope, ref, taken);

	if (!e)
		return;
	e->family = family;
	e->port = port;
	e->protocol = protocol;
	__builtin_memcpy(e->addr, ip, 16);
	bpf_ringbuf_submit(e, 0);
}

/* Whether the Stratum sockhash is full (mg_tracking; where the sk_msg
 * verdict reads streams). */
static __always_inline bool mg_tracking_full(void)
{
	struct mg_tracking *t;
	__u32 zero = 0;

	t = bpf_map_lookup_elem(&mg_tracking, &zero);
	return t && t->limit && t->sockets >= t->limit;
}

/* Reports a refused TCP Fast Open send (a Stratum event for its
 * destination), or a refused MPTCP socket. */
static __always_inline void mg_tfo_event(const struct mg_scope *scope,
					 const struct mg_rule_ref *ref,
					 __u8 taken, __u8 family,
					 const __u32 ip[4], __u16 port, __u8 sig)
{
	struct mg_event *e = mg_event_start(MG_KIND_STRATUM, scope, ref, taken);

	if (!e)
		return;
	e->path[0] = sig;
	e->path[1] = 0;
	e->family = family;
	e->port = port;
	e->protocol = 6;
	__builtin_memcpy(e->addr, ip, 16);
	bpf_ringbuf_submit(e, 0);
}

#endif
