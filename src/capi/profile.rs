//! Profiles from C: parsed from YAML/JSON text or a file, or built rule by
//! rule; validated with every problem reported.

use std::{ffi::c_char, sync::Mutex};

use super::{
    handles::{lock, Registry},
    result::{guard, mg_result, Failure},
    strings::{copy_str, path_arg, slice_arg, utf8_arg, utf8_text, write_out},
};
use crate::profile::{Action, Mode, Profile, Rule};

/// A security profile (opaque). Create with `mg_profile_new()` or
/// `mg_profile_from_*()`, free with `mg_profile_free()`.
pub struct mg_profile {
    _opaque: [u8; 0],
}

/// What a rule does when it matches.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mg_action {
    /// Allow, and report.
    MG_ACTION_AUDIT = 0,
    /// The syscall fails with EPERM (exec on the cgroup backend: killed).
    MG_ACTION_DENY = 1,
    /// Deny and SIGKILL the task.
    MG_ACTION_KILL = 2,
    /// Kill, and SIGKILL every process of the cgroup the task was in (its
    /// container; under `minerguard run`, the run's cgroup). Not on seccomp
    /// rules.
    MG_ACTION_KILL_CONTAINER = 3,
}

/// Profile-wide mode.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mg_mode {
    /// Rules act as written.
    MG_MODE_ENFORCE = 0,
    /// Every deny/kill is carried out as audit (dry run).
    MG_MODE_AUDIT = 1,
}

impl From<Action> for mg_action {
    fn from(a: Action) -> Self {
        match a {
            Action::Audit => mg_action::MG_ACTION_AUDIT,
            Action::Deny => mg_action::MG_ACTION_DENY,
            Action::Kill => mg_action::MG_ACTION_KILL,
            Action::KillContainer => mg_action::MG_ACTION_KILL_CONTAINER,
        }
    }
}

pub(crate) fn action_arg(value: u32) -> Result<Action, Failure> {
    match value {
        0 => Ok(Action::Audit),
        1 => Ok(Action::Deny),
        2 => Ok(Action::Kill),
        3 => Ok(Action::KillContainer),
        v => Err(Failure::invalid(format!(
            "action {v} is not an MG_ACTION_* value (0 audit, 1 deny, 2 kill, 3 kill-container)"
        ))),
    }
}

pub(crate) static PROFILES: Registry<Mutex<Profile>> = Registry::new("mg_profile");

/// Runs `f` on the profile behind `profile`.
pub(crate) fn with_profile<R>(
    profile: *const mg_profile,
    f: impl FnOnce(&mut Profile) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let shared = PROFILES.get(profile, "profile")?;
    let mut p = lock(&shared, "profile")?;
    f(&mut p)
}

pub(crate) unsafe fn emit(
    out: *mut *mut mg_profile,
    parse: impl FnOnce() -> Result<Profile, Failure>,
) -> mg_result {
    guard(|| {
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        // SAFETY: checked non-NULL; writable per the caller's contract.
        unsafe { out.write(std::ptr::null_mut()) };
        let profile = parse()?;
        // SAFETY: as above.
        unsafe { out.write(PROFILES.insert(Mutex::new(profile))) };
        Ok(())
    })
}

/// Parses and validates a profile from YAML or JSON text of `len` bytes (no
/// NUL needed). `extends` paths are relative to the current directory.
///
/// On success `*out` is a new profile; on failure it is NULL and, for
/// `MG_ERR_PROFILE`, every problem is available through
/// `mg_last_error_diagnostic()`.
///
/// # Safety
/// `text` must point to `len` readable bytes; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_profile_from_text(
    text: *const c_char,
    len: usize,
    out: *mut *mut mg_profile,
) -> mg_result {
    // SAFETY: forwarded contract.
    unsafe {
        emit(out, || {
            let text = utf8_text(text, len, "text")?;
            Ok(Profile::from_yaml(text)?)
        })
    }
}

