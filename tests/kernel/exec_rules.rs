//! Exec rules that a miner would try to walk around: allow-lists and learn
//! mode, "no new exec after start", loader exec (`ld.so ./xmrig` and
//! executable mappings), execveat of an open file, scripts whose interpreter
//! is refused, and the syscall tracepoints turned off. Each test runs in its
//! own cgroup and shows the refused outcome inside the scope and the normal
//! one outside.
//!
//! scripts/vm-test.sh runs these in the VM with the lsm backend only (not
//! again with the cgroup backend, which runs them natively).

use std::{
    ffi::CString,
    os::{fd::AsRawFd, unix::fs::PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use minerguard::{
    cgroup::OwnedCgroup, Action, BackendKind, Enforcer, Event, LearnProgress, Profile, Rule,
    RuleKind, Target,
};

use crate::common::*;

fn exec_path(ev: &Event) -> &str {
    match &ev.target {
        Target::Exec { path } => path.as_str(),
        other => panic!("not an exec event: {other:?}"),
    }
}

/// `path` as the kernel names it from the task's root (symlinks resolved).
fn real_path(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Asserts the fields every exec event carries.
fn assert_exec_event(ev: &Event, enforcer: &Enforcer, rule: &str, requested: Action) {
    assert_eq!(ev.rule.as_ref(), rule, "{ev:?}");
    assert_eq!(ev.requested, requested, "{ev:?}");
    assert_eq!(
        ev.action,
        enforcer.effective_action(RuleKind::Exec, requested),
        "{ev:?}"
    );
    assert!(ev.pid > 0 && ev.tgid > 0, "{ev:?}");
}

/// The dynamic loader of this system (x86_64 glibc).
fn loader() -> PathBuf {
    let p = PathBuf::from("/lib64/ld-linux-x86-64.so.2");
    assert!(p.exists(), "{} is missing", p.display());
    p
}

#[test]
fn allow_only_runs_the_listed_programs_and_refuses_the_rest() {
    require_kernel!();
    let app = TempDir::new("allow-app");
    let other = TempDir::new("allow-other");
    let listed = fake_miner(&app, "server");
    let single = fake_miner(&other, "helper");
    let unlisted = fake_miner(&other, "dropped");
    let prefix = format!("{}/", app.path().display());
    let profile = Profile::new("allow").rule(Rule::exec_allow_only(
        "only-the-app",
        Action::Deny,
        [prefix.as_str(), single.to_str().unwrap()],
    ));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let marker = other.path().join("marker");

    assert_eq!(exec_in(Some(cg), &listed, &marker), ExecOutcome::Exited(0));
    assert_eq!(exec_in(Some(cg), &single, &marker), ExecOutcome::Exited(0));
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(
        exec_in(Some(cg), &unlisted, &marker),
        denied_exec(enforcer, Action::Deny),
        "an unlisted program"
    );
    assert!(!marker.exists(), "the unlisted program ran");
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "only-the-app").expect("event");
    assert_exec_event(&ev, enforcer, "only-the-app", Action::Deny);
    assert_eq!(exec_path(&ev), unlisted.to_str().unwrap());

    // Outside the scope nothing is refused.
    assert_eq!(exec_in(None, &unlisted, &marker), ExecOutcome::Exited(0));
}

#[test]
fn no_new_exec_allows_the_first_exec_only() {
    require_kernel!();
    let dir = TempDir::new("no-new-exec");
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let profile =
        Profile::new("lockdown").rule(Rule::exec_no_new_exec("no-new-exec", Action::Deny));
    enforcer.apply(&profile, scope_of(&cg)).unwrap();
    let started = dir.path().join("started");
    let second = dir.path().join("second");
    let script = format!(
        ": > {}; /usr/bin/touch {}",
        started.display(),
        second.display()
    );

    // The first exec (the shell) runs; the shell's own exec is refused.
    let status = run_in(Some(&cg), Command::new("/bin/sh").args(["-c", &script])).unwrap();
    assert!(started.exists(), "the first exec did not run ({status:?})");
    assert!(!second.exists(), "a second exec ran ({status:?})");
    let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "no-new-exec").expect("event");
    assert_exec_event(&ev, &enforcer, "no-new-exec", Action::Deny);
    assert_eq!(exec_path(&ev), "/usr/bin/touch");

    // The scope has started: a new process's exec is refused too.
    let marker = dir.path().join("later");
    assert_eq!(
        exec_in(Some(&cg), Path::new("/usr/bin/touch"), &marker),
        denied_exec(&enforcer, Action::Deny)
    );
    assert!(!marker.exists());
    // Outside the scope, and after remove, exec works.
    assert_eq!(
        exec_in(None, Path::new("/usr/bin/touch"), &marker),
        ExecOutcome::Exited(0)
    );
    let handle = enforcer.handles()[0];
    enforcer.remove(handle).unwrap();
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(
        exec_in(Some(&cg), Path::new("/usr/bin/touch"), &marker),
        ExecOutcome::Exited(0)
    );
    // A fresh apply starts counting again: its first exec runs.
    enforcer.apply(&profile, scope_of(&cg)).unwrap();
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(
        exec_in(Some(&cg), Path::new("/usr/bin/touch"), &marker),
        ExecOutcome::Exited(0)
    );
}

/// What a refused loader exec looks like: on lsm the loader's mmap fails and
/// it exits 127; on the cgroup backend it is killed at the mmap.
fn denied_loader_exec(enforcer: &Enforcer) -> ExecOutcome {
    match enforcer.backend() {
        BackendKind::Lsm => ExecOutcome::Exited(127),
        BackendKind::Cgroup => ExecOutcome::Killed(libc::SIGKILL),
    }
}

#[test]
fn loader_exec_of_a_refused_file_is_stopped() {
    require_kernel!();
    let dir = TempDir::new("loader");
    let miner = fake_miner(&dir, "xmrig");
    let profile = Profile::new("loader")
        .rule(Rule::exec_files(
            "known-miner",
            Action::Deny,
            [miner.to_str().unwrap()],
        ))
        .rule(Rule::exec_names(
            "miner-name",
            Action::Deny,
            ["xmrig-renamed"],
        ));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    enforcer
        .loader_exec()
        .expect("executable mappings are judged on this kernel");
    let marker = dir.path().join("marker");
    let via_loader = |cg: Option<&OwnedCgroup>, program: &Path| match run_in(
        cg,
        Command::new(loader()).arg(program).arg(&marker),
    ) {
        Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
            (Some(c), _) => ExecOutcome::Exited(c),
            (None, Some(sig)) => ExecOutcome::Killed(sig),
            _ => unreachable!(),
        },
        Err(e) => ExecOutcome::Refused(e.raw_os_error().unwrap_or(-1)),
    };

    assert_eq!(via_loader(Some(cg), &miner), denied_loader_exec(enforcer));
    assert!(!marker.exists(), "the miner's code ran through the loader");
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "known-miner").expect("event");
    assert_exec_event(&ev, enforcer, "known-miner", Action::Deny);
    assert_eq!(
        exec_path(&ev),
        real_path(&miner),
        "the mapped file's path from the task's root"
    );

    // By name as well (a copy is another inode).
    let renamed = fake_miner(&dir, "xmrig-renamed");
    assert_eq!(via_loader(Some(cg), &renamed), denied_loader_exec(enforcer));
    assert!(!marker.exists());

    // Programs no rule names still run through the loader in the scope,
    // and the miner runs through it outside the scope.
    let fine = fake_miner(&dir, "fine");
    assert_eq!(via_loader(Some(cg), &fine), ExecOutcome::Exited(0));
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(via_loader(None, &miner), ExecOutcome::Exited(0));
}

