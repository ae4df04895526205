//! The TCP Fast Open check (bpf/fast_open_tp.bpf.c): the sendto/sendmsg syscall
//! tracepoints read a `MSG_FASTOPEN` payload and mark the thread when it is
//! Stratum; the backend's connect hook then refuses the send. Shared by both
//! backends; optional (needs tracefs): without it, Fast Open payloads are
//! not judged (their destinations still are). Loaded with the Stratum
//! programs and attached when the first policy with a stratum rule is
//! applied (the sendto tracepoint runs for
//! every send() on the host), and kept until the enforcer is dropped.

use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use super::{
    load_err,
    maps::SharedMaps,
    skel::{
        fast_open_tp::{FastOpenTpSkel, FastOpenTpSkelBuilder},
        reuse_shared_maps, Owned,
    },
};
use crate::error::Error;

/// The loaded Fast Open tracepoints, attached while active.
pub(crate) struct FastOpenHook {
    // Links go first: they reference the programs.
    /// Our own links (not the skeleton's, which libbpf would destroy again
    /// with the skeleton): dropped (detached) with the hook.
    links: Vec<crate::pin::HeldLink>,
    /// The instance links are pinned as, if any.
    pins: Option<std::sync::Arc<crate::pin::PinDir>>,
    skel: Owned<FastOpenTpSkel<'static>>,
}

impl FastOpenHook {
    /// Loads the programs on the shared maps (the verifier accepting them is
    /// the check that this kernel takes them); attached by [`Self::activate`].
    ///
    /// No trial attach here: a detached link stays attached while any
    /// process forked meanwhile still holds its fd (fork copies every fd),
    /// and attaching the same program again then fails with EEXIST.
    pub fn load(maps: &SharedMaps) -> Result<Self, Error> {
        super::tracefs::ensure_mounted()?;
        let skel = Owned::build(|storage| {
            let mut open = FastOpenTpSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("fast_open_tp"))?;
        Ok(FastOpenHook {
            links: Vec::new(),
            pins: maps.pins().cloned(),
            skel,
        })
    }

    /// Attaches the tracepoints if they are not attached yet. They stay
    /// attached until the hook is dropped.
    pub fn activate(&mut self) -> Result<(), Error> {
        if !self.links.is_empty() {
            return Ok(());
        }
        let progs = &self.skel.progs;
        let links = super::attach::attach_all(
            self.pins.as_ref(),
            &[
                ("mg_tfo_sendto", &progs.mg_tfo_sendto),
                ("mg_tfo_sendmsg", &progs.mg_tfo_sendmsg),
                ("mg_tfo_sendmmsg", &progs.mg_tfo_sendmmsg),
            ],
            "tracepoint/syscalls/sys_enter_sendto, sys_enter_sendmsg, sys_enter_sendmmsg",
        )?;
        self.links = links;
        Ok(())
    }
}
