// SPDX-License-Identifier: GPL-2.0
/*
 * Stratum on the stream a TCP socket sends, any port: sockops (attached to
 * each scope's cgroup) puts every new client socket into a sockhash; the
 * sk_msg verdict program runs in the sender's context on its sends and
 * feeds their bytes to the socket's Stratum reader (stratum_reader.h),
 * kept in socket storage from send to send. The send that carries the byte
 * deciding a mining method is dropped (the sender gets EACCES, and so does
 * every later send on that socket); earlier sends went out as they came
 * (nothing is corked, so a client waiting for a reply never stalls), so the
 * pool never gets a whole mining method name.
 *
 * Once the reader's budget is spent (MG_READ_BUDGET bytes or
 * MG_READ_MESSAGES messages), the verdict covers the next 4 GiB without
 * running again, the storage is freed and userspace takes the socket out of
 * the sockhash: a judged socket costs nothing more.
 *
 * Needs no BPF LSM: the cgroup backend judges Stratum here with
 * `--stratum-judge sk-msg`. The lsm backend judges in its sleepable
 * socket_sendmsg hook (lsm_stratum.bpf.c, EPERM), with the egress judge
 * behind it for what the hook does not see; it loads this program only
 * where that hook could not be attached, and this program then judges
 * alone.
 */
/* cgroup/sockops/sk_msg programs: the task is read only where the probe
 * allowed it (common.h). */
#define MG_PROC_GUARDED
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "net_match.h"
#include "stratum_reader.h"

#define MG_SK_DROP 0
#define MG_SK_PASS 1

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* socket cookie */
	__type(value, __u64);
} mg_sockhash SEC(".maps");

/* A socket's reader while its stream is being judged. */
struct mg_stratum_state {
	struct mg_reader r;
	__u32 denied; /* a mining method matched: every later send is dropped */
	__u32 _pad;
};

/* This CPU's copy of the bytes being judged, and a reader for a first send
 * (sockets whose first send decides need no storage). */
struct mg_msg_scratch {
	__u8 buf[MG_READ_BUDGET];
	struct mg_reader r;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_msg_scratch);
} mg_msg_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct mg_stratum_state);
} mg_stratum_sk SEC(".maps");

/* Set by userspace before load when sk_msg programs may call
 * bpf_send_signal; otherwise userspace sends the SIGKILL for `kill`. */
const volatile bool mg_signal_in_skmsg = false;
/* Likewise for bpf_get_current_comm (userspace fills the name otherwise). */
const volatile bool mg_comm_in_skmsg = false;

/* 1 while a socket is counted in mg_tracking (it is in the sockhash). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} mg_counted_sk SEC(".maps");

/* The socket leaves the sockhash (released, or closed): not counted. */
static __always_inline void mg_uncount(struct bpf_sock *sk)
{
	struct mg_tracking *t;
	__u32 zero = 0, *counted;

	counted = sk ? bpf_sk_storage_get(&mg_counted_sk, sk, 0, 0) : NULL;
	if (!counted || !*counted)
		return;
	*counted = 0;
	t = bpf_map_lookup_elem(&mg_tracking, &zero);
	if (t)
		__sync_fetch_and_sub(&t->sockets, 1);
}

SEC("sockops")
int mg_sockops(struct bpf_sock_ops *skops)
{
	struct mg_tracking *t;
	__u32 zero = 0, *counted;
	struct bpf_sock *sk;
	__u64 cookie;

	if (skops->op == BPF_SOCK_OPS_STATE_CB) {
		if (skops->args[1] == BPF_TCP_CLOSE)
			mg_uncount(skops->sk);
		return 1;
	}
	/* Client sockets, and sockets a listener in the scope accepted (a
	 * pool may connect in). */
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	cookie = bpf_get_socket_cookie(skops);
	if (bpf_sock_hash_update(skops, &mg_sockhash, &cookie, BPF_NOEXIST)) {
		/* Full. Client connections never get here (the connect hooks
		 * refuse them first, see mg_tracking); an accepted one cannot
		 * be refused from here: counted, and reported by userspace. */
		mg_count(MG_STAT_UNTRACKED);
		return 1;
	}
	t = bpf_map_lookup_elem(&mg_tracking, &zero);
	sk = skops->sk;
	if (!sk)
		return 1;
	counted = bpf_sk_storage_get(&mg_counted_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (t && counted) {
		__sync_fetch_and_add(&t->sockets, 1);
		*counted = 1;
		/* Told when it closes, to count it out. */
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
							 BPF_SOCK_OPS_STATE_CB_FLAG);
	}
	return 1;
}

/*
 * Cookies of sockets whose stream was judged clean. Userspace takes each
 * out of the sockhash (the enforcer's event thread), so the socket's later
 * sends leave the sk_msg path (tcp_bpf_sendmsg) altogether. A full queue
 * only leaves a socket where it is.
 */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 16384);
	__type(value, __u64);
} mg_judged SEC(".maps");

static __always_inline int mg_pass_rest(struct sk_msg_md *msg)
{
	struct bpf_sock *sk = msg->sk;
	struct tcp_sock *tp;

	/* The verdict covers the next 4 GiB: no program run per send. */
	bpf_msg_apply_bytes(msg, 0xffffffff);
	/* Userspace takes it out of the sockhash (below). */
	mg_uncount(sk);
	/* The sockhash key is the cookie sockops set (sk_msg has no cookie
	 * helper; the field is read through the socket's BTF type). */
	tp = sk ? bpf_skc_to_tcp_sock(sk) : NULL;
	if (tp) {
		__u64 cookie = tp->inet_conn.icsk_inet.sk.__sk_common.skc_cookie.counter;

		if (cookie)
			bpf_map_push_elem(&mg_judged, &cookie, 0);
	}
	return MG_SK_PASS;
}

