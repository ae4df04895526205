//! Domain rules: a domain is resolved to addresses at apply (here through
//! /etc/hosts, no DNS), connects to them are refused and the event names the
//! domain, and a refresh swaps in what the name resolves to now.

use minerguard::{Action, Profile, Rule, Target};

use crate::{common::*, listener_on};

#[test]
fn domain_rules_refuse_the_resolved_addresses_and_name_the_domain() {
    require_kernel!();
    // /etc/hosts resolves `localhost` without DNS (there is no network here).
    let pool = listener_on("127.0.0.1:0");
    let port = pool.local_addr().unwrap().port();
    let elsewhere = listener_on(&format!("127.0.0.2:{port}"));
    let profile = Profile::new("domains").rule(Rule::connect_domains(
        "pool-domain",
        Action::Deny,
        ["localhost"],
    ));
    let mut scoped = Scoped::apply(&profile);
    let h = scoped.handle();
    let (cg, enforcer) = scoped.cgroup_and_enforcer_mut();
    assert!(enforcer.unresolved_domains(h).unwrap().is_empty());
    assert_eq!(
        connect_in(Some(cg), pool.local_addr().unwrap(), false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    assert_eq!(
        connect_in(Some(cg), elsewhere.local_addr().unwrap(), false),
        ConnectOutcome::Connected,
        "an address the domain does not resolve to"
    );
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "pool-domain").expect("event");
    assert_eq!(ev.domain.as_deref(), Some("localhost"));
    // Nothing changed in DNS: a refresh swaps nothing.
    assert_eq!(enforcer.refresh_domains().unwrap(), 0);
    assert_eq!(
        connect_in(Some(cg), pool.local_addr().unwrap(), false),
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
        let profile = Profile::new("domains").rule(Rule::connect_domains(
            "pool-domain",
            Action::Deny,
            ["pool.minerguard.test"],
        ));
        let mut scoped = Scoped::apply(&profile);
        let (cg, enforcer) = scoped.cgroup_and_enforcer_mut();
        let eperm = ConnectOutcome::Errno(libc::EPERM);
        assert_eq!(connect_in(Some(cg), old, false), eperm);
        assert_eq!(connect_in(Some(cg), new, false), ConnectOutcome::Connected);
        // The name moves (same file, rewritten in place: the bind stays).
        std::fs::write(&hosts, "127.0.0.6 pool.minerguard.test\n").unwrap();
        assert_eq!(enforcer.refresh_domains().unwrap(), 1);
        assert_eq!(connect_in(Some(cg), new, false), eperm, "the new address");
        assert_eq!(
            connect_in(Some(cg), old, false),
            ConnectOutcome::Connected,
            "the old one"
        );
        let ev = wait_event(
            enforcer,
            |e| matches!(e.target, Target::Connect { addr, .. } if addr == new),
        )
        .expect("event for the new address");
        assert_eq!(ev.domain.as_deref(), Some("pool.minerguard.test"));
        assert_eq!(ev.rule.as_ref(), "pool-domain");
        // The entry is removed: nothing to refuse, and it is reported.
        std::fs::write(&hosts, "").unwrap();
        assert_eq!(enforcer.refresh_domains().unwrap(), 1);
        assert_eq!(connect_in(Some(cg), new, false), ConnectOutcome::Connected);
        let h = enforcer.handles()[0];
        assert_eq!(
            enforcer.unresolved_domains(h).unwrap(),
            ["pool.minerguard.test"]
        );
    })
    .join()
    .expect("the test thread passed");
}
