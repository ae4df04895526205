//! The enforcer as a pinned instance: what it records, how it adopts the
//! scopes an earlier process of the instance left, and how it ends.

use std::{collections::BTreeMap, sync::Arc};

use super::{Applied, Enforcer, PolicyHandle, Scope, NEXT_HANDLE};
use crate::{
    backend::{maps::policy_digest, Kernel},
    cgroup::CgroupRef,
    compile::KernelPolicy,
    error::Result,
    events::registry::Registry,
    pin::{InstanceState, ScopeRecord},
    profile::Profile,
};

/// What a pinned instance records of an applied scope.
#[derive(Debug, Clone)]
pub(super) struct Recorded {
    profile: serde_json::Value,
    digest: String,
}

/// What [`Enforcer::release_unadopted`] ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    /// Scopes the earlier process enforced that were not applied again:
    /// no longer enforced.
    pub dropped: Vec<String>,
    /// Links the earlier process pinned that this enforcer did not adopt
    /// (replaced by its own, or no longer needed): released.
    pub released_links: usize,
}

/// The name a scope is recorded under: `host`, or the cgroup's path.
pub(super) fn scope_name(scope: &Scope, cgroup: &CgroupRef) -> String {
    match scope {
        Scope::Host => "host".into(),
        Scope::Cgroup(_) => cgroup.path().display().to_string(),
    }
}

/// The scopes the instance's state records, by name, with their policies'
/// rules registered (so events the ring buffer kept are named), and the
/// first policy id above every recorded one.
pub(super) fn pending_scopes(
    kernel: &Kernel,
    registry: &Arc<Registry>,
) -> Result<(BTreeMap<String, ScopeRecord>, u32)> {
    let mut pending = BTreeMap::new();
    let mut next = 1u32;
    let Some(pins) = kernel.pins() else {
        return Ok((pending, next));
    };
    let Some(state) = InstanceState::load(pins.state_dir())? else {
        return Ok((pending, next));
    };
    // The host scope's cgroup is the cgroup v2 root.
    let mount = crate::cgroup::cgroup2_mount().unwrap_or_else(|_| "/sys/fs/cgroup".into());
    for record in state.scopes {
        if let Ok(profile) = serde_json::from_value::<Profile>(record.profile.clone()) {
            if let Ok(policy) = KernelPolicy::compile(&profile) {
                let scope = record.cgroup.as_deref().unwrap_or(&mount);
                registry.insert(record.policy_id, &policy, scope);
            }
        }
        next = next.max(record.policy_id.saturating_add(1));
        pending.insert(record.scope_name(), record);
    }
    Ok((pending, next))
}

impl Enforcer {
    /// The instance this enforcer is pinned as, if any.
    pub fn instance(&self) -> Option<&str> {
        self.kernel.pins().map(|p| p.name())
    }

    /// Scopes the instance enforced before this enforcer opened it that
    /// have not been applied again (by `host` or cgroup path). They stay
    /// enforced until [`Enforcer::release_unadopted`].
    pub fn unadopted(&self) -> Vec<String> {
        self.pending.keys().cloned().collect()
    }

    /// What to record of a scope's policy (pinned instances only).
    pub(super) fn record_of(&self, policy: &KernelPolicy, profile: &Profile) -> Option<Recorded> {
        self.kernel.pins()?;
        Some(Recorded {
            profile: serde_json::to_value(profile).ok()?,
            digest: policy_digest(policy),
        })
    }

    /// Writes the instance's state (pinned instances only). A failure is
    /// not an enforcement failure: the kernel state is whole; only a later
    /// adoption would re-apply instead of keeping.
    pub(super) fn save_state(&self) {
        let Some(pins) = self.kernel.pins() else {
            return;
        };
        if self.released {
            return;
        }
        let applied = self.applied.values().filter_map(|a| {
            let r = a.record.as_ref()?;
            Some(ScopeRecord {
                cgroup: match &a.scope {
                    Scope::Host => None,
                    Scope::Cgroup(_) => Some(a.cgroup.path().to_path_buf()),
                },
                cgroup_id: a.cgroup.id(),
                level: a.cgroup.level(),
                profile_name: a.policy.profile.to_string(),
                profile: r.profile.clone(),
                policy_id: a.policy_id,
                digest: r.digest.clone(),
                since: a.since,
            })
        });
        let state = InstanceState {
            pid: std::process::id(),
            start_time: crate::pin::start_time(std::process::id()).unwrap_or(0),
            backend: self.kernel.kind().to_string(),
            scopes: applied.chain(self.pending.values().cloned()).collect(),
        };
        let saved = state.save(pins.state_dir());
        *self.state_error.lock().unwrap_or_else(|e| e.into_inner()) =
            saved.err().map(|e| e.to_string());
    }

