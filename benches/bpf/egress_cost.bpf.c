// SPDX-License-Identifier: GPL-2.0
/* What an egress-first Stratum judge would cost per packet before it reads
 * any payload (#25): an empty cgroup_skb/egress program, and one that does
 * the lookup every packet of a judged socket would pay (its socket storage).
 * The judge itself is bpf/stratum_egress.bpf.c (`--stratum-judge egress`). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} judged SEC(".maps");

SEC("cgroup_skb/egress")
int egress_empty(struct __sk_buff *skb)
{
	return 1;
}

SEC("cgroup_skb/egress")
int egress_lookup(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	__u64 *state;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
	state = bpf_sk_storage_get(&judged, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (state)
		*state += 1;
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
