/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * Scopes of an arbitrary cgroup (not the current task's), for the scope
 * guard: the programs there see a cgroup a task is moved or cloned into.
 */
#ifndef MINERGUARD_SCOPE_MATCH_H
#define MINERGUARD_SCOPE_MATCH_H

#include "common.h"

/* The id of `cg`'s ancestor at `level` (cg itself at its own level). */
static __always_inline __u64 mg_ancestor_id(struct cgroup *cg, int level)
{
	struct cgroup *anc = BPF_CORE_READ(cg, ancestors[level]);

	return anc ? BPF_CORE_READ(anc, kn, id) : 0;
}

struct mg_scope_walk {
	struct cgroup *cg;
	__u32 levels; /* config.scope_levels */
	int level;    /* cg's own level */
	struct mg_scope *found;
	__u64 id;     /* mg_cgroup_under: the cgroup looked for */
	bool under;
};

static long mg_scope_walk_step(__u32 i, void *data)
{
	struct mg_scope_walk *w = data;
	int lvl = MG_MAX_SCOPE_DEPTH - 1 - (int)i;
	__u64 id;

	if (lvl < 0)
		return 1;
	if (!(w->levels & (1u << (lvl & 31))) || lvl > w->level)
		return 0;
	id = mg_ancestor_id(w->cg, lvl & (MG_MAX_SCOPE_DEPTH - 1));
	if (!id)
		return 0;
	w->found = bpf_map_lookup_elem(&mg_scopes, &id);
	return w->found ? 1 : 0;
}

/* The nearest scope among `cg` and its ancestors, as mg_current_scope
 * (a bpf_loop: the verifier walks one step, not 32). */
static __always_inline struct mg_scope *mg_scope_of_cgroup(struct cgroup *cg)
{
	__u32 zero = 0;
	struct mg_config *cfg = bpf_map_lookup_elem(&mg_config, &zero);
	struct mg_scope_walk w = {};

	if (!cfg || !cfg->scope_levels || !cg)
		return NULL;
	w.cg = cg;
	w.levels = cfg->scope_levels;
	w.level = BPF_CORE_READ(cg, level);
	bpf_loop(MG_MAX_SCOPE_DEPTH, mg_scope_walk_step, &w, 0);
	return w.found;
}

static long mg_under_step(__u32 i, void *data)
{
	struct mg_scope_walk *w = data;

	if ((int)i > w->level)
		return 1;
	if (mg_ancestor_id(w->cg, i & (MG_MAX_SCOPE_DEPTH - 1)) == w->id) {
		w->under = true;
		return 1;
	}
	return 0;
}

/* Whether `cg` is the cgroup `id` or below it. */
static __always_inline bool mg_cgroup_under(struct cgroup *cg, __u64 id)
{
	struct mg_scope_walk w = {};

	w.cg = cg;
	w.id = id;
	w.level = BPF_CORE_READ(cg, level);
	bpf_loop(MG_MAX_SCOPE_DEPTH, mg_under_step, &w, 0);
	return w.under;
}

/* Fills an escape event's target: the moved process, where it went. */
static __always_inline void mg_escape_target(struct mg_event *e,
					     struct task_struct *moved,
					     struct cgroup *dst, const char *path)
{
	__u32 tgid = BPF_CORE_READ(moved, tgid);
	__u64 id = BPF_CORE_READ(dst, kn, id);

	__builtin_memcpy(e->addr, &tgid, 4);
	__builtin_memcpy(e->addr + 8, &id, 8);
	if (!path || bpf_probe_read_kernel_str(e->path, MG_PATH_LEN, path) <= 0)
		e->path[0] = 0;
}

#endif
