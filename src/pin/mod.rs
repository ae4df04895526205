//! Pinned enforcement: an enforcer *instance* keeps its maps and links in
//! bpffs under `/sys/fs/bpf/minerguard/<instance>/`, so the kernel keeps
//! enforcing when its process ends for any reason, SIGKILL included, until
//! the instance is removed on purpose ([`remove`], `minerguard remove`,
//! [`Enforcer::detach`](crate::Enforcer::detach)). A new enforcer of the same
//! instance adopts that state instead of building its own: the same maps
//! (policy, scopes, per-task and per-socket state, and the events nobody
//! read), the same links where its programs are the same, and an atomic swap
//! where they differ (see `docs/no-gap-design.md`).
//!
//! Layout:
//! - `maps-<abi digest>/<map>`: every shared map, and the Stratum sockhash
//!   (its user reference holds the sk_msg program). The digest is the
//!   layout generation: maps of another minerguard build are never reused.
//! - `links/<program>` (host-wide hooks) and `links/cg<id>-<program>`
//!   (per-cgroup programs). (bpffs refuses names with a `.`.)
//! - `/run/minerguard/<instance>/state.json`: the scopes (cgroup, profile,
//!   policy id, since) and `lock` (one live process per instance). bpffs
//!   holds no regular files, and both go with a reboot.

mod dir;
mod identity;
mod link;
mod lock;
mod state;

use std::{
    ffi::CString,
    fs, io,
    path::{Path, PathBuf},
};

pub(crate) use self::state::{now, start_time};
pub use self::state::{InstanceState, ScopeRecord};
pub(crate) use self::{
    dir::PinDir,
    link::{attach_pinned, HeldLink},
};

/// Where instances are pinned.
pub const PIN_ROOT: &str = "/sys/fs/bpf/minerguard";

/// Where instances keep their state file and lock.
pub const STATE_ROOT: &str = "/run/minerguard";

/// Why pinning failed.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The instance name is not usable as a directory name.
    #[error("instance name `{0}`: use 1-64 characters of A-Z a-z 0-9 _ - (bpffs refuses `.`)")]
    BadName(String),
    /// Another live process holds the instance.
    #[error(
        "instance `{name}` is in use by another process{pid}; stop it first or pick another name"
    )]
    InUse {
        /// The instance.
        name: String,
        /// " (pid N)" when recorded.
        pid: String,
    },
    /// No such instance.
    #[error("no pinned instance `{0}` (`minerguard status` lists them)")]
    NotFound(String),
    /// bpffs is not mounted and could not be.
    #[error("mounting bpffs at /sys/fs/bpf failed: {0}")]
    Mount(io::Error),
    /// The state file could not be read or written.
    #[error("instance state {path}: {problem}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A filesystem or bpf() call failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PinError {
    let path = path.to_path_buf();
    move |source| PinError::Io {
        action,
        path,
        source,
    }
}

/// Whether `name` is a safe instance name.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Whether bpffs is mounted at /sys/fs/bpf.
fn bpffs_mounted(path: &CString) -> bool {
    // SAFETY: statfs into a zeroed struct, with a NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(path.as_ptr(), &mut st) == 0 && st.f_type == libc::BPF_FS_MAGIC }
}

