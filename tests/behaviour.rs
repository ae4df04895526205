//! Mining behaviour detector (#24), natively: a real XMRig, renamed,
//! hashing RandomX (light mode) against a loopback pool that hands out
//! `rx/0` jobs, in a test cgroup, is found by behaviour alone (no rule
//! names it, its bytes or its pool); `audit` reports it with its signals
//! and leaves it hashing, `kill` kills it when it mines over TLS (the pool
//! sees it go),
//! `kill-container` kills its cgroup (a companion process too). A benign
//! CPU-heavy program (`stress-ng --cpu 2`) for as long is not flagged.
//! Every test samples only a cgroup it created; loopback only.

mod common;

use std::{
    os::unix::process::ExitStatusExt,
    path::PathBuf,
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use common::{
    kernel_tests_enabled, spawn_in, test_cgroup, xmrig_binary, ChildGuard, DutyCycle, RxPool,
    Scoped, TempDir, TlsFront,
};
use minerguard::{
    behaviour::{Detection, Detector, Observation, Sample},
    cgroup::OwnedCgroup,
    profile::BehaviourMatch,
    scan::{Outcome, ScanOptions},
    Profile, Rule,
};

/// The tests share two CPUs with each other (and with whatever else runs):
/// one at a time, so each measures its own workload.
static SERIAL: Mutex<()> = Mutex::new(());

/// How often the tests sample (as `minerguard watch` does, faster).
const PERIOD: Duration = Duration::from_secs(1);
/// Hang guard: a light-mode XMRig is hashing within seconds; the detector
/// needs a window more.
const GUARD: Duration = Duration::from_secs(120);
/// How long the benign program runs while sampled.
const BENIGN_SAMPLES: usize = 15;

/// Root is needed to make cgroups: fail loudly unless MINERGUARD_ALLOW_SKIP=1.
fn root_or_skip(test: &str) -> bool {
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return true;
    }
    if std::env::var("MINERGUARD_ALLOW_SKIP").as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: needs root (euid {euid}) (MINERGUARD_ALLOW_SKIP=1)");
        return false;
    }
    panic!("{test}: needs root (euid {euid}); set MINERGUARD_ALLOW_SKIP=1 to skip");
}

/// stress-ng, or a loud failure (unless MINERGUARD_ALLOW_SKIP=1).
fn stress_ng(test: &str) -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin/stress-ng");
    if path.exists() {
        return Some(path);
    }
    let reason = "no /usr/bin/stress-ng (scripts/install-deps.sh installs it)";
    if std::env::var("MINERGUARD_ALLOW_SKIP").as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: {reason} (MINERGUARD_ALLOW_SKIP=1)");
        return None;
    }
    panic!("{test}: {reason}; set MINERGUARD_ALLOW_SKIP=1 to skip");
}

/// A profile with one behaviour rule: a 5 s window (the default is 10 s),
/// every other threshold at its default (a thread runnable 90 % of the
/// window, one such thread, 256 MiB of anonymous memory).
fn profile(action: minerguard::Action) -> Profile {
    Profile::new("behaviour-test").rule(Rule::behaviour(
        "mining-behaviour",
        action,
        BehaviourMatch {
            window_secs: Some(5),
            ..Default::default()
        },
    ))
}

/// Samples `cgroup` every [`PERIOD`] until a detection (or the guard runs
/// out); returns it and every observation made.
fn sample_until_detected(
    detector: &mut Detector,
    cgroup: &OwnedCgroup,
) -> (Option<Detection>, Vec<Observation>) {
    let scope = [cgroup.cgroup().path().to_path_buf()];
    let started = Instant::now();
    let deadline = started + GUARD;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let Sample {
            mut detections,
            observations,
            ..
        } = detector.sample(&scope, &ScanOptions::default()).unwrap();
        seen.extend(observations);
        if let Some(d) = detections.pop() {
            // For the record (BENCHMARKS.md): time from start to verdict.
            eprintln!(
                "detected {} after {:.1}s: {}",
                d.process.comm,
                started.elapsed().as_secs_f64(),
                d.verdict.explain(&d.signals, &d.rule.thresholds)
            );
            return (Some(d), seen);
        }
        std::thread::sleep(PERIOD);
    }
    (None, seen)
}

