//! The client side of the Stratum stream tests: a byte stream sent from a
//! child forked into a cgroup ([`send_stream_in`]), after an optional tunnel
//! handshake whose replies it reads first ([`Tunnel`]: SOCKS4/4a/5, HTTP
//! CONNECT, a WebSocket upgrade), in sends of a chosen size; and WebSocket
//! client frames ([`ws_frame`], [`ws_message`]).

use std::net::SocketAddr;

use minerguard::cgroup::OwnedCgroup;

use super::{fork_in, send_once, sockaddr_of, ChildEnd, ProxyKind, SendVia};

/// What the client reads after sending one handshake step, before the next
/// step (or the payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Exactly `len` bytes, whose byte `at` must be `ok`.
    Bytes { len: usize, at: usize, ok: u8 },
    /// An HTTP response head (up to the blank line) with this status.
    Http { status: [u8; 3] },
}

/// One step of a client handshake: send these bytes, read the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Sent in one call.
    pub send: Vec<u8>,
    /// Read (and checked) before going on.
    pub reply: Reply,
}

/// How the client reaches the server before it sends its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tunnel {
    /// Straight to the server.
    Direct,
    /// SOCKS5 without authentication, to the target's IPv4 address.
    Socks5,
    /// SOCKS5 with username/password ([`SOCKS_USER`], [`SOCKS_PASS`]), to
    /// the host name `localhost`.
    Socks5Auth,
    /// SOCKS4, to the target's IPv4 address.
    Socks4,
    /// SOCKS4a, to the host name `localhost`.
    Socks4a,
    /// HTTP `CONNECT 127.0.0.1:port`.
    HttpConnect,
    /// Straight to the server, then an HTTP/1.1 WebSocket upgrade; the
    /// payload is then frames (see [`ws_message`]).
    WebSocket,
}

/// The SOCKS5 username the [`Tunnel::Socks5Auth`] client sends.
pub const SOCKS_USER: &str = "miner";
/// Its password.
pub const SOCKS_PASS: &str = "hunter2";

impl Tunnel {
    /// Every tunnel through a proxy.
    pub const PROXIES: [Tunnel; 5] = [
        Tunnel::Socks5,
        Tunnel::Socks5Auth,
        Tunnel::Socks4,
        Tunnel::Socks4a,
        Tunnel::HttpConnect,
    ];

    /// The proxy this tunnel goes through, if any.
    pub fn proxy(self) -> Option<ProxyKind> {
        match self {
            Tunnel::Direct | Tunnel::WebSocket => None,
            Tunnel::Socks5 => Some(ProxyKind::Socks5),
            Tunnel::Socks5Auth => Some(ProxyKind::Socks5Auth {
                user: SOCKS_USER,
                pass: SOCKS_PASS,
            }),
            Tunnel::Socks4 | Tunnel::Socks4a => Some(ProxyKind::Socks4),
            Tunnel::HttpConnect => Some(ProxyKind::HttpConnect),
        }
    }

    /// The client's handshake to reach `target` (an IPv4 loopback address).
    pub fn handshake(self, target: SocketAddr) -> Vec<Step> {
        match self {
            Tunnel::Direct => Vec::new(),
            Tunnel::Socks5 => socks5_handshake(target, None, false),
            Tunnel::Socks5Auth => socks5_handshake(target, Some((SOCKS_USER, SOCKS_PASS)), true),
            Tunnel::Socks4 => socks4_handshake(target, None),
            Tunnel::Socks4a => socks4_handshake(target, Some("localhost")),
            Tunnel::HttpConnect => http_connect_handshake(target),
            Tunnel::WebSocket => websocket_upgrade(target, "/"),
        }
    }
}

/// SOCKS5 (RFC 1928): greeting, optional username/password (RFC 1929),
/// CONNECT to `target`'s IPv4 address (or to the name `localhost`).
pub fn socks5_handshake(
    target: SocketAddr,
    auth: Option<(&str, &str)>,
    by_name: bool,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let method = if auth.is_some() { 2 } else { 0 };
    steps.push(Step {
        send: vec![5, 1, method],
        reply: Reply::Bytes {
            len: 2,
            at: 1,
            ok: method,
        },
    });
    if let Some((user, pass)) = auth {
        let mut a = vec![1, user.len() as u8];
        a.extend_from_slice(user.as_bytes());
        a.push(pass.len() as u8);
        a.extend_from_slice(pass.as_bytes());
        steps.push(Step {
            send: a,
            reply: Reply::Bytes {
                len: 2,
                at: 1,
                ok: 0,
            },
        });
    }
    let mut req = vec![5, 1, 0];
    match (by_name, target) {
        (true, _) => {
            req.extend_from_slice(&[3, 9]);
            req.extend_from_slice(b"localhost");
        }
        (false, SocketAddr::V4(a)) => {
            req.push(1);
            req.extend_from_slice(&a.ip().octets());
        }
        (false, SocketAddr::V6(a)) => {
            req.push(4);
            req.extend_from_slice(&a.ip().octets());
        }
    }
    req.extend_from_slice(&target.port().to_be_bytes());
    // The proxies here always answer with an IPv4 bound address: 10 bytes.
    steps.push(Step {
        send: req,
        reply: Reply::Bytes {
            len: 10,
            at: 1,
            ok: 0,
        },
    });
    steps
}

