// SPDX-License-Identifier: GPL-2.0
/*
 * exec.cmdline on both backends: after a successful exec, before the new
 * image runs an instruction, the new argv (mm->arg_start..arg_end, just
 * written by the kernel) is searched for the policy's substrings; a match is
 * killed (exec.cmdline rules are `kill` in practice: the exec has happened,
 * so `deny` is carried out as kill and reported as such) or audited.
 *
 * Search: argv is read MG_ARGV_CHUNK bytes at a time (plus MG_PATTERN_LEN - 1
 * bytes of the next chunk, so a pattern that straddles two chunks is still
 * found), lowercased (ASCII; patterns are lower case from the compiler: XMRig
 * takes `STRATUM+TCP://` too), and at each position the 4 bytes there are
 * looked up in a hash of pattern prefixes; only the few patterns sharing that
 * prefix are compared. No loop over the rule list; the cost is proportional
 * to the argv's length, up to MG_ARGV_MAX bytes. A longer argv is not
 * searched: it is matched as the policy's strongest cmdline rule (the
 * `mg_cmd_pattern` entry MG_PATTERN_ID_OVERLONG), so padding argv past the
 * bound does not let a pattern through.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"

/* The scratch buffer: one chunk and its overlap, rounded up to a power of
 * two so that masks bound every index and read size for the verifier. */
#define MG_ARGV_BUF (2 * MG_ARGV_CHUNK)

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[MG_ARGV_BUF]);
} mg_argv_scratch SEC(".maps");

/* The strongest match so far (ref.action 0: none), and which pattern it
 * was (reported in the event). */
struct mg_argv_best {
	struct mg_rule_ref ref;
	__u32 pattern_id;
};

/* The strongest match so far, in a map, not in the
 * bpf_loop context: Linux 6.1's verifier checks a callback once, with the
 * context's first values, and hard-wires branches on them (a first "no
 * match yet" made every later match replace the best, a kill included). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_argv_best);
} mg_argv_best SEC(".maps");

struct argv_scan {
	char *buf;
	unsigned long start; /* user address of argv */
	__u32 len;           /* bytes of argv to search, at most MG_ARGV_MAX */
	__u32 n;             /* bytes of the current chunk in buf, overlap included */
	__u32 policy_id;
	struct mg_argv_best *best; /* mg_argv_best */
};

/* mg_len_masks[len][w]: the bytes of word w (8 bytes, little endian) that
 * lie in a pattern of len bytes. */
#define MG_W(l, w)                                                     \
	((l) >= 8 * (w) + 8 ? ~0ULL :                                  \
	 (l) <= 8 * (w)     ? 0ULL :                                   \
			      (~0ULL >> ((64 - 8 * ((l) - 8 * (w))) & 63)))
#define MG_M(l) { MG_W(l, 0), MG_W(l, 1), MG_W(l, 2), MG_W(l, 3),       \
		  MG_W(l, 4), MG_W(l, 5), MG_W(l, 6), MG_W(l, 7) }
#define MG_M8(l) MG_M(l), MG_M(l + 1), MG_M(l + 2), MG_M(l + 3),       \
		 MG_M(l + 4), MG_M(l + 5), MG_M(l + 6), MG_M(l + 7)
static const __u64 mg_len_masks[MG_PATTERN_LEN + 1][MG_PATTERN_LEN / 8] = {
	MG_M8(0), MG_M8(8), MG_M8(16), MG_M8(24),
	MG_M8(32), MG_M8(40), MG_M8(48), MG_M8(56), MG_M(64),
};

/*
 * Whether pattern p occurs at buf[at], compared 8 bytes at a time without a
 * branch per byte (a byte loop with early exits, nested in the position and
 * chunk loops, was more paths than the verifier takes). Reads up to
 * MG_PATTERN_LEN bytes from buf + at whatever the pattern's length: the
 * buffer has room (at < MG_ARGV_CHUNK), and bytes past the pattern are
 * masked off. Unaligned 8-byte loads: fine on x86_64 and arm64.
 */
static __always_inline bool pattern_at(const char *buf, __u32 at, __u32 len,
				       const struct mg_pattern *p)
{
	const __u64 *mask;
	__u32 plen = p->len;
	__u64 diff = 0;

	if (plen > MG_PATTERN_LEN || at + plen > len)
		return false;
	mask = mg_len_masks[plen];
#pragma unroll
	for (int w = 0; w < MG_PATTERN_LEN / 8; w++)
		diff |= (*(const __u64 *)(buf + at + 8 * w) ^
			 *(const __u64 *)(p->bytes + 8 * w)) & mask[w];
	return diff == 0;
}

