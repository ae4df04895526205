//! The behaviour detector `watch` runs beside enforcement, when the profile
//! has `behaviour` rules: every [`SAMPLE_PERIOD`] it samples the scopes'
//! processes (/proc only) on a thread of its own, off the event path, and
//! acts on what is mining. Detections go out as event lines of kind
//! `behaviour`.

use std::{path::PathBuf, thread::JoinHandle};

use crossbeam_channel::{RecvTimeoutError, Sender};
use minerguard::{
    behaviour::{Detector, SAMPLE_PERIOD},
    scan::{Outcome, ScanOptions},
    Enforcer, ValidProfile,
};

use crate::PREFIX;

/// The detector for `profile`'s behaviour rules, judging with the tuning
/// signal where `enforcer` counts tuning attempts (loaded with the profile:
/// apply it first); a warning where the rules are judged without it.
pub fn detector(profile: &ValidProfile<'_>, enforcer: &Enforcer) -> Detector {
    let mut detector = Detector::from_valid(profile);
    if !detector.rules().iter().any(|r| r.thresholds.count_tuning) {
        return detector;
    }
    match enforcer.tuning_counts() {
        Some(counts) => detector.count_tuning(counts),
        None => eprintln!(
            "{PREFIX}: warning: behaviour rules are judged without the tuning signal (attempts to reserve huge pages or write MSRs are not counted): {}",
            enforcer.tuning().err().unwrap_or_default()
        ),
    }
    detector
}

/// The detector thread; dropping it stops it (after a sample under way).
pub struct BehaviourLoop {
    tx: Option<Sender<Detector>>,
    thread: Option<JoinHandle<()>>,
}

impl BehaviourLoop {
    /// Samples `cgroups` with `detector` every [`SAMPLE_PERIOD`], sending
    /// each detection's event line to `lines`.
    pub fn spawn(detector: Detector, cgroups: Vec<PathBuf>, lines: Sender<String>) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<Detector>();
        let thread = std::thread::spawn(move || {
            let mut detector = detector;
            loop {
                sample_once(&mut detector, &cgroups, &lines);
                match rx.recv_timeout(SAMPLE_PERIOD) {
                    // A reloaded profile: its thresholds from now on (the
                    // samples so far are dropped with the old detector).
                    Ok(new) => detector = new,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        });
        BehaviourLoop {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Judges with a reloaded profile's rules from the next sample on.
    pub fn profile_changed(&self, detector: Detector) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(detector);
        }
    }
}

impl Drop for BehaviourLoop {
    fn drop(&mut self) {
        // Closing the channel ends the wait; the thread returns.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One sample of the scopes; a line on stderr for each detection.
fn sample_once(detector: &mut Detector, cgroups: &[PathBuf], lines: &Sender<String>) {
    // All scopes in one sample: a process is tracked once, whatever cgroup
    // lists it. A scope whose cgroup is gone is skipped until it returns.
    let present: Vec<PathBuf> = (cgroups.iter())
        .filter(|c| c.join("cgroup.procs").exists())
        .cloned()
        .collect();
    let sample = match detector.sample(&present, &ScanOptions::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{PREFIX}: behaviour sample skipped: {e}");
            return;
        }
    };
    for d in &sample.detections {
        let _ = lines.send(d.to_json(detector.profile()));
        let killed = matches!(d.outcome, Outcome::Killed | Outcome::KilledCgroup { .. });
        eprintln!(
            "{PREFIX}: behaviour: {} (pid {}) is mining ({}): {}{}",
            d.process.comm,
            d.process.pid,
            d.verdict.fired().join("+"),
            d.outcome,
            if killed { "" } else { " (left running)" }
        );
    }
}
