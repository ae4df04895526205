// SPDX-License-Identifier: GPL-2.0
/*
 * Stratum detection on the first bytes a TCP socket sends, any port: sockops
 * (attached to each scope's cgroup) puts every new client socket into a
 * sockhash; the sk_msg verdict program runs in the sender's context on its
 * sends, matches the Stratum signatures on the socket's first bytes, and
 * drops the send that completes a signature (the sender gets EACCES, and so
 * does every later send on that socket).
 *
 * A first message split across several small sends is judged as a whole:
 * the socket's first bytes are collected in socket storage, send by send,
 * for as long as they could still become a signature (a JSON object, or a
 * Stratum V2 frame header) and are shorter than the window. Each partial
 * send goes out at once (nothing is corked, so a client waiting for a reply
 * never stalls); the send that completes a signature key is dropped, so the
 * pool never gets a whole Stratum method name. Once the bytes cannot be
 * Stratum, or fill the window, the verdict covers the next 4 GiB without
 * running again and the storage is freed: a judged socket costs nothing more.
 *
 * Needs no BPF LSM: the cgroup backend judges Stratum here. The lsm backend
 * judges in its sleepable socket_sendmsg (lsm_stratum.bpf.c, EPERM) and keeps
 * this program for the sends that bypass that hook (sendfile and splice go
 * through sendpage on older kernels): it follows the lsm verdict for sockets
 * it has not started judging itself.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "net_match.h"
#include "stratum_match.h"

#define MG_SK_DROP 0
#define MG_SK_PASS 1

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* socket cookie */
	__type(value, __u64);
} mg_sockhash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[MG_STRATUM_WINDOW + MG_STRATUM_SLACK]);
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
/* Set on the lsm backend when its socket_sendmsg judges Stratum. */
const volatile bool mg_lsm_judges = false;

SEC("sockops")
int mg_sockops(struct bpf_sock_ops *skops)
{
	__u64 cookie;

	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	cookie = bpf_get_socket_cookie(skops);
	bpf_sock_hash_update(skops, &mg_sockhash, &cookie, BPF_NOEXIST);
	return 1;
}

/*
 * Cookies of sockets whose first bytes passed. Userspace takes each out of
 * the sockhash (the enforcer's event thread), so the socket's later sends
 * leave the sk_msg path (tcp_bpf_sendmsg) altogether. A full queue only
 * leaves a socket where it is.
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

/* Reports a matched signature. */
static __always_inline void mg_stratum_event(struct sk_msg_md *msg,
					     const struct mg_scope *scope,
					     const struct mg_rule_ref *ref,
					     __u8 sig)
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
	e->path[0] = sig; /* signature id; named in userspace */
	e->path[1] = 0;
	bpf_ringbuf_submit(e, 0);
}

/* A match: reported; refused (this send and every later one) unless audit. */
static __always_inline int mg_stratum_matched(struct sk_msg_md *msg,
					      const struct mg_scope *scope,
					      const struct mg_rule_ref *ref,
					      struct bpf_sock *sk,
					      struct mg_stratum_state *st,
					      __u8 sig)
{
	mg_stratum_event(msg, scope, ref, sig);
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

/*
 * A socket's first send: judged by itself in per-CPU scratch, so the
 * common cases (a whole signature, or bytes that cannot be Stratum) need no
 * socket storage. Only a first send that could still grow into a signature
 * gets storage, to be continued by the next send.
 */
static __always_inline int mg_first_send(struct sk_msg_md *msg,
					 const struct mg_scope *scope,
					 const struct mg_rule_ref *ref,
					 struct bpf_sock *sk)
{
	struct mg_stratum_state *st;
	__u32 zero = 0, len;
	char *buf;
	__u8 sig;

	buf = bpf_map_lookup_elem(&mg_msg_scratch, &zero);
	if (!buf)
		return mg_pass_rest(msg);
	len = msg->size;
	if (len > MG_STRATUM_WINDOW)
		len = MG_STRATUM_WINDOW;
	__builtin_memset(buf, 0, MG_STRATUM_WINDOW + MG_STRATUM_SLACK);
	if (len == 0 || bpf_msg_pull_data(msg, 0, len, 0) ||
	    bpf_probe_read_kernel(buf, len, msg->data))
		return mg_pass_rest(msg);
	sig = mg_stratum_signature(buf, len);
	if (sig != MG_SIG_NONE)
		return mg_stratum_matched(msg, scope, ref, sk, NULL, sig);
	if (len >= MG_STRATUM_WINDOW || !mg_stratum_possible(buf, len))
		return mg_pass_rest(msg);
	st = bpf_sk_storage_get(&mg_stratum_sk, sk, 0,
				BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return mg_pass_rest(msg);
	__builtin_memcpy(st->buf, buf, MG_STRATUM_WINDOW);
	st->len = len;
	return MG_SK_PASS;
}

SEC("sk_msg")
int mg_stratum_msg(struct sk_msg_md *msg)
{
	struct mg_scope *scope = mg_current_scope();
	struct mg_stratum_state *st;
	struct mg_rule_ref *ref;
	struct bpf_sock *sk;
	__u32 off, len, total;
	__u8 sig;

	if (!scope)
		return mg_pass_rest(msg);
	ref = bpf_map_lookup_elem(&mg_stratum, &scope->policy_id);
	if (!ref)
		return mg_pass_rest(msg);
	sk = msg->sk;
	if (!sk)
		return mg_pass_rest(msg);
	st = bpf_sk_storage_get(&mg_stratum_sk, sk, 0, 0);
	if (mg_lsm_judges) {
		__u32 *done = bpf_sk_storage_get(&mg_stratum_done, sk, 0, 0);

		/* Refused by socket_sendmsg: so is anything sent past it. */
		if (done && *done == MG_STRATUM_DENIED)
			return MG_SK_DROP;
		/* Judged clean there from the first byte, and nothing sent
		 * past the hook before it: done. Bytes this program collected
		 * itself (a sendfile first) keep being judged here. */
		if (done && !st)
			return mg_pass_rest(msg);
	}
	if (!st)
		return mg_first_send(msg, scope, ref, sk);
	if (st->denied)
		return MG_SK_DROP;

	/* Append this send's first bytes to what the socket sent before. */
	off = st->len & (MG_STRATUM_WINDOW - 1);
	len = msg->size;
	if (len > MG_STRATUM_WINDOW - off)
		len = MG_STRATUM_WINDOW - off;
	/* Older verifiers (6.1) do not learn a bound from comparing two
	 * registers; the barrier keeps the compiler from dropping the mask as
	 * redundant. */
	barrier_var(len);
	len &= 2 * MG_STRATUM_WINDOW - 1;
	if (len == 0 || bpf_msg_pull_data(msg, 0, len, 0) ||
	    bpf_probe_read_kernel(st->buf + off, len, msg->data)) {
		bpf_sk_storage_delete(&mg_stratum_sk, sk);
		return mg_pass_rest(msg);
	}
	total = off + len;
	st->len = total;

	sig = mg_stratum_signature(st->buf, total);
	if (sig != MG_SIG_NONE)
		return mg_stratum_matched(msg, scope, ref, sk, st, sig);
	/* Not yet: let this part through and see the next send. */
	if (total < MG_STRATUM_WINDOW && mg_stratum_possible(st->buf, total))
		return MG_SK_PASS;
	bpf_sk_storage_delete(&mg_stratum_sk, sk);
	return mg_pass_rest(msg);
}

char LICENSE[] SEC("license") = "GPL";
