//! `minerguard.Enforcer`: loads a backend, applies profiles to scopes and
//! streams events. Every call that may block releases the GIL.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
};

use crossbeam_channel::Receiver;
use minerguard::{BackendChoice, EnforcerOptions, RuleKind, Scope};
use pyo3::{
    exceptions::PyValueError,
    prelude::*,
    types::{PyDict, PyTuple},
};

use crate::{
    errors::{to_py, ScopeError},
    events::{Event, EventIterator},
    profile::{parse_action, Profile},
    wait,
};

static NEXT_ENFORCER: AtomicU64 = AtomicU64::new(1);

/// Parses `auto`, `lsm` or `cgroup`.
pub fn parse_backend(s: &str) -> PyResult<BackendChoice> {
    s.parse::<BackendChoice>().map_err(PyValueError::new_err)
}

fn parse_kind(s: &str) -> PyResult<RuleKind> {
    match s {
        "exec" => Ok(RuleKind::Exec),
        "connect" => Ok(RuleKind::Connect),
        "stratum" => Ok(RuleKind::Stratum),
        "open" => Ok(RuleKind::Open),
        "seccomp" => Ok(RuleKind::Seccomp),
        "scope" => Ok(RuleKind::Scope),
        "behaviour" => Ok(RuleKind::Behaviour),
        other => Err(PyValueError::new_err(format!(
            "unknown rule kind {other:?} (expected exec, connect, stratum, open, seccomp, scope or behaviour)"
        ))),
    }
}

/// Names one applied profile; pass it to `Enforcer.update` and
/// `Enforcer.remove` of the enforcer that returned it.
#[pyclass(module = "minerguard", name = "PolicyHandle", frozen, eq, hash)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyHandle {
    handle: minerguard::PolicyHandle,
    enforcer: u64,
    scope: String,
}

#[pymethods]
impl PolicyHandle {
    /// A number unique within its enforcer.
    #[getter]
    fn id(&self) -> u64 {
        self.handle.id()
    }

    /// The scope, as text (`cgroup /sys/fs/cgroup/x` or `host`).
    #[getter]
    fn scope(&self) -> &str {
        &self.scope
    }

    fn __repr__(&self) -> String {
        format!(
            "PolicyHandle(id={}, scope={:?})",
            self.handle.id(),
            self.scope
        )
    }
}

/// Events lost so far: `ring` (kernel ring buffer full; enforcement still
/// happened) and `channel` (nobody read fast enough).
#[pyclass(module = "minerguard", name = "Drops", frozen, get_all, eq)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drops {
    /// Ring buffer full.
    pub ring: u64,
    /// Channel to consumers full.
    pub channel: u64,
}

#[pymethods]
impl Drops {
    /// `ring + channel`.
    #[getter]
    fn total(&self) -> u64 {
        self.ring + self.channel
    }

    fn __repr__(&self) -> String {
        format!("Drops(ring={}, channel={})", self.ring, self.channel)
    }
}

impl From<minerguard::Drops> for Drops {
    fn from(d: minerguard::Drops) -> Self {
        Drops {
            ring: d.ring,
            channel: d.channel,
        }
    }
}

/// Loads the BPF programs (the optional ones with the first profile that
/// needs them) and enforces profiles on scopes (cgroup v2
/// subtrees, or the host).
///
/// Use it as a context manager: leaving the `with` block (or `close()`)
/// removes every scope and detaches every program, unless the enforcer is
/// a pinned `instance` (then its enforcement stays until `detach()` or
/// `remove_instance()`).
#[pyclass(module = "minerguard", name = "Enforcer", frozen)]
pub struct Enforcer {
    inner: Mutex<Option<minerguard::Enforcer>>,
    events: Receiver<minerguard::Event>,
    backend: &'static str,
    instance: Option<String>,
    serial: u64,
}

