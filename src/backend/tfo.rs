//! The TCP Fast Open check (bpf/tfo_tp.bpf.c): the sendto/sendmsg syscall
//! tracepoints read a `MSG_FASTOPEN` payload and mark the thread when it is
//! Stratum; the backend's connect hook then refuses the send. Shared by both
//! backends; optional (needs tracefs): without it, Fast Open payloads are
//! not judged (their destinations still are). Attached when the first
//! policy with a stratum rule is applied (the sendto tracepoint runs for
//! every send() on the host), and kept until the enforcer is dropped.

use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    Link,
};

use super::{
    load_err,
    maps::SharedMaps,
    skel::{
        reuse_shared_maps,
        tfo_tp::{TfoTpSkel, TfoTpSkelBuilder},
        Owned,
    },
};
use crate::error::{AttachError, Error};

/// The loaded Fast Open tracepoints, attached while active.
pub(crate) struct TfoHook {
    // Links go first: they reference the programs.
    /// Our own links (not the skeleton's, which libbpf would destroy again
    /// with the skeleton): dropping them detaches.
    links: Vec<Link>,
    skel: Owned<TfoTpSkel<'static>>,
}

impl TfoHook {
    /// Loads the programs on the shared maps; attaches them once to prove
    /// this kernel takes them, then leaves them detached.
    pub fn load(maps: &SharedMaps) -> Result<Self, Error> {
        super::tracefs::ensure_mounted()?;
        let skel = Owned::build(|storage| {
            let mut open = TfoTpSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("tfo_tp"))?;
        let mut hook = TfoHook {
            links: Vec::new(),
            skel,
        };
        hook.set_active(true)?;
        hook.set_active(false)?;
        Ok(hook)
    }

    /// Attaches (`true`) or detaches the tracepoints.
    pub fn set_active(&mut self, on: bool) -> Result<(), Error> {
        if !on {
            self.links.clear();
        } else if self.links.is_empty() {
            let progs = &self.skel.progs;
            for (name, prog) in [
                ("mg_tfo_sendto", &progs.mg_tfo_sendto),
                ("mg_tfo_sendmsg", &progs.mg_tfo_sendmsg),
            ] {
                match prog.attach() {
                    Ok(link) => self.links.push(link),
                    Err(source) => {
                        self.links.clear();
                        return Err(AttachError::Program {
                            program: name,
                            target: "tracepoint/syscalls".into(),
                            source,
                        }
                        .into());
                    }
                }
            }
        }
        Ok(())
    }
}
