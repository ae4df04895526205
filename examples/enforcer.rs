//! The shortest useful embedding of minerguard: apply a profile to a fresh
//! cgroup, run a command inside it, print what was enforced as Falco-shaped
//! JSON lines, clean up. The full command-line tool is `cli/` (`minerguard`).
//!
//! ```text
//! cargo run --example enforcer -- profiles/default.yaml sh -c 'echo hello'
//! ```

use std::{os::unix::process::CommandExt, process::Command, time::Duration};

use minerguard::{cgroup::OwnedCgroup, falco_json, Enforcer, Profile, Scope};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(profile), Some(program)) = (args.next(), args.next()) else {
        return Err("usage: enforcer PROFILE.yaml PROGRAM [ARGS...]".into());
    };
    let profile = Profile::from_file(profile)?;
    let mut enforcer = Enforcer::new()?;
    let cgroup = OwnedCgroup::create_in_root("minerguard-example")?;
    let handle = enforcer.apply(&profile, Scope::Cgroup(cgroup.cgroup().path().into()))?;
    let events = enforcer.events();

    // The child joins the cgroup before exec, so the profile covers its
    // first instruction.
    let procs = cgroup.procs_file()?;
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: only an async-signal-safe write between fork and exec.
    unsafe { command.pre_exec(move || minerguard::cgroup::join_cgroup_raw(&procs)) };
    let status = command.status()?;

    // Events reach the channel shortly after the kernel emits them.
    while let Ok(event) = events.recv_timeout(Duration::from_millis(200)) {
        println!("{}", falco_json(&event));
    }
    eprintln!("enforcer: {status}");
    enforcer.remove(handle)?;
    drop(enforcer);
    cgroup.remove()?;
    Ok(())
}
