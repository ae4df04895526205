//! `minerguard.scan()`: the processes already running in cgroups judged by
//! a profile, and acted on (see `minerguard::scan`).

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::{
    behaviour::cgroups_arg,
    errors::to_py,
    profile::{json_to_py, Profile},
};

/// Scans every process of `cgroups` (paths, absolute or relative to the
/// cgroup v2 mount) and their descendants with `profile`: what an `audit`
/// rule matches is reported, what a `deny` or `kill` rule matches is
/// killed, unless `dry_run`; the `exclude` cgroups and their descendants
/// are left out (containers with a profile of their own). Returns the report as a dict: `profile`,
/// `scanned`, `vanished`, `elapsed_ms`, `findings` (each an event dict in
/// Falco's shape, `output_fields["minerguard.kind"] == "scan"`, with
/// `minerguard.outcome`) and `unjudged` (`rule`, `reason`). Raises
/// `CgroupError` for a path that is not a cgroup (nothing is scanned) and
/// `ProfileError` for an invalid profile. The GIL is released meanwhile.
#[pyfunction]
#[pyo3(signature = (profile, cgroups, *, dry_run = false, exclude = Vec::new()))]
pub fn scan<'py>(
    py: Python<'py>,
    profile: PyRef<'_, Profile>,
    cgroups: Vec<PathBuf>,
    dry_run: bool,
    exclude: Vec<PathBuf>,
) -> PyResult<Bound<'py, PyAny>> {
    let cgroups = cgroups_arg(cgroups)?;
    let profile = profile.inner.clone();
    let text = py
        .detach(|| {
            let options = minerguard::scan::ScanOptions { dry_run, exclude };
            minerguard::scan::scan(&cgroups, &profile, &options).map(|r| r.to_json())
        })
        .map_err(|e| to_py(py, e))?;
    json_to_py(py, &text)
}
