//! `minerguard scan`: judge the processes already running in cgroups by a
//! profile's rules, and act on them (or, with `--dry-run`, only report).

use std::{path::PathBuf, process::ExitCode};

use minerguard::scan::{scan_json, Outcome, ScanOptions, ScanReport, Scanner};

use crate::{profile_arg::ProfileArg, CliResult, EXIT_FINDINGS, PREFIX};

/// `minerguard scan`'s arguments.
#[derive(clap::Args)]
pub struct ScanArgs {
    /// cgroup v2 directory to scan, with its descendants (repeatable).
    #[arg(long = "cgroup")]
    pub cgroups: Vec<PathBuf>,
    /// Scan every process of the host (the cgroup v2 root).
    #[arg(long)]
    pub host: bool,
    /// Scan the scopes of the node agent (not yet).
    #[arg(long)]
    pub agent: bool,
    /// Profile file (YAML or JSON) or bundled profile name.
    #[arg(long, default_value = "default")]
    pub profile: ProfileArg,
    /// Print each finding as an event (Falco-shaped JSON lines) on stdout.
    #[arg(long)]
    pub json: bool,
    /// Report only: kill nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Scans; exit 0 when nothing was found, 1 with findings.
pub fn scan(args: &ScanArgs) -> CliResult<ExitCode> {
    if args.agent {
        return Err(
            "--agent is not supported yet: give the containers' cgroups with --cgroup".into(),
        );
    }
    let mut cgroups = args.cgroups.clone();
    if args.host {
        cgroups.push(minerguard::cgroup::cgroup2_mount()?);
    }
    if cgroups.is_empty() {
        return Err("nothing to scan: give --cgroup PATH (repeatable) or --host".into());
    }
    let profile = args.profile.load_for_command()?;
    let scanner = Scanner::from_valid(&profile)?;
    let report = scanner.scan(
        &cgroups,
        &ScanOptions {
            dry_run: args.dry_run,
        },
    )?;
    if args.json {
        for f in &report.findings {
            println!("{}", scan_json(f, &report.profile));
        }
    } else {
        print_table(&report);
    }
    summarize(&report);
    Ok(if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FINDINGS)
    })
}

/// One line per finding: pid, comm, rule, action, outcome, evidence, cgroup.
fn print_table(report: &ScanReport) {
    if report.findings.is_empty() {
        return;
    }
    println!(
        "{:<8} {:<16} {:<24} {:<7} {:<10} {:<48} CGROUP",
        "PID", "COMM", "RULE", "ACTION", "OUTCOME", "EVIDENCE"
    );
    for f in &report.findings {
        let m = f.decisive();
        println!(
            "{:<8} {:<16} {:<24} {:<7} {:<10} {:<48} {}",
            f.process.pid,
            f.process.comm,
            m.rule,
            m.action.as_str(),
            f.outcome.to_string(),
            m.evidence.to_string(),
            f.process.cgroup.display()
        );
    }
}

/// The totals, and the rules a scan cannot judge, on stderr.
fn summarize(report: &ScanReport) {
    let killed = (report.findings.iter())
        .filter(|f| f.outcome == Outcome::Killed)
        .count();
    let failed = (report.findings.iter())
        .filter(|f| matches!(f.outcome, Outcome::Failed(_)))
        .count();
    eprintln!(
        "{PREFIX}: scanned {} processes with profile `{}` in {} ms: {} findings, {killed} killed, {failed} failed",
        report.scanned,
        report.profile,
        report.elapsed.as_millis(),
        report.findings.len(),
    );
    if !report.unjudged.is_empty() {
        let rules: Vec<String> = (report.unjudged.iter())
            .map(|u| format!("`{}` ({})", u.rule, u.reason))
            .collect();
        eprintln!("{PREFIX}: not judged by a scan: {}", rules.join("; "));
    }
}
