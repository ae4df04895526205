//! `minerguard.probe()`: what this kernel supports.

use pyo3::prelude::*;

use crate::profile::json_to_py;

/// Probes the running kernel (loads trivial programs; needs root for a
/// meaningful answer) and returns the report as a dict: `kernel`, `euid`,
/// `btf`, `bpf_lsm`, `cgroup2`, `cgroup_bpf`, `exec_tracepoint`, `sockops`,
/// ... (each `{"available": bool, "detail": str}`), `lsm_list`,
/// `cgroup2_mount`, `backend` (`"lsm"`, `"cgroup"` or None) and `missing`
/// (one line per missing feature, with the fix).
#[pyfunction]
pub fn probe(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let text = py.detach(|| {
        let report = minerguard::probe();
        let mut value = serde_json::to_value(&report).expect("the report serializes");
        value["missing"] = serde_json::json!(report.missing());
        value.to_string()
    });
    json_to_py(py, &text)
}
