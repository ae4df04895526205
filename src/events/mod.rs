//! Enforcement events: what the kernel did, decoded without allocation and
//! handed to consumers through a bounded channel.

mod inline_str;
pub(crate) mod json;
pub(crate) mod poller;
pub(crate) mod record;
pub(crate) mod registry;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::SystemTime};

pub use inline_str::InlineStr;
pub use json::falco_json;

pub use crate::cgroup_kill::KillMethod;
use crate::{compile::RuleKind, profile::Action};

/// Layer-4 protocol of a connection event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// Anything else, by IANA number.
    Other(u8),
}

impl Protocol {
    pub(crate) fn from_ip_proto(p: u8) -> Self {
        match p {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            n => Protocol::Other(n),
        }
    }

    /// Lower-case name (`tcp`, `udp`, or the number).
    pub fn name(&self) -> String {
        match self {
            Protocol::Tcp => "tcp".into(),
            Protocol::Udp => "udp".into(),
            Protocol::Other(n) => n.to_string(),
        }
    }
}

/// What the rule matched.
// Inline on purpose: decoding an event must not allocate.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A program execution.
    Exec {
        /// The executed file's path from the executing task's root (a
        /// container's own view), symlinks resolved; the path as passed to
        /// execve when the kernel could not build it. On the lsm backend a
        /// script is judged twice, and the second event names the
        /// interpreter. For an executable mapping (loader exec), the
        /// mapped file's path.
        path: InlineStr<256>,
    },
    /// An outbound connection.
    Connect {
        /// Destination; v4-mapped IPv6 destinations are shown as IPv4.
        addr: SocketAddr,
        /// TCP or UDP.
        protocol: Protocol,
    },
    /// An open of a device (`open.msr`: the CPU MSR devices, major 202).
    Device {
        /// Device major number.
        major: u32,
        /// Device minor number (the CPU, for MSR devices).
        minor: u32,
    },
    /// The stream a TCP socket sent (or a UDP datagram, where the backend
    /// reads them) carried a mining method.
    Stratum {
        /// The socket's peer.
        addr: SocketAddr,
        /// TCP, or UDP for a datagram (lsm backend).
        protocol: Protocol,
        /// Which family of mining protocol.
        signature: StratumSignature,
        /// The method as the reader decoded it (lower case; a prefix such
        /// as `mining.` when a `mining.*` entry decided it; empty for
        /// Stratum V2 and Fast Open payloads); for
        /// [`StratumSignature::Signature`], the signature found (its first
        /// 31 bytes).
        method: InlineStr<32>,
    },
    /// A task of a scope leaving it (`scope.escape`).
    ScopeEscape {
        /// The process that was moved (or cloned) out; the event's own
        /// pid is the task that did it.
        moved: u32,
        /// The id of the cgroup it went to (0 when refused before the
        /// kernel chose one: a refused clone into a cgroup).
        cgroup_id: u64,
        /// The cgroup's path when known, else what was refused
        /// (`clone3(CLONE_INTO_CGROUP)`, `bpf map`, `bpf prog`).
        cgroup: InlineStr<256>,
    },
}

impl Target {
    /// The rule kind this target belongs to.
    pub fn kind(&self) -> RuleKind {
        match self {
            Target::Exec { .. } => RuleKind::Exec,
            Target::Connect { .. } => RuleKind::Connect,
            Target::Stratum { .. } => RuleKind::Stratum,
            Target::Device { .. } => RuleKind::Open,
            Target::ScopeEscape { .. } => RuleKind::Scope,
        }
    }
}

/// Which family of mining protocol a socket's stream carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StratumSignature {
    /// Stratum v1 JSON-RPC with a `mining.*` method.
    V1,
    /// XMRig / CryptoNote JSON-RPC: `login`, `submit`, `getjob`, `keepalived`.
    Login,
    /// Stratum V2 plaintext `SetupConnection`.
    V2,
    /// A TCP Fast Open payload the kernel could not read at the syscall
    /// (its page was not resident): refused unjudged, so a payload placed
    /// in an untouched mapping cannot slip past the check.
    Unreadable,
    /// EthProxy: `eth_submitLogin`, `eth_getWork`, `eth_submitWork`.
    EthProxy,
    /// Solo mining against a node: `getblocktemplate`, `submitblock`.
    Solo,
    /// A method the profile's `stratum.methods` lists beyond the built-in
    /// ones.
    Custom,
    /// An MPTCP socket, refused when made on the cgroup backend (its data
    /// never reaches the `sk_msg` verdict that reads streams there).
    Mptcp,
    /// `TCP_FASTOPEN_CONNECT`, refused on the cgroup backend (its first
    /// write goes out in the SYN, before any hook there reads a stream).
    FastOpenConnect,
    /// A connection refused because the Stratum socket tracking was full
    /// (cgroup backend): it would have sent unjudged.
    Untracked,
    /// One of the profile's `stratum.signatures` (byte strings found
    /// anywhere in what the reader reads); the event's `method` is the
    /// signature.
    Signature,
    /// A socket refused because its stream could not be read in step with
    /// what the kernel sent (lsm backend): the kernel took only part of a
    /// send that was read, or two threads sent on it at once while it was
    /// being judged.
    StreamGap,
    /// A send of an SMC socket (`AF_SMC`, `IPPROTO_SMC`), refused on the
    /// lsm backend: with a peer that has no SMC it falls back to an
    /// internal TCP socket, and what the SMC socket itself sends (a Fast
    /// Open `sendto`) reaches that socket past the hook that reads streams.
    Smc,
    /// A blocking send refused before it was read (lsm backend; EAGAIN, or
    /// EOPNOTSUPP for a Fast Open one): the kernel would take its bytes
    /// only after waiting (for the connection, or for send-buffer room),
    /// and another thread could rewrite the caller's buffer meanwhile,
    /// after the hook read it. The socket is not refused for good.
    SendWouldWait,
}