/// `miner` was SIGKILLed, and `pool` sees its connection close.
fn killed_and_gone_from(miner: &mut ChildGuard, pool: &RxPool) {
    let status = miner.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(
        pool.wait_for(GUARD, |p| p.accepted() > 0 && p.closed() == p.accepted()),
        "the pool sees XMRig's connection close"
    );
}

#[test]
fn audit_reports_a_renamed_hashing_xmrig_with_its_signals_and_leaves_it_running() {
    let test = "audit_reports_a_renamed_hashing_xmrig_with_its_signals_and_leaves_it_running";
    if !root_or_skip(test) {
        return;
    }
    let Some(xmrig) = xmrig_binary(test) else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cgroup = test_cgroup();
    let dir = TempDir::new("behaviour-audit");
    let pool = RxPool::start();
    let mut miner = pool.light_miner(&xmrig, &cgroup, &dir, "php-fpm");
    let mut detector = Detector::new(&profile(minerguard::Action::Audit)).unwrap();

    let (found, _) = sample_until_detected(&mut detector, &cgroup);
    let d = found.expect("the hashing XMRig is reported");
    assert!(pool.submits() > 0, "XMRig was hashing (shares submitted)");
    assert_eq!(d.process.pid, miner.id());
    assert_eq!(d.process.comm, "php-fpm");
    assert_eq!(d.outcome, Outcome::Reported);
    assert!(d.verdict.mining() && d.verdict.cpu_saturated && d.verdict.randomx_memory);
    assert!(d.signals.cpu.busy_threads >= 1, "{:?}", d.signals);
    assert!(d.signals.anon_mib() >= 256, "{:?}", d.signals);
    // Read for the detection only (smaps_rollup walks the page tables).
    assert!(d.signals.anon_huge_mib().is_some(), "{:?}", d.signals);
    assert!(d.verdict.connected, "{:?}", d.signals);
    assert_eq!(d.signals.peer, Some(pool.addr()), "its pool connection");
    let json: serde_json::Value = serde_json::from_str(&d.to_json(detector.profile())).unwrap();
    let f = &json["output_fields"];
    assert_eq!(f["minerguard.kind"], "behaviour");
    assert_eq!(f["proc.pid"], miner.id());
    assert_eq!(f["minerguard.outcome"], "reported");
    // The throttled signal may have fired as well on a slow start, and the
    // rhythm once the pool connection was held a window.
    let fired: Vec<&str> = (f["minerguard.behaviour.signals"].as_array().unwrap().iter())
        .filter_map(|s| s.as_str())
        .filter(|s| !["cpu-throttled", "rhythm"].contains(s))
        .collect();
    assert_eq!(fired, ["cpu", "memory", "connection"], "{json}");
    assert!(
        f["minerguard.behaviour.anon_mib"].as_u64().unwrap() >= 256,
        "{json}"
    );
    assert!(f["minerguard.behaviour.anon_huge_mib"].is_u64(), "{json}");
    assert!(
        f["minerguard.behaviour.cpu.busy_threads"].as_u64().unwrap() >= 1,
        "{json}"
    );

    // Left alone: still running and still submitting shares.
    let before = pool.submits();
    assert!(
        pool.wait_for(GUARD, |p| p.submits() > before),
        "XMRig goes on hashing after an audit"
    );
    assert!(miner.try_wait().unwrap().is_none(), "XMRig still runs");
    // Reported once per life.
    let again = detector
        .sample(
            &[cgroup.cgroup().path().to_path_buf()],
            &ScanOptions::default(),
        )
        .unwrap();
    assert!(again.detections.is_empty(), "{:?}", again.detections);
}

