// SPDX-License-Identifier: GPL-2.0
/*
 * scope.escape, cgroup backend: clone3(CLONE_INTO_CGROUP) into a cgroup
 * outside the caller's scope is stopped before the child exists. At
 * syscall entry the caller gets SIGKILL; copy_process sees the pending
 * signal before its point of no return and creates nothing. (The lsm
 * backend refuses it in task_alloc instead.) A thread that changes the
 * clone_args after this read still meets sched_process_fork's check in
 * scope_guard.bpf.c.
 *
 * A per-syscall tracepoint (tracefs), loaded with the first scope.escape
 * policy unless syscall tracepoints are switched off.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "scope_match.h"
#include "fd_file.h"

/* include/uapi/linux/sched.h: struct clone_args, CLONE_INTO_CGROUP. */
#define MG_CLONE_INTO_CGROUP 0x200000000ULL
#define MG_CLONE_ARGS_CGROUP 80 /* offset of `cgroup` (CLONE_ARGS_SIZE_VER2 = 88) */

SEC("tracepoint/syscalls/sys_enter_clone3")
int mg_clone3_tp(struct trace_event_raw_sys_enter *ctx)
{
	const void *uargs = (const void *)ctx->args[0];
	struct task_struct *task = bpf_get_current_task_btf();
	struct mg_task_scope *ts;
	struct mg_scope *left;
	struct mg_rule_ref *ref;
	struct kernfs_node *kn;
	struct mg_event *e;
	struct cgroup *cg;
	struct file *file;
	__u64 flags = 0, fd = 0;

	if (ctx->args[1] < MG_CLONE_ARGS_CGROUP + 8 ||
	    bpf_probe_read_user(&flags, sizeof(flags), uargs) ||
	    !(flags & MG_CLONE_INTO_CGROUP))
		return 0;
	ts = bpf_task_storage_get(&mg_task_scope, task->group_leader, 0, 0);
	if (!ts || !ts->scope_cgid)
		return 0;
	left = bpf_map_lookup_elem(&mg_scopes, &ts->scope_cgid);
	ref = left ? bpf_map_lookup_elem(&mg_escape, &left->policy_id) : NULL;
	if (!ref || ref->action == MG_ACTION_AUDIT)
		return 0; /* sched_process_fork reports an audited escape */
	if (bpf_probe_read_user(&fd, sizeof(fd), uargs + MG_CLONE_ARGS_CGROUP))
		return 0;
	/* The target: a cgroup directory (kernfs node -> cgroup). An fd that
	 * is not one fails the clone in the kernel anyway. */
	file = mg_fd_file(fd);
	kn = file ? BPF_CORE_READ(file, f_path.dentry, d_inode, i_private) : NULL;
	cg = kn ? BPF_CORE_READ(kn, priv) : NULL;
	if (!cg || mg_cgroup_under(cg, left->cgroup_id))
		return 0;
	bpf_send_signal(MG_SIGKILL);
	e = mg_event_start(MG_KIND_ESCAPE, left, ref, MG_ACTION_KILL);
	if (!e)
		return 0;
	mg_escape_target(e, task, cg, "clone3(CLONE_INTO_CGROUP)");
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
