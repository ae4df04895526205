//! Finding the pods' cgroup root and the containers' cgroups under it.

use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use crate::identity::{parse_cgroup_name, ContainerRef};

/// The pods' cgroup root under the cgroup v2 mount `mount`: kubelet's
/// `kubepods.slice` (systemd cgroup driver) or `kubepods` (cgroupfs
/// driver). Every QoS class (`besteffort`, `burstable`) is under it.
pub fn pods_root(mount: &Path) -> Option<PathBuf> {
    ["kubepods.slice", "kubepods"]
        .iter()
        .map(|n| mount.join(n))
        .find(|p| p.is_dir())
}

/// A container's own cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    /// Its directory.
    pub path: PathBuf,
    /// The cgroup's id (the directory's inode).
    pub cgroup_id: u64,
    /// The container, as the name says.
    pub container: ContainerRef,
}

/// How deep below the root containers are looked for: kubepods / QoS /
/// pod / container is 3; a runtime may nest one more.
pub const MAX_DEPTH: usize = 5;

/// The containers' cgroups under `root`, by path. A container's own
/// subtree is not searched (its child cgroups are covered by its scope).
pub fn scan(root: &Path) -> BTreeMap<PathBuf, ContainerCgroup> {
    let mut found = BTreeMap::new();
    walk(root, 0, &mut found);
    found
}

fn walk(dir: &Path, depth: usize, found: &mut BTreeMap<PathBuf, ContainerCgroup>) {
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let path = entry.path();
        match parse_cgroup_name(&entry.file_name().to_string_lossy()) {
            Some(container) => {
                found.insert(
                    path.clone(),
                    ContainerCgroup {
                        path,
                        cgroup_id: meta.ino(),
                        container,
                    },
                );
            }
            None => walk(&path, depth + 1, found),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_containers_at_any_qos_and_driver() {
        let dir = std::env::temp_dir().join(format!("mg-discovery-{}", std::process::id()));
        let id = "ab".repeat(32);
        let other = "cd".repeat(32);
        let paths = [
            format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-{id}.scope"),
            format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2.slice/crio-conmon-{id}.scope"),
            format!("kubepods.slice/kubepods-pod3.slice/{other}"),
            format!("kubepods.slice/kubepods-pod3.slice/{other}/nested-{id}"),
        ];
        for p in &paths {
            std::fs::create_dir_all(dir.join(p)).unwrap();
        }
        let root = pods_root(&dir).unwrap();
        let found = scan(&root);
        let _ = std::fs::remove_dir_all(&dir);
        let ids: Vec<&str> = found.values().map(|c| c.container.id.as_str()).collect();
        assert_eq!(ids.len(), 2, "{found:?}");
        assert!(ids.contains(&id.as_str()) && ids.contains(&other.as_str()));
    }
}
