//! The processes of a scope: every pid in `cgroup.procs` of a cgroup and of
//! each of its descendants, with the cgroup it was found in.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::{cgroup::CgroupRef, error::CgroupError};

/// A process found in a cgroup of the scope.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// Process id (thread group id).
    pub pid: u32,
    /// The cgroup it was found in, absolute.
    pub cgroup: PathBuf,
}

/// Every process of `root` and its descendants, but for those of the
/// `exclude` subtrees (which need not exist). A cgroup removed while it is
/// walked is skipped (containers come and go); `root` itself must be a
/// cgroup v2 directory.
pub(crate) fn members(root: &Path, exclude: &[PathBuf]) -> Result<Vec<Member>, CgroupError> {
    let root = CgroupRef::open(root)?;
    // Resolved as `root` is, so that the paths compare.
    let exclude: Vec<PathBuf> = (exclude.iter())
        .filter_map(|p| CgroupRef::open(p).ok())
        .map(|c| c.path().to_path_buf())
        .collect();
    let mut out = Vec::new();
    let mut pending = vec![root.path().to_path_buf()];
    while let Some(dir) = pending.pop() {
        if exclude.contains(&dir) {
            continue;
        }
        if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
            out.extend(
                text.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .map(|pid| Member {
                        pid,
                        cgroup: dir.clone(),
                    }),
            );
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        // Children are the subdirectories; cgroupfs has no symlinks.
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                pending.push(entry.path());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_outside_cgroupfs_is_a_typed_error() {
        let err = members(Path::new("/proc"), &[]).unwrap_err();
        assert!(
            matches!(err, CgroupError::NotCgroup2 { .. }),
            "unexpected: {err:?}"
        );
    }
}
