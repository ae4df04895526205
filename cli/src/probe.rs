//! `minerguard probe`: what this kernel supports, which backend is used and
//! what each action becomes on it.

use std::process::ExitCode;

use minerguard::{probe, Action, BackendKind, MatcherKind, ProbeReport, RuleKind};

use crate::EXIT_FINDINGS;

/// Prints the probe report (JSON with `json`); exit 1 when no backend is
/// usable.
pub fn print(json: bool) -> ExitCode {
    let report = probe();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serializes")
        );
        return ExitCode::SUCCESS;
    }
    println!("kernel {} (euid {})", report.kernel, report.euid);
    let line = |name: &str, f: &minerguard::probe::Feature| {
        println!(
            "  {:<16} {:<4} {}",
            name,
            if f.available { "yes" } else { "no" },
            f.detail
        )
    };
    line("BTF", &report.btf);
    line("BPF LSM", &report.bpf_lsm);
    line("cgroup v2", &report.cgroup2);
    line("cgroup-BPF", &report.cgroup_bpf);
    line("cgroup signal", &report.cgroup_signal);
    line("task in cgroup", &report.proc_in_cgroup);
    line("exec tracepoint", &report.exec_tracepoint);
    line("sockops", &report.sockops);
    line("tracefs", &report.tracefs);
    match report.backend {
        Some(kind) => {
            println!("backend: {kind}");
            let supported: Vec<&str> = MatcherKind::ALL
                .iter()
                .filter(|m| kind.supports(**m))
                .map(|m| m.as_str())
                .collect();
            let missing: Vec<&str> = MatcherKind::ALL
                .iter()
                .filter(|m| !kind.supports(**m))
                .map(|m| m.as_str())
                .collect();
            println!("enforced matchers: {}", supported.join(", "));
            println!("not enforced yet:  {}", missing.join(", "));
            println!("rule semantics on this kernel:");
            for rule in [RuleKind::Exec, RuleKind::Connect] {
                let per: Vec<String> = [
                    Action::Deny,
                    Action::Kill,
                    Action::KillContainer,
                    Action::Audit,
                ]
                .iter()
                .map(|a| format!("{a} -> {}", semantics(kind, rule, *a, &report)))
                .collect();
                println!("  {:<8} {}", rule.as_str(), per.join(", "));
            }
            ExitCode::SUCCESS
        }
        None => {
            println!("backend: none usable");
            for m in report.missing() {
                println!("  missing: {m}");
            }
            ExitCode::from(EXIT_FINDINGS)
        }
    }
}

fn semantics(kind: BackendKind, rule: RuleKind, requested: Action, report: &ProbeReport) -> String {
    let action = kind.effective(rule, requested);
    let how = match (kind, rule, action) {
        (_, _, Action::Audit) => "allowed, reported",
        (BackendKind::Cgroup, RuleKind::Exec, _) => "SIGKILL before the first instruction",
        (BackendKind::Cgroup, RuleKind::Connect, Action::Kill | Action::KillContainer)
            if !report.cgroup_signal.available =>
        {
            "EPERM, then SIGKILL from userspace"
        }
        (_, _, Action::Kill | Action::KillContainer) => "EPERM and SIGKILL in-kernel",
        (_, _, Action::Deny) => "EPERM",
    };
    let cgroup = if action == Action::KillContainer {
        ", then SIGKILL of every process of its cgroup from userspace"
    } else {
        ""
    };
    format!("{action} ({how}{cgroup})")
}
