/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * Exec matching shared by the exec hooks of both backends
 * (tp_btf/sched_process_exec and lsm/bprm_check_security).
 */
#ifndef MINERGUARD_EXEC_MATCH_H
#define MINERGUARD_EXEC_MATCH_H

#include "common.h"

/* Per-CPU scratch for the execve filename (too big for the BPF stack).
 * Not shared between objects: each object gets its own. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[MG_PATH_LEN]);
} mg_exec_scratch SEC(".maps");

/* Looks a basename (kernel string at `name`) up in the policy's exec_names. */
static __always_inline struct mg_rule_ref *lookup_name(__u32 policy_id,
						       const char *name)
{
	struct mg_name_key key = {};

	key.policy_id = policy_id;
	if (bpf_probe_read_kernel_str(key.name, sizeof(key.name), name) <= 0)
		return NULL;
	return bpf_map_lookup_elem(&mg_exec_names, &key);
}

struct basename_ctx {
	const char *buf;
	__u32 off;
};

static long basename_step(__u32 i, void *data)
{
	struct basename_ctx *ctx = data;
	char c;

	if (i >= MG_PATH_LEN)
		return 1;
	c = ctx->buf[i];
	if (!c)
		return 1;
	if (c == '/')
		ctx->off = i + 1;
	return 0;
}

/*
 * Offset just past the last '/' of the NUL-terminated string in buf.
 * bpf_loop keeps the verifier from walking every (i, off) pair.
 */
static __always_inline __u32 basename_offset(const char *buf)
{
	struct basename_ctx ctx = { .buf = buf, .off = 0 };

	bpf_loop(MG_PATH_LEN, basename_step, &ctx, 0);
	return ctx.off;
}

/* Deepest directory walk for exec.dirs (levels above the file). */
#define MG_DIR_DEPTH 24

/* Looks up a dentry's (device, inode) as `kind` in the policy. */
static __always_inline struct mg_rule_ref *
lookup_inode(__u32 policy_id, __u8 kind, struct dentry *d)
{
	struct mg_inode_key key = {};

	key.policy_id = policy_id;
	key.kind = kind;
	key.dev = BPF_CORE_READ(d, d_sb, s_dev);
	key.ino = BPF_CORE_READ(d, d_inode, i_ino);
	return bpf_map_lookup_elem(&mg_inodes, &key);
}

/* What the inode walk found: the strongest deny match, and whether an
 * allow-list entry covers the file. */
struct mg_inode_verdict {
	struct mg_rule_ref *deny;
	bool allowed;
};

/*
 * exec.files / exec.dirs (`deny`) and exec.allow_only (`allow`): the file by
 * (device, inode), then each directory above it, following d_parent (so
 * symlinks and bind mounts, which share dentries, do not escape). Stops at
 * the filesystem root.
 */
static __always_inline struct mg_inode_verdict
mg_inode_match(__u32 policy_id, struct dentry *d, bool deny, bool allow)
{
	struct mg_inode_verdict v = {};

	if (deny)
		v.deny = lookup_inode(policy_id, MG_INODE_FILE, d);
	if (allow && lookup_inode(policy_id, MG_INODE_ALLOW_FILE, d))
		v.allowed = true;
	for (int i = 0; i < MG_DIR_DEPTH; i++) {
		struct dentry *parent = BPF_CORE_READ(d, d_parent);

		if (!parent || parent == d)
			break;
		if (deny)
			v.deny = mg_stronger(v.deny, lookup_inode(policy_id, MG_INODE_DIR,
								  parent));
		if (allow && !v.allowed &&
		    lookup_inode(policy_id, MG_INODE_ALLOW_DIR, parent))
			v.allowed = true;
		d = parent;
	}
	return v;
}

/*
 * The deny rules that judge a file by itself (name, inode, fileless), for
 * both an exec and an executable mapping of the file. With `allow_list`,
 * also the scope's exec.allow_only rule when no allow entry covers it.
 */
static __always_inline struct mg_rule_ref *
mg_file_match(const struct mg_scope *scope, struct dentry *dentry,
	      bool allow_list)
{
	bool allow = allow_list && (scope->flags & MG_SCOPE_ALLOW_ONLY);
	struct mg_rule_ref *ref;

	ref = lookup_name(scope->policy_id,
			  (const char *)BPF_CORE_READ(dentry, d_name.name));
	if ((scope->flags & MG_SCOPE_INODES) || allow) {
		struct mg_inode_verdict v = mg_inode_match(
			scope->policy_id, dentry, scope->flags & MG_SCOPE_INODES,
			allow);

		ref = mg_stronger(ref, v.deny);
		if (allow && !v.allowed)
			ref = mg_stronger(ref, bpf_map_lookup_elem(
						       &mg_allow_only,
						       &scope->policy_id));
	}
	/* A memfd or a deleted file has no link left: fileless exec. */
	if ((scope->flags & MG_SCOPE_MEMFD) &&
	    BPF_CORE_READ(dentry, d_inode, i_nlink) == 0)
		ref = mg_stronger(ref, bpf_map_lookup_elem(&mg_memfd,
							   &scope->policy_id));
	return ref;
}

/*
 * The rule matching this exec in the scope's policy, or NULL: the strongest
 * of the name rules (the name of the file being executed, symlinks
 * resolved, or the basename the caller executed: for scripts bprm->file may
 * be the interpreter), the inode rules, the fileless rule and the
 * allow-list. *path is left pointing at the execve filename, for the
 * event; with `interp_path`, at bprm->interp instead: the same, except in a
 * script's interpreter pass of bprm_check_security, where it names the
 * interpreter this pass judges.
 */
static __always_inline struct mg_rule_ref *
mg_exec_match(struct linux_binprm *bprm, const struct mg_scope *scope,
	      char **path, bool interp_path)
{
	const char *filename = BPF_CORE_READ(bprm, filename);
	struct mg_rule_ref *ref;
	struct dentry *dentry;
	__u32 zero = 0;
	__u32 off;
	char *buf;

	buf = bpf_map_lookup_elem(&mg_exec_scratch, &zero);
	if (!buf)
		return NULL;
	*path = buf;
	if (bpf_probe_read_kernel_str(buf, MG_PATH_LEN, filename) <= 0)
		buf[0] = 0;

	dentry = BPF_CORE_READ(bprm, file, f_path.dentry);
	ref = mg_file_match(scope, dentry, true);
	off = basename_offset(buf);
	if (off < MG_PATH_LEN)
		ref = mg_stronger(ref, lookup_name(scope->policy_id, filename + off));
	if (interp_path && BPF_CORE_READ(bprm, interp) != filename &&
	    bpf_probe_read_kernel_str(buf, MG_PATH_LEN,
				      BPF_CORE_READ(bprm, interp)) <= 0)
		buf[0] = 0;
	return ref;
}

/*
 * exec.no_new_exec: the scope's first exec (since the rule was applied) is
 * allowed and recorded; every later one matches the rule. Only asked when
 * no other rule refuses this exec, so a refused exec does not use up the
 * first one.
 */
static __always_inline struct mg_rule_ref *
mg_no_new_exec_match(const struct mg_scope *scope)
{
	__u64 tgid = bpf_get_current_pid_tgid() >> 32;

	if (!(scope->flags & MG_SCOPE_NO_NEW_EXEC))
		return NULL;
	/* BPF_NOEXIST makes "first" atomic across CPUs. */
	if (!bpf_map_update_elem(&mg_exec_started, &scope->cgroup_id, &tgid,
				 BPF_NOEXIST))
		return NULL;
	return bpf_map_lookup_elem(&mg_no_new_exec, &scope->policy_id);
}

#endif
