//! Shared plumbing for the kernel integration tests: privilege checks, test
//! cgroups, the `Scoped` fixture (a test cgroup with a profile applied to it),
//! running commands and connects inside a cgroup, event waits.
#![allow(dead_code)]

use std::{
    net::{SocketAddr, TcpListener},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::process::{CommandExt, ExitStatusExt},
    },
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

use minerguard::{
    cgroup::{join_cgroup_raw, OwnedCgroup},
    Action, BackendChoice, Enforcer, EnforcerOptions, Event, PolicyHandle, Profile, RuleKind,
    Scope,
};

pub mod duty;
pub mod pool;
pub mod proxy;
pub mod rxpool;
pub mod stream;
pub mod xmrig;

// Not every test binary that includes this module uses them all.
#[allow(unused_imports)]
pub use {duty::*, pool::*, proxy::*, rxpool::*, stream::*, xmrig::*};

/// Whether the kernel tests can run here. Without root or a usable backend
/// they fail loudly, unless MINERGUARD_ALLOW_SKIP=1 (then they print why
/// and skip).
pub fn kernel_tests_enabled(test: &str) -> bool {
    let euid = unsafe { libc::geteuid() };
    let reason = if euid != 0 {
        Some(format!("needs root (euid is {euid})"))
    } else {
        let report = minerguard::probe();
        match (backend_choice(), report.backend) {
            (BackendChoice::Lsm, _) if !report.bpf_lsm.available => {
                Some(format!("needs BPF LSM: {}", report.bpf_lsm.detail))
            }
            (_, None) => Some(format!(
                "no usable backend: {}",
                report.missing().join("; ")
            )),
            _ => None,
        }
    };
    match reason {
        None => true,
        Some(r) if std::env::var("MINERGUARD_ALLOW_SKIP").as_deref() == Ok("1") => {
            eprintln!("SKIPPED {test}: {r} (MINERGUARD_ALLOW_SKIP=1)");
            false
        }
        Some(r) => panic!("{test}: {r}; set MINERGUARD_ALLOW_SKIP=1 to skip"),
    }
}

/// The backend under test: MINERGUARD_TEST_BACKEND=auto|lsm|cgroup.
pub fn backend_choice() -> BackendChoice {
    std::env::var("MINERGUARD_TEST_BACKEND")
        .ok()
        .map(|s| s.parse().expect("MINERGUARD_TEST_BACKEND"))
        .unwrap_or_default()
}

/// The cgroup backend's Stratum judge under test:
/// MINERGUARD_TEST_STRATUM_JUDGE=sk-msg|egress (the library's default when
/// unset).
pub fn stratum_judge() -> minerguard::CgroupStratumJudge {
    std::env::var("MINERGUARD_TEST_STRATUM_JUDGE")
        .ok()
        .map(|s| s.parse().expect("MINERGUARD_TEST_STRATUM_JUDGE"))
        .unwrap_or_default()
}

/// Whether the egress Stratum judge is under test: a refused send then
/// succeeds, and the socket is destroyed soon after. Only on the cgroup
/// backend (the lsm backend judges in its own hooks whatever the option).
pub fn egress_under_test() -> bool {
    cgroup_under_test() && stratum_judge() == minerguard::CgroupStratumJudge::Egress
}

/// Whether the lsm backend is under test.
pub fn lsm_under_test() -> bool {
    !cgroup_under_test()
}

/// Whether the cgroup backend is under test.
fn cgroup_under_test() -> bool {
    static CGROUP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CGROUP.get_or_init(|| match backend_choice() {
        BackendChoice::Cgroup => true,
        BackendChoice::Lsm => false,
        BackendChoice::Auto => !minerguard::probe().bpf_lsm.available,
    })
}

/// Whether `enforcer` judges Stratum with the egress program: the cgroup
/// backend, with the egress judge under test.
pub fn egress_judges(enforcer: &Enforcer) -> bool {
    enforcer.backend() == minerguard::BackendKind::Cgroup && egress_under_test()
}

/// An enforcer on the backend (and Stratum judge) under test.
pub fn enforcer() -> Enforcer {
    // Parallel tests hold several enforcers of a few hundred descriptors
    // each; the VM guest's soft limit is 1,024.
    minerguard::raise_open_file_limit().expect("raise RLIMIT_NOFILE");
    Enforcer::with_options(EnforcerOptions {
        backend: backend_choice(),
        cgroup_stratum_judge: stratum_judge(),
        ..Default::default()
    })
    .expect("enforcer loads")
}

/// An enforcer instance name of this test process (`<tag>-<pid>`), whose
/// pins are removed when it is dropped: declare it before the enforcers
/// that use it, so that it outlives them.
pub struct InstanceName(pub String);

impl InstanceName {
    /// `<tag>-<pid>`.
    pub fn new(tag: &str) -> Self {
        InstanceName(format!("{tag}-{}", std::process::id()))
    }
}

impl Drop for InstanceName {
    fn drop(&mut self) {
        let _ = minerguard::pin::remove(&self.0);
    }
}