/* One position of the current chunk. */
static long argv_step(__u32 i, void *data)
{
	struct argv_scan *s = data;
	struct mg_prefix_bucket *bucket;
	struct mg_prefix_key key = {};
	__u32 at;

	if (i + 4 > s->n)
		return 1;
	/* The mask bounds the index for the verifier (i < MG_ARGV_CHUNK). */
	at = i & (MG_ARGV_CHUNK - 1);
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
		if (!p || !pattern_at(s->buf, at, s->n, p))
			continue;
		if (mg_rank(p->ref.action) > mg_rank(s->best->ref.action)) {
			s->best->ref = p->ref;
			s->best->pattern_id = pk.id;
		}
	}
	return 0;
}

/* ASCII lower case, 8 bytes at a time: 0x20 is added to each byte in
 * 'A'..'Z'; other bytes, UTF-8 included, are left as they are. */
static long lower_step(__u32 i, void *data)
{
	struct argv_scan *s = data;
	__u64 *w, x, h, upper;

	w = (__u64 *)(s->buf + ((i & (MG_ARGV_BUF / 8 - 1)) * 8));
	x = *w;
	h = x & 0x7f7f7f7f7f7f7f7fULL;
	/* High bit of each byte: set when >= 'A', when > 'Z', when ASCII. */
	upper = (h + 0x3f3f3f3f3f3f3f3fULL) & ~(h + 0x2525252525252525ULL) &
		~x & 0x8080808080808080ULL;
	*w = x | (upper >> 2);
	return 0;
}

/* Chunk i: read, lowercase, search. */
static long chunk_step(__u32 i, void *data)
{
	struct argv_scan *s = data;
	__u32 off = i * MG_ARGV_CHUNK, n;

	if (off >= s->len || s->best->ref.action == MG_ACTION_KILL)
		return 1;
	n = s->len - off;
	if (n > MG_ARGV_CHUNK + MG_PATTERN_LEN - 1)
		n = MG_ARGV_CHUNK + MG_PATTERN_LEN - 1;
	/* Hide n's range from clang so that it keeps the mask below, which
	 * bounds the read size for the verifier. */
	barrier_var(n);
	if (bpf_probe_read_user(s->buf, n & (MG_ARGV_BUF - 1),
				(void *)(s->start + off)))
		return 1;
	s->n = n;
	bpf_loop((n + 7) / 8, lower_step, s, 0);
	bpf_loop(n < MG_ARGV_CHUNK ? n : MG_ARGV_CHUNK, argv_step, s, 0);
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
	__u32 zero = 0;
	char *buf;
	__u8 taken;

	if (!scope || !(scope->flags & MG_SCOPE_CMDLINE))
		return 0;
	buf = bpf_map_lookup_elem(&mg_argv_scratch, &zero);
	scan.best = bpf_map_lookup_elem(&mg_argv_best, &zero);
	if (!buf || !scan.best)
		return 0;
	scan.best->ref.action = 0;
	scan.best->ref.rule_idx = 0;
	scan.best->pattern_id = 0;
	start = BPF_CORE_READ(task, mm, arg_start);
	end = BPF_CORE_READ(task, mm, arg_end);
	if (end <= start)
		return 0;
	scan.policy_id = scope->policy_id;
	if (end - start > MG_ARGV_MAX) {
		struct mg_pattern_key pk = {
			.policy_id = scope->policy_id,
			.id = MG_PATTERN_ID_OVERLONG,
		};
		struct mg_pattern *p = bpf_map_lookup_elem(&mg_cmd_pattern, &pk);

		if (p) {
			scan.best->ref = p->ref;
			scan.best->pattern_id = MG_PATTERN_ID_OVERLONG;
		}
	} else {
		scan.buf = buf;
		scan.start = start;
		scan.len = end - start;
		bpf_loop((scan.len + MG_ARGV_CHUNK - 1) / MG_ARGV_CHUNK,
			 chunk_step, &scan, 0);
	}
	if (!scan.best->ref.action)
		return 0;

	ref.rule_idx = scan.best->ref.rule_idx;
	ref.action = scan.best->ref.action;
	if (ref.action == MG_ACTION_AUDIT) {
		taken = MG_ACTION_AUDIT;
	} else {
		bpf_send_signal(MG_SIGKILL);
		taken = MG_ACTION_KILL;
	}
	e = mg_event_start(MG_KIND_EXEC, scope, &ref, taken);
	if (!e)
		return 0;
	/* The file as passed to execve, and the pattern that matched
	 * (enum mg_kind: MG_KIND_EXEC). */
	bpf_probe_read_kernel_str(e->path, MG_PATH_LEN,
				  BPF_CORE_READ(bprm, filename));
	__builtin_memcpy(e->addr, &scan.best->pattern_id, 4);
	e->addr[4] = 1;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
