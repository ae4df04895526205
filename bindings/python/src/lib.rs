//! Python bindings for minerguard (`import minerguard`).
//!
//! The native module is `minerguard._minerguard`; `python/minerguard/__init__.py`
//! re-exports it. Each submodule binds one part of the library:
//! [`profile`] (profiles and the builder), [`enforcer`] (apply/update/remove
//! and the event stream), [`events`] (event objects), [`run`] (a command
//! under a profile in a fresh cgroup), [`probe`] (what the kernel supports),
//! [`instance`] (pinned enforcer instances), [`scan`] (the processes
//! already running in cgroups, judged by a profile), [`behaviour`] (the
//! behaviour detector) and [`errors`] (one exception
//! class per error kind).

#![warn(missing_docs)]

use pyo3::prelude::*;

pub mod behaviour;
pub mod enforcer;
pub mod errors;
pub mod events;
pub mod instance;
pub mod probe;
pub mod profile;
pub mod run;
pub mod scan;
mod wait;

/// The native module.
#[pymodule]
fn _minerguard(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<profile::Profile>()?;
    m.add_class::<enforcer::Enforcer>()?;
    m.add_class::<enforcer::PolicyHandle>()?;
    m.add_class::<enforcer::Drops>()?;
    m.add_class::<events::Event>()?;
    m.add_class::<events::EventIterator>()?;
    m.add_class::<run::RunResult>()?;
    m.add_class::<behaviour::BehaviourDetector>()?;
    m.add_function(wrap_pyfunction!(probe::probe, m)?)?;
    m.add_function(wrap_pyfunction!(run::run, m)?)?;
    m.add_function(wrap_pyfunction!(instance::instances, m)?)?;
    m.add_function(wrap_pyfunction!(instance::remove_instance, m)?)?;
    m.add_function(wrap_pyfunction!(scan::scan, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