/// A fresh cgroup for one test, removed (processes killed) on drop.
pub fn test_cgroup() -> OwnedCgroup {
    OwnedCgroup::create_in_root("minerguard-test").expect("create test cgroup")
}

/// A child cgroup of `parent`.
pub fn child_cgroup(parent: &OwnedCgroup) -> OwnedCgroup {
    OwnedCgroup::create_under(parent.cgroup(), "child").expect("create child cgroup")
}

/// The scope of a test cgroup: that cgroup and its descendants.
pub fn scope_of(cg: &OwnedCgroup) -> Scope {
    Scope::Cgroup(cg.cgroup().path().to_path_buf())
}

/// The set-up most kernel tests share: a fresh test cgroup, an enforcer on
/// the backend under test, and a profile applied to that cgroup. Dropped in
/// order: the scope is removed, the enforcer dropped (its programs detach),
/// then the cgroup removed (its processes killed).
pub struct Scoped {
    // Fields drop in declaration order, after `Drop::drop` removed the scope.
    enforcer: Enforcer,
    cgroup: OwnedCgroup,
    handle: PolicyHandle,
}

impl Scoped {
    /// Applies `profile` to a fresh test cgroup with a new enforcer.
    pub fn apply(profile: &Profile) -> Self {
        let cgroup = test_cgroup();
        let mut enforcer = enforcer();
        let handle = enforcer
            .apply(profile, scope_of(&cgroup))
            .expect("apply the profile to the test cgroup");
        Scoped {
            enforcer,
            cgroup,
            handle,
        }
    }

    /// The test cgroup the profile applies to.
    pub fn cgroup(&self) -> &OwnedCgroup {
        &self.cgroup
    }

    /// The enforcer that applied it.
    pub fn enforcer(&self) -> &Enforcer {
        &self.enforcer
    }

    /// The enforcer, to update the scope or apply more.
    pub fn enforcer_mut(&mut self) -> &mut Enforcer {
        &mut self.enforcer
    }

    /// The cgroup and the enforcer together, for a test that changes the
    /// enforcer (update, refresh, apply more) while it runs things in the
    /// cgroup.
    pub fn cgroup_and_enforcer_mut(&mut self) -> (&OwnedCgroup, &mut Enforcer) {
        (&self.cgroup, &mut self.enforcer)
    }

    /// The handle of the applied profile (still valid after an `update`).
    pub fn handle(&self) -> PolicyHandle {
        self.handle
    }
}

impl Drop for Scoped {
    fn drop(&mut self) {
        // Fails only when the test removed it itself.
        let _ = self.enforcer.remove(self.handle);
    }
}

/// Runs `cmd` inside `cgroup` (or outside any test cgroup when `None`).
pub fn run_in(cgroup: Option<&OwnedCgroup>, cmd: &mut Command) -> std::io::Result<ExitStatus> {
    join_on_exec(cgroup, cmd);
    // ETXTBSY: a child forked by a parallel test may still hold an inherited
    // write descriptor of a freshly copied program; retry until it is gone.
    for _ in 0..100 {
        match cmd.status() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => return other,
        }
    }
    cmd.status()
}

/// Makes `cmd`'s child join `cgroup` (when given) before it execs.
pub fn join_on_exec(cgroup: Option<&OwnedCgroup>, cmd: &mut Command) {
    if let Some(cg) = cgroup {
        let procs = cg.procs_file().expect("open cgroup.procs");
        // SAFETY: join_cgroup_raw is a single write(2).
        unsafe {
            cmd.pre_exec(move || join_cgroup_raw(&procs));
        }
    }
}

/// Starts `cmd` inside `cgroup` (or outside any test cgroup when `None`)
/// without waiting for it (retried on ETXTBSY, see [`run_in`]).
pub fn spawn_in(cgroup: Option<&OwnedCgroup>, cmd: &mut Command) -> std::io::Result<Child> {
    join_on_exec(cgroup, cmd);
    for _ in 0..100 {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => return other,
        }
    }
    cmd.spawn()
}

/// Result of a connect made by a forked child.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// connect() succeeded.
    Connected,
    /// connect() failed with this errno.
    Errno(i32),
    /// The child was killed by this signal.
    Signal(i32),
}

/// What a forked child does with the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetOp {
    /// TCP connect().
    TcpConnect,
    /// UDP sendto() without connect.
    UdpSendto,
}

/// connect()s to `addr` from a child forked into `cgroup` (or not moved,
/// when `None`). `v4_mapped`: use an AF_INET6 socket and ::ffff:a.b.c.d.
pub fn connect_in(
    cgroup: Option<&OwnedCgroup>,
    addr: SocketAddr,
    v4_mapped: bool,
) -> ConnectOutcome {
    net_in(cgroup, addr, v4_mapped, NetOp::TcpConnect)
}

