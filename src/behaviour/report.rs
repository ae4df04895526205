//! A whole sample as JSON, for the C and Python APIs: what was sampled,
//! each detection as its event, and each (process, rule) judged with the
//! signals it was judged on, so a caller sees how near a process came.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{Observation, Sample, Signals, Thresholds};

/// The measured values of `s`, the same names as the event's
/// `minerguard.behaviour.*` fields (`peer`, `throttled.sleeps_per_sec`,
/// `rhythm.bytes_per_sec` and `rhythm.peer` are null when unknown).
pub(super) fn signals_value(s: &Signals) -> Value {
    json!({
        "cpu.busy_threads": s.cpu.busy_threads,
        "cpu.threads": s.cpu.threads,
        "cpu.top_runnable_percent": s.cpu.top_runnable_percent,
        "cpu.top_cpu_percent": s.cpu.top_cpu_percent,
        "window_secs": s.cpu.span.as_secs_f64(),
        "throttled.threads": s.throttled.threads,
        "throttled.runnable_threads": s.throttled.runnable_threads,
        "throttled.top_runnable_percent": s.throttled.top_runnable_percent,
        "throttled.sleeps_per_sec": s.throttled.fewest_sleeps_per_sec,
        "throttled.window_secs": s.throttled.span.as_secs_f64(),
        "anon_mib": s.anon_mib(),
        "hugetlb_mib": s.hugetlb_mib(),
        "anon_huge_mib": s.anon_huge_mib(),
        "tcp_connections": s.tcp_connections,
        "peer": s.peer.map(|p| p.to_string()),
        "rhythm.steady": s.rhythm.steady,
        "rhythm.long_lived": s.rhythm.long_lived,
        "rhythm.bytes_per_sec": s.rhythm.bytes_per_sec,
        "rhythm.data_segments": s.rhythm.data_segments,
        "rhythm.age_secs": s.rhythm.age.as_secs_f64(),
        "rhythm.quiet_secs": s.rhythm.bytes_per_sec.map(|_| s.rhythm.quiet.as_secs_f64()),
        "rhythm.peer": s.rhythm.peer.map(|p| p.to_string()),
        "rhythm.unknown": s.rhythm.unknown,
        "tuning.hugepages": s.tuning.hugepages,
        "tuning.msr": s.tuning.msr,
        "tuning.msr_allow_writes": s.tuning.msr_allow_writes,
        "tuning.nmi_watchdog": s.tuning.nmi_watchdog,
        "tuning.counted": s.tuning.counted,
    })
}

/// A rule's thresholds, as the event's `minerguard.behaviour.threshold.*`
/// fields.
pub(super) fn thresholds_value(t: &Thresholds) -> Value {
    json!({
        "window_secs": t.window.as_secs(),
        "busy_percent": t.busy_percent,
        "busy_threads": t.busy_threads,
        "anon_mib": t.anon_mib,
        "needs_connection": t.needs_connection,
        "throttled_window_secs": t.throttled_window.as_secs(),
        "throttled_percent": t.throttled_percent,
        "throttled_max_sleeps": t.throttled_max_sleeps,
        "needs_rhythm": t.needs_rhythm,
        "rhythm_max_bytes_per_sec": t.rhythm_max_bytes_per_sec,
        "rhythm_max_quiet_secs": t.rhythm_max_quiet.as_secs(),
        "count_tuning": t.count_tuning,
    })
}

impl Observation {
    /// `pid`, `comm`, `rule`, `mining`, `signals` (the fired ones, as in
    /// the event's `minerguard.behaviour.signals`) and `values`.
    pub fn to_value(&self) -> Value {
        json!({
            "pid": self.pid,
            "comm": self.comm,
            "rule": &*self.rule,
            "mining": self.verdict.mining(),
            "signals": self.verdict.fired(),
            "values": signals_value(&self.signals),
        })
    }
}

impl Sample {
    /// The sample as one JSON object: `profile`, `processes` (sampled),
    /// `detections` (each as [`super::Detection::to_value`]) and
    /// `observations` (each as [`Observation::to_value`]).
    pub fn to_value(&self, profile: &Arc<str>) -> Value {
        json!({
            "profile": &**profile,
            "processes": self.processes,
            "detections": self.detections.iter().map(|d| d.to_value(profile)).collect::<Vec<_>>(),
            "observations": self.observations.iter().map(Observation::to_value).collect::<Vec<_>>(),
        })
    }

    /// [`Sample::to_value`] as text.
    pub fn to_json(&self, profile: &Arc<str>) -> String {
        self.to_value(profile).to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::behaviour::{CpuSignal, Memory, Thresholds, Verdict};

    #[test]
    fn a_sample_names_each_observation_and_its_values() {
        let signals = Signals {
            cpu: CpuSignal {
                busy_threads: 2,
                threads: 4,
                top_runnable_percent: 97,
                top_cpu_percent: 60,
                span: Duration::from_secs(5),
            },
            throttled: Default::default(),
            memory: Memory {
                anon_kib: 100 * 1024,
                anon_huge_kib: None,
                hugetlb_kib: 0,
            },
            tcp_connections: 0,
            peer: None,
            rhythm: Default::default(),
            tuning: Default::default(),
        };
        let sample = Sample {
            processes: 3,
            detections: Vec::new(),
            observations: vec![Observation {
                pid: 7,
                comm: "stress-ng".into(),
                rule: "mining-behaviour".into(),
                signals,
                verdict: Verdict::judge(&signals, &Thresholds::default()),
            }],
        };
        let v: Value = serde_json::from_str(&sample.to_json(&"p".into())).unwrap();
        assert_eq!(v["profile"], "p");
        assert_eq!(v["processes"], 3);
        assert_eq!(v["detections"], json!([]));
        let o = &v["observations"][0];
        assert_eq!(o["pid"], 7);
        assert_eq!(o["rule"], "mining-behaviour");
        assert_eq!(o["mining"], false);
        assert_eq!(o["signals"], json!(["cpu"]));
        assert_eq!(o["values"]["anon_mib"], 100);
        // Not read for an observation (only for a detection).
        assert_eq!(o["values"]["anon_huge_mib"], Value::Null);
        assert_eq!(o["values"]["peer"], Value::Null);
        assert_eq!(o["values"]["throttled.sleeps_per_sec"], Value::Null);
        assert_eq!(o["values"]["throttled.threads"], 0);
    }
}
