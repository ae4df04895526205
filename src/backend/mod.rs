//! Backends: how a compiled policy is enforced on the running kernel.
//!
//! Both backends share the maps of bpf/include/maps.h, so the enforcer writes
//! policy the same way whichever one runs; a backend only loads its programs
//! and decides where they attach.

pub(crate) mod abi;
mod adopt_sockets;
mod attach;
pub(crate) mod cgroup_bpf;
pub mod checks;
mod cmdline;
mod device;
mod fast_open;
pub(crate) mod hooks;
mod loader_exec;
pub(crate) mod lsm;
mod lsm_stratum;
pub(crate) mod maps;
mod on_demand;
pub mod probe;
mod refused_sockets;
mod scope_guard;
mod selftest;
pub(crate) mod skel;
pub(crate) mod stratum;
mod stratum_egress;
mod tracefs;
mod tuning;

pub(crate) use self::refused_sockets::RefusedSockets;
use self::{
    checks::CheckStatus, hooks::SharedHooks, maps::SharedMaps, probe::ProbeReport,
    stratum::JudgedSockets,
};

/// What the event thread does between polls for the Stratum judge, handed
/// over once, when the judge loads.
pub(crate) enum SocketWork {
    /// Takes the sockets the sk_msg verdict passed out of its sockhash.
    Release(JudgedSockets),
    /// Destroys the sockets the egress judge refused (the enforcer keeps
    /// the same queue, to empty it before the judge is detached).
    Destroy(std::sync::Arc<RefusedSockets>),
}
use crate::{
    cgroup::CgroupRef,
    compile::{KernelPolicy, RuleKind},
    error::{Error, LoadError},
    profile::{Action, MatcherKind},
};

/// Which enforcement mechanism runs the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// BPF-LSM hooks: the syscall is refused (EPERM) before it takes effect.
    Lsm,
    /// cgroup-BPF programs plus an exec tracepoint, for kernels without BPF LSM.
    Cgroup,
}

impl BackendKind {
    /// Lower-case name (`lsm`, `cgroup`).
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Lsm => "lsm",
            BackendKind::Cgroup => "cgroup",
        }
    }
}

impl BackendKind {
    /// What the kernel does, with this backend, for a rule of `kind` that
    /// asks for `requested`.
    pub fn effective(self, kind: RuleKind, requested: Action) -> Action {
        match (self, kind, requested) {
            // The exec tracepoint runs after the exec succeeded: it can only
            // kill (before the new image runs an instruction). exec.cmdline
            // is judged there on both backends (see `effective_for`).
            (BackendKind::Cgroup, RuleKind::Exec, Action::Deny) => Action::Kill,
            (_, _, a) => a,
        }
    }
}

impl BackendKind {
    /// Whether this backend enforces rules with matcher `m` in this release.
    /// Rules it does not enforce are applied as nothing and reported by
    /// [`Enforcer::unenforced`](crate::Enforcer::unenforced).
    pub fn supports(self, m: MatcherKind) -> bool {
        // Both backends enforce every BPF matcher; a seccomp filter is
        // installed in the command (by `run`, or a runtime through the OCI
        // export), not by a BPF backend. Optional hooks a kernel refuses
        // are taken off by the loaded backend (`SharedHooks::supports`).
        // Behaviour rules are judged by sampling (crate::behaviour), by
        // whoever runs the detector (`minerguard watch`).
        !matches!(m, MatcherKind::Seccomp | MatcherKind::Behaviour)
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which backend an [`Enforcer`](crate::Enforcer) should use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// The strongest one this kernel supports (lsm, else cgroup).
    #[default]
    Auto,
    /// BPF-LSM only; fail if the kernel refuses it.
    Lsm,
    /// cgroup-BPF only.
    Cgroup,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "lsm" => Ok(BackendChoice::Lsm),
            "cgroup" => Ok(BackendChoice::Cgroup),
            other => Err(format!(
                "unknown backend `{other}` (expected auto, lsm or cgroup)"
            )),
        }
    }
}

/// Why a syscall-tracepoint check is off when the options turned them off.
pub(crate) const TRACEPOINTS_OFF: &str = "off (EnforcerOptions::syscall_tracepoints is false)";

/// Maps a libbpf open/load failure of `object` to a [`LoadError`].
pub(crate) fn load_err(object: &'static str) -> impl Fn(libbpf_rs::Error) -> LoadError {
    move |source| {
        crate::descriptors::classify(|| format!("loading BPF object `{object}`"), source)
            .unwrap_or_else(|source| LoadError::Object { object, source })
    }
}