/// Like [`connect_in`], for any [`NetOp`]; `Connected` means the call succeeded.
pub fn net_in(
    cgroup: Option<&OwnedCgroup>,
    addr: SocketAddr,
    v4_mapped: bool,
    op: NetOp,
) -> ConnectOutcome {
    let (storage, len, family) = sockaddr(addr, v4_mapped);
    let end = fork_in(cgroup, || unsafe {
        let kind = if op == NetOp::TcpConnect {
            libc::SOCK_STREAM
        } else {
            libc::SOCK_DGRAM
        };
        let s = libc::socket(family, kind, 0);
        if s < 0 {
            return 201;
        }
        let to = (&storage as *const libc::sockaddr_storage).cast();
        let rc = match op {
            NetOp::TcpConnect => libc::connect(s, to, len),
            NetOp::UdpSendto => {
                let sent = libc::sendto(s, b"x".as_ptr().cast(), 1, 0, to, len);
                if sent == 1 {
                    0
                } else {
                    -1
                }
            }
        };
        if rc == 0 {
            return 0;
        }
        let errno = *libc::__errno_location();
        // Give a userspace SIGKILL (for `kill` rules) time to land.
        libc::usleep(300_000);
        errno.min(199)
    });
    match end {
        ChildEnd::Signal(sig) => ConnectOutcome::Signal(sig),
        ChildEnd::Code(0) => ConnectOutcome::Connected,
        ChildEnd::Code(c) if c >= 200 => panic!("connect child failed to set up (code {c})"),
        ChildEnd::Code(e) => ConnectOutcome::Errno(e),
    }
}

/// How a forked child ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ChildEnd {
    /// `_exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// Forks a child that joins `cgroup` (when given: writing "0" to its
/// cgroup.procs) and then `_exit`s with what `body` returns. `body` runs
/// between fork and `_exit` of a multi-threaded test process: raw syscalls
/// only, no allocation.
pub fn fork_in(cgroup: Option<&OwnedCgroup>, body: impl FnOnce() -> i32) -> ChildEnd {
    let procs: Option<OwnedFd> = cgroup.map(|c| c.procs_file().expect("open cgroup.procs"));
    // SAFETY: the child makes only async-signal-safe calls, then _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        unsafe {
            close_inherited_bpf_fds();
            if let Some(fd) = &procs {
                if libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                    libc::_exit(250);
                }
            }
            libc::_exit(body());
        }
    }
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFSIGNALED(status) {
        return ChildEnd::Signal(libc::WTERMSIG(status));
    }
    match libc::WEXITSTATUS(status) {
        250 => panic!("the child could not join its cgroup"),
        249 => panic!("the child could not list its inherited descriptors"),
        c => ChildEnd::Code(c),
    }
}

/// Connects to `addr` from a child forked into `cg`, then runs `between`
/// here (e.g. applies a profile) while the child waits, then lets the child
/// send each message in turn. The child's end: see [`send_in_steps`].
pub fn connect_then_send<R>(
    cg: &OwnedCgroup,
    addr: SocketAddr,
    messages: &[&[u8]],
    between: impl FnOnce() -> R,
) -> (ChildEnd, R) {
    let mut between = Some(between);
    let mut result = None;
    let end = send_in_steps(cg, addr, &[messages], 0, egress_under_test(), |_| {
        result = between.take().map(|f| f())
    });
    (end, result.expect("ran before the sends"))
}

/// Connects to `addr` from a child forked into `cg`, then sends each group
/// of `groups` in turn: before group `i` the child waits while `before(i)`
/// runs here. The child's end: `Code(0)` when all were sent (after
/// `linger_us`, e.g. to hold a socket while its event is read), `100 +
/// errno` when a send failed (after 100 ms, for a userspace kill to land),
/// 98 or 99 when its set-up failed; with `wait_for_error` (the egress
/// judge: a refusal comes after the send), `100 + errno` also when its
/// socket fails within 300 ms of the last send. The child goes on before a panic in
/// `before` unwinds, so a failed assert there leaves no child waiting.
/// MSG_NOSIGNAL: a send on a reset socket must not kill the child.
pub fn send_in_steps(
    cg: &OwnedCgroup,
    addr: SocketAddr,
    groups: &[&[&[u8]]],
    linger_us: u32,
    wait_for_error: bool,
    mut before: impl FnMut(usize),
) -> ChildEnd {
    let (storage, len, family) = sockaddr_of(addr);
    let (mut ready, mut go) = ([0; 2], [0; 2]);
    assert_eq!(unsafe { libc::pipe(ready.as_mut_ptr()) }, 0);
    assert_eq!(unsafe { libc::pipe(go.as_mut_ptr()) }, 0);
    let out = std::thread::scope(|s| {
        let child = s.spawn(|| {
            fork_in(Some(cg), || unsafe {
                let fd = libc::socket(family, libc::SOCK_STREAM, 0);
                if fd < 0
                    || libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len)
                        != 0
                {
                    return 99;
                }
                let mut b = [0u8; 1];
                for group in groups {
                    if libc::write(ready[1], b"r".as_ptr().cast(), 1) != 1
                        || libc::read(go[0], b.as_mut_ptr().cast(), 1) != 1
                    {
                        return 98;
                    }
                    for m in group.iter() {
                        if libc::send(fd, m.as_ptr().cast(), m.len(), libc::MSG_NOSIGNAL)
                            != m.len() as isize
                        {
                            let errno = *libc::__errno_location();
                            libc::usleep(100_000);
                            return 100 + errno.min(150);
                        }
                    }
                }
                if wait_for_error {
                    let errno = socket_error_within(fd, 300);
                    if errno != 0 {
                        return 100 + errno.min(150);
                    }
                }
                libc::usleep(linger_us);
                0
            })
        });
        let mut b = [0u8; 1];
        let mut outcome = Ok(());
        for i in 0..groups.len() {
            assert_eq!(unsafe { libc::read(ready[0], b.as_mut_ptr().cast(), 1) }, 1);
            if outcome.is_ok() {
                outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| before(i)));
            }
            assert_eq!(unsafe { libc::write(go[1], b"g".as_ptr().cast(), 1) }, 1);
        }
        let end = child.join().unwrap();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
        end
    });
    for fd in ready.into_iter().chain(go) {
        unsafe { libc::close(fd) };
    }
    out
}

