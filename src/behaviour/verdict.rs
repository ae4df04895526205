//! The verdict: pure logic on one process's signals. Mining is sustained
//! CPU saturation (or, for a miner held to a duty cycle, a long window's
//! good share of runnable time by threads that never block but for being
//! stopped) together with a RandomX-shaped memory footprint (a large
//! anonymous working set, or hugetlb pages, which RandomX miners ask for
//! and ordinary programs rarely do), while connected over TCP (to a pool
//! or a proxy; a compressor with a big dictionary is not). Each part is
//! kept with its value so an event can say why.

use std::{net::SocketAddr, time::Duration};

use super::{
    history::{CpuSignal, ThrottledSignal},
    rhythm::RhythmSignal,
    sample::Memory,
    thresholds::Thresholds,
    tuning::TuningSignal,
};

/// Everything one verdict was reached on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signals {
    /// CPU: busy threads over the window.
    pub cpu: CpuSignal,
    /// CPU: throttled-busy threads over the throttled window (zero when the
    /// rule has it off or the window is not covered yet).
    pub throttled: ThrottledSignal,
    /// Memory (KiB).
    pub memory: Memory,
    /// Connected TCP sockets it holds (read with the memory).
    pub tcp_connections: u32,
    /// The peer of one of them.
    pub peer: Option<SocketAddr>,
    /// What its connections carried (read with the memory).
    pub rhythm: RhythmSignal,
    /// Its attempts to tune the host (read with the memory).
    pub tuning: TuningSignal,
}

impl Signals {
    /// Anonymous resident memory, in MiB.
    pub fn anon_mib(&self) -> u64 {
        self.memory.anon_kib / 1024
    }

    /// Transparent huge pages in anonymous memory, in MiB; `None` where
    /// not read (see [`Memory::anon_huge_kib`](super::Memory::anon_huge_kib)).
    pub fn anon_huge_mib(&self) -> Option<u64> {
        self.memory.anon_huge_kib.map(|k| k / 1024)
    }

    /// hugetlb pages mapped, in MiB.
    pub fn hugetlb_mib(&self) -> u64 {
        self.memory.hugetlb_kib / 1024
    }

    /// The window the CPU signal was measured over.
    pub fn span(&self) -> Duration {
        self.cpu.span
    }
}

/// Which signals fired, and the conclusion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    /// At least `busy_threads` threads were running or waiting to run for
    /// `busy_percent` of the window.
    pub cpu_saturated: bool,
    /// At least `busy_threads` threads were runnable `throttled_percent` of
    /// the throttled window while blocking at most `throttled_max_sleeps`
    /// times a second.
    pub cpu_throttled: bool,
    /// Anonymous resident memory at least `anon_mib`.
    pub randomx_memory: bool,
    /// hugetlb pages in use (`MAP_HUGETLB`).
    pub huge_pages: bool,
    /// Attempts to tune the host for mining (huge-page reservations, MSR
    /// writes, the NMI watchdog).
    pub tuning: bool,
    /// A connected TCP socket held.
    pub connected: bool,
    /// A pool-shaped connection held: long-lived, data both ways, quiet.
    pub pool_rhythm: bool,
    /// Whether the rule needs `pool_rhythm` (rather than `connected`).
    pub needs_rhythm: bool,
    /// The connections' counters could not be read: `connected` stands in
    /// for `pool_rhythm`.
    pub rhythm_unknown: bool,
    /// Whether the rule needs `connected` for mining.
    pub needs_connection: bool,
}

impl Verdict {
    /// Judges `s` against `t`.
    pub fn judge(s: &Signals, t: &Thresholds) -> Verdict {
        Verdict {
            cpu_saturated: s.cpu.busy_threads >= t.busy_threads,
            cpu_throttled: t.throttled_percent > 0 && s.throttled.threads >= t.busy_threads,
            randomx_memory: s.anon_mib() >= t.anon_mib,
            huge_pages: s.memory.hugetlb_kib > 0,
            tuning: t.count_tuning && s.tuning.attempts() > 0,
            connected: s.tcp_connections > 0,
            pool_rhythm: s.rhythm.steady > 0,
            needs_rhythm: t.needs_rhythm,
            rhythm_unknown: s.rhythm.unknown,
            needs_connection: t.needs_connection,
        }
    }

