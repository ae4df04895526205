//! The agent end to end (the proof): a containerd of the test's own
//! runs real containers (runc) in a kubelet-like cgroup tree (cgroupfs
//! driver: `<podsRoot>/kubepods/besteffort/pod<uid>/<container id>`, the
//! pods' root a test cgroup), labelled the way containerd's CRI plugin
//! labels a pod's sandbox and its containers. The agent, started in this
//! process on that root, puts the baseline (`default`) on every pod and
//! `container-strict` on the one container its binding matches (by pod
//! namespace, pod labels and container name); what runs in the containers
//! (`ctr task exec`) shows which profile holds where, and the events it
//! reports name the node, the container and the pod.
//!
//! The same with Podman as the runtime: a `podman system service` of the
//! test's own (its own store) describes a container Podman runs (runc,
//! cgroupfs manager: `<podsRoot>/kubepods/besteffort/pod<uid>/libpod-<id>`)
//! with the CRI labels; the agent reads it through Podman's API.
//!
//! Needs root, a usable backend, containerd, ctr, runc and podman (which
//! builds the image: no registry is reachable); scripts/install-deps.sh
//! installs them. Without them the tests fail, unless
//! MINERGUARD_ALLOW_SKIP=1. The tests run one at a time.

mod support;

use minerguard::{cgroup::OwnedCgroup, EnforcerOptions};
use minerguard_agent::{
    agent::Agent, config::AgentConfig, enrich::Enricher, identity::RuntimeKind,
    runtime::MetadataSource,
};
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::*;

/// The containerd namespace of the test's containers (given to the agent
/// as `runtimeNamespace`).
const NAMESPACE: &str = "minerguard-e2e";

/// How long one `ctr` command may take before the test is declared stuck.
const CTR_LIMIT: &str = "120";

/// How long one `podman` command may take before the test is declared
/// stuck (seconds).
const PODMAN_LIMIT: u32 = 120;

/// Held by each test while it runs: one at a time (each runs a runtime,
/// containers and an agent).
static SERIAL: Mutex<()> = Mutex::new(());

/// The test's turn ([`SERIAL`]; a failed test before it does not matter).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why the kernel side cannot run here, if it cannot: root and a backend.
fn no_backend() -> Option<String> {
    let report = minerguard::probe();
    report.backend.is_none().then(|| {
        format!(
            "no usable enforcement backend: {}",
            report.missing().join("; ")
        )
    })
}

/// A container id as runtimes make them (64 lower-case hex digits), its
/// first 12 unique to `n` and this process.
fn container_id(n: u8) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let seed = format!("{n:02x}{:08x}{nanos:016x}", std::process::id());
    format!("{seed:0<64}")
}

/// The pods' root: a test cgroup (killed and removed on drop) and what the
/// runtime made under its name in the cgroup v1 hierarchies of a hybrid
/// host.
struct PodsRoot {
    cgroup: Option<OwnedCgroup>,
    path: PathBuf,
    /// The cgroup v2 mount.
    mount: PathBuf,
}

impl PodsRoot {
    fn create() -> PodsRoot {
        let cgroup = OwnedCgroup::create_in_root("minerguard-agent-e2e")
            .expect("create the pods' root test cgroup");
        let path = cgroup.cgroup().path().to_path_buf();
        PodsRoot {
            cgroup: Some(cgroup),
            path,
            mount: minerguard::cgroup::cgroup2_mount().unwrap(),
        }
    }

    /// A pod's cgroup as kubelet's cgroupfs driver makes it; its path
    /// relative to the cgroup mount (the runtime's cgroup parent).
    fn pod(&self, uid: &str) -> String {
        let dir = self
            .path
            .join("kubepods/besteffort")
            .join(format!("pod{uid}"));
        std::fs::create_dir_all(&dir).expect("create a pod's cgroup");
        format!("/{}", dir.strip_prefix(&self.mount).unwrap().display())
    }
}

