//! Enforcement on the real kernel: every test makes its own cgroup, applies a
//! profile there only, and checks what the kernel did (and that the same
//! operation still works outside the scope and after removal).
//!
//! The backend under test is MINERGUARD_TEST_BACKEND (auto by default); the
//! same tests run natively (cgroup backend) and in the VM (lsm backend).

mod common;

use std::{net::SocketAddr, os::unix::process::ExitStatusExt, process::Command, time::Duration};

use common::*;
use minerguard::{Action, Enforcer, Error, Profile, Rule, RuleKind, Scope, Target};

macro_rules! require_kernel {
    () => {
        if !kernel_tests_enabled(module_path!()) {
            return;
        }
    };
}

fn scope_of(cg: &minerguard::cgroup::OwnedCgroup) -> Scope {
    Scope::Cgroup(cg.cgroup().path().to_path_buf())
}

fn port_profile(action: Action, port: u16) -> Profile {
    Profile::new("test-ports").rule(Rule::connect_ports("pool-port", action, [port]))
}

fn exec_profile(action: Action) -> Profile {
    Profile::new("test-exec").rule(Rule::exec_names("miner-binary", action, ["xmrig"]))
}

#[test]
fn miner_exec_never_runs_inside_scope_and_runs_outside() {
    require_kernel!();
    let dir = TempDir::new("exec");
    let miner = fake_miner(&dir, "xmrig");
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    enforcer
        .apply(&exec_profile(Action::Deny), scope_of(&cg))
        .unwrap();

    let inside = dir.path().join("ran-inside");
    assert_eq!(
        exec_in(Some(&cg), &miner, &inside),
        denied_exec(&enforcer, Action::Deny)
    );
    assert!(
        !inside.exists(),
        "the miner ran an instruction inside the scope"
    );

    let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "miner-binary").expect("exec event");
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
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    enforcer
        .apply(&exec_profile(Action::Kill), scope_of(&cg))
        .unwrap();
    let allowed = fake_miner(&dir, "not-a-miner");
    let marker = dir.path().join("marker");
    assert_eq!(
        exec_in(Some(&cg), &allowed, &marker),
        ExecOutcome::Exited(0)
    );
    assert!(marker.exists());
}

