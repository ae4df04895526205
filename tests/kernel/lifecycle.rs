//! What happens around the rules: a scope covers cgroups created after the
//! apply and nests (nearest wins), `update` switches a scope's policy at
//! once, `remove` and dropping the enforcer restore normal behaviour, a
//! failed apply or update changes nothing, audit (per rule or the profile's
//! mode) allows and reports, handles belong to one enforcer, self-test
//! events travel the whole event path, drop counters, the probe, rules a
//! backend cannot enforce, and a scope that follows its cgroup's path.

use std::time::Duration;

use minerguard::{Action, Enforcer, Error, Profile, Rule, Scope, Target};

use crate::{common::*, exec_profile, port_profile};

#[test]
fn child_cgroup_created_after_apply_is_covered() {
    require_kernel!();
    let dir = TempDir::new("child");
    let miner = fake_miner(&dir, "xmrig");
    let pool = listener(false);
    let profile = exec_profile(Action::Deny).rule(Rule::connect_ports(
        "pool-port",
        Action::Deny,
        [pool.local_addr().unwrap().port()],
    ));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());

    let child = child_cgroup(cg);
    let grandchild = child_cgroup(&child);
    let marker = dir.path().join("marker");
    assert_eq!(
        exec_in(Some(&grandchild), &miner, &marker),
        denied_exec(enforcer, Action::Deny)
    );
    assert!(!marker.exists());
    assert_eq!(
        connect_in(Some(&child), pool.local_addr().unwrap(), false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "miner-binary").expect("event");
    assert_eq!(
        ev.cgroup_id,
        grandchild.cgroup().id(),
        "event names the task's own cgroup"
    );
}

