//! Sockets a scope connected before its stratum rule was applied. sockops
//! sees only connections made after it is attached, so when it is attached
//! to a cgroup, the established TCP sockets that the processes of that
//! subtree already hold are put into the sockhash too: their next send is
//! read by the sk_msg verdict like any other (from wherever their stream
//! is). A socket found by its fd in `/proc/<pid>/fd` is duplicated with
//! `pidfd_getfd` (any network namespace), so containers with their own are
//! covered. A socket that cannot be put into the sockhash is shut down:
//! never left to send unjudged.

use std::{
    collections::HashSet,
    fs,
    os::fd::{AsRawFd, OwnedFd},
    path::Path,
};

use libbpf_rs::{MapCore, MapFlags};

use crate::{
    cgroup::CgroupRef,
    pidfd::{getsockopt, PidFd},
};

/// What adopting a cgroup's sockets did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Adopted {
    /// Sockets put into the sockhash.
    pub tracked: u64,
    /// Sockets that could not be, and were shut down.
    pub shut_down: u64,
}

/// Puts every established TCP socket held by a process of `root`'s subtree
/// into `sockhash` (keyed by socket cookie, as sockops does).
pub(crate) fn adopt_sockets(root: &CgroupRef, sockhash: &dyn MapCore) -> Adopted {
    let mut done = Adopted::default();
    let mut seen = HashSet::new();
    for pid in pids_under(root.path()) {
        let fds = socket_fds(pid);
        let Some(pidfd) = (!fds.is_empty()).then(|| PidFd::open(pid)).flatten() else {
            continue;
        };
        for fd in fds {
            let Some(sock) = pidfd.dup(fd) else {
                continue;
            };
            let Some(cookie) = established_tcp_cookie(&sock) else {
                continue;
            };
            if !seen.insert(cookie) {
                continue;
            }
            let value = (sock.as_raw_fd() as u64).to_ne_bytes();
            match sockhash.update(&cookie.to_ne_bytes(), &value, MapFlags::NO_EXIST) {
                Ok(()) => done.tracked += 1,
                // Put there by sockops already (connected after attach).
                Err(e) if e.kind() == libbpf_rs::ErrorKind::AlreadyExists => {}
                Err(_) => {
                    // SAFETY: shutdown on an fd this function owns.
                    unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_RDWR) };
                    done.shut_down += 1;
                }
            }
        }
    }
    done
}

/// The processes of a cgroup subtree (a process may come or go meanwhile:
/// one that joins later connects after sockops is attached).
pub(crate) fn pids_under(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        if let Ok(procs) = fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(entries) = fs::read_dir(&d) {
            dirs.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    pids
}

/// The fds of `pid` that are sockets.
fn socket_fds(pid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The cookie of an established IPv4/IPv6 TCP socket; None for others.
fn established_tcp_cookie(sock: &OwnedFd) -> Option<u64> {
    let fd = sock.as_raw_fd();
    let domain: i32 = getsockopt(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let protocol: i32 = getsockopt(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
    if !(domain == libc::AF_INET || domain == libc::AF_INET6) || protocol != libc::IPPROTO_TCP {
        return None;
    }
    let info: libc::tcp_info = getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO)?;
    // TCP_ESTABLISHED (include/net/tcp_states.h).
    if info.tcpi_state != 1 {
        return None;
    }
    getsockopt::<u64>(fd, libc::SOL_SOCKET, libc::SO_COOKIE)
}
