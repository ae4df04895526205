//! Mining behaviour detector: catches the miner that hides its name, its
//! bytes and its pool, by what mining *is*. RandomX keeps threads of one
//! process spinning on CPUs and holds a 256 MiB cache (2080 MiB dataset in
//! fast mode), often in huge pages, while connected to its pool; ordinary
//! CPU-heavy programs rarely do all three.
//!
//! A [`Detector`] is built from a profile's `behaviour` rules and sampled
//! periodically (`minerguard watch` does it every [`SAMPLE_PERIOD`]). Each
//! sample reads, for every process of the scope's cgroups and their
//! descendants: per-thread time on a CPU and waiting for one
//! (`task/<tid>/schedstat`); for an active thread, its voluntary switches
//! (`task/<tid>/status`: the throttled signal); for a process with an
//! active thread, its connected TCP sockets (`fd/` and its netns's
//! `net/tcp*`) and their counters (sock_diag: the rhythm); and for a
//! process whose CPU use already looks like mining, its memory (`status`
//! RssAnon and HugetlbPages, `smaps_rollup` AnonHugePages) and, where the
//! enforcer's counter is given ([`Detector::count_tuning`]), its attempts to
//! tune the host (huge-page reservations, MSR writes). A
//! verdict ([`Verdict`]) carries every signal's value ([`Signals`]), so an
//! event says why; the rule's action is then carried out as a scan does
//! (`audit` reports; `deny` and `kill` kill through a pidfd, since a running
//! process cannot be denied; `kill-container` kills its cgroup). A process
//! is reported once per life.
//!
//! ```no_run
//! use minerguard::{behaviour::Detector, scan::ScanOptions, Profile};
//!
//! let profile = Profile::from_yaml("apiVersion: minerguard/v1\nname: p\nrules:\n  - name: mining\n    action: kill\n    behaviour: {}\n")?;
//! let mut detector = Detector::new(&profile)?;
//! loop {
//!     let sample = detector.sample(&["/sys/fs/cgroup/my-container".into()], &ScanOptions::default())?;
//!     for d in &sample.detections {
//!         println!("{}", d.to_json(detector.profile()));
//!     }
//!     std::thread::sleep(minerguard::behaviour::SAMPLE_PERIOD);
//! }
//! # Ok::<(), minerguard::Error>(())
//! ```

mod connections;
mod event;
mod history;
mod report;
mod rhythm;
mod sample;
mod thresholds;
mod tuning;
mod verdict;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

pub use history::{CpuSignal, ThrottledSignal};
pub use rhythm::RhythmSignal;
pub use sample::Memory;
pub use thresholds::{
    Thresholds, DEFAULT_ANON_MIB, DEFAULT_BUSY_PERCENT, DEFAULT_BUSY_THREADS,
    DEFAULT_RHYTHM_MAX_BYTES_PER_SEC, DEFAULT_RHYTHM_MAX_QUIET_SECS, DEFAULT_THROTTLED_MAX_SLEEPS,
    DEFAULT_THROTTLED_PERCENT, DEFAULT_THROTTLED_WINDOW_SECS, DEFAULT_WINDOW_SECS,
    RANDOMX_CACHE_MIB, RANDOMX_DATASET_MIB,
};
pub use tuning::{TuningCounts, TuningSignal};
pub use verdict::{Signals, Verdict};

use crate::{
    profile::{Action, Matcher, Mode, Profile, ValidProfile},
    scan::{self, Outcome, ScanOptions, ScannedProcess},
    Error,
};

/// How often `minerguard watch` samples: cheap enough to run forever, often
/// enough that a miner is seen within a window and a period or two.
pub const SAMPLE_PERIOD: Duration = Duration::from_secs(2);

/// One `behaviour` rule of a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BehaviourRule {
    /// The rule's name.
    pub name: Arc<str>,
    /// Its index in the profile.
    pub index: u32,
    /// Its effective action (`audit` in an audit-mode profile).
    pub action: Action,
    /// Its thresholds, defaults filled in.
    pub thresholds: Thresholds,
}

/// A process a `behaviour` rule judged to be mining.
#[derive(Debug, Clone)]
pub struct Detection {
    /// When it was judged.
    pub time: SystemTime,
    /// The process.
    pub process: ScannedProcess,
    /// The rule that decided (the strongest action among the rules that
    /// fired, earliest among equals).
    pub rule: BehaviourRule,
    /// What was measured.
    pub signals: Signals,
    /// Which signals fired.
    pub verdict: Verdict,
    /// What was done.
    pub outcome: Outcome,
}

