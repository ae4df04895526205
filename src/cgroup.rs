//! cgroup v2: finding the mount, naming cgroups by path and id, and creating
//! the short-lived cgroups that `enforcer run` and the tests use.

use std::{
    ffi::CString,
    fs,
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::MetadataExt},
    },
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use crate::{error::CgroupError, mountinfo};

/// `statfs` magic of the cgroup2 filesystem (include/uapi/linux/magic.h).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The cgroup v2 mount point, read from `/proc/self/mountinfo`.
pub fn cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let mounts = mountinfo::read().map_err(|source| CgroupError::Io {
        action: "reading",
        path: "/proc/self/mountinfo".into(),
        source,
    })?;
    mounts
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| m.mount_point)
        .ok_or(CgroupError::NoCgroup2Mount)
}

/// A cgroup v2 directory, identified by path, kernel id and depth.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CgroupRef {
    path: PathBuf,
    id: u64,
    level: u32,
}

impl CgroupRef {
    /// Resolves `path` (absolute, or relative to the cgroup v2 mount).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CgroupError> {
        let mount = cgroup2_mount()?;
        Self::open_under(&mount, path.as_ref())
    }

    /// The root of the cgroup v2 hierarchy (scope of the whole host).
    pub fn root() -> Result<Self, CgroupError> {
        let mount = cgroup2_mount()?;
        Self::open_under(&mount, &mount)
    }

    fn open_under(mount: &Path, path: &Path) -> Result<Self, CgroupError> {
        let joined = if path.is_absolute() {
            path.to_path_buf()
        } else {
            mount.join(path)
        };
        let not_cgroup = || CgroupError::NotCgroup2 {
            path: path.to_path_buf(),
            mount: mount.to_path_buf(),
        };
        let canonical = fs::canonicalize(&joined).map_err(|source| CgroupError::Io {
            action: "resolving cgroup",
            path: joined.clone(),
            source,
        })?;
        let rel = canonical.strip_prefix(mount).map_err(|_| not_cgroup())?;
        if !is_cgroup2_dir(&canonical) {
            return Err(not_cgroup());
        }
        let meta = fs::metadata(&canonical).map_err(|source| CgroupError::Io {
            action: "stat",
            path: canonical.clone(),
            source,
        })?;
        Ok(Self {
            level: rel.components().count() as u32,
            // On cgroup2 the directory's inode number is the kernel cgroup id
            // (what bpf_get_current_cgroup_id() returns).
            id: meta.ino(),
            path: canonical,
        })
    }

    /// Absolute path of the cgroup directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Kernel cgroup id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Depth below the cgroup v2 root (the root is 0).
    pub fn level(&self) -> u32 {
        self.level
    }

    /// Whether `self` is `other` or one of its ancestors.
    pub fn contains(&self, other: &CgroupRef) -> bool {
        other.path.starts_with(&self.path)
    }

    /// Opens the directory for attaching cgroup-BPF programs.
    pub(crate) fn open_dir(&self) -> Result<OwnedFd, CgroupError> {
        fs::File::open(&self.path)
            .map(OwnedFd::from)
            .map_err(|source| CgroupError::Io {
                action: "opening cgroup",
                path: self.path.clone(),
                source,
            })
    }
}

fn is_cgroup2_dir(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == CGROUP2_SUPER_MAGIC
}

/// A cgroup this process created; killed and removed on drop.
#[derive(Debug)]
pub struct OwnedCgroup {
    cgroup: CgroupRef,
    removed: bool,
}

static NEXT_CGROUP: AtomicU32 = AtomicU32::new(0);

impl OwnedCgroup {
    /// Creates a fresh cgroup named `<prefix>-<pid>-<n>` under `parent`.
    pub fn create_under(parent: &CgroupRef, prefix: &str) -> Result<Self, CgroupError> {
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT_CGROUP.fetch_add(1, Ordering::Relaxed)
        );
        Self::create(parent.path().join(name))
    }

    /// Creates a fresh cgroup directly under the cgroup v2 root.
    pub fn create_in_root(prefix: &str) -> Result<Self, CgroupError> {
        Self::create_under(&CgroupRef::root()?, prefix)
    }

    /// Creates the cgroup at `path` (which must not exist).
    pub fn create(path: PathBuf) -> Result<Self, CgroupError> {
        fs::create_dir(&path).map_err(|source| CgroupError::Io {
            action: "creating cgroup",
            path: path.clone(),
            source,
        })?;
        match CgroupRef::open(&path) {
            Ok(cgroup) => Ok(Self {
                cgroup,
                removed: false,
            }),
            Err(e) => {
                let _ = fs::remove_dir(&path);
                Err(e)
            }
        }
    }

    /// The cgroup.
    pub fn cgroup(&self) -> &CgroupRef {
        &self.cgroup
    }

    /// Opens `cgroup.procs` for writing: writing "0" to it moves the writer
    /// in, which a forked child can do before exec.
    pub fn procs_file(&self) -> Result<OwnedFd, CgroupError> {
        let path = self.cgroup.path.join("cgroup.procs");
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map(OwnedFd::from)
            .map_err(|source| CgroupError::Io {
                action: "opening",
                path,
                source,
            })
    }

    /// Kills every process inside (and in child cgroups), then removes the
    /// cgroup and its children.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.removed = true;
        remove_tree(self.cgroup.path())
    }
}

impl Drop for OwnedCgroup {
    fn drop(&mut self) {
        if !self.removed {
            let _ = remove_tree(self.cgroup.path());
        }
    }
}

/// Kills the processes of a cgroup subtree and removes its directories.
fn remove_tree(path: &Path) -> Result<(), CgroupError> {
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| CgroupError::Io {
            action,
            path,
            source,
        }
    };
    // cgroup.kill (Linux 5.14+) kills the whole subtree; older kernels get
    // a walk over cgroup.procs.
    if fs::write(path.join("cgroup.kill"), "1").is_err() {
        kill_procs(path);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for entry in fs::read_dir(path).map_err(io("listing", path))?.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&entry.path())?;
            }
        }
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            // EBUSY until the killed tasks have exited.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                kill_procs(path);
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("removing cgroup", path)(e)),
        }
    }
}

fn kill_procs(path: &Path) {
    if let Ok(procs) = fs::read_to_string(path.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: plain syscall.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is `procs`.
///
/// Async-signal-safe (one `write`), so it may run in a forked child before
/// exec, e.g. from `CommandExt::pre_exec`.
pub fn join_cgroup_raw(procs: &impl AsRawFd) -> std::io::Result<()> {
    // SAFETY: writes two bytes from a static buffer to an fd we borrow.
    let n = unsafe { libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) };
    if n == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
