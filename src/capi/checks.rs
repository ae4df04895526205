//! C API: learn mode, the event-path self-test, and whether the optional
//! checks (loader exec, TCP Fast Open, Stratum in the lsm hook or in the
//! sk_msg program, the tuning counter) are active,
//! and the sockets released from the Stratum send path.

use std::{ffi::c_char, time::Duration};

use super::{
    enforcer::{mg_enforcer, policy_handle, with_enforcer},
    profile::{action_arg, emit, mg_profile},
    result::{guard, mg_result, Failure},
    strings::{copy_str, path_arg, utf8_arg, write_out},
};
use crate::Scope;

/// The optional checks `mg_enforcer_check_status()` reports on. Each is
/// loaded with the first profile whose rules need it (until then it is
/// reported inactive, with that as the reason): ask after applying.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mg_check {
    /// Executable mappings of refused files (`ld.so ./xmrig`).
    MG_CHECK_LOADER_EXEC = 1,
    /// Stratum in the payload of a TCP Fast Open SYN.
    MG_CHECK_FAST_OPEN = 2,
    /// Stratum judged by the lsm backend's socket_sendmsg hook (refused
    /// sends fail with EPERM; otherwise the sk_msg program's EACCES).
    MG_CHECK_LSM_STRATUM = 3,
    /// Stratum judged by the sk_msg program, with sockops tracking each new
    /// client socket of a stratum scope (the cgroup backend with the sk-msg
    /// judge; the lsm backend only where its hook could not be attached).
    MG_CHECK_STRATUM_SK_MSG = 4,
    /// The count of attempts to tune the host (opens for writing of
    /// `nr_hugepages`, MSR devices, the msr module's `allow_writes`,
    /// `nmi_watchdog`) that the behaviour detector's tuning signal reads
    /// (`mg_behaviour_detector_count_tuning()`); loaded with the first
    /// profile whose `behaviour` rule counts tuning (`count_tuning`).
    MG_CHECK_TUNING = 5,
    /// The egress judge behind the lsm backend's socket_sendmsg hook,
    /// reading what the kernel copied and sends (a buffer rewritten after
    /// the hook read it); not needed where the sk_msg verdict or the
    /// egress judge reads the kernel's copy itself.
    MG_CHECK_STRATUM_BACKSTOP = 6,
}

/// Whether optional check `check` (an `MG_CHECK_*` value) is active:
/// `*out_active` receives 1 or 0, and `why` (may be NULL with `len == 0`)
/// the reason it is not (an empty string when it is); `needed` (may be
/// NULL) receives the size required. A check is loaded with the first
/// profile whose rules need it (a stratum rule; exec rules that judge
/// files): before one is applied it is inactive, "not loaded yet".
///
/// # Safety
/// `out_active` must be writable; `why` must point to `len` writable bytes
/// (or be NULL with `len == 0`); `needed` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_check_status(
    enforcer: *const mg_enforcer,
    check: u32,
    out_active: *mut u32,
    why: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> mg_result {
    guard(|| {
        let status = with_enforcer(enforcer, |e| {
            Ok(match check {
                1 => e.loader_exec(),
                2 => e.fast_open(),
                3 => e.lsm_stratum(),
                4 => e.stratum_sk_msg(),
                5 => e.tuning(),
                6 => e.stratum_backstop(),
                other => {
                    return Err(Failure::invalid(format!(
                        "check {other} is not an MG_CHECK_* value (1 loader exec, 2 fast open, 3 lsm stratum, 4 stratum sk_msg, 5 tuning, 6 stratum backstop)"
                    )))
                }
            })
        })?;
        // SAFETY: forwarded contract.
        unsafe { write_out(out_active, u32::from(status.is_ok()), "out_active")? };
        // SAFETY: forwarded contract.
        unsafe { copy_str(status.err().as_deref().unwrap_or(""), why, len, needed) }
    })
}

/// `*out_count` receives how many TCP sockets whose first bytes were judged
/// clean have left the Stratum send path (see
/// `Enforcer::released_sockets`).
///
/// # Safety
/// `out_count` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_released_sockets(
    enforcer: *const mg_enforcer,
    out_count: *mut u64,
) -> mg_result {
    guard(|| {
        let n = with_enforcer(enforcer, |e| Ok(e.released_sockets()))?;
        // SAFETY: forwarded contract.
        unsafe { write_out(out_count, n, "out_count") }
    })
}

