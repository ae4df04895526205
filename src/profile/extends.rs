//! Loading profiles: read safely, bound the nesting, parse, resolve
//! `extends` (bundled names or paths, with cycle detection), merge,
//! validate; and on failure, every problem with its line and column.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    collect, input, nesting, tree::Tree, Diagnostic, Mode, Profile, ProfileError, Rule, API_VERSION,
};

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

/// What was read of a document: everything when serde read it whole, the
/// pieces that read cleanly otherwise (a `None` field failed, or was
/// missing, and has been reported).
#[derive(Default)]
pub(super) struct Parts {
    pub(super) api_version: Option<String>,
    pub(super) name: Option<String>,
    pub(super) extends: Option<String>,
    pub(super) mode: Option<Mode>,
    /// Each rule with its index in the document.
    pub(super) rules: Vec<(usize, Rule)>,
}

impl From<Document> for Parts {
    fn from(doc: Document) -> Self {
        Parts {
            api_version: Some(doc.api_version),
            name: Some(doc.name),
            extends: doc.extends,
            mode: doc.mode,
            rules: doc.rules.into_iter().enumerate().collect(),
        }
    }
}

pub(super) fn bundled_text(name: &str) -> Option<&'static str> {
    BUNDLED.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

pub(super) fn load_text(text: &str, file: Option<&Path>) -> Result<Profile, ProfileError> {
    load(text, file, &mut Vec::new())
}

pub(super) fn load_file(path: &Path) -> Result<Profile, ProfileError> {
    let text = input::read(path)?;
    let id = identity_of_file(path);
    load(&text, Some(path), &mut vec![id])
}

