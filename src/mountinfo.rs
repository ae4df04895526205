//! `/proc/self/mountinfo`: where filesystems are mounted and which device
//! the kernel gives each (the superblock's `s_dev`, which BPF programs see).

use std::{
    ffi::OsStr,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The superblock's device, as the kernel encodes it (`major << 20 | minor`).
    pub kernel_dev: u32,
    /// Filesystem type (`cgroup2`, `overlay`, ...).
    pub fstype: String,
}

/// Every mount of this process's mount namespace.
pub(crate) fn read() -> std::io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// Parses mountinfo text; malformed lines are skipped.
pub(crate) fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            // id parent major:minor root mount-point options [optional...] - fstype source
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split_whitespace().collect();
            let (major, minor) = fields.get(2)?.split_once(':')?;
            let (major, minor) = (major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?);
            Some(Mount {
                mount_point: unescape(fields.get(4)?),
                kernel_dev: (major << 20) | (minor & 0xfffff),
                fstype: after.split_whitespace().next()?.to_string(),
            })
        })
        .collect()
}

/// The mount that holds `path` (absolute, symlinks resolved): the last
/// mounted of the longest matching mount points, as the kernel resolves it.
pub(crate) fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.mount_point))
        .max_by_key(|(i, m)| (m.mount_point.components().count(), *i))
        .map(|(_, m)| m)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
        31 22 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n\
        50 22 0:45 / /tmp rw - overlay overlay rw\n\
        51 22 0:46 / /mnt/my\\040disk rw - tmpfs tmpfs rw\n\
        garbage line\n";

    #[test]
    fn parses_devices_types_and_escapes() {
        let m = parse(SAMPLE);
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].kernel_dev, 254 << 20);
        assert_eq!(m[2].fstype, "cgroup2");
        assert_eq!(m[4].mount_point, PathBuf::from("/mnt/my disk"));
    }

    #[test]
    fn finds_the_innermost_mount() {
        let m = parse(SAMPLE);
        assert_eq!(mount_of(&m, Path::new("/tmp/x/y")).unwrap().kernel_dev, 45);
        assert_eq!(
            mount_of(&m, Path::new("/tmpfoo")).unwrap().kernel_dev,
            254 << 20
        );
        assert_eq!(mount_of(&m, Path::new("/etc")).unwrap().fstype, "ext4");
    }
}
