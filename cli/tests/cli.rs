//! The `minerguard` binary end to end, on the real kernel: exit statuses,
//! JSON-lines events, cgroup cleanup, check, probe, seccomp, learn, watch.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::{
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::*;

/// The binary under test, built by cargo with these tests.
fn minerguard_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_minerguard"))
}

/// The repository's top level (bundled profiles live there).
fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn minerguard_cmd(args: &[&str]) -> Output {
    let mut cmd = Command::new(minerguard_bin());
    cmd.args(args.first());
    // Right after the subcommand: after `--` it would be the command's.
    if let Ok(b) = std::env::var("MINERGUARD_TEST_BACKEND") {
        if matches!(args.first(), Some(&"run") | Some(&"learn")) {
            cmd.args(["--backend", &b]);
        }
    }
    cmd.args(args.iter().skip(1));
    cmd.output().expect("run minerguard")
}

/// `minerguard run --profile <profile> -- sh -c <script>`.
fn run_sh(profile: &Path, script: &str) -> Output {
    run_sh_with(profile, &[], script)
}

/// `minerguard run --profile <profile> <options> -- sh -c <script>`.
fn run_sh_with(profile: &Path, options: &[&str], script: &str) -> Output {
    let mut args = vec!["run", "--profile", profile.to_str().unwrap()];
    args.extend_from_slice(options);
    args.extend_from_slice(&["--", "sh", "-c", script]);
    minerguard_cmd(&args)
}

