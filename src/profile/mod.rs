//! Profiles: named rules, each one matcher and an action, parsed from YAML or
//! JSON (with `extends`) or built in code. `PROFILES.md` documents the keys.

mod collect;
mod error;
mod extends;
pub mod indicators;
mod input;
mod matchers;
mod nesting;
pub mod syscalls;
mod tree;
mod validate;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use error::{Diagnostic, FileKind, ProfileError};
pub use input::MAX_PROFILE_BYTES;
pub use matchers::{
    ArgCmp, ArgOp, BehaviourMatch, ConnectMatch, ExecMatch, Matcher, MatcherKind, OpenMatch,
    PortSpec, ScopeMatch, SeccompAction, SeccompMatch, SeccompPreset, StratumMatch, SyscallRule,
};
pub use nesting::MAX_NESTING;

/// The only `apiVersion` this release reads.
pub const API_VERSION: &str = "minerguard/v1";

/// What a rule does when it matches. Ordered by strength (the derived
/// `Ord`): `audit < deny < kill < kill-container`; where two rules match
/// the same key, the stronger one wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Allow, and report.
    Audit,
    /// The syscall fails with EPERM (on backends that can refuse it).
    Deny,
    /// Deny and SIGKILL the task.
    Kill,
    /// `kill`, then SIGKILL every process of the cgroup the task was in
    /// (its container under Kubernetes or Podman; under `minerguard run`,
    /// the run's cgroup), from userspace, through `cgroup.kill`
    /// ([`crate::cgroup_kill`]). The kernel carries it out as `kill`.
    #[serde(rename = "kill-container")]
    KillContainer,
}

impl Action {
    /// Every action, weakest first.
    pub const ALL: [Action; 4] = [
        Action::Audit,
        Action::Deny,
        Action::Kill,
        Action::KillContainer,
    ];

    /// Lower-case name, as in profiles and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Audit => "audit",
            Action::Deny => "deny",
            Action::Kill => "kill",
            Action::KillContainer => "kill-container",
        }
    }

    /// The action named `s` in profiles and events (`deny`, `kill`,
    /// `kill-container`, `audit`).
    pub fn from_name(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether the task is killed (`kill` and `kill-container`).
    pub fn kills(self) -> bool {
        self >= Action::Kill
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Profile-wide mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Rules act as written.
    #[default]
    Enforce,
    /// Every deny/kill is carried out as audit (dry run).
    Audit,
}

/// One named rule: one matcher and an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique within the profile; every event names the rule that fired.
    pub name: String,
    /// What happens on a match.
    pub action: Action,
    /// Free text, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Exec matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecMatch>,
    /// Connect matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectMatch>,
    /// Stratum protocol matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stratum: Option<StratumMatch>,
    /// File-open matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<OpenMatch>,
    /// Scope matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeMatch>,
    /// Seccomp filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<SeccompMatch>,
    /// Mining-behaviour matcher (judged by sampling, not in the kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behaviour: Option<BehaviourMatch>,
}

impl Rule {
    /// A rule with no matcher yet (builders and the collector fill it in).
    pub(super) fn with(name: impl Into<String>, action: Action) -> Self {
        Rule {
            name: name.into(),
            action,
            description: None,
            exec: None,
            connect: None,
            stratum: None,
            open: None,
            scope: None,
            seccomp: None,
            behaviour: None,
        }
    }

    fn with_exec(name: impl Into<String>, action: Action, exec: ExecMatch) -> Self {
        Rule {
            exec: Some(exec),
            ..Rule::with(name, action)
        }
    }

    fn with_connect(name: impl Into<String>, action: Action, connect: ConnectMatch) -> Self {
        Rule {
            connect: Some(connect),
            ..Rule::with(name, action)
        }
    }

    /// `exec.names`: exec of files with these basenames.
    pub fn exec_names<S: Into<String>>(
        name: impl Into<String>,
        action: Action,
        names: impl IntoIterator<Item = S>,
    ) -> Self {
        let names = names.into_iter().map(Into::into).collect();
        Rule::with_exec(
            name,
            action,
            ExecMatch {
                names,
                ..Default::default()
            },
        )
    }

    /// `exec.path_prefixes`: exec of files under these path prefixes.
    pub fn exec_path_prefixes<S: Into<String>>(
        name: impl Into<String>,
        action: Action,
        prefixes: impl IntoIterator<Item = S>,
    ) -> Self {
        let path_prefixes = prefixes.into_iter().map(Into::into).collect();
        Rule::with_exec(
            name,
            action,
            ExecMatch {
                path_prefixes,
                ..Default::default()
            },
        )
    }

