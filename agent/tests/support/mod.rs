//! Fixtures the agent's runtime tests share: privilege and tool checks, a
//! temporary directory, a Podman store and a containerd of the test's own,
//! a busybox image.
// Each test binary uses its own subset.
#![allow(dead_code)]

use minerguard_agent::runtime::RuntimeError;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether `program --version` runs.
pub fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether this process runs as root (the effective uid in
/// /proc/self/status).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Whether `test` may go on, given `reason` it cannot (`None`: it can).
/// Fails loudly when it cannot, unless MINERGUARD_ALLOW_SKIP=1 (then
/// prints why: skipped).
pub fn skip_unless(test: &str, reason: Option<String>) -> bool {
    let Some(reason) = reason else {
        return true;
    };
    if std::env::var("MINERGUARD_ALLOW_SKIP").as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: {reason} (MINERGUARD_ALLOW_SKIP=1)");
        return false;
    }
    panic!("{test}: {reason}; set MINERGUARD_ALLOW_SKIP=1 to skip");
}

/// Why root and `programs` are not all there, if they are not.
pub fn missing(programs: &[&str]) -> Option<String> {
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !installed(p)).collect();
    if !is_root() {
        Some("needs root".to_string())
    } else if !missing.is_empty() {
        Some(format!(
            "{} not installed (scripts/install-deps.sh installs them)",
            missing.join(", ")
        ))
    } else {
        None
    }
}

/// Whether `test` can run: root and every one of `programs`. Fails loudly
/// when not, unless MINERGUARD_ALLOW_SKIP=1 (then prints why: skipped).
pub fn can_run(test: &str, programs: &[&str]) -> bool {
    skip_unless(test, missing(programs))
}

/// A temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("minerguard-agent-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Asserts `out` succeeded; its stdout.
pub fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A child process of the test, killed on drop.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The host's static busybox.
pub fn busybox() -> &'static Path {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("busybox-static is installed")
}

/// A busybox rootfs under `dir`: /bin/busybox, /bin/sh and the usual
/// empty directories.
pub fn busybox_rootfs(dir: &TempDir) -> PathBuf {
    let root = dir.path().join("rootfs");
    for d in ["bin", "tmp", "proc", "sys", "dev", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(busybox(), root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    root
}

/// A Podman store of the test's own under `dir` (vfs: nothing mounted), so
/// nothing is left in the host's.
pub struct Podman {
    dir: PathBuf,
}

impl Podman {
    pub fn new(dir: &TempDir) -> Podman {
        let dir = dir.path().join("podman");
        for d in ["root", "run", "tmp", "networks"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        Podman { dir }
    }

    /// `podman` with this store and the options this host needs.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new("podman");
        self.global_args(&mut cmd);
        cmd
    }

    /// [`Podman::cmd`] killed after `limit` seconds (`timeout`), so that a
    /// stuck podman fails the test instead of hanging it.
    pub fn timed(&self, limit: u32) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", &limit.to_string(), "podman"]);
        self.global_args(&mut cmd);
        cmd
    }

    /// `podman system service` on the unix socket `socket`, over this
    /// store (stopped on drop).
    pub fn service(&self, socket: &Path) -> Daemon {
        let child = self
            .cmd()
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start podman system service");
        Daemon(child)
    }

    /// The options of every `podman` command: this store, no events, runc
    /// and the cgroupfs manager.
    fn global_args(&self, cmd: &mut Command) {
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
    }

    /// An image of the rootfs `root`, imported as `name`.
    pub fn import(&self, dir: &TempDir, root: &Path, name: &str) {
        let tar = dir.path().join("rootfs.tar");
        let out = Command::new("tar")
            .arg("-C")
            .arg(root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .output()
            .unwrap();
        ok("tar the rootfs", out);
        let out = self.cmd().arg("import").arg(&tar).arg(name).output();
        ok("podman import", out.unwrap());
    }

    /// An image of a busybox rootfs, imported as `name`.
    pub fn import_busybox(&self, dir: &TempDir, name: &str) {
        let root = busybox_rootfs(dir);
        self.import(dir, &root, name);
    }

    /// Image `name` as an OCI archive (for containerd) in `dir`; its path.
    pub fn save_oci(&self, dir: &TempDir, name: &str) -> PathBuf {
        let archive = dir.path().join("image-oci.tar");
        let out = self
            .cmd()
            .args(["save", "--format", "oci-archive", "-o"])
            .arg(&archive)
            .arg(name)
            .output();
        ok("podman save", out.unwrap());
        archive
    }
}

/// A fresh source from `connect`, retried while the runtime starts (20 s).
pub fn wait_for<S>(what: &str, connect: impl Fn() -> Result<S, RuntimeError>) -> S {
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

/// A containerd of the test's own, its CRI plugin off: root, state, socket
/// and configuration in `dir`.
pub fn start_containerd(dir: &TempDir) -> (Daemon, PathBuf) {
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
pub fn unmount_under(root: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let root = root.to_string_lossy();
    // Deepest first.
    let mut under: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|m| m.starts_with(root.as_ref()))
        .collect();
    under.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in under {
        let _ = Command::new("umount").arg("-l").arg(m).output();
    }
}

/// Unmounts what containerd left under a directory, on drop (after
/// containerd stops, before the directory goes).
pub struct Unmount(pub PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        unmount_under(&self.0);
    }
}