/// What differs between the backends: their own programs, and how they
/// cover scopes, prepare and activate a policy's hooks and send `kill`'s
/// signal. The maps and the hooks both share live in [`Kernel`].
pub(crate) trait Backend: Send {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// Makes the programs see tasks in exactly these cgroup subtrees (none of
    /// which contains another): this backend's per-cgroup programs and the
    /// shared ones. Attaches new ones before detaching old ones; on failure
    /// the previous coverage is left as it was.
    fn cover_exactly(&mut self, hooks: &mut SharedHooks, roots: &[CgroupRef]) -> Result<(), Error>;

    /// Makes the Stratum programs, and this backend's own programs only
    /// stratum rules need, see exactly these subtrees (the roots whose
    /// scopes have a stratum rule). Same contract as `cover_exactly`.
    fn stratum_cover_exactly(
        &mut self,
        hooks: &mut SharedHooks,
        roots: &[CgroupRef],
    ) -> Result<(), Error> {
        hooks.stratum_cover_exactly(roots, &[])
    }

    /// Whether the kernel sends the SIGKILL itself for `kill` rules of `kind`
    /// (otherwise the event poller sends it on receipt).
    fn kills_in_kernel(&self, hooks: &SharedHooks, kind: RuleKind) -> bool;

    /// `policy` is about to be compiled into an apply or update: loads the
    /// optional hooks its rules need that are not loaded yet (Stratum,
    /// cmdline, loader exec; see `on_demand`), so what it reports as
    /// enforced is known before it is applied. A loaded hook stays loaded
    /// (inert outside scopes whose policy uses it) until the kernel state is
    /// dropped, even if that apply fails later. When the Stratum programs
    /// load now, returns what the event thread does for them (one piece
    /// of work per judge that needs one).
    fn prepare(
        &mut self,
        maps: &SharedMaps,
        hooks: &mut SharedHooks,
        policy: &KernelPolicy,
    ) -> Result<Vec<SocketWork>, Error>;

    /// `policy` is (about to be) applied: attaches the host-wide hooks its
    /// rules need and that are not attached yet (they cost every task on
    /// the host, so an enforcer attaches none it has no rule for). They
    /// stay attached until the kernel state is dropped: detaching a
    /// tracepoint waits for an RCU grace period (tens of ms), which an
    /// update or remove should not. A hook that cannot be attached turns
    /// its status into `Off` rather than failing the apply.
    fn activate(
        &mut self,
        maps: &SharedMaps,
        hooks: &mut SharedHooks,
        policy: &KernelPolicy,
    ) -> Result<(), Error>;

    /// Whether executable mappings of refused files (loader exec) are
    /// judged (the lsm backend's mmap hooks always load with it).
    fn loader_exec(&self) -> CheckStatus {
        CheckStatus::Active
    }

    /// Whether TCP Fast Open payloads are judged for Stratum.
    fn fast_open(&self, hooks: &SharedHooks) -> CheckStatus {
        hooks.fast_open()
    }

    /// Whether Stratum payloads are judged by the lsm socket_sendmsg hook
    /// (EPERM); otherwise the sk_msg program judges them (EACCES).
    fn stratum_in_lsm(&self, _hooks: &SharedHooks) -> CheckStatus {
        CheckStatus::Off {
            reason: "the cgroup backend judges Stratum in its sk_msg program".into(),
        }
    }
}

/// The kernel state of an enforcer: the shared maps (created first, every
/// object reuses them), the hooks both backends share, and the backend's
/// own programs. Field order is drop order: the hooks' cgroup links go
/// before the backend programs they attach, the maps last.
pub(crate) struct Kernel {
    hooks: SharedHooks,
    backend: Box<dyn Backend>,
    maps: SharedMaps,
}

impl Kernel {
    /// Creates the shared maps, then loads the shared hooks and the
    /// backend of `kind` on them. `syscall_tracepoints`: see
    /// `EnforcerOptions::syscall_tracepoints`; `stratum_sockets`: see
    /// `EnforcerOptions::stratum_sockets`; `cgroup_stratum_judge`: see
    /// `EnforcerOptions::cgroup_stratum_judge`.
    pub fn load(
        kind: BackendKind,
        report: &ProbeReport,
        syscall_tracepoints: bool,
        stratum_sockets: u32,
        cgroup_stratum_judge: crate::CgroupStratumJudge,
        pins: Option<std::sync::Arc<crate::pin::PinDir>>,
    ) -> Result<Self, Error> {
        let maps = SharedMaps::create(pins)?;
        let backend: Box<dyn Backend> = match kind {
            BackendKind::Cgroup => Box::new(cgroup_bpf::CgroupBackend::load(
                &maps,
                report,
                syscall_tracepoints,
                cgroup_stratum_judge,
            )?),
            BackendKind::Lsm => Box::new(lsm::LsmBackend::load(&maps)?),
        };
        let hooks = SharedHooks::load(&maps, report, syscall_tracepoints, stratum_sockets)?;
        Ok(Kernel {
            hooks,
            backend,
            maps,
        })
    }

