//! Loopback proxies for the Stratum tunnel tests: SOCKS5 (no auth, or
//! username/password), SOCKS4 and SOCKS4a, and HTTP CONNECT. Each is a
//! listener on 127.0.0.1 with a thread that accepts, a thread per client
//! that does the server side of the handshake, connects to the target and
//! relays both ways. Only loopback targets are ever connected to: any other
//! is refused in the protocol's own way.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

/// Which proxy protocol a [`Proxy`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// SOCKS5, method 0 (no authentication).
    Socks5,
    /// SOCKS5, method 2 (username/password, RFC 1929) with these.
    Socks5Auth {
        /// The only username accepted.
        user: &'static str,
        /// Its password.
        pass: &'static str,
    },
    /// SOCKS4, and SOCKS4a (address 0.0.0.x and a host name).
    Socks4,
    /// HTTP `CONNECT host:port`.
    HttpConnect,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    tunnels: AtomicUsize,
    refused: AtomicUsize,
    sessions: Mutex<Vec<JoinHandle<()>>>,
}

/// A running loopback proxy; stopped (its threads joined) on drop.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy of `kind` on a free port of 127.0.0.1.
    pub fn start(kind: ProxyKind) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            while !s.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let s2 = s.clone();
                        let t = std::thread::spawn(move || session(conn, kind, &s2));
                        s.sessions.lock().unwrap().push(t);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(e) => panic!("proxy accept: {e}"),
                }
            }
        });
        Proxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many handshakes succeeded (a tunnel to the target was opened).
    pub fn tunnels(&self) -> usize {
        self.shared.tunnels.load(Ordering::Relaxed)
    }

    /// How many handshakes it refused (bad request, bad credentials, a
    /// target that is not loopback, or a target that refused).
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for t in std::mem::take(&mut *self.shared.sessions.lock().unwrap()) {
            let _ = t.join();
        }
    }
}

/// Where a client asked to go.
enum Target {
    Ip(IpAddr, u16),
    Name(String, u16),
}

/// `target` as a loopback socket address, or None (never connected to).
fn loopback(target: &Target) -> Option<SocketAddr> {
    let (ip, port) = match target {
        Target::Ip(ip, port) => (*ip, *port),
        Target::Name(name, port) => {
            let name = name.trim_start_matches('[').trim_end_matches(']');
            let ip = if name.eq_ignore_ascii_case("localhost") {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                name.parse().ok()?
            };
            (ip, *port)
        }
    };
    ip.is_loopback().then_some(SocketAddr::new(ip, port))
}

