//! The values the BPF programs and userspace share, taken from the C
//! declarations in `bpf/include/event.h` and `stratum_reader.h` through the
//! BTF of `bpf/abi.bpf.c` (its skeleton's `types`), never copied by hand:
//! a change in C changes these, and a removed name stops the build.

use super::skel::abi::types as c;

/// `MG_COMM_LEN`: bytes of a task's comm in an event.
pub(crate) const COMM_LEN: usize = c::mg_limit::MG_COMM_LEN.0 as usize;
/// `MG_PATH_LEN`: bytes of a path in an event.
pub(crate) const PATH_LEN: usize = c::mg_limit::MG_PATH_LEN.0 as usize;
/// `MG_CMDLINE_LEN`: bytes of the task's argv in an event.
pub(crate) const CMDLINE_LEN: usize = c::mg_limit::MG_CMDLINE_LEN.0 as usize;
/// `MG_PROC_PARENT`: `mg_event.proc_src` bit, ppid and pname read in the kernel.
pub(crate) const PROC_PARENT: u8 = byte(c::mg_proc_src::MG_PROC_PARENT.0);
/// `MG_PROC_CMDLINE`: `mg_event.proc_src` bit, argv read in the kernel.
pub(crate) const PROC_CMDLINE: u8 = byte(c::mg_proc_src::MG_PROC_CMDLINE.0);
/// `MG_NAME_LEN`: longest exec basename a rule can name, NUL included.
pub(crate) const NAME_LEN: usize = c::mg_limit::MG_NAME_LEN.0 as usize;
/// `MG_MAX_SCOPE_DEPTH`: deepest cgroup level a scope can sit at.
pub(crate) const MAX_SCOPE_DEPTH: u32 = c::mg_limit::MG_MAX_SCOPE_DEPTH.0;
/// `MG_MAX_SCOPES`: max_entries of `mg_scopes`.
pub(crate) const MAX_SCOPES: usize = c::mg_limit::MG_MAX_SCOPES.0 as usize;
/// `MG_EXEC_NAMES_ENTRIES`: max_entries of `mg_exec_names`.
pub(crate) const EXEC_NAMES_ENTRIES: usize = c::mg_limit::MG_EXEC_NAMES_ENTRIES.0 as usize;
/// `MG_PORTS_ENTRIES`: max_entries of `mg_ports`.
pub(crate) const PORTS_ENTRIES: usize = c::mg_limit::MG_PORTS_ENTRIES.0 as usize;
/// `MG_CIDRS_ENTRIES`: max_entries of `mg_cidr4` and `mg_cidr6`.
pub(crate) const CIDRS_ENTRIES: usize = c::mg_limit::MG_CIDRS_ENTRIES.0 as usize;
/// `MG_PATTERN_LEN`: bytes of an exec.cmdline pattern.
pub(crate) const PATTERN_LEN: usize = c::mg_limit::MG_PATTERN_LEN.0 as usize;
/// `MG_BUCKET_SIZE`: cmdline patterns per 4-byte prefix.
pub(crate) const BUCKET_SIZE: usize = c::mg_limit::MG_BUCKET_SIZE.0 as usize;
/// `MG_ARGV_MAX`: bytes of argv the cmdline program searches; a longer argv
/// is matched as the policy's strongest cmdline rule.
pub(crate) const ARGV_MAX: usize = c::mg_limit::MG_ARGV_MAX.0 as usize;
/// `MG_PATTERN_ID_OVERLONG`: the `mg_cmd_pattern` id of that rule.
pub(crate) const PATTERN_ID_OVERLONG: u32 = c::mg_limit::MG_PATTERN_ID_OVERLONG.0;

