//! A `behaviour` rule's thresholds: the profile's optional keys, each
//! resolved to its documented default.

use std::time::Duration;

use crate::profile::BehaviourMatch;

/// Default `window_secs`: long enough that a build step or a burst of work
/// does not count, short enough to catch a miner within 30 s of its first
/// hash at a 1-2 s sampling period.
pub const DEFAULT_WINDOW_SECS: u32 = 10;
/// Default `busy_percent`: a mining thread never sleeps (it is on a CPU or
/// waiting for one); 90 % of the window leaves room for scheduling noise.
pub const DEFAULT_BUSY_PERCENT: u32 = 90;
/// Default `busy_threads`: one, so a miner held to one thread
/// (`--threads=1`, `--cpu-max-threads-hint`) is still seen; the memory
/// signal keeps plain CPU-heavy programs out.
pub const DEFAULT_BUSY_THREADS: u32 = 1;
/// Default `anon_mib`: RandomX's cache, which every RandomX miner holds
/// (light mode: the cache only; fast mode: the 2080 MiB dataset as well).
pub const DEFAULT_ANON_MIB: u32 = RANDOMX_CACHE_MIB;
/// Default `throttled_window_secs`: two busy windows, so a duty cycle of
/// up to 10 s on and 10 s off is averaged whole, and a throttled miner is
/// still seen within 30 s of its first hash.
pub const DEFAULT_THROTTLED_WINDOW_SECS: u32 = 20;
/// Default `throttled_percent`: a miner held to half of its time (a 50 %
/// duty cycle) is runnable about 50 % of the window.
pub const DEFAULT_THROTTLED_PERCENT: u32 = 40;
/// Default `throttled_max_sleeps`: a hashing thread blocks only when it is
/// stopped (`cpulimit` stops a process up to 10 times a second); a thread
/// that serves requests or does I/O blocks hundreds of times a second.
pub const DEFAULT_THROTTLED_MAX_SLEEPS: u32 = 20;
/// Default `rhythm_max_bytes_per_sec`: a pool sends a job (a few hundred
/// bytes) per block or difficulty change, a miner a share (about 200 bytes)
/// every few seconds at most; a service streams far more.
pub const DEFAULT_RHYTHM_MAX_BYTES_PER_SEC: u32 = 4096;
/// Default `rhythm_max_quiet_secs`: a pool sends a job per block (Monero:
/// every 2 minutes on average, 5 minutes or more now and then) and a miner
/// a share every few tens of seconds at the difficulty a pool sets it, so
/// ten minutes without data one way is not a miner's; an idle database
/// pool's connection is quiet for longer.
pub const DEFAULT_RHYTHM_MAX_QUIET_SECS: u32 = 600;
/// RandomX's cache, in MiB.
pub const RANDOMX_CACHE_MIB: u32 = 256;
/// RandomX's fast-mode dataset, in MiB.
pub const RANDOMX_DATASET_MIB: u32 = 2080;

/// The thresholds a `behaviour` rule judges with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// How long a thread's CPU use is averaged over.
    pub window: Duration,
    /// Share of the window (percent) a thread must be runnable (on a CPU
    /// or waiting for one) to count as busy.
    pub busy_percent: u32,
    /// Busy threads one process needs for the CPU signal.
    pub busy_threads: u32,
    /// Anonymous resident memory (MiB) that counts as RandomX-shaped.
    pub anon_mib: u64,
    /// Whether mining also needs a connected TCP socket.
    pub needs_connection: bool,
    /// How long the throttled-CPU signal is measured over.
    pub throttled_window: Duration,
    /// Share of `throttled_window` (percent) a thread must be runnable to
    /// count as throttled-busy; 0: the signal is off.
    pub throttled_percent: u32,
    /// Most voluntary context switches a second a throttled-busy thread
    /// may make.
    pub throttled_max_sleeps: u32,
    /// Whether mining needs a pool-shaped connection (not just any).
    pub needs_rhythm: bool,
    /// Most bytes a second a pool-shaped connection carries.
    pub rhythm_max_bytes_per_sec: u32,
    /// Longest a pool-shaped connection goes without data one way.
    pub rhythm_max_quiet: Duration,
    /// Whether tuning attempts are counted and count.
    pub count_tuning: bool,
}

impl Thresholds {
    /// How much history the rule needs: the longer of its two windows.
    pub fn longest_window(&self) -> Duration {
        if self.throttled_percent == 0 {
            return self.window;
        }
        self.window.max(self.throttled_window)
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds::from(&BehaviourMatch::default())
    }
}

impl From<&BehaviourMatch> for Thresholds {
    fn from(m: &BehaviourMatch) -> Self {
        Thresholds {
            window: Duration::from_secs(m.window_secs.unwrap_or(DEFAULT_WINDOW_SECS).into()),
            busy_percent: m.busy_percent.unwrap_or(DEFAULT_BUSY_PERCENT),
            busy_threads: m.busy_threads.unwrap_or(DEFAULT_BUSY_THREADS),
            anon_mib: m.anon_mib.unwrap_or(DEFAULT_ANON_MIB).into(),
            needs_connection: m.needs_connection.unwrap_or(true),
            throttled_window: Duration::from_secs(
                m.throttled_window_secs
                    .unwrap_or(DEFAULT_THROTTLED_WINDOW_SECS)
                    .into(),
            ),
            throttled_percent: m.throttled_percent.unwrap_or(DEFAULT_THROTTLED_PERCENT),
            throttled_max_sleeps: m
                .throttled_max_sleeps
                .unwrap_or(DEFAULT_THROTTLED_MAX_SLEEPS),
            needs_rhythm: m.needs_rhythm.unwrap_or(false),
            rhythm_max_bytes_per_sec: m
                .rhythm_max_bytes_per_sec
                .unwrap_or(DEFAULT_RHYTHM_MAX_BYTES_PER_SEC),
            rhythm_max_quiet: Duration::from_secs(
                m.rhythm_max_quiet_secs
                    .unwrap_or(DEFAULT_RHYTHM_MAX_QUIET_SECS)
                    .into(),
            ),
            count_tuning: m.count_tuning.unwrap_or(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_keys_take_the_defaults_and_set_ones_win() {
        let d = Thresholds::default();
        assert_eq!(d.window, Duration::from_secs(10));
        assert_eq!((d.busy_percent, d.busy_threads, d.anon_mib), (90, 1, 256));
        assert!(d.needs_connection);
        let t = Thresholds::from(&BehaviourMatch {
            window_secs: Some(3),
            busy_threads: Some(2),
            ..Default::default()
        });
        assert_eq!(t.window, Duration::from_secs(3));
        assert_eq!((t.busy_percent, t.busy_threads, t.anon_mib), (90, 2, 256));
        assert_eq!(
            (
                d.throttled_window,
                d.throttled_percent,
                d.throttled_max_sleeps
            ),
            (Duration::from_secs(20), 40, 20)
        );
        assert_eq!(d.longest_window(), Duration::from_secs(20));
        assert_eq!((d.needs_rhythm, d.rhythm_max_bytes_per_sec), (false, 4096));
        assert!(d.count_tuning);
        assert_eq!(d.rhythm_max_quiet, Duration::from_secs(600));
        let off = Thresholds::from(&BehaviourMatch {
            throttled_percent: Some(0),
            throttled_window_secs: Some(600),
            ..Default::default()
        });
        assert_eq!(off.longest_window(), Duration::from_secs(10));
    }
}