/// How a test child asks for an executable mapping of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MapVia {
    /// mmap(PROT_READ | PROT_EXEC).
    Mmap,
    /// mmap(PROT_READ), then mprotect(PROT_READ | PROT_EXEC).
    Mprotect,
    /// mmap(PROT_READ), then pkey_mprotect(PROT_READ | PROT_EXEC, pkey -1):
    /// the same as mprotect, through another syscall (#20).
    PkeyMprotect,
}

/// An executable mapping of `file` asked for `via` one of the calls, in a
/// child forked into `cg`: 0 when it worked, 100 + errno when refused.
fn map_exec_in(cg: Option<&OwnedCgroup>, file: &Path, via: MapVia) -> ChildEnd {
    let f = std::fs::File::open(file).unwrap();
    let fd = f.as_raw_fd();
    fork_in(cg, || unsafe {
        let first = if via == MapVia::Mmap {
            libc::PROT_READ | libc::PROT_EXEC
        } else {
            libc::PROT_READ
        };
        let p = libc::mmap(std::ptr::null_mut(), 4096, first, libc::MAP_PRIVATE, fd, 0);
        if p == libc::MAP_FAILED {
            return 100 + *libc::__errno_location();
        }
        let rx = libc::PROT_READ | libc::PROT_EXEC;
        let rc = match via {
            MapVia::Mmap => 0,
            MapVia::Mprotect => libc::mprotect(p, 4096, rx),
            MapVia::PkeyMprotect => libc::syscall(libc::SYS_pkey_mprotect, p, 4096, rx, -1) as i32,
        };
        if rc != 0 {
            return 100 + *libc::__errno_location();
        }
        0
    })
}

