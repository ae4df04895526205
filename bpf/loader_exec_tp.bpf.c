// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup backend, loader exec: the syscall tracepoints of mmap, mprotect
 * and pkey_mprotect (mprotect with a protection key; pkey -1 is plain
 * mprotect, #20) see an executable mapping being asked for; when an exec rule refuses the
 * file, the task gets SIGKILL, delivered before the syscall returns to user
 * mode, so no instruction of the mapped code runs (`deny` is carried out as
 * `kill`, as for exec on this backend).
 *
 * Per-syscall tracepoints (tracefs ids), not the raw `sys_enter` tracepoint,
 * which every syscall on the host would pay for.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "mapping_match.h"
#include "fd_file.h"

/* MAP_ANONYMOUS, include/uapi/asm-generic/mman-common.h */
#define MG_MAP_ANONYMOUS 0x20

static __always_inline void mg_kill_mapping(struct file *file)
{
	struct mg_scope *scope = NULL;
	struct mg_rule_ref best = {}, *ref;
	int view = -1;
	__u8 taken = MG_ACTION_AUDIT;

	ref = mg_mapping_match(file, &scope, &view, &best);
	if (!ref || !scope)
		return;
	if (ref->action != MG_ACTION_AUDIT) {
		bpf_send_signal(MG_SIGKILL);
		taken = MG_ACTION_KILL;
	}
	mg_mapping_event(scope, ref, taken, file, view);
}

SEC("tracepoint/syscalls/sys_enter_mmap")
int mg_mmap_tp(struct trace_event_raw_sys_enter *ctx)
{
	unsigned long prot = ctx->args[2];
	unsigned long flags = ctx->args[3];

	if (!(prot & MG_PROT_EXEC) || (flags & MG_MAP_ANONYMOUS))
		return 0;
	mg_kill_mapping(mg_fd_file(ctx->args[4]));
	return 0;
}

static long mg_vma_file(struct task_struct *task, struct vm_area_struct *vma,
			void *data)
{
	*(struct file **)data = vma->vm_file;
	return 0;
}

/* mprotect(start, len, prot) and pkey_mprotect(start, len, prot, pkey). */
static __always_inline void mg_protect_exec(struct trace_event_raw_sys_enter *ctx)
{
	struct file *file = NULL;

	if (!(ctx->args[2] & MG_PROT_EXEC))
		return;
	/* Cheap exit for the common case: no scope, no walk of the VMAs. */
	if (!mg_current_scope())
		return;
	bpf_find_vma(bpf_get_current_task_btf(), ctx->args[0], mg_vma_file,
		     &file, 0);
	mg_kill_mapping(file);
}

/*
 * Attached to sys_enter_pkey_mprotect too (src/backend/loader_exec.rs): its
 * first three arguments are mprotect's, in the same record layout. One
 * program, verified once (a second copy cost 22,000 instructions of the
 * verifier's time at every start).
 */
SEC("tracepoint/syscalls/sys_enter_mprotect")
int mg_mprotect_tp(struct trace_event_raw_sys_enter *ctx)
{
	mg_protect_exec(ctx);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
