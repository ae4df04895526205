//! The scans `watch` runs beside enforcement: once when a profile is
//! applied or reloaded, then every `--scan-every` (± 10 % jitter, so nodes
//! started together do not scan together), on a thread of its own that
//! never holds up the event path. Findings go out as event lines.

use std::{
    path::PathBuf,
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use crossbeam_channel::{RecvTimeoutError, Sender};
use minerguard::scan::{scan_json, Outcome, ScanOptions, Scanner};

use crate::PREFIX;

/// What the scan thread is told.
enum Msg {
    /// The profile changed: scan with it, now.
    Profile(Box<Scanner>),
}

/// The scan thread; dropping it stops it (after a scan under way).
pub struct ScanLoop {
    tx: Option<Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

impl ScanLoop {
    /// Scans `cgroups` with `scanner` now and then every `every` (never
    /// again when zero), sending each finding's event line to `lines`.
    pub fn spawn(
        scanner: Scanner,
        cgroups: Vec<PathBuf>,
        every: Duration,
        lines: Sender<String>,
    ) -> ScanLoop {
        let every = (!every.is_zero()).then_some(every);
        let (tx, rx) = crossbeam_channel::unbounded::<Msg>();
        let thread = std::thread::spawn(move || {
            let mut scanner = scanner;
            loop {
                scan_once(&scanner, &cgroups, &lines);
                let next = match every {
                    Some(every) => rx.recv_timeout(jittered(every)),
                    None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                };
                match next {
                    Ok(Msg::Profile(new)) => scanner = *new,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        });
        ScanLoop {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Scans again, now, with a reloaded profile.
    pub fn profile_changed(&self, scanner: Scanner) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Profile(Box::new(scanner)));
        }
    }
}

impl Drop for ScanLoop {
    fn drop(&mut self) {
        // Closing the channel ends the wait; the thread returns.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One scan of each cgroup (one gone does not keep the others from being
/// scanned); a summary line on stderr when something was found.
fn scan_once(scanner: &Scanner, cgroups: &[PathBuf], lines: &Sender<String>) {
    for cgroup in cgroups {
        let report = match scanner.scan(std::slice::from_ref(cgroup), &ScanOptions::default()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{PREFIX}: scan of {} skipped: {e}", cgroup.display());
                continue;
            }
        };
        for f in &report.findings {
            let _ = lines.send(scan_json(f, &report.profile));
        }
        if !report.findings.is_empty() {
            let killed = (report.findings.iter())
                .filter(|f| f.outcome == Outcome::Killed)
                .count();
            eprintln!(
                "{PREFIX}: scan of {}: {} processes, {} findings, {killed} killed",
                cgroup.display(),
                report.scanned,
                report.findings.len()
            );
        }
    }
}

/// `every` ± up to 10 %, from the clock's nanoseconds (no need for a
/// better random source: it only spreads scans out).
pub(crate) fn jittered(every: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // A fraction in [-1, 1).
    let f = f64::from(nanos % 2_000_000) / 1_000_000.0 - 1.0;
    every.mul_f64(1.0 + 0.1 * f)
}

/// `--scan-every`: a duration, or `0` (zero: no periodic scan).
pub fn parse_every(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    crate::learn::parse_duration(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let every = Duration::from_secs(600);
        for _ in 0..100 {
            let d = jittered(every);
            assert!(d >= Duration::from_secs(540) && d <= Duration::from_secs(660));
        }
    }

    #[test]
    fn every_takes_zero_as_off() {
        assert_eq!(parse_every("0"), Ok(Duration::ZERO));
        assert_eq!(parse_every("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_every("soon").is_err());
    }
}
