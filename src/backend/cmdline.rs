//! The cmdline hook (bpf/cmdline.bpf.c): `tp_btf/sched_process_exec`
//! searching the new argv for `exec.cmdline` substrings. Host-wide but inert
//! outside scopes whose policy has patterns; loaded and attached with the
//! first such policy (its verification is the largest of an enforcer's
//! start). Optional: where a kernel refuses it, `exec.cmdline` rules are
//! reported as not enforced.

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

use super::{
    load_err,
    maps::SharedMaps,
    skel::{
        cmdline::{CmdlineSkel, CmdlineSkelBuilder},
        reuse_shared_maps, Owned,
    },
};
use crate::error::{AttachError, Error};

/// The loaded and attached cmdline program.
pub(crate) struct CmdlineHook {
    _skel: Owned<CmdlineSkel<'static>>,
}

impl CmdlineHook {
    /// Loads the program on the shared maps and attaches it.
    pub fn load(maps: &SharedMaps) -> Result<Self, Error> {
        let mut skel = Owned::build(|storage| {
            let mut open = CmdlineSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("cmdline"))?;
        skel.attach().map_err(|source| AttachError::Program {
            program: "mg_cmdline_tp",
            target: "tp_btf/sched_process_exec".into(),
            source,
        })?;
        Ok(CmdlineHook { _skel: skel })
    }
}
