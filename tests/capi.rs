//! The C API from C: the example shim and a contract program are compiled
//! with `cc -Wall -Werror` against the checked-in header, linked against the
//! libraries cargo built (static and shared), and run. The enforcement tests
//! run on the real kernel, in cgroups the C programs (or these tests) create
//! and remove; network only on loopback.

mod common;

use std::{
    ffi::CStr,
    mem::offset_of,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
    time::{Duration, Instant},
};

use common::*;
use minerguard::capi::{self, mg_event, mg_probe_report, mg_result};

macro_rules! require_kernel {
    () => {
        if !kernel_tests_enabled(module_path!()) {
            return;
        }
    };
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put the static and shared libraries built with this test:
/// `target/<profile>/deps/`, next to the test binary (`cargo test` does not
/// copy them up to `target/<profile>/`; `cargo build` does).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("target/<profile>/deps/<test>");
    let found = [deps, deps.parent().unwrap_or(deps)]
        .into_iter()
        .find(|d| d.join("libminerguard.a").exists())
        .unwrap_or(deps);
    found.to_path_buf()
}

/// The flags pkg-config gives for `minerguard.pc.in` filled in for this
/// build tree.
fn pkg_config(dir: &Path, args: &[&str]) -> Vec<String> {
    let template = std::fs::read_to_string(repo().join("include/minerguard.pc.in")).unwrap();
    let pc = template
        .replace("@LIBDIR@", lib_dir().to_str().unwrap())
        .replace("@INCLUDEDIR@", repo().join("include").to_str().unwrap())
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"));
    std::fs::write(dir.join("minerguard.pc"), pc).unwrap();
    let out = Command::new("pkg-config")
        .args(args)
        .arg("minerguard")
        .env("PKG_CONFIG_PATH", dir)
        .output()
        .expect("pkg-config runs (apt install pkg-config)");
    assert!(out.status.success(), "pkg-config: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

struct Built {
    _dir: TempDir,
    shim: PathBuf,
    contract: PathBuf,
    /// The contract program with AddressSanitizer + LeakSanitizer.
    contract_asan: PathBuf,
    netprobe: PathBuf,
}

fn cc(dir: &Path, source: &str, out: &str, link: &[String]) -> PathBuf {
    let exe = dir.join(out);
    let output = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g"])
        .arg(format!(
            "-DMG_EXPECTED_VERSION=\"{}\"",
            env!("CARGO_PKG_VERSION")
        ))
        .arg("-I")
        .arg(repo().join("include"))
        .arg(repo().join(source))
        .arg("-o")
        .arg(&exe)
        .args(link)
        .output()
        .expect("cc runs");
    assert!(
        output.status.success(),
        "compiling {source} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    exe
}

/// Compiles the C programs once per test run: the shim against the static
/// library, the contract program against the shared one.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        remove_stale_builds();
        let dir = TempDir::new("capi-build");
        let lib = lib_dir();
        let archive = lib.join("libminerguard.a");
        assert!(archive.exists(), "{} was not built", archive.display());
        let mut static_link = vec![archive.to_str().unwrap().to_string()];
        static_link.extend(
            pkg_config(dir.path(), &["--libs-only-l", "--static"])
                .into_iter()
                .filter(|l| l != "-lminerguard"),
        );
        let mut shared_link = pkg_config(dir.path(), &["--libs"]);
        shared_link.push(format!("-Wl,-rpath,{}", lib.display()));
        Built {
            shim: cc(dir.path(), "examples/c/shim.c", "shim", &static_link),
            contract: cc(
                dir.path(),
                "tests/c/capi_contract.c",
                "capi_contract",
                &shared_link,
            ),
            contract_asan: cc(
                dir.path(),
                "tests/c/capi_contract.c",
                "capi_contract_asan",
                &[
                    ["-fsanitize=address", "-fno-omit-frame-pointer"]
                        .map(String::from)
                        .as_slice(),
                    &shared_link,
                ]
                .concat(),
            ),
            netprobe: cc(dir.path(), "tests/c/netprobe.c", "netprobe", &[]),
            _dir: dir,
        }
    })
}

/// Removes the build directories of earlier runs: a static is never
/// dropped, so each run's directory outlives it (about 50 MB each). One is
/// stale when the test process named in it (`minerguard-capi-build-<pid>-<n>`)
/// is gone.
fn remove_stale_builds() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("minerguard-capi-build-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn run(cmd: &mut Command) -> (Output, String) {
    // The library this build made, never another one: cargo's
    // LD_LIBRARY_PATH also names target/<profile>, where a `cargo build`
    // of an older tree may have left a libminerguard.so (it wins over the
    // programs' runpath).
    let out = cmd
        .env("LD_LIBRARY_PATH", lib_dir())
        .output()
        .expect("run C program");
    let text = format!(
        "status: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// Asserts a TAP-style run passed every check, and at least `min` of them.
fn assert_all_ok(out: &Output, text: &str, min: usize) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ok = stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(
        !stdout.contains("not ok"),
        "a C contract check failed:\n{text}"
    );
    assert!(out.status.success(), "{text}");
    assert!(ok >= min, "only {ok} checks ran (expected {min}+):\n{text}");
}

fn backend_arg() -> String {
    std::env::var("MINERGUARD_TEST_BACKEND").unwrap_or_else(|_| "auto".into())
}

#[test]
fn c_contract_checks_pass_without_a_kernel() {
    let b = built();
    let (out, text) = run(&mut Command::new(&b.contract));
    assert_all_ok(&out, &text, 70);
}

#[test]
fn c_and_rust_agree_on_struct_layouts() {
    let b = built();
    let (out, text) = run(&mut Command::new(&b.contract));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let layout = |name: &str| -> Vec<(String, usize)> {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("layout {name} ")))
            .unwrap_or_else(|| panic!("no layout line for {name}:\n{text}"));
        line.split_whitespace()
            .skip(2)
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.parse().unwrap())
            })
            .collect()
    };
    let rust_event = [
        ("size", std::mem::size_of::<mg_event>()),
        ("time_unix_ns", offset_of!(mg_event, time_unix_ns)),
        ("cgroup_id", offset_of!(mg_event, cgroup_id)),
        ("pid", offset_of!(mg_event, pid)),
        ("kind", offset_of!(mg_event, kind)),
        ("family", offset_of!(mg_event, family)),
        ("protocol", offset_of!(mg_event, protocol)),
        ("truncated", offset_of!(mg_event, truncated)),
        ("ip", offset_of!(mg_event, ip)),
        ("comm", offset_of!(mg_event, comm)),
        ("path", offset_of!(mg_event, path)),
        ("rule", offset_of!(mg_event, rule)),
        ("profile", offset_of!(mg_event, profile)),
        ("ppid", offset_of!(mg_event, ppid)),
        ("proc_source", offset_of!(mg_event, proc_source)),
        ("pname", offset_of!(mg_event, pname)),
        ("cmdline", offset_of!(mg_event, cmdline)),
        ("pattern", offset_of!(mg_event, pattern)),
        ("killed_cgroup", offset_of!(mg_event, killed_cgroup)),
        ("kill_error", offset_of!(mg_event, kill_error)),
    ];
    let expected: Vec<(String, usize)> = rust_event
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(layout("mg_event"), expected);
    let rust_probe = [
        ("size", std::mem::size_of::<mg_probe_report>()),
        ("kernel", offset_of!(mg_probe_report, kernel)),
        (
            "bpf_lsm_detail",
            offset_of!(mg_probe_report, bpf_lsm_detail),
        ),
    ];
    let expected: Vec<(String, usize)> = rust_probe
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(layout("mg_probe_report"), expected);
    let rust_options = [
        ("size", std::mem::size_of::<capi::mg_scan_options>()),
        ("dry_run", offset_of!(capi::mg_scan_options, dry_run)),
        ("exclude", offset_of!(capi::mg_scan_options, exclude)),
        (
            "exclude_count",
            offset_of!(capi::mg_scan_options, exclude_count),
        ),
    ];
    let expected: Vec<(String, usize)> = rust_options
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(layout("mg_scan_options"), expected);
    let rust_enforcer_options = [
        (
            "size",
            std::mem::size_of::<capi::enforcer::mg_enforcer_options>(),
        ),
        (
            "backend",
            offset_of!(capi::enforcer::mg_enforcer_options, backend),
        ),
        (
            "instance",
            offset_of!(capi::enforcer::mg_enforcer_options, instance),
        ),
        (
            "stratum_judge",
            offset_of!(capi::enforcer::mg_enforcer_options, stratum_judge),
        ),
    ];
    let expected: Vec<(String, usize)> = rust_enforcer_options
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(layout("mg_enforcer_options"), expected);
}

