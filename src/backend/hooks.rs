//! The hooks both backends share: Stratum (sockops + sk_msg, and the Fast
//! Open tracepoints where the lsm backend does not judge Stratum itself),
//! the MSR device program and the cmdline exec program, plus the per-scope
//! cgroup links. A backend adds its own programs to the per-scope set.
//! Stratum and cmdline are loaded with the first policy that needs them
//! (see `on_demand`).

use libbpf_rs::ProgramMut;

use super::{
    attach::{attach_to_cgroup, CgroupLinks},
    checks::CheckStatus,
    cmdline::CmdlineHook,
    device::DeviceHook,
    fast_open::FastOpenHook,
    maps::SharedMaps,
    on_demand::OnDemand,
    scope_guard::ScopeGuardHook,
    selftest::SelfTestHook,
    stratum::StratumHook,
    stratum_egress::EgressJudge,
    tuning::{TuningHook, TUNING_NEEDED_BY},
    BackendKind, SocketWork,
};
use crate::{
    cgroup::CgroupRef,
    compile::{KernelPolicy, RuleKind},
    error::{Error, LoadError},
    probe::ProbeReport,
    profile::MatcherKind,
};

/// Why the Fast Open tracepoints are not loaded on the lsm backend.
const LSM_JUDGES_FAST_OPEN: &str = "the lsm socket_sendmsg hook judges Fast Open payloads";

/// The rules that load the Stratum programs.
pub(crate) const STRATUM_NEEDED_BY: &str = "the first profile with a stratum rule";

/// The status of a Stratum hook before the first stratum policy.
pub(crate) fn stratum_not_loaded_yet() -> CheckStatus {
    CheckStatus::NotLoadedYet {
        needed_by: STRATUM_NEEDED_BY.into(),
    }
}

/// Why the egress judge needs no sk_msg program, no sockops and no Fast
/// Open tracepoints.
const EGRESS_JUDGES_EVERY_PACKET: &str =
    "the egress judge reads the packets every socket of a stratum scope sends (Fast Open SYNs included)";

/// Why the lsm backend loads no sk_msg program (and no sockops).
const LSM_JUDGES_EVERY_SEND: &str =
    "every send reaches the lsm socket_sendmsg hook on this kernel (sendfile and splice included, Linux 6.5 and later)";

/// Why the lsm backend loads no sk_msg program where some sends go past
/// its hook.
const EGRESS_BEHIND_LSM_READS_THE_REST: &str =
    "the egress judge behind the lsm socket_sendmsg hook reads the sends that go past it (sendfile and splice before Linux 6.5)";

/// What judges the Stratum payloads of the scopes a stratum rule covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StratumJudge {
    /// The sk_msg program, on the sockets sockops puts into its sockhash
    /// (the cgroup backend; the lsm backend where its hook is refused).
    SkMsg,
    /// The lsm socket_sendmsg hook, with the egress judge behind it (which
    /// reads what the kernel copied of each send). `every_send`: every send
    /// reaches the hook; otherwise sendfile and splice go past it (before
    /// Linux 6.5), and the egress judge reads them and reports audited
    /// scopes.
    Lsm { every_send: bool },
    /// The cgroup_skb/egress program, on the packets each socket of a
    /// stratum scope sends (the cgroup backend with
    /// `CgroupStratumJudge::Egress`).
    Egress,
}

