//! Another process's descriptors, duplicated into this one through a pidfd
//! (`pidfd_open` + `pidfd_getfd`, Linux 5.6; needs ptrace access to the
//! process, which root has unless Yama forbids all attaching), and the
//! options read from a socket duplicated so. A duplicate works whatever
//! network namespace the socket lives in, and the owner sees nothing.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A pidfd: a handle on one process that a reused pid cannot redirect.
pub(crate) struct PidFd(OwnedFd);

impl PidFd {
    /// A pidfd on `pid`; `None` when it has exited or the kernel has none.
    pub fn open(pid: i32) -> Option<Self> {
        // SAFETY: a plain syscall; the returned fd is owned exactly once.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a fresh descriptor this function owns.
        (fd >= 0).then(|| PidFd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// A duplicate of the process's descriptor `fd`; `None` when it is
    /// closed or access is refused.
    pub fn dup(&self, fd: i32) -> Option<OwnedFd> {
        // SAFETY: a plain syscall; the returned fd is owned exactly once.
        let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, self.0.as_raw_fd(), fd, 0) };
        // SAFETY: a fresh descriptor this function owns.
        (dup >= 0).then(|| unsafe { OwnedFd::from_raw_fd(dup as i32) })
    }
}

/// A socket option of plain data (`T` zero-initialised, filled up to its
/// size); `None` when the socket has no such option.
pub(crate) fn getsockopt<T: Copy>(fd: i32, level: i32, name: i32) -> Option<T> {
    let mut value = std::mem::MaybeUninit::<T>::zeroed();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value`.
    let rc = unsafe { libc::getsockopt(fd, level, name, value.as_mut_ptr().cast(), &mut len) };
    // SAFETY: zero-initialised, and the options read here are plain data.
    (rc == 0).then(|| unsafe { value.assume_init() })
}
