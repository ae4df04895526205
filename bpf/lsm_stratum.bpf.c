// SPDX-License-Identifier: GPL-2.0
/*
 * lsm backend, Stratum: the sleepable socket_sendmsg hook feeds the bytes a
 * TCP socket sends, straight from the caller's buffers (send, sendto,
 * sendmsg, write, writev; a Fast Open sendto before its SYN), to the
 * socket's Stratum reader (stratum_reader.h), and refuses with EPERM the
 * send that carries the byte deciding a mining method.
 *
 * The iovecs of a send are walked with bpf_loop (so any number of them)
 * and copied into a copy taken for the run (mg_spare_copy); the reader's
 * state is kept in socket storage from send to send while the stream is
 * undecided. Once judged (a mining method, or the reader's budget
 * spent), the verdict stays in mg_stratum_done for the socket's life: a
 * later send costs one socket-storage lookup.
 *
 * The hook runs before the kernel takes the bytes, and the kernel may take
 * none of them (a socket not connected yet, EAGAIN, a signal) or only a
 * part. So what a send adds to a stream is kept aside until the send
 * returns: fexit programs on inet_sendmsg and inet6_sendmsg (TCP and MPTCP
 * sends return through them) keep it when the kernel took the send whole,
 * drop it when it took nothing, and mark the stream as having a gap when
 * it took a part of what was read (its next send is refused: the reader
 * cannot know which bytes follow). A send on a stream whose previous send
 * another thread has in flight is refused too: the kernel's order of the
 * two is not known here. Else a send that failed (eight empty messages on
 * a socket not connected yet) spent the reader's budget, and the stream
 * sent once connected went out unread.
 *
 * sendfile and splice reach this hook from Linux 6.5 on (MSG_SPLICE_PAGES:
 * the data is pages, an ITER_BVEC); their first bytes are read through the
 * kernel's direct map. Before 6.5 they go through sendpage, past this hook,
 * and are left to the egress judge that stands behind it on every kernel
 * (stratum_egress.bpf.c: it reads the packets each socket of a stratum
 * scope sends, whatever path the bytes took); so are kernel senders
 * (ITER_KVEC). The lsm backend loads no sk_msg program and no sockops.
 * Where some sends go past the hook, it leaves audited scopes to that
 * judge (mg_audit_left_to_egress): the judge sees every send, and a
 * login sent through this hook would otherwise be reported twice.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "net_match.h"
#include "stratum_reader.h"

#define MG_EPERM 1
#define MG_EFAULT 14
#define MG_IPPROTO_TCP 6
#define MG_IPPROTO_MPTCP 262
#define MG_IPPROTO_UDP 17
/* include/uapi/linux/in.h (6.11) and linux/socket.h */
#define MG_IPPROTO_SMC 256
#define MG_AF_SMC 43
/* UIO_MAXIOV: no sendmsg/writev carries more segments. */
#define MG_IOV_MAX 1024

/* Before 6.4 the iovec array of an iov_iter was `iov`; now `__iov`. */
struct iov_iter___pre64 {
	const struct iovec *iov;
} __attribute__((preserve_access_index));

/*
 * Where the direct map and the page array start (x86-64 with a randomised
 * memory layout); absent elsewhere (weak: the object still loads, and page
 * data is then left to the sk_msg program). Userspace drops that program
 * only where both symbols exist.
 */
extern const void page_offset_base __ksym __weak;
extern const void vmemmap_base __ksym __weak;
#define MG_PAGE_SHIFT 12

/*
 * A copy of the bytes being judged (the send's segments one after the
 * other, up to what the reader still takes), and a reader for a socket's
 * first send: held by one thread for a run of the hook (the hook may
 * sleep, so a per-CPU buffer could be taken over by another task; see
 * mg_spare_copy below for whose it is). The copy is read by one
 * bpf_loop after the segment walk: a byte loop nested in the segment loop
 * is more than 6.12's verifier takes. Three budgets of room: what the
 * verifier can prove of an append (an offset below the budget, a length
 * masked below twice the budget).
 */
