//! The tuning counter (bpf/tuning_tp.bpf.c): the open syscalls' entry
//! tracepoints count, per process in a scope, opens for writing of the
//! files a miner writes to tune the host (`nr_hugepages`, the MSR devices,
//! the msr module's `allow_writes`, `nmi_watchdog`), for the behaviour
//! detector's tuning signal. Shared by both backends; optional (needs
//! tracefs and syscall tracepoints): without it the signal is reported as
//! not counted. Loaded and attached with the first policy that has a
//! `behaviour` rule counting tuning (`count_tuning`, on by default), kept
//! until the enforcer is dropped.

use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    MapHandle,
};

use super::{
    load_err,
    maps::SharedMaps,
    skel::{
        reuse_shared_maps,
        tuning_tp::{TuningTpSkel, TuningTpSkelBuilder},
        Owned,
    },
    tracefs,
};
use crate::{behaviour::TuningCounts, error::Error};

/// The rules that load it.
pub(crate) const TUNING_NEEDED_BY: &str =
    "the first profile with a behaviour rule that counts tuning (count_tuning, on by default)";

/// The per-process counts' map (pinned under this name with an instance).
const COUNTS_MAP: &str = "mg_tuning";

/// The loaded and attached tuning tracepoints.
pub(crate) struct TuningHook {
    // Links go first: they reference the programs.
    _links: Vec<crate::pin::HeldLink>,
    _skel: Owned<TuningTpSkel<'static>>,
    /// A handle on the counts, shared with every detector given them.
    counts: TuningCounts,
}

impl TuningHook {
    /// Loads the programs and attaches those whose syscall this kernel has
    /// (`open` and `creat` are missing on arm64); `openat` must attach.
    ///
    /// With an instance the counts are pinned and reused: a restarted
    /// enforcer adopts the running programs (same code, same maps) and
    /// reads the map they write, with the counts made before the restart.
    pub fn load(maps: &SharedMaps) -> Result<Self, Error> {
        tracefs::ensure_mounted()?;
        let pins = maps.pins();
        let build = || {
            Owned::build(|storage| {
                let mut open = TuningTpSkelBuilder::default().open(storage)?;
                if let Some(pins) = pins {
                    open.maps.mg_tuning.set_pin_path(pins.map_pin(COUNTS_MAP))?;
                }
                reuse_shared_maps(open.open_object_mut(), maps)?;
                open.load()
            })
        };
        let skel = match build() {
            // Pinned by another version whose layout differs: start afresh.
            Err(_) if pins.is_some() => {
                let _ = std::fs::remove_file(pins.expect("checked").map_pin(COUNTS_MAP));
                build()
            }
            other => other,
        }
        .map_err(load_err("tuning_tp"))?;
        let progs = &skel.progs;
        let all = [
            ("mg_tune_openat", &progs.mg_tune_openat, "sys_enter_openat"),
            (
                "mg_tune_openat2",
                &progs.mg_tune_openat2,
                "sys_enter_openat2",
            ),
            (
                "mg_tune_open_legacy",
                &progs.mg_tune_open_legacy,
                "sys_enter_open",
            ),
            ("mg_tune_creat", &progs.mg_tune_creat, "sys_enter_creat"),
        ];
        let present: Vec<_> = (all.iter())
            .filter(|(name, _, event)| {
                *name == "mg_tune_openat" || tracefs::has_syscall_event(event)
            })
            .map(|(name, prog, _)| (*name, *prog))
            .collect();
        let links = super::attach::attach_all(
            maps.pins(),
            &present,
            "tracepoint/syscalls/sys_enter_openat, sys_enter_openat2, sys_enter_open, sys_enter_creat",
        )?;
        let map = MapHandle::try_from(&skel.maps.mg_tuning).map_err(load_err("tuning_tp"))?;
        Ok(TuningHook {
            _links: links,
            _skel: skel,
            counts: TuningCounts::new(map),
        })
    }

    /// The per-process counts (for the behaviour detector; the handle
    /// outlives the hook).
    pub fn counts(&self) -> TuningCounts {
        self.counts.clone()
    }
}
