//! Links that an instance pins under stable names, and the attach that
//! adopts or replaces what an earlier process pinned under the same name.

use std::{fs, os::fd::AsFd, sync::Arc};

use libbpf_rs::{Link, ProgramMut};

use super::{identity, PinDir};
use crate::error::Error;

/// A link this enforcer holds: pinned under its instance's name, or not
/// pinned at all (an enforcer without an instance).
///
/// Dropping it detaches it (a pinned one is unpinned first), unless the
/// instance is being kept ([`PinDir::keep`]): then only this process's
/// descriptor closes and the pin keeps the program attached.
pub(crate) struct HeldLink {
    link: Option<Link>,
    pin: Option<(Arc<PinDir>, String)>,
}

impl HeldLink {
    /// A link no instance pins.
    pub fn unpinned(link: Link) -> Self {
        HeldLink {
            link: Some(link),
            pin: None,
        }
    }

    /// The kernel's id of the link.
    #[allow(dead_code)]
    pub fn id(&self) -> Option<u32> {
        self.link.as_ref().and_then(|l| l.info().ok()).map(|i| i.id)
    }
}

impl Drop for HeldLink {
    fn drop(&mut self) {
        if let Some((pins, key)) = &self.pin {
            if !pins.keeping() {
                let _ = fs::remove_file(pins.current_pin(key));
                pins.unclaim(key);
            }
        }
        // The descriptor closes last: with the pin gone, that detaches.
        drop(self.link.take());
    }
}

/// Attaches `prog` with `attach`, as link `key` of `pins` when given.
///
/// Where an earlier process pinned link `key`:
/// - running the same program (same code, maps and configuration, see
///   `identity`): that link is adopted, and nothing is attached again;
/// - a cgroup link (`in_place`) running another program: its program is
///   swapped in place (`BPF_LINK_UPDATE`, atomic for every task);
/// - otherwise: the new link is attached and pinned as `<key>-new`; the
///   old one keeps running beside it until [`PinDir::release_unclaimed`]
///   (once every scope is applied: the new program may read maps that are
///   still being filled), which unpins it and renames the new pin to
///   `<key>`. The two run side by side for that time, never neither; for
///   LSM hooks a deny from either wins.
pub(crate) fn attach_pinned(
    pins: Option<&Arc<PinDir>>,
    key: &str,
    prog: &ProgramMut<'_>,
    in_place: bool,
    attach: impl FnOnce() -> Result<Link, Error>,
) -> Result<HeldLink, Error> {
    let Some(pins) = pins else {
        return attach().map(HeldLink::unpinned);
    };
    let path = pins.link_pin(key);
    let held = |link: Link| HeldLink {
        link: Some(link),
        pin: Some((pins.clone(), key.to_string())),
    };
    if let Ok(mut old) = Link::open(&path) {
        let pinned = pins.pinned_map_ids();
        let want = identity::of_prog(prog.as_fd(), &pinned);
        if want.is_ok() && identity::of_link(&old, &pinned).ok() == want.as_ref().ok().copied() {
            pins.claim(key);
            return Ok(held(old));
        }
        if in_place && old.update_prog(prog).is_ok() {
            pins.claim(key);
            return Ok(held(old));
        }
        let mut new = attach()?;
        let new_key = format!("{key}{}", super::dir::NEW_SUFFIX);
        let tmp = pins.link_pin(&new_key);
        let _ = fs::remove_file(&tmp);
        new.pin(&tmp).map_err(|e| pin_failed(&tmp, e))?;
        pins.claim(&new_key);
        return Ok(HeldLink {
            link: Some(new),
            pin: Some((pins.clone(), new_key)),
        });
    }
    // Not a link (or nothing) at that name: attach and pin afresh.
    let _ = fs::remove_file(&path);
    let mut new = attach()?;
    new.pin(&path).map_err(|e| pin_failed(&path, e))?;
    pins.claim(key);
    Ok(held(new))
}

/// A link that could not be pinned; told apart when this process ran out
/// of descriptors (libbpf then reports EINVAL: see `descriptors::classify`).
fn pin_failed(path: &std::path::Path, e: libbpf_rs::Error) -> Error {
    match crate::descriptors::classify(|| format!("pinning {}", path.display()), e) {
        Ok(limit) => limit.into(),
        Err(e) => super::PinError::Io {
            action: "pinning",
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        }
        .into(),
    }
}
