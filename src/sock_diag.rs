//! What the egress judge's socket cleanup and the behaviour detector's
//! connection counters share of NETLINK_SOCK_DIAG: its request type, and a
//! sock_diag socket in another network namespace (sock_diag answers only
//! about the namespace of the socket that asks).

use std::{fs::File, io, os::fd::AsRawFd};

use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket};

/// sock_diag's query request (`SOCK_DIAG_BY_FAMILY`:
/// include/uapi/linux/sock_diag.h).
pub(crate) const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// A sock_diag socket in this process's network namespace.
pub(crate) fn socket() -> io::Result<Socket> {
    Socket::new(NETLINK_SOCK_DIAG)
}

/// A sock_diag socket in the network namespace `ns`. Made on a thread of
/// its own, which enters the namespace and ends: the caller's thread never
/// changes namespace. Callers do not keep it, so that it does not keep a
/// container's namespace alive.
pub(crate) fn socket_in(ns: &File) -> io::Result<Socket> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a namespace file we hold open; affects only
            // this short-lived thread.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            socket()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}
