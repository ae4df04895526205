//! The hooks both backends share: Stratum (sockops + sk_msg, and the Fast
//! Open tracepoints where the lsm backend does not judge Stratum itself),
//! the MSR device program and the cmdline exec program, plus the per-scope
//! cgroup links. A backend adds its own programs to the per-scope set.
//! Stratum and cmdline are loaded with the first policy that needs them
//! (see `on_demand`).

use libbpf_rs::ProgramMut;

use super::{
    attach::{attach_to_cgroup, CgroupLinks},
    cmdline::CmdlineHook,
    device::DeviceHook,
    maps::SharedMaps,
    on_demand::{not_loaded_yet, OnDemand},
    selftest::SelfTestHook,
    stratum::{JudgedSockets, StratumHook},
    tfo::TfoHook,
    BackendKind,
};
use crate::{
    cgroup::CgroupRef,
    compile::{KernelPolicy, RuleKind},
    error::{Error, LoadError},
    probe::ProbeReport,
    profile::MatcherKind,
};

/// Why the Fast Open tracepoints are not loaded on the lsm backend.
const LSM_JUDGES_FAST_OPEN: &str = "judged by the lsm socket_sendmsg hook instead";

/// The rules that load the Stratum programs.
pub(crate) const STRATUM_NEEDED_BY: &str = "the first profile with a stratum rule";

