//! The tuning signal: a miner run as root asks the host for more hash rate
//! before it hashes. XMRig 6.x writes the per-node sysfs `nr_hugepages`
//! to reserve huge pages for RandomX, and for its MSR mod loads `msr` with
//! `allow_writes=on` and writes `/dev/cpu/N/msr`; others write
//! `vm.nr_hugepages` or switch `nmi_watchdog` off. In a container those
//! writes fail (read-only sysfs and /proc/sys), so the attempt is what is
//! counted: the enforcer's open tracepoints (bpf/tuning_tp.bpf.c) count
//! each open for writing of those files, per process in a scope, and the
//! detector reads the counts of the processes it judges
//! ([`Detector::count_tuning`](super::Detector::count_tuning)).

use std::sync::Arc;

use libbpf_rs::{MapCore, MapFlags, MapHandle};

/// A process's attempts to tune the host, by what they were aimed at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TuningSignal {
    /// Opens for writing of `nr_hugepages` (the sysctl, the sysfs per-size
    /// and per-node files), `nr_hugepages_mempolicy` or
    /// `nr_overcommit_hugepages`.
    pub hugepages: u32,
    /// Opens for writing of an MSR device (`/dev/cpu/N/msr`).
    pub msr: u32,
    /// Opens for writing of the msr module's `allow_writes` parameter.
    pub msr_allow_writes: u32,
    /// Opens for writing of `nmi_watchdog`.
    pub nmi_watchdog: u32,
    /// Whether attempts were counted at all (the detector was given the
    /// enforcer's counts); without, the zeros above mean nothing.
    pub counted: bool,
}

impl TuningSignal {
    /// Every attempt, whatever it was aimed at.
    pub fn attempts(&self) -> u32 {
        (self.hugepages)
            .saturating_add(self.msr)
            .saturating_add(self.msr_allow_writes)
            .saturating_add(self.nmi_watchdog)
    }

