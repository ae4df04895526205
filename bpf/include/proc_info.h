/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* "Who did it": the current task's parent and command line, for events. */
#ifndef MINERGUARD_PROC_INFO_H
#define MINERGUARD_PROC_INFO_H

#include <bpf/bpf_core_read.h>
#include "event.h"

/*
 * Fills ppid, pname, args_len and cmdline (and comm when empty) from the
 * current task and sets the proc_src bits of what it read. Uses only bpf_get_current_task and
 * bpf_probe_read_kernel/user (no BTF pointers), so every program type that
 * has those helpers can call it; bpf/probe.bpf.c loads it in each guarded
 * program type to learn which may.
 *
 * The argv read is not sleepable: a page of argv that is not resident
 * fails the read, proc_src then lacks MG_PROC_CMDLINE and userspace reads
 * /proc instead. Never more than args_len bytes are read, so nothing of
 * the environment (which follows argv) leaks into the event.
 */
static __always_inline void mg_fill_proc(struct mg_event *e)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *parent = BPF_CORE_READ(task, real_parent);
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	unsigned long start = 0, end = 0, len;
	__u32 n;

	/* The task's own name too where bpf_get_current_comm was not allowed
	 * (sk_msg, cgroup/dev on older kernels). */
	if (!e->comm[0])
		bpf_core_read(e->comm, sizeof(e->comm), &task->comm);
	e->ppid = BPF_CORE_READ(parent, tgid);
	if (!bpf_core_read(e->pname, sizeof(e->pname), &parent->comm))
		e->proc_src |= MG_PROC_PARENT;
	__builtin_memset(e->cmdline, 0, sizeof(e->cmdline));
	if (mm) {
		start = BPF_CORE_READ(mm, arg_start);
		end = BPF_CORE_READ(mm, arg_end);
	}
	len = end > start ? end - start : 0;
	e->args_len = len > 0xffffffffUL ? 0xffffffffU : (__u32)len;
	n = len < MG_CMDLINE_LEN ? (__u32)len : MG_CMDLINE_LEN;
	/* Keep the bound check below: it bounds the size for the verifier. */
	barrier_var(n);
	if (n > MG_CMDLINE_LEN)
		n = MG_CMDLINE_LEN;
	/* A kernel thread has no argv: nothing to read, and that is right. */
	if (!n || !bpf_probe_read_user(e->cmdline, n, (const void *)start))
		e->proc_src |= MG_PROC_CMDLINE;
}

#endif
