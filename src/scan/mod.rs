//! Dynamic scan: the processes already running in a scope when protection
//! starts (or its profile changes) are judged by the profile's rules, as
//! the kernel judges an exec or a connect, and acted on: `audit` reports,
//! `deny` and `kill` kill (a running process cannot be denied).
//!
//! What is looked at, per process of each cgroup and its descendants: its
//! program (name, (device, inode), the path from its own root, memfd or
//! deleted, written into the container: drift), the name it was run by
//! (`comm`), its argv, the files it maps
//! executable (`ld.so ./xmrig`, a miner as a `.so`), its connected TCP and
//! UDP sockets (ports, CIDRs, resolved domains), and MSR devices it holds
//! open. Processes that exit meanwhile are skipped: that is normal.
//!
//! ```no_run
//! use minerguard::{scan::{Scanner, ScanOptions}, Profile};
//!
//! let profile = Profile::bundled("container-strict").unwrap();
//! let scanner = Scanner::new(&profile)?;
//! let report = scanner.scan(&["/sys/fs/cgroup/my-container".into()], &ScanOptions::default())?;
//! for finding in &report.findings {
//!     println!("{}", minerguard::scan::scan_json(finding, &report.profile));
//! }
//! # Ok::<(), minerguard::Error>(())
//! ```

mod drift;
mod event;
pub(crate) mod kill;
pub(crate) mod net;
pub(crate) mod process;
pub(crate) mod procs;
mod rules;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

pub use event::{scan_json, scan_value};

use crate::{
    compile::{KernelPolicy, RuleKind},
    events::Protocol,
    profile::{Action, MatcherKind, Profile, ValidProfile},
    Error,
};
use rules::Rules;

/// How a scan runs.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Report only: nothing is killed, whatever the rules say.
    pub dry_run: bool,
    /// Cgroups (absolute, or relative to the cgroup v2 mount) left out with
    /// their descendants: scopes of their own, which a scan with their own
    /// profile judges (the agent's bound containers under the baseline).
    /// One that does not exist is ignored.
    pub exclude: Vec<PathBuf>,
}

/// What a scan found in one process that a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// The program the process runs.
    Exe {
        /// Its path from the process's own root (`/memfd:NAME` for a memfd).
        path: String,
    },
    /// A file the process maps executable (loaded by `ld.so`, or as a
    /// library), other than its program.
    Mapped {
        /// Its path from the process's own root.
        path: String,
    },
    /// A pattern its argv holds.
    Cmdline {
        /// The pattern (lower case), or why argv matched without one.
        pattern: String,
    },
    /// A connected socket.
    Socket {
        /// The peer; v4-mapped IPv6 peers are shown as IPv4.
        peer: SocketAddr,
        /// TCP or UDP.
        protocol: Protocol,
        /// The `connect.domains` name the peer address was resolved from.
        domain: Option<Arc<str>>,
    },
    /// An open CPU MSR device.
    Msr {
        /// The device's path as the process opened it.
        path: String,
        /// The device's minor number (the CPU).
        cpu: u32,
    },
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Evidence::Exe { path } => write!(f, "runs {path}"),
            Evidence::Mapped { path } => write!(f, "maps {path} executable"),
            Evidence::Cmdline { pattern } => write!(f, "argv holds `{pattern}`"),
            Evidence::Socket {
                peer,
                protocol,
                domain,
            } => {
                write!(f, "{} connected to {peer}", protocol.name())?;
                match domain {
                    Some(d) => write!(f, " ({d})"),
                    None => Ok(()),
                }
            }
            Evidence::Msr { path, cpu } => write!(f, "holds {path} open (cpu {cpu})"),
        }
    }
}

/// One rule a process matches, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The rule's name.
    pub rule: Arc<str>,
    /// The rule's index in the profile.
    pub rule_index: u32,
    /// What the rule judges.
    pub kind: RuleKind,
    /// Which of its matchers matched.
    pub matcher: MatcherKind,
    /// The rule's effective action (after the profile's mode).
    pub action: Action,
    /// What matched.
    pub evidence: Evidence,
}

