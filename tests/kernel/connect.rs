//! Connect rules: destination ports and CIDRs over IPv4, IPv6 and
//! v4-mapped IPv6, UDP `sendto` without connect, a pool in another network
//! namespace, and `kill`. Refused with EPERM inside the scope, reported as
//! events, allowed outside.

use std::{net::SocketAddr, time::Duration};

use minerguard::{Action, Profile, Rule, Target};

use crate::{common::*, listener_on, port_profile};

#[test]
fn connect_to_denied_port_fails_with_eperm_v4_v6_and_v4_mapped() {
    require_kernel!();
    let pool4 = listener(false);
    let pool6 = listener(true);
    let other = listener(false);
    let port4 = pool4.local_addr().unwrap().port();
    let port6 = pool6.local_addr().unwrap().port();
    let profile = Profile::new("test-ports").rule(Rule::connect_ports(
        "pool-port",
        Action::Deny,
        [port4, port6],
    ));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());

    let eperm = ConnectOutcome::Errno(libc::EPERM);
    let v4: SocketAddr = pool4.local_addr().unwrap();
    let v6: SocketAddr = pool6.local_addr().unwrap();
    assert_eq!(connect_in(Some(cg), v4, false), eperm, "IPv4");
    assert_eq!(connect_in(Some(cg), v6, false), eperm, "IPv6 ::1");
    assert_eq!(
        connect_in(Some(cg), v4, true),
        eperm,
        "v4-mapped ::ffff:127.0.0.1"
    );

    // Another port inside, and the denied ports outside, still connect.
    assert_eq!(
        connect_in(Some(cg), other.local_addr().unwrap(), false),
        ConnectOutcome::Connected
    );
    assert_eq!(connect_in(None, v4, false), ConnectOutcome::Connected);
    assert_eq!(connect_in(None, v6, false), ConnectOutcome::Connected);

    let events = events_within(enforcer, Duration::from_secs(2), |e| {
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
fn cidr_rules_refuse_networks_v4_v6_and_v4_mapped() {
    require_kernel!();
    let denied = listener_on("127.0.0.2:0");
    let port = denied.local_addr().unwrap().port();
    let allowed = listener_on(&format!("127.0.0.1:{port}"));
    let v6 = listener(true);
    let profile = Profile::new("cidrs").rule(Rule::connect_cidrs(
        "pool-net",
        Action::Deny,
        ["127.0.0.2/32", "::1/128"],
    ));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());

    let eperm = ConnectOutcome::Errno(libc::EPERM);
    assert_eq!(
        connect_in(Some(cg), denied.local_addr().unwrap(), false),
        eperm
    );
    assert_eq!(
        connect_in(Some(cg), denied.local_addr().unwrap(), true),
        eperm,
        "v4-mapped"
    );
    assert_eq!(
        connect_in(Some(cg), v6.local_addr().unwrap(), false),
        eperm,
        "::1"
    );
    assert_eq!(
        connect_in(Some(cg), allowed.local_addr().unwrap(), false),
        ConnectOutcome::Connected,
        "same port, address outside the network"
    );
    assert_eq!(
        connect_in(None, denied.local_addr().unwrap(), false),
        ConnectOutcome::Connected
    );
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "pool-net").expect("event");
    assert_eq!(ev.action, Action::Deny);
}

#[test]
fn a_wide_cidr_and_a_stronger_port_rule_combine() {
    require_kernel!();
    let pool = listener(false);
    let other = listener(false);
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
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    // Both match: the stronger (deny) decides.
    assert_eq!(
        connect_in(Some(cg), pool.local_addr().unwrap(), false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    // Only the audit network matches: allowed and reported.
    assert_eq!(
        connect_in(Some(cg), other.local_addr().unwrap(), false),
        ConnectOutcome::Connected
    );
    let evs = events_within(enforcer, Duration::from_secs(1), |_| true);
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
    let scoped = Scoped::apply(&Profile::new("udp").rule(Rule::connect_ports(
        "pool-port",
        Action::Deny,
        [p4, p6],
    )));
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let eperm = ConnectOutcome::Errno(libc::EPERM);
    assert_eq!(
        net_in(
            Some(cg),
            sink.local_addr().unwrap(),
            false,
            NetOp::UdpSendto
        ),
        eperm
    );
    assert_eq!(
        net_in(Some(cg), sink.local_addr().unwrap(), true, NetOp::UdpSendto),
        eperm,
        "v4-mapped"
    );
    assert_eq!(
        net_in(
            Some(cg),
            sink6.local_addr().unwrap(),
            false,
            NetOp::UdpSendto
        ),
        eperm,
        "IPv6"
    );
    assert_eq!(
        net_in(
            Some(cg),
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
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "pool-port").expect("event");
    match ev.target {
        Target::Connect { protocol, .. } => assert_eq!(protocol, minerguard::events::Protocol::Udp),
        t => panic!("{t:?}"),
    }
}

#[test]
fn a_pool_in_another_network_namespace_is_refused_by_port_and_cidr() {
    require_kernel!();
    let ns = TestNetns::new();
    let pool = ns.listener(0);
    let pool_addr = pool.local_addr().unwrap();
    let web = ns.listener(0);
    let web_addr = web.local_addr().unwrap();
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
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let eperm = ConnectOutcome::Errno(libc::EPERM);
    assert_eq!(connect_in(Some(cg), pool_addr, false), eperm);
    assert_eq!(connect_in(Some(cg), web_addr, false), eperm, "by CIDR");
    // Outside the scope both are reachable over the veth.
    assert_eq!(
        connect_in(None, pool_addr, false),
        ConnectOutcome::Connected
    );
    assert_eq!(connect_in(None, web_addr, false), ConnectOutcome::Connected);
    let evs = events_within(enforcer, Duration::from_secs(2), |_| true);
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
fn kill_on_connect_kills_the_caller() {
    require_kernel!();
    let pool = listener(false);
    let scoped = Scoped::apply(&port_profile(
        Action::Kill,
        pool.local_addr().unwrap().port(),
    ));
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    assert_eq!(
        connect_in(Some(cg), pool.local_addr().unwrap(), false),
        ConnectOutcome::Signal(libc::SIGKILL)
    );
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "pool-port").expect("event");
    assert_eq!(ev.action, Action::Kill);
}
