//! The [`Enforcer`]: loads a backend once, applies compiled profiles to
//! scopes (cgroup v2 subtrees, or the host), and streams what it enforced.

mod instance;

pub use self::instance::Settled;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use crossbeam_channel::Receiver;

use crate::{
    backend::{
        checks::Checks,
        maps::{MAX_SCOPES, MAX_SCOPE_DEPTH},
        BackendChoice, BackendKind, Kernel, RefusedSockets, SocketWork,
    },
    cgroup::CgroupRef,
    compile::{KernelPolicy, RuleKind},
    error::{Error, LoadError, Result, ScopeError},
    events::{
        poller::{Decoder, Poller},
        registry::Registry,
        Drops, Event,
    },
    probe::ProbeReport,
    profile::{Action, MatcherKind, Profile, ValidProfile},
};

/// Where a profile applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every task on the host (the cgroup v2 root).
    Host,
    /// A cgroup v2 subtree: the cgroup and every descendant, including ones
    /// created later. Absolute, or relative to the cgroup v2 mount.
    Cgroup(PathBuf),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Host => f.write_str("host"),
            Scope::Cgroup(p) => write!(f, "cgroup {}", p.display()),
        }
    }
}

/// Names one applied profile; pass it to [`Enforcer::update`] and
/// [`Enforcer::remove`]. Ids are unique across every enforcer of the
/// process, so a handle given to the wrong enforcer is refused, never
/// mistaken for one of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyHandle(u64);

impl PolicyHandle {
    /// A number unique within this process.
    pub fn id(self) -> u64 {
        self.0
    }

    /// The handle with this id (for bindings that pass ids around); an id
    /// the enforcer does not know is refused by its methods.
    pub fn from_id(id: u64) -> Self {
        PolicyHandle(id)
    }
}

static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

/// How to build an [`Enforcer`].
#[derive(Debug, Clone)]
pub struct EnforcerOptions {
    /// Which backend to load.
    pub backend: BackendChoice,
    /// Capacity of the event channel; events beyond it are dropped (counted).
    pub event_capacity: usize,
    /// Refuse profiles with rules the backend cannot enforce (by default
    /// they are applied as nothing and listed by [`Enforcer::unenforced`]).
    pub require_all_rules: bool,
    /// Use the `syscalls/sys_enter_*` tracepoints: the cgroup backend's
    /// loader-exec check (`mmap`/`mprotect`/`pkey_mprotect`) and the TCP
    /// Fast Open check (`sendto`/`sendmsg`, attached once a stratum rule is
    /// applied). While any syscall tracepoint is attached the kernel sends
    /// every syscall of every task through its tracing slow path (measured
    /// in BENCHMARKS.md: +2.3 % on execve, ≈80 ns more per send()); `false`
    /// trades those two checks for it ([`Enforcer::loader_exec`] and
    /// [`Enforcer::fast_open`] then say so).
    pub syscall_tracepoints: bool,
    /// Sockets the cgroup backend's Stratum tracking follows at once (the
    /// sockhash the `sk_msg` verdict reads; a socket leaves it when its
    /// stream is judged or it closes). When they are all taken, new TCP
    /// connections of scopes with a stratum rule are refused (EPERM, event
    /// signature `untracked-refused`) rather than let through unjudged.
    /// The sockhash has room for 1024 more, for sockets found at apply and
    /// accepted ones ([`Enforcer::untracked_sockets`] counts accepted sockets
    /// past even that). Unused where the lsm hook judges every send.
    pub stratum_sockets: u32,
    /// What judges Stratum on the cgroup backend (the lsm backend judges
    /// in its own hooks whatever this says).
    pub cgroup_stratum_judge: CgroupStratumJudge,
    /// Pin the enforcement as this instance (`/sys/fs/bpf/minerguard/NAME`):
    /// it stays in force when the enforcer is dropped or its process dies,
    /// SIGKILL included, until [`Enforcer::detach`] or
    /// [`pin::remove`](crate::pin::remove). An enforcer opened with the name
    /// of an existing instance adopts it: the same maps (policy, scopes,
    /// the events nobody read), the same links where the programs are the
    /// same; a scope applied again keeps its policy when the profile
    /// compiles to the same entries and swaps atomically otherwise.
    /// `None` (the default): nothing is pinned, and dropping the enforcer
    /// ends its enforcement.
    pub instance: Option<String>,
}

