//! The lsm backend's Stratum judge (bpf/lsm_stratum.bpf.c): a sleepable
//! `socket_sendmsg` program that reads the first bytes a TCP socket sends
//! from the caller's buffers and refuses a Stratum send with EPERM, Fast
//! Open sends included. Optional: where a kernel refuses it, the shared
//! sk_msg program (EACCES) and the Fast Open tracepoints judge instead.

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

use super::{
    load_err,
    maps::SharedMaps,
    skel::{
        lsm_stratum::{LsmStratumSkel, LsmStratumSkelBuilder},
        reuse_shared_maps, Owned,
    },
};
use crate::error::{AttachError, Error};

/// The loaded and attached sleepable socket_sendmsg program.
pub(crate) struct LsmStratumHook {
    /// Owns the program and its link (detached on drop).
    _skel: Owned<LsmStratumSkel<'static>>,
}

impl LsmStratumHook {
    /// Loads the program on the shared maps and attaches it (host-wide; it
    /// returns at once for tasks outside scopes and for judged sockets).
    pub fn load(maps: &SharedMaps) -> Result<Self, Error> {
        let mut skel = Owned::build(|storage| {
            let mut open = LsmStratumSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("lsm_stratum"))?;
        skel.attach().map_err(|source| AttachError::Program {
            program: "mg_lsm_stratum",
            target: "lsm.s/socket_sendmsg".into(),
            source,
        })?;
        Ok(LsmStratumHook { _skel: skel })
    }
}