/// Reads, parses and validates a profile file (YAML or JSON); `extends`
/// paths are relative to the file.
///
/// # Safety
/// `path` must be a NUL-terminated string; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_profile_from_file(
    path: *const c_char,
    out: *mut *mut mg_profile,
) -> mg_result {
    // SAFETY: forwarded contract.
    unsafe {
        emit(out, || {
            let path = path_arg(path, "path")?;
            Ok(Profile::from_file(path)?)
        })
    }
}

/// A bundled profile by name (`default`, `container-strict`, `audit`).
///
/// # Safety
/// `name` must be a NUL-terminated string; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_profile_bundled(
    name: *const c_char,
    out: *mut *mut mg_profile,
) -> mg_result {
    // SAFETY: forwarded contract.
    unsafe {
        emit(out, || {
            let name = utf8_arg(name, "name")?;
            Profile::bundled(name).ok_or_else(|| {
                Failure::invalid(format!(
                    "no bundled profile `{name}` (bundled: {})",
                    Profile::bundled_names().join(", ")
                ))
            })
        })
    }
}

/// An empty profile in enforce mode, to fill with `mg_profile_add_*()`.
///
/// # Safety
/// `name` must be a NUL-terminated string; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_profile_new(
    name: *const c_char,
    out: *mut *mut mg_profile,
) -> mg_result {
    // SAFETY: forwarded contract.
    unsafe { emit(out, || Ok(Profile::new(utf8_arg(name, "name")?))) }
}

/// Sets the profile's mode (`MG_MODE_ENFORCE` or `MG_MODE_AUDIT`).
#[no_mangle]
pub extern "C" fn mg_profile_set_mode(profile: *mut mg_profile, mode: u32) -> mg_result {
    guard(|| {
        let mode = match mode {
            0 => Mode::Enforce,
            1 => Mode::Audit,
            v => {
                return Err(Failure::invalid(format!(
                    "mode {v} is not an MG_MODE_* value (0 enforce, 1 audit)"
                )))
            }
        };
        with_profile(profile, |p| {
            p.mode = mode;
            Ok(())
        })
    })
}

fn push(profile: *mut mg_profile, rule: Rule) -> Result<(), Failure> {
    with_profile(profile, |p| {
        p.rules.push(rule);
        Ok(())
    })
}

/// Reads `count` NUL-terminated UTF-8 strings.
///
/// # Safety
/// `items` points to `count` readable string pointers (or is NULL when 0).
unsafe fn string_list(
    items: *const *const c_char,
    count: usize,
    what: &str,
) -> Result<Vec<String>, Failure> {
    // SAFETY: forwarded contract.
    let ptrs = unsafe { slice_arg(items, count, what)? };
    ptrs.iter()
        .enumerate()
        // SAFETY: each element is a NUL-terminated string per the contract.
        .map(|(i, p)| unsafe { utf8_arg(*p, &format!("{what}[{i}]")) }.map(str::to_string))
        .collect()
}

/// Adds an `exec.names` rule: exec of files with these basenames.
///
/// The rule is checked when the profile is validated or applied, not here.
///
/// # Safety
/// `rule_name` must be a NUL-terminated string; `names` must point to `count`
/// NUL-terminated strings (it may be NULL when `count` is 0).
#[no_mangle]
pub unsafe extern "C" fn mg_profile_add_exec_names(
    profile: *mut mg_profile,
    rule_name: *const c_char,
    action: u32,
    names: *const *const c_char,
    count: usize,
) -> mg_result {
    guard(|| {
        // SAFETY: forwarded contract.
        let rule_name = unsafe { utf8_arg(rule_name, "rule_name")? };
        let action = action_arg(action)?;
        // SAFETY: forwarded contract.
        let names = unsafe { string_list(names, count, "names")? };
        push(profile, Rule::exec_names(rule_name, action, names))
    })
}

/// Adds a `connect.ports` rule: TCP connects and UDP sends to these
/// destination ports.
///
/// # Safety
/// `rule_name` must be a NUL-terminated string; `ports` must point to `count`
/// values (it may be NULL when `count` is 0).
#[no_mangle]
pub unsafe extern "C" fn mg_profile_add_connect_ports(
    profile: *mut mg_profile,
    rule_name: *const c_char,
    action: u32,
    ports: *const u16,
    count: usize,
) -> mg_result {
    guard(|| {
        // SAFETY: forwarded contract.
        let rule_name = unsafe { utf8_arg(rule_name, "rule_name")? };
        let action = action_arg(action)?;
        // SAFETY: forwarded contract.
        let ports = unsafe { slice_arg(ports, count, "ports")? };
        push(
            profile,
            Rule::connect_ports(rule_name, action, ports.iter().copied()),
        )
    })
}

