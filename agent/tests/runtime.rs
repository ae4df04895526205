//! The metadata sources against real runtimes (#22): a containerd of the
//! test's own (root, state, socket and config in a temporary directory, its
//! CRI plugin off) with containers made by `ctr` the way containerd's CRI
//! plugin labels a pod's sandbox and its containers; and `podman system
//! service` on a temporary socket, over a Podman store of the test's own.
//! The image is a busybox rootfs imported into that Podman store (no
//! registry is reachable), saved as an OCI archive for containerd. No
//! container is started.
//!
//! Needs root, podman, containerd and ctr (scripts/install-deps.sh installs
//! them); without them the tests fail, unless MINERGUARD_ALLOW_SKIP=1.

use minerguard_agent::identity::ContainerInfo;
use minerguard_agent::runtime::{
    ContainerdSource, MetadataSource, PodmanSource, RuntimeError, CALL_TIMEOUT,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether `program --version` runs.
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether this process runs as root (the effective uid in
/// /proc/self/status).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Whether `test` can run: root and every one of `programs`. Fails loudly
/// when not, unless MINERGUARD_ALLOW_SKIP=1 (then prints why: skipped).
fn can_run(test: &str, programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !installed(p)).collect();
    let reason = if !is_root() {
        "needs root".to_string()
    } else if !missing.is_empty() {
        format!(
            "{} not installed (scripts/install-deps.sh installs them)",
            missing.join(", ")
        )
    } else {
        return true;
    };
    if std::env::var("MINERGUARD_ALLOW_SKIP").as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: {reason} (MINERGUARD_ALLOW_SKIP=1)");
        return false;
    }
    panic!("{test}: {reason}; set MINERGUARD_ALLOW_SKIP=1 to skip");
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("minerguard-agent-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Asserts `out` succeeded; its stdout.
fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A child process of the test, killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Podman store of the test's own under `dir` (vfs: nothing mounted), so
/// nothing is left in the host's.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn new(dir: &TempDir) -> Podman {
        let dir = dir.path().join("podman");
        for d in ["root", "run", "tmp", "networks"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        Podman { dir }
    }

    /// `podman` with this store and the options this host needs.
    fn cmd(&self) -> Command {
        let mut cmd = Command::new("podman");
        for (flag, d) in [
            ("--root", "root"),
            ("--runroot", "run"),
            ("--tmpdir", "tmp"),
            ("--network-config-dir", "networks"),
        ] {
            cmd.arg(flag).arg(self.dir.join(d));
        }
        cmd.args([
            "--storage-driver",
            "vfs",
            "--events-backend",
            "none",
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
        ]);
        cmd
    }

    /// An image of a busybox rootfs, imported as `name`.
    fn import_busybox(&self, dir: &TempDir, name: &str) {
        let root = dir.path().join("rootfs");
        for d in ["bin", "tmp", "proc", "sys", "dev", "etc"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox-static is installed");
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        let tar = dir.path().join("rootfs.tar");
        let out = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .output()
            .unwrap();
        ok("tar the rootfs", out);
        let out = self.cmd().arg("import").arg(&tar).arg(name).output();
        ok("podman import", out.unwrap());
    }
}

/// A fresh source from `connect`, retried while the runtime starts (20 s).
fn wait_for<S>(what: &str, connect: impl Fn() -> Result<S, RuntimeError>) -> S {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match connect() {
            Ok(source) => return source,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{what} did not come up: {e}"),
        }
    }
}

/// `pairs` as a label map.
fn label_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Asserts `err` is NotFound.
fn assert_not_found(err: Result<ContainerInfo, RuntimeError>) {
    match err {
        Err(e @ RuntimeError::NotFound { .. }) => println!("{e}"),
        other => panic!("want NotFound, got {other:?}"),
    }
}

/// Asserts `result` is Unreachable, and came within the call bound (and
/// some slack).
fn assert_unreachable<T: std::fmt::Debug>(started: Instant, result: Result<T, RuntimeError>) {
    let took = started.elapsed();
    match result {
        Err(e @ RuntimeError::Unreachable { .. }) => println!("after {took:?}: {e}"),
        other => panic!("want Unreachable, got {other:?}"),
    }
    assert!(
        took < CALL_TIMEOUT * 2 + Duration::from_secs(1),
        "took {took:?}"
    );
}

/// A unix socket that accepts connections (the kernel's backlog) and never
/// answers.
fn silent_socket(dir: &TempDir) -> (std::os::unix::net::UnixListener, PathBuf) {
    let path = dir.path().join("silent.sock");
    (std::os::unix::net::UnixListener::bind(&path).unwrap(), path)
}

/// A containerd of the test's own, its CRI plugin off.
fn start_containerd(dir: &TempDir) -> (Daemon, PathBuf) {
    let config = dir.path().join("containerd.toml");
    std::fs::write(
        &config,
        "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
    )
    .unwrap();
    let socket = dir.path().join("containerd.sock");
    let child = Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .arg("--root")
        .arg(dir.path().join("containerd-root"))
        .arg("--state")
        .arg(dir.path().join("containerd-state"))
        .arg("--address")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start containerd");
    (Daemon(child), socket)
}

/// Unmounts whatever containerd left mounted under `root`.
fn unmount_under(root: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let root = root.to_string_lossy();
    for m in mounts.lines().filter_map(|l| l.split(' ').nth(1)) {
        if m.starts_with(root.as_ref()) {
            let _ = Command::new("umount").arg("-l").arg(m).output();
        }
    }
}

#[test]
fn containerd_gives_a_cri_container_and_its_pod() {
    if !can_run(module_path!(), &["containerd", "ctr", "podman"]) {
        return;
    }
    let dir = TempDir::new("containerd");
    let podman = Podman::new(&dir);
    let image = format!("localhost/minerguard-agent-test:{}", std::process::id());
    podman.import_busybox(&dir, &image);
    let archive = dir.path().join("image-oci.tar");
    let out = podman
        .cmd()
        .args(["save", "--format", "oci-archive", "-o"])
        .arg(&archive)
        .arg(&image)
        .output();
    ok("podman save", out.unwrap());

    let (containerd, socket) = start_containerd(&dir);
    // Unmounted after containerd stops, before the directory goes.
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            unmount_under(&self.0);
        }
    }
    let _unmount = Unmount(dir.path().to_path_buf());
    let namespace = "minerguard-agent-test";
    let source = wait_for("containerd", || {
        ContainerdSource::connect(&socket, namespace)
    });
    let ctr = |args: &[&str]| {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["--namespace", namespace])
            .args(args)
            .output()
            .expect("run ctr");
        ok(&format!("ctr {}", args.join(" ")), out)
    };
    let base = image.split(':').next().unwrap();
    ctr(&[
        "image",
        "import",
        "--base-name",
        base,
        archive.to_str().unwrap(),
    ]);

    // A pod as containerd's CRI plugin keeps it: its sandbox (the pod's
    // labels beside the CRI ones) and a container.
    let uid = "6c2a1b0e-1f2d-4c3b-9a8e-7d6c5b4a3f2e";
    let pid = std::process::id();
    let (sandbox, app) = (format!("mg-sandbox-{pid}"), format!("mg-app-{pid}"));
    let pod = [
        ("io.kubernetes.pod.uid", uid),
        ("io.kubernetes.pod.namespace", "tenant-a"),
        ("io.kubernetes.pod.name", "web-0"),
    ];
    let create = |id: &str, labels: &[(&str, &str)]| {
        let mut args = vec!["containers".to_string(), "create".to_string()];
        for (k, v) in pod.iter().chain(labels) {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        args.push(image.clone());
        args.push(id.to_string());
        ctr(&args.iter().map(String::as_str).collect::<Vec<_>>());
    };
    create(
        &sandbox,
        &[
            ("io.cri-containerd.kind", "sandbox"),
            ("tier", "web"),
            ("app", "shop"),
        ],
    );
    create(
        &app,
        &[
            ("io.cri-containerd.kind", "container"),
            ("io.kubernetes.container.name", "app"),
        ],
    );
    // A sandbox of another pod, with other labels: not this pod's.
    let other = format!("mg-other-{pid}");
    ctr(&[
        "containers",
        "create",
        "--label",
        "io.cri-containerd.kind=sandbox",
        "--label",
        "io.kubernetes.pod.uid=another-uid",
        "--label",
        "tier=db",
        &image,
        &other,
    ]);

    let info = source.container(&app).expect("the app container");
    println!("containerd: {info:?}");
    assert_eq!(info.id, app);
    assert_eq!(info.name, "app");
    assert_eq!(info.image, image);
    assert_eq!(info.namespace, "tenant-a");
    assert_eq!(info.pod_name, "web-0");
    assert_eq!(info.pod_uid, uid);
    assert_eq!(
        info.pod_labels,
        label_map(&[("tier", "web"), ("app", "shop")])
    );
    assert_eq!(
        info.labels
            .get("io.cri-containerd.kind")
            .map(String::as_str),
        Some("container")
    );
    // The sandbox itself belongs to the same pod.
    let info = source.container(&sandbox).expect("the sandbox");
    assert_eq!(
        (info.pod_name.as_str(), info.name.as_str()),
        ("web-0", sandbox.as_str())
    );
    assert_eq!(
        info.pod_labels,
        label_map(&[("tier", "web"), ("app", "shop")])
    );

    assert_not_found(source.container(&"0".repeat(64)));
    // Another namespace does not see the container.
    let elsewhere = ContainerdSource::connect(&socket, "minerguard-agent-other").unwrap();
    assert_not_found(elsewhere.container(&app));

    // A socket nobody listens on, one that never answers, and containerd
    // gone under a connected source: Unreachable, within the bound.
    let started = Instant::now();
    assert_unreachable(
        started,
        ContainerdSource::connect(&dir.path().join("none.sock"), namespace),
    );
    let (_listener, silent) = silent_socket(&dir);
    let started = Instant::now();
    assert_unreachable(started, ContainerdSource::connect(&silent, namespace));
    drop(containerd);
    let started = Instant::now();
    assert_unreachable(started, source.container(&app));
}

