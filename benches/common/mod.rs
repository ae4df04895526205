//! Shared plumbing for the kernel benches: the root check, a bench cgroup
//! with a forked worker process inside it, the three enforcement
//! configurations (no enforcer / `default` / `container-strict`), a loopback
//! sink, and an interleaved ratio summary that is robust to a noisy machine.
//!
//! Why a forked worker: in cgroup v2 a process moves as a whole, so the
//! measured syscalls run in a child forked into the bench's own cgroup, which
//! loops N operations and reports the elapsed time through a pipe (fits
//! criterion's `iter_custom`). The bench never applies anything to the host
//! or to the cgroup v2 root: every profile goes to a fresh cgroup made with
//! [`OwnedCgroup::create_in_root`] (the mount is read from mountinfo).
#![allow(dead_code)]

use std::{
    net::{SocketAddr, TcpListener},
    os::fd::{AsRawFd, OwnedFd},
    time::{Duration, Instant},
};

use criterion::Criterion;
use minerguard::{
    cgroup::OwnedCgroup, BackendChoice, Enforcer, EnforcerOptions, PolicyHandle, Profile, Scope,
};

/// Exits with a clear message unless running as root (BPF needs it).
pub fn require_root(bench: &str) {
    // SAFETY: plain syscall.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        eprintln!(
            "{bench}: this benchmark loads BPF programs and creates cgroups, which needs root \
             (euid is {euid}); run it as root: sudo -E cargo bench --bench {bench}"
        );
        std::process::exit(2);
    }
}

/// Criterion settings for a 2-core machine shared with other work: short
/// warm-up, a few seconds of measurement, few samples.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

/// Whether this run is a real benchmark run (`cargo bench`), not criterion's
/// test mode (`cargo test --benches`, which runs each bench once).
pub fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Rounds of the interleaved summary (MINERGUARD_BENCH_ROUNDS, default 7).
pub fn summary_rounds() -> usize {
    std::env::var("MINERGUARD_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
}

/// Monotonic time in ns (async-signal-safe: usable in the forked worker).
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A fresh cgroup under the cgroup v2 root for this bench (never the root
/// itself); killed and removed on drop.
pub fn bench_cgroup() -> OwnedCgroup {
    OwnedCgroup::create_in_root("minerguard-bench").expect("create the bench cgroup")
}

/// Per-call latencies recorded by a worker, into memory reserved before the
/// fork (pushing never allocates; calls past the capacity are not recorded).
pub struct Latencies(Vec<u64>);

impl Latencies {
    /// Room for `cap` calls.
    pub fn with_capacity(cap: usize) -> Latencies {
        Latencies(Vec::with_capacity(cap))
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    #[inline]
    pub fn push(&mut self, ns: u64) {
        if self.0.len() < self.0.capacity() {
            self.0.push(ns);
        }
    }

    /// The median recorded latency (sorts in place, no allocation). The
    /// median, not the mean: on a shared 2-core machine a mean is dominated
    /// by the calls during which another process had the CPU.
    pub fn median(&mut self) -> u64 {
        if self.0.is_empty() {
            return 0;
        }
        self.0.sort_unstable();
        self.0[self.0.len() / 2]
    }
}

/// Latency records per worker: enough for any single criterion sample.
pub const LATENCY_CAPACITY: usize = 1 << 21;

/// A process forked into a cgroup that runs `op(code, n) -> u64` on request.
///
/// `op` runs in the child: it must not allocate or take locks another thread
/// of the parent may hold (raw libc calls only).
pub struct Worker {
    pid: libc::pid_t,
    cmd: OwnedFd,
    res: OwnedFd,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills the two fds we then own.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2");
    // SAFETY: fresh fds from pipe2.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Reads exactly `buf.len()` bytes; false at EOF or error.
fn read_full(fd: i32, buf: &mut [u8]) -> bool {
    let mut off = 0;
    while off < buf.len() {
        // SAFETY: writes into the slice we own.
        let n = unsafe { libc::read(fd, buf[off..].as_mut_ptr().cast(), buf.len() - off) };
        if n <= 0 {
            if n < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return false;
        }
        off += n as usize;
    }
    true
}

fn write_full(fd: i32, buf: &[u8]) -> bool {
    let mut off = 0;
    while off < buf.len() {
        // SAFETY: reads from the slice we own.
        let n = unsafe { libc::write(fd, buf[off..].as_ptr().cast(), buf.len() - off) };
        if n <= 0 {
            if n < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return false;
        }
        off += n as usize;
    }
    true
}

impl Worker {
    /// Forks a worker into `cgroup`.
    pub fn spawn(cgroup: &OwnedCgroup, mut op: impl FnMut(u64, u64) -> u64) -> Worker {
        let procs = cgroup.procs_file().expect("open cgroup.procs");
        let (cmd_r, cmd_w) = pipe();
        let (res_r, res_w) = pipe();
        // SAFETY: the child only makes raw syscalls (op's contract), then _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            unsafe {
                // Die with the bench.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                    libc::_exit(100);
                }
                libc::close(cmd_w.as_raw_fd());
                libc::close(res_r.as_raw_fd());
                let mut req = [0u8; 16];
                while read_full(cmd_r.as_raw_fd(), &mut req) {
                    let code = u64::from_ne_bytes(req[..8].try_into().unwrap());
                    let n = u64::from_ne_bytes(req[8..].try_into().unwrap());
                    let out = op(code, n);
                    if !write_full(res_w.as_raw_fd(), &out.to_ne_bytes()) {
                        break;
                    }
                }
                libc::_exit(0);
            }
        }
        drop((cmd_r, res_w, procs));
        Worker {
            pid,
            cmd: cmd_w,
            res: res_r,
        }
    }

    /// Starts `op(code, n)` in the worker without waiting for it.
    pub fn start(&self, code: u64, n: u64) {
        let mut req = [0u8; 16];
        req[..8].copy_from_slice(&code.to_ne_bytes());
        req[8..].copy_from_slice(&n.to_ne_bytes());
        assert!(write_full(self.cmd.as_raw_fd(), &req), "worker gone");
    }

    /// The result of the operation last started.
    pub fn finish(&self) -> u64 {
        let mut out = [0u8; 8];
        assert!(read_full(self.res.as_raw_fd(), &mut out), "worker died");
        u64::from_ne_bytes(out)
    }

    /// Runs `op(code, n)` in the worker and returns its result.
    pub fn run(&self, code: u64, n: u64) -> u64 {
        self.start(code, n);
        self.finish()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // SAFETY: plain syscalls on our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            let mut status = 0;
            libc::waitpid(self.pid, &mut status, 0);
        }
    }
}

