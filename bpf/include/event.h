/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * Records shared between the BPF programs and userspace.
 *
 * Every struct here is mirrored by a #[repr(C)] type in src/ with a
 * size/offset test (src/events/record.rs, src/backend/maps.rs): change both
 * together or the layout test fails.
 */
#ifndef MINERGUARD_EVENT_H
#define MINERGUARD_EVENT_H

/* Sizes and limits shared with userspace: an enum, not #defines, so they
 * are in BTF and the Rust side reads them from the skeleton (bpf/abi.bpf.c). */
enum mg_limit {
	MG_COMM_LEN = 16,
	MG_PATH_LEN = 256,
	/* Bytes of the task's argv an event carries (mg_event.cmdline): room
	 * for a miner's usual command line (a pool URL, a 95-character
	 * Monero wallet, a few options) in one fixed-size read, while keeping
	 * the record small enough for the ring buffer to hold ~1700 events. */
	MG_CMDLINE_LEN = 256,
	/* Longest exec basename a rule can name (key size of the exec_names map). */
	MG_NAME_LEN = 64,
	/* Deepest cgroup level (root = 0) a scope can sit at. */
	MG_MAX_SCOPE_DEPTH = 32,
	/* max_entries of mg_scopes: scopes one enforcer holds. */
	MG_MAX_SCOPES = 4096,
	/* max_entries of mg_exec_names, mg_ports and the CIDR tries. */
	MG_EXEC_NAMES_ENTRIES = 16384,
	MG_PORTS_ENTRIES = 65536,
	MG_CIDRS_ENTRIES = 65536,
	/* exec.cmdline: pattern bytes, and patterns per 4-byte prefix bucket. */
	MG_PATTERN_LEN = 64,
	MG_BUCKET_SIZE = 8,
	/* exec.cmdline: bytes of argv read and searched per step (a power of
	 * two; each step reads MG_PATTERN_LEN - 1 bytes more, so a pattern
	 * that straddles two steps is still found), and the most bytes of
	 * argv searched: a longer argv is matched as the policy's strongest
	 * cmdline rule, stored in `mg_cmd_pattern` under id
	 * MG_PATTERN_ID_OVERLONG (an entry with no bytes, in no bucket). */
	MG_ARGV_CHUNK = 4096,
	MG_ARGV_MAX = 262144,
	MG_PATTERN_ID_OVERLONG = 0x7fffffff,
	/* stratum: bytes of a method name (NUL included), and max_entries of
	 * mg_stratum_methods. */
	MG_METHOD_LEN = 32,
	MG_METHODS_ENTRIES = 16384,
	/* stratum.signatures: max_entries of mg_stratum_sigs (transitions of
	 * every policy's signature automaton). */
	MG_SIGS_ENTRIES = 16384,
	/* exec.dirs / path_prefixes / allow_only: bytes of a path entry (a
	 * path from the task's root, NUL excluded: longer ones are refused by
	 * validation), and max_entries of mg_exec_paths. */
	MG_PREFIX_LEN = 128,
	MG_PATHS_ENTRIES = 16384,
};

/* What a rule matched on. */
enum mg_kind {
	/* addr: for exec.cmdline, the matched pattern's id in mg_cmd_pattern
	 * (u32 at byte 0; MG_PATTERN_ID_OVERLONG for an argv too long to
	 * search) and 1 at byte 4 (byte 4 is 0 for every other exec rule). */
	MG_KIND_EXEC = 1,
	MG_KIND_CONNECT = 2,
	MG_KIND_STRATUM = 3, /* path[0] holds the signature id */
	MG_KIND_DEVICE = 4,  /* addr: major, minor (u32 each) */
	/* A task left its scope: addr holds the moved process (u32 tgid) and,
	 * at byte 8, its new cgroup's id (u64); path the cgroup's path when
	 * known (cgroup.procs write), else empty (clone into a cgroup). */
	MG_KIND_ESCAPE = 5,
};

/* What a rule asks for, and what the kernel did. */
enum mg_action {
	MG_ACTION_DENY = 1,
	MG_ACTION_KILL = 2,
	MG_ACTION_AUDIT = 3,
};

/* mg_event.proc_src: which of the "who did it" fields the kernel filled at
 * the decision. A program type that may not read the current task on this
 * kernel (mg_proc_in_prog false) leaves them to userspace, which reads
 * /proc/<tgid> on receipt (best effort: the task may be gone). */
enum mg_proc_src {
	MG_PROC_PARENT = 1,  /* ppid and pname */
	MG_PROC_CMDLINE = 2, /* args_len and cmdline */
};

