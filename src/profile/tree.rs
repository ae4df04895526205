//! The document as a tree that remembers where each node starts, built only
//! when a profile has problems to report: it answers "which line and column
//! is `rules[3].connect.ports[1]`?", and re-emits any node as YAML so that
//! serde_yaml can read it alone (a piece of the document at a time).

use std::{cell::Cell, collections::HashMap, fmt::Write as _};

use yaml_rust2::{
    parser::{Event, MarkedEventReceiver, Parser, Tag},
    scanner::{Marker, TScalarStyle},
};

/// A node and where it starts (1-based line and column).
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) line: usize,
    pub(super) column: usize,
    pub(super) tag: Option<Tag>,
    pub(super) kind: Kind,
}

/// What a node holds.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    Scalar(String, TScalarStyle),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
    /// `*name`: the anchored node with this id.
    Alias(usize),
}

impl Node {
    pub(super) fn position(&self) -> (usize, usize) {
        (self.line, self.column)
    }

    /// The scalar's text, for a key.
    pub(super) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(s, _) => Some(s),
            _ => None,
        }
    }
}

/// The first document of a text, with its anchors.
pub(super) struct Tree {
    pub(super) root: Node,
    anchors: HashMap<usize, Node>,
    /// Bytes that re-emitting may still write: aliases can make a small
    /// text expand without bound ("billion laughs").
    budget: Cell<usize>,
}

/// A step of a field path.
#[derive(Debug, PartialEq, Eq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `rules[3].connect.ports[1]` as steps (the syntax validate.rs writes).
fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(at) => part.split_at(at),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Step::Key(key));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else { break };
            match inner[..end].parse() {
                Ok(i) => out.push(Step::Index(i)),
                Err(_) => break,
            }
            rest = &inner[end + 1..];
        }
    }
    out
}

impl Tree {
    /// Parses the first document of `text`; `None` when yaml-rust2 refuses
    /// it (callers then report without positions).
    pub(super) fn parse(text: &str) -> Option<Tree> {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        parser.load(&mut builder, false).ok()?;
        let root = builder.root?;
        Some(Tree {
            root,
            anchors: builder.anchors,
            budget: Cell::new(64 * 1024 * 1024),
        })
    }

    /// The node an alias stands for (followed through chains of aliases).
    fn resolve<'a>(&'a self, mut node: &'a Node) -> Option<&'a Node> {
        for _ in 0..64 {
            match node.kind {
                Kind::Alias(id) => node = self.anchors.get(&id)?,
                _ => return Some(node),
            }
        }
        None
    }

