// SPDX-License-Identifier: GPL-2.0
/*
 * scope.escape on both backends: a task in a scope may not leave it. A
 * process escapes by writing its pid (or another's) to the cgroup.procs of
 * a cgroup outside the scope, or by clone3(CLONE_INTO_CGROUP) into one.
 *
 * Which scope a process is in is kept in task storage on its thread-group
 * leader (mg_task_scope): inherited at fork, set when a process enters a
 * scope, seeded by userspace at apply for the processes already there. A
 * cgroup.procs write has moved the task by the time cgroup_attach_task
 * fires, so its old cgroup can only be known this way.
 *
 * A scoped writer that moves a process out of its scope is killed (SIGKILL
 * to the writer, from here; the moved process, when it is another one, by
 * the enforcer's event thread). A move by an unscoped writer (a container
 * runtime, an administrator) is allowed and followed. On the lsm backend
 * lsm_scope_guard.bpf.c refuses the cgroup.procs open and the clone first.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "scope_match.h"

/* The escape event, and SIGKILL to the writer unless `audit`. */
static __always_inline void mg_report_escape(const struct mg_scope *left,
					     const struct mg_rule_ref *ref,
				      struct task_struct *moved,
				      struct cgroup *dst, const char *path)
{
	struct mg_event *e;
	__u8 taken = ref->action == MG_ACTION_AUDIT ? MG_ACTION_AUDIT
						    : MG_ACTION_KILL;

	if (taken == MG_ACTION_KILL)
		bpf_send_signal(MG_SIGKILL);
	e = mg_event_start(MG_KIND_ESCAPE, left, ref, taken);
	if (!e)
		return;
	mg_escape_target(e, moved, dst, path);
	bpf_ringbuf_submit(e, 0);
}

/* Reports `moved` leaving `left`; where the rule only audits, the process
 * is followed to its new scope (`to`, or none) in `ts`. */
static __always_inline void mg_escaped(const struct mg_scope *left,
				       const struct mg_rule_ref *ref,
				       struct task_struct *moved,
				       struct cgroup *dst, const char *path,
				       struct mg_task_scope *ts,
				       const struct mg_scope *to)
{
	mg_report_escape(left, ref, moved, dst, path);
	if (ref->action == MG_ACTION_AUDIT)
		ts->scope_cgid = to ? to->cgroup_id : 0;
}

SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(mg_cgroup_attach, struct cgroup *dst, const char *path,
	     struct task_struct *task, bool threadgroup)
{
	/* Direct reads keep the BTF pointers task storage takes. */
	struct task_struct *leader = task->group_leader;
	struct task_struct *writer = bpf_get_current_task_btf();
	struct mg_task_scope *ts, *ws;
	struct mg_scope *left, *to;
	struct mg_rule_ref *ref;

	if (!leader)
		return 0;
	to = mg_scope_of_cgroup(dst);
	ts = bpf_task_storage_get(&mg_task_scope, leader, 0, 0);
	if (!ts || !ts->scope_cgid) {
		/* Entering a scope (a runtime starting a container in it). */
		if (to) {
			ts = bpf_task_storage_get(&mg_task_scope, leader, 0,
						  BPF_LOCAL_STORAGE_GET_F_CREATE);
			if (ts)
				ts->scope_cgid = to->cgroup_id;
		}
		return 0;
	}
	left = bpf_map_lookup_elem(&mg_scopes, &ts->scope_cgid);
	ref = left ? bpf_map_lookup_elem(&mg_escape, &left->policy_id) : NULL;
	if (!ref || mg_cgroup_under(dst, ts->scope_cgid)) {
		/* Within its scope (a nested one counts from now on), or a
		 * scope that does not guard: followed. */
		ts->scope_cgid = to ? to->cgroup_id : (left ? ts->scope_cgid : 0);
		return 0;
	}
	/* Leaving the scope. By whom? */
	ws = bpf_task_storage_get(&mg_task_scope, writer->group_leader, 0, 0);
	if (!ws || !ws->scope_cgid) {
		/* An unscoped writer (runtime, administrator): allowed. */
		ts->scope_cgid = to ? to->cgroup_id : 0;
		return 0;
	}
	mg_escaped(left, ref, leader, dst, path, ts, to);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(mg_process_fork, struct task_struct *parent,
	     struct task_struct *child)
{
	struct task_struct *leader = parent->group_leader;
	struct mg_task_scope *ps, *cs;
	struct mg_scope *left, *to;
	struct mg_rule_ref *ref;
	struct cgroup *cg;

	/* A new thread shares its leader's storage. */
	if (child->tgid == parent->tgid || !leader)
		return 0;
	ps = bpf_task_storage_get(&mg_task_scope, leader, 0, 0);
	if (!ps || !ps->scope_cgid)
		return 0;
	cs = bpf_task_storage_get(&mg_task_scope, child, 0,
				  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!cs)
		return 0;
	cs->scope_cgid = ps->scope_cgid;
	/* clone3(CLONE_INTO_CGROUP) put the child elsewhere already. */
	cg = BPF_CORE_READ(child, cgroups, dfl_cgrp);
	if (!cg || mg_cgroup_under(cg, ps->scope_cgid))
		return 0;
	left = bpf_map_lookup_elem(&mg_scopes, &ps->scope_cgid);
	ref = left ? bpf_map_lookup_elem(&mg_escape, &left->policy_id) : NULL;
	to = mg_scope_of_cgroup(cg);
	if (!ref) {
		cs->scope_cgid = to ? to->cgroup_id : 0;
		return 0;
	}
	mg_escaped(left, ref, child, cg, NULL, cs, to);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