fn write_profile(dir: &TempDir, text: &str) -> PathBuf {
    let p = dir.path().join("profile.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

const EXEC_PROFILE: &str = "apiVersion: minerguard/v1\nname: cli-test\nrules:\n  - name: miner-binary\n    action: deny\n    exec: { names: [xmrig] }\n";

/// The cgroup path from the `run` status line.
fn scope_path(stderr: &str) -> PathBuf {
    let line = stderr
        .lines()
        .find(|l| l.contains("backend on "))
        .unwrap_or_else(|| panic!("no status line in:\n{stderr}"));
    PathBuf::from(line.rsplit("backend on ").next().unwrap())
}

fn json_events(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

#[test]
fn run_stops_the_miner_reports_it_and_cleans_up() {
    if !kernel_tests_enabled("run_stops_the_miner_reports_it_and_cleans_up") {
        return;
    }
    let dir = TempDir::new("cli-run");
    let miner = fake_miner(&dir, "xmrig");
    let marker = dir.path().join("marker");
    let profile = write_profile(&dir, EXEC_PROFILE);
    let out = minerguard_cmd(&[
        "run",
        "--profile",
        profile.to_str().unwrap(),
        "--",
        miner.to_str().unwrap(),
        marker.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!marker.exists(), "the miner ran");
    // Killed (cgroup backend: 128 + SIGKILL) or refused (lsm backend: 127).
    let code = out.status.code().expect("minerguard exits normally");
    assert!(code == 137 || code == 127, "exit {code}, stderr:\n{stderr}");

    let events = json_events(&stderr);
    assert_eq!(events.len(), 1, "stderr:\n{stderr}");
    let ev = &events[0];
    assert_eq!(ev["rule"], "miner-binary");
    assert!(ev["action"] == "kill" || ev["action"] == "deny");
    assert_eq!(ev["output_fields"]["proc.exepath"], miner.to_str().unwrap());
    assert!(ev["output_fields"]["proc.pid"].as_u64().unwrap() > 0);
    // Who did it: minerguard's child (the miner after the exec on the
    // cgroup backend, minerguard's fork before it on lsm); both command
    // lines name the marker.
    assert_eq!(ev["output_fields"]["proc.pname"], "minerguard", "{ev}");
    assert!(
        ev["output_fields"]["proc.ppid"].as_u64().unwrap() > 1,
        "{ev}"
    );
    let cmdline = ev["output_fields"]["proc.cmdline"].as_str().unwrap();
    assert!(cmdline.contains(marker.to_str().unwrap()), "{ev}");
    assert_eq!(ev["output_fields"]["minerguard.proc.source"], "kernel");
    assert!(ev["time"].as_str().unwrap().ends_with('Z'));

    let cgroup = scope_path(&stderr);
    assert!(!cgroup.exists(), "cgroup {} left behind", cgroup.display());
}

#[test]
fn run_kill_container_kills_the_whole_command_not_only_the_miner() {
    if !kernel_tests_enabled("run_kill_container_kills_the_whole_command_not_only_the_miner") {
        return;
    }
    let dir = TempDir::new("cli-kill-container");
    let miner = fake_miner(&dir, "xmrig");
    let marker = dir.path().join("marker");
    let profile = write_profile(
        &dir,
        &EXEC_PROFILE.replace("action: deny", "action: kill-container"),
    );
    // With `kill` only the miner dies and the shell waits a minute for
    // its `sleep`; with `kill-container` every process of the run's cgroup
    // dies: the shell too, at once.
    let started = std::time::Instant::now();
    let out = run_sh(
        &profile,
        &format!("sleep 60 & {} {}; wait", miner.display(), marker.display()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!marker.exists(), "the miner ran");
    assert_eq!(out.status.code(), Some(137), "stderr:\n{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the shell outlived the miner: {:?}",
        started.elapsed()
    );
    let events = json_events(&stderr);
    let ev = events
        .iter()
        .find(|e| e["rule"] == "miner-binary")
        .unwrap_or_else(|| panic!("no event in:\n{stderr}"));
    assert_eq!(ev["action"], "kill-container", "{ev}");
    assert_eq!(ev["priority"], "Critical", "{ev}");
    assert_eq!(
        ev["output_fields"]["minerguard.requested"],
        "kill-container"
    );
    let cgroup = scope_path(&stderr);
    assert_eq!(
        ev["output_fields"]["minerguard.killed.cgroup"],
        cgroup.to_str().unwrap(),
        "{ev}"
    );
    assert!(!cgroup.exists(), "cgroup {} left behind", cgroup.display());
}

/// Prints how many perf-event fds (tracepoint attachments) the enforcer
/// running this command holds: its parent's, counted by the command.
const COUNT_PARENT_PERF_EVENTS: &str = "n=0; for f in /proc/$PPID/fd/*; do case $(readlink $f) in *perf_event*) n=$((n+1));; esac; done; echo $n";

#[test]
fn syscall_tracepoints_are_attached_only_for_policies_that_need_them() {
    if !kernel_tests_enabled("syscall_tracepoints_are_attached_only_for_policies_that_need_them") {
        return;
    }
    // Any attached syscalls/* tracepoint puts every syscall on the host on
    // the tracing slow path: an enforcer must not attach one no rule needs.
    let dir = TempDir::new("cli-tracepoints");
    let attached_with = |text: &str, options: &[&str]| -> (String, usize) {
        let profile = write_profile(&dir, text);
        let out = run_sh_with(&profile, options, COUNT_PARENT_PERF_EVENTS);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        let backend = backend_of(&stderr);
        let n = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("count: {e}; {stderr}"));
        (backend, n)
    };
    let attached = |text: &str| attached_with(text, &[]);
    let ports_only = "apiVersion: minerguard/v1\nname: ports\nrules:\n  - name: pool-port\n    action: deny\n    connect: { ports: [3333] }\n";
    // `--no-syscall-tracepoints` attaches none, whatever the profile needs.
    assert_eq!(
        attached_with(EXEC_PROFILE, &["--no-syscall-tracepoints"]).1,
        0,
        "--no-syscall-tracepoints"
    );
    let (backend, for_ports) = attached(ports_only);
    let (_, for_exec) = attached(EXEC_PROFILE);
    if backend == "cgroup" {
        assert_eq!(for_ports, 0, "a ports-only profile needs no tracepoint");
        assert_eq!(
            for_exec, 3,
            "exec.names: the loader-exec check on sys_enter_mmap, sys_enter_mprotect and sys_enter_pkey_mprotect"
        );
    } else {
        assert_eq!(backend, "lsm");
        assert_eq!(
            (for_ports, for_exec),
            (0, 0),
            "the lsm backend judges mappings in LSM hooks"
        );
    }
}

/// `--stratum-judge sk-msg` leaves ways open that the default judge closes:
/// the CLI says so on the cgroup backend, where it applies, and only there.
#[test]
fn the_sk_msg_judge_is_chosen_with_a_warning() {
    if !kernel_tests_enabled("the_sk_msg_judge_is_chosen_with_a_warning") {
        return;
    }
    let profile = repo_root().join("profiles/default.yaml");
    const WARNING: &str = "warning: --stratum-judge sk-msg does not read a send made while its socket is still connecting";
    for judge in ["egress", "sk-msg"] {
        let out = run_sh_with(&profile, &["--stratum-judge", judge], "true");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{judge}: {stderr}");
        let warned = stderr.contains(WARNING);
        let expected = judge == "sk-msg" && backend_of(&stderr) == "cgroup";
        assert_eq!(warned, expected, "{judge}, stderr:\n{stderr}");
    }
}

/// The backend `run`'s status line names ("… enforced by the X backend on …").
fn backend_of(stderr: &str) -> String {
    stderr
        .split_once(" backend on ")
        .and_then(|(before, _)| before.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no status line in:\n{stderr}"))
        .to_string()
}

/// Counts of the parent's BPF program fds by program type (from fdinfo),
/// as "count type" lines.
const COUNT_PARENT_PROG_TYPES: &str = "for f in /proc/$PPID/fd/*; do [ \"$(readlink $f)\" = anon_inode:bpf-prog ] && sed -n 's/^prog_type:[[:space:]]*//p' /proc/$PPID/fdinfo/${f##*/}; done | sort -n | uniq -c";

/// `BPF_PROG_TYPE_*` values (include/uapi/linux/bpf.h).
const PROG_TRACEPOINT: u32 = 5;
const PROG_CGROUP_SKB: u32 = 8;
const PROG_SOCK_OPS: u32 = 13;
const PROG_SK_MSG: u32 = 16;
const PROG_TRACING: u32 = 26;
const PROG_LSM: u32 = 29;

#[test]
fn optional_programs_are_loaded_only_for_profiles_that_need_them() {
    if !kernel_tests_enabled("optional_programs_are_loaded_only_for_profiles_that_need_them") {
        return;
    }
    // The verifier is most of a start: the Stratum, cmdline and loader-exec
    // programs load with the first profile that needs them.
    let dir = TempDir::new("cli-on-demand");
    let loaded = |profile: &std::path::Path| -> (String, std::collections::BTreeMap<u32, usize>) {
        let out = run_sh(profile, COUNT_PARENT_PROG_TYPES);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        let backend = backend_of(&stderr);
        let counts = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let (n, t) = l.trim().split_once(' ').expect("count type");
                (t.trim().parse().unwrap(), n.parse().unwrap())
            })
            .collect();
        (backend, counts)
    };
    let ports_only = write_profile(&dir, "apiVersion: minerguard/v1\nname: ports\nrules:\n  - name: pool-port\n    action: deny\n    connect: { ports: [3333] }\n");
    let default = repo_root().join("profiles/default.yaml");
    let (backend, few) = loaded(&ports_only);
    let (_, all) = loaded(&default);
    let n = |m: &std::collections::BTreeMap<u32, usize>, t| m.get(&t).copied().unwrap_or(0);
    // Stratum: no socket tracking, no sk_msg verdict: the cgroup
    // backend's default judge reads packets on egress, and so does the one
    // behind the lsm hook (which reads what sendfile and splice send past
    // that hook before Linux 6.5).
    let egress = backend == "cgroup";
    for t in [PROG_SOCK_OPS, PROG_SK_MSG] {
        assert_eq!(
            (n(&few, t), n(&all, t)),
            (0, 0),
            "type {t}: {few:?} {all:?}"
        );
    }
    // exec.cmdline: one tp_btf program more; on lsm the Stratum judge's
    // fexit programs (inet_sendmsg, inet6_sendmsg) too.
    let fexit = if backend == "lsm" { 2 } else { 0 };
    assert_eq!(
        n(&all, PROG_TRACING),
        n(&few, PROG_TRACING) + 1 + fexit,
        "{few:?} {all:?}"
    );
    // The egress judge: one cgroup_skb program, which reads Fast Open
    // SYNs too; on lsm it stands behind the socket_sendmsg hook.
    assert_eq!(
        (n(&few, PROG_CGROUP_SKB), n(&all, PROG_CGROUP_SKB)),
        (0, 1),
        "{few:?} {all:?}"
    );
    if egress {
        // Loader exec: mmap, and one program for mprotect and
        // pkey_mprotect (attached to both: three links, two programs).
        assert_eq!(
            (n(&few, PROG_TRACEPOINT), n(&all, PROG_TRACEPOINT)),
            (0, 2),
            "{few:?} {all:?}"
        );
    } else {
        assert_eq!(backend, "lsm");
        // The sleepable socket_sendmsg Stratum judge; Fast Open is judged
        // there, so no tracepoints.
        assert_eq!(n(&all, PROG_LSM), n(&few, PROG_LSM) + 1, "{few:?} {all:?}");
        assert_eq!(
            (n(&few, PROG_TRACEPOINT), n(&all, PROG_TRACEPOINT)),
            (0, 0),
            "{few:?} {all:?}"
        );
    }
}

#[test]
fn run_passes_exit_status_through_and_writes_events_to_file() {
    if !kernel_tests_enabled("run_passes_exit_status_through_and_writes_events_to_file") {
        return;
    }
    let dir = TempDir::new("cli-status");
    let profile = write_profile(&dir, EXEC_PROFILE);
    let events = dir.path().join("events.jsonl");
    let out = minerguard_cmd(&[
        "run",
        "--profile",
        profile.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(events.exists());
    assert_eq!(
        std::fs::read_to_string(&events).unwrap(),
        "",
        "nothing was denied"
    );
    assert!(!scope_path(&String::from_utf8_lossy(&out.stderr)).exists());
}

#[test]
fn run_reports_a_missing_command() {
    if !kernel_tests_enabled("run_reports_a_missing_command") {
        return;
    }
    let dir = TempDir::new("cli-missing");
    let profile = write_profile(&dir, EXEC_PROFILE);
    let out = minerguard_cmd(&[
        "run",
        "--profile",
        profile.to_str().unwrap(),
        "--",
        "/nonexistent/cmd",
    ]);
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot run `/nonexistent/cmd`"), "{stderr}");
    assert!(!scope_path(&stderr).exists());
}

#[test]
fn run_rejects_a_bad_profile_before_touching_the_kernel() {
    let dir = TempDir::new("cli-bad");
    let profile = write_profile(
        &dir,
        "apiVersion: minerguard/v1\nname: bad\nrules:\n  - name: p\n    action: deny\n    connect: { ports: [0] }\n",
    );
    let out = minerguard_cmd(&["run", "--profile", profile.to_str().unwrap(), "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rules[0].connect.ports[0]"), "{stderr}");
}

#[test]
fn check_reports_every_error_compiler_style() {
    let dir = TempDir::new("cli-check");
    let bad = write_profile(
        &dir,
        "apiVersion: minerguard/v1\nname: bad\nrules:\n  - name: a\n    action: deny\n    exec: { names: [\"\", \"x/y\"] }\n  - name: a\n    action: deny\n    connect: { ports: [0] }\n",
    );
    let out = minerguard_cmd(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "rules[0].exec.names[0]",
        "rules[0].exec.names[1]",
        "rules[1].name: duplicate rule name `a`",
        "rules[1].connect.ports[0]",
    ] {
        assert!(stderr.contains(needle), "missing `{needle}` in:\n{stderr}");
    }
    assert!(
        stderr.lines().all(|l| l.starts_with(bad.to_str().unwrap())),
        "{stderr}"
    );

    let unknown = write_profile(
        &dir,
        "apiVersion: minerguard/v1\nname: u\nrules:\n  - name: a\n    action: deny\n    exek: {}\n",
    );
    let out = minerguard_cmd(&["check", unknown.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown field `exek`") && stderr.contains(":6:5:"),
        "{stderr}"
    );

    let root = repo_root();
    let out = minerguard_cmd(&[
        "check",
        root.join("profiles/default.yaml").to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: profile `default`"));
}

#[test]
fn probe_json_names_the_backend_and_why_lsm_is_missing() {
    if !kernel_tests_enabled("probe_json_names_the_backend_and_why_lsm_is_missing") {
        return;
    }
    let out = minerguard_cmd(&["probe", "--json"]);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["cgroup2"]["available"], true);
    assert_eq!(report["cgroup_bpf"]["available"], true);
    let backend = report["backend"].as_str().expect("a backend");
    if report["bpf_lsm"]["available"] == false {
        assert_eq!(backend, "cgroup");
        assert!(!report["bpf_lsm"]["detail"].as_str().unwrap().is_empty());
    } else {
        assert_eq!(backend, "lsm");
    }
    // Signals pass through: a command killed by a signal is reported as 128+n.
    let dir = TempDir::new("cli-sig");
    let profile = write_profile(&dir, EXEC_PROFILE);
    let out = run_sh(&profile, "kill -TERM $$");
    assert_eq!(
        out.status.code(),
        Some(128 + 15),
        "{:?}",
        out.status.signal()
    );
}

/// Waits up to 60 s (loading BPF under an emulated CPU is slow) for a line
/// containing `needle` from `lines`.
/// Spawns `cmd` (stderr piped) and streams its stderr lines to a channel.
fn wait_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return l,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no line containing `{needle}`");
}

/// Whether `program` ran inside `cg` (it creates `marker` when it runs).
fn ran_in(cg: &minerguard::cgroup::OwnedCgroup, program: &Path, marker: &Path) -> bool {
    let _ = std::fs::remove_file(marker);
    let _ = run_in(Some(cg), Command::new(program).arg(marker));
    marker.exists()
}

#[test]
fn watch_enforces_reloads_on_sighup_and_detaches_on_sigterm() {
    if !kernel_tests_enabled("watch_enforces_reloads_on_sighup_and_detaches_on_sigterm") {
        return;
    }
    let dir = TempDir::new("cli-watch");
    let xmrig = fake_miner(&dir, "xmrig");
    let other = fake_miner(&dir, "other");
    let marker = dir.path().join("marker");
    let profile = write_profile(&dir, EXEC_PROFILE);
    let cg = test_cgroup();
    let mut cmd = Command::new(minerguard_bin());
    cmd.args(["watch", "--detach-on-exit", "--instance", "cli-watch-test"])
        .args(["--profile", profile.to_str().unwrap(), "--cgroup"])
        .arg(cg.cgroup().path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Ok(b) = std::env::var("MINERGUARD_TEST_BACKEND") {
        cmd.args(["--backend", &b]);
    }
    let (child, status_lines) = spawn_with_stderr_lines(&mut cmd);
    wait_line(&status_lines, "enforced by the");

    assert!(!ran_in(&cg, &xmrig, &marker), "xmrig ran under watch");
    assert!(ran_in(&cg, &other, &marker));

    // SIGHUP: the new profile replaces the old one atomically.
    std::fs::write(&profile, EXEC_PROFILE.replace("[xmrig]", "[other]")).unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    wait_line(&status_lines, "reloaded profile");
    assert!(
        ran_in(&cg, &xmrig, &marker),
        "old rule still active after reload"
    );
    assert!(
        !ran_in(&cg, &other, &marker),
        "new rule not active after reload"
    );

    // A broken profile on SIGHUP keeps the previous one.
    std::fs::write(
        &profile,
        "apiVersion: minerguard/v1\nname: broken\nrules: [{}]\n",
    )
    .unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    wait_line(&status_lines, "previous profile kept");
    assert!(!ran_in(&cg, &other, &marker));

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        ran_in(&cg, &other, &marker),
        "still enforced after watch exited"
    );
    // The kernel's refusals; a scan of watch's may also have met a refused
    // process in the moment before its SIGKILL landed (a `scan` event).
    let events: Vec<_> = json_events(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .filter(|e| e["output_fields"]["minerguard.kind"] != "scan")
        .collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.iter().all(|e| e["rule"] == "miner-binary"));
}

#[test]
fn learn_writes_an_allow_only_profile_that_run_enforces() {
    if !kernel_tests_enabled("learn_writes_an_allow_only_profile_that_run_enforces") {
        return;
    }
    let dir = TempDir::new("cli-learn");
    let app = fake_miner(&dir, "app");
    let newcomer = fake_miner(&dir, "newcomer");
    let marker = dir.path().join("marker");
    let learned = dir.path().join("learned.yaml");
    let cg = test_cgroup();
    let mut cmd = Command::new(minerguard_bin());
    cmd.args([
        "learn",
        "--duration",
        "2s",
        "--name",
        "app-only",
        "--cgroup",
    ])
    .arg(cg.cgroup().path())
    .arg("--out")
    .arg(&learned)
    .stderr(std::process::Stdio::piped());
    if let Ok(b) = std::env::var("MINERGUARD_TEST_BACKEND") {
        cmd.args(["--backend", &b]);
    }
    let (mut child, lines) = spawn_with_stderr_lines(&mut cmd);
    wait_line(&lines, "learning what");
    assert!(ran_in(&cg, &app, &marker), "learning refused an exec");
    let line = wait_line(&lines, "learned ");
    assert!(line.ends_with(app.to_str().unwrap()), "{line}");
    wait_line(&lines, "profile written to");
    assert!(child.wait().unwrap().success());

    let profile = minerguard::Profile::from_file(&learned).unwrap();
    assert_eq!(profile.name, "app-only");
    let allow = &profile.rules[0].exec.as_ref().unwrap().allow_only;
    assert_eq!(allow, &[app.to_str().unwrap()]);

    // `run` under the learned profile: the app runs, a newcomer does not.
    let _ = std::fs::remove_file(&marker);
    let run = |program: &Path| {
        minerguard_cmd(&[
            "run",
            "--profile",
            learned.to_str().unwrap(),
            "--",
            program.to_str().unwrap(),
            marker.to_str().unwrap(),
        ])
    };
    let out = run(&app);
    assert!(
        out.status.success(),
        "{:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(marker.exists());
    std::fs::remove_file(&marker).unwrap();
    let out = run(&newcomer);
    assert!(!out.status.success(), "{out:?}");
    assert!(!marker.exists(), "the newcomer ran");
    let events = json_events(&String::from_utf8_lossy(&out.stderr));
    assert!(
        events.iter().any(|e| e["rule"] == "allow-learned"),
        "{events:?}"
    );

    // Bad durations are refused before anything is loaded.
    let bad = minerguard_cmd(&["learn", "--cgroup", "/nonexistent", "--duration", "5x"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown unit"));
}

#[test]
fn seccomp_prints_each_format() {
    let root = repo_root();
    let strict = root.join("profiles/container-strict.yaml");
    let out = Command::new(minerguard_bin())
        .args(["seccomp", strict.to_str().unwrap(), "--format", "oci"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["defaultAction"], "SCMP_ACT_ALLOW");
    let out = Command::new(minerguard_bin())
        .args(["seccomp", strict.to_str().unwrap(), "--format", "bpf"])
        .output()
        .unwrap();
    assert!(out.status.success() && out.stdout.len() % 8 == 0 && !out.stdout.is_empty());
    let out = Command::new(minerguard_bin())
        .args(["seccomp", strict.to_str().unwrap(), "--format", "pfc"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("ptrace"));
    let default = root.join("profiles/default.yaml");
    let out = Command::new(minerguard_bin())
        .args(["seccomp", default.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no seccomp rule"));
}

#[test]
fn run_installs_the_profiles_filter_in_the_command() {
    if !kernel_tests_enabled("run_installs_the_profiles_filter_in_the_command") {
        return;
    }
    let dir = TempDir::new("seccomp-run");
    let profile = dir.path().join("p.yaml");
    std::fs::write(
        &profile,
        "apiVersion: minerguard/v1\nname: sc\nrules:\n  - name: no-ptrace\n    action: deny\n    seccomp:\n      syscalls:\n        - names: [ptrace]\n          action: { errno: 13 }\n",
    )
    .unwrap();
    // perl's syscall(): ptrace(PTRACE_TRACEME) = syscall 101 on x86_64.
    let script = "my $r = syscall(101, 0, 0, 0, 0); exit($r == -1 ? $!+0 : 0)";
    let under = Command::new(minerguard_bin())
        .args([
            "run",
            "--profile",
            profile.to_str().unwrap(),
            "--",
            "perl",
            "-e",
            script,
        ])
        .status()
        .unwrap();
    assert_eq!(under.code(), Some(libc::EACCES), "{:?}", under.signal());
    let plain = Command::new("perl").args(["-e", script]).status().unwrap();
    assert_eq!(
        plain.code(),
        Some(0),
        "outside the filter ptrace(TRACEME) works"
    );
}

#[test]
fn profile_takes_a_bundled_name_and_events_are_appended() {
    if !kernel_tests_enabled("profile_takes_a_bundled_name_and_events_are_appended") {
        return;
    }
    let dir = TempDir::new("cli-bundled");
    let miner = fake_miner(&dir, "xmrig");
    let marker = dir.path().join("marker");
    let events = dir.path().join("events.jsonl");
    // `default` is no file here: it names the bundled profile.
    for round in 1..=2 {
        let out = minerguard_cmd(&[
            "run",
            "--profile",
            "default",
            "--events",
            events.to_str().unwrap(),
            "--",
            miner.to_str().unwrap(),
            marker.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("profile `default` enforced"), "{stderr}");
        assert!(!marker.exists(), "round {round}: the miner ran");
        // A second run adds to the file: a restart never loses alerts.
        let written = json_events(&std::fs::read_to_string(&events).unwrap());
        assert_eq!(written.len(), round, "round {round}: {written:?}");
        assert!(written.iter().all(|e| e["rule"] == "miner-binary"));
    }
}

#[test]
fn check_takes_bundled_names_and_says_what_a_missing_file_may_be() {
    let out = minerguard_cmd(&["check", "default", "container-strict", "audit"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for name in ["default", "container-strict", "audit"] {
        assert!(
            stdout.contains(&format!("bundled:{name}: ok: profile `{name}`")),
            "{stdout}"
        );
    }
    // Neither a file nor a bundled name: an input error (2), with the names.
    let out = minerguard_cmd(&["check", "defualt"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("defualt") && stderr.contains("bundled profiles: default"),
        "{stderr}"
    );
}

#[test]
fn check_json_lists_every_diagnostic_with_its_position() {
    let dir = TempDir::new("cli-check-json");
    let bad = write_profile(
        &dir,
        "apiVersion: minerguard/v1\nname: bad\nrules:\n  - name: a\n    action: deny\n    exec: { names: [\"\", \"x/y\"] }\n  - name: a\n    action: deny\n    connect: { ports: [0] }\n",
    );
    let out = minerguard_cmd(&["check", "--json", bad.to_str().unwrap(), "audit"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    let profiles = doc["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 2);
    assert_eq!(profiles[0]["file"], bad.to_str().unwrap());
    assert_eq!(profiles[0]["ok"], false);
    let fields: Vec<&str> = profiles[0]["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "rules[0].exec.names[0]",
            "rules[0].exec.names[1]",
            "rules[1].name",
            "rules[1].connect.ports[0]"
        ]
    );
    assert_eq!(profiles[1]["file"], "bundled:audit");
    assert_eq!(profiles[1]["ok"], true);
}

#[test]
fn running_out_of_descriptors_is_named_and_leaves_nothing_behind() {
    if !kernel_tests_enabled("running_out_of_descriptors_is_named_and_leaves_nothing_behind") {
        return;
    }
    let root = minerguard::cgroup::CgroupRef::root()
        .unwrap()
        .path()
        .to_path_buf();
    // prlimit sets the hard limit as well, so the CLI cannot raise it.
    // Whether `run` succeeded at `limit`; when it did not, it must have
    // exited 3 naming the limit, and left no cgroup and no instance.
    let run_at = |limit: u32| -> (bool, String) {
        let nofile = format!("--nofile={limit}:{limit}");
        let child = Command::new("prlimit")
            .args([&nofile, "--"])
            .arg(minerguard_bin())
            .args(["run", "--profile", "default", "--", "touch", "/dev/null"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("prlimit (util-linux)");
        // prlimit execs the command: the same pid names minerguard's cgroup.
        let child_pid = child.id();
        let prefix = format!("minerguard-run-{child_pid}-");
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if out.status.success() {
            return (true, stderr);
        }
        assert_eq!(out.status.code(), Some(3), "limit {limit}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "used up its file descriptors (RLIMIT_NOFILE {limit})"
            )),
            "limit {limit}: {stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .collect();
        assert!(
            left.is_empty(),
            "limit {limit}: cgroup left behind: {left:?}"
        );
        // Nor an instance: nothing pinned stays attached.
        let instance = format!("run-{}", child_pid);
        assert!(
            pinned_instance(&instance).is_none(),
            "limit {limit}: instance {instance} left pinned"
        );
        (false, stderr)
    };
    // 64 and 128: a BPF object fails to load.
    for limit in [64, 128] {
        let (ok, stderr) = run_at(limit);
        assert!(!ok, "limit {limit}: {stderr}");
        assert!(
            stderr.contains("loading BPF object"),
            "limit {limit}: {stderr}"
        );
    }
    // On the cgroup backend, just below the limit at which `run` starts,
    // every object loads and a later step runs out: duplicating a map for
    // the event thread, opening the scope's cgroup, attaching and pinning
    // each link, the command's pipes. Each limit there stops at another
    // step, and each must be named and rolled back (`run_at` checks). The
    // start is found by raising the limit 5 at a time (about 280 today).
    if !minerguard::probe().bpf_lsm.available {
        let mut limit = 200;
        while !run_at(limit).0 {
            limit += 5;
            assert!(limit <= 1000, "`run` never started");
        }
        let mut after_loading = Vec::new();
        for below in limit.saturating_sub(25)..limit {
            let (ok, stderr) = run_at(below);
            if !ok && !stderr.contains("loading BPF object") {
                after_loading.push(stderr);
            }
        }
        assert!(
            after_loading.len() >= 5,
            "only {} limits below {limit} ran out after loading: {after_loading:?}",
            after_loading.len()
        );
        assert!(
            after_loading.iter().any(|e| e.contains("attaching `")),
            "no limit ran out while attaching: {after_loading:?}"
        );
    }
}

#[test]
fn a_kernel_that_refuses_the_backend_exits_3() {
    if !kernel_tests_enabled("a_kernel_that_refuses_the_backend_exits_3") {
        return;
    }
    let lsm = minerguard::probe().bpf_lsm.available;
    let out = Command::new(minerguard_bin())
        .args([
            "run",
            "--backend",
            "lsm",
            "--profile",
            "default",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if lsm {
        assert!(out.status.success(), "{stderr}");
    } else {
        // This machine's kernel refuses BPF-LSM programs: a kernel error,
        // told apart from bad input (2).
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.starts_with("minerguard: error: "), "{stderr}");
    }
}

#[test]
fn events_max_size_needs_an_events_file_and_a_valid_size() {
    let out = minerguard_cmd(&[
        "run",
        "--profile",
        "default",
        "--events-max-size",
        "1M",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--events <EVENTS>"));
    let out = minerguard_cmd(&[
        "watch",
        "--profile",
        "default",
        "--events",
        "/tmp/never-written.jsonl",
        "--events-max-size",
        "5T",
        // Never the host: were the size accepted, nothing may attach.
        "--cgroup",
        "/nonexistent/minerguard-test",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown unit `T`"));
    assert!(!Path::new("/tmp/never-written.jsonl").exists());
}

#[test]
fn watch_follows_a_cgroup_removed_and_created_again() {
    if !kernel_tests_enabled("watch_follows_a_cgroup_removed_and_created_again") {
        return;
    }
    let dir = TempDir::new("cli-follow");
    let xmrig = fake_miner(&dir, "xmrig");
    let marker = dir.path().join("marker");
    let profile = write_profile(&dir, EXEC_PROFILE);
    let cg = test_cgroup();
    let path = cg.cgroup().path().to_path_buf();
    let mut cmd = Command::new(minerguard_bin());
    cmd.args(["watch", "--detach-on-exit", "--instance", "cli-follow-test"])
        .args(["--profile", profile.to_str().unwrap(), "--cgroup"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Ok(b) = std::env::var("MINERGUARD_TEST_BACKEND") {
        cmd.args(["--backend", &b]);
    }
    let (child, status_lines) = spawn_with_stderr_lines(&mut cmd);
    wait_line(&status_lines, "enforced by the");

    // A restarted container: the same path, a new cgroup.
    std::fs::remove_dir(&path).unwrap();
    let gone = wait_line(&status_lines, "is gone");
    assert!(gone.contains(path.to_str().unwrap()), "{gone}");
    std::fs::create_dir(&path).unwrap();
    wait_line(&status_lines, "was created again");
    assert!(!ran_in(&cg, &xmrig, &marker), "xmrig ran in the new cgroup");

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let events = json_events(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["rule"], "miner-binary");
}

/// Eight problems of every sort (type errors and semantic ones) in one file.
const EIGHT_PROBLEMS: &str = include_str!("../../tests/fixtures/eight-problems.yaml");

#[test]
fn check_prints_eight_problems_with_line_and_column_and_exits_1() {
    let dir = TempDir::new("cli-eight");
    let bad = write_profile(&dir, EIGHT_PROBLEMS);
    let file = bad.to_str().unwrap();
    let out = minerguard_cmd(&["check", file]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 8, "{stderr}");
    for (line, at) in lines.iter().zip([
        ":1:13: apiVersion",
        ":5:13: rules[0].action",
        ":9:30: rules[1].connect.ports[1]",
        ":13:5: rules[2]",
        ":17:11: rules[4].name",
        ":20:11: rules[5].name",
        ":25:24: rules[6].connect.cidrs[0]",
        ":26:5: rules[7]",
    ]) {
        assert!(line.starts_with(&format!("{file}{at}")), "{line}");
    }
    let out = minerguard_cmd(&["check", "--json", file]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let diagnostics = doc["profiles"][0]["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 8);
    assert!(diagnostics
        .iter()
        .all(|d| d["file"] == file && d["line"].is_u64() && d["column"].is_u64()));
}

#[test]
fn hostile_inputs_get_a_clear_error_quickly_and_nothing_of_them_is_echoed() {
    let dir = TempDir::new("cli-hostile");
    let fifo = dir.path().join("profile.fifo");
    let c_fifo = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
    let secret = dir.path().join("shadow");
    std::fs::write(&secret, "root:$6$SECRETHASH:19000:0:99999:7:::\n").unwrap();
    let extends_secret = write_profile(
        &dir,
        &format!(
            "apiVersion: minerguard/v1\nname: x\nextends: {}\n",
            secret.display()
        ),
    );
    let deep = dir.path().join("deep.yaml");
    std::fs::write(
        &deep,
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
    )
    .unwrap();
    for (input, code, says) in [
        ("/dev/zero".to_string(), 2, "not a regular file"),
        (fifo.display().to_string(), 2, "FIFO"),
        (deep.display().to_string(), 1, "nest"),
        (
            extends_secret.display().to_string(),
            1,
            "not a minerguard profile",
        ),
    ] {
        // `run` too: it must refuse before anything is loaded.
        for args in [
            vec!["check", input.as_str()],
            vec!["run", "--profile", input.as_str(), "--", "true"],
        ] {
            let started = std::time::Instant::now();
            let out = minerguard_cmd(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            eprintln!("{args:?}: {:?}", started.elapsed());
            let want = if args[0] == "run" { 2 } else { code };
            assert_eq!(out.status.code(), Some(want), "{args:?}: {stderr}");
            assert!(stderr.contains(says), "{args:?}: {stderr}");
            assert!(!stderr.contains("SECRETHASH"), "{args:?}: {stderr}");
        }
    }
}

/// Unpins an instance when a test ends, passed or not (a failed test must
/// not leave programs attached).
struct UnpinOnDrop(String);

impl Drop for UnpinOnDrop {
    fn drop(&mut self) {
        let _ = minerguard::pin::remove(&self.0);
    }
}

/// The pinned instance `name`, from `minerguard status --json`.
fn pinned_instance(name: &str) -> Option<serde_json::Value> {
    let out = minerguard_cmd(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    all.into_iter().find(|i| i["name"] == name)
}

/// The pinned links of an instance: (name, link id, program id), from
/// `minerguard status --json`.
fn pinned_links(name: &str) -> Vec<(String, u64, u64)> {
    let Some(instance) = pinned_instance(name) else {
        return Vec::new();
    };
    let mut links: Vec<(String, u64, u64)> = instance["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["id"].as_u64().unwrap_or(0),
                l["program_id"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    links.sort();
    links
}

/// The policy id of an instance's only scope.
fn pinned_policy(name: &str) -> u64 {
    let instance = pinned_instance(name).expect("pinned");
    instance["scopes"][0]["policy_id"].as_u64().unwrap()
}

/// A `watch` of `instance` on `cg` with `profile`, started and past the
/// line that says everything is pinned (killing it is safe from there),
/// with what it said until then.
fn start_watch(
    instance: &str,
    profile: &Path,
    cg: &minerguard::cgroup::OwnedCgroup,
    detach: bool,
) -> (ChildGuard, String) {
    start_watch_as(instance, profile, cg, detach, None)
}

/// [`start_watch`] as a build whose maps have layout `layout` (another
/// minerguard build: `MINERGUARD_TEST_LAYOUT`).
fn start_watch_as(
    instance: &str,
    profile: &Path,
    cg: &minerguard::cgroup::OwnedCgroup,
    detach: bool,
    layout: Option<&str>,
) -> (ChildGuard, String) {
    let mut cmd = Command::new(minerguard_bin());
    if let Some(layout) = layout {
        cmd.env("MINERGUARD_TEST_LAYOUT", layout);
    }
    cmd.args(["watch", "--instance", instance]);
    if detach {
        cmd.arg("--detach-on-exit");
    }
    cmd.args(["--profile", profile.to_str().unwrap(), "--cgroup"])
        .arg(cg.cgroup().path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Ok(b) = std::env::var("MINERGUARD_TEST_BACKEND") {
        cmd.args(["--backend", &b]);
    }
    let (child, lines) = spawn_with_stderr_lines(&mut cmd);
    // Guarded at once: a watch that never says it pinned is killed with
    // the failing test, not left loading programs in the emulated VM.
    let mut child = ChildGuard::new(child);
    let mut seen = Vec::new();
    // A hang guard, not a timing claim: loading the lsm programs under an
    // emulated CPU beside other tests has taken over a minute.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    while !seen
        .last()
        .is_some_and(|l: &String| l.contains("enforcement pinned as instance"))
    {
        let left = deadline
            .checked_duration_since(std::time::Instant::now())
            .unwrap_or_else(|| panic!("watch did not say it pinned: {seen:?}"));
        match lines.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(e) => panic!(
                "watch did not say it pinned ({e}; exit: {:?}): {seen:?}",
                child.try_wait()
            ),
        }
    }
    assert!(seen.last().unwrap().contains(instance), "{seen:?}");
    (child, seen.join("\n"))
}

#[test]
fn run_fails_closed_when_the_command_kills_it() {
    if !kernel_tests_enabled("run_fails_closed_when_the_command_kills_it") {
        return;
    }
    let dir = TempDir::new("cli-fail-closed");
    let miner = fake_miner(&dir, "xmrig");
    let marker = dir.path().join("marker");
    let finished = dir.path().join("finished");
    let pool = listener(false);
    pool.set_nonblocking(true).unwrap();
    let port = pool.local_addr().unwrap().port();
    let profile = write_profile(
        &dir,
        &format!("{EXEC_PROFILE}  - name: pool-port\n    action: deny\n    connect: {{ ports: [{port}] }}\n"),
    );
    // A root command that kills its guard, then tries to mine (and stays,
    // so that no other `run` cleans the instance up as stale meanwhile).
    let script = format!(
        "exec >/dev/null 2>&1; kill -9 $PPID; sleep 1; {miner} {marker}; bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' 2>/dev/null; touch {finished}; exec sleep 60",
        miner = miner.display(),
        marker = marker.display(),
        finished = finished.display(),
    );
    let out = run_sh(&profile, &script);
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let cgroup = scope_path(&stderr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !finished.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(finished.exists(), "the command did not finish");
    // What the attacker got: no miner ran, the pool saw no connection.
    assert!(!marker.exists(), "the miner ran after its guard was killed");
    assert!(
        matches!(pool.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the pool was reached after the guard was killed"
    );

    // `status` shows the orphaned instance; `remove` ends it.
    let out = minerguard_cmd(&["status", "--json"]);
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let instance = all
        .into_iter()
        .find(|i| i["scopes"][0]["scope"] == cgroup.display().to_string())
        .expect("a pinned instance for the run's cgroup");
    let name = instance["name"].as_str().unwrap().to_string();
    assert_eq!(instance["alive"], false, "{instance}");
    assert!(
        !instance["links"].as_array().unwrap().is_empty(),
        "{instance}"
    );
    assert_eq!(
        instance["stratum_judge"],
        serde_json::json!({"unread_refused": 0, "untracked": 0, "own_copies": 0}),
        "{instance}"
    );
    let out = minerguard_cmd(&["remove", "--instance", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(pinned_instance(&name).is_none());
    assert!(!Path::new("/sys/fs/bpf/minerguard").join(&name).exists());
    // Nothing enforces on the leftover cgroup any more; then it goes.
    std::fs::write(cgroup.join("cgroup.kill"), "1").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::remove_dir(&cgroup).is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!cgroup.exists(), "{} left behind", cgroup.display());
}

#[test]
fn watch_keeps_enforcing_after_sigkill_and_a_restart_adopts_it() {
    if !kernel_tests_enabled("watch_keeps_enforcing_after_sigkill_and_a_restart_adopts_it") {
        return;
    }
    let instance = format!("cli-restart-{}", std::process::id());
    let _cleanup = UnpinOnDrop(instance.clone());
    let dir = TempDir::new("cli-restart");
    let xmrig = fake_miner(&dir, "xmrig");
    let marker = dir.path().join("marker");
    let profile = write_profile(&dir, EXEC_PROFILE);
    let cg = test_cgroup();
    let (mut first, _) = start_watch(&instance, &profile, &cg, false);
    let before = pinned_links(&instance);
    assert!(!before.is_empty(), "nothing pinned");
    let policy = pinned_policy(&instance);
    first.kill().unwrap();
    first.wait().unwrap();
    // Nobody watches now: the kernel still refuses the miner, and keeps
    // the event in the pinned ring buffer.
    assert!(
        !ran_in(&cg, &xmrig, &marker),
        "xmrig ran after watch was killed"
    );

    // A new watch of the same instance adopts it: the same links running
    // the same programs (nothing attached again), the same policy.
    let (second, said) = start_watch(&instance, &profile, &cg, true);
    assert!(said.contains("kept as it was"), "{said}");
    let after = pinned_links(&instance);
    assert_eq!(after, before, "links were attached again");
    assert_eq!(pinned_policy(&instance), policy);
    assert!(
        !ran_in(&cg, &xmrig, &marker),
        "xmrig ran under the second watch"
    );
    // SIGTERM with --detach-on-exit: unpinned and detached.
    unsafe { libc::kill(second.id() as i32, libc::SIGTERM) };
    let out = second.into_inner().wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // The exec refused while nobody watched reached the second watch.
    let events = json_events(&String::from_utf8_lossy(&out.stdout));
    let refused = events
        .iter()
        // The exe path: on lsm the exec is refused before the task takes
        // the new name.
        .filter(|e| {
            e["rule"] == "miner-binary"
                && e["output_fields"]["proc.exepath"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/xmrig"))
        })
        .count();
    assert!(
        refused >= 2,
        "the exec refused while watch was down was not delivered: {events:?}"
    );
    assert!(pinned_instance(&instance).is_none());
    assert!(
        ran_in(&cg, &xmrig, &marker),
        "still enforced after a detaching stop"
    );
}

#[test]
fn a_restart_with_another_profile_swaps_it_in() {
    if !kernel_tests_enabled("a_restart_with_another_profile_swaps_it_in") {
        return;
    }
    let instance = format!("cli-swap-{}", std::process::id());
    let _cleanup = UnpinOnDrop(instance.clone());
    let dir = TempDir::new("cli-swap");
    let xmrig = fake_miner(&dir, "xmrig");
    let cpuminer = fake_miner(&dir, "cpuminer");
    let marker = dir.path().join("marker");
    let first_profile = write_profile(&dir, EXEC_PROFILE);
    let second_profile = dir.path().join("second.yaml");
    std::fs::write(
        &second_profile,
        EXEC_PROFILE
            .replace("cli-test", "cli-test-2")
            .replace("[xmrig]", "[cpuminer]"),
    )
    .unwrap();
    let cg = test_cgroup();
    let (mut first, _) = start_watch(&instance, &first_profile, &cg, false);
    let policy = pinned_policy(&instance);
    first.kill().unwrap();
    first.wait().unwrap();
    let (second, said) = start_watch(&instance, &second_profile, &cg, true);
    assert!(said.contains("swapped in"), "{said}");
    assert_ne!(pinned_policy(&instance), policy, "the old policy was kept");
    assert!(
        ran_in(&cg, &xmrig, &marker),
        "the old profile still applies"
    );
    assert!(
        !ran_in(&cg, &cpuminer, &marker),
        "the new profile does not apply"
    );
    unsafe { libc::kill(second.id() as i32, libc::SIGTERM) };
    let out = second.into_inner().wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(pinned_instance(&instance).is_none());
}

#[test]
fn remove_stale_ends_instances_whose_process_and_cgroups_are_gone() {
    if !kernel_tests_enabled("remove_stale_ends_instances_whose_process_and_cgroups_are_gone") {
        return;
    }
    let instance = format!("cli-stale-{}", std::process::id());
    let _cleanup = UnpinOnDrop(instance.clone());
    let dir = TempDir::new("cli-stale");
    let profile = write_profile(&dir, EXEC_PROFILE);
    let cg = test_cgroup();
    let (mut watch, _) = start_watch(&instance, &profile, &cg, false);
    watch.kill().unwrap();
    watch.wait().unwrap();
    // Its process is gone but its cgroup is there: not stale.
    let out = minerguard_cmd(&["remove", "--stale"]);
    assert!(out.status.success(), "{out:?}");
    let pinned = pinned_instance(&instance).expect("removed while its cgroup is there");
    assert_eq!(pinned["scopes"][0]["present"], true, "{pinned}");
    let links = pinned_links(&instance);
    cg.remove().unwrap();
    // Stale from now on: a `watch` or `run` that another test starts may
    // clean it up at any moment (they run the same cleanup), so it is
    // looked at only while it is there (in the emulated VM it was gone
    // before the next line once).
    if let Some(pinned) = pinned_instance(&instance) {
        assert_eq!(pinned["scopes"][0]["present"], false, "{pinned}");
    }
    let out = minerguard_cmd(&["remove", "--stale"]);
    assert!(out.status.success(), "{out:?}");
    // This call removes it, unless such a cleanup did or is doing it: then
    // this call finds it gone or in use, and it is gone once that one is
    // done (seconds in the emulated VM, where this raced once).
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours = stderr.contains(&format!("removed stale pinned instance `{instance}`"));
    println!("removed by this call: {ours}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while pinned_instance(&instance).is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(pinned_instance(&instance).is_none(), "{stderr}");
    assert!(!links.is_empty());
}

/// A process in `cg` that tries to connect to loopback `port` again and
/// again, writing one `.` per refused attempt and `connected` per
/// successful one into `tries`.
fn start_prober(cg: &minerguard::cgroup::OwnedCgroup, port: u16, tries: &Path) -> ChildGuard {
    let probe = format!(
        "while :; do if {{ exec 3<>/dev/tcp/127.0.0.1/{port}; }} 2>/dev/null; then echo connected; exec 3>&-; else printf .; fi; done >{}",
        tries.display()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &probe]);
    let procs = cg.procs_file().unwrap();
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || minerguard::cgroup::join_cgroup_raw(&procs));
    }
    ChildGuard::new(cmd.spawn().unwrap())
}

/// A newer build whose maps have another layout cannot adopt the old maps:
/// it makes new ones and replaces every program, the new attached before
/// the old go, with no moment in which a denied connect gets through.
#[test]
fn a_build_with_another_map_layout_replaces_everything_without_a_gap() {
    if !kernel_tests_enabled("a_build_with_another_map_layout_replaces_everything_without_a_gap") {
        return;
    }
    let instance = format!("cli-layout-{}", std::process::id());
    let _cleanup = UnpinOnDrop(instance.clone());
    let dir = TempDir::new("cli-layout");
    let xmrig = fake_miner(&dir, "xmrig");
    let marker = dir.path().join("marker");
    let pool = listener(false);
    pool.set_nonblocking(true).unwrap();
    let port = pool.local_addr().unwrap().port();
    let profile = write_profile(
        &dir,
        &format!("{EXEC_PROFILE}  - name: pool-port\n    action: deny\n    connect: {{ ports: [{port}] }}\n"),
    );
    let cg = test_cgroup();
    let (mut first, _) = start_watch(&instance, &profile, &cg, false);
    let before = pinned_links(&instance);
    let tries = dir.path().join("tries");
    let mut prober = start_prober(&cg, port, &tries);
    first.kill().unwrap();
    first.wait().unwrap();
    let (second, said) = start_watch_as(&instance, &profile, &cg, true, Some("newer"));
    assert!(said.contains("swapped in"), "{said}");
    let after = pinned_links(&instance);
    let names = |l: &[(String, u64, u64)]| l.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&after), names(&before), "other links pinned");
    for ((name, _, old), (_, _, new)) in before.iter().zip(&after) {
        assert_ne!(old, new, "{name} still runs the old program");
    }
    let maps_dirs: Vec<String> =
        std::fs::read_dir(Path::new("/sys/fs/bpf/minerguard").join(&instance))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("maps-"))
            .collect();
    assert_eq!(maps_dirs.len(), 1, "{maps_dirs:?}");
    assert!(maps_dirs[0].ends_with("newer"), "{maps_dirs:?}");
    assert!(
        !ran_in(&cg, &xmrig, &marker),
        "xmrig ran under the newer build"
    );
    let _ = prober.kill();
    let _ = prober.wait();
    let tried = std::fs::read_to_string(&tries).unwrap();
    assert!(!tried.is_empty(), "the prober never tried");
    assert!(!tried.contains("connected"), "a connect got through");
    assert!(
        matches!(pool.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the pool port was reached during the replacement"
    );
    unsafe { libc::kill(second.id() as i32, libc::SIGTERM) };
    let out = second.into_inner().wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(pinned_instance(&instance).is_none());
}

/// Start, SIGKILL and start `watch` again and again (100 times; set
/// MINERGUARD_RESTART_CYCLES for fewer, as the emulated VM does) while a
/// process in the scope tries to connect to a denied port in a loop:
/// no connection gets through at any moment, and nothing leaks (the
/// instance pins the same links, running the same programs, and the same
/// maps, every time).
#[test]
fn restarts_under_load_leak_nothing_and_leave_no_window() {
    if !kernel_tests_enabled("restarts_under_load_leak_nothing_and_leave_no_window") {
        return;
    }
    let cycles: usize = std::env::var("MINERGUARD_RESTART_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let instance = format!("cli-cycles-{}", std::process::id());
    let _cleanup = UnpinOnDrop(instance.clone());
    let dir = TempDir::new("cli-cycles");
    let pool = listener(false);
    pool.set_nonblocking(true).unwrap();
    let port = pool.local_addr().unwrap().port();
    let profile = write_profile(
        &dir,
        &format!("{EXEC_PROFILE}  - name: pool-port\n    action: deny\n    connect: {{ ports: [{port}] }}\n"),
    );
    let cg = test_cgroup();
    let (mut watch, _) = start_watch(&instance, &profile, &cg, false);
    let links = pinned_links(&instance);
    let maps = pinned_instance(&instance).unwrap()["maps"].clone();
    let tries = dir.path().join("tries");
    let mut prober = start_prober(&cg, port, &tries);
    let mut dots = 0;
    for cycle in 0..cycles {
        watch.kill().unwrap();
        watch.wait().unwrap();
        let (next, _) = start_watch(&instance, &profile, &cg, false);
        watch = next;
        assert_eq!(
            pinned_links(&instance),
            links,
            "cycle {cycle}: links changed"
        );
        assert_eq!(
            pinned_instance(&instance).unwrap()["maps"],
            maps,
            "cycle {cycle}: maps changed"
        );
        let now = std::fs::metadata(&tries).map(|m| m.len()).unwrap_or(0);
        assert!(now > dots, "cycle {cycle}: the prober stopped trying");
        dots = now;
    }
    watch.kill().unwrap();
    watch.wait().unwrap();
    let _ = prober.kill();
    let _ = prober.wait();
    let tried = std::fs::read_to_string(&tries).unwrap();
    assert!(!tried.contains("connected"), "a connect got through");
    assert!(
        matches!(pool.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the pool port was reached during a restart"
    );
    println!(
        "{cycles} restarts; {} refused connects; {} links, {maps} maps pinned throughout",
        tried.len(),
        links.len()
    );
    // The ids of its pinned maps, to check they go with it.
    let pin_dir = Path::new("/sys/fs/bpf/minerguard").join(&instance);
    let mut map_ids = Vec::new();
    for maps_dir in std::fs::read_dir(&pin_dir).unwrap() {
        let maps_dir = maps_dir.unwrap().path();
        if !maps_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("maps-")
        {
            continue;
        }
        for map in std::fs::read_dir(&maps_dir).unwrap() {
            let shown = Command::new("bpftool")
                .args(["-j", "map", "show", "pinned"])
                .arg(map.unwrap().path())
                .output()
                .expect("bpftool");
            let info: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
            map_ids.push((
                info["name"].as_str().unwrap_or("?").to_string(),
                info["id"].as_u64().unwrap(),
            ));
        }
    }
    assert!(map_ids.len() > 10, "{map_ids:?}");
    let out = minerguard_cmd(&["remove", "--instance", &instance]);
    assert!(out.status.success(), "{out:?}");
    assert!(!pin_dir.exists());
    // Nothing of it is left in the kernel: no link, no program, no map
    // (the kernel frees them after an RCU grace period: wait up to 30 s).
    let objects = links
        .iter()
        .flat_map(|(name, link, program)| {
            [
                (name.clone(), "link", *link),
                (name.clone(), "prog", *program),
            ]
        })
        .chain(map_ids.iter().map(|(name, id)| (name.clone(), "map", *id)));
    for (name, kind, id) in objects {
        let loaded = || {
            Command::new("bpftool")
                .args([kind, "show", "id", &id.to_string()])
                .output()
                .expect("bpftool")
                .status
                .success()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while loaded() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(!loaded(), "{kind} {id} of {name} is still loaded");
    }
}

#[test]
fn version_names_the_commit_and_the_backends() {
    let out = minerguard_cmd(&["--version"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("minerguard "), "{text}");
    assert!(text.contains("(commit "), "{text}");
    assert!(!text.contains("commit unknown"), "{text}");
    assert!(text.contains("backends: lsm, cgroup"), "{text}");
}

/// Where a test puts programs that must lie outside every scratch
/// directory: this build's tmp directory, or `MINERGUARD_TEST_PLAIN_DIR`
/// where the build's tree is read-only (the VM shares it so:
/// scripts/vm-test.sh sets it to a directory the guest may write).
fn plain_dir_root() -> PathBuf {
    std::env::var_os("MINERGUARD_TEST_PLAIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
}

/// Starts, in `cg`, a copy of `sleep` named `xmrig` (outside scratch
/// directories) and one in /dev/shm: two miners a scan must find under
/// container-strict. The /dev/shm copy is removed when the guard drops.
fn start_scan_suspects(cg: &minerguard::cgroup::OwnedCgroup, tag: &str) -> ScanSuspects {
    let dir = plain_dir_root().join(format!("cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let named = dir.join("xmrig");
    let shm = PathBuf::from(format!("/dev/shm/mg-cli-{tag}-{}", std::process::id()));
    for p in [&named, &shm] {
        let _ = std::fs::remove_file(p);
        std::fs::copy("/usr/bin/sleep", p).unwrap();
    }
    let start = |program: &Path| {
        let mut cmd = Command::new(program);
        cmd.arg("600");
        ChildGuard::new(spawn_in(Some(cg), &mut cmd).expect("start a suspect"))
    };
    ScanSuspects {
        named: start(&named),
        shm: start(&shm),
        benign: start(Path::new("/usr/bin/sleep")),
        files: vec![named, shm, dir],
    }
}

struct ScanSuspects {
    named: ChildGuard,
    shm: ChildGuard,
    benign: ChildGuard,
    files: Vec<PathBuf>,
}

impl Drop for ScanSuspects {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
            let _ = std::fs::remove_dir_all(f);
        }
    }
}

/// Whether a guarded child still runs.
fn still_running(child: &mut ChildGuard) -> bool {
    child.try_wait().unwrap().is_none()
}

/// Waits (bounded) for a guarded child to end; its status.
fn ended(child: &mut ChildGuard) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "still running");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn scan_kills_what_ran_before_reports_it_as_events_and_exits_1() {
    if unsafe { libc::geteuid() } != 0 {
        assert_eq!(
            std::env::var("MINERGUARD_ALLOW_SKIP").as_deref(),
            Ok("1"),
            "scan tests need root; MINERGUARD_ALLOW_SKIP=1 skips"
        );
        return;
    }
    let cg = test_cgroup();
    let mut s = start_scan_suspects(&cg, "scan");
    let path = cg.cgroup().path().to_str().unwrap().to_string();
    let scan = |extra: &[&str]| {
        let mut args = vec!["scan", "--cgroup", &path, "--profile", "container-strict"];
        args.extend_from_slice(extra);
        minerguard_cmd(&args)
    };

    // --dry-run: found, named, nothing killed.
    let out = scan(&["--dry-run", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let events = json_events(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(events.len(), 2, "{events:?}");
    for ev in &events {
        assert_eq!(ev["output_fields"]["minerguard.kind"], "scan");
        assert_eq!(ev["output_fields"]["minerguard.outcome"], "dry-run");
        assert_eq!(ev["action"], "audit");
    }
    assert!(still_running(&mut s.named) && still_running(&mut s.shm));

    // --host --dry-run finds them among every process of the host (and
    // acts on none); --exclude leaves their cgroup out.
    let host = |extra: &[&str]| {
        let mut args = vec!["scan", "--host", "--dry-run", "--json"];
        args.extend_from_slice(extra);
        let out = minerguard_cmd(&args);
        let pids: Vec<u64> = json_events(&String::from_utf8_lossy(&out.stdout))
            .iter()
            .filter(|e| e["output_fields"]["minerguard.outcome"] == "dry-run")
            .filter_map(|e| e["output_fields"]["proc.pid"].as_u64())
            .collect();
        // Other processes of the host may be found too: 1 when any is.
        assert_eq!(
            out.status.code(),
            Some(i32::from(!pids.is_empty())),
            "{out:?}"
        );
        pids
    };
    let suspects = [u64::from(s.named.id()), u64::from(s.shm.id())];
    let all = host(&["--profile", "container-strict"]);
    assert!(suspects.iter().all(|p| all.contains(p)), "{all:?}");
    let rest = host(&["--profile", "container-strict", "--exclude", &path]);
    assert!(!suspects.iter().any(|p| rest.contains(p)), "{rest:?}");
    assert!(still_running(&mut s.named) && still_running(&mut s.shm));

    // For real: killed, one event each naming its rule.
    let out = scan(&["--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let events = json_events(&String::from_utf8_lossy(&out.stdout));
    let rule_of = |pid: u32| {
        events
            .iter()
            .find(|e| e["output_fields"]["proc.pid"] == pid)
            .map(|e| e["rule"].as_str().unwrap().to_string())
    };
    assert_eq!(
        rule_of(s.named.id()).as_deref(),
        Some("miner-binary"),
        "{events:?}"
    );
    assert_eq!(
        rule_of(s.shm.id()).as_deref(),
        Some("scratch-dir-exec"),
        "{events:?}"
    );
    assert!(events
        .iter()
        .all(|e| e["action"] == "kill" && e["output_fields"]["minerguard.outcome"] == "killed"));
    assert_eq!(ended(&mut s.named).signal(), Some(libc::SIGKILL));
    assert_eq!(ended(&mut s.shm).signal(), Some(libc::SIGKILL));
    assert!(still_running(&mut s.benign), "the benign process runs on");

    // Nothing left to find: exit 0, a table with no rows.
    let out = scan(&[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 findings"));

    // Usage: no scope, a path that is no cgroup, the agent's scopes.
    for args in [
        vec!["scan"],
        vec!["scan", "--cgroup", "/proc"],
        vec!["scan", "--agent"],
    ] {
        let out = minerguard_cmd(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}

#[test]
fn watch_scans_what_ran_before_it_applied() {
    if !kernel_tests_enabled("watch_scans_what_ran_before_it_applied") {
        return;
    }
    let cg = test_cgroup();
    let mut s = start_scan_suspects(&cg, "watch");
    let mut cmd = Command::new(minerguard_bin());
    cmd.args([
        "watch",
        "--instance",
        "cli-scan-watch-test",
        "--detach-on-exit",
    ])
    .args([
        "--profile",
        "container-strict",
        "--scan-every",
        "1s",
        "--cgroup",
    ])
    .arg(cg.cgroup().path())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null());
    if let Ok(b) = std::env::var("MINERGUARD_TEST_BACKEND") {
        cmd.args(["--backend", &b]);
    }
    let mut watch = ChildGuard::new(cmd.spawn().unwrap());
    let stdout = watch.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut scan_events = Vec::new();
    while scan_events.len() < 2 {
        let line = wait_stdout(&lines);
        let ev: serde_json::Value = serde_json::from_str(&line).unwrap();
        if ev["output_fields"]["minerguard.kind"] == "scan" {
            scan_events.push(ev);
        }
    }
    let pids: Vec<u64> = scan_events
        .iter()
        .map(|e| e["output_fields"]["proc.pid"].as_u64().unwrap())
        .collect();
    assert!(pids.contains(&u64::from(s.named.id())), "{scan_events:?}");
    assert!(pids.contains(&u64::from(s.shm.id())), "{scan_events:?}");
    assert_eq!(ended(&mut s.named).signal(), Some(libc::SIGKILL));
    assert_eq!(ended(&mut s.shm).signal(), Some(libc::SIGKILL));
    assert!(still_running(&mut s.benign));

    // Periodic scans: a connection the kernel only audits (port 8080, in a
    // namespace of the test's own) made after apply is reported by a later
    // scan, and left open.
    let netns = TestNetns::new();
    let listener = netns.listener(8080);
    let script = format!("exec 3<>/dev/tcp/{}/8080 && exec sleep 600", netns.peer);
    let mut client = ChildGuard::new(
        spawn_in(Some(&cg), Command::new("/bin/bash").args(["-c", &script])).unwrap(),
    );
    let _conn = accept_within(&listener);
    let found = loop {
        let ev: serde_json::Value = serde_json::from_str(&wait_stdout(&lines)).unwrap();
        if ev["output_fields"]["minerguard.kind"] == "scan"
            && ev["output_fields"]["proc.pid"] == client.id()
        {
            break ev;
        }
    };
    assert_eq!(found["rule"], "miner-pool-port-shared");
    assert_eq!(found["output_fields"]["minerguard.outcome"], "reported");
    assert_eq!(found["output_fields"]["fd.sport"], 8080);
    assert!(
        still_running(&mut client),
        "an audit finding is left running"
    );
    unsafe { libc::kill(watch.id() as i32, libc::SIGTERM) };
    assert!(ended(&mut watch).success());
}

/// The next stdout line within 60 s (loading BPF under emulation is slow).
fn wait_stdout(lines: &std::sync::mpsc::Receiver<String>) -> String {
    lines
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("no line on stdout")
}

#[test]
fn watch_kills_a_miner_by_behaviour_and_reports_why() {
    let test = "watch_kills_a_miner_by_behaviour_and_reports_why";
    if !kernel_tests_enabled(test) {
        return;
    }
    let Some(xmrig) = xmrig_binary(test) else {
        return;
    };
    let dir = TempDir::new("cli-behaviour");
    // A short window; the other thresholds at their defaults.
    let profile = write_profile(
        &dir,
        "apiVersion: minerguard/v1\nname: cli-behaviour\nrules:\n  - name: mining-behaviour\n    action: kill\n    behaviour: { window_secs: 5 }\n",
    );
    let cg = test_cgroup();
    let pool = RxPool::start();
    let mut cmd = Command::new(minerguard_bin());
    cmd.args([
        "watch",
        "--detach-on-exit",
        "--instance",
        "cli-behaviour-test",
    ])
    .args(["--profile", profile.to_str().unwrap(), "--cgroup"])
    .arg(cg.cgroup().path())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    if let Ok(b) = std::env::var("MINERGUARD_TEST_BACKEND") {
        cmd.args(["--backend", &b]);
    }
    let (child, status_lines) = spawn_with_stderr_lines(&mut cmd);
    let child = ChildGuard::new(child);
    wait_line(&status_lines, "enforced by the");
    let mut miner = pool.light_miner(&xmrig, &cg, &dir, "kworker-util");
    let line = wait_line(&status_lines, "is mining");
    assert!(line.contains("kworker-util"), "{line}");
    let status = miner.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(pool.logins() > 0, "XMRig had its RandomX job");

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.into_inner().wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let events = json_events(&String::from_utf8_lossy(&out.stdout));
    let e = events
        .iter()
        .find(|e| e["output_fields"]["minerguard.kind"] == "behaviour")
        .unwrap_or_else(|| panic!("no behaviour event in {events:?}"));
    let f = &e["output_fields"];
    assert_eq!(e["rule"], "mining-behaviour");
    assert_eq!(e["action"], "kill");
    assert_eq!(f["proc.pid"], miner.id());
    assert_eq!(f["proc.name"], "kworker-util");
    assert_eq!(f["minerguard.outcome"], "killed");
    assert!(
        f["minerguard.behaviour.anon_mib"].as_u64().unwrap() >= 256,
        "{e}"
    );
    assert!(
        f["minerguard.behaviour.cpu.busy_threads"].as_u64().unwrap() >= 1,
        "{e}"
    );
}
