// SPDX-License-Identifier: GPL-2.0
/*
 * Event-path self-test: emits a burst of audit events for one rule of one
 * policy into the shared ring buffer, as if the rule had matched, so the
 * whole userspace path (ring buffer, decode, channel) can be checked and
 * measured without making one syscall per event. Run on demand with
 * BPF_PROG_TEST_RUN (a raw_tp program is never attached); the events are
 * exec events naming `minerguard-self-test`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "common.h"

struct mg_self_test {
	struct mg_scope scope;
	struct mg_rule_ref ref;
	__u32 emitted;
};

static long mg_emit_one(__u32 i, void *data)
{
	struct mg_self_test *t = data;
	struct mg_event *e;

	e = mg_event_start(MG_KIND_EXEC, &t->scope, &t->ref, MG_ACTION_AUDIT);
	if (!e)
		return 1; /* ring full: stop, the caller sees how many went */
	__builtin_memcpy(e->path, "minerguard-self-test", 21);
	bpf_ringbuf_submit(e, 0);
	t->emitted++;
	return 0;
}

/* args[0]: policy id, args[1]: rule index, args[2]: how many events.
 * Returns how many were written before the ring buffer filled up. */
SEC("raw_tp")
int mg_self_test(struct bpf_raw_tracepoint_args *ctx)
{
	struct mg_self_test t = {};

	t.scope.policy_id = (__u32)ctx->args[0];
	t.ref.rule_idx = (__u32)ctx->args[1];
	t.ref.action = MG_ACTION_AUDIT;
	bpf_loop((__u32)ctx->args[2], mg_emit_one, &t, 0);
	return t.emitted;
}

char LICENSE[] SEC("license") = "GPL";
