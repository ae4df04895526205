//! One instance's pin directory, held by one live process at a time.

use std::{
    collections::HashSet,
    fs, io,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use libbpf_rs::{Link, MapCore, MapFlags, MapHandle};

use super::{ensure_bpffs, io_err, lock::InstanceLock, pin_dir_of, state_dir_of, PinError};

/// The pin-name suffix of a link that replaces another until the start is
/// settled ([`PinDir::release_unclaimed`] renames it).
pub(crate) const NEW_SUFFIX: &str = "-new";

/// The shared maps' layout generation (build.rs hashes the abi object).
const ABI_DIGEST: &str = env!("MINERGUARD_ABI_DIGEST");

/// The maps directory of this build's layout. `MINERGUARD_TEST_LAYOUT`
/// stands in for another build's layout (the tests of a newer minerguard
/// replacing an older one's instance).
fn maps_dir_name() -> String {
    match std::env::var("MINERGUARD_TEST_LAYOUT") {
        Ok(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            format!("maps-{ABI_DIGEST}{v}")
        }
        _ => format!("maps-{ABI_DIGEST}"),
    }
}

/// An instance's pins, locked for this process ([`InstanceLock`] on its
/// state directory's `lock`: a second live process of one instance would
/// fight over the links and read the ring buffer twice).
#[derive(Debug)]
pub(crate) struct PinDir {
    name: String,
    dir: PathBuf,
    run: PathBuf,
    maps: PathBuf,
    _lock: InstanceLock,
    /// Link pins this process attached or adopted; the others are an
    /// earlier process's, released by [`PinDir::release_unclaimed`].
    claimed: Mutex<HashSet<String>>,
    /// Set when the enforcer goes but its enforcement stays: dropped links
    /// then keep their pins.
    keep: AtomicBool,
}

impl PinDir {
    /// Opens (creating) instance `name`'s directories and takes its lock;
    /// bpffs is mounted when missing.
    pub fn open(name: &str) -> Result<Arc<PinDir>, PinError> {
        let dir = pin_dir_of(name)?;
        ensure_bpffs()?;
        let run = state_dir_of(name);
        fs::create_dir_all(&run).map_err(io_err("creating", &run))?;
        let lock = InstanceLock::take(name, &run.join("lock"))?;
        let maps = dir.join(maps_dir_name());
        for d in [dir.join("links"), maps.clone()] {
            fs::create_dir_all(&d).map_err(io_err("creating", &d))?;
        }
        Ok(Arc::new(PinDir {
            name: name.to_string(),
            dir,
            run,
            maps,
            _lock: lock,
            claimed: Mutex::default(),
            keep: AtomicBool::new(false),
        }))
    }

    /// Opens an existing instance to remove it (see [`super::remove`]).
    pub fn open_existing(name: &str) -> Result<Arc<PinDir>, PinError> {
        Self::open(name)
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where map `name` is pinned.
    pub fn map_pin(&self, name: &str) -> PathBuf {
        self.maps.join(name)
    }

    /// Where link `key` is pinned.
    pub fn link_pin(&self, key: &str) -> PathBuf {
        self.dir.join("links").join(key)
    }

    /// Where link `key` is pinned now: a replacing link (`<name>-new`) is
    /// renamed to `<name>` once the start settled.
    pub fn current_pin(&self, key: &str) -> PathBuf {
        let pin = self.link_pin(key);
        match key.strip_suffix(NEW_SUFFIX) {
            Some(base) if !pin.exists() => self.link_pin(base),
            _ => pin,
        }
    }

    /// The directory of the state file.
    pub fn state_dir(&self) -> &Path {
        &self.run
    }

    /// From now on, links this process drops keep their pins (the
    /// enforcer goes, its enforcement stays).
    pub fn keep(&self) {
        self.keep.store(true, Ordering::SeqCst);
    }

    /// See [`PinDir::keep`].
    pub fn keeping(&self) -> bool {
        self.keep.load(Ordering::SeqCst)
    }

    /// Link `key` belongs to this process now.
    pub fn claim(&self, key: &str) {
        self.claimed_set().insert(key.to_string());
    }

    /// Link `key` was released by this process.
    pub fn unclaim(&self, key: &str) {
        self.claimed_set().remove(key);
    }

    fn claimed_set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.claimed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ids of the maps pinned in this generation's directory.
    pub fn pinned_map_ids(&self) -> HashSet<u32> {
        super::names(&self.maps)
            .into_iter()
            .filter_map(|name| MapHandle::from_pinned_path(self.maps.join(name)).ok())
            .filter_map(|map| {
                use std::os::fd::AsFd;
                super::identity::map_info(map.as_fd()).ok().map(|i| i.id)
            })
            .collect()
    }

    /// Maps of this layout generation were pinned before this process.
    pub fn has_pinned_maps(&self) -> bool {
        super::count(&self.maps) > 0
    }

    /// Moves this generation's pinned maps aside (they could not be
    /// reused): programs that use them keep them until they are replaced,
    /// and [`PinDir::release_unclaimed`] unpins them.
    pub fn retire_maps(&self) -> Result<(), PinError> {
        let old = self.dir.join(format!("{}-retired", maps_dir_name()));
        if old.exists() {
            release_maps_dir(&old)?;
        }
        fs::rename(&self.maps, &old).map_err(io_err("moving", &self.maps))?;
        fs::create_dir_all(&self.maps).map_err(io_err("creating", &self.maps))
    }

    /// Unpins the links an earlier process pinned that this one did not
    /// adopt (their programs detach: this process's replace them by now)
    /// and the maps of other layout generations. Returns how many links
    /// it released.
    pub fn release_unclaimed(&self) -> Result<usize, PinError> {
        let claimed = self.claimed_set().clone();
        let mut released = 0;
        for name in super::names(&self.dir.join("links")) {
            if !claimed.contains(&name) {
                release_link(&self.link_pin(&name))?;
                released += 1;
            }
        }
        // The replacing links take their names (the next start finds them
        // there); the rename also drops whatever still had that name.
        for name in claimed {
            if let Some(base) = name.strip_suffix(NEW_SUFFIX) {
                let from = self.link_pin(&name);
                if from.exists() {
                    fs::rename(&from, self.link_pin(base)).map_err(io_err("renaming", &from))?;
                    let mut set = self.claimed_set();
                    set.remove(&name);
                    set.insert(base.to_string());
                }
            }
        }
        for name in super::names(&self.dir) {
            let path = self.dir.join(&name);
            if name.starts_with("maps-") && path != self.maps {
                release_maps_dir(&path)?;
            }
        }
        Ok(released)
    }

    /// Ends the instance: detaches and unpins every link, unpins every
    /// map, removes the state and the directories.
    pub fn release_all(&self) -> Result<(), PinError> {
        // Inert first: a tracing link only unpinned is freed later, from a
        // workqueue, and would keep enforcing meanwhile.
        for name in super::names(&self.dir) {
            let path = self.dir.join(&name);
            if name.starts_with("maps-") && path.is_dir() {
                forget_scopes(&path);
            }
        }
        let links = self.dir.join("links");
        for name in super::names(&links) {
            release_link(&links.join(name))?;
        }
        remove_dir(&links)?;
        for name in super::names(&self.dir) {
            let path = self.dir.join(&name);
            if name.starts_with("maps-") {
                release_maps_dir(&path)?;
            } else if path.is_dir() {
                // An older layout's directories.
                release_maps_dir(&path)?;
            } else {
                fs::remove_file(&path).map_err(io_err("unpinning", &path))?;
            }
        }
        remove_dir(&self.dir)?;
        super::state::InstanceState::remove(&self.run);
        let _ = fs::remove_file(self.run.join("lock"));
        let _ = fs::remove_dir(&self.run);
        self.claimed_set().clear();
        Ok(())
    }
}

fn remove_dir(dir: &Path) -> Result<(), PinError> {
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", dir)(e)),
    }
}

/// Empties the scopes of a maps directory (best effort): with no scope and
/// no scope level, every program returns at once, whatever link still
/// runs it.
fn forget_scopes(maps: &Path) {
    if let Ok(config) = MapHandle::from_pinned_path(maps.join("mg_config")) {
        if let Ok(Some(mut value)) = config.lookup(&0u32.to_ne_bytes(), MapFlags::ANY) {
            // scope_levels is the first word of struct mg_config.
            if let Some(levels) = value.get_mut(..4) {
                levels.fill(0);
                let _ = config.update(&0u32.to_ne_bytes(), &value, MapFlags::ANY);
            }
        }
    }
    // Generation 0: the cgroup programs' scope caches are not used either.
    if let Ok(generation) = MapHandle::from_pinned_path(maps.join("mg_scope_gen")) {
        let _ = generation.update(&0u32.to_ne_bytes(), &0u64.to_ne_bytes(), MapFlags::ANY);
    }
    if let Ok(scopes) = MapHandle::from_pinned_path(maps.join("mg_scopes")) {
        let keys: Vec<Vec<u8>> = scopes.keys().collect();
        for key in keys {
            let _ = scopes.delete(&key);
        }
    }
}

/// Unpins one link; a cgroup link is detached first, so it ends even where
/// some process still holds a descriptor of it.
fn release_link(path: &Path) -> Result<(), PinError> {
    if let Ok(link) = Link::open(path) {
        if matches!(
            link.info().map(|i| i.info),
            Ok(libbpf_rs::query::LinkTypeInfo::Cgroup(_))
        ) {
            let _ = link.detach();
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("unpinning", path)(e)),
    }
}

/// Unpins every map of a maps directory and removes it.
fn release_maps_dir(dir: &Path) -> Result<(), PinError> {
    for name in super::names(dir) {
        let path = dir.join(name);
        if path.is_dir() {
            release_maps_dir(&path)?;
        } else {
            fs::remove_file(&path).map_err(io_err("unpinning", &path))?;
        }
    }
    remove_dir(dir)
}

/// The maps directory an instance's status reads: this build's, else any.
pub(crate) fn current_maps(dir: &Path) -> Option<PathBuf> {
    let own = dir.join(maps_dir_name());
    if own.is_dir() {
        return Some(own);
    }
    super::names(dir)
        .into_iter()
        .find(|n| n.starts_with("maps-") && !n.ends_with("-retired"))
        .map(|n| dir.join(n))
}

/// A counter of pinned maps' `mg_stats` (per-CPU values summed; 0 when
/// the map or the counter cannot be read).
pub(crate) fn pinned_stat(maps: &Path, stat: u32) -> u64 {
    let Ok(stats) = MapHandle::from_pinned_path(maps.join("mg_stats")) else {
        return 0;
    };
    match stats.lookup_percpu(&stat.to_ne_bytes(), MapFlags::ANY) {
        Ok(Some(per_cpu)) => per_cpu
            .iter()
            .filter_map(|v| v.get(..8).and_then(|b| b.try_into().ok()))
            .map(u64::from_ne_bytes)
            .sum(),
        _ => 0,
    }
}
