//! `minerguard.BehaviourDetector`: a profile's `behaviour` rules judging a
//! scope's processes by how they run, sampled periodically by the caller
//! (see `minerguard::behaviour`).

use std::{path::PathBuf, sync::Mutex};

use pyo3::{exceptions::PyValueError, prelude::*};

use crate::{
    enforcer::Enforcer,
    errors::to_py,
    profile::{json_to_py, Profile},
};

/// A behaviour detector: keeps each process's recent CPU samples between
/// calls to `sample()`.
#[pyclass(module = "minerguard", name = "BehaviourDetector", frozen)]
pub struct BehaviourDetector {
    inner: Mutex<minerguard::behaviour::Detector>,
}

/// The cgroup paths of a call, at least one.
pub(crate) fn cgroups_arg(cgroups: Vec<PathBuf>) -> PyResult<Vec<PathBuf>> {
    if cgroups.is_empty() {
        return Err(PyValueError::new_err(
            "cgroups must name at least one cgroup",
        ));
    }
    Ok(cgroups)
}

#[pymethods]
impl BehaviourDetector {
    /// A detector of `profile`'s `behaviour` rules (none: it finds
    /// nothing). Raises `ProfileError` for an invalid profile.
    #[new]
    fn new(py: Python<'_>, profile: PyRef<'_, Profile>) -> PyResult<Self> {
        let detector =
            minerguard::behaviour::Detector::new(&profile.inner).map_err(|e| to_py(py, e))?;
        Ok(BehaviourDetector {
            inner: Mutex::new(detector),
        })
    }

    /// The names of the profile's `behaviour` rules.
    #[getter]
    fn rules(&self) -> Vec<String> {
        let d = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        d.rules().iter().map(|r| r.name.to_string()).collect()
    }

    /// Judges with the tuning signal from now on: each busy process's
    /// attempts to tune the host (opens for writing of `nr_hugepages`, MSR
    /// devices, the msr module's `allow_writes`, `nmi_watchdog`), as
    /// `enforcer` counts them in the scopes it enforces. The counter is
    /// loaded with the first profile whose `behaviour` rule counts tuning
    /// (`count_tuning`, on by default): apply one
    /// first. Raises `ValueError` (saying why) where there are no counts;
    /// the detector is then unchanged.
    fn count_tuning(&self, py: Python<'_>, enforcer: PyRef<'_, Enforcer>) -> PyResult<()> {
        let counts = enforcer.tuning_counts(py)?;
        // A sample under way on another thread holds the lock: wait for it
        // without the GIL.
        py.detach(|| {
            let mut d = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            d.count_tuning(counts);
        });
        Ok(())
    }

    /// Takes one sample of every process of `cgroups` (paths, absolute or
    /// relative to the cgroup v2 mount) and their descendants, less the
    /// `exclude` subtrees, and acts on what a rule finds mining unless
    /// `dry_run`. A process is judged once its samples span the rule's
    /// window: call it periodically (`minerguard watch` does every 2 s).
    /// Returns a dict: `profile`, `processes`, `detections` (event dicts in
    /// Falco's shape, `output_fields["minerguard.kind"] == "behaviour"`,
    /// with `minerguard.outcome` and the `minerguard.behaviour.*` signals)
    /// and `observations` (`pid`, `comm`, `rule`, `mining`, `signals`,
    /// `values`). Raises `CgroupError` for a path that is not a cgroup
    /// (nothing is sampled). The GIL is released meanwhile.
    #[pyo3(signature = (cgroups, *, dry_run = false, exclude = Vec::new()))]
    fn sample<'py>(
        &self,
        py: Python<'py>,
        cgroups: Vec<PathBuf>,
        dry_run: bool,
        exclude: Vec<PathBuf>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let cgroups = cgroups_arg(cgroups)?;
        let text = py
            .detach(|| {
                let mut d = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                let options = minerguard::scan::ScanOptions { dry_run, exclude };
                d.sample(&cgroups, &options).map(|s| s.to_json(d.profile()))
            })
            .map_err(|e| to_py(py, e))?;
        json_to_py(py, &text)
    }
}
