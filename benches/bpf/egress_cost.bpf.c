// SPDX-License-Identifier: GPL-2.0
/* What an egress-first Stratum judge would cost (#25): an empty
 * cgroup_skb/egress program; one that does the lookup every packet of a
 * judged socket would pay (its socket storage); and the judge's fast path
 * itself (egress_judge below), which reads each TCP socket's outgoing
 * payload with the Stratum reader until it is decided. */
#define MG_PROC_GUARDED
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "stratum_reader.h"

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

/* A socket's judge: its reader, and the sequence number of the next byte
 * it has not read (TCP egress is in order but for retransmissions). */
struct judge {
	struct mg_reader r;
	__u32 next_seq;
	__u32 state;
};

#define JUDGING 0
#define CLEAN 1
#define DENIED 2

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct judge);
} judge_sk SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	/* Room past the budget: the reader loads a word at a time. */
	__type(value, __u8[MG_READ_BUDGET + 8]);
} judge_buf SEC(".maps");

/* The judge's per-packet path: find the TCP payload, read the bytes past
 * what the socket's reader has seen, keep the verdict. A mining verdict
 * drops the packet (and every later one of the socket). */
SEC("cgroup_skb/egress")
int egress_judge(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct judge *st;
	__u32 zero = 0, off, hdr, seq, data_seq, len, skip, n;
	__u8 b[14], *buf;
	int verdict;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->protocol != IPPROTO_TCP)
		return 1;
	st = bpf_sk_storage_get(&judge_sk, sk, 0, 0);
	if (st && st->state == CLEAN)
		return 1;
	if (st && st->state == DENIED)
		return 0;
	if (skb->protocol == bpf_htons(0x0800) /* ETH_P_IP */) {
		if (bpf_skb_load_bytes(skb, 0, b, 1))
			return 0;
		off = (b[0] & 0xf) * 4;
	} else if (skb->protocol == bpf_htons(0x86DD) /* ETH_P_IPV6 */) {
		if (bpf_skb_load_bytes(skb, 6, b, 1) || b[0] != IPPROTO_TCP)
			return 0;
		off = 40;
	} else {
		return 1;
	}
	if (bpf_skb_load_bytes(skb, off, b, 14))
		return 0;
	seq = ((__u32)b[4] << 24) | ((__u32)b[5] << 16) | ((__u32)b[6] << 8) | b[7];
	hdr = off + (b[12] >> 4) * 4;
	if (skb->len <= hdr)
		return 1; /* no payload: a SYN, an ACK, a FIN */
	len = skb->len - hdr;
	data_seq = seq + ((b[13] & 0x02) ? 1 : 0); /* a SYN's data follows it */
	if (!st) {
		st = bpf_sk_storage_get(&judge_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (!st)
			return 0;
		mg_reader_init(&st->r, 0);
		st->next_seq = data_seq;
	}
	skip = st->next_seq - data_seq;
	if ((__s32)skip < 0)
		return 0; /* bytes the reader never saw: not passed */
	if (skip >= len)
		return 1; /* a retransmission of read bytes */
	n = len - skip;
	if (n > MG_READ_BUDGET)
		n = MG_READ_BUDGET;
	buf = bpf_map_lookup_elem(&judge_buf, &zero);
	if (!buf || n == 0)
		return 0;
	/* 1..MG_READ_BUDGET in a form the verifier keeps (the compiler
	 * would fold a plain mask into the checks above). */
	n -= 1;
	asm volatile("%[n] &= 0xfff" : [n] "+r"(n));
	n += 1;
	if (bpf_skb_load_bytes(skb, hdr + skip, buf, n))
		return 0;
	verdict = mg_reader_feed(&st->r, buf, n);
	st->next_seq += n;
	if (verdict == MG_READ_MINING) {
		st->state = DENIED;
		return 0;
	}
	if (verdict == MG_READ_DONE)
		st->state = CLEAN;
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
