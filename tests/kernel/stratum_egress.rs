//! The egress Stratum judge of the cgroup backend
//! (`CgroupStratumJudge::Egress`, #25): the packets each socket of a
//! stratum scope sends are read on `cgroup_skb/egress`; the one that
//! completes a mining method is dropped, and every later one of its socket.
//! What is asserted is what the pool gets: the bytes before the method, and
//! nothing of it. Runs on the cgroup backend whatever the backend under
//! test is (the option is the cgroup backend's).

use minerguard::{
    cgroup::OwnedCgroup, events::StratumSignature, Action, BackendChoice, CgroupStratumJudge,
    CheckStatus, Enforcer, EnforcerOptions, Profile, Rule, Target,
};

use crate::common::*;

const HELLO: &[u8] = b"{\"id\": 0, \"method\": \"client.hello\", \"params\": []}\n";
const STRATUM_SUBSCRIBE: &[u8] =
    b"{\"id\": 1, \"method\": \"mining.subscribe\", \"params\": [\"cpuminer/2.5\"]}\n";
const XMRIG_LOGIN: &[u8] =
    b"{\"params\":{\"login\":\"wallet\",\"pass\":\"x\",\"agent\":\"XMRig/6.21\"},\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"login\"}\n";
/// Stratum V2 SetupConnection (see stratum.rs).
const SV2_SETUP: &[u8] = &[
    0, 0, 0, 0x20, 0, 0, 0, 2, 0, 2, 0, 1, 0, 0, 0, 9, b'1', b'2', b'7',
];

/// An enforcer on the cgroup backend with the egress judge.
fn egress_enforcer() -> Enforcer {
    Enforcer::with_options(EnforcerOptions {
        backend: BackendChoice::Cgroup,
        cgroup_stratum_judge: CgroupStratumJudge::Egress,
        ..Default::default()
    })
    .expect("enforcer loads")
}

/// One rule, `stratum-protocol`, with `action`.
fn stratum_profile(action: Action) -> Profile {
    Profile::new("stratum").rule(Rule::stratum(
        "stratum-protocol",
        action,
        Vec::<String>::new(),
    ))
}

/// An egress-judge enforcer with `action`'s stratum rule applied to a
/// fresh cgroup.
fn egress_scope(action: Action) -> (OwnedCgroup, Enforcer) {
    let cg = test_cgroup();
    let mut enforcer = egress_enforcer();
    enforcer
        .apply(&stratum_profile(action), scope_of(&cg))
        .expect("apply");
    (cg, enforcer)
}

/// What the pool's first connection got before it ended (within 2 s), and
/// how it ended: `None` for a close (or nothing more in 2 s), else the
/// error (a reset).
fn received_until_end(pool: &std::net::TcpListener) -> (Vec<u8>, Option<std::io::ErrorKind>) {
    use std::io::Read;
    pool.set_nonblocking(false).unwrap();
    let (mut conn, _) = pool.accept().expect("the connection");
    conn.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let (mut got, mut buf) = (Vec::new(), [0u8; 4096]);
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return (got, None),
            Err(e) => return (got, Some(e.kind())),
        }
    }
}

/// Waits for the rule's event, checks its signature and returns it.
fn expect_stratum_event(enforcer: &Enforcer, want: StratumSignature) -> minerguard::Event {
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "stratum-protocol").expect("event");
    assert!(
        matches!(ev.target, Target::Stratum { signature, .. } if signature == want),
        "{ev:?}"
    );
    ev
}

#[test]
fn the_egress_judge_keeps_every_mining_method_from_the_pool() {
    require_kernel!();
    let (cg, enforcer) = egress_scope(Action::Deny);
    // What judges: the egress program, no sockhash and no Fast Open
    // tracepoints.
    let checks = enforcer.checks();
    for status in [&checks.stratum_sk_msg, &checks.fast_open] {
        assert!(
            matches!(status, CheckStatus::NotNeeded { reason } if reason.contains("egress judge")),
            "{checks:?}"
        );
    }
    // A harmless message first where the protocol allows one (Stratum V2
    // starts with its SetupConnection).
    for (before, payload, sig, method) in [
        (HELLO, STRATUM_SUBSCRIBE, StratumSignature::V1, "mining."),
        (HELLO, XMRIG_LOGIN, StratumSignature::Login, "login"),
        (&b""[..], SV2_SETUP, StratumSignature::V2, ""),
    ] {
        let pool = listener(false);
        let addr = pool.local_addr().unwrap();
        let sends: Vec<&[u8]> = [before, payload]
            .into_iter()
            .filter(|m| !m.is_empty())
            .collect();
        // The sends succeed: the packet is dropped after them.
        assert_eq!(
            send_in_steps(&cg, addr, &[&sends], 0, false, |_| {}),
            ChildEnd::Code(0),
            "{sig:?}"
        );
        let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "stratum-protocol").expect("event");
        assert_eq!(ev.action, Action::Deny);
        match ev.target {
            Target::Stratum {
                addr: to,
                signature,
                method: got,
                ..
            } => {
                assert_eq!(signature, sig);
                assert_eq!(&*got, method, "the event names the method");
                assert_eq!(to, addr, "the event names the pool");
            }
            t => panic!("expected a stratum target, got {t:?}"),
        }
        // What came before it went out; nothing of the method.
        assert_eq!(received(&pool), before, "{sig:?}");
        // Outside the scope the same bytes go through.
        assert_eq!(send_in(None, addr, &sends), SendOutcome::AllSent);
        assert_eq!(received(&pool), [before, payload].concat(), "{sig:?}");
    }
}

