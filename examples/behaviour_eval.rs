//! The behaviour detector's evaluation harness (#24; `scripts/behaviour-eval.sh`
//! runs it): each case runs alone in a cgroup made for it while a detector
//! with the profile's default thresholds (or those given) samples it every
//! 2 s, reporting only (dry run). Miners: real XMRig 6.16.0 hashing RandomX
//! (light mode) against a loopback pool handing out `rx/0` jobs. Benign:
//! CPU- and memory-heavy programs. Prints, per case, whether it was flagged,
//! when (from its start and from the pool's first share), and the signals.
//!
//! ```text
//! cargo run --release --example behaviour_eval -- [--seconds N] [--busy-percent P]
//!     [--window-secs S] [--needs-rhythm] [--case PART-OF-A-NAME] [--ci]
//! ```

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports, missing_docs)]
mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{spawn_in, test_cgroup, ChildGuard, RxPool, TempDir, XMRIG_CACHE};
use minerguard::{
    behaviour::{Detector, SAMPLE_PERIOD},
    profile::BehaviourMatch,
    scan::ScanOptions,
    Action, Profile, Rule,
};

/// What a case runs.
enum Workload {
    /// XMRig (light mode) with these threads; `config_only`: from a
    /// config.json, no arguments at all; `socks5`: through a loopback SOCKS5
    /// proxy; `tls`: `--tls` to a TLS front of the pool; `duty`: stopped and
    /// continued every this long (SIGSTOP/SIGCONT, as `cpulimit` does), a
    /// 50 % duty cycle; `hint`: `--cpu-max-threads-hint` (percent of the
    /// CPUs) in place of `--threads`.
    Miner {
        threads: u32,
        hint: Option<u32>,
        config_only: bool,
        socks5: bool,
        tls: bool,
        duty: Option<Duration>,
    },
    /// A shell command line.
    Benign(&'static str),
}

struct Case {
    name: &'static str,
    workload: Workload,
    /// A miss (miner) or a false positive (benign) the default thresholds
    /// are known to make (PROFILES.md, limits): printed, not counted as a
    /// failure of the run. None with `--needs-rhythm`.
    known_limit: bool,
}

/// One case's result.
struct Outcome {
    flagged_after: Option<Duration>,
    from_first_share: Option<Duration>,
    shares: usize,
    why: String,
    peak: String,
    /// Why a benign workload was not measured (it exited early).
    did_not_run: Option<String>,
}

fn cases() -> Vec<Case> {
    let miner = |name, threads, config_only, socks5, tls, duty| Case {
        name,
        workload: Workload::Miner {
            threads,
            hint: None,
            config_only,
            socks5,
            tls,
            duty,
        },
        known_limit: false,
    };
    let benign = |name, script| Case {
        name,
        workload: Workload::Benign(script),
        known_limit: false,
    };
    vec![
        miner("xmrig light 2 threads, renamed", 2, false, false, false, None),
        miner("xmrig light 1 thread, renamed", 1, false, false, false, None),
        Case {
            name: "xmrig light, --cpu-max-threads-hint=25, renamed",
            workload: Workload::Miner {
                threads: 1,
                hint: Some(25),
                config_only: false,
                socks5: false,
                tls: false,
                duty: None,
            },
            known_limit: false,
        },
        miner("xmrig light, config file only", 2, true, false, false, None),
        miner("xmrig light, through SOCKS5", 2, false, true, false, None),
        miner("xmrig light, --tls", 2, false, false, true, None),
        miner(
            "xmrig light, 50 % duty cycle (5 s on, 5 s off)",
            2,
            false,
            false,
            false,
            Some(Duration::from_secs(5)),
        ),
        miner(
            "xmrig light, 50 % duty cycle (cpulimit-like, 100 ms on, 100 ms off)",
            2,
            false,
            false,
            false,
            Some(Duration::from_millis(100)),
        ),
        benign("stress-ng --cpu 2", "exec stress-ng --cpu 2 --timeout 0 --quiet"),
        benign("stress-ng --crypt 2", "exec stress-ng --crypt 2 --timeout 0 --quiet"),
        benign(
            "openssl speed sha256 (loop)",
            "while :; do openssl speed sha256 >/dev/null 2>&1; done",
        ),
        benign(
            "xz -9 of random bytes",
            "head -c 8G /dev/urandom | xz -9 > /dev/null",
        ),
        benign(
            "python numeric loop",
            "exec /usr/bin/python3 -c 'x=1\nwhile True: x = (x * 1103515245 + 12345) % 2147483648'",
        ),
        benign(
            "python networked worker (300 MiB, a TCP connection, 8 ms work / 4 ms sleep)",
            "exec /usr/bin/python3 -c 'import socket, time\nblob = b\"x\" * (300 << 20)\nsrv = socket.create_server((\"127.0.0.1\", 0))\nc = socket.create_connection(srv.getsockname())\na, _ = srv.accept()\nx = 1\nwhile True:\n    t = time.monotonic()\n    while time.monotonic() - t < 0.008: x = (x * 1103515245 + 12345) % 2147483648\n    time.sleep(0.004)'",
        ),
        Case {
            name: "python streaming worker (300 MiB, spinning, streaming over a TCP connection)",
            workload: Workload::Benign(
                "exec /usr/bin/python3 -c 'import socket, threading\nblob = b\"x\" * (300 << 20)\nsrv = socket.create_server((\"127.0.0.1\", 0))\nc = socket.create_connection(srv.getsockname())\na, _ = srv.accept()\nchunk = b\"y\" * 65536\ndef send():\n    while True: c.sendall(chunk)\ndef drain():\n    while a.recv(1 << 20): pass\nthreading.Thread(target=send, daemon=True).start()\nthreading.Thread(target=drain, daemon=True).start()\nx = 1\nwhile True: x = (x * 1103515245 + 12345) % 2147483648'",
            ),
            // Busy, big and connected: any connection counts by default.
            known_limit: true,
        },
        benign(
            "cc -O2 builds (loop)",
            "printf 'int f%d(int x){return x*%d+1;}\\n' $(seq 1 4000 | sed 's/.*/& &/') > $PWD/big.c; while :; do cc -O2 -c $PWD/big.c -o /dev/null; done",
        ),
        benign(
            "7z b (7-Zip's benchmark, loop)",
            "command -v 7z >/dev/null || exit 127; while :; do 7z b -mmt2 >/dev/null 2>&1 || exit 1; done",
        ),
        // The server's stdin never ends: at its end s_server closes the
        // connection.
        benign(
            "long-lived TLS client, a keepalive every 5 s",
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout k.pem -out c.pem -days 1 -subj /CN=localhost >/dev/null 2>&1 || exit 127; \
             port=$((20000 + $$ % 20000)); \
             sleep 1000000 | openssl s_server -quiet -accept 127.0.0.1:$port -cert c.pem -key k.pem >/dev/null 2>&1 & \
             sleep 1; \
             while :; do echo keepalive; sleep 5; done | openssl s_client -quiet -connect 127.0.0.1:$port >/dev/null 2>&1; exit 1",
        ),
    ]
}

/// The cases of the CI form (`--ci`), by a part of their names.
const CI_CASES: [&str; 4] = [
    "--tls",
    "cpulimit-like",
    "python networked worker",
    "long-lived TLS client",
];

fn xmrig_config(dir: &Path, pool: &RxPool, threads: u32) {
    let cpu: Vec<i32> = (0..threads as i32).collect();
    let config = serde_json::json!({
        "autosave": false,
        "colors": false,
        "donate-level": 1,
        "cpu": { "enabled": true, "huge-pages": false, "rx": cpu },
        "randomx": { "mode": "light", "rdmsr": false, "wrmsr": false, "1gb-pages": false },
        "pools": [{ "url": pool.addr().to_string(), "user": "x", "pass": "x" }],
        "retries": 1,
        "retry-pause": 1,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config.json");
}

fn run_case(case: &Case, xmrig: &Path, profile: &Profile, seconds: u64) -> Outcome {
    let cgroup = test_cgroup();
    let dir = TempDir::new("behaviour-eval");
    let pool = RxPool::start();
    let proxy = matches!(case.workload, Workload::Miner { socks5: true, .. })
        .then(|| common::Proxy::start(common::ProxyKind::Socks5));
    let tls = matches!(case.workload, Workload::Miner { tls: true, .. })
        .then(|| common::TlsFront::start(pool.addr(), &dir));
    let mut cmd = match case.workload {
        Workload::Miner {
            threads,
            hint,
            config_only: false,
            ..
        } => {
            let mut c = match &tls {
                Some(front) => pool.light_command_over_tls(front, xmrig, &dir, "php-fpm", threads),
                None => pool.light_command(xmrig, &dir, "php-fpm", threads),
            };
            if let Some(hint) = hint {
                // XMRig sizes its threads itself: no --threads.
                let args: Vec<_> = (c.get_args())
                    .filter(|a| !a.to_string_lossy().starts_with("--threads="))
                    .map(|a| a.to_os_string())
                    .collect();
                let mut hinted = Command::new(c.get_program());
                hinted
                    .args(args)
                    .arg(format!("--cpu-max-threads-hint={hint}"))
                    .current_dir(dir.path())
                    .env("HOME", dir.path());
                c = hinted;
            }
            if let Some(proxy) = &proxy {
                c.arg(format!("--proxy={}", proxy.addr()));
            }
            c
        }
        Workload::Miner {
            threads,
            config_only: true,
            ..
        } => {
            xmrig_config(dir.path(), &pool, threads);
            let renamed = dir.path().join("node");
            std::fs::copy(xmrig, &renamed).expect("copy XMRig");
            let mut c = Command::new(renamed);
            c.current_dir(dir.path()).env("HOME", dir.path());
            c
        }
        Workload::Benign(script) => {
            let mut c = Command::new("/bin/sh");
            c.args(["-c", script]).current_dir(dir.path());
            c
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = ChildGuard::new(spawn_in(Some(&cgroup), &mut cmd).expect("start the case"));
    // The duty cycle: the whole miner stopped and continued every period.
    let period = match case.workload {
        Workload::Miner { duty, .. } => duty,
        Workload::Benign(_) => None,
    };
    let duty = period.map(|period| common::DutyCycle::start(child.id(), period));
    let mut detector = Detector::new(profile).unwrap();
    let scope: Vec<PathBuf> = vec![cgroup.cgroup().path().to_path_buf()];
    let options = ScanOptions {
        dry_run: true,
        ..ScanOptions::default()
    };
    let mut out = Outcome {
        flagged_after: None,
        from_first_share: None,
        shares: 0,
        why: String::new(),
        peak: String::new(),
        did_not_run: None,
    };
    let (mut peak_busy, mut peak_anon) = (0, 0);
    // The throttled signal: most threads runnable enough, and the fewest
    // sleeps a second among them.
    let (mut peak_runnable, mut fewest_sleeps) = (0, None::<u32>);
    // The rhythm: the most long-lived connections, and the quietest rate.
    let (mut long_lived, mut quietest) = (0, None::<u64>);
    while started.elapsed() < Duration::from_secs(seconds) {
        let s = detector.sample(&scope, &options).expect("sample");
        for o in &s.observations {
            peak_busy = peak_busy.max(o.signals.cpu.busy_threads);
            peak_anon = peak_anon.max(o.signals.anon_mib());
            peak_runnable = peak_runnable.max(o.signals.throttled.runnable_threads);
            long_lived = long_lived.max(o.signals.rhythm.long_lived);
            if let Some(b) = o.signals.rhythm.bytes_per_sec {
                quietest = Some(quietest.map_or(b, |q| q.min(b)));
            }
            if let Some(n) = o.signals.throttled.fewest_sleeps_per_sec {
                fewest_sleeps = Some(fewest_sleeps.map_or(n, |f| f.min(n)));
            }
        }
        if let Some(d) = s.detections.first() {
            let now = Instant::now();
            out.flagged_after = Some(now - started);
            out.from_first_share = pool
                .first_submit()
                .map(|t| now.saturating_duration_since(t));
            out.why = format!(
                "{} (pid {}): {}",
                d.process.comm,
                d.process.pid,
                d.verdict.explain(&d.signals, &d.rule.thresholds)
            );
            // A miner is done once found; a benign case is done at its
            // first false positive.
            break;
        }
        std::thread::sleep(SAMPLE_PERIOD);
    }
    drop(duty);
    // A benign workload that ended by itself (a tool missing, or it
    // failed) was not measured: said, not counted as a pass.
    if let (Workload::Benign(_), Ok(Some(status))) = (&case.workload, child.try_wait()) {
        out.did_not_run = Some(format!(
            "it exited ({status}) after {:.1}s",
            started.elapsed().as_secs_f64()
        ));
    }
    drop(child);
    out.shares = pool.submits();
    out.peak = format!(
        "peak busy threads {peak_busy}, peak anon {peak_anon} MiB (read when busy); throttled window: up to {peak_runnable} threads runnable enough, fewest sleeps {}; rhythm: up to {long_lived} long-lived connections, quietest {}",
        fewest_sleeps.map_or("—".into(), |n| format!("{n}/s")),
        quietest.map_or("—".into(), |b| format!("{b} B/s"))
    );
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut seconds = 30;
    let mut thresholds = BehaviourMatch::default();
    let mut only: Option<String> = None;
    // The CI form: a miner over TLS, one held to a cpulimit-like duty
    // cycle, and the two benign cases that hold connections, 25 s each at
    // most (a miner's case ends at its detection).
    let mut ci = false;
    while let Some(a) = args.next() {
        if a == "--needs-rhythm" {
            thresholds.needs_rhythm = Some(true);
            continue;
        }
        if a == "--case" {
            only = Some(args.next().expect("--case needs part of a case's name"));
            continue;
        }
        if a == "--ci" {
            ci = true;
            continue;
        }
        let mut value = || -> u32 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{a} needs a number"))
        };
        match a.as_str() {
            "--seconds" => seconds = u64::from(value()),
            "--busy-percent" => thresholds.busy_percent = Some(value()),
            "--window-secs" => thresholds.window_secs = Some(value()),
            other => panic!("unknown argument {other}"),
        }
    }
    let xmrig = std::env::var_os("MINERGUARD_XMRIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(XMRIG_CACHE));
    assert!(xmrig.exists(), "no XMRig at {}", xmrig.display());
    let profile = Profile::new("behaviour-eval").rule(Rule::behaviour(
        "mining-behaviour",
        Action::Audit,
        thresholds,
    ));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "behaviour eval: {seconds} s per case, sample every {} s, thresholds {:?}, {} CPUs, loadavg {}",
        SAMPLE_PERIOD.as_secs(),
        Detector::new(&profile).unwrap().rules()[0].thresholds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!("| case | kind | result | time to detection (from start / from first share) | shares | detail |");
    println!("|---|---|---|---|---|---|");
    let (mut miners, mut detected, mut benign, mut false_positives) = (0, 0, 0, 0);
    let (mut limits, mut limits_detected, mut not_run) = (0, 0, 0);
    let chosen = cases()
        .into_iter()
        .filter(|c| only.as_deref().map_or(true, |o| c.name.contains(o)))
        .filter(|c| !ci || CI_CASES.iter().any(|part| c.name.contains(part)));
    let needs_rhythm = thresholds.needs_rhythm == Some(true);
    for mut case in chosen {
        case.known_limit &= !needs_rhythm;
        let miner = matches!(case.workload, Workload::Miner { .. });
        let o = run_case(&case, &xmrig, &profile, seconds);
        let flagged = o.flagged_after.is_some();
        let result = match (miner, flagged) {
            (false, false) if o.did_not_run.is_some() => "DID NOT RUN",
            (true, true) => "detected",
            (true, false) if case.known_limit => "missed (known limit)",
            (true, false) => "MISSED",
            (false, true) if case.known_limit => "flagged (known limit)",
            (false, true) => "FALSE POSITIVE",
            (false, false) => "not flagged",
        };
        if case.known_limit {
            limits += 1;
            limits_detected += usize::from(flagged);
        } else if miner {
            miners += 1;
            detected += usize::from(flagged);
        } else if o.did_not_run.is_some() && !flagged {
            not_run += 1;
        } else {
            benign += 1;
            false_positives += usize::from(flagged);
        }
        let fmt =
            |d: Option<Duration>| d.map_or("—".into(), |d| format!("{:.1} s", d.as_secs_f64()));
        println!(
            "| {} | {} | {} | {} / {} | {} | {} |",
            case.name,
            if miner { "miner" } else { "benign" },
            result,
            fmt(o.flagged_after),
            fmt(o.from_first_share),
            if miner {
                o.shares.to_string()
            } else {
                "—".into()
            },
            match (flagged, o.did_not_run) {
                (true, _) => o.why,
                (false, Some(why)) => why,
                (false, None) => o.peak,
            },
        );
    }
    println!(
        "SUMMARY behaviour-eval: detection {detected}/{miners}; false positives {false_positives}/{benign}; known limits flagged {limits_detected}/{limits}; benign workloads that did not run {not_run} ({seconds} s per case)"
    );
}
