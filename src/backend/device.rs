//! The device hook (bpf/device.bpf.c): a cgroup/dev program, attached to
//! each scope, that refuses opens of the CPU MSR devices. Optional: where a
//! kernel refuses the program, `open.msr` rules are reported as not enforced
//! and everything else still loads.

use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    ProgramMut,
};

use super::{
    load_err,
    maps::SharedMaps,
    skel::{
        device::{DeviceSkel, DeviceSkelBuilder},
        reuse_shared_maps, Owned,
    },
};
use crate::error::Error;

/// The loaded device program.
pub(crate) struct DeviceHook {
    skel: Owned<DeviceSkel<'static>>,
}

impl DeviceHook {
    /// Loads the program on the shared maps. `proc_in_prog`: the kernel
    /// lets it read the current task (the probe's `proc_in_cgroup`).
    pub fn load(maps: &SharedMaps, proc_in_prog: bool) -> Result<Self, Error> {
        let skel = Owned::build(|storage| {
            let mut open = DeviceSkelBuilder::default().open(storage)?;
            if let Some(rodata) = open.maps.rodata_data.as_mut() {
                rodata.mg_proc_in_prog = proc_in_prog;
            }
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("device"))?;
        Ok(DeviceHook { skel })
    }

    /// The program, attached to each covered cgroup.
    pub fn program(&self) -> (&'static str, &ProgramMut<'static>) {
        ("mg_device", &self.skel.progs.mg_device)
    }
}
