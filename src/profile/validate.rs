//! Checks a parsed profile against the language rules and the kernel limits.

use std::collections::HashSet;

use super::{Diagnostic, Profile, Rule, API_VERSION};
use crate::compile::limits;

/// Every problem in `profile`, in document order.
pub(super) fn check(profile: &Profile) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if profile.api_version != API_VERSION {
        out.push(Diagnostic::new(
            "apiVersion",
            format!(
                "unsupported apiVersion `{}`, expected `{API_VERSION}`",
                profile.api_version
            ),
        ));
    }
    if profile.name.trim().is_empty() {
        out.push(Diagnostic::new("name", "profile name must not be empty"));
    }
    if profile.rules.len() > limits::MAX_RULES {
        out.push(Diagnostic::new(
            "rules",
            format!(
                "{} rules; at most {} fit in one profile",
                profile.rules.len(),
                limits::MAX_RULES
            ),
        ));
    }
    let mut seen = HashSet::new();
    let (mut names, mut ports) = (0usize, 0usize);
    for (i, rule) in profile.rules.iter().enumerate() {
        let at = format!("rules[{i}]");
        if rule.name.trim().is_empty() {
            out.push(Diagnostic::new(
                format!("{at}.name"),
                "rule name must not be empty",
            ));
        } else if !seen.insert(rule.name.as_str()) {
            out.push(Diagnostic::new(
                format!("{at}.name"),
                format!("duplicate rule name `{}`", rule.name),
            ));
        }
        check_matcher(rule, &at, &mut out);
        names += rule.exec.as_ref().map_or(0, |e| e.names.len());
        ports += rule.connect.as_ref().map_or(0, |c| c.ports.len());
    }
    if names > limits::MAX_EXEC_NAMES {
        out.push(Diagnostic::new(
            "rules",
            format!(
                "{names} exec names in all; the kernel map holds {}",
                limits::MAX_EXEC_NAMES
            ),
        ));
    }
    if ports > limits::MAX_PORTS {
        out.push(Diagnostic::new(
            "rules",
            format!(
                "{ports} ports in all; the kernel map holds {}",
                limits::MAX_PORTS
            ),
        ));
    }
    out
}

fn check_matcher(rule: &Rule, at: &str, out: &mut Vec<Diagnostic>) {
    let matchers = usize::from(rule.exec.is_some()) + usize::from(rule.connect.is_some());
    if matchers != 1 {
        out.push(Diagnostic::new(
            at,
            format!("a rule needs exactly one matcher (`exec` or `connect`), found {matchers}"),
        ));
    }
    if let Some(exec) = &rule.exec {
        if exec.names.is_empty() {
            out.push(Diagnostic::new(
                format!("{at}.exec"),
                "empty matcher: `names` must list at least one basename",
            ));
        }
        for (j, name) in exec.names.iter().enumerate() {
            let field = format!("{at}.exec.names[{j}]");
            if let Some(problem) = basename_problem(name) {
                out.push(Diagnostic::new(field, problem));
            }
        }
    }
    if let Some(connect) = &rule.connect {
        if connect.ports.is_empty() {
            out.push(Diagnostic::new(
                format!("{at}.connect"),
                "empty matcher: `ports` must list at least one port",
            ));
        }
        for (j, port) in connect.ports.iter().enumerate() {
            if *port == 0 {
                out.push(Diagnostic::new(
                    format!("{at}.connect.ports[{j}]"),
                    "port 0 is not a destination port (valid: 1-65535)",
                ));
            }
        }
    }
}

fn basename_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("basename must not be empty".into())
    } else if name.contains('/') {
        Some(format!(
            "`{name}` contains `/`: exec.names matches basenames only"
        ))
    } else if name.contains('\0') {
        Some("basename contains a NUL byte".into())
    } else if name == "." || name == ".." {
        Some(format!("`{name}` is not a file name"))
    } else if name.len() > limits::MAX_NAME_BYTES {
        Some(format!(
            "`{name}` is {} bytes; the kernel map key holds at most {}",
            name.len(),
            limits::MAX_NAME_BYTES
        ))
    } else {
        None
    }
}
