//! Real containers (#20): podman with runc, on an image imported from a
//! local busybox rootfs (no registry is reachable), placed under the test's
//! cgroup with `--cgroup-parent`. `container-strict` is applied to that
//! cgroup; what each container prints is what the attacker's code got to do.
//!
//! The same with containerd and runc through `ctr`: the test runs its own
//! containerd (its own root, state and socket under a temporary directory)
//! and imports the image podman saved as an OCI archive.
//!
//! Needs podman, containerd and runc (scripts/install-deps.sh installs
//! them); without them the tests fail, unless MINERGUARD_ALLOW_SKIP=1.

use crate::common::*;
use minerguard::{cgroup::CgroupRef, Enforcer, Profile, Scope, ScopeChange, Target};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Whether `program --version` runs.
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// podman (and, with `ctr`, containerd), or None (printed) when missing and
/// skipping is allowed.
fn podman(test: &str, ctr: bool) -> Option<&'static str> {
    let found = installed("podman")
        && installed("runc")
        && (!ctr || (installed("containerd") && installed("ctr")));
    if found {
        return Some("podman");
    }
    let reason =
        "podman, containerd and runc are not all installed (scripts/install-deps.sh installs them)";
    if std::env::var("MINERGUARD_ALLOW_SKIP").as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: {reason} (MINERGUARD_ALLOW_SKIP=1)");
        return None;
    }
    panic!("{test}: {reason}; set MINERGUARD_ALLOW_SKIP=1 to skip");
}

