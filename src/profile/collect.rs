//! The slow path, taken only when serde refused a document: find every
//! problem in it instead of the first. The document is read into a tree
//! once, then each top-level key and each key of each rule is deserialized
//! on its own (re-emitted from the tree, so serde_yaml judges it exactly as
//! it judged the whole), and the rules that read cleanly go on to the
//! semantic checks.

use std::{collections::HashSet, path::Path};

use serde::de::{DeserializeOwned, Error as _};

use super::{
    error::{shorten, without_location},
    extends::{self, Parts},
    tree::{Kind, Node, Tree},
    Action, BehaviourMatch, ConnectMatch, Diagnostic, ExecMatch, Mode, OpenMatch, ProfileError,
    Rule, ScopeMatch, SeccompMatch, StratumMatch,
};

/// Keys of a profile document, as serde names them.
const TOP_FIELDS: &[&str] = &["apiVersion", "name", "extends", "mode", "rules"];
/// Keys of a rule.
const RULE_FIELDS: &[&str] = &[
    "name",
    "action",
    "description",
    "exec",
    "connect",
    "stratum",
    "open",
    "scope",
    "seccomp",
    "behaviour",
];

/// Every problem in `text`, whose typed parse failed with `first`.
pub(super) fn diagnose(
    text: &str,
    file: Option<&Path>,
    chain: &mut Vec<String>,
    first: &serde_yaml::Error,
) -> ProfileError {
    // libyaml decides what is YAML; its own messages quote nothing.
    let value = match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(v) => v,
        Err(e) => return not_yaml(file, &e),
    };
    if let Some(reason) = not_a_profile(&value) {
        return ProfileError::NotAProfile {
            file: file.map(Path::to_path_buf),
            line: first_content_line(text),
            reason: reason.into(),
        };
    }
    // From here on the text is shaped like a profile: its values may be
    // quoted in messages.
    let Some(tree) = Tree::parse(text) else {
        return ProfileError::syntax(file, first);
    };
    let Some((parts, problems)) = collect(&tree) else {
        return ProfileError::syntax(file, first);
    };
    match extends::finish(parts, text, file, chain, problems, Some(&tree)) {
        Err(e) => e,
        // The pieces all read cleanly although the whole did not (the
        // parsers disagree on something): report what serde said.
        Ok(_) => ProfileError::syntax(file, first),
    }
}

/// Why `value` is not a profile document, if it is not.
fn not_a_profile(value: &serde_yaml::Value) -> Option<&'static str> {
    match value {
        serde_yaml::Value::Null => Some("empty document, expected a mapping with apiVersion"),
        serde_yaml::Value::Mapping(m) if m.contains_key("apiVersion") => None,
        _ => Some("expected a mapping with apiVersion"),
    }
}

/// 1-based line of the first thing that is not blank or a comment.
fn first_content_line(text: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start_matches('\u{feff}').trim();
            !l.is_empty() && !l.starts_with('#')
        })
        .map_or(1, |i| i + 1)
}

/// A YAML syntax error. The file may be anything (a profile with a typo,
/// or a secret named by mistake), so only libyaml's fixed messages pass:
/// anything that could quote the text is replaced.
fn not_yaml(file: Option<&Path>, err: &serde_yaml::Error) -> ProfileError {
    let text = without_location(err);
    let message = if text.starts_with("duplicate entry") {
        "duplicate key in a mapping".to_string()
    } else if text.contains(['"', '`']) {
        "not valid YAML".to_string()
    } else {
        text
    };
    let loc = err.location();
    ProfileError::Syntax {
        file: file.map(Path::to_path_buf),
        diagnostic: Box::new(Diagnostic::new("", message).at(loc.map(|l| (l.line(), l.column())))),
    }
}

