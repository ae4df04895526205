//! Killing every process of one cgroup: what a `kill-container` rule does
//! to the cgroup of the task it caught (the task's container under
//! Kubernetes or Podman; under `minerguard run`, the run's cgroup), and what
//! anything else that finds a miner (a scan) can reuse.
//!
//! [`find_cgroup`] names the cgroup an event's `cgroup_id` stands for;
//! [`kill_cgroup`] kills its processes. Neither needs the BPF programs.

use std::{
    fs,
    os::unix::fs::DirEntryExt,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{cgroup::CgroupRef, error::CgroupError};

/// How [`kill_cgroup`] killed a cgroup's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KillMethod {
    /// `1` written to its `cgroup.kill` (Linux 5.14+): the kernel sent
    /// SIGKILL to every process at once, and a fork racing the kill fails.
    CgroupKill,
    /// SIGKILL to each pid its `cgroup.procs` listed, round after round
    /// until it listed none: where `cgroup.kill` is missing, or would reach
    /// further than the cgroup (it has child cgroups).
    Procs,
}

impl KillMethod {
    /// `cgroup.kill` or `cgroup.procs`: the file the kill went through.
    pub fn as_str(self) -> &'static str {
        match self {
            KillMethod::CgroupKill => "cgroup.kill",
            KillMethod::Procs => "cgroup.procs",
        }
    }
}

/// Why a cgroup was not found or not killed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupKillError {
    /// No cgroup with this id at or below `under` (it was removed, e.g.
    /// when its last process exited and the runtime cleaned up).
    #[error("no cgroup with id {id} under {under} (removed?)")]
    NotFound {
        /// The cgroup id looked for.
        id: u64,
        /// Where it was looked for.
        under: PathBuf,
    },
    /// The path is not a cgroup v2 directory, could not be resolved, or
    /// writing its `cgroup.kill` or reading its `cgroup.procs` failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The root cgroup holds every process of the host: never killed.
    #[error("{0} is the root cgroup: never killed")]
    Root(PathBuf),
    /// The cgroup holds the calling process (the enforcer itself).
    #[error("{path} holds this process (pid {pid}): not killed")]
    HoldsSelf {
        /// The cgroup.
        path: PathBuf,
        /// The calling process.
        pid: u32,
    },
    /// The cgroup holds init (pid 1).
    #[error("{0} holds init (pid 1): not killed")]
    HoldsInit(PathBuf),
    /// Processes were still listed after every round of SIGKILL (they
    /// forked faster than they were killed, or could not be killed).
    #[error("{left} processes still in {path} after {rounds} rounds of SIGKILL")]
    Survivors {
        /// The cgroup.
        path: PathBuf,
        /// How many `cgroup.procs` listed last.
        left: usize,
        /// Rounds made.
        rounds: u32,
    },
}

/// Directories [`find_cgroup`] visits at most (a Kubernetes node has a
/// few thousand cgroups).
const MAX_VISITED: usize = 1 << 16;

/// Rounds of SIGKILL [`KillMethod::Procs`] makes before it gives up, and the
/// pause between two: at most about 0.2 s, on the event thread.
const PROCS_ROUNDS: u32 = 100;
const PROCS_PAUSE: Duration = Duration::from_millis(2);

/// The cgroup whose kernel id is `id` (an event's `cgroup_id`, what
/// `bpf_get_current_cgroup_id()` returns), looked for at `under` and below
/// it: `under` is an enforced scope, whose tasks' cgroups are the scope's
/// own or its descendants. [`CgroupKillError::NotFound`] when there is
/// none (removed since).
///
/// A cgroup's id is the inode number of its directory; the walk compares
/// each directory entry's inode number (one `getdents` per directory, no
/// `stat`) and visits at most 65,536 directories. Ids are not reused, so
/// the cgroup found is the one the id named.
pub fn find_cgroup(under: &Path, id: u64) -> Result<PathBuf, CgroupKillError> {
    find(under, id).ok_or_else(|| CgroupKillError::NotFound {
        id,
        under: under.to_path_buf(),
    })
}

