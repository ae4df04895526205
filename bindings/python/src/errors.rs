//! One Python exception class per error kind, all subclasses of
//! `minerguard.Error`, and the conversion from the library's errors.

use pyo3::{create_exception, exceptions::PyException, prelude::*};

create_exception!(
    minerguard,
    Error,
    PyException,
    "Base class of every minerguard error."
);
create_exception!(
    minerguard,
    ProfileError,
    Error,
    "A profile could not be read, parsed or validated. `.diagnostics` lists every problem; `.field`, `.line`, `.column` and `.message` are those of the first."
);
create_exception!(
    minerguard,
    LoadError,
    Error,
    "A BPF object could not be loaded, or the kernel lacks a feature the backend needs."
);
create_exception!(
    minerguard,
    AttachError,
    Error,
    "A program could not be attached, or a BPF map could not be written (e.g. full)."
);
create_exception!(
    minerguard,
    ScopeError,
    Error,
    "A scope or policy handle was invalid (already applied, unknown handle, too deep, ...)."
);
create_exception!(
    minerguard,
    CgroupError,
    Error,
    "A cgroup could not be found, created or used."
);

create_exception!(
    minerguard,
    SeccompError,
    Error,
    "A seccomp filter could not be built, exported or installed (libseccomp or the kernel refused it, or the export format cannot express an action)."
);

create_exception!(
    minerguard,
    PinError,
    Error,
    "Pinned state (an enforcer instance under /sys/fs/bpf/minerguard) could not be used: a bad name, an instance another process holds, or a bpffs failure."
);

/// One problem in a profile: field path, 1-based line and column where the
/// format gives them, and what is wrong.
#[pyclass(module = "minerguard", name = "Diagnostic", frozen, get_all, eq)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Field path, e.g. `rules[0].connect.ports[0]` (empty for file errors).
    pub field: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

#[pymethods]
impl Diagnostic {
    fn __repr__(&self) -> String {
        format!(
            "Diagnostic(field={:?}, line={}, column={}, message={:?})",
            self.field,
            opt(self.line),
            opt(self.column),
            self.message
        )
    }

    fn __str__(&self) -> String {
        minerguard::error::Diagnostic::from(self.clone()).to_string()
    }
}

fn opt(v: Option<usize>) -> String {
    v.map_or_else(|| "None".into(), |v| v.to_string())
}

impl From<minerguard::error::Diagnostic> for Diagnostic {
    fn from(d: minerguard::error::Diagnostic) -> Self {
        Diagnostic {
            field: d.field,
            line: d.line,
            column: d.column,
            message: d.message,
        }
    }
}

impl From<Diagnostic> for minerguard::error::Diagnostic {
    fn from(d: Diagnostic) -> Self {
        minerguard::error::Diagnostic {
            file: None,
            field: d.field,
            line: d.line,
            column: d.column,
            message: d.message,
        }
    }
}

/// Registers the exception classes and `Diagnostic` on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("ProfileError", py.get_type::<ProfileError>())?;
    m.add("LoadError", py.get_type::<LoadError>())?;
    m.add("AttachError", py.get_type::<AttachError>())?;
    m.add("ScopeError", py.get_type::<ScopeError>())?;
    m.add("CgroupError", py.get_type::<CgroupError>())?;
    m.add("SeccompError", py.get_type::<SeccompError>())?;
    m.add("PinError", py.get_type::<PinError>())?;
    m.add_class::<Diagnostic>()?;
    Ok(())
}

/// A `ProfileError` carrying `diagnostics` and the first one's fields.
pub fn profile_error(
    py: Python<'_>,
    message: String,
    diagnostics: Vec<minerguard::error::Diagnostic>,
) -> PyErr {
    let err = ProfileError::new_err(message);
    if let Err(e) = decorate(py, &err, diagnostics) {
        return e;
    }
    err
}

fn decorate(
    py: Python<'_>,
    err: &PyErr,
    diagnostics: Vec<minerguard::error::Diagnostic>,
) -> PyResult<()> {
    let value = err.value(py);
    let first = diagnostics.first().cloned();
    value.setattr("field", first.as_ref().map(|d| d.field.clone()))?;
    value.setattr("line", first.as_ref().and_then(|d| d.line))?;
    value.setattr("column", first.as_ref().and_then(|d| d.column))?;
    value.setattr("message", first.as_ref().map(|d| d.message.clone()))?;
    let list = diagnostics
        .into_iter()
        .map(|d| Py::new(py, Diagnostic::from(d)))
        .collect::<PyResult<Vec<_>>>()?;
    value.setattr("diagnostics", list)?;
    Ok(())
}

/// The library's profile error as a Python `ProfileError`.
pub fn from_profile_error(py: Python<'_>, e: &minerguard::profile::ProfileError) -> PyErr {
    profile_error(py, e.to_string(), e.diagnostics())
}

/// The library's error as the Python exception of its kind.
pub fn to_py(py: Python<'_>, e: minerguard::Error) -> PyErr {
    use minerguard::Error as E;
    match &e {
        E::Profile(p) => from_profile_error(py, p),
        E::Load(_) => LoadError::new_err(e.to_string()),
        E::Attach(_) => AttachError::new_err(e.to_string()),
        E::Scope(_) => ScopeError::new_err(e.to_string()),
        E::Cgroup(_) => CgroupError::new_err(e.to_string()),
        E::Seccomp(_) => SeccompError::new_err(e.to_string()),
        E::Pin(_) => PinError::new_err(e.to_string()),
    }
}
