//! The scope guard (`scope.escape`): bpf/scope_guard.bpf.c on both backends
//! (`tp_btf/cgroup_attach_task` and `tp_btf/sched_process_fork`, killing a
//! scoped task that moves a process out of its scope) and, on the lsm
//! backend, bpf/lsm_scope_guard.bpf.c (refusing the `cgroup.procs` open,
//! `clone3(CLONE_INTO_CGROUP)` and `bpf()` on minerguard's objects first)
//! or, on the cgroup backend, bpf/clone_guard_tp.bpf.c (the
//! `sys_enter_clone3` tracepoint, killing a scoped caller that clones into
//! another cgroup before the child exists; left out with syscall
//! tracepoints switched off).
//! Host-wide but inert outside scopes whose policy has the rule; loaded
//! with the first such policy. Optional: where a kernel refuses the
//! tracepoints, `scope.escape` rules are reported as not enforced.
//!
//! The programs know which scope a process is in from task storage
//! (`mg_task_scope`), kept from forks and moves; [`seed`] puts the
//! processes already in a scope there when a policy with the rule is
//! applied.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use libbpf_rs::{
    skel::{OpenSkel, Skel, SkelBuilder},
    MapCore, MapFlags,
};

use super::{
    adopt_sockets::pids_under,
    attach::attach_object,
    load_err,
    maps::SharedMaps,
    skel::{
        clone_guard_tp::{CloneGuardTpSkel, CloneGuardTpSkelBuilder},
        lsm_scope_guard::{LsmScopeGuardSkel, LsmScopeGuardSkelBuilder},
        reuse_shared_maps,
        scope_guard::{ScopeGuardSkel, ScopeGuardSkelBuilder},
        Owned,
    },
};
use crate::{
    cgroup::CgroupRef,
    error::{AttachError, Error},
};

/// The loaded and attached scope-guard programs.
pub(crate) struct ScopeGuardHook {
    /// The links of every program below (before the programs).
    _links: Vec<crate::pin::HeldLink>,
    _tracepoints: Owned<ScopeGuardSkel<'static>>,
    /// What refuses escapes before they happen, or why nothing does.
    before: Result<Before, String>,
}

/// An object's links and the object.
type Loaded<S> = (Vec<crate::pin::HeldLink>, Owned<S>);

/// The programs that stop an escape before it happens.
enum Before {
    /// lsm: the cgroup.procs open, the clone, bpf().
    Lsm(#[allow(dead_code)] Owned<LsmScopeGuardSkel<'static>>),
    /// cgroup backend: the clone only (the move itself has no hook).
    Clone(#[allow(dead_code)] Owned<CloneGuardTpSkel<'static>>),
}

impl ScopeGuardHook {
    /// Loads and attaches the tracepoints and, with `lsm`, the LSM hooks,
    /// else (with `syscall_tracepoints`) the clone3 tracepoint: optional on
    /// top; where they fail, [`ScopeGuardHook::refused_after`] says why and
    /// escapes are still killed.
    pub fn load(maps: &SharedMaps, lsm: bool, syscall_tracepoints: bool) -> Result<Self, Error> {
        let skel = Owned::build(|storage| {
            let mut open = ScopeGuardSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("scope_guard"))?;
        let mut links = attach_object(
            maps.pins(),
            skel.object(),
            "tp_btf/cgroup_attach_task, tp_btf/sched_process_fork",
        )?;
        let before = if lsm {
            Self::load_lsm(maps).map(|(l, s)| (l, Before::Lsm(s)))
        } else if syscall_tracepoints {
            Self::load_clone(maps).map(|(l, s)| (l, Before::Clone(s)))
        } else {
            Err(super::TRACEPOINTS_OFF.into())
        };
        let before = before.map(|(more, before)| {
            links.extend(more);
            before
        });
        Ok(ScopeGuardHook {
            _links: links,
            _tracepoints: skel,
            before,
        })
    }

    fn load_clone(maps: &SharedMaps) -> Result<Loaded<CloneGuardTpSkel<'static>>, String> {
        super::tracefs::ensure_mounted().map_err(|e| e.to_string())?;
        let skel = Owned::build(|storage| {
            let mut open = CloneGuardTpSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(|e| format!("loading clone_guard_tp: {e}"))?;
        let links = attach_object(
            maps.pins(),
            skel.object(),
            "tracepoint/syscalls/sys_enter_clone3",
        )
        .map_err(|e| e.to_string())?;
        Ok((links, skel))
    }

    fn load_lsm(maps: &SharedMaps) -> Result<Loaded<LsmScopeGuardSkel<'static>>, String> {
        let skel = Owned::build(|storage| {
            let mut open = LsmScopeGuardSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(|e| format!("loading lsm_scope_guard: {e}"))?;
        let links = attach_object(maps.pins(), skel.object(), "lsm_scope_guard")
            .map_err(|e| e.to_string())?;
        Ok((links, skel))
    }

    /// What is only killed after the fact rather than stopped before, and
    /// why; `None` when everything is stopped before (lsm).
    pub fn refused_after(&self) -> Option<String> {
        match &self.before {
            Ok(Before::Lsm(_)) => None,
            Ok(Before::Clone(_)) => Some(
                "the cgroup backend has no hook before a cgroup.procs write: the mover is killed right after the move"
                    .into(),
            ),
            Err(why) => Some(format!(
                "escapes are killed right after the move, not refused before it: {why}"
            )),
        }
    }
}

/// Records every process now in `scope`'s subtree as in the scope
/// (`scope_cgid`), where nothing is recorded for it yet (a nested scope's
/// processes keep theirs). Returns how many were recorded. A process that
/// exits meanwhile is skipped; a map that refuses an entry is an error.
pub(crate) fn seed(maps: &SharedMaps, scope: &CgroupRef) -> Result<usize, AttachError> {
    let map = &maps.task_scope;
    let value = scope.id().to_ne_bytes();
    let mut seeded = 0;
    for pid in pids_under(scope.path()) {
        // SAFETY: pidfd_open returns a new fd (owned below) or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if raw < 0 {
            continue; // gone
        }
        // SAFETY: a fresh fd from the kernel, owned once.
        let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        let key = pidfd.as_raw_fd().to_ne_bytes();
        let known = map
            .lookup(&key, MapFlags::ANY)
            .ok()
            .flatten()
            .is_some_and(|v| v.iter().any(|b| *b != 0));
        if known {
            continue;
        }
        match map.update(&key, &value, MapFlags::ANY) {
            Ok(()) => seeded += 1,
            // Exited between pidfd_open and the update.
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(AttachError::Map {
                    map: "mg_task_scope",
                    source,
                })
            }
        }
    }
    Ok(seeded)
}
