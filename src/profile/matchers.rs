//! The matchers a rule can carry. Each rule has exactly one: one key inside
//! one of `exec`, `connect`, `stratum`, `open`, `scope`, `seccomp` or
//! `behaviour`.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::Rule;

fn is_false(b: &bool) -> bool {
    !*b
}

/// Exec matchers (one key per rule).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecMatch {
    /// Basenames of the executed file, matched exactly (`xmrig`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Path prefixes of the executed file (`/tmp/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_prefixes: Vec<String>,
    /// Files, resolved to (device, inode) at apply: renames and hard links
    /// do not escape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Scratch directories: exec of anything under them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<String>,
    /// Exec of a memfd or of a deleted file (fileless exec).
    #[serde(default, skip_serializing_if = "is_false")]
    pub memfd: bool,
    /// Exec (and executable mappings) of a file that is not part of the
    /// container's image: on overlayfs, a file in the upper (writable)
    /// layer, i.e. created or modified after the container started.
    #[serde(default, skip_serializing_if = "is_false")]
    pub drift: bool,
    /// Substrings of the new argv (`stratum+tcp://`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmdline: Vec<String>,
    /// Allow-list: only these paths (or prefixes ending in `/`) may run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_only: Vec<String>,
    /// The scope's first exec (after apply) is allowed, every later one is
    /// refused: a workload that needs no new programs once started.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_new_exec: bool,
}

/// A destination port or an inclusive range, written `3333` or `"5000-5010"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSpec {
    /// First port.
    pub first: u16,
    /// Last port (equal to `first` for a single port).
    pub last: u16,
}

impl PortSpec {
    /// One port.
    pub fn single(port: u16) -> Self {
        PortSpec {
            first: port,
            last: port,
        }
    }

    /// An inclusive range.
    pub fn range(first: u16, last: u16) -> Self {
        PortSpec { first, last }
    }

    /// Every port in the range (empty when `first > last`).
    pub fn ports(&self) -> impl Iterator<Item = u16> {
        self.first..=self.last
    }

    /// How many ports the range holds.
    pub fn len(&self) -> usize {
        if self.first > self.last {
            0
        } else {
            usize::from(self.last - self.first) + 1
        }
    }

