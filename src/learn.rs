//! Learn mode: record what a scope executes, then write an `exec.allow_only`
//! profile from it.
//!
//! Learning applies [`ExecLearner::profile`] (an allow-list that allows
//! nothing, in audit mode: every exec in the scope is reported, none is
//! refused) and feeds the events to [`ExecLearner::record`]. Each event
//! names the executed file by its path from the executing task's root,
//! built by the kernel (symlinks, `/proc/self/exe` and relative paths
//! resolved in the task itself): for a task in a container, the path as the
//! container sees it, which is what the learned allow-list must say (the
//! enforcer matches allow-list paths on the same view). The learner takes
//! that path as it is and never resolves it on the host.
//!
//! What is judged, and so learned: on the lsm backend a script and its
//! interpreter (two events); on the cgroup backend the program the task
//! runs after the exec (a script's interpreter: the script file is gone by
//! the time its tracepoint runs).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    backend::BackendKind,
    events::{Event, Target},
    profile::{Action, Profile, Rule},
    Enforcer, Result, Scope,
};

/// Profile name of the learning profile (events carry it).
pub const LEARN_PROFILE: &str = "minerguard-learn";
/// Rule name of the learning rule.
pub const LEARN_RULE: &str = "learn-exec";
/// An allow-list prefix that can never exist (procfs refuses mkdir), so the
/// learning rule allows nothing and reports every exec.
const NOTHING: &str = "/proc/minerguard-allows-nothing/";

/// Collects the programs a scope runs.
#[derive(Debug, Clone)]
pub struct ExecLearner {
    learned: BTreeSet<PathBuf>,
    /// Events whose path the kernel could not build (it fell back to the
    /// path as the caller passed it, which may be relative).
    unresolved: Vec<String>,
}

impl ExecLearner {
    /// An empty learner for events from `backend` (both name files by the
    /// same view; the backend decides only which files are judged).
    pub fn new(backend: BackendKind) -> Self {
        let _ = backend;
        ExecLearner {
            learned: BTreeSet::new(),
            unresolved: Vec::new(),
        }
    }

    /// The audit-mode profile that reports every exec of a scope.
    pub fn profile() -> Profile {
        Profile::new(LEARN_PROFILE).rule(Rule::exec_allow_only(
            LEARN_RULE,
            Action::Audit,
            [NOTHING],
        ))
    }

    /// Takes one event; returns the paths it added (empty for events of
    /// other profiles, or already known paths).
    pub fn record(&mut self, ev: &Event) -> Vec<PathBuf> {
        if ev.profile.as_ref() != LEARN_PROFILE || ev.rule.as_ref() != LEARN_RULE {
            return Vec::new();
        }
        let Target::Exec { path } = &ev.target else {
            return Vec::new();
        };
        let path = Path::new(path.as_str());
        if !path.is_absolute() || path.as_os_str().len() >= crate::compile::limits::MAX_PATH_BYTES {
            // Relative: the kernel could not build the path (too deep); a
            // path that filled the event may be cut short.
            self.unresolved.push(path.to_string_lossy().into_owned());
            return Vec::new();
        }
        if self.learned.insert(path.to_path_buf()) {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        }
    }

    /// Everything learned so far, sorted.
    pub fn learned(&self) -> impl Iterator<Item = &Path> {
        self.learned.iter().map(PathBuf::as_path)
    }

    /// Paths the kernel could not name from the task's root (nested too
    /// deep or too long for an event): not learned, so still refused.
    pub fn unresolved(&self) -> &[String] {
        &self.unresolved
    }

    /// The allow-only profile: one rule `allow-learned` with `action`,
    /// listing every learned file.
    pub fn allow_only_profile(&self, name: &str, action: Action) -> Profile {
        Profile::new(name).rule(Rule::exec_allow_only(
            "allow-learned",
            action,
            self.learned
                .iter()
                .map(|p| p.to_string_lossy().into_owned()),
        ))
    }
}

/// What [`Enforcer::learn`] reports while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnProgress<'a> {
    /// The learning profile is applied: execs from now on are recorded.
    Started,
    /// A program not seen before ran.
    Learned(&'a Path),
}

impl Enforcer {
    /// Learns what `scope` executes for `duration`: applies the learning
    /// profile, reads the event stream (events of other profiles are
    /// dropped meanwhile), reports progress, then removes the learning
    /// profile. Nothing is refused while learning.
    pub fn learn(
        &mut self,
        scope: Scope,
        duration: Duration,
        mut progress: impl FnMut(LearnProgress<'_>),
    ) -> Result<ExecLearner> {
        let handle = self.apply(&ExecLearner::profile(), scope)?;
        progress(LearnProgress::Started);
        let mut on_new = |p: &Path| progress(LearnProgress::Learned(p));
        let events = self.events();
        let mut learner = ExecLearner::new(self.backend());
        let deadline = Instant::now() + duration;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Ok(ev) = events.recv_timeout(left) {
                for p in learner.record(&ev) {
                    on_new(&p);
                }
            }
        }
        // Events already in the channel belong to the learning window too.
        while let Ok(ev) = events.try_recv() {
            for p in learner.record(&ev) {
                on_new(&p);
            }
        }
        self.remove(handle)?;
        Ok(learner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KernelPolicy;

    #[test]
    fn the_learning_profile_compiles_and_allows_nothing() {
        let mut k = KernelPolicy::compile(&ExecLearner::profile()).unwrap();
        k.resolve_inodes().unwrap();
        assert!(k.allow_only.is_some());
        assert!(k.inodes.is_empty(), "{:?}", k.inodes);
    }

    #[test]
    fn the_learned_profile_lists_every_path_once() {
        let mut l = ExecLearner::new(BackendKind::Lsm);
        l.learned.insert("/usr/bin/b".into());
        l.learned.insert("/usr/bin/a".into());
        let p = l.allow_only_profile("app", Action::Deny);
        let allow = &p.rules[0].exec.as_ref().unwrap().allow_only;
        assert_eq!(allow, &["/usr/bin/a", "/usr/bin/b"]);
        p.validate().unwrap();
    }
}
