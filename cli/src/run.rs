//! `minerguard run`: a command in a fresh cgroup under a profile.

use std::{
    io,
    os::unix::process::{CommandExt, ExitStatusExt},
    path::Path,
    process::{Command, ExitCode},
    time::Duration,
};

use minerguard::{
    cgroup::{join_cgroup_raw, OwnedCgroup},
    Scope, SeccompFilter, SeccompPolicy,
};

use crate::{
    pinning, profile_arg::ProfileArg, signals, sink, warnings, CliResult, LoadArgs, PREFIX,
};

/// Runs `cmd` in a new cgroup enforced by `profile`; the command's exit
/// status (128+n when killed by signal n; 127 when it cannot start).
pub fn run(
    profile_arg: &ProfileArg,
    events: Option<&Path>,
    events_max_size: Option<u64>,
    load: LoadArgs,
    quiet: bool,
    cmd: &[String],
) -> CliResult<ExitCode> {
    let profile = profile_arg.load_for_command()?;
    let events_out = sink::Sink::open(events, events_max_size, Box::new(io::stderr()))?;
    // From here on there is something to protect: Ctrl-C goes to the
    // command, and we clean up after it.
    signals::block();
    // Fail closed: if this process dies, the command stays enforced (pinned
    // as `run-<pid>`) until its cgroup is empty; then the next `minerguard
    // run` or `minerguard remove` cleans up.
    pinning::clean_stale();
    let mut enforcer = load.enforcer_as(Some(&format!("run-{}", std::process::id())))?;
    // Until the command runs there is nothing to fail closed for: a failed
    // start ends the instance rather than leave it pinned.
    let started = OwnedCgroup::create_in_root("minerguard-run")
        .map_err(minerguard::Error::from)
        .and_then(|cgroup| {
            let scope = Scope::Cgroup(cgroup.cgroup().path().into());
            let handle = enforcer.apply_valid(&profile, scope)?;
            Ok((cgroup, handle))
        });
    let (cgroup, handle) = match started {
        Ok(started) => started,
        Err(e) => {
            let _ = enforcer.detach();
            return Err(e.into());
        }
    };
    if !quiet {
        eprintln!(
            "{PREFIX}: profile `{}` enforced by the {} backend on {}",
            profile.name,
            enforcer.backend(),
            cgroup.cgroup().path().display()
        );
        warnings::unenforced(&enforcer, handle, &profile, false, true);
    }
    let writer = sink::Writer::spawn(&enforcer, events_out);

    // The profile's seccomp part, built here: between fork and exec only
    // async-signal-safe calls may run, so the child just installs the bytes.
    let seccomp = match SeccompPolicy::from_valid(&profile)? {
        Some(policy) => Some(SeccompFilter::new(&policy)?.to_sock_filters()?),
        None => None,
    };
    if let (Some(filter), false) = (&seccomp, quiet) {
        eprintln!(
            "{PREFIX}: seccomp filter of {} instructions installed in the command",
            filter.len()
        );
    }
    let procs = cgroup.procs_file()?;
    let mut command = Command::new(&cmd[0]);
    command.args(&cmd[1..]);
    // SAFETY: the closure only makes async-signal-safe calls (sigprocmask,
    // write, prctl, seccomp) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            signals::unblock_in_child();
            join_cgroup_raw(&procs)?;
            match &seccomp {
                Some(filter) => minerguard::seccomp::install_raw(filter),
                None => Ok(()),
            }
        });
    }
    pinning::settle(&mut enforcer, None, quiet);
    let status = match command.spawn() {
        Ok(mut child) => {
            let pid = child.id() as i32;
            // Forward Ctrl-C / SIGTERM to the command; we clean up after it.
            std::thread::spawn(move || loop {
                let sig = signals::wait();
                // SAFETY: plain syscall.
                unsafe { libc::kill(pid, sig) };
            });
            Some(child.wait()?)
        }
        Err(e) => {
            eprintln!("{PREFIX}: cannot run `{}`: {e}", cmd[0]);
            None
        }
    };

    // The command's last events (a denied exec just before it exited) may
    // still be in the ring buffer: have them read before the writer stops.
    if !enforcer.flush_events(Duration::from_secs(5)) {
        eprintln!("{PREFIX}: the event thread did not answer within 5 s; the command's last events may be missing");
    }
    writer.finish();
    let drops = enforcer.drops();
    // Removing the scope destroys the refused sockets still queued first.
    enforcer.remove(handle)?;
    let (destroyed, not_destroyed) = enforcer.destroyed_sockets();
    enforcer.detach()?;
    if not_destroyed > 0 {
        eprintln!(
            "{PREFIX}: warning: {not_destroyed} of {} refused Stratum sockets could not be destroyed (gone before, a kernel without CONFIG_INET_DIAG_DESTROY, or the judge's queue full): their packets were dropped while the command ran, but their senders were not told",
            destroyed + not_destroyed
        );
    }
    cgroup.remove()?;
    if !quiet && (drops.ring > 0 || drops.channel > 0) {
        eprintln!(
            "{PREFIX}: {} events lost (ring buffer full: {}, channel full: {})",
            drops.ring + drops.channel,
            drops.ring,
            drops.channel
        );
    }
    Ok(match status {
        None => ExitCode::from(127),
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => ExitCode::from(c as u8),
            (None, Some(sig)) => ExitCode::from(128 + sig as u8),
            _ => ExitCode::from(1),
        },
    })
}
