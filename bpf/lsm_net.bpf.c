// SPDX-License-Identifier: GPL-2.0
/*
 * lsm backend, connect rules: socket_connect runs before the connection is
 * attempted; `deny` makes connect() fail with EPERM, `kill` also sends
 * SIGKILL. v4-mapped IPv6 destinations are judged (and reported) as IPv4.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "common.h"

#define MG_EPERM 1
#define MG_AF_INET 2
#define MG_AF_INET6 10

SEC("lsm/socket_connect")
int BPF_PROG(mg_lsm_connect, struct socket *sock, struct sockaddr *address,
	     int addrlen, int ret)
{
	struct mg_port_key key = {};
	struct mg_scope *scope;
	struct mg_rule_ref *ref;
	struct mg_event *e;
	__u32 ip[4] = {};
	__u16 family = 0;
	__u16 port_be = 0;
	__u8 ev_family;

	if (ret)
		return ret;
	scope = mg_current_scope();
	if (!scope)
		return 0;

	bpf_probe_read_kernel(&family, sizeof(family), &address->sa_family);
	if (family == MG_AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)address;

		if (addrlen < (int)sizeof(struct sockaddr_in))
			return 0;
		bpf_probe_read_kernel(&port_be, sizeof(port_be), &sin->sin_port);
		bpf_probe_read_kernel(&ip[0], 4, &sin->sin_addr.s_addr);
		ev_family = MG_AF_INET;
	} else if (family == MG_AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)address;

		if (addrlen < (int)sizeof(struct sockaddr_in6))
			return 0;
		bpf_probe_read_kernel(&port_be, sizeof(port_be), &sin6->sin6_port);
		bpf_probe_read_kernel(ip, 16, &sin6->sin6_addr);
		ev_family = MG_AF_INET6;
		/* ::ffff:a.b.c.d is an IPv4 destination through a v6 socket. */
		if (ip[0] == 0 && ip[1] == 0 && ip[2] == bpf_htonl(0xffff)) {
			ip[0] = ip[3];
			ip[1] = ip[2] = ip[3] = 0;
			ev_family = MG_AF_INET;
		}
	} else {
		return 0;
	}

	key.policy_id = scope->policy_id;
	key.port = bpf_ntohs(port_be);
	ref = bpf_map_lookup_elem(&mg_ports, &key);
	if (!ref)
		return 0;

	if (ref->action == MG_ACTION_KILL)
		bpf_send_signal(MG_SIGKILL);
	e = mg_event_start(MG_KIND_CONNECT, scope, ref, ref->action);
	if (e) {
		e->family = ev_family;
		e->port = key.port;
		e->protocol = (__u8)BPF_CORE_READ(sock, sk, sk_protocol);
		__builtin_memcpy(e->addr, ip, 16);
		bpf_ringbuf_submit(e, 0);
	}
	return ref->action == MG_ACTION_AUDIT ? 0 : -MG_EPERM;
}

char LICENSE[] SEC("license") = "GPL";
