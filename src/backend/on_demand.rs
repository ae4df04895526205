//! Hooks loaded with the first policy that needs them. The verifier is
//! most of an enforcer's start-up (the Stratum, cmdline and loader-exec
//! programs are about 80 % of it), so an enforcer whose profiles have no
//! such rule never pays for them, and never runs them.

use super::checks::CheckStatus;
use crate::error::Error;

/// An optional hook: not needed yet, loaded, not needed here, or off (and
/// why).
pub(crate) enum OnDemand<T> {
    /// No policy has needed it yet; `needed_by` names the rules that load it.
    NotYet {
        /// E.g. "the first profile with a stratum rule".
        needed_by: &'static str,
    },
    /// Loaded (and, for hooks that attach on load, attached).
    Ready(T),
    /// Not loaded because something else covers it here: what.
    NotNeeded(&'static str),
    /// This kernel refused it, or options turned it off: why.
    Off(String),
}

impl<T> OnDemand<T> {
    /// A hook loaded when `needed_by` is first applied.
    pub fn not_yet(needed_by: &'static str) -> Self {
        OnDemand::NotYet { needed_by }
    }

    /// Loads the hook if nothing was tried yet; a failed load turns it
    /// `Off` with the reason (tried once: the kernel's answer does not
    /// change, and each hook this serves has another judge or is reported
    /// unenforced). Returns the hook when it is ready.
    ///
    /// Running out of descriptors is not the kernel's answer but this
    /// process's state: that failure is returned (the apply fails and
    /// rolls back) and the hook stays untried, never silently off.
    pub fn load_with(
        &mut self,
        load: impl FnOnce() -> Result<T, Error>,
    ) -> Result<Option<&mut T>, Error> {
        if matches!(self, OnDemand::NotYet { .. }) {
            match load() {
                Ok(hook) => *self = OnDemand::Ready(hook),
                Err(e) if e.is_descriptor_limit() => return Err(e),
                Err(e) => *self = OnDemand::Off(e.to_string()),
            }
        }
        Ok(self.ready_mut())
    }

    /// The loaded hook could not be attached (`what` failed with `e`): it
    /// is `Off` from then on, unless this process ran out of descriptors,
    /// which is returned instead (see [`OnDemand::load_with`]).
    pub fn attach_failed(&mut self, what: &str, e: Error) -> Result<(), Error> {
        if e.is_descriptor_limit() {
            return Err(e);
        }
        *self = OnDemand::Off(format!("{what} failed: {e}"));
        Ok(())
    }

    /// The loaded hook, if any.
    pub fn ready(&self) -> Option<&T> {
        match self {
            OnDemand::Ready(hook) => Some(hook),
            _ => None,
        }
    }

    /// The loaded hook, if any, to attach or change.
    pub fn ready_mut(&mut self) -> Option<&mut T> {
        match self {
            OnDemand::Ready(hook) => Some(hook),
            _ => None,
        }
    }

    /// Where the hook stands.
    pub fn status(&self) -> CheckStatus {
        match self {
            OnDemand::Ready(_) => CheckStatus::Active,
            OnDemand::NotYet { needed_by } => CheckStatus::NotLoadedYet {
                needed_by: (*needed_by).into(),
            },
            OnDemand::NotNeeded(reason) => CheckStatus::NotNeeded {
                reason: (*reason).into(),
            },
            OnDemand::Off(why) => CheckStatus::Off {
                reason: why.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{CheckStatus, Error, OnDemand};
    use crate::error::LoadError;

    #[test]
    fn loads_once_and_remembers_a_refusal() {
        let refused = || -> Result<u32, Error> {
            Err(LoadError::Unsupported {
                what: "x".into(),
                fix: "refused by the verifier".into(),
            }
            .into())
        };
        let mut hook: OnDemand<u32> = OnDemand::not_yet("the first profile with X");
        assert!(hook
            .status()
            .as_result()
            .unwrap_err()
            .contains("the first profile with X"));
        assert!(hook.load_with(refused).unwrap().is_none());
        // Not tried again: the kernel's answer does not change.
        assert!(hook.load_with(|| Ok(7)).unwrap().is_none());
        assert!(hook
            .status()
            .as_result()
            .unwrap_err()
            .contains("refused by the verifier"));

        let mut hook: OnDemand<u32> = OnDemand::not_yet("x");
        assert_eq!(hook.load_with(|| Ok(7)).unwrap().copied(), Some(7));
        assert_eq!(hook.load_with(|| Ok(8)).unwrap().copied(), Some(7));
        assert_eq!(hook.status(), CheckStatus::Active);
        assert_eq!(hook.ready().copied(), Some(7));
    }

    fn out_of_descriptors() -> Error {
        LoadError::DescriptorLimit {
            during: "loading BPF object `x`".into(),
            soft_limit: 64,
            source: libbpf_rs::Error::from_raw_os_error(libc::EMFILE),
        }
        .into()
    }

    #[test]
    fn running_out_of_descriptors_fails_instead_of_turning_the_hook_off() {
        let mut hook: OnDemand<u32> = OnDemand::not_yet("x");
        let e = hook.load_with(|| Err(out_of_descriptors())).unwrap_err();
        assert!(e.is_descriptor_limit(), "{e}");
        // Still untried: the next apply loads it.
        assert_eq!(hook.load_with(|| Ok(7)).unwrap().copied(), Some(7));
        let e = hook
            .attach_failed("attaching its tracepoints", out_of_descriptors())
            .unwrap_err();
        assert!(e.is_descriptor_limit(), "{e}");
        assert_eq!(hook.status(), CheckStatus::Active);
        let refused = Error::from(LoadError::Unsupported {
            what: "y".into(),
            fix: "z".into(),
        });
        hook.attach_failed("attaching its tracepoints", refused)
            .unwrap();
        assert!(hook
            .status()
            .as_result()
            .unwrap_err()
            .contains("attaching its tracepoints failed: y is not available"));
    }
}
