//! Learn mode: record what a scope executes, then write an `exec.allow_only`
//! profile from it.
//!
//! Learning applies [`ExecLearner::profile`] (an allow-list that allows
//! nothing, in audit mode: every exec in the scope is reported, none is
//! refused) and feeds the events to [`ExecLearner::record`]. Each event
//! names the executed path as the caller passed it; the learner makes it
//! absolute (against the process's working directory) and canonical
//! (symlinks resolved), and, on the cgroup backend where the event comes
//! after the exec, adds the binary the process now runs (`/proc/PID/exe`,
//! the interpreter for a script).

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
    /// Events come after the exec (cgroup backend): /proc/PID/exe is the
    /// new image. On the lsm backend they come before it.
    after_exec: bool,
    learned: BTreeSet<PathBuf>,
    /// Events whose path could not be made absolute (the process was gone).
    unresolved: Vec<String>,
}

impl ExecLearner {
    /// An empty learner for events from `backend`.
    pub fn new(backend: BackendKind) -> Self {
        ExecLearner {
            after_exec: backend == BackendKind::Cgroup,
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
        let proc = PathBuf::from(format!("/proc/{}", ev.tgid));
        let mut found = Vec::new();
        match absolute(Path::new(path.as_str()), &proc) {
            Some(p) => found.push(p),
            None => self.unresolved.push(path.as_str().to_owned()),
        }
        // After the exec (cgroup backend), the image the process runs now.
        if self.after_exec {
            if let Ok(exe) = std::fs::read_link(proc.join("exe")) {
                if exe.is_absolute() && exe.exists() {
                    found.push(exe);
                }
            }
        }
        found.retain(|p| self.learned.insert(p.clone()));
        found
    }

    /// Everything learned so far, sorted.
    pub fn learned(&self) -> impl Iterator<Item = &Path> {
        self.learned.iter().map(PathBuf::as_path)
    }

    /// Relative paths of processes that exited before they could be resolved.
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

/// `path` made absolute against the process's working directory and
/// canonicalised; None when that is not possible (process gone).
fn absolute(path: &Path, proc: &Path) -> Option<PathBuf> {
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::fs::read_link(proc.join("cwd")).ok()?.join(path)
    };
    std::fs::canonicalize(&full)
        .ok()
        .or_else(|| full.is_absolute().then_some(full))
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
    fn absolute_paths_are_canonicalised() {
        let me = PathBuf::from("/proc/self");
        assert_eq!(
            absolute(Path::new("/bin/sh"), &me).unwrap(),
            std::fs::canonicalize("/bin/sh").unwrap()
        );
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            absolute(Path::new("Cargo.toml"), &me).unwrap(),
            cwd.join("Cargo.toml")
        );
        assert!(absolute(Path::new("x"), Path::new("/proc/0")).is_none());
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
