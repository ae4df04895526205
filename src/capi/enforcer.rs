//! The enforcer from C: load a backend, apply profiles to scopes, update,
//! remove, and read drop counters.

use std::{
    ffi::c_char,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Mutex,
};

use super::{
    handles::{lock, Registry},
    profile::{mg_profile, with_profile},
    result::{guard, mg_result, Failure},
    strings::{copy_str, path_arg, utf8_arg, write_out},
};
use crate::{
    cgroup::cgroup2_mount,
    error::{CgroupError, ScopeError},
    BackendChoice, BackendKind, Enforcer, EnforcerOptions, PolicyHandle, Scope,
};

/// A loaded backend enforcing profiles on scopes (opaque). Create with
/// `mg_enforcer_new()`, free with `mg_enforcer_free()`.
pub struct mg_enforcer {
    _opaque: [u8; 0],
}

/// Which backend: an input of `mg_enforcer_new()`, an output of probes.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mg_backend {
    /// Input only: the strongest backend this kernel supports.
    MG_BACKEND_AUTO = 0,
    /// BPF-LSM hooks: denied syscalls fail with EPERM.
    MG_BACKEND_LSM = 1,
    /// cgroup-BPF plus an exec tracepoint (exec `deny` is carried out as a
    /// kill before the new program runs).
    MG_BACKEND_CGROUP = 2,
    /// Output only: no backend is usable on this kernel.
    MG_BACKEND_NONE = 3,
}

impl From<Option<BackendKind>> for mg_backend {
    fn from(kind: Option<BackendKind>) -> Self {
        match kind {
            Some(BackendKind::Lsm) => mg_backend::MG_BACKEND_LSM,
            Some(BackendKind::Cgroup) => mg_backend::MG_BACKEND_CGROUP,
            None => mg_backend::MG_BACKEND_NONE,
        }
    }
}

fn backend_arg(value: u32) -> Result<BackendChoice, Failure> {
    match value {
        0 => Ok(BackendChoice::Auto),
        1 => Ok(BackendChoice::Lsm),
        2 => Ok(BackendChoice::Cgroup),
        v => Err(Failure::invalid(format!(
            "backend {v} is not MG_BACKEND_AUTO (0), MG_BACKEND_LSM (1) or MG_BACKEND_CGROUP (2)"
        ))),
    }
}

/// What judges Stratum on the cgroup backend (`mg_enforcer_options`;
/// the lsm backend judges in its own hooks whatever this says).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mg_stratum_judge {
    /// The library's default: `MG_STRATUM_JUDGE_EGRESS`.
    MG_STRATUM_JUDGE_DEFAULT = 0,
    /// Packets read as they leave (`cgroup_skb/egress`): the one that
    /// completes a mining method is dropped and its socket destroyed; the
    /// send itself succeeds, the sender's next call fails with
    /// ECONNABORTED (see `mg_enforcer_destroyed_sockets()`).
    MG_STRATUM_JUDGE_EGRESS = 1,
    /// Sockets tracked in a sockhash and their sends read by sk_msg: the
    /// send that completes a mining method fails with EACCES. Costs more
    /// per connection.
    MG_STRATUM_JUDGE_SK_MSG = 2,
}

fn stratum_judge_arg(value: u32) -> Result<crate::CgroupStratumJudge, Failure> {
    match value {
        0 => Ok(crate::CgroupStratumJudge::default()),
        1 => Ok(crate::CgroupStratumJudge::Egress),
        2 => Ok(crate::CgroupStratumJudge::SkMsg),
        v => Err(Failure::invalid(format!(
            "options.stratum_judge {v} is not MG_STRATUM_JUDGE_DEFAULT (0), MG_STRATUM_JUDGE_EGRESS (1) or MG_STRATUM_JUDGE_SK_MSG (2)"
        ))),
    }
}

/// The name of an `mg_backend` value (`"auto"`, `"lsm"`, `"cgroup"`,
/// `"none"`), or `"unknown"`. A static string: never freed, never NULL.
#[no_mangle]
pub extern "C" fn mg_backend_name(backend: u32) -> *const c_char {
    match backend {
        0 => c"auto",
        1 => c"lsm",
        2 => c"cgroup",
        3 => c"none",
        _ => c"unknown",
    }
    .as_ptr()
}