/// `addr` as a sockaddr for raw syscalls in a forked child: (storage,
/// length, address family).
pub fn sockaddr_of(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t, i32) {
    sockaddr(addr, false)
}

/// In a forked child: closes the BPF objects, perf events and instance locks it inherited
/// (fork copies every fd). A link another test detached in the meantime
/// would otherwise stay attached while this child lives: its cgroup keeps
/// the program, and attaching the same program again fails (EEXIST/EINVAL).
/// Every open fd is visited (the tests raise `RLIMIT_NOFILE`, so an
/// instance's lock may sit far above 1,024): the fd numbers come from
/// getdents64 on /proc/self/fd.
/// Async-signal-safe: open(2), getdents64(2), readlink(2) and close(2) only.
unsafe fn close_inherited_bpf_fds() {
    let dir = libc::open(
        c"/proc/self/fd".as_ptr(),
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
    );
    if dir < 0 {
        libc::_exit(249);
    }
    // 8-byte aligned: linux_dirent64 starts with a u64.
    let mut buf = [0u64; 512];
    loop {
        let got = libc::syscall(
            libc::SYS_getdents64,
            dir,
            buf.as_mut_ptr(),
            std::mem::size_of_val(&buf),
        );
        if got <= 0 {
            break;
        }
        let bytes = std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), got as usize);
        let mut at = 0;
        while at + 19 < bytes.len() {
            // struct linux_dirent64: d_ino u64, d_off i64, d_reclen u16,
            // d_type u8, d_name (NUL-terminated).
            let reclen = u16::from_ne_bytes([bytes[at + 16], bytes[at + 17]]) as usize;
            if reclen == 0 {
                break;
            }
            let mut fd: i32 = -1;
            for &b in &bytes[at + 19..at + reclen] {
                match b {
                    b'0'..=b'9' => fd = fd.max(0) * 10 + i32::from(b - b'0'),
                    _ => break,
                }
            }
            if fd > 2 && fd != dir && inherited_from_an_enforcer(fd) {
                libc::close(fd);
            }
            at += reclen;
        }
    }
    libc::close(dir);
}

/// Whether `fd` (in a forked child) is a BPF object or a perf event.
/// (An instance's lock is a record lock, which a child does not hold.)
unsafe fn inherited_from_an_enforcer(fd: i32) -> bool {
    let mut path = *b"/proc/self/fd/\0\0\0\0\0\0\0\0\0\0\0";
    let mut digits = [0u8; 10];
    let (mut n, mut i) = (fd, digits.len());
    while n > 0 {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let len = digits.len() - i;
    // "/proc/self/fd/" is 14 bytes; the decimal fd follows.
    path[14..14 + len].copy_from_slice(&digits[i..]);
    path[14 + len] = 0;
    let mut target = [0u8; 32];
    let got = libc::readlink(
        path.as_ptr().cast(),
        target.as_mut_ptr().cast(),
        target.len(),
    );
    if got <= 0 {
        return false;
    }
    let t = &target[..got as usize];
    t.starts_with(b"anon_inode:bpf") || t.starts_with(b"anon_inode:[perf_event]")
}

fn sockaddr(addr: SocketAddr, v4_mapped: bool) -> (libc::sockaddr_storage, libc::socklen_t, i32) {
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) if !v4_mapped => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            (
                storage,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
                libc::AF_INET,
            )
        }
        _ => {
            let (ip6, port) = match addr {
                SocketAddr::V4(a) => (a.ip().to_ipv6_mapped(), a.port()),
                SocketAddr::V6(a) => (*a.ip(), a.port()),
            };
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: port.to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: ip6.octets(),
                },
                sin6_scope_id: 0,
            };
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            (
                storage,
                std::mem::size_of::<libc::sockaddr_in6>() as u32,
                libc::AF_INET6,
            )
        }
    }
}

/// A loopback TCP listener on a free port (IPv4 127.0.0.1 or IPv6 ::1).
pub fn listener(v6: bool) -> TcpListener {
    TcpListener::bind(if v6 { "[::1]:0" } else { "127.0.0.1:0" }).expect("bind loopback")
}