impl StratumSignature {
    /// `enum mg_stratum_sig` in bpf/include/stratum_reader.h.
    pub(crate) fn from_id(id: u8) -> Option<Self> {
        use crate::backend::abi::{
            SIG_CUSTOM, SIG_ETHPROXY, SIG_GAP, SIG_LOGIN, SIG_MPTCP, SIG_SIGNATURE, SIG_SMC,
            SIG_SOLO, SIG_TFO_CONNECT, SIG_UNREADABLE, SIG_UNTRACKED, SIG_V1, SIG_V2, SIG_WAIT,
        };
        match id {
            SIG_V1 => Some(StratumSignature::V1),
            SIG_LOGIN => Some(StratumSignature::Login),
            SIG_V2 => Some(StratumSignature::V2),
            SIG_UNREADABLE => Some(StratumSignature::Unreadable),
            SIG_ETHPROXY => Some(StratumSignature::EthProxy),
            SIG_SOLO => Some(StratumSignature::Solo),
            SIG_CUSTOM => Some(StratumSignature::Custom),
            SIG_MPTCP => Some(StratumSignature::Mptcp),
            SIG_TFO_CONNECT => Some(StratumSignature::FastOpenConnect),
            SIG_UNTRACKED => Some(StratumSignature::Untracked),
            SIG_SIGNATURE => Some(StratumSignature::Signature),
            SIG_GAP => Some(StratumSignature::StreamGap),
            SIG_SMC => Some(StratumSignature::Smc),
            SIG_WAIT => Some(StratumSignature::SendWouldWait),
            _ => None,
        }
    }

    /// The kernel's id (`enum mg_stratum_sig`).
    pub(crate) fn id(self) -> u8 {
        use crate::backend::abi::{
            SIG_CUSTOM, SIG_ETHPROXY, SIG_GAP, SIG_LOGIN, SIG_MPTCP, SIG_SIGNATURE, SIG_SMC,
            SIG_SOLO, SIG_TFO_CONNECT, SIG_UNREADABLE, SIG_UNTRACKED, SIG_V1, SIG_V2, SIG_WAIT,
        };
        match self {
            StratumSignature::V1 => SIG_V1,
            StratumSignature::Login => SIG_LOGIN,
            StratumSignature::V2 => SIG_V2,
            StratumSignature::Unreadable => SIG_UNREADABLE,
            StratumSignature::EthProxy => SIG_ETHPROXY,
            StratumSignature::Solo => SIG_SOLO,
            StratumSignature::Custom => SIG_CUSTOM,
            StratumSignature::Mptcp => SIG_MPTCP,
            StratumSignature::FastOpenConnect => SIG_TFO_CONNECT,
            StratumSignature::Untracked => SIG_UNTRACKED,
            StratumSignature::Signature => SIG_SIGNATURE,
            StratumSignature::StreamGap => SIG_GAP,
            StratumSignature::Smc => SIG_SMC,
            StratumSignature::SendWouldWait => SIG_WAIT,
        }
    }

    /// Short name (`stratum-v1`, `xmrig-login`, `stratum-v2`,
    /// `unreadable-fast-open`, `ethproxy`, `solo-getblocktemplate`,
    /// `custom-method`, `mptcp-refused`, `fastopen-connect-refused`,
    /// `untracked-refused`, `custom-signature`, `stream-gap-refused`, `smc-refused`,
    /// `send-would-wait-refused`).
    pub fn as_str(self) -> &'static str {
        match self {
            StratumSignature::V1 => "stratum-v1",
            StratumSignature::Login => "xmrig-login",
            StratumSignature::V2 => "stratum-v2",
            StratumSignature::Unreadable => "unreadable-fast-open",
            StratumSignature::EthProxy => "ethproxy",
            StratumSignature::Solo => "solo-getblocktemplate",
            StratumSignature::Custom => "custom-method",
            StratumSignature::Mptcp => "mptcp-refused",
            StratumSignature::FastOpenConnect => "fastopen-connect-refused",
            StratumSignature::Untracked => "untracked-refused",
            StratumSignature::Signature => "custom-signature",
            StratumSignature::StreamGap => "stream-gap-refused",
            StratumSignature::Smc => "smc-refused",
            StratumSignature::SendWouldWait => "send-would-wait-refused",
        }
    }
}

