//! `minerguard watch`: enforce on existing cgroups (or the host) until
//! stopped; SIGHUP reloads the profile.

use std::{
    io,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use minerguard::{Enforcer, Scope, ScopeChange};

use crate::{profile_arg::ProfileArg, signals, sink, warnings, CliResult, LoadArgs, PREFIX};

/// How often `watch` resolves `connect.domains` again.
const DOMAIN_REFRESH: Duration = Duration::from_secs(300);
/// How often `watch` looks for watched cgroups removed or created again.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// Enforces `profile_arg` on `cgroups` (and the host with `host`) until
/// SIGINT or SIGTERM.
pub fn watch(
    profile_arg: &ProfileArg,
    cgroups: &[PathBuf],
    host: bool,
    events: Option<&Path>,
    events_max_size: Option<u64>,
    load: LoadArgs,
) -> CliResult<ExitCode> {
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
    let mut enforcer = load.enforcer()?;
    let mut handles = Vec::new();
    for scope in &scopes {
        // On error, dropping the enforcer removes what was applied so far.
        let handle = enforcer.apply(&profile, scope.clone())?;
        handles.push(handle);
        eprintln!(
            "{PREFIX}: profile `{}` enforced by the {} backend on {scope}",
            profile.name,
            enforcer.backend()
        );
        warnings::unenforced(&enforcer, handle, &profile, false);
    }
    let writer = sink::Writer::spawn(&enforcer, events_out);
    // SIGHUP reloads; SIGINT or SIGTERM ends the loop. Between signals:
    // scopes follow their cgroups by path (a restarted container's cgroup
    // is new), and every few minutes `connect.domains` are resolved again.
    let mut last_refresh = Instant::now();
    loop {
        match signals::wait_for(FOLLOW_EVERY) {
            None => {
                follow(&mut enforcer);
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
        match handles.iter().try_for_each(|h| enforcer.update(*h, &new)) {
            Ok(()) => {
                profile = new;
                eprintln!("{PREFIX}: reloaded profile `{}`", profile.name);
                // The new profile may need hooks the old one did not load.
                if let Some(handle) = handles.first() {
                    warnings::unenforced(&enforcer, *handle, &profile, false);
                }
            }
            Err(e) => eprintln!("{PREFIX}: reload failed: {e}"),
        }
    }
    eprintln!("{PREFIX}: stopping; detaching");
    for h in handles {
        enforcer.remove(h)?;
    }
    writer.finish();
    Ok(ExitCode::SUCCESS)
}

/// Re-applies scopes whose cgroup was created again, and says which went.
fn follow(enforcer: &mut Enforcer) {
    match enforcer.follow_cgroups() {
        Ok(changes) => {
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
        }
        Err(e) => eprintln!("{PREFIX}: error: following the watched cgroups failed: {e}"),
    }
}