struct mg_send_copy {
	__u8 buf[3 * MG_READ_BUDGET];
	struct mg_reader r;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct mg_send_copy);
} mg_send_copy SEC(".maps");

/*
 * The copies a send is read in. The sleepable hook does not create task
 * storage as a rule: its create may sleep (GFP_KERNEL) inside the helper,
 * and on 6.1 and 6.12 other task-storage helpers on that CPU fail
 * meanwhile (before 6.2 every one, this hook's own among them: a clean
 * first send was refused so under load; later the tracing programs'
 * creates, such as the scope guard's at fork). A send takes a spare copy
 * for its run instead: a slot whose owner word it turns from 0 to its
 * thread id (compare-and-swap) and back to 0 at the end of the run. Only
 * with every spare taken (a run sleeps when the sender's buffer faults)
 * does a thread get its own copy in task storage (mg_send_copy), kept for
 * its later sends.
 */
#define MG_SPARE_COPIES 64
struct mg_spare {
	__u64 owner; /* the thread id holding it; 0: free */
	struct mg_send_copy copy;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MG_SPARE_COPIES);
	__type(key, __u32);
	__type(value, struct mg_spare);
} mg_spare_copy SEC(".maps");

/* Tests only (MINERGUARD_TEST_OWN_COPIES): every thread reads in a copy
 * of its own, as when every spare is taken. */
const volatile bool mg_own_copies_only = false;

/* Set by userspace where sendfile and splice go past this hook (before
 * Linux 6.5): audited scopes are the egress judge's (see the top). */
const volatile bool mg_audit_left_to_egress = false;

/* A socket's stream while it is being judged (see the top of the file). */
struct mg_lsm_stream {
	__u64 inflight; /* thread (pid_tgid) of the send in flight; 0: none */
	struct mg_reader r;    /* the bytes the kernel took, read */
	struct mg_reader next; /* r and the send in flight */
	__u32 read;     /* bytes of that send the reader read */
	__u32 len;      /* its size */
	__u8 verdict;   /* what reading it gave: MG_READ_MORE or MG_READ_DONE */
	__u8 gap;       /* the kernel took part of what was read */
	__u8 born;      /* r is set */
	__u8 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct mg_lsm_stream);
} mg_lsm_stratum_sk SEC(".maps");

/* Where the iovec or bio_vec walk is (bpf_loop context). */
struct mg_iov_walk {
	struct mg_send_copy *copy; /* where the bytes go */
	__u64 iov;  /* kernel address of the iovec or bio_vec array */
	__u64 skip; /* bytes of the first segment already sent */
	__u64 vmemmap;	    /* bio_vec walks: the page array's address */
	__u64 direct_map; /* bio_vec walks: the direct map's address */
	__u32 room;    /* bytes the reader still takes (at most the budget) */
	__u32 len;     /* bytes copied so far */
	__u32 failed;  /* a segment could not be read */
	__u32 _pad;
};

/*
 * Appends the bytes at `from` (n of them; user memory unless `kernel`) to
 * the thread's copy, up to what the reader still takes. Returns 1 when the
 * walk should stop.
 */
static __always_inline long mg_read_from(struct mg_iov_walk *w, __u64 from,
					 __u64 n, bool kernel)
{
	struct mg_send_copy *copy = w->copy;
	__u32 off, room;

	if (!copy) {
		w->failed = 1;
		return 1;
	}
	if (w->len >= w->room)
		return 1;
	off = w->len & (MG_READ_BUDGET - 1);
	room = w->room - w->len;
	if (n > room)
		n = room;
	/* 6.1's verifier learns no bound from comparing two registers. */
	barrier_var(n);
	n &= 2 * MG_READ_BUDGET - 1;
	if (n == 0)
		return 0;
	/* A fault here fails the kernel's own copy at the same byte. */
	if (kernel ? bpf_probe_read_kernel(copy->buf + off, n, (const void *)from)
		   : bpf_copy_from_user(copy->buf + off, n, (const void *)from)) {
		w->failed = 1;
		return 1;
	}
	w->len = off + n;
	return w->len >= w->room;
}