    /// The attempts as words with their counts, e.g. `nr_hugepages 3, msr 8`.
    pub fn describe(&self) -> String {
        [
            (self.hugepages, "nr_hugepages"),
            (self.msr, "msr"),
            (self.msr_allow_writes, "msr allow_writes"),
            (self.nmi_watchdog, "nmi_watchdog"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{what} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// The per-process counts the enforcer's tuning counter keeps (from
/// [`Enforcer::tuning_counts`](crate::Enforcer::tuning_counts)); clones
/// share one handle.
#[derive(Debug, Clone)]
pub struct TuningCounts {
    map: Arc<MapHandle>,
    /// This process's time namespace's boot-time offset (ns): /proc shows
    /// start times with it added, the kernel's counter without.
    boottime_offset_ns: i128,
}

/// `struct mg_tuning` (bpf/tuning_tp.bpf.c): the process's start time
/// (ns since boot), then four u32 counts in `enum mg_tune_kind` order.
const VALUE_LEN: usize = 24;

impl TuningCounts {
    /// Reads the counter's map through `map`.
    pub(crate) fn new(map: MapHandle) -> Self {
        TuningCounts {
            map: Arc::new(map),
            boottime_offset_ns: std::fs::read_to_string("/proc/self/timens_offsets")
                .ok()
                .and_then(|t| boottime_offset(&t))
                .unwrap_or(0),
        }
    }

    /// The attempts of the live process `pid` so far; `None` when it is
    /// gone (its start time, which tells it from a reused pid, is read from
    /// `/proc/<pid>/stat`).
    pub fn of_pid(&self, pid: u32) -> Option<TuningSignal> {
        let (_, start_ticks) = crate::scan::process::stat(pid)?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Some(self.of(pid, start_ticks, u64::try_from(hz).unwrap_or(100)))
    }

    /// The attempts of process `pid`, which started `start_ticks` clock
    /// ticks after boot (`/proc/<pid>/stat`); counts of an earlier process
    /// with the same pid are not its own.
    pub(crate) fn of(&self, pid: u32, start_ticks: u64, hz: u64) -> TuningSignal {
        let none = TuningSignal {
            counted: true,
            ..TuningSignal::default()
        };
        let Ok(Some(value)) = self.map.lookup(&pid.to_ne_bytes(), MapFlags::ANY) else {
            return none;
        };
        decode(&value, start_ticks, hz, self.boottime_offset_ns).unwrap_or(none)
    }
}

/// The `boottime` offset of a `/proc/<pid>/timens_offsets` text, in ns
/// (`boottime <seconds> <nanoseconds>`).
fn boottime_offset(text: &str) -> Option<i128> {
    let line = text.lines().find(|l| l.starts_with("boottime"))?;
    let mut fields = line.split_whitespace().skip(1);
    let secs: i128 = fields.next()?.parse().ok()?;
    let nanos: i128 = fields.next()?.parse().ok()?;
    Some(secs * 1_000_000_000 + nanos)
}

/// The counts in `value` when it belongs to the process that started at
/// `start_ticks` (the kernel's start time in ns, as /proc shows it in
/// ticks: the reader's time namespace's `offset_ns` added, divided by
/// 10^9 / `hz`).
fn decode(value: &[u8], start_ticks: u64, hz: u64, offset_ns: i128) -> Option<TuningSignal> {
    let value: &[u8; VALUE_LEN] = value.get(..VALUE_LEN)?.try_into().ok()?;
    let word = |at: usize| u32::from_ne_bytes(value[at..at + 4].try_into().expect("4 bytes"));
    let start_ns = u64::from_ne_bytes(value[..8].try_into().expect("8 bytes"));
    let ns_per_tick = i128::from(1_000_000_000 / hz.max(1));
    if (i128::from(start_ns) + offset_ns).div_euclid(ns_per_tick) != i128::from(start_ticks) {
        return None;
    }
    Some(TuningSignal {
        hugepages: word(8),
        msr: word(12),
        msr_allow_writes: word(16),
        nmi_watchdog: word(20),
        counted: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(start_ns: u64, counts: [u32; 4]) -> Vec<u8> {
        let mut v = start_ns.to_ne_bytes().to_vec();
        for c in counts {
            v.extend(c.to_ne_bytes());
        }
        v
    }

    #[test]
    fn counts_are_read_in_kind_order_for_the_same_process_only() {
        // Started 12.345 s after boot: tick 1234 at 100 Hz.
        let v = value(12_345_000_000, [3, 8, 1, 2]);
        let s = decode(&v, 1234, 100, 0).unwrap();
        assert_eq!(
            (s.hugepages, s.msr, s.msr_allow_writes, s.nmi_watchdog),
            (3, 8, 1, 2)
        );
        assert!(s.counted);
        assert_eq!(s.attempts(), 14);
        assert_eq!(
            s.describe(),
            "nr_hugepages 3, msr 8, msr allow_writes 1, nmi_watchdog 2"
        );
        // A reused pid (another start time) is not this process.
        assert_eq!(decode(&v, 1235, 100, 0), None);
        // A short value is refused, not read out of bounds.
        assert_eq!(decode(&v[..20], 1234, 100, 0), None);
        // Read from a time namespace whose boot time is 100 s ahead: /proc
        // there says tick 11234.
        let offset = boottime_offset("monotonic 0 0\nboottime 100 0\n").unwrap();
        assert_eq!(offset, 100_000_000_000);
        assert!(decode(&v, 11234, 100, offset).is_some());
        assert_eq!(decode(&v, 1234, 100, offset), None);
        assert_eq!(boottime_offset("monotonic 5 0\n"), None);
    }

    #[test]
    fn nothing_counted_describes_as_nothing() {
        let s = TuningSignal::default();
        assert_eq!((s.attempts(), s.describe().as_str()), (0, ""));
        let saturated = TuningSignal {
            hugepages: u32::MAX,
            msr: 5,
            ..s
        };
        assert_eq!(saturated.attempts(), u32::MAX);
    }
}