/// The process a finding is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedProcess {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot: with the pid, the process's
    /// identity (a pid may be reused).
    pub start_time: u64,
    /// Real uid.
    pub uid: u32,
    /// `comm`.
    pub comm: String,
    /// Its parent's pid (0 when unknown).
    pub ppid: u32,
    /// Its parent's `comm` (empty when unknown).
    pub pname: String,
    /// Its program's path from its own root; empty when unknown.
    pub exe: String,
    /// argv, NUL-separated arguments joined with spaces (lossy UTF-8).
    pub cmdline: String,
    /// The cgroup it was found in (absolute path).
    pub cgroup: PathBuf,
    /// That cgroup's id.
    pub cgroup_id: u64,
}

/// What was done about a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Killed (SIGKILL through a pidfd; it exited).
    Killed,
    /// `kill-container`: every process of its cgroup was sent SIGKILL
    /// ([`crate::cgroup_kill::kill_cgroup`]).
    KilledCgroup {
        /// The process's cgroup.
        cgroup: PathBuf,
        /// How.
        method: crate::cgroup_kill::KillMethod,
    },
    /// Reported only: the rule's action is `audit`.
    Reported,
    /// Reported only: a dry run.
    DryRun,
    /// It exited (or its pid went to another process) before it was acted on.
    Gone,
    /// Acting failed: why.
    Failed(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Killed => f.write_str("killed"),
            Outcome::KilledCgroup { cgroup, .. } => {
                write!(f, "killed with its cgroup {}", cgroup.display())
            }
            Outcome::Reported => f.write_str("reported"),
            Outcome::DryRun => f.write_str("dry-run"),
            Outcome::Gone => f.write_str("gone"),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// A process a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// When it was judged.
    pub time: SystemTime,
    /// The process.
    pub process: ScannedProcess,
    /// Every rule it matches, the deciding one first (strongest action,
    /// earliest rule among equals).
    pub matches: Vec<Match>,
    /// What was done.
    pub outcome: Outcome,
}

impl Finding {
    /// The match that decided what was done.
    pub fn decisive(&self) -> &Match {
        &self.matches[0]
    }
}

/// A rule a scan cannot judge on a running process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unjudged {
    /// The rule's name.
    pub rule: Arc<str>,
    /// Why.
    pub reason: &'static str,
}

/// What a scan did.
#[derive(Debug, Clone)]
pub struct ScanReport {
    /// The profile's name.
    pub profile: Arc<str>,
    /// Processes judged.
    pub scanned: usize,
    /// Processes that exited while the scan read them.
    pub vanished: usize,
    /// The processes that matched a rule.
    pub findings: Vec<Finding>,
    /// Rules of the profile a scan cannot judge.
    pub unjudged: Vec<Unjudged>,
    /// Wall-clock time the scan took.
    pub elapsed: Duration,
}

/// A profile compiled once for scanning (resolved like an apply: exec.files
/// to inodes, connect.domains to addresses), to scan many times.
#[derive(Debug)]
pub struct Scanner {
    rules: Rules,
}

/// argv bytes read per process (the kernel searches as much; a longer argv
/// is the strongest cmdline rule there and here).
const ARGV_LIMIT: usize = crate::compile::limits::MAX_CMDLINE_ARGV_BYTES;

impl Scanner {
    /// Validates, compiles and resolves `profile`.
    pub fn new(profile: &Profile) -> Result<Self, Error> {
        Self::from_policy(KernelPolicy::compile(profile)?)
    }

    /// Compiles and resolves a validated profile.
    pub fn from_valid(profile: &ValidProfile<'_>) -> Result<Self, Error> {
        Self::from_policy(KernelPolicy::from_valid(profile)?)
    }