static long mg_read_segment(__u32 i, void *ctx)
{
	struct mg_iov_walk *w = ctx;
	struct iovec v;

	if (bpf_probe_read_kernel(&v, sizeof(v),
				  (const void *)(w->iov + i * sizeof(v)))) {
		w->failed = 1;
		return 1;
	}
	if (i == 0) {
		if (w->skip >= v.iov_len)
			return 0;
		return mg_read_from(w, (__u64)v.iov_base + w->skip,
				    v.iov_len - w->skip, false);
	}
	return mg_read_from(w, (__u64)v.iov_base, v.iov_len, false);
}

/*
 * One bio_vec of a page-backed send (sendfile, splice, vmsplice'd pages):
 * its bytes are read through the direct map (page_address(), which on
 * x86-64 is the page's index in the page array times the page size, past
 * the direct map's start). A multi-page bio_vec is physically contiguous,
 * and so is its range in the direct map.
 */
static long mg_read_page_segment(__u32 i, void *ctx)
{
	struct mg_iov_walk *w = ctx;
	const struct bio_vec *bv;
	__u64 page, addr;
	__u32 len, off;

	bv = (const void *)(w->iov + i * bpf_core_type_size(struct bio_vec));
	page = (__u64)BPF_CORE_READ(bv, bv_page);
	len = BPF_CORE_READ(bv, bv_len);
	off = BPF_CORE_READ(bv, bv_offset);
	if (page < w->vmemmap) {
		w->failed = 1;
		return 1;
	}
	addr = w->direct_map +
	       ((page - w->vmemmap) / bpf_core_type_size(struct page) << MG_PAGE_SHIFT) + off;
	if (i == 0) {
		if (w->skip >= len)
			return 0;
		return mg_read_from(w, addr + w->skip, len - w->skip, true);
	}
	return mg_read_from(w, addr, len, true);
}

/* mg_read_sent's answers besides a verdict. */
#define MG_SENT_OTHER (-1)  /* neither user memory nor pages this program reads */
#define MG_SENT_FAILED (-2) /* a segment could not be read */

/*
 * Feeds the data `msg` is about to send to reader `r` (the number of bytes
 * read in *read). Returns the verdict, or MG_SENT_*.
 */
static __always_inline int mg_read_sent(struct msghdr *msg, struct mg_reader *r,
					struct mg_send_copy *copy, __u32 *read)
{
	struct mg_iov_walk w = { .copy = copy };
	__u8 type = BPF_CORE_READ(msg, msg_iter.iter_type);
	__u64 nr;

	if (mg_reader_spent(r))
		return MG_READ_DONE;
	w.room = MG_READ_BUDGET - (r->seen & (MG_READ_BUDGET - 1));

	w.skip = BPF_CORE_READ(msg, msg_iter.iov_offset);
	if (bpf_core_enum_value_exists(enum iter_type, ITER_UBUF) &&
	    type == bpf_core_enum_value(enum iter_type, ITER_UBUF)) {
		__u64 ubuf = (__u64)BPF_CORE_READ(msg, msg_iter.ubuf);
		__u64 count = BPF_CORE_READ(msg, msg_iter.count);

		mg_read_from(&w, ubuf + w.skip, count, false);
		goto out;
	}
	if (type == bpf_core_enum_value(enum iter_type, ITER_BVEC)) {
		if (!&vmemmap_base || !&page_offset_base ||
		    bpf_probe_read_kernel(&w.vmemmap, sizeof(w.vmemmap), &vmemmap_base) ||
		    bpf_probe_read_kernel(&w.direct_map, sizeof(w.direct_map),
					  &page_offset_base))
			return MG_SENT_OTHER;
		w.iov = (__u64)BPF_CORE_READ(msg, msg_iter.bvec);
		nr = BPF_CORE_READ(msg, msg_iter.nr_segs);
		if (nr > MG_IOV_MAX)
			nr = MG_IOV_MAX;
		bpf_loop(nr, mg_read_page_segment, &w, 0);
		goto out;
	}
	if (type != bpf_core_enum_value(enum iter_type, ITER_IOVEC))
		return MG_SENT_OTHER;
	if (bpf_core_field_exists(struct iov_iter___pre64, iov)) {
		struct iov_iter___pre64 *it = (void *)&msg->msg_iter;

		w.iov = (__u64)BPF_CORE_READ(it, iov);
	} else {
		w.iov = (__u64)BPF_CORE_READ(msg, msg_iter.__iov);
	}
	nr = BPF_CORE_READ(msg, msg_iter.nr_segs);
	if (nr > MG_IOV_MAX)
		nr = MG_IOV_MAX;
	bpf_loop(nr, mg_read_segment, &w, 0);
out:
	if (w.failed)
		return MG_SENT_FAILED;
	*read = w.len;
	if (!w.len)
		return MG_READ_MORE;
	return mg_reader_feed(r, copy->buf, w.len);
}

