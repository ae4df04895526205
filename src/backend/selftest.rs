//! The event-path self-test (bpf/selftest.bpf.c): a raw_tp program, never
//! attached, run on demand with BPF_PROG_TEST_RUN to write a burst of audit
//! events into the shared ring buffer.

use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    ProgramInput,
};

use super::{
    load_err,
    maps::SharedMaps,
    skel::{
        reuse_shared_maps,
        selftest::{SelftestSkel, SelftestSkelBuilder},
        Owned,
    },
};
use crate::error::{AttachError, Error};

/// The loaded self-test program.
pub(crate) struct SelfTestHook {
    skel: Owned<SelftestSkel<'static>>,
}

impl SelfTestHook {
    /// Loads the program on the shared maps.
    pub fn load(maps: &SharedMaps) -> Result<Self, Error> {
        let skel = Owned::build(|storage| {
            let mut open = SelftestSkelBuilder::default().open(storage)?;
            reuse_shared_maps(open.open_object_mut(), maps)?;
            open.load()
        })
        .map_err(load_err("selftest"))?;
        Ok(SelfTestHook { skel })
    }

    /// Writes up to `count` events for `rule_idx` of `policy_id`; returns
    /// how many fit in the ring buffer.
    pub fn emit(&self, policy_id: u32, rule_idx: u32, count: u32) -> Result<u32, Error> {
        let mut args = [0u8; 24];
        for (slot, v) in args.chunks_exact_mut(8).zip([
            u64::from(policy_id),
            u64::from(rule_idx),
            u64::from(count),
        ]) {
            slot.copy_from_slice(&v.to_ne_bytes());
        }
        let input = ProgramInput {
            context_in: Some(&mut args),
            ..Default::default()
        };
        let out = self
            .skel
            .progs
            .mg_self_test
            .test_run(input)
            .map_err(|source| AttachError::Program {
                program: "mg_self_test",
                target: "BPF_PROG_TEST_RUN".into(),
                source,
            })?;
        Ok(out.return_value)
    }
}