/// How to build an enforcer (`mg_enforcer_new_with_options()`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_enforcer_options {
    /// An `MG_BACKEND_*` value other than `MG_BACKEND_NONE`.
    pub backend: u32,
    /// Capacity of the event queue; 0 means the default (65536). Events
    /// beyond it are dropped and counted.
    pub event_capacity: u32,
    /// Nonzero: refuse profiles with rules the backend cannot enforce
    /// (`MG_ERR_SCOPE`) instead of applying them as nothing.
    pub require_all_rules: u32,
    /// Nonzero: no syscall tracepoints (no loader-exec check on the cgroup
    /// backend, no TCP Fast Open check), sparing every syscall on the host
    /// the kernel's tracing slow path. Zero keeps both checks.
    pub no_syscall_tracepoints: u32,
    /// NULL: nothing is pinned, and `mg_enforcer_free()` ends the
    /// enforcement. Otherwise a NUL-terminated instance name (1-64 of
    /// `A-Z a-z 0-9 _ -`; another is `MG_ERR_PIN`): the enforcement is
    /// pinned as `/sys/fs/bpf/minerguard/<instance>` and stays in force
    /// when the enforcer is freed or its process dies, until
    /// `mg_enforcer_detach()` or `mg_instance_remove()`. An enforcer opened
    /// with the name of an existing instance adopts it (its maps, links,
    /// scopes and undelivered events; see `mg_enforcer_unadopted()`); one
    /// live enforcer per instance (`MG_ERR_PIN` while another holds it).
    /// Read during the call only. Zero-initialise the struct
    /// (`mg_enforcer_options o = {0};`) so fields added later are NULL/0.
    pub instance: *const c_char,
    /// An `mg_stratum_judge` value; 0 is the default (egress).
    pub stratum_judge: u32,
}

/// Live enforcers; `None` once `mg_enforcer_detach()` took the enforcer out
/// while another thread still held a reference to its slot.
pub(crate) static ENFORCERS: Registry<Mutex<Option<Enforcer>>> = Registry::new("mg_enforcer");

pub(crate) fn with_enforcer<R>(
    enforcer: *const mg_enforcer,
    f: impl FnOnce(&mut Enforcer) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let shared = ENFORCERS.get(enforcer, "enforcer")?;
    let mut e = lock(&shared, "enforcer")?;
    match e.as_mut() {
        Some(e) => f(e),
        None => Err(ENFORCERS.not_live("enforcer")),
    }
}

/// Runs `f` with the enforcer and a copy of the profile (so neither lock is
/// held while the other is taken).
fn with_both<R>(
    enforcer: *const mg_enforcer,
    profile: *const mg_profile,
    f: impl FnOnce(&mut Enforcer, &crate::Profile) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let profile = with_profile(profile, |p| Ok(p.clone()))?;
    with_enforcer(enforcer, |e| f(e, &profile))
}

/// NULLs `*out` first, so a failure never leaves the caller's old value.
unsafe fn create(
    out: *mut *mut mg_enforcer,
    options: impl FnOnce() -> Result<EnforcerOptions, Failure>,
) -> Result<(), Failure> {
    // SAFETY: forwarded contract.
    unsafe { write_out(out, std::ptr::null_mut(), "out")? };
    let enforcer = Enforcer::with_options(options()?)?;
    // SAFETY: checked writable above.
    unsafe { out.write(ENFORCERS.insert(Mutex::new(Some(enforcer)))) };
    Ok(())
}

/// Probes the kernel and loads `backend` (an `MG_BACKEND_*` value; AUTO picks
/// lsm when the kernel allows it, else cgroup). Needs root. On failure
/// `*out` is NULL.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_new(backend: u32, out: *mut *mut mg_enforcer) -> mg_result {
    guard(|| {
        let options = || {
            Ok(EnforcerOptions {
                backend: backend_arg(backend)?,
                ..Default::default()
            })
        };
        // SAFETY: forwarded contract.
        unsafe { create(out, options) }
    })
}

/// Like `mg_enforcer_new()`, with every option; `options` NULL means the
/// defaults. With `options->instance` set, the enforcement is pinned as that
/// instance, or an existing instance of that name is adopted (see
/// `mg_enforcer_options.instance`).
///
/// # Safety
/// `options` must be NULL or readable, and its `instance` NULL or a
/// NUL-terminated string; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_new_with_options(
    options: *const mg_enforcer_options,
    out: *mut *mut mg_enforcer,
) -> mg_result {
    guard(|| {
        let built = || {
            let mut built = EnforcerOptions::default();
            if !options.is_null() {
                // SAFETY: checked non-NULL; readable per the caller's contract.
                let o = unsafe { options.read() };
                built.backend = backend_arg(o.backend)?;
                if o.event_capacity > 0 {
                    built.event_capacity = o.event_capacity as usize;
                }
                built.require_all_rules = o.require_all_rules != 0;
                built.syscall_tracepoints = o.no_syscall_tracepoints == 0;
                built.cgroup_stratum_judge = stratum_judge_arg(o.stratum_judge)?;
                if !o.instance.is_null() {
                    // SAFETY: non-NULL: a NUL-terminated string per the
                    // caller's contract.
                    let name = unsafe { utf8_arg(o.instance, "options.instance")? };
                    built.instance = Some(name.to_owned());
                }
            }
            Ok(built)
        };
        // SAFETY: forwarded contract.
        unsafe { create(out, built) }
    })
}