#[test]
fn script_named_like_a_miner_is_stopped() {
    require_kernel!();
    let dir = TempDir::new("exec-script");
    let script = dir.path().join("xmrig");
    std::fs::write(&script, "#!/bin/sh\ntouch \"$1\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    enforcer
        .apply(&exec_profile(Action::Kill), scope_of(&cg))
        .unwrap();
    let marker = dir.path().join("marker");
    assert_eq!(
        exec_in(Some(&cg), &script, &marker),
        denied_exec(&enforcer, Action::Kill)
    );
    assert!(!marker.exists());
}

#[test]
fn connect_to_denied_port_fails_with_eperm_v4_v6_and_v4_mapped() {
    require_kernel!();
    let pool4 = listener(false);
    let pool6 = listener(true);
    let other = listener(false);
    let port4 = pool4.local_addr().unwrap().port();
    let port6 = pool6.local_addr().unwrap().port();
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let profile = Profile::new("test-ports").rule(Rule::connect_ports(
        "pool-port",
        Action::Deny,
        [port4, port6],
    ));
    enforcer.apply(&profile, scope_of(&cg)).unwrap();

    let eperm = ConnectOutcome::Errno(libc::EPERM);
    let v4: SocketAddr = pool4.local_addr().unwrap();
    let v6: SocketAddr = pool6.local_addr().unwrap();
    assert_eq!(connect_in(Some(&cg), v4, false), eperm, "IPv4");
    assert_eq!(connect_in(Some(&cg), v6, false), eperm, "IPv6 ::1");
    assert_eq!(
        connect_in(Some(&cg), v4, true),
        eperm,
        "v4-mapped ::ffff:127.0.0.1"
    );

    // Another port inside, and the denied ports outside, still connect.
    assert_eq!(
        connect_in(Some(&cg), other.local_addr().unwrap(), false),
        ConnectOutcome::Connected
    );
    assert_eq!(connect_in(None, v4, false), ConnectOutcome::Connected);
    assert_eq!(connect_in(None, v6, false), ConnectOutcome::Connected);

    let events = events_within(&enforcer, Duration::from_secs(2), |e| {
        e.rule.as_ref() == "pool-port"
    });
    let targets: Vec<SocketAddr> = events
        .iter()
        .map(|e| match e.target {
            Target::Connect { addr, .. } => addr,
            ref t => panic!("expected a connect target, got {t:?}"),
        })
        .collect();
    assert_eq!(events.len(), 3, "one event per refused connect: {events:?}");
    assert!(events
        .iter()
        .all(|e| e.action == Action::Deny && e.cgroup_id == cg.cgroup().id()));
    assert_eq!(targets[0], v4);
    assert_eq!(targets[1], v6);
    assert_eq!(
        targets[2], v4,
        "a v4-mapped destination is reported as IPv4"
    );
}

#[test]
fn a_pool_in_another_network_namespace_is_refused_by_port_and_cidr() {
    require_kernel!();
    let ns = TestNetns::new();
    let pool = ns.listener(0);
    let pool_addr = pool.local_addr().unwrap();
    let web = ns.listener(0);
    let web_addr = web.local_addr().unwrap();
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let profile = Profile::new("remote")
        .rule(Rule::connect_ports(
            "pool-port",
            Action::Deny,
            [pool_addr.port()],
        ))
        .rule(Rule::connect_cidrs(
            "pool-net",
            Action::Deny,
            [format!("{}/32", ns.peer)],
        ));
    enforcer.apply(&profile, scope_of(&cg)).unwrap();
    let eperm = ConnectOutcome::Errno(libc::EPERM);
    assert_eq!(connect_in(Some(&cg), pool_addr, false), eperm);
    assert_eq!(connect_in(Some(&cg), web_addr, false), eperm, "by CIDR");
    // Outside the scope both are reachable over the veth.
    assert_eq!(
        connect_in(None, pool_addr, false),
        ConnectOutcome::Connected
    );
    assert_eq!(connect_in(None, web_addr, false), ConnectOutcome::Connected);
    let evs = events_within(&enforcer, Duration::from_secs(2), |_| true);
    let rules: Vec<&str> = evs.iter().map(|e| e.rule.as_ref()).collect();
    assert_eq!(rules, ["pool-port", "pool-net"], "{evs:?}");
    for ev in &evs {
        match ev.target {
            Target::Connect { addr, .. } => assert_eq!(addr.ip(), std::net::IpAddr::V4(ns.peer)),
            ref t => panic!("{t:?}"),
        }
        assert!(ev.pid > 0 && !ev.comm.as_str().is_empty(), "{ev:?}");
    }
}

#[test]
fn child_cgroup_created_after_apply_is_covered() {
    require_kernel!();
    let dir = TempDir::new("child");
    let miner = fake_miner(&dir, "xmrig");
    let pool = listener(false);
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let profile = exec_profile(Action::Deny).rule(Rule::connect_ports(
        "pool-port",
        Action::Deny,
        [pool.local_addr().unwrap().port()],
    ));
    enforcer.apply(&profile, scope_of(&cg)).unwrap();

    let child = child_cgroup(&cg);
    let grandchild = child_cgroup(&child);
    let marker = dir.path().join("marker");
    assert_eq!(
        exec_in(Some(&grandchild), &miner, &marker),
        denied_exec(&enforcer, Action::Deny)
    );
    assert!(!marker.exists());
    assert_eq!(
        connect_in(Some(&child), pool.local_addr().unwrap(), false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "miner-binary").expect("event");
    assert_eq!(
        ev.cgroup_id,
        grandchild.cgroup().id(),
        "event names the task's own cgroup"
    );
}

#[test]
fn audit_allows_and_reports() {
    require_kernel!();
    let dir = TempDir::new("audit");
    let miner = fake_miner(&dir, "xmrig");
    let pool = listener(false);
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let profile = exec_profile(Action::Audit).rule(Rule::connect_ports(
        "pool-port",
        Action::Audit,
        [pool.local_addr().unwrap().port()],
    ));
    enforcer.apply(&profile, scope_of(&cg)).unwrap();

    let marker = dir.path().join("marker");
    assert_eq!(exec_in(Some(&cg), &miner, &marker), ExecOutcome::Exited(0));
    assert!(marker.exists());
    assert_eq!(
        connect_in(Some(&cg), pool.local_addr().unwrap(), false),
        ConnectOutcome::Connected
    );

    let exec =
        wait_event(&enforcer, |e| e.rule.as_ref() == "miner-binary").expect("exec audit event");
    assert_eq!(
        (exec.action, exec.requested),
        (Action::Audit, Action::Audit)
    );
    let conn =
        wait_event(&enforcer, |e| e.rule.as_ref() == "pool-port").expect("connect audit event");
    assert_eq!(conn.action, Action::Audit);
}

#[test]
fn profile_audit_mode_turns_deny_into_audit() {
    require_kernel!();
    let pool = listener(false);
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let profile = port_profile(Action::Deny, pool.local_addr().unwrap().port())
        .with_mode(minerguard::Mode::Audit);
    enforcer.apply(&profile, scope_of(&cg)).unwrap();
    assert_eq!(
        connect_in(Some(&cg), pool.local_addr().unwrap(), false),
        ConnectOutcome::Connected
    );
    let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "pool-port").expect("event");
    assert_eq!(ev.action, Action::Audit);
}

#[test]
fn kill_on_connect_kills_the_caller() {
    require_kernel!();
    let pool = listener(false);
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    enforcer
        .apply(
            &port_profile(Action::Kill, pool.local_addr().unwrap().port()),
            scope_of(&cg),
        )
        .unwrap();
    assert_eq!(
        connect_in(Some(&cg), pool.local_addr().unwrap(), false),
        ConnectOutcome::Signal(libc::SIGKILL)
    );
    let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "pool-port").expect("event");
    assert_eq!(ev.action, Action::Kill);
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
fn update_switches_policy_atomically() {
    require_kernel!();
    let old = listener(false);
    let new = listener(false);
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let h = enforcer
        .apply(
            &port_profile(Action::Deny, old.local_addr().unwrap().port()),
            scope_of(&cg),
        )
        .unwrap();
    assert_eq!(
        connect_in(Some(&cg), old.local_addr().unwrap(), false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    let updated = Profile::new("updated").rule(Rule::connect_ports(
        "new-port",
        Action::Deny,
        [new.local_addr().unwrap().port()],
    ));
    enforcer.update(h, &updated).unwrap();
    assert_eq!(
        connect_in(Some(&cg), old.local_addr().unwrap(), false),
        ConnectOutcome::Connected
    );
    assert_eq!(
        connect_in(Some(&cg), new.local_addr().unwrap(), false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "new-port").expect("event");
    assert_eq!(&*ev.profile, "updated");
}

#[test]
fn failed_apply_leaves_previous_state_intact() {
    require_kernel!();
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let h = enforcer
        .apply(&port_profile(Action::Deny, addr.port()), scope_of(&cg))
        .unwrap();

    // Same scope again: refused, existing policy untouched.
    let again = enforcer.apply(&port_profile(Action::Audit, addr.port()), scope_of(&cg));
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
    let bad = enforcer.apply(&port_profile(Action::Deny, 0), scope_of(&cg));
    match bad {
        Err(Error::Profile(e)) => assert_eq!(e.diagnostics()[0].field, "rules[0].connect.ports[0]"),
        other => panic!("expected a profile error, got {other:?}"),
    }
    // A failed update keeps the old policy.
    assert!(enforcer.update(h, &port_profile(Action::Deny, 0)).is_err());

    assert_eq!(enforcer.handles(), vec![h]);
    assert_eq!(
        connect_in(Some(&cg), addr, false),
        ConnectOutcome::Errno(libc::EPERM)
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
fn self_test_events_travel_the_whole_event_path() {
    require_kernel!();
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let h = enforcer
        .apply(&exec_profile(Action::Deny), scope_of(&cg))
        .unwrap();
    assert_eq!(enforcer.self_test_events(h, 500).unwrap(), 500);
    let evs = events_within(&enforcer, Duration::from_secs(2), |_| true);
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

/// A loopback TCP listener on a given address (any 127/8 address works).
fn listener_on(addr: &str) -> std::net::TcpListener {
    std::net::TcpListener::bind(addr).expect("bind loopback")
}

#[test]
fn cidr_rules_refuse_networks_v4_v6_and_v4_mapped() {
    require_kernel!();
    let denied = listener_on("127.0.0.2:0");
    let port = denied.local_addr().unwrap().port();
    let allowed = listener_on(&format!("127.0.0.1:{port}"));
    let v6 = listener(true);
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let profile = Profile::new("cidrs").rule(Rule::connect_cidrs(
        "pool-net",
        Action::Deny,
        ["127.0.0.2/32", "::1/128"],
    ));
    enforcer.apply(&profile, scope_of(&cg)).unwrap();

    let eperm = ConnectOutcome::Errno(libc::EPERM);
    assert_eq!(
        connect_in(Some(&cg), denied.local_addr().unwrap(), false),
        eperm
    );
    assert_eq!(
        connect_in(Some(&cg), denied.local_addr().unwrap(), true),
        eperm,
        "v4-mapped"
    );
    assert_eq!(
        connect_in(Some(&cg), v6.local_addr().unwrap(), false),
        eperm,
        "::1"
    );
    assert_eq!(
        connect_in(Some(&cg), allowed.local_addr().unwrap(), false),
        ConnectOutcome::Connected,
        "same port, address outside the network"
    );
    assert_eq!(
        connect_in(None, denied.local_addr().unwrap(), false),
        ConnectOutcome::Connected
    );
    let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "pool-net").expect("event");
    assert_eq!(ev.action, Action::Deny);
}

#[test]
fn a_wide_cidr_and_a_stronger_port_rule_combine() {
    require_kernel!();
    let pool = listener(false);
    let other = listener(false);
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let profile = Profile::new("mix")
        .rule(Rule::connect_cidrs(
            "loopback-audit",
            Action::Audit,
            ["127.0.0.0/8"],
        ))
        .rule(Rule::connect_ports(
            "pool-port",
            Action::Deny,
            [pool.local_addr().unwrap().port()],
        ));
    enforcer.apply(&profile, scope_of(&cg)).unwrap();
    // Both match: the stronger (deny) decides.
    assert_eq!(
        connect_in(Some(&cg), pool.local_addr().unwrap(), false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    // Only the audit network matches: allowed and reported.
    assert_eq!(
        connect_in(Some(&cg), other.local_addr().unwrap(), false),
        ConnectOutcome::Connected
    );
    let evs = events_within(&enforcer, Duration::from_secs(1), |_| true);
    let rules: Vec<&str> = evs.iter().map(|e| e.rule.as_ref()).collect();
    assert_eq!(rules, ["pool-port", "loopback-audit"], "{evs:?}");
}

#[test]
fn udp_sendto_a_denied_destination_fails_with_eperm() {
    require_kernel!();
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let sink6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
    let open = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (p4, p6) = (
        sink.local_addr().unwrap().port(),
        sink6.local_addr().unwrap().port(),
    );
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    enforcer
        .apply(
            &Profile::new("udp").rule(Rule::connect_ports("pool-port", Action::Deny, [p4, p6])),
            scope_of(&cg),
        )
        .unwrap();
    let eperm = ConnectOutcome::Errno(libc::EPERM);
    assert_eq!(
        net_in(
            Some(&cg),
            sink.local_addr().unwrap(),
            false,
            NetOp::UdpSendto
        ),
        eperm
    );
    assert_eq!(
        net_in(
            Some(&cg),
            sink.local_addr().unwrap(),
            true,
            NetOp::UdpSendto
        ),
        eperm,
        "v4-mapped"
    );
    assert_eq!(
        net_in(
            Some(&cg),
            sink6.local_addr().unwrap(),
            false,
            NetOp::UdpSendto
        ),
        eperm,
        "IPv6"
    );
    assert_eq!(
        net_in(
            Some(&cg),
            open.local_addr().unwrap(),
            false,
            NetOp::UdpSendto
        ),
        ConnectOutcome::Connected
    );
    assert_eq!(
        net_in(None, sink.local_addr().unwrap(), false, NetOp::UdpSendto),
        ConnectOutcome::Connected
    );
    let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "pool-port").expect("event");
    match ev.target {
        Target::Connect { protocol, .. } => assert_eq!(protocol, minerguard::events::Protocol::Udp),
        t => panic!("{t:?}"),
    }
}

const STRATUM_SUBSCRIBE: &[u8] =
    b"{\"id\": 1, \"method\": \"mining.subscribe\", \"params\": [\"cpuminer/2.5\"]}\n";
const XMRIG_LOGIN: &[u8] =
    b"  {\"params\":{\"login\":\"wallet\",\"pass\":\"x\",\"agent\":\"XMRig/6.21\"},\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"login\"}\n";
/// Stratum V2 SetupConnection: ext 0x0000, type 0x00, length, protocol 0,
/// min/max version 2, flags, then (truncated) strings.
const SV2_SETUP: &[u8] = &[
    0, 0, 0, 0x20, 0, 0, 0, 2, 0, 2, 0, 1, 0, 0, 0, 9, b'1', b'2', b'7',
];
const HTTP_GET: &[u8] = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n";

fn stratum_profile(action: Action) -> Profile {
    Profile::new("stratum").rule(Rule::stratum(
        "stratum-protocol",
        action,
        Vec::<String>::new(),
    ))
}

/// A fresh cgroup and an enforcer applying the `deny` stratum profile there.
fn stratum_scope() -> (minerguard::cgroup::OwnedCgroup, Enforcer) {
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    enforcer
        .apply(&stratum_profile(Action::Deny), scope_of(&cg))
        .unwrap();
    (cg, enforcer)
}

#[test]
fn stratum_sk_msg_is_loaded_only_where_sends_can_bypass_the_lsm_hook() {
    require_kernel!();
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let not_yet = enforcer.stratum_sk_msg().unwrap_err();
    assert!(not_yet.contains("not loaded yet"), "{not_yet}");
    enforcer
        .apply(&stratum_profile(Action::Deny), scope_of(&cg))
        .unwrap();
    let lsm = enforcer.backend() == minerguard::BackendKind::Lsm;
    // The cgroup backend always judges in sk_msg; the lsm backend only
    // before 6.5, where sendfile and splice bypass its hook.
    match enforcer.stratum_sk_msg() {
        Ok(()) => assert!(!lsm_judges_every_send(lsm), "lsm on 6.5+ tracks sockets"),
        Err(why) => {
            assert!(lsm_judges_every_send(lsm), "{why}");
            assert!(why.contains("every send reaches"), "{why}");
            assert_eq!(enforcer.lsm_stratum(), Ok(()));
            assert_eq!(enforcer.stratum_errno(), libc::EPERM);
            assert_eq!(enforcer.fast_open(), Ok(()));
        }
    }
}

#[test]
fn stratum_first_message_is_refused_on_any_port() {
    require_kernel!();
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    let (cg, enforcer) = stratum_scope();

    for (payload, sig) in [
        (STRATUM_SUBSCRIBE, minerguard::events::StratumSignature::V1),
        (XMRIG_LOGIN, minerguard::events::StratumSignature::Login),
        (SV2_SETUP, minerguard::events::StratumSignature::V2),
    ] {
        assert_eq!(
            send_in(Some(&cg), addr, &[payload]),
            SendOutcome::SendFailed {
                index: 0,
                errno: enforcer.stratum_errno()
            },
            "{sig:?}"
        );
        let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "stratum-protocol").expect("event");
        assert_eq!(ev.action, Action::Deny);
        match ev.target {
            Target::Stratum {
                addr: to,
                signature,
            } => {
                assert_eq!(signature, sig);
                assert_eq!(to, addr, "the event names the pool");
            }
            t => panic!("expected a stratum target, got {t:?}"),
        }
    }
    assert!(
        received(&pool).is_empty(),
        "no Stratum byte reached the pool"
    );

    // Outside the scope the same bytes go through.
    assert_eq!(
        send_in(None, addr, &[STRATUM_SUBSCRIBE]),
        SendOutcome::AllSent
    );
    assert!(received(&pool).starts_with(b"{\"id\": 1"));
}

#[test]
fn stratum_is_refused_whatever_call_sends_it_and_however_it_is_split() {
    require_kernel!();
    let (cg, enforcer) = stratum_scope();
    // EPERM from the lsm socket_sendmsg hook, EACCES from sk_msg.
    let refused = ChildEnd::Code(100 + enforcer.stratum_errno());
    if enforcer.backend() == minerguard::BackendKind::Lsm {
        assert_eq!(
            enforcer.stratum_errno(),
            libc::EPERM,
            "lsm judges Stratum itself"
        );
    }
    for (payload, method) in [
        (STRATUM_SUBSCRIBE, &b"mining.subscribe"[..]),
        (XMRIG_LOGIN, &b"\"method\":\"login\""[..]),
        (SV2_SETUP, &SV2_SETUP[..11]),
    ] {
        let vias = [
            (1, SendVia::Send),
            (3, SendVia::Write),
            (7, SendVia::Writev),
            (payload.len(), SendVia::Send),
            (payload.len(), SendVia::Sendto),
            (payload.len(), SendVia::Sendmsg),
            (payload.len(), SendVia::Write),
            (payload.len(), SendVia::Writev),
        ];
        for (chunk, via) in vias {
            let pool = listener(false);
            let addr = pool.local_addr().unwrap();
            assert_eq!(
                send_chunks_in(Some(&cg), addr, payload, chunk, via),
                refused,
                "{} in {chunk}-byte {via:?} calls",
                String::from_utf8_lossy(payload)
            );
            let got = received(&pool);
            assert!(
                !got.windows(method.len()).any(|w| w == method),
                "the pool got the whole method: {:?}",
                String::from_utf8_lossy(&got)
            );
            // Outside the scope the same sends go through.
            assert_eq!(
                send_chunks_in(None, addr, payload, chunk, via),
                ChildEnd::Code(0)
            );
            assert!(received(&pool).ends_with(payload));
        }
    }
    let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "stratum-protocol").expect("event");
    assert!(ev.pid > 0, "{ev:?}");
    // A clean protocol sent byte by byte, and JSON that is not Stratum,
    // pass whole.
    for payload in [
        HTTP_GET,
        &b"{\"id\":1,\"method\":\"eth_blockNumber\",\"params\":[]}"[..],
    ] {
        let server = listener(false);
        let addr = server.local_addr().unwrap();
        assert_eq!(
            send_chunks_in(Some(&cg), addr, payload, 1, SendVia::Send),
            ChildEnd::Code(0)
        );
        assert_eq!(received(&server), payload);
    }
}

#[test]
fn stratum_sent_with_sendfile_is_refused() {
    require_kernel!();
    let (cg, enforcer) = stratum_scope();
    let dir = TempDir::new("sendfile");
    let method = &b"mining.subscribe"[..];
    let (head, tail) = STRATUM_SUBSCRIBE.split_at(12);
    // sendfile bypasses socket_sendmsg before 6.5 (sendpage): the sk_msg
    // program judges it on both backends, and refuses the call that
    // completes the method (EACCES), also when part of the message went
    // out through send() (judged by the lsm hook too) before or after.
    // From 6.5 on it reaches the lsm hook as pages, which judges it alone
    // (EPERM), and the cgroup backend's sk_msg program (EACCES).
    let refused = match enforcer.stratum_sk_msg() {
        Ok(()) => libc::EACCES,
        Err(why) => {
            assert!(why.contains("every send"), "{why}");
            libc::EPERM
        }
    };
    for parts in [
        &[Part::Sendfile(STRATUM_SUBSCRIBE)][..],
        &[Part::Send(head), Part::Sendfile(tail)],
        &[Part::Sendfile(head), Part::Send(tail)],
    ] {
        let pool = listener(false);
        let addr = pool.local_addr().unwrap();
        assert_eq!(
            send_parts_in(Some(&cg), addr, parts, dir.path()),
            ChildEnd::Code(100 + refused),
            "{parts:?}"
        );
        let got = received(&pool);
        assert!(
            !got.windows(method.len()).any(|w| w == method),
            "the pool got the whole method: {:?}",
            String::from_utf8_lossy(&got)
        );
        let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "stratum-protocol").expect("event");
        assert!(
            matches!(ev.target, Target::Stratum { addr: to, .. } if to == addr),
            "{ev:?}"
        );
        // Outside the scope the same calls go through.
        assert_eq!(
            send_parts_in(None, addr, parts, dir.path()),
            ChildEnd::Code(0)
        );
        assert!(received(&pool).ends_with(tail));
    }
    // A clean file served with sendfile passes.
    let server = listener(false);
    let addr = server.local_addr().unwrap();
    assert_eq!(
        send_parts_in(Some(&cg), addr, &[Part::Sendfile(HTTP_GET)], dir.path()),
        ChildEnd::Code(0)
    );
    assert_eq!(received(&server), HTTP_GET);
}

#[test]
fn stratum_in_a_tcp_fast_open_syn_is_refused() {
    require_kernel!();
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let not_yet = enforcer.fast_open().unwrap_err();
    assert!(not_yet.contains("not loaded yet"), "{not_yet}");
    enforcer
        .apply(&stratum_profile(Action::Deny), scope_of(&cg))
        .unwrap();
    enforcer
        .fast_open()
        .expect("Fast Open payloads are judged on this kernel");
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    assert_eq!(
        fast_open_send_in(Some(&cg), addr, STRATUM_SUBSCRIBE, None),
        ChildEnd::Code(100 + libc::EPERM)
    );
    assert!(received(&pool).is_empty(), "the pool got a connection");
    let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "stratum-protocol").expect("event");
    match ev.target {
        Target::Stratum {
            addr: to,
            signature,
        } => {
            assert_eq!(to, addr);
            assert_eq!(signature, minerguard::events::StratumSignature::V1);
        }
        ref t => panic!("{t:?}"),
    }
    assert!(ev.pid > 0, "{ev:?}");
    // Clean Fast Open in the scope, and Stratum outside it, go through.
    assert_eq!(
        fast_open_send_in(Some(&cg), addr, HTTP_GET, None),
        ChildEnd::Code(0)
    );
    assert_eq!(received(&pool), HTTP_GET);
    assert_eq!(
        fast_open_send_in(None, addr, STRATUM_SUBSCRIBE, None),
        ChildEnd::Code(0)
    );
    assert_eq!(received(&pool), STRATUM_SUBSCRIBE);
    // A payload in an untouched file mapping: the lsm socket_sendmsg hook
    // faults it in and judges it (Stratum refused, clean passes); the
    // syscall tracepoint cannot, and refuses it unjudged.
    let dir = TempDir::new("tfo");
    let file = dir.path().join("payload");
    let (payload, signature) = if enforcer.stratum_errno() == libc::EPERM {
        assert_eq!(
            fast_open_send_in(Some(&cg), addr, HTTP_GET, Some(&file)),
            ChildEnd::Code(0)
        );
        assert_eq!(received(&pool), HTTP_GET);
        (STRATUM_SUBSCRIBE, minerguard::events::StratumSignature::V1)
    } else {
        (HTTP_GET, minerguard::events::StratumSignature::Unreadable)
    };
    assert_eq!(
        fast_open_send_in(Some(&cg), addr, payload, Some(&file)),
        ChildEnd::Code(100 + libc::EPERM)
    );
    assert!(received(&pool).is_empty(), "the pool got a connection");
    let ev = wait_event(
        &enforcer,
        |e| matches!(e.target, Target::Stratum { signature: s, .. } if s == signature),
    );
    assert!(ev.is_some(), "a {signature:?} event");
    // A refused send leaves nothing behind: the same thread's next connect
    // in the scope works.
    assert_eq!(
        connect_in(Some(&cg), addr, false),
        ConnectOutcome::Connected
    );
}

#[test]
fn clean_first_message_passes_and_the_socket_is_not_judged_again() {
    require_kernel!();
    let server = listener(false);
    let addr = server.local_addr().unwrap();
    let (cg, enforcer) = stratum_scope();
    // Only a socket's first bytes are judged: later sends cost nothing.
    assert_eq!(
        send_in(Some(&cg), addr, &[HTTP_GET, STRATUM_SUBSCRIBE]),
        SendOutcome::AllSent
    );
    let got = received(&server);
    assert!(
        got.starts_with(HTTP_GET),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // JSON that is not Stratum passes too.
    assert_eq!(
        send_in(
            Some(&cg),
            addr,
            &[b"{\"id\":1,\"method\":\"eth_blockNumber\",\"params\":[]}"]
        ),
        SendOutcome::AllSent
    );
    assert!(events_within(&enforcer, Duration::from_millis(500), |_| true).is_empty());
}

#[test]
fn judged_sockets_leave_the_stratum_send_path() {
    require_kernel!();
    use std::io::{Read, Write};
    let (cg, enforcer) = stratum_scope();
    let server = listener(false);
    let addr = server.local_addr().unwrap();
    let (storage, len, family) = sockaddr_of(addr);
    assert_eq!(enforcer.released_sockets(), 0);
    // Where the lsm hook alone judges, no socket is tracked: it judges a
    // socket once and then returns after one socket-storage lookup.
    let tracked = u64::from(enforcer.stratum_sk_msg().is_ok());
    std::thread::scope(|s| {
        // The client: a clean first message, then it waits for the
        // server's go before sending more on the same socket.
        let client = s.spawn(|| {
            fork_in(Some(&cg), || unsafe {
                let fd = libc::socket(family, libc::SOCK_STREAM, 0);
                if fd < 0
                    || libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len)
                        != 0
                {
                    return 99;
                }
                let mut go = [0u8; 1];
                if libc::send(fd, HTTP_GET.as_ptr().cast(), HTTP_GET.len(), 0)
                    != HTTP_GET.len() as isize
                    || libc::recv(fd, go.as_mut_ptr().cast(), 1, 0) != 1
                {
                    return 98;
                }
                // Judged already: later bytes are not looked at.
                if libc::send(
                    fd,
                    STRATUM_SUBSCRIBE.as_ptr().cast(),
                    STRATUM_SUBSCRIBE.len(),
                    0,
                ) != STRATUM_SUBSCRIBE.len() as isize
                {
                    return 97;
                }
                0
            })
        });
        let mut conn = accept_within(&server);
        let mut first = vec![0u8; HTTP_GET.len()];
        conn.read_exact(&mut first).unwrap();
        assert_eq!(first, HTTP_GET);
        // The event thread takes the judged socket out of the sockhash.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while enforcer.released_sockets() < tracked && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            enforcer.released_sockets(),
            tracked,
            "the judged socket left the sockhash"
        );
        conn.write_all(b"g").unwrap();
        let mut rest = vec![0u8; STRATUM_SUBSCRIBE.len()];
        conn.read_exact(&mut rest).unwrap();
        assert_eq!(rest, STRATUM_SUBSCRIBE);
        assert_eq!(client.join().unwrap(), ChildEnd::Code(0));
    });
    // A refused socket stays where it is (every later send is refused).
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    assert_eq!(
        send_in(Some(&cg), addr, &[STRATUM_SUBSCRIBE]),
        SendOutcome::SendFailed {
            index: 0,
            errno: enforcer.stratum_errno()
        }
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(enforcer.released_sockets(), tracked);
}

/// From a child in `cg`: connects to `addr`, sends a clean first message,
/// and keeps the socket open 300 ms (time for the enforcer to release it).
fn clean_long_lived_client(cg: &minerguard::cgroup::OwnedCgroup, addr: SocketAddr) -> ChildEnd {
    let (storage, len, family) = sockaddr_of(addr);
    fork_in(Some(cg), || unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM, 0);
        if fd < 0 || libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len) != 0
        {
            return 99;
        }
        if libc::send(fd, HTTP_GET.as_ptr().cast(), HTTP_GET.len(), 0) != HTTP_GET.len() as isize {
            return 98;
        }
        libc::usleep(300_000);
        0
    })
}