    /// The node at `path`, or its nearest ancestor that exists; the flag
    /// says whether the whole path was found.
    fn walk<'a>(&'a self, path: &str) -> (&'a Node, Option<&'a Node>, bool) {
        let mut node = &self.root;
        // The key of the mapping entry `node` is the value of.
        let mut key: Option<&Node> = None;
        for step in steps(path) {
            let Some(here) = self.resolve(node) else {
                return (node, key, false);
            };
            let next = match (&here.kind, step) {
                (Kind::Map(entries), Step::Key(k)) => entries
                    .iter()
                    .find(|(key, _)| key.as_str() == Some(k))
                    .map(|(k, v)| (Some(k), v)),
                (Kind::Seq(items), Step::Index(i)) => items.get(i).map(|v| (None, v)),
                _ => None,
            };
            match next {
                Some((k, v)) => {
                    key = k;
                    node = v;
                }
                None => return (node, key, false),
            }
        }
        (node, key, true)
    }

    /// Line and column of the value at `path` (`rules[3].connect.ports[1]`,
    /// `apiVersion`; empty for the document), or of its nearest ancestor
    /// in the document.
    pub(super) fn locate(&self, path: &str) -> (usize, usize) {
        self.walk(path).0.position()
    }

    /// Line and column of the key `key` in the mapping at `path` (falls back
    /// to the mapping, or its nearest ancestor).
    pub(super) fn locate_key(&self, path: &str, key: &str) -> (usize, usize) {
        let (node, _, found) = self.walk(path);
        if found {
            if let Some(Kind::Map(entries)) = self.resolve(node).map(|n| &n.kind) {
                if let Some((k, _)) = entries.iter().find(|(k, _)| k.as_str() == Some(key)) {
                    return k.position();
                }
            }
        }
        node.position()
    }

    /// `node` as a one-entry YAML mapping `v: <node>`, in block style, with
    /// every scalar as written (plain scalars keep their spelling, so serde
    /// resolves `0x10`, `~` or `yes` exactly as it did in the document) and
    /// aliases expanded. `None` when the expansion passes the budget.
    pub(super) fn emit_entry(&self, node: &Node) -> Option<String> {
        let mut out = String::from("v:");
        self.emit(node, 2, &mut out, 0)?;
        out.push('\n');
        let left = self.budget.get().checked_sub(out.len())?;
        self.budget.set(left);
        Some(out)
    }

    /// Writes what follows `key:` or `-` for `node`, children indented by
    /// `indent`.
    fn emit(&self, node: &Node, indent: usize, out: &mut String, depth: usize) -> Option<()> {
        if depth > 256 || out.len() > self.budget.get() {
            return None;
        }
        let node = self.resolve(node)?;
        if let Some(tag) = &node.tag {
            out.push(' ');
            push_tag(tag, out);
        }
        let pad = " ".repeat(indent);
        match &node.kind {
            Kind::Scalar(value, style) => {
                if !(value.is_empty() && *style == TScalarStyle::Plain) {
                    out.push(' ');
                    push_scalar(value, *style, out);
                }
            }
            Kind::Seq(items) if items.is_empty() => out.push_str(" []"),
            Kind::Map(entries) if entries.is_empty() => out.push_str(" {}"),
            Kind::Seq(items) => {
                for item in items {
                    let _ = write!(out, "\n{pad}-");
                    self.emit(item, indent + 2, out, depth + 1)?;
                }
            }
            Kind::Map(entries) => {
                for (k, v) in entries {
                    match self.resolve(k).map(|k| (&k.kind, &k.tag)) {
                        Some((Kind::Scalar(key, style), None)) if !key.is_empty() => {
                            let _ = write!(out, "\n{pad}");
                            push_scalar(key, *style, out);
                            out.push(':');
                        }
                        _ => {
                            // Anything else is written as an explicit key.
                            let _ = write!(out, "\n{pad}?");
                            self.emit(k, indent + 2, out, depth + 1)?;
                            let _ = write!(out, "\n{pad}:");
                        }
                    }
                    self.emit(v, indent + 2, out, depth + 1)?;
                }
            }
            Kind::Alias(_) => return None,
        }
        Some(())
    }
}

fn push_tag(tag: &Tag, out: &mut String) {
    match tag.handle.as_str() {
        "!" => {
            out.push('!');
            out.push_str(&tag.suffix);
        }
        "tag:yaml.org,2002:" => {
            out.push_str("!!");
            out.push_str(&tag.suffix);
        }
        handle => {
            let _ = write!(out, "!<{handle}{}>", tag.suffix);
        }
    }
}

/// A plain scalar as written when it reads back the same in block context;
/// anything else double-quoted (it is a string either way).
fn push_scalar(value: &str, style: TScalarStyle, out: &mut String) {
    if style == TScalarStyle::Plain && plain_is_safe(value) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            // Printable beyond ASCII, as YAML allows it raw.
            '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fefe}' | '\u{ff00}'..='\u{fffd}' => {
                out.push(c)
            }
            c if (c as u32) >= 0x10000 => out.push(c),
            c => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
    }
    out.push('"');
}

/// Whether `value`, written plain after `key: `, reads back as the same
/// plain scalar.
fn plain_is_safe(value: &str) -> bool {
    let bytes = value.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    let indicator = b"-?:,[]{}#&*!|>'\"%@`".contains(&first);
    // `-1`, `-.inf`, `:x` are plain; `- x` is not.
    let indicator_ok = matches!(first, b'-' | b'?' | b':')
        && bytes.get(1).is_some_and(|c| !c.is_ascii_whitespace());
    (!indicator || indicator_ok)
        && !matches!(first, b' ' | b'\t')
        && !matches!(last, b' ' | b'\t' | b':')
        && !value.contains(": ")
        && !value.contains(" #")
        && !value.contains(":\t")
        && !value.contains("\t#")
        && value.chars().all(|c| c == '\t' || (' '..='~').contains(&c))
}

/// Builds the first document's tree from parser events.
#[derive(Default)]
struct Builder {
    /// Open collections: the node so far, its anchor id, and (for a
    /// mapping) the key waiting for its value.
    stack: Vec<(Node, usize, Option<Node>)>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    done: bool,
}