/// The sockops and sk_msg programs.
enum StratumPrograms {
    /// No policy with a stratum rule has been prepared yet.
    NotYet,
    /// Loaded; a kernel that refuses them fails that apply (Stratum has no
    /// other judge then) and leaves this `NotYet`.
    Loaded(Box<StratumHook>),
    /// Not needed: the lsm hook judges, with the egress judge behind it
    /// ([`StratumJudge::Lsm`]); why.
    NotNeeded(&'static str),
    /// The egress judge instead ([`StratumJudge::Egress`]).
    Egress(Box<EgressJudge>),
}

/// Shared hooks and the links that attach programs to covered cgroups.
pub(crate) struct SharedHooks {
    // Links go first: they reference the programs below.
    links: CgroupLinks,
    /// sockops, on the roots whose scopes have a stratum rule.
    stratum_links: CgroupLinks,
    /// Sockets found already connected in newly covered cgroups: put into
    /// the sockhash, and shut down when that failed.
    adopted: super::adopt_sockets::Adopted,
    /// `EnforcerOptions::stratum_sockets`.
    stratum_sockets: u32,
    /// Settled by the first policy that has a stratum rule.
    stratum: StratumPrograms,
    /// The egress judge behind the lsm socket_sendmsg hook (#19): loaded
    /// with the Stratum programs where that hook judges, attached with
    /// them. The hook reads the caller's buffer before the kernel copies
    /// it; this reads what leaves.
    backstop: Option<Box<EgressJudge>>,
    /// `None` where this kernel refused the device program (open.msr).
    device: Option<DeviceHook>,
    /// Loaded with the first policy that has `exec.cmdline` patterns.
    cmdline: OnDemand<CmdlineHook>,
    /// Loaded with the first policy that has a `scope.escape` rule.
    scope_guard: OnDemand<ScopeGuardHook>,
    /// The tuning counter: loaded with the first policy whose `behaviour`
    /// rule counts tuning (off without syscall tracepoints).
    tuning: OnDemand<TuningHook>,
    /// `EnforcerOptions::syscall_tracepoints`.
    syscall_tracepoints: bool,
    /// The Fast Open tracepoints (loaded with the Stratum programs), or why
    /// not.
    fast_open: OnDemand<FastOpenHook>,
    self_test: SelfTestHook,
    probe: ProbeReport,
    /// The instance links are pinned as, if any.
    pins: Option<std::sync::Arc<crate::pin::PinDir>>,
}

impl SharedHooks {
    /// Loads the hooks every enforcer needs on the shared maps; the rest
    /// are loaded by [`Self::prepare`] for the first policy that needs them.
    /// The device hook is optional (open.msr rules are then reported as
    /// not enforced).
    pub fn load(
        maps: &SharedMaps,
        report: &ProbeReport,
        syscall_tracepoints: bool,
        stratum_sockets: u32,
    ) -> Result<Self, Error> {
        Ok(SharedHooks {
            stratum_sockets,
            links: CgroupLinks::default(),
            stratum_links: CgroupLinks::default(),
            adopted: Default::default(),
            stratum: StratumPrograms::NotYet,
            backstop: None,
            device: DeviceHook::load(maps, report.proc_in_cgroup.available).ok(),
            cmdline: OnDemand::not_yet("the first profile with exec.cmdline patterns"),
            scope_guard: OnDemand::not_yet("the first profile with a scope.escape rule"),
            tuning: if syscall_tracepoints {
                OnDemand::not_yet(TUNING_NEEDED_BY)
            } else {
                OnDemand::Off(super::TRACEPOINTS_OFF.into())
            },
            syscall_tracepoints,
            fast_open: if syscall_tracepoints {
                OnDemand::not_yet(STRATUM_NEEDED_BY)
            } else {
                OnDemand::Off(super::TRACEPOINTS_OFF.into())
            },
            self_test: SelfTestHook::load(maps)?,
            probe: report.clone(),
            pins: maps.pins().cloned(),
        })
    }

    /// Whether the first policy with a stratum rule has settled what
    /// judges Stratum (the backend then need not work out `judge` again).
    pub fn stratum_settled(&self) -> bool {
        !matches!(self.stratum, StratumPrograms::NotYet)
    }