#[test]
fn only_scopes_with_a_stratum_rule_track_sockets() {
    require_kernel!();
    let server = listener(false);
    let addr = server.local_addr().unwrap();
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let ports = port_profile(Action::Deny, 9);
    let h = enforcer.apply(&ports, scope_of(&cg)).unwrap();
    // No stratum rule: the socket never enters the sk_msg send path, so
    // there is nothing to release.
    assert_eq!(clean_long_lived_client(&cg, addr), ChildEnd::Code(0));
    assert_eq!(enforcer.released_sockets(), 0);
    // An update that adds one starts tracking before the switch (except
    // where the lsm hook alone judges: nothing is tracked there).
    enforcer.update(h, &stratum_profile(Action::Deny)).unwrap();
    let tracked = u64::from(enforcer.stratum_sk_msg().is_ok());
    assert_eq!(clean_long_lived_client(&cg, addr), ChildEnd::Code(0));
    assert_eq!(enforcer.released_sockets(), tracked);
    assert_eq!(
        send_in(Some(&cg), addr, &[STRATUM_SUBSCRIBE]),
        SendOutcome::SendFailed {
            index: 0,
            errno: enforcer.stratum_errno()
        }
    );
    // And one that drops it stops tracking.
    enforcer.update(h, &ports).unwrap();
    assert_eq!(clean_long_lived_client(&cg, addr), ChildEnd::Code(0));
    assert_eq!(enforcer.released_sockets(), tracked);
    assert_eq!(
        send_in(Some(&cg), addr, &[STRATUM_SUBSCRIBE]),
        SendOutcome::AllSent
    );
}

