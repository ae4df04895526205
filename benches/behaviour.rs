//! Behaviour detector cost (#24): the CPU time of one sample of a cgroup
//! holding N benign processes (`sleep`), N = 100 (the budget: under
//! 0.5 % of one core at the 2 s sampling period) and 1,000. The detector
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
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
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

/// Starts `n` `sleep`s in `cgroup`.
fn populate(cgroup: &OwnedCgroup, n: usize) -> Vec<Child> {
    (0..n)
        .map(|_| {
            let mut cmd = Command::new("/usr/bin/sleep");
            cmd.arg("600");
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

/// Median CPU time of one sample of `scope` holding `n` processes.
fn measure(n: usize, rounds: usize) -> Duration {
    let cgroup = bench_cgroup();
    let mut children = populate(&cgroup, n);
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
    for n in [100, 1000] {
        let cpu = measure(n, rounds);
        println!(
            "SUMMARY behaviour: {n} processes: median CPU {:.2} ms per sample ({:.1} µs per process); at one sample every {} s: {:.3} % of one core",
            cpu.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e6 / n as f64,
            SAMPLE_PERIOD.as_secs(),
            100.0 * cpu.as_secs_f64() / SAMPLE_PERIOD.as_secs_f64()
        );
    }
}