/// Shared hooks and the links that attach programs to covered cgroups.
pub(crate) struct SharedHooks {
    // Links go first: they reference the programs below.
    links: CgroupLinks,
    /// sockops, on the roots whose scopes have a stratum rule.
    stratum_links: CgroupLinks,
    /// Loaded with the first policy that has a stratum rule; a kernel that
    /// refuses it fails that apply (Stratum has no other judge here).
    stratum: Option<StratumHook>,
    /// `None` where this kernel refused the device program (open.msr).
    device: Option<DeviceHook>,
    /// Loaded with the first policy that has `exec.cmdline` patterns.
    cmdline: OnDemand<CmdlineHook>,
    /// The Fast Open tracepoints (loaded with the Stratum programs), or why
    /// not.
    tfo: OnDemand<TfoHook>,
    self_test: SelfTestHook,
    probe: ProbeReport,
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
    ) -> Result<Self, Error> {
        Ok(SharedHooks {
            links: CgroupLinks::default(),
            stratum_links: CgroupLinks::default(),
            stratum: None,
            device: DeviceHook::load(maps).ok(),
            cmdline: OnDemand::not_yet("the first profile with exec.cmdline patterns"),
            tfo: if syscall_tracepoints {
                OnDemand::not_yet(STRATUM_NEEDED_BY)
            } else {
                OnDemand::Off(super::TRACEPOINTS_OFF.into())
            },
            self_test: SelfTestHook::load(maps)?,
            probe: report.clone(),
        })
    }

    /// Loads the hooks `policy` needs that are not loaded yet: the cmdline
    /// program (optional: where this kernel refuses it, `exec.cmdline`
    /// rules are reported as not enforced) and the Stratum programs with
    /// the Fast Open tracepoints (optional). `lsm_judges_stratum`: the lsm
    /// backend's socket_sendmsg hook judges Stratum payloads (Fast Open
    /// included), so the sk_msg program only covers what bypasses it and
    /// the Fast Open tracepoints are not loaded. When it loads the Stratum
    /// programs now, returns their judged-socket queue for the event
    /// thread. A refused Stratum load fails this call and is tried again by
    /// the next one (nothing of it is kept).
    pub fn prepare(
        &mut self,
        maps: &SharedMaps,
        policy: &KernelPolicy,
        lsm_judges_stratum: bool,
    ) -> Result<Option<JudgedSockets>, Error> {
        if !policy.cmdline.is_empty() {
            self.cmdline.load_with(|| CmdlineHook::load(maps));
        }
        if policy.stratum.is_none() || self.stratum.is_some() {
            return Ok(None);
        }
        let stratum = StratumHook::load(maps, &self.probe, lsm_judges_stratum)?;
        // Before keeping it: a hook whose queue the event thread never got
        // would keep judged sockets on the sk_msg path for good.
        let judged = stratum.judged_sockets()?;
        self.stratum = Some(stratum);
        if lsm_judges_stratum {
            if matches!(self.tfo, OnDemand::NotYet { .. }) {
                self.tfo = OnDemand::Off(LSM_JUDGES_FAST_OPEN.into());
            }
        } else {
            self.tfo.load_with(|| TfoHook::load(maps));
        }
        Ok(Some(judged))
    }

    /// Whether the Stratum programs are loaded; otherwise why not (a
    /// profile with a stratum rule loads them).
    pub fn stratum_loaded(&self) -> Result<(), String> {
        match self.stratum {
            Some(_) => Ok(()),
            None => Err(not_loaded_yet(STRATUM_NEEDED_BY)),
        }
    }

    /// The lsm socket_sendmsg hook, which was to judge Fast Open payloads,
    /// could not be attached after all: the Fast Open tracepoints take
    /// over, as on a kernel that refuses that hook at load (attached by
    /// the next `stratum_in_use`).
    pub fn fast_open_without_lsm(&mut self, maps: &SharedMaps) {
        if matches!(&self.tfo, OnDemand::Off(why) if why == LSM_JUDGES_FAST_OPEN) {
            self.tfo = OnDemand::not_yet(STRATUM_NEEDED_BY);
            self.tfo.load_with(|| TfoHook::load(maps));
        }
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
        self.links
            .cover_exactly(roots, |cg| attach_to_cgroup(cg, &programs))
    }

    /// Attaches sockops to exactly `roots` (see
    /// `Backend::stratum_cover_exactly`).
    /// Before the Stratum programs are loaded no root can have a stratum
    /// rule (`prepare` runs first), so there is nothing to attach.
    pub fn stratum_cover_exactly(&mut self, roots: &[CgroupRef]) -> Result<(), Error> {
        let Some(stratum) = &self.stratum else {
            return match roots.first() {
                None => Ok(()),
                Some(_) => Err(LoadError::Unsupported {
                    what: "Stratum socket tracking".into(),
                    fix: format!("{STRATUM_NEEDED_BY} loads it (internal ordering error)"),
                }
                .into()),
            };
        };
        let sockops = [stratum.sockops()];
        self.stratum_links
            .cover_exactly(roots, |cg| attach_to_cgroup(cg, &sockops))
    }

    /// Whether `kind`'s matcher `m` is enforced, given the optional hooks.
    pub fn supports(&self, kind: BackendKind, m: MatcherKind) -> bool {
        kind.supports(m)
            && (m != MatcherKind::OpenMsr || self.device.is_some())
            && (m != MatcherKind::ExecCmdline || self.cmdline.ready().is_some())
    }

    /// Attaches the hooks only stratum rules need (see
    /// `Backend::policy_in_use`).
    /// The Fast Open check is optional: if its tracepoints cannot be
    /// attached, `fast_open()` says why from then on and the policy is
    /// applied without it (`enforcer run`/`watch` warn).
    pub fn stratum_in_use(&mut self) -> Result<(), Error> {
        if let Some(tfo) = self.tfo.ready_mut() {
            if let Err(e) = tfo.activate() {
                self.tfo = OnDemand::Off(format!("attaching its tracepoints failed: {e}"));
            }
        }
        Ok(())
    }

    /// Runs the event-path self-test program (see `Backend::self_test`).
    pub fn self_test(&self, policy_id: u32, rule_idx: u32, count: u32) -> Result<u32, Error> {
        self.self_test.emit(policy_id, rule_idx, count)
    }

    /// Whether TCP Fast Open payloads are judged; otherwise why not.
    pub fn fast_open(&self) -> Result<(), String> {
        self.tfo.status()
    }

    /// Whether the shared hooks send `kill`'s SIGKILL in-kernel for `kind`;
    /// `None` for kinds they do not handle.
    pub fn kills_in_kernel(&self, kind: RuleKind) -> Option<bool> {
        match kind {
            RuleKind::Stratum => Some(self.probe.skmsg_signal.available),
            // cgroup/dev programs cannot signal.
            RuleKind::Open => Some(false),
            _ => None,
        }
    }
}
