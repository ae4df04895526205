/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * Maps shared by every minerguard BPF object. Each object declares them all;
 * userspace creates them once and hands the same fds to every object
 * (bpf_map__reuse_fd), so all hooks see one policy and one event stream.
 */
#ifndef MINERGUARD_MAPS_H
#define MINERGUARD_MAPS_H

#include "event.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} mg_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MG_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} mg_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_config);
} mg_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_MAX_SCOPES);
	__type(key, __u64);
	__type(value, struct mg_scope);
} mg_scopes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_EXEC_NAMES_ENTRIES);
	__type(key, struct mg_name_key);
	__type(value, struct mg_rule_ref);
} mg_exec_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_PORTS_ENTRIES);
	__type(key, struct mg_port_key);
	__type(value, struct mg_rule_ref);
} mg_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MG_CIDRS_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mg_cidr4_key);
	__type(value, struct mg_rule_ref);
} mg_cidr4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MG_CIDRS_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mg_cidr6_key);
	__type(value, struct mg_rule_ref);
} mg_cidr6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct mg_inode_key);
	__type(value, struct mg_rule_ref);
} mg_inodes SEC(".maps");

/* exec.dirs, path_prefixes and allow_only entries, by path from the task's
 * root (bpf/include/path_view.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_PATHS_ENTRIES);
	__type(key, struct mg_path_key);
	__type(value, struct mg_rule_ref);
} mg_exec_paths SEC(".maps");

/* The rule an exec matches when its path cannot be built (deeper or longer
 * than the walk goes): each policy's strongest exec.dirs rule (key: policy
 * id). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct mg_rule_ref);
} mg_deep_path SEC(".maps");

/* The scope.escape rule of each policy (key: policy id). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct mg_rule_ref);
} mg_escape SEC(".maps");

/* The scope each process is in (bpf/scope_guard.bpf.c); seeded by
 * userspace at apply for the processes already there. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct mg_task_scope);
} mg_task_scope SEC(".maps");

/* The exec.drift rule of each policy (key: policy id). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct mg_rule_ref);
} mg_drift SEC(".maps");

/* The exec.memfd rule of each policy (key: policy id). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct mg_rule_ref);
} mg_memfd SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct mg_prefix_key);
	__type(value, struct mg_prefix_bucket);
} mg_cmd_prefix SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct mg_pattern_key);
	__type(value, struct mg_pattern);
} mg_cmd_pattern SEC(".maps");

/* The open.msr rule of each policy (key: policy id). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct mg_rule_ref);
} mg_msr SEC(".maps");

/* The exec.allow_only rule of each policy (key: policy id). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct mg_rule_ref);
} mg_allow_only SEC(".maps");

/* The exec.no_new_exec rule of each policy (key: policy id). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct mg_rule_ref);
} mg_no_new_exec SEC(".maps");

/*
 * Scopes whose first exec has happened (key: the scope's cgroup id, value:
 * the tgid that made it). Kept across profile updates, dropped on remove.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
} mg_exec_started SEC(".maps");

/*
 * TCP Fast Open sends whose payload carries a Stratum signature, between the
 * sendto/sendmsg syscall tracepoint that read it and the connect hook that
 * refuses it (key: pid_tgid). `mg_tfo_armed[0]` counts the entries, so
 * hooks skip the lookup when there are none.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct mg_tfo_mark);
} mg_tfo SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} mg_tfo_armed SEC(".maps");

/* The stratum rule of each policy (key: policy id). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct mg_rule_ref);
} mg_stratum SEC(".maps");

/* How full the Stratum sockhash is (stratum.bpf.c counts; the connect
 * hooks refuse new connections of stratum scopes when it is full). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_tracking);
} mg_tracking SEC(".maps");

/* The scopes' generation, bumped by userspace whenever a scope is added,
 * changed or removed or the scope levels change, shifted left by one; the
 * low bit says whether some scope is inside another. The cgroup programs'
 * scope caches (scope_cache.h) hold for one value. 0: nothing written yet
 * (no cache is used). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} mg_scope_gen SEC(".maps");

/* The mining methods of each policy with a stratum rule. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_METHODS_ENTRIES);
	__type(key, struct mg_method_key);
	__type(value, struct mg_method);
} mg_stratum_methods SEC(".maps");

/* The signature automata of the policies whose stratum rules list
 * `signatures` (a step per entry; allocated as written). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_SIGS_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mg_sig_key);
	__type(value, struct mg_sig_step);
} mg_stratum_sigs SEC(".maps");

/* The first bytes of each such policy's signatures. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct mg_sig_first);
} mg_stratum_sig_first SEC(".maps");

/*
 * The lsm backend's Stratum verdict per TCP socket (lsm_stratum.bpf.c):
 * kept for the socket's life once its first bytes are judged, so a later
 * send costs this one lookup. The sk_msg verdict (stratum.bpf.c) reads it
 * for sends that bypass socket_sendmsg (sendfile and splice on older
 * kernels).
 */
#define MG_STRATUM_PASSED 1
#define MG_STRATUM_DENIED 2
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} mg_stratum_done SEC(".maps");

#endif
