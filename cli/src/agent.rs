//! `minerguard agent`: the node agent (see the `minerguard-agent` crate).
//! Runs until SIGINT or SIGTERM (enforcement stays pinned: a restarted
//! agent adopts it); SIGHUP, or a change of the configuration file (a
//! ConfigMap's `..data` swap included), reloads it.

use std::{
    io,
    path::Path,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use minerguard::{CheckStatus, Enforcer};
use minerguard_agent::{
    agent::Agent,
    behaviour::Watching,
    config::AgentConfig,
    enrich::Enricher,
    metrics::{Delivery, DropSite, JudgeCounts, Metrics, MetricsServer},
    runtime::{self, MetadataSource},
    scans::{ScanDone, Scanning},
    webhook::Webhook,
};

use crate::{signals, sink, CliResult, LoadArgs, PREFIX};

/// How long the loop waits at most: for the configuration file's stamp,
/// signals and the metrics (containers wake it at once through inotify).
const TICK: Duration = Duration::from_millis(100);
/// How often the gauges and totals of `/metrics` are refreshed.
const METRICS_EVERY: Duration = Duration::from_secs(1);
/// How often a runtime API that was down is tried again.
const RUNTIME_RETRY: Duration = Duration::from_secs(10);

/// The status of a check as a metric label.
fn status_label(s: &CheckStatus) -> &'static str {
    match s {
        CheckStatus::Active => "active",
        CheckStatus::NotLoadedYet { .. } => "not_loaded_yet",
        CheckStatus::NotNeeded { .. } => "not_needed",
        CheckStatus::Off { .. } => "off",
    }
}

/// Warns once per rise of the Stratum judges' counts that mean traffic
/// was refused unread or passed unjudged (`seen`: the counts warned about).
fn warn_judge_counts(seen: &mut JudgeCounts, now: JudgeCounts) {
    if now.unread_refused > seen.unread_refused {
        eprintln!(
            "{PREFIX}: warning: the Stratum judge refused {} send(s) or connection(s) it could not read or follow ({} in all): clean traffic may have been refused (see Enforcer::stratum_unread_refused)",
            now.unread_refused - seen.unread_refused,
            now.unread_refused
        );
    }
    if now.untracked > seen.untracked {
        eprintln!(
            "{PREFIX}: warning: {} accepted socket(s) of stratum scopes sent unjudged: the sk-msg judge's tracking was full ({} in all); use --stratum-judge egress (the default)",
            now.untracked - seen.untracked,
            now.untracked
        );
    }
    *seen = now;
}

/// The counts the agent's last warnings were about.
#[derive(Default)]
struct Warned {
    /// Refused sockets that could not be destroyed.
    not_destroyed: u64,
    /// What the Stratum judges refused or passed unread.
    judge: JudgeCounts,
}

/// Refreshes what `/metrics` reads from the enforcer and the webhook, and
/// warns when refused sockets could not be destroyed since the last time,
/// and when the Stratum judges refused or passed what they could not read
/// (`warned`: the counts the last warnings were about).
fn refresh(metrics: &Metrics, agent: &Agent, webhook: Option<&Webhook>, warned: &mut Warned) {
    let Warned {
        not_destroyed,
        judge: judge_seen,
    } = warned;
    let enforcer: &Enforcer = agent.enforcer();
    let (destroyed, failed) = enforcer.destroyed_sockets();
    metrics.set_refused_sockets(destroyed, failed);
    let judge = JudgeCounts {
        unread_refused: enforcer.stratum_unread_refused(),
        untracked: enforcer.untracked_sockets(),
        own_copies: enforcer.stratum_own_copies(),
    };
    metrics.set_stratum_judge(judge);
    warn_judge_counts(judge_seen, judge);
    if failed > *not_destroyed {
        eprintln!(
            "{PREFIX}: warning: {} refused Stratum socket(s) could not be destroyed ({failed} in all, {destroyed} destroyed): the egress judge drops their packets while it is attached, but their senders are not told. Closed first, a kernel without CONFIG_INET_DIAG_DESTROY, or the judge's queue full",
            failed - *not_destroyed
        );
        *not_destroyed = failed;
    }
    let drops = enforcer.drops();
    metrics.set_drops(DropSite::Ring, drops.ring);
    metrics.set_drops(DropSite::Channel, drops.channel);
    if let Some(w) = webhook {
        let s = w.stats();
        metrics.set_drops(DropSite::Webhook, s.dropped);
        metrics.set_deliveries(Delivery::Delivered, s.delivered);
        metrics.set_deliveries(Delivery::Failed, s.failed);
    }
    metrics.set_scopes(enforcer.handles().len() as u64);
    metrics.set_containers(agent.counts().0 as u64);
    let checks = enforcer.checks();
    metrics.set_hook_status([
        ("loader_exec", status_label(&checks.loader_exec)),
        ("fast_open", status_label(&checks.fast_open)),
        ("lsm_stratum", status_label(&checks.lsm_stratum)),
        ("stratum_sk_msg", status_label(&checks.stratum_sk_msg)),
        ("stratum_backstop", status_label(&checks.stratum_backstop)),
        ("tuning", status_label(&checks.tuning)),
    ]);
}