#[test]
fn executable_mappings_of_a_refused_file_are_stopped() {
    require_kernel!();
    let dir = TempDir::new("mappings");
    let miner = fake_miner(&dir, "cpuminer");
    let profile =
        Profile::new("maps").rule(Rule::exec_names("miner-name", Action::Deny, ["cpuminer"]));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let refused = match enforcer.backend() {
        BackendKind::Lsm => ChildEnd::Code(100 + libc::EPERM),
        BackendKind::Cgroup => ChildEnd::Signal(libc::SIGKILL),
    };
    let every_call = [MapVia::Mmap, MapVia::Mprotect, MapVia::PkeyMprotect];
    for via in every_call {
        assert_eq!(map_exec_in(Some(cg), &miner, via), refused, "{via:?}");
    }
    // A read-only mapping is fine, and so is everything outside the scope.
    let ro = fork_in(Some(cg), || unsafe {
        let f = libc::open(c"/usr/bin/true".as_ptr(), libc::O_RDONLY);
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            f,
            0,
        );
        i32::from(p == libc::MAP_FAILED)
    });
    assert_eq!(ro, ChildEnd::Code(0));
    // Outside the scope every call maps the file (pkey_mprotect included:
    // the refusal above is the hook's, not the kernel's).
    for via in every_call {
        assert_eq!(map_exec_in(None, &miner, via), ChildEnd::Code(0), "{via:?}");
    }
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "miner-name").expect("event");
    assert_exec_event(&ev, enforcer, "miner-name", Action::Deny);
    assert_eq!(exec_path(&ev), real_path(&miner));
}

/// execveat(fd, "", AT_EMPTY_PATH) of an open file, in a child in `cg`.
fn execveat_in(cg: Option<&OwnedCgroup>, file: &Path, marker: &Path) -> ChildEnd {
    let f = std::fs::File::open(file).unwrap();
    let arg0 = CString::new("x").unwrap();
    let arg1 = CString::new(marker.to_str().unwrap()).unwrap();
    let argv = [arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let fd = f.as_raw_fd();
    fork_in(cg, || unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
        100 + *libc::__errno_location()
    })
}

#[test]
fn execveat_of_an_open_refused_file_is_stopped() {
    require_kernel!();
    let dir = TempDir::new("execveat");
    let miner = fake_miner(&dir, "looks-fine");
    let profile = Profile::new("execveat").rule(Rule::exec_files(
        "known-miner",
        Action::Deny,
        [miner.to_str().unwrap()],
    ));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let marker = dir.path().join("marker");
    let refused = match enforcer.effective_action(RuleKind::Exec, Action::Deny) {
        Action::Kill => ChildEnd::Signal(libc::SIGKILL),
        _ => ChildEnd::Code(100 + libc::EPERM),
    };
    assert_eq!(execveat_in(Some(cg), &miner, &marker), refused);
    assert!(!marker.exists());
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "known-miner").expect("event");
    assert_exec_event(&ev, enforcer, "known-miner", Action::Deny);
    assert_eq!(execveat_in(None, &miner, &marker), ChildEnd::Code(0));
    assert!(marker.exists());
}

