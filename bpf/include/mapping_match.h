/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * Executable file mappings (loader exec: `ld.so ./xmrig` execs the loader,
 * which then maps the miner with PROT_EXEC). Shared by the lsm
 * mmap_file/file_mprotect hooks and the cgroup backend's syscall
 * tracepoints: a mapping is judged by the rules that judge an exec of the
 * same file by itself (name, inode, fileless), not by the allow-list, which
 * would refuse every shared library.
 */
#ifndef MINERGUARD_MAPPING_MATCH_H
#define MINERGUARD_MAPPING_MATCH_H

#include "exec_match.h"

#define MG_PROT_EXEC 0x4

/* Scopes with exec rules that judge files; others never pay more than the
 * scope lookup. */
#define MG_SCOPE_FILE_RULES \
	(MG_SCOPE_INODES | MG_SCOPE_PATHS | MG_SCOPE_MEMFD | MG_SCOPE_DRIFT)

/*
 * The rule refusing an executable mapping of `file` in the current scope
 * (kept in *best, which is returned), or NULL. Fills the event's scope and
 * where the file's path was built (*view, for mg_mapping_event).
 */
static __always_inline struct mg_rule_ref *
mg_mapping_match(struct file *file, struct mg_scope **scope_out, int *view,
		 struct mg_rule_ref *best)
{
	struct mg_scope *scope;

	*view = -1;
	if (!file)
		return NULL;
	scope = mg_current_scope();
	if (!scope)
		return NULL;
	*scope_out = scope;
	mg_file_match(scope, file, false, view, best);
	return mg_kept(best);
}

/* Writes the mapping event (kind exec, path = the mapped file's path from
 * the task's root, else its name). */
static __always_inline void mg_mapping_event(const struct mg_scope *scope,
					     const struct mg_rule_ref *ref,
					     __u8 taken, struct file *file,
					     int view)
{
	struct mg_event *e = mg_event_start(MG_KIND_EXEC, scope, ref, taken);

	if (!e)
		return;
	mg_event_path(e, file, view,
		      (const char *)BPF_CORE_READ(file, f_path.dentry, d_name.name));
	bpf_ringbuf_submit(e, 0);
}

#endif
