//! A loopback mining pool that makes XMRig really hash: it answers XMRig's
//! `login` with a RandomX (`rx/0`) job at a low difficulty, `submit` with
//! OK, `keepalived` with KEEPALIVED, and counts logins, submitted shares
//! and closed connections. One thread accepts, one serves each connection
//! (each polls `stop` every 50 ms, so drop ends them all).

use std::{
    io::{BufRead, BufReader, ErrorKind, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use minerguard::cgroup::OwnedCgroup;
use serde_json::{json, Value};

use super::{spawn_in, ChildGuard, TempDir};

/// A Monero-shaped hashing blob: 76 bytes (major/minor version, timestamp,
/// previous block id, the 4-byte nonce at offset 39, the tree root, the
/// transaction count). Its content does not matter to the hashing.
const BLOB: &str = concat!(
    "1010",
    "c0d2b7ff05",
    "dd5a2c9f3f1b8e0bd9b11c0b9e6b8f3c2a3a6e1d8f7b2c4e5a6d7c8b9a0f1e2d",
    "00000000",
    "8a1f7e3c5b9d2a4f6e8c0b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a",
    "05"
);
/// The RandomX key block hash (any 32 bytes: the cache is built from it).
const SEED_HASH: &str = "4f1c2a6b8d0e3f5a7c9b1d2e4f6a8c0b3d5e7f9a1c2b4d6e8f0a2c4e6b8d0f12";
/// Target for difficulty 20, as XMRig reads a 4-byte target
/// (little-endian 0x0ccccccc = 0xffffffff / 20): a share every ~20 hashes,
/// so a light-mode XMRig submits within seconds.
const TARGET: &str = "cccccc0c";

#[derive(Default)]
struct Counters {
    stop: AtomicBool,
    accepted: AtomicUsize,
    closed: AtomicUsize,
    logins: AtomicUsize,
    submits: AtomicUsize,
    first_submit: std::sync::Mutex<Option<Instant>>,
}

/// The pool; see the module docs.
pub struct RxPool {
    addr: SocketAddr,
    counters: Arc<Counters>,
    accept: Option<JoinHandle<()>>,
}

impl RxPool {
    /// Listens on 127.0.0.1 (a free port).
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let accept = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !c.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        c.accepted.fetch_add(1, Ordering::SeqCst);
                        let c = c.clone();
                        conns.push(std::thread::spawn(move || serve(conn, &c)));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
            for t in conns {
                let _ = t.join();
            }
        });
        RxPool {
            addr,
            counters,
            accept: Some(accept),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counters.accepted.load(Ordering::SeqCst)
    }

    /// Connections the client closed (or that broke).
    pub fn closed(&self) -> usize {
        self.counters.closed.load(Ordering::SeqCst)
    }

    /// `login` requests answered with a job.
    pub fn logins(&self) -> usize {
        self.counters.logins.load(Ordering::SeqCst)
    }

    /// Shares submitted: each one a RandomX hash XMRig computed.
    pub fn submits(&self) -> usize {
        self.counters.submits.load(Ordering::SeqCst)
    }

    /// When the first share came (the miner was hashing by then).
    pub fn first_submit(&self) -> Option<Instant> {
        *self.counters.first_submit.lock().unwrap()
    }

    /// Starts a copy of XMRig named `name` (nothing of its own name is left
    /// to match) in `cgroup`, mining RandomX in light mode on two threads to
    /// this pool; no huge pages and no MSR writes, so only its CPU use and
    /// anonymous memory give it away. Killed on drop.
    pub fn light_miner(
        &self,
        xmrig: &Path,
        cgroup: &OwnedCgroup,
        dir: &TempDir,
        name: &str,
    ) -> ChildGuard {
        let mut cmd = self.light_command(xmrig, dir, name, 2);
        ChildGuard::new(spawn_in(Some(cgroup), &mut cmd).expect("start XMRig"))
    }

    /// [`RxPool::light_miner`] over TLS (`--tls`) through `front`: nothing
    /// it sends is readable on the wire.
    pub fn light_miner_over_tls(
        &self,
        xmrig: &Path,
        cgroup: &OwnedCgroup,
        dir: &TempDir,
        name: &str,
        front: &TlsFront,
    ) -> ChildGuard {
        let mut cmd = self.light_command_over_tls(front, xmrig, dir, name, 2);
        ChildGuard::new(spawn_in(Some(cgroup), &mut cmd).expect("start XMRig"))
    }

    /// The command [`RxPool::light_miner_over_tls`] runs, with `threads`
    /// threads (`front` must be this pool's).
    pub fn light_command_over_tls(
        &self,
        front: &TlsFront,
        xmrig: &Path,
        dir: &TempDir,
        name: &str,
        threads: u32,
    ) -> Command {
        light_command_to(front.addr(), true, xmrig, dir, name, threads)
    }

    /// The command [`RxPool::light_miner`] runs, with `threads` threads.
    pub fn light_command(&self, xmrig: &Path, dir: &TempDir, name: &str, threads: u32) -> Command {
        light_command_to(self.addr(), false, xmrig, dir, name, threads)
    }

    /// [`RxPool::light_command`] with XMRig's huge pages on (its default:
    /// as root it then writes the sysfs `nr_hugepages` to reserve them),
    /// run as a container runtime runs it: in its own mount namespace where
    /// /sys and /proc/sys are read-only, so the reservation is refused
    /// (EROFS) and the host's huge pages stay as they are. XMRig is exec'd
    /// only once both remounts succeeded, keeping the pid it started with.
    pub fn light_command_with_huge_pages_refused(
        &self,
        xmrig: &Path,
        dir: &TempDir,
        name: &str,
        threads: u32,
    ) -> Command {
        let miner = light_command_to(self.addr(), false, xmrig, dir, name, threads);
        let args: Vec<_> = (miner.get_args())
            .filter(|a| *a != "--no-huge-pages")
            .map(|a| a.to_os_string())
            .collect();
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                "mount -o remount,ro,bind /sys && mount --bind /proc/sys /proc/sys \
                 && mount -o remount,ro,bind /proc/sys && exec \"$@\"",
            )
            .arg("sh")
            .arg(miner.get_program())
            .args(args)
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// Waits (up to `limit`, a hang guard) until `cond` holds.
    pub fn wait_for(&self, limit: Duration, cond: impl Fn(&RxPool) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if cond(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        cond(self)
    }
}

impl Drop for RxPool {
    fn drop(&mut self) {
        self.counters.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// XMRig, copied to `dir` as `name`, mining light-mode RandomX on
/// `threads` threads to `url` (over TLS when `tls`).
fn light_command_to(
    url: SocketAddr,
    tls: bool,
    xmrig: &Path,
    dir: &TempDir,
    name: &str,
    threads: u32,
) -> Command {
    let renamed = dir.path().join(name);
    std::fs::copy(xmrig, &renamed).expect("copy XMRig");
    let mut cmd = Command::new(&renamed);
    cmd.arg(format!("--url={url}"))
        .args(["--user=x", "--pass=x", "--no-color"])
        .arg(format!("--threads={threads}"))
        .args(["--randomx-mode=light", "--no-huge-pages"])
        .args(["--randomx-wrmsr=-1", "--randomx-no-rdmsr"])
        .args(["--donate-level=1", "--retries=1", "--retry-pause=1"])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if tls {
        // XMRig checks no certificate unless given a fingerprint.
        cmd.arg("--tls");
    }
    cmd
}

/// A TLS endpoint in front of a pool, as a pool with `--tls` support (or a
/// TLS-terminating proxy) is: socat, outside every test cgroup, with a
/// self-signed certificate made by `openssl req`, forwarding each
/// connection's plaintext to the pool. Stopped on drop.
pub struct TlsFront {
    addr: SocketAddr,
    _socat: ChildGuard,
}

impl TlsFront {
    /// Listens on a free loopback port, certificate and key in `dir`, in
    /// front of `pool`. Fails loudly when socat or openssl is missing
    /// (scripts/install-deps.sh installs them).
    pub fn start(pool: SocketAddr, dir: &TempDir) -> Self {
        let (cert, key) = (dir.path().join("front.pem"), dir.path().join("front.key"));
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=pool.invalid", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl (scripts/install-deps.sh installs it)");
        assert!(made.success(), "openssl req made no certificate");
        // A port the kernel just handed out and took back: free now.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
            cert.display(),
            key.display()
        );
        let socat = Command::new("socat")
            .arg(listen)
            .arg(format!("TCP:{pool}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start socat (scripts/install-deps.sh installs it)");
        let front = TlsFront {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _socat: ChildGuard::new(socat),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !listening(port) {
            assert!(Instant::now() < deadline, "socat never listened on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        front
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Whether a socket listens on 127.0.0.1:`port` (this network namespace's
/// `/proc/net/tcp`: local address, then state `0A`, LISTEN).
fn listening(port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .map(|t| {
            t.lines().skip(1).any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A")
            })
        })
        .unwrap_or(false)
}

/// The answer to one request line (`None`: not JSON, or a notification).
fn answer(line: &str, c: &Counters) -> Option<Value> {
    let req: Value = serde_json::from_str(line).ok()?;
    let id = req.get("id")?.clone();
    let result = match req["method"].as_str().unwrap_or("") {
        "login" => {
            c.logins.fetch_add(1, Ordering::SeqCst);
            json!({
                "id": "minerguard-test",
                "job": {
                    "blob": BLOB,
                    "job_id": "1",
                    "target": TARGET,
                    "algo": "rx/0",
                    "height": 3000000,
                    "seed_hash": SEED_HASH,
                },
                "extensions": ["algo", "keepalive"],
                "status": "OK",
            })
        }
        "submit" => {
            c.submits.fetch_add(1, Ordering::SeqCst);
            c.first_submit
                .lock()
                .unwrap()
                .get_or_insert_with(Instant::now);
            json!({ "status": "OK" })
        }
        "keepalived" => json!({ "status": "KEEPALIVED" }),
        _ => json!({ "status": "OK" }),
    };
    Some(json!({ "id": id, "jsonrpc": "2.0", "error": null, "result": result }))
}

fn serve(conn: TcpStream, c: &Counters) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut writer = conn.try_clone().expect("clone the connection");
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    loop {
        // A timed-out read keeps what it read of the line in `line`.
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {
                if let Some(reply) = answer(line.trim(), c) {
                    if writeln!(writer, "{reply}").is_err() {
                        break;
                    }
                }
                line.clear();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if c.stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    c.closed.fetch_add(1, Ordering::SeqCst);
}