    fn from_policy(mut policy: KernelPolicy) -> Result<Self, Error> {
        policy.resolve_inodes()?;
        if !policy.domains.is_empty() {
            // Unresolved names judge nothing, as in the kernel.
            policy.resolve_domains();
        }
        Ok(Scanner {
            rules: Rules::new(policy),
        })
    }

    /// The profile's name.
    pub fn profile(&self) -> &Arc<str> {
        &self.rules.policy().profile
    }

    /// Judges every process of each cgroup (absolute, or relative to the
    /// cgroup v2 mount) and its descendants, and acts on what matches,
    /// unless `options.dry_run`. The calling process is never acted on.
    /// Fails only on a path that is not a cgroup v2 directory (nothing is
    /// scanned then).
    pub fn scan(&self, cgroups: &[PathBuf], options: &ScanOptions) -> Result<ScanReport, Error> {
        let started = Instant::now();
        let mut members = Vec::new();
        for cg in cgroups {
            members.extend(procs::members(cg, &options.exclude)?);
        }
        // Nested scopes list a process once.
        members.sort_by_key(|m| m.pid);
        members.dedup_by_key(|m| m.pid);
        let mut report = ScanReport {
            profile: self.profile().clone(),
            scanned: 0,
            vanished: 0,
            findings: Vec::new(),
            unjudged: (self.rules.unjudged().into_iter())
                .map(|(rule, reason)| Unjudged { rule, reason })
                .collect(),
            elapsed: Duration::ZERO,
        };
        let mut namespaces = net::Namespaces::default();
        let me = std::process::id();
        for m in members.iter().filter(|m| m.pid != me) {
            let Some(p) = process::read(m.pid, ARGV_LIMIT) else {
                report.vanished += 1;
                continue;
            };
            report.scanned += 1;
            let mut matches = self.judge(&p, &mut namespaces);
            if matches.is_empty() {
                continue;
            }
            matches.sort_by_key(|m| (std::cmp::Reverse(m.action), m.rule_index));
            let outcome = act(&p, &m.cgroup, matches[0].action, options);
            report.findings.push(Finding {
                time: SystemTime::now(),
                process: describe(&p, &m.cgroup),
                matches,
                outcome,
            });
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Every rule `p` matches.
    fn judge(&self, p: &process::Process, namespaces: &mut net::Namespaces) -> Vec<Match> {
        let rules = &self.rules;
        let mut out = Vec::new();
        // Kernel threads have no program and nothing to judge.
        let Some(exe) = &p.exe else {
            return out;
        };
        rules.judge_exe(p, exe, &mut out);
        rules.judge_cmdline(p, &mut out);
        if rules.needs_mappings() {
            for file in process::executable_mappings(p) {
                rules.judge_mapping(&file, &mut out);
            }
        }
        if rules.needs_sockets() || rules.needs_devices() {
            let fds = process::descriptors(p.pid, rules.needs_sockets(), rules.needs_devices());
            if !fds.sockets.is_empty() {
                if let Some(table) = namespaces.sockets_of(p.pid) {
                    for peer in fds.sockets.iter().filter_map(|ino| table.get(ino)) {
                        rules.judge_peer(peer, &mut out);
                    }
                }
            }
            for (path, minor) in &fds.msr {
                rules.judge_msr(path, *minor, &mut out);
            }
        }
        out
    }
}

/// Scans `cgroups` with `profile` once (see [`Scanner::scan`]).
pub fn scan(
    cgroups: &[PathBuf],
    profile: &Profile,
    options: &ScanOptions,
) -> Result<ScanReport, Error> {
    Scanner::new(profile)?.scan(cgroups, options)
}

/// The init process of the scanner's pid namespace.
const INIT_PID: u32 = 1;

/// Carries out the deciding rule's action on `p`, which is in `cgroup`
/// (the behaviour detector acts through here too).
pub(crate) fn act(
    p: &process::Process,
    cgroup: &std::path::Path,
    action: Action,
    options: &ScanOptions,
) -> Outcome {
    if options.dry_run {
        return Outcome::DryRun;
    }
    // The one place a rule's action becomes what a scan does.
    match action {
        Action::Audit => Outcome::Reported,
        // A running process cannot be denied what it already did: both
        // end it.
        // Killing init would take the whole host (or container) down with
        // it: that is never a scan's call.
        Action::Deny | Action::Kill | Action::KillContainer if p.pid == INIT_PID => {
            Outcome::Failed("pid 1 (init) is never killed by a scan".into())
        }
        Action::Deny | Action::Kill => kill_process(p),
        // The process's whole cgroup (its container); where that is refused
        // or fails, the process alone, and the outcome says why.
        Action::KillContainer => match crate::cgroup_kill::kill_cgroup(cgroup) {
            Ok(method) => Outcome::KilledCgroup {
                cgroup: cgroup.to_path_buf(),
                method,
            },
            Err(e) => Outcome::Failed(format!(
                "its cgroup was not killed ({e}); the process: {}",
                kill_process(p)
            )),
        },
    }
}

/// SIGKILL to `p` alone (through a pidfd).
fn kill_process(p: &process::Process) -> Outcome {
    match kill::kill(p.pid, p.start_time) {
        kill::Killed::Yes => Outcome::Killed,
        kill::Killed::Gone => Outcome::Gone,
        kill::Killed::Failed(why) => Outcome::Failed(why),
    }
}

/// What events say about `p`, found in `cgroup`.
pub(crate) fn describe(p: &process::Process, cgroup: &std::path::Path) -> ScannedProcess {
    use std::os::unix::fs::MetadataExt;
    // The real uid, as events report it: the first of status's `Uid:`.
    let uid = std::fs::read_to_string(format!("/proc/{}/status", p.pid))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(u32::MAX);
    let ppid = process::parent(p.pid).unwrap_or(0);
    let pname = std::fs::read_to_string(format!("/proc/{ppid}/comm"))
        .map(|c| c.trim_end_matches('\n').to_string())
        .unwrap_or_default();
    let cmdline = p
        .cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    ScannedProcess {
        pid: p.pid,
        start_time: p.start_time,
        uid,
        comm: p.comm.clone(),
        ppid,
        pname,
        exe: p.exe.as_ref().map(|e| e.path.clone()).unwrap_or_default(),
        cmdline,
        cgroup: cgroup.to_path_buf(),
        cgroup_id: std::fs::metadata(cgroup).map(|m| m.ino()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init_like() -> process::Process {
        process::Process {
            pid: INIT_PID,
            start_time: 1,
            comm: "init".into(),
            exe: None,
            cmdline: Vec::new(),
            cmdline_overlong: false,
            root: None,
        }
    }

    fn deciding(action: Action) -> Match {
        Match {
            rule: "r".into(),
            rule_index: 0,
            kind: RuleKind::Exec,
            matcher: MatcherKind::ExecAllowOnly,
            action,
            evidence: Evidence::Exe {
                path: "/sbin/init".into(),
            },
        }
    }

    #[test]
    fn init_is_never_killed_but_still_reported() {
        let p = init_like();
        let opts = ScanOptions::default();
        let cgroup = std::path::Path::new("/sys/fs/cgroup/init.scope");
        for action in [Action::Kill, Action::KillContainer] {
            let outcome = act(&p, cgroup, deciding(action).action, &opts);
            assert!(
                matches!(&outcome, Outcome::Failed(why) if why.contains("pid 1")),
                "{outcome:?}"
            );
        }
        assert_eq!(
            act(&p, cgroup, deciding(Action::Audit).action, &opts),
            Outcome::Reported
        );
        let dry = ScanOptions {
            dry_run: true,
            ..Default::default()
        };
        assert_eq!(
            act(&p, cgroup, deciding(Action::Deny).action, &dry),
            Outcome::DryRun
        );
    }
}