/// Removes the empty directories of `dir`'s tree, deepest first.
fn rmdir_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Drop for PodsRoot {
    fn drop(&mut self) {
        // Kills what is left in it, removes the tree.
        drop(self.cgroup.take());
        let (Some(name), Some(hierarchies)) = (self.path.file_name(), self.mount.parent()) else {
            return;
        };
        // A hybrid host: the v1 hierarchies beside the v2 mount.
        if hierarchies != Path::new("/sys/fs/cgroup") {
            return;
        }
        // A runtime's monitor may still be leaving one of them (a while).
        let deadline = Instant::now() + Duration::from_secs(5);
        for h in std::fs::read_dir(hierarchies)
            .into_iter()
            .flatten()
            .flatten()
        {
            if h.path() != self.mount {
                let tree = h.path().join(name);
                rmdir_tree(&tree);
                while tree.exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                    rmdir_tree(&tree);
                }
            }
        }
    }
}

/// A containerd of the test's own (everything under the test's temporary
/// directory; runc's state and the IO fifos too); stopped on drop, with
/// what it left (shims, mounts).
struct Containerd {
    daemon: Option<Daemon>,
    socket: PathBuf,
    dir: PathBuf,
}

impl Containerd {
    fn start(dir: &TempDir) -> Containerd {
        let (daemon, socket) = start_containerd(dir);
        let c = Containerd {
            daemon: Some(daemon),
            socket,
            dir: dir.path().to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.ctr(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "containerd did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// `ctr` `args` against this containerd in [`NAMESPACE`] (bounded in
    /// time).
    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["-k", "5", CTR_LIMIT, "ctr", "--address"])
            .arg(&self.socket)
            .args(["--namespace", NAMESPACE])
            .args(args)
            .output()
            .expect("run ctr")
    }

    /// `ctr` `args`, asserted to succeed; its stdout.
    fn ctr_ok(&self, args: &[&str]) -> String {
        ok(&format!("ctr {}", args.join(" ")), self.ctr(args))
    }

    /// Where runc keeps its state (not the host's /run/containerd/runc).
    fn runc_root(&self) -> String {
        self.dir.join("runc").display().to_string()
    }

    /// Where ctr makes a process's IO fifos (not the host's
    /// /run/containerd/fifo).
    fn fifo_dir(&self) -> String {
        let dir = self.dir.join("fifo");
        std::fs::create_dir_all(&dir).unwrap();
        dir.display().to_string()
    }

    /// `args` run in container `id` as process `exec_id` (`ctr task
    /// exec`).
    fn exec(&self, id: &str, exec_id: &str, args: &[&str]) -> Output {
        let fifo = self.fifo_dir();
        let mut all = vec![
            "task",
            "exec",
            "--exec-id",
            exec_id,
            "--fifo-dir",
            &fifo,
            id,
        ];
        all.extend_from_slice(args);
        self.ctr(&all)
    }

    /// The shims this containerd started (their command line names its
    /// socket).
    fn shims(&self) -> Vec<i32> {
        let socket = self.socket.as_os_str().as_encoded_bytes();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .flatten()
            .filter_map(|p| {
                let pid: i32 = p.file_name().to_str()?.parse().ok()?;
                let cmdline = std::fs::read(p.path().join("cmdline")).ok()?;
                let mut args = cmdline.split(|b| *b == 0);
                let program = args.next()?;
                (program.ends_with(b"containerd-shim-runc-v2") && args.any(|a| a == socket))
                    .then_some(pid)
            })
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        drop(self.daemon.take());
        // Shims of tasks that could not be deleted: the containers' own
        // processes die with the pods' root.
        for pid in self.shims() {
            // SAFETY: plain syscall, on a shim this test's containerd started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        unmount_under(&self.dir);
    }
}

/// The test's containers: tasks killed and deleted, containers deleted on
/// drop (before containerd stops).
struct Containers<'a> {
    containerd: &'a Containerd,
    ids: Vec<String>,
}

impl Containers<'_> {
    /// A pod's sandbox as containerd's CRI plugin keeps it (a container
    /// with the pod's labels beside the CRI ones; never started here).
    fn sandbox(&mut self, image: &str, pod: &Pod) {
        let id = format!(
            "sandbox-{}-{}-{}",
            pod.namespace,
            pod.name,
            std::process::id()
        );
        self.ids.push(id.clone());
        let mut args = vec!["containers".to_string(), "create".to_string()];
        for (k, v) in pod.cri_labels("sandbox").into_iter().chain(
            pod.labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        ) {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        args.push(image.to_string());
        args.push(id);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.containerd.ctr_ok(&args);
    }

    /// Runs `sleep 1000` detached as container `id` (the pod's container
    /// `name`) in its own cgroup under the pod's: `<pod>/<id>`, as the
    /// cgroupfs driver places it.
    fn run(&mut self, image: &str, pod: &Pod, name: &str, id: &str, pod_cgroup: &str) {
        self.ids.push(id.to_string());
        let runc_root = self.containerd.runc_root();
        let cgroup = format!("{pod_cgroup}/{id}");
        let mut args: Vec<String> = [
            "run",
            "--detach",
            "--null-io",
            "--runtime",
            "io.containerd.runc.v2",
            "--runc-root",
            &runc_root,
            "--cgroup",
            &cgroup,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut labels = pod.cri_labels("container");
        labels.push(("io.kubernetes.container.name".into(), name.into()));
        for (k, v) in labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        for a in [image, id, "/bin/busybox", "sleep", "1000"] {
            args.push(a.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.containerd.ctr_ok(&args);
    }
}

impl Drop for Containers<'_> {
    fn drop(&mut self) {
        for id in self.ids.iter().rev() {
            let c = self.containerd;
            if c.ctr(&["task", "kill", "--signal", "SIGKILL", id])
                .status
                .success()
            {
                let deadline = Instant::now() + Duration::from_secs(10);
                while !c.ctr(&["task", "delete", id]).status.success() && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            let _ = c.ctr(&["task", "delete", "--force", id]);
            let _ = c.ctr(&["containers", "delete", id]);
        }
    }
}

/// A pod: its CRI identity and labels.
struct Pod {
    uid: String,
    namespace: &'static str,
    name: &'static str,
    labels: Vec<(&'static str, &'static str)>,
}

impl Pod {
    /// The CRI labels of its sandbox or of one of its containers (`kind`).
    fn cri_labels(&self, kind: &str) -> Vec<(String, String)> {
        [
            ("io.cri-containerd.kind", kind),
            ("io.kubernetes.pod.uid", &self.uid),
            ("io.kubernetes.pod.namespace", self.namespace),
            ("io.kubernetes.pod.name", self.name),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// Removes the agent's pinned instance on drop (the agent dropped first:
/// the enforcement it pinned outlives it otherwise).
struct PinnedInstance(Option<String>);

impl PinnedInstance {
    fn remove(mut self) {
        let name = self.0.take().unwrap();
        minerguard::pin::remove(&name).expect("remove the agent's pinned instance");
        assert!(
            minerguard::pin::instance(&name).unwrap().is_none(),
            "instance {name} is still pinned"
        );
    }
}

impl Drop for PinnedInstance {
    fn drop(&mut self) {
        if let Some(name) = self.0.take() {
            let _ = minerguard::pin::remove(&name);
        }
    }
}

/// stdout and stderr of `out`, for messages.
fn said(out: &Output) -> String {
    format!(
        "{} (stdout {:?}, stderr {:?})",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The cgroup id (inode) of `path`.
fn cgroup_id(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("the container's cgroup {}: {e}", path.display()))
        .ino()
}

/// Starts the agent as when the runtime's API was down (each container is
/// known from its cgroup and keeps the baseline: none is bound), then
/// gives it the API, as the CLI does when it reaches it (every 10 s): the
/// agent, and the notes of that second step (the bindings).
fn start_then_reach(
    config_path: &Path,
    config: AgentConfig,
    source: Box<dyn MetadataSource>,
    started: Instant,
) -> (Agent, Vec<String>) {
    let (mut agent, notes) = Agent::start(config_path, config, None, EnforcerOptions::default())
        .expect("the agent starts");
    println!("{:?}: agent started without the API:", started.elapsed());
    for note in &notes {
        println!("  {note}");
    }
    assert_eq!(agent.counts().1, 0, "bound without the API: {notes:?}");
    let notes = agent.set_source(source);
    println!("{:?}: the API reached:", started.elapsed());
    for note in &notes {
        println!("  {note}");
    }
    (agent, notes)
}

#[test]
fn the_agent_binds_a_real_containerd_pod_by_namespace_and_labels() {
    let test = "e2e::the_agent_binds_a_real_containerd_pod_by_namespace_and_labels";
    if !skip_unless(
        test,
        missing(&["containerd", "ctr", "runc", "podman"]).or_else(no_backend),
    ) {
        return;
    }
    let _turn = serial();
    let started = Instant::now();
    let pid = std::process::id();
    let dir = TempDir::new("e2e");

    // The image: busybox, the app (/opt/app/echo) and a miner
    // (/opt/app/xmrig), both busybox copies; saved for containerd.
    let podman = Podman::new(&dir);
    let root = busybox_rootfs(&dir);
    for d in ["opt/app", "dev/shm"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for app in ["opt/app/echo", "opt/app/xmrig"] {
        std::fs::copy(busybox(), root.join(app)).unwrap();
    }
    let repository = "localhost/minerguard-agent-e2e";
    let tag = pid.to_string();
    let image = format!("{repository}:{tag}");
    podman.import(&dir, &root, &image);
    let archive = podman.save_oci(&dir, &image);

    // Dropped in reverse: the agent, its pinned instance, the containers,
    // containerd (shims, mounts), the pods' cgroups, the directory.
    let pods_root = PodsRoot::create();
    let containerd = Containerd::start(&dir);
    containerd.ctr_ok(&[
        "image",
        "import",
        "--base-name",
        repository,
        archive.to_str().unwrap(),
    ]);
    println!(
        "{:?}: containerd up, image {image} imported",
        started.elapsed()
    );

    // Two pods of the same shape (labels tier=web, a container `app`), in
    // two namespaces: the binding matches tenant-a's only.
    let pod_a = Pod {
        uid: format!("6c2a1b0e-1f2d-4c3b-9a8e-{pid:012}"),
        namespace: "tenant-a",
        name: "web-0",
        labels: vec![("tier", "web"), ("app", "shop")],
    };
    let pod_b = Pod {
        uid: format!("0b7e3c1d-5a4f-4e2b-8c9d-{pid:012}"),
        namespace: "tenant-b",
        name: "web-0",
        labels: vec![("tier", "web"), ("app", "shop")],
    };
    let (id_a, id_b) = (container_id(0xa), container_id(0xb));
    let mut containers = Containers {
        containerd: &containerd,
        ids: Vec::new(),
    };
    let mut cgroups = Vec::new();
    for (pod, id) in [(&pod_a, &id_a), (&pod_b, &id_b)] {
        let pod_cgroup = pods_root.pod(&pod.uid);
        containers.sandbox(&image, pod);
        containers.run(&image, pod, "app", id, &pod_cgroup);
        let path = pods_root.mount.join(&pod_cgroup[1..]).join(id);
        assert!(
            path.is_dir(),
            "container {id} is not in its cgroup {}",
            path.display()
        );
        cgroups.push(cgroup_id(&path));
    }
    let (cg_a, cg_b) = (cgroups[0], cgroups[1]);
    println!(
        "{:?}: pods running: {}/{} {} (cgroup {cg_a}), {}/{} {} (cgroup {cg_b})",
        started.elapsed(),
        pod_a.namespace,
        pod_a.name,
        &id_a[..12],
        pod_b.namespace,
        pod_b.name,
        &id_b[..12]
    );

    // The agent, as its configuration file says.
    let instance = format!("agent-e2e-{pid}");
    let config_path = dir.path().join("agent.yaml");
    std::fs::write(
        &config_path,
        format!(
            "apiVersion: minerguard/v1
kind: AgentConfig
baseline: default
runtime: containerd
runtimeEndpoint: {socket}
runtimeNamespace: {NAMESPACE}
podsRoot: {root}
instance: {instance}
bindings:
  - name: tenants-strict
    match:
      namespaces: [tenant-a]
      podLabels: {{ tier: web }}
      containers: [app]
    profile: container-strict
",
            socket = containerd.socket.display(),
            root = pods_root.path.display(),
        ),
    )
    .unwrap();
    let config = AgentConfig::load(&config_path).expect("the configuration");
    let source = minerguard_agent::runtime::connect(
        RuntimeKind::Containerd,
        config.runtime_endpoint.as_deref().unwrap(),
        &config.runtime_namespace,
    )
    .expect("connect to containerd");
    let pinned = PinnedInstance(Some(instance.clone()));
    let (mut agent, notes) = start_then_reach(&config_path, config, source, started);
    let bound = format!(
        "container tenant-a/web-0/app ({}): binding `tenants-strict` applies profile `container-strict`",
        &id_a[..12]
    );
    assert!(notes.contains(&bound), "no note {bound:?}: {notes:?}");
    assert!(
        !notes.iter().any(|n| n.contains(&id_b[..12])),
        "the tenant-b container was bound, or could not be described: {notes:?}"
    );
    assert_eq!(agent.counts(), (2, 1), "containers known, bound: {notes:?}");
    let again = agent.tick();
    assert!(again.is_empty(), "a tick with nothing changed: {again:?}");

    // A program written to /tmp: container-strict refuses it, the
    // baseline does not. The image's own programs run under both.
    let script = "/bin/busybox echo image-ran; \
                  /bin/busybox cp /bin/busybox /tmp/echo; /tmp/echo tmp-ran; \
                  /opt/app/echo app-ran";
    let sh = ["/bin/busybox", "sh", "-c", script];
    let out_a = containerd.exec(&id_a, "scratch-a", &sh);
    let out_b = containerd.exec(&id_b, "scratch-b", &sh);
    let (stdout_a, stdout_b) = (
        String::from_utf8_lossy(&out_a.stdout),
        String::from_utf8_lossy(&out_b.stdout),
    );
    println!("tenant-a: {}\ntenant-b: {}", said(&out_a), said(&out_b));
    for ran in ["image-ran", "app-ran"] {
        assert!(
            stdout_a.contains(ran),
            "tenant-a: {ran} missing: {}",
            said(&out_a)
        );
        assert!(
            stdout_b.contains(ran),
            "tenant-b: {ran} missing: {}",
            said(&out_b)
        );
    }
    assert!(
        !stdout_a.contains("tmp-ran"),
        "the bound container ran a program from /tmp: {}",
        said(&out_a)
    );
    assert!(
        stdout_b.contains("tmp-ran"),
        "the baseline refused a program from /tmp in tenant-b: {}",
        said(&out_b)
    );

    // The miner is refused in both (the baseline refuses it too): run
    // under its own name, the busybox copy would only say that it has no
    // `xmrig` applet.
    for (id, who) in [(&id_a, "tenant-a"), (&id_b, "tenant-b")] {
        let miner = containerd.exec(id, &format!("miner-{who}"), &["/opt/app/xmrig"]);
        let text = said(&miner);
        println!("{who} miner: {text}");
        assert!(
            !miner.status.success() && !text.contains("applet not found"),
            "{who}: the miner ran: {text}"
        );
    }

    // The events, with the node, container and pod they came from.
    let enricher = Enricher::new(agent.directory());
    let events = agent.enforcer().events();
    let want = [
        (cg_a, "scratch-dir-exec", "/tmp/echo"),
        (cg_a, "miner-binary", "/opt/app/xmrig"),
        (cg_b, "miner-binary", "/opt/app/xmrig"),
    ];
    let found = |seen: &[Value], (cg, rule, path): (u64, &str, &str)| {
        seen.iter().position(|v| {
            v["rule"] == rule
                && v["output_fields"]["cgroup.id"] == cg
                && v["output_fields"]["proc.exepath"] == path
        })
    };
    let mut seen: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !want.iter().all(|w| found(&seen, *w).is_some()) {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        if let Ok(ev) = events.recv_timeout(left) {
            if ev.cgroup_id == cg_a || ev.cgroup_id == cg_b {
                let v = enricher.json(&ev);
                println!("event: {v}");
                seen.push(v);
            }
        }
    }
    // What else came meanwhile.
    while let Ok(ev) = events.recv_timeout(Duration::from_millis(500)) {
        if ev.cgroup_id == cg_a || ev.cgroup_id == cg_b {
            let v = enricher.json(&ev);
            println!("event: {v}");
            seen.push(v);
        }
    }
    for w in want {
        assert!(found(&seen, w).is_some(), "no event {w:?}: {seen:#?}");
    }
    assert!(
        !seen
            .iter()
            .any(|v| v["output_fields"]["cgroup.id"] == cg_b && v["rule"] != "miner-binary"),
        "tenant-b had events of other rules than the baseline's miner-binary: {seen:#?}"
    );

    let refused = &seen[found(&seen, want[0]).unwrap()];
    let fields = &refused["output_fields"];
    for (field, value) in [
        ("k8s.ns.name", "tenant-a"),
        ("k8s.pod.name", "web-0"),
        ("k8s.pod.uid", pod_a.uid.as_str()),
        ("container.id", &id_a[..12]),
        ("container.full_id", id_a.as_str()),
        ("container.name", "app"),
        ("container.image.repository", repository),
        ("container.image.tag", tag.as_str()),
        ("minerguard.profile", "container-strict"),
    ] {
        assert_eq!(fields[field], value, "{field} of {refused:#}");
    }
    assert!(
        refused["hostname"].as_str().is_some_and(|h| !h.is_empty()),
        "no hostname: {refused:#}"
    );
    let miner_a = &seen[found(&seen, want[1]).unwrap()]["output_fields"];
    let miner_b = &seen[found(&seen, want[2]).unwrap()]["output_fields"];
    assert_eq!(miner_a["minerguard.profile"], "container-strict");
    assert_eq!(miner_a["k8s.ns.name"], "tenant-a");
    assert_eq!(miner_b["minerguard.profile"], "default");
    assert_eq!(miner_b["k8s.ns.name"], "tenant-b");
    assert_eq!(miner_b["container.id"], &id_b[..12]);

    // The agent goes, its pinned enforcement with it; the rest on drop.
    drop(agent);
    pinned.remove();
    println!("{:?}: done", started.elapsed());
}

/// A container Podman runs, under its name: removed (killed) on drop,
/// its conmon gone, before the service stops and the pods' root goes.
struct PodmanContainer<'a> {
    podman: &'a Podman,
    name: String,
    /// Its conmon (in `<pod>/conmon` of the cgroup v1 hierarchies on a
    /// hybrid host, which it keeps from being removed while it lives).
    conmon: Option<i32>,
}

impl PodmanContainer<'_> {
    /// `podman args`, bounded in time.
    fn podman(&self, args: &[&str]) -> Output {
        self.podman
            .timed(PODMAN_LIMIT)
            .args(args)
            .output()
            .expect("run podman")
    }

    /// `args` run in the container (`podman exec`).
    fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", self.name.as_str()];
        all.extend_from_slice(args);
        self.podman(&all)
    }
}

/// Whether process `pid` is a live conmon (not gone, not a zombie).
fn conmon_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // `pid (comm) state ...`
        let comm = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") "));
        comm.is_some_and(|(comm, rest)| comm == "conmon" && !rest.starts_with('Z'))
    })
}

impl Drop for PodmanContainer<'_> {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "--force", "--time", "0", &self.name]);
        // conmon exits after the container; the pods' root is removed
        // next.
        let Some(conmon) = self.conmon else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while conmon_alive(conmon) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if conmon_alive(conmon) {
            // SAFETY: plain syscall, on the conmon of this test's container.
            unsafe { libc::kill(conmon, libc::SIGKILL) };
        }
    }
}