    /// Why the instance's state could not be recorded the last time it
    /// changed, if it could not: enforcement is whole, but a restart would
    /// not know the scopes' profiles (it re-applies instead of keeping).
    pub fn state_problem(&self) -> Option<String> {
        self.state_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies `policy` to a scope an earlier process of the instance
    /// enforced (`record`): where the maps hold exactly this policy for
    /// this cgroup, it is kept as it is (nothing written, nothing
    /// attached again); otherwise the new policy is written and the scope
    /// switches to it in one map update, then the old entries go.
    pub(super) fn adopt(
        &mut self,
        record: ScopeRecord,
        policy: KernelPolicy,
        unresolved: Vec<String>,
        profile: &Profile,
        scope: Scope,
        cgroup: CgroupRef,
    ) -> Result<PolicyHandle> {
        let digest = policy_digest(&policy);
        let in_maps = self.kernel.maps().scope_policy(cgroup.id()) == Some(record.policy_id);
        let keep = in_maps && record.cgroup_id == cgroup.id() && record.digest == digest;
        let policy_id = if keep {
            self.registry
                .insert(record.policy_id, &policy, cgroup.path());
            record.policy_id
        } else {
            match self.install(&policy, &cgroup) {
                Ok(id) => id,
                Err(e) => {
                    self.pending.insert(record.scope_name(), record);
                    return Err(e);
                }
            }
        };
        let handle = PolicyHandle(NEXT_HANDLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let recorded = self.record_of(&policy, profile);
        self.applied.insert(
            handle,
            Applied {
                scope,
                cgroup: cgroup.clone(),
                policy_id,
                profile: super::kept_for_refresh(&policy, profile),
                record: recorded,
                policy,
                unresolved,
                gone: false,
                since: if keep {
                    record.since
                } else {
                    crate::pin::now()
                },
            },
        );
        let point = |e: &Self| -> Result<()> {
            let applied = &e.applied[&handle];
            Ok(e.kernel
                .maps()
                .set_scope(cgroup.id(), policy_id, &applied.policy)?)
        };
        // Maps the earlier process never wrote (another layout: a newer
        // build) get the scope before the cgroup links switch to programs
        // that read them; otherwise the links first, then the one update
        // that moves the scope to the new policy.
        let switched = if in_maps {
            self.scopes_changing()
                .and_then(|()| self.sync_coverage())
                .and_then(|()| self.seed_scope(handle))
                .and_then(|()| point(self))
        } else {
            self.scopes_changing()
                .and_then(|()| point(self))
                .and_then(|()| self.sync_coverage())
                .and_then(|()| self.seed_scope(handle))
        }
        .and_then(|()| self.sync_levels());
        if let Err(e) = switched {
            // The earlier policy is still what the scope points at (the
            // switch is the last step that can fail but one).
            let applied = self.applied.remove(&handle).expect("inserted above");
            if !keep {
                self.uninstall(applied.policy_id, &applied.policy, false);
            }
            self.pending.insert(record.scope_name(), record);
            let _ = self.sync_coverage();
            let _ = self.sync_levels();
            return Err(e);
        }
        if !keep {
            let maps = self.kernel.maps();
            if record.cgroup_id != cgroup.id() {
                let _ = maps.clear_scope(record.cgroup_id);
                maps.clear_exec_started(record.cgroup_id);
            }
            maps.delete_policy_id(record.policy_id);
            self.registry.retire(record.policy_id);
        }
        self.save_state();
        Ok(handle)
    }

    /// Ends what an earlier process of the instance enforced and this
    /// enforcer did not take over: scopes not applied again, and pinned
    /// links it did not adopt. Call it once every scope is applied (until
    /// then they keep enforcing, so a restart has no gap).
    pub fn release_unadopted(&mut self) -> Result<Settled> {
        let mut settled = Settled::default();
        // The earlier process's links go last: until then, scopes count
        // as nesting (see `scopes_changing`).
        self.scopes_changing()?;
        let pending = std::mem::take(&mut self.pending);
        for (name, record) in pending {
            let maps = self.kernel.maps();
            let taken = self
                .applied
                .values()
                .any(|a| a.cgroup.id() == record.cgroup_id);
            if !taken && maps.scope_policy(record.cgroup_id) == Some(record.policy_id) {
                maps.clear_scope(record.cgroup_id)?;
                maps.clear_exec_started(record.cgroup_id);
            }
            if !self
                .applied
                .values()
                .any(|a| a.policy_id == record.policy_id)
            {
                maps.delete_policy_id(record.policy_id);
                self.registry.retire(record.policy_id);
            }
            settled.dropped.push(name);
        }
        if let Some(pins) = self.kernel.pins() {
            settled.released_links = pins.release_unclaimed()?;
        }
        self.sync_levels()?;
        self.save_state();
        Ok(settled)
    }

    /// Ends the enforcement: every scope is removed, and a pinned
    /// instance's links, maps and state with it (its programs detach).
    /// Without an instance this is what dropping the enforcer does.
    pub fn detach(mut self) -> Result<()> {
        for handle in self.handles() {
            self.remove(handle)?;
        }
        let Some(pins) = self.kernel.pins().cloned() else {
            self.released = true;
            return Ok(());
        };
        // The pins go after this enforcer's own descriptors close (each
        // of its maps, programs and links holds one; dropping it keeps the
        // pins): releasing them opens a few, and a process that ran out
        // must still be able to end what it started. Earlier processes'
        // links and scopes go with the rest.
        self.released = true;
        drop(self);
        pins.release_all()?;
        Ok(())
    }
}
