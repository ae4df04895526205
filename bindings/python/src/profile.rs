//! `minerguard.Profile`: parse, build, validate and serialize profiles.

use std::path::PathBuf;

use minerguard::{
    error::Diagnostic as MgDiagnostic, seccomp::oci, Action, Mode, SeccompFilter, SeccompPolicy,
};
use pyo3::{
    exceptions::{PyTypeError, PyValueError},
    prelude::*,
    types::{PyBool, PyBytes, PyDict, PyInt, PyList, PyString},
};
use serde_json::{json, Value};

use crate::errors::{from_profile_error, profile_error, to_py, Diagnostic};

/// A security profile: named rules, each one matcher and an action.
///
/// Parsed profiles (`from_yaml`, `from_json`, `from_file`) are validated on
/// parse and raise `ProfileError`. Built profiles are checked rule by rule
/// for shape when a rule is added (`ProfileError` with the rule's field
/// path), and as a whole by `validate()` (and again by `Enforcer.apply`).
#[pyclass(module = "minerguard", name = "Profile")]
#[derive(Debug, Clone)]
pub struct Profile {
    /// The library's profile.
    pub inner: minerguard::Profile,
}

/// Parses `deny`, `kill`, `kill-container` or `audit`.
pub fn parse_action(s: &str) -> PyResult<Action> {
    Action::from_name(s).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown action {s:?} (expected 'deny', 'kill', 'kill-container' or 'audit')"
        ))
    })
}

fn parse_mode(s: &str) -> PyResult<Mode> {
    match s {
        "enforce" => Ok(Mode::Enforce),
        "audit" => Ok(Mode::Audit),
        other => Err(PyValueError::new_err(format!(
            "unknown mode {other:?} (expected 'enforce' or 'audit')"
        ))),
    }
}

fn mode_str(m: Mode) -> &'static str {
    match m {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    }
}

/// A port given from Python: an int, or a string such as `"5000-5010"`.
fn port_value(item: &Bound<'_, PyAny>) -> PyResult<Value> {
    if item.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(
            "a port must be an int or a range string such as '5000-5010', not bool",
        ));
    }
    if item.is_instance_of::<PyInt>() {
        let n: i64 = item.extract()?;
        return Ok(json!(n));
    }
    if item.is_instance_of::<PyString>() {
        return Ok(json!(item.extract::<String>()?));
    }
    Err(PyTypeError::new_err(format!(
        "a port must be an int or a range string such as '5000-5010', not {}",
        item.get_type().name()?
    )))
}

/// Splits a serde_yaml message `path: problem at line L column C` into
/// its field path and problem.
fn split_serde_message(text: &str) -> (String, String) {
    let text = text
        .rsplit_once(" at line ")
        .map(|(m, _)| m)
        .unwrap_or(text);
    match text.split_once(": ") {
        Some((f, m)) if !f.contains(' ') => (f.to_string(), m.to_string()),
        _ => (String::new(), text.to_string()),
    }
}

impl Profile {
    /// Adds one rule given as JSON, reporting shape errors under `rules[i]`.
    fn push_rule_json(&mut self, py: Python<'_>, rule: &Value) -> PyResult<()> {
        let index = self.inner.rules.len();
        // serde_yaml reads JSON and, unlike serde_json, names the path of
        // the offending field.
        match serde_yaml::from_str::<minerguard::Rule>(&rule.to_string()) {
            Ok(r) => {
                self.inner.rules.push(r);
                Ok(())
            }
            Err(e) => {
                let (path, message) = split_serde_message(&e.to_string());
                let field = if path.is_empty() {
                    format!("rules[{index}]")
                } else {
                    format!("rules[{index}].{path}")
                };
                let d = MgDiagnostic {
                    file: None,
                    field: field.clone(),
                    line: None,
                    column: None,
                    message: message.clone(),
                };
                Err(profile_error(
                    py,
                    format!("<profile>:{field}: {message}"),
                    vec![d],
                ))
            }
        }
    }

    /// The profile's seccomp policy: `ProfileError` when the profile is
    /// invalid, `ValueError` when it has no seccomp rule.
    fn seccomp_policy(&self, py: Python<'_>) -> PyResult<SeccompPolicy> {
        match SeccompPolicy::compile(&self.inner) {
            Ok(Some(policy)) => Ok(policy),
            Ok(None) => Err(PyValueError::new_err(format!(
                "profile {:?} has no seccomp rule: there is no filter to export or install",
                self.inner.name
            ))),
            Err(e) => Err(from_profile_error(py, &e)),
        }
    }

