//! Knowing the moment a container's cgroup appears or goes: inotify on the
//! pods' root and the directories between it and the containers (cgroupfs
//! reports `mkdir` and `rmdir` of cgroups as `IN_CREATE` and `IN_DELETE`).
//! The agent rescans when this says something changed, instead of walking
//! the whole tree on every tick.

use std::{
    collections::HashMap,
    io,
    os::fd::{AsFd, AsRawFd, RawFd},
    path::{Path, PathBuf},
};

use inotify::{Inotify, WatchDescriptor, WatchMask};

use crate::{discovery, identity::parse_cgroup_name};

/// Watches the directories that can come to hold containers.
pub struct Follower {
    inotify: Inotify,
    root: PathBuf,
    watched: HashMap<WatchDescriptor, PathBuf>,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("watched", &self.watched.len())
            .finish()
    }
}

/// The events that matter: a directory made, removed or moved in or out
/// (the watched directory itself going is reported as `IN_IGNORED`).
fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ONLYDIR
}

impl Follower {
    /// Watches `root` and every directory below it that is not a
    /// container's own (a container's child cgroups are its scope's).
    pub fn new(root: &Path) -> io::Result<Follower> {
        let inotify = Inotify::init()?;
        let mut follower = Follower {
            inotify,
            root: root.to_path_buf(),
            watched: HashMap::new(),
            buffer: vec![0; 16 * 1024],
        };
        follower.watch_tree(root, 0)?;
        Ok(follower)
    }

    /// The descriptor that becomes readable when something changed, for
    /// `poll`.
    pub fn raw_fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }

    /// How many directories are watched.
    pub fn watched(&self) -> usize {
        self.watched.len()
    }

    /// Reads what happened since the last call, without waiting; watches
    /// the new directories that can hold containers. True when the tree
    /// changed (or the kernel's queue overflowed: then nothing is known
    /// and the caller must rescan anyway). An error means the follower
    /// can no longer be trusted; the caller rescans on a timer instead.
    pub fn changed(&mut self) -> io::Result<bool> {
        let mut changed = false;
        loop {
            let mut made = Vec::new();
            let events = match self.inotify.read_events(&mut self.buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            let mut any = false;
            for ev in events {
                any = true;
                changed = true;
                if ev.mask.contains(inotify::EventMask::IGNORED) {
                    self.watched.remove(&ev.wd);
                    continue;
                }
                if ev
                    .mask
                    .intersects(inotify::EventMask::CREATE | inotify::EventMask::MOVED_TO)
                {
                    if let (Some(dir), Some(name)) = (self.watched.get(&ev.wd), ev.name) {
                        made.push(dir.join(name));
                    }
                }
            }
            for dir in made {
                let depth = self.depth_of(&dir);
                self.watch_tree(&dir, depth)?;
            }
            if !any {
                break;
            }
        }
        Ok(changed)
    }

    /// Depth of `dir` below the root.
    fn depth_of(&self, dir: &Path) -> usize {
        dir.components()
            .count()
            .saturating_sub(self.root.components().count())
    }

    /// Watches `dir` (at `depth` below the root) and the directories under
    /// it that are not containers' own, down to discovery's depth limit.
    /// A directory that went meanwhile is not an error.
    fn watch_tree(&mut self, dir: &Path, depth: usize) -> io::Result<()> {
        if depth >= discovery::MAX_DEPTH {
            return Ok(());
        }
        if depth > 0 {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.as_deref().and_then(parse_cgroup_name).is_some() {
                return Ok(());
            }
        }
        match self.inotify.watches().add(dir, mask()) {
            Ok(wd) => {
                self.watched.insert(wd, dir.to_path_buf());
            }
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("watching {}: {e}", dir.display()),
                ))
            }
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                self.watch_tree(&entry.path(), depth + 1)?;
            }
        }
        Ok(())
    }
}

/// The directory went between being listed and being watched.
fn gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_changed(f: &mut Follower) -> bool {
        for _ in 0..50 {
            if f.changed().unwrap() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn reports_directories_made_and_removed_at_any_depth_but_not_inside_containers() {
        let root = std::env::temp_dir().join(format!("mg-follow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("besteffort")).unwrap();
        let mut f = Follower::new(&root).unwrap();
        assert_eq!(f.watched(), 2);
        assert!(!f.changed().unwrap(), "nothing happened yet");

        // A pod appears, then a container in it: both seen, and the pod's
        // directory is watched from then on.
        let pod = root.join("besteffort/pod1234");
        std::fs::create_dir(&pod).unwrap();
        assert!(wait_changed(&mut f));
        let container = pod.join(format!("cri-containerd-{}.scope", "ab".repeat(32)));
        std::fs::create_dir(&container).unwrap();
        assert!(wait_changed(&mut f), "a container made in a new pod");
        assert_eq!(
            f.watched(),
            3,
            "the container's own directory is not watched"
        );

        // Inside the container: nothing to do with the agent.
        std::fs::create_dir(container.join("inner")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!f.changed().unwrap(), "a cgroup inside a container");

        std::fs::remove_dir(container.join("inner")).unwrap();
        std::fs::remove_dir(&container).unwrap();
        assert!(wait_changed(&mut f), "a container removed");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