/// What the bench cgroup is running under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Config {
    /// No enforcer loaded at all: nothing attached anywhere by this process.
    Unhooked,
    /// A profile applied to the bench cgroup.
    Profile(&'static str, Profile),
    /// A profile applied to another cgroup the bench made, not the bench
    /// cgroup: what the host-wide hooks cost a process outside every scope.
    Elsewhere(&'static str, Profile),
}

impl Config {
    pub fn name(&self) -> &'static str {
        match self {
            Config::Unhooked => "unhooked",
            Config::Profile(name, _) | Config::Elsewhere(name, _) => name,
        }
    }

    /// A bundled profile by name.
    pub fn bundled(name: &'static str) -> Config {
        Config::Profile(name, Profile::bundled(name).expect("bundled profile"))
    }

    /// Only the `connect` rules of the bundled `default` (its pool ports):
    /// a profile without a stratum rule, so no Stratum socket tracking.
    pub fn default_connect_rules() -> Config {
        let mut p = Profile::bundled("default").expect("bundled profile");
        p.rules.retain(|r| r.connect.is_some());
        p.name = "default-connect-rules".into();
        Config::Profile("default-connect-rules", p)
    }

    /// The three configurations of the kernel benches.
    pub fn standard() -> Vec<Config> {
        vec![
            Config::Unhooked,
            Config::bundled("default"),
            Config::bundled("container-strict"),
        ]
    }
}

/// Switches the bench cgroup between configurations.
pub struct Switch {
    scope: Scope,
    enforcer: Option<Enforcer>,
    handle: Option<PolicyHandle>,
    /// Load a fresh enforcer for each profile (see [`Switch::fresh`]).
    fresh: bool,
    /// The configuration set last.
    current: &'static str,
    /// The cgroup `Config::Elsewhere` profiles apply to (made on first use).
    elsewhere: Option<OwnedCgroup>,
    /// The enforcer's policy is on `elsewhere`, not the bench cgroup.
    applied_elsewhere: bool,
}

impl Switch {
    pub fn new(cgroup: &OwnedCgroup) -> Switch {
        Switch {
            scope: Scope::Cgroup(cgroup.cgroup().path().to_path_buf()),
            enforcer: None,
            handle: None,
            fresh: false,
            current: "unhooked",
            elsewhere: None,
            applied_elsewhere: false,
        }
    }

