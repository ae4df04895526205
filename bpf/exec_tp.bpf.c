// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup backend, exec rules: runs after a successful execve in a scoped
 * cgroup and kills the task before the new image runs an instruction (the
 * signal is delivered on the return to user mode). The exec itself has already
 * succeeded, so `deny` is carried out as `kill` and reported as such.
 *
 * tp_btf (a raw tracepoint with BTF) rather than tracepoint/sched/...: it
 * needs no tracefs mount and hands us the typed linux_binprm.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"

/* Per-CPU scratch for the execve filename (too big for the BPF stack). */
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

SEC("tp_btf/sched_process_exec")
int BPF_PROG(mg_exec_tp, struct task_struct *task, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	struct mg_scope *scope = mg_current_scope();
	struct mg_rule_ref *ref;
	const char *filename;
	struct mg_event *e;
	__u32 zero = 0;
	char *path;
	__u8 taken;

	if (!scope)
		return 0;

	filename = BPF_CORE_READ(bprm, filename);
	path = bpf_map_lookup_elem(&mg_exec_scratch, &zero);
	if (!path)
		return 0;
	if (bpf_probe_read_kernel_str(path, MG_PATH_LEN, filename) <= 0)
		path[0] = 0;

	/* The name of the file actually executed (symlinks resolved)... */
	ref = lookup_name(scope->policy_id,
			  (const char *)BPF_CORE_READ(bprm, file, f_path.dentry,
						      d_name.name));
	/* ...or, for scripts (bprm->file is then the interpreter), the name
	 * the caller executed. */
	if (!ref) {
		__u32 off = basename_offset(path);

		if (off >= MG_PATH_LEN)
			return 0;
		ref = lookup_name(scope->policy_id, filename + off);
	}
	if (!ref)
		return 0;

	if (ref->action == MG_ACTION_AUDIT) {
		taken = MG_ACTION_AUDIT;
	} else {
		bpf_send_signal(MG_SIGKILL);
		taken = MG_ACTION_KILL;
	}

	e = mg_event_start(MG_KIND_EXEC, scope, ref, taken);
	if (!e)
		return 0;
	__builtin_memcpy(e->path, path, MG_PATH_LEN);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
