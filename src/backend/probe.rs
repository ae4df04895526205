//! What this kernel supports, found by loading trivial programs (a feature
//! being listed is not proof: a kernel may list `bpf` among its LSMs and still
//! refuse BPF-LSM programs), and which backend that makes.

use std::{fs, mem::MaybeUninit, path::PathBuf};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use serde::Serialize;

use crate::{
    backend::{skel::probe::ProbeSkelBuilder, BackendKind},
    cgroup,
};

/// One feature: whether it works here and, if not, why and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feature {
    /// Usable on this kernel.
    pub available: bool,
    /// What was found, and the fix when missing.
    pub detail: String,
}

impl Feature {
    fn yes(detail: impl Into<String>) -> Self {
        Feature {
            available: true,
            detail: detail.into(),
        }
    }
    fn no(detail: impl Into<String>) -> Self {
        Feature {
            available: false,
            detail: detail.into(),
        }
    }
}

/// The probe's findings.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// `uname -r`.
    pub kernel: String,
    /// Effective uid of the prober (BPF needs root).
    pub euid: u32,
    /// Kernel BTF at /sys/kernel/btf/vmlinux (needed for CO-RE).
    pub btf: Feature,
    /// Active LSMs from /sys/kernel/security/lsm, when readable.
    pub lsm_list: Option<Vec<String>>,
    /// A BPF-LSM program loads.
    pub bpf_lsm: Feature,
    /// The cgroup v2 mount.
    pub cgroup2: Feature,
    /// Path of the cgroup v2 mount, when found.
    pub cgroup2_mount: Option<PathBuf>,
    /// A `cgroup/connect4` program loads.
    pub cgroup_bpf: Feature,
    /// cgroup programs may call bpf_send_signal (in-kernel `kill` on connect).
    pub cgroup_signal: Feature,
    /// sk_msg programs may call bpf_send_signal (in-kernel `kill` on Stratum).
    pub skmsg_signal: Feature,
    /// sk_msg programs may call bpf_get_current_comm (names in Stratum events).
    pub skmsg_comm: Feature,
    /// cgroup (sock_addr, sockopt, sock, device), sockops and sk_msg
    /// programs may read the current task (`bpf_get_current_task`,
    /// `bpf_probe_read_kernel/user`), so their events carry the parent and
    /// command line read at the decision; otherwise userspace reads them
    /// from /proc on receipt.
    pub proc_in_cgroup: Feature,
    /// `tp_btf/sched_process_exec` loads (exec rules on the cgroup backend).
    pub exec_tracepoint: Feature,
    /// tracefs is mounted (only classic tracepoints need it; tp_btf does not).
    pub tracefs: Feature,
    /// A `sockops` program loads (Stratum inspection on the cgroup backend).
    pub sockops: Feature,
    /// overlayfs's inode layout is in the kernel's BTF (built in, or the
    /// `overlay` module's BTF), so `exec.drift` can be read (CO-RE).
    pub overlay_types: Feature,
    /// What `BackendChoice::Auto` picks here, if anything.
    pub backend: Option<BackendKind>,
}

impl ProbeReport {
    /// Missing features, one line each with the fix.
    pub fn missing(&self) -> Vec<String> {
        [
            ("BTF", &self.btf),
            ("BPF LSM", &self.bpf_lsm),
            ("cgroup v2", &self.cgroup2),
            ("cgroup-BPF", &self.cgroup_bpf),
            ("exec tracepoint", &self.exec_tracepoint),
            ("sockops", &self.sockops),
        ]
        .iter()
        .filter(|(_, f)| !f.available)
        .map(|(name, f)| format!("{name}: {}", f.detail))
        .collect()
    }
}