/// The names of `dir`'s subdirectories.
fn subdirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The cgroup v2 path of process `pid` (the `0::` line of
/// /proc/<pid>/cgroup).
fn cgroup2_of(pid: &str) -> String {
    let file = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no cgroup v2 line in {file}: {text:?}"))
        .to_string()
}

#[test]
fn the_agent_binds_a_real_podman_container_by_namespace() {
    let test = "e2e::the_agent_binds_a_real_podman_container_by_namespace";
    if !skip_unless(test, missing(&["podman", "runc"]).or_else(no_backend)) {
        return;
    }
    let _turn = serial();
    let started = Instant::now();
    let pid = std::process::id();
    let dir = TempDir::new("e2e-podman");
    // What Podman left mounted under the directory, unmounted after
    // everything else has gone and before the directory goes.
    let _unmount = Unmount(dir.path().to_path_buf());

    // The image: busybox, the app (/opt/app/echo) and a miner
    // (/opt/app/xmrig), both busybox copies.
    let podman = Podman::new(&dir);
    let root = busybox_rootfs(&dir);
    for d in ["opt/app", "dev/shm"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for app in ["opt/app/echo", "opt/app/xmrig"] {
        std::fs::copy(busybox(), root.join(app)).unwrap();
    }
    let repository = "localhost/minerguard-agent-e2e-podman";
    let tag = pid.to_string();
    let image = format!("{repository}:{tag}");
    podman.import(&dir, &root, &image);

    // Dropped in reverse: the agent, its pinned instance, the container,
    // the service, the pods' cgroups, the mounts, the directory.
    let pods_root = PodsRoot::create();
    let socket = dir.path().join("podman.sock");
    let _service = podman.service(&socket);
    println!(
        "{:?}: podman service started, image {image} imported",
        started.elapsed()
    );

    // The pod's container, labelled as the CRI labels a pod's container;
    // in a kubelet-like pod cgroup (the cgroupfs layout).
    let uid = format!("3f5d2c1b-7a6e-4d9c-8b0a-{pid:012}");
    let pod_cgroup = pods_root.pod(&uid);
    let mut container = PodmanContainer {
        podman: &podman,
        name: format!("mg-e2e-web-0-app-{pid}"),
        conmon: None,
    };
    let cgroup_parent = format!("--cgroup-parent={pod_cgroup}");
    let name_arg = format!("--name={}", container.name);
    let labels = [
        "--label=io.kubernetes.pod.namespace=tenant-a".to_string(),
        "--label=io.kubernetes.pod.name=web-0".to_string(),
        format!("--label=io.kubernetes.pod.uid={uid}"),
        "--label=io.kubernetes.container.name=app".to_string(),
    ];
    let mut run = vec![
        "run",
        "--detach",
        &name_arg,
        "--network=none",
        "--ulimit=nofile=1024:1024",
        "--ulimit=nproc=1024:1024",
        &cgroup_parent,
    ];
    run.extend(labels.iter().map(String::as_str));
    run.extend([image.as_str(), "/bin/busybox", "sleep", "1000"]);
    let id = ok("podman run", container.podman(&run));
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "podman run gave no container id: {id:?}"
    );

    // Where Podman put it: `libpod-<id>` (no `.scope`: the cgroupfs
    // manager) under the pod's cgroup, the container's process in it.
    let pids = ok(
        "podman inspect",
        container.podman(&[
            "inspect",
            "--format",
            "{{.State.Pid}} {{.State.ConmonPid}}",
            &container.name,
        ]),
    );
    let (init, conmon) = pids
        .split_once(' ')
        .unwrap_or_else(|| panic!("podman inspect: {pids:?}"));
    container.conmon = conmon.parse().ok();
    let init = init.to_string();
    let own = cgroup2_of(&init);
    let want = format!("{pod_cgroup}/libpod-{id}");
    let path = pods_root.mount.join(&want[1..]);
    println!(
        "{:?}: container {} running, process {init} in cgroup {own} (child cgroups {:?}); the pod's cgroup holds {:?}",
        started.elapsed(),
        &id[..12],
        subdirs(&path),
        subdirs(&pods_root.mount.join(&pod_cgroup[1..])),
    );
    assert_eq!(own, want, "the container's process is not in its cgroup");
    let cg = cgroup_id(&path);

    // The agent, as its configuration file says.
    let instance = format!("agent-e2e-podman-{pid}");
    let config_path = dir.path().join("agent.yaml");
    std::fs::write(
        &config_path,
        format!(
            "apiVersion: minerguard/v1
kind: AgentConfig
baseline: default
runtime: podman
runtimeEndpoint: {socket}
podsRoot: {root}
instance: {instance}
bindings:
  - name: tenants-strict
    match:
      namespaces: [tenant-a]
      containers: [app]
    profile: container-strict
",
            socket = socket.display(),
            root = pods_root.path.display(),
        ),
    )
    .unwrap();
    let config = AgentConfig::load(&config_path).expect("the configuration");
    let endpoint = config.runtime_endpoint.clone().unwrap();
    let source = wait_for("podman system service", || {
        minerguard_agent::runtime::connect(RuntimeKind::Podman, &endpoint, "")
    });
    let pinned = PinnedInstance(Some(instance.clone()));
    let (mut agent, notes) = start_then_reach(&config_path, config, source, started);
    let bound = format!(
        "container tenant-a/web-0/app ({}): binding `tenants-strict` applies profile `container-strict`",
        &id[..12]
    );
    assert!(notes.contains(&bound), "no note {bound:?}: {notes:?}");
    assert_eq!(agent.counts(), (1, 1), "containers known, bound: {notes:?}");
    let again = agent.tick();
    assert!(again.is_empty(), "a tick with nothing changed: {again:?}");

    // A program written to /tmp is refused; the image's own programs run.
    let script = "/bin/busybox echo image-ran; \
                  /bin/busybox cp /bin/busybox /tmp/echo; /tmp/echo tmp-ran; \
                  /opt/app/echo app-ran";
    let out = container.exec(&["/bin/busybox", "sh", "-c", script]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("exec: {}", said(&out));
    for ran in ["image-ran", "app-ran"] {
        assert!(stdout.contains(ran), "{ran} missing: {}", said(&out));
    }
    assert!(
        !stdout.contains("tmp-ran"),
        "the bound container ran a program from /tmp: {}",
        said(&out)
    );

    // The miner is refused: run under its own name, the busybox copy would
    // only say that it has no `xmrig` applet.
    let miner = container.exec(&["/opt/app/xmrig"]);
    let text = said(&miner);
    println!("miner: {text}");
    assert!(
        !miner.status.success() && !text.contains("applet not found"),
        "the miner ran: {text}"
    );

    // The events, with the node, container and pod they came from.
    let enricher = Enricher::new(agent.directory());
    let events = agent.enforcer().events();
    let want = [
        (cg, "scratch-dir-exec", "/tmp/echo"),
        (cg, "miner-binary", "/opt/app/xmrig"),
    ];
    let found = |seen: &[Value], (cg, rule, path): (u64, &str, &str)| {
        seen.iter().position(|v| {
            v["rule"] == rule
                && v["output_fields"]["cgroup.id"] == cg
                && v["output_fields"]["proc.exepath"] == path
        })
    };
    let mut seen: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !want.iter().all(|w| found(&seen, *w).is_some()) {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        if let Ok(ev) = events.recv_timeout(left) {
            if ev.cgroup_id == cg {
                let v = enricher.json(&ev);
                println!("event: {v}");
                seen.push(v);
            }
        }
    }
    for w in want {
        assert!(found(&seen, w).is_some(), "no event {w:?}: {seen:#?}");
    }
    for w in want {
        let event = &seen[found(&seen, w).unwrap()];
        let fields = &event["output_fields"];
        for (field, value) in [
            ("k8s.ns.name", "tenant-a"),
            ("k8s.pod.name", "web-0"),
            ("k8s.pod.uid", uid.as_str()),
            ("container.id", &id[..12]),
            ("container.full_id", id.as_str()),
            ("container.name", "app"),
            ("container.image.repository", repository),
            ("container.image.tag", tag.as_str()),
            ("minerguard.profile", "container-strict"),
        ] {
            assert_eq!(fields[field], value, "{field} of {event:#}");
        }
        assert!(
            event["hostname"].as_str().is_some_and(|h| !h.is_empty()),
            "no hostname: {event:#}"
        );
    }

    // The agent goes, its pinned enforcement with it; the rest on drop.
    drop(agent);
    pinned.remove();
    println!("{:?}: done", started.elapsed());
}
