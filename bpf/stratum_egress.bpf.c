// SPDX-License-Identifier: GPL-2.0
/*
 * The egress Stratum judge (#25): reads the stream each TCP socket of a
 * stratum scope sends, from the packets leaving it (cgroup_skb/egress,
 * attached to each scope's cgroup), with the same reader as the sk_msg
 * verdict (stratum_reader.h). Nothing is tracked before a socket sends
 * its first byte, and no socket is moved onto another send path: a
 * connection that never sends costs a lookup per packet, a judged one a
 * lookup per packet from then on.
 *
 * Per socket (socket storage, made at its first payload byte): the reader,
 * and the sequence number of the next byte it has not read. TCP sends in
 * order but for retransmissions: bytes before that number were read (a
 * retransmission passes as they did); bytes after it were never seen (a
 * gap) and are not passed. The packet that carries the byte deciding a
 * mining method is dropped, and so is every later packet of that socket:
 * the peer never gets the whole method name (TCP retransmits the dropped
 * bytes, which meet the same verdict). A Fast Open SYN's data is read like
 * any other (it follows the SYN's sequence number).
 *
 * A refused socket is also queued for userspace (mg_refused), which
 * destroys it through sock_diag (SOCK_DESTROY): its queued bytes are
 * dropped, the peer gets a reset and the sender an error, and nothing of
 * it can leave once this program is detached.
 *
 * The packet may leave in softirq context (an ACK releases queued data),
 * so the current task is not the sender: the event names the socket's
 * cgroup and no process; userspace names the process that holds the
 * refused socket when it reads the event (it finds it from the queue).
 *
 * UDP datagrams are read one by one, each by a fresh reader (a datagram
 * is a message, as the lsm hook reads them): a clean one leaves the next
 * to be read by itself again. The one that carries a mining method is
 * dropped (the sender's send fails with EPERM), and so is every later one
 * of that socket, as on the lsm backend; the socket is queued for its
 * holder's name, not destroyed. UDP sockets keep their reader in the same
 * storage as TCP ones, so that both protocols feed the reader from one
 * place (one copy for the verifier).
 */
#define MG_PROC_GUARDED
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "net_match.h"
#include "stratum_reader.h"
#include "scope_cache.h"

/* Set by userspace when this program stands behind the lsm backend's
 * socket_sendmsg hook (#19) and that hook sees every send (Linux 6.5 and
 * later): the hook judged each send from the caller's buffer before the
 * kernel copied it, and this reads what was copied, so a buffer rewritten
 * in between is still refused. The hook reports audited mining itself:
 * an audited scope is not read again here. Where sendfile and splice go
 * past the hook (before 6.5) it leaves audited scopes to this program,
 * which reads every send, whatever its path: one event per login. */
const volatile bool mg_audit_is_the_hooks = false;

#define MG_PKT_PASS 1
#define MG_PKT_DROP 0

#define MG_ETH_P_IP 0x0800
#define MG_ETH_P_IPV6 0x86DD
#define MG_TCP_SYN 0x02
#define MG_TCP_RST 0x04

enum mg_egress_verdict {
	MG_EGRESS_READING = 0,
	MG_EGRESS_CLEAN = 1,  /* read to its budget, or audited: passed */
	MG_EGRESS_DENIED = 2, /* a mining method: every packet dropped */
};

/* A socket's judge. */
struct mg_egress_state {
	struct mg_reader r;
	__u32 next_seq; /* sequence number of the first byte not read */
	__u32 verdict;  /* enum mg_egress_verdict */
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct mg_egress_state);
} mg_egress_sk SEC(".maps");

/* A socket the judge found mining on, for userspace: refused (to be
 * destroyed) or audited (only its holder named in the event).
 * src/backend/refused_sockets.rs reads this layout. Addresses in network
 * order, ports in host order. */
struct mg_refused_sock {
	__u64 cookie;
	__u64 cgroup_id;
	__u16 family;
	__u16 flags; /* MG_REFUSED_* */
	__u16 local_port;
	__u16 remote_port;
	__u32 local[4];
	__u32 remote[4];
};

/* mg_refused_sock.flags */
#define MG_REFUSED_AUDITED 1 /* only its holder is named */
#define MG_REFUSED_UDP 2     /* a UDP socket: its datagram was dropped */