#[test]
fn stratum_kill_and_audit() {
    require_kernel!();
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    let killed = test_cgroup();
    let audited = test_cgroup();
    let mut enforcer = enforcer();
    enforcer
        .apply(&stratum_profile(Action::Kill), scope_of(&killed))
        .unwrap();
    enforcer
        .apply(&stratum_profile(Action::Audit), scope_of(&audited))
        .unwrap();
    assert_eq!(
        send_in(Some(&killed), addr, &[STRATUM_SUBSCRIBE]),
        SendOutcome::Signal(libc::SIGKILL)
    );
    assert_eq!(
        send_in(Some(&audited), addr, &[STRATUM_SUBSCRIBE]),
        SendOutcome::AllSent
    );
    let evs = events_within(&enforcer, Duration::from_secs(1), |_| true);
    let actions: Vec<Action> = evs.iter().map(|e| e.action).collect();
    assert_eq!(actions, [Action::Kill, Action::Audit], "{evs:?}");
}

/// What a refused exec looks like from a forked child, with this backend.
fn denied_fork(enforcer: &Enforcer, requested: Action) -> ForkOutcome {
    match enforcer.effective_action(RuleKind::Exec, requested) {
        Action::Kill => ForkOutcome::Signal(libc::SIGKILL),
        _ => ForkOutcome::ExecFailed(libc::EPERM),
    }
}