    /// Loads the hooks `policy` needs that are not loaded yet: the cmdline
    /// program (optional: where this kernel refuses it, `exec.cmdline`
    /// rules are reported as not enforced) and, as `judge` says, the
    /// Stratum programs with the Fast Open tracepoints (optional). Where
    /// the lsm backend's socket_sendmsg hook judges Stratum payloads, Fast
    /// Open included, the sk_msg program only covers what bypasses it (or
    /// is not loaded at all) and the Fast Open tracepoints are not loaded.
    /// Where the lsm hook judges, the egress judge is loaded behind it.
    /// When it loads the Stratum programs now, returns their socket
    /// queues for the event thread. A refused Stratum load fails this call
    /// and is tried again by the next one (nothing of it is kept).
    pub fn prepare(
        &mut self,
        maps: &SharedMaps,
        policy: &KernelPolicy,
        judge: StratumJudge,
        lsm: bool,
    ) -> Result<Vec<SocketWork>, Error> {
        if !policy.cmdline.is_empty() {
            self.cmdline.load_with(|| CmdlineHook::load(maps))?;
        }
        if policy.escape.is_some() {
            let tracepoints = self.syscall_tracepoints;
            self.scope_guard
                .load_with(|| ScopeGuardHook::load(maps, lsm, tracepoints))?;
        }
        if policy.count_tuning {
            self.tuning.load_with(|| TuningHook::load(maps))?;
        }
        if policy.stratum.is_none() || self.stratum_settled() {
            return Ok(Vec::new());
        }
        if judge == StratumJudge::Egress {
            let judge = EgressJudge::load(maps, false)?;
            let refused = judge.refused_sockets()?;
            self.stratum = StratumPrograms::Egress(Box::new(judge));
            if matches!(self.fast_open, OnDemand::NotYet { .. }) {
                self.fast_open = OnDemand::NotNeeded(EGRESS_JUDGES_EVERY_PACKET);
            }
            return Ok(vec![SocketWork::Destroy(std::sync::Arc::new(refused))]);
        }
        let lsm_judges_stratum = judge != StratumJudge::SkMsg;
        let mut work = Vec::new();
        // The backstop first: a refused load keeps nothing of this call.
        let backstop = if let StratumJudge::Lsm { every_send } = judge {
            let backstop = EgressJudge::load(maps, every_send)?;
            work.push(SocketWork::Destroy(std::sync::Arc::new(
                backstop.refused_sockets()?,
            )));
            Some(Box::new(backstop))
        } else {
            None
        };
        if let StratumJudge::Lsm { every_send } = judge {
            self.stratum = StratumPrograms::NotNeeded(if every_send {
                LSM_JUDGES_EVERY_SEND
            } else {
                EGRESS_BEHIND_LSM_READS_THE_REST
            });
        } else {
            let stratum = StratumHook::load(maps, &self.probe, self.stratum_sockets)?;
            // Before keeping it: a hook whose queue the event thread never
            // got would keep judged sockets on the sk_msg path for good.
            work.push(SocketWork::Release(stratum.judged_sockets()?));
            self.stratum = StratumPrograms::Loaded(Box::new(stratum));
        }
        self.backstop = backstop;
        if lsm_judges_stratum {
            if matches!(self.fast_open, OnDemand::NotYet { .. }) {
                self.fast_open = OnDemand::NotNeeded(LSM_JUDGES_FAST_OPEN);
            }
        } else {
            self.fast_open.load_with(|| FastOpenHook::load(maps))?;
        }
        Ok(work)
    }

    /// Whether what judges Stratum is in place (the Stratum programs, or
    /// the lsm hook alone where they are not needed); otherwise why not (a
    /// profile with a stratum rule loads them).
    pub fn stratum_loaded(&self) -> CheckStatus {
        match self.stratum {
            StratumPrograms::NotYet => stratum_not_loaded_yet(),
            StratumPrograms::Loaded(_)
            | StratumPrograms::NotNeeded(_)
            | StratumPrograms::Egress(_) => CheckStatus::Active,
        }
    }

    /// Whether the egress judge reads what leaves behind the lsm hook (see
    /// `backstop`); otherwise why not.
    pub fn stratum_backstop(&self) -> CheckStatus {
        match (&self.backstop, &self.stratum) {
            (Some(_), _) => CheckStatus::Active,
            (None, StratumPrograms::NotYet) => stratum_not_loaded_yet(),
            (None, StratumPrograms::Egress(_)) => CheckStatus::NotNeeded {
                reason: EGRESS_JUDGES_EVERY_PACKET.into(),
            },
            (None, _) => CheckStatus::NotNeeded {
                reason: "the sk_msg verdict reads the kernel's copy of each send".into(),
            },
        }
    }

