//! Pinned enforcement for `run` and `watch`: what they attach outlives them
//! (SIGKILL included) until released on purpose.

use std::path::Path;

use minerguard::pin::{self, Pins};

use crate::PREFIX;

/// Pins what this process attached as instance `name` (releasing what an
/// earlier process of that name left, once this one's is pinned). Pinning
/// that fails is said loudly: enforcement then ends with this process.
pub fn pin(name: &str, cgroup: Option<&Path>, quiet: bool) -> Option<Pins> {
    let pinned = Pins::open(name).and_then(|pins| {
        pins.record(cgroup)?;
        let pinned = pins.sync()?;
        let replaced = pins.release_others()?;
        if !quiet {
            // Said once everything is pinned: from here on, killing this
            // process leaves the enforcement in place.
            eprintln!(
                "{PREFIX}: enforcement pinned as instance `{name}` ({pinned} attachments): it outlives this process"
            );
        }
        if replaced > 0 {
            eprintln!(
                "{PREFIX}: replaced {replaced} pinned attachments an earlier `{name}` left (enforcing all along)"
            );
        }
        Ok(pins)
    });
    match pinned {
        Ok(pins) => Some(pins),
        Err(e) => {
            eprintln!(
                "{PREFIX}: warning: enforcement is not pinned ({e}): it ends with this process"
            );
            None
        }
    }
}

/// After a change of what is attached (reload, a cgroup created again):
/// pins the new attachments and unpins the ones dropped.
pub fn resync(pins: Option<&Pins>) {
    if let Some(pins) = pins {
        if let Err(e) = pins.sync().and_then(|_| pins.release_others()) {
            eprintln!("{PREFIX}: warning: updating the pins failed: {e}");
        }
    }
}

/// Unpins an instance before its process detaches on purpose.
pub fn release(pins: Option<Pins>) {
    if let Some(pins) = pins {
        if let Err(e) = pins.release() {
            eprintln!("{PREFIX}: warning: releasing the pins failed: {e}");
        }
    }
}

/// Cleans up instances of dead `run`s whose cgroup is empty.
pub fn clean_stale() {
    match pin::clean_stale() {
        Ok(names) => {
            for name in names {
                eprintln!("{PREFIX}: removed stale pinned instance `{name}` (its process and cgroup are gone)");
            }
        }
        Err(e) => eprintln!("{PREFIX}: warning: cleaning stale pinned instances failed: {e}"),
    }
}
