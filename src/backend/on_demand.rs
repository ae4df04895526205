//! Hooks loaded with the first policy that needs them. The verifier is
//! most of an enforcer's start-up (the Stratum, cmdline and loader-exec
//! programs are about 80 % of it), so an enforcer whose profiles have no
//! such rule never pays for them, and never runs them.

use super::checks::CheckStatus;

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
    pub fn load_with<E: std::fmt::Display>(
        &mut self,
        load: impl FnOnce() -> Result<T, E>,
    ) -> Option<&mut T> {
        if matches!(self, OnDemand::NotYet { .. }) {
            *self = match load() {
                Ok(hook) => OnDemand::Ready(hook),
                Err(e) => OnDemand::Off(e.to_string()),
            };
        }
        self.ready_mut()
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
    use super::{CheckStatus, OnDemand};

    #[test]
    fn loads_once_and_remembers_a_refusal() {
        let mut hook: OnDemand<u32> = OnDemand::not_yet("the first profile with X");
        assert!(hook
            .status()
            .as_result()
            .unwrap_err()
            .contains("the first profile with X"));
        assert_eq!(
            hook.load_with(|| Err::<u32, _>("refused by the verifier")),
            None
        );
        // Not tried again: the kernel's answer does not change.
        assert_eq!(hook.load_with(|| Ok::<_, String>(7)), None);
        assert_eq!(
            hook.status(),
            CheckStatus::Off {
                reason: "refused by the verifier".into()
            }
        );

        let mut hook: OnDemand<u32> = OnDemand::not_yet("x");
        assert_eq!(hook.load_with(|| Ok::<_, String>(7)).copied(), Some(7));
        assert_eq!(hook.load_with(|| Ok::<_, String>(8)).copied(), Some(7));
        assert_eq!(hook.status(), CheckStatus::Active);
        assert_eq!(hook.ready().copied(), Some(7));
    }
}