    /// The libseccomp filter of the profile's seccomp policy.
    fn seccomp_filter(&self, py: Python<'_>) -> PyResult<SeccompFilter> {
        let policy = self.seccomp_policy(py)?;
        SeccompFilter::new(&policy).map_err(|e| seccomp_error(py, e))
    }

    /// A rule name not used yet, from `base`.
    fn fresh_name(&self, base: &str) -> String {
        let taken = |n: &str| self.inner.rules.iter().any(|r| r.name == n);
        if !taken(base) {
            return base.to_string();
        }
        (2..)
            .map(|i| format!("{base}-{i}"))
            .find(|n| !taken(n))
            .expect("some suffix is free")
    }
}

fn ports_json(ports: &[Bound<'_, PyAny>]) -> PyResult<Value> {
    Ok(Value::Array(
        ports.iter().map(port_value).collect::<PyResult<Vec<_>>>()?,
    ))
}

#[pymethods]
impl Profile {
    /// An empty profile (`mode` is `"enforce"` or `"audit"`); add rules with
    /// the builder methods, which return the profile for chaining.
    #[new]
    #[pyo3(signature = (name, mode = "enforce"))]
    fn new(name: String, mode: &str) -> PyResult<Self> {
        Ok(Profile {
            inner: minerguard::Profile::new(name).with_mode(parse_mode(mode)?),
        })
    }

    /// Parses and validates YAML (JSON is accepted too).
    #[staticmethod]
    fn from_yaml(py: Python<'_>, text: &str) -> PyResult<Self> {
        minerguard::Profile::from_yaml(text)
            .map(|inner| Profile { inner })
            .map_err(|e| from_profile_error(py, &e))
    }

    /// Parses and validates JSON.
    #[staticmethod]
    fn from_json(py: Python<'_>, text: &str) -> PyResult<Self> {
        minerguard::Profile::from_json(text)
            .map(|inner| Profile { inner })
            .map_err(|e| from_profile_error(py, &e))
    }

    /// Reads, parses and validates a profile file (YAML or JSON).
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        minerguard::Profile::from_file(&path)
            .map(|inner| Profile { inner })
            .map_err(|e| from_profile_error(py, &e))
    }

    /// A bundled profile by name (see `bundled_names()`).
    #[staticmethod]
    fn bundled(name: &str) -> PyResult<Self> {
        minerguard::Profile::bundled(name)
            .map(|inner| Profile { inner })
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "no bundled profile {name:?} (bundled: {})",
                    minerguard::Profile::bundled_names().join(", ")
                ))
            })
    }

    /// Names of the bundled profiles.
    #[staticmethod]
    fn bundled_names() -> Vec<&'static str> {
        minerguard::Profile::bundled_names().to_vec()
    }

    /// Profile name, shown in events.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    #[setter]
    fn set_name(&mut self, name: String) {
        self.inner.name = name;
    }

    /// `"enforce"` or `"audit"` (dry run: every deny/kill only reported).
    #[getter]
    fn mode(&self) -> &'static str {
        mode_str(self.inner.mode)
    }

    #[setter]
    fn set_mode(&mut self, mode: &str) -> PyResult<()> {
        self.inner.mode = parse_mode(mode)?;
        Ok(())
    }

    /// The rules, each a dict as in the profile's JSON form (the same shape
    /// `add_rule_dict` takes). A copy: changing it changes nothing.
    #[getter]
    fn rules<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self
            .inner
            .rules
            .iter()
            .map(|r| json_to_py(py, &serde_json::to_string(r).expect("a Rule serializes")))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// Adds an `exec.names` rule: exec of files with these basenames.
    #[pyo3(signature = (names, *, name = None, action = "deny"))]
    fn deny_exec_names<'py>(
        mut slf: PyRefMut<'py, Self>,
        names: Vec<String>,
        name: Option<String>,
        action: &str,
    ) -> PyResult<PyRefMut<'py, Self>> {
        let action = parse_action(action)?;
        let name = name.unwrap_or_else(|| slf.fresh_name("deny-exec-names"));
        let rule = json!({"name": name, "action": action, "exec": {"names": names}});
        let py = slf.py();
        slf.push_rule_json(py, &rule)?;
        Ok(slf)
    }

    /// Adds a `connect.ports` rule: TCP/UDP connections to these ports
    /// (ints, or range strings such as `"5000-5010"`).
    #[pyo3(signature = (ports, *, name = None, action = "deny"))]
    fn deny_ports<'py>(
        mut slf: PyRefMut<'py, Self>,
        ports: Vec<Bound<'py, PyAny>>,
        name: Option<String>,
        action: &str,
    ) -> PyResult<PyRefMut<'py, Self>> {
        let action = parse_action(action)?;
        let ports = ports_json(&ports)?;
        let name = name.unwrap_or_else(|| slf.fresh_name("deny-ports"));
        let rule = json!({"name": name, "action": action, "connect": {"ports": ports}});
        let py = slf.py();
        slf.push_rule_json(py, &rule)?;
        Ok(slf)
    }

    /// Adds a `connect.cidrs` rule: connections into these IPv4/IPv6
    /// networks (`"203.0.113.0/24"`, `"2001:db8::/32"`).
    #[pyo3(signature = (cidrs, *, name = None, action = "deny"))]
    fn deny_cidrs<'py>(
        mut slf: PyRefMut<'py, Self>,
        cidrs: Vec<String>,
        name: Option<String>,
        action: &str,
    ) -> PyResult<PyRefMut<'py, Self>> {
        let action = parse_action(action)?;
        let name = name.unwrap_or_else(|| slf.fresh_name("deny-cidrs"));
        let rule = json!({"name": name, "action": action, "connect": {"cidrs": cidrs}});
        let py = slf.py();
        slf.push_rule_json(py, &rule)?;
        Ok(slf)
    }

    /// Adds a `stratum` rule: the Stratum mining protocol in the stream a
    /// socket sends, on any port. `methods` replaces the built-in list of
    /// mining methods; `signatures` are byte strings refused anywhere in
    /// what the reader reads (a miner's own protocol).
    #[pyo3(signature = (*, name = None, action = "kill", methods = None, signatures = None))]
    fn stratum<'py>(
        mut slf: PyRefMut<'py, Self>,
        name: Option<String>,
        action: &str,
        methods: Option<Vec<String>>,
        signatures: Option<Vec<String>>,
    ) -> PyResult<PyRefMut<'py, Self>> {
        let action = parse_action(action)?;
        let name = name.unwrap_or_else(|| slf.fresh_name("stratum"));
        let mut matcher = serde_json::Map::new();
        if let Some(m) = methods {
            matcher.insert("methods".into(), json!(m));
        }
        if let Some(s) = signatures {
            matcher.insert("signatures".into(), json!(s));
        }
        let rule = json!({"name": name, "action": action, "stratum": matcher});
        let py = slf.py();
        slf.push_rule_json(py, &rule)?;
        Ok(slf)
    }

    /// Adds a rule with one matcher given by keyword (`exec_names` or
    /// `ports`); other matcher kinds go through `add_rule_dict`.
    #[pyo3(signature = (name, action, *, exec_names = None, ports = None, description = None))]
    fn add_rule<'py>(
        mut slf: PyRefMut<'py, Self>,
        name: String,
        action: &str,
        exec_names: Option<Vec<String>>,
        ports: Option<Vec<Bound<'py, PyAny>>>,
        description: Option<String>,
    ) -> PyResult<PyRefMut<'py, Self>> {
        let action = parse_action(action)?;
        let mut rule = json!({"name": name, "action": action});
        match (exec_names, ports) {
            (Some(names), None) => rule["exec"] = json!({ "names": names }),
            (None, Some(ports)) => rule["connect"] = json!({ "ports": ports_json(&ports)? }),
            (Some(_), Some(_)) => {
                return Err(PyValueError::new_err(
                    "a rule has exactly one matcher: give exec_names or ports, not both",
                ))
            }
            (None, None) => {
                return Err(PyValueError::new_err(
                    "give a matcher: exec_names=[...] or ports=[...] (add_rule_dict takes any other kind)",
                ))
            }
        }
        if let Some(d) = description {
            rule["description"] = json!(d);
        }
        let py = slf.py();
        slf.push_rule_json(py, &rule)?;
        Ok(slf)
    }

    /// Adds a rule from a dict shaped like one entry of a profile's `rules`
    /// (`{"name": ..., "action": ..., "connect": {"cidrs": [...]}}`), so
    /// every matcher kind the library knows is available.
    fn add_rule_dict<'py>(
        mut slf: PyRefMut<'py, Self>,
        rule: &Bound<'py, PyDict>,
    ) -> PyResult<PyRefMut<'py, Self>> {
        let py = slf.py();
        let text: String = py
            .import("json")?
            .call_method1("dumps", (rule,))?
            .extract()?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| PyValueError::new_err(format!("rule is not JSON-like: {e}")))?;
        slf.push_rule_json(py, &value)?;
        Ok(slf)
    }

    /// Every problem of the profile as a list of `Diagnostic` (empty when
    /// valid). Never raises for an invalid profile; `check()` does.
    fn validate(&self) -> Vec<Diagnostic> {
        match self.inner.validate() {
            Ok(_) => Vec::new(),
            Err(e) => e.diagnostics().into_iter().map(Diagnostic::from).collect(),
        }
    }

    /// Raises `ProfileError` (with every diagnostic) when the profile is
    /// invalid; returns None otherwise.
    fn check(&self, py: Python<'_>) -> PyResult<()> {
        self.inner
            .validate()
            .map(|_| ())
            .map_err(|e| from_profile_error(py, &e))
    }

    /// The profile as YAML.
    fn to_yaml(&self) -> String {
        self.inner.to_yaml()
    }

    /// The profile as JSON.
    fn to_json(&self) -> String {
        self.inner.to_json()
    }

    /// The profile as a dict (its JSON form).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.inner.to_json())
    }

    /// Whether the profile has at least one `seccomp` rule (raises
    /// `ProfileError` when the profile is invalid).
    fn has_seccomp(&self, py: Python<'_>) -> PyResult<bool> {
        SeccompPolicy::compile(&self.inner)
            .map(|p| p.is_some())
            .map_err(|e| from_profile_error(py, &e))
    }

    /// The profile's seccomp filter as the OCI runtime spec's
    /// `linux.seccomp` object (runc, crun, youki), as pretty-printed JSON
    /// text (`json.loads` it for a dict): the text `enforcer seccomp
    /// --format oci` prints. Raises `ValueError` without a seccomp rule,
    /// `ProfileError` for an invalid profile, `SeccompError` when an action
    /// cannot be expressed in OCI (`notify`).
    fn to_oci_json(&self, py: Python<'_>) -> PyResult<String> {
        let policy = self.seccomp_policy(py)?;
        let value = oci::to_oci(&policy).map_err(|e| seccomp_error(py, e))?;
        serde_json::to_string_pretty(&value)
            .map_err(|e| PyValueError::new_err(format!("serializing the OCI JSON: {e}")))
    }

    /// The profile's seccomp filter as raw classic BPF: a `struct
    /// sock_filter` array (8 bytes per instruction, native endian), as
    /// `seccomp(2)` takes it. Errors as for `to_oci_json()`.
    fn to_bpf<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bpf = self
            .seccomp_filter(py)?
            .to_bpf()
            .map_err(|e| seccomp_error(py, e))?;
        Ok(PyBytes::new(py, &bpf))
    }

    /// The profile's seccomp filter as libseccomp's human-readable PFC text.
    /// Errors as for `to_oci_json()`.
    fn to_pfc(&self, py: Python<'_>) -> PyResult<String> {
        self.seccomp_filter(py)?
            .to_pfc()
            .map_err(|e| seccomp_error(py, e))
    }

    /// Installs the profile's seccomp filter in this process, on every
    /// thread, with `no_new_privs`. Irreversible: it stays for the life of
    /// the process and is inherited by every child and program it runs, so
    /// call it in a process meant to be restricted (a `multiprocessing`
    /// child, a worker), or let `run()` install it in its command. Raises
    /// `ValueError` without a seccomp rule (nothing is installed),
    /// `ProfileError` for an invalid profile, `SeccompError` when libseccomp
    /// or the kernel refuses the filter.
    fn install_seccomp(&self, py: Python<'_>) -> PyResult<()> {
        self.seccomp_filter(py)?
            .install()
            .map_err(|e| seccomp_error(py, e))
    }

    /// One line: mode and each rule's action, matcher and name.
    fn summary(&self) -> String {
        self.inner.summary()
    }

    fn __len__(&self) -> usize {
        self.inner.rules.len()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Profile>()
            .map(|o| o.borrow().inner == self.inner)
            .unwrap_or(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "Profile(name={:?}, mode={:?}, rules={})",
            self.inner.name,
            mode_str(self.inner.mode),
            self.inner.rules.len()
        )
    }

    fn __copy__(&self) -> Self {
        self.clone()
    }
}

/// The library's seccomp error as a Python `SeccompError`.
fn seccomp_error(py: Python<'_>, e: minerguard::SeccompError) -> PyErr {
    to_py(py, minerguard::Error::from(e))
}

/// Parses JSON text with Python's `json` module.
pub fn json_to_py<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}