    /// Whether the sk_msg program (and sockops, which puts each new client
    /// socket of a stratum scope into its sockhash) judges Stratum sends;
    /// otherwise why not.
    pub fn stratum_sk_msg(&self) -> CheckStatus {
        match self.stratum {
            StratumPrograms::NotYet => stratum_not_loaded_yet(),
            StratumPrograms::Loaded(_) => CheckStatus::Active,
            StratumPrograms::NotNeeded(reason) => CheckStatus::NotNeeded {
                reason: reason.into(),
            },
            StratumPrograms::Egress(_) => CheckStatus::NotNeeded {
                reason: EGRESS_JUDGES_EVERY_PACKET.into(),
            },
        }
    }

    /// The lsm socket_sendmsg hook, which was to judge Fast Open payloads,
    /// could not be attached after all: the Fast Open tracepoints take
    /// over, as on a kernel that refuses that hook at load (attached by
    /// the next `stratum_in_use`).
    pub fn fast_open_without_lsm(&mut self, maps: &SharedMaps) -> Result<(), Error> {
        if matches!(&self.fast_open, OnDemand::NotNeeded(_)) {
            self.fast_open = OnDemand::not_yet(STRATUM_NEEDED_BY);
            self.fast_open.load_with(|| FastOpenHook::load(maps))?;
        }
        Ok(())
    }

    /// Attaches `own` (the backend's per-scope programs) and the shared
    /// per-scope programs to exactly `roots` (see `Backend::cover_exactly`).
    pub fn cover_exactly(
        &mut self,
        roots: &[CgroupRef],
        own: &[(&'static str, &ProgramMut<'_>)],
    ) -> Result<(), Error> {
        let mut programs = own.to_vec();
        programs.extend(self.device.as_ref().map(DeviceHook::program));
        let pins = self.pins.as_ref();
        self.links
            .cover_exactly(roots, |cg| attach_to_cgroup(pins, cg, &programs))
    }

    /// Attaches sockops (or the egress judge), and the backend's own
    /// programs only stratum rules need (`extra`), to exactly `roots` (see
    /// `Backend::stratum_cover_exactly`).
    /// Before the Stratum programs are loaded no root can have a stratum
    /// rule (`prepare` runs first), so there is nothing to attach; where
    /// they are not needed, only `extra` is.
    pub fn stratum_cover_exactly(
        &mut self,
        roots: &[CgroupRef],
        extra: &[(&'static str, &ProgramMut<'_>)],
    ) -> Result<(), Error> {
        let pins = self.pins.as_ref();
        let mut extra = extra.to_vec();
        extra.extend(self.backstop.as_deref().map(EgressJudge::program));
        let extra = &extra[..];
        let stratum = match &self.stratum {
            StratumPrograms::Loaded(stratum) => stratum,
            StratumPrograms::NotNeeded(_) => {
                return self
                    .stratum_links
                    .cover_exactly(roots, |cg| attach_to_cgroup(pins, cg, extra));
            }
            StratumPrograms::Egress(judge) => {
                // Sockets connected before: their next packet meets it.
                let mut programs = vec![judge.program()];
                programs.extend_from_slice(extra);
                return self
                    .stratum_links
                    .cover_exactly(roots, |cg| attach_to_cgroup(pins, cg, &programs));
            }
            StratumPrograms::NotYet => {
                return match roots.first() {
                    None => Ok(()),
                    Some(_) => Err(LoadError::Unsupported {
                        what: "Stratum socket tracking".into(),
                        fix: format!("{STRATUM_NEEDED_BY} loads it (internal ordering error)"),
                    }
                    .into()),
                }
            }
        };
        let mut programs = vec![stratum.sockops()];
        programs.extend_from_slice(extra);
        let adopted = std::cell::Cell::new(self.adopted);
        let result = self.stratum_links.cover_exactly(roots, |cg| {
            let links = attach_to_cgroup(pins, cg, &programs)?;
            // Sockets connected before sockops was attached: tracked from
            // their next send (after the attach, so none falls between).
            let now = super::adopt_sockets::adopt_sockets(cg, stratum.sockhash());
            let mut total = adopted.get();
            total.tracked += now.tracked;
            total.shut_down += now.shut_down;
            adopted.set(total);
            Ok(links)
        });
        self.adopted = adopted.get();
        result
    }