/* The two ends of a packet that carried a mining method: from the
 * socket for TCP, from the packet for UDP (an unconnected socket has no
 * peer of its own). Addresses in network order, ports in host order. */
struct mg_ends {
	__u32 local[4];
	__u32 remote[4];
	__u16 family;
	__u16 local_port;
	__u16 remote_port;
};

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 4096);
	__type(value, struct mg_refused_sock);
} mg_refused SEC(".maps");

/* This CPU's copy of the payload being read; room past the budget, as
 * the reader loads a word at a time. */
struct mg_egress_buf {
	__u8 buf[MG_READ_BUDGET + 8];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_egress_buf);
} mg_egress_buf SEC(".maps");

/* The id of the packet's socket's cgroup ancestor at `lvl`. */
#define MG_SKB_ANCESTOR_ID(lvl) bpf_skb_ancestor_cgroup_id(skb, lvl)

/* Reports a matched mining method, for the socket's peer. Filled here
 * rather than by mg_event_start: cgroup_skb programs may not call the
 * current-task helpers on every kernel (6.1 refuses them), and the task a
 * packet leaves from may not be the sender anyway. */
static __always_inline void mg_egress_event(struct __sk_buff *skb, const struct mg_ends *ends,
					    __u8 protocol, const struct mg_scope *scope,
					    const struct mg_rule_ref *ref, __u8 taken,
					    const struct mg_reader *r)
{
	struct mg_event *e = bpf_ringbuf_reserve(&mg_events, sizeof(*e), 0);
	__u32 ip[4];

	if (!e) {
		mg_count(MG_STAT_RINGBUF_DROPS);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->boot_ns = bpf_ktime_get_boot_ns();
	/* The socket's cgroup; no process (see the top of this file). */
	e->cgroup_id = bpf_skb_cgroup_id(skb);
	e->policy_id = scope->policy_id;
	e->rule_idx = ref->rule_idx;
	e->kind = MG_KIND_STRATUM;
	e->action = taken;
	e->requested = ref->action;
	__builtin_memcpy(ip, ends->remote, 16);
	e->family = ends->family == MG_AF_INET ? MG_AF_INET : mg_unmap_v4(ip);
	__builtin_memcpy(e->addr, ip, 16);
	e->port = ends->remote_port;
	e->protocol = protocol;
	mg_stratum_event_method(e, r);
	bpf_ringbuf_submit(e, 0);
}

/* Queues `sk` for userspace. A full queue leaves a refused socket to this
 * program, which drops every packet of it while attached (counted, so
 * userspace can say so). */
static __always_inline void mg_queue_refused(struct __sk_buff *skb, const struct mg_ends *ends,
					     __u16 flags)
{
	struct mg_refused_sock q = {};

	q.cookie = bpf_get_socket_cookie(skb);
	q.cgroup_id = bpf_skb_cgroup_id(skb);
	q.family = ends->family;
	q.flags = flags;
	q.local_port = ends->local_port;
	q.remote_port = ends->remote_port;
	__builtin_memcpy(q.local, ends->local, 16);
	__builtin_memcpy(q.remote, ends->remote, 16);
	if (bpf_map_push_elem(&mg_refused, &q, 0) && !flags)
		mg_count(MG_STAT_REFUSED_UNQUEUED);
}

/* A TCP socket's ends, as the socket has them. */
static __always_inline void mg_socket_ends(struct bpf_sock *sk, struct mg_ends *ends)
{
	ends->family = sk->family;
	ends->local_port = sk->src_port;
	ends->remote_port = bpf_ntohs(sk->dst_port);
	if (sk->family == MG_AF_INET) {
		ends->local[0] = sk->src_ip4;
		ends->remote[0] = sk->dst_ip4;
	} else {
		ends->local[0] = sk->src_ip6[0];
		ends->local[1] = sk->src_ip6[1];
		ends->local[2] = sk->src_ip6[2];
		ends->local[3] = sk->src_ip6[3];
		ends->remote[0] = sk->dst_ip6[0];
		ends->remote[1] = sk->dst_ip6[1];
		ends->remote[2] = sk->dst_ip6[2];
		ends->remote[3] = sk->dst_ip6[3];
	}
}

/* A UDP datagram's ends, from its IP and UDP headers (the UDP header at
 * `l4`); -1 when they cannot be read. */
static __always_inline int mg_datagram_ends(struct __sk_buff *skb, __u32 l4,
					    struct mg_ends *ends)
{
	__u16 ports[2];

	if (skb->protocol == bpf_htons(MG_ETH_P_IP)) {
		ends->family = MG_AF_INET;
		if (bpf_skb_load_bytes(skb, 12, ends->local, 4) ||
		    bpf_skb_load_bytes(skb, 16, ends->remote, 4))
			return -1;
	} else {
		ends->family = MG_AF_INET6;
		if (bpf_skb_load_bytes(skb, 8, ends->local, 16) ||
		    bpf_skb_load_bytes(skb, 24, ends->remote, 16))
			return -1;
	}
	if (bpf_skb_load_bytes(skb, l4, ports, 4))
		return -1;
	ends->local_port = bpf_ntohs(ports[0]);
	ends->remote_port = bpf_ntohs(ports[1]);
	return 0;
}

/* The first 14 bytes of the TCP header at `off`, and the IP header's
 * first byte (IPv4) or next-header byte (IPv6), read straight from the
 * packet where its linear part holds them (a locally built packet's
 * headers always are), else copied. -1 when they cannot be read. */
static __always_inline int mg_headers(struct __sk_buff *skb, __u32 ip_byte, __u8 *ip,
				      __u8 *tcp, __u32 *off, bool v4, bool udp)
{
	const __u8 *data = (const __u8 *)(long)skb->data;
	const __u8 *end = (const __u8 *)(long)skb->data_end;
	__u32 o;

	if (data + 40 <= end) {
		*ip = data[ip_byte];
		o = v4 ? (*ip & 0xf) * 4 : 40;
		*off = o;
		if (udp)
			return 0;
		/* o is 0..60: the verifier follows the bound. */
		o &= 63;
		if (data + o + 14 <= end) {
			__builtin_memcpy(tcp, data + o, 14);
			return 0;
		}
		return bpf_skb_load_bytes(skb, o, tcp, 14) ? -1 : 0;
	}
	if (bpf_skb_load_bytes(skb, ip_byte, ip, 1))
		return -1;
	*off = v4 ? (*ip & 0xf) * 4 : 40;
	if (udp)
		return 0;
	return bpf_skb_load_bytes(skb, *off, tcp, 14) ? -1 : 0;
}

/* Where the payload starts (`l4`: where its TCP or UDP header does), and
 * for TCP its sequence number and flags; -1 when the packet is not one
 * this judge can read (it is then refused). */
static __always_inline int mg_payload(struct __sk_buff *skb, bool udp, __u32 *l4, __u32 *hdr,
				      __u32 *seq, __u8 *flags)
{
	__u8 b[14], ip;
	__u32 off;
	bool v4;

	if (skb->protocol == bpf_htons(MG_ETH_P_IP))
		v4 = true;
	else if (skb->protocol == bpf_htons(MG_ETH_P_IPV6))
		v4 = false;
	else
		return -1;
	/* IPv4: the header length; IPv6: the next header (extension headers
	 * before TCP or UDP are not followed). */
	if (mg_headers(skb, v4 ? 0 : 6, &ip, b, &off, v4, udp))
		return -1;
	if (!v4 && ip != (udp ? IPPROTO_UDP : IPPROTO_TCP))
		return -1;
	*l4 = off;
	if (udp) {
		*hdr = off + 8;
		*seq = 0;
		*flags = 0;
		return 0;
	}
	*seq = ((__u32)b[4] << 24) | ((__u32)b[5] << 16) | ((__u32)b[6] << 8) | b[7];
	/* A SYN's data (Fast Open) follows the SYN's own sequence number. */
	if (b[13] & MG_TCP_SYN)
		*seq += 1;
	*hdr = off + (b[12] >> 4) * 4;
	*flags = b[13];
	return 0;
}

SEC("cgroup_skb/egress")
int mg_stratum_egress(struct __sk_buff *skb)
{
	struct mg_egress_state *st;
	struct mg_egress_buf *scratch;
	struct mg_rule_ref *ref;
	struct mg_scope here, *scope;
	struct mg_ends ends = {};
	struct bpf_sock *sk;
	__u32 zero = 0, l4, hdr, seq, len, skip, n;
	__u16 queued;
	__u8 taken, flags;
	int verdict;
	bool udp;

	sk = skb->sk;
	if (!sk)
		return MG_PKT_PASS;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return MG_PKT_PASS;
	udp = sk->protocol == IPPROTO_UDP;
	if (!udp && sk->protocol != IPPROTO_TCP)
		return MG_PKT_PASS;
	st = bpf_sk_storage_get(&mg_egress_sk, sk, 0, 0);
	if (st && st->verdict == MG_EGRESS_CLEAN)
		return MG_PKT_PASS;
	if (mg_payload(skb, udp, &l4, &hdr, &seq, &flags))
		/* Bytes this program cannot read are not passed unjudged. */
		return MG_PKT_DROP;
	if (st && st->verdict == MG_EGRESS_DENIED)
		/* Nothing more of a refused socket leaves but the reset its
		 * destruction sends (no payload), which tells the peer. */
		return skb->len <= hdr && (flags & MG_TCP_RST) ? MG_PKT_PASS : MG_PKT_DROP;
	if (skb->len <= hdr)
		return MG_PKT_PASS; /* no payload: a SYN, an ACK, a FIN */
	len = skb->len - hdr;
	/* The socket's cgroup, not the current task's (see the top). */
	scope = MG_CACHED_SCOPE(&here, bpf_skb_cgroup_id(skb), MG_SKB_ANCESTOR_ID);
	if (!scope)
		return MG_PKT_PASS;
	ref = bpf_map_lookup_elem(&mg_stratum, &scope->policy_id);
	if (!ref || (mg_audit_is_the_hooks && ref->action == MG_ACTION_AUDIT))
		return MG_PKT_PASS;
	if (!st || udp) {
		if (!st) {
			st = bpf_sk_storage_get(&mg_egress_sk, sk, 0,
						BPF_SK_STORAGE_GET_F_CREATE);
			/* A socket that cannot be followed is not let through. */
			if (!st)
				return MG_PKT_DROP;
		}
		/* A stream from its first byte; each datagram by itself. */
		mg_reader_init(&st->r, scope->policy_id, ref);
		st->next_seq = seq;
	}
	skip = st->next_seq - seq;
	if ((__s32)skip < 0)
		return MG_PKT_DROP; /* bytes before these were never read */
	if (skip >= len)
		return MG_PKT_PASS; /* a retransmission of bytes read */
	n = len - skip;
	if (n > MG_READ_BUDGET)
		n = MG_READ_BUDGET;
	scratch = bpf_map_lookup_elem(&mg_egress_buf, &zero);
	if (!scratch)
		return MG_PKT_DROP;
	/* 1..MG_READ_BUDGET in a form the verifier keeps through the call
	 * (the compiler folds a plain mask into the checks above). */
	n -= 1;
	asm volatile("%[n] &= 0xfff" : [n] "+r"(n));
	n += 1;
	if (bpf_skb_load_bytes(skb, hdr + skip, scratch->buf, n))
		return MG_PKT_DROP;
	verdict = mg_reader_feed(&st->r, scratch->buf, n);
	st->next_seq += n;
	if (verdict == MG_READ_MINING) {
		/* `kill` is carried out by userspace, on the process that
		 * holds the socket (the current task may not be the sender). */
		taken = ref->action;
		queued = taken == MG_ACTION_AUDIT ? MG_REFUSED_AUDITED : 0;
		if (udp) {
			if (mg_datagram_ends(skb, l4, &ends))
				return MG_PKT_DROP;
			queued |= MG_REFUSED_UDP;
		} else {
			mg_socket_ends(sk, &ends);
		}
		/* Queued before the event is written: userspace reads the
		 * socket's holder from it when the event arrives. */
		mg_queue_refused(skb, &ends, queued);
		mg_egress_event(skb, &ends, udp ? IPPROTO_UDP : IPPROTO_TCP, scope, ref, taken,
				&st->r);
		if (taken == MG_ACTION_AUDIT) {
			st->verdict = MG_EGRESS_CLEAN;
			return MG_PKT_PASS;
		}
		st->verdict = MG_EGRESS_DENIED;
		return MG_PKT_DROP;
	}
	/* A clean datagram: the next one is read by itself again. */
	if (verdict == MG_READ_DONE && !udp)
		st->verdict = MG_EGRESS_CLEAN;
	return MG_PKT_PASS;
}

char LICENSE[] SEC("license") = "GPL";
