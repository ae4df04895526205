//! The behaviour detector over the agent's scopes: each scope whose profile
//! has `behaviour` rules is sampled by that profile's detector (the
//! baseline's over the pods' root, the bound containers left out; a
//! binding's over its containers), on a thread of its own, every
//! [`SAMPLE_PERIOD`]. A detector keeps its processes' history while its
//! scope changes (containers come and go) and starts afresh only when its
//! rules change.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    thread::JoinHandle,
};

use crossbeam_channel::{RecvTimeoutError, Sender};
use minerguard::{
    behaviour::{Detection, Detector, SAMPLE_PERIOD},
    scan::ScanOptions,
    ValidProfile,
};

use crate::scans::BoundScope;

/// One detector's scope: what it samples.
#[derive(Debug)]
pub struct BehaviourScope {
    /// `None` for the baseline, else the binding's name.
    pub binding: Option<String>,
    /// The profile's detector (its rules; a fresh history).
    pub detector: Detector,
    /// The cgroups sampled, with their descendants.
    pub cgroups: Vec<PathBuf>,
    /// Subtrees left out (bound containers under the baseline's root).
    pub exclude: Vec<PathBuf>,
}

impl PartialEq for BehaviourScope {
    fn eq(&self, other: &Self) -> bool {
        self.binding == other.binding
            && same_rules(&self.detector, &other.detector)
            && self.cgroups == other.cgroups
            && self.exclude == other.exclude
    }
}

/// Whether two detectors judge alike (same profile name and rules).
fn same_rules(a: &Detector, b: &Detector) -> bool {
    a.profile() == b.profile() && a.rules() == b.rules()
}

