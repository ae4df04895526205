//! What the kernel supports, from C: the main findings in a fixed-size
//! struct, the full report as JSON.

use std::ffi::c_char;

use super::{
    enforcer::mg_backend,
    events::MG_PATH_LEN,
    result::{guard, mg_result, Failure},
    strings::{copy_str, fill_array, write_out},
};
use crate::backend::probe::probe;

/// Size of `mg_probe_report.kernel`.
pub const MG_KERNEL_LEN: usize = 65;
/// Size of `mg_probe_report.bpf_lsm_detail`.
pub const MG_DETAIL_LEN: usize = 512;

/// The probe's main findings. Strings are NUL-terminated, cut to fit (then
/// `truncated` is true); `mg_probe_json()` has everything, uncut.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_probe_report {
    /// What `MG_BACKEND_AUTO` picks here (`MG_BACKEND_NONE` if nothing).
    pub backend: mg_backend,
    /// Effective uid of the prober (loading BPF needs root).
    pub euid: u32,
    /// A BPF-LSM program loads (the lsm backend is usable).
    pub bpf_lsm_available: bool,
    /// Kernel BTF is present (needed for CO-RE).
    pub btf_available: bool,
    /// A cgroup v2 hierarchy is mounted.
    pub cgroup2_available: bool,
    /// cgroup-BPF programs load.
    pub cgroup_bpf_available: bool,
    /// The exec tracepoint loads (exec rules on the cgroup backend).
    pub exec_tracepoint_available: bool,
    /// sockops programs load (Stratum inspection on the cgroup backend).
    pub sockops_available: bool,
    /// Whether a string field was cut to fit.
    pub truncated: bool,
    /// Kernel release (`uname -r`).
    pub kernel: [c_char; MG_KERNEL_LEN],
    /// The cgroup v2 mount point ("" when none).
    pub cgroup2_mount: [c_char; MG_PATH_LEN],
    /// Why BPF-LSM is (un)available, with the fix when it is not.
    pub bpf_lsm_detail: [c_char; MG_DETAIL_LEN],
}

/// Probes the running kernel (loads and unloads trivial BPF programs; as
/// non-root every load-tested feature reports the permission problem).
///
/// # Safety
/// `out` must point to a writable `mg_probe_report`.
#[no_mangle]
pub unsafe extern "C" fn mg_probe(out: *mut mg_probe_report) -> mg_result {
    guard(|| {
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        let r = probe();
        let mut report = mg_probe_report {
            backend: r.backend.into(),
            euid: r.euid,
            bpf_lsm_available: r.bpf_lsm.available,
            btf_available: r.btf.available,
            cgroup2_available: r.cgroup2.available,
            cgroup_bpf_available: r.cgroup_bpf.available,
            exec_tracepoint_available: r.exec_tracepoint.available,
            sockops_available: r.sockops.available,
            truncated: false,
            kernel: [0; MG_KERNEL_LEN],
            cgroup2_mount: [0; MG_PATH_LEN],
            bpf_lsm_detail: [0; MG_DETAIL_LEN],
        };
        let mount = r
            .cgroup2_mount
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut cut = fill_array(&mut report.kernel, &r.kernel);
        cut |= fill_array(&mut report.cgroup2_mount, &mount);
        cut |= fill_array(&mut report.bpf_lsm_detail, &r.bpf_lsm.detail);
        report.truncated = cut;
        // SAFETY: forwarded contract.
        unsafe { write_out(out, report, "out") }
    })
}

/// Probes the running kernel and writes the full report as JSON (the shape
/// of `enforcer probe --json`) into `buf`; `needed` (may be NULL) receives
/// the size required. Call with `len == 0` to learn the size.
///
/// # Safety
/// `buf` must point to `len` writable bytes (or be NULL with `len == 0`);
/// `needed` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mg_probe_json(
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> mg_result {
    guard(|| {
        let json = serde_json::to_string(&probe())
            .map_err(|e| Failure::invalid(format!("serializing the probe report: {e}")))?;
        // SAFETY: forwarded contract.
        unsafe { copy_str(&json, buf, len, needed) }
    })
}