/// What judges Stratum on the cgroup backend
/// ([`EnforcerOptions::cgroup_stratum_judge`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CgroupStratumJudge {
    /// sockops puts each connected socket of a stratum scope into a
    /// sockhash, and an sk_msg verdict reads its sends: the send that
    /// completes a mining method fails (EACCES). Each connection pays for
    /// the tracking, whether it sends or not (BENCHMARKS.md). The judge of
    /// earlier releases, kept for kernels where the egress judge's socket
    /// destroy is missing (no `CONFIG_INET_DIAG_DESTROY`). It leaves two
    /// ways open that the egress judge closes (docs/threat-model.md): a
    /// send made while its socket is still connecting is already inside
    /// `tcp_sendmsg` when sockops moves the socket to the verdict, so
    /// nothing reads it; and accepted sockets past the tracking limit send
    /// unjudged (counted, [`Enforcer::untracked_sockets`]). The CLI warns
    /// when it is chosen.
    SkMsg,
    /// A `cgroup_skb/egress` program reads what each socket of a stratum
    /// scope sends, from the packets leaving it (#25): no socket tracking
    /// and no socket limit, sockets connected before apply and accepted
    /// ones judged alike, Fast Open SYNs read like other packets. The
    /// packet that completes a mining method is dropped, and every later
    /// one of its socket, so the peer never gets the method. The refused
    /// socket is then destroyed from userspace (sock_diag's `SOCK_DESTROY`,
    /// from the socket's network namespace, within a poll of the event):
    /// its queued bytes are dropped, the peer is reset, and the sender's
    /// next call fails with `ECONNABORTED` (the send of the method itself
    /// succeeds). Refused sockets are destroyed before the judge is
    /// detached, so nothing they queued leaves afterwards
    /// ([`Enforcer::destroyed_sockets`] counts them).
    ///
    /// A packet may leave from another task than its sender, so the
    /// kernel's event names no process: the event thread names the process
    /// of the socket's cgroup that holds the refused socket (found through
    /// sock_diag and /proc before the socket is destroyed), and carries out
    /// `kill` on it.
    ///
    /// The default (#25): it costs a connection-per-request service about
    /// half of what the sk_msg judge does (BENCHMARKS.md). The judge's
    /// socket state and its queue of refused sockets are pinned with an
    /// instance, so a restarted instance reads on where the last one
    /// stopped. A kernel without `CONFIG_INET_DIAG_DESTROY` leaves refused
    /// sockets to the judge's drops (counted in
    /// [`Enforcer::destroyed_sockets`]). The lsm backend does not use it.
    #[default]
    Egress,
}

impl std::str::FromStr for CgroupStratumJudge {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sk-msg" => Ok(CgroupStratumJudge::SkMsg),
            "egress" => Ok(CgroupStratumJudge::Egress),
            other => Err(format!(
                "unknown Stratum judge `{other}` (expected sk-msg or egress)"
            )),
        }
    }
}

impl Default for EnforcerOptions {
    fn default() -> Self {
        EnforcerOptions {
            backend: BackendChoice::Auto,
            event_capacity: 65_536,
            require_all_rules: false,
            syscall_tracepoints: true,
            stratum_sockets: 65_536,
            cgroup_stratum_judge: CgroupStratumJudge::default(),
            instance: None,
        }
    }
}

struct Applied {
    scope: Scope,
    cgroup: CgroupRef,
    policy_id: u32,
    policy: KernelPolicy,
    /// Kept to re-resolve `connect.domains` on refresh; `None` when the
    /// profile has none (a copy of 10,000 rules costs 1 ms of an apply).
    profile: Option<ValidProfile<'static>>,
    /// Domains that resolved to nothing at the last apply/update/refresh.
    unresolved: Vec<String>,
    /// The cgroup was removed (seen by `follow_cgroups`); the scope waits
    /// for a cgroup at the same path.
    gone: bool,
    /// When its policy was applied (Unix seconds).
    since: u64,
    /// What a pinned instance records of it (`None` when not pinned).
    record: Option<instance::Recorded>,
}

/// The copy of `profile` a scope keeps to re-resolve its domains, if it
/// has any.
fn kept_for_refresh(policy: &KernelPolicy, profile: &Profile) -> Option<ValidProfile<'static>> {
    // Only called once `policy` compiled from `profile`: it is valid.
    (!policy.domains.is_empty()).then(|| ValidProfile::checked(profile.clone()))
}

/// A rule the backend does not enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnenforcedRule {
    /// Rule name.
    pub rule: Arc<str>,
    /// Its matcher.
    pub matcher: MatcherKind,
}

/// What became of a cgroup scope's directory since it was applied
/// ([`Enforcer::follow_cgroups`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeChange {
    /// The cgroup was removed: nothing can run in it any more. The scope
    /// stays, and applies again to a cgroup created at the same path.
    Gone {
        /// The scope.
        handle: PolicyHandle,
        /// Its cgroup path.
        path: PathBuf,
    },
    /// A new cgroup at the scope's path (a restarted container): the
    /// scope's profile now applies to it.
    Recreated {
        /// The scope.
        handle: PolicyHandle,
        /// Its cgroup path.
        path: PathBuf,
    },
}

/// Loads the BPF programs (the optional ones with the first profile that
/// needs them) and enforces profiles on scopes.
///
/// Dropping it removes every scope and detaches every program.
pub struct Enforcer {
    // Field order is drop order: stop the poller before the maps go away.
    poller: Poller,
    applied: BTreeMap<PolicyHandle, Applied>,
    registry: Arc<Registry>,
    kernel: Kernel,
    probe: ProbeReport,
    require_all_rules: bool,
    next_policy_id: u32,
    /// Scopes a pinned instance enforced before this enforcer opened it,
    /// not applied again yet (by scope name).
    pending: BTreeMap<String, crate::pin::ScopeRecord>,
    /// The instance was removed ([`Enforcer::detach`]): nothing to record.
    released: bool,
    /// Why recording the instance's state failed last, if it did.
    state_error: std::sync::Mutex<Option<String>>,
    /// The egress Stratum judge's refused sockets, once it is loaded:
    /// destroyed here too before any detach (see `sync_coverage`).
    refused: Option<Arc<RefusedSockets>>,
}

/// What [`Enforcer::start`] made.
struct Started {
    kernel: Kernel,
    registry: Arc<Registry>,
    pending: BTreeMap<String, crate::pin::ScopeRecord>,
    next_policy_id: u32,
    poller: Poller,
}

impl Enforcer {
    /// Probes the kernel and loads the chosen backend with default options.
    pub fn new() -> Result<Self> {
        Self::with_options(EnforcerOptions::default())
    }

