//! Rule names by (policy id, rule index), so the kernel's events can name the
//! rule and profile that fired without carrying strings.

use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use crate::compile::{CompiledRule, KernelPolicy};

/// Removed policies stay resolvable for this many later removals, so events
/// still in flight when a profile is replaced keep their rule names.
const RETAINED: usize = 64;

#[derive(Default)]
struct Inner {
    policies: HashMap<u32, Arc<PolicyNames>>,
    retired: VecDeque<u32>,
}

/// Names of one compiled profile.
#[derive(Debug)]
pub(crate) struct PolicyNames {
    pub profile: Arc<str>,
    pub rules: Vec<CompiledRule>,
    /// Resolved `connect.domains` addresses → domain.
    pub domains: std::collections::BTreeMap<std::net::IpAddr, Arc<str>>,
    /// The cgroup of the scope the policy is applied to: the tasks it
    /// judges are in it or below it (where `kill-container` looks for
    /// their cgroups).
    pub scope: PathBuf,
    /// `exec.cmdline` patterns by their kernel id (`mg_cmd_pattern`).
    pub patterns: Vec<Arc<str>>,
    /// `stratum.signatures` in the order the kernel numbers them.
    pub signatures: Vec<Arc<str>>,
}

impl PolicyNames {
    /// The text of `mg_cmd_pattern` entry `id` (`MG_PATTERN_ID_OVERLONG`
    /// included).
    pub fn pattern(&self, id: u32) -> Option<Arc<str>> {
        if id == crate::backend::abi::PATTERN_ID_OVERLONG {
            static OVERLONG: std::sync::LazyLock<Arc<str>> =
                std::sync::LazyLock::new(|| Arc::from(super::OVERLONG_ARGV));
            return Some(OVERLONG.clone());
        }
        self.patterns.get(id as usize).cloned()
    }

    /// The signature a Stratum event names by `number` (1 + its index;
    /// 0 where the kernel could not say which, a Fast Open payload's).
    pub fn signature(&self, number: u8) -> Option<Arc<str>> {
        let index = usize::from(number).checked_sub(1)?;
        self.signatures.get(index).cloned()
    }
}

/// Shared between the enforcer (writer) and the poller thread (reader).
#[derive(Default)]
pub(crate) struct Registry {
    inner: RwLock<Inner>,
}

impl Registry {
    /// Makes `policy_id` resolvable; `scope`: the cgroup it applies to.
    pub fn insert(&self, policy_id: u32, policy: &KernelPolicy, scope: &Path) {
        let names = Arc::new(PolicyNames {
            profile: policy.profile.clone(),
            rules: policy.rules.clone(),
            domains: policy.domain_addresses.clone(),
            scope: scope.to_path_buf(),
            // Ids are positions in `cmdline` (backend::maps, cmdline_buckets).
            patterns: policy
                .cmdline
                .keys()
                .map(|p| Arc::from(p.as_str()))
                .collect(),
            signatures: (policy.stratum_signatures.iter())
                .map(|s| Arc::from(s.as_str()))
                .collect(),
        });
        self.write().policies.insert(policy_id, names);
    }

    /// `policy_id` is no longer in the kernel; forget it some removals later.
    pub fn retire(&self, policy_id: u32) {
        let mut inner = self.write();
        inner.retired.push_back(policy_id);
        while inner.retired.len() > RETAINED {
            if let Some(old) = inner.retired.pop_front() {
                inner.policies.remove(&old);
            }
        }
    }

    /// Forgets `policy_id` at once (it never reached the kernel).
    pub fn forget(&self, policy_id: u32) {
        self.write().policies.remove(&policy_id);
    }

    /// Whether `policy_id` is known (live or retired).
    pub fn contains(&self, policy_id: u32) -> bool {
        self.read().policies.contains_key(&policy_id)
    }

    /// The names for an event's (policy, rule) pair.
    pub fn lookup(&self, policy_id: u32) -> Option<Arc<PolicyNames>> {
        self.read().policies.get(&policy_id).cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere; the data is still whole.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}
