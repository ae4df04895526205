//! Profiles: named rules, each one matcher and an action, parsed from YAML or
//! JSON or built in code.
//!
//! This is the subset the enforcer core enforces today (`exec.names`,
//! `connect.ports`); unknown keys are rejected so a profile never silently
//! means less than it says.

mod error;
mod validate;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use error::{Diagnostic, ProfileError};

/// The only `apiVersion` this release reads.
pub const API_VERSION: &str = "minerguard/v1";

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Allow, and report.
    Audit,
    /// The syscall fails with EPERM (on backends that can refuse it).
    Deny,
    /// Deny and SIGKILL the task.
    Kill,
}

impl Action {
    /// Lower-case name, as in profiles and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Audit => "audit",
            Action::Deny => "deny",
            Action::Kill => "kill",
        }
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

/// Exec matchers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecMatch {
    /// Basenames of the executed file, matched exactly (`xmrig`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// Outbound connection matchers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectMatch {
    /// Destination ports (TCP and UDP, IPv4 and IPv6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
}

/// One named rule: one matcher and an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique within the profile; every event names the rule that fired.
    pub name: String,
    /// What happens on a match.
    pub action: Action,
    /// Exec matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecMatch>,
    /// Connect matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectMatch>,
}

impl Rule {
    /// A rule denying (or killing, or auditing) exec of these basenames.
    pub fn exec_names<S: Into<String>>(
        name: impl Into<String>,
        action: Action,
        names: impl IntoIterator<Item = S>,
    ) -> Self {
        Rule {
            name: name.into(),
            action,
            exec: Some(ExecMatch {
                names: names.into_iter().map(Into::into).collect(),
            }),
            connect: None,
        }
    }

    /// A rule on connections to these destination ports.
    pub fn connect_ports(
        name: impl Into<String>,
        action: Action,
        ports: impl IntoIterator<Item = u16>,
    ) -> Self {
        Rule {
            name: name.into(),
            action,
            exec: None,
            connect: Some(ConnectMatch {
                ports: ports.into_iter().collect(),
            }),
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
    /// The rules, in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
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
    pub fn from_yaml(text: &str) -> Result<Self, ProfileError> {
        Self::parse(text, None)
    }

    /// Reads, parses and validates a profile file (YAML or JSON).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ProfileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, Some(path))
    }

    fn parse(text: &str, file: Option<&Path>) -> Result<Self, ProfileError> {
        let profile: Profile =
            serde_yaml::from_str(text).map_err(|e| ProfileError::syntax(file, &e))?;
        profile.validate().map_err(|e| e.in_file(file))?;
        Ok(profile)
    }

    /// Checks everything the parser cannot: returns every problem at once.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let diagnostics = validate::check(self);
        if diagnostics.is_empty() {
            Ok(())
        } else {
            Err(ProfileError::Invalid {
                file: None,
                diagnostics,
            })
        }
    }

    /// The profile as YAML.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a Profile always serializes")
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
        assert_eq!(p.rules[1].connect.as_ref().unwrap().ports.len(), 29);
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
    fn wrong_type_is_a_syntax_error() {
        let err = Profile::from_yaml(
            "apiVersion: minerguard/v1\nname: x\nrules:\n  - name: r\n    action: deny\n    connect: { ports: [99999] }\n",
        )
        .unwrap_err();
        assert!(matches!(err, ProfileError::Syntax { .. }), "{err}");
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
                Rule {
                    name: "none".into(),
                    action: Action::Audit,
                    exec: None,
                    connect: None,
                },
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
        r.connect = Some(ConnectMatch { ports: vec![1] });
        let err = Profile::new("t").rule(r).validate().unwrap_err();
        assert!(err.to_string().contains("exactly one matcher"), "{err}");
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let err = Profile::from_file("/nonexistent/p.yaml").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/p.yaml"));
    }
}