/// `base.rel`, or whichever is not empty.
fn join(base: &str, rel: &str) -> String {
    match (base.is_empty(), rel.is_empty()) {
        (_, true) => base.to_string(),
        (true, false) => rel.to_string(),
        (false, false) if rel.starts_with('[') => format!("{base}{rel}"),
        (false, false) => format!("{base}.{rel}"),
    }
}

/// The pieces read so far, and the problems met.
struct Collector<'t> {
    tree: &'t Tree,
    problems: Vec<Diagnostic>,
}

impl Collector<'_> {
    fn problem(&mut self, field: String, message: String, at: (usize, usize)) {
        self.problems
            .push(Diagnostic::new(field, message).at(Some(at)));
    }

    /// `node` deserialized alone as a `T`; a problem at `field` (plus the
    /// path inside the piece) otherwise.
    fn piece<T: DeserializeOwned>(&mut self, node: &Node, field: &str) -> Option<T> {
        #[derive(serde::Deserialize)]
        struct One<T> {
            v: T,
        }
        let Some(text) = self.tree.emit_entry(node) else {
            self.problem(
                field.to_string(),
                "aliases expand beyond the size a profile may have".into(),
                node.position(),
            );
            return None;
        };
        let de = serde_yaml::Deserializer::from_str(&text);
        match serde_path_to_error::deserialize::<_, One<T>>(de) {
            Ok(one) => Some(one.v),
            Err(e) => {
                let path = e.path().to_string();
                let message = without_location(e.inner());
                // The path inside the piece, without the wrapper's `v`.
                let rel = path.strip_prefix('v').unwrap_or(&path);
                let rel = rel.strip_prefix('.').unwrap_or(rel);
                let unknown = message.contains("unknown field `");
                // An unknown key is reported at its mapping (as serde says
                // it) and pointed at the key itself.
                let (container, key) = match (unknown, rel.rsplit_once('.')) {
                    (true, Some((parent, key))) => (parent, Some(key)),
                    (true, None) if !rel.is_empty() && !rel.starts_with('[') => ("", Some(rel)),
                    _ => (rel, None),
                };
                let field_path = join(field, container);
                // serde_yaml prefixes its own path (`v.ports[1]: ...`).
                let serde_prefix = join("v", container);
                let message = message
                    .strip_prefix(&format!("{serde_prefix}: "))
                    .unwrap_or(&message);
                // serde quotes offending values; a huge one must not flood
                // logs.
                let message = shorten(message, 300);
                let at = match key {
                    Some(k) => self.tree.locate_key(&field_path, k),
                    None => self.tree.locate(&field_path),
                };
                self.problem(field_path, message, at);
                None
            }
        }
    }

    /// The entries of a plain (untagged) mapping node.
    fn entries<'n>(&self, node: &'n Node) -> Option<&'n [(Node, Node)]> {
        match (&node.kind, &node.tag) {
            (Kind::Map(entries), None) => Some(entries),
            _ => None,
        }
    }

    /// Each key of a mapping, checked for being a known field and not a
    /// repeat; calls `each` with the known ones.
    fn fields<'n>(
        &mut self,
        entries: &'n [(Node, Node)],
        field: &str,
        known: &'static [&'static str],
        mut each: impl FnMut(&mut Self, &'static str, &'n Node),
    ) -> bool {
        let mut ok = true;
        let mut seen = HashSet::new();
        for (k, v) in entries {
            let name = k.as_str().filter(|_| k.tag.is_none());
            let known_name = name.and_then(|n| known.iter().find(|f| **f == n).copied());
            let message = match (name, known_name) {
                (_, Some(f)) if !seen.insert(f) => serde_yaml::Error::duplicate_field(f),
                (_, Some(f)) => {
                    each(self, f, v);
                    continue;
                }
                (Some(n), None) => serde_yaml::Error::unknown_field(n, known),
                (None, None) => serde_yaml::Error::custom("keys must be plain field names"),
            };
            ok = false;
            self.problem(field.to_string(), message.to_string(), k.position());
        }
        ok
    }
}