/* Reports a matched signature (the reader's `r`; without one, the family
 * `sig` and no method) against the destination (connected peer, or the
 * address a Fast Open sendto names). */
static __always_inline void mg_lsm_stratum_event(struct sock *sk,
						 struct msghdr *msg,
						 const struct mg_scope *scope,
						 const struct mg_rule_ref *ref,
						 const struct mg_reader *r, __u8 sig,
						 __u8 action)
{
	struct mg_event *e = mg_event_start(MG_KIND_STRATUM, scope, ref, action);
	struct sockaddr_in6 to = {};
	struct sockaddr *name;
	__u32 ip[4] = {};
	__u16 port_be;

	if (!e)
		return;
	name = BPF_CORE_READ(msg, msg_name);
	if (name && BPF_CORE_READ(msg, msg_namelen) >= (int)sizeof(struct sockaddr_in)) {
		bpf_probe_read_kernel(&to, sizeof(struct sockaddr_in), name);
		if (to.sin6_family == MG_AF_INET6 &&
		    BPF_CORE_READ(msg, msg_namelen) >= (int)sizeof(to))
			bpf_probe_read_kernel(&to, sizeof(to), name);
	}
	if (to.sin6_family == MG_AF_INET) {
		struct sockaddr_in *sin = (void *)&to;

		ip[0] = sin->sin_addr.s_addr;
		port_be = sin->sin_port;
		e->family = MG_AF_INET;
	} else if (to.sin6_family == MG_AF_INET6) {
		__builtin_memcpy(ip, &to.sin6_addr, 16);
		port_be = to.sin6_port;
		e->family = mg_unmap_v4(ip);
	} else if (BPF_CORE_READ(sk, __sk_common.skc_family) == MG_AF_INET) {
		ip[0] = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		port_be = BPF_CORE_READ(sk, __sk_common.skc_dport);
		e->family = MG_AF_INET;
	} else {
		BPF_CORE_READ_INTO(&ip, sk, __sk_common.skc_v6_daddr);
		port_be = BPF_CORE_READ(sk, __sk_common.skc_dport);
		e->family = mg_unmap_v4(ip);
	}
	__builtin_memcpy(e->addr, ip, 16);
	e->port = bpf_ntohs(port_be);
	e->protocol = BPF_CORE_READ(sk, sk_protocol) == MG_IPPROTO_UDP ? MG_IPPROTO_UDP
								       : MG_IPPROTO_TCP;
	if (r) {
		mg_stratum_event_method(e, r);
	} else {
		e->path[0] = sig;
		e->path[1] = 0;
	}
	bpf_ringbuf_submit(e, 0);
}

/* Records the socket's verdict; returns what the send gets. */
static __always_inline int mg_judged(struct sock *sk, __u32 verdict)
{
	__u32 *done = bpf_sk_storage_get(&mg_stratum_done, sk, 0,
					 BPF_SK_STORAGE_GET_F_CREATE);

	if (done)
		*done = verdict;
	return verdict == MG_STRATUM_DENIED ? -MG_EPERM : 0;
}

