//! Loopback servers for the Stratum tests: [`FakePool`], a mining pool that
//! parses what it receives the way pool software does (nodejs-pool, but
//! more leniently: whatever any pool would take as a method, this one
//! does), and [`Sink`], which records bytes exactly (and may echo them).
//!
//! Both accept any number of connections on a background thread, record
//! the raw bytes of each, and say when connections closed, so a test waits
//! for the client's end before it asserts.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;

/// Method names of the mining protocols (besides Stratum v1's `mining.*`,
/// any): XMRig/CryptoNote, EthProxy, and the daemons' block-template RPC.
pub const MINING_METHODS: &[&str] = &[
    "login",
    "submit",
    "getjob",
    "keepalived",
    "eth_submitLogin",
    "eth_getWork",
    "eth_submitWork",
    "getblocktemplate",
    "submitblock",
];

/// Whether `method` is a mining method: `mining.*` or one of
/// [`MINING_METHODS`], compared without case.
pub fn is_mining_method(method: &str) -> bool {
    let m = method.to_ascii_lowercase();
    m.starts_with("mining.") || MINING_METHODS.iter().any(|x| x.eq_ignore_ascii_case(&m))
}

/// How long [`FakePool::wait_closed`] and [`Sink::wait_closed`] wait.
const CLOSE_WAIT: Duration = Duration::from_secs(30);

/// What a server does with a connection besides recording it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Answers a WebSocket upgrade with 101 (the client then sends frames).
    Pool,
    /// Records only.
    Sink,
    /// Records and writes every byte back.
    Echo,
}

#[derive(Default)]
struct Conn {
    bytes: Vec<u8>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    conns: Mutex<Vec<Conn>>,
    changed: Condvar,
    stop: AtomicBool,
}

/// The server both kinds share: a listener on 127.0.0.1, one thread
/// accepting, one per connection (each polls `stop` every 50 ms, so drop
/// ends them all).
struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !s.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let index = {
                            let mut all = s.conns.lock().unwrap();
                            all.push(Conn::default());
                            all.len() - 1
                        };
                        let s = s.clone();
                        conns.push(std::thread::spawn(move || serve(conn, index, mode, &s)));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Server {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    fn connections(&self) -> Vec<Vec<u8>> {
        let conns = self.shared.conns.lock().unwrap();
        conns.iter().map(|c| c.bytes.clone()).collect()
    }

    fn wait_closed(&self, n: usize) -> bool {
        let deadline = Instant::now() + CLOSE_WAIT;
        let mut conns = self.shared.conns.lock().unwrap();
        loop {
            let closed = conns.iter().filter(|c| c.closed).count();
            if closed >= n && conns.iter().all(|c| c.closed) {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            conns = self.shared.changed.wait_timeout(conns, left).unwrap().0;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// One connection: record what arrives until EOF (or an error, or stop).
fn serve(mut conn: TcpStream, index: usize, mode: Mode, s: &Shared) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut upgraded = false;
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let reply_101 = {
                    let mut conns = s.conns.lock().unwrap();
                    let c = &mut conns[index];
                    c.bytes.extend_from_slice(&buf[..n]);
                    let want = mode == Mode::Pool && !upgraded && is_complete_upgrade(&c.bytes);
                    s.changed.notify_all();
                    want
                };
                if reply_101 {
                    upgraded = true;
                    // The scripted client does not check Sec-WebSocket-Accept.
                    let _ = conn.write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                          Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                    );
                }
                if mode == Mode::Echo && conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if s.stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let mut conns = s.conns.lock().unwrap();
    conns[index].closed = true;
    s.changed.notify_all();
}

/// Whether `bytes` begin with a whole HTTP request asking for a WebSocket.
fn is_complete_upgrade(bytes: &[u8]) -> bool {
    match http_request(bytes) {
        Some(req) => req.websocket,
        None => false,
    }
}

/// A fake mining pool on 127.0.0.1: see the module doc.
pub struct FakePool(Server);

impl FakePool {
    /// Starts listening on a free loopback port.
    pub fn start() -> Self {
        FakePool(Server::start(Mode::Pool))
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// Every method parsed so far, connection by connection, in order.
    pub fn methods(&self) -> Vec<String> {
        self.0
            .connections()
            .iter()
            .flat_map(|c| parse_stream(c))
            .collect()
    }

    /// The methods parsed so far that are mining methods
    /// ([`is_mining_method`]).
    pub fn mining_methods(&self) -> Vec<String> {
        self.methods()
            .into_iter()
            .filter(|m| is_mining_method(m))
            .collect()
    }

    /// All connections' bytes, one after the other.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.connections().concat()
    }

    /// Each connection's bytes.
    pub fn connections(&self) -> Vec<Vec<u8>> {
        self.0.connections()
    }

    /// Waits (30 s at most) until at least `n` connections came and every
    /// connection so far closed: false when time ran out.
    pub fn wait_closed(&self, n: usize) -> bool {
        self.0.wait_closed(n)
    }

    /// How many connections it accepted.
    pub fn accepted(&self) -> usize {
        self.0.shared.conns.lock().unwrap().len()
    }

    /// How many of them closed.
    pub fn closed(&self) -> usize {
        let conns = self.0.shared.conns.lock().unwrap();
        conns.iter().filter(|c| c.closed).count()
    }
}

/// A loopback server that records bytes exactly, for the tests that
/// clean traffic passes untouched.
pub struct Sink(Server);

impl Sink {
    /// Records only.
    pub fn start() -> Self {
        Sink(Server::start(Mode::Sink))
    }

    /// Records, and writes every byte back.
    pub fn echo() -> Self {
        Sink(Server::start(Mode::Echo))
    }

    /// A sink that answers a WebSocket upgrade with 101, as a chat server
    /// would (it records exactly too).
    pub fn websocket() -> Self {
        Sink(Server::start(Mode::Pool))
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// All connections' bytes, one after the other.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.connections().concat()
    }

    /// Each connection's bytes.
    pub fn connections(&self) -> Vec<Vec<u8>> {
        self.0.connections()
    }

    /// See [`FakePool::wait_closed`].
    pub fn wait_closed(&self, n: usize) -> bool {
        self.0.wait_closed(n)
    }
}

/// The methods a pool takes from one connection's bytes.
///
/// Line-delimited JSON-RPC: split on `\n`; each line loses a leading UTF-8
/// BOM and surrounding whitespace; blank lines and lines that are not JSON
/// are skipped; a line may hold several JSON values one after the other. A
/// connection that starts with HTTP requests has each request's body (by
/// Content-Length) read as JSON (or as lines); a WebSocket upgrade is
/// followed into its frames (unmasked, fragments joined), each message read
/// as lines. The last line counts even without its `\n`.
pub fn parse_stream(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(req) = http_request(rest) {
        let after = &rest[req.head_len..];
        if req.websocket {
            for message in websocket_messages(after) {
                out.extend(parse_lines(&message));
            }
            return out;
        }
        let body = &after[..req.content_length.min(after.len())];
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => methods_of(&v, &mut out),
            Err(_) => out.extend(parse_lines(body)),
        }
        rest = &after[body.len()..];
    }
    out.extend(parse_lines(rest));
    out
}

/// Line-delimited JSON: see [`parse_stream`].
pub fn parse_lines(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for line in bytes.split(|b| *b == b'\n') {
        let mut line = line;
        while let Some(l) = line.strip_prefix(b"\xEF\xBB\xBF".as_slice()) {
            line = l;
        }
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        for v in serde_json::Deserializer::from_slice(line).into_iter::<Value>() {
            match v {
                Ok(v) => methods_of(&v, &mut out),
                Err(_) => break,
            }
        }
    }
    out
}

/// The `method` (key without case) of an object, or of each object in an
/// array (a JSON-RPC batch).
fn methods_of(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k.eq_ignore_ascii_case("method") {
                    if let Value::String(m) = v {
                        out.push(m.clone());
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                methods_of(item, out);
            }
        }
        _ => {}
    }
}

