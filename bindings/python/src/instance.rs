//! Pinned enforcer instances: `minerguard.instances()` and
//! `minerguard.remove_instance()` (open or adopt one with
//! `Enforcer(instance=...)`).

use pyo3::prelude::*;

use crate::{errors::to_py, profile::json_to_py};

/// Every pinned instance, as dicts: `name`, `pid` (the process that
/// enforced it last, or None), `alive` (whether it runs; the kernel
/// enforces either way), `backend`, `scopes` (each `scope`, `cgroup_id`,
/// `present`, `profile`, `policy_id`, `since` in Unix seconds), `links`
/// (each `name`, `id`, `program_id`), `maps` (a count), `ring_drops` and
/// `stratum_judge` (`unread_refused`, `untracked`, `own_copies`).
#[pyfunction]
pub fn instances(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let text = py
        .detach(|| {
            let all = minerguard::pin::instances()?;
            Ok::<_, minerguard::Error>(
                serde_json::to_string(&all).expect("the instances serialize"),
            )
        })
        .map_err(|e| to_py(py, e))?;
    json_to_py(py, &text)
}

/// Ends pinned instance `name`: its links and maps are unpinned (its
/// programs detach) and its state removed. Raises PinError when there is
/// no such instance, the name is invalid, or a live enforcer holds it.
#[pyfunction]
pub fn remove_instance(py: Python<'_>, name: &str) -> PyResult<()> {
    py.detach(|| minerguard::pin::remove(name))
        .map_err(|e| to_py(py, e.into()))
}