/* A mining method in the socket's stream: reported, refused unless audit. */
static __always_inline int mg_matched(struct sock *sk, struct msghdr *msg,
				      const struct mg_scope *scope,
				      const struct mg_rule_ref *ref,
				      const struct mg_reader *r)
{
	if (ref->action == MG_ACTION_KILL)
		bpf_send_signal(MG_SIGKILL);
	mg_lsm_stratum_event(sk, msg, scope, ref, r, 0, ref->action);
	return mg_judged(sk, ref->action == MG_ACTION_AUDIT ? MG_STRATUM_PASSED
							    : MG_STRATUM_DENIED);
}

/*
 * A socket whose stream cannot be read (`sig`: why): reported, and refused
 * unless audit (no kill: nothing mining was read).
 */
static __always_inline int mg_unjudged(struct sock *sk, struct msghdr *msg,
				       const struct mg_scope *scope,
				       const struct mg_rule_ref *ref, __u8 sig)
{
	bool audit = ref->action == MG_ACTION_AUDIT;

	mg_lsm_stratum_event(sk, msg, scope, ref, NULL, sig,
			     audit ? MG_ACTION_AUDIT : MG_ACTION_DENY);
	return mg_judged(sk, audit ? MG_STRATUM_PASSED : MG_STRATUM_DENIED);
}

/*
 * A stream the reader cannot follow (the kernel took part of a send that
 * was read, or another thread's send is in flight).
 */
static __always_inline int mg_gap(struct sock *sk, struct msghdr *msg,
				  const struct mg_scope *scope,
				  const struct mg_rule_ref *ref)
{
	bpf_sk_storage_delete(&mg_lsm_stratum_sk, sk);
	return mg_unjudged(sk, msg, scope, ref, MG_SIG_GAP);
}

#define MG_EAGAIN 11
#define MG_EOPNOTSUPP 95
#define MG_MSG_DONTWAIT 0x40
#define MG_MSG_FASTOPEN 0x20000000
/* include/net/tcp_states.h */
#define MG_TCP_ESTABLISHED 1
#define MG_TCP_SYN_SENT 2
#define MG_TCP_SYN_RECV 3
#define MG_TCP_CLOSE 7
#define MG_TCP_CLOSE_WAIT 8
/* What one new skb of a TCP send costs its send buffer beside the data, at
 * most: tcp_stream_alloc_skb's fclone skb with MAX_TCP_HEADER of head is
 * about 1.3 KiB of truesize on x86-64. */
#define MG_SKB_COST 2048
#define MG_MSS_MIN 536

/*
 * Whether the kernel may wait, inside a blocking send on `sk`, before it has
 * copied the first `read` bytes of the caller's buffer: for the connection
 * (a socket still connecting; a Fast Open send on an unconnected one, whose
 * bytes past the SYN's share are copied once connected), or for send-buffer
 * room (tcp_sendmsg_locked and mptcp_sendmsg check sk_stream_memory_free
 * before each new skb or fragment: the send buffer, and the unsent bytes
 * against TCP_NOTSENT_LOWAT). What the hook read could be rewritten by
 * another thread during such a wait, and the kernel would send that instead.
 * Global memory pressure can make the kernel wait too; that is not foreseen.
 */
