//! Falco-shaped JSON for events, so Falco pipelines (falcosidekick, jq
//! filters) take minerguard's output unchanged.

use serde_json::{json, Map, Value};

use super::{poller::unix_nanos, CgroupKill, Event, Target};
use crate::profile::Action;

/// One event as a Falco-style JSON object (one line, no trailing newline).
pub fn falco_json(ev: &Event) -> String {
    falco_value(ev).to_string()
}

/// [`falco_json`] as a value, for outputs that add fields (scan findings).
pub(crate) fn falco_value(ev: &Event) -> Value {
    let mut fields = Map::new();
    fields.insert("proc.pid".into(), json!(ev.tgid));
    fields.insert("proc.tid".into(), json!(ev.pid));
    fields.insert("proc.name".into(), json!(ev.comm.as_str()));
    fields.insert("proc.ppid".into(), json!(ev.ppid));
    fields.insert("proc.pname".into(), json!(ev.pname.as_str()));
    fields.insert("proc.cmdline".into(), json!(ev.cmdline.as_str()));
    if ev.cmdline_truncated {
        fields.insert("minerguard.proc.cmdline_truncated".into(), json!(true));
    }
    fields.insert(
        "minerguard.proc.source".into(),
        json!(ev.proc_source.as_str()),
    );
    fields.insert("user.uid".into(), json!(ev.uid));
    fields.insert("cgroup.id".into(), json!(ev.cgroup_id));
    fields.insert("minerguard.profile".into(), json!(&*ev.profile));
    fields.insert("minerguard.requested".into(), json!(ev.requested.as_str()));
    let what = match &ev.target {
        Target::Exec { path } => {
            fields.insert("proc.exepath".into(), json!(path.as_str()));
            format!("exec of {}", path.as_str())
        }
        Target::Connect { addr, protocol } => {
            fields.insert("fd.sip".into(), json!(addr.ip().to_string()));
            fields.insert("fd.sport".into(), json!(addr.port()));
            fields.insert("fd.l4proto".into(), json!(protocol.name()));
            format!("{} connect to {addr}", protocol.name())
        }
        Target::Device { major, minor } => {
            fields.insert("fd.dev.major".into(), json!(major));
            fields.insert("fd.dev.minor".into(), json!(minor));
            format!("open of device {major}:{minor}")
        }
        Target::ScopeEscape {
            moved,
            cgroup_id,
            cgroup,
        } => {
            fields.insert("minerguard.moved.pid".into(), json!(moved));
            fields.insert("minerguard.to.cgroup.id".into(), json!(cgroup_id));
            fields.insert("minerguard.to.cgroup".into(), json!(cgroup.as_str()));
            format!("scope escape of pid {moved} to {}", cgroup.as_str())
        }
        Target::Stratum {
            addr,
            protocol,
            signature,
            method,
        } => {
            fields.insert("fd.sip".into(), json!(addr.ip().to_string()));
            fields.insert("fd.sport".into(), json!(addr.port()));
            fields.insert("fd.l4proto".into(), json!(protocol.name()));
            fields.insert("minerguard.signature".into(), json!(signature.as_str()));
            if method.is_empty() {
                format!("{} message to {addr}", signature.as_str())
            } else {
                fields.insert("minerguard.method".into(), json!(&**method));
                format!("{} message ({method}) to {addr}", signature.as_str())
            }
        }
    };
    if let Some(p) = &ev.pattern {
        fields.insert("minerguard.pattern".into(), json!(&**p));
    }
    if let Some(d) = &ev.domain {
        // Falco's name for the server's resolved name.
        fields.insert("fd.sip.name".into(), json!(&**d));
    }
    let verb = match ev.action {
        Action::Audit => "audited",
        Action::Deny => "denied",
        Action::Kill | Action::KillContainer => "denied and killed",
    };
    let degraded = if ev.degraded() {
        format!(" (rule asked {})", ev.requested)
    } else {
        String::new()
    };
    let container = match &ev.cgroup_kill {
        None => String::new(),
        Some(CgroupKill::Killed { cgroup, method }) => {
            let cgroup = cgroup.display().to_string();
            let text = format!(", with every process of cgroup {cgroup}");
            fields.insert("minerguard.killed.cgroup".into(), json!(cgroup));
            fields.insert("minerguard.killed.method".into(), json!(method.as_str()));
            text
        }
        Some(CgroupKill::NotKilled { cgroup, reason }) => {
            if let Some(c) = cgroup {
                fields.insert(
                    "minerguard.kill.cgroup".into(),
                    json!(c.display().to_string()),
                );
            }
            fields.insert("minerguard.kill.error".into(), json!(reason));
            format!(" (its cgroup was not killed: {reason})")
        }
    };
    let output = format!(
        "minerguard: {what} {verb}{container}{degraded} (rule={} proc.name={} proc.pid={} cgroup.id={})",
        ev.rule, ev.comm, ev.tgid, ev.cgroup_id
    );
    json!({
        "time": rfc3339_nanos(unix_nanos(ev.time)),
        "rule": &*ev.rule,
        "priority": priority(ev.action),
        "source": "minerguard",
        "tags": tags(&ev.target),
        "output": output,
        "output_fields": Value::Object(fields),
        "action": ev.action.as_str(),
    })
}

