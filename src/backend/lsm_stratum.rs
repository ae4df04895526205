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

/// The loaded sleepable socket_sendmsg program, attached from the first
/// policy with a stratum rule on (an LSM hook runs for every send on the
/// host: a host whose profiles have no stratum rule should not pay for it).
pub(crate) struct LsmStratumHook {
    /// Owns the program and, once attached, its link (detached on drop).
    skel: Owned<LsmStratumSkel<'static>>,
    attached: bool,
}

impl LsmStratumHook {
    /// Loads the program on the shared maps (with the first policy that
    /// has a stratum rule; attached by [`Self::activate`]).
    pub fn load(maps: &SharedMaps) -> Result<Self, Error> {
        let skel = Owned::build(|storage| {
            let mut open = LsmStratumSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("lsm_stratum"))?;
        Ok(LsmStratumHook {
            skel,
            attached: false,
        })
    }

    /// Attaches the program (host-wide; it returns at once for tasks
    /// outside scopes and for judged sockets); a no-op once attached. It
    /// stays attached until the backend is dropped, as the Fast Open
    /// tracepoints do.
    pub fn activate(&mut self) -> Result<(), AttachError> {
        if !self.attached {
            self.skel.attach().map_err(|source| AttachError::Program {
                program: "mg_lsm_stratum",
                target: "lsm.s/socket_sendmsg".into(),
                source,
            })?;
            self.attached = true;
        }
        Ok(())
    }
}
