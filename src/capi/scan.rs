//! Scans from C: the processes already running in cgroups judged by a
//! profile (see `minerguard::scan`), the report kept behind a handle so
//! its JSON can be read with the usual buffer protocol without scanning
//! (and killing) again.

use std::{ffi::c_char, path::PathBuf};

use super::{
    handles::Registry,
    profile::{mg_profile, with_profile},
    result::{guard, mg_result, Failure},
    strings::{copy_str, path_arg, slice_arg, write_out},
};
use crate::scan::{ScanOptions, Scanner};

/// The result of a scan (opaque): read it with `mg_scan_report_json()`,
/// free it with `mg_scan_report_free()`.
pub struct mg_scan_report {
    _opaque: [u8; 0],
}

/// A report's JSON, made once.
static REPORTS: Registry<String> = Registry::new("mg_scan_report");

/// Scans the processes of each of the `count` cgroups (absolute paths, or
/// relative to the cgroup v2 mount) and their descendants with `profile`:
/// what an `audit` rule matches is reported, what a `deny` or `kill` rule
/// matches is killed, unless `dry_run`. The calling process is never
/// acted on. `*out` receives the report. Fails (nothing scanned) on a
/// path that is not a cgroup v2 directory (`MG_ERR_CGROUP`) or an invalid
/// profile (`MG_ERR_PROFILE`).
///
/// # Safety
/// `cgroups` must point to `count` NUL-terminated strings; `out` must be
/// writable.
#[no_mangle]
pub unsafe extern "C" fn mg_scan(
    profile: *const mg_profile,
    cgroups: *const *const c_char,
    count: usize,
    dry_run: bool,
    out: *mut *mut mg_scan_report,
) -> mg_result {
    let options = mg_scan_options {
        dry_run,
        exclude: std::ptr::null(),
        exclude_count: 0,
    };
    // SAFETY: forwarded contract; `options` lives through the call.
    unsafe { mg_scan_with(profile, cgroups, count, &options, out) }
}

/// Options of [`mg_scan_with`] and `mg_behaviour_detector_sample()`.
#[repr(C)]
pub struct mg_scan_options {
    /// Report only: nothing is killed, whatever the rules say.
    pub dry_run: bool,
    /// `exclude_count` cgroup paths (absolute, or relative to the cgroup
    /// v2 mount) left out with their descendants, e.g. containers that
    /// have a profile of their own; one that does not exist is ignored.
    /// May be NULL when `exclude_count` is 0.
    pub exclude: *const *const c_char,
    /// How many paths `exclude` holds.
    pub exclude_count: usize,
}

/// `count` cgroup paths from C, at least one.
///
/// # Safety
/// `cgroups` must point to `count` NUL-terminated strings.
unsafe fn cgroups_arg(
    cgroups: *const *const c_char,
    count: usize,
) -> Result<Vec<PathBuf>, Failure> {
    // SAFETY: forwarded contract.
    let paths = unsafe { paths_arg(cgroups, count, "cgroups")? };
    if paths.is_empty() {
        return Err(Failure::invalid("`cgroups` must name at least one cgroup"));
    }
    Ok(paths)
}

/// `count` paths from C, each named `what[i]` in errors.
///
/// # Safety
/// `items` must point to `count` NUL-terminated strings (or be NULL with
/// `count == 0`).
unsafe fn paths_arg(
    items: *const *const c_char,
    count: usize,
    what: &str,
) -> Result<Vec<PathBuf>, Failure> {
    // SAFETY: forwarded contract.
    let items = unsafe { slice_arg(items, count, what)? };
    (items.iter().enumerate())
        // SAFETY: each element is a NUL-terminated string per the contract.
        .map(|(i, p)| unsafe { path_arg(*p, &format!("{what}[{i}]")) }.map(|p| p.to_path_buf()))
        .collect()
}

/// The arguments every scan-like call takes: the cgroups, the options, and
/// an out-pointer that must not be NULL.
///
/// # Safety
/// As for [`cgroups_arg`] and [`options_arg`].
pub(crate) unsafe fn scope_args<T>(
    cgroups: *const *const c_char,
    count: usize,
    options: *const mg_scan_options,
    out: *mut T,
) -> Result<(Vec<PathBuf>, ScanOptions), Failure> {
    if out.is_null() {
        return Err(Failure::null("out"));
    }
    // SAFETY: forwarded contract.
    let paths = unsafe { cgroups_arg(cgroups, count)? };
    // SAFETY: forwarded contract.
    Ok((paths, unsafe { options_arg(options)? }))
}

/// Scan options from C; NULL is the defaults (kill, exclude nothing).
///
/// # Safety
/// `options` must be NULL or point to a valid `mg_scan_options` whose
/// `exclude` points to `exclude_count` NUL-terminated strings.
unsafe fn options_arg(options: *const mg_scan_options) -> Result<ScanOptions, Failure> {
    // SAFETY: NULL or valid per the contract.
    let Some(o) = (unsafe { options.as_ref() }) else {
        return Ok(ScanOptions::default());
    };
    Ok(ScanOptions {
        dry_run: o.dry_run,
        // SAFETY: forwarded contract.
        exclude: unsafe { paths_arg(o.exclude, o.exclude_count, "options.exclude")? },
    })
}

/// [`mg_scan`] with options: `options` (NULL for the defaults) may leave
/// cgroups out (`exclude`) besides `dry_run`.
///
/// # Safety
/// `cgroups` must point to `count` NUL-terminated strings; `options` must
/// be NULL or valid (see `mg_scan_options`); `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_scan_with(
    profile: *const mg_profile,
    cgroups: *const *const c_char,
    count: usize,
    options: *const mg_scan_options,
    out: *mut *mut mg_scan_report,
) -> mg_result {
    guard(|| {
        // SAFETY: forwarded contract.
        let (paths, options) = unsafe { scope_args(cgroups, count, options, out)? };
        let scanner = with_profile(profile, |p| Ok(Scanner::new(p)?))?;
        let report = scanner.scan(&paths, &options)?;
        let handle = REPORTS.insert(report.to_json());
        // SAFETY: checked non-NULL above; writable per the contract.
        unsafe { write_out(out, handle, "out") }
    })
}

/// Keeps `json` behind a new report handle (a behaviour sample's too).
pub(crate) fn new_report(json: String) -> *mut mg_scan_report {
    REPORTS.insert(json)
}

/// The report as JSON, copied into `buf` (`len` bytes, NUL included);
/// `needed` (may be NULL) receives the size required. An object:
/// `profile`, `scanned`, `vanished`, `elapsed_ms`, `findings` (each an
/// event in Falco's shape, `output_fields["minerguard.kind"] == "scan"`,
/// with `minerguard.outcome`: `killed`, `reported`, `dry-run`, `gone`,
/// `failed: …`) and `unjudged` (`rule`, `reason`).
///
/// # Safety
/// `buf` must point to `len` writable bytes (or be NULL with `len == 0`);
/// `needed` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mg_scan_report_json(
    report: *const mg_scan_report,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> mg_result {
    guard(|| {
        let json = REPORTS.get(report, "report")?;
        // SAFETY: forwarded contract.
        unsafe { copy_str(&json, buf, len, needed) }
    })
}

/// Frees a report; NULL is a no-op.
#[no_mangle]
pub extern "C" fn mg_scan_report_free(report: *mut mg_scan_report) -> mg_result {
    guard(|| REPORTS.remove(report, "report"))
}
