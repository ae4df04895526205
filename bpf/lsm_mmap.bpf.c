// SPDX-License-Identifier: GPL-2.0
/*
 * lsm backend, loader exec: an executable mapping (mmap with PROT_EXEC, or
 * mprotect adding it) of a file that an exec rule refuses fails with EPERM,
 * so `ld-linux-x86-64.so.2 ./xmrig` cannot map the miner's code.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "mapping_match.h"

#define MG_EPERM 1

static __always_inline int mg_judge_mapping(struct file *file)
{
	struct mg_scope *scope = NULL;
	struct mg_rule_ref best = {}, *ref;
	int view = -1;
	__u8 action;

	ref = mg_mapping_match(file, &scope, &view, &best);
	if (!ref || !scope)
		return 0;
	action = ref->action;
	if (action == MG_ACTION_KILL)
		bpf_send_signal(MG_SIGKILL);
	mg_mapping_event(scope, ref, action, file, view);
	return action == MG_ACTION_AUDIT ? 0 : -MG_EPERM;
}

SEC("lsm/mmap_file")
int BPF_PROG(mg_lsm_mmap_file, struct file *file, unsigned long reqprot,
	     unsigned long prot, unsigned long flags, int ret)
{
	if (ret)
		return ret;
	if (!(prot & MG_PROT_EXEC))
		return 0;
	return mg_judge_mapping(file);
}

SEC("lsm/file_mprotect")
int BPF_PROG(mg_lsm_file_mprotect, struct vm_area_struct *vma,
	     unsigned long reqprot, unsigned long prot, int ret)
{
	if (ret)
		return ret;
	if (!(prot & MG_PROT_EXEC))
		return 0;
	return mg_judge_mapping(BPF_CORE_READ(vma, vm_file));
}

char LICENSE[] SEC("license") = "GPL";
