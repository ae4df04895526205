//! `open()` overhead of the tuning counter (#24, bpf/tuning_tp.bpf.c: the
//! open syscalls' entry tracepoints, loaded with the first profile that has
//! a `behaviour` rule) against an unhooked baseline measured in the same
//! run. The tracepoints are host-wide, so two workers are measured: one in
//! the bench cgroup the profile is applied to, one in a second cgroup that
//! no profile covers (every other process on the node).
//!
//! Each worker opens and closes a regular file (`openat`, as libc's `open`
//! does), for reading (the tracepoint stops at the flags test) and for
//! writing (it looks the task's scope up and, in a scope, reads the path's
//! end and compares its last component). The figure is the median latency
//! of one open + close. Configurations: no enforcer (`unhooked`), the
//! bundled `default` (no counter), and `default` with a `behaviour` rule
//! (the counter attached), each on a freshly loaded enforcer.
//!
//! As in every kernel bench, the quoted ratios are the interleaved
//! `SUMMARY` printed after criterion's runs.

mod common;

use std::ffi::CString;

use common::*;
use criterion::{BenchmarkId, Throughput};
use minerguard::{profile::BehaviourMatch, Action, Profile, Rule};

const OP_READ: u64 = 0;
const OP_WRITE: u64 = 1;

/// `default` plus a `behaviour` rule in audit.
fn default_with_behaviour() -> Config {
    let mut p = Profile::bundled("default").expect("bundled profile");
    p.rules.push(Rule::behaviour(
        "mining-behaviour",
        Action::Audit,
        BehaviourMatch::default(),
    ));
    p.name = "default+behaviour".into();
    Config::Profile("default+behaviour", p)
}

/// A worker in `cgroup` that opens and closes `path` `n` times per request
/// (for reading or writing) and returns the median latency.
fn opener(cgroup: &minerguard::cgroup::OwnedCgroup, path: &CString) -> Worker {
    let path = path.clone();
    let mut lat = Latencies::with_capacity(LATENCY_CAPACITY);
    Worker::spawn(cgroup, move |op, n| unsafe {
        let flags = match op {
            OP_READ => libc::O_RDONLY,
            OP_WRITE => libc::O_WRONLY,
            _ => return u64::MAX,
        } | libc::O_CLOEXEC;
        lat.clear();
        for _ in 0..n {
            let t0 = now_ns();
            let fd = libc::open(path.as_ptr(), flags);
            if fd < 0 {
                return u64::MAX;
            }
            libc::close(fd);
            lat.push(now_ns() - t0);
        }
        lat.median()
    })
}

fn main() {
    require_root("open");
    // Not under /tmp: container-strict-like rules never matter here, but a
    // stable path on the root file system keeps runs comparable.
    let dir = std::path::PathBuf::from("/var/cache/minerguard-bench");
    std::fs::create_dir_all(&dir).expect("create the bench directory");
    let file = dir.join("open-target");
    std::fs::write(&file, b"x").expect("write the bench file");
    let path = CString::new(file.to_str().unwrap()).unwrap();

    let scoped_cg = bench_cgroup();
    let other_cg = bench_cgroup();
    let scoped = opener(&scoped_cg, &path);
    let other = opener(&other_cg, &path);
    let mut switch = Switch::fresh(&scoped_cg);
    let configs = vec![
        Config::Unhooked,
        Config::bundled("default"),
        default_with_behaviour(),
    ];
    let cases: [(&str, &Worker, u64); 4] = [
        ("open/read-in-scope", &scoped, OP_READ),
        ("open/write-in-scope", &scoped, OP_WRITE),
        ("open/read-outside", &other, OP_READ),
        ("open/write-outside", &other, OP_WRITE),
    ];
    for (_, w, op) in &cases {
        assert_ne!(w.run(*op, 1), u64::MAX, "the worker opens the file");
    }

    let mut c = criterion();
    for (title, worker, op) in &cases {
        let mut group = c.benchmark_group(*title);
        group.throughput(Throughput::Elements(1));
        for config in &configs {
            switch.set(config);
            group.bench_function(BenchmarkId::from_parameter(config.name()), |b| {
                b.iter_custom(|iters| total(worker.run(*op, iters), iters))
            });
        }
        group.finish();
    }
    // The counter is attached exactly with the behaviour rule.
    switch.set(&default_with_behaviour());
    let e = switch.enforcer().expect("loaded");
    assert!(e.tuning().is_ok(), "{:?}", e.tuning());
    switch.set(&Config::bundled("default"));
    let e = switch.enforcer().expect("loaded");
    assert!(e.tuning().is_err(), "a fresh enforcer without the rule");
    switch.set(&Config::Unhooked);

    if benchmarking() {
        let n = 20_000;
        for (title, worker, op) in &cases {
            interleaved(title, &mut switch, &configs, summary_rounds(), |_| {
                worker.run(*op, n / 10);
                worker.run(*op, n) as f64
            });
        }
    }
    c.final_summary();
    drop((scoped, other));
    scoped_cg.remove().expect("remove the bench cgroup");
    other_cg.remove().expect("remove the second bench cgroup");
}
