//! `exec.drift` for a running program: its file is on overlayfs and exists
//! in the overlay's upper (writable) layer, i.e. it was written or changed
//! after the container started, as the kernel's check (an upper dentry)
//! says at exec.
//!
//! The upper layer is found from the process's own mount table
//! (`/proc/<pid>/mountinfo`: the overlay mount holding the program, its
//! `upperdir=`), and the file looked up there. `upperdir` is a path in the
//! namespace of whoever mounted the overlay: container runtimes mount from
//! the host, where a scan runs. Where it cannot be reached, the program
//! is not taken for drift (a miss, never a false kill).

use std::{ffi::CString, fs, os::unix::ffi::OsStrExt};

use super::process::is_under;

/// `statfs` magic of overlayfs (include/uapi/linux/magic.h).
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

/// Whether `pid`'s program, at `exe` (its path from the process's root),
/// was not part of the overlay's image.
pub(crate) fn drifted(pid: u32, exe: &str) -> bool {
    if !on_overlay(pid) {
        return false;
    }
    let Ok(table) = fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
        return false;
    };
    let Some(m) = overlay_holding(&table, exe) else {
        return false;
    };
    let rel = if m.mount_point == "/" {
        exe
    } else {
        &exe[m.mount_point.len()..]
    };
    let root = if m.root == "/" { "" } else { m.root.as_str() };
    let in_upper = format!("{}{root}{rel}", m.upper);
    // A whiteout (a char device) means removed, not written.
    fs::symlink_metadata(in_upper).is_ok_and(|meta| meta.is_file())
}

fn on_overlay(pid: u32) -> bool {
    let Ok(path) = CString::new(format!("/proc/{pid}/exe").as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we own; the path is
    // NUL-terminated. It follows the link to the program's filesystem.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(path.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == OVERLAYFS_SUPER_MAGIC
}

/// An overlay mount, from one mountinfo line.
#[derive(Debug, PartialEq, Eq)]
struct OverlayMount {
    /// The directory of the filesystem mounted (`/` unless a bind mount of
    /// part of it).
    root: String,
    /// Where, from the process's root.
    mount_point: String,
    /// Its `upperdir=`.
    upper: String,
}

/// The overlay mount that holds `path`: the deepest mount point above it
/// (the last such line when mounts are stacked).
fn overlay_holding(table: &str, path: &str) -> Option<OverlayMount> {
    let mut best: Option<(usize, &str)> = None;
    for line in table.lines() {
        let mut cols = line.split(' ');
        let mount_point = cols.nth(4)?;
        let mp = unescape(mount_point);
        if is_under(path, &mp) && best.map_or(true, |(len, _)| mp.len() >= len) {
            best = Some((mp.len(), line));
        }
    }
    let (_, line) = best?;
    let (fields, fs) = line.split_once(" - ")?;
    let mut fs = fs.split(' ');
    if fs.next()? != "overlay" {
        return None;
    }
    let options = fs.nth(1)?;
    let upper = options
        .split(',')
        .find_map(|o| o.strip_prefix("upperdir="))?;
    let mut cols = fields.split(' ');
    Some(OverlayMount {
        root: unescape(cols.nth(3)?),
        mount_point: unescape(cols.next()?),
        upper: unescape(upper),
    })
}

/// mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::ffi::OsStr::from_bytes(&out)
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
90 22 0:50 / /var/lib/c/merged rw,relatime - overlay overlay rw,lowerdir=/l1:/l2,upperdir=/var/lib/c/up\\040dir,workdir=/var/lib/c/work
91 90 0:51 / /var/lib/c/merged/proc rw - proc proc rw
";

    #[test]
    fn finds_the_overlay_above_a_path_and_its_upper_dir() {
        let m = overlay_holding(TABLE, "/var/lib/c/merged/usr/bin/x").unwrap();
        assert_eq!(m.mount_point, "/var/lib/c/merged");
        assert_eq!(m.upper, "/var/lib/c/up dir");
        assert_eq!(m.root, "/");
        // Under a deeper mount that is not an overlay: none.
        assert_eq!(overlay_holding(TABLE, "/var/lib/c/merged/proc/1/exe"), None);
        assert_eq!(overlay_holding(TABLE, "/usr/bin/x"), None);
    }

    #[test]
    fn a_process_that_is_not_on_overlay_has_not_drifted() {
        let me = std::env::current_exe().unwrap();
        assert!(!drifted(std::process::id(), me.to_str().unwrap()));
    }
}
