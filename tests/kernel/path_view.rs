//! Paths as the task sees them (#20): exec.dirs and exec.allow_only are
//! matched on the path from the executing task's root, so a task in its own
//! mount namespace and root (a container) is judged by its own `/tmp`, never
//! by where its rootfs lives on the host; a tmpfs mounted over `/tmp`, a
//! deep nest and a path too long to build do not get a miner out.
//!
//! The "container" is a child forked into the test cgroup that unshares its
//! mount namespace and chroots into a busybox rootfs under the host's /tmp
//! (the case where host-resolved directories killed every exec). Each test
//! asserts on the files the "miner" (a busybox copy run as `touch`) would
//! have made.

use crate::common::*;
use minerguard::{cgroup::OwnedCgroup, Action, Profile, Rule, Target};
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// A rootfs with /bin/busybox (static) and empty /tmp, /opt, /dev/shm.
fn busybox_root(dir: &TempDir) -> PathBuf {
    let root = dir.path().join("rootfs");
    for d in ["bin", "tmp", "opt", "dev/shm"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed (scripts/install-deps.sh)");
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    root
}

/// Runs `script` with busybox sh in a child forked into `cg` that has its
/// own mount namespace and `root` as its root directory.
fn run_contained(cg: &OwnedCgroup, root: &Path, script: &str) -> ChildEnd {
    let root = CString::new(root.to_str().unwrap()).unwrap();
    let prog = CString::new("/bin/busybox").unwrap();
    let args = [
        CString::new("sh").unwrap(),
        CString::new("-c").unwrap(),
        CString::new(script).unwrap(),
    ];
    let argv: Vec<*const libc::c_char> = args
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    fork_in(Some(cg), || unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return 120;
        }
        // Mounts made in the child stay in its namespace.
        let slash = c"/";
        if libc::mount(
            std::ptr::null(),
            slash.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return 121;
        }
        if libc::chroot(root.as_ptr()) != 0 || libc::chdir(slash.as_ptr()) != 0 {
            return 122;
        }
        libc::execv(prog.as_ptr(), argv.as_ptr());
        123
    })
}

fn exec_event_paths(enforcer: &minerguard::Enforcer, rule: &str) -> Vec<String> {
    let mut paths = Vec::new();
    while let Some(ev) = wait_event(enforcer, |e| e.rule.as_ref() == rule) {
        if let Target::Exec { path } = &ev.target {
            paths.push(path.as_str().to_string());
        }
    }
    paths
}

#[test]
fn exec_dirs_mean_the_containers_own_directories() {
    require_kernel!();
    let dir = TempDir::new("pathview");
    let root = busybox_root(&dir);
    // The rootfs lives under the host's /tmp: a host-resolved /tmp would
    // refuse every exec in it, /bin/busybox included.
    assert!(root.starts_with(std::env::temp_dir()));
    let profile = Profile::new("scratch").rule(Rule::exec_dirs(
        "scratch-dir-exec",
        Action::Deny,
        ["/tmp", "/dev/shm"],
    ));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let script = "
        /bin/busybox touch /own-binary-ran
        cp /bin/busybox /opt/touch && /opt/touch /opt-ran
        cp /bin/busybox /tmp/touch; /tmp/touch /tmp-ran
        cp /bin/busybox /dev/shm/touch; /dev/shm/touch /shm-ran
        d=/tmp; for i in $(seq 40); do d=$d/d; done
        mkdir -p $d && cp /bin/busybox $d/touch; $d/touch /deep-ran
        /bin/busybox mount -t tmpfs none /tmp || exit 3
        cp /bin/busybox /tmp/touch && /tmp/touch /tmpfs-ran
        exit 0
    ";
    assert_eq!(run_contained(cg, &root, script), ChildEnd::Code(0));
    let ran = |f: &str| root.join(f).exists();
    assert!(
        ran("own-binary-ran"),
        "the container's own /bin/busybox was refused"
    );
    assert!(
        ran("opt-ran"),
        "a binary outside the scratch dirs was refused"
    );
    assert!(!ran("tmp-ran"), "a binary in the container's /tmp ran");
    assert!(!ran("shm-ran"), "a binary in the container's /dev/shm ran");
    assert!(!ran("deep-ran"), "a binary 40 directories below /tmp ran");
    assert!(
        !ran("tmpfs-ran"),
        "a binary on a tmpfs mounted over /tmp ran"
    );
    // Events name the path as the container sees it.
    let paths = exec_event_paths(enforcer, "scratch-dir-exec");
    for want in ["/tmp/touch", "/dev/shm/touch"] {
        assert!(
            paths.iter().any(|p| p == want),
            "no event for {want}: {paths:?}"
        );
    }
    assert!(
        paths.iter().all(|p| !p.contains("rootfs")),
        "host paths in events: {paths:?}"
    );
}