/// Mounts bpffs at /sys/fs/bpf unless it is there. Under a lock: two
/// processes that both found it missing would otherwise both mount it,
/// and the second mount would hide what the first one pinned meanwhile.
fn ensure_bpffs() -> Result<(), PinError> {
    let path = CString::new("/sys/fs/bpf").expect("no NUL");
    if bpffs_mounted(&path) {
        return Ok(());
    }
    fs::create_dir_all(STATE_ROOT).map_err(io_err("creating", Path::new(STATE_ROOT)))?;
    let lock_path = Path::new(STATE_ROOT).join("bpffs.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("opening", &lock_path))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on an fd we own; released when `lock` closes.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io_err("locking", &lock_path)(io::Error::last_os_error()));
    }
    if bpffs_mounted(&path) {
        return Ok(());
    }
    let bpf = CString::new("bpf").expect("no NUL");
    // SAFETY: mount(2) with NUL-terminated strings and no data.
    let rc = unsafe {
        libc::mount(
            bpf.as_ptr(),
            path.as_ptr(),
            bpf.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(PinError::Mount(io::Error::last_os_error()));
    }
    Ok(())
}

/// The pin directory of instance `name`.
fn pin_dir_of(name: &str) -> Result<PathBuf, PinError> {
    if !valid_name(name) {
        return Err(PinError::BadName(name.to_string()));
    }
    Ok(Path::new(PIN_ROOT).join(name))
}

/// Whether instance `name` has pinned anything yet (its pin directory
/// exists).
pub(crate) fn exists(name: &str) -> bool {
    pin_dir_of(name).is_ok_and(|d| d.exists())
}

/// The state directory of instance `name`.
fn state_dir_of(name: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(name)
}

/// What `minerguard status` shows of an instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Instance {
    /// Its name (the directory under [`PIN_ROOT`]).
    pub name: String,
    /// The process that enforced it last, when recorded.
    pub pid: Option<u32>,
    /// Whether that process still runs (the kernel enforces either way).
    pub alive: bool,
    /// The backend it was loaded with.
    pub backend: Option<String>,
    /// Its scopes.
    pub scopes: Vec<ScopeStatus>,
    /// Pinned links (attachments that keep enforcing).
    pub links: Vec<LinkStatus>,
    /// Pinned maps.
    pub maps: usize,
    /// Events the kernel could not write because nobody read them in time
    /// (ring buffer full), since the maps were created.
    pub ring_drops: u64,
    /// What the Stratum judges could not do as usual, since the maps were
    /// created.
    pub stratum_judge: JudgeStatus,
}

/// The Stratum judges' counters of an instance (each should stay 0; see
/// the `Enforcer` methods named after them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct JudgeStatus {
    /// Sends or connections refused because they could not be read or
    /// followed ([`Enforcer::stratum_unread_refused`](crate::Enforcer::stratum_unread_refused)):
    /// clean traffic refused.
    pub unread_refused: u64,
    /// Accepted sockets the full sk-msg tracking could not take; they sent
    /// unjudged ([`Enforcer::untracked_sockets`](crate::Enforcer::untracked_sockets)).
    pub untracked: u64,
    /// lsm threads that found every spare copy taken
    /// ([`Enforcer::stratum_own_copies`](crate::Enforcer::stratum_own_copies)).
    pub own_copies: u64,
}

impl JudgeStatus {
    fn read(maps: &std::path::Path) -> Self {
        use crate::backend::abi::{STAT_OWN_COPIES, STAT_UNREAD_REFUSED, STAT_UNTRACKED};
        JudgeStatus {
            unread_refused: dir::pinned_stat(maps, STAT_UNREAD_REFUSED),
            untracked: dir::pinned_stat(maps, STAT_UNTRACKED),
            own_copies: dir::pinned_stat(maps, STAT_OWN_COPIES),
        }
    }
}

/// One scope of an instance, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScopeStatus {
    /// `host`, or the cgroup path.
    pub scope: String,
    /// The cgroup id it enforces on.
    pub cgroup_id: u64,
    /// Whether a cgroup with that id is still at the path.
    pub present: bool,
    /// The profile's name.
    pub profile: String,
    /// The policy id in the maps.
    pub policy_id: u32,
    /// When it was applied (or its profile last changed), Unix seconds.
    pub since: u64,
}

/// One pinned link, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkStatus {
    /// Its pin name: the program's, prefixed with `cg<cgroup id>-` for a
    /// per-cgroup link.
    pub name: String,
    /// The kernel's link id (`bpftool link show id N`).
    pub id: Option<u32>,
    /// The id of the program it runs (`bpftool prog show id N`).
    pub program_id: Option<u32>,
}

