//! The cgroup backend's loader-exec hook (bpf/exec_map_tp.bpf.c): the
//! `syscalls/sys_enter_mmap` and `sys_enter_mprotect` tracepoints kill a
//! task asking for an executable mapping of a file an exec rule refuses
//! (`ld.so ./xmrig`). Classic tracepoints are found through tracefs, which
//! is mounted at /sys/kernel/tracing when no tracefs is mounted yet.
//! Optional: without it, loader exec is reported as not enforced.

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

use super::{
    load_err,
    maps::SharedMaps,
    skel::{
        exec_map_tp::{ExecMapTpSkel, ExecMapTpSkelBuilder},
        reuse_shared_maps, Owned,
    },
};
use crate::error::{AttachError, Error};

/// The loaded and attached mapping tracepoints.
pub(crate) struct ExecMapHook {
    _skel: Owned<ExecMapTpSkel<'static>>,
}

impl ExecMapHook {
    /// Loads the programs on the shared maps and attaches them.
    pub fn load(maps: &SharedMaps) -> Result<Self, Error> {
        super::tracefs::ensure_mounted()?;
        let mut skel = Owned::build(|storage| {
            let mut open = ExecMapTpSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("exec_map_tp"))?;
        skel.attach().map_err(|source| AttachError::Program {
            program: "mg_mmap_tp",
            target: "tracepoint/syscalls/sys_enter_mmap, sys_enter_mprotect".into(),
            source,
        })?;
        Ok(ExecMapHook { _skel: skel })
    }
}
