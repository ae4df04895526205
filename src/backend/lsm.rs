//! The lsm backend: BPF-LSM hooks (`bprm_check_security`, `socket_connect`)
//! refuse the syscall with EPERM before it takes effect. The hooks are
//! host-wide and find the task's scope themselves (nearest cgroup ancestor in
//! `mg_scopes`), so a scope needs no attachment of its own.

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

use super::{
    maps::SharedMaps,
    skel::{
        lsm_exec::{LsmExecSkel, LsmExecSkelBuilder},
        lsm_net::{LsmNetSkel, LsmNetSkelBuilder},
        reuse_shared_maps, shared_maps_of, Owned,
    },
    Backend, BackendKind,
};
use crate::{
    cgroup::CgroupRef,
    compile::RuleKind,
    error::{AttachError, Error, LoadError},
};

/// Loaded and attached BPF-LSM programs.
pub(crate) struct LsmBackend {
    maps: SharedMaps,
    /// Own the programs and their links (detached on drop).
    _net: Owned<LsmNetSkel<'static>>,
    _exec: Owned<LsmExecSkel<'static>>,
}

fn load_err(object: &'static str) -> impl Fn(libbpf_rs::Error) -> LoadError {
    move |source| LoadError::Object { object, source }
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
    /// Loads both objects (sharing one set of maps) and attaches the hooks.
    pub fn load() -> Result<Self, Error> {
        let mut net = Owned::build(|storage| LsmNetSkelBuilder::default().open(storage)?.load())
            .map_err(load_err("lsm_net"))?;
        let maps = shared_maps_of!(net.maps).map_err(load_err("lsm_net"))?;
        let mut exec = Owned::build(|storage| {
            let mut open = LsmExecSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), &maps)?;
            open.load()
        })
        .map_err(load_err("lsm_exec"))?;
        // Inert outside scopes: each hook returns at once unless a cgroup
        // ancestor of the task is in mg_scopes.
        net.attach()
            .map_err(attach_err("mg_lsm_connect", "lsm/socket_connect"))?;
        exec.attach()
            .map_err(attach_err("mg_lsm_bprm_check", "lsm/bprm_check_security"))?;
        Ok(LsmBackend {
            maps,
            _net: net,
            _exec: exec,
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

    fn cover_exactly(&mut self, _roots: &[CgroupRef]) -> Result<(), Error> {
        // Host-wide hooks already see every task.
        Ok(())
    }

    fn kills_in_kernel(&self, _kind: RuleKind) -> bool {
        true
    }
}