/// The scopes to sample: the baseline over `root` (bound containers left
/// out) and each binding over its containers, for the profiles that have
/// `behaviour` rules.
pub fn plan(
    root: &Path,
    baseline: &ValidProfile<'static>,
    bound: &[BoundScope<'_>],
) -> Vec<BehaviourScope> {
    let mut out = Vec::new();
    let detector = Detector::from_valid(baseline);
    if !detector.rules().is_empty() {
        out.push(BehaviourScope {
            binding: None,
            detector,
            cgroups: vec![root.to_path_buf()],
            exclude: bound.iter().map(|b| b.path.to_path_buf()).collect(),
        });
    }
    let mut by_binding: Vec<(&str, &ValidProfile<'static>, Vec<PathBuf>)> = Vec::new();
    for b in bound {
        match by_binding.iter_mut().find(|(name, ..)| *name == b.binding) {
            Some((_, _, paths)) => paths.push(b.path.to_path_buf()),
            None => by_binding.push((b.binding, b.profile, vec![b.path.to_path_buf()])),
        }
    }
    for (name, profile, cgroups) in by_binding {
        let detector = Detector::from_valid(profile);
        if !detector.rules().is_empty() {
            out.push(BehaviourScope {
                binding: Some(name.to_string()),
                detector,
                cgroups,
                exclude: Vec::new(),
            });
        }
    }
    out
}

/// The sampling thread; dropping it ends it (after a sample under way).
pub struct Watching {
    tx: Option<Sender<(Vec<BehaviourScope>, bool)>>,
    thread: Option<JoinHandle<()>>,
}

impl Watching {
    /// Starts the thread with nothing to sample; each detection is handed
    /// to `found` with its detector's profile name.
    pub fn spawn(
        found: impl Fn(&Detection, &std::sync::Arc<str>) + Send + 'static,
    ) -> std::io::Result<Watching> {
        let (tx, rx) = crossbeam_channel::unbounded::<(Vec<BehaviourScope>, bool)>();
        let thread = std::thread::Builder::new()
            .name("minerguard-behaviour".into())
            .spawn(move || {
                let mut scopes: Vec<BehaviourScope> = Vec::new();
                let mut dry_run = false;
                loop {
                    for s in &mut scopes {
                        sample(s, dry_run, &found);
                    }
                    match rx.recv_timeout(SAMPLE_PERIOD) {
                        Ok((plan, dry)) => {
                            scopes = carry_over(scopes, plan);
                            dry_run = dry;
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(Watching {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Samples `plan` from now on; with `dry_run`, reports only.
    pub fn set_plan(&self, plan: Vec<BehaviourScope>, dry_run: bool) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((plan, dry_run));
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        // Closing the channel ends the wait; the thread returns.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The new plan, with each detector whose rules did not change keeping its
/// history (a window under way is not lost to a container that came).
fn carry_over(old: Vec<BehaviourScope>, plan: Vec<BehaviourScope>) -> Vec<BehaviourScope> {
    let mut old: HashMap<Option<String>, Detector> =
        (old.into_iter()).map(|s| (s.binding, s.detector)).collect();
    plan.into_iter()
        .map(|mut s| {
            if let Some(kept) = old.remove(&s.binding) {
                if same_rules(&kept, &s.detector) {
                    s.detector = kept;
                }
            }
            s
        })
        .collect()
}

/// One sample of one scope; a cgroup that went meanwhile is skipped.
fn sample(
    scope: &mut BehaviourScope,
    dry_run: bool,
    found: &impl Fn(&Detection, &std::sync::Arc<str>),
) {
    let present: Vec<PathBuf> = (scope.cgroups.iter())
        .filter(|c| c.join("cgroup.procs").exists())
        .cloned()
        .collect();
    if present.is_empty() {
        return;
    }
    let options = ScanOptions {
        dry_run,
        exclude: scope.exclude.clone(),
    };
    // A failed sample (a cgroup removed between the check and the walk) is
    // taken again at the next period.
    if let Ok(sample) = scope.detector.sample(&present, &options) {
        let profile = scope.detector.profile().clone();
        for d in &sample.detections {
            found(d, &profile);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(text: &str) -> ValidProfile<'static> {
        let p = minerguard::Profile::from_yaml(text).unwrap();
        p.validate().unwrap().into_owned()
    }

    #[test]
    fn only_profiles_with_behaviour_rules_are_sampled_and_history_survives_a_new_scope() {
        let plain = ValidProfile::bundled("default").unwrap();
        let watched = profile(
            "apiVersion: minerguard/v1\nname: watched\nrules:\n  - name: b\n    action: kill\n    behaviour: {}\n",
        );
        let bound = |paths: &[&'static str]| -> Vec<BoundScope<'_>> {
            paths
                .iter()
                .copied()
                .map(|p| BoundScope {
                    path: Path::new(p),
                    binding: "w",
                    who: p.into(),
                    profile: &watched,
                })
                .collect()
        };
        let root = Path::new("/cg/pods");
        // The baseline has no behaviour rules: only the binding's scope.
        let one = plan(root, &plain, &bound(&["/cg/pods/a"]));
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].binding.as_deref(), Some("w"));
        assert_eq!(one[0].cgroups, [PathBuf::from("/cg/pods/a")]);
        // Both containers under one detector; the baseline would leave them out.
        let two = plan(root, &watched, &bound(&["/cg/pods/a", "/cg/pods/b"]));
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].binding, None);
        assert_eq!(
            two[0].exclude,
            [PathBuf::from("/cg/pods/a"), PathBuf::from("/cg/pods/b")]
        );
        assert_eq!(two[1].cgroups.len(), 2);
        assert!(one != plan(root, &plain, &bound(&["/cg/pods/a", "/cg/pods/b"])));
        assert!(one == plan(root, &plain, &bound(&["/cg/pods/a"])));
        let carried = carry_over(
            one,
            plan(root, &plain, &bound(&["/cg/pods/a", "/cg/pods/b"])),
        );
        assert_eq!(carried.len(), 1);
        assert_eq!(carried[0].cgroups.len(), 2);
    }
}
