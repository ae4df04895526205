/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * Exec matching shared by the exec hooks of both backends
 * (tp_btf/sched_process_exec and lsm/bprm_check_security).
 */
#ifndef MINERGUARD_EXEC_MATCH_H
#define MINERGUARD_EXEC_MATCH_H

#include "common.h"
#include "path_view.h"

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

/* overlayfs (include/uapi/linux/magic.h OVERLAYFS_SUPER_MAGIC). */
#define MG_OVERLAYFS_MAGIC 0x794c7630

/* The fields of overlayfs's inode that exec.drift reads: a module type on
 * most kernels, relocated against the module's BTF (CO-RE). */
struct ovl_inode___mg {
	struct inode vfs_inode;
	struct dentry *__upperdentry;
} __attribute__((preserve_access_index));

/*
 * exec.drift: the file is on overlayfs and has an upper (writable-layer)
 * dentry, i.e. it was created, or copied up by a change, after the overlay
 * was mounted: not part of the image. Where the kernel's overlayfs layout
 * cannot be read, userspace reports the rule unenforced
 * (ProbeReport::overlay_types) rather than letting it pass silently.
 */
static __always_inline bool mg_drifted(struct dentry *d)
{
	struct inode *inode = BPF_CORE_READ(d, d_inode);
	struct ovl_inode___mg *oi;

	if (!inode || BPF_CORE_READ(inode, i_sb, s_magic) != MG_OVERLAYFS_MAGIC)
		return false;
	if (!bpf_core_type_exists(struct ovl_inode___mg) ||
	    !bpf_core_field_exists(struct ovl_inode___mg, __upperdentry))
		return false;
	oi = (void *)inode - bpf_core_field_offset(struct ovl_inode___mg, vfs_inode);
	return BPF_CORE_READ(oi, __upperdentry) != NULL;
}

/* exec.files: the file itself by (device, inode). */
static __always_inline struct mg_rule_ref *
lookup_file_inode(__u32 policy_id, struct dentry *d)
{
	struct mg_inode_key key = {};

	key.policy_id = policy_id;
	key.kind = MG_INODE_FILE;
	key.dev = BPF_CORE_READ(d, d_sb, s_dev);
	key.ino = BPF_CORE_READ(d, d_inode, i_ino);
	return bpf_map_lookup_elem(&mg_inodes, &key);
}

/*
 * The deny rules that judge a file by itself (name, inode, path from the
 * task's root, fileless), for both an exec and an executable mapping of the
 * file, kept in *best (see mg_keep_stronger). With `allow_list`, also the
 * scope's exec.allow_only rule when no allow entry covers it. *view is the
 * offset of the file's path in the path scratch when it was built (for the
 * event), else -1.
 */
static __always_inline void mg_file_match(const struct mg_scope *scope,
					  struct file *file, bool allow_list,
					  int *view, struct mg_rule_ref *best)
{
	bool allow = allow_list && (scope->flags & MG_SCOPE_ALLOW_ONLY);
	bool dirs = scope->flags & MG_SCOPE_PATHS;
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	__u32 zero = 0;

	*view = -1;
	mg_keep_stronger(best, lookup_name(scope->policy_id,
					   (const char *)BPF_CORE_READ(dentry, d_name.name)));
	if (scope->flags & MG_SCOPE_INODES)
		mg_keep_stronger(best, lookup_file_inode(scope->policy_id, dentry));
	if (dirs || allow) {
		struct mg_path_scratch *s =
			bpf_map_lookup_elem(&mg_path_scratch, &zero);
		struct mg_path_verdict v = {};

		if (s)
			v = mg_path_match(scope->policy_id, file, dirs, allow, s,
					  view);
		else
			v.unresolved = true;
		mg_keep_stronger(best, v.deny);
		/* A path that cannot be built is refused, never let through:
		 * as the strongest directory rule, and as not allowed. */
		if (v.unresolved && dirs)
			mg_keep_stronger(best, bpf_map_lookup_elem(&mg_deep_path,
								   &scope->policy_id));
		if (allow && !v.allowed)
			mg_keep_stronger(best, bpf_map_lookup_elem(&mg_allow_only,
								   &scope->policy_id));
	}
	if ((scope->flags & MG_SCOPE_DRIFT) && mg_drifted(dentry))
		mg_keep_stronger(best, bpf_map_lookup_elem(&mg_drift,
							   &scope->policy_id));
	/* A memfd or a deleted file has no link left: fileless exec. */
	if ((scope->flags & MG_SCOPE_MEMFD) &&
	    BPF_CORE_READ(dentry, d_inode, i_nlink) == 0)
		mg_keep_stronger(best, bpf_map_lookup_elem(&mg_memfd,
							   &scope->policy_id));
}

/*
 * Fills an exec event's path: `file`'s path from the task's root (built
 * already at `view`, or now), else `fallback` (a kernel string).
 */
static __always_inline void mg_event_path(struct mg_event *e, struct file *file,
					  int view, const char *fallback)
{
	struct mg_path_scratch *s;
	__u32 zero = 0;

	s = bpf_map_lookup_elem(&mg_path_scratch, &zero);
	if (s && view < 0)
		view = mg_path_of(file, s);
	if (s && view >= 0 &&
	    bpf_probe_read_kernel_str(e->path, MG_PATH_LEN,
				      s->buf + (view & (MG_PATH_BUF - 1))) > 0)
		return;
	if (bpf_probe_read_kernel_str(e->path, MG_PATH_LEN, fallback) <= 0)
		e->path[0] = 0;
}

/*
 * The rule matching this exec in the scope's policy, kept in *best: the
 * strongest of the name rules (the name of the file being executed,
 * symlinks resolved, or the basename the caller executed: for scripts
 * bprm->file may be the interpreter), the inode rules, the path rules, the
 * fileless rule and the allow-list. *view: as for mg_file_match
 * (bprm->file's path).
 */
static __always_inline void mg_exec_match(struct linux_binprm *bprm,
					  const struct mg_scope *scope,
					  int *view, struct mg_rule_ref *best)
{
	const char *filename = BPF_CORE_READ(bprm, filename);
	__u32 zero = 0;
	__u32 off;
	char *buf;

	mg_file_match(scope, BPF_CORE_READ(bprm, file), true, view, best);
	buf = bpf_map_lookup_elem(&mg_exec_scratch, &zero);
	if (!buf)
		return;
	if (bpf_probe_read_kernel_str(buf, MG_PATH_LEN, filename) <= 0)
		return;
	off = basename_offset(buf);
	if (off < MG_PATH_LEN)
		mg_keep_stronger(best, lookup_name(scope->policy_id, filename + off));
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
