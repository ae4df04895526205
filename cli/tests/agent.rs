//! `minerguard agent` end to end on this machine's kernel, with a pods'
//! root made by the test (a kubelet-like tree under a test cgroup): the
//! baseline on the root, a binding's profile on each container the moment
//! it appears, a ConfigMap-style reload, containers that go, a restart that
//! adopts what the agent left.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::Receiver,
    time::{Duration, Instant},
};

use common::*;
use minerguard::cgroup::OwnedCgroup;

fn minerguard_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_minerguard"))
}

/// Spawns the agent and streams its stderr lines.
fn start_agent(config: &Path) -> (Child, Receiver<String>) {
    use std::io::BufRead;
    let mut cmd = Command::new(minerguard_bin());
    cmd.args(["agent", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Ok(b) = std::env::var("MINERGUARD_TEST_BACKEND") {
        cmd.args(["--backend", &b]);
    }
    let mut child = cmd.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    (child, rx)
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

#[test]
fn the_agent_binds_containers_as_they_come_reloads_and_is_adopted() {
    if !kernel_tests_enabled("the_agent_binds_containers_as_they_come_reloads_and_is_adopted") {
        return;
    }
    let instance = format!("agent-test-{}", std::process::id());
    let _cleanup = RemoveOnDrop(instance.clone());
    let dir = TempDir::new("agent");
    // A kubelet-like tree: root / QoS / pod / container.
    let root = test_cgroup();
    let qos = OwnedCgroup::create(root.cgroup().path().join("kubepods-besteffort.slice")).unwrap();
    let pod =
        OwnedCgroup::create(qos.cgroup().path().join("kubepods-besteffort-pod1.slice")).unwrap();
    let container = OwnedCgroup::create(
        pod.cgroup()
            .path()
            .join(format!("cri-containerd-{CONTAINER_ID}.scope")),
    )
    .unwrap();
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
    assert!(!ran_in(&pod, &xmrig, &marker), "a miner ran in the pod");
    assert!(
        ran_in(&pod, &scratch, &marker),
        "the baseline refused a scratch-dir program"
    );
    assert!(
        !ran_in(&container, &scratch, &marker),
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
        ran_in(&container, &scratch, &marker),
        "the binding still applies after the reload"
    );
    assert!(
        !ran_in(&container, &xmrig, &marker),
        "the baseline went with the reload"
    );
    cm.write(&config(root.cgroup().path(), &instance, true));
    wait_line(&lines, "configuration");
    assert!(
        !ran_in(&container, &scratch, &marker),
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
        !ran_in(&container, &scratch, &marker),
        "the agent's stop ended the binding"
    );
    let (again, lines) = start_agent(&cm.path());
    let said = wait_line(&lines, "agent ready");
    assert!(said.iter().any(|l| l.contains("1 bound")), "{said:?}");
    agent = again;
    assert!(
        !ran_in(&container, &scratch, &marker),
        "the restarted agent does not enforce"
    );
    // Its events say which container: the refused exec in the container.
    assert!(!ran_in(&container, &xmrig, &marker));
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let out = agent.wait_with_output().unwrap();
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
        ran_in(&container, &scratch, &marker),
        "still enforced after remove"
    );
    let _ = std::fs::remove_dir_all(&shm);
}