/* Reports a matched mining method. */
static __always_inline void mg_stratum_event(struct sk_msg_md *msg,
					     const struct mg_scope *scope,
					     const struct mg_rule_ref *ref,
					     const struct mg_reader *r)
{
	struct mg_event *e;
	__u32 ip[4] = {};

	if (ref->action == MG_ACTION_KILL && mg_signal_in_skmsg)
		bpf_send_signal(MG_SIGKILL);
	e = mg_event_start_comm(MG_KIND_STRATUM, scope, ref, ref->action,
				mg_comm_in_skmsg);
	if (!e)
		return;
	if (msg->family == MG_AF_INET) {
		ip[0] = msg->remote_ip4;
		e->family = MG_AF_INET;
	} else {
		ip[0] = msg->remote_ip6[0];
		ip[1] = msg->remote_ip6[1];
		ip[2] = msg->remote_ip6[2];
		ip[3] = msg->remote_ip6[3];
		e->family = mg_unmap_v4(ip);
	}
	__builtin_memcpy(e->addr, ip, 16);
	e->port = bpf_ntohl(msg->remote_port);
	e->protocol = 6; /* sk_msg sees TCP only */
	mg_stratum_event_method(e, r);
	bpf_ringbuf_submit(e, 0);
}

/* A match: reported; refused (this send and every later one) unless audit. */
static __always_inline int mg_stratum_matched(struct sk_msg_md *msg,
					      const struct mg_scope *scope,
					      const struct mg_rule_ref *ref,
					      struct bpf_sock *sk,
					      struct mg_stratum_state *st,
					      const struct mg_reader *r)
{
	mg_stratum_event(msg, scope, ref, r);
	if (ref->action == MG_ACTION_AUDIT) {
		if (st)
			bpf_sk_storage_delete(&mg_stratum_sk, sk);
		return mg_pass_rest(msg);
	}
	if (!st)
		st = bpf_sk_storage_get(&mg_stratum_sk, sk, 0,
					BPF_SK_STORAGE_GET_F_CREATE);
	if (st)
		st->denied = 1;
	return MG_SK_DROP;
}

/* Copies the send's first `n` bytes (n <= MG_READ_BUDGET) to scratch. */
static __always_inline int mg_copy_msg(struct sk_msg_md *msg,
				       struct mg_msg_scratch *scratch, __u32 n)
{
	n &= 2 * MG_READ_BUDGET - 1;
	if (n == 0 || n > MG_READ_BUDGET)
		return -1;
	if (bpf_msg_pull_data(msg, 0, n, 0))
		return -1;
	return bpf_probe_read_kernel(scratch->buf, n, msg->data);
}

SEC("sk_msg")
int mg_stratum_msg(struct sk_msg_md *msg)
{
	struct mg_msg_scratch *scratch;
	struct mg_scope *scope = mg_current_scope();
	struct mg_stratum_state *st;
	struct mg_reader *r;
	struct mg_rule_ref *ref;
	struct bpf_sock *sk;
	__u32 zero = 0, n;
	int verdict;

	if (!scope)
		return mg_pass_rest(msg);
	ref = bpf_map_lookup_elem(&mg_stratum, &scope->policy_id);
	if (!ref)
		return mg_pass_rest(msg);
	sk = msg->sk;
	if (!sk)
		return mg_pass_rest(msg);
	st = bpf_sk_storage_get(&mg_stratum_sk, sk, 0, 0);
	if (st && st->denied)
		return MG_SK_DROP;
	scratch = bpf_map_lookup_elem(&mg_msg_scratch, &zero);
	if (!scratch)
		return MG_SK_DROP;
	if (st) {
		r = &st->r;
	} else {
		/* A first send is read in scratch: storage only if it
		 * leaves the stream undecided. */
		r = &scratch->r;
		mg_reader_init(r, scope->policy_id, ref);
	}
	n = MG_READ_BUDGET - (r->seen & (MG_READ_BUDGET - 1));
	if (r->seen >= MG_READ_BUDGET)
		n = 0;
	if (n > msg->size)
		n = msg->size;
	if (n == 0)
		verdict = MG_READ_DONE;
	else if (mg_copy_msg(msg, scratch, n))
		/* Bytes this program cannot read are not passed unjudged. */
		return MG_SK_DROP;
	else
		verdict = mg_reader_feed(r, scratch->buf, n);

	if (verdict == MG_READ_MINING)
		return mg_stratum_matched(msg, scope, ref, sk, st, r);
	if (verdict == MG_READ_DONE) {
		if (st)
			bpf_sk_storage_delete(&mg_stratum_sk, sk);
		return mg_pass_rest(msg);
	}
	if (!st) {
		st = bpf_sk_storage_get(&mg_stratum_sk, sk, 0,
					BPF_SK_STORAGE_GET_F_CREATE);
		/* A socket that cannot be followed is not let through. */
		if (!st)
			return MG_SK_DROP;
		__builtin_memcpy(&st->r, r, sizeof(*r));
	}
	/* Not decided yet: let this part through and read the next send. */
	return MG_SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
