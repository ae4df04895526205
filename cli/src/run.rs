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
    Enforcer, Scope, SeccompFilter, SeccompPolicy,
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
    // The profile's seccomp part, built before anything is loaded: between
    // fork and exec only async-signal-safe calls may run, so the child
    // just installs the bytes.
    let seccomp = match SeccompPolicy::from_valid(&profile)? {
        Some(policy) => Some(SeccompFilter::new(&policy)?.to_sock_filters()?),
        None => None,
    };
    // From here on there is something to protect: Ctrl-C goes to the
    // command, and we clean up after it.
    signals::block();
    // Fail closed: if this process dies, the command stays enforced (pinned
    // as `run-<pid>`) until its cgroup is empty; then the next `minerguard
    // run` or `minerguard remove` cleans up.
    pinning::clean_stale();
    let mut enforcer = load.enforcer_as(Some(&format!("run-{}", std::process::id())))?;
    let cgroup = match OwnedCgroup::create_in_root("minerguard-run") {
        Ok(cgroup) => cgroup,
        Err(e) => {
            roll_back(enforcer, None);
            let during = || "creating the command's cgroup".to_string();
            return Err(minerguard::cgroup_failure(during, e).into());
        }
    };
    // Until the command runs there is nothing to fail closed for: a failed
    // start ends the instance rather than leave it pinned.
    let started = cgroup
        .procs_file()
        .map_err(|e| minerguard::cgroup_failure(|| "starting the command".into(), e))
        .and_then(|procs| {
            let scope = Scope::Cgroup(cgroup.cgroup().path().into());
            Ok((procs, enforcer.apply_valid(&profile, scope)?))
        });
    let (procs, handle) = match started {
        Ok(started) => started,
        Err(e) => {
            roll_back(enforcer, Some(cgroup));
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
    if let (Some(filter), false) = (&seccomp, quiet) {
        eprintln!(
            "{PREFIX}: seccomp filter of {} instructions installed in the command",
            filter.len()
        );
    }
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
    // Out of descriptors for the command's pipes: this process's limit,
    // said as such once everything is cleaned up (not the command's 127).
    let mut out_of_descriptors = None;
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
            match minerguard::out_of_descriptors(|| format!("starting `{}`", cmd[0]), e) {
                Ok(limit) => out_of_descriptors = Some(limit),
                Err(e) => eprintln!("{PREFIX}: cannot run `{}`: {e}", cmd[0]),
            }
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
    if let Some(e) = out_of_descriptors {
        return Err(e.into());
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

/// Ends a run that failed before its command started, leaving no instance
/// or cgroup behind: the enforcer first (its descriptors close, so a process
/// that ran out of them can then list and remove the cgroup), then the
/// command's cgroup, if it was made.
fn roll_back(enforcer: Enforcer, cgroup: Option<OwnedCgroup>) {
    let _ = enforcer.detach();
    drop(cgroup);
}