    /// Probes the kernel and loads the backend `options` asks for.
    pub fn with_options(options: EnforcerOptions) -> Result<Self> {
        // A bad instance name is refused before the kernel is touched.
        if let Some(name) = options.instance.as_deref() {
            if !crate::pin::valid_name(name) {
                return Err(crate::pin::PinError::BadName(name.to_string()).into());
            }
        }
        let report = crate::backend::probe::probe_for_enforcer();
        let euid = report.euid;
        let kind = match options.backend {
            BackendChoice::Cgroup => BackendKind::Cgroup,
            BackendChoice::Lsm => BackendKind::Lsm,
            BackendChoice::Auto => report.backend.ok_or_else(|| LoadError::Unsupported {
                what: "every backend".into(),
                fix: report.missing().join("; "),
            })?,
        };
        if kind == BackendKind::Lsm && !report.bpf_lsm.available {
            return Err(LoadError::Unsupported {
                what: "the lsm backend".into(),
                fix: report.bpf_lsm.detail.clone(),
            }
            .into());
        }
        // A new instance that fails to start leaves nothing pinned behind
        // (an instance that existed keeps enforcing: its restart failed).
        let fresh = options
            .instance
            .as_deref()
            .is_some_and(|name| !crate::pin::exists(name));
        let pins = options
            .instance
            .as_deref()
            .map(crate::pin::PinDir::open)
            .transpose()?;
        let started = Self::start(&options, kind, &report, pins.clone());
        let Started {
            kernel,
            registry,
            pending,
            next_policy_id,
            poller,
        } = match started {
            Ok(parts) => parts,
            Err(e) => {
                if let (true, Some(pins)) = (fresh, pins) {
                    let _ = pins.release_all();
                }
                return Err(privileged(e, euid));
            }
        };
        Ok(Enforcer {
            poller,
            applied: BTreeMap::new(),
            registry,
            kernel,
            probe: report,
            require_all_rules: options.require_all_rules,
            next_policy_id,
            pending,
            released: false,
            state_error: Default::default(),
            refused: None,
        })
    }

