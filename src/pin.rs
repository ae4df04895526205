//! Pinned enforcement: the BPF links a process attached (and the sockhash
//! maps, which hold the Stratum `sk_msg` program) pinned under
//! `/sys/fs/bpf/minerguard/<instance>/`, so that the kernel keeps enforcing
//! when the process ends for any reason, SIGKILL included, until the pins
//! are released on purpose ([`Pins::release`], `minerguard remove`).
//!
//! A pinned link keeps its program attached and the program keeps the maps
//! it uses, so the policy in them stays in force. What is not kept: the
//! events of that time (nobody reads the ring buffer) and the ability to
//! change the policy (a new process attaches its own programs, then
//! releases the old pins: [`Pins::open`] with `replace`). See
//! `docs/no-gap-design.md` for what adoption will add.
//!
//! The pins name what this *process* holds: every `bpf_link` and sockhash
//! file descriptor of it. One enforcing process per instance, as the
//! `minerguard` command is.

use std::{
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

/// Where instances are pinned.
pub const PIN_ROOT: &str = "/sys/fs/bpf/minerguard";

/// `BPF_MAP_TYPE_SOCKHASH` (include/uapi/linux/bpf.h): its uref holds the
/// attached sk_msg program, so it must be pinned for that to survive.
const MAP_TYPE_SOCKHASH: u32 = 18;

/// Why pinning failed.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The instance name is not usable as a directory name.
    #[error(
        "instance name `{0}`: use 1-64 characters of A-Z a-z 0-9 . _ - (not starting with `.`)"
    )]
    BadName(String),
    /// bpffs is not mounted and could not be.
    #[error("mounting bpffs at /sys/fs/bpf failed: {0}")]
    Mount(io::Error),
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

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PinError {
    let path = path.to_path_buf();
    move |source| PinError::Io {
        action,
        path,
        source,
    }
}

/// One instance's pin directory.
#[derive(Debug)]
pub struct Pins {
    dir: PathBuf,
}

/// What `minerguard status` shows of an instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Instance {
    /// Its name (the directory under [`PIN_ROOT`]).
    pub name: String,
    /// Pinned links (attachments that keep enforcing).
    pub links: usize,
    /// Pinned maps.
    pub maps: usize,
    /// The cgroup the instance enforces on, when it recorded one (`run`).
    pub cgroup: Option<PathBuf>,
    /// The process that pinned it, when recorded, and whether it still runs.
    pub pid: Option<u32>,
    /// Whether that process still runs.
    pub alive: bool,
}

