//! Stratum rules: the mining protocol is recognised in the stream a socket
//! sends, on any port (Stratum V1, XMRig's login, Stratum V2), and refused
//! however it is sent: split over calls, send/write/writev/sendmsg,
//! sendfile, a TCP Fast Open SYN. Clean streams pass, and a socket is not
//! judged past the reader's budget; only scopes with a stratum rule track
//! sockets; `kill` and `audit`. The evasions (tunnels, escapes, batches,
//! ...) are in `stratum_evasions.rs`.

use std::{net::SocketAddr, time::Duration};

use minerguard::{Action, CheckStatus, Profile, Rule, Target};

use crate::{common::*, port_profile};

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

/// A clean stream as long as the reader's budget (4096 bytes): an upload.
fn clean_budget() -> Vec<u8> {
    let mut out = b"POST /upload HTTP/1.1\r\nContent-Length: 4040\r\n\r\n".to_vec();
    out.resize(4096, b'x');
    out
}

fn stratum_profile(action: Action) -> Profile {
    Profile::new("stratum").rule(Rule::stratum(
        "stratum-protocol",
        action,
        Vec::<String>::new(),
    ))
}

#[test]
fn stratum_sk_msg_is_loaded_only_where_sends_can_bypass_the_lsm_hook() {
    require_kernel!();
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let not_yet = enforcer.stratum_sk_msg().unwrap_err();
    assert!(not_yet.contains("not loaded yet"), "{not_yet}");
    let before = enforcer.checks();
    for status in [&before.stratum_sk_msg, &before.lsm_stratum] {
        // The cgroup backend has no lsm hook at all: off, with its reason.
        if matches!(status, CheckStatus::Off { .. }) {
            assert_eq!(enforcer.backend(), minerguard::BackendKind::Cgroup);
            continue;
        }
        assert!(
            matches!(status, CheckStatus::NotLoadedYet { needed_by } if needed_by.contains("stratum rule")),
            "{status:?}"
        );
    }
    enforcer
        .apply(&stratum_profile(Action::Deny), scope_of(&cg))
        .unwrap();
    let lsm = enforcer.backend() == minerguard::BackendKind::Lsm;
    let egress = egress_judges(&enforcer);
    // The status as data says what the text getters say.
    let checks = enforcer.checks();
    assert_eq!(checks.stratum_sk_msg.as_result(), enforcer.stratum_sk_msg());
    assert_eq!(checks.lsm_stratum.as_result(), enforcer.lsm_stratum());
    assert_eq!(checks.fast_open.as_result(), enforcer.fast_open());
    assert_eq!(checks.lsm_stratum.is_active(), lsm, "{checks:?}");
    assert_eq!(
        matches!(checks.stratum_sk_msg, CheckStatus::NotNeeded { .. }),
        lsm || egress,
        "{checks:?}"
    );
    // The cgroup backend judges in sk_msg or on egress; the lsm backend
    // in its hook, with the egress judge behind it, which also reads what
    // sendfile and splice send past the hook before 6.5.
    match enforcer.stratum_sk_msg() {
        Ok(()) => assert!(!lsm && !egress, "lsm and the egress judge track no sockets"),
        Err(why) if egress => {
            assert!(why.contains("egress judge reads"), "{why}");
            let lsm_off = enforcer.lsm_stratum().unwrap_err();
            assert!(lsm_off.contains("its egress program"), "{lsm_off}");
            assert_eq!(enforcer.stratum_errno(), libc::ECONNABORTED);
            let fast_open = enforcer.fast_open().unwrap_err();
            assert!(fast_open.contains("Fast Open SYNs included"), "{fast_open}");
        }
        Err(why) => {
            assert!(lsm, "{why}");
            if lsm_judges_every_send(lsm) {
                assert!(why.contains("every send reaches"), "{why}");
            } else {
                assert!(why.contains("reads the sends that go past it"), "{why}");
            }
            assert_eq!(enforcer.lsm_stratum(), Ok(()));
            assert_eq!(enforcer.stratum_backstop(), Ok(()));
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
    let scoped = Scoped::apply(&stratum_profile(Action::Deny));
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());

    for (payload, sig, method) in [
        // A `mining.*` entry decides at the dot.
        (
            STRATUM_SUBSCRIBE,
            minerguard::events::StratumSignature::V1,
            "mining.",
        ),
        (
            XMRIG_LOGIN,
            minerguard::events::StratumSignature::Login,
            "login",
        ),
        (SV2_SETUP, minerguard::events::StratumSignature::V2, ""),
    ] {
        assert_eq!(
            send_in(Some(cg), addr, &[payload]),
            SendOutcome::SendFailed {
                index: 0,
                errno: enforcer.stratum_errno()
            },
            "{sig:?}"
        );
        let ev = wait_event(enforcer, |e| e.rule.as_ref() == "stratum-protocol").expect("event");
        assert_eq!(ev.action, Action::Deny);
        // Who sent it: a child this test forked (sk_msg on the cgroup
        // backend, where the kernel may not let it read the task: then
        // from /proc, which still has the child).
        assert_eq!(ev.ppid, std::process::id(), "{ev:?}");
        assert!(!ev.pname.is_empty(), "{ev:?}");
        assert!(
            !ev.comm.is_empty() && ev.cmdline.starts_with(ev.comm.as_str()),
            "{ev:?}"
        );
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
    let scoped = Scoped::apply(&stratum_profile(Action::Deny));
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
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
                send_chunks_in(Some(cg), addr, payload, chunk, via),
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
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "stratum-protocol").expect("event");
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
            send_chunks_in(Some(cg), addr, payload, 1, SendVia::Send),
            ChildEnd::Code(0)
        );
        assert_eq!(received(&server), payload);
    }
}