/// The head of an HTTP request at the start of `bytes`.
struct HttpRequest {
    /// Bytes up to and including the blank line.
    head_len: usize,
    content_length: usize,
    /// `Upgrade: websocket`.
    websocket: bool,
}

/// `bytes` start with a complete HTTP/1.x request head (`METHOD target
/// HTTP/1.x`, headers, blank line).
fn http_request(bytes: &[u8]) -> Option<HttpRequest> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let request = lines.next()?;
    let mut parts = request.split(' ');
    let method = parts.next()?;
    let _target = parts.next()?;
    let version = parts.next()?;
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !version.starts_with("HTTP/1.")
    {
        return None;
    }
    let mut req = HttpRequest {
        head_len: end,
        content_length: 0,
        websocket: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            req.content_length = value.parse().unwrap_or(0);
        } else if name.eq_ignore_ascii_case("upgrade") {
            req.websocket = value.eq_ignore_ascii_case("websocket");
        }
    }
    Some(req)
}

/// The messages in a client's WebSocket frames (RFC 6455): masked or not,
/// fragments joined; control frames skipped; a close frame ends it. A
/// message whose last frame is incomplete counts with what arrived.
pub fn websocket_messages(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    while bytes.len() >= 2 {
        let fin = bytes[0] & 0x80 != 0;
        let opcode = bytes[0] & 0x0f;
        let masked = bytes[1] & 0x80 != 0;
        let (len, mut at) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() >= 10 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => break,
            n => (n as usize, 2),
        };
        let mut mask = [0u8; 4];
        if masked {
            if bytes.len() < at + 4 {
                break;
            }
            mask.copy_from_slice(&bytes[at..at + 4]);
            at += 4;
        }
        let end = (at + len).min(bytes.len());
        let payload: Vec<u8> = bytes[at..end]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        let whole = end == at + len;
        match opcode {
            0x8 => break,
            0x9 | 0xa => {}
            0x0 => current.get_or_insert_with(Vec::new).extend(payload),
            _ => current = Some(payload),
        }
        if (fin || !whole) && opcode < 0x8 {
            messages.extend(current.take());
        }
        bytes = &bytes[end..];
    }
    messages.extend(current);
    messages
}

/// Whether `haystack` holds `needle`, ASCII case ignored.
pub fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}