    /// Whether the range is empty (`first > last`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<u16> for PortSpec {
    fn from(p: u16) -> Self {
        PortSpec::single(p)
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl Serialize for PortSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            s.serialize_u16(self.first)
        } else {
            s.serialize_str(&self.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = PortSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port (1-65535) or a range such as \"5000-5010\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortSpec, E> {
                u16::try_from(v)
                    .map(PortSpec::single)
                    .map_err(|_| E::custom(format!("port {v} is out of range (1-65535)")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortSpec, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("port {v} is out of range (1-65535)")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortSpec, E> {
                let bad = || {
                    E::custom(format!(
                        "`{v}` is not a port or a port range like 5000-5010"
                    ))
                };
                let port = |s: &str| s.trim().parse::<u16>().map_err(|_| bad());
                match v.split_once('-') {
                    Some((a, b)) => Ok(PortSpec::range(port(a)?, port(b)?)),
                    None => port(v).map(PortSpec::single),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Outbound connection matchers (one key per rule).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectMatch {
    /// Destination ports and ranges (TCP and UDP, IPv4 and IPv6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// Destination networks, IPv4 or IPv6 (`203.0.113.0/24`, `2001:db8::/32`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidrs: Vec<String>,
    /// Destination domains, resolved to addresses at apply and refreshed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
}

/// The Stratum mining protocol on the stream a socket sends, any port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StratumMatch {
    /// Extra byte strings to match besides the built-in signatures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<String>,
    /// The JSON-RPC methods refused (compared without case; `x.*` is any
    /// method starting `x.`). Empty: the built-in list,
    /// [`crate::profile::indicators::STRATUM_METHODS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

impl StratumMatch {
    /// The methods this rule refuses: its own list, or the built-in one.
    pub fn effective_methods(&self) -> impl Iterator<Item = &str> {
        let builtin = self.methods.is_empty();
        (self.methods.iter().map(String::as_str)).chain(
            builtin
                .then_some(super::indicators::STRATUM_METHODS)
                .into_iter()
                .flatten()
                .copied(),
        )
    }
}

/// File-open matchers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenMatch {
    /// Opens of `/dev/cpu/*/msr` (miners write MSRs to gain hash rate).
    #[serde(default, skip_serializing_if = "is_false")]
    pub msr: bool,
}

/// Scope matchers: what a task in the scope does to the scope itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeMatch {
    /// A task leaving the scope: moved to a cgroup outside it (a write to
    /// another cgroup's `cgroup.procs`/`cgroup.threads`) or cloned into one
    /// (`clone3(CLONE_INTO_CGROUP)`), by a task in the scope.
    #[serde(default, skip_serializing_if = "is_false")]
    pub escape: bool,
}

/// Mining behaviour: what a process does rather than what it is called
/// (see [`crate::behaviour`]). Every threshold is optional; an unset one
/// takes its documented default, so `behaviour: {}` is a complete matcher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviourMatch {
    /// Seconds a thread's CPU use is averaged over (1-3600; default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_secs: Option<u32>,
    /// Share of the window, in percent, a thread must be runnable (on a
    /// CPU, or waiting for one: a crowded or CPU-limited host) to count as
    /// busy (1-100; default 90).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_percent: Option<u32>,
    /// Busy threads one process needs for the CPU signal (1-4096;
    /// default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_threads: Option<u32>,
    /// Anonymous resident memory, in MiB, that counts as a RandomX-shaped
    /// working set (1-1048576; default 256, RandomX's light-mode cache; the
    /// fast-mode dataset is 2080).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anon_mib: Option<u32>,
    /// Whether mining also needs a connected TCP socket (a miner talks to
    /// its pool or a proxy; a compressor or a build does not). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_connection: Option<bool>,
    /// Seconds the throttled-CPU signal is measured over (1-3600; default
    /// 20): longer than `window_secs`, so a miner held to a duty cycle
    /// (stopped and continued, as `cpulimit` does) is averaged whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_window_secs: Option<u32>,
    /// Share of `throttled_window_secs`, in percent, a thread must be
    /// runnable to count as a throttled miner thread (0-100; default 40; 0
    /// turns the throttled-CPU signal off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_percent: Option<u32>,
    /// Most times a second such a thread may block of its own accord
    /// (voluntary context switches: a hashing thread never waits for
    /// anything, a server thread blocks on every request) (0-1000000;
    /// default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_max_sleeps: Option<u32>,
    /// Whether mining needs a pool-shaped connection rather than any
    /// connected TCP socket: held at least `window_secs` (since the CPU
    /// signal first fired), carrying data both ways, at most
    /// `rhythm_max_bytes_per_sec`. Default false (the rhythm is reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_rhythm: Option<bool>,
    /// Most bytes a second (both ways) a pool-shaped connection carries
    /// (1-1073741824; default 4096: jobs and shares are a few hundred bytes
    /// each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rhythm_max_bytes_per_sec: Option<u32>,
    /// Most seconds a pool-shaped connection goes without data one way or
    /// the other (1-86400; default 600): a pool sends a job per block, a
    /// miner a share every few tens of seconds; a connection kept open and
    /// unused falls out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rhythm_max_quiet_secs: Option<u32>,
    /// Whether attempts to tune the host (opens for writing of
    /// `nr_hugepages`, MSR devices, `allow_writes`, `nmi_watchdog`) are
    /// counted, by the enforcer's open tracepoints, and count as the
    /// footprint part of mining. Default true; false leaves the
    /// tracepoints unloaded (they cost every open() on the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_tuning: Option<bool>,
}

/// What a seccomp filter does with a system call. Written as a word
/// (`allow`, `log`, `kill_process`, `kill_thread`, `trap`, `notify`) or, for
/// the two that carry a number, a one-key map (`{errno: 1}`, `{trace: 7}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeccompAction {
    /// Let it run.
    Allow,
    /// Let it run and log it.
    Log,
    /// Fail it with this errno (`{errno: 1}` is EPERM).
    Errno(u16),
    /// Kill the whole process (SIGSYS).
    KillProcess,
    /// Kill the calling thread.
    KillThread,
    /// Send SIGSYS to the thread.
    Trap,
    /// Notify a ptrace tracer with this value.
    Trace(u16),
    /// Hand the call to a user-space supervisor (seccomp user notification).
    Notify,
}

impl SeccompAction {
    const WORDS: &'static str =
        "allow, log, kill_process, kill_thread, trap, notify, {errno: N} or {trace: N}";

    fn from_word(w: &str) -> Option<Self> {
        Some(match w {
            "allow" => SeccompAction::Allow,
            "log" => SeccompAction::Log,
            "kill_process" => SeccompAction::KillProcess,
            "kill_thread" => SeccompAction::KillThread,
            "trap" => SeccompAction::Trap,
            "notify" => SeccompAction::Notify,
            _ => return None,
        })
    }
}

impl Serialize for SeccompAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let word = match self {
            SeccompAction::Allow => "allow",
            SeccompAction::Log => "log",
            SeccompAction::KillProcess => "kill_process",
            SeccompAction::KillThread => "kill_thread",
            SeccompAction::Trap => "trap",
            SeccompAction::Notify => "notify",
            SeccompAction::Errno(n) | SeccompAction::Trace(n) => {
                let key = if matches!(self, SeccompAction::Errno(_)) {
                    "errno"
                } else {
                    "trace"
                };
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(key, n)?;
                return m.end();
            }
        };
        s.serialize_str(word)
    }
}

impl<'de> Deserialize<'de> for SeccompAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = SeccompAction;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a seccomp action: {}", SeccompAction::WORDS)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SeccompAction, E> {
                SeccompAction::from_word(v).ok_or_else(|| {
                    E::custom(format!(
                        "unknown seccomp action `{v}`, expected {}",
                        SeccompAction::WORDS
                    ))
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SeccompAction, A::Error> {
                let Some((key, n)) = map.next_entry::<String, u16>()? else {
                    return Err(de::Error::custom("empty seccomp action map"));
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(
                        "a seccomp action map has exactly one key",
                    ));
                }
                match key.as_str() {
                    "errno" => Ok(SeccompAction::Errno(n)),
                    "trace" => Ok(SeccompAction::Trace(n)),
                    other => Err(de::Error::custom(format!(
                        "unknown seccomp action `{other}`, expected {}",
                        SeccompAction::WORDS
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Comparison of one syscall argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `(arg & mask) == value`
    MaskedEq,
}

/// A condition on one argument of a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgCmp {
    /// Argument index, 0 to 5.
    pub index: u8,
    /// Comparison.
    pub op: ArgOp,
    /// Value compared with.
    pub value: u64,
    /// Mask, for `masked_eq` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<u64>,
}

/// Syscalls and what to do with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyscallRule {
    /// System call names (x86_64).
    pub names: Vec<String>,
    /// What happens when they are called (and the args match).
    pub action: SeccompAction,
    /// All must hold for the action to apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<ArgCmp>,
}

/// Ready-made syscall rule sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeccompPreset {
    /// What miners and their droppers use to hide, persist or tune, none of
    /// which a containerised workload needs (each fails with EPERM):
    /// `ptrace`, `process_vm_readv`, `process_vm_writev` (reading and
    /// injecting into other processes), `bpf` (tampering with in-kernel
    /// enforcement), `perf_event_open` (hardware counters, side channels),
    /// `init_module`, `finit_module`, `delete_module` (rootkits that hide the
    /// miner), `kexec_load`, `kexec_file_load` (replacing the kernel), and
    /// `personality` changes (the `0xffffffff` query stays allowed).
    Miner,
}

/// A seccomp filter description.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeccompMatch {
    /// Action for syscalls no rule names (default: allow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<SeccompAction>,
    /// A ready-made rule set, added to `syscalls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<SeccompPreset>,
    /// Per-syscall rules.
    #[serde(default)]
    pub syscalls: Vec<SyscallRule>,
}

/// Declares [`MatcherKind`], its `ALL` table and its profile keys from one
/// list: a new kind is one line here (and, until it is compiled, a build
/// error in `compile::KernelPolicy::build`, whose match has no `_` arm).
macro_rules! matcher_kinds {
    ($($variant:ident => $key:literal,)+) => {
        /// Every matcher kind, by its profile key.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum MatcherKind {
            $(#[doc = concat!("`", $key, "`")] $variant,)+
        }

        impl MatcherKind {
            /// Every kind, in documentation order.
            pub const ALL: [MatcherKind; [$($key),+].len()] = [$(MatcherKind::$variant),+];

            /// The profile key (`exec.names`, `connect.ports`, ...).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(MatcherKind::$variant => $key,)+
                }
            }
        }
    };
}

