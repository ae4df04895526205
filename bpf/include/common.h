/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* Scope lookup and event emission, shared by every hook. */
#ifndef MINERGUARD_COMMON_H
#define MINERGUARD_COMMON_H

#include "maps.h"
#include "proc_info.h"

/*
 * Objects whose program types may not read the current task on every
 * kernel (cgroup sock_addr/sockopt/sock/device, sockops, sk_msg) define
 * MG_PROC_GUARDED before including this header: userspace sets
 * mg_proc_in_prog before load when bpf/probe.bpf.c found those helpers
 * allowed, and the verifier prunes mg_fill_proc otherwise (userspace then
 * reads /proc). Tracing and LSM programs always have them.
 */
#ifdef MG_PROC_GUARDED
const volatile bool mg_proc_in_prog = false;
#define MG_PROC_ALLOWED mg_proc_in_prog
#else
#define MG_PROC_ALLOWED true
#endif

#define MG_SIGKILL 9

static __always_inline void mg_count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&mg_stats, &stat);

	if (v)
		*v += 1;
}

/* Order of strength: kill > deny > audit. */
static __always_inline __u8 mg_rank(__u8 action)
{
	switch (action) {
	case MG_ACTION_KILL:
		return 3;
	case MG_ACTION_DENY:
		return 2;
	case MG_ACTION_AUDIT:
		return 1;
	}
	return 0;
}

/*
 * Keeps in *best the stronger of *best and b (b may be NULL; best->action
 * 0: no match yet); *best among equals. By value, not as a pointer to the
 * map the winning rule came from: the verifier keeps a pointer into each
 * map as a state of its own, and walked everything after a match once per
 * map it could have come from (the exec tracepoint verified 206,843
 * instructions, 40 % of an enforcer's start).
 */
static __always_inline void mg_keep_stronger(struct mg_rule_ref *best,
					     const struct mg_rule_ref *b)
{
	if (b && mg_rank(b->action) > mg_rank(best->action))
		*best = *b;
}

/* best when it holds a match, else NULL. */
static __always_inline struct mg_rule_ref *mg_kept(struct mg_rule_ref *best)
{
	return best->action ? best : NULL;
}

/* The stronger of two matches (either may be NULL); a among equals. */
static __always_inline struct mg_rule_ref *mg_stronger(struct mg_rule_ref *a,
							struct mg_rule_ref *b)
{
	if (!a)
		return b;
	if (b && mg_rank(b->action) > mg_rank(a->action))
		return b;
	return a;
}

/*
 * The nearest scope among a cgroup's ancestors, ANCESTOR_ID_AT(level) giving
 * the id of the ancestor at a level (a helper or macro: the current task's
 * cgroup, or the cgroup of a packet's socket). Only levels that hold a scope
 * (config.scope_levels) are looked at, so the usual case is one helper call
 * and one hash lookup.
 */
#define MG_NEAREST_SCOPE(ANCESTOR_ID_AT)                                      \
	({                                                                     \
		__u32 zero_ = 0;                                               \
		struct mg_config *cfg_ = bpf_map_lookup_elem(&mg_config, &zero_); \
		struct mg_scope *found_ = NULL;                                \
		__u32 levels_ = cfg_ ? cfg_->scope_levels : 0;                 \
		for (int lvl = MG_MAX_SCOPE_DEPTH - 1; levels_ && lvl >= 0; lvl--) { \
			__u64 id_;                                             \
			if (!(levels_ & (1u << lvl)))                          \
				continue;                                      \
			id_ = ANCESTOR_ID_AT(lvl);                             \
			if (!id_)                                              \
				continue;                                      \
			found_ = bpf_map_lookup_elem(&mg_scopes, &id_);        \
			if (found_)                                            \
				break;                                         \
		}                                                              \
		found_;                                                        \
	})

/* The policy of the nearest scope among the current task's cgroup ancestors. */
static __always_inline struct mg_scope *mg_current_scope(void)
{
	return MG_NEAREST_SCOPE(bpf_get_current_ancestor_cgroup_id);
}

/*
 * Reserves an event filled with the task identity; NULL (counted) when full.
 * `with_comm`: the program type may call bpf_get_current_comm (sk_msg may
 * not on older kernels; userspace then fills the name in). The parent and
 * command line are read where MG_PROC_ALLOWED (see above).
 */
static __always_inline struct mg_event *
mg_event_start_comm(__u8 kind, const struct mg_scope *scope,
		    const struct mg_rule_ref *ref, __u8 taken, bool with_comm)
{
	struct mg_event *e = bpf_ringbuf_reserve(&mg_events, sizeof(*e), 0);
	__u64 id;

	if (!e) {
		mg_count(MG_STAT_RINGBUF_DROPS);
		return NULL;
	}
	id = bpf_get_current_pid_tgid();
	e->boot_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->pid = (__u32)id;
	e->tgid = id >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->policy_id = scope->policy_id;
	e->rule_idx = ref->rule_idx;
	e->kind = kind;
	e->action = taken;
	e->requested = ref->action;
	e->family = 0;
	e->port = 0;
	e->protocol = 0;
	e->_pad0 = 0;
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	if (with_comm)
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	else
		__builtin_memset(e->comm, 0, sizeof(e->comm));
	e->path[0] = 0;
	e->ppid = 0;
	e->args_len = 0;
	e->proc_src = 0;
	__builtin_memset(e->_pad1, 0, sizeof(e->_pad1));
	if (MG_PROC_ALLOWED) {
		mg_fill_proc(e);
	} else {
		__builtin_memset(e->pname, 0, sizeof(e->pname));
		__builtin_memset(e->cmdline, 0, sizeof(e->cmdline));
	}
	return e;
}

/* mg_event_start_comm with the task's command name. */
static __always_inline struct mg_event *
mg_event_start(__u8 kind, const struct mg_scope *scope,
	       const struct mg_rule_ref *ref, __u8 taken)
{
	return mg_event_start_comm(kind, scope, ref, taken, true);
}

#endif
