//! `kill-container`: the task a rule catches dies as with `kill`, and every
//! process of the cgroup it was in (its container) dies with it; sibling
//! cgroups of the same scope, and the scope's other children, live on.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use minerguard::{
    cgroup::OwnedCgroup, events::KillMethod, Action, CgroupKill, Enforcer, EnforcerOptions, Event,
    Profile, Rule,
};

use crate::{common::*, exec_profile, port_profile};

/// A `sleep 600` in `cgroup`, killed when the guard drops.
fn sleeper(cgroup: &OwnedCgroup) -> ChildGuard {
    ChildGuard::new(spawn_in(Some(cgroup), Command::new("sleep").arg("600")).expect("start sleep"))
}

/// Waits up to 10 s for `child` to end; the signal that ended it.
fn ended_by_signal(child: &mut ChildGuard) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.signal();
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `child` is still running after a short while (time for a kill
/// that should not come to arrive).
fn still_running(child: &mut ChildGuard) -> bool {
    std::thread::sleep(Duration::from_millis(300));
    child.try_wait().expect("try_wait").is_none()
}

/// The pids `cgroup`'s own `cgroup.procs` lists once it settles (killed
/// processes leave it as they exit), waiting up to 10 s for it to empty.
fn procs_once_settled(cgroup: &Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let procs: Vec<String> = std::fs::read_to_string(cgroup.join("cgroup.procs"))
            .expect("read cgroup.procs")
            .lines()
            .map(String::from)
            .collect();
        if procs.is_empty() || Instant::now() > deadline {
            return procs;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The event of rule `rule`, which must say `kill-container` (asked and
/// done).
fn kill_container_event(enforcer: &Enforcer, rule: &str) -> Event {
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == rule).expect("the rule's event");
    assert_eq!(ev.action, Action::KillContainer, "{ev:?}");
    assert_eq!(ev.requested, Action::KillContainer, "{ev:?}");
    ev
}

#[test]
fn exec_kill_container_kills_every_process_of_the_container_and_nothing_else() {
    require_kernel!();
    let dir = TempDir::new("kill-container");
    let miner = fake_miner(&dir, "xmrig");
    let marker = dir.path().join("ran");
    let scoped = Scoped::apply(&exec_profile(Action::KillContainer));
    let enforcer = scoped.enforcer();
    // Two "containers" under the scope (the agent's pods root, say).
    let container = child_cgroup(scoped.cgroup());
    let neighbour = child_cgroup(scoped.cgroup());
    let mut inside: Vec<ChildGuard> = (0..3).map(|_| sleeper(&container)).collect();
    let mut next_door = sleeper(&neighbour);

    assert_eq!(
        exec_in(Some(&container), &miner, &marker),
        denied_exec(enforcer, Action::KillContainer)
    );
    assert!(!marker.exists(), "the miner ran an instruction");

    let ev = kill_container_event(enforcer, "miner-binary");
    assert_eq!(ev.cgroup_id, container.cgroup().id());
    assert_eq!(
        ev.cgroup_kill,
        Some(CgroupKill::Killed {
            cgroup: container.cgroup().path().to_path_buf(),
            method: KillMethod::CgroupKill,
        }),
        "{ev:?}"
    );
    let json: serde_json::Value = serde_json::from_str(&minerguard::falco_json(&ev)).unwrap();
    assert_eq!(json["action"], "kill-container");
    assert_eq!(
        json["output_fields"]["minerguard.requested"],
        "kill-container"
    );
    assert_eq!(
        json["output_fields"]["minerguard.killed.cgroup"],
        container.cgroup().path().to_str().unwrap()
    );

    for p in &mut inside {
        assert_eq!(
            ended_by_signal(p),
            Some(libc::SIGKILL),
            "a process of the container lived on"
        );
    }
    assert_eq!(
        procs_once_settled(container.cgroup().path()),
        Vec::<String>::new(),
        "the container's cgroup is not empty"
    );
    assert!(
        still_running(&mut next_door),
        "a process of another container of the same scope was killed"
    );
    // The container's cgroup itself stays (its runtime removes it), empty.
    assert!(container.cgroup().path().exists());
}

#[test]
fn a_task_in_the_scope_root_takes_only_the_roots_own_processes_with_it() {
    require_kernel!();
    let dir = TempDir::new("kill-container-root");
    let miner = fake_miner(&dir, "xmrig");
    let marker = dir.path().join("ran");
    let scoped = Scoped::apply(&exec_profile(Action::KillContainer));
    let (scope, enforcer) = (scoped.cgroup(), scoped.enforcer());
    // The scope's root holds processes of its own and a child cgroup (a
    // container): cgroup.kill on the root would kill the container too.
    let container = child_cgroup(scope);
    let mut in_root = sleeper(scope);
    let mut in_container = sleeper(&container);

    assert_eq!(
        exec_in(Some(scope), &miner, &marker),
        denied_exec(enforcer, Action::KillContainer)
    );
    assert!(!marker.exists(), "the miner ran an instruction");
    let ev = kill_container_event(enforcer, "miner-binary");
    assert_eq!(
        ev.cgroup_kill,
        Some(CgroupKill::Killed {
            cgroup: scope.cgroup().path().to_path_buf(),
            method: KillMethod::Procs,
        }),
        "{ev:?}"
    );
    assert_eq!(ended_by_signal(&mut in_root), Some(libc::SIGKILL));
    assert!(
        still_running(&mut in_container),
        "a child cgroup of the killed cgroup was killed"
    );
}

#[test]
fn connect_kill_container_kills_the_container() {
    require_kernel!();
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    let scoped = Scoped::apply(&port_profile(Action::KillContainer, addr.port()));
    let enforcer = scoped.enforcer();
    let container = child_cgroup(scoped.cgroup());
    let neighbour = child_cgroup(scoped.cgroup());
    let mut inside = sleeper(&container);
    let mut next_door = sleeper(&neighbour);

    assert_eq!(
        connect_in(Some(&container), addr, false),
        ConnectOutcome::Signal(libc::SIGKILL)
    );
    let ev = kill_container_event(enforcer, "pool-port");
    assert_eq!(
        ev.cgroup_kill.as_ref().and_then(|k| k.cgroup()),
        Some(container.cgroup().path()),
        "{ev:?}"
    );
    assert!(ev.cgroup_kill.as_ref().unwrap().killed(), "{ev:?}");
    assert_eq!(ended_by_signal(&mut inside), Some(libc::SIGKILL));
    assert!(still_running(&mut next_door));
    pool.set_nonblocking(true).unwrap();
    assert!(pool.accept().is_err(), "the pool saw a connection");
}

#[test]
fn an_event_from_before_the_enforcer_started_kills_no_cgroup() {
    require_kernel!();
    let instance = InstanceName::new("test-kill-container");
    let name = instance.0.clone();
    let options = || EnforcerOptions {
        backend: backend_choice(),
        instance: Some(name.clone()),
        ..Default::default()
    };
    let dir = TempDir::new("kill-container-backlog");
    let miner = fake_miner(&dir, "xmrig");
    let marker = dir.path().join("ran");
    let scope = test_cgroup();
    let container = child_cgroup(&scope);
    let profile: Profile = exec_profile(Action::KillContainer);
    {
        // Pinned: the enforcement outlives this enforcer.
        let mut first = Enforcer::with_options(options()).expect("enforcer");
        first.apply(&profile, scope_of(&scope)).expect("apply");
    }
    let mut inside = sleeper(&container);
    // Nobody reads events now: the kernel kills the miner and keeps the
    // event in the pinned ring buffer.
    assert_eq!(
        exec_in(Some(&container), &miner, &marker),
        ExecOutcome::Killed(libc::SIGKILL)
    );
    assert!(!marker.exists(), "the miner ran an instruction");

    let second = Enforcer::with_options(options()).expect("enforcer adopts the instance");
    let ev = kill_container_event(&second, "miner-binary");
    match &ev.cgroup_kill {
        Some(CgroupKill::NotKilled {
            cgroup: None,
            reason,
        }) => assert!(reason.contains("before this enforcer started"), "{reason}"),
        other => panic!("a backlog event was acted on: {other:?}"),
    }
    assert!(
        still_running(&mut inside),
        "a backlog event killed its cgroup"
    );
    second.detach().expect("detach");
}

#[test]
fn kill_container_outranks_kill_on_a_shared_name() {
    require_kernel!();
    let dir = TempDir::new("kill-container-rank");
    let miner = fake_miner(&dir, "xmrig");
    let marker = dir.path().join("ran");
    let profile = Profile::new("rank")
        .rule(Rule::exec_names("kill", Action::Kill, ["xmrig", "other"]))
        .rule(Rule::exec_names(
            "kill-container",
            Action::KillContainer,
            ["xmrig"],
        ));
    let scoped = Scoped::apply(&profile);
    let container = child_cgroup(scoped.cgroup());
    let mut inside = sleeper(&container);
    assert_eq!(
        exec_in(Some(&container), &miner, &marker),
        ExecOutcome::Killed(libc::SIGKILL)
    );
    let ev = kill_container_event(scoped.enforcer(), "kill-container");
    assert!(ev.cgroup_kill.unwrap().killed());
    assert_eq!(ended_by_signal(&mut inside), Some(libc::SIGKILL));
}