fn session(mut client: TcpStream, kind: ProxyKind, s: &Shared) {
    client.set_nonblocking(false).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let upstream = match kind {
        ProxyKind::Socks5 => socks5(&mut client, None),
        ProxyKind::Socks5Auth { user, pass } => socks5(&mut client, Some((user, pass))),
        ProxyKind::Socks4 => socks4(&mut client),
        ProxyKind::HttpConnect => http_connect(&mut client),
    };
    match upstream {
        Some(up) => {
            s.tunnels.fetch_add(1, Ordering::Relaxed);
            relay(client, up, s);
        }
        None => {
            s.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn read_n(c: &mut TcpStream, n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; n];
    c.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// Bytes up to NUL (not included), at most 255.
fn read_cstr(c: &mut TcpStream) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let b = read_n(c, 1)?[0];
        if b == 0 {
            return Some(out);
        }
        out.push(b);
        if out.len() > 255 {
            return None;
        }
    }
}

fn socks5(c: &mut TcpStream, auth: Option<(&str, &str)>) -> Option<TcpStream> {
    let head = read_n(c, 2)?;
    if head[0] != 5 {
        return None;
    }
    let methods = read_n(c, head[1] as usize)?;
    let want = if auth.is_some() { 2 } else { 0 };
    if !methods.contains(&want) {
        let _ = c.write_all(&[5, 0xff]);
        return None;
    }
    c.write_all(&[5, want]).ok()?;
    if let Some((user, pass)) = auth {
        let v = read_n(c, 2)?;
        let u = read_n(c, v[1] as usize)?;
        let plen = read_n(c, 1)?[0];
        let p = read_n(c, plen as usize)?;
        let ok = v[0] == 1 && u == user.as_bytes() && p == pass.as_bytes();
        c.write_all(&[1, if ok { 0 } else { 1 }]).ok()?;
        if !ok {
            return None;
        }
    }
    let req = read_n(c, 4)?;
    let target = match req[3] {
        1 => {
            let a = read_n(c, 4)?;
            Target::Ip(IpAddr::from([a[0], a[1], a[2], a[3]]), 0)
        }
        4 => {
            let a: [u8; 16] = read_n(c, 16)?.try_into().unwrap();
            Target::Ip(IpAddr::V6(Ipv6Addr::from(a)), 0)
        }
        3 => {
            let n = read_n(c, 1)?[0];
            let name = String::from_utf8(read_n(c, n as usize)?).ok()?;
            Target::Name(name, 0)
        }
        _ => return None,
    };
    let p = read_n(c, 2)?;
    let port = u16::from_be_bytes([p[0], p[1]]);
    let target = match target {
        Target::Ip(ip, _) => Target::Ip(ip, port),
        Target::Name(n, _) => Target::Name(n, port),
    };
    // Reply: version, status, reserved, then a bound IPv4 address and port.
    let reply = |c: &mut TcpStream, status: u8, bound: SocketAddr| {
        let (ip, port) = match bound {
            SocketAddr::V4(a) => (a.ip().octets(), a.port()),
            SocketAddr::V6(a) => ([0; 4], a.port()),
        };
        let mut r = vec![5, status, 0, 1];
        r.extend_from_slice(&ip);
        r.extend_from_slice(&port.to_be_bytes());
        c.write_all(&r)
    };
    let zero = SocketAddr::from(([0, 0, 0, 0], 0));
    if req[0] != 5 || req[1] != 1 {
        let _ = reply(c, 7, zero); // command not supported
        return None;
    }
    let Some(to) = loopback(&target) else {
        let _ = reply(c, 2, zero); // not allowed by ruleset
        return None;
    };
    match TcpStream::connect(to) {
        Ok(up) => {
            let bound = up.local_addr().unwrap_or(zero);
            reply(c, 0, bound).ok()?;
            Some(up)
        }
        Err(_) => {
            let _ = reply(c, 5, zero); // connection refused
            None
        }
    }
}

fn socks4(c: &mut TcpStream) -> Option<TcpStream> {
    let req = read_n(c, 8)?;
    let port = u16::from_be_bytes([req[2], req[3]]);
    let ip = Ipv4Addr::new(req[4], req[5], req[6], req[7]);
    let _user = read_cstr(c)?;
    // SOCKS4a: 0.0.0.x (x not 0) means a host name follows the user id.
    let target = if req[4..7] == [0, 0, 0] && req[7] != 0 {
        Target::Name(String::from_utf8(read_cstr(c)?).ok()?, port)
    } else {
        Target::Ip(IpAddr::V4(ip), port)
    };
    let reply = |c: &mut TcpStream, status: u8| c.write_all(&[0, status, 0, 0, 0, 0, 0, 0]);
    if req[0] != 4 || req[1] != 1 {
        let _ = reply(c, 0x5b);
        return None;
    }
    let up = loopback(&target).and_then(|to| TcpStream::connect(to).ok());
    match up {
        Some(up) => {
            reply(c, 0x5a).ok()?;
            Some(up)
        }
        None => {
            let _ = reply(c, 0x5b);
            None
        }
    }
}

fn http_connect(c: &mut TcpStream) -> Option<TcpStream> {
    // Byte by byte: nothing past the blank line may be taken from the client.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(read_n(c, 1)?[0]);
        if head.len() > 8192 {
            return None;
        }
    }
    let head = String::from_utf8(head).ok()?;
    let mut parts = head.lines().next()?.split(' ');
    let (method, authority, version) = (parts.next()?, parts.next()?, parts.next()?);
    let target = (|| {
        let (host, port) = authority.rsplit_once(':')?;
        Some(Target::Name(host.to_string(), port.parse().ok()?))
    })();
    let up = match target {
        Some(t) if method == "CONNECT" && version.starts_with("HTTP/1.") => {
            loopback(&t).and_then(|to| TcpStream::connect(to).ok())
        }
        _ => None,
    };
    match up {
        Some(up) => {
            c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .ok()?;
            Some(up)
        }
        None => {
            let _ = c.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
            None
        }
    }
}

/// Copies both ways until each side has closed (an EOF from one side is
/// passed on as a shutdown of the other's write side), or the proxy stops.
fn relay(client: TcpStream, upstream: TcpStream, s: &Shared) {
    let pairs = [
        (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
        (upstream, client),
    ];
    std::thread::scope(|scope| {
        for (mut from, mut to) in pairs {
            scope.spawn(move || {
                from.set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match from.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if to.write_all(&buf[..n]).is_err() {
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
                let _ = to.shutdown(Shutdown::Write);
            });
        }
    });
}