#[test]
fn kill_kills_a_hashing_xmrig_over_tls_and_its_pool_connection_closes() {
    let test = "kill_kills_a_hashing_xmrig_over_tls_and_its_pool_connection_closes";
    if !root_or_skip(test) {
        return;
    }
    let Some(xmrig) = xmrig_binary(test) else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cgroup = test_cgroup();
    let dir = TempDir::new("behaviour-kill");
    let pool = RxPool::start();
    // XMRig `--tls` (no SNI by default): no byte of Stratum on the wire.
    let front = TlsFront::start(pool.addr(), &dir);
    let mut miner = pool.light_miner_over_tls(&xmrig, &cgroup, &dir, "php-fpm", &front);
    let mut detector = Detector::new(&profile(minerguard::Action::Kill)).unwrap();

    let (found, _) = sample_until_detected(&mut detector, &cgroup);
    let d = found.expect("the hashing XMRig is detected");
    assert_eq!(d.process.pid, miner.id());
    assert_eq!(d.outcome, Outcome::Killed);
    assert_eq!(
        d.signals.peer,
        Some(front.addr()),
        "its connection is the TLS one"
    );
    assert!(pool.logins() > 0, "XMRig had its job, through TLS");
    killed_and_gone_from(&mut miner, &pool);
}

#[test]
fn a_hashing_xmrig_that_tried_to_reserve_huge_pages_is_caught_by_its_tuning_without_the_memory_signal(
) {
    let test = "a_hashing_xmrig_that_tried_to_reserve_huge_pages_is_caught_by_its_tuning_without_the_memory_signal";
    if !kernel_tests_enabled(test) {
        return;
    }
    let Some(xmrig) = xmrig_binary(test) else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hugepages_before = std::fs::read_to_string("/proc/sys/vm/nr_hugepages").unwrap();
    // The memory signal out of reach (1 TiB): only tuning can make the
    // footprint.
    let profile = Profile::new("behaviour-tuning").rule(Rule::behaviour(
        "mining-behaviour",
        minerguard::Action::Audit,
        BehaviourMatch {
            window_secs: Some(5),
            anon_mib: Some(1 << 20),
            ..Default::default()
        },
    ));
    // The enforcer counts the scope's tuning attempts.
    let scoped = Scoped::apply(&profile);
    let cgroup = scoped.cgroup();
    let dir = TempDir::new("behaviour-tuning");
    let pool = RxPool::start();
    let mut cmd = pool.light_command_with_huge_pages_refused(&xmrig, &dir, "php-fpm", 2);
    let miner = ChildGuard::new(spawn_in(Some(cgroup), &mut cmd).expect("start XMRig"));
    let mut detector = Detector::new(&profile).unwrap();
    let counts = scoped.enforcer().tuning_counts();
    detector.count_tuning(counts.expect("the tuning counter is loaded"));

    let (found, _) = sample_until_detected(&mut detector, cgroup);
    let d = found.expect("the hashing XMRig is reported");
    assert!(pool.submits() > 0, "XMRig was hashing (shares submitted)");
    assert_eq!(d.process.pid, miner.id());
    assert!(
        d.verdict.tuning && !d.verdict.randomx_memory,
        "{:?}",
        d.verdict
    );
    // XMRig 6.16 writes the per-node sysfs nr_hugepages (refused: EROFS).
    assert!(d.signals.tuning.hugepages >= 1, "{:?}", d.signals.tuning);
    assert!(d.signals.tuning.counted);
    let json: serde_json::Value = serde_json::from_str(&d.to_json(detector.profile())).unwrap();
    let f = &json["output_fields"];
    assert!(
        f["minerguard.behaviour.signals"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("tuning")),
        "{json}"
    );
    assert!(
        f["minerguard.behaviour.tuning.hugepages"].as_u64().unwrap() >= 1,
        "{json}"
    );
    assert!(
        f["minerguard.behaviour.why"]
            .as_str()
            .unwrap()
            .contains("tuning attempts: nr_hugepages"),
        "{json}"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/vm/nr_hugepages").unwrap(),
        hugepages_before,
        "the host's huge pages are untouched (the reservation was refused)"
    );
}