/// The runtime API the configuration names (or the first found), or
/// `None` with a warning: containers then keep the baseline, which still
/// covers every one of them.
pub(crate) fn metadata_source(
    config: &AgentConfig,
    quiet: bool,
) -> Option<Box<dyn MetadataSource>> {
    let (kind, endpoint) = match (config.runtime.kind(), &config.runtime_endpoint) {
        (Some(kind), Some(endpoint)) => (kind, endpoint.clone()),
        (Some(kind), None) => (kind, runtime::default_endpoint(kind).to_path_buf()),
        (None, _) => match runtime::detect() {
            Some(found) => found,
            None => {
                if !quiet {
                    eprintln!("{PREFIX}: warning: no container runtime socket found (runtime: auto); bindings cannot match, every container keeps the baseline (tried again every {} s)", RUNTIME_RETRY.as_secs());
                }
                return None;
            }
        },
    };
    match runtime::connect(kind, &endpoint, &config.runtime_namespace) {
        Ok(source) => {
            eprintln!(
                "{PREFIX}: container metadata from the {kind} API at {}",
                endpoint.display()
            );
            Some(source)
        }
        Err(e) => {
            if !quiet {
                eprintln!(
                    "{PREFIX}: warning: {e}; bindings cannot match, every container keeps the baseline (tried again every {} s)",
                    RUNTIME_RETRY.as_secs()
                );
            }
            None
        }
    }
}

/// When the next round of scans of every scope is due (`None`: no rounds).
fn next_round(every: Duration) -> Option<Instant> {
    (!every.is_zero()).then(|| Instant::now() + crate::scan_loop::jittered(every))
}

/// `2 killed, 1 reported` and so on, for a scan's summary line.
fn outcomes(report: &minerguard::scan::ScanReport) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for f in &report.findings {
        let key = match &f.outcome {
            minerguard::scan::Outcome::Failed(_) => "failed".to_string(),
            other => other.to_string(),
        };
        *counts.entry(key).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    parts.join(", ")
}