/// SOCKS4 CONNECT to `target`'s IPv4 address, or SOCKS4a to `host`.
pub fn socks4_handshake(target: SocketAddr, host: Option<&str>) -> Vec<Step> {
    let SocketAddr::V4(a) = target else {
        panic!("SOCKS4 needs an IPv4 target")
    };
    let mut req = vec![4, 1];
    req.extend_from_slice(&a.port().to_be_bytes());
    match host {
        Some(_) => req.extend_from_slice(&[0, 0, 0, 1]),
        None => req.extend_from_slice(&a.ip().octets()),
    }
    req.extend_from_slice(b"miner\0");
    if let Some(h) = host {
        req.extend_from_slice(h.as_bytes());
        req.push(0);
    }
    vec![Step {
        send: req,
        reply: Reply::Bytes {
            len: 8,
            at: 1,
            ok: 0x5a,
        },
    }]
}

/// `CONNECT host:port HTTP/1.1` with a Host header.
pub fn http_connect_handshake(target: SocketAddr) -> Vec<Step> {
    vec![Step {
        send: format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Connection: keep-alive\r\n\
             User-Agent: curl/7.88.1\r\n\r\n"
        )
        .into_bytes(),
        reply: Reply::Http { status: *b"200" },
    }]
}

/// An HTTP/1.1 WebSocket upgrade of `path` on `target`, expecting 101.
pub fn websocket_upgrade(target: SocketAddr, path: &str) -> Vec<Step> {
    vec![Step {
        send: format!(
            "GET {path} HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nOrigin: http://{target}\r\n\r\n"
        )
        .into_bytes(),
        reply: Reply::Http { status: *b"101" },
    }]
}

/// WebSocket opcodes.
pub const WS_CONTINUATION: u8 = 0x0;
/// A text frame.
pub const WS_TEXT: u8 = 0x1;
/// A ping (control) frame.
pub const WS_PING: u8 = 0x9;

/// One client frame (RFC 6455: clients mask every frame) with `mask`.
pub fn ws_frame(opcode: u8, fin: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// A text message in `frames` masked frames: a text frame then
/// continuations, the payload split as evenly as it goes.
pub fn ws_message(text: &[u8], frames: usize) -> Vec<u8> {
    let frames = frames.max(1);
    let size = text.len().div_ceil(frames).max(1);
    let parts: Vec<&[u8]> = text.chunks(size).collect();
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let opcode = if i == 0 { WS_TEXT } else { WS_CONTINUATION };
        let mask = [0x37, 0xfa, 0x21 ^ i as u8, 0x3d];
        out.extend(ws_frame(opcode, i + 1 == parts.len(), part, mask));
    }
    out
}

/// How [`send_stream_in`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutcome {
    /// The handshake and every byte of the payload went out.
    AllSent,
    /// connect() to the first hop failed with this errno.
    ConnectFailed(i32),
    /// Handshake step `step` failed: its send or read failed with `errno`
    /// (0: the peer closed, or its reply was not a success).
    HandshakeFailed { step: usize, errno: i32 },
    /// The payload send starting at byte `offset` failed with `errno`; one
    /// more send of the same bytes then failed with `again` (0 if it went
    /// out).
    Refused {
        offset: usize,
        errno: i32,
        again: i32,
    },
    /// The child was killed by this signal.
    Signal(i32),
}

impl StreamOutcome {
    /// Whether the payload was refused with `errno`, and so was the next
    /// send on that socket.
    /// With the egress judge (`errno` ECONNABORTED: the socket was
    /// destroyed) the call after the refused one fails with EPIPE.
    pub fn refused_with(&self, errno: i32) -> bool {
        let again_ok = |a: i32| a == errno || (errno == libc::ECONNABORTED && a == libc::EPIPE);
        matches!(*self, StreamOutcome::Refused { errno: e, again: a, .. } if e == errno && again_ok(a))
    }
}

/// How a payload is cut into calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunks {
    /// One call for the whole payload.
    Whole,
    /// Calls of this many bytes.
    Of(usize),
}

impl Chunks {
    /// The call size for a payload of `len` bytes.
    pub fn size(self, len: usize) -> usize {
        match self {
            Chunks::Whole => len.max(1),
            Chunks::Of(n) => n,
        }
    }
}