impl Builder {
    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                self.done = true;
            }
            Some((parent, _, pending)) => match &mut parent.kind {
                Kind::Seq(items) => items.push(node),
                Kind::Map(entries) => match pending.take() {
                    None => *pending = Some(node),
                    Some(key) => entries.push((key, node)),
                },
                _ => {}
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.done {
            return;
        }
        let at = |tag, kind| Node {
            line: mark.line(),
            column: mark.col() + 1,
            tag,
            kind,
        };
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                self.finish(at(tag, Kind::Scalar(value, style)), anchor)
            }
            Event::Alias(id) => self.finish(at(None, Kind::Alias(id)), 0),
            Event::SequenceStart(anchor, tag) => {
                self.stack
                    .push((at(tag, Kind::Seq(Vec::new())), anchor, None))
            }
            Event::MappingStart(anchor, tag) => {
                self.stack
                    .push((at(tag, Kind::Map(Vec::new())), anchor, None))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((mut node, anchor, _)) = self.stack.pop() {
                    // yaml-rust2 starts a block mapping at its first `:`;
                    // the mapping is where its first key is.
                    if let Kind::Map(entries) = &node.kind {
                        if let Some((k, _)) = entries.first() {
                            if k.position() < node.position() {
                                (node.line, node.column) = k.position();
                            }
                        }
                    }
                    self.finish(node, anchor);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "apiVersion: minerguard/v1\nname: t\nrules:\n  - name: a\n    action: deny\n    connect:\n      ports: [3333, 4444]\n  - { name: b, action: kill, stratum: {} }\n";

    #[test]
    fn paths_parse_like_validate_writes_them() {
        assert_eq!(
            steps("rules[3].connect.ports[1]"),
            [
                Step::Key("rules"),
                Step::Index(3),
                Step::Key("connect"),
                Step::Key("ports"),
                Step::Index(1)
            ]
        );
        assert_eq!(steps(""), []);
        assert_eq!(steps("a[x]"), [Step::Key("a")]);
    }

    #[test]
    fn locates_values_keys_and_nearest_ancestors() {
        let t = Tree::parse(TEXT).unwrap();
        assert_eq!(t.locate("apiVersion"), (1, 13));
        assert_eq!(t.locate("rules[0].connect.ports[1]"), (7, 21));
        assert_eq!(t.locate("rules[1].action"), (8, 24));
        assert_eq!(t.locate_key("rules[1]", "stratum"), (8, 30));
        // Missing pieces fall back to what exists.
        assert_eq!(t.locate("rules[0].connect.ports[9]"), (7, 14));
        assert_eq!(t.locate("rules[7].name"), t.locate("rules"));
        assert_eq!(t.locate_key("rules[0]", "nope"), t.locate("rules[0]"));
    }

    #[test]
    fn emitted_pieces_read_back_as_in_the_document() {
        let text = "a: [0x10, ~, '3', \"x\\ty\", -1, yes, '', \"a: b\", { k: v }, [], !!str 12, \"\\x7f\"]\nb:\n";
        let t = Tree::parse(text).unwrap();
        let Kind::Map(entries) = &t.root.kind else {
            panic!()
        };
        let direct: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        for (k, v) in entries {
            let emitted = t.emit_entry(v).unwrap();
            let back: serde_yaml::Value = serde_yaml::from_str(&emitted).unwrap();
            assert_eq!(back["v"], direct[k.as_str().unwrap()], "{emitted}");
        }
        // Plain scalars keep their spelling for string fields too.
        #[derive(serde::Deserialize)]
        struct V {
            v: Vec<String>,
        }
        let t = Tree::parse("x: [0x10, ~, 1.50]\n").unwrap();
        let Kind::Map(entries) = &t.root.kind else {
            panic!()
        };
        let v: V = serde_yaml::from_str(&t.emit_entry(&entries[0].1).unwrap()).unwrap();
        assert_eq!(v.v, ["0x10", "~", "1.50"]);
    }

    #[test]
    fn alias_bombs_run_out_of_budget() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..12 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("b{}", i - 1)
            };
            text.push_str(&format!(
                "b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        let t = Tree::parse(&text).unwrap();
        let Kind::Map(entries) = &t.root.kind else {
            panic!()
        };
        assert!(t.emit_entry(&entries.last().unwrap().1).is_none());
    }
}