/// A busybox rootfs with the app at /opt/app/echo (a busybox copy).
fn rootfs(dir: &TempDir) -> PathBuf {
    let root = dir.path().join("rootfs");
    for d in ["bin", "tmp", "opt/app", "dev/shm", "proc", "sys", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed");
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    std::fs::copy(busybox, root.join("opt/app/echo")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    root
}

/// An image imported from `root`; removed on drop.
struct Image(String);

impl Image {
    fn import(root: &Path, dir: &TempDir) -> Image {
        let tar = dir.path().join("image.tar");
        let ok = Command::new("tar")
            .arg("-C")
            .arg(root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap()
            .success();
        assert!(ok, "tar the rootfs");
        // A tag of its own per import: the tests run in parallel in one
        // process, and a shared tag let one test's rootfs replace another's
        // (a restart test found no /opt/app/xmrig in its image).
        static IMPORTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = IMPORTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("localhost/minerguard-test:{}-{n}", std::process::id());
        let out = Command::new("podman")
            .arg("import")
            .arg(&tar)
            .arg(&name)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Image(name)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rmi", "-f", &self.0]).output();
    }
}

/// `podman` with the global options every command here needs.
fn podman_cmd() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
    cmd
}

/// `podman run` with the options every container here gets, under `parent`
/// (a cgroup v2 directory name in the root); the caller adds the rest.
fn podman_run_cmd(parent: &str) -> Command {
    let mut cmd = podman_cmd();
    cmd.args([
        "run",
        "--network",
        "none",
        // This host's hard limits are below podman's defaults.
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--cgroup-parent",
    ])
    .arg(format!("/{parent}"));
    cmd
}

/// `podman run --rm` of `args` (after the common options) in a container
/// under `parent`; its stdout (podman's stderr is printed, for a failure's
/// story).
fn podman_run(parent: &str, args: &[&str]) -> String {
    let out = podman_run_cmd(parent)
        .arg("--rm")
        .args(args)
        .output()
        .expect("run podman");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.trim().is_empty() {
        println!("podman run {args:?}: {}: {stderr}", out.status);
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The runtimes make `parent` (with children: podman's `conmon`, a `ctr`
/// container's own cgroup) in every v1 hierarchy too on a hybrid host, and
/// the children in the v2 one: taken away on drop, even when the test
/// fails.
struct PodmanCgroups(String);

impl Drop for PodmanCgroups {
    fn drop(&mut self) {
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for h in hierarchies.flatten() {
            let dir = h.path().join(&self.0);
            if let Ok(children) = std::fs::read_dir(&dir) {
                for c in children.flatten().filter(|c| c.path().is_dir()) {
                    let _ = std::fs::remove_dir(c.path());
                }
            }
            // The v2 directory is the test's own cgroup: its owner removes it.
            if h.file_name() != "unified" {
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

/// A containerd of the test's own (root, state and socket in `dir`),
/// stopped on drop.
struct Containerd {
    child: std::process::Child,
    socket: PathBuf,
    root: PathBuf,
}

impl Containerd {
    fn start(dir: &TempDir) -> Containerd {
        let (root, state, socket) = (
            dir.path().join("containerd-root"),
            dir.path().join("containerd-state"),
            dir.path().join("containerd.sock"),
        );
        let child = Command::new("containerd")
            .arg("--root")
            .arg(&root)
            .arg("--state")
            .arg(&state)
            .arg("--address")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start containerd");
        let c = Containerd {
            child,
            socket,
            root,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                std::time::Instant::now() < deadline,
                "containerd did not come up"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        c
    }

    /// `ctr` against this containerd, in the test's namespace.
    fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "minerguard-test"])
            .args(args)
            .output()
            .expect("run ctr")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Snapshots containerd left mounted under its root.
        let _ = Command::new("umount").arg("-R").arg(&self.root).output();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let root = self.root.to_string_lossy();
            for m in mounts.lines().filter_map(|l| l.split(' ').nth(1)) {
                if m.starts_with(root.as_ref()) {
                    let _ = Command::new("umount").arg("-l").arg(m).output();
                }
            }
        }
    }
}

/// `container-strict` on a test cgroup; the cgroup's name (the runtimes'
/// `--cgroup-parent`/`--cgroup` prefix), and the cleanup of what the
/// runtimes make under it.
fn strict_scope() -> (Scoped, String, PodmanCgroups) {
    let scoped = Scoped::apply(&Profile::bundled("container-strict").unwrap());
    let parent = (scoped.cgroup().cgroup().path().file_name())
        .and_then(|n| n.to_str())
        .unwrap()
        .to_string();
    let cleanup = PodmanCgroups(parent.clone());
    (scoped, parent, cleanup)
}

/// Asserts an exec event of each (rule, path) pair came.
fn assert_exec_events(enforcer: &minerguard::Enforcer, want: &[(&str, &str)]) {
    let mut seen = Vec::new();
    while let Some(ev) = wait_event(enforcer, |e| {
        want.iter().any(|(r, _)| e.rule.as_ref() == *r)
    }) {
        if let Target::Exec { path } = &ev.target {
            seen.push((ev.rule.to_string(), path.as_str().to_string()));
        }
    }
    for (rule, path) in want {
        assert!(
            seen.iter().any(|(r, p)| r == rule && p == path),
            "no {rule} event for {path}: {seen:?}"
        );
    }
}

#[test]
fn container_strict_holds_in_a_real_podman_container() {
    require_kernel!();
    let Some(_) = podman(module_path!(), false) else {
        return;
    };
    let dir = TempDir::new("podman");
    let root = rootfs(&dir);
    let image = Image::import(&root, &dir);
    let (scoped, parent, _cleanup) = strict_scope();
    let enforcer = scoped.enforcer();
    let script = "
        /bin/busybox echo image-ran
        /opt/app/echo app-ran
        cp /bin/busybox /tmp/echo; /tmp/echo tmp-ran
        cp /bin/busybox /dev/shm/echo; /dev/shm/echo shm-ran
        cp /bin/busybox /opt/echo; /opt/echo written-ran
        mkdir -p /usr/local/bin; cp /bin/busybox /usr/local/bin/echo; /usr/local/bin/echo drift-ran
        exit 0
    ";
    let out = podman_run(&parent, &[&image.0, "/bin/busybox", "sh", "-c", script]);
    // A container whose rootfs lives under the host's /tmp runs its own
    // binaries (a host-resolved /tmp refused all of them).
    let rootfs_out = podman_run(
        &parent,
        &[
            "--rootfs",
            root.to_str().unwrap(),
            "/bin/busybox",
            "echo",
            "rootfs-ran",
        ],
    );
    assert!(
        out.contains("image-ran"),
        "the image's busybox was refused: {out:?}"
    );
    assert!(
        out.contains("app-ran"),
        "the image's app was refused: {out:?}"
    );
    for refused in ["tmp-ran", "shm-ran", "written-ran", "drift-ran"] {
        assert!(!out.contains(refused), "{refused}: {out:?}");
    }
    assert!(rootfs_out.contains("rootfs-ran"), "{rootfs_out:?}");
    // Events name the container's paths. (podman mounts /dev/shm noexec:
    // the kernel refuses that exec before any hook sees it.)
    assert_exec_events(
        enforcer,
        &[
            ("scratch-dir-exec", "/tmp/echo"),
            ("drift", "/opt/echo"),
            ("drift", "/usr/local/bin/echo"),
        ],
    );
}

#[test]
fn container_strict_holds_in_a_real_containerd_container() {
    require_kernel!();
    let Some(_) = podman(module_path!(), true) else {
        return;
    };
    let dir = TempDir::new("ctr");
    let root = rootfs(&dir);
    let image = Image::import(&root, &dir);
    // podman's image, as an OCI archive containerd imports.
    let archive = dir.path().join("image-oci.tar");
    let out = Command::new("podman")
        .args(["save", "--format", "oci-archive", "-o"])
        .arg(&archive)
        .arg(&image.0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "podman save: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let containerd = Containerd::start(&dir);
    let base = image.0.split(':').next().unwrap();
    let out = containerd.ctr(&[
        "image",
        "import",
        "--base-name",
        base,
        archive.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "ctr image import: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (scoped, parent, _cleanup) = strict_scope();
    let enforcer = scoped.enforcer();
    let script = "
        /bin/busybox echo image-ran
        /opt/app/echo app-ran
        cp /bin/busybox /tmp/echo; /tmp/echo tmp-ran
        mkdir -p /usr/local/bin; cp /bin/busybox /usr/local/bin/echo; /usr/local/bin/echo drift-ran
        exit 0
    ";
    let id = format!("minerguard-{}", std::process::id());
    let out = containerd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        "io.containerd.runc.v2",
        "--cgroup",
        &format!("/{parent}/{id}"),
        &image.0,
        &id,
        "/bin/busybox",
        "sh",
        "-c",
        script,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("image-ran"),
        "the image's busybox was refused: {stdout:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("app-ran"),
        "the image's app was refused: {stdout:?}"
    );
    for refused in ["tmp-ran", "drift-ran"] {
        assert!(!stdout.contains(refused), "{refused}: {stdout:?}");
    }
    assert_exec_events(
        enforcer,
        &[
            ("scratch-dir-exec", "/tmp/echo"),
            ("drift", "/usr/local/bin/echo"),
        ],
    );
}

/// A detached podman container, removed (killed) on drop.
struct Container(String);

impl Container {
    /// `podman` `args` about this container (its name appended); asserted
    /// to succeed.
    fn podman(&self, args: &[&str]) {
        let out = podman_cmd().args(args).arg(&self.0).output().unwrap();
        assert!(
            out.status.success(),
            "podman {} {}: {}",
            args.join(" "),
            self.0,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `podman exec` of `args` in the container.
    fn exec(&self, args: &[&str]) -> std::process::Output {
        podman_cmd()
            .arg("exec")
            .arg(&self.0)
            .args(args)
            .output()
            .expect("podman exec")
    }

    /// The container's own cgroup v2 directory: its init's, from
    /// /proc/<pid>/cgroup, under the cgroup v2 mount.
    fn cgroup(&self) -> PathBuf {
        let out = podman_cmd()
            .args(["inspect", "--format", "{{.State.Pid}}", &self.0])
            .output()
            .unwrap();
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap_or_else(|e| panic!("the container's init (pid {pid:?}): {e}"));
        let rel = own
            .lines()
            .find_map(|l| l.strip_prefix("0::/"))
            .expect("the container's init is in a cgroup v2 cgroup");
        minerguard::cgroup::cgroup2_mount().unwrap().join(rel)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman_cmd().args(["rm", "-f", "-t", "0", &self.0]).output();
    }
}

/// Polls `follow_cgroups` every 50 ms until it reports `want` (and nothing
/// else); fails after 5 s (a liveness bound). How long it took.
fn follow_until(enforcer: &mut Enforcer, want: &ScopeChange) -> Duration {
    let start = Instant::now();
    loop {
        let changes = enforcer.follow_cgroups().expect("follow_cgroups");
        if !changes.is_empty() {
            assert_eq!(changes, std::slice::from_ref(want));
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "follow_cgroups did not report {want:?} in 5 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The miner (the image's /opt/app/xmrig, a busybox copy) is refused in
/// `container`, whether `podman exec` runs it or a shell in the container
/// does (as `touch`, to write `marker`): busybox printed nothing and wrote
/// no marker, while the image's own app still runs; `miner-binary` events
/// came from the cgroup `cgroup_id`.
fn assert_miner_refused(
    enforcer: &Enforcer,
    container: &Container,
    cgroup_id: u64,
    marker: &str,
    when: &str,
) {
    // Run under its own name, the busybox copy only complains that there
    // is no `xmrig` applet: that line is what it does when it runs.
    let miner = container.exec(&["/opt/app/xmrig"]);
    let said = String::from_utf8_lossy(&miner.stdout) + String::from_utf8_lossy(&miner.stderr);
    assert!(
        !miner.status.success() && !said.contains("applet not found"),
        "{when}: the miner ran ({}): {said:?}",
        miner.status
    );
    let check = container.exec(&[
        "/bin/busybox",
        "sh",
        "-c",
        &format!(
            "(exec -a touch /opt/app/xmrig {marker}); \
             /bin/busybox test -e {marker} && echo marker-present; /opt/app/echo app-ran"
        ),
    ]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        out.contains("app-ran"),
        "{when}: the image's app was refused: {out:?} {}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        !out.contains("marker-present"),
        "{when}: the miner wrote {marker}"
    );
    for n in 0..2 {
        let event = wait_event(enforcer, |e| {
            e.rule.as_ref() == "miner-binary"
                && e.cgroup_id == cgroup_id
                && matches!(&e.target, Target::Exec { path } if path.as_str() == "/opt/app/xmrig")
        });
        assert!(
            event.is_some(),
            "{when}: {n} of 2 miner-binary events for /opt/app/xmrig from cgroup {cgroup_id} (drops: {:?}; miner: {said:?})",
            enforcer.drops()
        );
    }
}

/// #21 "no gap": `podman restart` removes the container's cgroup and
/// creates a new one at the same path. `container-strict` on that exact
/// cgroup (and not on its parent, which has no profile) follows it:
/// `follow_cgroups` reports it gone after the stop and re-created after the
/// start, and the miner is refused again in the restarted container. The
/// restart is done as `podman stop` + `podman start` (what `podman restart`
/// does) to look between the two.
#[test]
fn container_strict_follows_a_podman_restart() {
    require_kernel!();
    let Some(_) = podman(module_path!(), false) else {
        return;
    };
    let dir = TempDir::new("podman-restart");
    let root = rootfs(&dir);
    // The miner, in the image: not drift, not in a scratch dir, only its
    // name is refused.
    std::fs::copy(root.join("bin/busybox"), root.join("opt/app/xmrig")).unwrap();
    let image = Image::import(&root, &dir);
    // The parent is a test cgroup with no profile: only the container's own
    // cgroup is a scope. Dropped in reverse order: the container, the
    // enforcer (its scope), what the runtime made under the parent, the
    // parent.
    let parent_cgroup = test_cgroup();
    let parent = (parent_cgroup.cgroup().path().file_name())
        .and_then(|n| n.to_str())
        .unwrap()
        .to_string();
    let _cleanup = PodmanCgroups(parent.clone());
    let mut enforcer = enforcer();
    let name = format!("minerguard-restart-{}", std::process::id());
    let out = podman_run_cmd(&parent)
        .args([
            "-d",
            "--name",
            &name,
            &image.0,
            "/bin/busybox",
            "sleep",
            "1000",
        ])
        .output()
        .unwrap();
    let container = Container(name);
    assert!(
        out.status.success(),
        "podman run -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = container.cgroup();
    assert!(
        path.starts_with(parent_cgroup.cgroup().path()) && path != parent_cgroup.cgroup().path(),
        "the container's cgroup {} is not under {}",
        path.display(),
        parent_cgroup.cgroup().path().display()
    );
    let before = CgroupRef::open(&path).unwrap();
    let handle = enforcer
        .apply(
            &Profile::bundled("container-strict").unwrap(),
            Scope::Cgroup(path.clone()),
        )
        .expect("apply container-strict to the container's cgroup");
    assert_miner_refused(
        &enforcer,
        &container,
        before.id(),
        "/tmp/mined-before",
        "before the restart",
    );

    container.podman(&["stop", "-t", "0"]);
    let gone = follow_until(
        &mut enforcer,
        &ScopeChange::Gone {
            handle,
            path: path.clone(),
        },
    );
    container.podman(&["start"]);
    let after = CgroupRef::open(&path).expect("the restarted container's cgroup");
    assert_ne!(after.id(), before.id(), "the restart kept the cgroup");
    assert_eq!(container.cgroup(), path, "the restart moved the container");
    let followed = follow_until(
        &mut enforcer,
        &ScopeChange::Recreated {
            handle,
            path: path.clone(),
        },
    );
    println!(
        "podman restart: cgroup {} -> {}; reported Gone {gone:?} after `podman stop`, Recreated {followed:?} after `podman start` returned",
        before.id(),
        after.id(),
    );
    assert_miner_refused(
        &enforcer,
        &container,
        after.id(),
        "/tmp/mined-after",
        "after the restart",
    );
}