fn find(under: &Path, id: u64) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    if fs::metadata(under).ok()?.ino() == id {
        return Some(under.to_path_buf());
    }
    let mut todo = vec![under.to_path_buf()];
    let mut visited = 0;
    while let Some(dir) = todo.pop() {
        visited += 1;
        if visited > MAX_VISITED {
            return None;
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue; // removed meanwhile
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.ino() == id {
                return Some(entry.path());
            }
            todo.push(entry.path());
        }
    }
    None
}

/// Sends SIGKILL to every process of the cgroup at `path` (absolute, or
/// relative to the cgroup v2 mount).
///
/// A cgroup without child cgroups is killed through its `cgroup.kill`
/// (Linux 5.14+: at once, forks included); where that file is missing, and
/// for a cgroup with child cgroups (where `cgroup.kill` would kill the
/// children too, maybe other containers: a scope's root above them), each
/// pid its `cgroup.procs` lists is killed, round after round (at most 100,
/// 2 ms apart) until it lists none. Child cgroups are never touched.
///
/// Refused, with nothing killed: the root cgroup, a cgroup that holds the
/// calling process (the enforcer never kills itself), and one that holds
/// init (pid 1). Both are looked for among the pids the cgroup's
/// `cgroup.procs` lists, which is right whatever cgroup namespace the
/// caller is in (an agent in a pod sees the host's tree through a mount,
/// while its `/proc/self/cgroup` is relative to its own namespace; a pid
/// outside the caller's pid namespace is listed as 0 and never signalled).
/// Returns once the signals are sent (with `cgroup.kill`, the processes may
/// take a moment to exit).
pub fn kill_cgroup(path: &Path) -> Result<KillMethod, CgroupKillError> {
    let cgroup = CgroupRef::open(path)?;
    let path = cgroup.path();
    refused(&cgroup, &listed_pids(path)?, std::process::id())?;
    let kill_file = path.join("cgroup.kill");
    if !has_child_cgroups(path) && kill_file.exists() {
        return fs::write(&kill_file, "1")
            .map(|()| KillMethod::CgroupKill)
            .map_err(|source| {
                CgroupError::Io {
                    action: "writing 1 to",
                    path: kill_file,
                    source,
                }
                .into()
            });
    }
    kill_listed(path)
}

/// Why `cgroup`, whose `cgroup.procs` lists `listed`, may not be killed
/// by process `own`, if it may not.
fn refused(cgroup: &CgroupRef, listed: &[u32], own: u32) -> Result<(), CgroupKillError> {
    let path = cgroup.path().to_path_buf();
    if cgroup.level() == 0 {
        Err(CgroupKillError::Root(path))
    } else if listed.contains(&own) {
        Err(CgroupKillError::HoldsSelf { path, pid: own })
    } else if listed.contains(&1) {
        Err(CgroupKillError::HoldsInit(path))
    } else {
        Ok(())
    }
}

/// [`KillMethod::Procs`]: SIGKILL to what `cgroup.procs` lists until it
/// lists nothing.
fn kill_listed(path: &Path) -> Result<KillMethod, CgroupKillError> {
    let mut left = 0;
    for _ in 0..PROCS_ROUNDS {
        let listed = listed_pids(path)?;
        left = listed.len();
        if left == 0 {
            return Ok(KillMethod::Procs);
        }
        // 0 stands for a process outside this pid namespace (kill(0)
        // would signal this process group); this process and init were
        // refused above and cannot be moved in since.
        for pid in listed
            .into_iter()
            .filter(|p| *p > 1 && *p != std::process::id())
        {
            // SAFETY: plain syscall on a positive pid.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        std::thread::sleep(PROCS_PAUSE);
    }
    Err(CgroupKillError::Survivors {
        path: path.to_path_buf(),
        left,
        rounds: PROCS_ROUNDS,
    })
}

/// Whether `path` has a child cgroup (a subdirectory).
fn has_child_cgroups(path: &Path) -> bool {
    fs::read_dir(path).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_type().is_ok_and(|t| t.is_dir()))
    })
}

