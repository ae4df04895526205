//! One process's recent samples, and from them how many of its threads
//! wanted a CPU all the time over a window: (time on a CPU + time waiting
//! for one, since the newest sample at least a window old) / (wall time
//! since it). Counting the wait keeps a spinning thread busy on a crowded
//! host, where it gets far less than a whole CPU. A thread born within the
//! window is not judged until it has been seen for a whole window.

use std::{collections::VecDeque, time::Duration, time::Instant};

use super::sample::ThreadTimes;

/// What the samples of one process show over one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSignal {
    /// Threads that were running or waiting to run at least the busy share
    /// of the window.
    pub busy_threads: u32,
    /// Threads judged (alive across the whole window).
    pub threads: u32,
    /// The most runnable thread's share of the window (on a CPU or waiting
    /// for one), in percent.
    pub top_runnable_percent: u32,
    /// The busiest thread's share of one CPU it actually got, in percent.
    pub top_cpu_percent: u32,
    /// The wall time the shares were measured over (at least the window).
    pub span: Duration,
}

/// Samples of one process, oldest first.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: VecDeque<(Instant, Vec<ThreadTimes>)>,
}

impl History {
    /// Adds a sample taken at `at` (threads by id) and forgets what no
    /// window up to `keep` needs.
    pub fn push(&mut self, at: Instant, threads: Vec<ThreadTimes>, keep: Duration) {
        self.samples.push_back((at, threads));
        // Keep the newest sample at least `keep` old, and everything after.
        while self
            .samples
            .get(1)
            .is_some_and(|(t, _)| at.saturating_duration_since(*t) >= keep)
        {
            self.samples.pop_front();
        }
    }

    /// The CPU signal over `window` at the newest sample; `None` until the
    /// samples span a whole window.
    pub fn cpu(&self, window: Duration, busy_percent: u32) -> Option<CpuSignal> {
        let (now, latest) = self.samples.back()?;
        let (then, earlier) = self
            .samples
            .iter()
            .rev()
            .find(|(t, _)| now.saturating_duration_since(*t) >= window)?;
        let span = now.saturating_duration_since(*then);
        let span_ns = span.as_nanos().max(1) as f64;
        let mut signal = CpuSignal {
            span,
            ..CpuSignal::default()
        };
        let percent = |ns: u64| (100.0 * ns as f64 / span_ns).round() as u32;
        for t in latest {
            // Both lists are sorted by thread id.
            let Ok(i) = earlier.binary_search_by_key(&t.tid, |e| e.tid) else {
                continue;
            };
            let run = t.run_ns.saturating_sub(earlier[i].run_ns);
            let wait = t.wait_ns.saturating_sub(earlier[i].wait_ns);
            let runnable = percent(run + wait);
            signal.threads += 1;
            signal.top_runnable_percent = signal.top_runnable_percent.max(runnable);
            signal.top_cpu_percent = signal.top_cpu_percent.max(percent(run));
            if runnable >= busy_percent {
                signal.busy_threads += 1;
            }
        }
        Some(signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// (thread id, run seconds, wait seconds).
    fn threads(list: &[(u32, f64, f64)]) -> Vec<ThreadTimes> {
        list.iter()
            .map(|&(tid, run, wait)| ThreadTimes {
                tid,
                run_ns: (run * S as f64) as u64,
                wait_ns: (wait * S as f64) as u64,
            })
            .collect()
    }

    /// A history of samples every `step` seconds.
    fn history(step: u64, samples: &[&[(u32, f64, f64)]]) -> History {
        let start = Instant::now();
        let mut h = History::default();
        for (i, s) in samples.iter().enumerate() {
            let at = start + Duration::from_secs(step * i as u64);
            h.push(at, threads(s), Duration::from_secs(60));
        }
        h
    }

    #[test]
    fn nothing_until_a_whole_window_is_covered() {
        let h = history(2, &[&[(1, 0.0, 0.0)], &[(1, 2.0, 0.0)]]);
        assert_eq!(h.cpu(Duration::from_secs(4), 90), None);
        assert!(h.cpu(Duration::from_secs(2), 90).is_some());
    }

    #[test]
    fn counts_the_threads_that_wanted_a_cpu_all_along() {
        // Thread 1 spins alone; thread 2 spins on a crowded CPU (a third of
        // it, waiting the rest); thread 3 works half the time; 4 is new.
        let h = history(
            5,
            &[
                &[(1, 0.0, 0.0), (2, 0.0, 0.0), (3, 0.0, 0.0)],
                &[(1, 5.0, 0.0), (2, 1.7, 3.3), (3, 2.5, 0.0)],
                &[(1, 10.0, 0.0), (2, 3.3, 6.7), (3, 5.0, 0.0), (4, 0.1, 0.0)],
            ],
        );
        let s = h.cpu(Duration::from_secs(10), 90).unwrap();
        assert_eq!(s.busy_threads, 2, "{s:?}");
        assert_eq!(s.threads, 3, "the new thread is not judged yet");
        assert_eq!((s.top_runnable_percent, s.top_cpu_percent), (100, 100));
        assert_eq!(s.span, Duration::from_secs(10));
        assert_eq!(h.cpu(Duration::from_secs(10), 50).unwrap().busy_threads, 3);
    }

    #[test]
    fn old_samples_are_forgotten_but_one_window_is_kept() {
        let start = Instant::now();
        let mut h = History::default();
        for i in 0..100u32 {
            h.push(
                start + Duration::from_secs(i.into()),
                threads(&[(1, f64::from(i), 0.0)]),
                Duration::from_secs(10),
            );
        }
        assert!(h.samples.len() <= 12, "{}", h.samples.len());
        let s = h.cpu(Duration::from_secs(10), 90).unwrap();
        assert_eq!((s.busy_threads, s.top_cpu_percent), (1, 100));
    }
}
