//! `minerguard watch`: enforce on existing cgroups (or the host) until
//! stopped; SIGHUP reloads the profile.

use std::{
    io,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use minerguard::Scope;

use crate::{profile_arg::ProfileArg, signals, sink, warnings, CliResult, LoadArgs, PREFIX};

/// How often `watch` resolves `connect.domains` again.
const DOMAIN_REFRESH: Duration = Duration::from_secs(300);

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
    // SIGHUP reloads; SIGINT or SIGTERM ends the loop; every few minutes
    // `connect.domains` are resolved again.
    loop {
        match signals::wait_for(DOMAIN_REFRESH) {
            None => {
                match enforcer.refresh_domains() {
                    Ok(0) => {}
                    Ok(n) => eprintln!("{PREFIX}: domains re-resolved; {n} scopes updated"),
                    Err(e) => eprintln!("{PREFIX}: refreshing domains failed: {e}"),
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
