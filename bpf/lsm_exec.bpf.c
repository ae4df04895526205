// SPDX-License-Identifier: GPL-2.0
/*
 * lsm backend, exec rules: bprm_check_security runs before the new image is
 * loaded, so `deny` makes execve fail with EPERM and the caller keeps
 * running; `kill` also sends SIGKILL to the caller.
 *
 * For a script the hook runs once for the script and once for its
 * interpreter, so a rule naming either one matches (and an allow-list must
 * list both).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "exec_match.h"

#define MG_EPERM 1

SEC("lsm/bprm_check_security")
int BPF_PROG(mg_lsm_bprm_check, struct linux_binprm *bprm, int ret)
{
	struct mg_scope *scope;
	struct mg_rule_ref best = {}, *ref;
	struct mg_event *e;
	int view = -1;
	__u8 action;

	/* Another LSM (or BPF program) already refused. */
	if (ret)
		return ret;
	scope = mg_current_scope();
	if (!scope)
		return 0;
	mg_exec_match(bprm, scope, &view, &best);
	/* exec.no_new_exec counts execve calls, not binfmt passes: a script's
	 * interpreter pass (interp no longer the filename) was counted with it. */
	if ((!best.action || best.action == MG_ACTION_AUDIT) &&
	    BPF_CORE_READ(bprm, interp) == BPF_CORE_READ(bprm, filename))
		mg_keep_stronger(&best, mg_no_new_exec_match(scope));
	ref = mg_kept(&best);
	if (!ref)
		return 0;

	action = ref->action;
	if (action == MG_ACTION_KILL)
		bpf_send_signal(MG_SIGKILL);

	e = mg_event_start(MG_KIND_EXEC, scope, ref, action);
	if (e) {
		/* In a script's interpreter pass, bprm->file is the
		 * interpreter: the event names what this pass judged. */
		mg_event_path(e, BPF_CORE_READ(bprm, file), view,
			      BPF_CORE_READ(bprm, interp));
		bpf_ringbuf_submit(e, 0);
	}
	return action == MG_ACTION_AUDIT ? 0 : -MG_EPERM;
}

char LICENSE[] SEC("license") = "GPL";