#[test]
fn header_compiles_as_cpp_too() {
    let dir = TempDir::new("capi-cpp");
    let src = dir.path().join("use.cpp");
    std::fs::write(
        &src,
        "#include \"minerguard.h\"\nint main() { mg_event ev{}; return mg_version() && ev.pid == 0 ? 0 : 1; }\n",
    )
    .unwrap();
    let out = Command::new("c++")
        .args([
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsyntax-only",
            "-I",
        ])
        .arg(repo().join("include"))
        .arg(&src)
        .output()
        .expect("c++ runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Ends a pinned instance when a test ends, passed or not: first the C
/// enforcer handle still holding it, if any, then the instance.
struct UnpinOnDrop {
    holder: std::cell::Cell<*mut capi::mg_enforcer>,
    /// Dropped after the enforcer is freed (fields drop in order).
    name: InstanceName,
}

impl UnpinOnDrop {
    fn new(tag: &str) -> Self {
        UnpinOnDrop {
            holder: std::cell::Cell::new(std::ptr::null_mut()),
            name: InstanceName::new(tag),
        }
    }
}

impl Drop for UnpinOnDrop {
    fn drop(&mut self) {
        let _ = capi::enforcer::mg_enforcer_free(self.holder.get());
    }
}

#[test]
fn c_contract_checks_pass_with_an_enforcer() {
    require_kernel!();
    let b = built();
    let cg = test_cgroup();
    let pinned = UnpinOnDrop::new("contract");
    let (out, text) = run(Command::new(&b.contract)
        .arg(cg.cgroup().path())
        .arg(backend_arg())
        .arg(&pinned.name.0));
    assert_all_ok(&out, &text, 130);
    assert!(
        minerguard::pin::instance(&pinned.name.0).unwrap().is_none(),
        "the contract left its instance pinned:\n{text}"
    );
    cg.remove().expect("remove the test cgroup");
}

/// Runs the shim with `profile` (YAML) on `cmd`; returns its output, the
/// text for messages, and the cgroup it reported.
fn shim(dir: &TempDir, profile: &str, cmd: &[&Path]) -> (Output, String, String) {
    let file = dir.path().join("profile.yaml");
    std::fs::write(&file, profile).unwrap();
    let (out, text) = run(Command::new(&built().shim)
        .args(["-b", &backend_arg()])
        .arg(&file)
        .arg("--")
        .args(cmd));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cgroup = stdout
        .lines()
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("cgroup=")))
        .unwrap_or_else(|| panic!("the shim did not apply:\n{text}"))
        .to_string();
    assert!(
        !Path::new(&cgroup).exists(),
        "the shim left its cgroup behind:\n{text}"
    );
    assert!(
        stdout.contains("dropped ring=0 channel=0"),
        "events were dropped:\n{text}"
    );
    (out, text, cgroup)
}

#[test]
fn c_shim_stops_a_miner_exec_in_its_cgroup() {
    require_kernel!();
    let dir = TempDir::new("capi-exec");
    let miner = fake_miner(&dir, "xmrig");
    let marker = dir.path().join("marker");
    let profile = "apiVersion: minerguard/v1\nname: shim-test\nrules:\n  \
                   - name: miner-binary\n    action: deny\n    exec: { names: [xmrig] }\n";
    let (out, text, _) = shim(&dir, profile, &[&miner, &marker]);
    let stdout = String::from_utf8_lossy(&out.stdout);

    assert!(!marker.exists(), "the miner ran inside the scope:\n{text}");
    if stdout.contains("backend=cgroup") {
        // Killed by the exec tracepoint before its first instruction.
        assert_eq!(out.status.code(), Some(128 + libc::SIGKILL), "{text}");
        assert!(stdout.contains("action=kill requested=deny"), "{text}");
    } else {
        // BPF-LSM: execve itself fails.
        assert!(stdout.contains("backend=lsm"), "{text}");
        assert_eq!(out.status.code(), Some(126), "{text}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
            "{text}"
        );
        assert!(stdout.contains("action=deny requested=deny"), "{text}");
    }
    let event = stdout
        .lines()
        .find(|l| l.contains("event rule=miner-binary"))
        .unwrap_or_else(|| panic!("no exec event through the C API:\n{text}"));
    assert!(event.contains("profile=shim-test"), "{event}");
    assert!(
        event.contains(&format!("kind=exec path={}", miner.display())),
        "{event}"
    );
    // Who did it: the shim's child (the miner after its exec on the cgroup
    // backend, the shim's fork before it on lsm); both command lines name
    // the marker.
    assert!(!event.contains(" ppid=0 "), "{event}");
    let cmdline = event.split("cmdline=[").nth(1).unwrap_or("");
    assert!(cmdline.contains(&marker.display().to_string()), "{event}");

    // The same file runs outside the scope.
    let outside = dir.path().join("outside");
    assert!(Command::new(&miner)
        .arg(&outside)
        .status()
        .unwrap()
        .success());
    assert!(outside.exists());
}

#[test]
fn c_shim_refuses_a_pool_connect_in_its_cgroup() {
    require_kernel!();
    let dir = TempDir::new("capi-connect");
    let pool = listener(false);
    let port = pool.local_addr().unwrap().port();
    let profile = format!(
        "apiVersion: minerguard/v1\nname: shim-test\nrules:\n  \
         - name: pool-port\n    action: deny\n    connect: {{ ports: [{port}] }}\n"
    );
    let netprobe = &built().netprobe;
    let port_arg = PathBuf::from(port.to_string());
    let (out, text, _) = shim(
        &dir,
        &profile,
        &[netprobe.as_path(), Path::new("127.0.0.1"), &port_arg],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(libc::EPERM), "{text}");
    assert!(
        stdout.contains("connect failed errno=1 (Operation not permitted)"),
        "{text}"
    );
    let event = stdout
        .lines()
        .find(|l| l.contains("event rule=pool-port"))
        .unwrap_or_else(|| panic!("no connect event through the C API:\n{text}"));
    assert!(
        event.contains(&format!("kind=connect dst=127.0.0.1 port={port} proto=tcp")),
        "{event}"
    );
    assert!(event.contains("action=deny requested=deny"), "{event}");

    // Outside the scope the same connect succeeds.
    let (direct, text) = run(Command::new(netprobe)
        .arg("127.0.0.1")
        .arg(port.to_string()));
    assert!(direct.status.success(), "{text}");
}

