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

/// What the samples of one process show over the throttled window: threads
/// runnable a good share of a long window that never block of their own
/// accord but for being stopped, the shape of a miner held to a duty cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThrottledSignal {
    /// Threads runnable at least the throttled share of the window that
    /// blocked at most the allowed times a second.
    pub threads: u32,
    /// Threads runnable at least the throttled share, however often they
    /// blocked.
    pub runnable_threads: u32,
    /// The most runnable thread's share of the window, in percent.
    pub top_runnable_percent: u32,
    /// Of the threads runnable enough, the fewest times one blocked a
    /// second (rounded); `None` when none was.
    pub fewest_sleeps_per_sec: Option<u32>,
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

    /// The newest sample's threads, and when it was taken.
    pub fn latest(&self) -> Option<(Instant, &[ThreadTimes])> {
        self.samples.back().map(|(at, t)| (*at, t.as_slice()))
    }

    /// The throttled signal over `window` at the newest sample; `None`
    /// until the samples span a whole window. A thread's sleeps are counted
    /// between the oldest and newest samples of the window that read them
    /// (they are read only while it is active), which must be half a window
    /// apart: otherwise it is not counted.
    pub fn throttled(
        &self,
        window: Duration,
        percent: u32,
        max_sleeps: u32,
    ) -> Option<ThrottledSignal> {
        let (now, latest) = self.samples.back()?;
        let first = self
            .samples
            .iter()
            .rposition(|(t, _)| now.saturating_duration_since(*t) >= window)?;
        let (then, earlier) = &self.samples[first];
        let span = now.saturating_duration_since(*then);
        let span_ns = span.as_nanos().max(1) as f64;
        let mut signal = ThrottledSignal {
            span,
            ..ThrottledSignal::default()
        };
        let mut fewest: Option<f64> = None;
        for t in latest {
            let Ok(i) = earlier.binary_search_by_key(&t.tid, |e| e.tid) else {
                continue;
            };
            let ns = (t.run_ns + t.wait_ns).saturating_sub(earlier[i].run_ns + earlier[i].wait_ns);
            let runnable = (100.0 * ns as f64 / span_ns).round() as u32;
            signal.top_runnable_percent = signal.top_runnable_percent.max(runnable);
            if runnable < percent {
                continue;
            }
            signal.runnable_threads += 1;
            let Some(rate) = self.sleeps_per_sec(first, t.tid, window / 2) else {
                continue;
            };
            fewest = Some(fewest.map_or(rate, |f| f.min(rate)));
            if rate <= f64::from(max_sleeps) {
                signal.threads += 1;
            }
        }
        signal.fewest_sleeps_per_sec = fewest.map(|f| f.round() as u32);
        Some(signal)
    }

    /// Thread `tid`'s voluntary switches a second between the oldest and
    /// newest samples from `first` on that read them, if those are at
    /// least `min_span` apart.
    fn sleeps_per_sec(&self, first: usize, tid: u32, min_span: Duration) -> Option<f64> {
        let mut read = self.samples.range(first..).filter_map(|(at, threads)| {
            let i = threads.binary_search_by_key(&tid, |e| e.tid).ok()?;
            Some((*at, threads[i].sleeps?))
        });
        let (t0, s0) = read.next()?;
        let (t1, s1) = read.next_back()?;
        let span = t1.saturating_duration_since(t0);
        (span >= min_span && !span.is_zero())
            .then(|| s1.saturating_sub(s0) as f64 / span.as_secs_f64())
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
                sleeps: None,
            })
            .collect()
    }

    /// (thread id, run seconds, sleeps read) every 2 s.
    fn sleepy(samples: &[&[(u32, f64, Option<u64>)]]) -> History {
        let start = Instant::now();
        let mut h = History::default();
        for (i, s) in samples.iter().enumerate() {
            let at = start + Duration::from_secs(2 * i as u64);
            let list = s
                .iter()
                .map(|&(tid, run, sleeps)| ThreadTimes {
                    tid,
                    run_ns: (run * S as f64) as u64,
                    wait_ns: 0,
                    sleeps,
                })
                .collect();
            h.push(at, list, Duration::from_secs(60));
        }
        h
    }

    #[test]
    fn a_stopped_and_continued_thread_is_throttled_a_sleeping_one_is_not() {
        // Over 8 s: thread 1 runs 2 s of every 4 (stopped between: one sleep
        // per stop, and its sleeps are not read while stopped); thread 2
        // runs as much but blocks 500 times a second; thread 3 idles.
        let h = sleepy(&[
            &[(1, 0.0, Some(0)), (2, 0.0, Some(0)), (3, 0.0, None)],
            &[(1, 2.0, Some(1)), (2, 1.0, Some(1000)), (3, 0.0, None)],
            &[(1, 2.0, None), (2, 2.0, Some(2000)), (3, 0.0, None)],
            &[(1, 4.0, Some(2)), (2, 3.0, Some(3000)), (3, 0.0, None)],
            &[(1, 4.0, None), (2, 4.0, Some(4000)), (3, 0.1, None)],
        ]);
        let s = h.throttled(Duration::from_secs(8), 40, 20).unwrap();
        assert_eq!((s.threads, s.runnable_threads), (1, 2), "{s:?}");
        assert_eq!(s.top_runnable_percent, 50);
        assert_eq!(s.fewest_sleeps_per_sec, Some(0), "2 sleeps in 6 s");
        assert_eq!(s.span, Duration::from_secs(8));
        // Stricter: neither; and a higher share than they got: none runnable.
        assert_eq!(
            h.throttled(Duration::from_secs(8), 40, 0).unwrap().threads,
            0
        );
        let s = h.throttled(Duration::from_secs(8), 60, 20).unwrap();
        assert_eq!(
            (s.threads, s.runnable_threads, s.fewest_sleeps_per_sec),
            (0, 0, None)
        );
        // Not before the window is covered.
        assert_eq!(h.throttled(Duration::from_secs(10), 40, 20), None);
    }

    #[test]
    fn sleeps_read_too_close_together_do_not_count() {
        // Sleeps read only at the last two samples, 2 s apart: under half
        // of an 8 s window, so the thread is runnable but not judged.
        let h = sleepy(&[
            &[(1, 0.0, None)],
            &[(1, 2.0, None)],
            &[(1, 2.0, None)],
            &[(1, 4.0, Some(2))],
            &[(1, 6.0, Some(3))],
        ]);
        let s = h.throttled(Duration::from_secs(8), 40, 20).unwrap();
        assert_eq!((s.threads, s.runnable_threads), (0, 1), "{s:?}");
        assert_eq!(s.fewest_sleeps_per_sec, None);
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
