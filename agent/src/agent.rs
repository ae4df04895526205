//! The agent's state: the baseline on the pods' cgroup root, a scope per
//! bound container, kept in step with the containers that come and go and
//! with the configuration file.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, Instant, SystemTime},
};

use minerguard::{Enforcer, EnforcerOptions, PolicyHandle, Scope};

use crate::{
    binding::binding_for,
    config::{AgentConfig, ConfigError},
    discovery::{self, ContainerCgroup},
    follow::Follower,
    identity::ContainerInfo,
    runtime::MetadataSource,
    scans::{jobs_for, BoundScope, ScanJob, ScanTarget},
};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No pods' cgroup root was given or found.
    #[error("no pods' cgroup root: neither kubepods.slice nor kubepods is under {mount}; set `podsRoot` in the configuration")]
    NoPodsRoot {
        /// The cgroup v2 mount searched.
        mount: PathBuf,
    },
    /// Enforcement failed.
    #[error(transparent)]
    Enforce(#[from] minerguard::Error),
}

/// A container the agent knows.
#[derive(Debug)]
struct Tracked {
    cgroup: ContainerCgroup,
    info: Arc<ContainerInfo>,
    /// The binding it falls under, and its scope.
    bound: Option<(String, PolicyHandle)>,
}

/// Container metadata by cgroup id, shared with whatever writes events.
pub type Directory = Arc<RwLock<HashMap<u64, Arc<ContainerInfo>>>>;

/// The running agent.
pub struct Agent {
    config_path: PathBuf,
    config: AgentConfig,
    stamp: Option<(PathBuf, SystemTime, u64)>,
    enforcer: Enforcer,
    root: PathBuf,
    baseline: PolicyHandle,
    source: Option<Box<dyn MetadataSource>>,
    containers: BTreeMap<PathBuf, Tracked>,
    directory: Directory,
    /// Says when the tree changed; `None` when inotify failed (then the
    /// tree is walked on every tick, as a fallback).
    follower: Option<Follower>,
    /// When the tree was last walked in full.
    walked: Instant,
    /// Scopes applied or changed since [`Agent::take_due_scans`] last ran:
    /// what already runs in them has not been judged by their profile.
    due_scans: BTreeSet<ScanTarget>,
}

/// How often the whole tree is walked even when inotify said nothing: a
/// safety net (a watch that could not be added, a missed event), cheap at
/// this rate.
const FULL_RESCAN: Duration = Duration::from_secs(5);

/// What identifies the configuration's content on disk: the file it
/// resolves to (a ConfigMap volume swaps a `..data` symlink), its mtime
/// and size.
fn stamp(path: &Path) -> Option<(PathBuf, SystemTime, u64)> {
    let real = std::fs::canonicalize(path).ok()?;
    let meta = std::fs::metadata(&real).ok()?;
    Some((real, meta.modified().ok()?, meta.len()))
}

impl Agent {
    /// Starts enforcing `config` (read from `config_path`): the enforcer
    /// opens the pinned instance (adopting what an earlier agent left), the
    /// baseline goes on the pods' root, then every container found gets
    /// its binding's profile. Returns the agent and what it did, to log.
    pub fn start(
        config_path: &Path,
        config: AgentConfig,
        source: Option<Box<dyn MetadataSource>>,
        options: EnforcerOptions,
    ) -> Result<(Agent, Vec<String>), AgentError> {
        let root = pods_root_of(&config)?;
        let mut enforcer = Enforcer::with_options(EnforcerOptions {
            instance: Some(config.instance.clone()),
            ..options
        })?;
        let baseline =
            enforcer.apply_valid(&config.baseline.profile, Scope::Cgroup(root.clone()))?;
        let mut notes = vec![format!(
            "baseline `{}` enforced by the {} backend on {}",
            config.baseline.source,
            enforcer.backend(),
            root.display()
        )];
        // Watches go on before the first walk: a container made in between
        // is then reported, not missed.
        let (follower, follow_note) = match Follower::new(&root) {
            Ok(f) => (Some(f), None),
            Err(e) => (
                None,
                Some(format!(
                    "warning: cannot follow {} with inotify ({e}); containers are looked for every tick instead",
                    root.display()
                )),
            ),
        };
        notes.extend(follow_note);
        let mut agent = Agent {
            follower,
            walked: Instant::now(),
            stamp: stamp(config_path),
            config_path: config_path.to_path_buf(),
            config,
            enforcer,
            root,
            baseline,
            source,
            containers: BTreeMap::new(),
            directory: Directory::default(),
            // The baseline was just applied: what runs already is judged.
            due_scans: BTreeSet::from([ScanTarget::Baseline]),
        };
        notes.extend(agent.rescan());
        let settled = agent.enforcer.release_unadopted()?;
        for scope in settled.dropped {
            notes.push(format!(
                "{scope} was enforced by an earlier agent and is not bound now: no longer enforced"
            ));
        }
        Ok((agent, notes))
    }

