//! Pinned enforcer instances from C: open or adopt one by name
//! (`mg_enforcer_options.instance`), what an adopting enforcer has not
//! taken over yet, ending an instance, and the instances' status.

use std::ffi::c_char;

use super::{
    enforcer::{mg_enforcer, with_enforcer, ENFORCERS},
    handles::lock,
    result::{guard, mg_result, Failure},
    strings::{copy_str, utf8_arg, write_out},
};
use crate::pin;

/// The instance the enforcer is pinned as, copied into `buf`: an empty
/// string when it is not pinned. `needed` (may be NULL) receives the size
/// required, NUL included.
///
/// # Safety
/// `buf` must point to `len` writable bytes (or be NULL with `len == 0`);
/// `needed` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_instance(
    enforcer: *const mg_enforcer,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> mg_result {
    guard(|| {
        let name = with_enforcer(enforcer, |e| Ok(e.instance().unwrap_or("").to_owned()))?;
        // SAFETY: forwarded contract.
        unsafe { copy_str(&name, buf, len, needed) }
    })
}

/// The scopes an earlier enforcer of this instance enforced that this one
/// has not applied again, as a JSON array of strings (`"host"` or the
/// cgroup path), copied into `buf`; `"[]"` when there are none or the
/// enforcer is not pinned. They stay enforced until
/// `mg_enforcer_release_unadopted()`. `needed` (may be NULL) receives the
/// size required.
///
/// # Safety
/// `buf` must point to `len` writable bytes (or be NULL with `len == 0`);
/// `needed` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_unadopted(
    enforcer: *const mg_enforcer,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> mg_result {
    guard(|| {
        let scopes = with_enforcer(enforcer, |e| Ok(e.unadopted()))?;
        let json = serde_json::to_string(&scopes).expect("strings serialize");
        // SAFETY: forwarded contract.
        unsafe { copy_str(&json, buf, len, needed) }
    })
}

/// Ends what an earlier enforcer of this instance enforced and this one did
/// not take over: the scopes not applied again (`mg_enforcer_unadopted()`)
/// and the pinned links it did not adopt. Call it once every scope is
/// applied again; until then they keep enforcing, so a restart leaves no
/// gap. `*dropped_out` receives how many scopes were ended and
/// `*released_links_out` how many links were released; either may be NULL.
/// Without an instance there is nothing to end (both 0).
///
/// # Safety
/// `dropped_out` and `released_links_out` must each be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_release_unadopted(
    enforcer: *mut mg_enforcer,
    dropped_out: *mut usize,
    released_links_out: *mut usize,
) -> mg_result {
    guard(|| {
        let settled = with_enforcer(enforcer, |e| Ok(e.release_unadopted()?))?;
        if !dropped_out.is_null() {
            // SAFETY: forwarded contract.
            unsafe { write_out(dropped_out, settled.dropped.len(), "dropped_out")? };
        }
        if !released_links_out.is_null() {
            // SAFETY: forwarded contract.
            unsafe {
                write_out(
                    released_links_out,
                    settled.released_links,
                    "released_links_out",
                )?
            };
        }
        Ok(())
    })
}

/// Ends the enforcement and frees the enforcer: every scope is removed and,
/// for a pinned enforcer, the instance's links, maps and state go with it
/// (its programs detach); without an instance this is `mg_enforcer_free()`.
///
/// The handle is freed whatever this returns, except for a NULL
/// (`MG_ERR_NULL_POINTER`) or a handle that is not live
/// (`MG_ERR_INVALID_HANDLE`), which change nothing: never use it again.
/// On another failure the part of the instance not ended yet stays pinned
/// and enforcing; `mg_instances_json()` shows it and `mg_instance_remove()`
/// ends it. Calls in progress on other threads finish first; later ones
/// get `MG_ERR_INVALID_HANDLE`. Event receivers stay valid and report
/// `MG_ERR_CLOSED` once drained.
#[no_mangle]
pub extern "C" fn mg_enforcer_detach(enforcer: *mut mg_enforcer) -> mg_result {
    guard(|| {
        let shared = ENFORCERS.take(enforcer, "enforcer")?;
        // Waits for a call in progress; the slot is emptied, so a call
        // that looked the handle up before the take finds nothing.
        let taken = lock(&shared, "enforcer")?.take();
        match taken {
            Some(e) => Ok(e.detach()?),
            None => Err(ENFORCERS.not_live("enforcer")),
        }
    })
}

/// Every pinned instance, as a JSON array copied into `buf`; `needed` (may
/// be NULL) receives the size required. Each element: `name`, `pid` (the
/// process that enforced it last, or null), `alive` (whether it runs;
/// the kernel enforces either way), `backend`, `scopes` (`scope`,
/// `cgroup_id`, `present`, `profile`, `policy_id`, `since` in Unix
/// seconds), `links` (`name`, `id`, `program_id`), `maps` (a count),
/// `ring_drops` and `stratum_judge` (`unread_refused`, `untracked`,
/// `own_copies`). `"[]"` when nothing is pinned. Needs root to read bpffs.
///
/// # Safety
/// `buf` must point to `len` writable bytes (or be NULL with `len == 0`);
/// `needed` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mg_instances_json(
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> mg_result {
    guard(|| {
        let all = pin::instances().map_err(crate::Error::from)?;
        let json = serde_json::to_string(&all).map_err(|e| {
            Failure::new(
                mg_result::MG_ERR_OTHER,
                format!("serializing the instances: {e}"),
            )
        })?;
        // SAFETY: forwarded contract.
        unsafe { copy_str(&json, buf, len, needed) }
    })
}

/// Ends pinned instance `name`: its cgroup links are detached, every link
/// and map unpinned (the programs detach), and its state removed.
/// `MG_ERR_PIN` when there is no such instance, the name is not a valid
/// instance name, or a live enforcer holds it (free or detach that one
/// first).
///
/// # Safety
/// `name` must be a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn mg_instance_remove(name: *const c_char) -> mg_result {
    guard(|| {
        // SAFETY: forwarded contract.
        let name = unsafe { utf8_arg(name, "name")? };
        Ok(pin::remove(name).map_err(crate::Error::from)?)
    })
}