/// The document's pieces that read cleanly, and a problem for each that
/// did not. `None` when the tree's top level is not a mapping (the parsers
/// disagree).
fn collect(tree: &Tree) -> Option<(Parts, Vec<Diagnostic>)> {
    let mut c = Collector {
        tree,
        problems: Vec::new(),
    };
    let entries = c.entries(&tree.root)?;
    let mut parts = Parts::default();
    let mut has = HashSet::new();
    c.fields(entries, "", TOP_FIELDS, |c, key, v| {
        has.insert(key);
        match key {
            "apiVersion" => parts.api_version = c.piece(v, key),
            "name" => parts.name = c.piece(v, key),
            "extends" => parts.extends = c.piece::<Option<String>>(v, key).flatten(),
            "mode" => parts.mode = c.piece::<Option<Mode>>(v, key).flatten(),
            _ => rules(c, v, &mut parts),
        }
    });
    for required in ["apiVersion", "name"] {
        if !has.contains(required) {
            let message = serde_yaml::Error::missing_field(required).to_string();
            c.problem(String::new(), message, tree.root.position());
        }
    }
    let mut problems = c.problems;
    problems.sort_by_key(|d| (d.line, d.column));
    Some((parts, problems))
}

fn rules(c: &mut Collector<'_>, node: &Node, parts: &mut Parts) {
    let items = match (&node.kind, &node.tag) {
        (Kind::Seq(items), None) => items,
        _ => {
            // Not a plain list: serde judges it whole.
            if let Some(all) = c.piece::<Vec<Rule>>(node, "rules") {
                parts.rules.extend(all.into_iter().enumerate());
            }
            return;
        }
    };
    for (i, item) in items.iter().enumerate() {
        let field = format!("rules[{i}]");
        if let Some(rule) = rule(c, item, &field) {
            parts.rules.push((i, rule));
        }
    }
}

/// One rule, key by key; `None` when any key failed.
fn rule(c: &mut Collector<'_>, node: &Node, field: &str) -> Option<Rule> {
    let Some(entries) = c.entries(node) else {
        return c.piece::<Rule>(node, field);
    };
    let mut name = None;
    let mut action = None;
    let mut r = Rule::with(String::new(), Action::Audit);
    let mut failed = false;
    let known = c.fields(entries, field, RULE_FIELDS, |c, key, v| {
        let at = format!("{field}.{key}");
        let ok = match key {
            "name" => c.piece::<String>(v, &at).map(|n| name = Some(n)),
            "action" => c.piece::<Action>(v, &at).map(|a| action = Some(a)),
            "description" => c.piece(v, &at).map(|d| r.description = d),
            "exec" => c.piece::<Option<ExecMatch>>(v, &at).map(|m| r.exec = m),
            "connect" => c
                .piece::<Option<ConnectMatch>>(v, &at)
                .map(|m| r.connect = m),
            "stratum" => c
                .piece::<Option<StratumMatch>>(v, &at)
                .map(|m| r.stratum = m),
            "open" => c.piece::<Option<OpenMatch>>(v, &at).map(|m| r.open = m),
            "scope" => c.piece::<Option<ScopeMatch>>(v, &at).map(|m| r.scope = m),
            "behaviour" => c
                .piece::<Option<BehaviourMatch>>(v, &at)
                .map(|m| r.behaviour = m),
            _ => c
                .piece::<Option<SeccompMatch>>(v, &at)
                .map(|m| r.seccomp = m),
        };
        failed |= ok.is_none();
    });
    for (required, set) in [("name", name.is_some()), ("action", action.is_some())] {
        if !set && !entries.iter().any(|(k, _)| k.as_str() == Some(required)) {
            let message = serde_yaml::Error::missing_field(required).to_string();
            c.problem(field.to_string(), message, node.position());
            failed = true;
        }
    }
    match (known && !failed, name, action) {
        (true, Some(name), Some(action)) => Some(Rule { name, action, ..r }),
        _ => None,
    }
}
