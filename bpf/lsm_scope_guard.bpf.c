// SPDX-License-Identifier: GPL-2.0
/*
 * scope.escape, lsm backend: refused before anything moves (EPERM), on top
 * of scope_guard.bpf.c (which both backends load, and which catches what
 * these hooks cannot see, e.g. a cgroup.procs descriptor opened before the
 * task was in the scope).
 *
 * - file_open of a cgroup.procs / cgroup.threads file for writing, in a
 *   cgroup outside the task's scope;
 * - clone3(CLONE_INTO_CGROUP) by a task in a scope (task_alloc does not
 *   see the target cgroup, so it is refused whatever the target);
 * - bpf() on minerguard's own maps and programs (names starting "mg_").
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "scope_match.h"

#define MG_EPERM 1
#define MG_FMODE_WRITE 0x2
/* include/uapi/linux/magic.h */
#define MG_CGROUP2_SUPER_MAGIC 0x63677270
/* include/uapi/linux/sched.h */
#define MG_CLONE_INTO_CGROUP 0x200000000ULL

/* The current task's scope and its escape rule, or NULL. The scope is the
 * one the guard recorded for the process (seeded at apply, followed from
 * forks and moves): not looked up again from the cgroup, which also keeps
 * these programs small enough for the verifier. */
static __always_inline struct mg_rule_ref *mg_guarding(struct mg_scope **left)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct mg_task_scope *ts;
	struct mg_scope *scope;

	ts = bpf_task_storage_get(&mg_task_scope, task->group_leader, 0, 0);
	if (!ts || !ts->scope_cgid)
		return NULL;
	scope = bpf_map_lookup_elem(&mg_scopes, &ts->scope_cgid);
	if (!scope)
		return NULL;
	*left = scope;
	return bpf_map_lookup_elem(&mg_escape, &scope->policy_id);
}

/* Reports the attempt; the verdict for the hook. */
static __always_inline int mg_refuse(const struct mg_scope *left,
				     const struct mg_rule_ref *ref,
				     struct cgroup *dst, const char *what)
{
	struct mg_event *e;

	if (ref->action == MG_ACTION_KILL)
		bpf_send_signal(MG_SIGKILL);
	e = mg_event_start(MG_KIND_ESCAPE, left, ref, ref->action);
	if (e) {
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		__u64 id = dst ? BPF_CORE_READ(dst, kn, id) : 0;

		__builtin_memcpy(e->addr, &tgid, 4);
		__builtin_memcpy(e->addr + 8, &id, 8);
		if (bpf_probe_read_kernel_str(e->path, MG_PATH_LEN, what) <= 0)
			e->path[0] = 0;
		bpf_ringbuf_submit(e, 0);
	}
	return ref->action == MG_ACTION_AUDIT ? 0 : -MG_EPERM;
}

/* Whether the kernel string `name` is "cgroup.procs" or "cgroup.threads":
 * two 8-byte words each (a byte loop made the verifier walk every path). */
static __always_inline bool mg_is_procs_file(const unsigned char *name)
{
	__u64 w[2] = {}, p0, p1, t0, t1;

	if (bpf_probe_read_kernel_str(w, sizeof(w), name) <= 0)
		return false;
	__builtin_memcpy(&p0, "cgroup.p", 8);
	__builtin_memcpy(&p1, "rocs\0\0\0\0", 8);
	__builtin_memcpy(&t0, "cgroup.t", 8);
	__builtin_memcpy(&t1, "hreads\0\0", 8);
	return (w[0] == p0 && w[1] == p1) || (w[0] == t0 && w[1] == t1);
}

SEC("lsm/file_open")
int BPF_PROG(mg_lsm_cgroup_open, struct file *file, int ret)
{
	struct mg_scope *left = NULL;
	struct mg_rule_ref *ref;
	struct dentry *dentry;
	struct kernfs_node *kn;
	struct cgroup *cg;

	if (ret)
		return ret;
	if (!(BPF_CORE_READ(file, f_mode) & MG_FMODE_WRITE))
		return 0;
	dentry = BPF_CORE_READ(file, f_path.dentry);
	if (BPF_CORE_READ(dentry, d_sb, s_magic) != MG_CGROUP2_SUPER_MAGIC)
		return 0;
	if (!mg_is_procs_file(BPF_CORE_READ(dentry, d_name.name)))
		return 0;
	ref = mg_guarding(&left);
	if (!ref || !left)
		return 0;
	/* The file's directory is the cgroup (kernfs: i_private is the node,
	 * a cgroup directory's node points at the cgroup). */
	kn = BPF_CORE_READ(dentry, d_parent, d_inode, i_private);
	cg = kn ? BPF_CORE_READ(kn, priv) : NULL;
	if (!cg || mg_cgroup_under(cg, left->cgroup_id))
		return 0;
	return mg_refuse(left, ref, cg, (const char *)BPF_CORE_READ(kn, name));
}

SEC("lsm/task_alloc")
int BPF_PROG(mg_lsm_task_alloc, struct task_struct *task,
	     unsigned long clone_flags, int ret)
{
	struct mg_scope *left = NULL;
	struct mg_rule_ref *ref;

	if (ret)
		return ret;
	if (!((__u64)clone_flags & MG_CLONE_INTO_CGROUP))
		return 0;
	ref = mg_guarding(&left);
	if (!ref || !left)
		return 0;
	return mg_refuse(left, ref, NULL, "clone3(CLONE_INTO_CGROUP)");
}

/* Whether a kernel object name starts with "mg_" (minerguard's). */
static __always_inline bool mg_ours(const char *name)
{
	char n[4] = {};

	bpf_probe_read_kernel(n, 3, name);
	return n[0] == 'm' && n[1] == 'g' && n[2] == '_';
}

SEC("lsm/bpf_map")
int BPF_PROG(mg_lsm_bpf_map, struct bpf_map *map, fmode_t fmode, int ret)
{
	struct mg_scope *left = NULL;
	struct mg_rule_ref *ref;

	if (ret)
		return ret;
	if (!mg_ours(map->name))
		return 0;
	ref = mg_guarding(&left);
	if (!ref || !left)
		return 0;
	return mg_refuse(left, ref, NULL, "bpf map");
}

SEC("lsm/bpf_prog")
int BPF_PROG(mg_lsm_bpf_prog, struct bpf_prog *prog, int ret)
{
	struct mg_scope *left = NULL;
	struct mg_rule_ref *ref;

	if (ret)
		return ret;
	if (!mg_ours(BPF_CORE_READ(prog, aux, name)))
		return 0;
	ref = mg_guarding(&left);
	if (!ref || !left)
		return 0;
	return mg_refuse(left, ref, NULL, "bpf prog");
}

char LICENSE[] SEC("license") = "GPL";
