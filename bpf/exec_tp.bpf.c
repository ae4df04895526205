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
#include "exec_match.h"

SEC("tp_btf/sched_process_exec")
int BPF_PROG(mg_exec_tp, struct task_struct *task, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	struct mg_scope *scope = mg_current_scope();
	struct mg_rule_ref *ref;
	struct mg_event *e;
	int view = -1;
	__u8 taken;

	if (!scope)
		return 0;
	ref = mg_exec_match(bprm, scope, &view);
	if (!ref || ref->action == MG_ACTION_AUDIT)
		ref = mg_stronger(ref, mg_no_new_exec_match(scope));
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
	mg_event_path(e, BPF_CORE_READ(bprm, file), view,
		      BPF_CORE_READ(bprm, filename));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