/// Falco-style tags: the project's two, what the rule watched (Falco's
/// `process`, `network`, `filesystem`, `container` tags), and the MITRE
/// ATT&CK tactic and technique: mining is Resource Hijacking (T1496,
/// tactic Impact); leaving the scope's cgroup is Impair Defenses (T1562,
/// tactic Defense Evasion). Source: attack.mitre.org/techniques/T1496 and
/// /T1562.
fn tags(target: &Target) -> Value {
    let kind: &[&str] = match target {
        Target::Exec { .. } => &["process", "mitre_impact", "T1496"],
        Target::Connect { .. } => &["network", "mitre_impact", "T1496"],
        Target::Stratum { .. } => &["network", "stratum", "mitre_impact", "T1496"],
        Target::Device { .. } => &["filesystem", "msr", "mitre_impact", "T1496"],
        Target::ScopeEscape { .. } => &["container", "mitre_defense_evasion", "T1562"],
    };
    let mut all = vec!["minerguard", "cryptomining"];
    all.extend_from_slice(kind);
    json!(all)
}

/// Falco priority names, by severity of what was done.
fn priority(a: Action) -> &'static str {
    match a {
        Action::Kill | Action::KillContainer => "Critical",
        Action::Deny => "Error",
        Action::Audit => "Warning",
    }
}

