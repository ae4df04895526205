//! Dynamic scan cost (#23): one scan of a cgroup holding 1,000 benign
//! processes (900 `sleep`, 100 holding a loopback TCP connection, so the
//! socket path is paid too) with `container-strict`, whose rules need
//! every source a scan reads (program, argv, executable mappings, open
//! descriptors, the netns's socket tables). No process matches.
//!
//! Measured: the scanning thread's CPU time per scan (user + system, from
//! CLOCK_THREAD_CPUTIME_ID: reading /proc is mostly kernel time), which is
//! what the budget names (under 200 ms), and wall-clock time. The
//! baseline in the same run is the walk alone (reading the cgroups'
//! `cgroup.procs`), the part every scan pays before any process is read.
//! Everything runs in a bench cgroup made for the run, never the host.

mod common;

use std::{
    net::TcpListener,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::*;
use criterion::BenchmarkId;
use minerguard::{
    cgroup::{join_cgroup_raw, OwnedCgroup},
    scan::{ScanOptions, Scanner},
    Profile,
};

/// Benign processes in the scanned cgroup.
const PROCESSES: usize = 1000;
/// How many of them hold a TCP connection.
const CONNECTED: usize = 100;

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

/// A loopback listener on a port no bundled profile lists, accepting (and
/// holding) every connection on a thread of its own.
fn benign_listener(profile: &minerguard::KernelPolicy) -> u16 {
    let listener = loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        if !profile.ports.contains_key(&l.local_addr().unwrap().port()) {
            break l;
        }
    };
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().map_while(Result::ok) {
            held.push(conn);
        }
    });
    port
}

/// Starts the benign processes in `cgroup`.
fn populate(cgroup: &OwnedCgroup, port: u16) -> Vec<Child> {
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && exec sleep 600");
    (0..PROCESSES)
        .map(|i| {
            let mut cmd = if i < CONNECTED {
                let mut c = Command::new("/bin/bash");
                c.args(["-c", &script]);
                c
            } else {
                let mut c = Command::new("/usr/bin/sleep");
                c.arg("600");
                c
            };
            let procs = cgroup.procs_file().expect("open cgroup.procs");
            // SAFETY: join_cgroup_raw is a single write(2).
            unsafe { cmd.pre_exec(move || join_cgroup_raw(&procs)) };
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start a benign process")
        })
        .collect()
}

fn main() {
    require_root("scan");
    let profile = Profile::bundled("container-strict").unwrap();
    let policy = minerguard::KernelPolicy::compile(&profile).unwrap();
    let cgroup = bench_cgroup();
    let port = benign_listener(&policy);
    let mut children = populate(&cgroup, port);
    let scope: Vec<PathBuf> = vec![cgroup.cgroup().path().to_path_buf()];
    let scanner = Scanner::new(&profile).expect("compile for scanning");
    let options = ScanOptions {
        dry_run: true,
        ..Default::default()
    };

    // Every process started (bash has made its connection and become
    // sleep), and none is a finding: the figure is for a clean scope.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let report = scanner.scan(&scope, &options).expect("scan");
        let settled = report.scanned == PROCESSES
            && std::fs::read_to_string(format!("/proc/{}/comm", children[0].id()))
                .is_ok_and(|c| c.trim() == "sleep");
        if settled {
            assert!(report.findings.is_empty(), "{:#?}", report.findings);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "processes did not start: {report:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut c = criterion();
    {
        let mut group = c.benchmark_group(format!("scan/{PROCESSES}-processes"));
        group.sample_size(10);
        group.bench_function(BenchmarkId::from_parameter("cpu"), |b| {
            b.iter_custom(|iters| {
                let start = thread_cpu();
                for _ in 0..iters {
                    let r = scanner.scan(&scope, &options).expect("scan");
                    assert!(r.findings.is_empty());
                }
                thread_cpu() - start
            })
        });
        group.bench_function(BenchmarkId::from_parameter("wall"), |b| {
            b.iter(|| scanner.scan(&scope, &options).expect("scan"))
        });
        group.bench_function(BenchmarkId::from_parameter("walk-only-cpu"), |b| {
            b.iter_custom(|iters| {
                let start = thread_cpu();
                for _ in 0..iters {
                    let text = std::fs::read_to_string(scope[0].join("cgroup.procs")).unwrap();
                    std::hint::black_box(text.lines().count());
                }
                thread_cpu() - start
            })
        });
        group.finish();
    }
    if benchmarking() {
        // Plain figures for BENCHMARKS.md: the median of a few scans.
        let mut cpu: Vec<Duration> = (0..summary_rounds() * 3)
            .map(|_| {
                let start = thread_cpu();
                scanner.scan(&scope, &options).expect("scan");
                thread_cpu() - start
            })
            .collect();
        cpu.sort();
        println!(
            "SUMMARY scan: {PROCESSES} processes ({CONNECTED} connected), container-strict: median CPU {:.1} ms per scan ({:.1} µs per process)",
            cpu[cpu.len() / 2].as_secs_f64() * 1e3,
            cpu[cpu.len() / 2].as_secs_f64() * 1e6 / PROCESSES as f64
        );
    }
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(cgroup);
    c.final_summary();
}
