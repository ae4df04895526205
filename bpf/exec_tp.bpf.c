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

/*
 * A `#!` script's own path (exec.dirs / path_prefixes): by this tracepoint
 * bprm->file is the interpreter and the script's file is released, so the
 * script is judged by the path it was run by (see mg_named_path_match).
 * Returns the rule and leaves *at at the path in the scratch, or NULL.
 */
static __always_inline struct mg_rule_ref *
mg_script_match(struct linux_binprm *bprm, const struct mg_scope *scope,
		struct mg_path_scratch **s, int *at)
{
	const char *filename = BPF_CORE_READ(bprm, filename);
	struct mg_path_verdict v;
	__u32 zero = 0;

	*at = -1;
	if (!(scope->flags & MG_SCOPE_PATHS) ||
	    BPF_CORE_READ(bprm, interp) == filename)
		return NULL;
	*s = bpf_map_lookup_elem(&mg_path_scratch, &zero);
	if (!*s)
		return NULL;
	v = mg_named_path_match(scope->policy_id, filename, *s, at);
	if (v.unresolved)
		return bpf_map_lookup_elem(&mg_deep_path, &scope->policy_id);
	return v.deny;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(mg_exec_tp, struct task_struct *task, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	struct mg_scope *scope = mg_current_scope();
	struct mg_path_scratch *s = NULL;
	struct mg_rule_ref best = {}, *ref, *script;
	struct mg_event *e;
	int view = -1, at = -1;
	bool by_script = false;
	__u8 taken;

	if (!scope)
		return 0;
	mg_exec_match(bprm, scope, &view, &best);
	script = mg_script_match(bprm, scope, &s, &at);
	if (script) {
		/* The scratch now holds the script's path. */
		view = -1;
		if (mg_rank(script->action) > mg_rank(best.action)) {
			best = *script;
			by_script = true;
		}
	}
	if (!best.action || best.action == MG_ACTION_AUDIT)
		mg_keep_stronger(&best, mg_no_new_exec_match(scope));
	ref = mg_kept(&best);
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
	if (by_script && s && at >= 0 &&
	    bpf_probe_read_kernel_str(e->path, MG_PATH_LEN,
				      s->buf + (at & (2 * MG_PATH_BUF - 1))) > 0) {
		/* The event names the script it refused. */
	} else {
		mg_event_path(e, BPF_CORE_READ(bprm, file), view,
			      BPF_CORE_READ(bprm, filename));
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
