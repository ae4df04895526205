//! Killing a process found by a scan, through a pidfd: the pid is checked
//! to still be the process that was judged (same start time) once the
//! pidfd holds it, so a pid reused in between is never signalled.

use std::{
    os::fd::{FromRawFd, OwnedFd},
    time::Duration,
};

use super::process;

/// How long a kill waits to see the process exit.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// What a kill came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Killed {
    /// SIGKILL sent and the process exited.
    Yes,
    /// The process had exited already (or its pid is another's now).
    Gone,
    /// It could not be signalled, or it did not exit in time: why.
    Failed(String),
}

/// Sends SIGKILL to `pid` if it is still the process that started at
/// `start_time`, and waits (bounded) for it to exit.
pub(crate) fn kill(pid: u32, start_time: u64) -> Killed {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if raw < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Killed::Gone,
            _ => Killed::Failed(format!("pidfd_open: {e}")),
        };
    }
    // SAFETY: the kernel just gave us this descriptor; we own it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    // The pidfd pins one process; make sure it is the one judged.
    match process::stat(pid) {
        Some((_, start)) if start == start_time => {}
        _ => return Killed::Gone,
    }
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Killed::Gone,
            _ => Killed::Failed(format!("pidfd_send_signal: {e}")),
        };
    }
    // A pidfd polls readable once the process has exited.
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd we own.
    let n = unsafe { libc::poll(&mut pfd, 1, EXIT_WAIT.as_millis() as i32) };
    if n == 1 {
        Killed::Yes
    } else {
        Killed::Failed(format!(
            "SIGKILL sent, but it had not exited after {}s (stuck in the kernel?)",
            EXIT_WAIT.as_secs()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_a_child_and_spares_a_reused_pid() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id();
        let (_, start) = process::stat(pid).unwrap();
        // Another start time: taken for a reused pid, left alone.
        assert_eq!(kill(pid, start + 1), Killed::Gone);
        assert!(child.try_wait().unwrap().is_none(), "spared");
        assert_eq!(kill(pid, start), Killed::Yes);
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
    }
}
