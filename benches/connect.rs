//! `connect()` overhead of the cgroup hooks (cgroup/connect4 and the Stratum
//! `sockops` program) against an unhooked baseline measured in the same run.
//!
//! A worker forked into a fresh bench cgroup makes TCP connects to
//! 127.0.0.1, in three configurations: no enforcer loaded (`unhooked`), the
//! bundled `default` profile applied to the bench cgroup,
//! `container-strict`, and `default-connect-rules` (only default's
//! `connect` rules: no Stratum socket tracking). Measured:
//! - `connect/listener`: the connect() syscall alone, to a loopback listener
//!   created by the bench process outside the cgroup; the worker accepts
//!   each connection itself, outside the timed region;
//! - `connect/refused`: the connect() syscall alone, to a closed loopback
//!   port (ECONNREFUSED);
//! - `connect/lifecycle`: socket() + connect() + close() to the listener
//!   (SO_LINGER 0, so close resets), which also pays for sockops putting
//!   the socket into the sockhash and for its removal at close.
//!
//! Each call is timed alone (two vDSO clock reads around it, tens of ns,
//! the same in every configuration) and the figure is the median per-call
//! latency of a batch: on this shared 2-core machine a mean mostly measures
//! who else had the CPU.
//!
//! The design goal is `default` within 3 % of unhooked. Criterion measures
//! each configuration in turn; because this machine is noisy (2 cores,
//! other work), the bench then prints an interleaved `SUMMARY` (configs
//! alternated round by round, median of per-round ratios), which is the
//! figure BENCHMARKS.md quotes.

mod common;

use common::*;
use criterion::{BenchmarkId, Throughput};

const OP_LISTENER: u64 = 0;
const OP_REFUSED: u64 = 1;
const OP_LIFECYCLE: u64 = 2;
const OP_CHECK_LISTENER: u64 = 3;
const OP_CHECK_REFUSED: u64 = 4;

fn main() {
    require_root("connect");
    let avoid = profile_ports();
    let server = Listener::new(&avoid);
    let lfd = server.fd();
    let listener = sockaddr_in(server.addr);
    let refused = sockaddr_in(
        format!("127.0.0.1:{}", closed_port(&avoid))
            .parse()
            .unwrap(),
    );

    let cgroup = bench_cgroup();
    let mut lat = Latencies::with_capacity(LATENCY_CAPACITY);
    let worker = Worker::spawn(&cgroup, move |op, n| unsafe {
        lat.clear();
        match op {
            OP_LISTENER | OP_REFUSED => {
                let to = if op == OP_LISTENER {
                    &listener
                } else {
                    &refused
                };
                for _ in 0..n {
                    let s = tcp_socket();
                    let t0 = now_ns();
                    let rc = connect(s, to);
                    lat.push(now_ns() - t0);
                    if rc == 0 {
                        accept_close(lfd);
                    }
                    libc::close(s);
                }
                lat.median()
            }
            OP_LIFECYCLE => {
                // socket + connect + close, timed around the untimed accept.
                for _ in 0..n {
                    let t0 = now_ns();
                    let s = tcp_socket();
                    connect(s, &listener);
                    let t1 = now_ns();
                    accept_close(lfd);
                    let t2 = now_ns();
                    libc::close(s);
                    lat.push((t1 - t0) + (now_ns() - t2));
                }
                lat.median()
            }
            OP_CHECK_LISTENER | OP_CHECK_REFUSED => {
                let to = if op == OP_CHECK_LISTENER {
                    &listener
                } else {
                    &refused
                };
                let s = tcp_socket();
                let rc = connect(s, to);
                if rc == 0 {
                    accept_close(lfd);
                }
                libc::close(s);
                rc as u64
            }
            _ => u64::MAX,
        }
    });
    let mut switch = Switch::new(&cgroup);
    let mut configs = Config::standard();
    // Where the gap comes from: the same ports without the stratum rule.
    configs.push(Config::default_connect_rules());
    let check = |w: &Worker| {
        assert_eq!(w.run(OP_CHECK_LISTENER, 1), 0, "connect to the listener");
        assert_eq!(
            w.run(OP_CHECK_REFUSED, 1),
            libc::ECONNREFUSED as u64,
            "connect to the closed port"
        );
    };

    let mut c = criterion();
    for (name, op) in [
        ("listener", OP_LISTENER),
        ("refused", OP_REFUSED),
        ("lifecycle", OP_LIFECYCLE),
    ] {
        let mut group = c.benchmark_group(format!("connect/{name}"));
        group.throughput(Throughput::Elements(1));
        for config in &configs {
            switch.set(config);
            check(&worker);
            group.bench_function(BenchmarkId::from_parameter(config.name()), |b| {
                b.iter_custom(|iters| total(worker.run(op, iters), iters))
            });
        }
        group.finish();
    }
    switch.set(&Config::Unhooked);

    if benchmarking() {
        let rounds = summary_rounds();
        for (name, op, n) in [
            ("connect/listener", OP_LISTENER, 20_000),
            ("connect/refused", OP_REFUSED, 20_000),
            ("connect/lifecycle", OP_LIFECYCLE, 20_000),
        ] {
            interleaved(name, &mut switch, &configs, rounds, |_| {
                check(&worker);
                worker.run(op, n / 10);
                worker.run(op, n) as f64
            });
        }
    }
    c.final_summary();
    drop(worker);
    drop(server);
    cgroup.remove().expect("remove the bench cgroup");
}
