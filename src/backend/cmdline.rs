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
use crate::error::Error;

/// The loaded and attached cmdline program.
pub(crate) struct CmdlineHook {
    /// Its link (before the program it references).
    _links: Vec<crate::pin::HeldLink>,
    _skel: Owned<CmdlineSkel<'static>>,
}

impl CmdlineHook {
    /// Loads the program on the shared maps and attaches it.
    pub fn load(maps: &SharedMaps) -> Result<Self, Error> {
        let skel = Owned::build(|storage| {
            let mut open = CmdlineSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("cmdline"))?;
        let links =
            super::attach::attach_object(maps.pins(), skel.object(), "tp_btf/sched_process_exec")?;
        Ok(CmdlineHook {
            _links: links,
            _skel: skel,
        })
    }
}