fn last_error() -> String {
    // SAFETY: mg_last_error never returns NULL.
    unsafe { CStr::from_ptr(capi::result::mg_last_error()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn rust_callers_get_the_same_contract() {
    use capi::profile::*;
    let mut p: *mut mg_profile = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated strings and out-pointer.
    let rc = unsafe { mg_profile_new(c"r".as_ptr(), &mut p) };
    assert_eq!(rc, mg_result::MG_OK);
    // SAFETY: a count of 2 with a NULL array is refused before any read.
    let rc = unsafe {
        mg_profile_add_connect_ports(
            p,
            c"x".as_ptr(),
            mg_action::MG_ACTION_DENY as u32,
            std::ptr::null(),
            2,
        )
    };
    assert_eq!(rc, mg_result::MG_ERR_NULL_POINTER);
    assert!(last_error().contains("`ports`"), "{}", last_error());
    assert_eq!(mg_profile_free(p), mg_result::MG_OK);
    assert_eq!(mg_profile_free(p), mg_result::MG_ERR_INVALID_HANDLE);
}

#[test]
fn freeing_while_other_threads_use_a_handle_is_reported_not_undefined() {
    use capi::profile::*;
    for _ in 0..20 {
        let mut p: *mut mg_profile = std::ptr::null_mut();
        // SAFETY: valid string and out-pointer.
        assert_eq!(
            unsafe { mg_profile_new(c"shared".as_ptr(), &mut p) },
            mg_result::MG_OK
        );
        let token = p as usize;
        let users: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    let p = token as *mut mg_profile;
                    let ports = [3333u16];
                    let mut outcomes = Vec::new();
                    for _ in 0..200 {
                        // SAFETY: valid strings and a one-element array.
                        let rc = unsafe {
                            mg_profile_add_connect_ports(p, c"pool".as_ptr(), 1, ports.as_ptr(), 1)
                        };
                        outcomes.push(rc);
                    }
                    outcomes
                })
            })
            .collect();
        assert_eq!(mg_profile_free(p), mg_result::MG_OK);
        for u in users {
            for rc in u.join().expect("no thread crashed") {
                assert!(
                    matches!(rc, mg_result::MG_OK | mg_result::MG_ERR_INVALID_HANDLE),
                    "{rc:?}"
                );
            }
        }
        assert_eq!(mg_profile_validate(p), mg_result::MG_ERR_INVALID_HANDLE);
    }
}

/// A profile with a seccomp rule, through the C API.
fn seccomp_profile(errno: u16) -> *mut capi::mg_profile {
    let text = format!(
        "apiVersion: minerguard/v1\nname: sc\nrules:\n  - name: no-ptrace\n    action: deny\n    \
         seccomp:\n      syscalls:\n        - names: [ptrace, process_vm_readv]\n          \
         action: {{ errno: {errno} }}\n"
    );
    let mut p: *mut capi::mg_profile = std::ptr::null_mut();
    // SAFETY: text of the given length; writable out-pointer.
    let rc =
        unsafe { capi::profile::mg_profile_from_text(text.as_ptr().cast(), text.len(), &mut p) };
    assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
    p
}

/// Calls an export C style: a size query, a too-small buffer, then the
/// copy. `f(buf, len, needed)` forwards to the C function.
fn export(f: impl Fn(*mut u8, usize, *mut usize) -> mg_result) -> Vec<u8> {
    let mut needed = 0;
    let rc = f(std::ptr::null_mut(), 0, &mut needed);
    assert_eq!(rc, mg_result::MG_ERR_BUFFER_TOO_SMALL, "{}", last_error());
    let mut short = vec![0xaau8; needed - 1];
    let mut again = 0;
    let rc = f(short.as_mut_ptr(), short.len(), &mut again);
    assert_eq!(rc, mg_result::MG_ERR_BUFFER_TOO_SMALL);
    assert_eq!(again, needed, "a too-small buffer reports the size needed");
    let mut buf = vec![0u8; needed];
    let rc = f(buf.as_mut_ptr(), buf.len(), std::ptr::null_mut());
    assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
    buf
}

#[test]
fn seccomp_exports_match_the_library() {
    use capi::seccomp::*;
    use minerguard::{seccomp::oci, SeccompFilter, SeccompPolicy};

    let p = seccomp_profile(13);
    let policy = {
        let text = "apiVersion: minerguard/v1\nname: sc\nrules:\n  - name: no-ptrace\n    \
                    action: deny\n    seccomp:\n      syscalls:\n        - names: [ptrace, \
                    process_vm_readv]\n          action: { errno: 13 }\n";
        let profile = minerguard::Profile::from_yaml(text).unwrap();
        SeccompPolicy::compile(&profile).unwrap().unwrap()
    };

    // SAFETY (both closures): `export` passes a buffer of `len` writable
    // bytes (or NULL with 0) and a writable or NULL `needed`.
    let bpf = export(|buf, len, needed| unsafe { mg_profile_seccomp_bpf(p, buf, len, needed) });
    assert_eq!(bpf.len() % 8, 0, "whole sock_filter instructions");
    assert_eq!(bpf, SeccompFilter::new(&policy).unwrap().to_bpf().unwrap());

    let json_bytes = export(|buf, len, needed| unsafe {
        mg_profile_seccomp_oci_json(p, buf.cast(), len, needed)
    });
    let text = CStr::from_bytes_with_nul(&json_bytes).expect("NUL-terminated, no inner NUL");
    let json: serde_json::Value = serde_json::from_str(text.to_str().unwrap()).unwrap();
    assert_eq!(json["defaultAction"], "SCMP_ACT_ALLOW");
    assert_eq!(json["syscalls"][0]["action"], "SCMP_ACT_ERRNO");
    assert_eq!(json["syscalls"][0]["errnoRet"], 13);
    assert_eq!(json, oci::to_oci(&policy).unwrap());
    assert_eq!(oci::from_oci(&json).unwrap().entries.len(), 2);

    let mut has = false;
    // SAFETY: writable out-pointer.
    assert_eq!(
        unsafe { mg_profile_has_seccomp(p, &mut has) },
        mg_result::MG_OK
    );
    assert!(has);
    assert_eq!(capi::profile::mg_profile_free(p), mg_result::MG_OK);
    // SAFETY: a size query on a freed handle.
    let rc = unsafe { mg_profile_seccomp_bpf(p, std::ptr::null_mut(), 0, std::ptr::null_mut()) };
    assert_eq!(rc, mg_result::MG_ERR_INVALID_HANDLE);
}

#[test]
fn seccomp_without_a_seccomp_rule_is_invalid_argument() {
    use capi::{profile::*, seccomp::*};
    let mut p: *mut mg_profile = std::ptr::null_mut();
    // SAFETY: valid strings and out-pointer.
    unsafe { mg_profile_new(c"plain".as_ptr(), &mut p) };
    let ports = [3333u16];
    // SAFETY: a one-element array.
    unsafe { mg_profile_add_connect_ports(p, c"pool".as_ptr(), 1, ports.as_ptr(), 1) };
    let mut needed = 7;
    // SAFETY: size query.
    let rc = unsafe { mg_profile_seccomp_oci_json(p, std::ptr::null_mut(), 0, &mut needed) };
    assert_eq!(rc, mg_result::MG_ERR_INVALID_ARGUMENT);
    assert_eq!(needed, 7, "nothing is written");
    assert!(last_error().contains("no seccomp rule"), "{}", last_error());
    // Refused before anything is installed: safe in the test runner.
    assert_eq!(
        mg_profile_seccomp_install(p),
        mg_result::MG_ERR_INVALID_ARGUMENT
    );
    assert_eq!(mg_profile_free(p), mg_result::MG_OK);
}

#[test]
fn c_shim_runs_the_command_under_the_profiles_seccomp_filter() {
    require_kernel!();
    let dir = TempDir::new("capi-seccomp");
    // ptrace(PTRACE_TRACEME): exits with its errno, 0 when it succeeds.
    let script = "my $r = syscall(101, 0, 0, 0, 0); exit($r == -1 ? $!+0 : 0)";
    let cmd = [
        Path::new("/usr/bin/perl"),
        Path::new("-e"),
        Path::new(script),
    ];
    let profile = "apiVersion: minerguard/v1\nname: shim-test\nrules:\n  \
                   - name: no-ptrace\n    action: deny\n    seccomp:\n      syscalls:\n        \
                   - names: [ptrace]\n          action: { errno: 13 }\n";
    let (out, text, _) = shim(&dir, profile, &cmd);
    assert_eq!(out.status.code(), Some(libc::EACCES), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("shim: seccomp instructions="),
        "{text}"
    );

    // Without a seccomp rule the same call succeeds.
    let plain = "apiVersion: minerguard/v1\nname: shim-test\nrules:\n  \
                 - name: miner-binary\n    action: deny\n    exec: { names: [xmrig] }\n";
    let (out, text, _) = shim(&dir, plain, &cmd);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("seccomp"),
        "{text}"
    );
}