#[test]
fn the_egress_judge_passes_clean_streams_and_audits() {
    require_kernel!();
    let (cg, enforcer) = egress_scope(Action::Deny);
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    // An upload as long as the reader's budget: judged clean and passed,
    // and so is what follows it (the socket is not read past the budget).
    let mut upload = b"POST /upload HTTP/1.1\r\nContent-Length: 4040\r\n\r\n".to_vec();
    upload.resize(4096, b'x');
    let get = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n";
    assert_eq!(send_in(Some(&cg), addr, &[get]), SendOutcome::AllSent);
    assert_eq!(received(&pool), get);
    assert_eq!(
        send_in(Some(&cg), addr, &[&upload, STRATUM_SUBSCRIBE]),
        SendOutcome::AllSent
    );
    assert_eq!(received(&pool), [&upload[..], STRATUM_SUBSCRIBE].concat());
    drop(enforcer);

    // Audit: reported (naming the process holding the socket, which the
    // child does for half a second), passed, and the socket left alone.
    let (cg, enforcer) = egress_scope(Action::Audit);
    assert_eq!(
        send_in_steps(&cg, addr, &[&[STRATUM_SUBSCRIBE]], 500_000, false, |_| {}),
        ChildEnd::Code(0)
    );
    let ev = expect_stratum_event(&enforcer, StratumSignature::V1);
    assert_eq!(ev.action, Action::Audit);
    assert_eq!(ev.ppid, std::process::id(), "{ev:?}");
    assert_eq!(received(&pool), STRATUM_SUBSCRIBE);
    assert_eq!(enforcer.destroyed_sockets(), (0, 0));
}

#[test]
fn the_egress_judge_reads_accepted_sockets_and_sockets_connected_before_apply() {
    require_kernel!();
    use std::io::Read;
    let cg = test_cgroup();
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    let mut enforcer = egress_enforcer();
    // Connected before the profile applies; sends after it.
    let mut applied = None;
    let end = send_in_steps(&cg, addr, &[&[HELLO, STRATUM_SUBSCRIBE]], 0, false, |_| {
        applied = Some(enforcer.apply(&stratum_profile(Action::Deny), scope_of(&cg)));
    });
    let applied = applied.expect("ran");
    applied.expect("apply");
    assert_eq!(end, ChildEnd::Code(0));
    assert_eq!(received(&pool), HELLO);
    expect_stratum_event(&enforcer, StratumSignature::V1);

    // The pool connects in: the socket the scope accepted is read alike,
    // with no limit on how many there are.
    let (mut fds, mut port) = ([0; 2], [0u8; 2]);
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (port_rx, port_tx) = (fds[0], fds[1]);
    std::thread::scope(|s| {
        let miner = s.spawn(|| {
            fork_in(Some(&cg), || unsafe {
                let l = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                sa.sin_family = libc::AF_INET as u16;
                sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
                let mut sl = std::mem::size_of::<libc::sockaddr_in>() as u32;
                if l < 0
                    || libc::bind(l, (&sa as *const libc::sockaddr_in).cast(), sl) != 0
                    || libc::listen(l, 1) != 0
                    || libc::getsockname(l, (&mut sa as *mut libc::sockaddr_in).cast(), &mut sl)
                        != 0
                    || libc::write(port_tx, (&sa.sin_port as *const u16).cast(), 2) != 2
                {
                    return 99;
                }
                let c = libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut());
                if c < 0 {
                    return 98;
                }
                for m in [HELLO, XMRIG_LOGIN] {
                    if libc::send(c, m.as_ptr().cast(), m.len(), 0) != m.len() as isize {
                        return 97;
                    }
                }
                0
            })
        });
        assert_eq!(
            unsafe { libc::read(port_rx, port.as_mut_ptr().cast(), 2) },
            2
        );
        let mut pool =
            std::net::TcpStream::connect(("127.0.0.1", u16::from_be_bytes(port))).unwrap();
        assert_eq!(miner.join().unwrap(), ChildEnd::Code(0));
        // The miner has exited; its FIN is dropped with the rest, so the
        // read ends at the timeout with what came.
        pool.set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
        let mut got = Vec::new();
        let _ = pool.read_to_end(&mut got);
        assert_eq!(got, HELLO, "{:?}", String::from_utf8_lossy(&got));
    });
    unsafe {
        libc::close(port_rx);
        libc::close(port_tx);
    }
    expect_stratum_event(&enforcer, StratumSignature::Login);
}