static __always_inline bool mg_send_may_wait(struct sock *sk, struct msghdr *msg,
					     __u32 read)
{
	__u32 flags = BPF_CORE_READ(msg, msg_flags);
	__u8 state = sk->__sk_common.skc_state;
	__u64 need, lowat = 0, notsent = 0, mss = MG_MSS_MIN;
	struct net *net;

	if (!read || (flags & MG_MSG_DONTWAIT))
		return false;
	if (state == MG_TCP_SYN_SENT)
		return true;
	if (state == MG_TCP_CLOSE)
		return flags & MG_MSG_FASTOPEN;
	/* Other states fail the send at once (EPIPE), or take it (a passive
	 * Fast Open socket in SYN_RECV). */
	if (state != MG_TCP_ESTABLISHED && state != MG_TCP_CLOSE_WAIT &&
	    state != MG_TCP_SYN_RECV)
		return false;
	net = BPF_CORE_READ(sk, __sk_common.skc_net.net);
	if (sk->sk_protocol == MG_IPPROTO_TCP) {
		struct tcp_sock *tp = (void *)sk;

		mss = BPF_CORE_READ(tp, mss_cache);
		if (mss < 64)
			mss = MG_MSS_MIN;
		lowat = BPF_CORE_READ(tp, notsent_lowat);
		notsent = (__u32)(BPF_CORE_READ(tp, write_seq) - BPF_CORE_READ(tp, snd_nxt));
		/* One skb per mss of what was read, and a partial one at each
		 * end. */
		need = read + (read / mss + 2) * MG_SKB_COST;
	} else {
		struct mptcp_sock *msk = (void *)sk;

		/* MPTCP copies into page fragments, with a small header each. */
		need = read + 2 * MG_SKB_COST;
		if (bpf_core_field_exists(msk->notsent_lowat)) {
			lowat = BPF_CORE_READ(msk, notsent_lowat);
			notsent = BPF_CORE_READ(msk, write_seq) - BPF_CORE_READ(msk, snd_nxt);
		} else {
			/* Before TCP_NOTSENT_LOWAT reached MPTCP: no limit. */
			lowat = 0xffffffff;
		}
	}
	if (!lowat)
		lowat = BPF_CORE_READ(net, ipv4.sysctl_tcp_notsent_lowat);
	if (notsent + read >= lowat)
		return true;
	return (__u64)(__s64)sk->sk_wmem_queued + need >= (__u64)(__s64)sk->sk_sndbuf;
}

/*
 * A blocking send refused before the kernel could wait with what the hook
 * read (mg_send_may_wait): reported, refused unless audit, as a
 * non-blocking send would be there (EAGAIN; a Fast Open one EOPNOTSUPP, as
 * where Fast Open is off, so that the caller connects first). The socket
 * is not refused for good: its sends are judged again.
 */
static __always_inline int mg_would_wait(struct sock *sk, struct msghdr *msg,
					 const struct mg_scope *scope,
					 const struct mg_rule_ref *ref)
{
	if (ref->action == MG_ACTION_AUDIT) {
		mg_lsm_stratum_event(sk, msg, scope, ref, NULL, MG_SIG_WAIT, MG_ACTION_AUDIT);
		return 0;
	}
	mg_lsm_stratum_event(sk, msg, scope, ref, NULL, MG_SIG_WAIT, MG_ACTION_DENY);
	return BPF_CORE_READ(msg, msg_flags) & MG_MSG_FASTOPEN ? -MG_EOPNOTSUPP : -MG_EAGAIN;
}

/* Reads one datagram by itself (no state is kept). */
static __always_inline int mg_judge_datagram(struct sock *sk, struct msghdr *msg,
					     const struct mg_scope *scope,
					     const struct mg_rule_ref *ref,
					     struct mg_send_copy *copy)
{
	__u32 read = 0;
	int verdict;

	mg_reader_init(&copy->r, scope->policy_id, ref);
	verdict = mg_read_sent(msg, &copy->r, copy, &read);
	if (verdict == MG_SENT_FAILED) {
		mg_count(MG_STAT_UNREAD_REFUSED);
		return -MG_EFAULT;
	}
	if (verdict == MG_READ_MINING)
		return mg_matched(sk, msg, scope, ref, &copy->r);
	return 0;
}

/*
 * Reads what this send adds to the stream of `sk` (in `copy`) and returns
 * what the send gets. What it adds is kept aside (st->next) until the send
 * returns (mg_stream_sent).
 */
static __always_inline int mg_judge_stream(struct sock *sk, struct msghdr *msg,
					   const struct mg_scope *scope,
					   const struct mg_rule_ref *ref, int size,
					   struct mg_send_copy *copy)
{
	__u64 thread = bpf_get_current_pid_tgid(), holder;
	struct mg_lsm_stream *st;
	struct mg_reader *r;
	__u32 read = 0;
	int verdict;

