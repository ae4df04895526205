//! Result codes, the per-thread last error, and the guard every `extern "C"`
//! function runs its body in (no panic crosses the FFI boundary).

use std::{
    cell::RefCell,
    ffi::{c_char, CString},
    panic::{self, AssertUnwindSafe},
};

use crate::{
    error::{Diagnostic, Error, ProfileError},
    Error as LibError,
};

/// What a minerguard C function did. Every function returns one; on anything
/// but `MG_OK`, `mg_last_error()` says why.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum mg_result {
    /// Success.
    MG_OK = 0,
    /// A required pointer argument was NULL.
    MG_ERR_NULL_POINTER = 1,
    /// A text argument was not valid UTF-8.
    MG_ERR_INVALID_UTF8 = 2,
    /// An argument was out of range (unknown enum value, bad index, ...).
    MG_ERR_INVALID_ARGUMENT = 3,
    /// The handle is not live: never created, already freed, or of another
    /// type. Detected, never undefined behaviour (see `mg_enforcer_free`).
    MG_ERR_INVALID_HANDLE = 4,
    /// The profile could not be read, parsed or validated; the diagnostics
    /// are available through `mg_last_error_diagnostic()`.
    MG_ERR_PROFILE = 5,
    /// BPF programs could not be loaded, or the kernel lacks a feature.
    MG_ERR_LOAD = 6,
    /// A program could not be attached, or a map could not be written.
    MG_ERR_ATTACH = 7,
    /// A scope or policy handle was invalid (already applied, unknown handle,
    /// too many scopes, unenforceable rules).
    MG_ERR_SCOPE = 8,
    /// A cgroup could not be found or used.
    MG_ERR_CGROUP = 9,
    /// The caller's buffer is too small; the size needed (with the NUL, for
    /// text) was written to the `needed` out-argument when it was not NULL.
    MG_ERR_BUFFER_TOO_SMALL = 10,
    /// No event arrived within the timeout (immediately, for try-receive).
    MG_ERR_TIMEOUT = 11,
    /// The event stream has ended: its enforcer was freed and every queued
    /// event has been received.
    MG_ERR_CLOSED = 12,
    /// minerguard panicked (a bug); the panic was caught at the boundary.
    MG_ERR_PANIC = 13,
    /// An error kind this version of the C API has no code for yet.
    MG_ERR_OTHER = 14,
    /// A seccomp filter could not be built, exported or installed
    /// (libseccomp or the kernel refused it, or the export format cannot
    /// express an action).
    MG_ERR_SECCOMP = 15,
    /// A pinned enforcer instance could not be used: a bad instance name,
    /// no such instance, an instance another live process holds, or a
    /// bpffs or state file failure.
    MG_ERR_PIN = 16,
}

use mg_result::*;

impl mg_result {
    /// The code's name as a static C string.
    pub(crate) fn name(self) -> &'static std::ffi::CStr {
        match self {
            MG_OK => c"MG_OK",
            MG_ERR_NULL_POINTER => c"MG_ERR_NULL_POINTER",
            MG_ERR_INVALID_UTF8 => c"MG_ERR_INVALID_UTF8",
            MG_ERR_INVALID_ARGUMENT => c"MG_ERR_INVALID_ARGUMENT",
            MG_ERR_INVALID_HANDLE => c"MG_ERR_INVALID_HANDLE",
            MG_ERR_PROFILE => c"MG_ERR_PROFILE",
            MG_ERR_LOAD => c"MG_ERR_LOAD",
            MG_ERR_ATTACH => c"MG_ERR_ATTACH",
            MG_ERR_SCOPE => c"MG_ERR_SCOPE",
            MG_ERR_CGROUP => c"MG_ERR_CGROUP",
            MG_ERR_BUFFER_TOO_SMALL => c"MG_ERR_BUFFER_TOO_SMALL",
            MG_ERR_TIMEOUT => c"MG_ERR_TIMEOUT",
            MG_ERR_CLOSED => c"MG_ERR_CLOSED",
            MG_ERR_PANIC => c"MG_ERR_PANIC",
            MG_ERR_OTHER => c"MG_ERR_OTHER",
            MG_ERR_SECCOMP => c"MG_ERR_SECCOMP",
            MG_ERR_PIN => c"MG_ERR_PIN",
        }
    }
}

/// Why a call failed: the code, the message, and a profile's diagnostics.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: mg_result,
    pub(crate) message: String,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl Failure {
    pub(crate) fn new(code: mg_result, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            diagnostics: Vec::new(),
        }
    }

    /// A NULL where `what` was required.
    pub(crate) fn null(what: &str) -> Self {
        Failure::new(MG_ERR_NULL_POINTER, format!("`{what}` must not be NULL"))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Failure::new(MG_ERR_INVALID_ARGUMENT, message)
    }
}

impl From<ProfileError> for Failure {
    fn from(e: ProfileError) -> Self {
        Failure {
            code: MG_ERR_PROFILE,
            message: e.to_string(),
            diagnostics: e.diagnostics(),
        }
    }
}

