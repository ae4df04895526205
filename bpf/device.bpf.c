// SPDX-License-Identifier: GPL-2.0
/*
 * open.msr on both backends: a cgroup/dev program attached to each scope's
 * cgroup sees every device access (open, mknod) of its tasks before the
 * driver does. Returning 0 refuses it with EPERM. The CPU MSR devices are
 * character devices with major 202 (Linux Documentation/admin-guide/devices.txt:
 * "202 char: CPU model-specific registers").
 */
/* cgroup/sockops/sk_msg programs: the task is read only where the probe
 * allowed it (common.h). */
#define MG_PROC_GUARDED
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "common.h"

#define MG_DEVCG_DEV_CHAR 2 /* BPF_DEVCG_DEV_CHAR */
#define MG_MSR_MAJOR 202

SEC("cgroup/dev")
int mg_device(struct bpf_cgroup_dev_ctx *ctx)
{
	struct mg_scope *scope;
	struct mg_rule_ref *ref;
	struct mg_event *e;

	if ((ctx->access_type & 0xffff) != MG_DEVCG_DEV_CHAR ||
	    ctx->major != MG_MSR_MAJOR)
		return 1;
	scope = mg_current_scope();
	if (!scope)
		return 1;
	ref = bpf_map_lookup_elem(&mg_msr, &scope->policy_id);
	if (!ref)
		return 1;
	/* No command name here on older kernels: userspace fills it in. */
	e = mg_event_start_comm(MG_KIND_DEVICE, scope, ref, ref->action, false);
	if (e) {
		__builtin_memcpy(e->addr, &ctx->major, 4);
		__builtin_memcpy(e->addr + 4, &ctx->minor, 4);
		bpf_ringbuf_submit(e, 0);
	}
	return ref->action == MG_ACTION_AUDIT ? 1 : 0;
}

char LICENSE[] SEC("license") = "GPL";
