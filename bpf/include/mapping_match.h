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
#define MG_SCOPE_FILE_RULES (MG_SCOPE_INODES | MG_SCOPE_MEMFD)

/*
 * The rule refusing an executable mapping of `file` in the current scope,
 * or NULL. Fills the event's scope and the mapped file's name into *name.
 */
static __always_inline struct mg_rule_ref *
mg_mapping_match(struct file *file, struct mg_scope **scope_out, char **name)
{
	struct mg_scope *scope;
	struct dentry *dentry;
	__u32 zero = 0;
	char *buf;

	if (!file)
		return NULL;
	scope = mg_current_scope();
	if (!scope)
		return NULL;
	buf = bpf_map_lookup_elem(&mg_exec_scratch, &zero);
	if (!buf)
		return NULL;
	dentry = BPF_CORE_READ(file, f_path.dentry);
	if (bpf_probe_read_kernel_str(buf, MG_PATH_LEN,
				      BPF_CORE_READ(dentry, d_name.name)) <= 0)
		buf[0] = 0;
	*scope_out = scope;
	*name = buf;
	return mg_file_match(scope, dentry, false);
}

/* Writes the mapping event (kind exec, path = the mapped file's name). */
static __always_inline void mg_mapping_event(const struct mg_scope *scope,
					     const struct mg_rule_ref *ref,
					     __u8 taken, const char *name)
{
	struct mg_event *e = mg_event_start(MG_KIND_EXEC, scope, ref, taken);

	if (!e)
		return;
	__builtin_memcpy(e->path, name, MG_PATH_LEN);
	bpf_ringbuf_submit(e, 0);
}

#endif
