//! A detection as an event: the same Falco-shaped JSON as enforcement
//! events and scan findings (`proc.*`, the rule, the action), with
//! `minerguard.kind: behaviour` and every signal as a
//! `minerguard.behaviour.*` field, so an operator sees why.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{
    report::{signals_value, thresholds_value},
    Detection,
};
use crate::{
    events::{json::falco_value, CgroupKill, Event, InlineStr, ProcSource, Target},
    profile::Action,
    scan::Outcome,
};

impl Detection {
    /// The detection as an enforcement [`Event`] of its rule: the target is
    /// the process's program; `action` is what was done (`kill` when
    /// killed, `kill-container` when its cgroup was, else `audit`),
    /// `requested` the rule's action.
    pub fn event(&self, profile: &Arc<str>) -> Event {
        let p = &self.process;
        let (action, cgroup_kill) = match &self.outcome {
            Outcome::Killed => (Action::Kill, None),
            Outcome::KilledCgroup { cgroup, method } => (
                Action::KillContainer,
                Some(CgroupKill::Killed {
                    cgroup: cgroup.clone(),
                    method: *method,
                }),
            ),
            _ => (Action::Audit, None),
        };
        let (cmdline, cmdline_truncated) =
            InlineStr::command_line(&p.comm, p.cmdline.replace(' ', "\0").as_bytes());
        Event {
            time: self.time,
            pid: p.pid,
            tgid: p.pid,
            uid: p.uid,
            cgroup_id: p.cgroup_id,
            comm: InlineStr::from_c_bytes(p.comm.as_bytes()),
            ppid: p.ppid,
            pname: InlineStr::from_c_bytes(p.pname.as_bytes()),
            cmdline,
            cmdline_truncated,
            proc_source: ProcSource::Proc,
            pattern: None,
            profile: profile.clone(),
            rule: self.rule.name.clone(),
            action,
            requested: self.rule.action,
            target: Target::Exec {
                path: InlineStr::from_c_bytes(p.exe.as_bytes()),
            },
            domain: None,
            cgroup_kill,
        }
    }

    /// The detection as one JSON object (see [`Detection::to_json`]).
    pub fn to_value(&self, profile: &Arc<str>) -> Value {
        let mut v = falco_value(&self.event(profile));
        let (p, s, t) = (&self.process, &self.signals, &self.rule.thresholds);
        let why = self.verdict.explain(s, t);
        if let Some(fields) = v["output_fields"].as_object_mut() {
            let mut put = |k: &str, value: Value| {
                fields.insert(k.into(), value);
            };
            put("minerguard.kind", json!("behaviour"));
            put("minerguard.outcome", json!(self.outcome.to_string()));
            put("minerguard.rule", json!(&*self.rule.name));
            put("proc.exepath", json!(p.exe));
            put("cgroup.path", json!(p.cgroup.to_string_lossy()));
            put("minerguard.behaviour.signals", json!(self.verdict.fired()));
            put("minerguard.behaviour.why", json!(why));
            let measured = signals_value(s);
            let thresholds = thresholds_value(t);
            let values = (measured.as_object().into_iter().flatten())
                .map(|(k, v)| (format!("minerguard.behaviour.{k}"), v))
                .chain(
                    (thresholds.as_object().into_iter().flatten())
                        .map(|(k, v)| (format!("minerguard.behaviour.threshold.{k}"), v)),
                );
            // Unknown values (no peer, sleeps not read) are left out.
            for (k, v) in values.filter(|(_, v)| !v.is_null()) {
                put(&k, v.clone());
            }
        }
        v["output"] = json!(format!(
            "minerguard behaviour: {} (pid {}, {}) is mining: {}: {} (rule={} profile={} cgroup={})",
            p.comm,
            p.pid,
            p.exe,
            why,
            self.outcome,
            self.rule.name,
            profile,
            p.cgroup.display()
        ));
        if let Some(tags) = v["tags"].as_array_mut() {
            tags.push(json!("behaviour"));
        }
        v
    }

