//! SIGINT, SIGTERM and SIGHUP, taken synchronously (`sigwait`) by whoever
//! needs them instead of by handlers.

use std::time::Duration;

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local value.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks the three signals in this thread, so that every thread started
/// afterwards (the enforcer's poller among them) inherits the mask and only
/// [`wait`]/[`wait_for`] see them. Called once there is something to protect
/// (before the enforcer starts), not at start-up: until then Ctrl-C must
/// still end the command, e.g. while it reads a profile.
pub fn block() {
    let set = signal_set();
    // SAFETY: changes this thread's mask only.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Unblocks the three signals; async-signal-safe, for a child between fork
/// and exec (it must not inherit the blocked mask).
pub fn unblock_in_child() {
    let set = signal_set();
    // SAFETY: sigprocmask is async-signal-safe; the set is a local value.
    unsafe { libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
}

/// Waits up to `timeout` for SIGINT, SIGTERM or SIGHUP; `None` on timeout.
pub fn wait_for(timeout: Duration) -> Option<i32> {
    let set = signal_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: sigtimedwait on a set that is blocked in all threads.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Waits up to `timeout` for `fd` to become readable, then takes SIGINT,
/// SIGTERM or SIGHUP if one is pending (`None` otherwise). A signal that
/// comes while it waits is taken when the wait ends (the signals are
/// blocked, so they do not cut `poll` short): at most `timeout` late.
pub fn wait_for_or_readable(fd: Option<std::os::fd::RawFd>, timeout: Duration) -> Option<i32> {
    let Some(fd) = fd else {
        return wait_for(timeout);
    };
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd on the stack; an error (EINTR) just ends the wait.
    unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    wait_for(Duration::ZERO)
}

/// Waits for SIGINT, SIGTERM or SIGHUP (blocked in every thread).
pub fn wait() -> i32 {
    let set = signal_set();
    let mut sig = 0;
    // SAFETY: sigwait on a set that is blocked in all threads.
    unsafe { libc::sigwait(&set, &mut sig) };
    sig
}