#[test]
fn exec_files_follow_the_inode_through_renames_and_hard_links() {
    require_kernel!();
    let dir = TempDir::new("files");
    let miner = fake_miner(&dir, "innocent-name");
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let profile = Profile::new("files").rule(Rule::exec_files(
        "known-miner",
        Action::Deny,
        [miner.to_str().unwrap()],
    ));
    enforcer.apply(&profile, scope_of(&cg)).unwrap();
    let denied = denied_exec(&enforcer, Action::Deny);

    let marker = dir.path().join("m1");
    assert_eq!(
        exec_in(Some(&cg), &miner, &marker),
        denied,
        "the file itself"
    );
    let link = dir.path().join("hard-link");
    std::fs::hard_link(&miner, &link).unwrap();
    assert_eq!(exec_in(Some(&cg), &link, &marker), denied, "a hard link");
    let renamed = dir.path().join("renamed");
    std::fs::rename(&miner, &renamed).unwrap();
    assert_eq!(
        exec_in(Some(&cg), &renamed, &marker),
        denied,
        "after a rename"
    );
    assert!(!marker.exists());
    // A copy is another inode: it runs.
    let copy = fake_miner(&dir, "copy");
    assert_eq!(exec_in(Some(&cg), &copy, &marker), ExecOutcome::Exited(0));
    let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "known-miner").expect("event");
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
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let profile = Profile::new("dirs").rule(Rule::exec_dirs(
        "scratch-dir-exec",
        Action::Deny,
        [scratch.path().to_str().unwrap()],
    ));
    enforcer.apply(&profile, scope_of(&cg)).unwrap();
    let denied = denied_exec(&enforcer, Action::Deny);
    let marker = outside.path().join("marker");
    assert_eq!(
        exec_in(Some(&cg), &deep, &marker),
        denied,
        "two levels down"
    );
    assert_eq!(
        exec_in(Some(&cg), &via_symlink, &marker),
        denied,
        "through a symlink"
    );
    assert!(!marker.exists());
    // The same program from elsewhere runs, inside and outside the scope.
    assert_eq!(
        exec_in(Some(&cg), std::path::Path::new("/usr/bin/touch"), &marker),
        ExecOutcome::Exited(0)
    );
    assert_eq!(
        exec_in(None, &deep, &outside.path().join("m2")),
        ExecOutcome::Exited(0)
    );
}