    /// Whether a runtime API describes containers.
    pub fn has_source(&self) -> bool {
        self.source.is_some()
    }

    /// A runtime API reached after the start (it was down then): the
    /// containers it could not describe are described and bound now.
    pub fn set_source(&mut self, source: Box<dyn MetadataSource>) -> Vec<String> {
        self.source = Some(source);
        let mut notes = Vec::new();
        let paths: Vec<PathBuf> = self
            .containers
            .iter()
            .filter(|(_, t)| t.info.pod_name.is_empty() && t.info.image.is_empty())
            .map(|(p, _)| p.clone())
            .collect();
        for path in paths {
            let mut t = self.containers.remove(&path).expect("listed");
            t.info = Arc::new(self.describe(&t.cgroup, &mut notes));
            self.write_directory()
                .insert(t.cgroup.cgroup_id, t.info.clone());
            self.bind(&mut t, &mut notes);
            self.containers.insert(path, t);
        }
        notes
    }

    /// The configuration in force.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// The enforcer (events, drops, status).
    pub fn enforcer(&self) -> &Enforcer {
        &self.enforcer
    }

    /// The enforcer, to end it.
    pub fn into_enforcer(self) -> Enforcer {
        self.enforcer
    }

    /// Container metadata by cgroup id, for event writers.
    pub fn directory(&self) -> Directory {
        self.directory.clone()
    }

    /// The pods' cgroup root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How many containers it knows, and how many of them are bound.
    pub fn counts(&self) -> (usize, usize) {
        let bound = self
            .containers
            .values()
            .filter(|t| t.bound.is_some())
            .count();
        (self.containers.len(), bound)
    }

    /// One round: containers that came and went (when inotify said the
    /// tree changed, or on the safety-net timer), and a changed
    /// configuration file. Returns what it did, to log.
    pub fn tick(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        if stamp(&self.config_path) != self.stamp {
            notes.extend(self.reload());
        }
        let changed = match self.follower.as_mut().map(Follower::changed) {
            Some(Ok(changed)) => changed,
            Some(Err(e)) => {
                notes.push(format!(
                    "warning: following {} with inotify failed ({e}); containers are looked for every tick instead",
                    self.root.display()
                ));
                self.follower = None;
                true
            }
            None => true,
        };
        if changed || self.walked.elapsed() >= FULL_RESCAN {
            notes.extend(self.rescan());
        }
        notes
    }

    /// Scans for the scopes applied or changed since the last call (at
    /// start: every scope), each by the profile it is under now. Notes say
    /// what cannot be scanned.
    pub fn take_due_scans(&mut self, notes: &mut Vec<String>) -> Vec<ScanJob> {
        let mut targets = std::mem::take(&mut self.due_scans);
        if targets.contains(&ScanTarget::Baseline) {
            // The baseline's scan covers every container that is not bound.
            targets.retain(|t| match t {
                ScanTarget::Container(p) => {
                    (self.containers.get(p)).is_some_and(|t| t.bound.is_some())
                }
                ScanTarget::Baseline => true,
            });
        }
        let targets: Vec<ScanTarget> = targets.into_iter().collect();
        jobs_for(
            &targets,
            &self.root,
            &self.config.baseline.profile,
            &self.bound_scopes(),
            notes,
        )
    }

    /// Scans of every scope (the periodic round).
    pub fn scan_plan(&self, notes: &mut Vec<String>) -> Vec<ScanJob> {
        let bound = self.bound_scopes();
        let mut targets = vec![ScanTarget::Baseline];
        targets.extend(
            bound
                .iter()
                .map(|b| ScanTarget::Container(b.path.to_path_buf())),
        );
        jobs_for(
            &targets,
            &self.root,
            &self.config.baseline.profile,
            &bound,
            notes,
        )
    }

    /// The scopes the behaviour detector samples now (see
    /// [`crate::behaviour::plan`]).
    pub fn behaviour_plan(&self) -> Vec<crate::behaviour::BehaviourScope> {
        let mut plan = crate::behaviour::plan(
            &self.root,
            &self.config.baseline.profile,
            &self.bound_scopes(),
        );
        // The tuning signal, where the enforcer counts it (loaded with the
        // first profile that has a behaviour rule).
        if let Some(counts) = self.enforcer.tuning_counts() {
            for scope in &mut plan {
                scope.detector.count_tuning(counts.clone());
            }
        }
        plan
    }