/// Whether `name` is a safe instance name.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Mounts bpffs at /sys/fs/bpf unless it is there.
fn ensure_bpffs() -> Result<(), PinError> {
    let path = CString::new("/sys/fs/bpf").expect("no NUL");
    // SAFETY: statfs into a zeroed struct, with a NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } == 0 && st.f_type == libc::BPF_FS_MAGIC {
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

/// The directory of instance `name`.
fn dir_of(name: &str) -> Result<PathBuf, PinError> {
    if !valid_name(name) {
        return Err(PinError::BadName(name.to_string()));
    }
    Ok(Path::new(PIN_ROOT).join(name))
}

impl Pins {
    /// The pin directory of instance `name` (bpffs mounted when missing).
    /// Pins an earlier process left there stay until [`Pins::sync`] has
    /// pinned this process's links and [`Pins::release_others`] is called:
    /// the new programs are attached before the old ones go.
    pub fn open(name: &str) -> Result<Pins, PinError> {
        let dir = dir_of(name)?;
        ensure_bpffs()?;
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        Ok(Pins { dir })
    }

    /// The instance directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records what the instance enforces on and which process pinned it
    /// (as symlinks: bpffs holds no regular files).
    pub fn record(&self, cgroup: Option<&Path>) -> Result<(), PinError> {
        let pid = self.dir.join("pid");
        let _ = fs::remove_file(&pid);
        std::os::unix::fs::symlink(std::process::id().to_string(), &pid)
            .map_err(io_err("recording", &pid))?;
        if let Some(cgroup) = cgroup {
            let link = self.dir.join("cgroup");
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(cgroup, &link).map_err(io_err("recording", &link))?;
        }
        Ok(())
    }

    /// Pins every BPF link and sockhash this process holds that is not
    /// pinned yet (`links/<link id>`, `maps/<map id>`). Call it after each
    /// change of what is attached. Returns how many pins it added.
    pub fn sync(&self) -> Result<usize, PinError> {
        let mut added = 0;
        for (fd, kind, id) in own_bpf_objects()? {
            let sub = match kind {
                Held::Link => "links",
                Held::Sockhash => "maps",
            };
            let dir = self.dir.join(sub);
            let path = dir.join(id.to_string());
            if path.exists() {
                continue;
            }
            fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
            let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL in a pin path");
            // SAFETY: a valid fd of this process and a NUL-terminated path.
            if unsafe { libbpf_rs::libbpf_sys::bpf_obj_pin(fd, c.as_ptr()) } != 0 {
                return Err(io_err("pinning", &path)(io::Error::last_os_error()));
            }
            added += 1;
        }
        Ok(added)
    }

    /// Unpins what an earlier process of this instance pinned and this one
    /// does not hold: its programs detach (this one's are attached by
    /// now). Returns how many pins it removed.
    pub fn release_others(&self) -> Result<usize, PinError> {
        let own: Vec<String> = own_bpf_objects()?
            .into_iter()
            .map(|(_, _, id)| id.to_string())
            .collect();
        let mut removed = 0;
        for sub in ["links", "maps"] {
            for entry in read_dir(&self.dir.join(sub))? {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !own.contains(&name) {
                    fs::remove_file(entry.path()).map_err(io_err("unpinning", &entry.path()))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Unpins everything of the instance and removes its directory: what
    /// this process still holds detaches when it closes its descriptors.
    pub fn release(self) -> Result<(), PinError> {
        release_dir(&self.dir)
    }
}

/// Unpins links first (enforcement ends there), then maps, then the
/// records, and removes the directories.
fn release_dir(dir: &Path) -> Result<(), PinError> {
    for sub in ["links", "maps"] {
        let d = dir.join(sub);
        for entry in read_dir(&d)? {
            fs::remove_file(entry.path()).map_err(io_err("unpinning", &entry.path()))?;
        }
        if d.exists() {
            fs::remove_dir(&d).map_err(io_err("removing", &d))?;
        }
    }
    for record in ["pid", "cgroup"] {
        let _ = fs::remove_file(dir.join(record));
    }
    fs::remove_dir(dir).map_err(io_err("removing", dir))
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, PinError> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .collect::<Result<Vec<_>, _>>()
            .map_err(io_err("reading", dir)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("reading", dir)(e)),
    }
}

/// What kind of pinned object a descriptor is.
enum Held {
    Link,
    Sockhash,
}

/// Every bpf_link and sockhash descriptor of this process, with its id.
fn own_bpf_objects() -> Result<Vec<(i32, Held, u32)>, PinError> {
    let fds = Path::new("/proc/self/fd");
    let mut found = Vec::new();
    for entry in read_dir(fds)? {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        let kind = match target.as_str() {
            "anon_inode:bpf_link" => Held::Link,
            "anon_inode:bpf-map" => Held::Sockhash,
            _ => continue,
        };
        let Ok(info) = fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue;
        };
        let field = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        match kind {
            Held::Link => {
                if let Some(id) = field("link_id:") {
                    found.push((fd, Held::Link, id));
                }
            }
            Held::Sockhash => {
                if field("map_type:") == Some(MAP_TYPE_SOCKHASH) {
                    if let Some(id) = field("map_id:") {
                        found.push((fd, Held::Sockhash, id));
                    }
                }
            }
        }
    }
    Ok(found)
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Every pinned instance.
pub fn instances() -> Result<Vec<Instance>, PinError> {
    let mut out = Vec::new();
    for entry in read_dir(Path::new(PIN_ROOT))? {
        let dir = entry.path();
        let pid = fs::read_link(dir.join("pid"))
            .ok()
            .and_then(|p| p.to_string_lossy().parse::<u32>().ok());
        out.push(Instance {
            name: entry.file_name().to_string_lossy().into_owned(),
            links: count(&dir.join("links")),
            maps: count(&dir.join("maps")),
            cgroup: fs::read_link(dir.join("cgroup")).ok(),
            alive: pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists()),
            pid,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Unpins instance `name` (its programs detach unless a running process
/// still holds them).
pub fn remove(name: &str) -> Result<(), PinError> {
    let dir = dir_of(name)?;
    if !dir.exists() {
        return Err(io_err("removing", &dir)(io::ErrorKind::NotFound.into()));
    }
    release_dir(&dir)
}

/// Removes the pins of instances whose process is gone and whose recorded
/// cgroup no longer holds a process (nothing left to protect), and that
/// cgroup. Returns their names. Instances whose cgroup still has tasks stay
/// enforced: a dead `run` fails closed.
pub fn clean_stale() -> Result<Vec<String>, PinError> {
    let mut cleaned = Vec::new();
    for instance in instances()? {
        let (Some(cgroup), false) = (&instance.cgroup, instance.alive) else {
            continue;
        };
        let empty = match fs::read_to_string(cgroup.join("cgroup.procs")) {
            Ok(procs) => procs.trim().is_empty(),
            Err(_) => true,
        };
        if !empty {
            continue;
        }
        remove(&instance.name)?;
        let _ = fs::remove_dir(cgroup);
        cleaned.push(instance.name);
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn instance_names_are_plain_directory_names() {
        for ok in ["default", "run-1234", "node_a.1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            ".hidden",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
