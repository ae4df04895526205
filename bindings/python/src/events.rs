//! `minerguard.Event` (one enforcement decision) and the event iterator.

use std::time::{Duration, UNIX_EPOCH};

use crossbeam_channel::Receiver;
use minerguard::{CgroupKill, Target};
use pyo3::prelude::*;

use crate::{profile::json_to_py, wait};

/// One enforcement decision. `kind` is `"exec"`, `"connect"` or
/// `"stratum"`; `path` is set for exec events, `addr`/`port`/`protocol`
/// for connect and stratum events (`signature` for stratum).
#[pyclass(module = "minerguard", name = "Event", frozen)]
#[derive(Debug, Clone)]
pub struct Event {
    inner: minerguard::Event,
}

impl From<minerguard::Event> for Event {
    fn from(inner: minerguard::Event) -> Self {
        Event { inner }
    }
}

#[pymethods]
impl Event {
    /// Wall-clock time of the decision, seconds since the epoch.
    #[getter]
    fn time(&self) -> f64 {
        self.inner
            .time
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64()
    }

    /// The time as an aware `datetime.datetime` in UTC.
    #[getter]
    fn datetime<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let dt = py.import("datetime")?;
        let utc = dt.getattr("timezone")?.getattr("utc")?;
        dt.getattr("datetime")?
            .call_method1("fromtimestamp", (self.time(), utc))
    }

    /// Thread id (the kernel's pid).
    #[getter]
    fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// Process id (thread group id).
    #[getter]
    fn tgid(&self) -> u32 {
        self.inner.tgid
    }

    /// Real uid of the task.
    #[getter]
    fn uid(&self) -> u32 {
        self.inner.uid
    }

    /// Task command name (at most 15 bytes).
    #[getter]
    fn comm(&self) -> &str {
        self.inner.comm.as_str()
    }

    /// Parent's process id (0 when unknown).
    #[getter]
    fn ppid(&self) -> u32 {
        self.inner.ppid
    }

    /// Parent's command name.
    #[getter]
    fn pname(&self) -> &str {
        self.inner.pname.as_str()
    }

    /// Falco's `proc.cmdline`: the command name, then the arguments after
    /// argv[0], space-separated (from the first 256 bytes of argv). An exec
    /// refused before it happens (lsm backend) shows the process that
    /// tried; one judged after it happened (cgroup backend, exec.cmdline
    /// rules), the new program.
    #[getter]
    fn cmdline(&self) -> &str {
        self.inner.cmdline.as_str()
    }

    /// Whether argv was longer than an event carries (`cmdline` is cut).
    #[getter]
    fn cmdline_truncated(&self) -> bool {
        self.inner.cmdline_truncated
    }

    /// `"kernel"` (ppid, pname and cmdline read at the decision) or
    /// `"proc"` (read from /proc on receipt: best effort).
    #[getter]
    fn proc_source(&self) -> &'static str {
        self.inner.proc_source.as_str()
    }

    /// exec.cmdline events: the pattern that matched (lower case).
    #[getter]
    fn pattern(&self) -> Option<&str> {
        self.inner.pattern.as_deref()
    }

    /// The task's own cgroup v2 id (inode number of its cgroup directory).
    #[getter]
    fn cgroup_id(&self) -> u64 {
        self.inner.cgroup_id
    }

    /// Name of the profile of the rule that fired.
    #[getter]
    fn profile(&self) -> &str {
        &self.inner.profile
    }

    /// Name of the rule that fired.
    #[getter]
    fn rule(&self) -> &str {
        &self.inner.rule
    }

    /// What was done: `"deny"`, `"kill"`, `"kill-container"` or `"audit"`.
    #[getter]
    fn action(&self) -> &'static str {
        self.inner.action.as_str()
    }

    /// What the rule asked for (differs from `action` when the backend
    /// degraded it, e.g. exec deny carried out as kill).
    #[getter]
    fn requested(&self) -> &'static str {
        self.inner.requested.as_str()
    }

    /// `kill-container` events: the cgroup the task was in, whose every
    /// process was sent SIGKILL; `None` when it was not killed (see
    /// `kill_error`) and for other actions.
    #[getter]
    fn killed_cgroup(&self) -> Option<String> {
        match &self.inner.cgroup_kill {
            Some(k @ CgroupKill::Killed { .. }) => k.cgroup().map(|p| p.display().to_string()),
            _ => None,
        }
    }

    /// `kill-container` events: why the task's cgroup was not killed;
    /// `None` when it was, and for other actions.
    #[getter]
    fn kill_error(&self) -> Option<&str> {
        match &self.inner.cgroup_kill {
            Some(CgroupKill::NotKilled { reason, .. }) => Some(reason),
            _ => None,
        }
    }

    /// Whether `action` differs from `requested`.
    #[getter]
    fn degraded(&self) -> bool {
        self.inner.degraded()
    }

    /// `"exec"`, `"connect"`, `"stratum"`, `"open"` (device opens) or
    /// `"scope"` (a task leaving its scope).
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.target.kind().as_str()
    }

    /// Exec events: the file's path from the task's root. Scope events: the
    /// cgroup the process went to, or what was refused.
    #[getter]
    fn path(&self) -> Option<&str> {
        match &self.inner.target {
            Target::Exec { path } => Some(path.as_str()),
            Target::ScopeEscape { cgroup, .. } => Some(cgroup.as_str()),
            _ => None,
        }
    }

    /// Scope events: the process that left (or was to leave) the scope.
    #[getter]
    fn moved_pid(&self) -> Option<u32> {
        match &self.inner.target {
            Target::ScopeEscape { moved, .. } => Some(*moved),
            _ => None,
        }
    }

    /// Connect and stratum events: destination address (IPv4-mapped IPv6
    /// shown as IPv4).
    #[getter]
    fn addr(&self) -> Option<String> {
        match &self.inner.target {
            Target::Connect { addr, .. } | Target::Stratum { addr, .. } => {
                Some(addr.ip().to_string())
            }
            _ => None,
        }
    }

    /// Connect and stratum events: destination port.
    #[getter]
    fn port(&self) -> Option<u16> {
        match &self.inner.target {
            Target::Connect { addr, .. } | Target::Stratum { addr, .. } => Some(addr.port()),
            _ => None,
        }
    }

    /// Connect and stratum events: `"tcp"`, `"udp"` (or the IANA number).
    #[getter]
    fn protocol(&self) -> Option<String> {
        match &self.inner.target {
            Target::Connect { protocol, .. } | Target::Stratum { protocol, .. } => {
                Some(protocol.name())
            }
            _ => None,
        }
    }

    /// Stratum events: which signature matched.
    #[getter]
    fn signature(&self) -> Option<&'static str> {
        match &self.inner.target {
            Target::Stratum { signature, .. } => Some(signature.as_str()),
            _ => None,
        }
    }

    /// Stratum events: the mining method that decided (lower case; `mining.`
    /// when a `mining.*` entry decided it at the dot; `""` for Stratum V2;
    /// the signature found for `custom-signature`).
    #[getter]
    fn method(&self) -> Option<String> {
        match &self.inner.target {
            Target::Stratum { method, .. } => Some(method.to_string()),
            _ => None,
        }
    }

    /// The event as one line of Falco-shaped JSON (what `enforcer` prints).
    fn to_json(&self) -> String {
        minerguard::falco_json(&self.inner)
    }

    /// The Falco-shaped JSON of `to_json()`, parsed: `time` (RFC 3339),
    /// `rule`, `priority`, `output`, `output_fields` (`proc.pid`,
    /// `proc.name`, `fd.sip`, ...), `action`.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.to_json())
    }

    fn __repr__(&self) -> String {
        let what = match &self.inner.target {
            Target::Exec { path } => format!("path={:?}", path.as_str()),
            Target::Connect { addr, protocol } => {
                format!(
                    "addr={:?}, port={}, protocol={:?}",
                    addr.ip().to_string(),
                    addr.port(),
                    protocol.name()
                )
            }
            Target::Stratum {
                addr, signature, ..
            } => format!(
                "addr={:?}, port={}, signature={:?}",
                addr.ip().to_string(),
                addr.port(),
                signature.as_str()
            ),
            Target::Device { major, minor } => format!("device={major}:{minor}"),
            Target::ScopeEscape { moved, cgroup, .. } => {
                format!("moved_pid={moved}, path={:?}", cgroup.as_str())
            }
        };
        format!(
            "Event(kind={:?}, rule={:?}, action={:?}, requested={:?}, pid={}, comm={:?}, {what})",
            self.kind(),
            self.rule(),
            self.action(),
            self.requested(),
            self.inner.pid,
            self.comm()
        )
    }
}

/// Iterates over events; stops after `timeout` seconds without one (never,
/// when the timeout is None) or when the enforcer is closed.
#[pyclass(module = "minerguard", name = "EventIterator", frozen)]
pub struct EventIterator {
    rx: Receiver<minerguard::Event>,
    timeout: Option<Duration>,
}

impl EventIterator {
    /// Over `rx`, with a silence timeout.
    pub fn new(rx: Receiver<minerguard::Event>, timeout: Option<Duration>) -> Self {
        EventIterator { rx, timeout }
    }
}

#[pymethods]
impl EventIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Event>> {
        Ok(wait::recv(py, &self.rx, self.timeout)?.map(Event::from))
    }
}
