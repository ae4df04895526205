//! Every event says who did it: the parent (`ppid`, `pname`) and the
//! command line, read at the decision, and for `exec.cmdline` rules the
//! pattern that matched. Each test launches the offending program from a
//! script with a name of its own, which writes its pid to a file, so the
//! parent is known exactly.

use std::{
    os::unix::{fs::PermissionsExt, process::ExitStatusExt},
    path::{Path, PathBuf},
    process::Command,
};

use minerguard::{Action, BackendKind, Event, ProcSource, Profile, Rule};

use crate::{common::*, exec_profile, port_profile};

/// An executable script `dir/name` whose body is `body`; the script first
/// writes its own pid to `dir/name.pid`.
fn parent_script(dir: &TempDir, name: &str, shell: &str, body: &str) -> (PathBuf, PathBuf) {
    let path = dir.path().join(name);
    let pid_file = dir.path().join(format!("{name}.pid"));
    let text = format!(
        "#!{shell}\necho $$ > '{}'\n{body}\nexit 0\n",
        pid_file.display()
    );
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (path, pid_file)
}

fn pid_in(file: &Path) -> u32 {
    let text = std::fs::read_to_string(file).expect("the parent script wrote its pid");
    text.trim().parse().expect("a pid")
}

/// The fields every event shares, against the known parent.
fn assert_parent(ev: &Event, parent_pid: u32, parent_name: &str) {
    assert_eq!(ev.ppid, parent_pid, "{ev:?}");
    assert_eq!(ev.pname.as_str(), parent_name, "{ev:?}");
    assert!(
        ev.cmdline.starts_with(ev.comm.as_str()),
        "Falco's form starts with the name: {ev:?}"
    );
    assert!(!ev.cmdline_truncated, "{ev:?}");
}

#[test]
fn exec_event_names_the_parent_and_the_command_line() {
    require_kernel!();
    let dir = TempDir::new("identity-exec");
    let miner = fake_miner(&dir, "xmrig");
    let marker = dir.path().join("ran");
    // Not the script's last command, so the shell forks for it.
    let (script, pid_file) = parent_script(
        &dir,
        "mg-launcher",
        "/bin/sh",
        &format!(
            "'{}' child-arg-7f3a '{}'\ntrue",
            miner.display(),
            marker.display()
        ),
    );
    let scoped = Scoped::apply(&exec_profile(Action::Deny));
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());

    let status = run_in(Some(cg), Command::new(&script).arg("parent-arg-c91e")).unwrap();
    assert!(status.success(), "the script goes on after the refusal");
    assert!(!marker.exists(), "the miner ran");
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "miner-binary").expect("exec event");
    let parent = pid_in(&pid_file);
    assert_parent(&ev, parent, "mg-launcher");
    assert_eq!(ev.proc_source, ProcSource::Kernel, "{ev:?}");
    assert!(ev.pattern.is_none(), "{ev:?}");
    if ev.action == Action::Kill {
        // Judged once the exec happened (cgroup backend): the new program.
        assert_eq!(ev.comm.as_str(), "xmrig", "{ev:?}");
        assert_eq!(
            ev.cmdline.as_str(),
            format!("xmrig child-arg-7f3a {}", marker.display()),
        );
    } else {
        // Refused before it happened (lsm): the process that tried, a fork
        // of the script, with the script's command line.
        assert_eq!(ev.comm.as_str(), "mg-launcher", "{ev:?}");
        assert_eq!(
            ev.cmdline.as_str(),
            format!("mg-launcher {} parent-arg-c91e", script.display()),
        );
    }
}

#[test]
fn connect_event_names_the_parent_and_the_command_line() {
    require_kernel!();
    let pool = listener(false);
    let port = pool.local_addr().unwrap().port();
    let dir = TempDir::new("identity-connect");
    // bash opens the TCP connection itself (/dev/tcp); its $0 is a marker.
    let (script, pid_file) = parent_script(
        &dir,
        "mg-netparent",
        "/bin/bash",
        &format!("bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' conn-arg-5d2b\ntrue"),
    );
    let scoped = Scoped::apply(&port_profile(Action::Deny, port));
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());

    let status = run_in(Some(cg), &mut Command::new(&script)).unwrap();
    assert!(status.success(), "{status:?}");
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "pool-port").expect("connect event");
    assert_eq!(ev.action, Action::Deny);
    assert_parent(&ev, pid_in(&pid_file), "mg-netparent");
    assert_eq!(ev.comm.as_str(), "bash", "{ev:?}");
    assert_eq!(
        ev.cmdline.as_str(),
        format!("bash -c exec 3<>/dev/tcp/127.0.0.1/{port} conn-arg-5d2b"),
    );
    // The cgroup connect program reads the task where the kernel lets it;
    // the LSM hook always can.
    let in_kernel =
        enforcer.backend() == BackendKind::Lsm || enforcer.probe_report().proc_in_cgroup.available;
    let expected = if in_kernel {
        ProcSource::Kernel
    } else {
        ProcSource::Proc
    };
    assert_eq!(ev.proc_source, expected, "{ev:?}");
}

#[test]
fn cmdline_event_names_the_pattern_that_matched() {
    require_kernel!();
    let dir = TempDir::new("identity-cmdline");
    let marker = dir.path().join("ran");
    let (script, pid_file) = parent_script(
        &dir,
        "mg-cmdparent",
        "/bin/sh",
        // The flag is a file name too, so touch would create both files.
        &format!(
            "touch '{}' '{}/--donate-level=1'\ntrue",
            marker.display(),
            dir.path().display()
        ),
    );
    let profile = Profile::new("cmdline").rule(Rule::exec_cmdline(
        "miner-cmdline",
        Action::Kill,
        ["stratum+tcp://", "--donate-level"],
    ));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());

    let status = run_in(Some(cg), &mut Command::new(&script)).unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!marker.exists(), "the program ran");
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "miner-cmdline").expect("event");
    assert_eq!(ev.action, Action::Kill);
    // The second of the rule's two patterns.
    assert_eq!(ev.pattern.as_deref(), Some("--donate-level"), "{ev:?}");
    assert_parent(&ev, pid_in(&pid_file), "mg-cmdparent");
    assert_eq!(ev.proc_source, ProcSource::Kernel, "{ev:?}");
    // After the exec: the new program's command line.
    assert_eq!(
        ev.cmdline.as_str(),
        format!(
            "touch {} {}/--donate-level=1",
            marker.display(),
            dir.path().display()
        )
    );

    // The other pattern, by a direct child of the test.
    let status = run_in(
        Some(cg),
        Command::new("/bin/sh").args(["-c", "true", "stratum+tcp://pool:3333"]),
    )
    .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "miner-cmdline").expect("event");
    assert_eq!(ev.pattern.as_deref(), Some("stratum+tcp://"), "{ev:?}");
    assert_eq!(ev.ppid, std::process::id(), "{ev:?}");
}