/// `2026-11-24T16:00:00.123456789Z` for nanoseconds since the epoch.
fn rfc3339_nanos(nanos: u128) -> String {
    let secs = (nanos / 1_000_000_000) as i64;
    let frac = (nanos % 1_000_000_000) as u32;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's public-domain `civil_from_days` algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::{
        net::SocketAddr,
        sync::Arc,
        time::{Duration, UNIX_EPOCH},
    };

    use super::*;
    use crate::events::{InlineStr, ProcSource, Protocol};

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29T12:34:56.5Z (leap day).
        assert_eq!(
            rfc3339_nanos(1_709_210_096_500_000_000),
            "2024-02-29T12:34:56.500000000Z"
        );
    }

    #[test]
    fn scope_escape_event_names_the_moved_process_and_where_it_went() {
        let ev = Event {
            time: UNIX_EPOCH + Duration::from_secs(1),
            pid: 11,
            tgid: 10,
            uid: 0,
            cgroup_id: 99,
            comm: InlineStr::from_c_bytes(b"sh"),
            ppid: 1,
            pname: InlineStr::from_c_bytes(b"init"),
            cmdline: InlineStr::from_c_bytes(b"sh"),
            cmdline_truncated: false,
            proc_source: ProcSource::Kernel,
            profile: Arc::from("container-strict"),
            rule: Arc::from("scope-escape"),
            action: Action::Kill,
            requested: Action::Kill,
            target: Target::ScopeEscape {
                moved: 12,
                cgroup_id: 7,
                cgroup: InlineStr::from_c_bytes(b"/other"),
            },
            domain: None,
            pattern: None,
            cgroup_kill: None,
        };
        let v: Value = serde_json::from_str(&falco_json(&ev)).unwrap();
        assert_eq!(v["output_fields"]["minerguard.moved.pid"], 12);
        assert_eq!(v["output_fields"]["minerguard.to.cgroup.id"], 7);
        assert_eq!(v["output_fields"]["minerguard.to.cgroup"], "/other");
        assert!(v["output"]
            .as_str()
            .unwrap()
            .contains("scope escape of pid 12 to /other"));
    }

    #[test]
    fn connect_event_has_falco_fields() {
        let ev = Event {
            time: UNIX_EPOCH + Duration::from_secs(1),
            pid: 11,
            tgid: 10,
            uid: 0,
            cgroup_id: 99,
            comm: InlineStr::from_c_bytes(b"curl"),
            ppid: 9,
            pname: InlineStr::from_c_bytes(b"bash"),
            cmdline: InlineStr::from_c_bytes(b"curl http://pool.example:3333"),
            cmdline_truncated: false,
            proc_source: ProcSource::Proc,
            profile: Arc::from("default"),
            rule: Arc::from("miner-pool-port"),
            action: Action::Deny,
            requested: Action::Deny,
            target: Target::Connect {
                addr: "127.0.0.1:3333".parse::<SocketAddr>().unwrap(),
                protocol: Protocol::Tcp,
            },
            domain: Some(Arc::from("pool.example")),
            pattern: None,
            cgroup_kill: None,
        };
        let v: Value = serde_json::from_str(&falco_json(&ev)).unwrap();
        assert_eq!(v["rule"], "miner-pool-port");
        assert_eq!(v["priority"], "Error");
        assert_eq!(v["action"], "deny");
        assert_eq!(
            v["tags"],
            json!([
                "minerguard",
                "cryptomining",
                "network",
                "mitre_impact",
                "T1496"
            ])
        );
        assert_eq!(v["output_fields"]["proc.pid"], 10);
        assert_eq!(v["output_fields"]["fd.sip"], "127.0.0.1");
        assert_eq!(v["output_fields"]["fd.sport"], 3333);
        assert_eq!(v["output_fields"]["fd.sip.name"], "pool.example");
        assert_eq!(v["time"], "1970-01-01T00:00:01.000000000Z");
        // Who did it, read from /proc here.
        assert_eq!(v["output_fields"]["proc.ppid"], 9);
        assert_eq!(v["output_fields"]["proc.pname"], "bash");
        assert_eq!(
            v["output_fields"]["proc.cmdline"],
            "curl http://pool.example:3333"
        );
        assert_eq!(v["output_fields"]["minerguard.proc.source"], "proc");
        assert!(v["output_fields"]
            .get("minerguard.proc.cmdline_truncated")
            .is_none());
        assert!(v["output_fields"].get("minerguard.pattern").is_none());
    }

    #[test]
    fn cmdline_event_names_the_pattern_and_who_ran_it() {
        let argv = b"xmrig\0-o\0stratum+tcp://pool:3333\0";
        let (cmdline, cut) = InlineStr::command_line("xmrig", argv);
        let ev = Event {
            time: UNIX_EPOCH,
            pid: 21,
            tgid: 21,
            uid: 1000,
            cgroup_id: 5,
            comm: InlineStr::from_c_bytes(b"xmrig"),
            ppid: 20,
            pname: InlineStr::from_c_bytes(b"launcher"),
            cmdline,
            cmdline_truncated: cut,
            proc_source: ProcSource::Kernel,
            profile: Arc::from("default"),
            rule: Arc::from("pool-url"),
            action: Action::Kill,
            requested: Action::Kill,
            target: Target::Exec {
                path: InlineStr::from_c_bytes(b"/tmp/xmrig"),
            },
            domain: None,
            pattern: Some(Arc::from("stratum+tcp://")),
            cgroup_kill: None,
        };
        let v: Value = serde_json::from_str(&falco_json(&ev)).unwrap();
        let f = &v["output_fields"];
        assert_eq!(f["proc.pid"], 21);
        assert_eq!(f["proc.ppid"], 20);
        assert_eq!(f["proc.pname"], "launcher");
        assert_eq!(f["proc.cmdline"], "xmrig -o stratum+tcp://pool:3333");
        assert_eq!(f["proc.exepath"], "/tmp/xmrig");
        assert_eq!(f["minerguard.pattern"], "stratum+tcp://");
        assert_eq!(f["minerguard.proc.source"], "kernel");

        let long = Event {
            cmdline_truncated: true,
            pattern: Some(Arc::from(crate::events::OVERLONG_ARGV)),
            ..ev
        };
        let v: Value = serde_json::from_str(&falco_json(&long)).unwrap();
        let f = &v["output_fields"];
        assert_eq!(f["minerguard.proc.cmdline_truncated"], true);
        assert!(f["minerguard.pattern"]
            .as_str()
            .unwrap()
            .contains("not searched"));
    }

    fn kill_container_event(cgroup_kill: CgroupKill) -> Event {
        Event {
            time: UNIX_EPOCH + Duration::from_secs(1),
            pid: 11,
            tgid: 11,
            uid: 0,
            cgroup_id: 99,
            comm: InlineStr::from_c_bytes(b"xmrig"),
            ppid: 10,
            pname: InlineStr::from_c_bytes(b"sh"),
            cmdline: InlineStr::from_c_bytes(b"xmrig"),
            cmdline_truncated: false,
            proc_source: ProcSource::Kernel,
            profile: Arc::from("p"),
            rule: Arc::from("miner"),
            action: Action::KillContainer,
            requested: Action::KillContainer,
            target: Target::Exec {
                path: InlineStr::from_c_bytes(b"/tmp/xmrig"),
            },
            domain: None,
            pattern: None,
            cgroup_kill: Some(cgroup_kill),
        }
    }

    #[test]
    fn kill_container_event_names_the_killed_cgroup_or_why_not() {
        let ev = kill_container_event(CgroupKill::Killed {
            cgroup: "/sys/fs/cgroup/pod/ctr".into(),
            method: crate::events::KillMethod::CgroupKill,
        });
        let v: Value = serde_json::from_str(&falco_json(&ev)).unwrap();
        assert_eq!(v["action"], "kill-container");
        assert_eq!(v["priority"], "Critical");
        assert_eq!(v["output_fields"]["minerguard.requested"], "kill-container");
        assert_eq!(
            v["output_fields"]["minerguard.killed.cgroup"],
            "/sys/fs/cgroup/pod/ctr"
        );
        assert_eq!(
            v["output_fields"]["minerguard.killed.method"],
            "cgroup.kill"
        );
        assert!(v["output_fields"].get("minerguard.kill.error").is_none());
        let output = v["output"].as_str().unwrap();
        assert!(
            output
                .contains("denied and killed, with every process of cgroup /sys/fs/cgroup/pod/ctr"),
            "{output}"
        );

        let ev = kill_container_event(CgroupKill::NotKilled {
            cgroup: Some("/sys/fs/cgroup/x".into()),
            reason: "/sys/fs/cgroup/x holds this process".into(),
        });
        let v: Value = serde_json::from_str(&falco_json(&ev)).unwrap();
        assert_eq!(v["action"], "kill-container");
        assert!(v["output_fields"].get("minerguard.killed.cgroup").is_none());
        assert_eq!(
            v["output_fields"]["minerguard.kill.cgroup"],
            "/sys/fs/cgroup/x"
        );
        assert_eq!(
            v["output_fields"]["minerguard.kill.error"],
            "/sys/fs/cgroup/x holds this process"
        );
        assert!(v["output"]
            .as_str()
            .unwrap()
            .contains("(its cgroup was not killed: /sys/fs/cgroup/x holds this process)"));
    }
}
