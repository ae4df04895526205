//! The status of the optional checks (hooks loaded on demand, or refused by
//! a kernel), as data: one [`CheckStatus`] per check in [`Checks`].

use std::fmt;

/// Where an optional check stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckStatus {
    /// Loaded (and attached where it attaches on load): it judges.
    Active,
    /// No applied profile needed it yet; `needed_by` names what loads it
    /// (e.g. "the first profile with a stratum rule").
    NotLoadedYet {
        /// The rules whose first apply loads it.
        needed_by: String,
    },
    /// Not needed here: something else on this kernel or backend covers
    /// what it would judge (`reason` says what).
    NotNeeded {
        /// What covers it instead.
        reason: String,
    },
    /// Off: this kernel refused it, attaching failed, or options turned it
    /// off; what it would judge is not judged.
    Off {
        /// Why.
        reason: String,
    },
}

impl CheckStatus {
    /// Whether the check runs.
    pub fn is_active(&self) -> bool {
        matches!(self, CheckStatus::Active)
    }

    /// Whether what the check covers is judged, by it or by something else.
    pub fn is_covered(&self) -> bool {
        matches!(self, CheckStatus::Active | CheckStatus::NotNeeded { .. })
    }

    /// `Ok` when active; otherwise the status as text (the form the C API,
    /// the Python bindings and `Enforcer::fast_open` and friends return).
    pub fn as_result(&self) -> Result<(), String> {
        match self {
            CheckStatus::Active => Ok(()),
            other => Err(other.to_string()),
        }
    }

    /// `other` when this one is active, else this one: both halves of a
    /// check that needs two hooks.
    pub(crate) fn and(self, other: CheckStatus) -> CheckStatus {
        match self {
            CheckStatus::Active => other,
            not => not,
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckStatus::Active => f.write_str("active"),
            CheckStatus::NotLoadedYet { needed_by } => {
                write!(f, "not loaded yet: {needed_by} loads it")
            }
            CheckStatus::NotNeeded { reason } => write!(f, "not needed: {reason}"),
            CheckStatus::Off { reason } => f.write_str(reason),
        }
    }
}

/// Every optional check of an enforcer ([`Enforcer::checks`](crate::Enforcer::checks)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checks {
    /// Executable mappings of files an exec rule refuses (loader exec:
    /// `ld.so ./xmrig`).
    pub loader_exec: CheckStatus,
    /// Stratum in the payload of a TCP Fast Open SYN.
    pub fast_open: CheckStatus,
    /// The lsm backend's sleepable socket_sendmsg hook as the Stratum judge
    /// (refused sends fail with EPERM; otherwise the sk_msg program judges
    /// them: EACCES).
    pub lsm_stratum: CheckStatus,
    /// The sk_msg program (with sockops socket tracking) as the Stratum
    /// judge.
    pub stratum_sk_msg: CheckStatus,
    /// The egress judge behind the lsm backend's socket_sendmsg hook: it
    /// reads what the kernel copied and sends, where the hook read the
    /// caller's buffer before the copy (a buffer rewritten in between).
    pub stratum_backstop: CheckStatus,
    /// The count of tuning attempts (opens for writing of `nr_hugepages`,
    /// MSR devices, `allow_writes`, `nmi_watchdog`) the behaviour
    /// detector's tuning signal reads.
    pub tuning: CheckStatus,
}

#[cfg(test)]
mod tests {
    use super::CheckStatus;

    #[test]
    fn text_and_coverage_follow_the_state() {
        let yet = CheckStatus::NotLoadedYet {
            needed_by: "the first profile with X".into(),
        };
        assert_eq!(
            yet.as_result().unwrap_err(),
            "not loaded yet: the first profile with X loads it"
        );
        assert!(!yet.is_covered());
        let elsewhere = CheckStatus::NotNeeded {
            reason: "the lsm hook judges it".into(),
        };
        assert!(elsewhere.is_covered() && !elsewhere.is_active());
        assert_eq!(elsewhere.to_string(), "not needed: the lsm hook judges it");
        assert_eq!(CheckStatus::Active.as_result(), Ok(()));
        let off = CheckStatus::Off {
            reason: "refused".into(),
        };
        assert_eq!(CheckStatus::Active.and(off.clone()), off);
        assert_eq!(off.clone().and(CheckStatus::Active), off);
    }
}