	st = bpf_sk_storage_get(&mg_lsm_stratum_sk, sk, 0, 0);
	if (st) {
		holder = __sync_val_compare_and_swap(&st->inflight, 0, thread);
		/* Another thread's send is in flight (or a gap was left):
		 * which bytes the kernel takes first is not known here. The
		 * thread's own mark is a send of its that a later hook refused
		 * (it never reached inet_sendmsg): it took nothing. */
		if ((holder && holder != thread) || st->gap)
			return mg_gap(sk, msg, scope, ref);
		__builtin_memcpy(&st->next, &st->r, sizeof(st->r));
		r = &st->next;
	} else {
		/* A first send is read in the run's copy: socket storage only
		 * if it is let through. */
		r = &copy->r;
		mg_reader_init(r, scope->policy_id, ref);
	}
	verdict = mg_read_sent(msg, r, copy, &read);
	if (verdict == MG_SENT_OTHER || verdict == MG_SENT_FAILED) {
		if (st)
			__sync_fetch_and_and(&st->inflight, 0);
		/* Kernel senders (ITER_KVEC) and pages this program cannot
		 * read are left to the sk_msg program where it runs; user
		 * memory that faults fails the kernel's copy too, though
		 * only from the faulting part on: nothing of it goes. */
		if (verdict == MG_SENT_OTHER)
			return 0;
		mg_count(MG_STAT_UNREAD_REFUSED);
		return -MG_EFAULT;
	}
	if (verdict == MG_READ_MINING) {
		if (st)
			bpf_sk_storage_delete(&mg_lsm_stratum_sk, sk);
		return mg_matched(sk, msg, scope, ref, r);
	}
	if (mg_send_may_wait(sk, msg, read)) {
		int refused = mg_would_wait(sk, msg, scope, ref);

		if (refused) {
			if (st)
				__sync_fetch_and_and(&st->inflight, 0);
			return refused;
		}
	}
	if (!st) {
		st = bpf_sk_storage_get(&mg_lsm_stratum_sk, sk, 0,
					BPF_SK_STORAGE_GET_F_CREATE);
		/* A socket that cannot be followed is not let through. */
		if (!st) {
			mg_count(MG_STAT_UNREAD_REFUSED);
			return -MG_EPERM;
		}
		/* Another thread's first send got here first. */
		holder = __sync_val_compare_and_swap(&st->inflight, 0, thread);
		if ((holder && holder != thread) || st->born)
			return mg_gap(sk, msg, scope, ref);
		mg_reader_init(&st->r, scope->policy_id, ref);
		st->born = 1;
		__builtin_memcpy(&st->next, r, sizeof(*r));
	}
	st->read = read;
	st->len = size > 0 ? size : 0;
	st->verdict = verdict;
	return 0;
}

/*
 * A send of a stream being judged returned (`ret`: bytes the kernel took,
 * or an error): what its hook read joins the stream if the kernel took it.
 */
static __always_inline int mg_stream_sent(struct socket *sock, int ret)
{
	__u64 thread = bpf_get_current_pid_tgid();
	struct mg_lsm_stream *st;
	struct sock *sk;
	__u32 took;

	sk = sock->sk;
	if (!sk)
		return 0;
	st = bpf_sk_storage_get(&mg_lsm_stratum_sk, sk, 0, 0);
	if (!st || st->inflight != thread)
		return 0;
	took = ret > 0 ? ret : 0;
	if (took >= st->len || (st->verdict == MG_READ_DONE && took >= st->read)) {
		if (st->verdict == MG_READ_DONE) {
			/* Judged: the reader leaves the socket. */
			mg_judged(sk, MG_STRATUM_PASSED);
			bpf_sk_storage_delete(&mg_lsm_stratum_sk, sk);
			return 0;
		}
		__builtin_memcpy(&st->r, &st->next, sizeof(st->r));
	} else if (took) {
		st->gap = 1;
	}
	__sync_fetch_and_and(&st->inflight, 0);
	return 0;
}

SEC("fexit/inet_sendmsg")
int BPF_PROG(mg_lsm_stratum_sent4, struct socket *sock, struct msghdr *msg, size_t size,
	     int ret)
{
	return mg_stream_sent(sock, ret);
}

