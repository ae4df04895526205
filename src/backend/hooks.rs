//! The hooks both backends share: Stratum (sockops + sk_msg, and the Fast
//! Open tracepoints where the lsm backend does not judge Stratum itself), the MSR device program and the cmdline exec program, plus the per-scope cgroup links.
//! A backend adds its own programs to the per-scope set.

use libbpf_rs::ProgramMut;

use super::{
    attach::{attach_to_cgroup, CgroupLinks},
    cmdline::CmdlineHook,
    device::DeviceHook,
    maps::SharedMaps,
    selftest::SelfTestHook,
    stratum::{JudgedSockets, StratumHook},
    tfo::TfoHook,
    BackendKind,
};
use crate::{
    cgroup::CgroupRef, compile::RuleKind, error::Error, probe::ProbeReport, profile::MatcherKind,
};

/// Why the Fast Open tracepoints are not loaded on the lsm backend.
const LSM_JUDGES_FAST_OPEN: &str = "judged by the lsm socket_sendmsg hook instead";

/// Shared hooks and the links that attach programs to covered cgroups.
pub(crate) struct SharedHooks {
    // Links go first: they reference the programs below.
    links: CgroupLinks,
    /// sockops, on the roots whose scopes have a stratum rule.
    stratum_links: CgroupLinks,
    stratum: StratumHook,
    /// `None` where this kernel refused the device program (open.msr).
    device: Option<DeviceHook>,
    /// `None` where this kernel refused the cmdline program.
    cmdline: Option<CmdlineHook>,
    /// The Fast Open tracepoints, or why this kernel refused them.
    tfo: Result<TfoHook, String>,
    self_test: SelfTestHook,
    signal_in_skmsg: bool,
    /// `EnforcerOptions::syscall_tracepoints`.
    syscall_tracepoints: bool,
}

impl SharedHooks {
    /// Loads the shared hooks on the shared maps; the device and cmdline
    /// hooks are optional (their rules are then reported as not enforced).
    /// `lsm_judges_stratum`: the lsm backend judges Stratum payloads in its
    /// socket_sendmsg hook (Fast Open included), so the sk_msg program only
    /// covers what bypasses it and the Fast Open tracepoints are not loaded.
    pub fn load(
        maps: &SharedMaps,
        report: &ProbeReport,
        syscall_tracepoints: bool,
        lsm_judges_stratum: bool,
    ) -> Result<Self, Error> {
        Ok(SharedHooks {
            links: CgroupLinks::default(),
            stratum_links: CgroupLinks::default(),
            stratum: StratumHook::load(maps, report, lsm_judges_stratum)?,
            device: DeviceHook::load(maps).ok(),
            cmdline: CmdlineHook::load(maps).ok(),
            tfo: if lsm_judges_stratum {
                Err(LSM_JUDGES_FAST_OPEN.into())
            } else if syscall_tracepoints {
                TfoHook::load(maps).map_err(|e| e.to_string())
            } else {
                Err(super::TRACEPOINTS_OFF.into())
            },
            self_test: SelfTestHook::load(maps)?,
            signal_in_skmsg: report.skmsg_signal.available,
            syscall_tracepoints,
        })
    }

    /// The lsm socket_sendmsg hook, which was to judge Fast Open payloads,
    /// could not be attached after all: the Fast Open tracepoints take
    /// over, as on a kernel that refuses that hook at load (attached by
    /// the next `stratum_in_use`).
    pub fn fast_open_without_lsm(&mut self, maps: &SharedMaps) {
        if matches!(&self.tfo, Err(why) if why == LSM_JUDGES_FAST_OPEN) {
            self.tfo = if self.syscall_tracepoints {
                TfoHook::load(maps).map_err(|e| e.to_string())
            } else {
                Err(super::TRACEPOINTS_OFF.into())
            };
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
    pub fn stratum_cover_exactly(&mut self, roots: &[CgroupRef]) -> Result<(), Error> {
        let sockops = [self.stratum.sockops()];
        self.stratum_links
            .cover_exactly(roots, |cg| attach_to_cgroup(cg, &sockops))
    }

    /// Whether `kind`'s matcher `m` is enforced, given the optional hooks.
    pub fn supports(&self, kind: BackendKind, m: MatcherKind) -> bool {
        kind.supports(m)
            && (m != MatcherKind::OpenMsr || self.device.is_some())
            && (m != MatcherKind::ExecCmdline || self.cmdline.is_some())
    }

    /// Attaches the hooks only stratum rules need (see
    /// `Backend::policy_in_use`).
    /// The Fast Open check is optional: if its tracepoints cannot be
    /// attached, `fast_open()` says why from then on and the policy is
    /// applied without it (`enforcer run`/`watch` warn).
    pub fn stratum_in_use(&mut self) -> Result<(), Error> {
        if let Ok(tfo) = &mut self.tfo {
            if let Err(e) = tfo.activate() {
                self.tfo = Err(format!("attaching its tracepoints failed: {e}"));
            }
        }
        Ok(())
    }

    /// Handles for releasing judged sockets from the Stratum send path.
    pub fn judged_sockets(&self) -> Result<JudgedSockets, Error> {
        self.stratum.judged_sockets()
    }

    /// Runs the event-path self-test program (see `Backend::self_test`).
    pub fn self_test(&self, policy_id: u32, rule_idx: u32, count: u32) -> Result<u32, Error> {
        self.self_test.emit(policy_id, rule_idx, count)
    }

    /// Whether TCP Fast Open payloads are judged; otherwise why not.
    pub fn fast_open(&self) -> Result<(), String> {
        self.tfo.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    /// Whether the shared hooks send `kill`'s SIGKILL in-kernel for `kind`;
    /// `None` for kinds they do not handle.
    pub fn kills_in_kernel(&self, kind: RuleKind) -> Option<bool> {
        match kind {
            RuleKind::Stratum => Some(self.signal_in_skmsg),
            // cgroup/dev programs cannot signal.
            RuleKind::Open => Some(false),
            _ => None,
        }
    }
}