/// The next connection to `listener`, within 30 s (the emulated VM is
/// slow, but a client that never connects must fail the test, not hang it);
/// reads on it time out after 30 s too.
pub fn accept_within(listener: &TcpListener) -> std::net::TcpStream {
    let conn =
        try_accept_within(listener, Duration::from_secs(30)).expect("no connection within 30 s");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn
}

/// The next connection to `listener` (blocking), or `None` when none came
/// within `limit` (a client refused before it connects never comes).
pub fn try_accept_within(listener: &TcpListener, limit: Duration) -> Option<std::net::TcpStream> {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                conn.set_nonblocking(false).unwrap();
                return Some(conn);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Waits up to 5 s for an event that `pred` accepts; other events are skipped.
pub fn wait_event(enforcer: &Enforcer, pred: impl Fn(&Event) -> bool) -> Option<Event> {
    let rx = enforcer.events();
    // Generous: the emulated VM, busy with other tests, can take seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(ev) if pred(&ev) => return Some(ev),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Collects events for `wait`, returning those `pred` accepts.
pub fn events_within(
    enforcer: &Enforcer,
    wait: Duration,
    pred: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let rx = enforcer.events();
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(ev) if pred(&ev) => out.push(ev),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    out
}

/// A scratch directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("minerguard-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A copy of /usr/bin/touch named `name` in `dir`: running it with a path
/// argument creates that file, so a marker shows whether it ran.
pub fn fake_miner(dir: &TempDir, name: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::copy("/usr/bin/touch", &path).expect("copy touch");
    path
}

/// What happened to a series of sends on one TCP connection.
#[derive(Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// connect() and every send() succeeded.
    AllSent,
    /// connect() failed with this errno.
    ConnectFailed(i32),
    /// send number `index` failed with `errno`.
    SendFailed { index: usize, errno: i32 },
    /// The child was killed by this signal.
    Signal(i32),
}

/// Connects to `addr` from a child forked into `cgroup` (or not moved) and
/// sends each message in turn with send(2), stopping at the first failure.
/// With the egress Stratum judge under test, a refused send succeeds and
/// its socket is destroyed soon after: the child then waits (300 ms at
/// most) for an error on the socket, reported as the last send's failure.
pub fn send_in(cgroup: Option<&OwnedCgroup>, addr: SocketAddr, messages: &[&[u8]]) -> SendOutcome {
    assert!(messages.len() < 6);
    let (storage, len, family) = sockaddr(addr, false);
    let egress = cgroup.is_some() && egress_under_test();
    let end = fork_in(cgroup, || unsafe {
        let s = libc::socket(family, libc::SOCK_STREAM, 0);
        if s < 0 {
            return 251;
        }
        if libc::connect(s, (&storage as *const libc::sockaddr_storage).cast(), len) != 0 {
            return 200 + (*libc::__errno_location()).min(40);
        }
        for (i, m) in messages.iter().enumerate() {
            if libc::send(s, m.as_ptr().cast(), m.len(), libc::MSG_NOSIGNAL) != m.len() as isize {
                let errno = match *libc::__errno_location() {
                    libc::ECONNABORTED => SEND_ERRNO_ABORTED,
                    e => e.min(30),
                };
                // Give a userspace SIGKILL (for `kill` rules) time to land.
                libc::usleep(300_000);
                return ((i as i32 + 1) << 5) | errno;
            }
        }
        if egress && !messages.is_empty() && socket_error_within(s, 300) != 0 {
            libc::usleep(300_000);
            return ((messages.len() as i32) << 5) | SEND_ERRNO_ABORTED;
        }
        0
    });
    match end {
        ChildEnd::Signal(sig) => SendOutcome::Signal(sig),
        ChildEnd::Code(0) => SendOutcome::AllSent,
        ChildEnd::Code(251) => panic!("send child could not make a socket"),
        ChildEnd::Code(c) if c >= 200 => SendOutcome::ConnectFailed(c - 200),
        ChildEnd::Code(c) => SendOutcome::SendFailed {
            index: (c >> 5) as usize - 1,
            errno: match c & 31 {
                SEND_ERRNO_ABORTED => libc::ECONNABORTED,
                e => e,
            },
        },
    }
}

/// The error on socket `s` within `ms` milliseconds (0 if none): what a
/// destroyed socket reports. Async-signal-safe (poll, getsockopt).
///
/// # Safety
/// `s` is a socket of this process.
pub unsafe fn socket_error_within(s: i32, ms: i32) -> i32 {
    let mut p = libc::pollfd {
        fd: s,
        events: 0,
        revents: 0,
    };
    let (mut err, mut len) = (0i32, 4u32);
    if libc::poll(&mut p, 1, ms) == 1
        && libc::getsockopt(
            s,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut i32).cast(),
            &mut len,
        ) == 0
    {
        return err;
    }
    0
}

/// `send_in`'s exit code for ECONNABORTED (its five bits hold errnos up to
/// 30; 31, EMLINK, is never a send's).
const SEND_ERRNO_ABORTED: i32 = 31;