#[test]
fn stress_ng_cpu_for_as_long_is_busy_but_not_mining() {
    let test = "stress_ng_cpu_for_as_long_is_busy_but_not_mining";
    if !root_or_skip(test) {
        return;
    }
    let Some(stress) = stress_ng(test) else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cgroup = test_cgroup();
    let mut cmd = Command::new(stress);
    cmd.args(["--cpu", "2", "--timeout", "0", "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut stress = ChildGuard::new(spawn_in(Some(&cgroup), &mut cmd).expect("start stress-ng"));
    let mut detector = Detector::new(&profile(minerguard::Action::Kill)).unwrap();
    let scope = [cgroup.cgroup().path().to_path_buf()];
    let mut observations = Vec::new();
    for _ in 0..BENIGN_SAMPLES {
        let s = detector.sample(&scope, &ScanOptions::default()).unwrap();
        assert!(s.detections.is_empty(), "flagged: {:?}", s.detections);
        observations.extend(s.observations);
        std::thread::sleep(PERIOD);
    }
    // The CPU signal did fire on its workers: only the memory kept them out.
    assert!(
        observations
            .iter()
            .any(|o| o.verdict.cpu_saturated && !o.verdict.mining()),
        "{observations:?}"
    );
    assert!(stress.try_wait().unwrap().is_none(), "stress-ng still runs");
}

#[test]
fn kill_container_kills_the_miners_whole_cgroup() {
    let test = "kill_container_kills_the_miners_whole_cgroup";
    if !root_or_skip(test) {
        return;
    }
    let Some(xmrig) = xmrig_binary(test) else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The scope, and the miner's "container" below it with a companion.
    let scope = test_cgroup();
    let container = common::child_cgroup(&scope);
    let dir = TempDir::new("behaviour-kill-container");
    let pool = RxPool::start();
    let mut miner = pool.light_miner(&xmrig, &container, &dir, "php-fpm");
    let mut sleep = Command::new("/usr/bin/sleep");
    sleep.arg("600").stdin(Stdio::null());
    let mut companion = ChildGuard::new(spawn_in(Some(&container), &mut sleep).unwrap());
    let mut detector = Detector::new(&profile(minerguard::Action::KillContainer)).unwrap();

    let (found, _) = sample_until_detected(&mut detector, &scope);
    let d = found.expect("the hashing XMRig is detected");
    assert_eq!(d.process.pid, miner.id());
    assert!(
        matches!(&d.outcome, Outcome::KilledCgroup { cgroup, .. } if cgroup == container.cgroup().path()),
        "{:?}",
        d.outcome
    );
    for (what, child) in [("XMRig", &mut *miner), ("its companion", &mut *companion)] {
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{what}: {status:?}");
    }
}

/// The start of a Python worker's script: 300 MiB resident and a
/// loopback TCP connection to itself (`c` the client's side, `a` the
/// server's).
const BIG_AND_CONNECTED: &str = "import socket, threading, time\n\
    blob = b'\\x01' * (300 << 20)\n\
    srv = socket.create_server(('127.0.0.1', 0))\n\
    c = socket.create_connection(srv.getsockname())\n\
    a, _ = srv.accept()\n";

/// Runs a Python `script` in `cgroup`.
fn python_in(cgroup: &OwnedCgroup, script: &str) -> ChildGuard {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ChildGuard::new(spawn_in(Some(cgroup), &mut cmd).expect("start python3"))
}

/// Samples `cgroup` [`BENIGN_SAMPLES`] times with both detectors: `strict`
/// acting (it must find nothing), `looser` in a dry run. Returns what
/// `strict` observed and what `looser` found first.
fn strict_and_looser(
    cgroup: &OwnedCgroup,
    strict: &mut Detector,
    looser: &mut Detector,
) -> (Vec<Observation>, Option<Detection>) {
    let scope = [cgroup.cgroup().path().to_path_buf()];
    let dry = ScanOptions {
        dry_run: true,
        ..ScanOptions::default()
    };
    let (mut observed, mut found) = (Vec::new(), None);
    for _ in 0..BENIGN_SAMPLES {
        let s = strict.sample(&scope, &ScanOptions::default()).unwrap();
        assert!(s.detections.is_empty(), "flagged: {:?}", s.detections);
        observed.extend(s.observations);
        let l = looser.sample(&scope, &dry).unwrap();
        if found.is_none() {
            found = l.detections.into_iter().next();
        }
        std::thread::sleep(PERIOD);
    }
    (observed, found)
}

/// A profile whose rule judges the throttled signal over 8 s (the busy
/// window stays 5 s), with `extra` thresholds.
fn throttled_profile(action: minerguard::Action, extra: BehaviourMatch) -> Profile {
    Profile::new("behaviour-throttled").rule(Rule::behaviour(
        "mining-behaviour",
        action,
        BehaviourMatch {
            window_secs: Some(5),
            throttled_window_secs: Some(8),
            ..extra
        },
    ))
}

#[test]
fn kill_kills_an_xmrig_held_to_a_duty_cycle_by_its_throttled_cpu() {
    let test = "kill_kills_an_xmrig_held_to_a_duty_cycle_by_its_throttled_cpu";
    if !root_or_skip(test) {
        return;
    }
    let Some(xmrig) = xmrig_binary(test) else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cgroup = test_cgroup();
    let dir = TempDir::new("behaviour-duty");
    let pool = RxPool::start();
    let mut miner = pool.light_miner(&xmrig, &cgroup, &dir, "php-fpm");
    // Half of every 2 s stopped: never runnable 90 % of the 5 s window.
    let duty = DutyCycle::start(miner.id(), Duration::from_secs(1));
    let profile = throttled_profile(minerguard::Action::Kill, BehaviourMatch::default());
    let mut detector = Detector::new(&profile).unwrap();

    let (found, seen) = sample_until_detected(&mut detector, &cgroup);
    drop(duty);
    let d = found.expect("the duty-cycled XMRig is detected");
    assert_eq!(d.process.pid, miner.id());
    assert_eq!(d.outcome, Outcome::Killed);
    assert!(
        d.verdict.cpu_throttled && !d.verdict.cpu_saturated,
        "{:?} {:?}",
        d.verdict,
        d.signals
    );
    // (and the rhythm, once its pool connection was held a window)
    let fired = d.verdict.fired();
    assert_eq!(
        fired.iter().filter(|s| **s != "rhythm").collect::<Vec<_>>(),
        [&"cpu-throttled", &"memory", &"connection"]
    );
    let sleeps = d.signals.throttled.fewest_sleeps_per_sec.expect("read");
    assert!(sleeps <= 20, "{:?}", d.signals.throttled);
    assert!(
        seen.iter()
            .filter(|o| o.pid == miner.id())
            .all(|o| !o.verdict.cpu_saturated),
        "the busy window never fired: {seen:?}"
    );
    assert!(pool.submits() > 0, "XMRig was hashing (shares submitted)");
    killed_and_gone_from(&mut miner, &pool);
}

#[test]
fn a_big_networked_worker_that_sleeps_between_tasks_is_not_a_throttled_miner() {
    let test = "a_big_networked_worker_that_sleeps_between_tasks_is_not_a_throttled_miner";
    if !root_or_skip(test) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cgroup = test_cgroup();
    // 300 MiB resident, a loopback TCP connection to itself, and a loop of
    // 8 ms of work and 4 ms of sleep: runnable well over 40 % of the time,
    // blocking about 80 times a second (a server thread between requests).
    let script = BIG_AND_CONNECTED.to_string()
        + "\
        x = 1\n\
        while True:\n\
        \x20   t = time.monotonic()\n\
        \x20   while time.monotonic() - t < 0.008:\n\
        \x20       x = (x * 1103515245 + 12345) % 2147483648\n\
        \x20   time.sleep(0.004)\n";
    let mut worker = python_in(&cgroup, &script);
    // The default limit on sleeps, killing; and the same rule with no limit,
    // reporting only: what the sleeps alone decide.
    let mut strict = Detector::new(&throttled_profile(
        minerguard::Action::Kill,
        BehaviourMatch::default(),
    ))
    .unwrap();
    let mut unlimited = Detector::new(&throttled_profile(
        minerguard::Action::Kill,
        BehaviourMatch {
            throttled_max_sleeps: Some(1_000_000),
            ..Default::default()
        },
    ))
    .unwrap();
    let (observed, unlimited_found) = strict_and_looser(&cgroup, &mut strict, &mut unlimited);
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the worker still runs"
    );
    // It was runnable enough, and blocked too often to be throttled.
    let o = observed
        .iter()
        .filter(|o| o.pid == worker.id())
        .max_by_key(|o| o.signals.throttled.runnable_threads)
        .expect("observed");
    assert!(o.signals.throttled.runnable_threads >= 1, "{o:?}");
    assert_eq!(o.signals.throttled.threads, 0, "{o:?}");
    assert!(
        o.signals.throttled.fewest_sleeps_per_sec.unwrap_or(0) > 20,
        "{o:?}"
    );
    // Without the limit on sleeps it would be a miner: memory and connection
    // fired too (reported only, so it still runs).
    let d = unlimited_found.expect("the same rule without a limit on sleeps flags it");
    assert_eq!(d.outcome, Outcome::DryRun, "{:?}", d.outcome);
    assert_eq!(d.verdict.fired(), ["cpu-throttled", "memory", "connection"]);
}

/// A rule that needs the pool rhythm (window 5 s), with `action`.
fn rhythm_profile(action: minerguard::Action) -> Profile {
    Profile::new("behaviour-rhythm").rule(Rule::behaviour(
        "mining-behaviour",
        action,
        BehaviourMatch {
            window_secs: Some(5),
            needs_rhythm: Some(true),
            ..Default::default()
        },
    ))
}

#[test]
fn a_rule_that_needs_the_rhythm_finds_xmrigs_quiet_pool_connection() {
    let test = "a_rule_that_needs_the_rhythm_finds_xmrigs_quiet_pool_connection";
    if !root_or_skip(test) {
        return;
    }
    let Some(xmrig) = xmrig_binary(test) else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cgroup = test_cgroup();
    let dir = TempDir::new("behaviour-rhythm");
    let pool = RxPool::start();
    let miner = pool.light_miner(&xmrig, &cgroup, &dir, "php-fpm");
    let mut detector = Detector::new(&rhythm_profile(minerguard::Action::Audit)).unwrap();

    let (found, _) = sample_until_detected(&mut detector, &cgroup);
    let d = found.expect("the hashing XMRig is reported by its rhythm");
    assert_eq!(d.process.pid, miner.id());
    assert!(
        d.verdict.pool_rhythm && d.verdict.mining(),
        "{:?}",
        d.verdict
    );
    assert!(
        d.verdict.fired().contains(&"rhythm"),
        "{:?}",
        d.verdict.fired()
    );
    let r = d.signals.rhythm;
    assert_eq!(r.peer, Some(pool.addr()), "the pool connection: {r:?}");
    assert!(r.age >= Duration::from_secs(5), "held a window: {r:?}");
    assert!(r.data_segments >= 2, "jobs and shares both ways: {r:?}");
    let rate = r.bytes_per_sec.expect("measured");
    assert!(rate > 0 && rate <= 4096, "{r:?}");
    assert!(pool.submits() > 0, "XMRig was hashing (shares submitted)");
    let json: serde_json::Value = serde_json::from_str(&d.to_json(detector.profile())).unwrap();
    let f = &json["output_fields"];
    assert_eq!(
        f["minerguard.behaviour.rhythm.peer"],
        pool.addr().to_string()
    );
    assert_eq!(f["minerguard.behaviour.rhythm.bytes_per_sec"], rate);
    assert_eq!(f["minerguard.behaviour.threshold.needs_rhythm"], true);
}

#[test]
fn a_big_busy_process_streaming_over_its_connection_has_no_pool_rhythm() {
    let test = "a_big_busy_process_streaming_over_its_connection_has_no_pool_rhythm";
    if !root_or_skip(test) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cgroup = test_cgroup();
    // 300 MiB resident, a spinning thread, and a loopback connection to
    // itself carrying a steady stream (a replica, a proxy, a download).
    let script = BIG_AND_CONNECTED.to_string()
        + "\
        chunk = b'\\x02' * 65536\n\
        def send():\n\
        \x20   while True: c.sendall(chunk)\n\
        def drain():\n\
        \x20   while a.recv(1 << 20): pass\n\
        threading.Thread(target=send, daemon=True).start()\n\
        threading.Thread(target=drain, daemon=True).start()\n\
        x = 1\n\
        while True: x = (x * 1103515245 + 12345) % 2147483648\n";
    let mut worker = python_in(&cgroup, &script);
    let mut strict = Detector::new(&rhythm_profile(minerguard::Action::Kill)).unwrap();
    // The default rule (any connection), reporting only: what the rhythm
    // alone decides.
    let mut any_connection = Detector::new(&profile(minerguard::Action::Kill)).unwrap();
    let (observed, flagged_by_default) =
        strict_and_looser(&cgroup, &mut strict, &mut any_connection);
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the worker still runs"
    );
    let o = observed
        .iter()
        .filter(|o| o.pid == worker.id())
        .max_by_key(|o| o.signals.rhythm.long_lived)
        .expect("observed");
    let r = o.signals.rhythm;
    assert!(r.long_lived >= 1 && r.steady == 0, "{o:?}");
    assert!(r.bytes_per_sec.is_some_and(|b| b > 4096), "{o:?}");
    assert!(o.verdict.cpu_saturated && o.verdict.randomx_memory && o.verdict.connected);
    let d = flagged_by_default.expect("the default rule (any connection) flags it");
    assert_eq!(d.outcome, Outcome::DryRun, "{:?}", d.outcome);
}

