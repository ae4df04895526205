//! What `/proc` tells about one process: its identity (pid + start time),
//! its program, its command line, the files it maps executable and its
//! open descriptors. A process that exits while it is read is `None`:
//! that is normal during a scan, never an error.

use std::{
    ffi::OsStr,
    fs,
    io::Read,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::Path,
};

/// A file as a process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileView {
    /// Its path from the process's own root (a container's view), without
    /// the ` (deleted)` suffix; `/memfd:NAME` for a memfd.
    pub path: String,
    /// Device in the kernel's encoding (`major << 20 | minor`).
    pub dev: u32,
    /// Inode number.
    pub ino: u64,
    /// No link left: a memfd or a deleted file (the kernel's "fileless").
    pub unlinked: bool,
}

/// One process's facts, read once.
#[derive(Debug, Clone)]
pub(crate) struct Process {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (`stat` field 22): with the
    /// pid, what identifies the process (a pid may be reused).
    pub start_time: u64,
    /// `comm`.
    pub comm: String,
    /// Its program; `None` for kernel threads.
    pub exe: Option<FileView>,
    /// argv bytes (NUL-separated), at most `limit` bytes.
    pub cmdline: Vec<u8>,
    /// Whether argv was longer than the limit it was read with.
    pub cmdline_overlong: bool,
    /// Its root as this process sees it, when not ours.
    pub root: Option<String>,
}

/// `/proc/<pid>/stat`: (comm, start time).
pub(crate) fn stat(pid: u32) -> Option<(String, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: it ends at the last `)`.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    // Field 22 (starttime) is the 20th after the comm.
    let start = text
        .get(close + 1..)?
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    Some((comm, start))
}