/// Adds a `connect.cidrs` rule: connections into these IPv4/IPv6 networks
/// (`"10.0.0.0/8"`, `"2001:db8::/32"`).
///
/// # Safety
/// As for `mg_profile_add_exec_names()`.
#[no_mangle]
pub unsafe extern "C" fn mg_profile_add_connect_cidrs(
    profile: *mut mg_profile,
    rule_name: *const c_char,
    action: u32,
    cidrs: *const *const c_char,
    count: usize,
) -> mg_result {
    guard(|| {
        // SAFETY: forwarded contract.
        let rule_name = unsafe { utf8_arg(rule_name, "rule_name")? };
        let action = action_arg(action)?;
        // SAFETY: forwarded contract.
        let cidrs = unsafe { string_list(cidrs, count, "cidrs")? };
        push(profile, Rule::connect_cidrs(rule_name, action, cidrs))
    })
}

/// Adds one rule given as JSON, in the profile language's shape, e.g.
/// `{"name":"pool","action":"deny","connect":{"ports":[3333]}}`. Any matcher
/// kind the library knows works here, so new kinds need no new C function.
///
/// # Safety
/// `json` must be a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn mg_profile_add_rule_json(
    profile: *mut mg_profile,
    json: *const c_char,
) -> mg_result {
    guard(|| {
        // SAFETY: forwarded contract.
        let json = unsafe { utf8_arg(json, "json")? };
        let index = with_profile(profile, |p| Ok(p.rules.len()))?;
        let rule: Rule = serde_json::from_str(json).map_err(|e| {
            let mut f = Failure::new(
                super::result::mg_result::MG_ERR_PROFILE,
                format!("rule JSON (would be rules[{index}]): {e}"),
            );
            f.diagnostics.push(crate::error::Diagnostic {
                file: None,
                field: format!("rules[{index}]"),
                line: Some(e.line()),
                column: Some(e.column()),
                message: e.to_string(),
            });
            f
        })?;
        push(profile, rule)
    })
}

/// Checks the whole profile. Returns `MG_OK`, or `MG_ERR_PROFILE` with every
/// problem: `mg_last_error()` joins them one per line, and
/// `mg_last_error_diagnostic()` gives each one's field path and message.
#[no_mangle]
pub extern "C" fn mg_profile_validate(profile: *const mg_profile) -> mg_result {
    guard(|| with_profile(profile, |p| p.validate().map(|_| ()).map_err(Into::into)))
}

/// The profile as JSON (NUL-terminated) in `buf` of `len` bytes; `needed`
/// (may be NULL) receives the size required.
///
/// # Safety
/// `buf` must point to `len` writable bytes (or be NULL with `len == 0`);
/// `needed` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mg_profile_to_json(
    profile: *const mg_profile,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> mg_result {
    guard(|| {
        let json = with_profile(profile, |p| Ok(p.to_json()))?;
        // SAFETY: forwarded contract.
        unsafe { copy_str(&json, buf, len, needed) }
    })
}

/// The number of rules in the profile.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_profile_rule_count(
    profile: *const mg_profile,
    out: *mut usize,
) -> mg_result {
    guard(|| {
        let n = with_profile(profile, |p| Ok(p.rules.len()))?;
        // SAFETY: forwarded contract.
        unsafe { write_out(out, n, "out") }
    })
}

/// Frees a profile. NULL is a no-op; a handle freed already (or never
/// created) returns `MG_ERR_INVALID_HANDLE` and changes nothing. Policies
/// applied from the profile stay applied: the enforcer keeps its own copy.
#[no_mangle]
pub extern "C" fn mg_profile_free(profile: *mut mg_profile) -> mg_result {
    guard(|| PROFILES.remove(profile, "profile"))
}