/// Frees an enforcer. Without an instance it removes every scope it applied
/// and detaches its programs; a pinned enforcer (`options.instance`) only
/// lets go: the instance keeps enforcing, to be adopted by a later enforcer
/// of that name or ended with `mg_instance_remove()` (`mg_enforcer_detach()`
/// frees and ends it at once). NULL is a no-op; a handle freed already
/// returns `MG_ERR_INVALID_HANDLE` and changes nothing. Event receivers stay
/// valid and report `MG_ERR_CLOSED` once drained.
#[no_mangle]
pub extern "C" fn mg_enforcer_free(enforcer: *mut mg_enforcer) -> mg_result {
    guard(|| ENFORCERS.remove(enforcer, "enforcer"))
}

/// The backend the enforcer loaded (`MG_BACKEND_LSM` or `MG_BACKEND_CGROUP`).
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_backend(
    enforcer: *const mg_enforcer,
    out: *mut mg_backend,
) -> mg_result {
    guard(|| {
        let kind = with_enforcer(enforcer, |e| Ok(e.backend()))?;
        // SAFETY: forwarded contract.
        unsafe { write_out(out, Some(kind).into(), "out") }
    })
}

unsafe fn apply(
    enforcer: *const mg_enforcer,
    profile: *const mg_profile,
    scope: impl FnOnce() -> Result<Scope, Failure>,
    out_handle: *mut u64,
) -> mg_result {
    guard(|| {
        if out_handle.is_null() {
            return Err(Failure::null("out_handle"));
        }
        let scope = scope()?;
        let handle = with_both(enforcer, profile, |e, p| Ok(e.apply(p, scope)?))?;
        // SAFETY: checked non-NULL; writable per the caller's contract.
        unsafe { out_handle.write(handle.id()) };
        Ok(())
    })
}

/// Enforces `profile` on every task of the host (the cgroup v2 root).
/// `*out_handle` receives the policy handle (never 0). All or nothing: on
/// failure nothing of the profile is enforced and other scopes are untouched.
///
/// # Safety
/// `out_handle` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_apply_host(
    enforcer: *mut mg_enforcer,
    profile: *const mg_profile,
    out_handle: *mut u64,
) -> mg_result {
    // SAFETY: forwarded contract.
    unsafe { apply(enforcer, profile, || Ok(Scope::Host), out_handle) }
}

/// Enforces `profile` on a cgroup v2 subtree: the cgroup at `cgroup_path`
/// (absolute, or relative to the cgroup v2 mount; any bytes but NUL) and
/// every descendant, including ones created later. All or nothing, as for
/// `mg_enforcer_apply_host()`.
///
/// # Safety
/// `cgroup_path` must be a NUL-terminated string; `out_handle` writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_apply_cgroup(
    enforcer: *mut mg_enforcer,
    profile: *const mg_profile,
    cgroup_path: *const c_char,
    out_handle: *mut u64,
) -> mg_result {
    let scope = || {
        // SAFETY: forwarded contract.
        let path = unsafe { path_arg(cgroup_path, "cgroup_path")? };
        Ok(Scope::Cgroup(path.to_path_buf()))
    };
    // SAFETY: forwarded contract.
    unsafe { apply(enforcer, profile, scope, out_handle) }
}

/// Enforces `profile` on the cgroup v2 subtree whose kernel id (the cgroup
/// directory's inode number, as in events' `cgroup_id`) is `cgroup_id`. The
/// id is resolved to a path by walking the cgroup v2 mount.
///
/// # Safety
/// `out_handle` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_apply_cgroup_id(
    enforcer: *mut mg_enforcer,
    profile: *const mg_profile,
    cgroup_id: u64,
    out_handle: *mut u64,
) -> mg_result {
    let scope = || Ok(Scope::Cgroup(cgroup_path_of(cgroup_id)?));
    // SAFETY: forwarded contract.
    unsafe { apply(enforcer, profile, scope, out_handle) }
}

/// Finds the cgroup v2 directory with inode `id` (breadth-first).
fn cgroup_path_of(id: u64) -> Result<PathBuf, Failure> {
    let mount = cgroup2_mount().map_err(crate::Error::from)?;
    let mut queue = vec![mount.clone()];
    while let Some(dir) = queue.pop() {
        if fs::metadata(&dir).is_ok_and(|m| m.ino() == id) {
            return Ok(dir);
        }
        // Unreadable or vanished directories are skipped: cgroups come and go.
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                queue.push(entry.path());
            }
        }
    }
    Err(Failure::from(crate::Error::from(CgroupError::Io {
        action: "finding the cgroup with id",
        path: Path::new(&mount).join(format!("<id {id}>")),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })))
}

