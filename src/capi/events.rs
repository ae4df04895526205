//! Events from C: received into a caller-owned, fixed-size `mg_event`
//! (no allocation per event).

use std::{
    ffi::c_char,
    net::{IpAddr, SocketAddr},
    time::{Duration, UNIX_EPOCH},
};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use super::{
    enforcer::{event_receiver, mg_enforcer},
    handles::Registry,
    profile::mg_action,
    result::{guard, mg_result, mg_result::*, Failure},
    strings::{fill_array, write_out},
};
use crate::{compile::RuleKind, CgroupKill, Event, ProcSource, Target};

/// Size of `mg_event.comm` (the kernel's 15-byte task name plus NUL).
pub const MG_COMM_LEN: usize = 16;
/// Size of `mg_event.path` (the kernel reports up to 256 bytes, plus NUL).
pub const MG_PATH_LEN: usize = 264;
/// Size of `mg_event.rule`, `mg_event.profile` and `mg_event.pattern`.
pub const MG_NAME_LEN: usize = 128;
/// Size of `mg_event.cmdline` (a command name, a space, 256 bytes of
/// argv, NUL, rounded up).
pub const MG_CMDLINE_LEN: usize = 280;

/// Where `mg_event.ppid`, `pname` and `cmdline` come from.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mg_proc_source {
    /// Read by the BPF program from the task, at the decision.
    MG_PROC_SOURCE_KERNEL = 0,
    /// Read from /proc when the event arrived (this kernel does not let the
    /// program type read the task): best effort, the process may be gone.
    MG_PROC_SOURCE_PROC = 1,
}

/// A stream of enforcement events (opaque). Create with `mg_events_new()`,
/// free with `mg_events_free()`. Every receiver of one enforcer shares one
/// queue: each event goes to exactly one of them.
pub struct mg_events {
    _opaque: [u8; 0],
}

/// The operation an event is about.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mg_rule_kind {
    /// Program execution (`path` is set).
    MG_RULE_KIND_EXEC = 0,
    /// Outbound connection or UDP send (`family`, `ip`, `port`, `protocol`).
    MG_RULE_KIND_CONNECT = 1,
    /// The first bytes a socket sends (Stratum signatures).
    MG_RULE_KIND_STRATUM = 2,
    /// File opens.
    MG_RULE_KIND_OPEN = 3,
    /// System calls, through seccomp.
    MG_RULE_KIND_SECCOMP = 4,
    /// A task leaving its scope (`path`: the moved pid, a space, the cgroup
    /// it went to or what was refused).
    MG_RULE_KIND_SCOPE = 5,
    /// Mining behaviour (sampled; no kernel event carries it yet).
    MG_RULE_KIND_BEHAVIOUR = 6,
    /// A kind this version of the C API does not know yet.
    MG_RULE_KIND_OTHER = 255,
}

impl From<RuleKind> for mg_rule_kind {
    fn from(k: RuleKind) -> Self {
        match k {
            RuleKind::Exec => mg_rule_kind::MG_RULE_KIND_EXEC,
            RuleKind::Connect => mg_rule_kind::MG_RULE_KIND_CONNECT,
            RuleKind::Stratum => mg_rule_kind::MG_RULE_KIND_STRATUM,
            RuleKind::Open => mg_rule_kind::MG_RULE_KIND_OPEN,
            RuleKind::Seccomp => mg_rule_kind::MG_RULE_KIND_SECCOMP,
            RuleKind::Scope => mg_rule_kind::MG_RULE_KIND_SCOPE,
            RuleKind::Behaviour => mg_rule_kind::MG_RULE_KIND_BEHAVIOUR,
            #[allow(unreachable_patterns)]
            _ => mg_rule_kind::MG_RULE_KIND_OTHER,
        }
    }
}