impl From<LibError> for Failure {
    fn from(e: LibError) -> Self {
        let code = match &e {
            Error::Profile(p) => {
                return Failure {
                    code: MG_ERR_PROFILE,
                    message: p.to_string(),
                    diagnostics: p.diagnostics(),
                }
            }
            Error::Load(_) => MG_ERR_LOAD,
            Error::Attach(_) => MG_ERR_ATTACH,
            Error::Scope(_) => MG_ERR_SCOPE,
            Error::Cgroup(_) => MG_ERR_CGROUP,
            Error::Seccomp(_) => MG_ERR_SECCOMP,
            Error::Pin(_) => MG_ERR_PIN,
            // Error families added later report a generic code until the C
            // API gives them their own.
            #[allow(unreachable_patterns)]
            _ => MG_ERR_OTHER,
        };
        Failure::new(code, e.to_string())
    }
}

/// A diagnostic as C strings, kept alive with the last error.
struct CDiagnostic {
    field: CString,
    message: CString,
    line: u32,
    column: u32,
}

#[derive(Default)]
struct LastError {
    code: Option<mg_result>,
    message: Option<CString>,
    diagnostics: Vec<CDiagnostic>,
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = RefCell::new(LastError::default());
}

/// C strings cannot hold NUL: show one as `\0` rather than cut the text.
fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).expect("NULs were replaced")
}

fn set_last_error(f: Failure) {
    let diagnostics = f
        .diagnostics
        .iter()
        .map(|d| CDiagnostic {
            field: c_string(&d.field),
            message: c_string(&d.message),
            line: d.line.map_or(0, |l| l as u32),
            column: d.column.map_or(0, |c| c as u32),
        })
        .collect();
    let _ = LAST_ERROR.try_with(|cell| {
        *cell.borrow_mut() = LastError {
            code: Some(f.code),
            message: Some(c_string(&f.message)),
            diagnostics,
        }
    });
}

fn clear_last_error() {
    let _ = LAST_ERROR.try_with(|cell| *cell.borrow_mut() = LastError::default());
}

/// Runs an `extern "C"` body: clears the last error, catches panics, and
/// turns a failure into its code plus the thread's last error.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> mg_result {
    clear_last_error();
    let failure = match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return MG_OK,
        Ok(Err(f)) => f,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".into());
            Failure::new(
                MG_ERR_PANIC,
                format!("minerguard panicked (a bug, please report it): {what}"),
            )
        }
    };
    let code = failure.code;
    set_last_error(failure);
    code
}

/// The message of the last failed call on this thread, or `""` after a
/// successful one. Never NULL. The pointer stays valid until the next
/// minerguard call on this thread other than the `mg_last_error*` and
/// `mg_result_name` accessors, which never change the last error.
#[no_mangle]
pub extern "C" fn mg_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|cell| {
            cell.borrow()
                .message
                .as_ref()
                .map_or(c"".as_ptr(), |m| m.as_ptr())
        })
        .unwrap_or(c"".as_ptr())
}

/// The code of the last failed call on this thread (`MG_OK` after a
/// successful one).
#[no_mangle]
pub extern "C" fn mg_last_error_code() -> mg_result {
    LAST_ERROR
        .try_with(|cell| cell.borrow().code.unwrap_or(MG_OK))
        .unwrap_or(MG_OK)
}