/// `MG_STAT_RINGBUF_DROPS`: the per-CPU counter of events the ring refused.
pub(crate) const STAT_RINGBUF_DROPS: u32 = c::mg_stat::MG_STAT_RINGBUF_DROPS.0;
/// `MG_STAT_UNTRACKED`: accepted sockets the full Stratum sockhash refused.
pub(crate) const STAT_UNTRACKED: u32 = c::mg_stat::MG_STAT_UNTRACKED.0;
/// `MG_STAT_REFUSED_UNQUEUED`: sockets the egress Stratum judge refused
/// that its full queue could not hand to userspace.
pub(crate) const STAT_REFUSED_UNQUEUED: u32 = c::mg_stat::MG_STAT_REFUSED_UNQUEUED.0;
/// `MG_STAT_OWN_COPIES`: threads the lsm Stratum judge gave a copy of
/// their own because every spare copy was taken.
pub(crate) const STAT_OWN_COPIES: u32 = c::mg_stat::MG_STAT_OWN_COPIES.0;
/// `MG_STAT_UNREAD_REFUSED`: sends the lsm Stratum judge refused because
/// it had no room to read them or to follow their socket.
pub(crate) const STAT_UNREAD_REFUSED: u32 = c::mg_stat::MG_STAT_UNREAD_REFUSED.0;

/// `enum mg_kind` (a `u8` in `struct mg_event`).
pub(crate) const KIND_EXEC: u8 = byte(c::mg_kind::MG_KIND_EXEC.0);
/// `enum mg_kind`.
pub(crate) const KIND_CONNECT: u8 = byte(c::mg_kind::MG_KIND_CONNECT.0);
/// `enum mg_kind`.
pub(crate) const KIND_STRATUM: u8 = byte(c::mg_kind::MG_KIND_STRATUM.0);
/// `enum mg_kind`.
pub(crate) const KIND_DEVICE: u8 = byte(c::mg_kind::MG_KIND_DEVICE.0);
/// `enum mg_kind`.
pub(crate) const KIND_ESCAPE: u8 = byte(c::mg_kind::MG_KIND_ESCAPE.0);

/// `enum mg_action` (a `u8` in events and rule references).
pub(crate) const ACTION_DENY: u8 = byte(c::mg_action::MG_ACTION_DENY.0);
/// `enum mg_action`.
pub(crate) const ACTION_KILL: u8 = byte(c::mg_action::MG_ACTION_KILL.0);
/// `enum mg_action`.
pub(crate) const ACTION_AUDIT: u8 = byte(c::mg_action::MG_ACTION_AUDIT.0);

// `enum mg_scope_flag`: used by its C names in `maps::scope_flags`.

/// `MG_CONFIG_EGRESS_JUDGE`: `mg_config.flags` bit saying the egress
/// program judges Stratum.
pub(crate) const CONFIG_EGRESS_JUDGE: u32 = c::mg_config_flag::MG_CONFIG_EGRESS_JUDGE.0;

/// `enum mg_inode_kind` (a `u8` in `mg_inode_key`).
pub(crate) const INODE_FILE: u8 = byte(c::mg_inode_kind::MG_INODE_FILE.0);

/// `enum mg_path_kind` (a `u8` in `mg_path_key`).
pub(crate) const PATH_DIR: u8 = byte(c::mg_path_kind::MG_PATH_DIR.0);
/// `enum mg_path_kind`.
pub(crate) const PATH_ALLOW_FILE: u8 = byte(c::mg_path_kind::MG_PATH_ALLOW_FILE.0);
/// `enum mg_path_kind`.
pub(crate) const PATH_ALLOW_DIR: u8 = byte(c::mg_path_kind::MG_PATH_ALLOW_DIR.0);