/// valgrind memcheck over a C program: any definite leak or memory error
/// makes it exit 99.
fn under_valgrind(program: &Path) -> Command {
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--quiet",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "--error-exitcode=99",
    ])
    .arg(program);
    cmd
}

/// The contract with an enforcer (apply, events, update, remove, seccomp in
/// a child) under AddressSanitizer: LeakSanitizer reports any leak at exit,
/// in the C program or the library (their mallocs are all intercepted).
#[test]
fn c_contract_with_an_enforcer_leaks_nothing_under_leak_sanitizer() {
    require_kernel!();
    let b = built();
    let cg = test_cgroup();
    let pinned = UnpinOnDrop::new("contract-asan");
    let (out, text) = run(Command::new(&b.contract_asan)
        .env("ASAN_OPTIONS", "detect_leaks=1:exitcode=98")
        .arg(cg.cgroup().path())
        .arg(backend_arg())
        .arg(&pinned.name.0));
    assert!(
        !text.contains("LeakSanitizer") && !text.contains("AddressSanitizer"),
        "sanitizer report:\n{text}"
    );
    assert_all_ok(&out, &text, 100);
    cg.remove().expect("remove the test cgroup");
}

/// The kernel-free contract under valgrind: no leak, no invalid access.
/// Two parts are left out, for valgrind's sake, not ours: the seccomp checks
/// (valgrind does not implement seccomp(2)), and the run with an enforcer
/// (valgrind does not know that bpf(2) fills lookup buffers, so every map
/// read is reported as uninitialised).
#[test]
fn c_contract_leaks_nothing_under_valgrind() {
    let b = built();
    let (out, text) = run(under_valgrind(&b.contract).env("MG_CONTRACT_NO_SECCOMP", "1"));
    assert_ne!(
        out.status.code(),
        Some(99),
        "valgrind found leaks or errors:\n{text}"
    );
    assert_all_ok(&out, &text, 45);
}

