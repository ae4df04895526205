//! Behaviour detector cost (#24): the CPU time of one sample of a cgroup
//! holding N benign processes (`sleep`), N = 100 (the budget: under
//! 0.5 % of one core at the 2 s sampling period) and 1,000; and the worst
//! case of 100 busy processes, each holding a loopback TCP connection, for
//! which every sample also reads each thread's voluntary switches, each
//! process's sockets and memory, and sock_diag's counters. The detector
//! has one `behaviour` rule with a 1 s window and samples every 200 ms, so
//! each process's history is as deep as in `watch` (a window's worth) and
//! every sample judges every process (nothing is busy, so memory is never
//! read: the common case).
//!
//! Measured: the sampling thread's CPU time per sample (user + system,
//! CLOCK_THREAD_CPUTIME_ID: reading /proc is mostly kernel time), median
//! of the samples taken once every history spans the window. Everything
//! runs in bench cgroups made for the run, never the host.

mod common;

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use common::*;
use minerguard::{
    behaviour::{Detector, SAMPLE_PERIOD},
    cgroup::{join_cgroup_raw, OwnedCgroup},
    profile::BehaviourMatch,
    scan::ScanOptions,
    Profile, Rule,
};

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Starts `n` processes of `program` with `args` in `cgroup`, quiet.
fn start_in(cgroup: &OwnedCgroup, n: usize, program: &str, args: &[&str]) -> Vec<Child> {
    (0..n)
        .map(|_| {
            let mut cmd = Command::new(program);
            cmd.args(args);
            let procs = cgroup.procs_file().expect("open cgroup.procs");
            // SAFETY: join_cgroup_raw is a single write(2).
            unsafe { cmd.pre_exec(move || join_cgroup_raw(&procs)) };
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start {program}: {e}"))
        })
        .collect()
}

/// Starts `n` `sleep`s in `cgroup`.
fn populate(cgroup: &OwnedCgroup, n: usize) -> Vec<Child> {
    start_in(cgroup, n, "/usr/bin/sleep", &["600"])
}

/// Starts `n` busy Python loops in `cgroup`, each holding a TCP connection
/// to `pool` (loopback): every process is active and busy each sample, so
/// its voluntary switches, sockets, their counters and its memory are read.
fn populate_busy_connected(cgroup: &OwnedCgroup, n: usize, pool: SocketAddr) -> Vec<Child> {
    let script = format!(
        "import socket\ns = socket.create_connection(('{}', {}))\nx = 0\nwhile True: x += 1",
        pool.ip(),
        pool.port()
    );
    start_in(cgroup, n, "/usr/bin/python3", &["-c", &script])
}

/// A loopback listener that accepts connections and holds them until it is
/// dropped.
struct Holder {
    addr: SocketAddr,
    held: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Holder {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen on loopback");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let (held, stop) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(AtomicBool::new(false)),
        );
        let (h, st) = (held.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => h.lock().unwrap().push(c),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Holder {
            addr,
            held,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until `n` connections are held (each process started).
    fn wait_for(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while self.held.lock().unwrap().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "the busy processes did not connect"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Median CPU time of one sample of a scope of `n` processes (idle `sleep`s,
/// or busy connected Python loops).
fn measure(n: usize, busy: bool, rounds: usize) -> Duration {
    let cgroup = bench_cgroup();
    let holder = busy.then(Holder::start);
    let mut children = match &holder {
        Some(h) => {
            let children = populate_busy_connected(&cgroup, n, h.addr);
            h.wait_for(n);
            children
        }
        None => populate(&cgroup, n),
    };
    let scope: Vec<PathBuf> = vec![cgroup.cgroup().path().to_path_buf()];
    let profile = Profile::new("bench").rule(Rule::behaviour(
        "mining-behaviour",
        minerguard::Action::Audit,
        BehaviourMatch {
            window_secs: Some(1),
            ..Default::default()
        },
    ));
    let mut detector = Detector::new(&profile).unwrap();
    let options = ScanOptions {
        dry_run: true,
        ..ScanOptions::default()
    };
    let period = Duration::from_millis(200);
    let mut cpu = Vec::new();
    // Warm-up: the histories fill to a window (1 s) first.
    for i in 0..(6 + rounds) {
        let start = thread_cpu();
        let s = detector.sample(&scope, &options).expect("sample");
        let spent = thread_cpu() - start;
        assert!(s.detections.is_empty(), "{:?}", s.detections);
        if i >= 6 {
            assert_eq!(s.processes, n);
            assert_eq!(s.observations.len(), n, "every process judged");
            cpu.push(spent);
        }
        std::thread::sleep(period);
    }
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(cgroup);
    cpu.sort();
    cpu[cpu.len() / 2]
}

fn main() {
    require_root("behaviour");
    let rounds = if benchmarking() {
        summary_rounds() * 5
    } else {
        1
    };
    // In test mode (CI) the busy case starts 10 processes, not 100: it
    // checks the path, and 100 Python starts cost CI about 25 s.
    let busy_n = if benchmarking() { 100 } else { 10 };
    // MINERGUARD_BENCH_BUSY_ONLY=1: the busy case alone (to profile it).
    let busy_only = std::env::var_os("MINERGUARD_BENCH_BUSY_ONLY").is_some_and(|v| v == "1");
    for (n, busy) in [(100, false), (1000, false), (busy_n, true)] {
        if busy_only && !busy {
            continue;
        }
        let cpu = measure(n, busy, rounds);
        let what = match busy {
            true => "busy connected processes (switches, sockets, counters and memory read)",
            false => "processes",
        };
        println!(
            "SUMMARY behaviour: {n} {what}: median CPU {:.2} ms per sample ({:.1} µs per process); at one sample every {} s: {:.3} % of one core",
            cpu.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e6 / n as f64,
            SAMPLE_PERIOD.as_secs(),
            100.0 * cpu.as_secs_f64() / SAMPLE_PERIOD.as_secs_f64()
        );
    }
}