impl Enforcer {
    fn lock(&self) -> MutexGuard<'_, Option<minerguard::Enforcer>> {
        // A panic while holding the lock cannot leave the enforcer half
        // updated (its methods are transactional): keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the open enforcer with the GIL released.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut minerguard::Enforcer) -> minerguard::Result<T> + Send,
    ) -> PyResult<T> {
        let result = py.detach(|| self.lock().as_mut().map(f));
        match result {
            None => Err(closed()),
            Some(r) => r.map_err(|e| to_py(py, e)),
        }
    }

    fn check_handle(&self, handle: &PolicyHandle) -> PyResult<minerguard::PolicyHandle> {
        if handle.enforcer != self.serial {
            return Err(ScopeError::new_err(format!(
                "policy handle {} belongs to another enforcer",
                handle.handle.id()
            )));
        }
        Ok(handle.handle)
    }
}

impl Enforcer {
    /// The tuning counts, or a `ValueError` saying why there are none.
    pub(crate) fn tuning_counts(
        &self,
        py: Python<'_>,
    ) -> PyResult<minerguard::behaviour::TuningCounts> {
        self.with(py, |e| {
            Ok(e.tuning_counts().ok_or_else(|| e.tuning().err()))
        })?
        .map_err(|why| {
            PyValueError::new_err(format!(
                "the enforcer counts no tuning attempts: {}",
                why.unwrap_or_default()
            ))
        })
    }
}

fn closed() -> PyErr {
    PyValueError::new_err("the enforcer is closed")
}

