//! Programs attached to cgroups, kept in step with the outermost scopes,
//! and host-wide programs attached all or none; pinned under stable names
//! when the enforcer is an instance (see `pin`).

use std::{collections::HashMap, os::fd::AsRawFd, path::PathBuf, sync::Arc};

use libbpf_rs::ProgramMut;

use crate::{
    cgroup::CgroupRef,
    error::{AttachError, Error},
    pin::{attach_pinned, HeldLink, PinDir},
};

/// Links per covered cgroup, by path and id (a cgroup removed and created
/// again at the same path is another cgroup); dropping a link detaches its
/// program.
#[derive(Default)]
pub(crate) struct CgroupLinks {
    attached: HashMap<(PathBuf, u64), Vec<HeldLink>>,
}

impl CgroupLinks {
    /// Makes the covered set exactly `roots`: attaches (with `attach`) the new
    /// ones first, then detaches the others. On failure the previous set is
    /// left as it was.
    pub fn cover_exactly(
        &mut self,
        roots: &[CgroupRef],
        attach: impl Fn(&CgroupRef) -> Result<Vec<HeldLink>, Error>,
    ) -> Result<(), Error> {
        let mut added = Vec::new();
        let key = |r: &CgroupRef| (r.path().to_path_buf(), r.id());
        for root in roots {
            if self.attached.contains_key(&key(root)) {
                continue;
            }
            match attach(root) {
                Ok(links) => {
                    self.attached.insert(key(root), links);
                    added.push(key(root));
                }
                Err(e) => {
                    for k in added {
                        self.attached.remove(&k);
                    }
                    return Err(e);
                }
            }
        }
        self.attached
            .retain(|k, _| roots.iter().any(|r| key(r) == *k));
        Ok(())
    }
}

/// The pin name of `program`'s link on cgroup `id` (bpffs refuses names
/// with a `.`).
fn cgroup_key(id: u64, program: &str) -> String {
    format!("cg{id}-{program}")
}

/// A failed attach of `program` to `target`, told apart when it ran out of
/// descriptors (a link is one).
pub(crate) fn program_err(
    program: &'static str,
    target: String,
    source: libbpf_rs::Error,
) -> Error {
    match crate::descriptors::classify(|| format!("attaching `{program}` to {target}"), source) {
        Ok(limit) => limit.into(),
        Err(source) => AttachError::Program {
            program,
            target,
            source,
        }
        .into(),
    }
}

/// A descriptor of map `map` for the event thread could not be made (a
/// dup), told apart when this process ran out of descriptors.
pub(crate) fn map_handle_err(map: &'static str, source: libbpf_rs::Error) -> Error {
    match crate::descriptors::classify(|| format!("duplicating map `{map}`"), source) {
        Ok(limit) => limit.into(),
        Err(source) => AttachError::Map { map, source }.into(),
    }
}

/// Attaches each program to `cgroup`; on failure the links made so far are
/// dropped (detached).
pub(crate) fn attach_to_cgroup(
    pins: Option<&Arc<PinDir>>,
    cgroup: &CgroupRef,
    programs: &[(&'static str, &ProgramMut<'_>)],
) -> Result<Vec<HeldLink>, Error> {
    let dir = cgroup.open_dir()?;
    programs
        .iter()
        .map(|(program, prog)| {
            attach_pinned(pins, &cgroup_key(cgroup.id(), program), prog, true, || {
                prog.attach_cgroup(dir.as_raw_fd()).map_err(|source| {
                    program_err(program, cgroup.path().display().to_string(), source)
                })
            })
        })
        .collect()
}

/// Attaches each program at its own section's hook (host-wide: tracepoints,
/// LSM hooks), all or none: on failure the links made so far are dropped
/// (detached). `target` names the hooks in the error.
pub(crate) fn attach_all(
    pins: Option<&Arc<PinDir>>,
    programs: &[(&'static str, &ProgramMut<'_>)],
    target: &'static str,
) -> Result<Vec<HeldLink>, Error> {
    programs
        .iter()
        .map(|(program, prog)| {
            attach_pinned(pins, program, prog, false, || {
                prog.attach()
                    .map_err(|source| program_err(program, target.into(), source))
            })
        })
        .collect()
}

/// [`attach_all`] for every program of a loaded object (each at its own
/// section's hook), named by their function names.
pub(crate) fn attach_object(
    pins: Option<&Arc<PinDir>>,
    object: &libbpf_rs::Object,
    target: &'static str,
) -> Result<Vec<HeldLink>, Error> {
    object
        .progs_mut()
        .map(|prog| {
            let name = prog.name().to_string_lossy().into_owned();
            attach_pinned(pins, &name, &prog, false, || {
                prog.attach().map_err(|source| {
                    program_err("object program", format!("{name} ({target})"), source)
                })
            })
        })
        .collect()
}