/// Where an event's `ppid`, `pname` and `cmdline` come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcSource {
    /// Read by the BPF program from the task, at the decision.
    Kernel,
    /// Read by userspace from `/proc/<pid>` when the event arrived (the
    /// program type may not read the task on this kernel, or a page of argv
    /// was not resident): best effort, since the process may have exited
    /// (then the fields are empty or 0) or changed in between.
    Proc,
}

impl ProcSource {
    /// `kernel` or `proc` (`minerguard.proc.source` in JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            ProcSource::Kernel => "kernel",
            ProcSource::Proc => "proc",
        }
    }
}

/// Capacity of [`Event::cmdline`]: a command name, a space, and the 256
/// bytes of argv an event carries.
pub const CMDLINE_CAPACITY: usize = 272;

/// One enforcement decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When the kernel made the decision (wall clock).
    pub time: SystemTime,
    /// Thread id of the task (the kernel's `pid`).
    pub pid: u32,
    /// Process id (thread group id; what `ps` shows as PID).
    pub tgid: u32,
    /// Real uid of the task.
    pub uid: u32,
    /// The task's own cgroup v2 id.
    pub cgroup_id: u64,
    /// Task command name (`comm`, at most 15 bytes).
    pub comm: InlineStr<16>,
    /// Parent's process id (`task->real_parent->tgid`; 0 when unknown).
    pub ppid: u32,
    /// Parent's command name (`comm`; empty when unknown).
    pub pname: InlineStr<16>,
    /// Falco's `proc.cmdline`: the command name, then the arguments after
    /// `argv[0]`, space-separated, from the first 256 bytes of argv (see
    /// [`Self::cmdline_truncated`]). Whose argv: the task the hook ran in.
    /// For an exec refused before it happens (lsm backend's exec rules)
    /// that is the process that tried, with its own (old) command line;
    /// the refused file is the target's `path`. For an exec judged once it
    /// has happened (the cgroup backend's exec rules, and `exec.cmdline`
    /// on both backends) it is the new program's command line, as Falco
    /// reports on execve.
    pub cmdline: InlineStr<CMDLINE_CAPACITY>,
    /// Whether argv was longer than the event carries, so `cmdline` is cut.
    pub cmdline_truncated: bool,
    /// Where `ppid`, `pname` and `cmdline` come from.
    pub proc_source: ProcSource,
    /// Name of the profile the rule belongs to.
    pub profile: Arc<str>,
    /// Name of the rule that fired.
    pub rule: Arc<str>,
    /// What was done.
    pub action: Action,
    /// What the rule asked for (differs when a backend degrades it, e.g.
    /// exec `deny` carried out as `kill` by the cgroup backend).
    pub requested: Action,
    /// What was matched.
    pub target: Target,
    /// For a destination that a `connect.domains` rule resolved: the domain.
    pub domain: Option<Arc<str>>,
    /// For an `exec.cmdline` rule: the pattern that matched, as compiled
    /// (lower case), or [`OVERLONG_ARGV`] when argv was too long to search
    /// and was matched as the profile's strongest cmdline rule.
    pub pattern: Option<Arc<str>>,
    /// When `action` is `kill-container`: what became of the cgroup the
    /// task was in (`None` for every other action).
    pub cgroup_kill: Option<CgroupKill>,
}

/// What a `kill-container` event did to the cgroup the task was in when
/// the kernel wrote the event (the event's `cgroup_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupKill {
    /// Every process of the cgroup was sent SIGKILL.
    Killed {
        /// The cgroup's absolute path.
        cgroup: PathBuf,
        /// How ([`crate::cgroup_kill::kill_cgroup`]).
        method: KillMethod,
    },
    /// The cgroup was not killed (the task itself was, as by `kill`).
    NotKilled {
        /// The cgroup's path, when it was found.
        cgroup: Option<PathBuf>,
        /// Why: not found (removed), refused (the root, the enforcer's own
        /// cgroup, init's), an I/O error, or an event written before this
        /// enforcer started (a pinned ring buffer's backlog: not acted on).
        reason: String,
    },
}

impl CgroupKill {
    /// The cgroup's path, when it was found.
    pub fn cgroup(&self) -> Option<&std::path::Path> {
        match self {
            CgroupKill::Killed { cgroup, .. } => Some(cgroup),
            CgroupKill::NotKilled { cgroup, .. } => cgroup.as_deref(),
        }
    }

    /// Whether the cgroup was killed.
    pub fn killed(&self) -> bool {
        matches!(self, CgroupKill::Killed { .. })
    }
}

/// [`Event::pattern`] of an argv longer than the kernel searches.
pub const OVERLONG_ARGV: &str = "(argv longer than 262144 bytes: not searched)";

impl Event {
    /// Whether the action taken differs from the one the rule asked for.
    pub fn degraded(&self) -> bool {
        self.action != self.requested
    }
}

/// Events lost on the way to consumers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// The kernel's ring buffer was full (enforcement still happened).
    pub ring: u64,
    /// The channel to consumers was full (nobody read fast enough).
    pub channel: u64,
}