/// One enforcement decision, filled by `mg_events_receive()`. Strings are
/// NUL-terminated UTF-8, cut on a character boundary when too long (then
/// `truncated` is true).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_event {
    /// When the kernel decided, in nanoseconds since the Unix epoch.
    pub time_unix_ns: u64,
    /// The task's own cgroup v2 id.
    pub cgroup_id: u64,
    /// Thread id of the task (the kernel's pid).
    pub pid: u32,
    /// Process id (thread group id; what `ps` shows).
    pub tgid: u32,
    /// Real uid of the task.
    pub uid: u32,
    /// What the event is about.
    pub kind: mg_rule_kind,
    /// What was done.
    pub action: mg_action,
    /// What the rule asked for (differs when the backend degrades it, e.g.
    /// exec deny carried out as kill by the cgroup backend).
    pub requested: mg_action,
    /// `AF_INET` or `AF_INET6` for connect events, 0 otherwise.
    pub family: u16,
    /// Destination port (host byte order) for connect events.
    pub port: u16,
    /// IP protocol number (6 TCP, 17 UDP) for connect and stratum events, 0
    /// otherwise.
    pub protocol: u8,
    /// Whether a string field was cut to fit.
    pub truncated: bool,
    /// Destination address in network byte order: 4 bytes for `AF_INET`
    /// (the rest zero), 16 for `AF_INET6`. v4-mapped IPv6 destinations are
    /// reported as `AF_INET`.
    pub ip: [u8; 16],
    /// Task command name.
    pub comm: [c_char; MG_COMM_LEN],
    /// Exec events: the executed file's path from the task's root. Stratum
    /// events: the signature family and the method, space-separated
    /// (`"stratum-v1 mining."`, `"xmrig-login login"`). Scope events: the
    /// moved process and where it went (`"1234 /other"`). "" otherwise.
    pub path: [c_char; MG_PATH_LEN],
    /// Name of the rule that fired.
    pub rule: [c_char; MG_NAME_LEN],
    /// Name of the profile the rule belongs to.
    pub profile: [c_char; MG_NAME_LEN],
    /// Parent's process id (0 when unknown).
    pub ppid: u32,
    /// Where `ppid`, `pname` and `cmdline` come from.
    pub proc_source: mg_proc_source,
    /// Whether argv was longer than an event carries (`cmdline` is cut).
    pub cmdline_truncated: bool,
    /// Parent's command name.
    pub pname: [c_char; MG_COMM_LEN],
    /// Falco's `proc.cmdline`: the command name, then the arguments after
    /// `argv[0]`, space-separated. Exec refused before it happens (lsm): the
    /// process that tried; judged after it happened (cgroup backend,
    /// exec.cmdline rules): the new program's.
    pub cmdline: [c_char; MG_CMDLINE_LEN],
    /// exec.cmdline events: the pattern that matched (lower case); "" for
    /// other events.
    pub pattern: [c_char; MG_NAME_LEN],
    /// `MG_ACTION_KILL_CONTAINER` events: the cgroup the task was in,
    /// whose every process was sent SIGKILL; "" when none was (then
    /// `kill_error` says why) and for other actions.
    pub killed_cgroup: [c_char; MG_PATH_LEN],
    /// `MG_ACTION_KILL_CONTAINER` events: why the task's cgroup was not
    /// killed (not found, refused, an I/O error, or an event from before
    /// the enforcer started); "" when it was, and for other actions.
    pub kill_error: [c_char; MG_PATH_LEN],
}

