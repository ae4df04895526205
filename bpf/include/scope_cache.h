/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * The nearest scope of a cgroup program's task or packet, remembered per
 * CPU in the storage of the cgroup the program is attached to (#25), so
 * that the walk of MG_NEAREST_SCOPE (a helper call and a hash lookup:
 * ≈110 ns of a connect() here) runs once per CPU and generation.
 *
 * mg_scope_gen's value is the scopes' generation (bumped by userspace on
 * every change) shifted left by one, its low bit set while some scope is
 * inside another. Programs are attached to the outermost scopes only, so
 * without nesting every task below the attached cgroup has that cgroup's
 * scope: the entry is used as it is (no helper call). With nesting it is
 * used only by the cgroup it was found for (tasks of several cgroups below
 * one scope take turns).
 *
 * Only for cgroup program types (bpf_get_local_storage). Each object has
 * its own cache; userspace never reads or writes it.
 */
#ifndef MINERGUARD_SCOPE_CACHE_H
#define MINERGUARD_SCOPE_CACHE_H

#include "common.h"

struct mg_scope_cache {
	struct mg_scope scope; /* the nearest scope of cgroup_id */
	__u64 cgroup_id;       /* the cgroup it was found for (0: scopes did not nest) */
	__u64 gen;             /* mg_scope_gen when found; 0 while written */
	__u64 check;           /* mg_scope_cache_check of the fields above */
};

/* Per CPU, so no two CPUs write one entry; a program on this CPU may still
 * interrupt another midway (a packet leaving in softirq), so an entry is
 * only used when its check matches its fields. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE);
	__type(key, __u64); /* shared by every attach type of the cgroup */
	__type(value, struct mg_scope_cache);
} mg_scope_cache SEC(".maps");

/* A mix of an entry's fields: an entry half written by one program and
 * half by another does not match it. */
static __always_inline __u64 mg_scope_cache_check(const struct mg_scope_cache *c)
{
	__u64 h = c->cgroup_id * 0x9e3779b97f4a7c15ULL;

	h = (h ^ c->gen ^ (h >> 29)) * 0xbf58476d1ce4e5b9ULL;
	h = (h ^ c->scope.cgroup_id ^ (h >> 31)) * 0x94d049bb133111ebULL;
	h ^= ((__u64)c->scope.policy_id << 32) | c->scope.flags;
	return h ^ (h >> 32);
}

/* Remembers `found` for `cgroup_id` in generation `gen`: invalid (gen 0)
 * until every field is written. */
static __always_inline void mg_scope_cache_fill(struct mg_scope_cache *c, __u64 cgroup_id,
						__u64 gen, const struct mg_scope *found)
{
	c->gen = 0;
	c->scope = *found;
	c->cgroup_id = cgroup_id;
	c->check = 0;
	c->gen = gen;
	c->check = mg_scope_cache_check(c);
}

/* mg_scope_gen's low bit: some scope is inside another. */
#define MG_SCOPES_NESTED 1ULL

/*
 * The nearest scope of the asking task or packet, whose cgroup CGROUP_ID
 * gives (evaluated only where scopes nest) and whose ancestor at a level
 * ANCESTOR_ID_AT gives (see MG_NEAREST_SCOPE): from this CPU's cache when
 * it holds the current generation (and, where scopes nest, that cgroup),
 * copied into *OUT and checked there (another program on this CPU may
 * write the entry meanwhile); else walked and remembered.
 */
#define MG_CACHED_SCOPE(OUT, CGROUP_ID, ANCESTOR_ID_AT)                       \
	({                                                                     \
		__u32 zero_c_ = 0;                                             \
		__u64 *gen_c_ = bpf_map_lookup_elem(&mg_scope_gen, &zero_c_);  \
		struct mg_scope_cache *c_ = bpf_get_local_storage(&mg_scope_cache, 0); \
		struct mg_scope_cache seen_;                                   \
		__u64 g_ = gen_c_ ? *gen_c_ : 0;                               \
		struct mg_scope *s_;                                           \
		__builtin_memcpy(&seen_, c_, sizeof(seen_));                   \
		if (g_ && seen_.gen == g_ && seen_.check == mg_scope_cache_check(&seen_) && \
		    (!(g_ & MG_SCOPES_NESTED) || seen_.cgroup_id == (CGROUP_ID))) { \
			*(OUT) = seen_.scope;                                  \
			s_ = (OUT);                                            \
		} else {                                                       \
			s_ = MG_NEAREST_SCOPE(ANCESTOR_ID_AT);                 \
			if (s_ && g_)                                          \
				mg_scope_cache_fill(c_,                        \
					(g_ & MG_SCOPES_NESTED) ? (CGROUP_ID) : 0, \
					g_, s_);                               \
		}                                                              \
		s_;                                                            \
	})

/* The current task's nearest scope, for cgroup programs that run in its
 * context (connect, sendmsg, sock_create, setsockopt); `here` holds it
 * when it comes from the cache. */
static __always_inline struct mg_scope *mg_current_scope_cached(struct mg_scope *here)
{
	return MG_CACHED_SCOPE(here, bpf_get_current_cgroup_id(),
			       bpf_get_current_ancestor_cgroup_id);
}

#endif
