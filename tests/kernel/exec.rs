//! Exec rules: a miner's name, file (by inode, through renames and hard
//! links), scratch directory, fileless image (memfd, deleted file), script,
//! and command line. Inside the scope the miner never runs an instruction;
//! outside it runs.

use std::{os::unix::process::ExitStatusExt, process::Command};

use minerguard::{Action, Enforcer, Profile, Rule, RuleKind, Target};

use crate::{common::*, exec_profile};

#[test]
fn miner_exec_never_runs_inside_scope_and_runs_outside() {
    require_kernel!();
    let dir = TempDir::new("exec");
    let miner = fake_miner(&dir, "xmrig");
    let scoped = Scoped::apply(&exec_profile(Action::Deny));
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());

    let inside = dir.path().join("ran-inside");
    assert_eq!(
        exec_in(Some(cg), &miner, &inside),
        denied_exec(enforcer, Action::Deny)
    );
    assert!(
        !inside.exists(),
        "the miner ran an instruction inside the scope"
    );

    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "miner-binary").expect("exec event");
    assert_eq!(
        ev.action,
        enforcer.effective_action(RuleKind::Exec, Action::Deny)
    );
    assert_eq!(ev.requested, Action::Deny);
    assert_eq!(&*ev.profile, "test-exec");
    assert_eq!(ev.cgroup_id, cg.cgroup().id());
    match &ev.target {
        Target::Exec { path } => assert_eq!(path.as_str(), miner.to_str().unwrap()),
        other => panic!("expected an exec target, got {other:?}"),
    }
    assert!(
        ev.pid > 0 && ev.tgid == ev.pid,
        "exec event names the process: {ev:?}"
    );
    if ev.action == Action::Kill {
        // Killed after the exec: the task already carries the new name.
        assert_eq!(ev.comm.as_str(), "xmrig");
    } else {
        // Refused before the exec: the caller keeps its own name.
        assert!(!ev.comm.is_empty() && ev.comm.as_str() != "xmrig", "{ev:?}");
    }

    let outside = dir.path().join("ran-outside");
    assert_eq!(exec_in(None, &miner, &outside), ExecOutcome::Exited(0));
    assert!(outside.exists(), "the same file must run outside the scope");
}

#[test]
fn other_programs_still_run_inside_scope() {
    require_kernel!();
    let dir = TempDir::new("exec-other");
    let scoped = Scoped::apply(&exec_profile(Action::Kill));
    let cg = scoped.cgroup();
    let allowed = fake_miner(&dir, "not-a-miner");
    let marker = dir.path().join("marker");
    assert_eq!(exec_in(Some(cg), &allowed, &marker), ExecOutcome::Exited(0));
    assert!(marker.exists());
}

#[test]
fn script_named_like_a_miner_is_stopped() {
    require_kernel!();
    let dir = TempDir::new("exec-script");
    let script = dir.path().join("xmrig");
    std::fs::write(&script, "#!/bin/sh\ntouch \"$1\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let scoped = Scoped::apply(&exec_profile(Action::Kill));
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let marker = dir.path().join("marker");
    assert_eq!(
        exec_in(Some(cg), &script, &marker),
        denied_exec(enforcer, Action::Kill)
    );
    assert!(!marker.exists());
}

#[test]
fn exec_files_follow_the_inode_through_renames_and_hard_links() {
    require_kernel!();
    let dir = TempDir::new("files");
    let miner = fake_miner(&dir, "innocent-name");
    let profile = Profile::new("files").rule(Rule::exec_files(
        "known-miner",
        Action::Deny,
        [miner.to_str().unwrap()],
    ));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let denied = denied_exec(enforcer, Action::Deny);

    let marker = dir.path().join("m1");
    assert_eq!(
        exec_in(Some(cg), &miner, &marker),
        denied,
        "the file itself"
    );
    let link = dir.path().join("hard-link");
    std::fs::hard_link(&miner, &link).unwrap();
    assert_eq!(exec_in(Some(cg), &link, &marker), denied, "a hard link");
    let renamed = dir.path().join("renamed");
    std::fs::rename(&miner, &renamed).unwrap();
    assert_eq!(
        exec_in(Some(cg), &renamed, &marker),
        denied,
        "after a rename"
    );
    assert!(!marker.exists());
    // A copy is another inode: it runs.
    let copy = fake_miner(&dir, "copy");
    assert_eq!(exec_in(Some(cg), &copy, &marker), ExecOutcome::Exited(0));
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "known-miner").expect("event");
    assert_eq!(ev.requested, Action::Deny);
}

