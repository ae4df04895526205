//! `minerguard watch`: enforce on existing cgroups (or the host) until
//! stopped; SIGHUP reloads the profile.

use std::{
    io,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use minerguard::{scan::Scanner, Enforcer, Scope, ScopeChange};

use crate::{
    behaviour_loop::{detector, BehaviourLoop},
    pinning,
    profile_arg::ProfileArg,
    scan_loop::ScanLoop,
    signals, sink, warnings, CliResult, LoadArgs, PREFIX,
};

/// How often `watch` resolves `connect.domains` again.
const DOMAIN_REFRESH: Duration = Duration::from_secs(300);
/// How often `watch` looks for watched cgroups removed or created again.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// `minerguard watch`'s arguments.
#[derive(clap::Args)]
pub struct WatchArgs {
    /// Profile file (YAML or JSON) or bundled profile name.
    #[arg(long)]
    pub profile: ProfileArg,
    /// cgroup v2 directory to enforce on (repeatable).
    #[arg(long = "cgroup")]
    pub cgroups: Vec<PathBuf>,
    /// Name the pinned state: enforcement outlives this process (pinned
    /// under /sys/fs/bpf/minerguard/NAME) until `minerguard remove`; a
    /// new `watch` of the same name adopts it with no gap (same programs
    /// and policy kept, a changed profile swapped in atomically, events
    /// written meanwhile delivered).
    #[arg(long, default_value = "watch")]
    pub instance: String,
    /// On SIGINT/SIGTERM, detach and unpin instead of leaving the
    /// enforcement in place.
    #[arg(long)]
    pub detach_on_exit: bool,
    /// Enforce on the whole host.
    #[arg(long)]
    pub host: bool,
    /// Append events (JSON lines) to this file instead of stdout.
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// Rotate the events file before it passes this size (`10M`, `1G`;
    /// FILE.1 … FILE.5 are kept).
    #[arg(long, requires = "events", value_parser = crate::sink::parse_size)]
    pub events_max_size: Option<u64>,
    /// Scan the processes already running in the scopes once the profile
    /// is applied (and reloaded), then this often (± 10 %); `0`: only at
    /// apply and reload. Findings are events of kind `scan`.
    #[arg(long, default_value = "10m", value_parser = crate::scan_loop::parse_every)]
    pub scan_every: Duration,
    /// Never scan the running processes.
    #[arg(long)]
    pub no_scan: bool,
    /// Do not run the behaviour detector (the profile's `behaviour` rules
    /// are then not judged). It runs, sampling every 2 s, only when the
    /// profile has such rules; detections are events of kind `behaviour`.
    #[arg(long)]
    pub no_behaviour: bool,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Enforces the profile on the cgroups (and the host with `--host`) until
/// SIGINT or SIGTERM; pinned as `--instance`.
pub fn watch(args: &WatchArgs) -> CliResult<ExitCode> {
    let WatchArgs {
        profile: profile_arg,
        cgroups,
        instance,
        detach_on_exit,
        host,
        events,
        events_max_size,
        scan_every,
        no_scan,
        no_behaviour,
        load,
    } = args;
    let (host, detach_on_exit, load) = (*host, *detach_on_exit, *load);
    let (events, events_max_size) = (events.as_deref(), *events_max_size);
    let mut scopes: Vec<Scope> = cgroups.iter().cloned().map(Scope::Cgroup).collect();
    if host {
        scopes.push(Scope::Host);
    }
    if scopes.is_empty() {
        return Err("nothing to watch: give --cgroup PATH (repeatable) or --host".into());
    }
    let mut profile = profile_arg.load_for_command()?;
    let events_out = sink::Sink::open(events, events_max_size, Box::new(io::stdout()))?;
    signals::block();
    pinning::clean_stale();
    let earlier = pinning::earlier(instance);
    let mut enforcer = load.enforcer_as(Some(instance))?;
    let mut handles = Vec::new();
    for scope in &scopes {
        // On error, dropping the enforcer removes what was applied so far.
        let handle = enforcer.apply_valid(&profile, scope.clone())?;
        handles.push(handle);
        eprintln!(
            "{PREFIX}: profile `{}` enforced by the {} backend on {scope}",
            profile.name,
            enforcer.backend()
        );
        warnings::unenforced(&enforcer, handle, &profile, !no_behaviour, false);
    }
    let writer = sink::Writer::spawn(&enforcer, events_out);
    let mut paths = cgroups.clone();
    if host {
        paths.push(minerguard::cgroup::cgroup2_mount()?);
    }
    // After apply: what ran before it is judged now, off the event path.
    let scans = if *no_scan {
        None
    } else {
        let scanner = Scanner::from_valid(&profile)?;
        Some(ScanLoop::spawn(
            scanner,
            paths.clone(),
            *scan_every,
            writer.lines(),
        ))
    };
    // Always started unless refused, so a reload may add behaviour rules; a
    // profile without them samples nothing.
    let behaviour = (!no_behaviour)
        .then(|| BehaviourLoop::spawn(detector(&profile, &enforcer), paths, writer.lines()));
    // Pinned: a SIGKILL leaves the kernel enforcing; a restart with the
    // same instance adopts it, and releases what it does not take over.
    pinning::settle(&mut enforcer, earlier.as_ref(), false);
    // SIGHUP reloads; SIGINT or SIGTERM ends the loop. Between signals:
    // scopes follow their cgroups by path (a restarted container's cgroup
    // is new), and every few minutes `connect.domains` are resolved again.
    let mut last_refresh = Instant::now();
    loop {
        match signals::wait_for(FOLLOW_EVERY) {
            None => {
                if follow(&mut enforcer) {
                    pinning::state_problem(&enforcer);
                }
                if last_refresh.elapsed() >= DOMAIN_REFRESH {
                    last_refresh = Instant::now();
                    match enforcer.refresh_domains() {
                        Ok(0) => {}
                        Ok(n) => eprintln!("{PREFIX}: domains re-resolved; {n} scopes updated"),
                        Err(e) => eprintln!("{PREFIX}: refreshing domains failed: {e}"),
                    }
                }
                continue;
            }
            Some(libc::SIGHUP) => {}
            Some(_) => break,
        }
        let new = match profile_arg.load() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{PREFIX}: reload failed, previous profile kept:\n{e}");
                continue;
            }
        };
        match handles
            .iter()
            .try_for_each(|h| enforcer.update_valid(*h, &new))
        {
            Ok(()) => {
                profile = new;
                pinning::state_problem(&enforcer);
                eprintln!("{PREFIX}: reloaded profile `{}`", profile.name);
                if let Some(scans) = &scans {
                    match Scanner::from_valid(&profile) {
                        Ok(scanner) => scans.profile_changed(scanner),
                        Err(e) => eprintln!("{PREFIX}: scan after reload skipped: {e}"),
                    }
                }
                if let Some(behaviour) = &behaviour {
                    behaviour.profile_changed(detector(&profile, &enforcer));
                }
                // The new profile may need hooks the old one did not load.
                if let Some(handle) = handles.first() {
                    warnings::unenforced(&enforcer, *handle, &profile, !no_behaviour, false);
                }
            }
            Err(e) => eprintln!("{PREFIX}: reload failed: {e}"),
        }
    }
    if !detach_on_exit {
        eprintln!(
            "{PREFIX}: stopping; enforcement stays pinned as instance `{instance}` (`minerguard remove --instance {instance}` ends it)"
        );
        // The events written from here on wait in the pinned ring buffer
        // for the next `watch` of this instance.
        drop(scans);
        drop(behaviour);
        drop(enforcer);
        writer.finish();
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("{PREFIX}: stopping; detaching");
    drop(scans);
    drop(behaviour);
    enforcer.detach()?;
    writer.finish();
    Ok(ExitCode::SUCCESS)
}

/// Re-applies scopes whose cgroup was created again, and says which went;
/// whether anything changed.
fn follow(enforcer: &mut Enforcer) -> bool {
    match enforcer.follow_cgroups() {
        Ok(changes) => {
            let changed = !changes.is_empty();
            for change in changes {
                match change {
                    ScopeChange::Gone { path, .. } => eprintln!(
                        "{PREFIX}: cgroup {} is gone; its profile applies again if it comes back",
                        path.display()
                    ),
                    ScopeChange::Recreated { path, .. } => eprintln!(
                        "{PREFIX}: cgroup {} was created again; enforced on the new cgroup",
                        path.display()
                    ),
                }
            }
            changed
        }
        Err(e) => {
            eprintln!("{PREFIX}: error: following the watched cgroups failed: {e}");
            false
        }
    }
}