    /// The detection as one line of Falco-shaped JSON: `minerguard.kind` is
    /// `behaviour`, `minerguard.outcome` what was done (`killed`,
    /// `reported`, `dry-run`, `gone`, `failed: …`), and
    /// `minerguard.behaviour.*` the signals (`signals`: those that fired;
    /// `cpu.busy_threads`, `cpu.threads`, `cpu.top_runnable_percent`,
    /// `cpu.top_cpu_percent`, `window_secs`, `throttled.threads`,
    /// `throttled.runnable_threads`, `throttled.top_runnable_percent`,
    /// `throttled.sleeps_per_sec`, `throttled.window_secs`, `anon_mib`,
    /// `hugetlb_mib`, `anon_huge_mib`, `tcp_connections`, `peer`,
    /// `rhythm.steady`, `rhythm.long_lived`, `rhythm.bytes_per_sec`,
    /// `rhythm.data_segments`, `rhythm.age_secs`, `rhythm.quiet_secs`,
    /// `rhythm.peer`,
    /// `tuning.hugepages`, `tuning.msr`, `tuning.msr_allow_writes`,
    /// `tuning.nmi_watchdog`, `tuning.counted`;
    /// `threshold.*`; `why`).
    pub fn to_json(&self, profile: &Arc<str>) -> String {
        self.to_value(profile).to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::{
        behaviour::{BehaviourRule, CpuSignal, Memory, Signals, Thresholds, Verdict},
        scan::ScannedProcess,
    };

    #[test]
    fn every_signal_is_a_field() {
        let signals = Signals {
            cpu: CpuSignal {
                busy_threads: 2,
                threads: 9,
                top_runnable_percent: 99,
                top_cpu_percent: 51,
                span: Duration::from_secs(10),
            },
            throttled: Default::default(),
            memory: Memory {
                anon_kib: 262 * 1024,
                anon_huge_kib: None,
                hugetlb_kib: 0,
            },
            tcp_connections: 1,
            peer: Some("192.0.2.7:443".parse().unwrap()),
            rhythm: Default::default(),
            tuning: Default::default(),
        };
        let thresholds = Thresholds::default();
        let d = Detection {
            time: UNIX_EPOCH + Duration::from_secs(1),
            process: ScannedProcess {
                pid: 42,
                start_time: 7,
                uid: 0,
                comm: "kworker".into(),
                ppid: 1,
                pname: "sh".into(),
                exe: "/opt/kworker".into(),
                cmdline: "kworker -o pool:443".into(),
                cgroup: "/sys/fs/cgroup/c1".into(),
                cgroup_id: 99,
            },
            rule: BehaviourRule {
                name: "mining-behaviour".into(),
                index: 3,
                action: Action::Kill,
                thresholds,
            },
            signals,
            verdict: Verdict::judge(&signals, &thresholds),
            outcome: Outcome::Killed,
        };
        let v: Value = serde_json::from_str(&d.to_json(&"p".into())).unwrap();
        let f = &v["output_fields"];
        assert_eq!(f["minerguard.kind"], "behaviour");
        assert_eq!(f["minerguard.outcome"], "killed");
        assert_eq!(v["action"], "kill");
        assert_eq!(f["proc.pid"], 42);
        assert_eq!(f["minerguard.behaviour.cpu.busy_threads"], 2);
        assert_eq!(f["minerguard.behaviour.anon_mib"], 262);
        assert_eq!(f["minerguard.behaviour.window_secs"], 10.0);
        assert_eq!(
            f["minerguard.behaviour.signals"],
            json!(["cpu", "memory", "connection"])
        );
        assert_eq!(f["minerguard.behaviour.peer"], "192.0.2.7:443");
        assert_eq!(f["minerguard.behaviour.threshold.busy_percent"], 90);
        assert_eq!(f["minerguard.behaviour.threshold.throttled_percent"], 40);
        assert_eq!(f["minerguard.behaviour.threshold.needs_rhythm"], false);
        assert_eq!(f["minerguard.behaviour.rhythm.steady"], 0);
        assert_eq!(f["minerguard.behaviour.threshold.window_secs"], 10);
        assert_eq!(f["minerguard.behaviour.throttled.threads"], 0);
        // Unknown values are left out, not null.
        assert!(f
            .get("minerguard.behaviour.throttled.sleeps_per_sec")
            .is_none());
        assert_eq!(v["rule"], "mining-behaviour");
        assert!(v["output"].as_str().unwrap().contains("is mining"), "{v}");
    }
}
