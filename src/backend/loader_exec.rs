//! The cgroup backend's loader-exec hook (bpf/loader_exec_tp.bpf.c): the
//! `syscalls/sys_enter_mmap`, `sys_enter_mprotect` and
//! `sys_enter_pkey_mprotect` tracepoints kill a
//! task asking for an executable mapping of a file an exec rule refuses
//! (`ld.so ./xmrig`). Classic tracepoints are found through tracefs, which
//! is mounted at /sys/kernel/tracing when no tracefs is mounted yet.
//! Optional: without it, loader exec is reported as not enforced. Loaded
//! and attached with the first policy whose exec rules judge files: while
//! any `syscalls/*` tracepoint is attached, every syscall of every task on
//! the host takes the tracing slow path, so an enforcer with no such policy
//! should not attach them. Kept attached until
//! the enforcer is dropped (detaching waits for an RCU grace period).

use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use super::{
    load_err,
    maps::SharedMaps,
    skel::{
        loader_exec_tp::{LoaderExecTpSkel, LoaderExecTpSkelBuilder},
        reuse_shared_maps, Owned,
    },
};
use crate::error::Error;

/// The loaded mapping tracepoints, attached while active.
pub(crate) struct LoaderExecHook {
    // Links go first: they reference the programs.
    /// Our own links, detached with the hook.
    links: Vec<crate::pin::HeldLink>,
    /// The instance links are pinned as, if any.
    pins: Option<std::sync::Arc<crate::pin::PinDir>>,
    skel: Owned<LoaderExecTpSkel<'static>>,
}

impl LoaderExecHook {
    /// Loads the programs on the shared maps (mounting tracefs if needed).
    pub fn load(maps: &SharedMaps) -> Result<Self, Error> {
        super::tracefs::ensure_mounted()?;
        let skel = Owned::build(|storage| {
            let mut open = LoaderExecTpSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("loader_exec_tp"))?;
        Ok(LoaderExecHook {
            links: Vec::new(),
            pins: maps.pins().cloned(),
            skel,
        })
    }

    /// Attaches the three tracepoints if they are not attached yet; all or
    /// none (a failed attach drops the links made before it).
    pub fn activate(&mut self) -> Result<(), Error> {
        if !self.links.is_empty() {
            return Ok(());
        }
        let progs = &self.skel.progs;
        let mut links = super::attach::attach_all(
            self.pins.as_ref(),
            &[
                ("mg_mmap_tp", &progs.mg_mmap_tp),
                ("mg_mprotect_tp", &progs.mg_mprotect_tp),
            ],
            "tracepoint/syscalls/sys_enter_mmap, sys_enter_mprotect",
        )?;
        // pkey_mprotect's first three arguments are mprotect's: the same
        // program, a second link (and the pin name it always had).
        let prog = &progs.mg_mprotect_tp;
        links.push(crate::pin::attach_pinned(
            self.pins.as_ref(),
            "mg_pkey_mprotect_tp",
            prog,
            false,
            || {
                prog.attach_tracepoint(
                    libbpf_rs::TracepointCategory::Syscalls,
                    "sys_enter_pkey_mprotect",
                )
                .map_err(|source| {
                    super::attach::program_err(
                        "mg_mprotect_tp",
                        "tracepoint/syscalls/sys_enter_pkey_mprotect".into(),
                        source,
                    )
                })
            },
        )?);
        self.links = links;
        Ok(())
    }
}