/// `enum mg_stratum_sig` (the first byte of a Stratum event's path).
pub(crate) const SIG_V1: u8 = byte(c::mg_stratum_sig::MG_SIG_V1.0);
/// `enum mg_stratum_sig`.
pub(crate) const SIG_LOGIN: u8 = byte(c::mg_stratum_sig::MG_SIG_LOGIN.0);
/// `enum mg_stratum_sig`.
pub(crate) const SIG_V2: u8 = byte(c::mg_stratum_sig::MG_SIG_V2.0);
/// `enum mg_stratum_sig`.
pub(crate) const SIG_UNREADABLE: u8 = byte(c::mg_stratum_sig::MG_SIG_UNREADABLE.0);
/// `enum mg_stratum_sig`.
pub(crate) const SIG_ETHPROXY: u8 = byte(c::mg_stratum_sig::MG_SIG_ETHPROXY.0);
/// `enum mg_stratum_sig`.
pub(crate) const SIG_SOLO: u8 = byte(c::mg_stratum_sig::MG_SIG_SOLO.0);
/// `enum mg_stratum_sig`.
pub(crate) const SIG_CUSTOM: u8 = byte(c::mg_stratum_sig::MG_SIG_CUSTOM.0);
/// `enum mg_stratum_sig`.
pub(crate) const SIG_MPTCP: u8 = byte(c::mg_stratum_sig::MG_SIG_MPTCP.0);
/// `enum mg_stratum_sig`.
pub(crate) const SIG_TFO_CONNECT: u8 = byte(c::mg_stratum_sig::MG_SIG_TFO_CONNECT.0);
/// `enum mg_stratum_sig`.
pub(crate) const SIG_UNTRACKED: u8 = byte(c::mg_stratum_sig::MG_SIG_UNTRACKED.0);
/// `enum mg_stratum_sig`: one of the profile's `signatures` (the method's
/// first byte: 1 + its index).
pub(crate) const SIG_SIGNATURE: u8 = byte(c::mg_stratum_sig::MG_SIG_SIGNATURE.0);
/// `enum mg_stratum_sig`: lsm, a stream the reader cannot follow.
pub(crate) const SIG_GAP: u8 = byte(c::mg_stratum_sig::MG_SIG_GAP.0);
/// `enum mg_stratum_sig`: lsm, an SMC socket, refused.
pub(crate) const SIG_SMC: u8 = byte(c::mg_stratum_sig::MG_SIG_SMC.0);
/// `enum mg_stratum_sig`: lsm, a blocking send the kernel may take only
/// after a wait, refused.
pub(crate) const SIG_WAIT: u8 = byte(c::mg_stratum_sig::MG_SIG_WAIT.0);

/// `MG_REF_SIGNATURES`: `mg_rule_ref.flags` bit of a stratum rule whose
/// policy has signatures.
pub(crate) const REF_SIGNATURES: u8 = byte(c::mg_ref_flag::MG_REF_SIGNATURES.0);
/// `MG_SIGS_ENTRIES`: max_entries of `mg_stratum_sigs`.
pub(crate) const SIGS_ENTRIES: usize = c::mg_limit::MG_SIGS_ENTRIES.0 as usize;

/// `MG_PREFIX_LEN`: bytes of a path in `mg_path_key` (no NUL needed).
pub(crate) const PREFIX_LEN: usize = c::mg_limit::MG_PREFIX_LEN.0 as usize;
/// `MG_PATHS_ENTRIES`: max_entries of `mg_exec_paths`.
pub(crate) const PATHS_ENTRIES: usize = c::mg_limit::MG_PATHS_ENTRIES.0 as usize;
/// `MG_METHOD_LEN`: bytes of a Stratum method name in the kernel, NUL included.
pub(crate) const METHOD_LEN: usize = c::mg_limit::MG_METHOD_LEN.0 as usize;
/// `MG_METHODS_ENTRIES`: max_entries of `mg_stratum_methods`.
pub(crate) const METHODS_ENTRIES: usize = c::mg_limit::MG_METHODS_ENTRIES.0 as usize;

/// An enum value stored in a `__u8` field; refuses to build if it does not
/// fit (a const panic is a compile error).
const fn byte(v: u32) -> u8 {
    assert!(v <= u8::MAX as u32, "enum value does not fit the u8 field");
    v as u8
}