/// The call a test sends bytes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendVia {
    /// send(2).
    Send,
    /// sendto(2) with a NULL destination.
    Sendto,
    /// sendmsg(2), each part split over two iovecs.
    Sendmsg,
    /// write(2).
    Write,
    /// writev(2), each part split over two iovecs.
    Writev,
}

/// One call of `via` on socket `s` with `part` (split over two iovecs for
/// writev and sendmsg): what the call returned. Async-signal-safe, for a
/// forked child.
///
/// # Safety
/// `s` is a socket of this process.
pub unsafe fn send_once(s: i32, part: &[u8], via: SendVia) -> isize {
    let half = part.len() / 2;
    let iov = [
        libc::iovec {
            iov_base: part.as_ptr() as *mut libc::c_void,
            iov_len: half,
        },
        libc::iovec {
            iov_base: part.as_ptr().add(half) as *mut libc::c_void,
            iov_len: part.len() - half,
        },
    ];
    let p = part.as_ptr().cast();
    match via {
        SendVia::Send => libc::send(s, p, part.len(), 0),
        SendVia::Sendto => libc::sendto(s, p, part.len(), 0, std::ptr::null(), 0),
        SendVia::Write => libc::write(s, p, part.len()),
        SendVia::Writev => libc::writev(s, iov.as_ptr(), 2),
        SendVia::Sendmsg => {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = 2;
            libc::sendmsg(s, &msg, 0)
        }
    }
}

/// Connects to `addr` from a child forked into `cgroup` and sends `data`
/// in `chunk`-byte calls of `via`: `Code(0)` when all went out, `Code(100 +
/// errno)` at the first failed call, or the signal that killed the child.
/// Under the egress Stratum judge a refusal comes after the call: the
/// child waits (300 ms at most) for its socket's error once all went out.
pub fn send_chunks_in(
    cgroup: Option<&OwnedCgroup>,
    addr: SocketAddr,
    data: &[u8],
    chunk: usize,
    via: SendVia,
) -> ChildEnd {
    let (storage, len, family) = sockaddr(addr, false);
    let egress = cgroup.is_some() && egress_under_test();
    fork_in(cgroup, || unsafe {
        // A call on a destroyed socket must fail, not kill the child.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let s = libc::socket(family, libc::SOCK_STREAM, 0);
        if s < 0 || libc::connect(s, (&storage as *const libc::sockaddr_storage).cast(), len) != 0 {
            return 99;
        }
        for part in data.chunks(chunk) {
            let sent = send_once(s, part, via);
            if sent != part.len() as isize {
                let errno = *libc::__errno_location();
                // Give a userspace SIGKILL (for `kill` rules) time to land.
                libc::usleep(300_000);
                return 100 + errno.min(150);
            }
        }
        match egress {
            true => match socket_error_within(s, 300) {
                0 => 0,
                errno => 100 + errno.min(150),
            },
            false => 0,
        }
    })
}

/// Everything that reached `listener` from its queued connections so far.
pub fn received(listener: &TcpListener) -> Vec<u8> {
    use std::io::Read;
    listener.set_nonblocking(true).unwrap();
    let mut all = Vec::new();
    while let Ok((mut conn, _)) = listener.accept() {
        conn.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
    }
    all
}

/// How [`fileless_exec_in`] runs a program without a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fileless {
    /// memfd_create + fexecve.
    Memfd,
    /// open a copy, unlink it, execveat(fd, "", AT_EMPTY_PATH).
    DeletedFile,
}