impl mg_event {
    fn from_event(ev: &Event) -> Self {
        let mut out = mg_event {
            time_unix_ns: ev
                .time
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos().min(u64::MAX as u128) as u64),
            cgroup_id: ev.cgroup_id,
            pid: ev.pid,
            tgid: ev.tgid,
            uid: ev.uid,
            kind: ev.target.kind().into(),
            action: ev.action.into(),
            requested: ev.requested.into(),
            family: 0,
            port: 0,
            protocol: 0,
            truncated: false,
            ip: [0; 16],
            comm: [0; MG_COMM_LEN],
            path: [0; MG_PATH_LEN],
            rule: [0; MG_NAME_LEN],
            profile: [0; MG_NAME_LEN],
            ppid: ev.ppid,
            proc_source: match ev.proc_source {
                ProcSource::Kernel => mg_proc_source::MG_PROC_SOURCE_KERNEL,
                ProcSource::Proc => mg_proc_source::MG_PROC_SOURCE_PROC,
            },
            cmdline_truncated: ev.cmdline_truncated,
            pname: [0; MG_COMM_LEN],
            cmdline: [0; MG_CMDLINE_LEN],
            pattern: [0; MG_NAME_LEN],
            killed_cgroup: [0; MG_PATH_LEN],
            kill_error: [0; MG_PATH_LEN],
        };
        let mut cut = fill_array(&mut out.comm, &ev.comm);
        cut |= fill_array(&mut out.pname, &ev.pname);
        cut |= fill_array(&mut out.cmdline, &ev.cmdline);
        if let Some(p) = &ev.pattern {
            cut |= fill_array(&mut out.pattern, p);
        }
        match &ev.cgroup_kill {
            Some(CgroupKill::Killed { cgroup, .. }) => {
                cut |= fill_array(&mut out.killed_cgroup, &cgroup.to_string_lossy())
            }
            Some(CgroupKill::NotKilled { reason, .. }) => {
                cut |= fill_array(&mut out.kill_error, reason)
            }
            None => {}
        }
        cut |= fill_array(&mut out.rule, &ev.rule);
        cut |= fill_array(&mut out.profile, &ev.profile);
        match &ev.target {
            Target::Exec { path } => cut |= fill_array(&mut out.path, path),
            Target::Connect { addr, protocol } => {
                out.port = addr.port();
                out.protocol = ip_proto(protocol);
                set_ip(&mut out, addr);
            }
            Target::Stratum {
                addr,
                protocol,
                signature,
                method,
            } => {
                out.port = addr.port();
                out.protocol = ip_proto(protocol);
                set_ip(&mut out, addr);
                let what = format!("{} {method}", signature.as_str());
                cut |= fill_array(&mut out.path, what.trim_end());
            }
            Target::ScopeEscape { moved, cgroup, .. } => {
                let what = format!("{moved} {cgroup}");
                cut |= fill_array(&mut out.path, what.trim_end());
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
        out.truncated = cut;
        out
    }
}

/// The IANA protocol number C sees.
fn ip_proto(protocol: &crate::events::Protocol) -> u8 {
    match protocol {
        crate::events::Protocol::Tcp => 6,
        crate::events::Protocol::Udp => 17,
        crate::events::Protocol::Other(n) => *n,
    }
}

fn set_ip(out: &mut mg_event, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(v4) => {
            out.family = libc::AF_INET as u16;
            out.ip[..4].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.family = libc::AF_INET6 as u16;
            out.ip = v6.octets();
        }
    }
}

static RECEIVERS: Registry<Receiver<Event>> = Registry::new("mg_events");

/// A receiver of the enforcer's events. It stays usable after the enforcer
/// is freed: queued events can still be received, then `MG_ERR_CLOSED`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mg_events_new(
    enforcer: *const mg_enforcer,
    out: *mut *mut mg_events,
) -> mg_result {
    guard(|| {
        // SAFETY: forwarded contract.
        unsafe { write_out(out, std::ptr::null_mut(), "out")? };
        let rx = event_receiver(enforcer)?;
        // SAFETY: checked writable above.
        unsafe { out.write(RECEIVERS.insert(rx)) };
        Ok(())
    })
}

fn deliver(next: Result<Event, Failure>, out: *mut mg_event) -> Result<(), Failure> {
    let ev = next?;
    // SAFETY: the callers checked `out` non-NULL; writable per their contract.
    unsafe { out.write(mg_event::from_event(&ev)) };
    Ok(())
}

fn closed() -> Failure {
    Failure::new(
        MG_ERR_CLOSED,
        "the event stream has ended: its enforcer was freed and every event was received",
    )
}