#[test]
fn learn_self_test_and_check_status_through_the_c_api() {
    if !kernel_tests_enabled("learn_self_test_and_check_status_through_the_c_api") {
        return;
    }
    use capi::{checks::*, enforcer::*, profile::*};
    let mut e: *mut mg_enforcer = std::ptr::null_mut();
    let backend = match std::env::var("MINERGUARD_TEST_BACKEND").as_deref() {
        Ok("lsm") => 1,
        Ok("cgroup") => 2,
        _ => 0,
    };
    // SAFETY: valid out-pointer.
    assert_eq!(
        unsafe { mg_enforcer_new(backend, &mut e) },
        mg_result::MG_OK
    );

    // Status of the optional checks: loaded with the first profile that
    // needs them, so inactive (saying so) until one is applied.
    let status = |check: mg_check| {
        let (mut active, mut needed) = (7u32, 0usize);
        let mut why = [0 as std::ffi::c_char; 256];
        // SAFETY: buffers of the stated sizes.
        let rc = unsafe {
            mg_enforcer_check_status(
                e,
                check as u32,
                &mut active,
                why.as_mut_ptr(),
                why.len(),
                &mut needed,
            )
        };
        assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
        // SAFETY: NUL-terminated by the call.
        let why = unsafe { std::ffi::CStr::from_ptr(why.as_ptr()) };
        let why = why.to_string_lossy().into_owned();
        assert_eq!(needed, why.len() + 1, "needed counts the NUL");
        (active, why)
    };
    let mut kind = mg_backend::MG_BACKEND_NONE;
    // SAFETY: valid out-pointer.
    assert_eq!(
        unsafe { mg_enforcer_backend(e, &mut kind) },
        mg_result::MG_OK
    );
    let lsm = kind == mg_backend::MG_BACKEND_LSM;
    let (active, why) = status(mg_check::MG_CHECK_FAST_OPEN);
    assert_eq!(active, 0, "Fast Open before any profile");
    assert!(why.contains("not loaded yet"), "Fast Open: {why}");
    // Loader exec: the lsm backend's mmap_file hook is always loaded; the
    // cgroup backend's tracepoints wait for a profile.
    let (active, why) = status(mg_check::MG_CHECK_LOADER_EXEC);
    assert_eq!(active, u32::from(lsm), "loader exec before any profile");
    assert!(lsm || why.contains("not loaded yet"), "loader exec: {why}");
    // (On the cgroup backend the reason is that backend, not the load.)
    let (active, why) = status(mg_check::MG_CHECK_LSM_STRATUM);
    assert_eq!(active, 0, "lsm stratum before any profile: {why}");
    assert!(!why.is_empty());
    let (active, why) = status(mg_check::MG_CHECK_STRATUM_SK_MSG);
    assert_eq!(active, 0, "stratum sk_msg before any profile");
    assert!(why.contains("not loaded yet"), "stratum sk_msg: {why}");
    let (active, why) = status(mg_check::MG_CHECK_TUNING);
    assert_eq!(active, 0, "tuning before any profile");
    assert!(why.contains("behaviour rule"), "tuning: {why}");
    // A detector cannot take the counts before they exist: refused, named.
    let detector = {
        use capi::behaviour::*;
        let text = "apiVersion: minerguard/v1\nname: b\nrules:\n  - {name: b, action: audit, behaviour: {}}\n";
        let (mut p, mut d) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: a buffer of the stated length, valid out-pointers.
        unsafe {
            assert_eq!(
                mg_profile_from_text(text.as_ptr().cast(), text.len(), &mut p),
                mg_result::MG_OK
            );
            assert_eq!(mg_behaviour_detector_new(p, &mut d), mg_result::MG_OK);
        }
        assert_eq!(mg_profile_free(p), mg_result::MG_OK);
        assert_eq!(
            mg_behaviour_detector_count_tuning(d, e),
            mg_result::MG_ERR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("not loaded yet"), "{}", last_error());
        d
    };
    let needs_all = "apiVersion: minerguard/v1\nname: needs-all\nrules:\n\
        - {name: n, action: deny, exec: {names: [xmrig]}}\n\
        - {name: s, action: deny, stratum: {}}\n\
        - {name: b, action: audit, behaviour: {}}\n";
    let mut profile: *mut mg_profile = std::ptr::null_mut();
    // SAFETY: a buffer of the stated length, valid out-pointer.
    let rc =
        unsafe { mg_profile_from_text(needs_all.as_ptr().cast(), needs_all.len(), &mut profile) };
    assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
    let status_cg = test_cgroup();
    let status_path = std::ffi::CString::new(status_cg.cgroup().path().to_str().unwrap()).unwrap();
    let mut handle = 0u64;
    // SAFETY: valid pointers.
    let rc = unsafe { mg_enforcer_apply_cgroup(e, profile, status_path.as_ptr(), &mut handle) };
    assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
    // The cgroup backend's default Stratum judge reads packets on egress
    // (Fast Open SYNs included): no Fast Open hook, no sk_msg program.
    let egress = !lsm;
    assert_eq!(
        status(mg_check::MG_CHECK_LOADER_EXEC),
        (1, String::new()),
        "loader exec on the test kernels"
    );
    let (active, why) = status(mg_check::MG_CHECK_FAST_OPEN);
    if egress {
        assert_eq!(active, 0, "Fast Open under the egress judge");
        assert!(why.contains("egress judge"), "Fast Open: {why}");
    } else {
        assert_eq!((active, why), (1, String::new()), "Fast Open");
    }
    let mut errno = 0i32;
    // SAFETY: valid out-pointer.
    assert_eq!(
        unsafe { mg_enforcer_stratum_errno(e, &mut errno) },
        mg_result::MG_OK
    );
    let want = match (lsm, egress) {
        (true, _) => libc::EPERM,
        (false, true) => libc::ECONNABORTED,
        (false, false) => libc::EACCES,
    };
    assert_eq!(errno, want, "stratum errno on backend {kind:?}");
    // SAFETY: a null out-pointer is refused, not written.
    assert_eq!(
        unsafe { mg_enforcer_stratum_errno(e, std::ptr::null_mut()) },
        mg_result::MG_ERR_NULL_POINTER
    );
    // Stratum in the lsm hook: active exactly on the lsm backend; on the
    // cgroup backend the reason says why.
    let (active, why) = status(mg_check::MG_CHECK_LSM_STRATUM);
    assert_eq!(
        active,
        u32::from(lsm),
        "lsm stratum on backend {kind:?}: {why}"
    );
    assert_eq!(
        why.is_empty(),
        active == 1,
        "a reason exactly when inactive"
    );
    // The sk_msg program: only with `--stratum-judge sk-msg` on the cgroup
    // backend (the lsm hook and the egress judge behind it read every
    // send, before Linux 6.5 too).
    let (active, why) = status(mg_check::MG_CHECK_STRATUM_SK_MSG);
    assert_eq!(
        active,
        u32::from(!egress && !lsm),
        "stratum sk_msg on backend {kind:?}: {why}"
    );
    assert_eq!(why.is_empty(), active == 1, "{why}");
    // The egress judge behind the lsm hook: exactly where the hook judges.
    let (active, why) = status(mg_check::MG_CHECK_STRATUM_BACKSTOP);
    assert_eq!(
        active,
        u32::from(lsm),
        "stratum backstop on backend {kind:?}: {why}"
    );
    assert_eq!(why.is_empty(), active == 1, "{why}");
    // The tuning counter: loaded with the behaviour rule; the detector
    // now takes its counts.
    assert_eq!(
        status(mg_check::MG_CHECK_TUNING),
        (1, String::new()),
        "tuning"
    );
    {
        use capi::behaviour::*;
        assert_eq!(
            mg_behaviour_detector_count_tuning(detector, e),
            mg_result::MG_OK,
            "{}",
            last_error()
        );
        assert_eq!(
            mg_behaviour_detector_count_tuning(std::ptr::null_mut(), e),
            mg_result::MG_ERR_NULL_POINTER
        );
        assert_eq!(mg_behaviour_detector_free(detector), mg_result::MG_OK);
    }
    assert_eq!(mg_enforcer_remove(e, handle), mg_result::MG_OK);
    assert_eq!(mg_profile_free(profile), mg_result::MG_OK);
    drop(status_cg);
    let (mut active, mut needed) = (7u32, 0usize);
    let mut why = [0 as std::ffi::c_char; 256];
    let mut released = 7u64;
    // SAFETY: valid out-pointer.
    assert_eq!(
        unsafe { mg_enforcer_released_sockets(e, &mut released) },
        mg_result::MG_OK
    );
    assert_eq!(released, 0, "no socket of a stratum scope sent anything");
    let (mut destroyed, mut not_destroyed) = (7u64, 7u64);
    // SAFETY: valid out-pointers.
    assert_eq!(
        unsafe { mg_enforcer_destroyed_sockets(e, &mut destroyed, &mut not_destroyed) },
        mg_result::MG_OK
    );
    assert_eq!(
        (destroyed, not_destroyed),
        (0, 0),
        "no socket of a stratum scope was refused"
    );
    for (d, n) in [
        (std::ptr::null_mut(), &mut not_destroyed as *mut u64),
        (&mut destroyed as *mut u64, std::ptr::null_mut()),
    ] {
        // SAFETY: a null out-pointer is refused before either is written.
        assert_eq!(
            unsafe { mg_enforcer_destroyed_sockets(e, d, n) },
            mg_result::MG_ERR_NULL_POINTER
        );
    }
    // SAFETY: a null out-pointer is refused, not written.
    assert_eq!(
        unsafe { mg_enforcer_released_sockets(e, std::ptr::null_mut()) },
        mg_result::MG_ERR_NULL_POINTER
    );
    // SAFETY: as above.
    let rc = unsafe {
        mg_enforcer_check_status(e, 9, &mut active, why.as_mut_ptr(), why.len(), &mut needed)
    };
    assert_eq!(rc, mg_result::MG_ERR_INVALID_ARGUMENT);

    // Learn: an app runs in the cgroup while the call records it.
    let dir = TempDir::new("capi-learn");
    let app = fake_miner(&dir, "app");
    let cg = test_cgroup();
    let procs = cg.procs_file().unwrap();
    let runner = {
        let app = app.clone();
        let marker = dir.path().join("marker");
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(700));
            let mut cmd = Command::new(&app);
            cmd.arg(&marker);
            // SAFETY: join_cgroup_raw is a single write(2).
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    minerguard::cgroup::join_cgroup_raw(&procs)
                });
            }
            cmd.status().unwrap()
        })
    };
    let path = std::ffi::CString::new(cg.cgroup().path().to_str().unwrap()).unwrap();
    let mut learned: *mut mg_profile = std::ptr::null_mut();
    // SAFETY: NUL-terminated strings, valid out-pointer.
    let rc = unsafe {
        mg_enforcer_learn(
            e,
            path.as_ptr(),
            2_000,
            c"learned".as_ptr(),
            mg_action::MG_ACTION_DENY as u32,
            &mut learned,
        )
    };
    assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
    assert!(runner.join().unwrap().success());
    assert_eq!(
        mg_profile_validate(learned),
        mg_result::MG_OK,
        "{}",
        last_error()
    );

    // Apply it, then the self-test events travel to the stream.
    let mut handle = 0u64;
    // SAFETY: valid pointers.
    let rc = unsafe { mg_enforcer_apply_cgroup(e, learned, path.as_ptr(), &mut handle) };
    assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
    let mut written = 0u32;
    // SAFETY: valid out-pointer.
    let rc = unsafe { mg_enforcer_self_test_events(e, handle, 10, &mut written) };
    assert_eq!((rc, written), (mg_result::MG_OK, 10));
    // SAFETY: as above; an unknown handle is refused.
    let rc = unsafe { mg_enforcer_self_test_events(e, handle + 1000, 10, &mut written) };
    assert_eq!(rc, mg_result::MG_ERR_SCOPE);

    // Nothing runs: MG_ERR_TIMEOUT, and *out stays NULL.
    assert_eq!(mg_enforcer_remove(e, handle), mg_result::MG_OK);
    let mut none: *mut mg_profile = std::ptr::null_mut();
    // SAFETY: as above.
    let rc = unsafe {
        mg_enforcer_learn(
            e,
            path.as_ptr(),
            300,
            c"x".as_ptr(),
            mg_action::MG_ACTION_DENY as u32,
            &mut none,
        )
    };
    assert_eq!(rc, mg_result::MG_ERR_TIMEOUT);
    assert!(none.is_null());
    assert_eq!(mg_profile_free(learned), mg_result::MG_OK);
    assert_eq!(mg_enforcer_free(e), mg_result::MG_OK);
}

