//! The cgroup backend's loader-exec hook (bpf/exec_map_tp.bpf.c): the
//! `syscalls/sys_enter_mmap` and `sys_enter_mprotect` tracepoints kill a
//! task asking for an executable mapping of a file an exec rule refuses
//! (`ld.so ./xmrig`). Classic tracepoints are found through tracefs, which
//! is mounted at /sys/kernel/tracing when no tracefs is mounted yet.
//! Optional: without it, loader exec is reported as not enforced.

use std::{ffi::CString, path::Path};

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

use super::{
    load_err,
    maps::SharedMaps,
    skel::{
        exec_map_tp::{ExecMapTpSkel, ExecMapTpSkelBuilder},
        reuse_shared_maps, Owned,
    },
};
use crate::error::{AttachError, Error};

/// Where tracefs is mounted when nothing has mounted it yet.
const TRACEFS: &str = "/sys/kernel/tracing";

/// The loaded and attached mapping tracepoints.
pub(crate) struct ExecMapHook {
    _skel: Owned<ExecMapTpSkel<'static>>,
}

impl ExecMapHook {
    /// Loads the programs on the shared maps and attaches them.
    pub fn load(maps: &SharedMaps) -> Result<Self, Error> {
        ensure_tracefs()?;
        let mut skel = Owned::build(|storage| {
            let mut open = ExecMapTpSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("exec_map_tp"))?;
        skel.attach().map_err(|source| AttachError::Program {
            program: "mg_mmap_tp",
            target: "tracepoint/syscalls/sys_enter_mmap, sys_enter_mprotect".into(),
            source,
        })?;
        Ok(ExecMapHook { _skel: skel })
    }
}

/// Mounts tracefs at /sys/kernel/tracing unless a tracefs is mounted
/// somewhere (libbpf looks there, then under debugfs).
fn ensure_tracefs() -> Result<(), Error> {
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.contains(" - tracefs ")))
        .unwrap_or(false);
    if mounted || !Path::new(TRACEFS).is_dir() {
        return Ok(());
    }
    let target = CString::new(TRACEFS).expect("no NUL");
    // SAFETY: plain mount(2) with NUL-terminated strings that outlive it.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(AttachError::Tracefs {
            path: TRACEFS.into(),
            source: std::io::Error::last_os_error(),
        }
        .into());
    }
    Ok(())
}
