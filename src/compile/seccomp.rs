//! Profile → [`SeccompPolicy`]: the syscall rules of every `seccomp` rule,
//! merged, with audit applied, in a deterministic order.

use crate::profile::{
    syscalls, Action, ArgCmp, ArgOp, Diagnostic, Mode, Profile, ProfileError, SeccompAction,
    SeccompPreset, SyscallRule, ValidProfile,
};

/// The calls [`SeccompPreset::Miner`] refuses with EPERM (see its docs for why).
const MINER_PRESET: &[&str] = &[
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "bpf",
    "perf_event_open",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
];

/// The rules a preset stands for.
fn preset_rules(p: SeccompPreset) -> Vec<SyscallRule> {
    match p {
        SeccompPreset::Miner => vec![
            SyscallRule {
                names: MINER_PRESET.iter().map(|s| s.to_string()).collect(),
                action: SeccompAction::Errno(1),
                args: vec![],
            },
            // personality(0xffffffff) only queries the current persona.
            SyscallRule {
                names: vec!["personality".into()],
                action: SeccompAction::Errno(1),
                args: vec![ArgCmp {
                    index: 0,
                    op: ArgOp::Ne,
                    value: 0xffff_ffff,
                    mask: None,
                }],
            },
        ],
    }
}

/// One syscall's action (under optional argument conditions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompEntry {
    /// Syscall name.
    pub syscall: String,
    /// Its x86_64 number.
    pub number: u32,
    /// What the filter does.
    pub action: SeccompAction,
    /// Conditions, all of which must hold.
    pub args: Vec<ArgCmp>,
    /// Index of the profile rule it came from.
    pub rule_idx: u32,
}

/// A seccomp filter description, independent of libseccomp and the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompPolicy {
    /// Action for syscalls no entry names.
    pub default: SeccompAction,
    /// Entries, sorted by syscall name then profile order.
    pub entries: Vec<SeccompEntry>,
}

impl SeccompPolicy {
    /// The seccomp part of `profile`, or `None` when it has no `seccomp` rule.
    ///
    /// Audit (the rule's action, or the profile mode) turns every action
    /// other than allow into `log`: the syscall runs and is reported.
    pub fn compile(profile: &Profile) -> Result<Option<Self>, ProfileError> {
        Self::from_valid(&profile.validate()?)
    }

    /// [`SeccompPolicy::compile`] of a validated profile: not validated
    /// again.
    pub fn from_valid(profile: &ValidProfile<'_>) -> Result<Option<Self>, ProfileError> {
        let profile = profile.profile();
        let mut default: Option<(usize, SeccompAction)> = None;
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        for (i, rule) in profile.rules.iter().enumerate() {
            let Some(section) = &rule.seccomp else {
                continue;
            };
            let audit = profile.mode == Mode::Audit || rule.action == Action::Audit;
            let soften = |a: SeccompAction| match a {
                SeccompAction::Allow => a,
                _ if audit => SeccompAction::Log,
                _ => a,
            };
            if let Some(d) = section.default.map(soften) {
                match default {
                    Some((first, prev)) if prev != d => problems.push(Diagnostic::new(
                        format!("rules[{i}].seccomp.default"),
                        format!(
                            "conflicting rules: the default action is already {prev:?} in rules[{first}]"
                        ),
                    )),
                    Some(_) => {}
                    None => default = Some((i, d)),
                }
            }
            let preset = section.preset.map(preset_rules).unwrap_or_default();
            for sc in section.syscalls.iter().chain(&preset) {
                for name in &sc.names {
                    entries.push(SeccompEntry {
                        syscall: name.clone(),
                        number: syscalls::number(name).expect("validated"),
                        action: soften(sc.action),
                        args: sc.args.clone(),
                        rule_idx: i as u32,
                    });
                }
            }
        }
        if !problems.is_empty() {
            return Err(ProfileError::Invalid {
                file: None,
                diagnostics: problems,
            });
        }
        if default.is_none() && entries.is_empty() {
            return Ok(None);
        }
        // Stable sort: entries of one syscall keep profile order.
        entries.sort_by(|a, b| a.syscall.cmp(&b.syscall));
        Ok(Some(SeccompPolicy {
            default: default.map_or(SeccompAction::Allow, |(_, d)| d),
            entries,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Rule, SeccompMatch, SyscallRule};

    fn filter(default: Option<SeccompAction>, calls: &[(&str, SeccompAction)]) -> SeccompMatch {
        SeccompMatch {
            default,
            preset: None,
            syscalls: calls
                .iter()
                .map(|(n, a)| SyscallRule {
                    names: vec![n.to_string()],
                    action: *a,
                    args: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn merges_sorts_and_audits() {
        let p = Profile::new("t")
            .rule(Rule::seccomp(
                "a",
                Action::Deny,
                filter(
                    None,
                    &[
                        ("ptrace", SeccompAction::Errno(1)),
                        ("bpf", SeccompAction::KillProcess),
                    ],
                ),
            ))
            .rule(Rule::seccomp(
                "b",
                Action::Audit,
                filter(None, &[("perf_event_open", SeccompAction::Errno(1))]),
            ));
        let s = SeccompPolicy::compile(&p).unwrap().unwrap();
        assert_eq!(s.default, SeccompAction::Allow);
        let names: Vec<&str> = s.entries.iter().map(|e| e.syscall.as_str()).collect();
        assert_eq!(names, ["bpf", "perf_event_open", "ptrace"]);
        assert_eq!(
            s.entries[1].action,
            SeccompAction::Log,
            "audit rule logs only"
        );
        assert_eq!(s.entries[2].number, 101);
    }

    #[test]
    fn no_seccomp_rule_is_none() {
        let p = Profile::new("t").rule(Rule::exec_names("m", Action::Deny, ["xmrig"]));
        assert_eq!(SeccompPolicy::compile(&p).unwrap(), None);
    }

    #[test]
    fn conflicting_defaults_are_an_error() {
        let p = Profile::new("t")
            .rule(Rule::seccomp(
                "a",
                Action::Deny,
                filter(Some(SeccompAction::Allow), &[]),
            ))
            .rule(Rule::seccomp(
                "b",
                Action::Deny,
                filter(Some(SeccompAction::KillProcess), &[]),
            ));
        let e = SeccompPolicy::compile(&p).unwrap_err();
        assert_eq!(e.diagnostics()[0].field, "rules[1].seccomp.default");
    }
}