#[test]
fn a_scope_follows_its_cgroup_through_the_c_api() {
    if !kernel_tests_enabled("a_scope_follows_its_cgroup_through_the_c_api") {
        return;
    }
    use capi::{enforcer::*, profile::*};
    let backend = match std::env::var("MINERGUARD_TEST_BACKEND").as_deref() {
        Ok("lsm") => 1,
        Ok("cgroup") => 2,
        _ => 0,
    };
    let mut e: *mut mg_enforcer = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    assert_eq!(
        unsafe { mg_enforcer_new(backend, &mut e) },
        mg_result::MG_OK
    );
    let text = "apiVersion: minerguard/v1\nname: follow\nrules:\n\
        - {name: miner-binary, action: deny, exec: {names: [xmrig]}}\n";
    let mut profile: *mut mg_profile = std::ptr::null_mut();
    // SAFETY: a buffer of the stated length, valid out-pointer.
    let rc = unsafe { mg_profile_from_text(text.as_ptr().cast(), text.len(), &mut profile) };
    assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
    let cg = test_cgroup();
    let path = cg.cgroup().path().to_path_buf();
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let mut handle = 0u64;
    // SAFETY: valid pointers.
    let rc = unsafe { mg_enforcer_apply_cgroup(e, profile, c_path.as_ptr(), &mut handle) };
    assert_eq!(rc, mg_result::MG_OK, "{}", last_error());

    let follow = || {
        let mut out = mg_follow {
            gone: 9,
            recreated: 9,
        };
        // SAFETY: valid out-pointer.
        let rc = unsafe { mg_enforcer_follow_cgroups(e, &mut out) };
        assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
        (out.gone, out.recreated)
    };
    assert_eq!(follow(), (0, 0));
    std::fs::remove_dir(&path).unwrap();
    assert_eq!(follow(), (1, 0));
    std::fs::create_dir(&path).unwrap();
    assert_eq!(follow(), (0, 1));
    // SAFETY: NULL out is allowed.
    assert_eq!(
        unsafe { mg_enforcer_follow_cgroups(e, std::ptr::null_mut()) },
        mg_result::MG_OK
    );
    // What the miner gets in the new cgroup.
    let dir = TempDir::new("capi-follow");
    let miner = fake_miner(&dir, "xmrig");
    let marker = dir.path().join("marker");
    assert!(!matches!(
        exec_in(Some(&cg), &miner, &marker),
        ExecOutcome::Exited(0)
    ));
    assert!(!marker.exists(), "the miner ran in the new cgroup");
    assert_eq!(mg_enforcer_free(e), mg_result::MG_OK);
    assert_eq!(mg_profile_free(profile), mg_result::MG_OK);
}

/// The instances' JSON through the C API (a size query, then the copy).
fn instances_json() -> Vec<serde_json::Value> {
    use capi::instance::mg_instances_json;
    for _ in 0..8 {
        let mut needed = 0;
        // SAFETY: a size query.
        let rc = unsafe { mg_instances_json(std::ptr::null_mut(), 0, &mut needed) };
        assert_eq!(rc, mg_result::MG_ERR_BUFFER_TOO_SMALL, "{}", last_error());
        let mut buf = vec![0u8; needed];
        // SAFETY: a buffer of the stated length.
        let rc = unsafe { mg_instances_json(buf.as_mut_ptr().cast(), buf.len(), &mut needed) };
        if rc == mg_result::MG_ERR_BUFFER_TOO_SMALL {
            continue; // another test pinned something meanwhile
        }
        assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
        let text = CStr::from_bytes_with_nul(&buf).unwrap().to_str().unwrap();
        return serde_json::from_str(text).expect("mg_instances_json gives JSON");
    }
    panic!("the instances kept growing");
}

fn c_text(f: impl Fn(*mut std::ffi::c_char, usize, *mut usize) -> mg_result) -> String {
    let mut buf = vec![0 as std::ffi::c_char; 4096];
    let mut needed = 0;
    let mut rc = f(buf.as_mut_ptr(), buf.len(), &mut needed);
    if rc == mg_result::MG_ERR_BUFFER_TOO_SMALL {
        // As a C caller does: again with the size the call asked for.
        assert!(needed > buf.len(), "needed {needed}");
        buf = vec![0 as std::ffi::c_char; needed];
        rc = f(buf.as_mut_ptr(), buf.len(), &mut needed);
    }
    assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
    // SAFETY: NUL-terminated by the call.
    let text = unsafe { CStr::from_ptr(buf.as_ptr()) };
    let text = text.to_str().unwrap().to_string();
    assert_eq!(needed, text.len() + 1);
    text
}

#[test]
fn a_pinned_instance_outlives_its_enforcer_and_is_adopted_through_the_c_api() {
    require_kernel!();
    use capi::{enforcer::*, instance::*, profile::*};
    let pinned = UnpinOnDrop::new("capi");
    let name = std::ffi::CString::new(pinned.name.0.clone()).unwrap();
    let dir = TempDir::new("capi-pinned");
    let miner = fake_miner(&dir, "xmrig");
    let cg = test_cgroup();
    let cg_path = cg.cgroup().path().to_str().unwrap().to_string();
    let c_path = std::ffi::CString::new(cg_path.clone()).unwrap();
    let text = "apiVersion: minerguard/v1\nname: capi-pinned\nrules:\n\
        - {name: miner-binary, action: deny, exec: {names: [xmrig]}}\n";
    let mut profile: *mut mg_profile = std::ptr::null_mut();
    // SAFETY: a buffer of the stated length, valid out-pointer.
    let rc = unsafe { mg_profile_from_text(text.as_ptr().cast(), text.len(), &mut profile) };
    assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
    let options = mg_enforcer_options {
        backend: match backend_arg().as_str() {
            "lsm" => 1,
            "cgroup" => 2,
            _ => 0,
        },
        event_capacity: 0,
        require_all_rules: 0,
        no_syscall_tracepoints: 0,
        instance: name.as_ptr(),
        stratum_judge: 0,
    };
    let open = || {
        let mut e: *mut mg_enforcer = std::ptr::null_mut();
        // SAFETY: readable options with a NUL-terminated name; writable out.
        let rc = unsafe { mg_enforcer_new_with_options(&options, &mut e) };
        assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
        pinned.holder.set(e);
        e
    };
    let apply = |e| {
        let mut handle = 0u64;
        // SAFETY: valid pointers.
        let rc = unsafe { mg_enforcer_apply_cgroup(e, profile, c_path.as_ptr(), &mut handle) };
        assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
    };
    let mine = || {
        instances_json()
            .into_iter()
            .find(|i| i["name"] == pinned.name.0.as_str())
    };
    let ran = |tag: &str| {
        let marker = dir.path().join(tag);
        exec_in(Some(&cg), &miner, &marker);
        marker.exists()
    };
    assert!(mine().is_none(), "no instance of that name yet");

    let e = open();
    // SAFETY (c_text closures): buffers of the stated length.
    let instance = c_text(|b, l, n| unsafe { mg_enforcer_instance(e, b, l, n) });
    assert_eq!(instance, pinned.name.0);
    assert_eq!(
        c_text(|b, l, n| unsafe { mg_enforcer_unadopted(e, b, l, n) }),
        "[]"
    );
    apply(e);
    assert!(!ran("first"), "the miner ran under the first enforcer");

    // Freed, the enforcer leaves its enforcement pinned.
    assert_eq!(mg_enforcer_free(e), mg_result::MG_OK);
    pinned.holder.set(std::ptr::null_mut());
    assert!(
        !ran("after-free"),
        "the miner ran once the enforcer was freed"
    );
    let status = mine().expect("mg_instances_json lists the instance");
    assert_eq!(status["pid"], std::process::id(), "{status}");
    assert_eq!(status["scopes"].as_array().unwrap().len(), 1, "{status}");
    let scope = &status["scopes"][0];
    assert_eq!(scope["scope"], cg_path.as_str(), "{status}");
    assert_eq!(scope["profile"], "capi-pinned", "{status}");
    assert_eq!(scope["present"], true, "{status}");
    assert!(!status["links"].as_array().unwrap().is_empty(), "{status}");

    // Opened again by name: the scope is the earlier one's until applied.
    let e = open();
    let unadopted = c_text(|b, l, n| unsafe { mg_enforcer_unadopted(e, b, l, n) });
    let unadopted: Vec<String> = serde_json::from_str(&unadopted).unwrap();
    assert_eq!(unadopted, [cg_path.as_str()]);
    assert!(
        !ran("reopened"),
        "the miner ran while the scope was unadopted"
    );
    apply(e);
    assert_eq!(
        c_text(|b, l, n| unsafe { mg_enforcer_unadopted(e, b, l, n) }),
        "[]"
    );
    let (mut dropped, mut links) = (99usize, 99usize);
    // SAFETY: writable outs.
    let rc = unsafe { mg_enforcer_release_unadopted(e, &mut dropped, &mut links) };
    assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
    assert_eq!(dropped, 0, "the scope was adopted, not dropped");
    assert!(!ran("adopted"), "the miner ran in the adopted scope");
    let policy = mine().unwrap()["scopes"][0]["policy_id"].clone();
    assert_eq!(policy, scope["policy_id"], "the same policy was kept");

    // Detach ends the instance and frees the handle.
    assert_eq!(mg_enforcer_detach(e), mg_result::MG_OK, "{}", last_error());
    pinned.holder.set(std::ptr::null_mut());
    assert_eq!(mg_enforcer_free(e), mg_result::MG_ERR_INVALID_HANDLE);
    assert!(mine().is_none(), "the detached instance is still listed");
    assert!(
        ran("detached"),
        "the miner must run once the instance is detached"
    );
    // SAFETY: NUL-terminated.
    let rc = unsafe { mg_instance_remove(name.as_ptr()) };
    assert_eq!(rc, mg_result::MG_ERR_PIN);
    assert!(
        last_error().contains("no pinned instance"),
        "{}",
        last_error()
    );
    assert_eq!(mg_profile_free(profile), mg_result::MG_OK);
}

