//! The cgroup backend: `cgroup/connect4/6` and `cgroup/sendmsg4/6` attached to
//! each scope's cgroup, and one `tp_btf/sched_process_exec` program for exec
//! rules.
//! Needs neither BPF LSM nor trampolines (fentry), so it runs on kernels that
//! refuse those.

use std::{collections::HashMap, os::fd::AsRawFd, path::PathBuf};

use libbpf_rs::{
    skel::{OpenSkel, Skel, SkelBuilder},
    Link,
};

use super::{
    maps::SharedMaps,
    skel::{
        exec_tp::{ExecTpSkel, ExecTpSkelBuilder},
        net_cgroup::{NetCgroupSkel, NetCgroupSkelBuilder},
        reuse_shared_maps, shared_maps_of, Owned,
    },
    Backend, BackendKind,
};
use crate::{
    cgroup::CgroupRef,
    compile::RuleKind,
    error::{AttachError, Error, LoadError},
};

/// Loaded cgroup-backend programs and their per-cgroup attachments.
pub(crate) struct CgroupBackend {
    // Attachments go first: they reference the programs below.
    attached: HashMap<PathBuf, Vec<Link>>,
    maps: SharedMaps,
    /// Owns the exec tracepoint program and its link.
    _exec: Owned<ExecTpSkel<'static>>,
    net: Owned<NetCgroupSkel<'static>>,
    signal_in_cgroup: bool,
}

fn load_err(object: &'static str) -> impl Fn(libbpf_rs::Error) -> LoadError {
    move |source| LoadError::Object { object, source }
}

impl CgroupBackend {
    /// Loads both objects and attaches the (scope-filtered) exec tracepoint.
    ///
    /// `signal_in_cgroup`: this kernel lets cgroup programs call
    /// bpf_send_signal (probed), so `kill` on connect happens in-kernel.
    pub fn load(signal_in_cgroup: bool) -> Result<Self, Error> {
        let net = Owned::build(|storage| {
            let mut open = NetCgroupSkelBuilder::default().open(storage)?;
            if let Some(rodata) = open.maps.rodata_data.as_mut() {
                rodata.mg_signal_in_cgroup = signal_in_cgroup;
            }
            open.load()
        })
        .map_err(load_err("net_cgroup"))?;
        let maps = shared_maps_of!(net.maps).map_err(load_err("net_cgroup"))?;
        let mut exec = Owned::build(|storage| {
            let mut open = ExecTpSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), &maps)?;
            open.load()
        })
        .map_err(load_err("exec_tp"))?;
        // Host-wide hook, but inert outside scopes: the program returns at
        // once unless a cgroup ancestor of the task is in mg_scopes.
        exec.attach().map_err(|source| AttachError::Program {
            program: "mg_exec_tp",
            target: "tp_btf/sched_process_exec".into(),
            source,
        })?;
        Ok(CgroupBackend {
            attached: HashMap::new(),
            maps,
            _exec: exec,
            net,
            signal_in_cgroup,
        })
    }

    /// Attaches every destination program to `cgroup`; on failure the
    /// links made so far are dropped (detached).
    fn attach(&self, cgroup: &CgroupRef) -> Result<Vec<Link>, Error> {
        let dir = cgroup.open_dir()?;
        let progs = &self.net.progs;
        let programs = [
            ("mg_connect4", &progs.mg_connect4),
            ("mg_connect6", &progs.mg_connect6),
            ("mg_sendmsg4", &progs.mg_sendmsg4),
            ("mg_sendmsg6", &progs.mg_sendmsg6),
        ];
        programs
            .into_iter()
            .map(|(program, prog)| {
                prog.attach_cgroup(dir.as_raw_fd()).map_err(|source| {
                    AttachError::Program {
                        program,
                        target: cgroup.path().display().to_string(),
                        source,
                    }
                    .into()
                })
            })
            .collect()
    }
}

impl Backend for CgroupBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Cgroup
    }

    fn maps(&self) -> &SharedMaps {
        &self.maps
    }

    fn cover_exactly(&mut self, roots: &[CgroupRef]) -> Result<(), Error> {
        let mut added = Vec::new();
        for root in roots {
            if self.attached.contains_key(root.path()) {
                continue;
            }
            match self.attach(root) {
                Ok(links) => {
                    self.attached.insert(root.path().to_path_buf(), links);
                    added.push(root.path().to_path_buf());
                }
                Err(e) => {
                    // Roll back: dropping a link detaches it.
                    for path in added {
                        self.attached.remove(&path);
                    }
                    return Err(e);
                }
            }
        }
        self.attached
            .retain(|path, _| roots.iter().any(|r| r.path() == path));
        Ok(())
    }

    fn kills_in_kernel(&self, kind: RuleKind) -> bool {
        match kind {
            RuleKind::Connect => self.signal_in_cgroup,
            _ => true,
        }
    }
}
