//! `minerguard.run()`: a command under a profile in a fresh cgroup.

use std::{
    os::unix::process::{CommandExt, ExitStatusExt},
    path::PathBuf,
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

use minerguard::{
    cgroup::{join_cgroup_raw, OwnedCgroup},
    seccomp::install_raw,
    EnforcerOptions, Scope, SeccompFilter, SeccompPolicy,
};
use pyo3::{exceptions::PyValueError, prelude::*, types::PyList};

use crate::{
    enforcer::{parse_backend, Drops},
    errors::to_py,
    events::Event,
    profile::Profile,
    wait,
};

/// How a `run()` ended: `returncode` as `subprocess` gives it (the exit
/// code, or `-N` when killed by signal N), `signal` (N or None), the
/// `events` the profile produced, `timed_out` (the command outlived
/// `timeout` and was killed), `backend` and `drops`.
#[pyclass(module = "minerguard", name = "RunResult", frozen, get_all)]
pub struct RunResult {
    /// Exit code, or `-signal`.
    pub returncode: i32,
    /// The killing signal, if any.
    pub signal: Option<i32>,
    /// The events (list of `Event`).
    pub events: Py<PyList>,
    /// The command was killed because it outlived the timeout.
    pub timed_out: bool,
    /// Why the command could not be started (exec refused), else None.
    pub spawn_error: Option<String>,
    /// The backend that enforced.
    pub backend: &'static str,
    /// Events lost.
    pub drops: Drops,
}

#[pymethods]
impl RunResult {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "RunResult(returncode={}, signal={:?}, events=<{} events>, timed_out={})",
            self.returncode,
            self.signal,
            self.events.bind(py).len(),
            self.timed_out
        )
    }
}

/// Everything that must outlive the child; dropping it cleans up (the
/// cgroup is killed and removed, the enforcer detached).
struct Session {
    enforcer: minerguard::Enforcer,
    cgroup: Option<OwnedCgroup>,
}

impl Session {
    fn finish(mut self) -> minerguard::Result<()> {
        for h in self.enforcer.handles() {
            self.enforcer.remove(h)?;
        }
        if let Some(cg) = self.cgroup.take() {
            cg.remove()?;
        }
        Ok(())
    }
}

enum Fail {
    Mg(minerguard::Error),
    Io(std::io::Error),
}

impl From<minerguard::Error> for Fail {
    fn from(e: minerguard::Error) -> Self {
        Fail::Mg(e)
    }
}

impl From<minerguard::error::CgroupError> for Fail {
    fn from(e: minerguard::error::CgroupError) -> Self {
        Fail::Mg(e.into())
    }
}

fn fail(py: Python<'_>, f: Fail) -> PyErr {
    match f {
        Fail::Mg(e) => to_py(py, e),
        Fail::Io(e) => e.into(),
    }
}

fn start(
    profile: &minerguard::Profile,
    options: EnforcerOptions,
    argv: &[String],
    cwd: Option<PathBuf>,
) -> Result<(Session, Result<Child, std::io::Error>), Fail> {
    // The profile's seccomp filter, built before the fork: between fork and
    // exec the child may only make async-signal-safe calls, so it just hands
    // these instructions to the kernel (`install_raw`).
    let seccomp = match SeccompPolicy::compile(profile).map_err(minerguard::Error::from)? {
        Some(policy) => Some(
            SeccompFilter::new(&policy)
                .and_then(|f| f.to_sock_filters())
                .map_err(minerguard::Error::from)?,
        ),
        None => None,
    };
    let mut enforcer = minerguard::Enforcer::with_options(options)?;
    let cgroup = OwnedCgroup::create_in_root("minerguard-py-run")?;
    let procs = cgroup.procs_file()?;
    enforcer.apply(profile, Scope::Cgroup(cgroup.cgroup().path().into()))?;
    let session = Session {
        enforcer,
        cgroup: Some(cgroup),
    };
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    // SAFETY: join_cgroup_raw is one write(2) and install_raw two syscalls
    // (prctl, seccomp): async-signal-safe between fork and exec. The filter
    // comes after the join, so it need not allow the cgroup write.
    unsafe {
        command.pre_exec(move || {
            join_cgroup_raw(&procs)?;
            match &seccomp {
                Some(program) => install_raw(program),
                None => Ok(()),
            }
        });
    }
    match command.spawn() {
        Ok(child) => Ok((session, Ok(child))),
        // The profile refused the exec itself (lsm backend): a result, with
        // its events, not an exception.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok((session, Err(e))),
        Err(e) => Err(Fail::Io(e)),
    }
}