#[pymethods]
impl Enforcer {
    /// Probes the kernel and loads a backend: `"auto"` (lsm where BPF-LSM
    /// works, else cgroup), `"lsm"` or `"cgroup"`. `event_capacity` bounds
    /// the event queue (overflow is counted in `drops`);
    /// `require_all_rules` makes `apply` refuse rules the backend cannot
    /// enforce instead of listing them in `unenforced()`.
    ///
    /// `instance` pins the enforcement as `/sys/fs/bpf/minerguard/<name>`
    /// (1-64 of `A-Z a-z 0-9 _ -`, else `PinError`): it stays in force when
    /// the enforcer is closed or its process dies, until `detach()` or
    /// `remove_instance()`. Given the name of an existing instance, the
    /// enforcer adopts it (its maps, links, scopes and undelivered events);
    /// one live enforcer per instance (`PinError` while another holds it).
    ///
    /// `stratum_judge` picks what judges Stratum on the cgroup backend:
    /// `"egress"` (the default: the refused packet is dropped and its
    /// socket destroyed, the sender's next call fails with ECONNABORTED) or
    /// `"sk-msg"` (the refused send fails with EACCES; costs more per
    /// connection).
    #[new]
    #[pyo3(signature = (
        backend = "auto",
        *,
        event_capacity = 65_536,
        require_all_rules = false,
        syscall_tracepoints = true,
        instance = None,
        stratum_judge = "egress"
    ))]
    fn new(
        py: Python<'_>,
        backend: &str,
        event_capacity: usize,
        require_all_rules: bool,
        syscall_tracepoints: bool,
        instance: Option<String>,
        stratum_judge: &str,
    ) -> PyResult<Self> {
        let options = EnforcerOptions {
            backend: parse_backend(backend)?,
            event_capacity: event_capacity.max(1),
            require_all_rules,
            syscall_tracepoints,
            instance,
            cgroup_stratum_judge: stratum_judge
                .parse()
                .map_err(|e: String| PyValueError::new_err(format!("stratum_judge: {e}")))?,
            ..EnforcerOptions::default()
        };
        let enforcer = py
            .detach(|| minerguard::Enforcer::with_options(options))
            .map_err(|e| to_py(py, e))?;
        Ok(Enforcer {
            events: enforcer.events(),
            backend: enforcer.backend().as_str(),
            instance: enforcer.instance().map(str::to_owned),
            inner: Mutex::new(Some(enforcer)),
            serial: NEXT_ENFORCER.fetch_add(1, Ordering::Relaxed),
        })
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    /// Removes every scope and detaches every program; a pinned `instance`
    /// is left enforcing instead (`detach()` ends it). Idempotent.
    fn close(&self, py: Python<'_>) {
        py.detach(|| {
            let taken = self.lock().take();
            drop(taken);
        });
    }

    /// Whether `close()` ran.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        // Another thread may hold the lock through a long apply.
        py.detach(|| self.lock().is_none())
    }

    /// The backend in use: `"lsm"` or `"cgroup"`.
    #[getter]
    fn backend(&self) -> &'static str {
        self.backend
    }

    /// The instance this enforcer is pinned as, or None.
    #[getter]
    fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// Scopes an earlier enforcer of this instance enforced that this one
    /// has not applied again (`"host"` or the cgroup path). They stay
    /// enforced until `release_unadopted()`.
    fn unadopted(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.with(py, |e| Ok(e.unadopted()))
    }

    /// Ends what an earlier enforcer of this instance enforced and this one
    /// did not take over: scopes not applied again and pinned links not
    /// adopted. Call it once every scope is applied again (until then they
    /// keep enforcing: no gap). Returns `{"dropped": [scope, ...],
    /// "released_links": n}`.
    fn release_unadopted<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let settled = self.with(py, |e| e.release_unadopted())?;
        let out = PyDict::new(py);
        out.set_item("dropped", settled.dropped)?;
        out.set_item("released_links", settled.released_links)?;
        Ok(out)
    }

    /// Ends the enforcement and closes the enforcer: every scope is removed
    /// and, for a pinned instance, its links, maps and state too. The
    /// enforcer is closed afterwards even when this raises (then what was
    /// not ended stays pinned: `instances()` shows it, `remove_instance()`
    /// ends it). Raises ValueError when already closed.
    fn detach(&self, py: Python<'_>) -> PyResult<()> {
        let result = py.detach(|| self.lock().take().map(|e| e.detach()));
        match result {
            None => Err(closed()),
            Some(r) => r.map_err(|e| to_py(py, e)),
        }
    }

    /// Enforces `profile` on a cgroup v2 subtree (`cgroup`: a path,
    /// absolute or relative to the cgroup v2 mount) or, with `host=True`,
    /// on the whole host. Exactly one of the two. Transactional: on error
    /// nothing of the profile remains.
    #[pyo3(signature = (profile, *, cgroup = None, host = false))]
    fn apply(
        &self,
        py: Python<'_>,
        profile: PyRef<'_, Profile>,
        cgroup: Option<PathBuf>,
        host: bool,
    ) -> PyResult<PolicyHandle> {
        let scope = match (cgroup, host) {
            (Some(path), false) => Scope::Cgroup(path),
            (None, true) => Scope::Host,
            (Some(_), true) => {
                return Err(PyValueError::new_err(
                    "give either cgroup=PATH or host=True, not both",
                ))
            }
            (None, false) => {
                return Err(PyValueError::new_err(
                    "give a scope: cgroup=PATH (a cgroup v2 directory) or host=True",
                ))
            }
        };
        let profile = profile.inner.clone();
        let text = scope.to_string();
        let handle = self.with(py, move |e| e.apply(&profile, scope))?;
        Ok(PolicyHandle {
            handle,
            enforcer: self.serial,
            scope: text,
        })
    }

    /// Replaces the profile of an applied scope atomically.
    fn update(
        &self,
        py: Python<'_>,
        handle: PyRef<'_, PolicyHandle>,
        profile: PyRef<'_, Profile>,
    ) -> PyResult<()> {
        let h = self.check_handle(&handle)?;
        let profile = profile.inner.clone();
        self.with(py, move |e| e.update(h, &profile))
    }

    /// Stops enforcing on the handle's scope.
    fn remove(&self, py: Python<'_>, handle: PyRef<'_, PolicyHandle>) -> PyResult<()> {
        let h = self.check_handle(&handle)?;
        self.with(py, move |e| e.remove(h))
    }

    /// Follows every cgroup scope by its path: a cgroup that was removed is
    /// reported once, and one created again at the same path (a restarted
    /// container) gets the scope's profile (same handle). Returns
    /// `(change, handle id, cgroup path)` with change `"gone"` or
    /// `"recreated"`. Call it often: a new cgroup is unprotected until
    /// then, unless a scope on an ancestor covers it.
    fn follow_cgroups(&self, py: Python<'_>) -> PyResult<Vec<(&'static str, u64, String)>> {
        let changes = self.with(py, |e| e.follow_cgroups())?;
        Ok(changes
            .into_iter()
            .map(|c| match c {
                minerguard::ScopeChange::Gone { handle, path } => {
                    ("gone", handle.id(), path.display().to_string())
                }
                minerguard::ScopeChange::Recreated { handle, path } => {
                    ("recreated", handle.id(), path.display().to_string())
                }
            })
            .collect())
    }

    /// Rules of the handle's profile this backend does not enforce, as
    /// `(rule name, matcher)` pairs.
    fn unenforced(
        &self,
        py: Python<'_>,
        handle: PyRef<'_, PolicyHandle>,
    ) -> PyResult<Vec<(String, &'static str)>> {
        let h = self.check_handle(&handle)?;
        let gaps = self.with(py, move |e| e.unenforced(h))?;
        Ok(gaps
            .into_iter()
            .map(|g| (g.rule.to_string(), g.matcher.as_str()))
            .collect())
    }

    /// Records what `cgroup` executes for `duration` seconds (nothing is
    /// refused meanwhile; events of other profiles are dropped while it
    /// runs), then returns an allow-only profile of it: one rule
    /// `allow-learned` with `action`. Blocks, with the GIL released.
    #[pyo3(signature = (*, cgroup, duration, name = "learned", action = "deny"))]
    fn learn(
        &self,
        py: Python<'_>,
        cgroup: PathBuf,
        duration: f64,
        name: &str,
        action: &str,
    ) -> PyResult<Profile> {
        if !(duration.is_finite() && duration > 0.0) {
            return Err(PyValueError::new_err(format!(
                "duration: must be a positive number of seconds, got {duration}"
            )));
        }
        let action = parse_action(action)?;
        let wait = std::time::Duration::from_secs_f64(duration);
        let learner = self.with(py, move |e| e.learn(Scope::Cgroup(cgroup), wait, |_| {}))?;
        Ok(Profile {
            inner: learner.allow_only_profile(name, action),
        })
    }

    /// Has the kernel write `count` audit events for the handle's first
    /// rule (exec events naming `minerguard-self-test`) to check the event
    /// path; returns how many the ring buffer took.
    fn self_test_events(
        &self,
        py: Python<'_>,
        handle: PyRef<'_, PolicyHandle>,
        count: u32,
    ) -> PyResult<u32> {
        let h = self.check_handle(&handle)?;
        self.with(py, move |e| e.self_test_events(h, count))
    }

    /// None when executable mappings of refused files (loader exec) are
    /// judged; otherwise why not (on the cgroup backend, loaded with the
    /// first profile whose exec rules judge files).
    #[getter]
    fn loader_exec(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.with(py, |e| Ok(e.loader_exec().err()))
    }

    /// None when TCP Fast Open payloads are judged for Stratum; otherwise
    /// why not (loaded with the first profile that has a stratum rule).
    #[getter]
    fn fast_open(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.with(py, |e| Ok(e.fast_open().err()))
    }

    /// None when the lsm backend's socket_sendmsg hook judges Stratum
    /// (refused sends fail with EPERM); otherwise why not (EACCES from the
    /// sk_msg program; loaded with the first profile that has a stratum
    /// rule).
    #[getter]
    fn lsm_stratum(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.with(py, |e| Ok(e.lsm_stratum().err()))
    }

    /// None when the sk_msg program (with sockops tracking each new client
    /// socket of a stratum scope) judges Stratum sends; otherwise why not
    /// (the lsm backend needs neither: the egress judge behind its hook
    /// reads what bypasses it; the cgroup backend only with the sk-msg
    /// judge; loaded with the first profile that has a stratum rule).
    #[getter]
    fn stratum_sk_msg(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.with(py, |e| Ok(e.stratum_sk_msg().err()))
    }

    /// None when the egress judge stands behind the lsm backend's
    /// socket_sendmsg hook, reading what the kernel copied and sends (a
    /// buffer rewritten after the hook read it); otherwise why not (not
    /// needed where the sk_msg verdict or the egress judge reads the
    /// kernel's copy itself; loaded with the first profile that has a
    /// stratum rule).
    #[getter]
    fn stratum_backstop(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.with(py, |e| Ok(e.stratum_backstop().err()))
    }

    /// None when attempts to tune the host (opens for writing of
    /// `nr_hugepages`, MSR devices, the msr module's `allow_writes`,
    /// `nmi_watchdog`) are counted for `BehaviourDetector.count_tuning`;
    /// otherwise why not (loaded with the first profile whose `behaviour`
    /// rule counts tuning).
    #[getter]
    fn tuning(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.with(py, |e| Ok(e.tuning().err()))
    }

    /// The errno a send refused by a stratum rule fails with (final once a
    /// profile with a stratum rule is applied: the Stratum hooks load with
    /// it).
    #[getter]
    fn stratum_errno(&self, py: Python<'_>) -> PyResult<i32> {
        self.with(py, |e| Ok(e.stratum_errno()))
    }

    /// TCP sockets judged clean and taken out of the Stratum send path.
    #[getter]
    fn released_sockets(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |e| Ok(e.released_sockets()))
    }

    /// `(destroyed, not_destroyed)`: TCP sockets the egress Stratum judge
    /// refused and destroyed, and those it could not destroy (closed first,
    /// or no `CONFIG_INET_DIAG_DESTROY`: their packets are dropped while
    /// the judge is attached). `(0, 0)` on other judges.
    #[getter]
    fn destroyed_sockets(&self, py: Python<'_>) -> PyResult<(u64, u64)> {
        self.with(py, |e| Ok(e.destroyed_sockets()))
    }

    /// Handles of every applied profile.
    fn handles(&self, py: Python<'_>) -> PyResult<Vec<PolicyHandle>> {
        let serial = self.serial;
        self.with(py, move |e| {
            Ok(e.handles()
                .into_iter()
                .map(|h| PolicyHandle {
                    handle: h,
                    enforcer: serial,
                    scope: e.scope(h).map(|s| s.to_string()).unwrap_or_default(),
                })
                .collect())
        })
    }

    /// What the kernel does with this backend for a rule of `kind`
    /// (`"exec"`, `"connect"`, ...) that asks for `requested`
    /// (`"deny"`, `"kill"`, `"kill-container"`, `"audit"`); e.g. exec deny is `"kill"` on the
    /// cgroup backend.
    fn effective_action(
        &self,
        py: Python<'_>,
        kind: &str,
        requested: &str,
    ) -> PyResult<&'static str> {
        let (kind, requested) = (parse_kind(kind)?, parse_action(requested)?);
        self.with(py, move |e| {
            Ok(e.effective_action(kind, requested).as_str())
        })
    }

    /// Events lost so far.
    #[getter]
    fn drops(&self, py: Python<'_>) -> PyResult<Drops> {
        self.with(py, |e| Ok(Drops::from(e.drops())))
    }

    /// An iterator over events. With `timeout` (seconds) it stops after
    /// that long without an event; without, it runs until the enforcer is
    /// closed. Waiting releases the GIL; Ctrl-C interrupts it.
    #[pyo3(signature = (timeout = None))]
    fn events(&self, timeout: Option<f64>) -> PyResult<EventIterator> {
        Ok(EventIterator::new(
            self.events.clone(),
            wait::timeout(timeout)?,
        ))
    }

    /// The next event, waiting at most `timeout` seconds (forever when
    /// None); None when none came in time or the enforcer is closed.
    #[pyo3(signature = (timeout = None))]
    fn next_event(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Event>> {
        let limit = wait::timeout(timeout)?;
        Ok(wait::recv(py, &self.events, limit)?.map(Event::from))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = if self.closed(py) { "closed" } else { "open" };
        match &self.instance {
            Some(name) => format!(
                "Enforcer(backend={:?}, instance={name:?}, {state})",
                self.backend
            ),
            None => format!("Enforcer(backend={:?}, {state})", self.backend),
        }
    }
}
