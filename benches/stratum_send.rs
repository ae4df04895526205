//! `send()` overhead of the Stratum check. On the cgroup backend's default
//! judge a `cgroup_skb/egress` program reads each socket's packets until
//! the reader's budget is spent; with `MINERGUARD_BENCH_STRATUM_JUDGE=sk-msg`
//! sockops puts each new TCP client socket of a covered cgroup into a
//! sockhash, an `sk_msg` verdict feeds its sends to the socket's Stratum
//! reader until the budget is spent, then `bpf_msg_apply_bytes` passes the
//! rest and the enforcer takes the socket out of the sockhash.
//!
//! A worker forked into a fresh bench cgroup connects to a loopback listener
//! (created outside the cgroup; the worker accepts and drains the server
//! end itself, outside the timed region) and times each send() alone
//! (figure: the median per-call latency of a batch, robust to preemption on
//! this shared machine). Measured:
//! - `send/first`: the first send() of a fresh socket: a clean 128-byte
//!   JSON-RPC object, read whole by the reader (a message, not mining);
//! - `send/first-http`: the same with a plain HTTP GET as the first message;
//! - `send/later`: sends on a long-lived socket (the same 128-byte message;
//!   the reader releases the socket after 8 messages, and the enforcer takes
//!   it out of the sockhash within 50 ms, so the median is a released
//!   socket's send).
//!
//! Configurations: no enforcer (`unhooked`), `default` without its stratum
//! rule (`stratum-off`: the connect hooks are attached, sockops is not: it
//! goes only to scopes with a stratum rule), the bundled `default`
//! (`stratum-on`), and `default` applied to another cgroup while the sender
//! is in none (`stratum-elsewhere`: what the host-wide hooks, the lsm
//! backend's socket_sendmsg hook and its fexit programs, cost a process
//! outside every scope). The quoted ratios are the interleaved
//! `SUMMARY` printed after criterion's runs.

mod common;

use common::*;
use criterion::{BenchmarkId, Throughput};
use minerguard::Profile;

const OP_FIRST: u64 = 0;
const OP_LATER: u64 = 1;
const OP_CHECK: u64 = 2;
const OP_FIRST_HTTP: u64 = 3;

/// A plain HTTP request as a connection's first message.
const HTTP_GET: &[u8] =
    b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench/1\r\nAccept: */*\r\n\r\n";

/// A clean first message: a JSON object with no `"method"` key, padded to
/// the 128-byte window the verdict inspects.
fn payload() -> [u8; 128] {
    let mut p = [b' '; 128];
    let text =
        br#"{"id":1,"jsonrpc":"2.0","result":{"status":"OK","height":1234567},"error":null,"pad":"#;
    p[..text.len()].copy_from_slice(text);
    p[126] = b'"';
    p[127] = b'}';
    p
}

fn main() {
    require_root("stratum_send");
    let avoid = profile_ports();
    let server = Listener::new(&avoid);
    let lfd = server.fd();
    let to = sockaddr_in(server.addr);
    let msg = payload();

    let cgroup = bench_cgroup();
    let mut lat = Latencies::with_capacity(LATENCY_CAPACITY);
    let worker = Worker::spawn(&cgroup, move |op, n| unsafe {
        lat.clear();
        let send_buf = |s: i32, buf: &[u8]| -> i32 {
            let sent = libc::send(s, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL);
            if sent == buf.len() as isize {
                0
            } else {
                *libc::__errno_location()
            }
        };
        let send = |s: i32| send_buf(s, &msg);
        // The server end of a connection the worker just made.
        let accept = || accept_next(lfd, libc::SOCK_NONBLOCK);
        let mut buf = [0u8; 1 << 16];
        // Reads the message just sent (outside the timed region). All of
        // it, waiting if delivery lags (it does in the emulated VM): a
        // single-threaded worker that left bytes behind would fill the
        // buffers and block in its own send() forever.
        let mut drain = |c: i32| {
            let mut got = 0;
            while got < msg.len() {
                let r = libc::recv(
                    c,
                    buf.as_mut_ptr().cast(),
                    msg.len() - got,
                    libc::MSG_DONTWAIT,
                );
                if r > 0 {
                    got += r as usize;
                } else if r == 0 || *libc::__errno_location() != libc::EAGAIN {
                    break;
                } else {
                    libc::sched_yield();
                }
            }
        };
        match op {
            OP_FIRST | OP_FIRST_HTTP => {
                let first: &[u8] = if op == OP_FIRST { &msg } else { HTTP_GET };
                for _ in 0..n {
                    let s = tcp_socket();
                    connect(s, &to);
                    let c = accept();
                    let t0 = now_ns();
                    send_buf(s, first);
                    lat.push(now_ns() - t0);
                    libc::close(s);
                    libc::close(c);
                }
                lat.median()
            }
            OP_LATER => {
                let s = tcp_socket();
                connect(s, &to);
                let c = accept();
                if send(s) == 0 {
                    drain(c);
                }
                // A long-lived socket: give the enforcer's event thread the
                // time to take the judged socket out of the sockhash (it
                // does so within one 50 ms poll).
                libc::usleep(100_000);
                for _ in 0..n {
                    let t0 = now_ns();
                    let rc = send(s);
                    lat.push(now_ns() - t0);
                    if rc == 0 {
                        drain(c);
                    }
                }
                libc::close(s);
                libc::close(c);
                lat.median()
            }
            OP_CHECK => {
                let s = tcp_socket();
                let mut rc = connect(s, &to);
                let c = accept();
                if rc == 0 {
                    rc = send(s);
                }
                if rc == 0 {
                    drain(c);
                    rc = send(s);
                }
                if rc == 0 {
                    drain(c);
                }
                libc::close(s);
                libc::close(c);
                rc as u64
            }
            _ => u64::MAX,
        }
    });

    let default = Profile::bundled("default").expect("bundled default");
    assert!(
        default.rules.iter().any(|r| r.stratum.is_some()),
        "default has a stratum rule"
    );
    let mut off = default.clone();
    off.name = "default-without-stratum".into();
    off.rules.retain(|r| r.stratum.is_none());
    let configs = vec![
        Config::Unhooked,
        Config::Profile("stratum-off", off),
        Config::Profile("stratum-on", default.clone()),
        Config::Elsewhere("stratum-elsewhere", default),
    ];

    let mut switch = Switch::new(&cgroup);
    let check = |w: &Worker| assert_eq!(w.run(OP_CHECK, 1), 0, "clean sends pass");
    let mut c = criterion();
    for (name, op) in [
        ("first", OP_FIRST),
        ("first-http", OP_FIRST_HTTP),
        ("later", OP_LATER),
    ] {
        let mut group = c.benchmark_group(format!("send/{name}"));
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
        for (name, op, n) in [
            ("send/first", OP_FIRST, 10_000),
            ("send/first-http", OP_FIRST_HTTP, 10_000),
            ("send/later", OP_LATER, 100_000),
        ] {
            interleaved(name, &mut switch, &configs, summary_rounds(), |_| {
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