/// In a child forked into `cg` and chrooted into `root`: `depth` levels of
/// `d/` made under /opt by relative steps (no path is ever spelled out, so
/// no PATH_MAX applies), a hard link of /bin/busybox named `touch` at the
/// bottom, run by a relative path to create `marker`.
fn deep_exec(cg: &OwnedCgroup, root: &Path, depth: usize, marker: &str) -> ChildEnd {
    deep_exec_named(cg, root, "d", depth, marker)
}

/// [`deep_exec`] with levels named `name`.
fn deep_exec_named(
    cg: &OwnedCgroup,
    root: &Path,
    name: &str,
    depth: usize,
    marker: &str,
) -> ChildEnd {
    let root = CString::new(root.to_str().unwrap()).unwrap();
    let level = CString::new(name).unwrap();
    let marker = CString::new(marker).unwrap();
    let touch = c"touch";
    let argv = [touch.as_ptr(), marker.as_ptr(), std::ptr::null()];
    fork_in(Some(cg), || unsafe {
        if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/opt".as_ptr()) != 0 {
            return 122;
        }
        for _ in 0..depth {
            let d = level.as_c_str();
            if libc::mkdir(d.as_ptr(), 0o755) != 0 || libc::chdir(d.as_ptr()) != 0 {
                return 124;
            }
        }
        if libc::link(c"/bin/busybox".as_ptr(), touch.as_ptr()) != 0 {
            return 125;
        }
        libc::execv(c"./touch".as_ptr(), argv.as_ptr());
        100 + *libc::__errno_location()
    })
}

#[test]
fn a_path_too_deep_to_build_is_refused() {
    require_kernel!();
    let profile =
        Profile::new("scratch").rule(Rule::exec_dirs("scratch-dir-exec", Action::Deny, ["/tmp"]));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    // 50 levels under /opt (not a scratch dir) run.
    let dir = TempDir::new("pathshallow");
    let root = busybox_root(&dir);
    assert_eq!(deep_exec(cg, &root, 50, "/shallow-ran"), ChildEnd::Code(0));
    assert!(
        root.join("shallow-ran").exists(),
        "a 50-deep binary outside /tmp was refused"
    );
    // 2,100 levels: 4,200 bytes, past the longest path the kernel-side walk
    // builds. It cannot be named, so it cannot be cleared: refused.
    let dir = TempDir::new("pathdeep");
    let root = busybox_root(&dir);
    let refused = match denied_exec(enforcer, Action::Deny) {
        ExecOutcome::Killed(sig) => ChildEnd::Signal(sig),
        ExecOutcome::Refused(errno) => ChildEnd::Code(100 + errno),
        other => panic!("{other:?}"),
    };
    assert_eq!(deep_exec(cg, &root, 2100, "/deep-ran"), refused);
    assert!(
        !root.join("deep-ran").exists(),
        "a binary too deep to name ran"
    );
    assert!(
        wait_event(enforcer, |e| e.rule.as_ref() == "scratch-dir-exec").is_some(),
        "no event for the refused deep exec"
    );
    // 17 levels of 255-byte names under /opt: 4,352 bytes, too long to
    // build (6.1 once overran the buffer here and let it run); 15 (3,840
    // bytes) still run.
    let dir = TempDir::new("pathlong");
    let root = busybox_root(&dir);
    let long = "n".repeat(255);
    assert_eq!(
        deep_exec_named(cg, &root, &long, 15, "/fits-ran"),
        ChildEnd::Code(0)
    );
    assert!(root.join("fits-ran").exists());
    let dir = TempDir::new("pathlong2");
    let root = busybox_root(&dir);
    assert_eq!(deep_exec_named(cg, &root, &long, 17, "/long-ran"), refused);
    assert!(
        !root.join("long-ran").exists(),
        "a binary too long to name ran"
    );
}