SEC("fexit/inet6_sendmsg")
int BPF_PROG(mg_lsm_stratum_sent6, struct socket *sock, struct msghdr *msg, size_t size,
	     int ret)
{
	return mg_stream_sent(sock, ret);
}

/* Takes a free spare copy for this thread's run of the hook, or NULL when
 * all are taken. */
static __always_inline struct mg_spare *mg_take_spare(void)
{
	__u64 thread = bpf_get_current_pid_tgid();
	struct mg_spare *spare;
	__u32 i, k;

	for (i = 0; i < MG_SPARE_COPIES; i++) {
		/* Threads start at different slots. */
		k = ((__u32)thread + i) & (MG_SPARE_COPIES - 1);
		spare = bpf_map_lookup_elem(&mg_spare_copy, &k);
		if (!spare)
			return NULL;
		if (!spare->owner &&
		    __sync_val_compare_and_swap(&spare->owner, 0, thread) == 0)
			return spare;
	}
	return NULL;
}

SEC("lsm.s/socket_sendmsg")
int BPF_PROG(mg_lsm_stratum, struct socket *sock, struct msghdr *msg,
	     int size, int ret)
{
	struct mg_send_copy *copy;
	struct mg_scope *scope;
	struct mg_rule_ref *ref;
	struct sock *sk;
	struct mg_spare *spare;
	__u32 *done;
	bool udp, smc;
	int verdict;

	if (ret)
		return ret;
	sk = sock->sk;
	if (!sk)
		return 0;
	/* A judged socket: this one lookup. */
	done = bpf_sk_storage_get(&mg_stratum_done, sk, 0, 0);
	if (done)
		return *done == MG_STRATUM_DENIED ? -MG_EPERM : 0;
	/* MPTCP sockets too: their data reaches the subflows inside the
	 * kernel, so this hook is where it can be read. UDP datagrams are
	 * read one by one (each is a message; no state is kept). */
	udp = sk->sk_protocol == MG_IPPROTO_UDP;
	/* SMC sockets (AF_SMC, or IPPROTO_SMC from 6.11) fall back to TCP
	 * with a peer that has no SMC, any pool. Once connected the file names
	 * the TCP socket, read here as any other; but sends the SMC socket
	 * itself takes (a Fast Open sendto falls back inside the send) reach
	 * the TCP socket directly, past this hook. They are refused rather
	 * than read (smc_run makes any client's sockets SMC). */
	smc = sk->__sk_common.skc_family == MG_AF_SMC || sk->sk_protocol == MG_IPPROTO_SMC;
	if (sk->sk_protocol != MG_IPPROTO_TCP && sk->sk_protocol != MG_IPPROTO_MPTCP && !udp &&
	    !smc)
		return 0;
	scope = mg_current_scope();
	if (!scope)
		return 0;
	ref = bpf_map_lookup_elem(&mg_stratum, &scope->policy_id);
	if (!ref || (mg_audit_left_to_egress && ref->action == MG_ACTION_AUDIT))
		return 0;
	if (smc)
		return mg_unjudged(sk, msg, scope, ref, MG_SIG_SMC);
	/* A thread that once found every spare taken keeps its own copy. */
	copy = bpf_task_storage_get(&mg_send_copy, bpf_get_current_task_btf(), 0, 0);
	spare = copy || mg_own_copies_only ? NULL : mg_take_spare();
	if (spare)
		copy = &spare->copy;
	if (!copy) {
		/* Every spare taken: the thread's own copy after all, whatever
		 * its create costs the other helpers. A send that cannot be
		 * judged is not let through. */
		mg_count(MG_STAT_OWN_COPIES);
		copy = bpf_task_storage_get(&mg_send_copy, bpf_get_current_task_btf(), 0,
					    BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!copy) {
			mg_count(MG_STAT_UNREAD_REFUSED);
			return -MG_EPERM;
		}
	}
	verdict = udp ? mg_judge_datagram(sk, msg, scope, ref, copy)
		      : mg_judge_stream(sk, msg, scope, ref, size, copy);
	if (spare)
		__sync_fetch_and_and(&spare->owner, 0);
	return verdict;
}

char LICENSE[] SEC("license") = "GPL";