impl std::fmt::Display for Chunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Chunks::Whole => write!(f, "whole"),
            Chunks::Of(n) => write!(f, "{n}-byte sends"),
        }
    }
}

/// What the child reports through memory it shares with the test.
#[repr(C)]
struct Report {
    step: u64,
    offset: u64,
    errno: i64,
    again: i64,
}

/// Connects to `to` from a child forked into `cgroup` (or not moved),
/// does the `handshake` (each step sent in one call, its reply read and
/// checked), then sends `payload` in `chunks` calls of `via`. On the first
/// refused payload call it tries the same bytes once more (a refused
/// socket must stay refused). SIGPIPE is ignored in the child.
pub fn send_stream_in(
    cgroup: Option<&OwnedCgroup>,
    to: SocketAddr,
    handshake: &[Step],
    payload: &[u8],
    chunks: Chunks,
    via: SendVia,
) -> StreamOutcome {
    let (storage, len, family) = sockaddr_of(to);
    let chunk = chunks.size(payload.len());
    let egress = cgroup.is_some() && super::egress_under_test();
    // SAFETY: a fresh shared anonymous mapping, unmapped below.
    let shared = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            std::mem::size_of::<Report>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(shared, libc::MAP_FAILED, "mmap");
    let report = shared as *mut Report;
    let end = fork_in(cgroup, || unsafe {
        let errno = || *libc::__errno_location() as i64;
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let s = libc::socket(family, libc::SOCK_STREAM, 0);
        if s < 0 {
            return 99;
        }
        if libc::connect(s, (&storage as *const libc::sockaddr_storage).cast(), len) != 0 {
            (*report).errno = errno();
            return 3;
        }
        for (i, step) in handshake.iter().enumerate() {
            (*report).step = i as u64;
            if send_once(s, &step.send, SendVia::Send) != step.send.len() as isize {
                (*report).errno = errno();
                return 2;
            }
            let mut buf = [0u8; 512];
            let ok = match step.reply {
                Reply::Bytes { len, at, ok } => {
                    let mut got = 0;
                    while got < len {
                        let n = libc::recv(s, buf.as_mut_ptr().add(got).cast(), len - got, 0);
                        if n <= 0 {
                            (*report).errno = if n < 0 { errno() } else { 0 };
                            return 2;
                        }
                        got += n as usize;
                    }
                    buf[at] == ok
                }
                Reply::Http { status } => {
                    let mut got = 0;
                    while got < 4 || buf[got - 4..got] != *b"\r\n\r\n" {
                        if got == buf.len() {
                            return 2;
                        }
                        let n = libc::recv(s, buf.as_mut_ptr().add(got).cast(), 1, 0);
                        if n <= 0 {
                            (*report).errno = if n < 0 { errno() } else { 0 };
                            return 2;
                        }
                        got += 1;
                    }
                    // "HTTP/1.1 200 ..."
                    got > 12 && buf[9..12] == status
                }
            };
            if !ok {
                return 2;
            }
        }
        let mut offset = 0;
        while offset < payload.len() {
            let part = &payload[offset..(offset + chunk).min(payload.len())];
            let sent = send_once(s, part, via);
            if sent <= 0 {
                (*report).offset = offset as u64;
                (*report).errno = errno();
                let again = send_once(s, part, via);
                (*report).again = if again < 0 { errno() } else { 0 };
                return 1;
            }
            // A short send (a blocking socket may still take less): go on
            // from where it stopped.
            offset += sent as usize;
        }
        // The egress judge's refusal comes after the send: the socket is
        // destroyed soon after (300 ms at most here).
        if egress && super::socket_error_within(s, 300) != 0 {
            (*report).offset = payload.len() as u64;
            (*report).errno = libc::ECONNABORTED as i64;
            let again = send_once(s, b" ", via);
            (*report).again = if again < 0 { errno() } else { 0 };
            return 1;
        }
        0
    });
    // SAFETY: the child has exited; it wrote the report before.
    let r = unsafe { std::ptr::read_volatile(report) };
    unsafe { libc::munmap(shared, std::mem::size_of::<Report>()) };
    match end {
        ChildEnd::Signal(sig) => StreamOutcome::Signal(sig),
        ChildEnd::Code(0) => StreamOutcome::AllSent,
        ChildEnd::Code(1) => StreamOutcome::Refused {
            offset: r.offset as usize,
            errno: r.errno as i32,
            again: r.again as i32,
        },
        ChildEnd::Code(2) => StreamOutcome::HandshakeFailed {
            step: r.step as usize,
            errno: r.errno as i32,
        },
        ChildEnd::Code(3) => StreamOutcome::ConnectFailed(r.errno as i32),
        ChildEnd::Code(c) => panic!("stream child failed to set up (code {c})"),
    }
}