#[test]
fn exec_dirs_cover_subdirectories_and_symlinks_into_them() {
    require_kernel!();
    let scratch = TempDir::new("dirs");
    let outside = TempDir::new("dirs-outside");
    std::fs::create_dir_all(scratch.path().join("a/b")).unwrap();
    let deep = scratch.path().join("a/b/payload");
    std::fs::copy("/usr/bin/touch", &deep).unwrap();
    let via_symlink = outside.path().join("looks-safe");
    std::os::unix::fs::symlink(&deep, &via_symlink).unwrap();
    let profile = Profile::new("dirs").rule(Rule::exec_dirs(
        "scratch-dir-exec",
        Action::Deny,
        [scratch.path().to_str().unwrap()],
    ));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let denied = denied_exec(enforcer, Action::Deny);
    let marker = outside.path().join("marker");
    assert_eq!(exec_in(Some(cg), &deep, &marker), denied, "two levels down");
    assert_eq!(
        exec_in(Some(cg), &via_symlink, &marker),
        denied,
        "through a symlink"
    );
    assert!(!marker.exists());
    // The same program from elsewhere runs, inside and outside the scope.
    assert_eq!(
        exec_in(Some(cg), std::path::Path::new("/usr/bin/touch"), &marker),
        ExecOutcome::Exited(0)
    );
    assert_eq!(
        exec_in(None, &deep, &outside.path().join("m2")),
        ExecOutcome::Exited(0)
    );
}

/// What a refused exec looks like from a forked child, with this backend.
fn denied_fork(enforcer: &Enforcer, requested: Action) -> ForkOutcome {
    match enforcer.effective_action(RuleKind::Exec, requested) {
        Action::Kill => ForkOutcome::Signal(libc::SIGKILL),
        _ => ForkOutcome::ExecFailed(libc::EPERM),
    }
}

#[test]
fn fileless_exec_from_memfd_or_deleted_file_is_stopped() {
    require_kernel!();
    let scratch = TempDir::new("fileless");
    let scoped = Scoped::apply(
        &Profile::new("fileless").rule(Rule::exec_memfd("fileless-exec", Action::Deny)),
    );
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let marker = scratch.path().join("marker");
    let args = [marker.to_str().unwrap()];
    let touch = std::path::Path::new("/usr/bin/touch");
    for how in [Fileless::Memfd, Fileless::DeletedFile] {
        assert_eq!(
            fileless_exec_in(Some(cg), touch, &args, how, &scratch),
            denied_fork(enforcer, Action::Deny),
            "{how:?}"
        );
        assert!(!marker.exists(), "{how:?} ran");
        let ev = wait_event(enforcer, |e| e.rule.as_ref() == "fileless-exec").expect("event");
        assert_eq!(ev.requested, Action::Deny);
    }
    // Outside the scope fileless exec works (the test itself would be wrong otherwise).
    assert_eq!(
        fileless_exec_in(None, touch, &args, Fileless::Memfd, &scratch),
        ForkOutcome::Exited(0)
    );
    assert!(marker.exists());
    // A normal file on disk still runs inside the scope.
    assert_eq!(
        exec_in(Some(cg), touch, &scratch.path().join("m2")),
        ExecOutcome::Exited(0)
    );
}