/* Indices of the per-CPU `stats` counters. */
enum mg_stat {
	MG_STAT_RINGBUF_DROPS = 0,
	/* Accepted sockets the Stratum sockhash had no room for. */
	MG_STAT_UNTRACKED = 1,
	/* Sockets the egress Stratum judge refused (deny or kill) that its
	 * queue to userspace had no room for: cut off, not destroyed. */
	MG_STAT_REFUSED_UNQUEUED = 2,
	/* Threads the lsm Stratum judge gave a copy of their own (task
	 * storage) because every spare copy was taken: lsm_stratum.bpf.c. */
	MG_STAT_OWN_COPIES = 3,
	/* Sends the lsm Stratum judge refused because it had no room to
	 * read them or to follow their socket (every spare copy taken and
	 * task storage refused, socket storage refused). */
	MG_STAT_UNREAD_REFUSED = 4,
	MG_STAT_MAX = 8,
};

/* One enforcement decision, written to the `events` ring buffer. */
struct mg_event {
	__u64 boot_ns;      /* bpf_ktime_get_boot_ns() */
	__u64 cgroup_id;    /* the task's own cgroup */
	__u32 pid;          /* thread id */
	__u32 tgid;         /* process id */
	__u32 uid;
	__u32 policy_id;    /* which compiled profile matched */
	__u32 rule_idx;     /* index of the rule in that profile */
	__u8 kind;          /* enum mg_kind */
	__u8 action;        /* enum mg_action actually taken */
	__u8 requested;     /* enum mg_action the rule asked for */
	__u8 family;        /* AF_INET / AF_INET6 (connect) */
	__u16 port;         /* destination port, host order (connect) */
	__u8 protocol;      /* IPPROTO_TCP / IPPROTO_UDP (connect) */
	__u8 _pad0;
	__u8 addr[16];      /* destination; IPv4 in the first 4 bytes */
	char comm[MG_COMM_LEN];
	char path[MG_PATH_LEN]; /* exec: the file's path from the task's root */
	/* Who did it, read from the current task at the decision (see
	 * enum mg_proc_src). For an exec refused before it happened (lsm
	 * bprm_check_security) that is the process that tried, old argv;
	 * after it happened (sched_process_exec) the new program's. */
	__u32 ppid;         /* task->real_parent->tgid */
	__u32 args_len;     /* mm->arg_end - arg_start: the whole argv's bytes */
	__u8 proc_src;      /* enum mg_proc_src bits */
	__u8 _pad1[3];
	char pname[MG_COMM_LEN]; /* the parent's comm */
	/* The first MG_CMDLINE_LEN bytes of argv (NUL after each argument,
	 * zero-filled past args_len). */
	char cmdline[MG_CMDLINE_LEN];
};

/* mg_scope.flags: which optional lookups the scope's policy needs. */
enum mg_scope_flag {
	MG_SCOPE_CIDR4 = 1, /* the policy has IPv4 CIDR entries */
	MG_SCOPE_CIDR6 = 2, /* the policy has IPv6 CIDR entries */
	MG_SCOPE_INODES = 4, /* the policy has exec.files entries */
	MG_SCOPE_MEMFD = 8, /* the policy has an exec.memfd rule */
	MG_SCOPE_CMDLINE = 16, /* the policy has exec.cmdline patterns */
	MG_SCOPE_ALLOW_ONLY = 32, /* the policy has an exec.allow_only rule */
	MG_SCOPE_NO_NEW_EXEC = 64, /* the policy has an exec.no_new_exec rule */
	MG_SCOPE_PATHS = 128, /* the policy has exec.dirs / path_prefixes entries */
	MG_SCOPE_DRIFT = 256, /* the policy has an exec.drift rule */
};


/* mg_inode_key.kind */
enum mg_inode_kind {
	MG_INODE_FILE = 1, /* exec.files: the executed file itself */
};

/* mg_path_key.kind: entries matched on the path from the task's root. */
enum mg_path_kind {
	MG_PATH_DIR = 1,        /* exec.dirs / path_prefixes: a directory above it */
	MG_PATH_ALLOW_FILE = 2, /* exec.allow_only: an allowed file */
	MG_PATH_ALLOW_DIR = 3,  /* exec.allow_only: an allowed prefix */
};

/* Key of the `mg_exec_paths` map: a path from the task's root, without a
 * trailing '/' ("" for the root directory), zero-padded. */
struct mg_path_key {
	__u32 policy_id;
	__u8 kind; /* enum mg_path_kind */
	__u8 _pad[3];
	char path[MG_PREFIX_LEN];
};

/* Task storage `mg_task_scope`, on a process's thread-group leader: the
 * scope it was last seen in (0: none). */
struct mg_task_scope {
	__u64 scope_cgid;
};

/* Where a scope's policy lives; value of the `scopes` map (key: cgroup id). */
struct mg_scope {
	__u32 policy_id;
	__u32 flags; /* enum mg_scope_flag */
	__u64 cgroup_id; /* the scope's own cgroup (its key), for per-scope state */
};

