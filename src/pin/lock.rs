//! The lock that keeps one instance to one live enforcer.
//!
//! A POSIX record lock (`fcntl(F_SETLK)`) on the state directory's `lock`
//! file, not `flock`: an `flock` belongs to the open file description,
//! which a forked child shares until it execs or exits. A child forked
//! without exec (a container runtime's helper, a test's child process)
//! while an enforcer lived kept its instance locked after the enforcer
//! had gone, and a restarted enforcer could not adopt its own pins
//! (seen in the lsm VM suite, a test thread's child holding another's
//! lock). Record locks belong to the process and are not inherited.
//!
//! Record locks do not exclude a second lock from the same process, and
//! closing any descriptor of the file drops them; so each process also
//! keeps the names it holds, and checks them before it opens the file. An
//! older minerguard's `flock` is checked for too (and let go at once).

use std::{
    collections::HashSet,
    fs, io,
    os::fd::AsRawFd,
    path::Path,
    sync::{Mutex, OnceLock},
};

use super::{io_err, PinError};

/// The instances this process holds.
fn held() -> &'static Mutex<HashSet<String>> {
    static HELD: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    HELD.get_or_init(Mutex::default)
}

/// Instance `name`'s lock, held until dropped.
#[derive(Debug)]
pub(crate) struct InstanceLock {
    name: String,
    /// Closed in `drop` before the name is forgotten.
    file: Option<fs::File>,
}

impl InstanceLock {
    /// Takes instance `name`'s lock at `path` without waiting.
    pub fn take(name: &str, path: &Path) -> Result<InstanceLock, PinError> {
        // Checked before the file is opened: opening and closing it again
        // here would drop the lock this process already holds.
        if !held()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string())
        {
            return Err(PinError::InUse {
                name: name.to_string(),
                pid: format!(" (this process, pid {})", std::process::id()),
            });
        }
        match Self::lock_file(name, path) {
            Ok(file) => Ok(InstanceLock {
                name: name.to_string(),
                file: Some(file),
            }),
            Err(e) => {
                forget(name);
                Err(e)
            }
        }
    }

    fn lock_file(name: &str, path: &Path) -> Result<fs::File, PinError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err("opening", path))?;
        let mut whole = whole_file(libc::F_WRLCK);
        // SAFETY: fcntl on a descriptor this function owns, with a flock
        // struct that lives across the call.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &whole) } == 0 {
            return match held_by_an_older_build(&file) {
                false => Ok(file),
                true => Err(PinError::InUse {
                    name: name.to_string(),
                    pid: " (an older minerguard, which locks with flock)".into(),
                }),
            };
        }
        let err = io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) {
            return Err(io_err("locking", path)(err));
        }
        // Who holds it, for the message; the kernel knows.
        // SAFETY: as above; F_GETLK writes the holder into `whole`.
        let pid = if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut whole) } == 0
            && whole.l_type != libc::F_UNLCK as libc::c_short
            && whole.l_pid > 0
        {
            format!(" (pid {})", whole.l_pid)
        } else {
            String::new()
        };
        Err(PinError::InUse {
            name: name.to_string(),
            pid,
        })
    }
}

/// Whether a minerguard from before record locks holds the instance: it
/// took an `flock`, which a record lock does not exclude (a rolling update
/// can start this build while the older one still runs). Tried and let go
/// at once, so that no child forked later shares it.
fn held_by_an_older_build(file: &fs::File) -> bool {
    // SAFETY: flock on a descriptor the caller owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK);
    }
    // SAFETY: as above.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
    false
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Closing releases the record lock; only then may another take in
        // this process open the file (its lock would otherwise be dropped
        // with this descriptor: record locks are the process's).
        drop(self.file.take());
        forget(&self.name);
    }
}

fn forget(name: &str) {
    held()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(name);
}

/// A record lock of kind `kind` over the whole file.
fn whole_file(kind: libc::c_int) -> libc::flock {
    // SAFETY: flock is plain data; zero is a valid value of every field.
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = kind as libc::c_short;
    l.l_whence = libc::SEEK_SET as libc::c_short;
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of this test's own, removed when dropped.
    struct Scratch(std::path::PathBuf);
    impl Scratch {
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    fn scratch() -> Scratch {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "minerguard-lock-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    #[test]
    fn a_second_take_in_this_process_is_refused_until_the_first_goes() {
        let dir = scratch();
        let path = dir.path().join("lock");
        let name = format!("lock-test-same-{}", std::process::id());
        let first = InstanceLock::take(&name, &path).expect("first");
        match InstanceLock::take(&name, &path) {
            Err(PinError::InUse { pid, .. }) => assert!(pid.contains("this process"), "{pid}"),
            other => panic!("second take: {other:?}"),
        }
        drop(first);
        InstanceLock::take(&name, &path).expect("after the first went");
    }

    #[test]
    fn a_forked_child_does_not_keep_the_lock() {
        let dir = scratch();
        let path = dir.path().join("lock");
        let name = format!("lock-test-fork-{}", std::process::id());
        let first = InstanceLock::take(&name, &path).expect("first");
        // SAFETY: the child only sleeps and exits.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork");
        if child == 0 {
            unsafe {
                libc::sleep(5);
                libc::_exit(0)
            };
        }
        drop(first);
        let again = InstanceLock::take(&name, &path);
        // SAFETY: the child is ours.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        again.expect("the child forked while the lock was held does not hold it");
    }

    #[test]
    fn an_older_build_holding_an_flock_keeps_it() {
        let dir = scratch();
        let path = dir.path().join("lock");
        let older = fs::File::create(&path).expect("lock file");
        // SAFETY: flock on a descriptor this test owns (an older build's
        // lock, taken through another open file description).
        assert_eq!(
            unsafe { libc::flock(older.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
            0
        );
        let name = format!("lock-test-older-{}", std::process::id());
        match InstanceLock::take(&name, &path) {
            Err(PinError::InUse { pid, .. }) => assert!(pid.contains("older"), "{pid}"),
            other => panic!("take while an flock is held: {other:?}"),
        }
        drop(older);
        InstanceLock::take(&name, &path).expect("once the older build let go");
    }

    #[test]
    fn another_process_holding_it_is_named() {
        let dir = scratch();
        let path = dir.path().join("lock");
        let (ready_r, ready_w) = {
            let mut fds = [0; 2];
            // SAFETY: a pipe into a two-element array.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            (fds[0], fds[1])
        };
        // SAFETY: the child takes a record lock, says so and sleeps.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork");
        if child == 0 {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .or_else(|_| fs::File::create(&path));
            let ok = file
                .map(|f| {
                    let l = whole_file(libc::F_WRLCK);
                    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &l) };
                    std::mem::forget(f);
                    rc == 0
                })
                .unwrap_or(false);
            unsafe {
                libc::write(ready_w, [ok as u8].as_ptr().cast(), 1);
                libc::sleep(10);
                libc::_exit(0)
            };
        }
        let mut ok = [0u8];
        // SAFETY: reads one byte into a one-byte buffer.
        assert_eq!(unsafe { libc::read(ready_r, ok.as_mut_ptr().cast(), 1) }, 1);
        let taken = InstanceLock::take(&format!("lock-test-other-{child}"), &path);
        // SAFETY: the child is ours.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
            libc::close(ready_r);
            libc::close(ready_w);
        }
        assert_eq!(ok[0], 1, "the child took the lock");
        match taken {
            Err(PinError::InUse { pid, .. }) => assert_eq!(pid, format!(" (pid {child})")),
            other => panic!("take while another process holds it: {other:?}"),
        }
    }
}