    /// The bound containers and the profiles they are under.
    fn bound_scopes(&self) -> Vec<BoundScope<'_>> {
        (self.containers.values())
            .filter_map(|t| {
                let (name, _) = t.bound.as_ref()?;
                let binding = self.config.bindings.iter().find(|b| &b.name == name)?;
                Some(BoundScope {
                    path: &t.cgroup.path,
                    binding: &binding.name,
                    who: describe_short(&t.info),
                    profile: &binding.profile.profile,
                })
            })
            .collect()
    }

    /// A descriptor that becomes readable when containers may have come or
    /// gone (poll it, then call [`Agent::tick`]); `None` without inotify.
    pub fn wake_fd(&self) -> Option<std::os::fd::RawFd> {
        self.follower.as_ref().map(Follower::raw_fd)
    }

    /// What the runtime says of a container (only its id when it cannot
    /// say: the container keeps the baseline).
    fn describe(&self, c: &ContainerCgroup, notes: &mut Vec<String>) -> ContainerInfo {
        let bare = ContainerInfo {
            id: c.container.id.clone(),
            ..Default::default()
        };
        match &self.source {
            None => bare,
            Some(source) => match source.container(&c.container.id) {
                Ok(info) => info,
                Err(e) => {
                    notes.push(format!(
                        "container {}: {e}; it keeps the baseline",
                        short(&c.container.id)
                    ));
                    bare
                }
            },
        }
    }

    /// Follows the containers under the root: new ones are described and
    /// bound, gone ones (or a new cgroup at a known path) unbound.
    fn rescan(&mut self) -> Vec<String> {
        self.walked = Instant::now();
        let mut notes = Vec::new();
        let now = discovery::scan(&self.root);
        let gone: Vec<PathBuf> = self
            .containers
            .iter()
            .filter(|(p, t)| now.get(*p).map(|c| c.cgroup_id) != Some(t.cgroup.cgroup_id))
            .map(|(p, _)| p.clone())
            .collect();
        for path in gone {
            let t = self.containers.remove(&path).expect("listed");
            self.due_scans.remove(&ScanTarget::Container(path.clone()));
            self.write_directory().remove(&t.cgroup.cgroup_id);
            if let Some((binding, handle)) = t.bound {
                let _ = self.enforcer.remove(handle);
                notes.push(format!(
                    "container {} is gone; binding `{binding}` released",
                    short(&t.info.id)
                ));
            }
        }
        for (path, c) in now {
            if self.containers.contains_key(&path) {
                continue;
            }
            let info = Arc::new(self.describe(&c, &mut notes));
            self.write_directory().insert(c.cgroup_id, info.clone());
            let mut t = Tracked {
                cgroup: c,
                info,
                bound: None,
            };
            self.bind(&mut t, &mut notes);
            self.containers.insert(path, t);
        }
        notes
    }

    /// Puts `t` under the binding it matches now (applying, updating or
    /// removing its scope).
    fn bind(&mut self, t: &mut Tracked, notes: &mut Vec<String>) {
        let want = binding_for(&self.config.bindings, &t.info)
            .map(|b| (b.name.clone(), b.profile.clone()));
        let who = describe_short(&t.info);
        match (want, t.bound.take()) {
            (None, None) => {}
            (None, Some((old, handle))) => {
                let _ = self.enforcer.remove(handle);
                notes.push(format!(
                    "{who}: binding `{old}` no longer matches; baseline only"
                ));
                self.due_scans
                    .insert(ScanTarget::Container(t.cgroup.path.clone()));
            }
            (Some((name, profile)), None) => {
                let scope = Scope::Cgroup(t.cgroup.path.clone());
                match self.enforcer.apply_valid(&profile.profile, scope) {
                    Ok(handle) => {
                        notes.push(format!(
                            "{who}: binding `{name}` applies profile `{}`",
                            profile.source
                        ));
                        t.bound = Some((name, handle));
                        self.due_scans
                            .insert(ScanTarget::Container(t.cgroup.path.clone()));
                    }
                    Err(e) => notes.push(format!(
                        "{who}: applying binding `{name}` failed: {e}; it keeps the baseline"
                    )),
                }
            }
            (Some((name, profile)), Some((_, handle))) => {
                match self.enforcer.update_valid(handle, &profile.profile) {
                    Ok(()) => {
                        notes.push(format!(
                            "{who}: binding `{name}` applies profile `{}`",
                            profile.source
                        ));
                        t.bound = Some((name, handle));
                        self.due_scans
                            .insert(ScanTarget::Container(t.cgroup.path.clone()));
                    }
                    Err(e) => {
                        notes.push(format!(
                            "{who}: switching to binding `{name}` failed: {e}; the previous profile stays"
                        ));
                        t.bound = Some((name, handle));
                    }
                }
            }
        }
    }

    /// Reads the configuration again; a bad one is refused whole and the
    /// current one kept.
    fn reload(&mut self) -> Vec<String> {
        self.stamp = stamp(&self.config_path);
        let config = match AgentConfig::load(&self.config_path) {
            Ok(c) => c,
            Err(e) => {
                return vec![format!(
                    "configuration not reloaded, the current one stays: {e}"
                )]
            }
        };
        let mut notes = vec![format!(
            "configuration {} reloaded",
            self.config_path.display()
        )];
        if *config.baseline.profile != *self.config.baseline.profile {
            match self
                .enforcer
                .update_valid(self.baseline, &config.baseline.profile)
            {
                Ok(()) => {
                    notes.push(format!(
                        "baseline `{}` now enforced",
                        config.baseline.source
                    ));
                    self.due_scans.insert(ScanTarget::Baseline);
                }
                Err(e) => notes.push(format!("baseline not changed: {e}")),
            }
        }
        self.config = config;
        let paths: Vec<PathBuf> = self.containers.keys().cloned().collect();
        for path in paths {
            let mut t = self.containers.remove(&path).expect("listed");
            let before = t.bound.as_ref().map(|(n, _)| n.clone());
            let profile_now = binding_for(&self.config.bindings, &t.info).map(|b| b.name.clone());
            if before != profile_now || before.is_some() {
                self.bind(&mut t, &mut notes);
            }
            self.containers.insert(path, t);
        }
        notes
    }

    fn write_directory(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, Arc<ContainerInfo>>> {
        self.directory.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The pods' cgroup root `config` names, or the one found under the
/// cgroup v2 mount.
pub fn pods_root_of(config: &AgentConfig) -> Result<PathBuf, AgentError> {
    match &config.pods_root {
        Some(root) => Ok(root.clone()),
        None => {
            let mount =
                minerguard::cgroup::cgroup2_mount().map_err(|e| AgentError::Enforce(e.into()))?;
            discovery::pods_root(&mount).ok_or(AgentError::NoPodsRoot { mount })
        }
    }
}

/// The scans an agent running `config` would make of every scope, without
/// one running (`minerguard scan --agent`): the containers found now, each
/// under the binding it matches by what `source` says of it (the baseline
/// when it says nothing).
pub fn scan_plan_of(
    config: &AgentConfig,
    source: Option<&dyn MetadataSource>,
    notes: &mut Vec<String>,
) -> Result<Vec<ScanJob>, AgentError> {
    let root = pods_root_of(config)?;
    let mut found = Vec::new();
    for (path, c) in discovery::scan(&root) {
        let info = match source.map(|s| s.container(&c.container.id)) {
            Some(Ok(info)) => info,
            Some(Err(e)) => {
                notes.push(format!(
                    "container {}: {e}; judged by the baseline",
                    short(&c.container.id)
                ));
                ContainerInfo {
                    id: c.container.id.clone(),
                    ..Default::default()
                }
            }
            None => ContainerInfo {
                id: c.container.id.clone(),
                ..Default::default()
            },
        };
        if let Some(b) = binding_for(&config.bindings, &info) {
            found.push((path, b, describe_short(&info)));
        }
    }
    let bound: Vec<BoundScope<'_>> = (found.iter())
        .map(|(path, b, who)| BoundScope {
            path,
            binding: &b.name,
            who: who.clone(),
            profile: &b.profile.profile,
        })
        .collect();
    let mut targets = vec![ScanTarget::Baseline];
    targets.extend(
        bound
            .iter()
            .map(|b| ScanTarget::Container(b.path.to_path_buf())),
    );
    Ok(jobs_for(
        &targets,
        &root,
        &config.baseline.profile,
        &bound,
        notes,
    ))
}

/// The first 12 digits of a container id, as runtimes show it.
fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// `ns/pod/container (id)` or the id alone.
fn describe_short(info: &ContainerInfo) -> String {
    if info.pod_name.is_empty() {
        format!("container {}", short(&info.id))
    } else {
        format!(
            "container {}/{}/{} ({})",
            info.namespace,
            info.pod_name,
            info.name,
            short(&info.id)
        )
    }
}
