//! The generated skeletons (build.rs → OUT_DIR) and a holder that keeps a
//! skeleton together with the storage it borrows.

use std::mem::{ManuallyDrop, MaybeUninit};

use libbpf_rs::OpenObject;

use super::maps::SharedMaps;

macro_rules! skeleton {
    ($module:ident, $file:literal) => {
        #[allow(clippy::all, missing_docs, unused_imports, dead_code)]
        pub(crate) mod $module {
            include!(concat!(env!("OUT_DIR"), "/", $file));
        }
    };
}

skeleton!(abi, "abi.skel.rs");
skeleton!(cmdline, "cmdline.skel.rs");
skeleton!(device, "device.skel.rs");
skeleton!(loader_exec_tp, "loader_exec_tp.skel.rs");
skeleton!(exec_tp, "exec_tp.skel.rs");
skeleton!(net_cgroup, "net_cgroup.skel.rs");
skeleton!(lsm_exec, "lsm_exec.skel.rs");
skeleton!(lsm_mmap, "lsm_mmap.skel.rs");
skeleton!(lsm_net, "lsm_net.skel.rs");
skeleton!(lsm_stratum, "lsm_stratum.skel.rs");
skeleton!(probe, "probe.skel.rs");
skeleton!(selftest, "selftest.skel.rs");
skeleton!(stratum, "stratum.skel.rs");
skeleton!(stratum_egress, "stratum_egress.skel.rs");
skeleton!(fast_open_tp, "fast_open_tp.skel.rs");
skeleton!(scope_guard, "scope_guard.skel.rs");
skeleton!(lsm_scope_guard, "lsm_scope_guard.skel.rs");
skeleton!(clone_guard_tp, "clone_guard_tp.skel.rs");
skeleton!(tuning_tp, "tuning_tp.skel.rs");

/// A loaded skeleton that owns the `OpenObject` storage it borrows.
///
/// libbpf-rs skeletons borrow caller-provided storage for their whole life;
/// keeping both in one value lets an `Enforcer` own its programs without a
/// self-referential borrow. The storage is a raw heap allocation that is
/// freed only after the skeleton is dropped.
pub(crate) struct Owned<S> {
    skel: ManuallyDrop<S>,
    storage: *mut MaybeUninit<OpenObject>,
}

impl<S> Owned<S> {
    /// Runs `build` (open, configure, load, attach) on fresh storage.
    pub fn build<E>(
        build: impl FnOnce(&'static mut MaybeUninit<OpenObject>) -> Result<S, E>,
    ) -> Result<Self, E> {
        let storage = Box::into_raw(Box::new(MaybeUninit::uninit()));
        // SAFETY: the allocation outlives every use of the skeleton: it is
        // released in Drop (or below, on failure) after the skeleton is gone.
        match build(unsafe { &mut *storage }) {
            Ok(skel) => Ok(Owned {
                skel: ManuallyDrop::new(skel),
                storage,
            }),
            Err(e) => {
                // SAFETY: `build` dropped whatever borrowed the storage.
                drop(unsafe { Box::from_raw(storage) });
                Err(e)
            }
        }
    }
}

impl<S> std::ops::Deref for Owned<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.skel
    }
}

impl<S> std::ops::DerefMut for Owned<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.skel
    }
}

impl<S> Drop for Owned<S> {
    fn drop(&mut self) {
        // SAFETY: the skeleton goes first (it closes the bpf_object), then
        // the storage it borrowed; neither is used again.
        unsafe {
            ManuallyDrop::drop(&mut self.skel);
            drop(Box::from_raw(self.storage));
        }
    }
}

// SAFETY: libbpf objects are not tied to a thread; every access goes through
// `&mut self` of the owning backend.
unsafe impl<S> Send for Owned<S> {}

/// Makes every map of `object` that maps.h shares use the existing fd.
pub(crate) fn reuse_shared_maps(
    object: &mut OpenObject,
    shared: &SharedMaps,
) -> libbpf_rs::Result<()> {
    for mut map in object.maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        if let Some(handle) = shared.by_name(&name) {
            use std::os::fd::AsFd;
            map.reuse_fd(handle.as_fd())?;
        }
    }
    Ok(())
}