#[test]
fn fileless_exec_from_memfd_or_deleted_file_is_stopped() {
    require_kernel!();
    let scratch = TempDir::new("fileless");
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    enforcer
        .apply(
            &Profile::new("fileless").rule(Rule::exec_memfd("fileless-exec", Action::Deny)),
            scope_of(&cg),
        )
        .unwrap();
    let marker = scratch.path().join("marker");
    let args = [marker.to_str().unwrap()];
    let touch = std::path::Path::new("/usr/bin/touch");
    for how in [Fileless::Memfd, Fileless::DeletedFile] {
        assert_eq!(
            fileless_exec_in(Some(&cg), touch, &args, how, &scratch),
            denied_fork(&enforcer, Action::Deny),
            "{how:?}"
        );
        assert!(!marker.exists(), "{how:?} ran");
        let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "fileless-exec").expect("event");
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
        exec_in(Some(&cg), touch, &scratch.path().join("m2")),
        ExecOutcome::Exited(0)
    );
}

#[test]
fn a_handle_from_another_enforcer_is_refused() {
    require_kernel!();
    let pool = listener(false);
    let (a_cg, b_cg) = (test_cgroup(), test_cgroup());
    let mut a = enforcer();
    let mut b = enforcer();
    let profile = port_profile(Action::Deny, pool.local_addr().unwrap().port());
    let ha = a.apply(&profile, scope_of(&a_cg)).unwrap();
    let hb = b.apply(&profile, scope_of(&b_cg)).unwrap();
    assert_ne!(ha, hb);
    assert!(matches!(
        b.remove(ha),
        Err(Error::Scope(minerguard::error::ScopeError::UnknownHandle(
            _
        )))
    ));
    // b's own scope is untouched.
    assert_eq!(
        connect_in(Some(&b_cg), pool.local_addr().unwrap(), false),
        ConnectOutcome::Errno(libc::EPERM)
    );
}

