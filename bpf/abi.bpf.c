// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel/userspace ABI, put into BTF: never loaded. One global of each
 * shared struct and enum makes libbpf-cargo generate them in this object's
 * skeleton (`skel::abi::types`), so the Rust side takes their layouts,
 * values and limits from the C declarations instead of copying them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "common.h"
#include "stratum_reader.h"

struct mg_abi {
	enum mg_kind kind;
	enum mg_action action;
	enum mg_stat stat;
	enum mg_scope_flag scope_flag;
	enum mg_config_flag config_flag;
	enum mg_inode_kind inode_kind;
	enum mg_path_kind path_kind;
	enum mg_stratum_sig stratum_sig;
	enum mg_limit limit;
	enum mg_proc_src proc_src;
	enum mg_ref_flag ref_flag;
	struct mg_event event;
	struct mg_scope scope;
	struct mg_config config;
	struct mg_rule_ref rule_ref;
	struct mg_method_key method_key;
	struct mg_method method;
	struct mg_tracking tracking;
	struct mg_path_key path_key;
	struct mg_sig_key sig_key;
	struct mg_sig_step sig_step;
	struct mg_sig_first sig_first;
};

struct mg_abi mg_abi;

char LICENSE[] SEC("license") = "GPL";
