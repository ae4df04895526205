//! One process's recent CPU samples, and from them how many of its threads
//! kept a CPU busy over a window: (CPU time used since the newest sample at
//! least a window old) / (wall time since it). A thread born within the
//! window is not judged until it has been seen for a whole window.

use std::{collections::VecDeque, time::Duration, time::Instant};

/// What the CPU samples of one process show over one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSignal {
    /// Threads that used at least the busy share of a CPU over the window.
    pub busy_threads: u32,
    /// Threads judged (alive across the whole window).
    pub threads: u32,
    /// The busiest thread's share of one CPU, in percent.
    pub top_percent: u32,
    /// The wall time the shares were measured over (at least the window).
    pub span: Duration,
}

/// Samples of one process, oldest first.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: VecDeque<(Instant, Vec<(u32, u64)>)>,
}

impl History {
    /// Adds a sample taken at `at` (threads by id, CPU ticks) and forgets
    /// what no window up to `keep` needs.
    pub fn push(&mut self, at: Instant, threads: Vec<(u32, u64)>, keep: Duration) {
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

    /// The CPU signal over `window` at the newest sample, with `hz` clock
    /// ticks a second; `None` until the samples span a whole window.
    pub fn cpu(&self, window: Duration, busy_percent: u32, hz: u64) -> Option<CpuSignal> {
        let (now, latest) = self.samples.back()?;
        let (then, earlier) = self
            .samples
            .iter()
            .rev()
            .find(|(t, _)| now.saturating_duration_since(*t) >= window)?;
        let span = now.saturating_duration_since(*then);
        let span_ticks = span.as_secs_f64() * hz as f64;
        let mut signal = CpuSignal {
            span,
            ..CpuSignal::default()
        };
        for (tid, ticks) in latest {
            // Both lists are sorted by thread id.
            let Ok(i) = earlier.binary_search_by_key(tid, |(t, _)| *t) else {
                continue;
            };
            let used = ticks.saturating_sub(earlier[i].1) as f64;
            let percent = (100.0 * used / span_ticks).round() as u32;
            signal.threads += 1;
            signal.top_percent = signal.top_percent.max(percent);
            if percent >= busy_percent {
                signal.busy_threads += 1;
            }
        }
        Some(signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 100;

    /// A history of samples every `step` seconds, each thread's ticks given
    /// per sample.
    fn history(step: u64, samples: &[&[(u32, u64)]]) -> (History, Instant) {
        let start = Instant::now();
        let mut h = History::default();
        let mut at = start;
        for s in samples {
            h.push(at, s.to_vec(), Duration::from_secs(60));
            at += Duration::from_secs(step);
        }
        (h, at - Duration::from_secs(step))
    }

    #[test]
    fn nothing_until_a_whole_window_is_covered() {
        let (h, _) = history(2, &[&[(1, 0)], &[(1, 200)]]);
        assert_eq!(h.cpu(Duration::from_secs(4), 90, HZ), None);
        assert!(h.cpu(Duration::from_secs(2), 90, HZ).is_some());
    }

    #[test]
    fn counts_the_threads_that_kept_a_cpu_busy() {
        // Thread 1 spins, thread 2 works half the time, thread 3 is new.
        let (h, _) = history(
            5,
            &[
                &[(1, 0), (2, 0)],
                &[(1, 500), (2, 250)],
                &[(1, 1000), (2, 500), (3, 10)],
            ],
        );
        let s = h.cpu(Duration::from_secs(10), 90, HZ).unwrap();
        assert_eq!(s.busy_threads, 1);
        assert_eq!(s.threads, 2, "the new thread is not judged yet");
        assert_eq!(s.top_percent, 100);
        assert_eq!(s.span, Duration::from_secs(10));
        let s = h.cpu(Duration::from_secs(10), 50, HZ).unwrap();
        assert_eq!(s.busy_threads, 2);
    }

    #[test]
    fn old_samples_are_forgotten_but_one_window_is_kept() {
        let start = Instant::now();
        let mut h = History::default();
        for i in 0..100u64 {
            h.push(
                start + Duration::from_secs(i),
                vec![(1, i * 100)],
                Duration::from_secs(10),
            );
        }
        assert!(h.samples.len() <= 12, "{}", h.samples.len());
        let s = h.cpu(Duration::from_secs(10), 90, HZ).unwrap();
        assert_eq!((s.busy_threads, s.top_percent), (1, 100));
    }
}