#[test]
fn domain_rules_refuse_the_resolved_addresses_and_name_the_domain() {
    require_kernel!();
    // /etc/hosts resolves `localhost` without DNS (there is no network here).
    let pool = listener_on("127.0.0.1:0");
    let port = pool.local_addr().unwrap().port();
    let elsewhere = listener_on(&format!("127.0.0.2:{port}"));
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let profile = Profile::new("domains").rule(Rule::connect_domains(
        "pool-domain",
        Action::Deny,
        ["localhost"],
    ));
    let h = enforcer.apply(&profile, scope_of(&cg)).unwrap();
    assert!(enforcer.unresolved_domains(h).unwrap().is_empty());
    assert_eq!(
        connect_in(Some(&cg), pool.local_addr().unwrap(), false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    assert_eq!(
        connect_in(Some(&cg), elsewhere.local_addr().unwrap(), false),
        ConnectOutcome::Connected,
        "an address the domain does not resolve to"
    );
    let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "pool-domain").expect("event");
    assert_eq!(ev.domain.as_deref(), Some("localhost"));
    // Nothing changed in DNS: a refresh swaps nothing.
    assert_eq!(enforcer.refresh_domains().unwrap(), 0);
    assert_eq!(
        connect_in(Some(&cg), pool.local_addr().unwrap(), false),
        ConnectOutcome::Errno(libc::EPERM)
    );
}

#[test]
fn domains_follow_the_hosts_file_and_a_refresh_swaps_in_the_new_address() {
    require_kernel!();
    let old = listener_on("127.0.0.5:0");
    let port = old.local_addr().unwrap().port();
    let new = listener_on(&format!("127.0.0.6:{port}"));
    let (old, new) = (old.local_addr().unwrap(), new.local_addr().unwrap());
    let dir = TempDir::new("hosts");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.5 pool.minerguard.test\n").unwrap();
    // The test's own /etc/hosts: a thread with a private mount namespace
    // (nothing leaks to the host's) where a temp file is bound over it; the
    // enforcer resolves in the calling thread, so it reads that file.
    std::thread::spawn(move || {
        unsafe {
            assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare");
            let root = c"/";
            let none: *const libc::c_char = std::ptr::null();
            assert_eq!(
                libc::mount(
                    none,
                    root.as_ptr(),
                    none,
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null()
                ),
                0
            );
            let src = std::ffi::CString::new(hosts.to_str().unwrap()).unwrap();
            assert_eq!(
                libc::mount(
                    src.as_ptr(),
                    c"/etc/hosts".as_ptr(),
                    none,
                    libc::MS_BIND,
                    std::ptr::null()
                ),
                0,
                "bind mount: {}",
                std::io::Error::last_os_error()
            );
        }
        let cg = test_cgroup();
        let mut enforcer = enforcer();
        let profile = Profile::new("domains").rule(Rule::connect_domains(
            "pool-domain",
            Action::Deny,
            ["pool.minerguard.test"],
        ));
        enforcer.apply(&profile, scope_of(&cg)).unwrap();
        let eperm = ConnectOutcome::Errno(libc::EPERM);
        assert_eq!(connect_in(Some(&cg), old, false), eperm);
        assert_eq!(connect_in(Some(&cg), new, false), ConnectOutcome::Connected);
        // The name moves (same file, rewritten in place: the bind stays).
        std::fs::write(&hosts, "127.0.0.6 pool.minerguard.test\n").unwrap();
        assert_eq!(enforcer.refresh_domains().unwrap(), 1);
        assert_eq!(connect_in(Some(&cg), new, false), eperm, "the new address");
        assert_eq!(
            connect_in(Some(&cg), old, false),
            ConnectOutcome::Connected,
            "the old one"
        );
        let ev = wait_event(
            &enforcer,
            |e| matches!(e.target, Target::Connect { addr, .. } if addr == new),
        )
        .expect("event for the new address");
        assert_eq!(ev.domain.as_deref(), Some("pool.minerguard.test"));
        assert_eq!(ev.rule.as_ref(), "pool-domain");
        // The entry is removed: nothing to refuse, and it is reported.
        std::fs::write(&hosts, "").unwrap();
        assert_eq!(enforcer.refresh_domains().unwrap(), 1);
        assert_eq!(connect_in(Some(&cg), new, false), ConnectOutcome::Connected);
        let h = enforcer.handles()[0];
        assert_eq!(
            enforcer.unresolved_domains(h).unwrap(),
            ["pool.minerguard.test"]
        );
    })
    .join()
    .expect("the test thread passed");
}

/// errno of open(2) on `path` from a child in `cgroup` (0: opened).
fn open_in(cgroup: Option<&minerguard::cgroup::OwnedCgroup>, path: &std::path::Path) -> i32 {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    match fork_in(cgroup, || unsafe {
        if libc::open(c.as_ptr(), libc::O_RDONLY) >= 0 {
            0
        } else {
            *libc::__errno_location()
        }
    }) {
        ChildEnd::Code(c) => c,
        ChildEnd::Signal(s) => -s,
    }
}

#[test]
fn msr_device_opens_are_refused() {
    require_kernel!();
    let dir = TempDir::new("msr");
    // A node for CPU 0's MSR device (char 202:0), wherever the test likes.
    let node = dir.path().join("msr0");
    let c = std::ffi::CString::new(node.to_str().unwrap()).unwrap();
    assert_eq!(
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(202, 0)) },
        0
    );
    let null = std::path::Path::new("/dev/null");
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let h = enforcer
        .apply(
            &Profile::new("msr").rule(Rule::open_msr("msr-access", Action::Deny)),
            scope_of(&cg),
        )
        .unwrap();
    assert!(
        enforcer.unenforced(h).unwrap().is_empty(),
        "open.msr is enforced here"
    );
    assert_eq!(open_in(Some(&cg), &node), libc::EPERM);
    assert_ne!(
        open_in(None, &node),
        libc::EPERM,
        "outside the scope the device cgroup allows it"
    );
    assert_eq!(open_in(Some(&cg), null), 0, "other devices still open");
    let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "msr-access").expect("event");
    assert_eq!(
        ev.target,
        Target::Device {
            major: 202,
            minor: 0
        }
    );
    assert!(ev.pid > 0 && ev.cgroup_id == cg.cgroup().id(), "{ev:?}");
}