/// Runs the agent on `config_path`.
pub fn agent(config_path: &Path, load: LoadArgs) -> CliResult<ExitCode> {
    let config = AgentConfig::load(config_path)?;
    let mut outs = Vec::new();
    if config.outputs.stdout {
        outs.push(sink::Sink::Stream(Box::new(io::stdout())));
    }
    if let Some(file) = &config.outputs.file {
        outs.push(sink::Sink::open(
            Some(file),
            config.outputs.file_max_size,
            Box::new(io::stdout()),
        )?);
    }
    // Blocked before any thread starts (webhook, metrics), so that every
    // thread inherits the mask: a SIGTERM must reach the loop below, never a
    // thread that would take the default action and end the agent without
    // its clean stop. One that comes during start-up is taken there.
    signals::block();
    let webhook = match &config.outputs.webhook {
        Some(w) => Some(Arc::new(Webhook::start(&w.url, w.timeout, w.queue)?)),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    // Served before the baseline is in place: /healthz answers, /readyz
    // says 503 until it is.
    let server = match config.metrics {
        Some(listen) => {
            let server = MetricsServer::start(listen, metrics.clone())
                .map_err(|e| format!("serving metrics on {listen}: {e}"))?;
            eprintln!(
                "{PREFIX}: metrics on http://{}/metrics (/healthz, /readyz)",
                server.local_addr()
            );
            Some(server)
        }
        None => None,
    };
    let source = metadata_source(&config, false);
    let (mut agent, notes) = Agent::start(config_path, config, source, load.options())?;
    for note in notes {
        eprintln!("{PREFIX}: {note}");
    }
    let enricher = Enricher::new(agent.directory());
    let scan_enricher = enricher.clone();
    let behaviour_enricher = enricher.clone();
    let (to_webhook, counted) = (webhook.clone(), metrics.clone());
    let writer = sink::Writer::spawn_with(agent.enforcer(), outs, move |ev| {
        let json = enricher.json(ev);
        counted.event(
            json["rule"].as_str().unwrap_or(""),
            json["action"].as_str().unwrap_or(""),
        );
        if let Some(w) = &to_webhook {
            w.send(json.clone());
        }
        json.to_string()
    });
    // Findings go where events go, enriched the same way.
    let (lines, to_webhook, counted) = (writer.lines(), webhook.clone(), metrics.clone());
    let scanning = Scanning::spawn(move |done: ScanDone| {
        let report = match done.report {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{PREFIX}: scan ({}) skipped: {e}", done.label);
                return;
            }
        };
        for f in &report.findings {
            let json = scan_enricher.scan_json(f, &report.profile);
            counted.event(
                json["rule"].as_str().unwrap_or(""),
                json["action"].as_str().unwrap_or(""),
            );
            if let Some(w) = &to_webhook {
                w.send(json.clone());
            }
            let _ = lines.send(json.to_string());
        }
        if !report.findings.is_empty() {
            eprintln!(
                "{PREFIX}: scan ({}): {} processes, {} findings: {}",
                done.label,
                report.scanned,
                report.findings.len(),
                outcomes(&report)
            );
        }
    })
    .map_err(|e| format!("starting the scan thread: {e}"))?;
    // The behaviour detector, over the scopes whose profiles have
    // `behaviour` rules; its plan follows the scopes.
    let (lines, to_webhook, counted) = (writer.lines(), webhook.clone(), metrics.clone());
    let watching = Watching::spawn(move |d, profile| {
        let json = behaviour_enricher.behaviour_json(d, profile);
        counted.event(
            json["rule"].as_str().unwrap_or(""),
            json["action"].as_str().unwrap_or(""),
        );
        if let Some(w) = &to_webhook {
            w.send(json.clone());
        }
        let _ = lines.send(json.to_string());
        eprintln!(
            "{PREFIX}: behaviour: {} (pid {}) is mining ({}): {}",
            d.process.comm,
            d.process.pid,
            d.verdict.fired().join("+"),
            d.outcome
        );
    })
    .map_err(|e| format!("starting the behaviour thread: {e}"))?;
    let dry_run = agent.config().scan.dry_run;
    let mut behaviour_plan = (agent.behaviour_plan(), dry_run);
    watching.set_plan(agent.behaviour_plan(), dry_run);
    let mut next_scan = next_round(agent.config().scan.every);
    let mut warned = Warned::default();
    refresh(&metrics, &agent, webhook.as_deref(), &mut warned);
    metrics.set_ready(true);
    let (containers, bound) = agent.counts();
    eprintln!(
        "{PREFIX}: agent ready: {containers} containers under {}, {bound} bound; enforcement pinned as instance `{}`",
        agent.root().display(),
        agent.enforcer().instance().unwrap_or("?")
    );
    let mut refreshed = Instant::now();
    let mut runtime_tried = Instant::now();
    // A container came or went, SIGHUP or a quiet tick: look again; SIGINT
    // or SIGTERM: stop.
    while let None | Some(libc::SIGHUP) = signals::wait_for_or_readable(agent.wake_fd(), TICK) {
        let mut notes = agent.tick();
        if !agent.has_source() && runtime_tried.elapsed() >= RUNTIME_RETRY {
            runtime_tried = Instant::now();
            if let Some(source) = metadata_source(agent.config(), true) {
                notes.extend(agent.set_source(source));
            }
        }
        // Scopes applied or changed: what already runs in them is judged
        // now; every scope again each round.
        let scan = agent.config().scan.clone();
        let mut jobs = agent.take_due_scans(&mut notes);
        if next_scan.is_some_and(|at| Instant::now() >= at) {
            jobs = agent.scan_plan(&mut notes);
            next_scan = next_round(scan.every);
        } else if next_scan.is_none() {
            // A reload may have turned the rounds on.
            next_scan = next_round(scan.every);
        }
        if scan.enabled {
            scanning.run(jobs, scan.dry_run);
        }
        // Something changed (every change is noted): the scopes the
        // detector samples may have.
        if !notes.is_empty() {
            let plan = (agent.behaviour_plan(), scan.dry_run);
            if plan != behaviour_plan {
                behaviour_plan = plan;
                watching.set_plan(agent.behaviour_plan(), scan.dry_run);
            }
        }
        for note in notes {
            eprintln!("{PREFIX}: {note}");
        }
        if refreshed.elapsed() >= METRICS_EVERY {
            refreshed = Instant::now();
            refresh(&metrics, &agent, webhook.as_deref(), &mut warned);
        }
    }
    eprintln!(
        "{PREFIX}: stopping; enforcement stays pinned as instance `{}` (a restarted agent adopts it; `minerguard remove` ends it)",
        agent.enforcer().instance().unwrap_or("?")
    );
    metrics.set_ready(false);
    // A scan or sample under way ends before the outputs close.
    drop(scanning);
    drop(watching);
    drop(agent);
    writer.finish();
    if let Some(w) = webhook.and_then(|w| Arc::try_unwrap(w).ok()) {
        let s = w.finish();
        if s.failed + s.dropped > 0 {
            eprintln!(
                "{PREFIX}: webhook: {} events delivered, {} failed, {} dropped",
                s.delivered, s.failed, s.dropped
            );
        }
    }
    if let Some(server) = server {
        server.stop();
    }
    Ok(ExitCode::SUCCESS)
}
