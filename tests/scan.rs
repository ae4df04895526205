//! Dynamic scan (#23), natively: miners started in a test cgroup before the
//! scan (a renamed XMRig, a copy in /dev/shm, a memfd exec, `ld.so ./xmrig`,
//! a client holding a connection to a pool port) are found, named by rule,
//! and killed, reported or left alone as the profile and options say. Every
//! test scans only a cgroup it created (and checks that what runs outside
//! it is untouched); no network but loopback and a namespace of its own.

mod common;

use std::{
    ffi::CString,
    os::unix::process::{CommandExt, ExitStatusExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    accept_within, child_cgroup, join_on_exec, spawn_in, test_cgroup, xmrig_binary, ChildGuard,
    FakePool, TempDir, TestNetns,
};
use minerguard::{
    cgroup::OwnedCgroup,
    scan::{Evidence, Outcome, ScanOptions, ScanReport, Scanner},
    Action, Mode, Profile, Rule,
};

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

/// A directory outside every scratch directory of the bundled profiles, so
/// only the rule a test means can match a program placed there; removed
/// on drop.
struct PlainDir(PathBuf);

impl PlainDir {
    fn new(tag: &str) -> PlainDir {
        // MINERGUARD_TEST_PLAIN_DIR: where the build's tree is read-only
        // (scripts/vm-test.sh's guest).
        let root = std::env::var_os("MINERGUARD_TEST_PLAIN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
        let dir = root.join(format!(
            "scan-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        PlainDir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for PlainDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A copy of `from` at `to`, executable.
fn copy_exec(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    std::fs::set_permissions(to, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// Waits (bounded: a process that never gets there fails the test) until
/// `pid`'s executable mappings include a file named `name`.
fn wait_mapped(pid: u32, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        if maps.lines().any(|l| {
            l.split_whitespace().nth(1).is_some_and(|p| p.contains('x')) && l.ends_with(name)
        }) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never mapped by {pid}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts a copy of `sleep` with no file behind it: the child makes a
/// memfd, writes the image and execs it (all before `spawn` returns).
fn memfd_sleep(cg: &OwnedCgroup) -> ChildGuard {
    let image = std::fs::read("/usr/bin/sleep").unwrap();
    let argv_c = [CString::new("sleep").unwrap(), CString::new("600").unwrap()];
    let mut cmd = Command::new("/bin/true");
    // Joining the cgroup must come first: the exec below does not return.
    join_on_exec(Some(cg), &mut cmd);
    // SAFETY: only syscalls in the child, on memory prepared before fork.
    unsafe {
        cmd.pre_exec(move || {
            let argv = [argv_c[0].as_ptr(), argv_c[1].as_ptr(), std::ptr::null()];
            let envp: [*const libc::c_char; 1] = [std::ptr::null()];
            let fd = libc::memfd_create(c"mg-scan-test".as_ptr(), 0);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut done = 0;
            while done < image.len() {
                let n = libc::write(fd, image[done..].as_ptr().cast(), image.len() - done);
                if n <= 0 {
                    return Err(std::io::Error::last_os_error());
                }
                done += n as usize;
            }
            libc::syscall(
                libc::SYS_execveat,
                fd,
                c"".as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
                libc::AT_EMPTY_PATH,
            );
            Err(std::io::Error::last_os_error())
        });
    }
    ChildGuard::new(cmd.spawn().expect("memfd exec"))
}

/// Starts `cmd` in `cg` with its output discarded.
fn start(cg: &OwnedCgroup, cmd: &mut Command) -> ChildGuard {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ChildGuard::new(spawn_in(Some(cg), cmd).expect("start"))
}

/// One process started before the scan, and the rule it must be found by.
struct Suspect {
    what: &'static str,
    rule: &'static str,
    child: ChildGuard,
}

/// Everything one scenario runs; dropped at the test's end (processes
/// killed and reaped, the namespace, pool and directories removed).
struct Scene {
    suspects: Vec<Suspect>,
    benign: ChildGuard,
    outsider: ChildGuard,
    _pool: FakePool,
    _netns: TestNetns,
    _conn: std::net::TcpStream,
    _listener: std::net::TcpListener,
    _tmp: TempDir,
    _plain: PlainDir,
    shm: PathBuf,
    _child: OwnedCgroup,
    cgroup: OwnedCgroup,
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.shm);
    }
}

/// Starts, in a fresh test cgroup, each kind of miner a scan must find,
/// one benign process, and (outside the cgroup) one that would match.
fn scene(test: &str) -> Option<Scene> {
    let xmrig = xmrig_binary(test)?;
    let cgroup = test_cgroup();
    let tmp = TempDir::new("scan");
    let plain = PlainDir::new(test);
    let pool = FakePool::start();
    let mut suspects = Vec::new();

    // A renamed XMRig outside any scratch dir: its pool URL gives it away.
    let renamed = plain.join("kworker-helper");
    copy_exec(&xmrig, &renamed);
    let mut cmd = Command::new(&renamed);
    cmd.arg(format!("--url=stratum+tcp://{}", pool.addr()))
        .args(["--user=x", "--pass=x", "--threads=1", "--no-huge-pages"])
        .args([
            "--randomx-wrmsr=-1",
            "--randomx-no-rdmsr",
            "--donate-level=1",
        ])
        .current_dir(tmp.path())
        .env("HOME", tmp.path());
    suspects.push(Suspect {
        what: "renamed XMRig",
        rule: "miner-cmdline",
        child: start(&cgroup, &mut cmd),
    });

    // XMRig run by the loader: the program is ld.so, xmrig only mapped.
    let named = plain.join("xmrig");
    copy_exec(&xmrig, &named);
    let mut cmd = Command::new("/lib64/ld-linux-x86-64.so.2");
    cmd.arg(&named)
        .arg(format!("--url={}", pool.addr()))
        .args(["--user=x", "--pass=x", "--threads=1", "--no-huge-pages"])
        .args([
            "--randomx-wrmsr=-1",
            "--randomx-no-rdmsr",
            "--donate-level=1",
        ])
        .current_dir(tmp.path())
        .env("HOME", tmp.path());
    let loader = start(&cgroup, &mut cmd);
    wait_mapped(loader.id(), "/xmrig");
    suspects.push(Suspect {
        what: "ld.so ./xmrig",
        rule: "miner-binary",
        child: loader,
    });

    // A program copied to /dev/shm.
    // One per test: the tests of this binary run in parallel.
    let shm = Path::new("/dev/shm").join(format!("mg-{test}-{}", std::process::id()));
    let _ = std::fs::remove_file(&shm);
    copy_exec(Path::new("/usr/bin/sleep"), &shm);
    suspects.push(Suspect {
        what: "/dev/shm copy",
        rule: "scratch-dir-exec",
        child: start(&cgroup, Command::new(&shm).arg("600")),
    });

    // A program with no file: memfd exec.
    suspects.push(Suspect {
        what: "memfd exec",
        rule: "fileless-exec",
        child: memfd_sleep(&cgroup),
    });

    // A client holding a connection to a pool port (3333), in a namespace
    // of the test's own so the port is nobody else's.
    let netns = TestNetns::new();
    let listener = netns.listener(3333);
    let script = format!(
        "exec 3<>/dev/tcp/{}/3333 && printf '%s\\n' '{{\"id\":1,\"method\":\"login\"}}' >&3 && exec sleep 600",
        netns.peer
    );
    let client = start(&cgroup, Command::new("/bin/bash").args(["-c", &script]));
    let conn = accept_within(&listener);
    suspects.push(Suspect {
        what: "Stratum client on a pool port",
        rule: "miner-pool-port",
        child: client,
    });

    // A benign process beside them, in a child cgroup (descendants count).
    let child = child_cgroup(&cgroup);
    let benign = start(&child, Command::new("/usr/bin/sleep").arg("600"));

    // Outside the scanned cgroup, a program that would match: never touched.
    let outsider = ChildGuard::new(
        Command::new(&shm)
            .arg("600")
            .spawn()
            .expect("start the outsider"),
    );
    Some(Scene {
        suspects,
        benign,
        outsider,
        _pool: pool,
        _netns: netns,
        _conn: conn,
        _listener: listener,
        _tmp: tmp,
        _plain: plain,
        shm,
        _child: child,
        cgroup,
    })
}

fn scan_scene(scene: &Scene, profile: &Profile, dry_run: bool) -> ScanReport {
    Scanner::new(profile)
        .expect("compile the profile for scanning")
        .scan(
            &[scene.cgroup.cgroup().path().to_path_buf()],
            &ScanOptions {
                dry_run,
                ..Default::default()
            },
        )
        .expect("scan the test cgroup")
}

/// Whether the guarded child is still running (not exited, not killed).
fn alive(child: &mut ChildGuard) -> bool {
    child.try_wait().expect("try_wait").is_none()
}

/// Asserts each suspect has a finding by its rule with `outcome`, and
/// nothing else was found.
fn assert_found(report: &ScanReport, scene: &Scene, outcome: &Outcome) {
    for s in &scene.suspects {
        let f = report
            .findings
            .iter()
            .find(|f| f.process.pid == s.child.id())
            .unwrap_or_else(|| panic!("{} (pid {}) not found: {report:#?}", s.what, s.child.id()));
        assert_eq!(&*f.decisive().rule, s.rule, "{}: {f:#?}", s.what);
        assert_eq!(&f.outcome, outcome, "{}: {f:#?}", s.what);
        let line: serde_json::Value =
            serde_json::from_str(&minerguard::scan::scan_json(f, &report.profile)).unwrap();
        assert_eq!(line["rule"], s.rule);
        assert_eq!(line["output_fields"]["minerguard.kind"], "scan");
        assert_eq!(line["output_fields"]["proc.pid"], s.child.id());
    }
    assert_eq!(
        report.findings.len(),
        scene.suspects.len(),
        "only the suspects: {report:#?}"
    );
}

#[test]
fn miners_running_before_the_scan_are_found_and_killed_under_container_strict() {
    if !root_or_skip("scan_kills") {
        return;
    }
    let Some(mut scene) = scene("scan_kills") else {
        return;
    };
    let profile = Profile::bundled("container-strict").unwrap();
    let report = scan_scene(&scene, &profile, false);
    assert_found(&report, &scene, &Outcome::Killed);
    // The evidence says how each was found.
    let of = |pid: u32| {
        report
            .findings
            .iter()
            .find(|f| f.process.pid == pid)
            .unwrap()
            .decisive()
            .evidence
            .clone()
    };
    assert!(
        matches!(of(scene.suspects[1].child.id()), Evidence::Mapped { ref path } if path.ends_with("/xmrig"))
    );
    assert!(
        matches!(of(scene.suspects[3].child.id()), Evidence::Exe { ref path } if path.starts_with("/memfd:"))
    );
    assert!(
        matches!(of(scene.suspects[4].child.id()), Evidence::Socket { peer, .. } if peer.port() == 3333)
    );
    for s in &mut scene.suspects {
        let status = s.child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{} killed", s.what);
    }
    assert!(alive(&mut scene.benign), "the benign process runs on");
    assert!(
        alive(&mut scene.outsider),
        "nothing outside the cgroup is touched"
    );
}

#[test]
fn an_audit_profile_reports_them_and_leaves_them_running() {
    if !root_or_skip("scan_audit") {
        return;
    }
    let Some(mut scene) = scene("scan_audit") else {
        return;
    };
    let mut profile = Profile::bundled("container-strict").unwrap();
    profile.mode = Mode::Audit;
    let report = scan_scene(&scene, &profile, false);
    assert_found(&report, &scene, &Outcome::Reported);
    for s in &mut scene.suspects {
        assert!(alive(&mut s.child), "{} still runs", s.what);
    }
    assert!(alive(&mut scene.benign));
}

#[test]
fn kill_container_kills_the_miners_whole_cgroup_and_not_its_neighbours() {
    if !root_or_skip("kill_container_kills_the_miners_whole_cgroup_and_not_its_neighbours") {
        return;
    }
    let dir = PlainDir::new("kill-container");
    let miner = dir.join("xmrig");
    copy_exec(Path::new("/usr/bin/sleep"), &miner);
    let scope = test_cgroup();
    let container = child_cgroup(&scope);
    let neighbour = child_cgroup(&scope);
    let mut running = start(&container, Command::new(&miner).arg("600"));
    let mut beside = start(&container, Command::new("sleep").arg("600"));
    let mut next_door = start(&neighbour, Command::new("sleep").arg("600"));
    // Until the miner has exec'd, the child still runs the test's image.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{}/comm", running.id()))
        .map_or(true, |c| c.trim_end() != "xmrig")
    {
        assert!(Instant::now() < deadline, "the miner did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let profile = Profile::new("scan-kill-container").rule(Rule::exec_names(
        "miner",
        Action::KillContainer,
        ["xmrig"],
    ));
    let report = Scanner::new(&profile)
        .unwrap()
        .scan(
            &[scope.cgroup().path().to_path_buf()],
            &ScanOptions::default(),
        )
        .unwrap();
    assert_eq!(report.findings.len(), 1, "{report:?}");
    let finding = &report.findings[0];
    assert_eq!(finding.process.pid, running.id());
    assert_eq!(
        finding.outcome,
        Outcome::KilledCgroup {
            cgroup: container.cgroup().path().to_path_buf(),
            method: minerguard::cgroup_kill::KillMethod::CgroupKill,
        }
    );
    let ev = finding.event(&report.profile);
    assert_eq!(ev.action, Action::KillContainer);
    assert_eq!(ev.requested, Action::KillContainer);
    assert!(ev.cgroup_kill.as_ref().is_some_and(|k| k.killed()));
    for child in [&mut running, &mut beside] {
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        alive(&mut next_door),
        "a neighbouring cgroup's process was killed"
    );
}

#[test]
fn a_dry_run_kills_nothing() {
    if !root_or_skip("scan_dry_run") {
        return;
    }
    let Some(mut scene) = scene("scan_dry_run") else {
        return;
    };
    let profile = Profile::bundled("container-strict").unwrap();
    let report = scan_scene(&scene, &profile, true);
    assert_found(&report, &scene, &Outcome::DryRun);
    for s in &mut scene.suspects {
        assert!(alive(&mut s.child), "{} still runs", s.what);
    }
}

#[test]
fn many_benign_processes_give_no_finding() {
    if !root_or_skip("scan_benign") {
        return;
    }
    let cgroup = test_cgroup();
    let child = child_cgroup(&cgroup);
    let mut procs = Vec::new();
    for i in 0..200 {
        let cg = if i % 2 == 0 { &cgroup } else { &child };
        procs.push(start(cg, Command::new("/usr/bin/sleep").arg("600")));
    }
    let profile = Profile::bundled("container-strict").unwrap();
    let report = minerguard::scan::scan(
        &[cgroup.cgroup().path().to_path_buf()],
        &profile,
        &ScanOptions::default(),
    )
    .expect("scan");
    assert_eq!(report.scanned + report.vanished, 200, "{report:#?}");
    assert_eq!(report.scanned, 200);
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    for p in &mut procs {
        assert!(alive(p));
    }
    drop(procs);
    drop(child);
}

#[test]
fn a_path_that_is_not_a_cgroup_is_a_typed_error() {
    let profile = Profile::bundled("default").unwrap();
    let err = minerguard::scan::scan(
        &[PathBuf::from("/proc/self")],
        &profile,
        &ScanOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, minerguard::Error::Cgroup(_)),
        "unexpected: {err:?}"
    );
    assert!(err.to_string().contains("/proc/self"), "{err}");
}

/// An overlay mounted for one test (outside scratch dirs), unmounted and
/// removed on drop: `lower` is the image, what is written through
/// `merged` lands in the upper layer.
struct Overlay {
    dir: PlainDir,
}

impl Overlay {
    fn mount(test: &str) -> Overlay {
        let dir = PlainDir::new(test);
        for d in ["lower", "upper", "work", "merged"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let options = format!(
            "lowerdir={0}/lower,upperdir={0}/upper,workdir={0}/work",
            dir.0.display()
        );
        let to_c = |s: &str| CString::new(s).unwrap();
        let (target, data) = (to_c(dir.join("merged").to_str().unwrap()), to_c(&options));
        // SAFETY: NUL-terminated strings; mounting as root in a directory of ours.
        let rc = unsafe {
            libc::mount(
                c"overlay".as_ptr(),
                target.as_ptr(),
                c"overlay".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "mount overlay: {}", std::io::Error::last_os_error());
        Overlay { dir }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.join(sub)
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let target = CString::new(self.path("merged").to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path of ours.
        // Detached first; the directory goes with `dir`.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn a_program_written_into_the_overlay_is_drift_and_the_image_is_not() {
    if !root_or_skip("scan_drift") {
        return;
    }
    let cgroup = test_cgroup();
    let overlay = Overlay::mount("drift");
    // In the image (lower layer), then one written after the mount.
    copy_exec(
        Path::new("/usr/bin/sleep"),
        &overlay.path("lower/image-sleep"),
    );
    copy_exec(
        Path::new("/usr/bin/sleep"),
        &overlay.path("merged/written-sleep"),
    );
    assert!(
        overlay.path("upper/written-sleep").exists(),
        "not in the upper layer"
    );
    let mut image = start(
        &cgroup,
        Command::new(overlay.path("merged/image-sleep")).arg("600"),
    );
    let mut written = start(
        &cgroup,
        Command::new(overlay.path("merged/written-sleep")).arg("600"),
    );
    let profile = Profile::new("drift").rule(minerguard::Rule::exec_drift(
        "drift",
        minerguard::Action::Deny,
    ));
    let report = minerguard::scan::scan(
        &[cgroup.cgroup().path().to_path_buf()],
        &profile,
        &ScanOptions::default(),
    )
    .expect("scan");
    assert_eq!(report.scanned, 2);
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    let f = &report.findings[0];
    assert_eq!(f.process.pid, written.id());
    assert_eq!(&*f.decisive().rule, "drift");
    assert_eq!(f.outcome, Outcome::Killed);
    assert_eq!(written.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(alive(&mut image), "the image's program runs on");
    drop(image);
    drop(written);
}