    /// Whether the CPU signal fired, saturated or throttled.
    pub fn cpu_busy(&self) -> bool {
        self.cpu_saturated || self.cpu_throttled
    }

    /// Whether this is mining: CPU saturation (or throttled busy threads)
    /// and a RandomX-shaped footprint (the memory, hugetlb pages, or the
    /// attempts to tune the host a miner makes for them), connected
    /// (unless the rule does not need it).
    pub fn mining(&self) -> bool {
        self.cpu_busy()
            && (self.randomx_memory || self.huge_pages || self.tuning)
            && match self.needs_rhythm {
                true => self.pool_rhythm || (self.rhythm_unknown && self.connected),
                false => self.connected || !self.needs_connection,
            }
    }

    /// The signals that fired, as words (`cpu`, `cpu-throttled`, `memory`,
    /// `hugepages`, `tuning`, `connection`, `rhythm`).
    pub fn fired(&self) -> Vec<&'static str> {
        [
            (self.cpu_saturated, "cpu"),
            (self.cpu_throttled, "cpu-throttled"),
            (self.randomx_memory, "memory"),
            (self.huge_pages, "hugepages"),
            (self.tuning, "tuning"),
            (self.connected, "connection"),
            (self.pool_rhythm, "rhythm"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }

    /// One line for people: each signal with its value and threshold.
    pub fn explain(&self, s: &Signals, t: &Thresholds) -> String {
        let throttled = if t.throttled_percent == 0 {
            String::new()
        } else if s.throttled.span.is_zero() {
            format!(
                "; throttled window ({}s) not covered yet",
                t.throttled_window.as_secs()
            )
        } else {
            format!(
                "; {} of {} threads runnable ≥{}% of {}s blocking ≤{}/s (fewest {}; most runnable {}%)",
                s.throttled.threads,
                s.throttled.runnable_threads,
                t.throttled_percent,
                s.throttled.span.as_secs(),
                t.throttled_max_sleeps,
                s.throttled
                    .fewest_sleeps_per_sec
                    .map_or("unread".into(), |n| format!("{n}/s")),
                s.throttled.top_runnable_percent,
            )
        };
        let tuning = match (s.tuning.counted, s.tuning.attempts()) {
            _ if !t.count_tuning => "tuning attempts not counted (count_tuning: false)".to_string(),
            (false, _) => "tuning attempts not counted".to_string(),
            (true, 0) => "no tuning attempt".to_string(),
            (true, _) => format!("tuning attempts: {}", s.tuning.describe()),
        };
        format!(
            "{} of {} threads runnable ≥{}% of {}s (need {}; busiest got {}% of a CPU){throttled}; anonymous memory {} MiB (RandomX-shaped from {} MiB); hugetlb {} MiB, THP {}; {tuning}; {} TCP connections{}{}",
            s.cpu.busy_threads,
            s.cpu.threads,
            t.busy_percent,
            s.cpu.span.as_secs(),
            t.busy_threads,
            s.cpu.top_cpu_percent,
            s.anon_mib(),
            t.anon_mib,
            s.hugetlb_mib(),
            s.anon_huge_mib()
                .map_or("unread".into(), |m| format!("{m} MiB")),
            s.tcp_connections,
            s.peer.map(|p| format!(" (one to {p})")).unwrap_or_default(),
            match s.rhythm.bytes_per_sec {
                None if s.rhythm.unknown => {
                    "; connection counters unreadable (sock_diag refused): any connection stands in for the rhythm".to_string()
                }
                None => String::new(),
                Some(rate) => format!(
                    "; {} pool-shaped of {} held ≥{}s (quietest: {rate} B/s, {} data segments in {}s, {}s since data one way{}; pool-shaped at ≤{} B/s both ways, quiet ≤{}s)",
                    s.rhythm.steady,
                    s.rhythm.long_lived,
                    t.window.as_secs(),
                    s.rhythm.data_segments,
                    s.rhythm.age.as_secs(),
                    s.rhythm.quiet.as_secs(),
                    s.rhythm.peer.map(|p| format!(", to {p}")).unwrap_or_default(),
                    t.rhythm_max_bytes_per_sec,
                    t.rhythm_max_quiet.as_secs(),
                ),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals(busy: u32, anon_mib: u64, hugetlb_mib: u64) -> Signals {
        Signals {
            cpu: CpuSignal {
                busy_threads: busy,
                threads: busy + 3,
                top_runnable_percent: if busy > 0 { 99 } else { 20 },
                top_cpu_percent: if busy > 0 { 60 } else { 20 },
                span: Duration::from_secs(10),
            },
            throttled: ThrottledSignal::default(),
            memory: Memory {
                anon_kib: anon_mib * 1024,
                anon_huge_kib: None,
                hugetlb_kib: hugetlb_mib * 1024,
            },
            tcp_connections: 1,
            peer: Some("192.0.2.7:443".parse().unwrap()),
            rhythm: RhythmSignal::default(),
            tuning: TuningSignal::default(),
        }
    }

    #[test]
    fn a_light_mode_miner_is_mining() {
        // Two hashing threads, the 256 MiB cache and scratchpads.
        let v = Verdict::judge(&signals(2, 262, 0), &Thresholds::default());
        assert!(v.mining());
        assert_eq!(v.fired(), ["cpu", "memory", "connection"]);
    }

    #[test]
    fn a_miner_on_huge_pages_is_mining_whatever_its_rss() {
        // hugetlb pages are not counted in RssAnon.
        let v = Verdict::judge(&signals(1, 8, 2304), &Thresholds::default());
        assert!(v.mining());
        assert_eq!(v.fired(), ["cpu", "hugepages", "connection"]);
    }

    #[test]
    fn a_busy_connected_process_that_tried_to_tune_the_host_is_mining() {
        let t = Thresholds::default();
        // Busy, small (a miner whose memory is not RandomX-shaped, or not
        // yet), connected: not mining on CPU alone...
        let mut s = signals(1, 8, 0);
        s.tuning.counted = true;
        assert!(!Verdict::judge(&s, &t).mining());
        // ...but it tried to reserve huge pages (refused in its container).
        s.tuning.hugepages = 2;
        let v = Verdict::judge(&s, &t);
        assert!(v.mining());
        assert_eq!(v.fired(), ["cpu", "tuning", "connection"]);
        assert!(v
            .explain(&s, &t)
            .contains("tuning attempts: nr_hugepages 2"));
        // Idle, it is not mining, whatever it tried.
        s.cpu.busy_threads = 0;
        assert!(!Verdict::judge(&s, &t).mining());
        // A rule that does not count tuning is not moved by it.
        s.cpu.busy_threads = 1;
        let off = Thresholds {
            count_tuning: false,
            ..t
        };
        assert!(!Verdict::judge(&s, &off).mining());
        assert!(Verdict::judge(&s, &off)
            .explain(&s, &off)
            .contains("count_tuning: false"));
        // Not counted: said so.
        let uncounted = signals(1, 8, 0);
        assert!(Verdict::judge(&uncounted, &t)
            .explain(&uncounted, &t)
            .contains("tuning attempts not counted"));
    }

    #[test]
    fn cpu_alone_or_memory_alone_is_not_mining() {
        let t = Thresholds::default();
        // stress-ng --cpu: busy, small.
        assert!(!Verdict::judge(&signals(2, 4, 0), &t).mining());
        // A database: big, mostly idle.
        assert!(!Verdict::judge(&signals(0, 4096, 0), &t).mining());
        // Just under the memory threshold.
        assert!(!Verdict::judge(&signals(4, 255, 0), &t).mining());
    }

    #[test]
    fn a_busy_big_process_without_a_connection_is_not_mining_unless_asked() {
        // xz -9: a big dictionary, one spinning thread, no network.
        let mut s = signals(1, 700, 0);
        s.tcp_connections = 0;
        s.peer = None;
        let t = Thresholds::default();
        assert!(!Verdict::judge(&s, &t).mining());
        let t = Thresholds {
            needs_connection: false,
            ..t
        };
        assert!(Verdict::judge(&s, &t).mining());
    }

    #[test]
    fn a_throttled_miner_is_mining_unless_the_rule_turns_it_off() {
        // A 50 % duty cycle: no thread busy 90 % of the short window, two
        // runnable half of the long one, blocking only when stopped.
        let mut s = signals(0, 262, 0);
        s.throttled = ThrottledSignal {
            threads: 2,
            runnable_threads: 2,
            top_runnable_percent: 51,
            fewest_sleeps_per_sec: Some(0),
            span: Duration::from_secs(20),
        };
        let t = Thresholds::default();
        let v = Verdict::judge(&s, &t);
        assert!(v.mining() && !v.cpu_saturated);
        assert_eq!(v.fired(), ["cpu-throttled", "memory", "connection"]);
        let text = v.explain(&s, &t);
        assert!(
            text.contains("2 of 2 threads runnable ≥40% of 20s blocking ≤20/s (fewest 0/s"),
            "{text}"
        );
        // Before the long window is covered, it says so.
        let early = Signals {
            throttled: ThrottledSignal::default(),
            ..s
        };
        let text = Verdict::judge(&early, &t).explain(&early, &t);
        assert!(
            text.contains("throttled window (20s) not covered yet"),
            "{text}"
        );
        // Off: not mining, and not explained.
        let off = Thresholds {
            throttled_percent: 0,
            ..t
        };
        assert!(!Verdict::judge(&s, &off).mining());
        assert!(!Verdict::judge(&s, &off)
            .explain(&s, &off)
            .contains("blocking"));
        // Runnable as much, but blocking often (a server): not throttled.
        s.throttled.threads = 0;
        assert!(!Verdict::judge(&s, &t).mining());
    }

    #[test]
    fn a_rule_that_needs_the_rhythm_wants_a_pool_shaped_connection() {
        let t = Thresholds {
            needs_rhythm: true,
            ..Thresholds::default()
        };
        // Connected, but nothing long-lived and quiet: not mining.
        let mut s = signals(2, 262, 0);
        assert!(!Verdict::judge(&s, &t).mining());
        assert!(Verdict::judge(&s, &Thresholds::default()).mining());
        s.rhythm = RhythmSignal {
            steady: 1,
            long_lived: 1,
            bytes_per_sec: Some(310),
            data_segments: 24,
            age: Duration::from_secs(10),
            quiet: Duration::from_secs(3),
            peer: Some("192.0.2.7:443".parse().unwrap()),
            unknown: false,
        };
        let v = Verdict::judge(&s, &t);
        assert!(v.mining());
        assert_eq!(v.fired(), ["cpu", "memory", "connection", "rhythm"]);
        // Counters unreadable: any connection stands in, and it says so.
        let blind = Signals {
            rhythm: RhythmSignal {
                unknown: true,
                ..RhythmSignal::default()
            },
            ..signals(2, 262, 0)
        };
        let b = Verdict::judge(&blind, &t);
        assert!(b.mining() && !b.pool_rhythm);
        assert!(b.explain(&blind, &t).contains("counters unreadable"));
        let text = v.explain(&s, &t);
        assert!(
            text.contains("1 pool-shaped of 1 held ≥10s (quietest: 310 B/s, 24 data segments in 10s, 3s since data one way, to 192.0.2.7:443; pool-shaped at ≤4096 B/s both ways, quiet ≤600s)"),
            "{text}"
        );
    }

    #[test]
    fn thresholds_are_data() {
        let t = Thresholds {
            busy_threads: 3,
            anon_mib: 2080,
            ..Thresholds::default()
        };
        // A light-mode miner on two threads passes a fast-mode, 3-thread rule.
        assert!(!Verdict::judge(&signals(2, 262, 0), &t).mining());
        assert!(Verdict::judge(&signals(3, 2336, 0), &t).mining());
    }

    #[test]
    fn the_explanation_carries_every_value() {
        let s = signals(2, 262, 0);
        let t = Thresholds::default();
        let text = Verdict::judge(&s, &t).explain(&s, &t);
        for part in [
            "2 of 5 threads",
            "≥90%",
            "10s",
            "262 MiB",
            "256 MiB",
            "1 TCP connections (one to 192.0.2.7:443)",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
    }
}
