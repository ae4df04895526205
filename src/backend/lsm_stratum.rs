//! The lsm backend's Stratum judge (bpf/lsm_stratum.bpf.c): a sleepable
//! `socket_sendmsg` program that reads the first bytes a TCP socket sends
//! from the caller's buffers and refuses a Stratum send with EPERM, Fast
//! Open sends included, and fexit programs on `inet_sendmsg` and
//! `inet6_sendmsg` that add to a stream only what the kernel took of a
//! send. The egress judge stands behind it (src/backend/stratum_egress.rs),
//! and reads what sendfile and splice send past it before Linux 6.5.
//! Optional: where a kernel refuses it, the shared sk_msg program (EACCES)
//! and the Fast Open tracepoints judge instead.

use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use super::{
    load_err,
    maps::SharedMaps,
    skel::{
        lsm_stratum::{LsmStratumSkel, LsmStratumSkelBuilder},
        reuse_shared_maps, Owned,
    },
};
use crate::error::Error;

/// The loaded sleepable socket_sendmsg program, attached from the first
/// policy with a stratum rule on (an LSM hook runs for every send on the
/// host: a host whose profiles have no stratum rule should not pay for it).
pub(crate) struct LsmStratumHook {
    /// Its link once attached (before the program it references).
    links: Vec<crate::pin::HeldLink>,
    /// Owns the program.
    skel: Owned<LsmStratumSkel<'static>>,
    attached: bool,
    /// The instance links are pinned as, if any.
    pins: Option<std::sync::Arc<crate::pin::PinDir>>,
}

impl LsmStratumHook {
    /// Loads the program on the shared maps (with the first policy that
    /// has a stratum rule; attached by [`Self::activate`]).
    /// `audit_left_to_egress`: some sends bypass the hook on this kernel
    /// ([`every_send_reaches_the_hook`]), so the egress judge behind it,
    /// which reads every send, reports audited scopes instead.
    pub fn load(maps: &SharedMaps, audit_left_to_egress: bool) -> Result<Self, Error> {
        let skel = Owned::build(|storage| {
            let mut open = LsmStratumSkelBuilder::default().open(storage)?;
            if let Some(rodata) = open.maps.rodata_data.as_mut() {
                rodata.mg_own_copies_only = own_copies_only();
                rodata.mg_audit_left_to_egress = audit_left_to_egress;
            }
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("lsm_stratum"))?;
        Ok(LsmStratumHook {
            links: Vec::new(),
            skel,
            attached: false,
            pins: maps.pins().cloned(),
        })
    }

    /// Attaches the programs (host-wide; they return at once for tasks
    /// outside scopes and for judged sockets); a no-op once attached. They
    /// stay attached until the backend is dropped, as the Fast Open
    /// tracepoints do.
    ///
    /// The fexit programs go first: a send the hook reads is kept aside
    /// until they see it return, so a hook without them would drop what
    /// every send added to its stream.
    pub fn activate(&mut self) -> Result<(), Error> {
        if !self.attached {
            let progs = &self.skel.progs;
            self.links = super::attach::attach_all(
                self.pins.as_ref(),
                &[
                    ("mg_lsm_stratum_sent4", &progs.mg_lsm_stratum_sent4),
                    ("mg_lsm_stratum_sent6", &progs.mg_lsm_stratum_sent6),
                    ("mg_lsm_stratum", &progs.mg_lsm_stratum),
                ],
                "fexit/inet_sendmsg, fexit/inet6_sendmsg, lsm.s/socket_sendmsg",
            )?;
            self.attached = true;
        }
        Ok(())
    }
}

/// Tests only: `MINERGUARD_TEST_OWN_COPIES=1` makes the judge read every
/// send in a copy of its thread's own (task storage), the path taken when
/// every spare copy is in use, so that the tests can prove that path
/// judges as the usual one does.
fn own_copies_only() -> bool {
    std::env::var_os("MINERGUARD_TEST_OWN_COPIES").is_some_and(|v| v == "1")
}

/// Whether every send of this kernel reaches `socket_sendmsg` with data the
/// hook can read; otherwise why not (the egress judge behind the hook then
/// reads those sends, and reports audited scopes).
///
/// - Linux 6.5 removed `proto_ops.sendpage`: sendfile and splice became
///   `sendmsg(MSG_SPLICE_PAGES)` and reach the hook as pages (ITER_BVEC).
///   Before, they went through sendpage, past the hook.
/// - The hook reads those pages through the direct map, which needs the
///   `page_offset_base` and `vmemmap_base` symbols (x86-64 with a
///   randomised memory layout; the program's weak references to them are
///   unset otherwise).
pub(crate) fn every_send_reaches_the_hook() -> Result<(), String> {
    use libbpf_rs::btf::{types::Struct, Btf};

    let btf = Btf::from_vmlinux().map_err(|e| format!("reading the kernel's BTF failed: {e}"))?;
    let ops: Struct<'_> = btf
        .type_by_name("proto_ops")
        .ok_or("the kernel's BTF has no struct proto_ops")?;
    if ops.iter().any(|m| m.name.is_some_and(|n| n == "sendpage")) {
        return Err(
            "sendfile and splice bypass socket_sendmsg on this kernel (proto_ops.sendpage, before Linux 6.5)"
                .into(),
        );
    }
    let missing = kernel_symbols_missing(&["page_offset_base", "vmemmap_base"])
        .map_err(|e| format!("reading /proc/kallsyms failed: {e}"))?;
    match missing.first() {
        None => Ok(()),
        Some(name) => Err(format!(
            "the kernel has no `{name}` symbol: the hook cannot read page-backed sends"
        )),
    }
}

/// Which of `names` /proc/kallsyms does not list.
fn kernel_symbols_missing<'n>(names: &[&'n str]) -> std::io::Result<Vec<&'n str>> {
    use std::io::BufRead;

    let mut missing = names.to_vec();
    let file = std::io::BufReader::new(std::fs::File::open("/proc/kallsyms")?);
    for line in file.lines() {
        let line = line?;
        // "<address> <type> <name>[\t[module]]"
        if let Some(name) = line.split_whitespace().nth(2) {
            missing.retain(|n| *n != name);
            if missing.is_empty() {
                break;
            }
        }
    }
    Ok(missing)
}
