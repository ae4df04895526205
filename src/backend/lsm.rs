//! The lsm backend: BPF-LSM hooks (`bprm_check_security`, `socket_connect`,
//! `socket_sendmsg`) refuse the syscall with EPERM before it takes effect.
//! The hooks are host-wide and find the task's scope themselves (nearest
//! cgroup ancestor in `mg_scopes`). Stratum inspection uses the same
//! sockops + sk_msg hook as the cgroup backend, attached to each scope.

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

use super::{
    attach::{attach_to_cgroup, CgroupLinks},
    cmdline::CmdlineHook,
    device::DeviceHook,
    load_err,
    maps::SharedMaps,
    skel::{
        lsm_exec::{LsmExecSkel, LsmExecSkelBuilder},
        lsm_net::{LsmNetSkel, LsmNetSkelBuilder},
        reuse_shared_maps, shared_maps_of, Owned,
    },
    stratum::StratumHook,
    Backend, BackendKind,
};
use crate::{
    cgroup::CgroupRef,
    compile::RuleKind,
    error::{AttachError, Error},
    probe::ProbeReport,
    profile::MatcherKind,
};

/// Loaded and attached BPF-LSM programs.
pub(crate) struct LsmBackend {
    // Attachments go first: they reference the programs below.
    links: CgroupLinks,
    maps: SharedMaps,
    /// Own the programs and their links (detached on drop).
    _net: Owned<LsmNetSkel<'static>>,
    _exec: Owned<LsmExecSkel<'static>>,
    stratum: StratumHook,
    /// `None` where this kernel refused the device program (open.msr).
    device: Option<DeviceHook>,
    /// `None` where this kernel refused the cmdline program.
    cmdline: Option<CmdlineHook>,
    signal_in_skmsg: bool,
}

fn attach_err(program: &'static str, hook: &'static str) -> impl Fn(libbpf_rs::Error) -> Error {
    move |source| {
        AttachError::Program {
            program,
            target: hook.into(),
            source,
        }
        .into()
    }
}

impl LsmBackend {
    /// Loads the objects (sharing one set of maps) and attaches the hooks.
    pub fn load(report: &ProbeReport) -> Result<Self, Error> {
        let signal_in_skmsg = report.skmsg_signal.available;
        let mut net = Owned::build(|storage| LsmNetSkelBuilder::default().open(storage)?.load())
            .map_err(load_err("lsm_net"))?;
        let maps = shared_maps_of!(net.maps).map_err(load_err("lsm_net"))?;
        let mut exec = Owned::build(|storage| {
            let mut open = LsmExecSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), &maps)?;
            open.load()
        })
        .map_err(load_err("lsm_exec"))?;
        let stratum = StratumHook::load(&maps, report)?;
        let device = DeviceHook::load(&maps).ok();
        let cmdline = CmdlineHook::load(&maps).ok();
        // Inert outside scopes: each hook returns at once unless a cgroup
        // ancestor of the task is in mg_scopes.
        net.attach().map_err(attach_err(
            "mg_lsm_net",
            "lsm/socket_connect, lsm/socket_sendmsg",
        ))?;
        exec.attach()
            .map_err(attach_err("mg_lsm_bprm_check", "lsm/bprm_check_security"))?;
        Ok(LsmBackend {
            links: CgroupLinks::default(),
            maps,
            _net: net,
            _exec: exec,
            stratum,
            device,
            cmdline,
            signal_in_skmsg,
        })
    }
}

impl Backend for LsmBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Lsm
    }

    fn maps(&self) -> &SharedMaps {
        &self.maps
    }

    fn cover_exactly(&mut self, roots: &[CgroupRef]) -> Result<(), Error> {
        // The LSM hooks see every task; the Stratum sockops and the device
        // program attach per scope.
        let mut programs = vec![self.stratum.sockops()];
        programs.extend(self.device.as_ref().map(DeviceHook::program));
        self.links
            .cover_exactly(roots, |cg| attach_to_cgroup(cg, &programs))
    }

    fn supports(&self, m: MatcherKind) -> bool {
        self.kind().supports(m)
            && (m != MatcherKind::OpenMsr || self.device.is_some())
            && (m != MatcherKind::ExecCmdline || self.cmdline.is_some())
    }

    fn kills_in_kernel(&self, kind: RuleKind) -> bool {
        match kind {
            RuleKind::Stratum => self.signal_in_skmsg,
            // cgroup/dev programs cannot signal.
            RuleKind::Open => false,
            _ => true,
        }
    }
}
