//! Bundled profiles that a real workload survives (#20): under each profile
//! in `profiles/`, applied to a test cgroup, ordinary programs in that
//! cgroup do their work, on loopback only: an HTTP server on
//! 127.0.0.1:8080 and a client fetching from it, a client of a fake redis on
//! 127.0.0.1:6379, `sh -c` pipelines, and a JSON-RPC-over-TCP request that
//! is not mining. Each check asserts what the program produced, not only
//! that it exited 0.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use minerguard::{Action, Profile, Target};

use crate::common::*;

/// Every profile file in `profiles/`, by name; checked against the bundled
/// names so that a new bundled profile cannot miss this test.
fn bundled_profiles() -> Vec<(String, Profile)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let mut out: Vec<(String, Profile)> = std::fs::read_dir(&dir)
        .expect("read profiles/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let profile = Profile::from_file(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            (name, profile)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let mut names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    let mut bundled = Profile::bundled_names().to_vec();
    names.sort_unstable();
    bundled.sort_unstable();
    assert_eq!(names, bundled, "profiles/ and the bundled names differ");
    out
}

/// A loopback server thread for one connection: reads until the request
/// ends with `\n`, answers `reply`, closes; returns what it read.
fn serve_once(listener: TcpListener, reply: &'static [u8]) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut conn = accept_within(&listener);
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !got.ends_with(b"\n") {
            let n = conn.read(&mut buf).expect("read the request");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        conn.write_all(reply).expect("write the reply");
        got
    })
}

/// Runs `sh -c script sh args...` in `cg` and asserts that it succeeded.
fn sh_in(cg: &minerguard::cgroup::OwnedCgroup, script: &str, args: &[&str]) {
    let status = run_in(
        Some(cg),
        Command::new("/bin/sh")
            .args(["-c", script, "sh"])
            .args(args),
    )
    .expect("run sh");
    assert!(status.success(), "`{script}` {args:?}: {status:?}");
}

/// Waits (at most 30 s: a server that never listens must fail the test,
/// not hang it) until something accepts connections on `addr`.
fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

#[test]
fn each_bundled_profile_lets_an_ordinary_workload_run() {
    require_kernel!();
    let http: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    for (name, profile) in bundled_profiles() {
        let dir = TempDir::new(&format!("workload-{name}"));
        let scoped = Scoped::apply(&profile);
        let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());

        // A shell pipeline.
        let out = dir.path().join("pipe");
        sh_in(
            cg,
            "echo a | tr a b > \"$1\" && printf 'x y\\n' | cut -d' ' -f2 >> \"$1\"",
            &[out.to_str().unwrap()],
        );
        assert_eq!(read(&out), "b\ny\n", "{name}: pipeline");

        // An HTTP server on 127.0.0.1:8080 in the scope, and a client in the
        // scope fetching a page from it.
        let docroot = dir.path().join("www");
        std::fs::create_dir(&docroot).unwrap();
        std::fs::write(docroot.join("index.html"), "hello from 8080\n").unwrap();
        let mut server = spawn_in(
            Some(cg),
            Command::new("/usr/bin/busybox").args([
                "httpd",
                "-f",
                "-p",
                "127.0.0.1:8080",
                "-h",
                docroot.to_str().unwrap(),
            ]),
        )
        .expect("start busybox httpd");
        wait_listening(http);
        assert!(server.try_wait().unwrap().is_none(), "{name}: httpd exited");
        let page = dir.path().join("page");
        sh_in(
            cg,
            "timeout 60 busybox wget -q -O \"$1\" http://127.0.0.1:8080/index.html",
            &[page.to_str().unwrap()],
        );
        assert_eq!(read(&page), "hello from 8080\n", "{name}: HTTP on 8080");
        server.kill().unwrap();
        server.wait().unwrap();
        // 8080 is on Falco's pool-port list: a profile may report the
        // connect, never refuse it.
        // Every bundled profile audits it.
        let ev = wait_event(
            enforcer,
            |e| matches!(e.target, Target::Connect { addr, .. } if addr == http),
        )
        .unwrap_or_else(|| panic!("{name}: no event for the connect to 8080"));
        assert_eq!(ev.action, Action::Audit, "{name}: {ev:?}");

        // A redis client against a fake redis on 127.0.0.1:6379.
        let redis = TcpListener::bind("127.0.0.1:6379").expect("bind 127.0.0.1:6379");
        let got = serve_once(redis, b"+PONG\r\n");
        let reply = dir.path().join("redis");
        sh_in(
            cg,
            "printf '*1\\r\\n$4\\r\\nPING\\r\\n' | busybox nc -w 20 127.0.0.1 6379 > \"$1\"",
            &[reply.to_str().unwrap()],
        );
        assert_eq!(
            got.join().unwrap(),
            b"*1\r\n$4\r\nPING\r\n",
            "{name}: redis"
        );
        assert_eq!(read(&reply), "+PONG\r\n", "{name}: redis reply");

        // JSON-RPC over TCP that is not mining.
        let rpc = listener(false);
        let port = rpc.local_addr().unwrap().port().to_string();
        let request = r#"{"jsonrpc":"2.0","id":1,"method":"getStatus","params":[]}"#;
        let got = serve_once(
            rpc,
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"ok\":true}}\n",
        );
        let reply = dir.path().join("rpc");
        sh_in(
            cg,
            "printf '%s\\n' \"$1\" | busybox nc -w 20 127.0.0.1 \"$2\" > \"$3\"",
            &[request, &port, reply.to_str().unwrap()],
        );
        assert_eq!(
            String::from_utf8(got.join().unwrap()).unwrap(),
            format!("{request}\n"),
            "{name}: JSON-RPC request"
        );
        assert_eq!(
            read(&reply),
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"ok\":true}}\n",
            "{name}: JSON-RPC reply"
        );

        // Nothing in the scope was refused or killed.
        let refused: Vec<_> = enforcer
            .events()
            .try_iter()
            .filter(|e| e.action != Action::Audit)
            .collect();
        assert!(refused.is_empty(), "{name}: {refused:?}");
    }
}

/// The workload above is not vacuous: the same set-up refuses a pool port
/// under `container-strict`, and only audits 8080.
#[test]
fn container_strict_still_refuses_a_pool_port() {
    require_kernel!();
    let profile = Profile::bundled("container-strict").unwrap();
    let scoped = Scoped::apply(&profile);
    let (cg, enforcer) = (scoped.cgroup(), scoped.enforcer());
    // 127.0.0.2: the workload test holds 127.0.0.1:8080 meanwhile.
    let pool = crate::listener_on("127.0.0.2:3333");
    assert_eq!(
        connect_in(Some(cg), pool.local_addr().unwrap(), false),
        ConnectOutcome::Errno(libc::EPERM)
    );
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "miner-pool-port").expect("event");
    assert_eq!(ev.action, Action::Deny);
    // The same server on 8080 (a shared port) is only audited.
    let web = crate::listener_on("127.0.0.2:8080");
    assert_eq!(
        connect_in(Some(cg), web.local_addr().unwrap(), false),
        ConnectOutcome::Connected
    );
    let ev = wait_event(enforcer, |e| e.rule.as_ref() == "miner-pool-port-shared").expect("event");
    assert_eq!(ev.action, Action::Audit);
}
