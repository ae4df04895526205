//! The TCP Fast Open check (bpf/tfo_tp.bpf.c): the sendto/sendmsg syscall
//! tracepoints read a `MSG_FASTOPEN` payload and mark the thread when it is
//! Stratum; the backend's connect hook then refuses the send. Shared by both
//! backends; optional (needs tracefs): without it, Fast Open payloads are
//! not judged (their destinations still are).

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

use super::{
    load_err,
    maps::SharedMaps,
    skel::{
        reuse_shared_maps,
        tfo_tp::{TfoTpSkel, TfoTpSkelBuilder},
        Owned,
    },
};
use crate::error::{AttachError, Error};

/// The loaded and attached Fast Open tracepoints.
pub(crate) struct TfoHook {
    _skel: Owned<TfoTpSkel<'static>>,
}

impl TfoHook {
    /// Loads the programs on the shared maps and attaches them.
    pub fn load(maps: &SharedMaps) -> Result<Self, Error> {
        super::tracefs::ensure_mounted()?;
        let mut skel = Owned::build(|storage| {
            let mut open = TfoTpSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("tfo_tp"))?;
        skel.attach().map_err(|source| AttachError::Program {
            program: "mg_tfo_sendto",
            target: "tracepoint/syscalls/sys_{enter,exit}_{sendto,sendmsg}".into(),
            source,
        })?;
        Ok(TfoHook { _skel: skel })
    }
}