#[test]
fn allow_only_paths_are_the_containers_own() {
    require_kernel!();
    let dir = TempDir::new("pathallow");
    let root = busybox_root(&dir);
    let profile =
        Profile::new("allow").rule(Rule::exec_allow_only("allow-list", Action::Deny, ["/bin/"]));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    let script = "
        /bin/busybox touch /listed-ran
        cp /bin/busybox /opt/touch; /opt/touch /unlisted-ran
        exit 0
    ";
    assert_eq!(run_contained(cg, &root, script), ChildEnd::Code(0));
    assert!(
        root.join("listed-ran").exists(),
        "the container's /bin/busybox was refused"
    );
    assert!(
        !root.join("unlisted-ran").exists(),
        "a binary outside /bin ran"
    );
    let paths = exec_event_paths(enforcer, "allow-list");
    assert!(paths.iter().any(|p| p == "/opt/touch"), "events: {paths:?}");
}

#[test]
fn learning_a_container_allows_its_programs_in_a_fresh_one() {
    require_kernel!();
    // Two containers of one "image": a rootfs with its app in /opt/app.
    let image = |tag: &str| {
        let dir = TempDir::new(tag);
        let root = busybox_root(&dir);
        std::fs::create_dir_all(root.join("opt/app")).unwrap();
        std::fs::copy(root.join("bin/busybox"), root.join("opt/app/touch")).unwrap();
        (dir, root)
    };
    let (_learned_dir, learned_root) = image("learnc");
    let cg = test_cgroup();
    let mut enforcer = enforcer();
    let workload = "/bin/busybox true; /opt/app/touch /app-ran";
    let learner = std::thread::scope(|s| {
        let run = s.spawn(|| {
            // Learning has begun by then (applying takes far less).
            std::thread::sleep(std::time::Duration::from_millis(700));
            run_contained(&cg, &learned_root, workload)
        });
        let learner = enforcer
            .learn(scope_of(&cg), std::time::Duration::from_secs(3), |_| {})
            .unwrap();
        assert_eq!(run.join().unwrap(), ChildEnd::Code(0));
        learner
    });
    let learned: Vec<String> = learner
        .learned()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    // The paths as the container saw them, not the host's.
    for want in ["/bin/busybox", "/opt/app/touch"] {
        assert!(
            learned.iter().any(|p| p == want),
            "{want} not learned: {learned:?}"
        );
    }
    assert!(
        learned.iter().all(|p| !p.contains("rootfs")),
        "host paths: {learned:?}"
    );

    // The learned profile is valid here although /opt/app/touch exists only
    // in the container, and enforced on a fresh container of the image.
    let profile = learner.allow_only_profile("learned", Action::Deny);
    profile.validate().expect("the learned profile checks");
    let (_fresh_dir, fresh) = image("learnf");
    let _handle = enforcer.apply(&profile, scope_of(&cg)).unwrap();
    let script = "
        /opt/app/touch /app-ran
        cp /bin/busybox /opt/newcomer; /opt/newcomer touch /newcomer-ran
        exit 0
    ";
    assert_eq!(run_contained(&cg, &fresh, script), ChildEnd::Code(0));
    assert!(
        fresh.join("app-ran").exists(),
        "the learned app was refused"
    );
    assert!(
        !fresh.join("newcomer-ran").exists(),
        "a program never learned ran"
    );
}

/// Runs `script` with busybox sh in a child forked into `cg`, in its own
/// mount namespace, chrooted into an overlay of a copy of `image` (the
/// read-only lower layer) and an empty upper layer, as a container runtime
/// mounts it. Every layer is on a tmpfs private to the child (the VM's
/// shared root cannot be an upper layer). The child's exit code is the
/// script's.
fn run_in_overlay(cg: &OwnedCgroup, dir: &TempDir, image: &Path, script: &str) -> ChildEnd {
    let s = dir.path().join("layers");
    std::fs::create_dir_all(&s).unwrap();
    let setup = format!(
        "set -e; S={s}; mount -t tmpfs none $S; mkdir $S/lower $S/upper $S/work $S/merged; \
         cp -a {image}/. $S/lower/; \
         mount -t overlay overlay -o lowerdir=$S/lower,upperdir=$S/upper,workdir=$S/work $S/merged; \
         exec chroot $S/merged /bin/busybox sh -c \"$0\"",
        s = s.display(),
        image = image.display()
    );
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap();
    let prog = CString::new(busybox).unwrap();
    let args = [
        c"sh".to_owned(),
        c"-c".to_owned(),
        CString::new(setup).unwrap(),
        CString::new(script).unwrap(),
    ];
    let argv: Vec<*const libc::c_char> = args
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    fork_in(Some(cg), || unsafe {
        let none = std::ptr::null();
        if libc::unshare(libc::CLONE_NEWNS) != 0
            || libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                none.cast(),
            ) != 0
        {
            return 120;
        }
        libc::execv(prog.as_ptr(), argv.as_ptr());
        123
    })
}