#[test]
fn nested_scopes_nearest_wins() {
    require_kernel!();
    let a = listener(false);
    let b = listener(false);
    let parent = test_cgroup();
    let child = child_cgroup(&parent);
    let mut enforcer = enforcer();
    enforcer
        .apply(
            &port_profile(Action::Deny, a.local_addr().unwrap().port()),
            scope_of(&parent),
        )
        .unwrap();
    let inner = enforcer
        .apply(
            &port_profile(Action::Deny, b.local_addr().unwrap().port()),
            scope_of(&child),
        )
        .unwrap();
    let (pa, pb) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    // In the child, its own profile applies (not the parent's).
    assert_eq!(
        connect_in(Some(&child), pa, false),
        ConnectOutcome::Connected
    );
    assert_eq!(
        connect_in(Some(&child), pb, false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    // In the parent, the parent's.
    assert_eq!(
        connect_in(Some(&parent), pa, false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    assert_eq!(
        connect_in(Some(&parent), pb, false),
        ConnectOutcome::Connected
    );
    // Each refused connect is reported once, even though scopes nest.
    let evs = events_within(&enforcer, Duration::from_secs(1), |_| true);
    assert_eq!(evs.len(), 2, "{evs:?}");
    // Removing the inner scope hands the child back to the parent's profile.
    enforcer.remove(inner).unwrap();
    assert_eq!(
        connect_in(Some(&child), pa, false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    assert_eq!(
        connect_in(Some(&child), pb, false),
        ConnectOutcome::Connected
    );
}

#[test]
fn update_switches_policy_atomically() {
    require_kernel!();
    let old = listener(false);
    let new = listener(false);
    let mut scoped = Scoped::apply(&port_profile(
        Action::Deny,
        old.local_addr().unwrap().port(),
    ));
    let h = scoped.handle();
    let (cg, enforcer) = scoped.cgroup_and_enforcer_mut();
    assert_eq!(
        connect_in(Some(cg), old.local_addr().unwrap(), false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    let updated = Profile::new("updated").rule(Rule::connect_ports(
        "new-port",
        Action::Deny,
        [new.local_addr().unwrap().port()],
    ));
    enforcer.update(h, &updated).unwrap();
    assert_eq!(
        connect_in(Some(cg), old.local_addr().unwrap(), false),
        ConnectOutcome::Connected
    );
    assert_eq!(
        connect_in(Some(cg), new.local_addr().unwrap(), false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "new-port").expect("event");
    assert_eq!(&*ev.profile, "updated");
}

#[test]
fn remove_and_drop_restore_normal_behaviour() {
    require_kernel!();
    let dir = TempDir::new("remove");
    let miner = fake_miner(&dir, "xmrig");
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    let cg = test_cgroup();
    let profile = exec_profile(Action::Deny).rule(Rule::connect_ports(
        "pool-port",
        Action::Deny,
        [addr.port()],
    ));

    let mut enforcer = enforcer();
    let handle = enforcer.apply(&profile, scope_of(&cg)).unwrap();
    assert_eq!(
        connect_in(Some(&cg), addr, false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    enforcer.remove(handle).unwrap();
    assert_eq!(
        connect_in(Some(&cg), addr, false),
        ConnectOutcome::Connected
    );
    assert_eq!(
        exec_in(Some(&cg), &miner, &dir.path().join("a")),
        ExecOutcome::Exited(0)
    );
    assert!(matches!(
        enforcer.remove(handle),
        Err(Error::Scope(minerguard::error::ScopeError::UnknownHandle(
            _
        )))
    ));

    enforcer.apply(&profile, scope_of(&cg)).unwrap();
    assert_eq!(
        connect_in(Some(&cg), addr, false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    drop(enforcer);
    assert_eq!(
        connect_in(Some(&cg), addr, false),
        ConnectOutcome::Connected
    );
    assert_eq!(
        exec_in(Some(&cg), &miner, &dir.path().join("b")),
        ExecOutcome::Exited(0)
    );
}

#[test]
fn failed_apply_leaves_previous_state_intact() {
    require_kernel!();
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    let mut scoped = Scoped::apply(&port_profile(Action::Deny, addr.port()));
    let h = scoped.handle();
    let (cg, enforcer) = scoped.cgroup_and_enforcer_mut();

    // Same scope again: refused, existing policy untouched.
    let again = enforcer.apply(&port_profile(Action::Audit, addr.port()), scope_of(cg));
    assert!(matches!(
        again,
        Err(Error::Scope(
            minerguard::error::ScopeError::AlreadyApplied { .. }
        ))
    ));
    // Missing cgroup: refused with a cgroup error.
    let missing = enforcer.apply(
        &port_profile(Action::Deny, 1),
        Scope::Cgroup("/sys/fs/cgroup/definitely-not-here-minerguard".into()),
    );
    assert!(matches!(missing, Err(Error::Cgroup(_))), "{missing:?}");
    // Invalid profile: refused with a profile error naming the field.
    let bad = enforcer.apply(&port_profile(Action::Deny, 0), scope_of(cg));
    match bad {
        Err(Error::Profile(e)) => assert_eq!(e.diagnostics()[0].field, "rules[0].connect.ports[0]"),
        other => panic!("expected a profile error, got {other:?}"),
    }
    // A failed update keeps the old policy.
    assert!(enforcer.update(h, &port_profile(Action::Deny, 0)).is_err());

    assert_eq!(enforcer.handles(), vec![h]);
    assert_eq!(
        connect_in(Some(cg), addr, false),
        ConnectOutcome::Errno(libc::EPERM)
    );
}

#[test]
fn audit_allows_and_reports() {
    require_kernel!();
    let dir = TempDir::new("audit");
    let miner = fake_miner(&dir, "xmrig");
    let pool = listener(false);
    let profile = exec_profile(Action::Audit).rule(Rule::connect_ports(
        "pool-port",
        Action::Audit,
        [pool.local_addr().unwrap().port()],
    ));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());

    let marker = dir.path().join("marker");
    assert_eq!(exec_in(Some(cg), &miner, &marker), ExecOutcome::Exited(0));
    assert!(marker.exists());
    assert_eq!(
        connect_in(Some(cg), pool.local_addr().unwrap(), false),
        ConnectOutcome::Connected
    );

    let exec =
        wait_event(enforcer, |e| e.rule.as_ref() == "miner-binary").expect("exec audit event");
    assert_eq!(
        (exec.action, exec.requested),
        (Action::Audit, Action::Audit)
    );
    let conn =
        wait_event(enforcer, |e| e.rule.as_ref() == "pool-port").expect("connect audit event");
    assert_eq!(conn.action, Action::Audit);
}

#[test]
fn profile_audit_mode_turns_deny_into_audit() {
    require_kernel!();
    let pool = listener(false);
    let profile = port_profile(Action::Deny, pool.local_addr().unwrap().port())
        .with_mode(minerguard::Mode::Audit);
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    assert_eq!(
        connect_in(Some(cg), pool.local_addr().unwrap(), false),
        ConnectOutcome::Connected
    );
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "pool-port").expect("event");
    assert_eq!(ev.action, Action::Audit);
}

#[test]
fn a_handle_from_another_enforcer_is_refused() {
    require_kernel!();
    let pool = listener(false);
    let profile = port_profile(Action::Deny, pool.local_addr().unwrap().port());
    let a = Scoped::apply(&profile);
    let mut b = Scoped::apply(&profile);
    let (ha, hb) = (a.handle(), b.handle());
    assert_ne!(ha, hb);
    assert!(matches!(
        b.enforcer_mut().remove(ha),
        Err(Error::Scope(minerguard::error::ScopeError::UnknownHandle(
            _
        )))
    ));
    // b's own scope is untouched.
    assert_eq!(
        connect_in(Some(b.cgroup()), pool.local_addr().unwrap(), false),
        ConnectOutcome::Errno(libc::EPERM)
    );
}

#[test]
fn self_test_events_travel_the_whole_event_path() {
    require_kernel!();
    let scoped = Scoped::apply(&exec_profile(Action::Deny));
    let (enforcer, h) = (scoped.enforcer(), scoped.handle());
    assert_eq!(enforcer.self_test_events(h, 500).unwrap(), 500);
    let evs = events_within(enforcer, Duration::from_secs(2), |_| true);
    assert_eq!(evs.len(), 500, "every event arrives once");
    for ev in &evs {
        assert_eq!(ev.rule.as_ref(), "miner-binary");
        assert_eq!(ev.profile.as_ref(), "test-exec");
        assert_eq!((ev.action, ev.requested), (Action::Audit, Action::Audit));
        match &ev.target {
            Target::Exec { path } => assert_eq!(path.as_str(), "minerguard-self-test"),
            t => panic!("{t:?}"),
        }
        assert_eq!(ev.tgid, std::process::id());
    }
    // Nothing was enforced by it: the scope's rules are unchanged.
    let unknown = minerguard::PolicyHandle::from_id(u64::MAX);
    assert!(enforcer.self_test_events(unknown, 1).is_err());
}

#[test]
fn drop_counters_start_at_zero() {
    require_kernel!();
    let enforcer = enforcer();
    assert_eq!(enforcer.drops(), minerguard::Drops::default());
}

#[test]
fn probe_picks_lsm_only_where_a_bpf_lsm_program_loads() {
    require_kernel!();
    let report = minerguard::probe();
    if report.bpf_lsm.available {
        assert_eq!(report.backend, Some(minerguard::BackendKind::Lsm));
        let e = Enforcer::with_options(minerguard::EnforcerOptions {
            backend: minerguard::BackendChoice::Lsm,
            ..Default::default()
        })
        .expect("lsm backend loads where the probe says it does");
        assert_eq!(e.backend(), minerguard::BackendKind::Lsm);
    } else {
        assert_eq!(report.backend, Some(minerguard::BackendKind::Cgroup));
        assert!(!report.bpf_lsm.detail.is_empty());
        match Enforcer::with_options(minerguard::EnforcerOptions {
            backend: minerguard::BackendChoice::Lsm,
            ..Default::default()
        }) {
            Err(Error::Load(minerguard::error::LoadError::Unsupported { what, fix })) => {
                assert!(what.contains("lsm"), "{what}");
                assert_eq!(fix, report.bpf_lsm.detail);
            }
            Err(other) => panic!("expected Unsupported, got {other}"),
            Ok(_) => panic!("the lsm backend loaded where the probe said it cannot"),
        }
    }
}

#[test]
fn rules_the_backend_cannot_enforce_are_reported_or_refused() {
    require_kernel!();
    let cg = test_cgroup();
    // The BPF backends carry every matcher of the host profile...
    let mut enforcer = enforcer();
    let default = Profile::bundled("default").unwrap();
    let h = enforcer.apply(&default, scope_of(&cg)).unwrap();
    assert_eq!(enforcer.unenforced(h).unwrap(), vec![]);
    enforcer.remove(h).unwrap();
    // ...but seccomp is installed in processes (enforcer run, runtimes), not
    // by a scope: it is reported.
    let profile = Profile::bundled("container-strict").unwrap();
    let h = enforcer.apply(&profile, scope_of(&cg)).unwrap();
    let gaps: Vec<minerguard::MatcherKind> = enforcer
        .unenforced(h)
        .unwrap()
        .iter()
        .map(|g| g.matcher)
        .collect();
    assert_eq!(gaps, [minerguard::MatcherKind::Seccomp]);

    let mut strict = Enforcer::with_options(minerguard::EnforcerOptions {
        backend: backend_choice(),
        require_all_rules: true,
        ..Default::default()
    })
    .unwrap();
    let other = test_cgroup();
    match strict.apply(&profile, scope_of(&other)) {
        Err(Error::Scope(minerguard::error::ScopeError::Unenforceable { rules, .. })) => {
            assert!(
                rules
                    .iter()
                    .any(|r| r.contains("no-introspection-or-kernel-changes")),
                "{rules:?}"
            )
        }
        other => panic!("expected Unenforceable, got {other:?}"),
    }
    assert!(strict.handles().is_empty(), "nothing applied");
}

#[test]
fn a_scope_follows_its_cgroup_removed_and_created_again_at_the_same_path() {
    require_kernel!();
    let dir = TempDir::new("follow");
    let miner = fake_miner(&dir, "xmrig");
    let other = fake_miner(&dir, "other");
    let marker = dir.path().join("marker");
    let pool = listener(false);
    let profile = exec_profile(Action::Deny).rule(Rule::connect_ports(
        "pool-port",
        Action::Deny,
        [pool.local_addr().unwrap().port()],
    ));
    let mut scoped = Scoped::apply(&profile);
    let path = scoped.cgroup().cgroup().path().to_path_buf();
    let handle = scoped.handle();
    assert_eq!(scoped.enforcer_mut().follow_cgroups().unwrap(), []);

    // A restarted container: its cgroup goes, and a new one comes at the
    // same path.
    std::fs::remove_dir(&path).unwrap();
    let changes = scoped.enforcer_mut().follow_cgroups().unwrap();
    assert_eq!(
        changes,
        [minerguard::ScopeChange::Gone {
            handle,
            path: path.clone()
        }]
    );
    assert_eq!(
        scoped.enforcer_mut().follow_cgroups().unwrap(),
        [],
        "said once"
    );
    std::fs::create_dir(&path).unwrap();
    let changes = scoped.enforcer_mut().follow_cgroups().unwrap();
    assert_eq!(
        changes,
        [minerguard::ScopeChange::Recreated {
            handle,
            path: path.clone()
        }]
    );
    assert_eq!(scoped.enforcer_mut().follow_cgroups().unwrap(), []);

    // The new cgroup is enforced: what the miner gets, and the pool.
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    assert_eq!(
        exec_in(Some(cg), &miner, &marker),
        denied_exec(enforcer, Action::Deny)
    );
    assert!(!marker.exists(), "the miner ran in the new cgroup");
    assert_eq!(exec_in(Some(cg), &other, &marker), ExecOutcome::Exited(0));
    assert!(marker.exists());
    assert_eq!(
        connect_in(Some(cg), pool.local_addr().unwrap(), false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    // The handle still works: the scope can be removed as usual.
    let (cg, enforcer) = scoped.cgroup_and_enforcer_mut();
    enforcer.remove(handle).unwrap();
    let _ = std::fs::remove_file(&marker);
    assert_eq!(exec_in(Some(cg), &miner, &marker), ExecOutcome::Exited(0));
}
