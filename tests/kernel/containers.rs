//! Real containers (#20): podman with runc, on an image imported from a
//! local busybox rootfs (no registry is reachable), placed under the test's
//! cgroup with `--cgroup-parent`. `container-strict` is applied to that
//! cgroup; what each container prints is what the attacker's code got to do.
//!
//! Needs podman and runc (scripts/install-deps.sh installs them); without
//! them the tests fail, unless MINERGUARD_ALLOW_SKIP=1.

use crate::common::*;
use minerguard::{Profile, Target};
use std::path::{Path, PathBuf};
use std::process::Command;

/// podman, or None (printed) when missing and skipping is allowed.
fn podman(test: &str) -> Option<&'static str> {
    let found = Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new("runc").arg("--version").output().is_ok();
    if found {
        return Some("podman");
    }
    let reason = "podman and runc are not installed (scripts/install-deps.sh installs them)";
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
        let name = format!("localhost/minerguard-test:{}", std::process::id());
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

/// `podman run` of `args` (after the common options) in a container under
/// `parent` (a cgroup v2 directory name in the root); its stdout.
fn podman_run(parent: &str, args: &[&str]) -> String {
    let out = Command::new("podman")
        .args([
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "run",
            "--rm",
            "--network",
            "none",
            // This host's hard limits are below podman's defaults.
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "--cgroup-parent",
        ])
        .arg(format!("/{parent}"))
        .args(args)
        .output()
        .expect("run podman");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// podman's cgroupfs manager makes `parent` (with a `conmon` child) in
/// every v1 hierarchy too on a hybrid host, and `conmon` in the v2 one:
/// taken away on drop, even when the test fails.
struct PodmanCgroups(String);

impl Drop for PodmanCgroups {
    fn drop(&mut self) {
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for h in hierarchies.flatten() {
            let dir = h.path().join(&self.0);
            let _ = std::fs::remove_dir(dir.join("conmon"));
            // The v2 directory is the test's own cgroup: its owner removes it.
            if h.file_name() != "unified" {
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

#[test]
fn container_strict_holds_in_a_real_podman_container() {
    require_kernel!();
    let Some(_) = podman(module_path!()) else {
        return;
    };
    let dir = TempDir::new("podman");
    let root = rootfs(&dir);
    let image = Image::import(&root, &dir);
    let scoped = Scoped::apply(&Profile::bundled("container-strict").unwrap());
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let parent = cg
        .cgroup()
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let _cleanup = PodmanCgroups(parent.clone());
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
    let mut paths = Vec::new();
    while let Some(ev) = wait_event(enforcer, |e| {
        matches!(e.rule.as_ref(), "scratch-dir-exec" | "drift")
    }) {
        if let Target::Exec { path } = &ev.target {
            paths.push((ev.rule.to_string(), path.as_str().to_string()));
        }
    }
    for (rule, path) in [
        ("scratch-dir-exec", "/tmp/echo"),
        ("drift", "/opt/echo"),
        ("drift", "/usr/local/bin/echo"),
    ] {
        assert!(
            paths.iter().any(|(r, p)| r == rule && p == path),
            "no {rule} event for {path}: {paths:?}"
        );
    }
}