    /// Which backend runs.
    pub fn kind(&self) -> BackendKind {
        self.backend.kind()
    }

    /// The instance this kernel state is pinned as, if any.
    pub fn pins(&self) -> Option<&std::sync::Arc<crate::pin::PinDir>> {
        self.maps.pins()
    }

    /// The shared maps the enforcer writes policy into.
    pub fn maps(&self) -> &SharedMaps {
        &self.maps
    }

    /// Makes the programs see tasks in exactly these subtrees (see
    /// `Backend::cover_exactly`).
    pub fn cover_exactly(&mut self, roots: &[CgroupRef]) -> Result<(), Error> {
        self.backend.cover_exactly(&mut self.hooks, roots)
    }

    /// Makes the Stratum socket tracking (sockops into the sockhash the
    /// sk_msg verdict runs on) see exactly these subtrees: the roots whose
    /// scopes have a stratum rule. Same contract as `cover_exactly`.
    pub fn stratum_cover_exactly(&mut self, roots: &[CgroupRef]) -> Result<(), Error> {
        self.backend.stratum_cover_exactly(&mut self.hooks, roots)
    }

    /// See `SharedHooks::adopted_sockets`.
    pub fn adopted_sockets(&self) -> (u64, u64) {
        self.hooks.adopted_sockets()
    }

    /// Whether rules with matcher `m` are enforced (the backend kind's
    /// capability, less optional hooks this kernel refused).
    pub fn supports(&self, m: MatcherKind) -> bool {
        self.hooks.supports(self.kind(), m)
    }

    /// See `Backend::kills_in_kernel`.
    pub fn kills_in_kernel(&self, kind: RuleKind) -> bool {
        self.backend.kills_in_kernel(&self.hooks, kind)
    }

    /// See `Backend::prepare`.
    pub fn prepare(&mut self, policy: &KernelPolicy) -> Result<Vec<SocketWork>, Error> {
        self.backend.prepare(&self.maps, &mut self.hooks, policy)
    }

    /// See `Backend::activate`.
    pub fn policy_in_use(&mut self, policy: &KernelPolicy) -> Result<(), Error> {
        self.backend.activate(&self.maps, &mut self.hooks, policy)
    }

    /// Executable mappings of refused files (loader exec).
    pub fn loader_exec(&self) -> CheckStatus {
        self.backend.loader_exec()
    }

    /// TCP Fast Open payloads judged for Stratum.
    pub fn fast_open(&self) -> CheckStatus {
        self.backend.fast_open(&self.hooks)
    }

    /// See `SharedHooks::scope_guard`.
    pub fn scope_guard(&self) -> (CheckStatus, Option<String>) {
        self.hooks.scope_guard()
    }

    /// See `SharedHooks::tuning`.
    pub fn tuning(&self) -> CheckStatus {
        self.hooks.tuning()
    }

    /// See `SharedHooks::tuning_counts`.
    pub fn tuning_counts(&self) -> Option<crate::behaviour::TuningCounts> {
        self.hooks.tuning_counts()
    }

    /// Records the processes already in `scope` for the scope guard.
    pub fn seed_scope(&self, scope: &crate::cgroup::CgroupRef) -> Result<usize, Error> {
        Ok(scope_guard::seed(&self.maps, scope)?)
    }

    /// Stratum judged by the lsm socket_sendmsg hook.
    pub fn stratum_in_lsm(&self) -> CheckStatus {
        self.backend.stratum_in_lsm(&self.hooks)
    }

    /// Stratum judged by the sk_msg program (see
    /// `SharedHooks::stratum_sk_msg`).
    pub fn stratum_sk_msg(&self) -> CheckStatus {
        self.hooks.stratum_sk_msg()
    }

    /// The egress judge behind the lsm hook (see
    /// `SharedHooks::stratum_backstop`).
    pub fn stratum_backstop(&self) -> CheckStatus {
        self.hooks.stratum_backstop()
    }

    /// Writes up to `count` self-test events for `rule_idx` of `policy_id`
    /// into the ring buffer; returns how many fit.
    pub fn self_test(&self, policy_id: u32, rule_idx: u32, count: u32) -> Result<u32, Error> {
        self.hooks.self_test(policy_id, rule_idx, count)
    }
}