fn identity_of_file(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

fn load(text: &str, file: Option<&Path>, chain: &mut Vec<String>) -> Result<Profile, ProfileError> {
    // JSON is YAML too, but serde_json reads it several times faster (large
    // generated profiles are JSON). It needs no nesting pre-scan: it stops
    // at depth 128 by itself, in linear time, and a document it reads as a
    // profile nests no deeper than the language (under 10).
    if text.trim_start().starts_with('{') {
        if let Ok(doc) = serde_json::from_str::<Document>(text) {
            return finish(doc.into(), text, file, chain, Vec::new(), None);
        }
    }
    nesting::check(text).map_err(|at| ProfileError::TooDeep {
        file: file.map(Path::to_path_buf),
        line: at.line,
        column: at.column,
        limit: nesting::MAX_NESTING,
    })?;
    match serde_yaml::from_str::<Document>(text) {
        Ok(doc) => finish(doc.into(), text, file, chain, Vec::new(), None),
        Err(first) => Err(collect::diagnose(text, file, chain, &first)),
    }
}

/// Where a rule of the merged profile came from.
#[derive(Clone, Copy)]
enum Origin {
    /// `rules[i]` of this document.
    Own(usize),
    /// The base profile (`extends`).
    Base,
}

/// Resolves `extends`, merges and validates what was read; `problems` are
/// those met while reading (type errors, unknown keys), already placed.
/// Builds the position index from `text` only when there is something to
/// report (unless `tree` already is one).
pub(super) fn finish(
    parts: Parts,
    text: &str,
    file: Option<&Path>,
    chain: &mut Vec<String>,
    mut problems: Vec<Diagnostic>,
    tree: Option<&Tree>,
) -> Result<Profile, ProfileError> {
    // A field that failed to read was reported; a placeholder keeps the
    // semantic checks from reporting it twice.
    let mut profile = Profile {
        api_version: parts.api_version.unwrap_or_else(|| API_VERSION.into()),
        name: parts.name.unwrap_or_else(|| "-".into()),
        mode: parts.mode.unwrap_or_default(),
        rules: Vec::with_capacity(parts.rules.len()),
    };
    let mut origins = Vec::with_capacity(parts.rules.len());
    for (i, rule) in parts.rules {
        origins.push(Origin::Own(i));
        profile.rules.push(rule);
    }
    // A base that is a profile with problems of its own: its error.
    let mut base_error = None;
    if let Some(base_ref) = &parts.extends {
        match load_base(base_ref, file, chain) {
            Ok(base) => {
                profile.mode = parts.mode.unwrap_or(base.mode);
                (profile.rules, origins) = merge(base.rules, profile.rules, origins);
            }
            Err(BaseError::Here(message)) => problems.push(Diagnostic::new("extends", message)),
            Err(BaseError::There(e)) => base_error = Some(e),
        }
    }
    let semantic = super::validate::check(&profile);
    if problems.is_empty() && semantic.is_empty() {
        return match base_error {
            None => Ok(profile),
            // As before: the base's own error, naming its file.
            Some(e) => Err(e),
        };
    }
    let parsed;
    let tree = match tree {
        Some(t) => Some(t),
        None => {
            parsed = Tree::parse(text);
            parsed.as_ref()
        }
    };
    let place = |mut d: Diagnostic, path: &str| {
        if d.line.is_none() {
            d = d.at(tree.map(|t| t.locate(path)));
        }
        d
    };
    let mut reading: Vec<Diagnostic> = problems
        .into_iter()
        .map(|d| {
            let path = d.field.clone();
            place(d, &path)
        })
        .collect();
    reading.sort_by_key(position_key);
    let checks = semantic.into_iter().map(|mut d| {
        // Merged indices name rules of this document by their own index.
        let path = match own_path(&d.field, &origins) {
            Some(Some(own)) => {
                d.field = own;
                d.field.clone()
            }
            Some(None) => "extends".to_string(),
            None => d.field.clone(),
        };
        place(d, &path)
    });
    let mut diagnostics = merge_by_position(reading, checks.collect());
    if let Some(e) = base_error {
        diagnostics.extend(e.diagnostics());
    }
    Err(ProfileError::Invalid {
        file: file.map(Path::to_path_buf),
        diagnostics,
    })
}

/// `rules[i]...` of the merged profile as a path in this document:
/// `Some(Some(path))` for a rule of its own, `Some(None)` for one of the
/// base, `None` for a path that names no rule.
fn own_path(field: &str, origins: &[Origin]) -> Option<Option<String>> {
    let rest = field.strip_prefix("rules[")?;
    let (index, tail) = rest.split_once(']')?;
    match origins.get(index.parse::<usize>().ok()?)? {
        Origin::Own(j) => Some(Some(format!("rules[{j}]{tail}"))),
        Origin::Base => Some(None),
    }
}

/// Sorts before anything later in the text; no position sorts last.
fn position_key(d: &Diagnostic) -> (usize, usize) {
    (d.line.unwrap_or(usize::MAX), d.column.unwrap_or(usize::MAX))
}

/// Interleaves problems met while reading (in position order) with those
/// of the checks (in their own order, which follows the document), so
/// that both come out in document order.
fn merge_by_position(reading: Vec<Diagnostic>, checks: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out = Vec::with_capacity(reading.len() + checks.len());
    let mut reading = reading.into_iter().peekable();
    for d in checks {
        while let Some(r) = reading.next_if(|r| position_key(r) < position_key(&d)) {
            out.push(r);
        }
        out.push(d);
    }
    out.extend(reading);
    out
}

/// Why `extends` could not be followed.
enum BaseError {
    /// A problem of this document's `extends` (no such profile, a cycle, a
    /// file that cannot be read or is not a profile).
    Here(String),
    /// The base is a profile, with problems of its own.
    There(ProfileError),
}

/// Loads what `extends: base_ref` names, relative to `file`.
fn load_base(
    base_ref: &str,
    file: Option<&Path>,
    chain: &mut Vec<String>,
) -> Result<Profile, BaseError> {
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
            return Err(BaseError::Here(format!(
                "`{base_ref}` is neither a bundled profile ({}) nor a path (paths contain `/` or end in .yaml/.json)",
                BUNDLED_NAMES.join(", ")
            )))
        }
        _ => {
            let dir = file
                .and_then(Path::parent)
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let path = dir.join(base_ref);
            let text = input::read(&path).map_err(|e| BaseError::Here(e.to_string()))?;
            (identity_of_file(&path), text, Some(path))
        }
    };
    if chain.contains(&id) {
        let mut cycle: Vec<&str> = chain.iter().map(String::as_str).collect();
        cycle.push(&id);
        return Err(BaseError::Here(format!(
            "extends cycle: {}",
            cycle.join(" -> ")
        )));
    }
    if chain.len() >= MAX_DEPTH {
        return Err(BaseError::Here(format!(
            "extends chain deeper than {MAX_DEPTH} profiles"
        )));
    }
    chain.push(id);
    let base = load(&text, base_file.as_deref(), chain);
    chain.pop();
    base.map_err(|e| match e {
        e @ (ProfileError::Syntax { .. } | ProfileError::Invalid { .. }) => BaseError::There(e),
        // Not a profile (or refused unread): its name and why, nothing of
        // its content.
        e => BaseError::Here(e.to_string()),
    })
}

/// The base's rules in order, each replaced by a same-named rule of `own`;
/// then `own`'s other rules. Origins follow the rules.
fn merge(base: Vec<Rule>, own: Vec<Rule>, origins: Vec<Origin>) -> (Vec<Rule>, Vec<Origin>) {
    let mut own: Vec<Option<(Rule, Origin)>> = own.into_iter().zip(origins).map(Some).collect();
    let (mut rules, mut from): (Vec<Rule>, Vec<Origin>) = base
        .into_iter()
        .map(|b| {
            own.iter_mut()
                .find(|o| o.as_ref().is_some_and(|(o, _)| o.name == b.name))
                .and_then(Option::take)
                .unwrap_or((b, Origin::Base))
        })
        .unzip();
    for (r, o) in own.into_iter().flatten() {
        rules.push(r);
        from.push(o);
    }
    (rules, from)
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