#[test]
fn the_egress_judge_reads_fast_open_syns() {
    require_kernel!();
    use crate::stratum::{fast_open_via_in, FastOpenVia};
    let (cg, enforcer) = egress_scope(Action::Deny);
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    // The login rides in the SYN: the SYN is dropped, and so is every
    // retransmission, so the pool never even gets the connection.
    assert_eq!(
        fast_open_via_in(Some(&cg), addr, XMRIG_LOGIN, FastOpenVia::Sendmmsg),
        ChildEnd::Code(0)
    );
    assert!(received(&pool).is_empty());
    expect_stratum_event(&enforcer, StratumSignature::Login);
    // Clean data in a SYN goes through; so does the login outside.
    let get = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n";
    assert_eq!(
        fast_open_via_in(Some(&cg), addr, get, FastOpenVia::Sendmmsg),
        ChildEnd::Code(0)
    );
    assert_eq!(received(&pool), get);
    assert_eq!(
        fast_open_via_in(None, addr, XMRIG_LOGIN, FastOpenVia::Sendmmsg),
        ChildEnd::Code(0)
    );
    assert_eq!(received(&pool), XMRIG_LOGIN);
}

/// In a forked child of `cg` (and of the network namespace `netns`, when
/// given): connects to `addr`, sends `messages`, then (when `probe`) sends
/// one more byte every 10 ms for up to 10 s (an emulated guest under load
/// is slow; a refused socket fails, or its holder is killed, well before). Ends with `100 + errno` of the
/// first send that fails, 0 if none did, 99 when its set-up failed.
/// MSG_NOSIGNAL: a send on a reset socket must not kill it.
fn send_then_probe(
    cg: &OwnedCgroup,
    netns: Option<&std::ffi::CStr>,
    addr: std::net::SocketAddr,
    messages: &[&[u8]],
    probe: bool,
) -> ChildEnd {
    let (storage, len, family) = sockaddr_of(addr);
    fork_in(Some(cg), || unsafe {
        if let Some(path) = netns {
            let ns = libc::open(path.as_ptr(), libc::O_RDONLY);
            if ns < 0 || libc::setns(ns, libc::CLONE_NEWNET) != 0 {
                return 99;
            }
        }
        let fd = libc::socket(family, libc::SOCK_STREAM, 0);
        if fd < 0 || libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len) != 0
        {
            return 99;
        }
        let send = |m: &[u8]| libc::send(fd, m.as_ptr().cast(), m.len(), libc::MSG_NOSIGNAL);
        for m in messages {
            if send(m) != m.len() as isize {
                return 100 + (*libc::__errno_location()).min(150);
            }
        }
        for _ in 0..if probe { 1000 } else { 0 } {
            libc::usleep(10_000);
            if send(b" ") != 1 {
                return 100 + (*libc::__errno_location()).min(150);
            }
        }
        0
    })
}

#[test]
fn a_refused_socket_is_destroyed_and_its_sender_told() {
    require_kernel!();
    let (cg, enforcer) = egress_scope(Action::Deny);
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    // The sends of the method succeed (its packet is dropped after them);
    // once the socket is destroyed the sender's next send fails.
    assert_eq!(
        send_then_probe(&cg, None, addr, &[HELLO, STRATUM_SUBSCRIBE], true),
        ChildEnd::Code(100 + libc::ECONNABORTED),
    );
    // The packet names no process; the socket's holder does: the child
    // this test forked (named from /proc while it still lived).
    let ev = expect_stratum_event(&enforcer, StratumSignature::V1);
    assert_ne!(ev.tgid, 0, "{ev:?}");
    assert_eq!(ev.ppid, std::process::id(), "{ev:?}");
    assert!(!ev.comm.is_empty() && ev.uid == 0, "{ev:?}");
    assert_eq!(enforcer.destroyed_sockets(), (1, 0));
    // The pool got what came before the method, and then a reset.
    assert_eq!(
        received_until_end(&pool),
        (HELLO.to_vec(), Some(std::io::ErrorKind::ConnectionReset))
    );

    // A socket of another network namespace (a container's) is destroyed
    // from there: the request is made from the namespace of a process of
    // the socket's cgroup.
    let ns = TestNetns::new();
    let pool = ns.listener(0);
    let path = std::ffi::CString::new(ns.path()).unwrap();
    assert_eq!(
        send_then_probe(
            &cg,
            Some(&path),
            pool.local_addr().unwrap(),
            &[HELLO, XMRIG_LOGIN],
            true
        ),
        ChildEnd::Code(100 + libc::ECONNABORTED),
    );
    let ev = expect_stratum_event(&enforcer, StratumSignature::Login);
    assert_eq!(
        ev.ppid,
        std::process::id(),
        "found in its namespace: {ev:?}"
    );
    assert_eq!(enforcer.destroyed_sockets(), (2, 0));
    assert_eq!(
        received_until_end(&pool),
        (HELLO.to_vec(), Some(std::io::ErrorKind::ConnectionReset))
    );
}