    /// Sockets tracked from their next send because they were connected
    /// before their cgroup was covered, and those shut down because they
    /// could not be tracked.
    pub fn adopted_sockets(&self) -> (u64, u64) {
        (self.adopted.tracked, self.adopted.shut_down)
    }

    /// Whether `kind`'s matcher `m` is enforced, given the optional hooks.
    pub fn supports(&self, kind: BackendKind, m: MatcherKind) -> bool {
        kind.supports(m)
            && (m != MatcherKind::OpenMsr || self.device.is_some())
            && (m != MatcherKind::ExecCmdline || self.cmdline.ready().is_some())
            && (m != MatcherKind::ScopeEscape || self.scope_guard.ready().is_some())
            && (m != MatcherKind::ExecDrift || self.probe.overlay_types.available)
    }

    /// Attaches the hooks only stratum rules need (see
    /// `Backend::policy_in_use`).
    /// The Fast Open check is optional: if its tracepoints cannot be
    /// attached, `fast_open()` says why from then on and the policy is
    /// applied without it (`enforcer run`/`watch` warn).
    pub fn stratum_in_use(&mut self) -> Result<(), Error> {
        if let Some(hook) = self.fast_open.ready_mut() {
            if let Err(e) = hook.activate() {
                self.fast_open
                    .attach_failed("attaching its tracepoints", e)?;
            }
        }
        Ok(())
    }

    /// Runs the event-path self-test program (see `Backend::self_test`).
    pub fn self_test(&self, policy_id: u32, rule_idx: u32, count: u32) -> Result<u32, Error> {
        self.self_test.emit(policy_id, rule_idx, count)
    }

    /// Whether TCP Fast Open payloads are judged; otherwise why not.
    pub fn fast_open(&self) -> CheckStatus {
        self.fast_open.status()
    }

    /// Whether tasks leaving their scope are stopped (`scope.escape`);
    /// otherwise why not. With `Ok`, a note when escapes are killed after
    /// the move rather than refused before it (the lsm part not loaded).
    pub fn scope_guard(&self) -> (CheckStatus, Option<String>) {
        (
            self.scope_guard.status(),
            self.scope_guard.ready().and_then(|h| h.refused_after()),
        )
    }

    /// Whether tuning attempts are counted for the behaviour detector;
    /// otherwise why not.
    pub fn tuning(&self) -> CheckStatus {
        self.tuning.status()
    }

    /// The tuning counts, once the counter is loaded.
    pub fn tuning_counts(&self) -> Option<crate::behaviour::TuningCounts> {
        self.tuning.ready().map(TuningHook::counts)
    }

    /// Whether the shared hooks send `kill`'s SIGKILL in-kernel for `kind`;
    /// `None` for kinds they do not handle.
    pub fn kills_in_kernel(&self, kind: RuleKind) -> Option<bool> {
        match kind {
            // The lsm hook, where it judges alone, can always signal.
            // The egress judge's events name no process: the event thread
            // kills the refused socket's holder when it finds it (not the
            // task a packet left from, which may not be the sender).
            RuleKind::Stratum => Some(
                matches!(
                    self.stratum,
                    StratumPrograms::NotNeeded(_) | StratumPrograms::Egress(_)
                ) || self.probe.skmsg_signal.available,
            ),
            // cgroup/dev programs cannot signal.
            RuleKind::Open => Some(false),
            _ => None,
        }
    }
}