/// Whether the programs loaded now can read overlayfs's inodes
/// (`exec.drift`): `struct ovl_inode` in vmlinux's BTF (overlayfs built in)
/// or the `overlay` module's BTF. A module not loaded yet is loaded
/// (`modprobe overlay`): CO-RE relocates against the BTF present when the
/// exec programs load, so a module loaded later, by the first container,
/// would leave drift unread.
fn overlay_types() -> Feature {
    let built_in = || {
        libbpf_rs::btf::Btf::from_vmlinux()
            .ok()
            .and_then(|btf| {
                btf.type_by_name::<libbpf_rs::btf::types::Struct<'_>>("ovl_inode")
                    .map(|_| ())
            })
            .is_some()
    };
    let module = || fs::metadata("/sys/kernel/btf/overlay").is_ok();
    if built_in() {
        return Feature::yes("overlayfs is built in (struct ovl_inode in vmlinux BTF)");
    }
    if !module() && fs::metadata("/sys/module/overlay").is_err() {
        let _ = std::process::Command::new("modprobe")
            .args(["-q", "overlay"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    if module() {
        Feature::yes("the overlay module's BTF is at /sys/kernel/btf/overlay")
    } else {
        Feature::no(
            "no overlayfs BTF (neither built in nor /sys/kernel/btf/overlay): exec.drift is not enforced; \
             load the overlay module (modprobe overlay, CONFIG_DEBUG_INFO_BTF_MODULES=y) before the enforcer starts",
        )
    }
}

/// Probes the running kernel. Needs root for the load tests (without it,
/// every load-tested feature reports the permission problem).
pub fn probe() -> ProbeReport {
    quiet_libbpf();
    let euid = unsafe { libc::geteuid() };
    let btf = if fs::metadata("/sys/kernel/btf/vmlinux").is_ok() {
        Feature::yes("/sys/kernel/btf/vmlinux present")
    } else {
        Feature::no("no /sys/kernel/btf/vmlinux: use a kernel built with CONFIG_DEBUG_INFO_BTF=y")
    };
    let lsm_list = fs::read_to_string("/sys/kernel/security/lsm")
        .ok()
        .map(|s| s.trim().split(',').map(str::to_string).collect::<Vec<_>>());
    let load = |prog: &str| try_load(prog, euid);

    let bpf_lsm = match (load("probe_lsm"), &lsm_list) {
        (Ok(()), _) => Feature::yes("a BPF-LSM program loaded"),
        (Err(e), Some(list)) if !list.iter().any(|l| l == "bpf") => Feature::no(format!(
            "`bpf` is not an active LSM (active: {}); add it to `lsm=` on the kernel command line, e.g. lsm={},bpf ({e})",
            list.join(","),
            list.join(",")
        )),
        (Err(e), Some(_)) => Feature::no(format!(
            "`bpf` is listed as an active LSM but the kernel refused a BPF-LSM program ({e}); \
             this kernel's configuration (lockdown or a vendor patch) blocks BPF-LSM: use the cgroup backend"
        )),
        (Err(e), None) => Feature::no(format!(
            "the kernel refused a BPF-LSM program ({e}); check that `bpf` is in `lsm=` on the kernel command line \
             (mount securityfs to read /sys/kernel/security/lsm)"
        )),
    };
    let (cgroup2, cgroup2_mount) = match cgroup::cgroup2_mount() {
        Ok(p) => (Feature::yes(format!("mounted at {}", p.display())), Some(p)),
        Err(e) => (Feature::no(e.to_string()), None),
    };
    let loaded = |prog: &str, ok: &str, fix: &str| match load(prog) {
        Ok(()) => Feature::yes(ok),
        Err(e) => Feature::no(format!("{e}; {fix}")),
    };
    let cgroup_bpf = loaded(
        "probe_cgroup_connect",
        "cgroup/connect4 loads",
        "needs CONFIG_CGROUP_BPF=y",
    );
    let cgroup_signal = loaded(
        "probe_cgroup_signal",
        "bpf_send_signal allowed in cgroup programs",
        "connect `kill` is sent from userspace after the in-kernel deny",
    );
    let skmsg_signal = loaded(
        "probe_skmsg_signal",
        "bpf_send_signal allowed in sk_msg programs",
        "Stratum `kill` is sent from userspace after the in-kernel drop",
    );
    let skmsg_comm = loaded(
        "probe_skmsg_comm",
        "bpf_get_current_comm allowed in sk_msg programs",
        "Stratum events get the command name from /proc instead",
    );
    let proc_in_cgroup = {
        let progs = [
            "probe_proc_sock_addr",
            "probe_proc_sockopt",
            "probe_proc_sock",
            "probe_proc_dev",
            "probe_proc_sockops",
            "probe_proc_skmsg",
        ];
        let refused: Vec<String> = progs
            .iter()
            .filter_map(|p| load(p).err().map(|e| format!("{p}: {e}")))
            .collect();
        if refused.is_empty() {
            Feature::yes(
                "cgroup, sockops and sk_msg programs may read the current task (ppid, parent name, cmdline in their events)",
            )
        } else {
            Feature::no(format!(
                "{}; network and device events get ppid, parent name and cmdline from /proc instead (best effort)",
                refused.join("; ")
            ))
        }
    };
    let exec_tracepoint = loaded(
        "probe_exec_tp",
        "tp_btf/sched_process_exec loads",
        "needs BTF and CONFIG_BPF_EVENTS=y; exec rules need it on the cgroup backend",
    );
    let sockops = loaded(
        "probe_sockops",
        "sockops loads",
        "needs CONFIG_CGROUP_BPF=y and CONFIG_BPF_STREAM_PARSER=y",
    );
    let tracefs = match fs::read_to_string("/proc/self/mountinfo") {
        Ok(m) if m.lines().any(|l| l.contains(" - tracefs ")) => {
            Feature::yes("mounted (the cgroup backend's loader-exec hook uses the mmap/mprotect/pkey_mprotect syscall tracepoints)")
        }
        _ => Feature::no(
            "not mounted; the cgroup backend mounts it at /sys/kernel/tracing for its loader-exec hook (mmap/mprotect/pkey_mprotect syscall tracepoints); nothing else needs it",
        ),
    };
    let backend = if bpf_lsm.available {
        Some(BackendKind::Lsm)
    } else if cgroup_bpf.available && cgroup2.available && exec_tracepoint.available {
        Some(BackendKind::Cgroup)
    } else {
        None
    };
    ProbeReport {
        kernel: kernel_release(),
        euid,
        btf,
        lsm_list,
        bpf_lsm,
        cgroup2,
        cgroup2_mount,
        cgroup_bpf,
        cgroup_signal,
        skmsg_signal,
        skmsg_comm,
        proc_in_cgroup,
        exec_tracepoint,
        tracefs,
        sockops,
        overlay_types: overlay_types(),
        backend,
    }
}

/// The probe as an enforcer starts: the first report with a backend is kept
/// for the rest of the process (per effective uid), since what the kernel
/// loads does not change while it runs, and the probe's dozen loads are a
/// large part of an enforcer's start under slow CPUs (emulated VMs) or many
/// enforcers in one process. A report without a backend is not kept (a
/// transient failure must not stick), and a missing overlayfs BTF is looked
/// for again (the module may have been loaded since).
pub(crate) fn probe_for_enforcer() -> ProbeReport {
    static KEPT: std::sync::Mutex<Option<ProbeReport>> = std::sync::Mutex::new(None);
    let euid = unsafe { libc::geteuid() };
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(report) = kept.as_mut().filter(|r| r.euid == euid) {
        if !report.overlay_types.available {
            report.overlay_types = overlay_types();
        }
        return report.clone();
    }
    let report = probe();
    *kept = report.backend.is_some().then(|| report.clone());
    report
}

/// Loads only `prog` of bpf/probe.bpf.c; drops it at once.
fn try_load(prog: &str, euid: u32) -> Result<(), String> {
    let mut storage = MaybeUninit::uninit();
    let mut open = ProbeSkelBuilder::default()
        .open(&mut storage)
        .map_err(|e| e.to_string())?;
    for mut p in open.open_object_mut().progs_mut() {
        let keep = p.name().to_str() == Some(prog);
        p.set_autoload(keep);
    }
    let result = match open.load() {
        Ok(_) => Ok(()),
        Err(e) if euid != 0 => Err(format!("{e} (not root: run as root)")),
        Err(e) => Err(e.to_string()),
    };
    result
}

fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// libbpf prints to stderr by default, which is noise for a library (the
/// probe's expected failures most of all). `MINERGUARD_LIBBPF_DEBUG=1` keeps
/// its output, verifier logs included, for debugging a load failure.
pub(crate) fn quiet_libbpf() {
    if std::env::var_os("MINERGUARD_LIBBPF_DEBUG").is_none() {
        libbpf_rs::set_print(None);
    }
}