#[test]
fn a_script_whose_interpreter_is_refused_does_not_run() {
    require_kernel!();
    let dir = TempDir::new("interp");
    let shell = dir.path().join("minershell");
    std::fs::copy("/bin/dash", &shell).unwrap();
    let script = dir.path().join("job.sh");
    let marker = dir.path().join("marker");
    std::fs::write(&script, format!("#!{}\n: > \"$1\"\n", shell.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let profile = Profile::new("interp").rule(Rule::exec_files(
        "bad-interpreter",
        Action::Deny,
        [shell.to_str().unwrap()],
    ));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    assert_eq!(
        exec_in(Some(cg), &script, &marker),
        denied_exec(enforcer, Action::Deny)
    );
    assert!(!marker.exists(), "the script ran");
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "bad-interpreter").expect("event");
    assert_exec_event(&ev, enforcer, "bad-interpreter", Action::Deny);
    // Both backends name the file they judged: the interpreter.
    assert_eq!(exec_path(&ev), real_path(&shell));
    assert_eq!(exec_in(None, &script, &marker), ExecOutcome::Exited(0));
    assert!(marker.exists());
}

#[test]
fn learn_mode_writes_a_profile_that_allows_what_ran_and_refuses_the_rest() {
    require_kernel!();
    let dir = TempDir::new("learn");
    let app = fake_miner(&dir, "app");
    let newcomer = fake_miner(&dir, "newcomer");
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let marker = dir.path().join("marker");

    // The workload starts once learning has begun (apply takes far less
    // than the delay) and runs the app twice, through a shell.
    let workload = {
        let procs = cg.procs_file().unwrap();
        let (app, marker) = (app.clone(), marker.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c")
                .arg(format!("{0} {1}; {0} {1}", app.display(), marker.display()));
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    minerguard::cgroup::join_cgroup_raw(&procs)
                });
            }
            cmd.status().unwrap()
        })
    };
    let mut seen = Vec::new();
    let learner = enforcer
        .learn(scope_of(&cg), Duration::from_secs(3), |p| {
            if let LearnProgress::Learned(p) = p {
                seen.push(p.to_path_buf())
            }
        })
        .unwrap();
    assert!(workload.join().unwrap().success());
    assert!(
        enforcer.handles().is_empty(),
        "learning left a profile applied"
    );
    let learned: Vec<&Path> = learner.learned().collect();
    assert!(learned.contains(&app.as_path()), "{learned:?}");
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    assert!(learned.contains(&sh.as_path()), "{learned:?}");
    assert_eq!(seen.len(), learned.len(), "each path reported once");

    let profile = learner.allow_only_profile("learned", Action::Deny);
    enforcer.apply(&profile, scope_of(&cg)).unwrap();
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(exec_in(Some(&cg), &app, &marker), ExecOutcome::Exited(0));
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(
        exec_in(Some(&cg), &newcomer, &marker),
        denied_exec(&enforcer, Action::Deny)
    );
    assert!(!marker.exists());
    let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "allow-learned").expect("event");
    assert_exec_event(&ev, &enforcer, "allow-learned", Action::Deny);
    assert_eq!(exec_path(&ev), newcomer.to_str().unwrap());
}

#[test]
fn syscall_tracepoints_can_be_turned_off_and_say_so() {
    require_kernel!();
    let mut e = Enforcer::with_options(minerguard::EnforcerOptions {
        backend: backend_choice(),
        syscall_tracepoints: false,
        ..Default::default()
    })
    .unwrap();
    // Everything else is enforced as usual; the statuses are asked with a
    // profile applied that needs both checks (they load with it).
    let dir = TempDir::new("tp-off");
    let miner = fake_miner(&dir, "xmrig");
    let cg = test_cgroup();
    let profile = Profile::new("off")
        .rule(Rule::exec_names("miner", Action::Deny, ["xmrig"]))
        .rule(Rule::stratum("stratum", Action::Deny, Vec::<String>::new()));
    e.apply(&profile, scope_of(&cg)).unwrap();
    match e.backend() {
        // Only the cgroup backend needs tracepoints, for mappings and for
        // Fast Open payloads.
        BackendKind::Cgroup => {
            for off in [e.loader_exec().unwrap_err(), e.fast_open().unwrap_err()] {
                assert!(off.contains("syscall_tracepoints"), "{off}");
            }
        }
        // lsm: mmap_file/file_mprotect, and the socket_sendmsg hook sees a
        // Fast Open payload before the SYN.
        BackendKind::Lsm => {
            e.loader_exec().unwrap();
            e.fast_open().unwrap();
        }
    }
    let marker = dir.path().join("marker");
    assert_eq!(
        exec_in(Some(&cg), &miner, &marker),
        denied_exec(&e, Action::Deny)
    );
}
