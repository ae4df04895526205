//! The Stratum judge against what real pools accept (issue #19): a mining
//! method hidden behind a BOM, blank or junk lines, other keys, padding,
//! `\u` escapes, another case, a batch, a harmless first message, other
//! mining protocols, a SOCKS or HTTP CONNECT tunnel, or a WebSocket, must
//! still be refused; clean traffic must pass byte for byte.
//!
//! Each evasion case is first sent outside the scope, where the fake pool
//! (tests/common/pool.rs, which parses like pool software, leniently) must
//! take its mining method: that proves the case is a real evasion and the
//! check below can fail. In the scope the pool must take no mining method
//! and receive no whole quoted method name, the client's send must fail
//! with `Enforcer::stratum_errno` (and so must the next send on that
//! socket), and a `stratum-protocol` event must name the socket's peer.
//! Every case runs; a test fails listing all the cases that failed (and
//! prints `ok`/`FAIL` per case; `--nocapture` shows them).

use std::{
    net::{SocketAddr, TcpListener},
    process::Command,
    time::{Duration, Instant},
};

use minerguard::{cgroup::OwnedCgroup, events::StratumSignature, Action, Profile, Rule, Target};

use crate::common::*;

fn stratum_profile() -> Profile {
    Profile::new("stratum").rule(Rule::stratum(
        "stratum-protocol",
        Action::Deny,
        Vec::<String>::new(),
    ))
}

const SUBSCRIBE: &str =
    "{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"cpuminer/2.5.1\"]}\n";
const AUTHORIZE: &str =
    "{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"wallet.rig1\",\"x\"]}\n";
const WALLET: &str = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";

/// XMRig's login, as XMRig 6.16 sends it (its algo list shortened).
fn login() -> String {
    format!(
        "{{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"login\",\"params\":{{\"login\":\"{WALLET}\",\
         \"pass\":\"x\",\"agent\":\"XMRig/6.16.0 (Linux x86_64) libuv/1.42.0 gcc/5.4.0\",\
         \"algo\":[\"cn/r\",\"rx/0\",\"rx/wow\"]}}}}\n"
    )
}

/// The calls a case is sent in.
const WHOLE: &[Chunks] = &[Chunks::Whole];
const SPLIT: &[Chunks] = &[Chunks::Whole, Chunks::Of(7), Chunks::Of(1)];

/// The call that sends `chunks`: 7-byte parts go with writev over two
/// iovecs (3 + 4 bytes), the rest with send.
fn via(chunks: Chunks) -> SendVia {
    match chunks {
        Chunks::Of(7) => SendVia::Writev,
        _ => SendVia::Send,
    }
}

/// One way of sending a mining method to a pool.
struct Case {
    label: String,
    tunnel: Tunnel,
    payload: Vec<u8>,
    /// The mining method the pool takes from it (outside the scope).
    method: &'static str,
    chunks: &'static [Chunks],
}

fn case(label: impl Into<String>, payload: impl Into<Vec<u8>>, method: &'static str) -> Case {
    Case {
        label: label.into(),
        tunnel: Tunnel::Direct,
        payload: payload.into(),
        method,
        chunks: WHOLE,
    }
}

impl Case {
    /// Also sent in 7-byte and 1-byte calls.
    fn split(mut self) -> Self {
        self.chunks = SPLIT;
        self
    }

    fn through(mut self, tunnel: Tunnel) -> Self {
        self.tunnel = tunnel;
        self
    }
}

/// Where a client goes to reach `server` through `tunnel`: the proxy (kept
/// running while it lives), the first hop and the handshake.
struct Route {
    _proxy: Option<Proxy>,
    to: SocketAddr,
    handshake: Vec<Step>,
}

fn route(tunnel: Tunnel, server: SocketAddr) -> Route {
    let proxy = tunnel.proxy().map(Proxy::start);
    Route {
        to: proxy.as_ref().map_or(server, Proxy::addr),
        handshake: tunnel.handshake(server),
        _proxy: proxy,
    }
}

/// Whether the handshake got through (then the server saw a connection).
fn reached_server(out: &StreamOutcome) -> bool {
    !matches!(
        out,
        StreamOutcome::ConnectFailed(_) | StreamOutcome::HandshakeFailed { .. }
    )
}

/// Sends `case` to a fresh fake pool from a child in `cgroup` (or outside
/// any), waits until the pool saw the connection close, and returns the
/// pool, the client's first hop and how the client did.
fn send_case(
    case: &Case,
    cgroup: Option<&OwnedCgroup>,
    chunks: Chunks,
) -> (FakePool, SocketAddr, StreamOutcome) {
    let pool = FakePool::start();
    let r = route(case.tunnel, pool.addr());
    let out = send_stream_in(
        cgroup,
        r.to,
        &r.handshake,
        &case.payload,
        chunks,
        via(chunks),
    );
    if reached_server(&out) {
        assert!(
            pool.wait_closed(1),
            "{}: the pool's connection did not close",
            case.label
        );
    }
    (pool, r.to, out)
}