    /// `exec.files`: exec of these files, by (device, inode).
    pub fn exec_files<S: Into<String>>(
        name: impl Into<String>,
        action: Action,
        files: impl IntoIterator<Item = S>,
    ) -> Self {
        let files = files.into_iter().map(Into::into).collect();
        Rule::with_exec(
            name,
            action,
            ExecMatch {
                files,
                ..Default::default()
            },
        )
    }

    /// `exec.dirs`: exec of anything under these directories.
    pub fn exec_dirs<S: Into<String>>(
        name: impl Into<String>,
        action: Action,
        dirs: impl IntoIterator<Item = S>,
    ) -> Self {
        let dirs = dirs.into_iter().map(Into::into).collect();
        Rule::with_exec(
            name,
            action,
            ExecMatch {
                dirs,
                ..Default::default()
            },
        )
    }

    /// `exec.memfd`: fileless exec.
    pub fn exec_memfd(name: impl Into<String>, action: Action) -> Self {
        Rule::with_exec(
            name,
            action,
            ExecMatch {
                memfd: true,
                ..Default::default()
            },
        )
    }

    /// `exec.drift`: files not from the container's image.
    pub fn exec_drift(name: impl Into<String>, action: Action) -> Self {
        Rule::with_exec(
            name,
            action,
            ExecMatch {
                drift: true,
                ..Default::default()
            },
        )
    }

    /// `exec.cmdline`: argv containing one of these substrings.
    pub fn exec_cmdline<S: Into<String>>(
        name: impl Into<String>,
        action: Action,
        substrings: impl IntoIterator<Item = S>,
    ) -> Self {
        let cmdline = substrings.into_iter().map(Into::into).collect();
        Rule::with_exec(
            name,
            action,
            ExecMatch {
                cmdline,
                ..Default::default()
            },
        )
    }

    /// `exec.allow_only`: only these paths or prefixes (ending in `/`) may run.
    pub fn exec_allow_only<S: Into<String>>(
        name: impl Into<String>,
        action: Action,
        allowed: impl IntoIterator<Item = S>,
    ) -> Self {
        let allow_only = allowed.into_iter().map(Into::into).collect();
        Rule::with_exec(
            name,
            action,
            ExecMatch {
                allow_only,
                ..Default::default()
            },
        )
    }

    /// `exec.no_new_exec`: the scope's first exec runs, later ones are refused.
    pub fn exec_no_new_exec(name: impl Into<String>, action: Action) -> Self {
        Rule::with_exec(
            name,
            action,
            ExecMatch {
                no_new_exec: true,
                ..Default::default()
            },
        )
    }

    /// `connect.ports`: connections to these destination ports.
    pub fn connect_ports<P: Into<PortSpec>>(
        name: impl Into<String>,
        action: Action,
        ports: impl IntoIterator<Item = P>,
    ) -> Self {
        let ports = ports.into_iter().map(Into::into).collect();
        Rule::with_connect(
            name,
            action,
            ConnectMatch {
                ports,
                ..Default::default()
            },
        )
    }

    /// `connect.cidrs`: connections into these networks.
    pub fn connect_cidrs<S: Into<String>>(
        name: impl Into<String>,
        action: Action,
        cidrs: impl IntoIterator<Item = S>,
    ) -> Self {
        let cidrs = cidrs.into_iter().map(Into::into).collect();
        Rule::with_connect(
            name,
            action,
            ConnectMatch {
                cidrs,
                ..Default::default()
            },
        )
    }

    /// `connect.domains`: connections to these domains' addresses.
    pub fn connect_domains<S: Into<String>>(
        name: impl Into<String>,
        action: Action,
        domains: impl IntoIterator<Item = S>,
    ) -> Self {
        let domains = domains.into_iter().map(Into::into).collect();
        Rule::with_connect(
            name,
            action,
            ConnectMatch {
                domains,
                ..Default::default()
            },
        )
    }

    /// `stratum`: the Stratum protocol, built-in signatures plus `extra`.
    pub fn stratum<S: Into<String>>(
        name: impl Into<String>,
        action: Action,
        extra: impl IntoIterator<Item = S>,
    ) -> Self {
        Rule {
            stratum: Some(StratumMatch {
                signatures: extra.into_iter().map(Into::into).collect(),
                methods: Vec::new(),
            }),
            ..Rule::with(name, action)
        }
    }

    /// `open.msr`: opens of the CPU MSR devices.
    pub fn open_msr(name: impl Into<String>, action: Action) -> Self {
        Rule {
            open: Some(OpenMatch { msr: true }),
            ..Rule::with(name, action)
        }
    }