pub(crate) fn policy_handle(e: &Enforcer, id: u64) -> Result<PolicyHandle, Failure> {
    e.handles()
        .into_iter()
        .find(|h| h.id() == id)
        .ok_or_else(|| crate::Error::from(ScopeError::UnknownHandle(id)).into())
}

/// Replaces the profile of an applied scope atomically (the scope switches
/// from the old rules to the new ones in one step; on failure the old ones
/// stay in force).
#[no_mangle]
pub extern "C" fn mg_enforcer_update(
    enforcer: *mut mg_enforcer,
    handle: u64,
    profile: *const mg_profile,
) -> mg_result {
    guard(|| {
        with_both(enforcer, profile, |e, p| {
            let h = policy_handle(e, handle)?;
            Ok(e.update(h, p)?)
        })
    })
}

/// Stops enforcing on the handle's scope. An unknown or removed handle
/// returns `MG_ERR_SCOPE`.
#[no_mangle]
pub extern "C" fn mg_enforcer_remove(enforcer: *mut mg_enforcer, handle: u64) -> mg_result {
    guard(|| {
        with_enforcer(enforcer, |e| {
            let h = policy_handle(e, handle)?;
            Ok(e.remove(h)?)
        })
    })
}

/// What `mg_enforcer_follow_cgroups` found.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct mg_follow {
    /// Scopes whose cgroup was removed since the last call (each reported
    /// once; the scope stays and applies again if the cgroup comes back).
    pub gone: u32,
    /// Scopes whose path now holds a new cgroup (a restarted container),
    /// which the scope's profile now covers.
    pub recreated: u32,
}

/// Follows every cgroup scope by its path: a scope whose cgroup was removed
/// and created again at the same path is re-pointed at the new cgroup
/// (same handle). Call it often (the `minerguard watch` command does every
/// 100 ms): a new cgroup is unprotected until then, unless a scope on an
/// ancestor covers it. `out` (may be NULL) receives the counts.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_follow_cgroups(
    enforcer: *mut mg_enforcer,
    out: *mut mg_follow,
) -> mg_result {
    guard(|| {
        let changes = with_enforcer(enforcer, |e| Ok(e.follow_cgroups()?))?;
        let mut counts = mg_follow::default();
        for change in changes {
            match change {
                crate::ScopeChange::Gone { .. } => counts.gone += 1,
                crate::ScopeChange::Recreated { .. } => counts.recreated += 1,
            }
        }
        if out.is_null() {
            return Ok(());
        }
        // SAFETY: forwarded contract.
        unsafe { write_out(out, counts, "out") }
    })
}

/// Rules of the handle's profile that this backend does not enforce, one
/// `rule (matcher)` per line (an empty string when every rule is enforced),
/// copied into `buf`; `needed` (may be NULL) receives the size required.
///
/// # Safety
/// `buf` must point to `len` writable bytes (or be NULL with `len == 0`);
/// `needed` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_unenforced(
    enforcer: *const mg_enforcer,
    handle: u64,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> mg_result {
    guard(|| {
        let text = with_enforcer(enforcer, |e| {
            let h = policy_handle(e, handle)?;
            let rules = e.unenforced(h)?;
            Ok(rules
                .iter()
                .map(|r| format!("{} ({})", r.rule, r.matcher))
                .collect::<Vec<_>>()
                .join("\n"))
        })?;
        // SAFETY: forwarded contract.
        unsafe { copy_str(&text, buf, len, needed) }
    })
}

/// Events lost so far.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct mg_drops {
    /// The kernel's ring buffer was full (enforcement still happened).
    pub ring: u64,
    /// The event queue was full (nobody received fast enough).
    pub channel: u64,
}

/// Reads the enforcer's drop counters.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_enforcer_drops(
    enforcer: *const mg_enforcer,
    out: *mut mg_drops,
) -> mg_result {
    guard(|| {
        let d = with_enforcer(enforcer, |e| Ok(e.drops()))?;
        let drops = mg_drops {
            ring: d.ring,
            channel: d.channel,
        };
        // SAFETY: forwarded contract.
        unsafe { write_out(out, drops, "out") }
    })
}

/// The enforcer's event stream, for `mg_events_new()`.
pub(crate) fn event_receiver(
    enforcer: *const mg_enforcer,
) -> Result<crossbeam_channel::Receiver<crate::Event>, Failure> {
    with_enforcer(enforcer, |e| Ok(e.events()))
}
