//! The Stratum hook (bpf/stratum.bpf.c): sockops puts each new client socket
//! of a scope into a sockhash, and an sk_msg verdict judges its first bytes.
//! Needs no BPF LSM: the cgroup backend's Stratum judge, and on the lsm
//! backend the judge of sends that bypass its socket_sendmsg hook.

use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    MapCore, MapHandle, ProgramMut,
};

use super::{
    maps::SharedMaps,
    skel::{
        reuse_shared_maps,
        stratum::{StratumSkel, StratumSkelBuilder},
        Owned,
    },
};
use crate::{error::Error, probe::ProbeReport};

/// Sockhash entries past `EnforcerOptions::stratum_sockets`.
const SOCKHASH_HEADROOM: u32 = 1024;

/// Loaded Stratum programs; the sk_msg verdict is attached to the sockhash.
pub(crate) struct StratumHook {
    skel: Owned<StratumSkel<'static>>,
}

impl StratumHook {
    /// Loads the object on the shared maps and attaches the verdict program.
    ///
    /// What sk_msg programs may call on this kernel comes from the probe.
    /// `sockets`: see `EnforcerOptions::stratum_sockets`.
    pub fn load(maps: &SharedMaps, report: &ProbeReport, sockets: u32) -> Result<Self, Error> {
        // With an instance, the sockhash (whose user reference holds the
        // sk_msg program and the sockets it tracks) and the judged-socket
        // queue are pinned and reused: sockets tracked before a restart
        // stay judged and are released after it.
        let pins = maps.pins();
        let build = |pinned: bool| {
            Owned::build(|storage| {
                let mut open = StratumSkelBuilder::default().open(storage)?;
                if let (Some(pins), true) = (pins, pinned) {
                    open.maps
                        .mg_sockhash
                        .set_pin_path(pins.map_pin("mg_sockhash"))?;
                    open.maps
                        .mg_judged
                        .set_pin_path(pins.map_pin("mg_judged"))?;
                }
                // Room past the limit the connect hooks keep to, for sockets
                // found at apply and accepted ones.
                open.maps
                    .mg_sockhash
                    .set_max_entries(sockets.max(1).saturating_add(SOCKHASH_HEADROOM))?;
                if let Some(rodata) = open.maps.rodata_data.as_mut() {
                    rodata.mg_signal_in_skmsg = report.skmsg_signal.available;
                    rodata.mg_comm_in_skmsg = report.skmsg_comm.available;
                    rodata.mg_proc_in_prog = report.proc_in_cgroup.available;
                }
                reuse_shared_maps(open.open_object_mut(), maps)?;
                open.load()
            })
        };
        let skel = match build(true) {
            // Pinned by a run with another socket limit: those sockets go
            // back to the plain path (their first bytes were judged or are
            // judged by the old program until they close), new ones here.
            Err(_) if pins.is_some() => {
                for name in ["mg_sockhash", "mg_judged"] {
                    let _ = std::fs::remove_file(pins.expect("checked").map_pin(name));
                }
                build(true)
            }
            other => other,
        }
        .map_err(super::load_err("stratum"))?;
        maps.set_tracking_limit(sockets.max(1))?;
        let sockhash = skel.maps.mg_sockhash.as_fd().as_raw_fd();
        skel.progs
            .mg_stratum_msg
            .attach_sockmap(sockhash)
            .map_err(|source| {
                super::attach::program_err("mg_stratum_msg", "mg_sockhash".into(), source)
            })?;
        Ok(StratumHook { skel })
    }

    /// Handles for taking judged sockets out of the sockhash (see
    /// [`JudgedSockets`]).
    pub fn judged_sockets(&self) -> Result<JudgedSockets, Error> {
        let handle = |map, name: &'static str| {
            MapHandle::try_from(map).map_err(|source| super::attach::map_handle_err(name, source))
        };
        Ok(JudgedSockets {
            queue: handle(&self.skel.maps.mg_judged, "mg_judged")?,
            sockhash: handle(&self.skel.maps.mg_sockhash, "mg_sockhash")?,
        })
    }

    /// The sockhash the sk_msg verdict is attached to.
    pub fn sockhash(&self) -> &dyn libbpf_rs::MapCore {
        &self.skel.maps.mg_sockhash
    }

    /// The sockops program, attached to each covered cgroup.
    pub fn sockops(&self) -> (&'static str, &ProgramMut<'static>) {
        ("mg_sockops", &self.skel.progs.mg_sockops)
    }
}

/// The sockets whose first bytes the sk_msg verdict passed (their cookies,
/// queued in `mg_judged`) and the sockhash they are still in. Taking them
/// out sends their later sends through the plain TCP path again: the
/// sk_msg path costs every send of a socket in a sockhash (×1.15 per send
/// measured) even after the verdict stopped running.
pub(crate) struct JudgedSockets {
    queue: MapHandle,
    sockhash: MapHandle,
}

impl JudgedSockets {
    /// Drains the queue; returns how many sockets left the sockhash (the
    /// others had closed already).
    pub fn release(&self) -> u64 {
        let mut released = 0;
        let mut cookie = [0u8; 8];
        // At most one queue's worth per call, so a flood cannot pin the
        // event thread here.
        for _ in 0..16384 {
            if !matches!(
                self.queue.lookup_into_and_delete(&[], &mut cookie),
                Ok(true)
            ) {
                break;
            }
            if self.sockhash.delete(&cookie).is_ok() {
                released += 1;
            }
        }
        released
    }
}