    /// `scope.escape`: a task of the scope leaving it.
    pub fn scope_escape(name: impl Into<String>, action: Action) -> Self {
        Rule {
            scope: Some(ScopeMatch { escape: true }),
            ..Rule::with(name, action)
        }
    }

    /// `seccomp`: a seccomp filter.
    pub fn seccomp(name: impl Into<String>, action: Action, filter: SeccompMatch) -> Self {
        Rule {
            seccomp: Some(filter),
            ..Rule::with(name, action)
        }
    }

    /// `behaviour`: mining behaviour, with these thresholds (unset ones
    /// take their defaults).
    pub fn behaviour(name: impl Into<String>, action: Action, thresholds: BehaviourMatch) -> Self {
        Rule {
            behaviour: Some(thresholds),
            ..Rule::with(name, action)
        }
    }
}

/// A security profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Profile {
    /// Must be [`API_VERSION`].
    pub api_version: String,
    /// Profile name, shown in events.
    pub name: String,
    /// Enforce, or audit everything.
    #[serde(default)]
    pub mode: Mode,
    /// The rules, in order (after `extends` is resolved: the base's rules
    /// first, each replaced by a rule of the same name here).
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// A profile that passed [`Profile::validate`]: the only input of
/// [`KernelPolicy::from_valid`](crate::KernelPolicy::from_valid),
/// [`SeccompPolicy::from_valid`](crate::SeccompPolicy::from_valid) and
/// [`Enforcer::apply_valid`](crate::Enforcer::apply_valid), so none of them
/// checks it again. Borrowed from `validate`, or owned from
/// [`Profile::load`] and [`ValidProfile::bundled`] (read and validated once);
/// either way it cannot change, so it stays valid.
#[derive(Debug, Clone)]
pub struct ValidProfile<'a>(std::borrow::Cow<'a, Profile>);

impl<'a> ValidProfile<'a> {
    /// The validated profile.
    pub fn profile(&self) -> &Profile {
        &self.0
    }

    /// Each rule with its one matcher, typed.
    pub fn rules(&self) -> impl Iterator<Item = (&Rule, Matcher<'_>)> {
        self.0.rules.iter().map(|r| {
            (
                r,
                r.matcher().expect("a valid rule has exactly one matcher"),
            )
        })
    }

    /// A profile the crate has just validated (e.g. compiled): no check.
    pub(crate) fn checked(profile: Profile) -> ValidProfile<'static> {
        ValidProfile(std::borrow::Cow::Owned(profile))
    }

    /// An owned copy (a clone when borrowed).
    pub fn into_owned(self) -> ValidProfile<'static> {
        ValidProfile(std::borrow::Cow::Owned(self.0.into_owned()))
    }

    /// A bundled profile by name (`default`, `container-strict`, `audit`).
    pub fn bundled(name: &str) -> Option<ValidProfile<'static>> {
        Profile::bundled(name).map(|p| ValidProfile(std::borrow::Cow::Owned(p)))
    }
}

impl std::ops::Deref for ValidProfile<'_> {
    type Target = Profile;

    fn deref(&self) -> &Profile {
        &self.0
    }
}

impl Profile {
    /// An empty profile in enforce mode (add rules with [`Profile::rule`]).
    pub fn new(name: impl Into<String>) -> Self {
        Profile {
            api_version: API_VERSION.to_string(),
            name: name.into(),
            mode: Mode::Enforce,
            rules: Vec::new(),
        }
    }

    /// Adds a rule (builder style).
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Sets the mode (builder style).
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Parses and validates YAML (JSON is YAML too, so both are accepted).
    /// `extends` may name a bundled profile, or a path relative to the
    /// current directory.
    ///
    /// On failure every problem is reported at once, each with its line
    /// and column: wrong types and unknown keys (the rules that have them
    /// are left out of the other checks) along with everything
    /// [`Profile::validate`] finds. Text nested deeper than
    /// [`MAX_NESTING`] is refused before it is parsed.
    pub fn from_yaml(text: &str) -> Result<Self, ProfileError> {
        extends::load_text(text, None)
    }

    /// Parses and validates JSON.
    pub fn from_json(text: &str) -> Result<Self, ProfileError> {
        extends::load_text(text, None)
    }

