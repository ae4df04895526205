//! `minerguard.scan()`: the processes already running in cgroups judged by
//! a profile, and acted on (see `minerguard::scan`).

use std::path::PathBuf;

use pyo3::{exceptions::PyValueError, prelude::*};

use crate::{
    errors::to_py,
    profile::{json_to_py, Profile},
};

/// Scans every process of `cgroups` (paths, absolute or relative to the
/// cgroup v2 mount) and their descendants with `profile`: what an `audit`
/// rule matches is reported, what a `deny` or `kill` rule matches is
/// killed, unless `dry_run`. Returns the report as a dict: `profile`,
/// `scanned`, `vanished`, `elapsed_ms`, `findings` (each an event dict in
/// Falco's shape, `output_fields["minerguard.kind"] == "scan"`, with
/// `minerguard.outcome`) and `unjudged` (`rule`, `reason`). Raises
/// `CgroupError` for a path that is not a cgroup (nothing is scanned) and
/// `ProfileError` for an invalid profile. The GIL is released meanwhile.
#[pyfunction]
#[pyo3(signature = (profile, cgroups, *, dry_run = false))]
pub fn scan<'py>(
    py: Python<'py>,
    profile: PyRef<'_, Profile>,
    cgroups: Vec<PathBuf>,
    dry_run: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if cgroups.is_empty() {
        return Err(PyValueError::new_err(
            "cgroups must name at least one cgroup",
        ));
    }
    let profile = profile.inner.clone();
    let text = py
        .detach(|| {
            let options = minerguard::scan::ScanOptions {
                dry_run,
                ..Default::default()
            };
            minerguard::scan::scan(&cgroups, &profile, &options).map(|r| r.to_json())
        })
        .map_err(|e| to_py(py, e))?;
    json_to_py(py, &text)
}
