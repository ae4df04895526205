//! Loading profiles: parse, resolve `extends` (bundled names or paths, with
//! cycle detection), merge, validate.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Diagnostic, Mode, Profile, ProfileError, Rule};

/// Bundled profiles, by name.
const BUNDLED: &[(&str, &str)] = &[
    ("default", include_str!("../../profiles/default.yaml")),
    (
        "container-strict",
        include_str!("../../profiles/container-strict.yaml"),
    ),
    ("audit", include_str!("../../profiles/audit.yaml")),
];

/// Names of the bundled profiles.
pub(super) const BUNDLED_NAMES: &[&str] = &["default", "container-strict", "audit"];

/// Deepest `extends` chain followed.
const MAX_DEPTH: usize = 8;

/// A profile document before `extends` is resolved.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Document {
    api_version: String,
    name: String,
    #[serde(default)]
    extends: Option<String>,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    rules: Vec<Rule>,
}

pub(super) fn bundled_text(name: &str) -> Option<&'static str> {
    BUNDLED.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

pub(super) fn load_text(text: &str, file: Option<&Path>) -> Result<Profile, ProfileError> {
    load(text, file, &mut Vec::new())
}

pub(super) fn load_file(path: &Path) -> Result<Profile, ProfileError> {
    let text = read(path)?;
    let id = identity_of_file(path);
    load(&text, Some(path), &mut vec![id])
}

fn read(path: &Path) -> Result<String, ProfileError> {
    std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn identity_of_file(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

fn invalid(file: Option<&Path>, field: &str, message: String) -> ProfileError {
    ProfileError::Invalid {
        file: file.map(Path::to_path_buf),
        diagnostics: vec![Diagnostic::new(field, message)],
    }
}

/// JSON is YAML too, but serde_json reads it several times faster (large
/// generated profiles are JSON); a JSON document it refuses is read again
/// by serde_yaml, whose errors name the field path.
fn parse_document(text: &str) -> Result<Document, serde_yaml::Error> {
    if text.trim_start().starts_with('{') {
        if let Ok(doc) = serde_json::from_str(text) {
            return Ok(doc);
        }
    }
    serde_yaml::from_str(text)
}

fn load(text: &str, file: Option<&Path>, chain: &mut Vec<String>) -> Result<Profile, ProfileError> {
    let doc = parse_document(text).map_err(|e| ProfileError::syntax(file, &e))?;
    let mut profile = Profile {
        api_version: doc.api_version,
        name: doc.name,
        mode: doc.mode.unwrap_or_default(),
        rules: doc.rules,
    };
    if let Some(base_ref) = doc.extends {
        let base = load_base(&base_ref, file, chain)?;
        profile.mode = doc.mode.unwrap_or(base.mode);
        profile.rules = merge(base.rules, profile.rules);
    }
    profile.validate().map_err(|e| e.in_file(file))?;
    Ok(profile)
}

/// Loads what `extends: base_ref` names, relative to `file`.
fn load_base(
    base_ref: &str,
    file: Option<&Path>,
    chain: &mut Vec<String>,
) -> Result<Profile, ProfileError> {
    let looks_like_path =
        base_ref.contains('/') || base_ref.ends_with(".yaml") || base_ref.ends_with(".json");
    let (id, text, base_file): (String, String, Option<PathBuf>) = match bundled_text(base_ref) {
        // Named like a file so errors inside a bundled profile say which.
        Some(t) if !looks_like_path => (
            format!("bundled:{base_ref}"),
            t.to_string(),
            Some(PathBuf::from(format!("bundled:{base_ref}.yaml"))),
        ),
        _ if !looks_like_path => {
            return Err(invalid(
                file,
                "extends",
                format!(
                    "`{base_ref}` is neither a bundled profile ({}) nor a path (paths contain `/` or end in .yaml/.json)",
                    BUNDLED_NAMES.join(", ")
                ),
            ))
        }
        _ => {
            let dir = file
                .and_then(Path::parent)
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let path = dir.join(base_ref);
            let text = read(&path).map_err(|e| invalid(file, "extends", e.to_string()))?;
            (identity_of_file(&path), text, Some(path))
        }
    };
    if chain.contains(&id) {
        let mut cycle: Vec<&str> = chain.iter().map(String::as_str).collect();
        cycle.push(&id);
        return Err(invalid(
            file,
            "extends",
            format!("extends cycle: {}", cycle.join(" -> ")),
        ));
    }
    if chain.len() >= MAX_DEPTH {
        return Err(invalid(
            file,
            "extends",
            format!("extends chain deeper than {MAX_DEPTH} profiles"),
        ));
    }
    chain.push(id);
    let base = load(&text, base_file.as_deref(), chain);
    chain.pop();
    base
}

/// The base's rules in order, each replaced by a same-named rule of `own`;
/// then `own`'s other rules.
fn merge(base: Vec<Rule>, own: Vec<Rule>) -> Vec<Rule> {
    let mut own: Vec<Option<Rule>> = own.into_iter().map(Some).collect();
    let mut out: Vec<Rule> = base
        .into_iter()
        .map(|b| {
            own.iter_mut()
                .find(|o| o.as_ref().is_some_and(|o| o.name == b.name))
                .and_then(Option::take)
                .unwrap_or(b)
        })
        .collect();
    out.extend(own.into_iter().flatten());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Action;

    #[test]
    fn bundled_profiles_load_and_check_clean() {
        for name in BUNDLED_NAMES {
            let p = Profile::bundled(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(&p.name, name);
            crate::compile::KernelPolicy::compile(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(Profile::bundled("nope").is_none());
    }

    #[test]
    fn extends_bundled_overrides_by_name_and_inherits_mode() {
        let p = Profile::from_yaml(
            "apiVersion: minerguard/v1\nname: mine\nextends: default\nrules:\n  - name: miner-pool-port\n    action: deny\n    connect: { ports: [3333] }\n  - name: extra\n    action: deny\n    exec: { names: [foo] }\n",
        )
        .unwrap();
        let base = Profile::bundled("default").unwrap();
        assert_eq!(p.rules.len(), base.rules.len() + 1);
        let pool = p
            .rules
            .iter()
            .position(|r| r.name == "miner-pool-port")
            .unwrap();
        let base_pool = base
            .rules
            .iter()
            .position(|r| r.name == "miner-pool-port")
            .unwrap();
        assert_eq!(pool, base_pool, "an override keeps the base rule's place");
        assert_eq!(p.rules[pool].action, Action::Deny);
        assert_eq!(p.rules.last().unwrap().name, "extra");
        assert_eq!(p.mode, base.mode);
    }

    #[test]
    fn extends_cycle_is_reported() {
        let dir = std::env::temp_dir().join(format!("mg-extends-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.yaml"),
            "apiVersion: minerguard/v1\nname: a\nextends: ./b.yaml\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("b.yaml"),
            "apiVersion: minerguard/v1\nname: b\nextends: ./a.yaml\n",
        )
        .unwrap();
        let err = Profile::from_file(dir.join("a.yaml")).unwrap_err();
        let d = &err.diagnostics()[0];
        assert_eq!(d.field, "extends");
        assert!(d.message.starts_with("extends cycle: "), "{d}");
        assert!(
            d.message.contains("a.yaml -> ") && d.message.ends_with("a.yaml"),
            "{d}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_base_is_reported() {
        let err = Profile::from_yaml("apiVersion: minerguard/v1\nname: a\nextends: nosuch\n")
            .unwrap_err();
        assert_eq!(err.diagnostics()[0].field, "extends");
        assert!(err.to_string().contains("neither a bundled profile"));
    }
}
