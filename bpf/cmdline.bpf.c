// SPDX-License-Identifier: GPL-2.0
/*
 * exec.cmdline on both backends: after a successful exec, before the new
 * image runs an instruction, the new argv (mm->arg_start..arg_end, just
 * written by the kernel) is searched for the policy's substrings; a match is
 * killed (exec.cmdline rules are `kill` in practice: the exec has happened,
 * so `deny` is carried out as kill and reported as such) or audited.
 *
 * Search: at each argv position the 4 bytes there are looked up in a hash of
 * pattern prefixes; only the few patterns sharing that prefix are compared.
 * No loop over the rule list.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"

/* Bytes of argv searched (a power of two). */
#define MG_ARGV_WINDOW 512

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[MG_ARGV_WINDOW + MG_PATTERN_LEN]);
} mg_argv_scratch SEC(".maps");

struct argv_scan {
	const char *buf;
	__u32 len;
	__u32 policy_id;
	__u32 rule_idx; /* best match so far */
	__u8 action;    /* 0: none */
};

/* Whether pattern p occurs at buf[at] (its first 4 bytes already do). */
static __always_inline bool pattern_at(const char *buf, __u32 at, __u32 len,
				       const struct mg_pattern *p)
{
	__u32 plen = p->len;

	if (plen > MG_PATTERN_LEN || at + plen > len)
		return false;
	for (__u32 m = 4; m < MG_PATTERN_LEN; m++) {
		if (m >= plen)
			break;
		if (buf[at + m] != p->bytes[m])
			return false;
	}
	return true;
}

static long argv_step(__u32 i, void *data)
{
	struct argv_scan *s = data;
	struct mg_prefix_bucket *bucket;
	struct mg_prefix_key key = {};
	__u32 at;

	if (i + 4 > s->len)
		return 1;
	/* The mask bounds the index for the verifier. */
	at = i & (MG_ARGV_WINDOW - 1);
	key.policy_id = s->policy_id;
	__builtin_memcpy(key.prefix, s->buf + at, 4);
	bucket = bpf_map_lookup_elem(&mg_cmd_prefix, &key);
	if (!bucket)
		return 0;
	for (int j = 0; j < MG_BUCKET_SIZE; j++) {
		struct mg_pattern_key pk = { .policy_id = s->policy_id };
		struct mg_pattern *p;

		if (j >= bucket->count)
			break;
		pk.id = bucket->ids[j];
		p = bpf_map_lookup_elem(&mg_cmd_pattern, &pk);
		if (!p || !pattern_at(s->buf, at, s->len, p))
			continue;
		if (mg_rank(p->ref.action) > mg_rank(s->action)) {
			s->action = p->ref.action;
			s->rule_idx = p->ref.rule_idx;
		}
	}
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(mg_cmdline_tp, struct task_struct *task, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	struct mg_scope *scope = mg_current_scope();
	struct argv_scan scan = {};
	struct mg_rule_ref ref = {};
	unsigned long start, end;
	struct mg_event *e;
	__u32 zero = 0, len;
	char *buf;
	__u8 taken;

	if (!scope || !(scope->flags & MG_SCOPE_CMDLINE))
		return 0;
	buf = bpf_map_lookup_elem(&mg_argv_scratch, &zero);
	if (!buf)
		return 0;
	start = BPF_CORE_READ(task, mm, arg_start);
	end = BPF_CORE_READ(task, mm, arg_end);
	if (end <= start)
		return 0;
	len = end - start > MG_ARGV_WINDOW ? MG_ARGV_WINDOW : end - start;
	if (bpf_probe_read_user(buf, len & (MG_ARGV_WINDOW * 2 - 1), (void *)start))
		return 0;

	scan.buf = buf;
	scan.len = len;
	scan.policy_id = scope->policy_id;
	bpf_loop(MG_ARGV_WINDOW, argv_step, &scan, 0);
	if (!scan.action)
		return 0;

	ref.rule_idx = scan.rule_idx;
	ref.action = scan.action;
	if (scan.action == MG_ACTION_AUDIT) {
		taken = MG_ACTION_AUDIT;
	} else {
		bpf_send_signal(MG_SIGKILL);
		taken = MG_ACTION_KILL;
	}
	e = mg_event_start(MG_KIND_EXEC, scope, &ref, taken);
	if (!e)
		return 0;
	/* The argv, NULs as spaces, as far as it fits. */
	bpf_probe_read_kernel_str(e->path, MG_PATH_LEN,
				  BPF_CORE_READ(bprm, filename));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
