//! `minerguard agent` end to end on this machine's kernel, with a pods'
//! root made by the test (a kubelet-like tree under a test cgroup): the
//! baseline on the root, a binding's profile on each container the moment
//! it appears, a ConfigMap-style reload, containers that go, a restart that
//! adopts what the agent left.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc::Receiver,
    time::{Duration, Instant},
};

use common::*;
use minerguard::cgroup::OwnedCgroup;

fn minerguard_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_minerguard"))
}

/// Spawns the agent and streams its stderr lines.
fn start_agent(config: &Path) -> (ChildGuard, Receiver<String>) {
    let mut cmd = Command::new(minerguard_bin());
    cmd.args(["agent", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Ok(b) = std::env::var("MINERGUARD_TEST_BACKEND") {
        cmd.args(["--backend", &b]);
    }
    let (child, rx) = spawn_with_stderr_lines(&mut cmd);
    (ChildGuard::new(child), rx)
}

/// Waits (60 s at most) for a line containing `needle`; returns the lines
/// seen up to it.
fn wait_line(lines: &Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(l) => {
                let found = l.contains(needle);
                seen.push(l);
                if found {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line containing `{needle}` in {seen:?}");
}

/// Whether `program` ran inside `cg` (it creates `marker` when it runs).
fn ran_in(cg: &OwnedCgroup, program: &Path, marker: &Path) -> bool {
    let _ = std::fs::remove_file(marker);
    let _ = run_in(Some(cg), Command::new(program).arg(marker));
    marker.exists()
}

/// A ConfigMap volume as kubelet lays it out: `agent.yaml` is a symlink
/// through `..data`, a symlink to the current version's directory, swapped
/// atomically on change.
struct ConfigMapDir {
    dir: PathBuf,
    version: u32,
}

impl ConfigMapDir {
    fn new(dir: &Path, text: &str) -> Self {
        let mut c = ConfigMapDir {
            dir: dir.join("configmap"),
            version: 0,
        };
        std::fs::create_dir_all(&c.dir).unwrap();
        c.write(text);
        std::os::unix::fs::symlink("..data/agent.yaml", c.dir.join("agent.yaml")).unwrap();
        c
    }

    fn write(&mut self, text: &str) {
        self.version += 1;
        let v = format!("..v{}", self.version);
        std::fs::create_dir_all(self.dir.join(&v)).unwrap();
        std::fs::write(self.dir.join(&v).join("agent.yaml"), text).unwrap();
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&v, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }

    fn path(&self) -> PathBuf {
        self.dir.join("agent.yaml")
    }
}

/// Removes the agent's instance when the test ends, passed or not.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = minerguard::pin::remove(&self.0);
    }
}

const CONTAINER_ID: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904c3f1a52a1b1e5e7e0ab0c0de";
const SECOND_ID: &str = "9a060e54bf8d69288fbee4904c3f1a52a1b1e5e7e0ab0c0de4b825dc642cb6eb";

fn config(root: &Path, instance: &str, bound: bool) -> String {
    let mut text = format!(
        "apiVersion: minerguard/v1\nkind: AgentConfig\nbaseline: default\npodsRoot: {}\ninstance: {instance}\n",
        root.display()
    );
    if bound {
        // No runtime answers in this test: the binding matches every image.
        text.push_str("bindings:\n  - name: strict\n    match: { images: [\"*\"] }\n    profile: container-strict\n");
    }
    text
}

/// A kubelet-like tree under a test cgroup: root / QoS / pod / container
/// (`CONTAINER_ID`). Fields drop in order, innermost first (so keep the
/// tree whole: a field left out of a pattern drops at once).
struct PodTree {
    container: OwnedCgroup,
    pod: OwnedCgroup,
    _qos: OwnedCgroup,
    root: OwnedCgroup,
}

impl PodTree {
    fn create(pod_uid: &str) -> PodTree {
        let root = test_cgroup();
        let qos =
            OwnedCgroup::create(root.cgroup().path().join("kubepods-besteffort.slice")).unwrap();
        let pod = OwnedCgroup::create(
            (qos.cgroup().path()).join(format!("kubepods-besteffort-{pod_uid}.slice")),
        )
        .unwrap();
        let container = OwnedCgroup::create(
            (pod.cgroup().path()).join(format!("cri-containerd-{CONTAINER_ID}.scope")),
        )
        .unwrap();
        PodTree {
            container,
            pod,
            _qos: qos,
            root,
        }
    }
}

#[test]
fn the_agent_binds_containers_as_they_come_reloads_and_is_adopted() {
    if !kernel_tests_enabled("the_agent_binds_containers_as_they_come_reloads_and_is_adopted") {
        return;
    }
    let instance = format!("agent-test-{}", std::process::id());
    let _cleanup = RemoveOnDrop(instance.clone());
    let dir = TempDir::new("agent");
    let tree = PodTree::create("pod1");
    let (container, pod, root) = (&tree.container, &tree.pod, &tree.root);
    // A program in a scratch directory: container-strict refuses it, the
    // baseline does not.
    let shm = std::path::Path::new("/dev/shm").join(format!("mg-agent-{}", std::process::id()));
    std::fs::create_dir_all(&shm).unwrap();
    let scratch = shm.join("tool");
    std::fs::copy("/usr/bin/touch", &scratch).unwrap();
    let xmrig = fake_miner(&dir, "xmrig");
    let marker = dir.path().join("marker");
    let mut cm = ConfigMapDir::new(dir.path(), &config(root.cgroup().path(), &instance, true));

    let (mut agent, lines) = start_agent(&cm.path());
    let said = wait_line(&lines, "agent ready");
    assert!(
        said.iter()
            .any(|l| l.contains("binding `strict` applies profile `container-strict`")),
        "{said:?}"
    );
    // The baseline covers the pod, the binding the container.
    assert!(!ran_in(pod, &xmrig, &marker), "a miner ran in the pod");
    assert!(
        ran_in(pod, &scratch, &marker),
        "the baseline refused a scratch-dir program"
    );
    assert!(
        !ran_in(container, &scratch, &marker),
        "the binding does not apply"
    );

    // A container that appears later is bound within a tick.
    let second = OwnedCgroup::create(
        pod.cgroup()
            .path()
            .join(format!("cri-containerd-{SECOND_ID}.scope")),
    )
    .unwrap();
    wait_line(&lines, &SECOND_ID[..12]);
    assert!(
        !ran_in(&second, &scratch, &marker),
        "the new container is not bound"
    );

    // A ConfigMap update (the ..data swap) without the binding: the
    // containers keep the baseline only.
    cm.write(&config(root.cgroup().path(), &instance, false));
    wait_line(&lines, "configuration");
    wait_line(&lines, "no longer matches");
    assert!(
        ran_in(container, &scratch, &marker),
        "the binding still applies after the reload"
    );
    assert!(
        !ran_in(container, &xmrig, &marker),
        "the baseline went with the reload"
    );
    cm.write(&config(root.cgroup().path(), &instance, true));
    wait_line(&lines, "configuration");
    assert!(
        !ran_in(container, &scratch, &marker),
        "the binding did not come back"
    );

    // A container that goes is released.
    second.remove().unwrap();
    wait_line(&lines, &format!("container {} is gone", &SECOND_ID[..12]));

    // SIGTERM: the enforcement stays, and a new agent adopts it.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let out = agent.wait().unwrap();
    assert!(out.success(), "{out:?}");
    assert!(
        !ran_in(container, &scratch, &marker),
        "the agent's stop ended the binding"
    );
    let (again, lines) = start_agent(&cm.path());
    let said = wait_line(&lines, "agent ready");
    assert!(said.iter().any(|l| l.contains("1 bound")), "{said:?}");
    agent = again;
    assert!(
        !ran_in(container, &scratch, &marker),
        "the restarted agent does not enforce"
    );
    // Its events say which container: the refused exec in the container.
    assert!(!ran_in(container, &xmrig, &marker));
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let out = agent.into_inner().wait_with_output().unwrap();
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let miner = events
        .iter()
        .find(|e| e["rule"] == "miner-binary")
        .unwrap_or_else(|| panic!("no miner event in {events:?}"));
    assert_eq!(
        miner["output_fields"]["container.id"],
        &CONTAINER_ID[..12],
        "{miner}"
    );
    assert_eq!(
        miner["output_fields"]["container.full_id"], CONTAINER_ID,
        "{miner}"
    );
    assert!(
        !miner["hostname"].as_str().unwrap_or("").is_empty(),
        "{miner}"
    );

    let removed = Command::new(minerguard_bin())
        .args(["remove", "--instance", &instance])
        .output()
        .unwrap();
    assert!(removed.status.success(), "{removed:?}");
    assert!(
        ran_in(container, &scratch, &marker),
        "still enforced after remove"
    );
    let _ = std::fs::remove_dir_all(&shm);
}

/// A port on 127.0.0.1 that nothing listens on (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A GET of `path` on 127.0.0.1:`port`: (status code, body). Test-only
/// HTTP/1.0 by hand.
fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The lines not read yet.
fn drain(lines: &Receiver<String>) -> String {
    lines.try_iter().collect::<Vec<_>>().join("\n")
}

/// Waits (`within` at most) until the metric starting with `prefix` is at
/// least 1 on the agent's /metrics; fails with the page otherwise.
fn wait_metric(port: u16, prefix: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while metric(port, prefix).unwrap_or(0.0) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "{}",
            http_get(port, "/metrics").1
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value of the first `/metrics` line starting with `prefix`.
fn metric(port: u16, prefix: &str) -> Option<f64> {
    http_get(port, "/metrics")
        .1
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Receives HTTP POSTs on a loopback port (test-only: reads each request
/// whole by its Content-Length, answers 200) and hands their bodies over.
fn webhook_receiver() -> (u16, Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(64) {
            let Ok(conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(conn);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
        }
    });
    (port, rx)
}

#[test]
fn the_agent_posts_events_to_a_webhook_and_serves_metrics() {
    if !kernel_tests_enabled("the_agent_posts_events_to_a_webhook_and_serves_metrics") {
        return;
    }
    let instance = format!("agent-out-{}", std::process::id());
    let _cleanup = RemoveOnDrop(instance.clone());
    let dir = TempDir::new("agent-out");
    let root = test_cgroup();
    let container = OwnedCgroup::create(
        root.cgroup()
            .path()
            .join(format!("cri-containerd-{CONTAINER_ID}.scope")),
    )
    .unwrap();
    let xmrig = fake_miner(&dir, "xmrig");
    let marker = dir.path().join("marker");
    let (hook_port, posts) = webhook_receiver();
    let metrics_port = free_port();
    let write_config = |hook_port: u16| {
        let path = dir.path().join("agent.yaml");
        std::fs::write(
            &path,
            format!(
                "{}outputs:\n  webhook: {{ url: \"http://127.0.0.1:{hook_port}/\", timeout: 1s }}\nmetrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}\n",
                config(root.cgroup().path(), &instance, false)
            ),
        )
        .unwrap();
        path
    };

    // A receiver that answers: it gets the event, Falco-shaped.
    let (agent, lines) = start_agent(&write_config(hook_port));
    wait_line(&lines, "agent ready");
    assert_eq!(http_get(metrics_port, "/readyz").0, 200);
    assert_eq!(http_get(metrics_port, "/healthz").0, 200);
    assert!(!ran_in(&container, &xmrig, &marker), "the miner ran");
    let post = posts
        .recv_timeout(Duration::from_secs(30))
        .expect("the webhook got nothing");
    let event: serde_json::Value = serde_json::from_str(&post).unwrap();
    assert_eq!(event["rule"], "miner-binary", "{event}");
    assert_eq!(event["source"], "minerguard", "{event}");
    assert!(
        !event["hostname"].as_str().unwrap_or("").is_empty(),
        "{event}"
    );
    assert_eq!(
        event["output_fields"]["container.id"],
        &CONTAINER_ID[..12],
        "{event}"
    );
    wait_metric(
        metrics_port,
        "minerguard_webhook_deliveries_total{outcome=\"delivered\"}",
        Duration::from_secs(30),
    );
    // deny, or kill where the backend can only kill an exec.
    let counted = metric(
        metrics_port,
        "minerguard_events_total{rule=\"miner-binary\"",
    );
    assert!(
        counted.unwrap_or(0.0) >= 1.0,
        "{}",
        http_get(metrics_port, "/metrics").1
    );
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let out = agent.into_inner().wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, drain(&lines));

    // A receiver that is down: enforcement and stdout go on, the failures
    // are counted.
    let (agent, lines) = start_agent(&write_config(free_port()));
    wait_line(&lines, "agent ready");
    assert!(
        !ran_in(&container, &xmrig, &marker),
        "the miner ran with the receiver down"
    );
    wait_metric(
        metrics_port,
        "minerguard_webhook_deliveries_total{outcome=\"failed\"}",
        Duration::from_secs(60),
    );
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let out = agent.into_inner().wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.contains("\"miner-binary\"")),
        "no event on stdout: {stdout}"
    );
}

/// Waits (`within` at most) for `child` to end; its status, or `None`.
fn wait_end(child: &mut ChildGuard, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Miners that ran before the agent: the one in the pod is killed by the
/// baseline's scan at start; the one in the bound container is judged by
/// its binding's profile (audit: reported, left running) and not by the
/// baseline's; once the binding's profile changes to one that kills, the
/// container is scanned again and its miner killed. Findings go out as
/// events with the container's fields.
#[test]
fn the_agent_scans_what_ran_before_it_each_scope_by_its_own_profile() {
    use std::os::unix::process::ExitStatusExt;
    if !kernel_tests_enabled("the_agent_scans_what_ran_before_it_each_scope_by_its_own_profile") {
        return;
    }
    let instance = format!("agent-scan-{}", std::process::id());
    let _cleanup = RemoveOnDrop(instance.clone());
    let dir = TempDir::new("agent-scan");
    let tree = PodTree::create("pod2");
    let (container, pod, root) = (&tree.container, &tree.pod, &tree.root);
    // `sleep` named like a miner, started before the agent.
    let xmrig = dir.path().join("xmrig");
    std::fs::copy("/usr/bin/sleep", &xmrig).unwrap();
    let start = |cg: &OwnedCgroup| {
        ChildGuard::new(spawn_in(Some(cg), Command::new(&xmrig).arg("600")).unwrap())
    };
    let mut in_pod = start(pod);
    let mut in_container = start(container);
    let benign = start_benign(pod);
    let config = |profile: &str| {
        format!(
            "apiVersion: minerguard/v1\nkind: AgentConfig\nbaseline: default\npodsRoot: {}\ninstance: {instance}\nscan: {{ every: 0 }}\nbindings:\n  - name: watched\n    match: {{ images: [\"*\"] }}\n    profile: {profile}\n",
            root.cgroup().path().display()
        )
    };
    let mut cm = ConfigMapDir::new(dir.path(), &config("audit"));

    // `scan --agent --dry-run`: the same plan, without an agent, acting on
    // nothing.
    let out = Command::new(minerguard_bin())
        .args(["scan", "--dry-run", "--json", "--agent"])
        .arg(cm.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let planned: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let profiles: Vec<(&str, &str)> = (planned.iter())
        .map(|e| {
            (
                e["output_fields"]["cgroup.path"].as_str().unwrap(),
                e["output_fields"]["minerguard.profile"].as_str().unwrap(),
            )
        })
        .collect();
    let (pod_path, container_path) = (
        pod.cgroup().path().to_str().unwrap(),
        container.cgroup().path().to_str().unwrap(),
    );
    assert!(profiles.contains(&(pod_path, "default")), "{profiles:?}");
    assert!(
        profiles.contains(&(container_path, "audit")),
        "{profiles:?}"
    );
    assert!(
        !profiles.contains(&(container_path, "default")),
        "the baseline judged a bound container: {profiles:?}"
    );
    assert!(in_pod.try_wait().unwrap().is_none(), "a dry run killed");

    let (agent, lines) = start_agent(&cm.path());
    wait_line(&lines, "agent ready");
    let ended = wait_end(&mut in_pod, Duration::from_secs(30));
    assert_eq!(
        ended.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "the baseline's scan did not kill the pod's miner: {ended:?}"
    );
    wait_line(&lines, "scan (binding `watched`");
    assert!(
        in_container.try_wait().unwrap().is_none(),
        "the bound container's miner was killed: the baseline judged it, or audit killed"
    );
    let mut benign = benign;
    assert!(
        benign.try_wait().unwrap().is_none(),
        "a benign process died"
    );

    // The binding's profile now kills: the container is scanned again.
    cm.write(&config("container-strict"));
    wait_line(&lines, "configuration");
    let ended = wait_end(&mut in_container, Duration::from_secs(30));
    assert_eq!(
        ended.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "the changed binding's scan did not kill the container's miner: {ended:?}"
    );
    assert!(
        benign.try_wait().unwrap().is_none(),
        "a benign process died"
    );

    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let out = agent.into_inner().wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let findings: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["output_fields"]["minerguard.kind"] == "scan")
        .collect();
    let of = |cgroup: &OwnedCgroup, outcome: &str| {
        findings
            .iter()
            .find(|e| {
                e["output_fields"]["cgroup.path"] == cgroup.cgroup().path().to_str().unwrap()
                    && e["output_fields"]["minerguard.outcome"] == outcome
            })
            .unwrap_or_else(|| panic!("no `{outcome}` finding in {cgroup:?}: {findings:#?}"))
    };
    let killed = of(pod, "killed");
    assert_eq!(killed["output_fields"]["minerguard.profile"], "default");
    assert_eq!(killed["rule"], "miner-binary");
    assert!(!killed["hostname"].as_str().unwrap_or("").is_empty());
    let reported = of(container, "reported");
    assert_eq!(reported["output_fields"]["minerguard.profile"], "audit");
    assert_eq!(
        reported["output_fields"]["container.id"],
        &CONTAINER_ID[..12],
        "{reported}"
    );
    let killed = of(container, "killed");
    assert_eq!(
        killed["output_fields"]["minerguard.profile"],
        "container-strict"
    );
    assert_eq!(
        findings
            .iter()
            .filter(|e| e["output_fields"]["proc.pid"] == benign.id())
            .count(),
        0,
        "a benign process was reported: {findings:#?}"
    );
}

/// A plain `sleep` in `cg`: nothing any profile judges.
fn start_benign(cg: &OwnedCgroup) -> ChildGuard {
    ChildGuard::new(spawn_in(Some(cg), Command::new("/usr/bin/sleep").arg("600")).unwrap())
}

/// A renamed XMRig hashing in a container, under a baseline whose
/// `behaviour` rule kills: the agent's detector kills it, the pool sees it
/// go, and the event says which container it was.
#[test]
fn the_agent_kills_a_miner_by_behaviour_and_names_its_container() {
    use std::os::unix::process::ExitStatusExt;
    let test = "the_agent_kills_a_miner_by_behaviour_and_names_its_container";
    if !kernel_tests_enabled(test) {
        return;
    }
    let Some(xmrig) = xmrig_binary(test) else {
        return;
    };
    let instance = format!("agent-behaviour-{}", std::process::id());
    let _cleanup = RemoveOnDrop(instance.clone());
    let dir = TempDir::new("agent-behaviour");
    let tree = PodTree::create("pod3");
    std::fs::write(
        dir.path().join("baseline.yaml"),
        "apiVersion: minerguard/v1\nname: baseline-behaviour\nrules:\n  - name: mining-behaviour\n    action: kill\n    behaviour: { window_secs: 5 }\n",
    )
    .unwrap();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: minerguard/v1\nkind: AgentConfig\nbaseline: ./baseline.yaml\npodsRoot: {}\ninstance: {instance}\n",
            tree.root.cgroup().path().display()
        ),
    )
    .unwrap();
    let (agent, lines) = start_agent(&config);
    wait_line(&lines, "agent ready");
    let pool = RxPool::start();
    let mut miner = pool.light_miner(&xmrig, &tree.container, &dir, "kworker-util");
    let said = wait_line(&lines, "is mining");
    assert!(said.last().unwrap().contains("kworker-util"), "{said:?}");
    let ended = wait_end(&mut miner, Duration::from_secs(60));
    assert_eq!(
        ended.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "{ended:?}"
    );
    assert!(pool.logins() > 0, "XMRig never had its job");

    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let out = agent.into_inner().wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let e = events
        .iter()
        .find(|e| e["output_fields"]["minerguard.kind"] == "behaviour")
        .unwrap_or_else(|| panic!("no behaviour event in {events:?}"));
    assert_eq!(e["rule"], "mining-behaviour", "{e}");
    assert_eq!(e["action"], "kill", "{e}");
    assert_eq!(
        e["output_fields"]["container.id"],
        &CONTAINER_ID[..12],
        "{e}"
    );
    assert!(!e["hostname"].as_str().unwrap_or("").is_empty(), "{e}");
}
