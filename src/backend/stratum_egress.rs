//! The egress Stratum judge (bpf/stratum_egress.bpf.c, #25): a
//! `cgroup_skb/egress` program, attached to each scope whose policy has a
//! stratum rule, reads what each TCP socket sends from the packets leaving
//! it. Unlike the sk_msg path (stratum.rs) it tracks no socket before its
//! first byte and moves none onto another send path, so it needs no
//! sockhash, no socket limit, no release from userspace and no adoption of
//! sockets connected before apply (their next packet meets it).
//!
//! On the lsm backend it stands behind the socket_sendmsg hook (#19): the
//! hook reads a send from the caller's buffer before the kernel copies it,
//! and the kernel may wait in between (for the socket's lock, which a
//! receive faulting on a userfaultfd page holds as long as its owner
//! likes); what the kernel copied is read here.

use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    MapHandle, ProgramMut,
};

use super::{
    load_err,
    maps::SharedMaps,
    refused_sockets::RefusedSockets,
    skel::{
        reuse_shared_maps,
        stratum_egress::{StratumEgressSkel, StratumEgressSkelBuilder},
        Owned,
    },
};
use crate::error::Error;

/// The loaded egress judge.
pub(crate) struct EgressJudge {
    skel: Owned<StratumEgressSkel<'static>>,
}

impl EgressJudge {
    /// Loads the program on the shared maps. `audit_is_the_hooks`: it
    /// stands behind the lsm backend's socket_sendmsg hook, which sees every
    /// send on this kernel and reports audited scopes itself; this program
    /// reads what the kernel copied of each send (a buffer rewritten in
    /// between is refused here) and leaves those scopes alone. Behind a
    /// hook that sendfile and splice bypass (before Linux 6.5), and on the
    /// cgroup backend, it reads audited scopes too.
    pub fn load(maps: &SharedMaps, audit_is_the_hooks: bool) -> Result<Self, Error> {
        // With an instance, the sockets' judges (the reader's state and
        // verdict of each) and the refused-socket queue are pinned and
        // reused: a restarted judge goes on reading each socket where the
        // last one stopped (a method split across the restart is still
        // read whole) and keeps its verdicts.
        let pins = maps.pins();
        let build = |pinned: bool| {
            Owned::build(|storage| {
                let mut open = StratumEgressSkelBuilder::default().open(storage)?;
                if let (Some(pins), true) = (pins, pinned) {
                    for map in [&mut open.maps.mg_egress_sk, &mut open.maps.mg_refused] {
                        let name = map.name().to_string_lossy().into_owned();
                        map.set_pin_path(pins.map_pin(&name))?;
                    }
                }
                // A packet may leave in softirq context, where the current
                // task is not the sender: nothing is read from it.
                if let Some(rodata) = open.maps.rodata_data.as_mut() {
                    rodata.mg_proc_in_prog = false;
                    rodata.mg_audit_is_the_hooks = audit_is_the_hooks;
                }
                reuse_shared_maps(open.open_object_mut(), maps)?;
                open.load()
            })
        };
        let skel = match build(true) {
            // Pinned by another version whose layout differs: start afresh.
            Err(_) if pins.is_some() => {
                for name in ["mg_egress_sk", "mg_refused"] {
                    let _ = std::fs::remove_file(pins.expect("checked").map_pin(name));
                }
                build(true)
            }
            other => other,
        }
        .map_err(load_err("stratum_egress"))?;
        Ok(EgressJudge { skel })
    }

    /// The queue of the sockets it refused, to be destroyed from userspace.
    pub fn refused_sockets(&self) -> Result<RefusedSockets, Error> {
        MapHandle::try_from(&self.skel.maps.mg_refused)
            .map(RefusedSockets::new)
            .map_err(|source| super::attach::map_handle_err("mg_refused", source))
    }

    /// The program, attached to each covered cgroup with a stratum rule.
    pub fn program(&self) -> (&'static str, &ProgramMut<'static>) {
        ("mg_stratum_egress", &self.skel.progs.mg_stratum_egress)
    }
}