fn links_in(dir: &Path) -> Vec<LinkStatus> {
    names(dir)
        .into_iter()
        .map(|name| {
            let info = libbpf_rs::Link::open(dir.join(&name))
                .ok()
                .and_then(|l| l.info().ok());
            LinkStatus {
                name,
                id: info.as_ref().map(|i| i.id),
                program_id: info.as_ref().map(|i| i.prog_id),
            }
        })
        .collect()
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Whether process `pid` runs.
fn alive(pid: u32, started: u64) -> bool {
    if started != 0 {
        return state::start_time(pid) == Some(started);
    }
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The state of instance `name`, if it recorded one.
pub fn instance(name: &str) -> Result<Option<Instance>, PinError> {
    let dir = pin_dir_of(name)?;
    if !dir.exists() {
        return Ok(None);
    }
    let state = state::InstanceState::load(&state_dir_of(name))?;
    let maps_dir = dir::current_maps(&dir);
    let scopes = state
        .as_ref()
        .map(|s| s.scopes.iter().map(ScopeRecord::status).collect())
        .unwrap_or_default();
    Ok(Some(Instance {
        name: name.to_string(),
        pid: state.as_ref().map(|s| s.pid),
        alive: state.as_ref().is_some_and(|s| alive(s.pid, s.start_time)),
        backend: state.as_ref().map(|s| s.backend.clone()),
        scopes,
        links: links_in(&dir.join("links")),
        maps: maps_dir.as_deref().map(count).unwrap_or(0),
        ring_drops: maps_dir.as_deref().map_or(0, |d| {
            dir::pinned_stat(d, crate::backend::abi::STAT_RINGBUF_DROPS)
        }),
        stratum_judge: maps_dir
            .as_deref()
            .map(JudgeStatus::read)
            .unwrap_or_default(),
    }))
}

/// Every pinned instance.
pub fn instances() -> Result<Vec<Instance>, PinError> {
    let mut out = Vec::new();
    for name in names(Path::new(PIN_ROOT)) {
        if valid_name(&name) {
            if let Some(i) = instance(&name)? {
                out.push(i);
            }
        }
    }
    Ok(out)
}

/// Ends instance `name`: detaches its cgroup links (even where a process
/// still holds them), unpins every link and map (the programs detach and
/// the maps go once nothing holds them), and removes its state. Refused
/// while a live process holds the instance (stop that first).
pub fn remove(name: &str) -> Result<(), PinError> {
    let dir = pin_dir_of(name)?;
    if !dir.exists() {
        return Err(PinError::NotFound(name.to_string()));
    }
    let pins = PinDir::open_existing(name)?;
    pins.release_all()
}

/// Removes the stale instances whose name starts with `prefix`: their
/// process is gone and no scope of theirs has anything left to protect.
/// With `run_cgroups` (a dead `run`'s instance), a scope whose cgroup holds
/// no process counts as that, and the cgroup is removed too; otherwise
/// only a scope whose cgroup is gone (not at its path any more, or another
/// cgroup there) does. Returns their names. Instances whose cgroups still
/// have tasks stay enforced (a dead `run` fails closed); instances without
/// scopes are left alone (a restarting `watch` adopts them).
pub fn clean_stale(prefix: &str, run_cgroups: bool) -> Result<Vec<String>, PinError> {
    let mut cleaned = Vec::new();
    for instance in instances()? {
        if !instance.name.starts_with(prefix) || instance.alive || instance.scopes.is_empty() {
            continue;
        }
        let nothing_left = |s: &ScopeStatus| {
            if s.scope == "host" {
                return false;
            }
            if !s.present {
                return true;
            }
            run_cgroups
                && match fs::read_to_string(Path::new(&s.scope).join("cgroup.procs")) {
                    Ok(procs) => procs.trim().is_empty(),
                    Err(_) => true,
                }
        };
        if !instance.scopes.iter().all(nothing_left) {
            continue;
        }
        match remove(&instance.name) {
            Ok(()) => {}
            // A process took it meanwhile: not stale.
            Err(PinError::InUse { .. }) => continue,
            Err(e) => return Err(e),
        }
        if run_cgroups {
            for s in &instance.scopes {
                let _ = fs::remove_dir(&s.scope);
            }
        }
        cleaned.push(instance.name);
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn instance_names_are_plain_directory_names() {
        for ok in ["default", "run-1234", "node_a-1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            ".hidden",
            "a.b",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