#[test]
fn podman_gives_a_container_with_cri_labels() {
    if !can_run(module_path!(), &["podman", "runc"]) {
        return;
    }
    let dir = TempDir::new("podman");
    let podman = Podman::new(&dir);
    let image = format!("localhost/minerguard-agent-test:{}", std::process::id());
    podman.import_busybox(&dir, &image);
    let socket = dir.path().join("podman.sock");
    let service = podman
        .cmd()
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", socket.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start podman system service");
    let service = Daemon(service);
    let source = wait_for("podman system service", || PodmanSource::new(&socket));

    let create = |name: &str, labels: &[(&str, &str)]| {
        let mut cmd = podman.cmd();
        cmd.args(["create", "--network", "none", "--name", name]);
        for (k, v) in labels {
            cmd.arg("--label").arg(format!("{k}={v}"));
        }
        cmd.args([&image, "/bin/busybox", "true"]);
        ok(&format!("podman create {name}"), cmd.output().unwrap())
    };
    let pid = std::process::id();
    let name = format!("mg-web-{pid}");
    let id = create(
        &name,
        &[
            ("io.kubernetes.pod.namespace", "ns1"),
            ("io.kubernetes.pod.name", "pod1"),
            ("io.kubernetes.pod.uid", "uid1"),
            ("io.kubernetes.container.name", "web"),
            ("app", "shop"),
        ],
    );
    let info = source.container(&id).expect("the container");
    println!("podman: {info:?}");
    assert_eq!(info.id, id);
    assert_eq!(info.name, "web");
    assert_eq!(info.image, image);
    assert_eq!(
        (
            info.namespace.as_str(),
            info.pod_name.as_str(),
            info.pod_uid.as_str()
        ),
        ("ns1", "pod1", "uid1")
    );
    assert_eq!(info.labels.get("app").map(String::as_str), Some("shop"));
    assert!(info.pod_labels.is_empty());

    // Without CRI labels: Podman's name, no pod.
    let plain = format!("mg-plain-{pid}");
    let plain_id = create(&plain, &[]);
    let info = source.container(&plain_id).expect("the plain container");
    assert_eq!(
        (info.id.as_str(), info.name.as_str()),
        (plain_id.as_str(), plain.as_str())
    );
    assert_eq!((info.namespace.as_str(), info.pod_name.as_str()), ("", ""));

    assert_not_found(source.container(&"0".repeat(64)));

    let started = Instant::now();
    assert_unreachable(started, PodmanSource::new(&dir.path().join("none.sock")));
    let (_listener, silent) = silent_socket(&dir);
    let started = Instant::now();
    assert_unreachable(started, PodmanSource::new(&silent));
    drop(service);
    let started = Instant::now();
    assert_unreachable(started, source.container(&id));
}