/// The pids `path`'s own `cgroup.procs` lists (0 for each process outside
/// this pid namespace).
fn listed_pids(path: &Path) -> Result<Vec<u32>, CgroupKillError> {
    let procs = path.join("cgroup.procs");
    let text = fs::read_to_string(&procs).map_err(|source| CgroupError::Io {
        action: "reading",
        path: procs,
        source,
    })?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::cgroup::OwnedCgroup;

    #[test]
    fn method_names_are_the_files() {
        assert_eq!(KillMethod::CgroupKill.as_str(), "cgroup.kill");
        assert_eq!(KillMethod::Procs.as_str(), "cgroup.procs");
    }

    #[test]
    fn the_root_this_process_and_init_are_refused() {
        let Ok(root) = CgroupRef::root() else {
            return; // no cgroup v2 here
        };
        assert!(matches!(
            refused(&root, &[], 7),
            Err(CgroupKillError::Root(_))
        ));
        // Any child that still exists when opened: other tests' cgroups
        // come and go beside this one.
        let Some(child) = fs::read_dir(root.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .find_map(|e| CgroupRef::open(e.path()).ok())
        else {
            return;
        };
        assert!(matches!(
            refused(&child, &[3, 7, 9], 7),
            Err(CgroupKillError::HoldsSelf { pid: 7, .. })
        ));
        assert!(matches!(
            refused(&child, &[0, 1], 7),
            Err(CgroupKillError::HoldsInit(_))
        ));
        assert!(refused(&child, &[0, 3, 9], 7).is_ok());
    }

    /// Run in a process of its own (by the test below): tries to kill the
    /// cgroup it is in. A bug kills only that process's fresh cgroup.
    #[test]
    fn helper_kill_own_cgroup() {
        let Some(path) = std::env::var_os("MG_TEST_KILL_OWN_CGROUP") else {
            return; // not run by the test below
        };
        let err = kill_cgroup(Path::new(&path)).expect_err("its own cgroup was killed");
        assert!(
            matches!(err, CgroupKillError::HoldsSelf { pid, .. } if pid == std::process::id()),
            "{err}"
        );
    }

    #[test]
    fn a_process_never_kills_its_own_cgroup() {
        if unsafe { libc::geteuid() } != 0 {
            return; // creating a cgroup needs root
        }
        let Ok(cgroup) = OwnedCgroup::create_in_root("minerguard-unit-kill-self") else {
            return;
        };
        let procs = cgroup.procs_file().unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "cgroup_kill::tests::helper_kill_own_cgroup",
            "--test-threads=1",
        ])
        .env("MG_TEST_KILL_OWN_CGROUP", cgroup.cgroup().path());
        // SAFETY: join_cgroup_raw is a single write(2).
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                crate::cgroup::join_cgroup_raw(&procs)
            });
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
    }

    #[test]
    fn finds_a_cgroup_by_id_and_not_a_missing_one() {
        let Ok(root) = CgroupRef::root() else {
            return;
        };
        assert_eq!(find(root.path(), root.id()).as_deref(), Some(root.path()));
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let Ok(parent) = OwnedCgroup::create_in_root("minerguard-unit-find") else {
            return;
        };
        let child = OwnedCgroup::create_under(parent.cgroup(), "child").unwrap();
        let grandchild = OwnedCgroup::create_under(child.cgroup(), "leaf").unwrap();
        for cg in [&parent, &child, &grandchild] {
            assert_eq!(
                find(root.path(), cg.cgroup().id()).as_deref(),
                Some(cg.cgroup().path())
            );
            assert_eq!(
                find_cgroup(parent.cgroup().path(), cg.cgroup().id()).unwrap(),
                cg.cgroup().path()
            );
        }
        assert_eq!(find(child.cgroup().path(), parent.cgroup().id()), None);
        let err = find_cgroup(parent.cgroup().path(), u64::MAX).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("no cgroup with id 18446744073709551615 under"),
            "{err}"
        );
    }
}