/// Runs every case (see the module doc) and fails listing those that failed.
fn assert_all_refused(scoped: &Scoped, cases: &[Case]) {
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let errno = enforcer.stratum_errno();
    let mut failures = Vec::new();
    let mut runs = 0;
    for case in cases {
        // Outside the scope the pool takes the method: a real evasion.
        let (pool, _, out) = send_case(case, None, Chunks::Whole);
        let taken = pool.methods();
        if out != StreamOutcome::AllSent
            || !taken.iter().any(|m| m.eq_ignore_ascii_case(case.method))
        {
            failures.push(format!(
                "{} [outside the scope]: the fake pool should take {:?}; client {out:?}, pool took {taken:?}",
                case.label, case.method
            ));
            continue;
        }
        for &chunks in case.chunks {
            runs += 1;
            let label = format!("{} [{chunks}, {:?}]", case.label, via(chunks));
            let (pool, to, out) = send_case(case, Some(cg), chunks);
            let mut problems = Vec::new();
            let taken = pool.mining_methods();
            if !taken.is_empty() {
                problems.push(format!("the pool took {taken:?}"));
            }
            let quoted = format!("\"{}\"", case.method);
            if contains_ignore_case(&pool.bytes(), quoted.as_bytes()) {
                problems.push(format!("the pool received {quoted} whole"));
            }
            if !out.refused_with(errno) {
                problems.push(format!(
                    "the client was not refused with errno {errno} (then again): {out:?}"
                ));
            } else if wait_event(enforcer, |e| {
                e.rule.as_ref() == "stratum-protocol"
                    && matches!(e.target, Target::Stratum { addr, .. } if addr == to)
            })
            .is_none()
            {
                problems.push(format!("no stratum-protocol event for {to}"));
            }
            if problems.is_empty() {
                eprintln!("ok   {label}");
            } else {
                eprintln!("FAIL {label}: {}", problems.join("; "));
                failures.push(format!("{label}: {}", problems.join("; ")));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn mining_after_skipped_bytes_is_refused() {
    require_kernel!();
    let scoped = Scoped::apply(&stratum_profile());
    let cases = [
        case(
            "a UTF-8 BOM",
            format!("\u{feff}{SUBSCRIBE}"),
            "mining.subscribe",
        )
        .split(),
        case(
            "9 newlines",
            format!("{}{SUBSCRIBE}", "\n".repeat(9)),
            "mining.subscribe",
        ),
        case(
            "20 CRLF blank lines",
            format!("{}{SUBSCRIBE}", "\r\n".repeat(20)),
            "mining.subscribe",
        ),
        case(
            "a line of 40 spaces",
            format!("{}\n{SUBSCRIBE}", " ".repeat(40)),
            "mining.subscribe",
        ),
        case(
            "spaces and tabs before the object",
            format!(" \t  \t {SUBSCRIBE}"),
            "mining.subscribe",
        ),
        case(
            "a non-JSON line (hello)",
            format!("hello\n{SUBSCRIBE}"),
            "mining.subscribe",
        )
        .split(),
        case(
            "junk lines: hello, 300 bytes of x, {not json}",
            format!("hello\n{}\n{{not json}}\n{AUTHORIZE}", "x".repeat(300)),
            "mining.authorize",
        ),
        case(
            "JSON that is not an object: a string and a number line",
            format!("\"hello\"\n42\n{SUBSCRIBE}"),
            "mining.subscribe",
        ),
        case(
            "BOM, blank lines, spaces, junk, then XMRig's login",
            format!("\u{feff}\n\n   \nhello\n{}", login()),
            "login",
        )
        .split(),
    ];
    assert_all_refused(&scoped, &cases);
}

#[test]
fn mining_method_in_any_key_position_is_refused() {
    require_kernel!();
    let scoped = Scoped::apply(&stratum_profile());
    let cases = [
        case(
            "params (a 200-byte array) before method",
            format!(
                "{{\"id\":1,\"params\":[\"{}\"],\"method\":\"mining.subscribe\"}}\n",
                "a".repeat(200)
            ),
            "mining.subscribe",
        )
        .split(),
        case(
            "params (XMRig's login object) before method",
            format!(
                "{{\"params\":{{\"login\":\"{WALLET}\",\"pass\":\"x\",\"agent\":\"XMRig/6.16.0 \
                 (Linux x86_64) libuv/1.42.0 gcc/5.4.0\",\"algo\":[\"cn/r\",\"rx/0\"]}},\
                 \"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"login\"}}\n"
            ),
            "login",
        ),
        case(
            "200 spaces push \"method\" past byte 128",
            format!(
                "{{\"id\":1,{}\"method\":\"mining.subscribe\",\"params\":[]}}\n",
                " ".repeat(200)
            ),
            "mining.subscribe",
        ),
        case(
            "200 spaces push the method's value past byte 128",
            format!(
                "{{\"id\":2,\"method\":{}\"mining.authorize\",\"params\":[\"w\",\"x\"]}}\n",
                " ".repeat(200)
            ),
            "mining.authorize",
        )
        .split(),
        case(
            "spaces around the colon",
            "{ \"id\" : 1 , \"method\"   :   \"mining.subscribe\" , \"params\" : [ ] }\n",
            "mining.subscribe",
        ),
        case(
            "a nested method key before the top-level one",
            format!(
                "{{\"id\":1,\"params\":{{\"method\":\"client.show_message\",\"text\":\"{}\"}},\
                 \"method\":\"mining.subscribe\"}}\n",
                "t".repeat(60)
            ),
            "mining.subscribe",
        ),
        case(
            "an escaped quote in an earlier string",
            "{\"id\":1,\"worker\":\"rig\\\",\\\"method\\\":\\\"x\",\"method\":\"mining.subscribe\"}\n",
            "mining.subscribe",
        ),
        case(
            "3000 bytes of params before method (within 4096)",
            format!(
                "{{\"id\":1,\"params\":[\"{}\"],\"method\":\"mining.subscribe\"}}\n",
                "b".repeat(3000)
            ),
            "mining.subscribe",
        ),
    ];
    assert_all_refused(&scoped, &cases);
}

#[test]
fn escaped_and_upper_case_mining_methods_are_refused() {
    require_kernel!();
    let scoped = Scoped::apply(&stratum_profile());
    let cases = [
        case(
            "\\u in the key: \"met\\u0068od\"",
            "{\"id\":1,\"met\\u0068od\":\"mining.subscribe\",\"params\":[]}\n",
            "mining.subscribe",
        )
        .split(),
        case(
            "\\u in the value: \"\\u006dining.subscribe\"",
            "{\"id\":1,\"method\":\"\\u006dining.subscribe\",\"params\":[]}\n",
            "mining.subscribe",
        ),
        case(
            "every character of the value escaped",
            "{\"id\":1,\"method\":\"\\u006d\\u0069\\u006e\\u0069\\u006e\\u0067\\u002e\\u0073\\u0075\
             \\u0062\\u0073\\u0063\\u0072\\u0069\\u0062\\u0065\",\"params\":[]}\n",
            "mining.subscribe",
        ),
        case(
            "\\u in key and value of XMRig's login",
            format!(
                "{{\"id\":1,\"jsonrpc\":\"2.0\",\"\\u006d\\u0065thod\":\"l\\u006Fgin\",\
                 \"params\":{{\"login\":\"{WALLET}\",\"pass\":\"x\"}}}}\n"
            ),
            "login",
        ),
        case(
            "upper-case key METHOD",
            "{\"id\":1,\"METHOD\":\"mining.subscribe\",\"params\":[]}\n",
            "mining.subscribe",
        ),
        case(
            "upper-case value MINING.SUBSCRIBE",
            "{\"id\":1,\"method\":\"MINING.SUBSCRIBE\",\"params\":[]}\n",
            "mining.subscribe",
        )
        .split(),
        case(
            "mixed case: \"Method\": \"Mining.Authorize\"",
            "{\"id\":2,\"Method\":\"Mining.Authorize\",\"params\":[\"w\",\"x\"]}\n",
            "mining.authorize",
        ),
        case(
            "upper-case LOGIN",
            format!("{{\"id\":1,\"method\":\"LOGIN\",\"params\":{{\"login\":\"{WALLET}\"}}}}\n"),
            "login",
        ),
        case(
            "an escaped capital: \"\\u004Dining.subscribe\"",
            "{\"id\":1,\"method\":\"\\u004Dining.subscribe\",\"params\":[]}\n",
            "mining.subscribe",
        ),
    ];
    assert_all_refused(&scoped, &cases);
}

#[test]
fn mining_in_a_batch_or_after_a_harmless_message_is_refused() {
    require_kernel!();
    let scoped = Scoped::apply(&stratum_profile());
    let harmless = |id: u32| format!("{{\"id\":{id},\"method\":\"client.ping\",\"params\":[]}}\n");
    let cases = [
        case(
            "a batch [mining.subscribe, mining.authorize]",
            "[{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]},\
             {\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"w\",\"x\"]}]\n",
            "mining.subscribe",
        )
        .split(),
        case(
            "a batch whose first call is harmless",
            "[{\"id\":1,\"method\":\"client.get_version\",\"params\":[]},\
             {\"id\":2,\"method\":\"mining.subscribe\",\"params\":[]}]\n",
            "mining.subscribe",
        ),
        case(
            "a batch after a BOM and spaces",
            "\u{feff}  [ {\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]} ]\n",
            "mining.subscribe",
        ),
        case(
            "a harmless 200-byte client.get_version, then mining.subscribe",
            format!(
                "{{\"id\":0,\"method\":\"client.get_version\",\"params\":[\"{}\"]}}\n{SUBSCRIBE}",
                "v".repeat(200)
            ),
            "mining.subscribe",
        )
        .split(),
        case(
            "eth_blockNumber, then XMRig's login",
            format!(
                "{{\"jsonrpc\":\"2.0\",\"method\":\"eth_blockNumber\",\"params\":[],\"id\":83}}\n{}",
                login()
            ),
            "login",
        ),
        case(
            "seven harmless messages, then mining.subscribe (the 8th)",
            format!(
                "{}{SUBSCRIBE}",
                (1..=7).map(harmless).collect::<Vec<_>>().concat()
            ),
            "mining.subscribe",
        ),
    ];
    assert_all_refused(&scoped, &cases);
}

/// An HTTP/1.1 POST of a JSON-RPC body, as a miner talks to a daemon.
fn http_post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:18081\r\nUser-Agent: miner/1.0\r\n\
         Accept: */*\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn every_mining_method_is_refused() {
    require_kernel!();
    let scoped = Scoped::apply(&stratum_profile());
    let gbt = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":\"0\",\"method\":\"getblocktemplate\",\
         \"params\":{{\"wallet_address\":\"{WALLET}\",\"reserve_size\":60}}}}"
    );
    let cases = [
        case(
            "XMRig submit",
            "{\"id\":2,\"jsonrpc\":\"2.0\",\"method\":\"submit\",\"params\":{\"id\":\"a1b2c3\",\
             \"job_id\":\"j77\",\"nonce\":\"0000a1b2\",\"result\":\"e1364b8782719d7683e2ccd3d8f72484\"}}\n",
            "submit",
        ),
        case(
            "XMRig getjob",
            "{\"id\":3,\"jsonrpc\":\"2.0\",\"method\":\"getjob\",\"params\":{\"id\":\"a1b2c3\"}}\n",
            "getjob",
        ),
        case(
            "XMRig keepalived",
            "{\"id\":4,\"jsonrpc\":\"2.0\",\"method\":\"keepalived\",\"params\":{\"id\":\"a1b2c3\"}}\n",
            "keepalived",
        ),
        case(
            "EthProxy eth_submitLogin",
            "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"eth_submitLogin\",\
             \"params\":[\"0xb85150eb365e7df0941f0cf08235f987ba91506a\"],\"worker\":\"rig1\"}\n",
            "eth_submitLogin",
        )
        .split(),
        case(
            "EthProxy eth_getWork",
            "{\"id\":2,\"jsonrpc\":\"2.0\",\"method\":\"eth_getWork\",\"params\":[]}\n",
            "eth_getWork",
        ),
        case(
            "EthProxy eth_submitWork",
            "{\"id\":3,\"jsonrpc\":\"2.0\",\"method\":\"eth_submitWork\",\"params\":[\
             \"0x0000000000000001\",\"0x1c4d2a9f8e7b6a5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d\",\
             \"0xd1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2\"]}\n",
            "eth_submitWork",
        ),
        case(
            "getblocktemplate in an HTTP POST body",
            http_post("/json_rpc", &gbt),
            "getblocktemplate",
        )
        .split(),
        case(
            "submitblock in an HTTP POST body",
            http_post(
                "/",
                "{\"jsonrpc\":\"1.0\",\"id\":\"miner\",\"method\":\"submitblock\",\
                 \"params\":[\"0000002083a1c0c2e1b4b1a0ffee\"]}",
            ),
            "submitblock",
        ),
        case(
            "an HTTP GET, then getblocktemplate POSTed on the same connection",
            format!(
                "GET /get_info HTTP/1.1\r\nHost: 127.0.0.1:18081\r\n\r\n{}",
                http_post("/json_rpc", &gbt)
            ),
            "getblocktemplate",
        ),
    ];
    assert_all_refused(&scoped, &cases);
}

#[test]
fn mining_through_a_proxy_tunnel_is_refused() {
    require_kernel!();
    let scoped = Scoped::apply(&stratum_profile());
    let mut cases = Vec::new();
    for tunnel in Tunnel::PROXIES {
        let sub = case(
            format!("{tunnel:?}, then mining.subscribe"),
            SUBSCRIBE,
            "mining.subscribe",
        )
        .through(tunnel);
        let login =
            case(format!("{tunnel:?}, then XMRig's login"), login(), "login").through(tunnel);
        match tunnel {
            Tunnel::Socks5 => cases.extend([sub.split(), login]),
            Tunnel::HttpConnect => cases.extend([sub, login.split()]),
            _ => cases.extend([sub, login]),
        }
    }
    assert_all_refused(&scoped, &cases);
}

#[test]
fn mining_over_a_websocket_is_refused() {
    require_kernel!();
    let scoped = Scoped::apply(&stratum_profile());
    let sub = SUBSCRIBE.trim_end().as_bytes();
    let (head, tail) = sub.split_at(sub.len() / 2);
    let ws = |label: &str, frames: Vec<u8>, method| {
        case(label, frames, method).through(Tunnel::WebSocket)
    };
    let cases = [
        ws("one masked frame", ws_message(sub, 1), "mining.subscribe").split(),
        ws(
            "two frames: text then continuation",
            ws_message(sub, 2),
            "mining.subscribe",
        )
        .split(),
        ws(
            "a ping between the fragments",
            [
                ws_frame(WS_TEXT, false, head, [1, 2, 3, 4]),
                ws_frame(WS_PING, true, b"ping", [5, 6, 7, 8]),
                ws_frame(WS_CONTINUATION, true, tail, [9, 10, 11, 12]),
            ]
            .concat(),
            "mining.subscribe",
        ),
        ws(
            "a chat message, then mining.subscribe",
            [
                ws_message(b"{\"type\":\"chat\",\"text\":\"hi\"}", 1),
                ws_message(sub, 1),
            ]
            .concat(),
            "mining.subscribe",
        ),
        ws(
            "XMRig's login in a 16-bit-length frame",
            ws_message(login().trim_end().as_bytes(), 1),
            "login",
        ),
        // The reader skips a GET's header lines from their first byte
        // unless they may spell "upgrade:": headers that start alike, and
        // the header in lower case after them, must not hide the upgrade.
        case(
            "a lower-case upgrade header after User-Agent and Upgrade-Insecure-Requests",
            [
                b"GET /ws HTTP/1.1\r\nUser-Agent: u\r\nUpgrade-Insecure-Requests: 1\r\n\
                  Host: pool\r\nupgrade: WebSocket\r\nConnection: upgrade\r\n\r\n"
                    .to_vec(),
                ws_message(sub, 1),
            ]
            .concat(),
            "mining.subscribe",
        )
        .split(),
    ];
    assert_all_refused(&scoped, &cases);
}

/// Clean traffic: what a server must receive exactly, and the calls it is
/// sent in.
struct Clean {
    label: &'static str,
    tunnel: Tunnel,
    payload: Vec<u8>,
    chunks: &'static [Chunks],
}

fn clean(label: &'static str, tunnel: Tunnel, payload: impl Into<Vec<u8>>) -> Clean {
    Clean {
        label,
        tunnel,
        payload: payload.into(),
        chunks: SPLIT,
    }
}

/// `len` bytes that look like a compressed upload (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn clean_traffic_passes_untouched() {
    require_kernel!();
    let scoped = Scoped::apply(&stratum_profile());
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let get = "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
    let lsp_body = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"processId\":4242,\
                    \"rootUri\":\"file:///home/dev/project\",\"capabilities\":{\"textDocument\":{}}}}";
    let eth = "{\"jsonrpc\":\"2.0\",\"method\":\"eth_blockNumber\",\"params\":[],\"id\":83}";
    let chat = b"{\"type\":\"chat\",\"text\":\"hi\"}";
    let mut upload = format!(
        "PUT /upload/backup.tar.zst HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
        4 << 20
    )
    .into_bytes();
    upload.extend(noise(4 << 20));
    let cases = [
        clean("an HTTP/1.1 GET", Tunnel::Direct, get),
        clean(
            "an HTTP POST with a JSON body",
            Tunnel::Direct,
            http_post(
                "/api/orders",
                "{\"method\":\"card\",\"item\":\"widget\",\"qty\":2,\"note\":\"login later\"}",
            ),
        ),
        clean(
            "a WebSocket chat",
            Tunnel::WebSocket,
            [
                ws_message(chat, 1),
                ws_message(b"{\"type\":\"chat\",\"text\":\"how are you?\"}", 2),
                ws_message(chat, 1),
            ]
            .concat(),
        ),
        clean(
            "an LSP initialize (Content-Length framed)",
            Tunnel::Direct,
            format!("Content-Length: {}\r\n\r\n{lsp_body}", lsp_body.len()),
        ),
        clean("Ethereum eth_blockNumber", Tunnel::Direct, format!("{eth}\n")),
        clean(
            "eth_blockNumber in an HTTP POST",
            Tunnel::Direct,
            http_post("/", eth),
        ),
        clean(
            "a JSON-RPC batch of non-mining calls",
            Tunnel::Direct,
            format!(
                "[{eth},{{\"jsonrpc\":\"2.0\",\"method\":\"eth_getBalance\",\
                 \"params\":[\"0x407d73d8a49eeb85d32cf465507dd71d507100c1\",\"latest\"],\"id\":2}}]\n"
            ),
        ),
        clean(
            "JSON-RPC methods that only start like mining ones",
            Tunnel::Direct,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"submitOrder\",\"params\":[]}\n\
             {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"loginUser\",\"params\":{\"user\":\"alice\"}}\n",
        ),
        clean("SOCKS5 to an HTTP server", Tunnel::Socks5, get),
        clean("SOCKS5 (user/pass) to an HTTP server", Tunnel::Socks5Auth, get),
        clean("SOCKS4 to an HTTP server", Tunnel::Socks4, get),
        clean("SOCKS4a to an HTTP server", Tunnel::Socks4a, get),
        clean("HTTP CONNECT to an HTTP server", Tunnel::HttpConnect, get),
        Clean {
            chunks: &[Chunks::Whole, Chunks::Of(64 * 1024)],
            ..clean("a 4 MiB upload", Tunnel::Direct, upload)
        },
    ];
    let mut failures = Vec::new();
    let mut runs = 0;
    for case in &cases {
        for &chunks in case.chunks {
            runs += 1;
            let label = format!("{} [{chunks}, {:?}]", case.label, via(chunks));
            let server = if case.tunnel == Tunnel::WebSocket {
                Sink::websocket()
            } else {
                Sink::start()
            };
            let r = route(case.tunnel, server.addr());
            let out = send_stream_in(
                Some(cg),
                r.to,
                &r.handshake,
                &case.payload,
                chunks,
                via(chunks),
            );
            // A WebSocket server receives the upgrade too; a proxy's target
            // only what follows the handshake.
            let mut want = Vec::new();
            if case.tunnel == Tunnel::WebSocket {
                want.extend(r.handshake.iter().flat_map(|s| s.send.iter().copied()));
            }
            want.extend_from_slice(&case.payload);
            let closed = reached_server(&out) && server.wait_closed(1);
            let got = server.bytes();
            let mut problems = Vec::new();
            if out != StreamOutcome::AllSent {
                problems.push(format!("the client got {out:?}"));
            }
            if !closed {
                problems.push("the server's connection did not close".to_string());
            }
            if got != want {
                let first_diff = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
                problems.push(format!(
                    "the server received {} bytes, not the {} sent (they differ from byte {first_diff})",
                    got.len(),
                    want.len()
                ));
            }
            if problems.is_empty() {
                eprintln!("ok   {label}");
            } else {
                eprintln!("FAIL {label}: {}", problems.join("; "));
                failures.push(format!("{label}: {}", problems.join("; ")));
            }
        }
    }
    let events = events_within(enforcer, Duration::from_millis(500), |e| {
        e.rule.as_ref() == "stratum-protocol"
    });
    assert!(
        failures.is_empty() && events.is_empty(),
        "clean traffic was touched:\n  {}\nevents: {events:?}",
        failures.join("\n  ")
    );
    if own_copies_forced() && enforcer.lsm_stratum().is_ok() {
        // Each run's sender is a new process: each made its own copy.
        let own = enforcer.stratum_own_copies();
        assert!(
            own >= runs,
            "MINERGUARD_TEST_OWN_COPIES=1, yet {own} threads of {runs} runs got copies of their own"
        );
    }
}

/// Whether the lsm judge was made to read every send in a copy of its
/// thread's own (`MINERGUARD_TEST_OWN_COPIES=1`, scripts/vm-test.sh's
/// `lsm-own` run), the path taken when every spare copy is in use.
fn own_copies_forced() -> bool {
    std::env::var_os("MINERGUARD_TEST_OWN_COPIES").is_some_and(|v| v == "1")
}

/// Many processes sending their first bytes at once: each is a new thread
/// to the lsm judge, which needs a copy of what it sends. Before Linux 6.2
/// every task-storage helper fails while another task on the same CPU is
/// inside one (and the sleepable hook's create could sleep there), so a
/// clean first send was once refused for another process's allocation
/// (CI, 6.1; this test reproduced it 1 run in 100). Every clean stream must
/// reach its server whole, and every mining one be refused, however the
/// sends meet.
#[test]
fn first_sends_of_many_processes_at_once_are_each_judged() {
    require_kernel!();
    const WORKERS: usize = 4;
    const ROUNDS: usize = 40;
    let scoped = Scoped::apply(&stratum_profile());
    let cg = scoped.cgroup();
    let errno = scoped.enforcer().stratum_errno();
    let get = "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n";
    let worker = |w: usize| {
        let mut failures = Vec::new();
        for round in 0..ROUNDS {
            // One round in five mines; the rest are clean.
            if (round + w) % 5 == 0 {
                let pool = FakePool::start();
                let out = send_stream_in(
                    Some(cg),
                    pool.addr(),
                    &[],
                    SUBSCRIBE.as_bytes(),
                    Chunks::Of(1),
                    SendVia::Send,
                );
                pool.wait_closed(1);
                let taken = pool.mining_methods();
                if !out.refused_with(errno) || !taken.is_empty() {
                    failures.push(format!(
                        "worker {w} round {round}, mining: client {out:?}, pool took {taken:?}"
                    ));
                }
            } else {
                let sink = Sink::start();
                let out = send_stream_in(
                    Some(cg),
                    sink.addr(),
                    &[],
                    get.as_bytes(),
                    Chunks::Of(1),
                    SendVia::Send,
                );
                let closed = sink.wait_closed(1);
                let got = sink.bytes();
                if out != StreamOutcome::AllSent || !closed || got != get.as_bytes() {
                    failures.push(format!(
                        "worker {w} round {round}, clean: client {out:?}, server got {} of {} bytes{}",
                        got.len(),
                        get.len(),
                        if closed { "" } else { ", not closed" }
                    ));
                }
            }
        }
        failures
    };
    let failures: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS).map(|w| s.spawn(move || worker(w))).collect();
        workers
            .into_iter()
            .flat_map(|h| h.join().expect("a worker panicked"))
            .collect()
    });
    let enforcer = scoped.enforcer();
    // How often the lsm judge found every spare copy taken; 0 on the
    // cgroup backend.
    eprintln!(
        "threads with copies of their own: {}",
        enforcer.stratum_own_copies()
    );
    assert!(
        failures.is_empty() && enforcer.stratum_unread_refused() == 0,
        "{} of {} streams were judged wrongly ({} sends refused unread):\n  {}",
        failures.len(),
        WORKERS * ROUNDS,
        enforcer.stratum_unread_refused(),
        failures.join("\n  ")
    );
}

/// A miner speaking its own protocol, named by a profile's
/// `stratum.signatures`: the signature is found anywhere in what the reader
/// reads (any JSON position, a text line, split over sends, behind junk,
/// through a SOCKS5 tunnel, inside masked WebSocket frames), the pool never
/// receives it whole, and the event names it. Bytes that only start like
/// it, and a signature past the reader's budget (documented), pass whole.
#[test]
fn custom_signatures_are_found_anywhere_in_what_is_read() {
    require_kernel!();
    const SIG: &str = "cn-proto/7";
    let profile = Profile::new("signatures").rule(Rule::stratum(
        "stratum-protocol",
        Action::Deny,
        vec!["nicehash/legacy".to_string(), SIG.to_string()],
    ));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let errno = enforcer.stratum_errno();
    let hello = format!("{{\"id\":1,\"method\":\"hello\",\"params\":[\"rig1\",\"{SIG}\"]}}\n");
    let mut after_junk = noise(3000);
    after_junk.retain(|b| *b != b'\n');
    after_junk.extend(format!("\nHELO {SIG}\r\n").bytes());
    let cases = [
        (
            Tunnel::Direct,
            "a JSON-RPC parameter",
            hello.clone().into_bytes(),
        ),
        (
            Tunnel::Direct,
            "a text line",
            format!("HELO rig1 {SIG}\r\n").into_bytes(),
        ),
        (Tunnel::Direct, "after 3000 bytes of junk", after_junk),
        (Tunnel::Socks5, "through SOCKS5", hello.clone().into_bytes()),
        (
            Tunnel::WebSocket,
            "in masked WebSocket frames",
            ws_message(hello.trim_end().as_bytes(), 2),
        ),
    ];
    let mut failures = Vec::new();
    for (tunnel, label, payload) in &cases {
        let case = case(*label, payload.clone(), "hello").through(*tunnel);
        // Outside the scope the pool gets the message, signature and all.
        let (pool, _, out) = send_case(&case, None, Chunks::Whole);
        if out != StreamOutcome::AllSent {
            failures.push(format!(
                "{label} [outside the scope]: the client got {out:?}"
            ));
            continue;
        }
        for chunks in [Chunks::Whole, Chunks::Of(3), Chunks::Of(1)] {
            let label = format!("{label} [{chunks}]");
            let (pool_in, to, out) = send_case(&case, Some(cg), chunks);
            let mut problems = Vec::new();
            if !out.refused_with(errno) {
                problems.push(format!("not refused with errno {errno}: {out:?}"));
            }
            if pool_in
                .bytes()
                .windows(SIG.len())
                .any(|w| w == SIG.as_bytes())
            {
                problems.push("the pool received the signature whole".to_string());
            }
            if pool_in.methods().iter().any(|m| m == "hello") {
                problems.push("the pool took the message".to_string());
            }
            let ev = wait_event(
                enforcer,
                |e| matches!(e.target, Target::Stratum { addr, .. } if addr == to),
            );
            match ev.map(|e| e.target) {
                Some(Target::Stratum {
                    signature, method, ..
                }) => {
                    if signature != minerguard::events::StratumSignature::Signature
                        || &*method != SIG
                    {
                        problems.push(format!("the event says {signature:?} {method:?}"));
                    }
                }
                other => problems.push(format!("no stratum event for {to}: {other:?}")),
            }
            if problems.is_empty() {
                eprintln!("ok   {label}");
            } else {
                eprintln!("FAIL {label}: {}", problems.join("; "));
                failures.push(format!("{label}: {}", problems.join("; ")));
            }
        }
        let _ = pool;
    }
    // Bytes that only start like a signature, and one past the budget of
    // 4096 bytes the reader reads, pass whole.
    let mut late = b"POST /upload HTTP/1.1\r\nContent-Length: 5000\r\n\r\n".to_vec();
    late.resize(4096, b'x');
    late.extend(SIG.bytes());
    for (label, payload) in [
        (
            "a prefix of the signature",
            b"HELO cn-proto/6 cn-proto/\n".to_vec(),
        ),
        ("the signature past the reader's budget", late),
    ] {
        for chunks in [Chunks::Whole, Chunks::Of(1)] {
            let server = Sink::start();
            let out = send_stream_in(Some(cg), server.addr(), &[], &payload, chunks, via(chunks));
            let closed = server.wait_closed(1);
            if out != StreamOutcome::AllSent || !closed || server.bytes() != payload {
                failures.push(format!(
                    "{label} [{chunks}]: client {out:?}, the server got {} of {} bytes",
                    server.bytes().len(),
                    payload.len()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n  "));
}

/// Polls `done` every 20 ms for up to `limit`.
/// How a child's first send fails in the kernel, after the lsm hook saw it.
#[derive(Debug, Clone, Copy)]
enum RefusedFirst {
    /// On a socket not connected yet (EPIPE).
    BeforeConnect,
    /// With MSG_FASTOPEN on a connected socket (EISCONN, or EOPNOTSUPP
    /// where Fast Open is off).
    FastOpenWhenConnected,
}

/// Sends `junk` from a child in `cgroup` (or outside any) the way `how`
/// says the kernel refuses, then the login on the connected socket. The
/// child's end: `Code(0)` when the login was sent whole, `100 + errno` when
/// that send failed, 97 when the junk's send did not fail, 98/99 when the
/// set-up failed.
fn junk_refused_then_login_in(
    cgroup: Option<&OwnedCgroup>,
    pool: SocketAddr,
    junk: &[u8],
    how: RefusedFirst,
) -> ChildEnd {
    let (storage, len, family) = sockaddr_of(pool);
    let login = login();
    fork_in(cgroup, || unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return 98;
        }
        let addr = (&storage as *const libc::sockaddr_storage).cast();
        let mut flags = libc::MSG_NOSIGNAL;
        if let RefusedFirst::FastOpenWhenConnected = how {
            if libc::connect(fd, addr, len) != 0 {
                return 99;
            }
            flags |= libc::MSG_FASTOPEN;
        }
        if libc::send(fd, junk.as_ptr().cast(), junk.len(), flags) >= 0 {
            return 97;
        }
        if let RefusedFirst::BeforeConnect = how {
            if libc::connect(fd, addr, len) != 0 {
                return 99;
            }
        }
        let sent = libc::send(fd, login.as_ptr().cast(), login.len(), libc::MSG_NOSIGNAL);
        login_sent_end(sent, login.len())
    })
}

/// In a forked child, after the login's send returned `sent` of `len`
/// bytes: 0 when it went whole, else `100 + errno`, returned after holding
/// the socket a while (the egress judge destroys it after the send).
unsafe fn login_sent_end(sent: isize, len: usize) -> i32 {
    let code = if sent == len as isize {
        0
    } else {
        100 + (*libc::__errno_location()).min(150)
    };
    libc::usleep(300_000);
    code
}

/// Outside any scope the pool took the login the child sent (ending
/// `end`): the sequence is one a pool answers, so the check in the scope
/// can fail.
fn assert_pool_took_login(label: &str, end: ChildEnd, pool: &FakePool) {
    assert_eq!(end, ChildEnd::Code(0), "{label}, outside the scope");
    assert!(
        pool.wait_closed(1),
        "{label}: the pool's connection did not close"
    );
    assert!(
        pool.methods().iter().any(|m| m == "login"),
        "{label}: outside the scope the pool should take the login; it took {:?}",
        pool.methods()
    );
}

/// What went wrong with a login sent from the scope (the child ending
/// `end`) to `pool`: the pool took a mining method, the send was not
/// refused (every judge but egress refuses the send itself), or no
/// `stratum-protocol` event of `want` came.
fn login_refusal_problems(
    enforcer: &minerguard::Enforcer,
    pool: &FakePool,
    end: &ChildEnd,
    want: StratumSignature,
) -> Vec<String> {
    pool.wait_closed(1);
    let mut problems = Vec::new();
    let taken = pool.mining_methods();
    if !taken.is_empty() {
        problems.push(format!("the pool took {taken:?} (client: {end:?})"));
    }
    let errno = enforcer.stratum_errno();
    if !egress_judges(enforcer) && *end != ChildEnd::Code(100 + errno) {
        problems.push(format!(
            "the login's send ended {end:?}, not with errno {errno}"
        ));
    }
    let seen = events_within(enforcer, Duration::from_millis(500), |e| {
        e.rule.as_ref() == "stratum-protocol"
    });
    if !seen
        .iter()
        .any(|e| matches!(e.target, Target::Stratum { signature, .. } if signature == want))
    {
        problems.push(format!(
            "no stratum-protocol event ({}); seen {seen:?}",
            want.as_str()
        ));
    }
    problems
}

/// Prints `ok`/`FAIL` for `label` and keeps a failure.
fn report(label: &str, problems: Vec<String>, failures: &mut Vec<String>) {
    if problems.is_empty() {
        eprintln!("ok   {label}");
    } else {
        eprintln!("FAIL {label}: {}", problems.join("; "));
        failures.push(format!("{label}: {}", problems.join("; ")));
    }
}

/// A send the kernel refuses adds nothing to the stream, so none of its
/// bytes may count toward the reader's budget. Eight empty messages spend
/// it (the message count): a judge that counted them from a send the
/// kernel then refused (on a socket not connected yet; with MSG_FASTOPEN on
/// a connected one) released the socket, and the login sent next reached
/// the pool unread (the lsm judge, 6.12, before the fexit programs).
#[test]
fn sends_the_kernel_refuses_do_not_spend_the_budget() {
    require_kernel!();
    let scoped = Scoped::apply(&stratum_profile());
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let junk = "{}\n".repeat(8);
    let mut failures = Vec::new();
    for how in [
        RefusedFirst::BeforeConnect,
        RefusedFirst::FastOpenWhenConnected,
    ] {
        let label = format!("{how:?}");
        let pool = FakePool::start();
        let end = junk_refused_then_login_in(None, pool.addr(), junk.as_bytes(), how);
        assert_pool_took_login(&label, end, &pool);
        let pool = FakePool::start();
        let end = junk_refused_then_login_in(Some(cg), pool.addr(), junk.as_bytes(), how);
        if end == ChildEnd::Code(97) && sk_msg_judges(enforcer) {
            // A socket in the sk-msg judge's sockhash sends through
            // tcp_bpf, which ignores MSG_FASTOPEN: the kernel took the
            // junk, so the budget was spent by the stream itself.
            assert!(
                matches!(how, RefusedFirst::FastOpenWhenConnected),
                "{label}: {end:?}"
            );
            eprintln!("ok   {label}: the sk-msg judge's sockets take a MSG_FASTOPEN send");
            continue;
        }
        let problems = login_refusal_problems(enforcer, &pool, &end, StratumSignature::Login);
        report(&label, problems, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Whether `enforcer` judges Stratum with the cgroup backend's sk_msg
/// verdict.
fn sk_msg_judges(enforcer: &minerguard::Enforcer) -> bool {
    enforcer.backend() == minerguard::BackendKind::Cgroup && !egress_judges(enforcer)
}

/// A fake pool listening on 127.0.0.1 inside `ns`.
fn fake_pool_in(ns: &TestNetns) -> FakePool {
    let path = ns.path();
    // setns changes only the calling thread; the pool's own threads
    // accept on the listener it made.
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("open netns");
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        FakePool::start()
    })
    .join()
    .expect("pool thread")
}

/// From a child in `cgroup` (or outside any) that enters `netns`: a
/// non-blocking Fast Open `sendto` of 4000 spaces with a 536-byte MSS (the
/// namespace sends SYN data without a cookie), which the kernel takes only
/// in part (what fits the SYN); once connected, 200 more spaces, then the
/// login. The child's end: `Code(100 + e * 2 + r)` with `e` the errno of the
/// 200 spaces' send (0: sent) and `r` 1 when the login's send failed;
/// `10 + errno` when the Fast Open send failed, 95 when the kernel took it
/// whole, 94/99 when the set-up failed.
fn partly_taken_then_login_in(
    cgroup: Option<&OwnedCgroup>,
    netns: &std::ffi::CStr,
    pool: SocketAddr,
) -> ChildEnd {
    let (storage, len, family) = sockaddr_of(pool);
    let login = login();
    let spaces = [b' '; 4000];
    fork_in(cgroup, || unsafe {
        let nsfd = libc::open(netns.as_ptr(), libc::O_RDONLY);
        if nsfd < 0 || libc::setns(nsfd, libc::CLONE_NEWNET) != 0 {
            return 99;
        }
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
        let mss: i32 = 536;
        if fd < 0
            || libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_MAXSEG,
                (&mss as *const i32).cast(),
                4,
            ) != 0
        {
            return 99;
        }
        let taken = libc::sendto(
            fd,
            spaces.as_ptr().cast(),
            spaces.len(),
            libc::MSG_NOSIGNAL | libc::MSG_FASTOPEN,
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        );
        if taken < 0 {
            return 10 + (*libc::__errno_location()).min(40);
        }
        if taken as usize >= spaces.len() {
            return 95;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        if libc::poll(&mut pfd, 1, 5_000) != 1 {
            return 94;
        }
        let more = libc::send(fd, spaces.as_ptr().cast(), 200, libc::MSG_NOSIGNAL);
        let more = if more == 200 {
            0
        } else {
            *libc::__errno_location()
        };
        let sent = libc::send(fd, login.as_ptr().cast(), login.len(), libc::MSG_NOSIGNAL);
        let refused = i32::from(sent != login.len() as isize);
        libc::usleep(300_000);
        100 + more.min(50) * 2 + refused
    })
}

/// A send the kernel takes only part of leaves the lsm reader ahead of
/// the stream: it read 4000 bytes, the kernel took what fit a Fast Open SYN
/// (≈500). Counting them all, the reader spent its budget on the next 96
/// bytes and released the socket, and the login went out unread. Now the
/// send after the partial one is refused (`stream-gap-refused`), as is the
/// login. The judges of the cgroup backend read what the kernel took.
#[test]
fn a_send_the_kernel_took_in_part_leaves_no_way_around() {
    require_kernel!();
    let scoped = Scoped::apply(&stratum_profile());
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let ns = TestNetns::new();
    // Fast Open client on, SYN data without a cookie (0x1 | 0x4), in the
    // test's namespace only.
    let sysctl = Command::new("ip")
        .args(["netns", "exec", ns.name(), "sh", "-c"])
        .arg("echo 5 > /proc/sys/net/ipv4/tcp_fastopen")
        .status()
        .expect("run ip netns exec");
    assert!(sysctl.success(), "setting the namespace's tcp_fastopen");
    let path = std::ffi::CString::new(ns.path()).unwrap();

    let pool = fake_pool_in(&ns);
    let end = partly_taken_then_login_in(None, &path, pool.addr());
    assert_eq!(
        end,
        ChildEnd::Code(100),
        "outside the scope: every send went"
    );
    assert!(pool.wait_closed(1), "the pool's connection did not close");
    assert!(
        pool.methods().iter().any(|m| m == "login"),
        "outside the scope the pool should take the login; it took {:?}",
        pool.methods()
    );

    let pool = fake_pool_in(&ns);
    let end = partly_taken_then_login_in(Some(cg), &path, pool.addr());
    pool.wait_closed(1);
    let taken = pool.mining_methods();
    assert!(
        taken.is_empty(),
        "the pool took {taken:?} (client: {end:?})"
    );
    match enforcer.backend() {
        minerguard::BackendKind::Lsm => {
            assert_eq!(
                end,
                ChildEnd::Code(100 + libc::EPERM * 2 + 1),
                "the send after the partial one and the login should fail with EPERM"
            );
            assert!(
                wait_event(enforcer, |e| matches!(
                    e.target,
                    Target::Stratum {
                        signature: StratumSignature::StreamGap,
                        ..
                    }
                ))
                .is_some(),
                "no stream-gap-refused event"
            );
        }
        _ => eprintln!("cgroup backend: the pool took nothing (client: {end:?})"),
    }
}

/// A loopback listener whose accept queue is full (backlog 0, one client
/// connected and not accepted): the SYNs of the next client are dropped
/// until the filler is accepted, so that client stays connecting, and a
/// blocking send on it waits inside the kernel. Returns the listener and
/// the filler.
fn listener_with_full_queue() -> (TcpListener, std::net::TcpStream) {
    use std::os::fd::FromRawFd;
    let l = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket");
        let l = TcpListener::from_raw_fd(fd);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as u16;
        sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let sl = std::mem::size_of::<libc::sockaddr_in>() as u32;
        assert_eq!(
            libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), sl),
            0
        );
        assert_eq!(libc::listen(fd, 0), 0);
        l
    };
    let filler =
        std::net::TcpStream::connect(l.local_addr().unwrap()).expect("the filler connects");
    (l, filler)
}

/// `setsockopt(fd, level, name, value)` for an int option; whether it
/// worked.
///
/// # Safety
/// `fd` is a socket of the calling process.
unsafe fn set_int_option(fd: i32, level: i32, name: i32, value: i32) -> bool {
    libc::setsockopt(fd, level, name, (&value as *const i32).cast(), 4) == 0
}

/// From a child in `cgroup`: a socket connected to `addr` (a pool that
/// reads only 4 s in) with a small send buffer gets a blocking send of
/// 1 MiB of spaces from a second process sharing it: the hook reads its
/// first 4 KiB (the reader's budget, so the kernel copies them before it
/// can wait) and the kernel then waits for room. Once the socket stops
/// polling writable (the waiter is blocked, up to 3 s), and 100 ms more,
/// the child sends an empty message (MSG_DONTWAIT); once the second process's send
/// returned, the child sends the login. The child's end packs the errnos:
/// `Code(raced * 2 + (login refused))` with `raced` the errno of the
/// child's racing send (0: sent), or 90+ when the set-up or the waiting
/// send failed.
fn racing_sends_in(cgroup: &OwnedCgroup, addr: SocketAddr) -> ChildEnd {
    let (storage, len, family) = sockaddr_of(addr);
    let login = login();
    let spaces = vec![b' '; 1 << 20];
    fork_in(Some(cgroup), || unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return 99;
        }
        let sa = (&storage as *const libc::sockaddr_storage).cast();
        if !set_int_option(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 16 << 10)
            || libc::connect(fd, sa, len) != 0
        {
            return 98;
        }
        let empty = b"{}\n";
        let waiter = libc::fork();
        if waiter == 0 {
            let sent = libc::send(fd, spaces.as_ptr().cast(), spaces.len(), libc::MSG_NOSIGNAL);
            libc::_exit(if sent == spaces.len() as isize { 0 } else { 1 });
        }
        // Until the waiter has filled the send buffer (the socket stops
        // polling writable), so that it is inside its send, waiting for
        // the pool; however slowly it was scheduled.
        let mut tries = 0;
        loop {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            if libc::poll(&mut p, 1, 0) == 0 {
                break;
            }
            tries += 1;
            if tries > 300 {
                return 95;
            }
            libc::usleep(10_000);
        }
        libc::usleep(100_000);
        let raced = libc::send(
            fd,
            empty.as_ptr().cast(),
            empty.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        );
        let raced = if raced < 0 {
            *libc::__errno_location()
        } else {
            0
        };
        let mut status = 0;
        libc::waitpid(waiter, &mut status, 0);
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return 96;
        }
        let sent = libc::send(fd, login.as_ptr().cast(), login.len(), libc::MSG_NOSIGNAL);
        let refused = i32::from(sent != login.len() as isize);
        libc::usleep(300_000);
        raced.min(40) * 2 + refused
    })
}

/// Two sends on one socket in flight at once: the lsm hook reads them in
/// the order their hooks run, which need not be the order the kernel
/// queues them in, so a stream read so cannot be trusted. While one send
/// of a stream being judged is in the kernel (here waiting for room after
/// the bytes read), another thread's send on it is refused (EPERM,
/// `stream-gap-refused`), as are later ones: the login sent after reaches
/// nobody. The egress judge reads the packets, in order, and needs no such
/// rule: there the racing send goes or waits for room like any, and the
/// login, past the 4 KiB the reader reads, is not judged.
#[test]
fn a_send_racing_another_in_flight_is_refused() {
    require_kernel!();
    let scoped = Scoped::apply(&stratum_profile());
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    // A receive buffer of its own size grows as data arrives unread (up to
    // tcp_rmem's most), and could take the whole 1 MiB: the least there is.
    let pool = listener_with_small_window();
    let addr = pool.local_addr().unwrap();
    let (end, got) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut conn = accept_within(&pool);
            // Time for the child to see the waiter blocked and race it.
            std::thread::sleep(Duration::from_millis(4000));
            let mut got = Vec::new();
            let _ = std::io::Read::read_to_end(&mut conn, &mut got);
            got
        });
        let end = racing_sends_in(cg, addr);
        (end, reader.join().unwrap())
    });
    assert!(got.len() >= 1 << 20, "the pool read {} bytes", got.len());
    if enforcer.backend() == minerguard::BackendKind::Cgroup {
        // The racing send is appended to the waiter's last segment if it
        // has room (a send checks for room only to start a segment), else
        // it gets EAGAIN; the login, past the bytes the reader reads, goes.
        assert!(
            end == ChildEnd::Code(0) || end == ChildEnd::Code(libc::EAGAIN * 2),
            "the child's end: {end:?}"
        );
        return;
    }
    assert!(
        !contains_ignore_case(&got, LOGIN_METHOD),
        "the pool received the login"
    );
    assert_eq!(
        end,
        ChildEnd::Code(libc::EPERM * 2 + 1),
        "the racing send and the login should both be refused with EPERM"
    );
    assert!(
        wait_event(enforcer, |e| {
            matches!(
                e.target,
                Target::Stratum {
                    signature: StratumSignature::StreamGap,
                    ..
                }
            )
        })
        .is_some(),
        "no stream-gap-refused event"
    );
}

/// How the kernel is made to wait inside a blocking send, after the lsm
/// hook read the caller's buffer and before the kernel copied it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KernelWait {
    /// A send on a socket still connecting (its SYN dropped: the pool's
    /// accept queue is full): the kernel waits for the connection. A real
    /// pool's round trip is such a wait too.
    Connecting,
    /// A Fast Open `sendto` on an unconnected socket, the same way.
    FastOpen,
    /// A send on a connected socket with the least send buffer there is
    /// and 88-byte segments, to a pool that does not read yet: the kernel
    /// waits for room.
    SendBuffer,
    /// A send on a connected socket with `TCP_NOTSENT_LOWAT` at 1 byte,
    /// to a pool that does not read yet.
    NotsentLowat,
}

/// What the pool gets only when the rewrite reached it (the harmless
/// message still names `"login"` as a parameter).
const LOGIN_METHOD: &[u8] = b"\"method\":\"login\"";

const KERNEL_WAITS: [KernelWait; 4] = [
    KernelWait::Connecting,
    KernelWait::FastOpen,
    KernelWait::SendBuffer,
    KernelWait::NotsentLowat,
];

/// A loopback listener with the least receive buffer there is: its
/// connections' window closes after a few hundred bytes while it does not
/// read.
fn listener_with_small_window() -> TcpListener {
    use std::os::fd::FromRawFd;
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket");
        let l = TcpListener::from_raw_fd(fd);
        let one: i32 = 1;
        assert_eq!(
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&one as *const i32).cast(),
                4
            ),
            0
        );
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as u16;
        sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let sl = std::mem::size_of::<libc::sockaddr_in>() as u32;
        assert_eq!(
            libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), sl),
            0
        );
        assert_eq!(libc::listen(fd, 8), 0);
        l
    }
}

/// From a child in `cgroup` (or outside any): a blocking send to `addr`
/// of a harmless JSON-RPC message (XMRig's login with its method renamed
/// `loxin`, after 3,600 bytes of blank lines where the kernel must wait for
/// room), in shared memory that a second process turns back into the login
/// 300 ms into the send, while the kernel waits as `wait` says. The child's
/// end: `Code(0)` when the send went whole, `100 + errno` when it failed,
/// 90+ when the set-up failed.
fn rewritten_while_the_kernel_waits(
    cgroup: Option<&OwnedCgroup>,
    addr: SocketAddr,
    wait: KernelWait,
) -> ChildEnd {
    let (storage, len, family) = sockaddr_of(addr);
    let harmless = login().replacen("\"login\"", "\"loxin\"", 1);
    let flip = harmless.find("loxin").unwrap() + 2;
    let pad = match wait {
        KernelWait::SendBuffer | KernelWait::NotsentLowat => 3600,
        KernelWait::Connecting | KernelWait::FastOpen => 0,
    };
    let total = pad + harmless.len();
    assert!(total < 4096, "within the reader's budget");
    fork_in(cgroup, move || unsafe {
        let buf = libc::mmap(
            std::ptr::null_mut(),
            total,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if buf == libc::MAP_FAILED {
            return 90;
        }
        let buf = buf.cast::<u8>();
        for i in 0..pad {
            *buf.add(i) = if i % 64 == 63 { b'\n' } else { b' ' };
        }
        std::ptr::copy_nonoverlapping(harmless.as_ptr(), buf.add(pad), harmless.len());
        let sa = (&storage as *const libc::sockaddr_storage).cast();
        let nonblock = if wait == KernelWait::Connecting {
            libc::SOCK_NONBLOCK
        } else {
            0
        };
        let fd = libc::socket(family, libc::SOCK_STREAM | nonblock, 0);
        if fd < 0 {
            return 91;
        }
        match wait {
            KernelWait::Connecting => {
                if libc::connect(fd, sa, len) == 0
                    || *libc::__errno_location() != libc::EINPROGRESS
                    || libc::fcntl(fd, libc::F_SETFL, 0) != 0
                {
                    return 92;
                }
            }
            KernelWait::FastOpen => {}
            KernelWait::SendBuffer => {
                // Small segments, each a new skb that needs room.
                if !set_int_option(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 1)
                    || !set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG, 88)
                    || libc::connect(fd, sa, len) != 0
                {
                    return 93;
                }
            }
            KernelWait::NotsentLowat => {
                if libc::connect(fd, sa, len) != 0
                    || !set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT, 1)
                {
                    return 94;
                }
            }
        }
        let rewriter = libc::fork();
        if rewriter == 0 {
            libc::usleep(300_000);
            *buf.add(pad + flip) = b'g';
            libc::_exit(0);
        }
        let sent = if wait == KernelWait::FastOpen {
            libc::sendto(
                fd,
                buf.cast(),
                total,
                libc::MSG_NOSIGNAL | libc::MSG_FASTOPEN,
                sa,
                len,
            )
        } else {
            libc::send(fd, buf.cast(), total, libc::MSG_NOSIGNAL)
        };
        let errno = *libc::__errno_location();
        let mut status = 0;
        libc::waitpid(rewriter, &mut status, 0);
        libc::usleep(300_000);
        if sent == total as isize {
            0
        } else {
            100 + errno.min(150)
        }
    })
}

/// Runs [`rewritten_while_the_kernel_waits`] against a pool made for
/// `wait`, which starts reading 800 ms in; returns the child's end and
/// what the pool read.
fn rewrite_while_waiting(cgroup: Option<&OwnedCgroup>, wait: KernelWait) -> (ChildEnd, Vec<u8>) {
    let connecting = matches!(wait, KernelWait::Connecting | KernelWait::FastOpen);
    let (pool, filler) = if connecting {
        let (l, f) = listener_with_full_queue();
        (l, Some(f))
    } else {
        (listener_with_small_window(), None)
    };
    let addr = pool.local_addr().unwrap();
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let _filler_peer = if connecting {
                std::thread::sleep(Duration::from_millis(800));
                Some(pool.accept().expect("accept the filler"))
            } else {
                None
            };
            // A client refused before it connects never comes.
            let Some(mut conn) = try_accept_within(&pool, Duration::from_secs(5)) else {
                return Vec::new();
            };
            if !connecting {
                std::thread::sleep(Duration::from_millis(800));
            }
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut got = Vec::new();
            let _ = std::io::Read::read_to_end(&mut conn, &mut got);
            got
        });
        let end = rewritten_while_the_kernel_waits(cgroup, addr, wait);
        let got = reader.join().unwrap();
        drop(filler);
        (end, got)
    })
}

/// The lsm hook reads a send's buffer before the kernel copies it. A
/// blocking send can wait in between (for the connection, a real pool's
/// round trip; for send-buffer room, which the sender and the pool
/// control), and another process sharing the buffer can rewrite it
/// meanwhile: the pool took a login the hook had read as a harmless method
/// (6.1 and 6.12, before session 27). Now a blocking send the kernel may
/// take only after such a wait is refused before it is read (EAGAIN; a
/// Fast Open one EOPNOTSUPP, as where Fast Open is off: the caller
/// connects instead), with a `send-would-wait-refused` event. The egress
/// judge reads the packets that leave and drops the login's; the sk-msg
/// judge reads the kernel's copy, but not a send made while connecting.
#[test]
fn a_buffer_rewritten_while_the_kernel_waits_is_not_sent() {
    require_kernel!();
    let mut failures = Vec::new();
    for wait in KERNEL_WAITS {
        let (end, got) = rewrite_while_waiting(None, wait);
        let label = format!("{wait:?}, outside the scope");
        let mut problems = Vec::new();
        if end != ChildEnd::Code(0) {
            problems.push(format!("the send ended {end:?}"));
        }
        if !contains_ignore_case(&got, LOGIN_METHOD) {
            problems.push(format!(
                "the pool did not take the rewritten login: {:?}",
                String::from_utf8_lossy(&got)
            ));
        }
        report(&label, problems, &mut failures);
    }
    let scoped = Scoped::apply(&stratum_profile());
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    for wait in KERNEL_WAITS {
        let (end, got) = rewrite_while_waiting(Some(cg), wait);
        let label = format!("{wait:?}");
        eprintln!(
            "{label}: the send ended {end:?}; the pool read {} bytes",
            got.len()
        );
        let mut problems = Vec::new();
        if sk_msg_judges(enforcer) && matches!(wait, KernelWait::Connecting | KernelWait::FastOpen)
        {
            // A send that waits for the connection is in tcp_sendmsg before
            // sockops moves the socket to the sk_msg verdict: nothing reads
            // it (docs/threat-model.md, open with sk-msg only).
            eprintln!("open {label}: the sk-msg judge does not read a send made while connecting");
            continue;
        }
        if contains_ignore_case(&got, LOGIN_METHOD) {
            problems.push(format!("the pool took the login (client: {end:?})"));
        }
        if sk_msg_judges(enforcer) {
            // The verdict reads the kernel's copy: no login was sent.
            report(&label, problems, &mut failures);
            continue;
        }
        let want = if enforcer.backend() == minerguard::BackendKind::Lsm {
            let errno = if wait == KernelWait::FastOpen {
                libc::EOPNOTSUPP
            } else {
                libc::EAGAIN
            };
            if end != ChildEnd::Code(100 + errno) {
                problems.push(format!("the send ended {end:?}, not with errno {errno}"));
            }
            StratumSignature::SendWouldWait
        } else {
            StratumSignature::Login
        };
        let seen = events_within(enforcer, Duration::from_millis(500), |e| {
            e.rule.as_ref() == "stratum-protocol"
        });
        if !seen
            .iter()
            .any(|e| matches!(e.target, Target::Stratum { signature, .. } if signature == want))
        {
            problems.push(format!("no {} event; seen {seen:?}", want.as_str()));
        }
        report(&label, problems, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// userfaultfd's ABI (linux/userfaultfd.h): the API version, the three
/// ioctls used here (`_IOWR(0xAA, nr, struct)`), the registration mode and
/// the page-fault message's event code.
mod uffd {
    pub const API: u64 = 0xAA;
    pub const IOC_API: libc::c_ulong = 0xC018_AA3F;
    pub const IOC_REGISTER: libc::c_ulong = 0xC020_AA00;
    pub const IOC_COPY: libc::c_ulong = 0xC028_AA03;
    pub const REGISTER_MODE_MISSING: u64 = 1;
    pub const EVENT_PAGEFAULT: u8 = 0x12;
    /// `struct uffdio_api`.
    #[repr(C)]
    pub struct Api {
        pub api: u64,
        pub features: u64,
        pub ioctls: u64,
    }
    /// `struct uffdio_register`.
    #[repr(C)]
    pub struct Register {
        pub start: u64,
        pub len: u64,
        pub mode: u64,
        pub ioctls: u64,
    }
    /// `struct uffdio_copy`.
    #[repr(C)]
    pub struct Copy {
        pub dst: u64,
        pub src: u64,
        pub len: u64,
        pub mode: u64,
        pub copy: i64,
    }
}

/// From a child in `cgroup` (or outside any), connected to `addr` (a pool
/// that greets with one byte, then reads): the child receives that byte
/// into a page registered with userfaultfd, so the receive faults while it
/// holds the socket's lock and waits there until the page is served. A
/// second process then makes a blocking send of a harmless JSON-RPC message
/// (XMRig's login with its method renamed `loxin`) from shared memory: the
/// lsm hook reads it, and the kernel waits for the lock before copying it.
/// 500 ms later the second process turns the buffer back into the login and
/// serves the page: the receive returns, and the kernel copies the login.
/// The child's end: `Code(0)` when the send went whole, `100 + errno` when
/// it failed, 80+ when the set-up failed (89: no userfaultfd here).
fn rewritten_while_a_receive_holds_the_lock(
    cgroup: Option<&OwnedCgroup>,
    addr: SocketAddr,
) -> ChildEnd {
    let (storage, len, family) = sockaddr_of(addr);
    let harmless = login().replacen("\"login\"", "\"loxin\"", 1);
    let flip = harmless.find("loxin").unwrap() + 2;
    fork_in(cgroup, move || unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        let shared = libc::PROT_READ | libc::PROT_WRITE;
        let msg = libc::mmap(
            std::ptr::null_mut(),
            harmless.len(),
            shared,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        let rbuf = libc::mmap(
            std::ptr::null_mut(),
            page,
            shared,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if msg == libc::MAP_FAILED || rbuf == libc::MAP_FAILED {
            return 80;
        }
        let msg = msg.cast::<u8>();
        std::ptr::copy_nonoverlapping(harmless.as_ptr(), msg, harmless.len());
        let fd = libc::socket(family, libc::SOCK_STREAM, 0);
        let sa = (&storage as *const libc::sockaddr_storage).cast();
        if fd < 0 || libc::connect(fd, sa, len) != 0 {
            return 81;
        }
        let mut greeting = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&mut greeting, 1, 5000) != 1 {
            return 82;
        }
        let uffd = libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) as i32;
        if uffd < 0 {
            return 89;
        }
        let mut api = uffd::Api {
            api: uffd::API,
            features: 0,
            ioctls: 0,
        };
        let mut register = uffd::Register {
            start: rbuf as u64,
            len: page as u64,
            mode: uffd::REGISTER_MODE_MISSING,
            ioctls: 0,
        };
        if libc::ioctl(uffd, uffd::IOC_API, &mut api) != 0
            || libc::ioctl(uffd, uffd::IOC_REGISTER, &mut register) != 0
        {
            return 83;
        }
        let handler = libc::fork();
        if handler == 0 {
            // The receive's fault: it holds the socket's lock now.
            let mut fault = libc::pollfd {
                fd: uffd,
                events: libc::POLLIN,
                revents: 0,
            };
            let mut m = [0u8; 32];
            if libc::poll(&mut fault, 1, 5000) != 1
                || libc::read(uffd, m.as_mut_ptr().cast(), 32) != 32
                || m[0] != uffd::EVENT_PAGEFAULT
            {
                libc::_exit(84);
            }
            let sender = libc::fork();
            if sender == 0 {
                let sent = libc::send(fd, msg.cast(), harmless.len(), libc::MSG_NOSIGNAL);
                libc::_exit(login_sent_end(sent, harmless.len()));
            }
            libc::usleep(500_000);
            *msg.add(flip) = b'g';
            let fill = [b'x'; 4096];
            let mut copy = uffd::Copy {
                dst: rbuf as u64,
                src: fill.as_ptr() as u64,
                len: page.min(4096) as u64,
                mode: 0,
                copy: 0,
            };
            if libc::ioctl(uffd, uffd::IOC_COPY, &mut copy) != 0 {
                libc::kill(sender, libc::SIGKILL);
                libc::_exit(85);
            }
            let mut status = 0;
            libc::waitpid(sender, &mut status, 0);
            libc::_exit(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                86
            });
        }
        if libc::recv(fd, rbuf, 1, 0) != 1 {
            libc::kill(handler, libc::SIGKILL);
        }
        let mut status = 0;
        libc::waitpid(handler, &mut status, 0);
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            87
        }
    })
}

/// Runs [`rewritten_while_a_receive_holds_the_lock`] against a loopback
/// pool that greets with a newline and then reads until the connection
/// ends (or 10 s); returns the child's end and what the pool read.
fn rewrite_while_locked(cgroup: Option<&OwnedCgroup>) -> (ChildEnd, Vec<u8>) {
    let pool = TcpListener::bind("127.0.0.1:0").expect("bind the pool");
    let addr = pool.local_addr().unwrap();
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let Some(mut conn) = try_accept_within(&pool, Duration::from_secs(5)) else {
                return Vec::new();
            };
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let _ = std::io::Write::write_all(&mut conn, b"\n");
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = std::io::Read::read(&mut conn, &mut chunk) {
                got.extend_from_slice(&chunk[..n]);
            }
            got
        });
        let end = rewritten_while_a_receive_holds_the_lock(cgroup, addr);
        (end, reader.join().unwrap())
    })
}

/// The lsm hook reads a send's buffer before the kernel copies it, and
/// the kernel copies it only once it holds the socket's lock. A receive
/// into a page that faults (userfaultfd: its owner decides when the page
/// comes) holds that lock for as long as its owner likes, so the kernel
/// waits between the hook and the copy on a connected socket whose buffers
/// are empty, a wait the hook cannot see, and another process rewrites
/// the buffer meanwhile: the pool took a login the hook had read as a
/// harmless method (6.12, before session 28). What leaves is judged again:
/// the egress judge (on the lsm backend, behind the hook) drops the login's
/// packet and destroys the socket; the sk-msg verdict reads the kernel's
/// copy.
#[test]
fn a_buffer_rewritten_while_a_receive_holds_the_socket_lock_is_not_sent() {
    require_kernel!();
    let (end, got) = rewrite_while_locked(None);
    assert_eq!(end, ChildEnd::Code(0), "outside the scope");
    assert!(
        contains_ignore_case(&got, LOGIN_METHOD),
        "outside the scope the pool should take the rewritten login; it read {:?}",
        String::from_utf8_lossy(&got)
    );
    let scoped = Scoped::apply(&stratum_profile());
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let (end, got) = rewrite_while_locked(Some(cg));
    eprintln!("the send ended {end:?}; the pool read {} bytes", got.len());
    assert!(
        !contains_ignore_case(&got, LOGIN_METHOD),
        "the pool took the login (client: {end:?}): {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        matches!(end, ChildEnd::Code(c) if c == 0 || c >= 100),
        "the set-up failed: {end:?}"
    );
    let seen = events_within(enforcer, Duration::from_millis(500), |e| {
        e.rule.as_ref() == "stratum-protocol"
    });
    assert!(
        seen.iter().any(|e| matches!(
            e.target,
            Target::Stratum {
                signature: StratumSignature::Login,
                ..
            }
        )),
        "no login event; seen {seen:?}"
    );
}

/// How an SMC socket is made.
#[derive(Debug, Clone, Copy)]
enum SmcSocket {
    /// `socket(AF_SMC, SOCK_STREAM, SMCPROTO_SMC)` (what smc_run's preload
    /// makes of an AF_INET stream socket).
    AfSmc,
    /// `socket(AF_INET, SOCK_STREAM, IPPROTO_SMC)` (Linux 6.11 and later).
    IpprotoSmc,
}

/// How an SMC socket sends the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SmcSend {
    /// `connect`, then `send`: SMC falls back to TCP at the connect (the
    /// pool has no SMC), and the descriptor then names the TCP socket.
    Connect,
    /// `sendto(MSG_FASTOPEN)` on the unconnected socket: SMC falls back in
    /// the send itself and hands the data to its TCP socket directly.
    FastOpen,
}

/// From a child in `cgroup` (or outside any): an SMC socket of `kind`
/// sends the login to `pool` the way `how` says. The child's end:
/// `Code(0)` when it was sent whole, `100 + errno` when the send failed,
/// `Code(96)` when this kernel makes no such socket (no SMC), 99 when the
/// connect failed.
fn smc_login_in(
    cgroup: Option<&OwnedCgroup>,
    pool: SocketAddr,
    kind: SmcSocket,
    how: SmcSend,
) -> ChildEnd {
    const AF_SMC: i32 = 43;
    const IPPROTO_SMC: i32 = 256;
    let (storage, len, _) = sockaddr_of(pool);
    let login = login();
    fork_in(cgroup, || unsafe {
        let fd = match kind {
            SmcSocket::AfSmc => libc::socket(AF_SMC, libc::SOCK_STREAM, 0),
            SmcSocket::IpprotoSmc => libc::socket(libc::AF_INET, libc::SOCK_STREAM, IPPROTO_SMC),
        };
        if fd < 0 {
            return 96;
        }
        let addr = (&storage as *const libc::sockaddr_storage).cast();
        let sent = match how {
            SmcSend::Connect => {
                if libc::connect(fd, addr, len) != 0 {
                    return 99;
                }
                libc::send(fd, login.as_ptr().cast(), login.len(), libc::MSG_NOSIGNAL)
            }
            SmcSend::FastOpen => libc::sendto(
                fd,
                login.as_ptr().cast(),
                login.len(),
                libc::MSG_NOSIGNAL | libc::MSG_FASTOPEN,
                addr,
                len,
            ),
        };
        login_sent_end(sent, login.len())
    })
}

/// SMC sockets (`smc_run` makes any client's sockets SMC) fall back to TCP
/// with a peer that has no SMC, any pool. After a connect the descriptor
/// names the TCP socket, whose sends the judges read as any other; but a
/// Fast Open `sendto` on an unconnected SMC socket falls back inside the
/// send and hands the data to the TCP socket directly, past the lsm hook
/// (which saw an SMC socket). The pool must get no login either way. Where
/// this kernel makes no such socket at all (no `smc` module; no
/// `IPPROTO_SMC` before 6.11), none can carry anything, which the run
/// checks too.
#[test]
fn an_smc_socket_cannot_carry_a_login() {
    require_kernel!();
    let scoped = Scoped::apply(&stratum_profile());
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let mut failures = Vec::new();
    for kind in [SmcSocket::AfSmc, SmcSocket::IpprotoSmc] {
        for how in [SmcSend::Connect, SmcSend::FastOpen] {
            let label = format!("{kind:?} {how:?}");
            let pool = FakePool::start();
            let outside = smc_login_in(None, pool.addr(), kind, how);
            if outside == ChildEnd::Code(96) {
                let pool = FakePool::start();
                let inside = smc_login_in(Some(cg), pool.addr(), kind, how);
                assert_eq!(
                    inside,
                    ChildEnd::Code(96),
                    "{label}: no SMC outside the scope, yet in it"
                );
                eprintln!("ok   {label}: this kernel makes no such socket");
                continue;
            }
            // Outside the scope the pool takes the login: SMC fell back to TCP.
            assert_pool_took_login(&label, outside, &pool);
            let pool = FakePool::start();
            let end = smc_login_in(Some(cg), pool.addr(), kind, how);
            // lsm refuses an SMC socket's own sends unread; the TCP socket
            // behind a connected one is read, and the egress judge reads
            // the TCP socket's packets either way.
            let want = if how == SmcSend::FastOpen && !egress_judges(enforcer) {
                StratumSignature::Smc
            } else {
                StratumSignature::Login
            };
            let problems = login_refusal_problems(enforcer, &pool, &end, want);
            report(&label, problems, &mut failures);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// XMRig 6.16 reaches a pool through a proxy only with `--proxy`/`-x`,
/// SOCKS5 without authentication (it has no HTTP CONNECT: that tunnel is
/// covered by the scripted client above).
#[test]
fn xmrig_through_a_socks5_proxy_cannot_log_in() {
    require_kernel!();
    let Some(xmrig) = xmrig_binary(module_path!()) else {
        return;
    };
    let dir = TempDir::new("xmrig");
    let scoped = Scoped::apply(&stratum_profile());
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());

    // Outside the scope its login reaches the pool through the proxy.
    let pool = FakePool::start();
    let proxy = Proxy::start(ProxyKind::Socks5);
    let miner = Xmrig::start(None, &xmrig, pool.addr(), Some(proxy.addr()), &dir);
    let logged_in = wait_until(Duration::from_secs(20), || {
        pool.mining_methods().iter().any(|m| m == "login")
    });
    let said = miner.stop();
    assert!(
        logged_in && proxy.tunnels() >= 1,
        "outside the scope XMRig's login should reach the pool through SOCKS5 \
         (tunnels: {}, pool took {:?}); XMRig said:\n{said}",
        proxy.tunnels(),
        pool.methods()
    );

    // In the scope: it goes through the proxy, its login is refused, and it
    // closes the socket (then retries, a second later).
    let pool = FakePool::start();
    let proxy = Proxy::start(ProxyKind::Socks5);
    let miner = Xmrig::start(Some(cg), &xmrig, pool.addr(), Some(proxy.addr()), &dir);
    let tried = wait_until(Duration::from_secs(20), || {
        pool.closed() >= 1 || !pool.mining_methods().is_empty()
    });
    std::thread::sleep(Duration::from_millis(200));
    let said = miner.stop();
    let taken = pool.mining_methods();
    assert!(
        tried && proxy.tunnels() >= 1,
        "XMRig did not reach the pool through the proxy (tunnels: {}); XMRig said:\n{said}",
        proxy.tunnels()
    );
    assert!(
        taken.is_empty() && !contains_ignore_case(&pool.bytes(), b"\"login\""),
        "the pool took {taken:?} from XMRig through SOCKS5; XMRig said:\n{said}"
    );
    let ev = wait_event(enforcer, |e| {
        e.rule.as_ref() == "stratum-protocol"
            && matches!(e.target, Target::Stratum { addr, .. } if addr == proxy.addr())
    });
    assert!(ev.is_some(), "no stratum-protocol event for XMRig's login");
}

/// The fake pool itself (no kernel needed): it takes what pools take, and
/// nothing from clean traffic.
#[test]
fn fake_pool_parses_like_a_pool() {
    let sub = SUBSCRIBE.trim_end().as_bytes();
    for (bytes, want) in [
        (
            format!("\u{feff}\n\n  \nhello\n{SUBSCRIBE}").into_bytes(),
            vec!["mining.subscribe"],
        ),
        (
            b"[{\"METHOD\":\"a\"},{\"method\":\"\\u006dining.x\"}]".to_vec(),
            vec!["a", "mining.x"],
        ),
        (
            http_post("/", "{\"method\":\n\"getjob\"}").into_bytes(),
            vec!["getjob"],
        ),
        (
            [
                websocket_upgrade("127.0.0.1:1".parse().unwrap(), "/")[0]
                    .send
                    .clone(),
                ws_message(sub, 3),
            ]
            .concat(),
            vec!["mining.subscribe"],
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), vec![]),
    ] {
        assert_eq!(
            parse_stream(&bytes),
            want,
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    assert!(is_mining_method("Mining.Notify") && is_mining_method("ETH_GETWORK"));
    assert!(!is_mining_method("submitOrder") && !is_mining_method("mining"));
}
