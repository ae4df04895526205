//! The cgroup backend: `cgroup/connect4/6` and `cgroup/sendmsg4/6` attached
//! to each scope's cgroup, one `tp_btf/sched_process_exec` program for exec
//! rules, the mmap/mprotect/pkey_mprotect syscall tracepoints for loader exec, and the hooks shared with the lsm backend (Stratum, MSR, cmdline).
//! Needs neither BPF LSM nor trampolines (fentry), so it runs on kernels that
//! refuse those.

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

use super::{
    attach::attach_object,
    checks::CheckStatus,
    hooks::{SharedHooks, StratumJudge},
    load_err,
    loader_exec::LoaderExecHook,
    maps::SharedMaps,
    on_demand::OnDemand,
    skel::{
        exec_tp::{ExecTpSkel, ExecTpSkelBuilder},
        net_cgroup::{NetCgroupSkel, NetCgroupSkelBuilder},
        reuse_shared_maps, Owned,
    },
    Backend, BackendKind, SocketWork,
};
use crate::{
    cgroup::CgroupRef,
    compile::{KernelPolicy, RuleKind},
    error::Error,
    pin::HeldLink,
    probe::ProbeReport,
};

/// Loaded cgroup-backend programs (their per-cgroup links live in the
/// shared hooks' `CgroupLinks`).
pub(crate) struct CgroupBackend {
    /// The exec tracepoint's link (before the program it references).
    _exec_link: Vec<HeldLink>,
    /// Owns the exec tracepoint program.
    _exec: Owned<ExecTpSkel<'static>>,
    net: Owned<NetCgroupSkel<'static>>,
    /// The loader-exec tracepoints (loaded with the first policy whose exec
    /// rules judge files), or why not.
    loader_exec: OnDemand<LoaderExecHook>,
    signal_in_cgroup: bool,
    /// What judges Stratum (`EnforcerOptions::cgroup_stratum_judge`).
    stratum_judge: StratumJudge,
}

impl CgroupBackend {
    /// Loads the objects on the shared maps and attaches the
    /// (scope-filtered) exec tracepoint. Which helpers the kernel allows
    /// where comes from the probe. `syscall_tracepoints`: see
    /// `EnforcerOptions::syscall_tracepoints`; `stratum_judge`: see
    /// `EnforcerOptions::cgroup_stratum_judge`.
    pub fn load(
        maps: &SharedMaps,
        report: &ProbeReport,
        syscall_tracepoints: bool,
        stratum_judge: crate::CgroupStratumJudge,
    ) -> Result<Self, Error> {
        let signal_in_cgroup = report.cgroup_signal.available;
        maps.set_egress_judge(matches!(stratum_judge, crate::CgroupStratumJudge::Egress))?;
        let net = Owned::build(|storage| {
            let mut open = NetCgroupSkelBuilder::default().open(storage)?;
            if let Some(rodata) = open.maps.rodata_data.as_mut() {
                rodata.mg_signal_in_cgroup = signal_in_cgroup;
                rodata.mg_proc_in_prog = report.proc_in_cgroup.available;
            }
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("net_cgroup"))?;
        let exec = Owned::build(|storage| {
            let mut open = ExecTpSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("exec_tp"))?;
        // Host-wide hook, but inert outside scopes: the program returns at
        // once unless a cgroup ancestor of the task is in mg_scopes.
        let exec_link = attach_object(maps.pins(), exec.object(), "tp_btf/sched_process_exec")?;
        let loader_exec = if syscall_tracepoints {
            OnDemand::not_yet(
                "the first profile whose exec rules name programs, files, directories or memfd",
            )
        } else {
            OnDemand::Off(super::TRACEPOINTS_OFF.into())
        };
        Ok(CgroupBackend {
            _exec_link: exec_link,
            _exec: exec,
            net,
            loader_exec,
            signal_in_cgroup,
            stratum_judge: match stratum_judge {
                crate::CgroupStratumJudge::SkMsg => StratumJudge::SkMsg,
                crate::CgroupStratumJudge::Egress => StratumJudge::Egress,
            },
        })
    }
}

impl Backend for CgroupBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Cgroup
    }

    fn cover_exactly(&mut self, hooks: &mut SharedHooks, roots: &[CgroupRef]) -> Result<(), Error> {
        let progs = &self.net.progs;
        let own = [
            ("mg_connect4", &progs.mg_connect4),
            ("mg_connect6", &progs.mg_connect6),
            ("mg_sendmsg4", &progs.mg_sendmsg4),
            ("mg_sendmsg6", &progs.mg_sendmsg6),
        ];
        hooks.cover_exactly(roots, &own)
    }

    fn stratum_cover_exactly(
        &mut self,
        hooks: &mut SharedHooks,
        roots: &[CgroupRef],
    ) -> Result<(), Error> {
        // Only stratum scopes refuse MPTCP sockets, and only the sk-msg
        // judge refuses TCP_FASTOPEN_CONNECT: elsewhere neither program
        // runs, so socket() and setsockopt() pay nothing (#25).
        let progs = &self.net.progs;
        let mut own = vec![("mg_sock_create", &progs.mg_sock_create)];
        if self.stratum_judge == StratumJudge::SkMsg {
            own.push(("mg_setsockopt", &progs.mg_setsockopt));
        }
        hooks.stratum_cover_exactly(roots, &own)
    }

    fn loader_exec(&self) -> CheckStatus {
        self.loader_exec.status()
    }

    fn prepare(
        &mut self,
        maps: &SharedMaps,
        hooks: &mut SharedHooks,
        policy: &KernelPolicy,
    ) -> Result<Vec<SocketWork>, Error> {
        if policy.judges_mapped_files() {
            self.loader_exec.load_with(|| LoaderExecHook::load(maps))?;
        }
        hooks.prepare(maps, policy, self.stratum_judge, false)
    }

    fn activate(
        &mut self,
        _maps: &SharedMaps,
        hooks: &mut SharedHooks,
        policy: &KernelPolicy,
    ) -> Result<(), Error> {
        if policy.judges_mapped_files() {
            if let Some(hook) = self.loader_exec.ready_mut() {
                if let Err(e) = hook.activate() {
                    self.loader_exec
                        .attach_failed("attaching its tracepoints", e)?;
                }
            }
        }
        if policy.stratum.is_some() {
            hooks.stratum_in_use()?;
        }
        Ok(())
    }

    fn stratum_in_lsm(&self, _hooks: &SharedHooks) -> CheckStatus {
        let reason = match self.stratum_judge {
            StratumJudge::Egress => "the cgroup backend judges Stratum in its egress program",
            _ => "the cgroup backend judges Stratum in its sk_msg program",
        };
        CheckStatus::Off {
            reason: reason.into(),
        }
    }

    fn kills_in_kernel(&self, hooks: &SharedHooks, kind: RuleKind) -> bool {
        match kind {
            RuleKind::Connect => self.signal_in_cgroup,
            other => hooks.kills_in_kernel(other).unwrap_or(true),
        }
    }
}