    /// Loads the kernel side and starts the event thread: what
    /// [`Enforcer::with_options`] rolls back for a new instance when it fails.
    fn start(
        options: &EnforcerOptions,
        kind: BackendKind,
        report: &ProbeReport,
        pins: Option<Arc<crate::pin::PinDir>>,
    ) -> Result<Started> {
        let kernel = Kernel::load(
            kind,
            report,
            options.syscall_tracepoints,
            options.stratum_sockets,
            options.cgroup_stratum_judge,
            pins,
        )?;
        let registry = Arc::new(Registry::default());
        // The rules of adopted policies are named before the poller reads
        // the events the pinned ring buffer kept.
        let (pending, next_policy_id) = instance::pending_scopes(&kernel, &registry)?;
        let poller = Poller::start(
            kernel.maps().events_handle()?,
            Decoder::new(registry.clone()),
            options.event_capacity,
            [RuleKind::Connect, RuleKind::Stratum, RuleKind::Open]
                .into_iter()
                .filter(|k| !kernel.kills_in_kernel(*k))
                .collect(),
        )?;
        Ok(Started {
            kernel,
            registry,
            pending,
            next_policy_id,
            poller,
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> BackendKind {
        self.kernel.kind()
    }

    /// What the probe found when this enforcer started.
    pub fn probe_report(&self) -> &ProbeReport {
        &self.probe
    }

    /// What the kernel actually does, with this backend, for a rule of
    /// `kind` that asks for `requested`.
    pub fn effective_action(&self, kind: RuleKind, requested: Action) -> Action {
        self.kernel.kind().effective(kind, requested)
    }

    /// Enforces `profile` on `scope`.
    ///
    /// Transactional: the policy is fully written before the scope points at
    /// it; on any error nothing of it remains and other scopes are untouched.
    /// The first apply or update whose profile needs an optional hook
    /// (Stratum, cmdline, loader exec) loads it first: that call takes the
    /// hook's verification time (about a second for `default`), and the
    /// hook stays loaded, inert, even if the call then fails.
    pub fn apply(&mut self, profile: &Profile, scope: Scope) -> Result<PolicyHandle> {
        let policy = KernelPolicy::compile(profile)?;
        self.apply_compiled(policy, profile, scope)
    }

    /// [`Enforcer::apply`] of a profile validated already (not validated
    /// again).
    pub fn apply_valid(
        &mut self,
        profile: &ValidProfile<'_>,
        scope: Scope,
    ) -> Result<PolicyHandle> {
        let policy = KernelPolicy::from_valid(profile)?;
        self.apply_compiled(policy, profile, scope)
    }

    fn apply_compiled(
        &mut self,
        policy: KernelPolicy,
        profile: &Profile,
        scope: Scope,
    ) -> Result<PolicyHandle> {
        let (policy, unresolved) = self.resolve(policy)?;
        let cgroup = match &scope {
            Scope::Host => CgroupRef::root(),
            Scope::Cgroup(path) => CgroupRef::open(path),
        }
        .map_err(|e| crate::cgroup_failure(|| format!("attaching to {scope}"), e))?;
        if cgroup.level() >= MAX_SCOPE_DEPTH {
            return Err(ScopeError::TooDeep {
                path: cgroup.path().to_path_buf(),
                level: cgroup.level(),
                max: MAX_SCOPE_DEPTH,
            }
            .into());
        }
        if let Some(record) = self.pending.remove(&instance::scope_name(&scope, &cgroup)) {
            return self.adopt(record, policy, unresolved, profile, scope, cgroup);
        }
        if let Some((handle, _)) = self.applied.iter().find(|(_, a)| a.cgroup == cgroup) {
            return Err(ScopeError::AlreadyApplied {
                scope: scope.to_string(),
                handle: handle.0,
            }
            .into());
        }
        if self.applied.len() >= MAX_SCOPES {
            return Err(ScopeError::Capacity {
                what: "scopes",
                max: MAX_SCOPES,
            }
            .into());
        }

        let policy_id = self.install(&policy, &cgroup)?;
        // exec.no_new_exec counts from this apply.
        self.kernel.maps().clear_exec_started(cgroup.id());
        let handle = PolicyHandle(NEXT_HANDLE.fetch_add(1, Ordering::Relaxed));
        self.applied.insert(
            handle,
            Applied {
                scope,
                cgroup: cgroup.clone(),
                policy_id,
                profile: kept_for_refresh(&policy, profile),
                record: self.record_of(&policy, profile),
                policy,
                unresolved,
                gone: false,
                since: crate::pin::now(),
            },
        );
        let switched = self
            .scopes_changing()
            .and_then(|()| self.sync_coverage())
            .and_then(|()| self.seed_scope(handle))
            .and_then(|()| {
                let applied = &self.applied[&handle];
                Ok(self
                    .kernel
                    .maps()
                    .set_scope(cgroup.id(), policy_id, &applied.policy)?)
            })
            .and_then(|()| self.sync_levels());
        if let Err(e) = switched {
            // Undo in reverse; every step tolerates what never happened.
            let applied = self.applied.remove(&handle).expect("inserted above");
            let _ = self.scopes_changing();
            let _ = self.kernel.maps().clear_scope(cgroup.id());
            let _ = self.sync_coverage();
            let _ = self.sync_levels();
            self.uninstall(applied.policy_id, &applied.policy, false);
            return Err(e);
        }
        self.save_state();
        Ok(handle)
    }

    /// Replaces the profile of an applied scope atomically: the new entries
    /// are written first, then the scope switches to them in one map update.
    pub fn update(&mut self, handle: PolicyHandle, profile: &Profile) -> Result<()> {
        let policy = KernelPolicy::compile(profile)?;
        self.update_compiled(handle, policy, profile)
    }

    /// [`Enforcer::update`] with a profile validated already (not
    /// validated again).
    pub fn update_valid(&mut self, handle: PolicyHandle, profile: &ValidProfile<'_>) -> Result<()> {
        let policy = KernelPolicy::from_valid(profile)?;
        self.update_compiled(handle, policy, profile)
    }

    fn update_compiled(
        &mut self,
        handle: PolicyHandle,
        policy: KernelPolicy,
        profile: &Profile,
    ) -> Result<()> {
        let (policy, unresolved) = self.resolve(policy)?;
        let cgroup = self.get(handle)?.cgroup.clone();
        let new_id = self.install(&policy, &cgroup)?;
        // Before the switch, so the new policy is whole from its start.
        let hooks = if policy.stratum.is_some() {
            self.sync_stratum_coverage(Some(&cgroup))
        } else {
            Ok(())
        }
        .and_then(|()| self.kernel.policy_in_use(&policy))
        .and_then(|()| {
            if policy.escape.is_some() {
                self.kernel.seed_scope(&cgroup)?;
            }
            Ok(())
        });
        if let Err(e) =
            hooks.and_then(|()| Ok(self.kernel.maps().set_scope(cgroup.id(), new_id, &policy)?))
        {
            self.uninstall(new_id, &policy, false);
            return Err(e);
        }
        let record = self.record_of(&policy, profile);
        let applied = self.applied.get_mut(&handle).expect("checked above");
        let old_id = std::mem::replace(&mut applied.policy_id, new_id);
        let old = std::mem::replace(&mut applied.policy, policy);
        applied.profile = kept_for_refresh(&applied.policy, profile);
        applied.unresolved = unresolved;
        applied.record = record;
        applied.since = crate::pin::now();
        self.uninstall(old_id, &old, true);
        // A stratum rule gone: its socket tracking goes too (only
        // detaches, so it cannot fail halfway).
        let _ = self.sync_stratum_coverage(None);
        self.save_state();
        Ok(())
    }

    /// Stops enforcing on the handle's scope and frees its kernel entries.
    pub fn remove(&mut self, handle: PolicyHandle) -> Result<()> {
        let applied = self
            .applied
            .remove(&handle)
            .ok_or(ScopeError::UnknownHandle(handle.0))?;
        let changing = self.scopes_changing();
        let maps = self.kernel.maps();
        let cleared = maps.clear_scope(applied.cgroup.id());
        maps.clear_exec_started(applied.cgroup.id());
        let coverage = self.sync_coverage();
        let levels = self.sync_levels();
        self.uninstall(applied.policy_id, &applied.policy, true);
        self.save_state();
        changing?;
        cleared?;
        coverage?;
        levels
    }

    /// The status of every optional check, as data: loaded, not loaded
    /// yet (and what loads it), not needed (and what covers it instead),
    /// or off (and why). The getters below give the same as text.
    pub fn checks(&self) -> Checks {
        Checks {
            loader_exec: self.kernel.loader_exec(),
            fast_open: self.kernel.fast_open(),
            lsm_stratum: self.kernel.stratum_in_lsm(),
            stratum_sk_msg: self.kernel.stratum_sk_msg(),
            stratum_backstop: self.kernel.stratum_backstop(),
            tuning: self.kernel.tuning(),
        }
    }

    /// Whether a task leaving its scope (`scope.escape`) is stopped;
    /// otherwise why not. Loaded with the first profile that has the rule.
    /// On the lsm backend a move or clone is refused before it happens
    /// (`Ok(None)`); on the cgroup backend a clone into another cgroup is
    /// stopped before the child exists and a `cgroup.procs` move kills the
    /// mover right after it, and where the lsm part or the clone
    /// tracepoint could not load, escapes are killed after the fact:
    /// `Ok(Some(what))`.
    pub fn scope_guard(&self) -> std::result::Result<Option<String>, String> {
        let (status, note) = self.kernel.scope_guard();
        status.as_result().map(|()| note)
    }

    /// Whether opens for writing of the files a miner writes to tune the
    /// host (`nr_hugepages`, the MSR devices, the msr module's
    /// `allow_writes`, `nmi_watchdog`) are counted for the behaviour
    /// detector's tuning signal; otherwise why not. The counter is loaded
    /// with the first profile whose `behaviour` rule counts tuning (before this
    /// says so) and needs the syscall tracepoints.
    pub fn tuning(&self) -> std::result::Result<(), String> {
        self.kernel.tuning().as_result()
    }

    /// What a [`Detector`](crate::behaviour::Detector) reads the tuning
    /// signal from ([`Detector::count_tuning`](crate::behaviour::Detector::count_tuning)):
    /// `None` until a profile with a `behaviour` rule loaded the counter,
    /// or where it is off ([`Enforcer::tuning`] says why). Cheap to call
    /// (one shared handle); it outlives the enforcer (the counts then stop).
    pub fn tuning_counts(&self) -> Option<crate::behaviour::TuningCounts> {
        self.kernel.tuning_counts()
    }

    /// Whether executable mappings of files an exec rule refuses are judged
    /// too (loader exec: `ld.so ./xmrig` maps the miner without exec'ing
    /// it); otherwise why not. On the cgroup backend the syscall
    /// tracepoints doing it are loaded and attached with the first policy
    /// whose exec rules judge files (before that this says so); a refused
    /// load or failed attach turns this into the reason.
    pub fn loader_exec(&self) -> std::result::Result<(), String> {
        self.kernel.loader_exec().as_result()
    }

    /// Whether the first bytes of a TCP Fast Open send (carried in the SYN,
    /// before the socket's sends are inspected) are judged by `stratum`
    /// rules; otherwise why not. What judges them is loaded with the first
    /// profile that has a stratum rule: ask after applying one.
    pub fn fast_open(&self) -> std::result::Result<(), String> {
        self.kernel.fast_open().as_result()
    }

    /// Whether the lsm backend's sleepable socket_sendmsg hook judges
    /// Stratum payloads (a refused send fails with EPERM, before anything is
    /// queued); otherwise why not (the sk_msg program judges them: EACCES).
    /// The hook is loaded and attached with the first policy that has a
    /// stratum rule (before that this says so: ask after applying one); a
    /// refused load or failed attach turns this into the reason.
    pub fn lsm_stratum(&self) -> std::result::Result<(), String> {
        self.kernel.stratum_in_lsm().as_result()
    }

    /// Whether the sk_msg program judges Stratum sends, with sockops putting
    /// each new client socket of a scope that has a stratum rule into its
    /// sockhash (about 1.2 µs per connection; BENCHMARKS.md); otherwise why
    /// not. The cgroup backend uses it with
    /// [`CgroupStratumJudge::SkMsg`]. The lsm backend uses it only where its
    /// socket_sendmsg hook could not be attached: the egress judge behind
    /// that hook reads the sends that bypass it (sendfile and splice before
    /// Linux 6.5), and this says so. Settled with the first profile that
    /// has a stratum rule (before that this says so: ask after applying
    /// one).
    pub fn stratum_sk_msg(&self) -> std::result::Result<(), String> {
        self.kernel.stratum_sk_msg().as_result()
    }

    /// Whether the egress judge stands behind the lsm backend's
    /// socket_sendmsg hook, reading what the kernel copied and sends: the
    /// hook reads the caller's buffer before the kernel copies it, and
    /// another thread may rewrite it in between while the kernel waits
    /// (for the socket's lock, for a faulting page). Its refusals drop the
    /// packet and destroy the socket, as the cgroup backend's egress judge
    /// does. It also reads the sends that bypass the hook (sendfile and
    /// splice before Linux 6.5), and there reports audited scopes in the
    /// hook's place. Otherwise why not: not needed where the sk_msg verdict
    /// or the egress judge reads the kernel's copy itself. Loaded with the
    /// first profile that has a stratum rule (ask after applying one).
    pub fn stratum_backstop(&self) -> std::result::Result<(), String> {
        self.kernel.stratum_backstop().as_result()
    }

    /// The errno a send refused by a `stratum` rule fails with: `EPERM`
    /// where the lsm backend's socket_sendmsg hook judges Stratum, `EACCES`
    /// where the sk_msg program does ([`CgroupStratumJudge::SkMsg`]). With
    /// the egress judge ([`CgroupStratumJudge::Egress`]) the refused send
    /// itself succeeds and the socket is destroyed: the sender's next call
    /// fails with `ECONNABORTED`, as a send that bypasses the lsm hook does
    /// there (sendfile on kernels before 6.5, read by the egress judge
    /// behind the hook; [`Enforcer::stratum_backstop`]). Follows
    /// [`Enforcer::lsm_stratum`]: final once a profile with a stratum rule
    /// is applied.
    pub fn stratum_errno(&self) -> i32 {
        // The lsm hook refuses before the egress judge behind it sees a
        // byte.
        if self.kernel.stratum_in_lsm().is_active() {
            libc::EPERM
        } else if self.refused.is_some() {
            libc::ECONNABORTED
        } else {
            libc::EACCES
        }
    }

    /// Checks the event path: the kernel writes `count` audit events for
    /// the handle's first rule into the ring buffer, as if it had matched
    /// (exec events naming `minerguard-self-test`, whatever the rule's
    /// kind), and they reach [`Enforcer::events`] like any other. Returns
    /// how many the ring buffer took (it holds about 3,000 undelivered
    /// events; the rest of a larger burst is dropped and counted in
    /// [`Enforcer::drops`]). Nothing is enforced or refused by it.
    pub fn self_test_events(&self, handle: PolicyHandle, count: u32) -> Result<u32> {
        let applied = self.get(handle)?;
        self.kernel.self_test(applied.policy_id, 0, count)
    }

    /// Rules of the handle's profile that this backend does not enforce.
    pub fn unenforced(&self, handle: PolicyHandle) -> Result<Vec<UnenforcedRule>> {
        Ok(self.unenforced_in(&self.get(handle)?.policy))
    }

    fn unenforced_in(&self, policy: &KernelPolicy) -> Vec<UnenforcedRule> {
        policy
            .rules
            .iter()
            .filter(|r| !self.kernel.supports(r.matcher))
            .map(|r| UnenforcedRule {
                rule: r.name.clone(),
                matcher: r.matcher,
            })
            .collect()
    }

    /// Domains of the handle's profile that resolved to no address at the
    /// last apply, update or refresh (not enforced until they resolve).
    pub fn unresolved_domains(&self, handle: PolicyHandle) -> Result<&[String]> {
        Ok(&self.get(handle)?.unresolved)
    }

    /// Re-resolves `connect.domains` of every applied profile and, where the
    /// addresses changed, swaps the new policy in (atomically, as
    /// [`Enforcer::update`]). Call it on a schedule (`enforcer watch` does,
    /// every 5 minutes). Returns how many scopes changed.
    pub fn refresh_domains(&mut self) -> Result<usize> {
        let mut changed = 0;
        for handle in self.handles() {
            let Some(profile) = self.applied[&handle].profile.clone() else {
                continue;
            };
            let (fresh, _) = self.resolve(KernelPolicy::from_valid(&profile)?)?;
            if fresh.domain_addresses != self.applied[&handle].policy.domain_addresses {
                self.update_valid(handle, &profile)?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Follows every cgroup scope by its path: a cgroup that was removed is
    /// reported once as [`ScopeChange::Gone`]; a cgroup found at the path
    /// in place of the one the scope was applied to (removed and created
    /// again, as a restarted container's is) gets the scope's profile, and
    /// is reported as [`ScopeChange::Recreated`]. Call it often (`minerguard
    /// watch` does every 100 ms): a new cgroup is unprotected until then,
    /// unless a scope on an ancestor covers it. The handle stays valid
    /// throughout; on error, scopes already moved stay moved and the rest
    /// stay as they were.
    pub fn follow_cgroups(&mut self) -> Result<Vec<ScopeChange>> {
        let mut changes = Vec::new();
        for handle in self.handles() {
            let applied = &self.applied[&handle];
            let Scope::Cgroup(path) = &applied.scope else {
                continue;
            };
            let path = path.clone();
            match CgroupRef::open(&path) {
                Ok(now) if now.id() == applied.cgroup.id() => {}
                Ok(now) => {
                    self.move_scope(handle, now)?;
                    changes.push(ScopeChange::Recreated { handle, path });
                }
                Err(_) if applied.gone => {}
                Err(_) => {
                    self.applied.get_mut(&handle).expect("listed").gone = true;
                    changes.push(ScopeChange::Gone { handle, path });
                }
            }
        }
        Ok(changes)
    }

    /// Points the handle's scope at `cgroup` (its path's new cgroup): the
    /// new cgroup's entry first, then coverage, then the old entry goes.
    fn move_scope(&mut self, handle: PolicyHandle, cgroup: CgroupRef) -> Result<()> {
        let applied = &self.applied[&handle];
        let old = applied.cgroup.clone();
        // exec.no_new_exec counts from the new cgroup's first exec.
        self.kernel.maps().clear_exec_started(cgroup.id());
        self.scopes_changing()?;
        self.kernel
            .maps()
            .set_scope(cgroup.id(), applied.policy_id, &applied.policy)?;
        let entry = self.applied.get_mut(&handle).expect("listed");
        entry.cgroup = cgroup.clone();
        entry.gone = false;
        if let Err(e) = self.sync_coverage().and_then(|()| self.sync_levels()) {
            let entry = self.applied.get_mut(&handle).expect("listed");
            entry.cgroup = old;
            let _ = self.kernel.maps().clear_scope(cgroup.id());
            let _ = self.sync_coverage();
            let _ = self.sync_levels();
            return Err(e);
        }
        let _ = self.kernel.maps().clear_scope(old.id());
        self.kernel.maps().clear_exec_started(old.id());
        self.save_state();
        Ok(())
    }

    /// Resolves a compiled policy's files and domains, refusing
    /// unenforceable rules when asked to. Also returns the domains that did
    /// not resolve. Loads the optional hooks the policy needs first (see
    /// `Backend::prepare`), so what it reports as not enforced is final.
    fn resolve(&mut self, mut policy: KernelPolicy) -> Result<(KernelPolicy, Vec<String>)> {
        policy.resolve_inodes()?;
        for work in self.kernel.prepare(&policy)? {
            if let SocketWork::Destroy(refused) = &work {
                self.refused = Some(refused.clone());
            }
            self.poller.take_socket_work(work);
        }
        let unresolved = policy.resolve_domains().unresolved;
        let gaps = self.unenforced_in(&policy);
        if self.require_all_rules && !gaps.is_empty() {
            return Err(ScopeError::Unenforceable {
                backend: self.kernel.kind().to_string(),
                rules: gaps
                    .iter()
                    .map(|g| format!("`{}` ({})", g.rule, g.matcher))
                    .collect(),
            }
            .into());
        }
        Ok((policy, unresolved))
    }

    /// The scope a handle applies to.
    pub fn scope(&self, handle: PolicyHandle) -> Result<&Scope> {
        Ok(&self.get(handle)?.scope)
    }

    /// Handles of every applied profile.
    pub fn handles(&self) -> Vec<PolicyHandle> {
        self.applied.keys().copied().collect()
    }

    /// The event stream. Every receiver shares one queue: clone it for
    /// several consumers of the same stream, not for copies of it.
    pub fn events(&self) -> Receiver<Event> {
        self.poller.receiver()
    }

    /// Waits (at most `timeout`) until every event the kernel recorded
    /// before this call is in the [`Enforcer::events`] channel; false if
    /// that did not happen in time. Call it before the last read of the
    /// channel (when a command ends, before a shutdown) so that no event of
    /// its final moments is left behind.
    pub fn flush_events(&self, timeout: std::time::Duration) -> bool {
        self.poller.flush(timeout)
    }

    /// Events lost so far (full ring buffer, full channel).
    pub fn drops(&self) -> Drops {
        Drops {
            ring: self.kernel.maps().ringbuf_drops(),
            channel: self.poller.channel_drops(),
        }
    }

    /// TCP sockets whose first bytes were judged clean and that were then
    /// taken out of the Stratum send path (the sockhash the sk_msg verdict
    /// runs on), so that their later sends cost nothing more. Done by the
    /// event thread between polls (within 50 ms); sockets that closed first
    /// are not counted. Stays 0 where no sk_msg program is needed
    /// ([`Enforcer::stratum_sk_msg`]): no socket enters that path there.
    pub fn released_sockets(&self) -> u64 {
        self.poller.released_sockets()
    }

    /// TCP sockets the egress Stratum judge refused
    /// ([`CgroupStratumJudge::Egress`]): `(destroyed, not_destroyed)`.
    /// Each refused socket is destroyed through sock_diag right after its
    /// event (its queued bytes dropped, its peer reset, the sender's next
    /// call failing with `ECONNABORTED`); `not_destroyed` counts those that
    /// closed first, whose namespace could not be entered, that the
    /// kernel would not destroy (no `CONFIG_INET_DIAG_DESTROY`), or that
    /// came when the judge's queue to userspace was full (4,096 waiting):
    /// the judge drops their packets as long as it is attached. (0, 0) on
    /// other paths.
    pub fn destroyed_sockets(&self) -> (u64, u64) {
        self.refused.as_ref().map_or((0, 0), |r| {
            let (destroyed, not_destroyed) = r.counts();
            let unqueued = self.kernel.maps().refused_unqueued();
            (destroyed, not_destroyed.saturating_add(unqueued))
        })
    }

    /// Destroys the refused sockets queued so far (the event thread does
    /// the same after each poll; each is handed out once).
    fn destroy_refused_sockets(&self) {
        if let Some(refused) = &self.refused {
            refused.destroy_queued();
        }
    }

    /// TCP sockets that were already connected when their cgroup came under
    /// a stratum rule, and that the sk_msg verdict reads from their next
    /// send on: `(tracked, shut_down)`, where `shut_down` counts those that
    /// could not be tracked (the sockhash was full) and were shut down
    /// rather than left to send unjudged. Stays `(0, 0)` where no sk_msg
    /// program is needed ([`Enforcer::stratum_sk_msg`]): the lsm hook reads
    /// every send, whenever its socket was made.
    pub fn adopted_sockets(&self) -> (u64, u64) {
        self.kernel.adopted_sockets()
    }

    /// Sockets the cgroup backend's Stratum tracking follows now (see
    /// [`EnforcerOptions::stratum_sockets`]).
    pub fn tracked_sockets(&self) -> u64 {
        self.kernel.maps().tracked_sockets()
    }

    /// Accepted TCP sockets of stratum scopes that the full Stratum
    /// tracking could not take (they send unjudged; client connections are
    /// refused instead). Should stay 0; raise
    /// [`EnforcerOptions::stratum_sockets`] if not.
    pub fn untracked_sockets(&self) -> u64 {
        self.kernel.maps().untracked_sockets()
    }

    /// Threads of stratum scopes the lsm backend's Stratum judge gave a
    /// copy of their own (task storage) because its 64 spare copies were
    /// all taken (more sends being read at once, their senders' buffers
    /// faulting). Judged all the same; but creating task storage in that
    /// sleepable hook can make other task-storage helpers on the CPU fail
    /// meanwhile (6.1, 6.12), the scope guard's among them. Should
    /// stay near 0.
    pub fn stratum_own_copies(&self) -> u64 {
        self.kernel.maps().own_copies()
    }

    /// Sends of stratum scopes the lsm backend's Stratum judge refused
    /// (EPERM, no event) because it had no room to read them (every spare
    /// copy taken and task storage refused) or to follow their socket:
    /// clean traffic refused. Should stay 0.
    pub fn stratum_unread_refused(&self) -> u64 {
        self.kernel.maps().unread_refused()
    }

    fn get(&self, handle: PolicyHandle) -> Result<&Applied> {
        Ok(self
            .applied
            .get(&handle)
            .ok_or(ScopeError::UnknownHandle(handle.0))?)
    }

    /// Writes `policy` under a fresh id and registers its rule names (and
    /// the scope's cgroup, where `kill-container` looks for cgroups).
    fn install(&mut self, policy: &KernelPolicy, scope: &CgroupRef) -> Result<u32> {
        let policy_id = self.alloc_policy_id();
        self.registry.insert(policy_id, policy, scope.path());
        if let Err(e) = self.kernel.maps().write_policy(policy_id, policy) {
            self.registry.forget(policy_id);
            return Err(e.into());
        }
        Ok(policy_id)
    }

    /// Deletes `policy`'s entries; `was_live`: events may still name it.
    fn uninstall(&mut self, policy_id: u32, policy: &KernelPolicy, was_live: bool) {
        self.kernel.maps().delete_policy(policy_id, policy);
        if was_live {
            self.registry.retire(policy_id);
        } else {
            self.registry.forget(policy_id);
        }
    }

    fn alloc_policy_id(&mut self) -> u32 {
        loop {
            let id = self.next_policy_id;
            self.next_policy_id = self.next_policy_id.wrapping_add(1).max(1);
            // Skip ids still resolvable for late events or in use.
            if !self.registry.contains(id) {
                return id;
            }
        }
    }

    /// Attaches the backend to the outermost scopes only, so a task runs
    /// each program once however scopes nest.
    fn sync_coverage(&mut self) -> Result<()> {
        // A refused socket outlives the judge that drops its packets: what
        // it queued would leave once the judge is detached.
        self.destroy_refused_sockets();
        let roots = self.roots();
        self.kernel.cover_exactly(&roots)?;
        self.sync_stratum_coverage(None)?;
        self.sync_host_hooks()
    }

    /// The outermost applied scopes.
    fn roots(&self) -> Vec<CgroupRef> {
        let cgroups: Vec<&CgroupRef> = self.applied.values().map(|a| &a.cgroup).collect();
        cgroups
            .iter()
            .filter(|c| !cgroups.iter().any(|o| o != *c && o.contains(c)))
            .map(|c| (*c).clone())
            .collect()
    }

    /// Attaches the Stratum socket tracking (sockops) to exactly the roots
    /// whose subtree holds a policy with a stratum rule (and, with
    /// `also`, the scope about to get one): sockets of other scopes never
    /// enter the sk_msg send path.
    fn sync_stratum_coverage(&mut self, also: Option<&CgroupRef>) -> Result<()> {
        let stratum: Vec<&CgroupRef> = self
            .applied
            .values()
            .filter(|a| a.policy.stratum.is_some())
            .map(|a| &a.cgroup)
            .chain(also)
            .collect();
        let roots: Vec<CgroupRef> = self
            .roots()
            .into_iter()
            .filter(|r| stratum.iter().any(|c| r.contains(c)))
            .collect();
        self.kernel.stratum_cover_exactly(&roots)
    }

    /// Attaches the host-wide hooks the applied policies need.
    fn sync_host_hooks(&mut self) -> Result<()> {
        for applied in self.applied.values() {
            self.kernel.policy_in_use(&applied.policy)?;
        }
        Ok(())
    }

    /// With a `scope.escape` rule, records the processes already in the
    /// handle's scope, so the guard knows them (new ones are followed from
    /// their fork or move on).
    fn seed_scope(&self, handle: PolicyHandle) -> Result<()> {
        let applied = &self.applied[&handle];
        if applied.policy.escape.is_some() {
            self.kernel.seed_scope(&applied.cgroup)?;
        }
        Ok(())
    }

    /// Publishes the scope levels, and whether scopes nest, for every
    /// scope applied or about to be (the programs' scope caches trust a
    /// flat layout; see `SharedMaps::set_scope_levels`).
    fn sync_levels(&self) -> Result<()> {
        self.publish_levels(self.scopes_nest())
    }

    /// Publishes the scope levels as nesting, whatever the layout, for the
    /// length of a change to the scopes or to the cgroups the programs are
    /// attached to: between its steps a program's entry could otherwise
    /// hold a scope that is not every covered task's (a program still
    /// attached to a cgroup that is no longer a root, or not yet a scope).
    /// `sync_levels` after the last step publishes the layout.
    fn scopes_changing(&self) -> Result<()> {
        self.publish_levels(true)
    }

    fn publish_levels(&self, nested: bool) -> Result<()> {
        // Adopted scopes not applied again yet are still in the maps.
        let levels = self
            .applied
            .values()
            .map(|a| a.cgroup.level())
            .chain(self.pending.values().map(|r| r.level))
            .fold(0u32, |acc, level| acc | (1 << level));
        Ok(self.kernel.maps().set_scope_levels(levels, nested)?)
    }

    /// Whether some applied scope is inside another; scopes of an earlier
    /// process not applied again yet count as nesting (their cgroups are
    /// not known here).
    fn scopes_nest(&self) -> bool {
        let cgroups: Vec<&CgroupRef> = self.applied.values().map(|a| &a.cgroup).collect();
        !self.pending.is_empty()
            || cgroups
                .iter()
                .any(|c| cgroups.iter().any(|o| o != c && o.contains(c)))
    }
}

impl Drop for Enforcer {
    fn drop(&mut self) {
        self.destroy_refused_sockets();
        // A pinned instance stays in force: only this process's
        // descriptors close (see `EnforcerOptions::instance`).
        if let Some(pins) = self.kernel.pins() {
            pins.keep();
            self.save_state();
            return;
        }
        for handle in self.handles() {
            let _ = self.remove(handle);
        }
    }
}

fn privileged(e: Error, euid: u32) -> Error {
    match e {
        Error::Load(LoadError::Object { .. }) if euid != 0 => {
            LoadError::NotPrivileged { uid: euid }.into()
        }
        other => other,
    }
}