/* Bits of mg_config.flags. */
enum mg_config_flag {
	/* The cgroup backend judges Stratum in its egress program, which reads
	 * a Fast Open SYN's data like any other packet's: the setsockopt hook
	 * then lets TCP_FASTOPEN_CONNECT through. */
	MG_CONFIG_EGRESS_JUDGE = 1,
};

/* Global settings; single entry of the `config` array map. */
struct mg_config {
	__u32 scope_levels; /* bit n set: some scope sits at cgroup level n */
	__u32 flags;        /* enum mg_config_flag */
};

/* The Stratum sockhash's fill (cgroup backend): sockets in it, and how many
 * it holds; single entry of `mg_tracking`. */
struct mg_tracking {
	__u64 sockets; /* changed by the BPF programs only */
	__u64 limit;   /* set by userspace when the sockhash is made; 0: none yet */
};

/* The rule a map entry belongs to; value of every rule map. */
struct mg_rule_ref {
	__u32 rule_idx;
	__u8 action; /* enum mg_action, already adjusted for profile mode */
	__u8 flags;  /* enum mg_ref_flag */
	__u8 _pad[2];
};

/* mg_rule_ref.flags */
enum mg_ref_flag {
	/* A stratum rule whose policy has signatures (mg_stratum_sigs). */
	MG_REF_SIGNATURES = 1,
};

/* Key of the `exec_names` map. */
struct mg_name_key {
	__u32 policy_id;
	char name[MG_NAME_LEN];
};

/* Key of the `ports` map. */
struct mg_port_key {
	__u32 policy_id;
	__u16 port; /* host order */
	__u16 _pad;
};

/* Key of the `mg_inodes` map: a file or directory by (device, inode). */
struct mg_inode_key {
	__u32 policy_id;
	__u32 dev; /* kernel encoding: major << 20 | minor */
	__u64 ino;
	__u8 kind; /* enum mg_inode_kind */
	__u8 _pad[7];
};

/* Key of the `mg_cidr4` LPM trie: prefixlen counts the 32 policy bits too. */
struct mg_cidr4_key {
	__u32 prefixlen;
	__u32 policy_id;
	__u8 addr[4]; /* network order */
};

/* Key of the `mg_cidr6` LPM trie: prefixlen counts the 32 policy bits too. */
struct mg_cidr6_key {
	__u32 prefixlen;
	__u32 policy_id;
	__u8 addr[16]; /* network order */
};

/* exec.cmdline: patterns by their first 4 bytes. */

/* Key of `mg_cmdline_prefixes`. */
struct mg_prefix_key {
	__u32 policy_id;
	__u8 prefix[4];
};

/* Value of `mg_cmdline_prefixes`: the patterns starting with the prefix. */
struct mg_prefix_bucket {
	__u32 count;
	__u32 ids[MG_BUCKET_SIZE];
};

/* Key of `mg_cmdline_patterns`. */
struct mg_pattern_key {
	__u32 policy_id;
	__u32 id;
};

/* Value of `mg_cmdline_patterns`. */
struct mg_pattern {
	struct mg_rule_ref ref;
	__u32 len;
	__u8 bytes[MG_PATTERN_LEN];
};

/* Key of `mg_stratum_methods`: a mining method name, lower case, NUL
 * padded; a name ending in ".*" is a prefix ("mining.*"). */
struct mg_method_key {
	__u32 policy_id;
	char name[MG_METHOD_LEN];
};

/* Value of `mg_stratum_methods`: which family the method belongs to. */
struct mg_method {
	__u8 sig; /* enum mg_stratum_sig */
	__u8 _pad[3];
};

/*
 * Key of `mg_stratum_sigs`: one step of a policy's signature automaton
 * (stratum.signatures, compiled in src/compile/signatures.rs), from `state`
 * on `byte`. State 1 is the start; a step that is not in the map goes back
 * to it.
 */
struct mg_sig_key {
	__u32 policy_id;
	__u16 state;
	__u8 byte;
	__u8 _pad;
};

/* Value of `mg_stratum_sigs`: the state the step goes to, and 1 + the index
 * of a signature that ends there (0: none). */
struct mg_sig_step {
	__u16 state;
	__u16 found;
};

/* Value of `mg_stratum_sig_first` (key: policy id): the bytes a signature
 * of the policy starts with, bit b of word b / 64. From the start state no
 * other byte leads anywhere, so the reader looks no step up for them. */
struct mg_sig_first {
	__u64 bits[4];
};

/* Value of `mg_tfo`: a Fast Open send's Stratum signature, and when it was
 * read (marks older than MG_TFO_MARK_NS are ignored). */
struct mg_tfo_mark {
	__u64 sig;
	__u64 at_ns; /* bpf_ktime_get_ns() */
};

#define MG_TFO_MARK_NS 1000000000ULL

#endif