#[test]
fn a_pool_url_on_the_command_line_is_killed_before_the_program_runs() {
    require_kernel!();
    let dir = TempDir::new("cmdline");
    let marker = dir.path().join("marker");
    let profile = Profile::new("cmdline").rule(Rule::exec_cmdline(
        "miner-cmdline",
        Action::Kill,
        ["stratum+tcp://", "--donate-level"],
    ));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer, h) = (scoped.cgroup(), scoped.enforcer(), scoped.handle());
    assert!(enforcer.unenforced(h).unwrap().is_empty());
    let sh = |args: &[&str]| {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", "touch \"$1\"", "sh", marker.to_str().unwrap()])
            .args(args);
        c
    };
    let status = run_in(
        Some(cg),
        &mut sh(&["-o", "stratum+tcp://pool.example:3333"]),
    )
    .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(!marker.exists(), "the program ran");
    let status = run_in(Some(cg), &mut sh(&["--donate-level=1"])).unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    // Other arguments, and the same arguments outside the scope, run.
    assert!(run_in(Some(cg), &mut sh(&["-o", "https://example"]))
        .unwrap()
        .success());
    assert!(marker.exists());
    std::fs::remove_file(&marker).unwrap();
    assert!(run_in(None, &mut sh(&["stratum+tcp://x"]))
        .unwrap()
        .success());
    assert!(marker.exists());
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "miner-cmdline").expect("event");
    assert_eq!(ev.action, Action::Kill);
}

/// `sh -c 'touch "$1"' sh MARKER ARGS...`: the marker shows whether the
/// program ran an instruction. Its argv starts with `/bin/sh`, `-c`, the
/// script, `sh` and the marker: [`argv_head_len`] bytes.
fn touch_with_args(marker: &std::path::Path, args: &[String]) -> Command {
    let mut c = Command::new("/bin/sh");
    c.args(["-c", "touch \"$1\"", "sh", marker.to_str().unwrap()])
        .args(args);
    c
}

/// Bytes of argv (NULs included) before the first of `touch_with_args`' ARGS.
fn argv_head_len(marker: &std::path::Path) -> usize {
    let head = [
        "/bin/sh",
        "-c",
        "touch \"$1\"",
        "sh",
        marker.to_str().unwrap(),
    ];
    head.iter().map(|a| a.len() + 1).sum()
}

/// Benign argv padding of `len` bytes in arguments the kernel takes (each
/// under MAX_ARG_STRLEN, 128 KiB), NULs counted.
fn padding(len: usize) -> Vec<String> {
    const PIECE: usize = 64 * 1024;
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(PIECE);
        // One byte of each piece is its NUL.
        out.push("p".repeat(n - 1));
        left -= n;
    }
    out
}