    /// A switch that loads a fresh enforcer whenever the profile changes:
    /// hooks loaded on demand (by one profile's rules) stay loaded until
    /// the enforcer is dropped, so an update alone would measure the next
    /// profile with them.
    pub fn fresh(cgroup: &OwnedCgroup) -> Switch {
        Switch {
            fresh: true,
            ..Switch::new(cgroup)
        }
    }

    /// The loaded enforcer, if any.
    pub fn enforcer(&self) -> Option<&Enforcer> {
        self.enforcer.as_ref()
    }

    /// Puts the cgroup under `config` (loading or dropping the enforcer).
    pub fn set(&mut self, config: &Config) {
        let elsewhere = matches!(config, Config::Elsewhere(..));
        // A policy moves between the two cgroups with a fresh enforcer.
        if (self.fresh && self.current != config.name()) || elsewhere != self.applied_elsewhere {
            self.handle = None;
            self.enforcer = None;
        }
        self.current = config.name();
        self.applied_elsewhere = elsewhere;
        match config {
            Config::Unhooked => {
                self.handle = None;
                self.enforcer = None;
            }
            Config::Profile(_, profile) | Config::Elsewhere(_, profile) => {
                let scope = if elsewhere {
                    let cg = self.elsewhere.get_or_insert_with(|| {
                        OwnedCgroup::create_in_root("minerguard-bench-elsewhere")
                            .expect("create the other cgroup")
                    });
                    Scope::Cgroup(cg.cgroup().path().to_path_buf())
                } else {
                    self.scope.clone()
                };
                let enforcer = self.enforcer.get_or_insert_with(|| {
                    Enforcer::with_options(EnforcerOptions {
                        backend: BackendChoice::Auto,
                        // MINERGUARD_BENCH_SYSCALL_TP=0: measure without the
                        // syscall tracepoints (EnforcerOptions docs).
                        syscall_tracepoints: std::env::var("MINERGUARD_BENCH_SYSCALL_TP")
                            .map_or(true, |v| v != "0"),
                        // MINERGUARD_BENCH_STRATUM_JUDGE=sk-msg: the cgroup
                        // backend's earlier Stratum judge (default: egress).
                        cgroup_stratum_judge: std::env::var("MINERGUARD_BENCH_STRATUM_JUDGE")
                            .map_or(Ok(Default::default()), |v| v.parse())
                            .expect("MINERGUARD_BENCH_STRATUM_JUDGE: sk-msg or egress"),
                        ..Default::default()
                    })
                    .expect("load the enforcer")
                });
                match self.handle {
                    Some(h) => enforcer.update(h, profile).expect("update profile"),
                    None => {
                        self.handle = Some(
                            enforcer
                                .apply(profile, scope)
                                .expect("apply profile to the bench cgroup"),
                        )
                    }
                }
            }
        }
        // Let the previous configuration's work (poller, RCU frees) settle.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback TCP listener created by the bench process, outside the bench
/// cgroup. The forked worker inherits its fd and accepts (and closes) the
/// connections it made itself, outside its timed regions: a socket's cgroup
/// is fixed when the socket is created, so the listener and the sockets it
/// accepts are not covered by the bench cgroup's programs, and no accept
/// thread can fall behind and overflow the backlog.
pub struct Listener {
    pub listener: TcpListener,
    pub addr: SocketAddr,
}

impl Listener {
    pub fn new(avoid_ports: &[u16]) -> Listener {
        let listener = loop {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            if !avoid_ports.contains(&l.local_addr().unwrap().port()) {
                break l;
            }
        };
        // Never block the worker, whatever happens to a connection.
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().unwrap();
        Listener { listener, addr }
    }

    pub fn fd(&self) -> i32 {
        self.listener.as_raw_fd()
    }
}

/// accept(2) of the connection the caller just made on the (non-blocking)
/// `listener`, with `flags` for the new socket; -1 when none came within 5 s.
/// Waits for it: connect() returns once the client has the SYN-ACK, and the
/// server side may complete later (it does in the emulated VM). Accepting too
/// early left that connection queued, and the next accept returned it in
/// place of a later one: the stratum_send worker then drained the wrong
/// socket and blocked for good in send() on the right one.
///
/// # Safety
/// Raw syscalls.
pub unsafe fn accept_next(listener: i32, flags: i32) -> i32 {
    let mut waited = 0;
    loop {
        let c = libc::accept4(
            listener,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            flags | libc::SOCK_CLOEXEC,
        );
        if c >= 0 || *libc::__errno_location() != libc::EAGAIN || waited >= 5000 {
            return c;
        }
        let mut pfd = libc::pollfd {
            fd: listener,
            events: libc::POLLIN,
            revents: 0,
        };
        libc::poll(&mut pfd, 1, 100);
        waited += 100;
    }
}

/// accept(2) and close(2) the connection the caller just made on `listener`.
///
/// # Safety
/// Raw syscalls.
pub unsafe fn accept_close(listener: i32) {
    let c = accept_next(listener, 0);
    if c >= 0 {
        libc::close(c);
    }
}

/// A loopback port with nothing listening (a connect is refused), not in
/// `avoid_ports`.
pub fn closed_port(avoid_ports: &[u16]) -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = l.local_addr().unwrap().port();
        drop(l);
        if !avoid_ports.contains(&port) {
            return port;
        }
    }
}