#[test]
fn instance_names_are_checked_before_anything_is_loaded() {
    use capi::{enforcer::*, instance::*};
    let with_name = |name: &CStr| {
        let options = mg_enforcer_options {
            backend: 0,
            event_capacity: 0,
            require_all_rules: 0,
            no_syscall_tracepoints: 0,
            instance: name.as_ptr(),
            stratum_judge: 0,
        };
        let mut e: *mut mg_enforcer = 0x10 as *mut mg_enforcer;
        // SAFETY: readable options, writable out.
        let rc = unsafe { mg_enforcer_new_with_options(&options, &mut e) };
        assert!(e.is_null(), "a failed open leaves *out NULL");
        rc
    };
    for bad in [c"a/b", c"..", c"", c"a.b", c"x y"] {
        assert_eq!(with_name(bad), mg_result::MG_ERR_PIN, "{bad:?}");
        let shown = format!("`{}`", bad.to_str().unwrap());
        assert!(last_error().contains(&shown), "{}", last_error());
        // SAFETY: NUL-terminated.
        assert_eq!(
            unsafe { mg_instance_remove(bad.as_ptr()) },
            mg_result::MG_ERR_PIN
        );
        assert!(last_error().contains(&shown), "{}", last_error());
    }
    // A Stratum judge that does not exist: refused before anything loads.
    let options = mg_enforcer_options {
        backend: 0,
        event_capacity: 0,
        require_all_rules: 0,
        no_syscall_tracepoints: 0,
        instance: std::ptr::null(),
        stratum_judge: 7,
    };
    let mut e: *mut mg_enforcer = 0x10 as *mut mg_enforcer;
    // SAFETY: readable options, writable out.
    let rc = unsafe { mg_enforcer_new_with_options(&options, &mut e) };
    assert_eq!(rc, mg_result::MG_ERR_INVALID_ARGUMENT);
    assert!(e.is_null(), "a failed open leaves *out NULL");
    assert!(
        last_error().contains("options.stratum_judge 7"),
        "{}",
        last_error()
    );
    assert_eq!(with_name(c"bad\xff"), mg_result::MG_ERR_INVALID_UTF8);
    assert!(
        last_error().contains("`options.instance`"),
        "{}",
        last_error()
    );
    // SAFETY: NULL is refused before any read.
    assert_eq!(
        unsafe { mg_instance_remove(std::ptr::null()) },
        mg_result::MG_ERR_NULL_POINTER
    );
    assert!(last_error().contains("`name`"), "{}", last_error());
    let missing = std::ffi::CString::new(format!("capi-missing-{}", std::process::id())).unwrap();
    // SAFETY: NUL-terminated.
    assert_eq!(
        unsafe { mg_instance_remove(missing.as_ptr()) },
        mg_result::MG_ERR_PIN
    );
    assert!(
        last_error().contains("no pinned instance") && last_error().contains("capi-missing-"),
        "{}",
        last_error()
    );
    // SAFETY: NULL outs are allowed; the handle is refused first.
    let rc = unsafe {
        mg_enforcer_release_unadopted(
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, mg_result::MG_ERR_NULL_POINTER);
    assert_eq!(
        mg_enforcer_detach(std::ptr::null_mut()),
        mg_result::MG_ERR_NULL_POINTER
    );
}

#[test]
fn a_scan_through_the_c_api_kills_what_ran_before_and_reports_it_as_json() {
    use capi::{profile::*, scan::*};
    if !root_or_skip("scans make cgroups") {
        return;
    }
    let cg = test_cgroup();
    let shm = scratch_sleep("scan");
    let mut miner = ChildGuard::new(spawn_in(Some(&cg), Command::new(&shm).arg("600")).unwrap());
    let mut benign =
        ChildGuard::new(spawn_in(Some(&cg), Command::new("/usr/bin/sleep").arg("600")).unwrap());

    let mut p: *mut mg_profile = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated strings and out-pointer.
    assert_eq!(
        unsafe { mg_profile_bundled(c"container-strict".as_ptr(), &mut p) },
        mg_result::MG_OK
    );
    let path = std::ffi::CString::new(cg.cgroup().path().to_str().unwrap()).unwrap();
    let cgroups = [path.as_ptr()];
    let mut report: *mut mg_scan_report = std::ptr::null_mut();

    // Bad input: no cgroup, a path that is no cgroup, a NULL out-pointer.
    // SAFETY: each call's pointers are valid or refused before use.
    unsafe {
        assert_eq!(
            mg_scan(p, cgroups.as_ptr(), 0, false, &mut report),
            mg_result::MG_ERR_INVALID_ARGUMENT
        );
        let proc_path = [c"/proc".as_ptr()];
        assert_eq!(
            mg_scan(p, proc_path.as_ptr(), 1, false, &mut report),
            mg_result::MG_ERR_CGROUP,
            "{}",
            last_error()
        );
        assert!(last_error().contains("/proc"), "{}", last_error());
        assert_eq!(
            mg_scan(p, cgroups.as_ptr(), 1, false, std::ptr::null_mut()),
            mg_result::MG_ERR_NULL_POINTER
        );
    }
    assert!(miner.try_wait().unwrap().is_none(), "nothing scanned yet");

    // SAFETY: valid profile, one cgroup path, writable out-pointer.
    let rc = unsafe { mg_scan(p, cgroups.as_ptr(), 1, false, &mut report) };
    assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
    let mut needed = 0;
    // SAFETY: a NULL buffer of length 0 asks for the size.
    let rc = unsafe { mg_scan_report_json(report, std::ptr::null_mut(), 0, &mut needed) };
    assert_eq!(rc, mg_result::MG_ERR_BUFFER_TOO_SMALL);
    let mut buf = vec![0 as std::ffi::c_char; needed];
    // SAFETY: a buffer of `needed` bytes.
    let rc = unsafe { mg_scan_report_json(report, buf.as_mut_ptr(), buf.len(), &mut needed) };
    assert_eq!(rc, mg_result::MG_OK);
    // SAFETY: NUL-terminated by the call.
    let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(v["scanned"], 2, "{v}");
    assert_eq!(v["findings"].as_array().unwrap().len(), 1, "{v}");
    let f = &v["findings"][0];
    assert_eq!(f["rule"], "scratch-dir-exec");
    assert_eq!(f["output_fields"]["proc.pid"], miner.id());
    assert_eq!(f["output_fields"]["minerguard.outcome"], "killed");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(miner.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(
        benign.try_wait().unwrap().is_none(),
        "the benign one runs on"
    );

    assert_eq!(mg_scan_report_free(report), mg_result::MG_OK);
    assert_eq!(
        mg_scan_report_free(report),
        mg_result::MG_ERR_INVALID_HANDLE
    );
    assert_eq!(mg_profile_free(p), mg_result::MG_OK);
    let _ = std::fs::remove_file(&shm);
}

/// True as root; otherwise fails, unless MINERGUARD_ALLOW_SKIP=1 (then
/// false: the test skips). `why` says what needs root.
fn root_or_skip(why: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert_eq!(
        std::env::var("MINERGUARD_ALLOW_SKIP").as_deref(),
        Ok("1"),
        "{why} and needs root; MINERGUARD_ALLOW_SKIP=1 skips"
    );
    false
}

/// A copy of sleep in /dev/shm (a scratch dir `container-strict` refuses
/// programs from), named for `tag` and this process.
fn scratch_sleep(tag: &str) -> PathBuf {
    let shm = PathBuf::from(format!("/dev/shm/mg-capi-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_file(&shm);
    std::fs::copy("/usr/bin/sleep", &shm).unwrap();
    shm
}

/// The JSON of a report handle (read twice: size, then text).
fn report_json(report: *const capi::scan::mg_scan_report) -> serde_json::Value {
    let text = c_text(|buf, len, needed| {
        // SAFETY: `buf` holds `len` bytes (or is NULL with 0); `needed` is writable.
        unsafe { capi::scan::mg_scan_report_json(report, buf, len, needed) }
    });
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_scan_through_the_c_api_leaves_out_the_excluded_cgroups() {
    use capi::{profile::*, scan::*};
    if !root_or_skip("scans make cgroups") {
        return;
    }
    // A scratch-dir program in the scope and one in a child cgroup (a
    // container with a profile of its own): only the first is judged.
    let scope = test_cgroup();
    let child = child_cgroup(&scope);
    let shm = scratch_sleep("exclude");
    let mut outside =
        ChildGuard::new(spawn_in(Some(&scope), Command::new(&shm).arg("600")).unwrap());
    let mut inside =
        ChildGuard::new(spawn_in(Some(&child), Command::new(&shm).arg("600")).unwrap());

    let mut p: *mut mg_profile = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated strings and out-pointer.
    assert_eq!(
        unsafe { mg_profile_bundled(c"container-strict".as_ptr(), &mut p) },
        mg_result::MG_OK
    );
    let path = std::ffi::CString::new(scope.cgroup().path().to_str().unwrap()).unwrap();
    let excluded = std::ffi::CString::new(child.cgroup().path().to_str().unwrap()).unwrap();
    let cgroups = [path.as_ptr()];
    let exclude = [excluded.as_ptr()];
    let options = mg_scan_options {
        dry_run: false,
        exclude: exclude.as_ptr(),
        exclude_count: 1,
    };
    let mut report: *mut mg_scan_report = std::ptr::null_mut();
    // SAFETY: valid profile, paths and options, writable out-pointer.
    let rc = unsafe { mg_scan_with(p, cgroups.as_ptr(), 1, &options, &mut report) };
    assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
    let v = report_json(report);
    assert_eq!(v["scanned"], 1, "only the scope's own process: {v}");
    assert_eq!(v["findings"][0]["output_fields"]["proc.pid"], outside.id());
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(outside.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(
        inside.try_wait().unwrap().is_none(),
        "the excluded one runs"
    );
    assert_eq!(mg_scan_report_free(report), mg_result::MG_OK);
    assert_eq!(mg_profile_free(p), mg_result::MG_OK);
    let _ = std::fs::remove_file(&shm);
}

#[test]
fn the_behaviour_detector_through_the_c_api_kills_a_hashing_renamed_xmrig() {
    use capi::{behaviour::*, profile::*, scan::*};
    let test = "the_behaviour_detector_through_the_c_api_kills_a_hashing_renamed_xmrig";
    if !root_or_skip("the behaviour test makes cgroups") {
        return;
    }
    let Some(xmrig) = xmrig_binary(test) else {
        return;
    };
    let cg = test_cgroup();
    let dir = TempDir::new("capi-behaviour");
    let pool = RxPool::start();
    let mut miner = pool.light_miner(&xmrig, &cg, &dir, "php-fpm");

    // A 5 s window (the default is 10 s); every other threshold default.
    let text = "apiVersion: minerguard/v1\nname: b\nrules:\n  - name: mining\n    action: kill\n    behaviour: { window_secs: 5 }\n";
    let mut p: *mut mg_profile = std::ptr::null_mut();
    // SAFETY: `text` is `len` bytes; `p` is writable.
    let rc = unsafe { mg_profile_from_text(text.as_ptr().cast(), text.len(), &mut p) };
    assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
    let mut d: *mut mg_behaviour_detector = std::ptr::null_mut();
    // SAFETY: a live profile and a writable out-pointer.
    let rc = unsafe { mg_behaviour_detector_new(p, &mut d) };
    assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
    let path = std::ffi::CString::new(cg.cgroup().path().to_str().unwrap()).unwrap();
    let cgroups = [path.as_ptr()];

    // Sampled every second, as watch does every two, until it acts.
    let deadline = Instant::now() + Duration::from_secs(120);
    let detection = loop {
        assert!(
            Instant::now() < deadline,
            "no detection in 120 s; XMRig logins {}, shares {}",
            pool.logins(),
            pool.submits()
        );
        let mut report: *mut mg_scan_report = std::ptr::null_mut();
        // SAFETY: live detector, one path, NULL options, writable out.
        let rc = unsafe {
            mg_behaviour_detector_sample(d, cgroups.as_ptr(), 1, std::ptr::null(), &mut report)
        };
        assert_eq!(rc, mg_result::MG_OK, "{}", last_error());
        let v = report_json(report);
        assert_eq!(mg_scan_report_free(report), mg_result::MG_OK);
        assert_eq!(v["profile"], "b", "{v}");
        if let Some(first) = v["detections"].as_array().and_then(|d| d.first()) {
            break first.clone();
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let f = &detection["output_fields"];
    assert_eq!(f["minerguard.kind"], "behaviour", "{detection}");
    assert_eq!(f["minerguard.outcome"], "killed", "{detection}");
    assert_eq!(f["proc.pid"], miner.id());
    assert_eq!(f["proc.name"], "php-fpm");
    // The throttled signal may have fired as well on a slow start, and the
    // rhythm once the pool connection was held a window.
    let fired: Vec<&str> = (f["minerguard.behaviour.signals"].as_array().unwrap().iter())
        .filter_map(|s| s.as_str())
        .filter(|s| !["cpu-throttled", "rhythm"].contains(s))
        .collect();
    assert_eq!(fired, ["cpu", "memory", "connection"], "{detection}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(miner.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(pool.submits() > 0, "it was hashing: the pool had shares");
    assert!(
        pool.wait_for(Duration::from_secs(30), |p| p.closed() == p.accepted()),
        "the pool sees XMRig's connection close"
    );
    assert_eq!(mg_behaviour_detector_free(d), mg_result::MG_OK);
    assert_eq!(mg_profile_free(p), mg_result::MG_OK);
}
