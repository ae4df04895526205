//! The lsm backend: BPF-LSM hooks (`bprm_check_security`, `mmap_file`,
//! `file_mprotect`, `socket_connect`, `socket_sendmsg`, and the sleepable
//! `socket_sendmsg` that judges Stratum payloads) refuse the syscall with
//! EPERM before it takes effect. The hooks are host-wide and find the task's
//! scope themselves (nearest cgroup ancestor in `mg_scopes`). MSR, cmdline
//! and Stratum sent through sendfile/splice use the hooks shared with the
//! cgroup backend.

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

use super::{
    attach::attach_object,
    checks::CheckStatus,
    hooks::{SharedHooks, StratumJudge, STRATUM_NEEDED_BY},
    load_err,
    lsm_stratum::{every_send_reaches_the_hook, LsmStratumHook},
    maps::SharedMaps,
    on_demand::OnDemand,
    skel::{
        lsm_exec::{LsmExecSkel, LsmExecSkelBuilder},
        lsm_mmap::{LsmMmapSkel, LsmMmapSkelBuilder},
        lsm_net::{LsmNetSkel, LsmNetSkelBuilder},
        reuse_shared_maps, Owned,
    },
    Backend, BackendKind, SocketWork,
};
use crate::{
    cgroup::CgroupRef,
    compile::{KernelPolicy, RuleKind},
    error::Error,
    pin::HeldLink,
};

/// Loaded and attached BPF-LSM programs.
pub(crate) struct LsmBackend {
    /// The hooks' links (before the programs they reference).
    _links: Vec<HeldLink>,
    /// Own the programs.
    _net: Owned<LsmNetSkel<'static>>,
    _exec: Owned<LsmExecSkel<'static>>,
    _mmap: Owned<LsmMmapSkel<'static>>,
    /// The sleepable Stratum judge (loaded with the first policy that has
    /// a stratum rule), or why this kernel refused it (the shared sk_msg
    /// program and Fast Open tracepoints judge then), or why attaching it
    /// failed.
    stratum: OnDemand<LsmStratumHook>,
}

impl LsmBackend {
    /// Loads the objects on the shared maps and attaches the hooks.
    pub fn load(maps: &SharedMaps) -> Result<Self, Error> {
        let net = Owned::build(|storage| {
            let mut open = LsmNetSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("lsm_net"))?;
        let exec = Owned::build(|storage| {
            let mut open = LsmExecSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("lsm_exec"))?;
        let mmap = Owned::build(|storage| {
            let mut open = LsmMmapSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("lsm_mmap"))?;
        // Inert outside scopes: each hook returns at once unless a cgroup
        // ancestor of the task is in mg_scopes.
        let pins = maps.pins();
        let mut links =
            attach_object(pins, net.object(), "lsm/socket_connect, lsm/socket_sendmsg")?;
        links.extend(attach_object(
            pins,
            exec.object(),
            "lsm/bprm_check_security",
        )?);
        links.extend(attach_object(
            pins,
            mmap.object(),
            "lsm/mmap_file, lsm/file_mprotect",
        )?);
        Ok(LsmBackend {
            _links: links,
            _net: net,
            _exec: exec,
            _mmap: mmap,
            stratum: OnDemand::not_yet(STRATUM_NEEDED_BY),
        })
    }
}

impl Backend for LsmBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Lsm
    }

    fn cover_exactly(&mut self, hooks: &mut SharedHooks, roots: &[CgroupRef]) -> Result<(), Error> {
        // The LSM hooks see every task: only the shared per-scope programs.
        hooks.cover_exactly(roots, &[])
    }

    fn fast_open(&self, hooks: &SharedHooks) -> CheckStatus {
        match self.stratum_in_lsm(hooks) {
            // socket_sendmsg sees a Fast Open payload before the SYN.
            CheckStatus::Active => CheckStatus::Active,
            _ => hooks.fast_open(),
        }
    }

    fn prepare(
        &mut self,
        maps: &SharedMaps,
        hooks: &mut SharedHooks,
        policy: &KernelPolicy,
    ) -> Result<Vec<SocketWork>, Error> {
        // The sleepable judge first: whether it loads and attaches decides
        // whether the shared sk_msg program is needed at all and whether
        // Fast Open needs the tracepoints.
        let mut judge = StratumJudge::SkMsg;
        if policy.stratum.is_some() && !hooks.stratum_settled() {
            // Before Linux 6.5 sendfile and splice go past the hook; the
            // egress judge behind it reads them (and audited scopes).
            let every_send = every_send_reaches_the_hook().is_ok();
            if let Some(hook) = self
                .stratum
                .load_with(|| LsmStratumHook::load(maps, !every_send))?
            {
                // Attached now, so that a failed attach still leaves the
                // sk_msg program to judge.
                judge = match hook.activate() {
                    Ok(()) => StratumJudge::Lsm { every_send },
                    Err(e) => {
                        self.stratum.attach_failed("attaching it", e)?;
                        StratumJudge::SkMsg
                    }
                };
            }
        }
        hooks.prepare(maps, policy, judge, true)
    }

    fn activate(
        &mut self,
        maps: &SharedMaps,
        hooks: &mut SharedHooks,
        policy: &KernelPolicy,
    ) -> Result<(), Error> {
        if policy.stratum.is_none() {
            return Ok(());
        }
        if let Some(hook) = self.stratum.ready_mut() {
            if let Err(e) = hook.activate() {
                // The sk_msg verdict still judges what the hook would have
                // (it judges a socket itself unless the hook did), with
                // EACCES, and the Fast Open tracepoints take over Fast Open;
                // `run`/`watch` warn through `lsm_stratum()`.
                self.stratum.attach_failed("attaching it", e)?;
                hooks.fast_open_without_lsm(maps)?;
            }
        }
        hooks.stratum_in_use()
    }

    fn stratum_in_lsm(&self, hooks: &SharedHooks) -> CheckStatus {
        // Both halves: the hook, and the shared programs a stratum policy
        // loads with it (a kernel refusing those fails every stratum apply).
        self.stratum.status().and(hooks.stratum_loaded())
    }

    fn kills_in_kernel(&self, hooks: &SharedHooks, kind: RuleKind) -> bool {
        hooks.kills_in_kernel(kind).unwrap_or(true)
    }
}