/// Copies the last error message (NUL-terminated) into `buf` of `len` bytes.
///
/// `needed`, when not NULL, receives the size the message needs, NUL
/// included. Returns `MG_ERR_BUFFER_TOO_SMALL` when `len` is less than that
/// (then `buf`, if `len > 0`, holds an empty string). The last error itself
/// is left unchanged, whatever this returns.
///
/// # Safety
/// `buf` must point to `len` writable bytes (or be NULL with `len == 0`);
/// `needed` must be NULL or point to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn mg_last_error_copy(
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> mg_result {
    let message = LAST_ERROR
        .try_with(|cell| {
            cell.borrow()
                .message
                .as_ref()
                .map(|m| m.to_bytes().to_vec())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    // SAFETY: the caller's contract is the one copy_bytes needs.
    match unsafe { super::strings::copy_bytes(&message, buf, len, needed) } {
        Ok(()) => MG_OK,
        Err(f) => f.code,
    }
}

/// One problem in a profile, as reported by `mg_last_error_diagnostic()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_diagnostic {
    /// Field path, e.g. `rules[0].connect.ports[0]` (may be empty).
    /// Valid as long as the `mg_last_error()` pointer.
    pub field: *const c_char,
    /// What is wrong. Valid as long as the `mg_last_error()` pointer.
    pub message: *const c_char,
    /// 1-based line in the profile text, or 0 when unknown.
    pub line: u32,
    /// 1-based column in the profile text, or 0 when unknown.
    pub column: u32,
}

/// How many profile diagnostics the last failed call left on this thread
/// (0 unless it returned `MG_ERR_PROFILE`).
#[no_mangle]
pub extern "C" fn mg_last_error_diagnostic_count() -> usize {
    LAST_ERROR
        .try_with(|cell| cell.borrow().diagnostics.len())
        .unwrap_or(0)
}

/// Reads diagnostic `index` (0-based) of the last failed call on this thread.
///
/// Returns `MG_ERR_NULL_POINTER` for a NULL `out` and `MG_ERR_INVALID_ARGUMENT`
/// for an index past the count; neither changes the last error.
///
/// # Safety
/// `out` must be NULL or point to a writable `mg_diagnostic`.
#[no_mangle]
pub unsafe extern "C" fn mg_last_error_diagnostic(
    index: usize,
    out: *mut mg_diagnostic,
) -> mg_result {
    if out.is_null() {
        return MG_ERR_NULL_POINTER;
    }
    let found = LAST_ERROR
        .try_with(|cell| {
            cell.borrow().diagnostics.get(index).map(|d| mg_diagnostic {
                field: d.field.as_ptr(),
                message: d.message.as_ptr(),
                line: d.line,
                column: d.column,
            })
        })
        .ok()
        .flatten();
    match found {
        Some(d) => {
            // SAFETY: checked non-NULL; the caller guarantees it is writable.
            unsafe { out.write(d) };
            MG_OK
        }
        None => MG_ERR_INVALID_ARGUMENT,
    }
}

/// The name of a result code (`"MG_ERR_PROFILE"`), or `"MG_UNKNOWN"` for a
/// value that is not one. A static string: never freed, never NULL.
#[no_mangle]
pub extern "C" fn mg_result_name(code: i32) -> *const c_char {
    let all = [
        MG_OK,
        MG_ERR_NULL_POINTER,
        MG_ERR_INVALID_UTF8,
        MG_ERR_INVALID_ARGUMENT,
        MG_ERR_INVALID_HANDLE,
        MG_ERR_PROFILE,
        MG_ERR_LOAD,
        MG_ERR_ATTACH,
        MG_ERR_SCOPE,
        MG_ERR_CGROUP,
        MG_ERR_BUFFER_TOO_SMALL,
        MG_ERR_TIMEOUT,
        MG_ERR_CLOSED,
        MG_ERR_PANIC,
        MG_ERR_OTHER,
        MG_ERR_SECCOMP,
        MG_ERR_PIN,
    ];
    all.iter()
        .find(|c| **c as i32 == code)
        .map_or(c"MG_UNKNOWN".as_ptr(), |c| c.name().as_ptr())
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    fn last() -> String {
        // SAFETY: mg_last_error never returns NULL.
        unsafe { CStr::from_ptr(mg_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_mg_err_panic_with_its_message() {
        let code = guard(|| panic!("boom at the boundary"));
        assert_eq!(code, MG_ERR_PANIC);
        assert_eq!(mg_last_error_code(), MG_ERR_PANIC);
        assert!(last().contains("boom at the boundary"), "{}", last());
    }

    #[test]
    fn success_clears_the_previous_error() {
        guard(|| Err(Failure::null("x")));
        assert_eq!(last(), "`x` must not be NULL");
        assert_eq!(guard(|| Ok(())), MG_OK);
        assert_eq!(last(), "");
        assert_eq!(mg_last_error_code(), MG_OK);
    }

    #[test]
    fn messages_with_nul_survive() {
        guard(|| Err(Failure::invalid("a\0b")));
        assert_eq!(last(), "a\\0b");
    }

    #[test]
    fn every_code_has_its_name() {
        for (code, name) in [
            (MG_OK, "MG_OK"),
            (MG_ERR_PANIC, "MG_ERR_PANIC"),
            (MG_ERR_OTHER, "MG_ERR_OTHER"),
            (MG_ERR_SECCOMP, "MG_ERR_SECCOMP"),
            (MG_ERR_PIN, "MG_ERR_PIN"),
        ] {
            // SAFETY: static strings.
            let got = unsafe { CStr::from_ptr(mg_result_name(code as i32)) };
            assert_eq!(got.to_str().unwrap(), name);
        }
        // Every value up to the last code has a name; the next has none.
        for value in 0..=MG_ERR_PIN as i32 {
            // SAFETY: static strings.
            let got = unsafe { CStr::from_ptr(mg_result_name(value)) };
            assert_ne!(got.to_str().unwrap(), "MG_UNKNOWN", "code {value}");
        }
        for value in [MG_ERR_PIN as i32 + 1, 999] {
            // SAFETY: static string.
            let unknown = unsafe { CStr::from_ptr(mg_result_name(value)) };
            assert_eq!(unknown.to_str().unwrap(), "MG_UNKNOWN");
        }
    }

    #[test]
    fn pin_errors_have_their_code() {
        let f = Failure::from(LibError::from(crate::pin::PinError::NotFound("x".into())));
        assert_eq!(f.code, MG_ERR_PIN);
        assert!(f.message.contains("`x`"), "{}", f.message);
    }
}