#[test]
fn nothing_of_a_refused_socket_leaves_once_the_judge_is_gone() {
    require_kernel!();
    // The sender exits at once: its socket lives on (orphaned) with the
    // method queued, and TCP retries it. Were the socket not destroyed,
    // the retry after the judge is detached would carry the method out.
    for _ in 0..3 {
        let (cg, enforcer) = egress_scope(Action::Deny);
        let pool = listener(false);
        let addr = pool.local_addr().unwrap();
        assert_eq!(
            send_then_probe(&cg, None, addr, &[HELLO, XMRIG_LOGIN], false),
            ChildEnd::Code(0),
        );
        expect_stratum_event(&enforcer, StratumSignature::Login);
        drop(enforcer);
        // Loopback's first retransmission comes after 200 ms, then 400.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert_eq!(received(&pool), HELLO);
        drop(cg);
    }
}

#[test]
fn a_kill_rule_kills_the_process_holding_the_refused_socket() {
    require_kernel!();
    let (cg, enforcer) = egress_scope(Action::Kill);
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    // The child would go on sending for 10 s; the event thread kills it.
    assert_eq!(
        send_then_probe(&cg, None, addr, &[HELLO, STRATUM_SUBSCRIBE], true),
        ChildEnd::Signal(libc::SIGKILL),
    );
    let ev = expect_stratum_event(&enforcer, StratumSignature::V1);
    assert_eq!(
        (ev.action, ev.requested),
        (Action::Kill, Action::Kill),
        "{ev:?}"
    );
    assert_eq!(ev.ppid, std::process::id(), "{ev:?}");
    assert_eq!(received(&pool), HELLO);
}

#[test]
fn a_restarted_instance_reads_on_where_the_last_one_stopped() {
    require_kernel!();
    let instance = InstanceName::new("test-egress-restart");
    let name = instance.0.clone();
    let options = || EnforcerOptions {
        backend: BackendChoice::Cgroup,
        cgroup_stratum_judge: CgroupStratumJudge::Egress,
        instance: Some(name.clone()),
        ..Default::default()
    };
    let cg = test_cgroup();
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    let profile = stratum_profile(Action::Deny);
    // The method is split across the restart: its first half read by the
    // first enforcer's judge, its second by the second's. A judge that
    // started afresh would read `ing.subscribe"...` and find nothing.
    let (head, tail) = STRATUM_SUBSCRIBE.split_at(24);
    let (mut first, mut second) = (None, None);
    // The child is forked (and connected) first: it must not inherit the
    // instance's lock. It holds its socket for a second after the tail,
    // so that the event is read while it lives.
    let end = send_in_steps(&cg, addr, &[&[head], &[tail]], 1_000_000, false, |step| {
        if step == 0 {
            let mut enforcer = Enforcer::with_options(options()).expect("enforcer");
            enforcer.apply(&profile, scope_of(&cg)).expect("apply");
            first = Some(enforcer);
        } else {
            // Pinned: dropping the first leaves its enforcement in force.
            drop(first.take());
            let mut enforcer = Enforcer::with_options(options()).expect("adopts the instance");
            enforcer
                .apply(&profile, scope_of(&cg))
                .expect("apply again");
            enforcer.release_unadopted().expect("settle");
            second = Some(enforcer);
        }
    });
    let second = second.expect("restarted");
    assert_eq!(end, ChildEnd::Code(0));
    expect_stratum_event(&second, StratumSignature::V1);
    assert_eq!(received(&pool), head, "the pool got the second half");
    // The judge still running may be the first's (adopted as it was): its
    // refusals reach the second through the pinned queue.
    assert_eq!(second.destroyed_sockets(), (1, 0));
    second.detach().expect("detach");
}