matcher_kinds! {
    ExecNames => "exec.names",
    ExecPathPrefixes => "exec.path_prefixes",
    ExecFiles => "exec.files",
    ExecDirs => "exec.dirs",
    ExecMemfd => "exec.memfd",
    ExecDrift => "exec.drift",
    ExecCmdline => "exec.cmdline",
    ExecAllowOnly => "exec.allow_only",
    ExecNoNewExec => "exec.no_new_exec",
    ConnectPorts => "connect.ports",
    ConnectCidrs => "connect.cidrs",
    ConnectDomains => "connect.domains",
    Stratum => "stratum",
    OpenMsr => "open.msr",
    ScopeEscape => "scope.escape",
    Seccomp => "seccomp",
    Behaviour => "behaviour",
}

impl fmt::Display for MatcherKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's one matcher with its typed payload ([`Rule::matcher`]): what the
/// compilers match on, exhaustively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matcher<'a> {
    /// `exec.names`: basenames.
    ExecNames(&'a [String]),
    /// `exec.path_prefixes`: path prefixes.
    ExecPathPrefixes(&'a [String]),
    /// `exec.files`: files, resolved to (device, inode) at apply.
    ExecFiles(&'a [String]),
    /// `exec.dirs`: scratch directories.
    ExecDirs(&'a [String]),
    /// `exec.memfd`: fileless exec.
    ExecMemfd,
    /// `exec.drift`: files not from the container's image.
    ExecDrift,
    /// `exec.cmdline`: argv substrings.
    ExecCmdline(&'a [String]),
    /// `exec.allow_only`: the paths and prefixes that may run.
    ExecAllowOnly(&'a [String]),
    /// `exec.no_new_exec`: the first exec only.
    ExecNoNewExec,
    /// `connect.ports`: destination ports and ranges.
    ConnectPorts(&'a [PortSpec]),
    /// `connect.cidrs`: destination networks.
    ConnectCidrs(&'a [String]),
    /// `connect.domains`: destination domains.
    ConnectDomains(&'a [String]),
    /// `stratum`: the protocol's signatures, and extra ones.
    Stratum(&'a StratumMatch),
    /// `open.msr`: MSR device opens.
    OpenMsr,
    /// `scope.escape`: a task leaving its scope.
    ScopeEscape,
    /// `seccomp`: a seccomp filter.
    Seccomp(&'a SeccompMatch),
    /// `behaviour`: mining behaviour, judged by sampling the scope.
    Behaviour(&'a BehaviourMatch),
}

impl Matcher<'_> {
    /// Its kind (the profile key).
    pub fn kind(&self) -> MatcherKind {
        match self {
            Matcher::ExecNames(_) => MatcherKind::ExecNames,
            Matcher::ExecPathPrefixes(_) => MatcherKind::ExecPathPrefixes,
            Matcher::ExecFiles(_) => MatcherKind::ExecFiles,
            Matcher::ExecDirs(_) => MatcherKind::ExecDirs,
            Matcher::ExecMemfd => MatcherKind::ExecMemfd,
            Matcher::ExecDrift => MatcherKind::ExecDrift,
            Matcher::ExecCmdline(_) => MatcherKind::ExecCmdline,
            Matcher::ExecAllowOnly(_) => MatcherKind::ExecAllowOnly,
            Matcher::ExecNoNewExec => MatcherKind::ExecNoNewExec,
            Matcher::ConnectPorts(_) => MatcherKind::ConnectPorts,
            Matcher::ConnectCidrs(_) => MatcherKind::ConnectCidrs,
            Matcher::ConnectDomains(_) => MatcherKind::ConnectDomains,
            Matcher::Stratum(_) => MatcherKind::Stratum,
            Matcher::OpenMsr => MatcherKind::OpenMsr,
            Matcher::ScopeEscape => MatcherKind::ScopeEscape,
            Matcher::Seccomp(_) => MatcherKind::Seccomp,
            Matcher::Behaviour(_) => MatcherKind::Behaviour,
        }
    }
}

/// Which matcher a rule has: everything about matchers stays in this file,
/// so a new one is added here (and compiled in `compile`).
impl Rule {
    /// Every matcher key this rule sets (a valid rule has exactly one).
    pub fn matcher_kinds(&self) -> Vec<MatcherKind> {
        self.matcher_keys()
            .into_iter()
            .filter_map(|(set, k)| set.then_some(k))
            .collect()
    }

    /// The rule's one matcher with its payload, when it has exactly one.
    pub fn matcher(&self) -> Option<Matcher<'_>> {
        let kind = self.matcher_kind()?;
        let (e, c) = (self.exec.as_ref(), self.connect.as_ref());
        Some(match kind {
            MatcherKind::ExecNames => Matcher::ExecNames(&e?.names),
            MatcherKind::ExecPathPrefixes => Matcher::ExecPathPrefixes(&e?.path_prefixes),
            MatcherKind::ExecFiles => Matcher::ExecFiles(&e?.files),
            MatcherKind::ExecDirs => Matcher::ExecDirs(&e?.dirs),
            MatcherKind::ExecMemfd => Matcher::ExecMemfd,
            MatcherKind::ExecDrift => Matcher::ExecDrift,
            MatcherKind::ExecCmdline => Matcher::ExecCmdline(&e?.cmdline),
            MatcherKind::ExecAllowOnly => Matcher::ExecAllowOnly(&e?.allow_only),
            MatcherKind::ExecNoNewExec => Matcher::ExecNoNewExec,
            MatcherKind::ConnectPorts => Matcher::ConnectPorts(&c?.ports),
            MatcherKind::ConnectCidrs => Matcher::ConnectCidrs(&c?.cidrs),
            MatcherKind::ConnectDomains => Matcher::ConnectDomains(&c?.domains),
            MatcherKind::Stratum => Matcher::Stratum(self.stratum.as_ref()?),
            MatcherKind::OpenMsr => Matcher::OpenMsr,
            MatcherKind::ScopeEscape => Matcher::ScopeEscape,
            MatcherKind::Seccomp => Matcher::Seccomp(self.seccomp.as_ref()?),
            MatcherKind::Behaviour => Matcher::Behaviour(self.behaviour.as_ref()?),
        })
    }

    /// The rule's matcher kind, when it has exactly one.
    pub fn matcher_kind(&self) -> Option<MatcherKind> {
        let mut set = self.matcher_keys().into_iter().filter(|(set, _)| *set);
        match (set.next(), set.next()) {
            (Some((_, k)), None) => Some(k),
            _ => None,
        }
    }

    /// Each matcher key with whether it is set (no allocation: validating
    /// and compiling large profiles asks this for every rule). Sized by
    /// the matcher table, so a new kind does not build until it is here.
    fn matcher_keys(&self) -> [(bool, MatcherKind); MatcherKind::ALL.len()] {
        // Plain closures passed straight to `is_some_and` inline; `fn`
        // pointers did not (14 indirect calls per rule, twice per compile).
        let e = self.exec.as_ref();
        let c = self.connect.as_ref();
        [
            (
                e.is_some_and(|e| !e.names.is_empty()),
                MatcherKind::ExecNames,
            ),
            (
                e.is_some_and(|e| !e.path_prefixes.is_empty()),
                MatcherKind::ExecPathPrefixes,
            ),
            (
                e.is_some_and(|e| !e.files.is_empty()),
                MatcherKind::ExecFiles,
            ),
            (e.is_some_and(|e| !e.dirs.is_empty()), MatcherKind::ExecDirs),
            (e.is_some_and(|e| e.memfd), MatcherKind::ExecMemfd),
            (e.is_some_and(|e| e.drift), MatcherKind::ExecDrift),
            (
                e.is_some_and(|e| !e.cmdline.is_empty()),
                MatcherKind::ExecCmdline,
            ),
            (
                e.is_some_and(|e| !e.allow_only.is_empty()),
                MatcherKind::ExecAllowOnly,
            ),
            (e.is_some_and(|e| e.no_new_exec), MatcherKind::ExecNoNewExec),
            (
                c.is_some_and(|c| !c.ports.is_empty()),
                MatcherKind::ConnectPorts,
            ),
            (
                c.is_some_and(|c| !c.cidrs.is_empty()),
                MatcherKind::ConnectCidrs,
            ),
            (
                c.is_some_and(|c| !c.domains.is_empty()),
                MatcherKind::ConnectDomains,
            ),
            (self.stratum.is_some(), MatcherKind::Stratum),
            (
                self.open.as_ref().is_some_and(|o| o.msr),
                MatcherKind::OpenMsr,
            ),
            (
                self.scope.as_ref().is_some_and(|s| s.escape),
                MatcherKind::ScopeEscape,
            ),
            (self.seccomp.is_some(), MatcherKind::Seccomp),
            (self.behaviour.is_some(), MatcherKind::Behaviour),
        ]
    }
}