#[test]
fn a_pool_url_on_the_command_line_is_killed_before_the_program_runs() {
    require_kernel!();
    let dir = TempDir::new("cmdline");
    let marker = dir.path().join("marker");
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let profile = Profile::new("cmdline").rule(Rule::exec_cmdline(
        "miner-cmdline",
        Action::Kill,
        ["stratum+tcp://", "--donate-level"],
    ));
    let h = enforcer.apply(&profile, scope_of(&cg)).unwrap();
    assert!(enforcer.unenforced(h).unwrap().is_empty());
    let sh = |args: &[&str]| {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", "touch \"$1\"", "sh", marker.to_str().unwrap()])
            .args(args);
        c
    };
    let status = run_in(
        Some(&cg),
        &mut sh(&["-o", "stratum+tcp://pool.example:3333"]),
    )
    .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(!marker.exists(), "the program ran");
    let status = run_in(Some(&cg), &mut sh(&["--donate-level=1"])).unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    // Other arguments, and the same arguments outside the scope, run.
    assert!(run_in(Some(&cg), &mut sh(&["-o", "https://example"]))
        .unwrap()
        .success());
    assert!(marker.exists());
    std::fs::remove_file(&marker).unwrap();
    assert!(run_in(None, &mut sh(&["stratum+tcp://x"]))
        .unwrap()
        .success());
    assert!(marker.exists());
    let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "miner-cmdline").expect("event");
    assert_eq!(ev.action, Action::Kill);
}