/// One process judged by one rule in a sample, mining or not: what the
/// evaluation harness and tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Process id.
    pub pid: u32,
    /// Its `comm`.
    pub comm: String,
    /// The rule.
    pub rule: Arc<str>,
    /// What was measured. Memory is read only when the CPU signal fired
    /// (it is zero otherwise).
    pub signals: Signals,
    /// Which signals fired.
    pub verdict: Verdict,
}

/// What one sample found.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Processes sampled.
    pub processes: usize,
    /// Processes found mining (each once per life), acted on.
    pub detections: Vec<Detection>,
    /// Every (process, rule) whose samples spanned the rule's window.
    pub observations: Vec<Observation>,
}

/// What the detector remembers of one process.
#[derive(Debug, Default)]
struct Tracked {
    start_time: u64,
    history: history::History,
    /// Reported already (a process is reported once per life).
    reported: bool,
    /// Its connections, when first seen (for the rhythm).
    connections: rhythm::FirstSeen,
}

/// A process met in a sample, with what is known of it so far.
struct Seen<'a> {
    member: &'a scan::procs::Member,
    comm: &'a str,
    tracked: &'a mut Tracked,
    /// What it holds of the network, read this sample when a thread of it
    /// was active.
    held: Option<Held>,
    /// Its memory, where this sample already read it (with its main
    /// thread's switches).
    memory: Option<Memory>,
}

/// What a sample reads of the network, once per namespace.
#[derive(Default)]
struct Network {
    /// Connected TCP sockets with their counters, from sock_diag.
    counters: connections::Counters,
    /// Connected sockets from `/proc/<pid>/net/tcp*` (as a scan reads
    /// them), where sock_diag cannot be asked.
    sockets: scan::net::Namespaces,
    /// Sockets read one by one (through pidfds) in this sample.
    read_one_by_one: usize,
}

/// What a process holds of the network.
#[derive(Default)]
struct Held {
    /// Its connected TCP sockets.
    connections: Vec<rhythm::Connection>,
    /// Their counters could not be read.
    counters_unknown: bool,
}

/// The connected TCP sockets `pid` holds, by inode, with their peers and
/// counters: each asked through a pidfd when it holds a few sockets, else
/// its socket descriptors looked up in its network namespace's sock_diag
/// dump; where neither can be asked, from `/proc/<pid>/net/tcp*` without
/// counters.
fn tcp_connections(pid: u32, network: &mut Network) -> Held {
    let fds = scan::process::descriptors(pid, true, false);
    if fds.sockets.is_empty() {
        return Held::default();
    }
    // A few sockets are asked one by one (no walk of the namespace's
    // table); many, or where that is refused, from one dump per namespace.
    let own = connections::read_one_by_one(fds.sockets.len(), network.read_one_by_one)
        .then(|| connections::of_process(pid, &fds.socket_fds, &fds.sockets))
        .flatten();
    if own.is_some() {
        network.read_one_by_one += fds.sockets.len();
    }
    let table = match &own {
        Some(own) => Some(own),
        None => network.counters.of(pid),
    };
    if let Some(table) = table {
        return Held {
            connections: (fds.sockets.iter())
                .filter_map(|inode| {
                    let s = table.get(inode)?;
                    Some(rhythm::Connection {
                        inode: *inode,
                        peer: s.peer,
                        counters: s.counters,
                    })
                })
                .collect(),
            counters_unknown: false,
        };
    }
    let Some(table) = network.sockets.sockets_of(pid) else {
        return Held::default();
    };
    let connections: Vec<rhythm::Connection> = (fds.sockets.iter())
        .filter_map(|inode| Some((*inode, table.get(inode)?)))
        .filter(|(_, p)| p.protocol == crate::events::Protocol::Tcp)
        .map(|(inode, p)| rhythm::Connection {
            inode,
            peer: p.addr,
            counters: Default::default(),
        })
        .collect();
    Held {
        counters_unknown: !connections.is_empty(),
        connections,
    }
}

/// Reads the voluntary switches of each of `threads` (of `pid`) that was
/// active (runnable at least a tenth of the time since `history`'s newest
/// sample): the throttled signal needs them only for threads that work, and
/// an idle scope pays nothing for it. Returns whether any thread was, and
/// the process's memory when the main thread's read brought it.
fn read_sleeps_of_active_threads(
    pid: u32,
    threads: &mut [sample::ThreadTimes],
    history: &history::History,
    now: Instant,
) -> (bool, Option<Memory>) {
    let Some((then, before)) = history.latest() else {
        return (false, None);
    };
    let (mut active, mut memory) = (false, None);
    let tenth = now.saturating_duration_since(then).as_nanos() / 10;
    for t in threads.iter_mut() {
        let Ok(i) = before.binary_search_by_key(&t.tid, |b| b.tid) else {
            continue;
        };
        let ns = (t.run_ns + t.wait_ns).saturating_sub(before[i].run_ns + before[i].wait_ns);
        if u128::from(ns) >= tenth {
            active = true;
            let (sleeps, with) = sample::voluntary_switches(pid, t.tid);
            t.sleeps = sleeps;
            memory = memory.or(with);
        }
    }
    (active, memory)
}