/// `*out_destroyed` and `*out_not_destroyed` receive how many TCP sockets
/// the egress Stratum judge refused and destroyed, and how many it could
/// not destroy (closed first, or a kernel without
/// `CONFIG_INET_DIAG_DESTROY`: their packets are dropped while the judge is
/// attached). Both 0 on other judges (see `Enforcer::destroyed_sockets`).
///
/// # Safety
/// `out_destroyed` and `out_not_destroyed` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_destroyed_sockets(
    enforcer: *const mg_enforcer,
    out_destroyed: *mut u64,
    out_not_destroyed: *mut u64,
) -> mg_result {
    guard(|| {
        if out_not_destroyed.is_null() {
            return Err(Failure::null("out_not_destroyed"));
        }
        let (destroyed, not_destroyed) = with_enforcer(enforcer, |e| Ok(e.destroyed_sockets()))?;
        // SAFETY: forwarded contract.
        unsafe { write_out(out_destroyed, destroyed, "out_destroyed")? };
        // SAFETY: checked non-NULL; writable per the caller's contract.
        unsafe { out_not_destroyed.write(not_destroyed) };
        Ok(())
    })
}

/// `*out_errno` receives the errno a send refused by a `stratum` rule fails
/// with: EPERM (the lsm hook), EACCES (the sk_msg judge) or ECONNABORTED
/// (the egress judge: the refused send succeeds, the socket is destroyed
/// and the sender's next call fails). Final once a profile with a stratum
/// rule is applied (see `Enforcer::stratum_errno`).
///
/// # Safety
/// `out_errno` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_stratum_errno(
    enforcer: *const mg_enforcer,
    out_errno: *mut i32,
) -> mg_result {
    guard(|| {
        let errno = with_enforcer(enforcer, |e| Ok(e.stratum_errno()))?;
        // SAFETY: forwarded contract.
        unsafe { write_out(out_errno, errno, "out_errno") }
    })
}

/// Has the kernel write `count` audit events for the handle's first rule
/// (exec events naming `minerguard-self-test`) into the event stream, to
/// check that events reach their consumer; `*out_written` receives how many
/// the ring buffer took. Nothing is enforced or refused by it.
///
/// # Safety
/// `out_written` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_self_test_events(
    enforcer: *const mg_enforcer,
    handle: u64,
    count: u32,
    out_written: *mut u32,
) -> mg_result {
    guard(|| {
        let written = with_enforcer(enforcer, |e| {
            let h = policy_handle(e, handle)?;
            Ok(e.self_test_events(h, count)?)
        })?;
        // SAFETY: forwarded contract.
        unsafe { write_out(out_written, written, "out_written") }
    })
}

/// Learn mode: records what the cgroup at `cgroup_path` executes for
/// `duration_ms` (nothing is refused meanwhile; the enforcer is busy and
/// its event stream is read by this call until then), and creates in `*out`
/// a profile named `name` whose one rule, `allow-learned`, allows exactly
/// what ran and gives everything else `action` (an `MG_ACTION_*` value).
/// Free it with `mg_profile_free()`. `MG_ERR_TIMEOUT` when nothing ran.
///
/// # Safety
/// `cgroup_path` and `name` must be NUL-terminated strings; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_learn(
    enforcer: *mut mg_enforcer,
    cgroup_path: *const c_char,
    duration_ms: u64,
    name: *const c_char,
    action: u32,
    out: *mut *mut mg_profile,
) -> mg_result {
    let learn = || {
        // SAFETY: forwarded contract.
        let path = unsafe { path_arg(cgroup_path, "cgroup_path")? }.to_path_buf();
        // SAFETY: forwarded contract.
        let name = unsafe { utf8_arg(name, "name")? }.to_owned();
        let action = action_arg(action)?;
        if duration_ms == 0 {
            return Err(Failure::invalid("duration_ms: must be above zero"));
        }
        let learner = with_enforcer(enforcer, |e| {
            Ok(e.learn(
                Scope::Cgroup(path),
                Duration::from_millis(duration_ms),
                |_| {},
            )?)
        })?;
        if learner.learned().next().is_none() {
            return Err(Failure::new(
                mg_result::MG_ERR_TIMEOUT,
                "nothing was executed in the cgroup while learning; no profile made",
            ));
        }
        Ok(learner.allow_only_profile(&name, action))
    };
    // SAFETY: forwarded contract.
    unsafe { emit(out, learn) }
}