#[test]
fn stratum_sent_with_sendfile_is_refused() {
    require_kernel!();
    let scoped = Scoped::apply(&stratum_profile(Action::Deny));
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let dir = TempDir::new("sendfile");
    let method = &b"mining.subscribe"[..];
    let (head, tail) = STRATUM_SUBSCRIBE.split_at(12);
    // The cgroup backend's sk_msg program refuses the call that completes
    // the method (EACCES), also when part of the message went out through
    // send() before or after. From 6.5 on sendfile reaches the lsm hook as
    // pages, which judges it (EPERM). Before 6.5 it bypasses that hook
    // (sendpage) and meets the egress judge behind it, as on the cgroup
    // backend by default: the judge lets the call that completes the
    // method succeed and destroys its socket, so the child's next look at
    // it fails (ECONNABORTED).
    let lsm = enforcer.backend() == minerguard::BackendKind::Lsm;
    let refused = match enforcer.stratum_sk_msg() {
        Ok(()) => libc::EACCES,
        Err(_) if egress_judges(enforcer) => libc::ECONNABORTED,
        Err(_) if !lsm_judges_every_send(lsm) => libc::ECONNABORTED,
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
            send_parts_in(Some(cg), addr, parts, dir.path()),
            ChildEnd::Code(100 + refused),
            "{parts:?}"
        );
        let got = received(&pool);
        assert!(
            !got.windows(method.len()).any(|w| w == method),
            "the pool got the whole method: {:?}",
            String::from_utf8_lossy(&got)
        );
        let ev = wait_event(enforcer, |e| e.rule.as_ref() == "stratum-protocol").expect("event");
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
        send_parts_in(Some(cg), addr, &[Part::Sendfile(HTTP_GET)], dir.path()),
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
    // The egress judge reads the SYN like any packet: no Fast Open hook.
    let egress = egress_judges(&enforcer);
    if egress {
        let why = enforcer.fast_open().unwrap_err();
        assert!(why.contains("egress judge reads"), "{why}");
    } else {
        enforcer
            .fast_open()
            .expect("Fast Open payloads are judged on this kernel");
    }
    // The egress judge drops the SYN (and its retransmissions): the call
    // succeeds, and the pool never gets the connection.
    let refused = if egress {
        ChildEnd::Code(0)
    } else {
        ChildEnd::Code(100 + libc::EPERM)
    };
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    assert_eq!(
        fast_open_send_in(Some(&cg), addr, STRATUM_SUBSCRIBE, None),
        refused
    );
    assert!(received(&pool).is_empty(), "the pool got a connection");
    let ev = wait_event(&enforcer, |e| e.rule.as_ref() == "stratum-protocol").expect("event");
    match ev.target {
        Target::Stratum {
            addr: to,
            signature,
            ..
        } => {
            assert_eq!(to, addr);
            assert_eq!(signature, minerguard::events::StratumSignature::V1);
        }
        ref t => panic!("{t:?}"),
    }
    // (The egress judge names the socket's holder, gone with the child.)
    assert!(egress || ev.pid > 0, "{ev:?}");
    // Stratum outside the scope goes through; so does clean Fast Open in
    // it, but on lsm: there a blocking Fast Open send is refused before it
    // is read, as where Fast Open is off (EOPNOTSUPP), since the kernel
    // would copy its bytes past the SYN's share only once connected
    // (stratum_evasions::a_buffer_rewritten_while_the_kernel_waits_is_not_sent).
    let lsm = enforcer.backend() == minerguard::BackendKind::Lsm;
    if lsm {
        assert_eq!(
            fast_open_send_in(Some(&cg), addr, HTTP_GET, None),
            ChildEnd::Code(100 + libc::EOPNOTSUPP)
        );
        assert!(received(&pool).is_empty(), "the pool got a connection");
        let ev = wait_event(&enforcer, |e| {
            matches!(
                e.target,
                Target::Stratum {
                    signature: minerguard::events::StratumSignature::SendWouldWait,
                    ..
                }
            )
        });
        assert!(ev.is_some(), "a send-would-wait-refused event");
    } else {
        assert_eq!(
            fast_open_send_in(Some(&cg), addr, HTTP_GET, None),
            ChildEnd::Code(0)
        );
        assert_eq!(received(&pool), HTTP_GET);
    }
    assert_eq!(
        fast_open_send_in(None, addr, STRATUM_SUBSCRIBE, None),
        ChildEnd::Code(0)
    );
    assert_eq!(received(&pool), STRATUM_SUBSCRIBE);
    // A payload in an untouched file mapping: the lsm socket_sendmsg hook
    // faults it in and judges it (Stratum refused, clean passes), and the
    // egress judge reads it from the packet; the syscall tracepoint cannot,
    // and refuses it unjudged.
    let dir = TempDir::new("tfo");
    let file = dir.path().join("payload");
    let (payload, signature) = if enforcer.stratum_errno() == libc::EPERM || egress {
        if !lsm {
            assert_eq!(
                fast_open_send_in(Some(&cg), addr, HTTP_GET, Some(&file)),
                ChildEnd::Code(0)
            );
            assert_eq!(received(&pool), HTTP_GET);
        }
        (STRATUM_SUBSCRIBE, minerguard::events::StratumSignature::V1)
    } else {
        (HTTP_GET, minerguard::events::StratumSignature::Unreadable)
    };
    assert_eq!(
        fast_open_send_in(Some(&cg), addr, payload, Some(&file)),
        refused
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
fn clean_streams_pass_and_a_socket_is_read_up_to_its_budget() {
    require_kernel!();
    let server = listener(false);
    let addr = server.local_addr().unwrap();
    let scoped = Scoped::apply(&stratum_profile(Action::Deny));
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    // The stream is read past a clean first message: Stratum after an
    // HTTP request is refused.
    assert_eq!(
        send_in(Some(cg), addr, &[HTTP_GET, STRATUM_SUBSCRIBE]),
        SendOutcome::SendFailed {
            index: 1,
            errno: enforcer.stratum_errno()
        }
    );
    assert_eq!(received(&server), HTTP_GET);
    assert!(wait_event(enforcer, |e| e.rule.as_ref() == "stratum-protocol").is_some());
    // Past the reader's budget (4096 bytes) a socket is not judged again:
    // later sends cost nothing.
    let budget = clean_budget();
    assert_eq!(
        send_in(Some(cg), addr, &[&budget, STRATUM_SUBSCRIBE]),
        SendOutcome::AllSent
    );
    let got = received(&server);
    assert!(
        got.starts_with(&budget),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // JSON that is not Stratum passes too.
    assert_eq!(
        send_in(
            Some(cg),
            addr,
            &[b"{\"id\":1,\"method\":\"eth_blockNumber\",\"params\":[]}"]
        ),
        SendOutcome::AllSent
    );
    assert!(events_within(enforcer, Duration::from_millis(500), |_| true).is_empty());
}

#[test]
fn judged_sockets_leave_the_stratum_send_path() {
    require_kernel!();
    use std::io::{Read, Write};
    let scoped = Scoped::apply(&stratum_profile(Action::Deny));
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let server = listener(false);
    let addr = server.local_addr().unwrap();
    let (storage, len, family) = sockaddr_of(addr);
    let budget = clean_budget();
    assert_eq!(enforcer.released_sockets(), 0);
    // Where the lsm hook alone judges, no socket is tracked: it judges a
    // socket once and then returns after one socket-storage lookup.
    let tracked = u64::from(enforcer.stratum_sk_msg().is_ok());
    std::thread::scope(|s| {
        // The client: a clean stream as long as the reader's budget, then
        // it waits for the server's go before sending more on the same
        // socket.
        let client = s.spawn(|| {
            fork_in(Some(cg), || unsafe {
                let fd = libc::socket(family, libc::SOCK_STREAM, 0);
                if fd < 0
                    || libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len)
                        != 0
                {
                    return 99;
                }
                let mut go = [0u8; 1];
                if libc::send(fd, budget.as_ptr().cast(), budget.len(), 0) != budget.len() as isize
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
        let mut first = vec![0u8; budget.len()];
        conn.read_exact(&mut first).unwrap();
        assert_eq!(first, budget);
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
        send_in(Some(cg), addr, &[STRATUM_SUBSCRIBE]),
        SendOutcome::SendFailed {
            index: 0,
            errno: enforcer.stratum_errno()
        }
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(enforcer.released_sockets(), tracked);
}

/// From a child in `cg`: connects to `addr`, sends a clean stream as long
/// as the reader's budget, and keeps the socket open 300 ms (time for the
/// enforcer to release it).
fn clean_long_lived_client(cg: &minerguard::cgroup::OwnedCgroup, addr: SocketAddr) -> ChildEnd {
    let (storage, len, family) = sockaddr_of(addr);
    let budget = clean_budget();
    fork_in(Some(cg), || unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM, 0);
        if fd < 0 || libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len) != 0
        {
            return 99;
        }
        if libc::send(fd, budget.as_ptr().cast(), budget.len(), 0) != budget.len() as isize {
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
    let ports = port_profile(Action::Deny, 9);
    let mut scoped = Scoped::apply(&ports);
    let h = scoped.handle();
    let (cg, enforcer) = scoped.cgroup_and_enforcer_mut();
    // No stratum rule: the socket never enters the sk_msg send path, so
    // there is nothing to release.
    assert_eq!(clean_long_lived_client(cg, addr), ChildEnd::Code(0));
    assert_eq!(enforcer.released_sockets(), 0);
    // An update that adds one starts tracking before the switch (except
    // where the lsm hook alone judges: nothing is tracked there).
    enforcer.update(h, &stratum_profile(Action::Deny)).unwrap();
    let tracked = u64::from(enforcer.stratum_sk_msg().is_ok());
    assert_eq!(clean_long_lived_client(cg, addr), ChildEnd::Code(0));
    assert_eq!(enforcer.released_sockets(), tracked);
    assert_eq!(
        send_in(Some(cg), addr, &[STRATUM_SUBSCRIBE]),
        SendOutcome::SendFailed {
            index: 0,
            errno: enforcer.stratum_errno()
        }
    );
    // And one that drops it stops tracking.
    enforcer.update(h, &ports).unwrap();
    assert_eq!(clean_long_lived_client(cg, addr), ChildEnd::Code(0));
    assert_eq!(enforcer.released_sockets(), tracked);
    assert_eq!(
        send_in(Some(cg), addr, &[STRATUM_SUBSCRIBE]),
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

/// IPPROTO_MPTCP (include/uapi/linux/in.h).
const IPPROTO_MPTCP: i32 = 262;

/// From a child in `cg` (or not moved): an MPTCP socket to `addr` sends
/// `payload`. `Code(0)` when sent, `50 + errno` when socket() failed, `99`
/// when connect() failed, `100 + errno` when the send failed.
fn mptcp_send_in(
    cg: Option<&minerguard::cgroup::OwnedCgroup>,
    addr: SocketAddr,
    payload: &[u8],
) -> ChildEnd {
    let (storage, len, family) = sockaddr_of(addr);
    fork_in(cg, || unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM, IPPROTO_MPTCP);
        if fd < 0 {
            return 50 + (*libc::__errno_location()).min(40);
        }
        if libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len) != 0 {
            return 99;
        }
        if libc::send(fd, payload.as_ptr().cast(), payload.len(), 0) != payload.len() as isize {
            let errno = *libc::__errno_location();
            libc::usleep(100_000);
            return 100 + errno.min(100);
        }
        0
    })
}

#[test]
fn mptcp_sockets_cannot_carry_stratum() {
    require_kernel!();
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    // Outside a scope MPTCP carries Stratum to the pool (the test can fail).
    assert_eq!(
        mptcp_send_in(None, addr, STRATUM_SUBSCRIBE),
        ChildEnd::Code(0),
        "this kernel makes MPTCP sockets"
    );
    assert_eq!(received(&pool), STRATUM_SUBSCRIBE);

    let scoped = Scoped::apply(&stratum_profile(Action::Deny));
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let got = mptcp_send_in(Some(cg), addr, STRATUM_SUBSCRIBE);
    if enforcer.backend() == minerguard::BackendKind::Lsm {
        // The lsm hook reads an MPTCP socket's sends like a TCP socket's.
        assert_eq!(got, ChildEnd::Code(100 + libc::EPERM));
        let ev = wait_event(enforcer, |e| e.rule.as_ref() == "stratum-protocol").expect("event");
        assert!(
            matches!(
                ev.target,
                Target::Stratum {
                    signature: minerguard::events::StratumSignature::V1,
                    ..
                }
            ),
            "{ev:?}"
        );
    } else {
        // sk_msg never sees MPTCP data: the socket is refused when made.
        assert_eq!(got, ChildEnd::Code(50 + libc::EPERM));
        let ev = wait_event(enforcer, |e| e.rule.as_ref() == "stratum-protocol").expect("event");
        assert!(
            matches!(
                ev.target,
                Target::Stratum {
                    signature: minerguard::events::StratumSignature::Mptcp,
                    ..
                }
            ),
            "{ev:?}"
        );
        // Plain TCP sockets are still made (and judged).
        assert_eq!(send_in(Some(cg), addr, &[HTTP_GET]), SendOutcome::AllSent);
    }
    let got = received(&pool);
    assert!(
        !got.windows(16).any(|w| w == b"mining.subscribe"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn a_pool_that_connects_in_is_refused() {
    require_kernel!();
    use std::io::Read;
    let scoped = Scoped::apply(&stratum_profile(Action::Deny));
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (port_rx, port_tx) = (fds[0], fds[1]);
    let egress = egress_under_test();
    std::thread::scope(|s| {
        // The miner listens in the scope; the pool connects to it and the
        // miner logs in on the accepted socket.
        let miner = s.spawn(|| {
            fork_in(Some(cg), || unsafe {
                let l = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                sa.sin_family = libc::AF_INET as u16;
                sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
                let sl = std::mem::size_of::<libc::sockaddr_in>() as u32;
                if l < 0
                    || libc::bind(l, (&sa as *const libc::sockaddr_in).cast(), sl) != 0
                    || libc::listen(l, 1) != 0
                {
                    return 98;
                }
                let mut got = sl;
                libc::getsockname(l, (&mut sa as *mut libc::sockaddr_in).cast(), &mut got);
                if libc::write(port_tx, (&sa.sin_port as *const u16).cast(), 2) != 2 {
                    return 97;
                }
                let c = libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut());
                if c < 0 {
                    return 96;
                }
                if libc::send(c, XMRIG_LOGIN.as_ptr().cast(), XMRIG_LOGIN.len(), 0)
                    != XMRIG_LOGIN.len() as isize
                {
                    let errno = *libc::__errno_location();
                    libc::usleep(100_000);
                    return 100 + errno.min(150);
                }
                // The egress judge refuses after the send: the socket is
                // destroyed soon after.
                match egress {
                    true => match socket_error_within(c, 300) {
                        0 => 0,
                        errno => 100 + errno.min(150),
                    },
                    false => 0,
                }
            })
        });
        let mut port = [0u8; 2];
        assert_eq!(
            unsafe { libc::read(port_rx, port.as_mut_ptr().cast(), 2) },
            2
        );
        let port = u16::from_be_bytes(port);
        let mut pool = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        pool.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(
            miner.join().unwrap(),
            ChildEnd::Code(100 + enforcer.stratum_errno())
        );
        let mut got = Vec::new();
        let _ = pool.read_to_end(&mut got);
        assert!(
            got.is_empty(),
            "the pool got {:?}",
            String::from_utf8_lossy(&got)
        );
    });
    unsafe {
        libc::close(port_rx);
        libc::close(port_tx);
    }
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "stratum-protocol").expect("event");
    assert!(
        matches!(
            ev.target,
            Target::Stratum {
                signature: minerguard::events::StratumSignature::Login,
                ..
            }
        ),
        "{ev:?}"
    );
}

#[test]
fn sockets_connected_before_apply_are_judged_from_their_next_send() {
    require_kernel!();
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    // The miner connects before any profile is applied, then sends.
    let (end, applied) = connect_then_send(&cg, addr, &[STRATUM_SUBSCRIBE], || {
        enforcer.apply(&stratum_profile(Action::Deny), scope_of(&cg))
    });
    applied.unwrap();
    if enforcer.stratum_sk_msg().is_ok() {
        // sockops never saw this connection: it was found and tracked.
        assert_eq!(enforcer.adopted_sockets(), (1, 0));
    }
    assert_eq!(end, ChildEnd::Code(100 + enforcer.stratum_errno()));
    let got = received(&pool);
    assert!(
        !got.windows(16).any(|w| w == b"mining.subscribe"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(wait_event(&enforcer, |e| e.rule.as_ref() == "stratum-protocol").is_some());
}

/// The other ways a Fast Open SYN carries data.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FastOpenVia {
    /// sendmmsg(MSG_FASTOPEN): the first message goes in the SYN.
    Sendmmsg,
    /// setsockopt(TCP_FASTOPEN_CONNECT), connect(), then write().
    ConnectOption,
}

/// From a child in `cg` (or not moved): `payload` to `addr` through `via`.
/// `Code(0)` when sent, `50 + errno` when setsockopt failed, `60 + errno`
/// when connect failed, `100 + errno` when the send failed.
pub(crate) fn fast_open_via_in(
    cg: Option<&minerguard::cgroup::OwnedCgroup>,
    addr: SocketAddr,
    payload: &[u8],
    via: FastOpenVia,
) -> ChildEnd {
    let (storage, len, family) = sockaddr_of(addr);
    let to = (&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
    assert!(payload.len() <= 512);
    fork_in(cg, || unsafe {
        // The bytes in the child's own (touched) memory: a Fast Open
        // payload the syscall tracepoint cannot read without a fault is
        // refused unjudged (see stratum_in_a_tcp_fast_open_syn_is_refused).
        let mut copy = [0u8; 512];
        copy[..payload.len()].copy_from_slice(payload);
        let payload = &copy[..payload.len()];
        let s = libc::socket(family, libc::SOCK_STREAM, 0);
        if s < 0 {
            return 99;
        }
        let sent = match via {
            FastOpenVia::Sendmmsg => {
                let mut iov = libc::iovec {
                    iov_base: payload.as_ptr() as *mut libc::c_void,
                    iov_len: payload.len(),
                };
                let mut msg: libc::mmsghdr = std::mem::zeroed();
                msg.msg_hdr.msg_name = to as *mut libc::c_void;
                msg.msg_hdr.msg_namelen = len;
                msg.msg_hdr.msg_iov = &mut iov;
                msg.msg_hdr.msg_iovlen = 1;
                if libc::sendmmsg(s, &mut msg, 1, libc::MSG_FASTOPEN) == 1 {
                    msg.msg_len as isize
                } else {
                    -1
                }
            }
            FastOpenVia::ConnectOption => {
                let one: i32 = 1;
                if libc::setsockopt(
                    s,
                    libc::IPPROTO_TCP,
                    libc::TCP_FASTOPEN_CONNECT,
                    (&one as *const i32).cast(),
                    4,
                ) != 0
                {
                    return 50 + (*libc::__errno_location()).min(9);
                }
                if libc::connect(s, to, len) != 0 {
                    return 60 + (*libc::__errno_location()).min(39);
                }
                libc::write(s, payload.as_ptr().cast(), payload.len())
            }
        };
        if sent != payload.len() as isize {
            let errno = *libc::__errno_location();
            libc::usleep(100_000);
            return 100 + errno.min(100);
        }
        0
    })
}

#[test]
fn fast_open_by_sendmmsg_or_connect_option_cannot_carry_stratum() {
    require_kernel!();
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    // Outside a scope both ways deliver the login (the test can fail).
    for via in [FastOpenVia::Sendmmsg, FastOpenVia::ConnectOption] {
        assert_eq!(
            fast_open_via_in(None, addr, XMRIG_LOGIN, via),
            ChildEnd::Code(0),
            "{via:?}"
        );
        assert_eq!(received(&pool), XMRIG_LOGIN, "{via:?}");
    }
    let scoped = Scoped::apply(&stratum_profile(Action::Deny));
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let lsm = enforcer.backend() == minerguard::BackendKind::Lsm;
    // sendmmsg: judged by the syscall tracepoint (cgroup), the lsm hook,
    // or the egress judge (which drops the SYN: the call succeeds).
    let egress = egress_judges(enforcer);
    assert_eq!(
        fast_open_via_in(Some(cg), addr, XMRIG_LOGIN, FastOpenVia::Sendmmsg),
        ChildEnd::Code(if egress { 0 } else { 100 + libc::EPERM })
    );
    // TCP_FASTOPEN_CONNECT: the lsm hook judges the write; the egress judge
    // drops the packet carrying it (the write succeeds); the sk_msg judge
    // never sees those bytes, so the cgroup backend refuses the option.
    let expected = if lsm {
        ChildEnd::Code(100 + libc::EPERM)
    } else if egress {
        ChildEnd::Code(0)
    } else {
        ChildEnd::Code(50 + libc::EPERM)
    };
    assert_eq!(
        fast_open_via_in(Some(cg), addr, XMRIG_LOGIN, FastOpenVia::ConnectOption),
        expected
    );
    let got = received(&pool);
    assert!(
        !got.windows(7).any(|w| w == b"\"login\""),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    let want = if lsm || egress {
        minerguard::events::StratumSignature::Login
    } else {
        minerguard::events::StratumSignature::FastOpenConnect
    };
    assert!(
        wait_event(
            enforcer,
            |e| matches!(e.target, Target::Stratum { signature, .. } if signature == want)
        )
        .is_some(),
        "a {want:?} event"
    );
    if lsm {
        // A blocking Fast Open send is refused before it is read, clean or
        // not: the kernel would copy its bytes past the SYN's share only
        // once connected, and another thread could rewrite them meanwhile
        // (stratum_evasions::a_buffer_rewritten_while_the_kernel_waits_is_not_sent).
        // sendmmsg gets EOPNOTSUPP, as where Fast Open is off. The
        // connect option defers the connect only with a cookie cached for
        // the pool: then the write gets EAGAIN, as a non-blocking one
        // would; without one the connect completes and the write is read
        // as any.
        assert_eq!(
            fast_open_via_in(Some(cg), addr, HTTP_GET, FastOpenVia::Sendmmsg),
            ChildEnd::Code(100 + libc::EOPNOTSUPP)
        );
        match fast_open_via_in(Some(cg), addr, HTTP_GET, FastOpenVia::ConnectOption) {
            ChildEnd::Code(0) => assert_eq!(received(&pool), HTTP_GET),
            end => assert_eq!(end, ChildEnd::Code(100 + libc::EAGAIN)),
        }
        return;
    }
    // A clean sendmmsg Fast Open still goes through.
    assert_eq!(
        fast_open_via_in(Some(cg), addr, HTTP_GET, FastOpenVia::Sendmmsg),
        ChildEnd::Code(0)
    );
    assert_eq!(received(&pool), HTTP_GET);
    // So does a clean TCP_FASTOPEN_CONNECT where the option is allowed.
    if egress {
        assert_eq!(
            fast_open_via_in(Some(cg), addr, HTTP_GET, FastOpenVia::ConnectOption),
            ChildEnd::Code(0)
        );
        assert_eq!(received(&pool), HTTP_GET);
    }
}

#[test]
fn stratum_over_udp_is_judged_where_the_backend_reads_datagrams() {
    require_kernel!();
    let pool = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    pool.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let addr = pool.local_addr().unwrap();
    let (storage, len, family) = sockaddr_of(addr);
    const CLEAN: &[u8] = b"{\"id\":1,\"method\":\"eth_blockNumber\"}\n";
    // Sends each payload in turn from one socket; code 0, or 100 + errno
    // of the first send that failed, 50 + its index when it was short.
    // With `linger`, the child then holds its socket for 5 s (for `kill`).
    let send = |cg: Option<&minerguard::cgroup::OwnedCgroup>, payloads: &[&[u8]], linger: bool| {
        fork_in(cg, || unsafe {
            let s = libc::socket(family, libc::SOCK_DGRAM, 0);
            let to = (&storage as *const libc::sockaddr_storage).cast();
            let mut end = 0;
            for (i, payload) in payloads.iter().enumerate() {
                let sent = libc::sendto(s, payload.as_ptr().cast(), payload.len(), 0, to, len);
                if sent < 0 && end == 0 {
                    end = 100 + (*libc::__errno_location()).min(100);
                } else if sent >= 0 && sent != payload.len() as isize && end == 0 {
                    end = 50 + i as i32;
                }
            }
            if linger {
                libc::sleep(5);
            }
            end
        })
    };
    let datagram = |pool: &std::net::UdpSocket| {
        let mut buf = [0u8; 2048];
        pool.recv(&mut buf).map(|n| buf[..n].to_vec()).ok()
    };
    let scoped = Scoped::apply(&stratum_profile(Action::Deny));
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    // Clean datagrams pass on both backends.
    assert_eq!(send(Some(cg), &[CLEAN], false), ChildEnd::Code(0));
    assert_eq!(datagram(&pool).as_deref(), Some(CLEAN));
    let lsm = enforcer.backend() == minerguard::BackendKind::Lsm;
    // Read datagram by datagram by the lsm socket_sendmsg hook and by the
    // cgroup backend's egress judge; the sk_msg judge sees TCP only.
    if !lsm && !egress_under_test() {
        assert_eq!(
            send(Some(cg), &[STRATUM_SUBSCRIBE], false),
            ChildEnd::Code(0)
        );
        assert_eq!(datagram(&pool).as_deref(), Some(STRATUM_SUBSCRIBE));
        return;
    }
    // The datagram with the method is refused, and so is the socket's
    // next one, clean or not: a socket that sent a mining method is
    // refused for good, as a TCP one is.
    assert_eq!(
        send(Some(cg), &[STRATUM_SUBSCRIBE, CLEAN], false),
        ChildEnd::Code(100 + libc::EPERM)
    );
    assert_eq!(datagram(&pool), None, "the pool got a datagram");
    // A clean datagram, then one with the method, from one socket: each
    // is read by itself (the first decides nothing for the second).
    assert_eq!(
        send(Some(cg), &[CLEAN, STRATUM_SUBSCRIBE], false),
        ChildEnd::Code(100 + libc::EPERM)
    );
    assert_eq!(datagram(&pool).as_deref(), Some(CLEAN));
    assert_eq!(datagram(&pool), None, "the pool got the method");
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "stratum-protocol").expect("event");
    assert!(
        matches!(
            ev.target,
            Target::Stratum { addr: to, protocol: minerguard::events::Protocol::Udp, .. }
                if to == addr
        ),
        "{ev:?}"
    );
    assert_eq!(ev.action, Action::Deny, "{ev:?}");
    drop(scoped);
    // `kill` reaches the process that sent it (on the cgroup backend,
    // found from the datagram's socket: the packet names no process).
    let scoped = Scoped::apply(&stratum_profile(Action::Kill));
    assert_eq!(
        send(Some(scoped.cgroup()), &[STRATUM_SUBSCRIBE], true),
        ChildEnd::Signal(libc::SIGKILL)
    );
    assert_eq!(datagram(&pool), None, "the pool got the method");
    let ev = wait_event(scoped.enforcer(), |e| e.rule.as_ref() == "stratum-protocol")
        .expect("kill event");
    assert!(ev.tgid != 0, "the event names no process: {ev:?}");
}

#[test]
fn a_full_socket_tracking_refuses_connections_never_passes_them() {
    require_kernel!();
    const LIMIT: usize = 4;
    let cg = test_cgroup();
    // The limit is the sk_msg judge's (the egress judge tracks nothing).
    let mut enforcer = minerguard::Enforcer::with_options(minerguard::EnforcerOptions {
        backend: backend_choice(),
        stratum_sockets: LIMIT as u32,
        cgroup_stratum_judge: minerguard::CgroupStratumJudge::SkMsg,
        ..Default::default()
    })
    .unwrap();
    enforcer
        .apply(&stratum_profile(Action::Deny), scope_of(&cg))
        .unwrap();
    let tracked = enforcer.stratum_sk_msg().is_ok();
    let pool = listener(false);
    let addr = pool.local_addr().unwrap();
    let (storage, len, family) = sockaddr_of(addr);
    let to = (&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
    // In the scope: LIMIT idle connections, then one more. Code 100 +
    // errno: the extra one connected and its Stratum send failed; 60 +
    // errno: it was refused, and after one of the idle ones closed a new
    // one connected; 80 + errno: that one was refused too.
    let end = fork_in(Some(&cg), || unsafe {
        let connect = || {
            let s = libc::socket(family, libc::SOCK_STREAM, 0);
            if libc::connect(s, to, len) == 0 {
                Ok(s)
            } else {
                let e = *libc::__errno_location();
                libc::close(s);
                Err(e)
            }
        };
        let mut idle = Vec::new();
        for _ in 0..LIMIT {
            match connect() {
                Ok(s) => idle.push(s),
                Err(_) => return 99,
            }
        }
        match connect() {
            Ok(s) => {
                let sent = libc::send(
                    s,
                    STRATUM_SUBSCRIBE.as_ptr().cast(),
                    STRATUM_SUBSCRIBE.len(),
                    0,
                );
                if sent != STRATUM_SUBSCRIBE.len() as isize {
                    return 100 + (*libc::__errno_location()).min(100);
                }
                0
            }
            Err(refused) => {
                // An abortive close: the socket is gone at once (a FIN
                // would leave it to the peer).
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                libc::setsockopt(
                    idle[0],
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as u32,
                );
                libc::close(idle[0]);
                libc::usleep(50_000);
                match connect() {
                    Ok(_) => 60 + refused.min(19),
                    Err(e) => 80 + e.min(19),
                }
            }
        }
    });
    if tracked {
        // The sockhash was full: the connection was refused, not passed
        // unjudged, and a closed socket made room again.
        assert_eq!(end, ChildEnd::Code(60 + libc::EPERM));
        let ev = wait_event(
            &enforcer,
            |e| matches!(e.target, Target::Stratum { signature: minerguard::events::StratumSignature::Untracked, addr: a, .. } if a == addr),
        );
        assert!(ev.is_some(), "an untracked-refused event");
        assert_eq!(enforcer.untracked_sockets(), 0);
    } else {
        // The lsm hook reads every send: nothing to track, nothing full.
        assert_eq!(end, ChildEnd::Code(100 + libc::EPERM));
    }
    let got = received(&pool);
    assert!(!got.windows(16).any(|w| w == b"mining.subscribe"));
}
