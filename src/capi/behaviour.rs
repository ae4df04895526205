//! The behaviour detector from C (see `minerguard::behaviour`): built from a
//! profile's `behaviour` rules, then sampled periodically by the caller
//! (every 2 s is what `minerguard watch` does); each sample is a report
//! read as JSON with `mg_scan_report_json()`.

use std::{ffi::c_char, sync::Mutex};

use super::{
    enforcer::{mg_enforcer, with_enforcer},
    handles::{lock, Registry},
    profile::{mg_profile, with_profile},
    result::{guard, mg_result, Failure},
    scan::{mg_scan_options, mg_scan_report, new_report, scope_args},
    strings::write_out,
};
use crate::behaviour::Detector;

/// A behaviour detector (opaque): it remembers each process's recent CPU
/// samples between calls. Free it with `mg_behaviour_detector_free()`.
pub struct mg_behaviour_detector {
    _opaque: [u8; 0],
}

static DETECTORS: Registry<Mutex<Detector>> = Registry::new("mg_behaviour_detector");

/// A detector of `profile`'s `behaviour` rules (a profile without any makes
/// a detector that finds nothing). Fails on an invalid profile
/// (`MG_ERR_PROFILE`).
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_behaviour_detector_new(
    profile: *const mg_profile,
    out: *mut *mut mg_behaviour_detector,
) -> mg_result {
    guard(|| {
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        let detector = with_profile(profile, |p| Ok(Detector::new(p)?))?;
        // SAFETY: checked non-NULL above; writable per the contract.
        unsafe { write_out(out, DETECTORS.insert(Mutex::new(detector)), "out") }
    })
}

/// Takes one sample of every process of the `count` cgroups (absolute, or
/// relative to the cgroup v2 mount) and their descendants, less
/// `options->exclude` (`options` may be NULL), and acts on what a rule
/// finds mining unless `options->dry_run`. A process is judged once its
/// samples span the rule's window, so call this periodically. `*out`
/// receives the report, an object: `profile`, `processes` (sampled),
/// `detections` (each an event in Falco's shape,
/// `output_fields["minerguard.kind"] == "behaviour"`, with
/// `minerguard.outcome` and the `minerguard.behaviour.*` signals) and
/// `observations` (`pid`, `comm`, `rule`, `mining`, `signals`: those that
/// fired, `values`). Fails (nothing sampled) on a path that is not a cgroup
/// v2 directory (`MG_ERR_CGROUP`).
///
/// # Safety
/// `cgroups` must point to `count` NUL-terminated strings; `options` must
/// be NULL or valid (see `mg_scan_options`); `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_behaviour_detector_sample(
    detector: *mut mg_behaviour_detector,
    cgroups: *const *const c_char,
    count: usize,
    options: *const mg_scan_options,
    out: *mut *mut mg_scan_report,
) -> mg_result {
    guard(|| {
        // SAFETY: forwarded contract.
        let (paths, options) = unsafe { scope_args(cgroups, count, options, out)? };
        let shared = DETECTORS.get(detector, "detector")?;
        let mut d = lock(&shared, "detector")?;
        let sample = d.sample(&paths, &options)?;
        let json = sample.to_json(d.profile());
        // SAFETY: checked non-NULL above; writable per the contract.
        unsafe { write_out(out, new_report(json), "out") }
    })
}

/// Makes `detector` judge with the tuning signal from now on: each busy
/// process's attempts to tune the host (opens for writing of
/// `nr_hugepages`, MSR devices, the msr module's `allow_writes`,
/// `nmi_watchdog`), as `enforcer` counts them in the scopes it enforces.
/// The counter is loaded with the first profile whose `behaviour` rule
/// counts tuning (`count_tuning`, on by default), so apply one first; before that, or where it is off (see
/// `mg_enforcer_check_status(MG_CHECK_TUNING)`), this fails with
/// `MG_ERR_INVALID_ARGUMENT` naming why, and the detector is unchanged.
/// The counts stay readable after the enforcer is freed (they then stop).
#[no_mangle]
pub extern "C" fn mg_behaviour_detector_count_tuning(
    detector: *mut mg_behaviour_detector,
    enforcer: *const mg_enforcer,
) -> mg_result {
    guard(|| {
        let counts = with_enforcer(enforcer, |e| {
            e.tuning_counts().ok_or_else(|| {
                Failure::invalid(format!(
                    "the enforcer counts no tuning attempts: {}",
                    e.tuning().err().unwrap_or_default()
                ))
            })
        })?;
        let shared = DETECTORS.get(detector, "detector")?;
        lock(&shared, "detector")?.count_tuning(counts);
        Ok(())
    })
}

/// Frees a detector; NULL is a no-op.
#[no_mangle]
pub extern "C" fn mg_behaviour_detector_free(detector: *mut mg_behaviour_detector) -> mg_result {
    guard(|| DETECTORS.remove(detector, "detector"))
}
