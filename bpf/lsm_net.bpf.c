// SPDX-License-Identifier: GPL-2.0
/*
 * lsm backend, destination rules: socket_connect (TCP and UDP connect) and
 * socket_sendmsg with an explicit destination (UDP sendto/sendmsg) run before
 * anything is sent; `deny` makes the call fail with EPERM, `kill` also sends
 * SIGKILL. v4-mapped IPv6 destinations are judged (and reported) as IPv4.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "net_match.h"
#include "stratum_reader.h"

#define MG_EPERM 1

/*
 * Judges a destination sockaddr (kernel memory: the syscall layer copied it
 * in). Returns 0 to allow, -EPERM to refuse.
 */
static __always_inline int mg_judge(struct socket *sock,
				    const struct sockaddr *address, int addrlen)
{
	struct mg_scope *scope = mg_current_scope();
	struct mg_rule_ref *ref;
	__u32 ip[4] = {};
	__u16 family = 0;
	__u16 port_be = 0;
	__u8 fam;

	if (!scope)
		return 0;
	bpf_probe_read_kernel(&family, sizeof(family), &address->sa_family);
	if (family == MG_AF_INET) {
		const struct sockaddr_in *sin = (const void *)address;

		if (addrlen < (int)sizeof(struct sockaddr_in))
			return 0;
		bpf_probe_read_kernel(&port_be, sizeof(port_be), &sin->sin_port);
		bpf_probe_read_kernel(&ip[0], 4, &sin->sin_addr.s_addr);
		fam = MG_AF_INET;
	} else if (family == MG_AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)address;

		if (addrlen < (int)sizeof(struct sockaddr_in6))
			return 0;
		bpf_probe_read_kernel(&port_be, sizeof(port_be), &sin6->sin6_port);
		bpf_probe_read_kernel(ip, 16, &sin6->sin6_addr);
		fam = mg_unmap_v4(ip);
	} else {
		return 0;
	}

	/* Where the sk_msg verdict judges (the Stratum hook could not be
	 * attached): a stratum scope's connection its full sockhash could
	 * not take is refused (fail closed). */
	if (BPF_CORE_READ(sock, sk, sk_protocol) == 6 /* IPPROTO_TCP */ &&
	    mg_tracking_full()) {
		ref = bpf_map_lookup_elem(&mg_stratum, &scope->policy_id);
		if (ref) {
			__u8 taken = ref->action == MG_ACTION_AUDIT ? MG_ACTION_AUDIT
								    : MG_ACTION_DENY;

			mg_tfo_event(scope, ref, taken, fam, ip, bpf_ntohs(port_be),
				     MG_SIG_UNTRACKED);
			if (taken != MG_ACTION_AUDIT)
				return -MG_EPERM;
		}
	}

	/* A TCP Fast Open send whose payload the syscall tracepoint
	 * (fast_open_tp.bpf.c) found to be Stratum: refused before its SYN. */
	if (BPF_CORE_READ(sock, sk, sk_protocol) == 6 /* IPPROTO_TCP */) {
		__u8 sig = mg_take_tfo_signature();

		ref = sig ? bpf_map_lookup_elem(&mg_stratum, &scope->policy_id) : NULL;
		if (ref) {
			if (ref->action == MG_ACTION_KILL)
				bpf_send_signal(MG_SIGKILL);
			mg_tfo_event(scope, ref, ref->action, fam, ip,
				     bpf_ntohs(port_be), sig);
			return ref->action == MG_ACTION_AUDIT ? 0 : -MG_EPERM;
		}
	}

	ref = mg_net_match(scope, fam, ip, bpf_ntohs(port_be));
	if (!ref)
		return 0;
	if (ref->action == MG_ACTION_KILL)
		bpf_send_signal(MG_SIGKILL);
	mg_net_event(scope, ref, ref->action, fam, ip, bpf_ntohs(port_be),
		     (__u8)BPF_CORE_READ(sock, sk, sk_protocol));
	return ref->action == MG_ACTION_AUDIT ? 0 : -MG_EPERM;
}

SEC("lsm/socket_connect")
int BPF_PROG(mg_lsm_connect, struct socket *sock, struct sockaddr *address,
	     int addrlen, int ret)
{
	if (ret)
		return ret;
	return mg_judge(sock, address, addrlen);
}

SEC("lsm/socket_sendmsg")
int BPF_PROG(mg_lsm_sendmsg, struct socket *sock, struct msghdr *msg, int size,
	     int ret)
{
	struct sockaddr *name;
	int namelen;

	if (ret)
		return ret;
	/* Only sends that name a destination (sendto, sendmsg with msg_name);
	 * connected sockets were judged at connect. */
	name = BPF_CORE_READ(msg, msg_name);
	if (!name)
		return 0;
	namelen = BPF_CORE_READ(msg, msg_namelen);
	return mg_judge(sock, name, namelen);
}

char LICENSE[] SEC("license") = "GPL";
