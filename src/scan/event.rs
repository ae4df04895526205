//! A finding as an event: the same Falco-shaped JSON as enforcement events
//! (`proc.*`, `minerguard.profile`, the rule, the action), plus
//! `minerguard.kind: scan`, what was found and what was done.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{Evidence, Finding, Outcome, ScanReport};
use crate::{
    events::{json::falco_value, CgroupKill, Event, InlineStr, ProcSource, Target},
    profile::Action,
};

/// MSR devices' major number.
const MSR_MAJOR: u32 = 202;

impl Finding {
    /// The finding as an enforcement [`Event`] of its deciding rule: the
    /// target is what matched (the program or mapped file, the socket's
    /// peer, the MSR device; the program for a command line); `action` is
    /// what was done (`kill` when killed, `kill-container` when its cgroup
    /// was, else `audit`), `requested` the rule's action.
    pub fn event(&self, profile: &Arc<str>) -> Event {
        let m = self.decisive();
        let p = &self.process;
        let exec = |path: &str| Target::Exec {
            path: InlineStr::from_c_bytes(path.as_bytes()),
        };
        let (target, domain) = match &m.evidence {
            Evidence::Exe { path } | Evidence::Mapped { path } => (exec(path), None),
            Evidence::Cmdline { .. } => (exec(&p.exe), None),
            Evidence::Socket {
                peer,
                protocol,
                domain,
            } => (
                Target::Connect {
                    addr: *peer,
                    protocol: *protocol,
                },
                domain.clone(),
            ),
            Evidence::Msr { cpu, .. } => (
                Target::Device {
                    major: MSR_MAJOR,
                    minor: *cpu,
                },
                None,
            ),
        };
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
        // `cmdline` holds argv joined by spaces: split back, Falco's form is
        // built as for kernel events (the name, then the arguments).
        let (cmdline, cmdline_truncated) =
            InlineStr::command_line(&p.comm, p.cmdline.replace(' ', "\0").as_bytes());
        let pattern = match &m.evidence {
            Evidence::Cmdline { pattern } => Some(Arc::from(pattern.as_str())),
            _ => None,
        };
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
            pattern,
            profile: profile.clone(),
            rule: m.rule.clone(),
            action,
            requested: m.action,
            target,
            domain,
            cgroup_kill,
        }
    }
}

/// A finding as one line of Falco-shaped JSON (see the module docs):
/// `minerguard.kind` is `scan`, `minerguard.outcome` what was done
/// (`killed`, `reported`, `dry-run`, `gone`, `failed: …`),
/// `minerguard.evidence` every rule it matched and why.
pub fn scan_json(finding: &Finding, profile: &Arc<str>) -> String {
    scan_value(finding, profile).to_string()
}

impl ScanReport {
    /// The whole report as one JSON object (for C and Python): `profile`,
    /// `scanned`, `vanished`, `elapsed_ms`, `findings` (each the event
    /// object of [`scan_json`]) and `unjudged` (`rule`, `reason`).
    pub fn to_json(&self) -> String {
        let findings: Vec<Value> = (self.findings.iter())
            .map(|f| scan_value(f, &self.profile))
            .collect();
        let unjudged: Vec<Value> = (self.unjudged.iter())
            .map(|u| json!({ "rule": &*u.rule, "reason": u.reason }))
            .collect();
        json!({
            "profile": &*self.profile,
            "scanned": self.scanned,
            "vanished": self.vanished,
            "elapsed_ms": self.elapsed.as_secs_f64() * 1e3,
            "findings": findings,
            "unjudged": unjudged,
        })
        .to_string()
    }
}

