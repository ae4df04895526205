//! File descriptors: an enforcer holds a few hundred of them (each BPF map,
//! program and link of each loaded object is one), so a process left at the
//! usual soft limit of 1,024 can run out after a few enforcers.

use std::io;

use crate::error::{CgroupError, Error, LoadError};

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit and
/// returns the new soft limit. The CLI does this at start; a program that
/// embeds the library and keeps several enforcers may want to as well
/// (a raised soft limit only matters to code that still uses `select(2)`).
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = current_limit()?;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid, initialised rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// Fewer free descriptors than this after a failed load or attach: the
/// failure is put down to the limit. An object holds a few dozen while it
/// loads (its own descriptor of each shared map, its BTF, its programs),
/// and libbpf has closed them by the time it reports.
const HEADROOM: u64 = 64;

/// `source` as a [`LoadError::DescriptorLimit`] if it is EMFILE, or if the
/// process is left with fewer than [`HEADROOM`] free descriptors; else
/// unchanged. libbpf keeps the errno only in the message of the error it
/// returns (its kind is `Other`), and it does not always keep EMFILE: a
/// map whose creation with BTF fails (EMFILE) is tried again without BTF,
/// and a socket-storage map then fails with EINVAL.
pub(crate) fn classify(
    during: impl FnOnce() -> String,
    source: libbpf_rs::Error,
) -> Result<LoadError, libbpf_rs::Error> {
    let emfile = format!("(os error {})", libc::EMFILE);
    let soft_limit = current_limit().map_or(0, |l| l.rlim_cur);
    if !format!("{source:#}").contains(&emfile) && !short_of_descriptors(soft_limit) {
        return Err(source);
    }
    Ok(LoadError::DescriptorLimit {
        during: during(),
        soft_limit,
        source,
    })
}

/// Whether fewer than [`HEADROOM`] descriptors are free below `soft_limit`
/// (true also when /proc/self/fd cannot even be opened for lack of one).
fn short_of_descriptors(soft_limit: u64) -> bool {
    match std::fs::read_dir("/proc/self/fd") {
        // The count includes the directory's own descriptor.
        Ok(dir) => (dir.count() as u64).saturating_add(HEADROOM) > soft_limit,
        Err(e) => e.raw_os_error() == Some(libc::EMFILE),
    }
}

/// `source` as a [`LoadError::DescriptorLimit`] when it is EMFILE (this
/// process is out of descriptors), else `source` back. For the steps
/// around loading and attaching that open files of their own (a scope's
/// cgroup, the mount table, a command's pipes): there too the cause is
/// the limit, and the fix is the same.
pub fn out_of_descriptors(
    during: impl FnOnce() -> String,
    source: io::Error,
) -> Result<Error, io::Error> {
    if source.raw_os_error() != Some(libc::EMFILE) {
        return Err(source);
    }
    Ok(LoadError::DescriptorLimit {
        during: during(),
        soft_limit: current_limit().map_or(0, |l| l.rlim_cur),
        source: source.into(),
    }
    .into())
}

/// `e` as an [`Error`], a [`LoadError::DescriptorLimit`] when a file
/// operation on a cgroup failed with EMFILE (see [`out_of_descriptors`]).
pub fn cgroup_failure(during: impl FnOnce() -> String, e: CgroupError) -> Error {
    match e {
        CgroupError::Io {
            action,
            path,
            source,
        } => out_of_descriptors(
            || format!("{} ({action} {})", during(), path.display()),
            source,
        )
        .unwrap_or_else(|source| {
            CgroupError::Io {
                action,
                path,
                source,
            }
            .into()
        }),
        other => other.into(),
    }
}

fn current_limit() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit_and_exhaustion_is_seen() {
        let soft = raise_open_file_limit().expect("raise");
        assert_eq!(soft, current_limit().unwrap().rlim_max);
    }

    #[test]
    fn emfile_or_no_headroom_is_a_descriptor_limit() {
        let emfile = libbpf_rs::Error::from_raw_os_error(libc::EMFILE);
        match classify(|| "loading BPF object `x`".into(), emfile) {
            Ok(e @ LoadError::DescriptorLimit { .. }) => {
                let text = e.to_string();
                assert!(text.starts_with("loading BPF object `x` failed"), "{text}");
                assert!(text.contains("RLIMIT_NOFILE"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        // With the test process's descriptors well below its limit.
        raise_open_file_limit().expect("raise");
        let eperm = libbpf_rs::Error::from_raw_os_error(libc::EPERM);
        assert!(classify(|| "x".into(), eperm).is_err());
    }

    #[test]
    fn a_cgroup_operation_out_of_descriptors_says_so() {
        let io = |errno| CgroupError::Io {
            action: "reading",
            path: "/proc/self/mountinfo".into(),
            source: io::Error::from_raw_os_error(errno),
        };
        let e = cgroup_failure(|| "attaching to cgroup /x".into(), io(libc::EMFILE));
        assert!(e.is_descriptor_limit(), "{e}");
        let text = e.to_string();
        assert!(
            text.starts_with("attaching to cgroup /x (reading /proc/self/mountinfo) failed: this process used up its file descriptors"),
            "{text}"
        );
        let e = cgroup_failure(|| "attaching to cgroup /x".into(), io(libc::ENOENT));
        assert!(matches!(e, Error::Cgroup(CgroupError::Io { .. })), "{e}");
        let e = out_of_descriptors(|| "x".into(), io::Error::from_raw_os_error(libc::EACCES));
        assert!(e.is_err());
    }
}