#[test]
fn a_pool_url_in_any_case_and_anywhere_in_argv_is_killed() {
    require_kernel!();
    use minerguard::compile::limits::MAX_CMDLINE_ARGV_BYTES;
    let dir = TempDir::new("cmdline-anywhere");
    let marker = dir.path().join("marker");
    // The profile's own case does not matter either.
    let profile = Profile::new("cmdline")
        .rule(Rule::exec_cmdline(
            "donate-flag",
            Action::Audit,
            ["--Donate-Level"],
        ))
        .rule(Rule::exec_cmdline(
            "miner-cmdline",
            Action::Kill,
            ["stratum+tcp://"],
        ));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    assert!(enforcer.unenforced(scoped.handle()).unwrap().is_empty());
    let head = argv_head_len(&marker);
    let url = |s: &str| vec![s.to_string()];
    let after = |pad: usize, s: &str| {
        let mut args = padding(pad);
        args.push(s.to_string());
        args
    };
    // The URL starting `at` bytes into argv (at > head).
    let starting_at = |at: usize| after(at - head, "stratum+tcp://pool.example:3333");
    let killed: Vec<(&str, Vec<String>)> = vec![
        ("upper case", url("STRATUM+TCP://POOL.EXAMPLE:3333")),
        ("mixed case", url("-o=Stratum+Tcp://pool.example:3333")),
        (
            "after 600 bytes",
            after(600, "stratum+tcp://pool.example:3333"),
        ),
        (
            "after 100 KiB",
            after(100 * 1024, "STRATUM+tcp://pool.example:3333"),
        ),
        // Straddling the kernel's 4 KiB read steps.
        ("across 4096", starting_at(4096 - 5)),
        ("across 8192", starting_at(8192 - 13)),
        // Its last byte is the last one searched (a longer URL here would
        // pass the bound, and match only as an overlong argv).
        (
            "at the end of the bound",
            after(
                MAX_CMDLINE_ARGV_BYTES - "stratum+tcp://x".len() - 1 - head,
                "stratum+tcp://x",
            ),
        ),
        // The kill pattern, then the audit one: the strongest match wins
        // whatever comes after it (Linux 6.1 once let the last one win).
        (
            "before an audited flag",
            vec![
                "stratum+tcp://pool.example:3333".to_string(),
                "--donate-level=1".to_string(),
            ],
        ),
    ];
    for (what, args) in &killed {
        let status = run_in(Some(cg), &mut touch_with_args(&marker, args)).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{what}");
        assert!(!marker.exists(), "{what}: the program ran");
        let ev = wait_event(enforcer, |e| e.rule.as_ref() == "miner-cmdline")
            .unwrap_or_else(|| panic!("{what}: no event"));
        assert_eq!(ev.action, Action::Kill, "{what}");
        // The pattern as compiled (lower case), whatever case argv used.
        assert_eq!(ev.pattern.as_deref(), Some("stratum+tcp://"), "{what}");
        // Events carry the first 256 bytes of argv.
        let argv_len = head + args.iter().map(|a| a.len() + 1).sum::<usize>();
        assert_eq!(ev.cmdline_truncated, argv_len > 256, "{what}: {ev:?}");
    }
    // An argv longer than the kernel searches is matched as the strongest
    // cmdline rule: padding cannot push the URL out of sight.
    let over = padding(MAX_CMDLINE_ARGV_BYTES + 1024);
    let status = run_in(Some(cg), &mut touch_with_args(&marker, &over)).unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "over the bound");
    assert!(!marker.exists(), "over the bound: the program ran");
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "miner-cmdline").expect("event");
    assert_eq!(ev.action, Action::Kill);
    assert_eq!(ev.pattern.as_deref(), Some(minerguard::OVERLONG_ARGV));
    assert!(ev.cmdline_truncated, "{ev:?}");

    // A long benign argv runs, and the audit rule only reports (its
    // pattern in another case than the profile's).
    let long = padding(MAX_CMDLINE_ARGV_BYTES - 8 * 1024);
    assert!(run_in(Some(cg), &mut touch_with_args(&marker, &long))
        .unwrap()
        .success());
    assert!(marker.exists(), "a long benign argv did not run");
    std::fs::remove_file(&marker).unwrap();
    let flagged = after(5000, "--DONATE-LEVEL=1");
    assert!(run_in(Some(cg), &mut touch_with_args(&marker, &flagged))
        .unwrap()
        .success());
    assert!(marker.exists(), "an audited argv did not run");
    std::fs::remove_file(&marker).unwrap();
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "donate-flag").expect("audit event");
    assert_eq!(ev.action, Action::Audit);
    // Outside the scope all of it runs.
    for args in [&killed[0].1, &killed[3].1, &over] {
        assert!(run_in(None, &mut touch_with_args(&marker, args))
            .unwrap()
            .success());
        assert!(marker.exists());
        std::fs::remove_file(&marker).unwrap();
    }
}

#[test]
fn after_a_flush_every_denied_exec_is_already_in_the_channel() {
    require_kernel!();
    let dir = TempDir::new("exec-flush");
    let miner = fake_miner(&dir, "xmrig");
    let scoped = Scoped::apply(&exec_profile(Action::Deny));
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let events = enforcer.events();
    let marker = dir.path().join("marker");
    // `minerguard run` reads the channel dry once its command has exited:
    // the flush is what makes that read see the command's last exec.
    for round in 1..=10 {
        assert_eq!(
            exec_in(Some(cg), &miner, &marker),
            denied_exec(enforcer, Action::Deny)
        );
        assert!(enforcer.flush_events(std::time::Duration::from_secs(10)));
        let seen: Vec<_> = events
            .try_iter()
            .filter(|e| e.rule.as_ref() == "miner-binary")
            .collect();
        assert_eq!(seen.len(), 1, "round {round}: {seen:?}");
    }
    assert!(!marker.exists(), "the miner ran inside the scope");
}
