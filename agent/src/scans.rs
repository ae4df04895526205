//! Scans of what already runs in the agent's scopes: each scope judged by
//! the profile that scope is under (the baseline over the pods' root with
//! the bound containers left out, each bound container by its binding's
//! profile), run on a thread of their own so that the agent's loop and the
//! event path never wait for one.

use std::{collections::HashMap, path::PathBuf, sync::Arc, thread::JoinHandle};

use crossbeam_channel::Sender;
use minerguard::{
    scan::{ScanOptions, ScanReport, Scanner},
    ValidProfile,
};

/// One scan to run: cgroups, the profile that judges them, and the
/// subtrees left to scans of their own.
#[derive(Clone)]
pub struct ScanJob {
    /// What is scanned, for the log (`baseline on …`, `binding `x` on …`).
    pub label: String,
    /// The profile's rules.
    pub scanner: Arc<Scanner>,
    /// The cgroups scanned, with their descendants.
    pub cgroups: Vec<PathBuf>,
    /// Subtrees left out (bound containers under the baseline's root).
    pub exclude: Vec<PathBuf>,
}

impl std::fmt::Debug for ScanJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanJob")
            .field("label", &self.label)
            .field("profile", self.scanner.profile())
            .field("cgroups", &self.cgroups)
            .field("exclude", &self.exclude)
            .finish()
    }
}

/// What a scan covers: the baseline over everything not bound, or one
/// container by the profile it is under now.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScanTarget {
    /// Every process under the pods' root but the bound containers'.
    Baseline,
    /// One container's cgroup (by its binding's profile, or the baseline's
    /// when it has none).
    Container(PathBuf),
}

/// A scope of the plan: a bound container and the profile it is under.
pub struct BoundScope<'a> {
    /// The container's cgroup.
    pub path: &'a std::path::Path,
    /// The binding's name.
    pub binding: &'a str,
    /// How the container is named in logs.
    pub who: String,
    /// The binding's profile.
    pub profile: &'a ValidProfile<'static>,
}

/// Turns targets into jobs. `bound` lists every bound container (the
/// baseline's scan leaves them out). A profile whose rules cannot be made
/// into a scanner is skipped with a note (it was applied, so this does not
/// happen short of a bug; the kernel enforces it either way).
pub fn jobs_for(
    targets: &[ScanTarget],
    root: &std::path::Path,
    baseline: &ValidProfile<'static>,
    bound: &[BoundScope<'_>],
    notes: &mut Vec<String>,
) -> Vec<ScanJob> {
    // One scanner per profile, shared by the containers bound to it.
    let mut scanners: HashMap<Option<String>, Option<Arc<Scanner>>> = HashMap::new();
    let mut scanner_of = |binding: Option<&str>, profile: &ValidProfile<'static>| {
        scanners
            .entry(binding.map(str::to_owned))
            .or_insert_with(|| match Scanner::from_valid(profile) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    notes.push(format!(
                        "profile `{}` cannot be used to scan ({e}); its scopes are not scanned",
                        profile.name
                    ));
                    None
                }
            })
            .clone()
    };
    let mut jobs = Vec::new();
    for target in targets {
        let job = match target {
            ScanTarget::Baseline => scanner_of(None, baseline).map(|scanner| ScanJob {
                label: format!("baseline on {}", root.display()),
                scanner,
                cgroups: vec![root.to_path_buf()],
                exclude: bound.iter().map(|b| b.path.to_path_buf()).collect(),
            }),
            ScanTarget::Container(path) => match bound.iter().find(|b| b.path == path) {
                Some(b) => scanner_of(Some(b.binding), b.profile).map(|scanner| ScanJob {
                    label: format!("binding `{}` on {}", b.binding, b.who),
                    scanner,
                    cgroups: vec![path.clone()],
                    exclude: Vec::new(),
                }),
                None => scanner_of(None, baseline).map(|scanner| ScanJob {
                    label: format!("baseline on {}", path.display()),
                    scanner,
                    cgroups: vec![path.clone()],
                    exclude: Vec::new(),
                }),
            },
        };
        jobs.extend(job);
    }
    jobs
}

/// A scan that ran: its job's label and what it found (or why it could
/// not run: a cgroup that went away meanwhile, typically).
pub struct ScanDone {
    /// The job's label.
    pub label: String,
    /// The report, or the error.
    pub report: Result<ScanReport, minerguard::Error>,
}

/// The scanning thread. Jobs are run in the order given; dropping it
/// waits for the scan under way and ends the thread.
pub struct Scanning {
    tx: Option<Sender<(Vec<ScanJob>, bool)>>,
    thread: Option<JoinHandle<()>>,
}

impl Scanning {
    /// Starts the thread: each job it is given is scanned and handed to
    /// `done`.
    pub fn spawn(done: impl Fn(ScanDone) + Send + 'static) -> std::io::Result<Scanning> {
        let (tx, rx) = crossbeam_channel::unbounded::<(Vec<ScanJob>, bool)>();
        let thread = std::thread::Builder::new()
            .name("minerguard-scan".into())
            .spawn(move || {
                for (jobs, dry_run) in rx {
                    for job in jobs {
                        let options = ScanOptions {
                            dry_run,
                            exclude: job.exclude.clone(),
                        };
                        let report = job.scanner.scan(&job.cgroups, &options);
                        done(ScanDone {
                            label: job.label,
                            report,
                        });
                    }
                }
            })?;
        Ok(Scanning {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues `jobs`, to be run with `dry_run` (report, never kill).
    pub fn run(&self, jobs: Vec<ScanJob>, dry_run: bool) {
        if jobs.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send((jobs, dry_run));
        }
    }
}

impl Drop for Scanning {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn jobs(targets: &[ScanTarget]) -> Vec<ScanJob> {
        let baseline = ValidProfile::bundled("default").unwrap();
        let strict = ValidProfile::bundled("container-strict").unwrap();
        let bound = [BoundScope {
            path: Path::new("/cg/pods/pod1/c1"),
            binding: "strict",
            who: "container c1".into(),
            profile: &strict,
        }];
        let mut notes = Vec::new();
        let jobs = jobs_for(
            targets,
            Path::new("/cg/pods"),
            &baseline,
            &bound,
            &mut notes,
        );
        assert!(notes.is_empty(), "{notes:?}");
        jobs
    }

    #[test]
    fn the_baseline_leaves_bound_containers_to_their_binding() {
        let got = jobs(&[
            ScanTarget::Baseline,
            ScanTarget::Container("/cg/pods/pod1/c1".into()),
        ]);
        assert_eq!(got.len(), 2);
        assert_eq!(&**got[0].scanner.profile(), "default");
        assert_eq!(got[0].cgroups, [PathBuf::from("/cg/pods")]);
        assert_eq!(got[0].exclude, [PathBuf::from("/cg/pods/pod1/c1")]);
        assert_eq!(&**got[1].scanner.profile(), "container-strict");
        assert_eq!(got[1].cgroups, [PathBuf::from("/cg/pods/pod1/c1")]);
        assert!(got[1].exclude.is_empty());
        assert!(
            got[1].label.contains("binding `strict`"),
            "{}",
            got[1].label
        );
    }

    #[test]
    fn a_container_without_a_binding_is_judged_by_the_baseline() {
        let got = jobs(&[ScanTarget::Container("/cg/pods/pod1/c2".into())]);
        assert_eq!(got.len(), 1);
        assert_eq!(&**got[0].scanner.profile(), "default");
        assert_eq!(got[0].cgroups, [PathBuf::from("/cg/pods/pod1/c2")]);
    }
}