/// Waits up to `timeout_ms` milliseconds for the next event and writes it
/// to `*out`. Returns `MG_ERR_TIMEOUT` when none arrived (then `*out` is
/// unchanged) and `MG_ERR_CLOSED` when the stream has ended.
///
/// # Safety
/// `out` must point to a writable `mg_event`.
#[no_mangle]
pub unsafe extern "C" fn mg_events_receive(
    events: *const mg_events,
    timeout_ms: u32,
    out: *mut mg_event,
) -> mg_result {
    guard(|| {
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        let rx = RECEIVERS.get(events, "events")?;
        let next = rx
            .recv_timeout(Duration::from_millis(u64::from(timeout_ms)))
            .map_err(|e| match e {
                RecvTimeoutError::Timeout => {
                    Failure::new(MG_ERR_TIMEOUT, format!("no event within {timeout_ms} ms"))
                }
                RecvTimeoutError::Disconnected => closed(),
            });
        deliver(next, out)
    })
}

/// Writes the next event to `*out` if one is queued, without waiting.
/// Returns `MG_ERR_TIMEOUT` when none is (then `*out` is unchanged) and
/// `MG_ERR_CLOSED` when the stream has ended.
///
/// # Safety
/// `out` must point to a writable `mg_event`.
#[no_mangle]
pub unsafe extern "C" fn mg_events_try_receive(
    events: *const mg_events,
    out: *mut mg_event,
) -> mg_result {
    guard(|| {
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        let rx = RECEIVERS.get(events, "events")?;
        let next = rx.try_recv().map_err(|e| match e {
            TryRecvError::Empty => Failure::new(MG_ERR_TIMEOUT, "no event is queued"),
            TryRecvError::Disconnected => closed(),
        });
        deliver(next, out)
    })
}

/// Frees an event receiver. NULL is a no-op; a receiver freed already
/// returns `MG_ERR_INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn mg_events_free(events: *mut mg_events) -> mg_result {
    guard(|| RECEIVERS.remove(events, "events"))
}

#[cfg(test)]
mod tests {
    use std::{ffi::CStr, sync::Arc};

    use super::*;
    use crate::{events::InlineStr, profile::Action, CgroupKill};

    fn kill_container(cgroup_kill: CgroupKill) -> mg_event {
        mg_event::from_event(&Event {
            time: UNIX_EPOCH,
            pid: 1,
            tgid: 1,
            uid: 0,
            cgroup_id: 5,
            comm: InlineStr::from_c_bytes(b"xmrig"),
            ppid: 0,
            pname: InlineStr::from_c_bytes(b""),
            cmdline: InlineStr::from_c_bytes(b"xmrig"),
            cmdline_truncated: false,
            proc_source: ProcSource::Kernel,
            profile: Arc::from("p"),
            rule: Arc::from("r"),
            action: Action::KillContainer,
            requested: Action::KillContainer,
            target: Target::Exec {
                path: InlineStr::from_c_bytes(b"/tmp/xmrig"),
            },
            domain: None,
            pattern: None,
            cgroup_kill: Some(cgroup_kill),
        })
    }

    fn text(field: &[c_char]) -> &str {
        // SAFETY: from_event NUL-terminates every string field.
        unsafe { CStr::from_ptr(field.as_ptr()) }.to_str().unwrap()
    }

    #[test]
    fn kill_container_events_name_the_killed_cgroup_or_why_not() {
        let ev = kill_container(CgroupKill::Killed {
            cgroup: "/sys/fs/cgroup/pod/ctr".into(),
            method: crate::events::KillMethod::CgroupKill,
        });
        assert_eq!(ev.action, mg_action::MG_ACTION_KILL_CONTAINER);
        assert_eq!(ev.requested, mg_action::MG_ACTION_KILL_CONTAINER);
        assert_eq!(text(&ev.killed_cgroup), "/sys/fs/cgroup/pod/ctr");
        assert_eq!(text(&ev.kill_error), "");
        let ev = kill_container(CgroupKill::NotKilled {
            cgroup: None,
            reason: "no cgroup with id 5".into(),
        });
        assert_eq!(text(&ev.killed_cgroup), "");
        assert_eq!(text(&ev.kill_error), "no cgroup with id 5");
    }
}
