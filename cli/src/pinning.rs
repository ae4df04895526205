//! Pinned enforcement for `run` and `watch`: what they enforce outlives
//! them (SIGKILL included) until released on purpose, and a restart adopts
//! it.

use minerguard::{pin, Enforcer};

use crate::PREFIX;

/// What an earlier process of `name` left, if anything (read before the
/// new enforcer opens the instance).
pub fn earlier(name: &str) -> Option<pin::Instance> {
    pin::instance(name).ok().flatten()
}

/// Says what adoption did once every scope is applied, releases what the
/// earlier process enforced that this one does not (its scopes not asked
/// for again, links replaced), and says the enforcement is pinned. From
/// that line on, killing this process leaves the enforcement in place.
pub fn settle(enforcer: &mut Enforcer, earlier: Option<&pin::Instance>, quiet: bool) {
    let Some(name) = enforcer.instance().map(str::to_string) else {
        return;
    };
    if let Some(earlier) = earlier {
        let now = pin::instance(&name).ok().flatten();
        for old in &earlier.scopes {
            let new = now
                .as_ref()
                .and_then(|n| n.scopes.iter().find(|s| s.scope == old.scope));
            match new {
                Some(new) if new.policy_id == old.policy_id => eprintln!(
                    "{PREFIX}: adopted {} from an earlier `{name}`: profile `{}` kept as it was (policy {})",
                    old.scope, old.profile, old.policy_id
                ),
                Some(new) => eprintln!(
                    "{PREFIX}: adopted {} from an earlier `{name}`: profile `{}` swapped in for `{}` (policy {} -> {})",
                    old.scope, new.profile, old.profile, old.policy_id, new.policy_id
                ),
                None => {}
            }
        }
    }
    match enforcer.release_unadopted() {
        Ok(settled) => {
            for scope in settled.dropped {
                eprintln!(
                    "{PREFIX}: {scope} was enforced by an earlier `{name}` and is not asked for now: no longer enforced"
                );
            }
            if settled.released_links > 0 {
                eprintln!(
                    "{PREFIX}: released {} links an earlier `{name}` pinned that are not needed now",
                    settled.released_links
                );
            }
        }
        Err(e) => {
            eprintln!("{PREFIX}: warning: releasing what an earlier `{name}` left failed: {e}")
        }
    }
    let links = pin::instance(&name)
        .ok()
        .flatten()
        .map(|i| i.links.len())
        .unwrap_or(0);
    if !quiet {
        eprintln!(
            "{PREFIX}: enforcement pinned as instance `{name}` ({links} links): it outlives this process"
        );
    }
    state_problem(enforcer);
}

/// Says loudly when the instance's state could not be recorded.
pub fn state_problem(enforcer: &Enforcer) {
    if let Some(problem) = enforcer.state_problem() {
        eprintln!(
            "{PREFIX}: warning: {problem} (enforcement is in place; a restart would re-apply it)"
        );
    }
}

/// Cleans up stale instances: dead `run`s whose cgroup is empty, and any
/// instance whose process is gone and whose cgroups are all gone.
pub fn clean_stale() {
    for (prefix, run_cgroups, why) in [
        ("run-", true, "its process is gone and its cgroup is empty"),
        ("", false, "its process and its cgroups are gone"),
    ] {
        match pin::clean_stale(prefix, run_cgroups) {
            Ok(names) => {
                for name in names {
                    eprintln!("{PREFIX}: removed stale pinned instance `{name}` ({why})");
                }
            }
            Err(e) => eprintln!("{PREFIX}: warning: cleaning stale pinned instances failed: {e}"),
        }
    }
}