/// A finding as the JSON object of [`scan_json`], for a caller that adds
/// fields of its own (the agent's `container.*` and `k8s.*`).
pub fn scan_value(finding: &Finding, profile: &Arc<str>) -> Value {
    let mut v = falco_value(&finding.event(profile));
    let p = &finding.process;
    let m = finding.decisive();
    if let Some(fields) = v["output_fields"].as_object_mut() {
        fields.insert("minerguard.kind".into(), json!("scan"));
        fields.insert(
            "minerguard.outcome".into(),
            json!(finding.outcome.to_string()),
        );
        fields.insert("minerguard.rule".into(), json!(&*m.rule));
        fields.insert("proc.exepath".into(), json!(p.exe));
        fields.insert("cgroup.path".into(), json!(p.cgroup.to_string_lossy()));
        let evidence: Vec<Value> = finding
            .matches
            .iter()
            .map(|m| {
                json!({
                    "rule": &*m.rule,
                    "matcher": m.matcher.as_str(),
                    "action": m.action.as_str(),
                    "evidence": m.evidence.to_string(),
                })
            })
            .collect();
        fields.insert("minerguard.evidence".into(), Value::Array(evidence));
    }
    v["output"] = json!(format!(
        "minerguard scan: {} (pid {}, {}) {}: {} (rule={} profile={} cgroup={})",
        p.comm,
        p.pid,
        p.exe,
        m.evidence,
        finding.outcome,
        m.rule,
        profile,
        p.cgroup.display()
    ));
    if let Some(tags) = v["tags"].as_array_mut() {
        tags.push(json!("scan"));
    }
    v
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::{
        compile::RuleKind,
        events::Protocol,
        profile::MatcherKind,
        scan::{Match, ScannedProcess},
    };

    fn finding(evidence: Evidence, outcome: Outcome) -> Finding {
        Finding {
            time: UNIX_EPOCH + Duration::from_secs(1),
            process: ScannedProcess {
                pid: 42,
                start_time: 7,
                uid: 0,
                comm: "kworker".into(),
                ppid: 1,
                pname: "containerd-shim".into(),
                exe: "/opt/kworker".into(),
                cmdline: "kworker --url=stratum+tcp://pool:3333".into(),
                cgroup: "/sys/fs/cgroup/c1".into(),
                cgroup_id: 99,
            },
            matches: vec![Match {
                rule: "miner-pool-port".into(),
                rule_index: 4,
                kind: RuleKind::Connect,
                matcher: MatcherKind::ConnectPorts,
                action: Action::Deny,
                evidence,
            }],
            outcome,
        }
    }

    #[test]
    fn a_killed_connection_reads_as_a_connect_event_of_kind_scan() {
        let f = finding(
            Evidence::Socket {
                peer: "10.0.0.1:3333".parse().unwrap(),
                protocol: Protocol::Tcp,
                domain: None,
            },
            Outcome::Killed,
        );
        let v: Value =
            serde_json::from_str(&scan_json(&f, &Arc::from("container-strict"))).unwrap();
        let fields = &v["output_fields"];
        assert_eq!(v["rule"], "miner-pool-port");
        assert_eq!(v["action"], "kill");
        assert_eq!(fields["minerguard.requested"], "deny");
        assert_eq!(fields["minerguard.kind"], "scan");
        assert_eq!(fields["minerguard.outcome"], "killed");
        assert_eq!(fields["minerguard.profile"], "container-strict");
        assert_eq!(fields["proc.pid"], 42);
        assert_eq!(fields["proc.ppid"], 1);
        assert_eq!(fields["proc.pname"], "containerd-shim");
        assert_eq!(fields["minerguard.proc.source"], "proc");
        assert_eq!(fields["fd.sport"], 3333);
        assert_eq!(
            fields["proc.cmdline"],
            "kworker --url=stratum+tcp://pool:3333"
        );
        assert_eq!(fields["minerguard.evidence"][0]["matcher"], "connect.ports");
        assert!(v["output"]
            .as_str()
            .unwrap()
            .starts_with("minerguard scan: kworker"));
    }

    #[test]
    fn a_report_is_one_object_with_every_finding() {
        let report = ScanReport {
            profile: "p".into(),
            scanned: 3,
            vanished: 1,
            findings: vec![finding(
                Evidence::Exe {
                    path: "/tmp/x".into(),
                },
                Outcome::Reported,
            )],
            unjudged: vec![crate::scan::Unjudged {
                rule: "stratum-protocol".into(),
                reason: "why",
            }],
            elapsed: Duration::from_millis(2),
        };
        let v: Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(v["scanned"], 3);
        assert_eq!(v["vanished"], 1);
        assert_eq!(v["findings"][0]["output_fields"]["minerguard.kind"], "scan");
        assert_eq!(v["unjudged"][0]["rule"], "stratum-protocol");
    }

    #[test]
    fn a_dry_run_is_an_audit_of_what_the_rule_asks() {
        let f = finding(
            Evidence::Exe {
                path: "/tmp/x".into(),
            },
            Outcome::DryRun,
        );
        let v: Value = serde_json::from_str(&scan_json(&f, &Arc::from("p"))).unwrap();
        assert_eq!(v["action"], "audit");
        assert_eq!(v["output_fields"]["minerguard.requested"], "deny");
        assert_eq!(v["output_fields"]["minerguard.outcome"], "dry-run");
        assert_eq!(v["output_fields"]["proc.exepath"], "/opt/kworker");
    }
}