/// Samples a scope and judges its processes by behaviour; keeps each
/// process's recent CPU samples between calls.
#[derive(Debug)]
pub struct Detector {
    profile: Arc<str>,
    rules: Vec<BehaviourRule>,
    tracked: HashMap<u32, Tracked>,
    /// Clock ticks a second (`stat`'s CPU times, where schedstat is missing).
    hz: u64,
    /// Where tuning attempts are counted, if given.
    tuning: Option<TuningCounts>,
}

impl Detector {
    /// Validates `profile` and takes its `behaviour` rules (there may be
    /// none: then [`Detector::sample`] finds nothing).
    pub fn new(profile: &Profile) -> Result<Self, Error> {
        Ok(Self::from_valid(&profile.validate()?))
    }

    /// The `behaviour` rules of a validated profile.
    pub fn from_valid(profile: &ValidProfile<'_>) -> Self {
        let p = profile.profile();
        let rules = profile
            .rules()
            .enumerate()
            .filter_map(|(i, (rule, matcher))| match matcher {
                Matcher::Behaviour(m) => Some((i, rule, m)),
                _ => None,
            })
            .map(|(i, rule, m)| BehaviourRule {
                name: rule.name.as_str().into(),
                index: i as u32,
                action: match p.mode {
                    Mode::Audit => Action::Audit,
                    Mode::Enforce => rule.action,
                },
                thresholds: Thresholds::from(m),
            })
            .collect();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Detector {
            profile: p.name.as_str().into(),
            rules,
            tracked: HashMap::new(),
            hz: u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100),
            tuning: None,
        }
    }

    /// Judges with the tuning signal from now on: each busy process's
    /// attempts to tune the host, as the enforcer counts them
    /// ([`Enforcer::tuning_counts`](crate::Enforcer::tuning_counts)). Without
    /// it the signal is reported as not counted and never fires.
    pub fn count_tuning(&mut self, counts: TuningCounts) {
        self.tuning = Some(counts);
    }

    /// Whether tuning attempts are counted ([`Detector::count_tuning`]).
    pub fn counts_tuning(&self) -> bool {
        self.tuning.is_some()
    }

    /// The profile's name.
    pub fn profile(&self) -> &Arc<str> {
        &self.profile
    }

    /// The profile's `behaviour` rules.
    pub fn rules(&self) -> &[BehaviourRule] {
        &self.rules
    }

    /// Processes currently tracked.
    pub fn tracked(&self) -> usize {
        self.tracked.len()
    }

    /// Takes one sample of every process of `cgroups` (absolute, or
    /// relative to the cgroup v2 mount) and their descendants (but for the
    /// `options.exclude` subtrees), and judges each process whose samples
    /// span a rule's window; acts on what is mining unless
    /// `options.dry_run`. The calling process is never judged.
    /// Fails only on a path that is not a cgroup v2 directory.
    pub fn sample(&mut self, cgroups: &[PathBuf], options: &ScanOptions) -> Result<Sample, Error> {
        let mut out = Sample::default();
        if self.rules.is_empty() {
            return Ok(out);
        }
        let mut members = Vec::new();
        for cg in cgroups {
            members.extend(scan::procs::members(cg, &options.exclude)?);
        }
        members.sort_by_key(|m| m.pid);
        members.dedup_by_key(|m| m.pid);
        let keep = (self.rules.iter())
            .map(|r| r.thresholds.longest_window())
            .max()
            .unwrap_or_default();
        let me = std::process::id();
        let now = Instant::now();
        // Socket tables and counters, read once per network namespace in
        // this sample.
        let mut network = Network::default();
        let mut kept = HashMap::with_capacity(members.len());
        for m in members.iter().filter(|m| m.pid != me) {
            let Some(mut cpu) = sample::cpu_times(m.pid, self.hz) else {
                continue;
            };
            let mut t = self.tracked.remove(&m.pid).unwrap_or_default();
            if t.start_time != cpu.start_time {
                // A new process (or a reused pid): start over.
                t = Tracked {
                    start_time: cpu.start_time,
                    ..Tracked::default()
                };
            }
            out.processes += 1;
            let (active, memory) =
                read_sleeps_of_active_threads(m.pid, &mut cpu.threads, &t.history, now);
            // An active process's connections are followed from the start,
            // so that one is long-lived by the time its CPU use is judged.
            let held = (active && !t.reported).then(|| tcp_connections(m.pid, &mut network));
            if let Some(h) = held.as_ref().filter(|h| !h.counters_unknown) {
                t.connections.observe(now, &h.connections);
            }
            t.history.push(now, cpu.threads, keep);
            if !t.reported {
                let process = Seen {
                    member: m,
                    comm: &cpu.comm,
                    tracked: &mut t,
                    held,
                    memory,
                };
                if let Some(d) =
                    self.judge(process, now, options, &mut network, &mut out.observations)
                {
                    t.reported = true;
                    out.detections.push(d);
                }
            }
            kept.insert(m.pid, t);
        }
        // Processes that left the scope or exited are forgotten.
        self.tracked = kept;
        Ok(out)
    }

    /// The detection for a process, if a rule finds it mining; acted on.
    fn judge(
        &self,
        seen: Seen<'_>,
        now: Instant,
        options: &ScanOptions,
        network: &mut Network,
        observed: &mut Vec<Observation>,
    ) -> Option<Detection> {
        let Seen {
            member: m,
            comm,
            tracked: t,
            mut held,
            mut memory,
        } = seen;
        let mut decided: Option<(&BehaviourRule, Signals, Verdict)> = None;
        let mut tuning: Option<TuningSignal> = None;
        for rule in &self.rules {
            let th = &rule.thresholds;
            let Some(cpu) = t.history.cpu(th.window, th.busy_percent) else {
                continue;
            };
            let throttled = (th.throttled_percent > 0)
                .then(|| {
                    (t.history).throttled(
                        th.throttled_window,
                        th.throttled_percent,
                        th.throttled_max_sleeps,
                    )
                })
                .flatten()
                .unwrap_or_default();
            // Memory and sockets are read only for a process whose CPU use
            // fits (sockets are also read for one that was active).
            let busy = cpu.busy_threads.max(throttled.threads) >= th.busy_threads;
            let mem = match busy {
                true => *memory.get_or_insert_with(|| sample::memory(m.pid).unwrap_or_default()),
                false => Memory::default(),
            };
            if busy && held.is_none() {
                // Busy by the throttled window while stopped all along the
                // last interval.
                held = Some(tcp_connections(m.pid, network));
            }
            let none = Held::default();
            let held = match busy {
                true => held.as_ref().unwrap_or(&none),
                false => &none,
            };
            let conns = &held.connections;
            // Unknown counters are not remembered as a connection's first.
            let rhythm = match (busy, held.counters_unknown) {
                (true, false) => (t.connections).judge(
                    now,
                    conns,
                    th.window,
                    th.rhythm_max_bytes_per_sec.into(),
                    th.rhythm_max_quiet,
                ),
                (true, true) => RhythmSignal {
                    unknown: true,
                    ..RhythmSignal::default()
                },
                (false, _) => RhythmSignal::default(),
            };
            // Read, like memory, only for a process whose CPU use fits.
            let tuning = match (busy && th.count_tuning, &self.tuning) {
                (true, Some(counts)) => {
                    *tuning.get_or_insert_with(|| counts.of(m.pid, t.start_time, self.hz))
                }
                _ => TuningSignal::default(),
            };
            let signals = Signals {
                cpu,
                throttled,
                memory: mem,
                tcp_connections: conns.len() as u32,
                peer: conns.first().map(|c| c.peer),
                rhythm,
                tuning,
            };
            let verdict = Verdict::judge(&signals, th);
            observed.push(Observation {
                pid: m.pid,
                comm: comm.to_string(),
                rule: rule.name.clone(),
                signals,
                verdict,
            });
            let stronger = decided
                .as_ref()
                .map_or(true, |(d, _, _)| rule.action > d.action);
            if verdict.mining() && stronger {
                decided = Some((rule, signals, verdict));
            }
        }
        let (rule, mut signals, verdict) = decided?;
        signals.memory.anon_huge_kib = sample::anon_huge_kib(m.pid);
        // Read the rest only now; the start time guards against pid reuse.
        let p = scan::process::read(m.pid, crate::compile::limits::MAX_CMDLINE_ARGV_BYTES)
            .filter(|p| p.start_time == t.start_time)?;
        let outcome = scan::act(&p, &m.cgroup, rule.action, options);
        Some(Detection {
            time: SystemTime::now(),
            process: scan::describe(&p, &m.cgroup),
            rule: rule.clone(),
            signals,
            verdict,
            outcome,
        })
    }
}
