//! tracefs, which classic tracepoints (`tracepoint/syscalls/...`) need:
//! libbpf finds their ids there.

use std::{ffi::CString, path::Path};

use crate::error::{AttachError, Error};

/// Where tracefs is mounted when nothing has mounted it yet.
const TRACEFS: &str = "/sys/kernel/tracing";

/// Mounts tracefs at /sys/kernel/tracing unless a tracefs is mounted
/// somewhere (libbpf looks there, then under debugfs).
pub(crate) fn ensure_mounted() -> Result<(), Error> {
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

/// Whether this kernel has the syscall tracepoint `event` (e.g.
/// `sys_enter_open`, which arm64 lacks), where tracefs or debugfs shows it.
pub(crate) fn has_syscall_event(event: &str) -> bool {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .any(|root| Path::new(root).join("events/syscalls").join(event).is_dir())
}
