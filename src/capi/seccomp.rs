//! Seccomp from C: the profile's `seccomp` rules as a filter installed in the
//! calling process, or exported as raw BPF or OCI `linux.seccomp` JSON.
//!
//! All three functions compile the profile's seccomp part first
//! (`SeccompPolicy::compile`): an invalid profile is `MG_ERR_PROFILE` (with
//! diagnostics), a profile without any `seccomp` rule is
//! `MG_ERR_INVALID_ARGUMENT` ("has no seccomp rule"), and a failure of
//! libseccomp or the kernel is `MG_ERR_SECCOMP`.

use std::ffi::c_char;

use super::{
    profile::{mg_profile, with_profile},
    result::{guard, mg_result, mg_result::MG_ERR_OTHER, Failure},
    strings::{copy_raw, copy_str, write_out},
};
use crate::{seccomp::oci, SeccompFilter, SeccompPolicy};

/// The profile's seccomp policy, or `None` without a seccomp rule. The
/// profile lock is released before the caller builds or installs anything.
fn policy_of(profile: *const mg_profile) -> Result<Option<SeccompPolicy>, Failure> {
    with_profile(profile, |p| Ok(SeccompPolicy::compile(p)?))
}

/// The profile's seccomp policy; no seccomp rule is `MG_ERR_INVALID_ARGUMENT`.
fn required_policy(profile: *const mg_profile) -> Result<SeccompPolicy, Failure> {
    match policy_of(profile)? {
        Some(policy) => Ok(policy),
        None => {
            let name = with_profile(profile, |p| Ok(p.name.clone()))?;
            Err(Failure::invalid(format!(
                "profile `{name}` has no seccomp rule: there is no filter to install or export"
            )))
        }
    }
}

/// Whether the profile has a seccomp filter: `*out` is true when at least
/// one rule is a `seccomp` rule. An invalid profile is `MG_ERR_PROFILE`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_profile_has_seccomp(
    profile: *const mg_profile,
    out: *mut bool,
) -> mg_result {
    guard(|| {
        let has = policy_of(profile)?.is_some();
        // SAFETY: forwarded contract.
        unsafe { write_out(out, has, "out") }
    })
}

/// Installs the profile's seccomp filter in the calling process, on every
/// thread (TSYNC), after setting `no_new_privs`. Irreversible: the filter
/// stays for the life of the process and is inherited by its children and
/// the programs they exec. Needs no privilege.
///
/// Errors: `MG_ERR_INVALID_ARGUMENT` when the profile has no seccomp rule
/// (nothing is changed), `MG_ERR_PROFILE` when it is invalid,
/// `MG_ERR_SECCOMP` when libseccomp or the kernel refuses the filter.
#[no_mangle]
pub extern "C" fn mg_profile_seccomp_install(profile: *const mg_profile) -> mg_result {
    guard(|| {
        let policy = required_policy(profile)?;
        let mut filter = SeccompFilter::new(&policy).map_err(crate::Error::from)?;
        filter.install().map_err(crate::Error::from)?;
        Ok(())
    })
}

/// The profile's seccomp filter as raw classic BPF, as `seccomp(2)` takes
/// it: an array of `struct sock_filter` (8 bytes per instruction, native
/// endian), copied into `buf` of `len` bytes. Binary: no NUL is added, and
/// `*needed` (when `needed` is not NULL) receives the exact byte count (a
/// multiple of 8). Too small a buffer is `MG_ERR_BUFFER_TOO_SMALL` and leaves
/// `buf` untouched; `buf` NULL with `len` 0 asks for the size.
///
/// Errors as for `mg_profile_seccomp_install()`.
///
/// # Safety
/// `buf` must point to `len` writable bytes (or be NULL with `len == 0`);
/// `needed` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mg_profile_seccomp_bpf(
    profile: *const mg_profile,
    buf: *mut u8,
    len: usize,
    needed: *mut usize,
) -> mg_result {
    guard(|| {
        let policy = required_policy(profile)?;
        let bpf = SeccompFilter::new(&policy)
            .and_then(|f| f.to_bpf())
            .map_err(crate::Error::from)?;
        // SAFETY: forwarded contract.
        unsafe { copy_raw(&bpf, buf, len, needed) }
    })
}

/// The profile's seccomp filter as the OCI runtime spec's `linux.seccomp`
/// object (what runc, crun and youki read: `defaultAction`, `architectures`,
/// `syscalls`), as pretty-printed JSON (the text `enforcer seccomp
/// --format oci` prints, without its final newline), NUL-terminated in
/// `buf` of `len` bytes; `needed` (may be NULL) receives the size required,
/// NUL included.
///
/// Errors as for `mg_profile_seccomp_install()`; a `notify` action, which
/// OCI cannot express without a listener socket, is `MG_ERR_SECCOMP`.
///
/// # Safety
/// `buf` must point to `len` writable bytes (or be NULL with `len == 0`);
/// `needed` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mg_profile_seccomp_oci_json(
    profile: *const mg_profile,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> mg_result {
    guard(|| {
        let policy = required_policy(profile)?;
        let value = oci::to_oci(&policy).map_err(crate::Error::from)?;
        let json = serde_json::to_string_pretty(&value)
            .map_err(|e| Failure::new(MG_ERR_OTHER, format!("serializing the OCI JSON: {e}")))?;
        // SAFETY: forwarded contract.
        unsafe { copy_str(&json, buf, len, needed) }
    })
}