    /// Reads, parses and validates a profile file (YAML or JSON); `extends`
    /// paths are relative to the file. This is `check`'s entry point: the
    /// error's [`ProfileError::diagnostics`] carry file, line and column.
    ///
    /// Only regular files of at most [`MAX_PROFILE_BYTES`] are read (the
    /// same holds for files named by `extends`): a FIFO, a device or a
    /// directory is refused without blocking or reading.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ProfileError> {
        extends::load_file(path.as_ref())
    }

    /// [`Profile::from_file`], kept as the [`ValidProfile`] it was checked
    /// to be: what is enforced from it is not validated again.
    pub fn load(path: impl AsRef<Path>) -> Result<ValidProfile<'static>, ProfileError> {
        // from_file validated it (`extends::load` ends in `validate`).
        Self::from_file(path).map(|p| ValidProfile(std::borrow::Cow::Owned(p)))
    }

    /// A bundled profile by name (`default`, `container-strict`, `audit`).
    pub fn bundled(name: &str) -> Option<Self> {
        extends::bundled_text(name)
            .map(|t| extends::load_text(t, None).expect("bundled profiles are valid (tested)"))
    }

    /// Names of the bundled profiles.
    pub fn bundled_names() -> &'static [&'static str] {
        extends::BUNDLED_NAMES
    }

    /// Checks everything the parser cannot: returns every problem at once,
    /// or the profile as a [`ValidProfile`], which is what the compilers
    /// take (they never validate again).
    pub fn validate(&self) -> Result<ValidProfile<'_>, ProfileError> {
        let diagnostics = validate::check(self);
        if diagnostics.is_empty() {
            Ok(ValidProfile(std::borrow::Cow::Borrowed(self)))
        } else {
            Err(ProfileError::Invalid {
                file: None,
                diagnostics,
            })
        }
    }

    /// One line: the name, mode and each rule's action, matcher and name
    /// (what `minerguard check` prints for a valid profile).
    pub fn summary(&self) -> String {
        let mode = match self.mode {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        };
        let rules: Vec<String> = self
            .rules
            .iter()
            .map(|r| {
                let m = r.matcher_kind().map(|m| m.as_str()).unwrap_or("?");
                format!("{} {m} `{}`", r.action, r.name)
            })
            .collect();
        format!(
            "profile `{}` ({mode} mode), {} rules: {}",
            self.name,
            self.rules.len(),
            rules.join("; ")
        )
    }

    /// The profile as YAML.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a Profile always serializes")
    }

    /// The profile as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a Profile always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUNDLED_DEFAULT: &str = include_str!("../../profiles/default.yaml");

    #[test]
    fn bundled_default_parses_and_round_trips() {
        let p = Profile::from_yaml(BUNDLED_DEFAULT).unwrap();
        assert_eq!(p.name, "default");
        assert_eq!(p.rules[0].action, Action::Deny);
        assert!(p.rules[0]
            .exec
            .as_ref()
            .unwrap()
            .names
            .contains(&"xmrig".to_string()));
        let pool = p
            .rules
            .iter()
            .find(|r| r.name == "miner-pool-port")
            .unwrap();
        assert_eq!(pool.connect.as_ref().unwrap().ports.len(), 29);
        assert_eq!(
            pool.action,
            Action::Audit,
            "pool ports are audit-only on a host"
        );
        let again = Profile::from_yaml(&p.to_yaml()).unwrap();
        assert_eq!(p, again);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            Profile::from_yaml(&json).unwrap(),
            p,
            "JSON input reads too"
        );
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let err = Profile::from_yaml(
            "apiVersion: minerguard/v1\nname: x\nrules:\n  - name: r\n    action: deny\n    exec: { nmaes: [a] }\n",
        )
        .unwrap_err();
        let d = &err.diagnostics()[0];
        assert!(d.message.contains("unknown field `nmaes`"), "{d}");
        assert_eq!(d.line, Some(6));
    }

    #[test]
    fn wrong_type_is_reported_with_the_other_problems() {
        let err = Profile::from_yaml(
            "apiVersion: minerguard/v1\nname: x\nrules:\n  - name: r\n    action: deny\n    connect: { ports: [99999] }\n",
        )
        .unwrap_err();
        assert!(matches!(err, ProfileError::Invalid { .. }), "{err}");
        let d = &err.diagnostics()[0];
        assert_eq!(
            (d.field.as_str(), d.line, d.column),
            ("rules[0].connect.ports[0]", Some(6), Some(24)),
            "{d}"
        );
        let err = Profile::from_yaml("apiVersion: minerguard/v1\nname: x\nrules:\n  - name: r\n    action: block\n    exec: { names: [a] }\n").unwrap_err();
        assert!(err.to_string().contains("unknown variant `block`"), "{err}");
    }

    #[test]
    fn validation_reports_every_problem_with_its_path() {
        let p = Profile {
            api_version: "minerguard/v0".into(),
            name: "".into(),
            mode: Mode::Enforce,
            rules: vec![
                Rule::exec_names("dup", Action::Deny, ["ok", "a/b", &"x".repeat(64)]),
                Rule::connect_ports("dup", Action::Deny, Vec::<u16>::new()),
                Rule::with("none", Action::Audit),
            ],
        };
        let fields: Vec<String> = p
            .validate()
            .unwrap_err()
            .diagnostics()
            .into_iter()
            .map(|d| d.field)
            .collect();
        assert_eq!(
            fields,
            [
                "apiVersion",
                "name",
                "rules[0].exec.names[1]",
                "rules[0].exec.names[2]",
                "rules[1].name",
                "rules[1].connect",
                "rules[2]",
            ]
        );
    }

    #[test]
    fn a_rule_with_two_matchers_is_rejected() {
        let mut r = Rule::exec_names("r", Action::Deny, ["a"]);
        r.connect = Some(ConnectMatch {
            ports: vec![PortSpec::single(1)],
            ..Default::default()
        });
        let err = Profile::new("t").rule(r).validate().unwrap_err();
        assert!(err.to_string().contains("exactly one matcher"), "{err}");
    }

    const KILL_CONTAINER: &str = "apiVersion: minerguard/v1\nname: x\nrules:\n  - name: r\n    action: kill-container\n    exec: { names: [xmrig] }\n";

    #[test]
    fn kill_container_parses_round_trips_and_is_the_strongest() {
        let p = Profile::from_yaml(KILL_CONTAINER).unwrap();
        assert_eq!(p.rules[0].action, Action::KillContainer);
        assert!(
            p.to_yaml().contains("action: kill-container"),
            "{}",
            p.to_yaml()
        );
        assert_eq!(Profile::from_yaml(&p.to_yaml()).unwrap(), p);
        assert_eq!(Profile::from_json(&p.to_json()).unwrap(), p);
        assert!(p.summary().contains("kill-container exec.names `r`"));
        assert_eq!(
            serde_json::to_value(Action::KillContainer).unwrap(),
            "kill-container"
        );
        let mut sorted = Action::ALL;
        sorted.sort();
        assert_eq!(sorted, Action::ALL, "ALL is weakest first");
        assert_eq!(Action::ALL.iter().max(), Some(&Action::KillContainer));
        for a in Action::ALL {
            assert_eq!(Action::from_name(a.as_str()), Some(a));
            assert_eq!(a.kills(), matches!(a, Action::Kill | Action::KillContainer));
        }
        assert_eq!(Action::from_name("kill_container"), None);
    }

    #[test]
    fn a_bad_action_names_its_field_and_every_choice() {
        let text = KILL_CONTAINER.replace("kill-container", "kill_container");
        let err = Profile::from_yaml(&text).unwrap_err();
        let d = &err.diagnostics()[0];
        assert_eq!(
            (d.field.as_str(), d.line, d.column),
            ("rules[0].action", Some(5), Some(13)),
            "{d}"
        );
        for choice in ["`audit`", "`deny`", "`kill`", "`kill-container`"] {
            assert!(d.message.contains(choice), "{d}");
        }
    }

    #[test]
    fn kill_container_is_refused_on_a_seccomp_rule_only() {
        let filter = SeccompMatch {
            default: Some(SeccompAction::Allow),
            ..Default::default()
        };
        let p = Profile::new("t")
            .rule(Rule::exec_names("e", Action::KillContainer, ["xmrig"]))
            .rule(Rule::connect_ports("c", Action::KillContainer, [3333]))
            .rule(Rule::stratum(
                "s",
                Action::KillContainer,
                Vec::<String>::new(),
            ))
            .rule(Rule::open_msr("o", Action::KillContainer))
            .rule(Rule::scope_escape("x", Action::KillContainer))
            .rule(Rule::seccomp("k", Action::Kill, filter.clone()));
        assert!(p.validate().is_ok(), "{:?}", p.validate().err());
        let p = p.rule(Rule::seccomp("bad", Action::KillContainer, filter));
        let err = p.validate().unwrap_err();
        let d = err.diagnostics();
        assert_eq!(d.len(), 1, "{err}");
        assert_eq!(d[0].field, "rules[6].action");
        assert!(d[0].message.contains("`kill-container`"), "{}", d[0]);
        assert!(d[0].message.contains("seccomp"), "{}", d[0]);
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let err = Profile::from_file("/nonexistent/p.yaml").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/p.yaml"));
    }
}