/// Result of a process that was to exec something.
#[derive(Debug, PartialEq, Eq)]
pub enum ForkOutcome {
    /// It exited with this code (the exec worked, or the child gave up).
    Exited(i32),
    /// The exec failed with this errno.
    ExecFailed(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// Runs a copy of `program` with `args` in a child forked into `cgroup`,
/// with no file on disk behind it.
pub fn fileless_exec_in(
    cgroup: Option<&OwnedCgroup>,
    program: &Path,
    args: &[&str],
    how: Fileless,
    scratch: &TempDir,
) -> ForkOutcome {
    use std::{ffi::CString, io::Write, os::fd::FromRawFd};
    let image = std::fs::read(program).expect("read program");
    let fd: OwnedFd = match how {
        Fileless::Memfd => unsafe {
            let raw = libc::memfd_create(c"mg-test".as_ptr(), 0);
            assert!(raw >= 0, "memfd_create");
            let mut f = std::fs::File::from_raw_fd(raw);
            f.write_all(&image).unwrap();
            // Exec needs no writer left: reopen read-only, drop the writer.
            let ro = std::fs::File::open(format!("/proc/self/fd/{raw}")).unwrap();
            drop(f);
            ro.into()
        },
        Fileless::DeletedFile => {
            let path = scratch.path().join("deleted-program");
            std::fs::write(&path, &image).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            let f = std::fs::File::open(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            f.into()
        }
    };
    let argv_c: Vec<CString> = std::iter::once("fileless")
        .chain(args.iter().copied())
        .map(|a| CString::new(a).unwrap())
        .collect();
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // Retried on ETXTBSY: see `run_in`.
    let mut end = ChildEnd::Code(100 + libc::ETXTBSY);
    for _ in 0..100 {
        end = fork_in(cgroup, || unsafe {
            libc::syscall(
                libc::SYS_execveat,
                fd.as_raw_fd(),
                c"".as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
                libc::AT_EMPTY_PATH,
            );
            100 + (*libc::__errno_location()).min(100)
        });
        if end != ChildEnd::Code(100 + libc::ETXTBSY) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(fd);
    match end {
        ChildEnd::Signal(sig) => ForkOutcome::Signal(sig),
        ChildEnd::Code(c) if c >= 100 => ForkOutcome::ExecFailed(c - 100),
        ChildEnd::Code(c) => ForkOutcome::Exited(c),
    }
}

/// What happened to an exec.
#[derive(Debug, PartialEq, Eq)]
pub enum ExecOutcome {
    /// Ran and exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Killed(i32),
    /// execve failed with this errno.
    Refused(i32),
}

/// Runs `program arg` inside `cgroup` (or outside any test cgroup).
pub fn exec_in(
    cgroup: Option<&OwnedCgroup>,
    program: &std::path::Path,
    arg: &std::path::Path,
) -> ExecOutcome {
    match run_in(cgroup, Command::new(program).arg(arg)) {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => ExecOutcome::Exited(c),
            (None, Some(sig)) => ExecOutcome::Killed(sig),
            _ => unreachable!("status is an exit or a signal"),
        },
        Err(e) => ExecOutcome::Refused(e.raw_os_error().unwrap_or(-1)),
    }
}

/// What a denied exec looks like with this enforcer's backend.
/// What a refused exec looks like with this enforcer's backend.
pub fn denied_exec(enforcer: &Enforcer, requested: Action) -> ExecOutcome {
    match enforcer.effective_action(RuleKind::Exec, requested) {
        Action::Kill | Action::KillContainer => ExecOutcome::Killed(libc::SIGKILL),
        Action::Deny => ExecOutcome::Refused(libc::EPERM),
        Action::Audit => ExecOutcome::Exited(0),
    }
}

/// A network namespace made for one test, reached from the host over a veth
/// pair (host side 10.213.N.1/30, namespace side 10.213.N.2/30); deleted,
/// with its veth, on drop. No traffic leaves the pair.
pub struct TestNetns {
    name: String,
    /// The namespace side's address.
    pub peer: std::net::Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestNetns {
    /// Creates the namespace and the veth pair.
    pub fn new() -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // One /30 per namespace; the pid spreads parallel test processes.
        let subnet = (std::process::id() + n) % 250;
        let name = format!("mgtest{}-{n}", std::process::id());
        let host = format!("mgh{}x{n}", std::process::id() % 100_000);
        let peer_if = format!("mgp{}x{n}", std::process::id() % 100_000);
        ip(&["netns", "add", &name]);
        let ns = TestNetns {
            name,
            peer: std::net::Ipv4Addr::new(10, 213, subnet as u8, 2),
        };
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", &peer_if,
        ]);
        ip(&["link", "set", &peer_if, "netns", &ns.name]);
        ip(&[
            "addr",
            "add",
            &format!("10.213.{subnet}.1/30"),
            "dev",
            &host,
        ]);
        ip(&["link", "set", &host, "up"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("10.213.{subnet}.2/30"),
            "dev",
            &peer_if,
        ]);
        ip(&["-n", &ns.name, "link", "set", &peer_if, "up"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's file (for setns).
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// A TCP listener bound inside the namespace on its veth address.
    pub fn listener(&self, port: u16) -> TcpListener {
        let path = self.path();
        let addr = SocketAddr::from((self.peer, port));
        // setns changes only the calling thread: bind from a thread of ours.
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).expect("open netns");
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            TcpListener::bind(addr).expect("bind in netns")
        })
        .join()
        .expect("listener thread")
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth, and the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A TCP Fast Open send of `payload` to `addr` (sendto with MSG_FASTOPEN on
/// a fresh socket) from a child in `cgroup`: `Code(0)` when it all went out,
/// `Code(100 + errno)` when refused. The child sends from a copy on its
/// stack (resident, as a program's freshly written buffer is), or, with
/// `untouched_file`, from a mapping of that file it never touched.
pub fn fast_open_send_in(
    cgroup: Option<&OwnedCgroup>,
    addr: SocketAddr,
    payload: &[u8],
    untouched_file: Option<&Path>,
) -> ChildEnd {
    assert!(payload.len() <= 256);
    let (storage, len, family) = sockaddr(addr, false);
    let mapped = untouched_file.map(|path| {
        std::fs::write(path, payload).unwrap();
        let f = std::fs::File::open(path).unwrap();
        // SAFETY: a fresh read-only mapping of a file we wrote; never read
        // here, so no page of it is mapped in this process or the child.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                payload.len(),
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        p as usize
    });
    let end = fork_in(cgroup, || unsafe {
        let mut copy = [0u8; 256];
        copy[..payload.len()].copy_from_slice(payload);
        let buf = mapped.unwrap_or(copy.as_ptr() as usize) as *const libc::c_void;
        let s = libc::socket(family, libc::SOCK_STREAM, 0);
        if s < 0 {
            return 99;
        }
        let sent = libc::sendto(
            s,
            buf,
            payload.len(),
            libc::MSG_FASTOPEN,
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        );
        if sent != payload.len() as isize {
            let errno = *libc::__errno_location();
            libc::usleep(300_000);
            return 100 + errno.min(100);
        }
        0
    });
    if let Some(p) = mapped {
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(p as *mut libc::c_void, payload.len()) };
    }
    end
}

/// One part of a message for [`send_parts_in`].
#[derive(Debug, Clone, Copy)]
pub enum Part<'a> {
    /// Sent with send(2) from the child's memory.
    Send(&'a [u8]),
    /// Sent with sendfile(2) from a file holding these bytes (the kernel
    /// moves file pages: before 6.5 this bypasses the socket_sendmsg LSM
    /// hook, and the egress judge behind it reads it).
    Sendfile(&'a [u8]),
}

/// Connects to `addr` from a child forked into `cgroup` and sends `parts` in
/// order (sendfile parts from files written into `dir`): `Code(0)` when all
/// went out, `Code(100 + errno)` at the first failed call. Under the egress
/// judge (in a cgroup) also `Code(100 + errno)` when the socket fails within
/// 2 s of the last part (a refused socket is destroyed after the send).
pub fn send_parts_in(
    cgroup: Option<&OwnedCgroup>,
    addr: SocketAddr,
    parts: &[Part],
    dir: &Path,
) -> ChildEnd {
    // Files are opened before the fork: the child only makes syscalls.
    let files: Vec<Option<std::fs::File>> = parts
        .iter()
        .enumerate()
        .map(|(i, part)| match part {
            Part::Send(_) => None,
            Part::Sendfile(bytes) => {
                let path = dir.join(format!("part-{i}"));
                std::fs::write(&path, bytes).unwrap();
                Some(std::fs::File::open(&path).unwrap())
            }
        })
        .collect();
    let (storage, len, family) = sockaddr(addr, false);
    // Where the egress judge refuses, the send succeeds and the socket is
    // destroyed: the cgroup backend's default judge, and the one behind
    // the lsm hook for the sendfile calls that go past the hook (before
    // Linux 6.5).
    let sendfile = parts.iter().any(|p| matches!(p, Part::Sendfile(_)));
    let egress = cgroup.is_some()
        && (egress_under_test() || (sendfile && lsm_under_test() && !kernel_at_least(6, 5)));
    fork_in(cgroup, || unsafe {
        let s = libc::socket(family, libc::SOCK_STREAM, 0);
        if s < 0 || libc::connect(s, (&storage as *const libc::sockaddr_storage).cast(), len) != 0 {
            return 99;
        }
        for (part, file) in parts.iter().zip(&files) {
            let (sent, want) = match (part, file) {
                (Part::Sendfile(bytes), Some(f)) => {
                    let mut off: libc::off_t = 0;
                    (
                        libc::sendfile(s, f.as_raw_fd(), &mut off, bytes.len()),
                        bytes.len(),
                    )
                }
                (Part::Send(bytes), _) | (Part::Sendfile(bytes), None) => (
                    libc::send(s, bytes.as_ptr().cast(), bytes.len(), 0),
                    bytes.len(),
                ),
            };
            if sent != want as isize {
                let errno = *libc::__errno_location();
                // Give a userspace SIGKILL (for `kill` rules) time to land.
                libc::usleep(300_000);
                return 100 + errno.min(150);
            }
        }
        if egress {
            let errno = socket_error_within(s, 2000);
            if errno != 0 {
                return 100 + errno.min(150);
            }
        }
        0
    })
}

/// Whether the running kernel is at least `major.minor` (from uname).
#[allow(dead_code)]
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("kernel release");
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

/// Whether, on `backend`, every send reaches the lsm socket_sendmsg hook
/// (from Linux 6.5; before, sendfile and splice go past it to the egress
/// judge behind it).
#[allow(dead_code)]
pub fn lsm_judges_every_send(backend_is_lsm: bool) -> bool {
    backend_is_lsm && kernel_at_least(6, 5)
}

/// A child process that is killed (and reaped) when the guard drops, so a
/// test that fails midway leaves nothing running (an enforcer still
/// holding its instance, a loop still connecting).
pub struct ChildGuard(Option<std::process::Child>);

impl ChildGuard {
    /// Guards `child`.
    pub fn new(child: std::process::Child) -> Self {
        ChildGuard(Some(child))
    }

    /// The child, no longer guarded (to wait for its output).
    pub fn into_inner(mut self) -> std::process::Child {
        self.0.take().expect("guarded until taken")
    }
}

impl std::ops::Deref for ChildGuard {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        self.0.as_ref().expect("guarded until taken")
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("guarded until taken")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Spawns `cmd` (its stderr piped) and streams its stderr lines through a
/// channel, read by a thread, so a test can wait for a line while the
/// process runs on.
pub fn spawn_with_stderr_lines(cmd: &mut Command) -> (Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = cmd.spawn().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    (child, lines)
}