/// `pid`'s parent from `/proc/<pid>/stat` (the field after the state,
/// which follows the comm's last `)`).
pub(crate) fn parent(pid: u32) -> Option<u32> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = text.rfind(')')?;
    text.get(close + 1..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Reads `pid`'s identity, program and command line (argv up to
/// `cmdline_limit` bytes).
pub(crate) fn read(pid: u32, cmdline_limit: usize) -> Option<Process> {
    let (comm, start_time) = stat(pid)?;
    let root = process_root(pid);
    let exe = exe_view(pid, root.as_deref());
    let (cmdline, cmdline_overlong) = read_limited(&format!("/proc/{pid}/cmdline"), cmdline_limit)?;
    Some(Process {
        pid,
        start_time,
        comm,
        exe,
        cmdline,
        cmdline_overlong,
        root,
    })
}

/// The process's root as this process sees it, when it is not ours (a
/// container's, a chroot's): paths under it are shown from it.
pub(crate) fn process_root(pid: u32) -> Option<String> {
    let root = fs::read_link(format!("/proc/{pid}/root")).ok()?;
    let root = root.to_string_lossy().into_owned();
    (root != "/").then_some(root)
}

/// `path` (as this process sees it) from `root`, the process's own root.
pub(crate) fn from_root(path: &str, root: Option<&str>) -> String {
    match root.and_then(|r| path.strip_prefix(r)) {
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        _ => path.to_string(),
    }
}

/// `path` without the ` (deleted)` the kernel appends to unlinked files.
pub(crate) fn undeleted(path: &str) -> (&str, bool) {
    match path.strip_suffix(" (deleted)") {
        Some(p) => (p, true),
        None => (path, false),
    }
}

fn exe_view(pid: u32, root: Option<&str>) -> Option<FileView> {
    let link = format!("/proc/{pid}/exe");
    let target = fs::read_link(&link).ok()?;
    let target = target.to_string_lossy();
    let (path, deleted) = undeleted(&target);
    // stat follows the link to the file itself, deleted or not.
    let meta = fs::metadata(&link).ok()?;
    Some(FileView {
        path: from_root(path, root),
        dev: kernel_dev(meta.dev()),
        ino: meta.ino(),
        unlinked: deleted || meta.nlink() == 0,
    })
}

/// Executable file mappings of `p` other than its program, one
/// per file, from `/proc/<pid>/maps`: a program run through the loader
/// (`ld.so ./xmrig`) or loaded as a library shows here, not as the exe.
pub(crate) fn executable_mappings(p: &Process) -> Vec<FileView> {
    let (pid, except, root) = (p.pid, p.exe.as_ref(), &p.root);
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    let mut out: Vec<FileView> = Vec::new();
    for line in text.lines() {
        // address perms offset dev inode path
        let mut cols = line.splitn(6, ' ');
        let (Some(_), Some(perms), Some(_), Some(dev), Some(ino), Some(path)) = (
            cols.next(),
            cols.next(),
            cols.next(),
            cols.next(),
            cols.next(),
            cols.next(),
        ) else {
            continue;
        };
        let path = path.trim_start();
        if perms.as_bytes().get(2) != Some(&b'x') || !path.starts_with('/') {
            continue;
        }
        let (Some(dev), Ok(ino)) = (parse_maps_dev(dev), ino.parse::<u64>()) else {
            continue;
        };
        if ino == 0
            || except.is_some_and(|e| e.dev == dev && e.ino == ino)
            || out.iter().any(|f| f.dev == dev && f.ino == ino)
        {
            continue;
        }
        let (path, deleted) = undeleted(path);
        out.push(FileView {
            path: from_root(path, root.as_deref()),
            dev,
            ino,
            unlinked: deleted,
        });
    }
    out
}

/// `fd:01` (hex major:minor) → the kernel's encoding.
fn parse_maps_dev(text: &str) -> Option<u32> {
    let (major, minor) = text.split_once(':')?;
    let major = u32::from_str_radix(major, 16).ok()?;
    let minor = u32::from_str_radix(minor, 16).ok()?;
    Some((major << 20) | (minor & 0xfffff))
}

/// What a process holds open that a scan judges.
#[derive(Debug, Default, Clone)]
pub(crate) struct Descriptors {
    /// Inodes of its sockets.
    pub sockets: Vec<u64>,
    /// Their descriptor numbers, in the same order.
    pub socket_fds: Vec<i32>,
    /// MSR devices (major 202) it has open: (path, minor).
    pub msr: Vec<(String, u32)>,
}

/// The CPU MSR devices' major number (`/dev/cpu/N/msr`).
const MSR_MAJOR: u32 = 202;

/// `pid`'s open sockets (when `sockets`) and MSR devices (when `msr`).
pub(crate) fn descriptors(pid: u32, sockets: bool, msr: bool) -> Descriptors {
    let mut out = Descriptors::default();
    let dir = format!("/proc/{pid}/fd");
    let Ok(entries) = fs::read_dir(&dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        let bytes = target.as_os_str().as_bytes();
        if let Some(ino) = bytes
            .strip_prefix(b"socket:[")
            .and_then(|r| r.strip_suffix(b"]"))
        {
            let fd = entry.file_name().to_str().and_then(|n| n.parse().ok());
            if sockets {
                if let (Some(ino), Some(fd)) = (
                    std::str::from_utf8(ino).ok().and_then(|s| s.parse().ok()),
                    fd,
                ) {
                    out.sockets.push(ino);
                    out.socket_fds.push(fd);
                }
            }
            continue;
        }
        // Device nodes live under /dev (a container's own /dev included);
        // only those are worth a stat, less the ones every process holds.
        if msr && bytes.starts_with(b"/dev/") && !is_common_device(bytes) {
            if let Ok(meta) = fs::metadata(entry.path()) {
                let is_char = meta.mode() & libc::S_IFMT == libc::S_IFCHR;
                if is_char && libc::major(meta.rdev()) == MSR_MAJOR {
                    let path = OsStr::from_bytes(bytes).to_string_lossy().into_owned();
                    out.msr.push((path, libc::minor(meta.rdev())));
                }
            }
        }
    }
    out
}

/// Device nodes that are never an MSR device by their usual names (a
/// miner cannot rename /dev/null without CAP_MKNOD, and then it would not
/// be the null device): not stat'ed.
fn is_common_device(path: &[u8]) -> bool {
    matches!(
        path,
        b"/dev/null"
            | b"/dev/zero"
            | b"/dev/full"
            | b"/dev/random"
            | b"/dev/urandom"
            | b"/dev/ptmx"
            | b"/dev/tty"
    ) || path.starts_with(b"/dev/pts/")
}

/// Up to `limit` bytes of a file, and whether there was more.
fn read_limited(path: &str, limit: usize) -> Option<(Vec<u8>, bool)> {
    let file = fs::File::open(path).ok()?;
    // Most argvs fit one page: one read, where an empty Vec would take a
    // few growing ones (each walks the other process's memory).
    let mut buf = Vec::with_capacity(4096.min(limit + 1));
    file.take(limit as u64 + 1).read_to_end(&mut buf).ok()?;
    let over = buf.len() > limit;
    buf.truncate(limit);
    Some((buf, over))
}

/// userspace `st_dev` → the kernel's `s_dev` (`major << 20 | minor`).
pub(crate) fn kernel_dev(st_dev: u64) -> u32 {
    (libc::major(st_dev) << 20) | (libc::minor(st_dev) & 0xfffff)
}

/// Whether `path` names a directory entry under `dir` (both absolute, `dir`
/// without a trailing `/`).
pub(crate) fn is_under(path: &str, dir: &str) -> bool {
    dir == "/"
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The basename of a path.
pub(crate) fn basename(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = read(std::process::id(), 4096).expect("this process is readable");
        let (_, start) = stat(std::process::id()).unwrap();
        assert_eq!(me.start_time, start);
        let exe = me.exe.expect("a program");
        let real = std::env::current_exe().unwrap();
        assert_eq!(exe.path, real.to_string_lossy());
        assert!(!exe.unlinked);
        assert!(!me.cmdline.is_empty());
    }

    #[test]
    fn a_missing_process_is_none() {
        // Above the kernel's pid_max limit (4M): never a live pid.
        assert!(read(u32::MAX - 1, 4096).is_none());
    }

    #[test]
    fn mappings_list_each_executable_file_once_without_the_program() {
        let me = read(std::process::id(), 16).unwrap();
        let maps = executable_mappings(&me);
        let exe = me.exe.unwrap();
        assert!(maps.iter().all(|m| (m.dev, m.ino) != (exe.dev, exe.ino)));
        let mut keys: Vec<_> = maps.iter().map(|m| (m.dev, m.ino)).collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n);
    }

    #[test]
    fn paths_helpers() {
        assert!(is_under("/tmp/x", "/tmp"));
        assert!(!is_under("/tmpx/y", "/tmp"));
        assert!(is_under("/a", "/"));
        assert_eq!(undeleted("/tmp/a (deleted)"), ("/tmp/a", true));
        assert_eq!(
            from_root("/var/c/root/bin/x", Some("/var/c/root")),
            "/bin/x"
        );
        assert_eq!(
            from_root("/var/c/rootx/bin", Some("/var/c/root")),
            "/var/c/rootx/bin"
        );
        assert_eq!(parse_maps_dev("fd:01"), Some((0xfd << 20) | 1));
        assert_eq!(basename("/usr/bin/xmrig"), "xmrig");
    }
}