/// Every port a standard profile names (avoided by the benches' own
/// endpoints so no rule fires on them).
pub fn profile_ports() -> Vec<u16> {
    let mut ports = Vec::new();
    for c in Config::standard() {
        if let Config::Profile(_, p) = c {
            let policy = minerguard::KernelPolicy::compile(&p).expect("compiles");
            ports.extend(policy.ports.keys().copied());
        }
    }
    ports
}

/// IPv4 `sockaddr_in` for `addr`.
pub fn sockaddr_in(addr: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(a) = addr else {
        panic!("IPv4 only")
    };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// A TCP socket with SO_LINGER {1, 0}: close() resets instead of leaving
/// TIME_WAIT, so hundreds of thousands of connects do not run out of ports.
///
/// # Safety
/// Raw syscalls only; returns -1 on failure.
pub unsafe fn tcp_socket() -> i32 {
    let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
    if s >= 0 {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        libc::setsockopt(
            s,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        );
    }
    s
}

/// connect(2) on `s` to `to`; 0 or the errno.
///
/// # Safety
/// Raw syscall.
pub unsafe fn connect(s: i32, to: &libc::sockaddr_in) -> i32 {
    let rc = libc::connect(
        s,
        (to as *const libc::sockaddr_in).cast(),
        std::mem::size_of::<libc::sockaddr_in>() as u32,
    );
    if rc == 0 {
        0
    } else {
        *libc::__errno_location()
    }
}

/// Median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Criterion's `iter_custom` result for `iters` calls of median latency `ns`.
pub fn total(ns: u64, iters: u64) -> Duration {
    Duration::from_nanos(ns.saturating_mul(iters))
}

/// Interleaved measurement: `rounds` rounds, each measuring every
/// configuration once (order rotated per round so drift cancels), and the
/// median per configuration plus the median of per-round ratios against the
/// first configuration. `measure` returns ns per operation.
///
/// Prints one `SUMMARY` line per configuration.
pub fn interleaved(
    title: &str,
    switch: &mut Switch,
    configs: &[Config],
    rounds: usize,
    mut measure: impl FnMut(&Switch) -> f64,
) {
    let k = configs.len();
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); k];
    let started = Instant::now();
    for r in 0..rounds {
        for j in 0..k {
            let c = (r + j) % k;
            switch.set(&configs[c]);
            per[c].push(measure(switch));
        }
    }
    switch.set(&Config::Unhooked);
    let mut ratios: Vec<Vec<f64>> = per
        .iter()
        .map(|p| p.iter().zip(&per[0]).map(|(x, base)| x / base).collect())
        .collect();
    println!(
        "SUMMARY {title}: {rounds} interleaved rounds in {:.1} s (ns/op median [min..max]; ratio = median of per-round ratios vs {})",
        started.elapsed().as_secs_f64(),
        configs[0].name()
    );
    for c in 0..k {
        let min = per[c].iter().cloned().fold(f64::INFINITY, f64::min);
        let max = per[c].iter().cloned().fold(0.0, f64::max);
        let med = median(&mut per[c].clone());
        let ratio = median(&mut ratios[c]);
        println!(
            "SUMMARY {title} | {:<18} | {:>12.1} ns/op [{:.1}..{:.1}] | x{:.4}",
            configs[c].name(),
            med,
            min,
            max,
            ratio
        );
    }
}
