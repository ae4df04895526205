// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup backend, connect rules: cgroup/connect4 and cgroup/connect6 attached
 * to each scope's cgroup (which covers every descendant). Returning 0 makes
 * connect() fail with EPERM before any packet leaves.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "common.h"

#define MG_AF_INET 2
#define MG_AF_INET6 10

/*
 * Set by userspace before load when this kernel allows bpf_send_signal in
 * cgroup programs; the verifier prunes the call otherwise, so the object
 * still loads where the helper is missing (userspace then does the kill).
 */
const volatile bool mg_signal_in_cgroup = false;

static __always_inline int mg_connect(struct bpf_sock_addr *ctx, __u8 family,
				      const __u32 ip[4])
{
	struct mg_scope *scope = mg_current_scope();
	struct mg_port_key key = {};
	struct mg_rule_ref *ref;
	struct mg_event *e;
	__u8 taken;

	if (!scope)
		return 1;
	key.policy_id = scope->policy_id;
	key.port = bpf_ntohs((__u16)ctx->user_port);
	ref = bpf_map_lookup_elem(&mg_ports, &key);
	if (!ref)
		return 1;

	taken = ref->action;
	if (taken == MG_ACTION_KILL && mg_signal_in_cgroup)
		bpf_send_signal(MG_SIGKILL);

	e = mg_event_start(MG_KIND_CONNECT, scope, ref, taken);
	if (e) {
		e->family = family;
		e->port = key.port;
		e->protocol = (__u8)ctx->protocol;
		__builtin_memcpy(e->addr, ip, 16);
		bpf_ringbuf_submit(e, 0);
	}
	return taken == MG_ACTION_AUDIT ? 1 : 0;
}

SEC("cgroup/connect4")
int mg_connect4(struct bpf_sock_addr *ctx)
{
	__u32 ip[4] = { ctx->user_ip4, 0, 0, 0 };

	return mg_connect(ctx, MG_AF_INET, ip);
}

SEC("cgroup/connect6")
int mg_connect6(struct bpf_sock_addr *ctx)
{
	__u32 ip[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2],
			ctx->user_ip6[3] };

	/* ::ffff:a.b.c.d is an IPv4 destination reached through a v6 socket. */
	if (ip[0] == 0 && ip[1] == 0 && ip[2] == bpf_htonl(0xffff)) {
		__u32 v4[4] = { ip[3], 0, 0, 0 };

		return mg_connect(ctx, MG_AF_INET, v4);
	}
	return mg_connect(ctx, MG_AF_INET6, ip);
}

char LICENSE[] SEC("license") = "GPL";
