//! Profile → [`KernelPolicy`]: the exact map entries every backend writes.
//!
//! Pure and deterministic (same profile, same entries, in the same order), and
//! independent of the running kernel, so it is unit-tested without root.

use std::{collections::BTreeMap, sync::Arc};

use crate::profile::{Action, Mode, Profile, ProfileError};

/// Sizes of the kernel maps (bpf/include/maps.h and event.h); profiles are
/// validated against them so an apply never fails half-way on a full map.
pub mod limits {
    /// Longest exec basename, in bytes (MG_NAME_LEN - 1 for the NUL).
    pub const MAX_NAME_BYTES: usize = 63;
    /// Rules in one profile (rule indices travel in events).
    pub const MAX_RULES: usize = 4096;
    /// Entries of the shared `mg_exec_names` map; one profile may use half,
    /// so an update can write its new entries before dropping the old ones.
    pub const MAX_EXEC_NAMES: usize = 16384 / 2;
    /// Entries of the shared `mg_ports` map, halved as above.
    pub const MAX_PORTS: usize = 65536 / 2;
}

/// What kind of operation a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// Program execution.
    Exec,
    /// Outbound connection.
    Connect,
}

impl RuleKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Exec => "exec",
            RuleKind::Connect => "connect",
        }
    }
}

/// A rule as the kernel sees it: its index in the profile and effective action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleRef {
    /// Index into [`KernelPolicy::rules`].
    pub rule_idx: u32,
    /// The action after the profile mode is applied.
    pub action: Action,
}

/// Userspace facts about one rule, for naming it in events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledRule {
    /// Rule name.
    pub name: Arc<str>,
    /// What it matches.
    pub kind: RuleKind,
    /// Effective action.
    pub action: Action,
}

/// A compiled profile: the map entries for one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPolicy {
    /// Profile name.
    pub profile: Arc<str>,
    /// Rules in profile order.
    pub rules: Vec<CompiledRule>,
    /// `exec.names` entries: basename → rule.
    pub exec_names: BTreeMap<String, RuleRef>,
    /// `connect.ports` entries: port → rule.
    pub ports: BTreeMap<u16, RuleRef>,
}

impl KernelPolicy {
    /// Validates and compiles `profile`.
    ///
    /// When two rules match the same key, the stronger action wins
    /// (kill > deny > audit), and the earlier rule among equals.
    pub fn compile(profile: &Profile) -> Result<Self, ProfileError> {
        profile.validate()?;
        let effective = |a: Action| match profile.mode {
            Mode::Audit => Action::Audit,
            Mode::Enforce => a,
        };
        let mut policy = KernelPolicy {
            profile: profile.name.as_str().into(),
            rules: Vec::with_capacity(profile.rules.len()),
            exec_names: BTreeMap::new(),
            ports: BTreeMap::new(),
        };
        for (i, rule) in profile.rules.iter().enumerate() {
            let r = RuleRef {
                rule_idx: i as u32,
                action: effective(rule.action),
            };
            let kind = if let Some(exec) = &rule.exec {
                for name in &exec.names {
                    insert_strongest(&mut policy.exec_names, name.clone(), r);
                }
                RuleKind::Exec
            } else {
                for port in rule.connect.iter().flat_map(|c| &c.ports) {
                    insert_strongest(&mut policy.ports, *port, r);
                }
                RuleKind::Connect
            };
            policy.rules.push(CompiledRule {
                name: rule.name.as_str().into(),
                kind,
                action: r.action,
            });
        }
        Ok(policy)
    }

    /// Whether any rule of this kind is present.
    pub fn has(&self, kind: RuleKind) -> bool {
        self.rules.iter().any(|r| r.kind == kind)
    }
}

fn insert_strongest<K: Ord>(map: &mut BTreeMap<K, RuleRef>, key: K, r: RuleRef) {
    let entry = map.entry(key).or_insert(r);
    if r.action > entry.action {
        *entry = r;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Rule;

    #[test]
    fn stronger_action_wins_on_shared_keys() {
        let p = Profile::new("t")
            .rule(Rule::connect_ports("a", Action::Audit, [3333, 4444]))
            .rule(Rule::connect_ports("b", Action::Kill, [3333]))
            .rule(Rule::connect_ports("c", Action::Deny, [3333]));
        let k = KernelPolicy::compile(&p).unwrap();
        assert_eq!(
            k.ports[&3333],
            RuleRef {
                rule_idx: 1,
                action: Action::Kill
            }
        );
        assert_eq!(k.ports[&4444].rule_idx, 0);
    }

    #[test]
    fn audit_mode_turns_everything_into_audit() {
        let p = Profile::new("t")
            .with_mode(Mode::Audit)
            .rule(Rule::exec_names("m", Action::Kill, ["xmrig"]));
        let k = KernelPolicy::compile(&p).unwrap();
        assert_eq!(k.exec_names["xmrig"].action, Action::Audit);
        assert_eq!(k.rules[0].action, Action::Audit);
    }

    #[test]
    fn compile_is_deterministic() {
        let p = Profile::new("t")
            .rule(Rule::exec_names("m", Action::Deny, ["b", "a", "c"]))
            .rule(Rule::connect_ports("p", Action::Deny, [9, 1, 5]));
        assert_eq!(
            KernelPolicy::compile(&p).unwrap(),
            KernelPolicy::compile(&p).unwrap()
        );
        let k = KernelPolicy::compile(&p).unwrap();
        assert_eq!(k.exec_names.keys().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    }

    #[test]
    fn invalid_profile_does_not_compile() {
        let p = Profile::new("t").rule(Rule::connect_ports("p", Action::Deny, [0]));
        assert!(KernelPolicy::compile(&p).is_err());
    }
}
