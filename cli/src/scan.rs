//! `minerguard scan`: judge the processes already running in cgroups by a
//! profile's rules, and act on them (or, with `--dry-run`, only report).

use std::{path::PathBuf, process::ExitCode};

use minerguard::scan::{scan_json, Outcome, ScanOptions, ScanReport, Scanner};
use minerguard_agent::{
    agent::{pods_root_of, scan_plan_of, Directory},
    config::AgentConfig,
    discovery,
    enrich::Enricher,
};

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
    /// Scan the scopes the node agent with this configuration file has (or
    /// would have): the baseline over the pods' root, each bound container
    /// by its binding's profile (`--profile` does not apply).
    #[arg(long, value_name = "CONFIG", conflicts_with_all = ["cgroups", "host", "profile", "exclude"])]
    pub agent: Option<PathBuf>,
    /// cgroup left out of the scan with its descendants (repeatable): a
    /// scope of its own, scanned with its own profile.
    #[arg(long, value_name = "PATH")]
    pub exclude: Vec<PathBuf>,
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
    if let Some(config) = &args.agent {
        return scan_agent(config, args);
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
            exclude: args.exclude.clone(),
        },
    )?;
    show(&report, args.json, None);
    Ok(if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FINDINGS)
    })
}

/// `--agent CONFIG`: each scope of the agent by its own profile, with
/// findings enriched as the agent's events are (container, pod).
fn scan_agent(config_path: &std::path::Path, args: &ScanArgs) -> CliResult<ExitCode> {
    let config = AgentConfig::load(config_path)?;
    let source = crate::agent::metadata_source(&config, false);
    let mut notes = Vec::new();
    let jobs = scan_plan_of(&config, source.as_deref(), &mut notes)?;
    for note in notes {
        eprintln!("{PREFIX}: {note}");
    }
    // The directory an agent keeps, filled for the containers found, so
    // that findings name their container and pod.
    let directory = Directory::default();
    if let Some(source) = &source {
        let root = pods_root_of(&config)?;
        let mut known = directory.write().unwrap_or_else(|e| e.into_inner());
        for c in discovery::scan(&root).into_values() {
            if let Ok(info) = source.container(&c.container.id) {
                known.insert(c.cgroup_id, std::sync::Arc::new(info));
            }
        }
    }
    let enricher = Enricher::new(directory);
    let mut found = false;
    for job in jobs {
        let options = ScanOptions {
            dry_run: args.dry_run,
            exclude: job.exclude.clone(),
        };
        let report = match job.scanner.scan(&job.cgroups, &options) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{PREFIX}: scan ({}) skipped: {e}", job.label);
                continue;
            }
        };
        found |= !report.findings.is_empty();
        show(&report, args.json, Some((&enricher, &job.label)));
    }
    Ok(if found {
        ExitCode::from(EXIT_FINDINGS)
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints a report: event lines (`json`; enriched with container fields
/// when scanning for the agent) or a table, then the totals on stderr.
fn show(report: &ScanReport, json: bool, agent: Option<(&Enricher, &str)>) {
    if json {
        for f in &report.findings {
            match agent {
                Some((enricher, _)) => println!("{}", enricher.scan_json(f, &report.profile)),
                None => println!("{}", scan_json(f, &report.profile)),
            }
        }
    } else {
        if let Some((_, label)) = agent {
            if !report.findings.is_empty() {
                println!("# {label}");
            }
        }
        print_table(report);
    }
    let head = match agent {
        Some((_, label)) => format!("{PREFIX}: {label}: "),
        None => format!("{PREFIX}: "),
    };
    summarize(report, &head);
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

/// The totals, and the rules a scan cannot judge, on stderr, each line
/// starting with `head`.
fn summarize(report: &ScanReport, head: &str) {
    let killed = (report.findings.iter())
        .filter(|f| f.outcome == Outcome::Killed)
        .count();
    let failed = (report.findings.iter())
        .filter(|f| matches!(f.outcome, Outcome::Failed(_)))
        .count();
    eprintln!(
        "{head}scanned {} processes with profile `{}` in {} ms: {} findings, {killed} killed, {failed} failed",
        report.scanned,
        report.profile,
        report.elapsed.as_millis(),
        report.findings.len(),
    );
    if !report.unjudged.is_empty() {
        let rules: Vec<String> = (report.unjudged.iter())
            .map(|u| format!("`{}` ({})", u.rule, u.reason))
            .collect();
        eprintln!("{head}not judged by a scan: {}", rules.join("; "));
    }
}