/// Waits for the child with the GIL released, a slice at a time so that
/// Ctrl-C reaches Python; kills it at the deadline. Returns its status and
/// whether it timed out.
fn wait_child(
    py: Python<'_>,
    child: &mut Child,
    limit: Option<Duration>,
) -> PyResult<(ExitStatus, bool)> {
    let deadline = limit.map(|d| Instant::now() + d);
    loop {
        let polled = py.detach(|| -> std::io::Result<Option<ExitStatus>> {
            let slice_end = Instant::now() + Duration::from_millis(100);
            loop {
                if let Some(s) = child.try_wait()? {
                    return Ok(Some(s));
                }
                let now = Instant::now();
                if now >= slice_end || deadline.is_some_and(|d| now >= d) {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })?;
        if let Some(status) = polled {
            return Ok((status, false));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let status = py.detach(|| child.wait())?;
            return Ok((status, true));
        }
        if let Err(e) = py.check_signals() {
            let _ = child.kill();
            let _ = py.detach(|| child.wait());
            return Err(e);
        }
    }
}

/// Runs `argv` in a fresh cgroup v2 (created under the cgroup v2 root,
/// removed afterwards) with `profile` applied to it, and returns a
/// `RunResult` with its status and events. When the profile has seccomp
/// rules, the command also runs under its seccomp filter (installed in the
/// child after it joins the cgroup, right before exec, with
/// `no_new_privs`). The command's stdio is this process's. `timeout`
/// (seconds) kills it when it runs longer. Needs root.
#[pyfunction]
#[pyo3(signature = (profile, argv, *, backend = "auto", timeout = None, cwd = None, settle = 0.2))]
pub fn run(
    py: Python<'_>,
    profile: PyRef<'_, Profile>,
    argv: Vec<String>,
    backend: &str,
    timeout: Option<f64>,
    cwd: Option<PathBuf>,
    settle: f64,
) -> PyResult<RunResult> {
    if argv.is_empty() {
        return Err(PyValueError::new_err("argv must name a command"));
    }
    let limit = wait::timeout(timeout)?;
    let settle = wait::timeout(Some(settle))?.unwrap_or_default();
    let options = EnforcerOptions {
        backend: parse_backend(backend)?,
        ..Default::default()
    };
    let profile = profile.inner.clone();
    let (session, child) = py
        .detach(|| start(&profile, options, &argv, cwd))
        .map_err(|f| fail(py, f))?;
    // On error from here on, dropping `session` kills and removes the
    // cgroup and detaches the enforcer.
    let (status, timed_out, spawn_error) = match child {
        Ok(mut child) => {
            let (status, timed_out) = wait_child(py, &mut child, limit)?;
            (Some(status), timed_out, None)
        }
        Err(e) => (None, false, Some(format!("cannot run {:?}: {e}", argv[0]))),
    };
    // Events trail the kernel's decision: collect until `settle` passes
    // without one.
    let rx = session.enforcer.events();
    let mut events = Vec::new();
    while let Some(ev) = wait::recv(py, &rx, Some(settle))? {
        events.push(Event::from(ev));
    }
    let drops = Drops::from(session.enforcer.drops());
    let backend = session.enforcer.backend().as_str();
    py.detach(|| session.finish()).map_err(|e| to_py(py, e))?;
    let list = PyList::new(py, events)?.unbind();
    let signal = status.and_then(|s| s.signal());
    let returncode = match status {
        Some(s) => s.code().unwrap_or_else(|| -signal.unwrap_or(0)),
        None => 126,
    };
    Ok(RunResult {
        returncode,
        signal,
        events: list,
        timed_out,
        spawn_error,
        backend,
        drops,
    })
}