#[test]
fn drift_refuses_what_was_not_in_the_image() {
    require_kernel!();
    let dir = TempDir::new("drift");
    let image = busybox_root(&dir);
    std::fs::create_dir_all(image.join("opt/app")).unwrap();
    std::fs::copy(image.join("bin/busybox"), image.join("opt/app/touch")).unwrap();
    let profile = Profile::new("drift").rule(Rule::exec_drift("drift", Action::Deny));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    assert!(
        enforcer.unenforced(scoped.handle()).unwrap().is_empty(),
        "exec.drift is not enforced here: {}",
        enforcer.probe_report().overlay_types.detail
    );
    // Inside the container: what ran shows as its marker file; the exit
    // code has one bit per marker that exists (checked below).
    let script = "
        /bin/busybox touch /image-ran
        /opt/app/touch /image-app-ran
        mkdir -p /usr/local/bin && cp /bin/busybox /usr/local/bin/touch
        /usr/local/bin/touch /written-ran
        chmod 700 /opt/app/touch && /opt/app/touch /modified-ran
        r=0
        [ -e /image-ran ] && r=$((r | 1))
        [ -e /image-app-ran ] && r=$((r | 2))
        [ -e /written-ran ] && r=$((r | 4))
        [ -e /modified-ran ] && r=$((r | 8))
        exit $r
    ";
    let ChildEnd::Code(ran) = run_in_overlay(cg, &dir, &image, script) else {
        panic!("the container did not exit");
    };
    assert!(ran < 16, "the container's setup failed: exit {ran}");
    assert!(ran & 1 != 0, "the image's /bin/busybox was refused");
    assert!(ran & 2 != 0, "the image's /opt/app/touch was refused");
    assert!(ran & 4 == 0, "a binary written into the container ran");
    assert!(
        ran & 8 == 0,
        "a binary of the image changed in the container ran"
    );
    let paths = exec_event_paths(enforcer, "drift");
    assert!(
        paths.iter().any(|p| p == "/usr/local/bin/touch"),
        "events: {paths:?}"
    );
}

#[test]
fn a_script_in_a_scratch_dir_is_refused_whatever_runs_it() {
    require_kernel!();
    let dir = TempDir::new("pathscript");
    let root = busybox_root(&dir);
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let profile =
        Profile::new("scratch").rule(Rule::exec_dirs("scratch-dir-exec", Action::Deny, ["/tmp"]));
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    // The interpreter (/bin/sh) is outside /tmp; the script is in it, run
    // by an absolute path, a relative one, `./`, and through `..`.
    let script = "
        printf '#!/bin/sh\\n/bin/busybox touch \"$1\"\\n' > /tmp/job.sh
        chmod +x /tmp/job.sh
        cp /tmp/job.sh /opt/job.sh
        /opt/job.sh /outside-ran
        /tmp/job.sh /absolute-ran
        cd /tmp && ./job.sh /dot-ran
        cd / && tmp/job.sh /relative-ran
        cd /opt && ../tmp/job.sh /dotdot-ran
        /opt/../tmp/job.sh /inner-dotdot-ran
        //tmp///job.sh /slashes-ran
        exit 0
    ";
    assert_eq!(run_contained(cg, &root, script), ChildEnd::Code(0));
    let ran = |f: &str| root.join(f).exists();
    assert!(ran("outside-ran"), "a script outside /tmp was refused");
    for marker in [
        "absolute-ran",
        "dot-ran",
        "relative-ran",
        "dotdot-ran",
        "inner-dotdot-ran",
    ] {
        assert!(!ran(marker), "{marker}: a script in /tmp ran");
    }
    let paths = exec_event_paths(enforcer, "scratch-dir-exec");
    assert!(
        paths.iter().any(|p| p == "/tmp/job.sh"),
        "events: {paths:?}"
    );
}