#[test]
fn a_big_busy_process_whose_connection_went_quiet_has_no_pool_rhythm() {
    let test = "a_big_busy_process_whose_connection_went_quiet_has_no_pool_rhythm";
    if !root_or_skip(test) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cgroup = test_cgroup();
    // 300 MiB, a spinning thread, and a connection that carries one small
    // exchange both ways 3 s in (after the detector has seen it), then is
    // kept open and unused, as an idle database pool's connection is.
    let script = BIG_AND_CONNECTED.to_string()
        + "\
        def once():\n\
        \x20   time.sleep(3)\n\
        \x20   c.sendall(b'ping')\n\
        \x20   a.recv(4)\n\
        \x20   a.sendall(b'pong')\n\
        \x20   c.recv(4)\n\
        threading.Thread(target=once, daemon=True).start()\n\
        x = 1\n\
        while True: x = (x * 1103515245 + 12345) % 2147483648\n";
    let mut worker = python_in(&cgroup, &script);
    // Pool-shaped only if quiet at most 2 s: by the time the connection is
    // held a 5 s window, its last exchange is older than that.
    let quiet_profile = |quiet: u32, action| {
        Profile::new("behaviour-quiet").rule(Rule::behaviour(
            "mining-behaviour",
            action,
            BehaviourMatch {
                window_secs: Some(5),
                needs_rhythm: Some(true),
                rhythm_max_quiet_secs: Some(quiet),
                ..Default::default()
            },
        ))
    };
    let mut strict = Detector::new(&quiet_profile(2, minerguard::Action::Kill)).unwrap();
    let mut looser = Detector::new(&quiet_profile(600, minerguard::Action::Kill)).unwrap();
    let (observed, found_by_looser) = strict_and_looser(&cgroup, &mut strict, &mut looser);
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the worker still runs"
    );
    let o = observed
        .iter()
        .filter(|o| o.pid == worker.id() && o.signals.rhythm.long_lived >= 1)
        .max_by_key(|o| o.signals.rhythm.quiet)
        .expect("observed with its connection held a window");
    let r = o.signals.rhythm;
    assert_eq!(r.steady, 0, "{o:?}");
    assert!(r.quiet > Duration::from_secs(2), "{o:?}");
    assert!(o.verdict.cpu_saturated && o.verdict.randomx_memory && o.verdict.connected);
    // The same connection passes a rule that allows 10 minutes of quiet:
    // the exchange made it pool-shaped.
    let d = found_by_looser.expect("the looser rule finds the pool-shaped connection");
    assert!(d.verdict.pool_rhythm, "{:?}", d.verdict);
    assert_eq!(d.outcome, Outcome::DryRun, "{:?}", d.outcome);
}
