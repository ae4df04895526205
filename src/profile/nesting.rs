//! The nesting limit, checked in one linear pass before any YAML parser
//! reads the text.
//!
//! YAML parsers keep per-level state and rescan it for every token, so a
//! document nested 100,000 deep (`[[[[...` or `- - - -...`, 200 KB) costs
//! them seconds to minutes before they give up. This pass follows the
//! token rules of libyaml (the parser behind serde_yaml, and the model of
//! yaml-rust2) as far as they decide nesting: flow brackets outside quoted
//! scalars and comments, block scalars and multi-line plain scalars (whose
//! lines are text, not structure), and the stack of block indentations that
//! `- ` entries and `key:` entries push. Where libyaml would stop with an
//! error the pass simply goes on: every count it keeps is at least the
//! parser's, so the bound is conservative, and every bundled profile sits
//! far below it.

/// The deepest nesting of mappings and sequences a profile may use. The
/// deepest the profile language needs is under 10 (a seccomp argument
/// condition); serde_yaml itself stops at 128.
pub const MAX_NESTING: usize = 64;

/// Where the limit was passed: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TooDeep {
    pub(super) line: usize,
    pub(super) column: usize,
}

/// `Err` with the place where `text` nests deeper than [`MAX_NESTING`].
pub(super) fn check(text: &str) -> Result<(), TooDeep> {
    let mut scan = Scan::new(text.as_bytes(), MAX_NESTING);
    scan.run();
    match scan.too_deep {
        Some(at) => Err(at),
        None => Ok(()),
    }
}

/// The deepest nesting the pass counts in `text`, with no limit (tests
/// compare it with what parsers build).
#[cfg(test)]
pub(super) fn max_nesting(text: &str) -> usize {
    let mut scan = Scan::new(text.as_bytes(), usize::MAX);
    scan.run();
    scan.max
}

/// Bytes a plain scalar may end at, or that need a closer look (UTF-8).
const PLAIN_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0x80;
    while i < 256 {
        t[i] = true;
        i += 1;
    }
    let stops = b" \t\r\n:,[]{}";
    let mut j = 0;
    while j < stops.len() {
        t[stops[j] as usize] = true;
        j += 1;
    }
    t
};

/// One open flow collection.
#[derive(Clone, Copy)]
struct Flow {
    sequence: bool,
    /// In a sequence, a `key: value` entry is a one-pair mapping, one
    /// level deeper (`[a: b]`); set while such an entry is open.
    pair: bool,
    /// The deepest level reached in the current entry: a `:` found after
    /// it puts all of it one level deeper (the key is inside the pair).
    entry_max: usize,
}

/// One block collection on the indentation stack.
#[derive(Clone, Copy)]
struct Indent {
    column: usize,
    /// Levels it stands for: 2 once an indentless sequence (`key:` then
    /// `- a` at the key's column) hangs off this mapping.
    weight: usize,
    mapping: bool,
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    line: usize,
    /// 0-based, in characters (as libyaml counts).
    col: usize,
    /// Open flow collections, innermost last.
    flow: Vec<Flow>,
    /// Levels the open flow collections stand for.
    flow_levels: usize,
    indents: Vec<Indent>,
    block_levels: usize,
    /// Column of the token a `:` on this line would make a key (libyaml's
    /// "simple key"), in block context.
    key_col: Option<usize>,
    /// The deepest level reached since the pending key started: a `:`
    /// that opens a mapping puts the key inside it.
    key_max: usize,
    key_allowed: bool,
    limit: usize,
    max: usize,
    too_deep: Option<TooDeep>,
}

impl<'a> Scan<'a> {
    fn new(b: &'a [u8], limit: usize) -> Self {
        Scan {
            b,
            i: 0,
            line: 1,
            col: 0,
            flow: Vec::new(),
            flow_levels: 0,
            indents: Vec::new(),
            block_levels: 0,
            key_col: None,
            key_max: 0,
            key_allowed: true,
            limit,
            max: 0,
            too_deep: None,
        }
    }

    fn at(&self, k: usize) -> u8 {
        self.b.get(self.i + k).copied().unwrap_or(0)
    }

    fn eof(&self) -> bool {
        self.i >= self.b.len()
    }

    /// Length of the line break at `i + k`, 0 if none. libyaml also breaks
    /// lines at NEL, LS and PS.
    fn break_len(&self, k: usize) -> usize {
        match self.at(k) {
            b'\n' => 1,
            b'\r' => {
                if self.at(k + 1) == b'\n' {
                    2
                } else {
                    1
                }
            }
            0xC2 if self.at(k + 1) == 0x85 => 2,
            0xE2 if self.at(k + 1) == 0x80 && matches!(self.at(k + 2), 0xA8 | 0xA9) => 3,
            _ => 0,
        }
    }

    fn is_blank(&self, k: usize) -> bool {
        matches!(self.at(k), b' ' | b'\t')
    }

    /// Blank, line break or end of text.
    fn is_blankz(&self, k: usize) -> bool {
        self.i + k >= self.b.len() || self.is_blank(k) || self.break_len(k) > 0
    }

    /// Moves past one character (a whole line break, or a whole UTF-8
    /// sequence).
    fn advance(&mut self) {
        let br = self.break_len(0);
        if br > 0 {
            self.i += br;
            self.line += 1;
            self.col = 0;
            return;
        }
        let lead = self.at(0);
        let len = match lead {
            0xF0..=0xFF => 4,
            0xE0..=0xEF => 3,
            0xC0..=0xDF => 2,
            _ => 1,
        };
        self.i = (self.i + len).min(self.b.len());
        self.col += 1;
    }

    /// Moves to the next line break (not past it).
    fn skip_to_break(&mut self) {
        while !self.eof() && self.break_len(0) == 0 {
            // Plain ASCII runs are the common case: skip them in bulk.
            let rest = &self.b[self.i..];
            let run = rest
                .iter()
                .position(|&c| c == b'\n' || c == b'\r' || c >= 0x80)
                .unwrap_or(rest.len());
            if run > 0 {
                self.i += run;
                self.col += run;
            } else {
                self.advance();
            }
        }
    }

    fn depth(&self) -> usize {
        self.block_levels + self.flow_levels
    }

    /// Records the depth now reached by a collection starting at `column`
    /// (0-based) of the current line.
    fn note_depth(&mut self, column: usize) {
        self.note(self.depth(), column);
    }

    /// Records that nesting reached `depth` (at `column` of this line).
    fn note(&mut self, depth: usize, column: usize) {
        self.max = self.max.max(depth);
        for f in &mut self.flow {
            f.entry_max = f.entry_max.max(depth);
        }
        if self.key_col.is_some() {
            self.key_max = self.key_max.max(depth);
        }
        if depth > self.limit && self.too_deep.is_none() {
            self.too_deep = Some(TooDeep {
                line: self.line,
                column: column + 1,
            });
        }
    }

    /// A block collection starts at `column` (libyaml's roll_indent).
    fn roll(&mut self, column: usize, mapping: bool) {
        if !self.flow.is_empty() {
            return;
        }
        match self.indents.last_mut() {
            Some(top) if top.column >= column => {
                if top.column == column && !mapping && top.mapping && top.weight == 1 {
                    top.weight = 2;
                    self.block_levels += 1;
                }
            }
            _ => {
                self.indents.push(Indent {
                    column,
                    weight: 1,
                    mapping,
                });
                self.block_levels += 1;
            }
        }
        self.note_depth(column);
    }

    /// Block collections deeper than `column` end (libyaml's unroll_indent);
    /// `None` ends them all (a document marker).
    fn unroll(&mut self, column: Option<usize>) {
        if !self.flow.is_empty() {
            return;
        }
        while let Some(top) = self.indents.last() {
            if column.is_some_and(|c| top.column <= c) {
                break;
            }
            self.block_levels -= top.weight;
            self.indents.pop();
        }
    }

    /// A `?` or `:` in a flow sequence opens a one-pair mapping.
    fn start_pair(&mut self) {
        if let Some(f) = self.flow.last_mut() {
            if f.sequence && !f.pair {
                f.pair = true;
                let key_depth = f.entry_max;
                self.flow_levels += 1;
                self.note(self.depth().max(key_depth + 1), self.col);
            }
        }
    }

    /// A `,` ends the entry, and its one-pair mapping if any.
    fn end_pair(&mut self) {
        if let Some(f) = self.flow.last_mut() {
            if f.pair {
                f.pair = false;
                self.flow_levels -= 1;
            }
        }
        let depth = self.depth();
        if let Some(f) = self.flow.last_mut() {
            f.entry_max = depth;
        }
    }

    fn top_column(&self) -> Option<usize> {
        self.indents.last().map(|t| t.column)
    }

    /// A token that could be a key starts here.
    fn save_key(&mut self) {
        if self.flow.is_empty() && self.key_allowed {
            self.key_col = Some(self.col);
            self.key_max = self.depth();
        }
    }

    fn doc_marker(&self) -> bool {
        self.col == 0
            && ((self.at(0) == b'-' && self.at(1) == b'-' && self.at(2) == b'-')
                || (self.at(0) == b'.' && self.at(1) == b'.' && self.at(2) == b'.'))
            && self.is_blankz(3)
    }

    fn run(&mut self) {
        if self.b.starts_with(b"\xEF\xBB\xBF") {
            self.i = 3;
        }
        while self.too_deep.is_none() {
            self.skip_to_next_token();
            if self.eof() {
                return;
            }
            if self.flow.is_empty() {
                self.unroll(Some(self.col));
            }
            let c = self.at(0);
            if self.col == 0 && c == b'%' {
                self.skip_to_break();
                continue;
            }
            if self.doc_marker() {
                self.unroll(None);
                for _ in 0..3 {
                    self.advance();
                }
                self.key_allowed = false;
                self.key_col = None;
                continue;
            }
            match c {
                b'[' | b'{' => {
                    self.save_key();
                    self.flow.push(Flow {
                        sequence: c == b'[',
                        pair: false,
                        entry_max: 0,
                    });
                    self.flow_levels += 1;
                    self.note_depth(self.col);
                    self.key_allowed = true;
                    self.advance();
                }
                b']' | b'}' => {
                    if let Some(f) = self.flow.pop() {
                        self.flow_levels -= 1 + usize::from(f.pair);
                    }
                    self.key_allowed = false;
                    self.advance();
                }
                b',' => {
                    self.end_pair();
                    self.key_allowed = true;
                    self.advance();
                }
                b'-' if self.is_blankz(1) => {
                    self.roll(self.col, false);
                    self.key_allowed = true;
                    self.key_col = None;
                    self.advance();
                }
                b'?' if !self.flow.is_empty() || self.is_blankz(1) => {
                    self.roll(self.col, true);
                    self.start_pair();
                    self.key_allowed = self.flow.is_empty();
                    self.key_col = None;
                    self.advance();
                }
                b':' if !self.flow.is_empty() || self.is_blankz(1) => {
                    if self.flow.is_empty() {
                        // The pending key's column, or the `:`'s own for an
                        // explicit (`? key`) or missing key.
                        let key = self.key_col.take();
                        let before = self.block_levels;
                        self.roll(key.unwrap_or(self.col), true);
                        let added = self.block_levels - before;
                        if added > 0 && key.is_some() {
                            self.note(self.key_max + added, self.col);
                        }
                        self.key_allowed = key.is_none();
                    } else {
                        self.start_pair();
                        self.key_allowed = false;
                    }
                    self.advance();
                }
                b'*' | b'&' => {
                    self.save_key();
                    self.key_allowed = false;
                    self.advance();
                    while self.at(0).is_ascii_alphanumeric() || matches!(self.at(0), b'_' | b'-') {
                        self.advance();
                    }
                }
                b'!' => {
                    self.save_key();
                    self.key_allowed = false;
                    self.tag();
                }
                b'|' | b'>' if self.flow.is_empty() => {
                    self.key_allowed = true;
                    self.key_col = None;
                    self.block_scalar();
                }
                b'\'' | b'"' => {
                    self.save_key();
                    self.key_allowed = false;
                    self.quoted(c);
                }
                _ => {
                    self.save_key();
                    self.key_allowed = false;
                    self.plain();
                }
            }
        }
    }

    /// Skips blanks, comments and line breaks up to the next token.
    fn skip_to_next_token(&mut self) {
        loop {
            // libyaml refuses a tab where a key could start, yaml-rust2
            // skips it: skipping is right for both.
            while self.is_blank(0) {
                self.advance();
            }
            if self.at(0) == b'#' {
                self.skip_to_break();
            }
            if self.break_len(0) > 0 {
                self.advance();
                if self.flow.is_empty() {
                    self.key_allowed = true;
                    self.key_col = None;
                }
                continue;
            }
            return;
        }
    }

    fn tag(&mut self) {
        let uri = |c: u8, brackets: bool| {
            c.is_ascii_alphanumeric()
                || b"-_;/?:@&=+$.%!~*'()".contains(&c)
                || (brackets && b",[]".contains(&c))
        };
        if self.at(1) == b'<' {
            self.advance();
            self.advance();
            while uri(self.at(0), true) {
                self.advance();
            }
            if self.at(0) == b'>' {
                self.advance();
            }
        } else {
            self.advance();
            while uri(self.at(0), false) {
                self.advance();
            }
        }
    }

    fn quoted(&mut self, q: u8) {
        self.advance();
        while !self.eof() {
            let rest = &self.b[self.i..];
            // Bulk-skip the characters that cannot end the scalar.
            let run = rest
                .iter()
                .position(|&c| c == q || c == b'\\' || c == b'\n' || c == b'\r' || c >= 0x80)
                .unwrap_or(rest.len());
            self.i += run;
            self.col += run;
            if self.eof() {
                return;
            }
            match self.at(0) {
                b'\'' if q == b'\'' => {
                    self.advance();
                    if self.at(0) == b'\'' {
                        self.advance();
                    } else {
                        return;
                    }
                }
                b'"' if q == b'"' => {
                    self.advance();
                    return;
                }
                b'\\' if q == b'"' => {
                    self.advance();
                    if !self.eof() {
                        self.advance();
                    }
                }
                _ => self.advance(),
            }
        }
    }

    /// A plain scalar, with its continuation lines (libyaml's
    /// scan_plain_scalar).
    fn plain(&mut self) {
        let indent = self.top_column().map_or(0, |c| c + 1);
        let mut line_breaks = false;
        loop {
            if self.doc_marker() || self.at(0) == b'#' {
                break;
            }
            while !self.is_blankz(0) {
                // Bulk-skip the ASCII that cannot end the scalar.
                let rest = &self.b[self.i..];
                let run = rest
                    .iter()
                    .position(|&c| PLAIN_STOP[usize::from(c)])
                    .unwrap_or(rest.len());
                if run > 0 {
                    self.i += run;
                    self.col += run;
                    continue;
                }
                let c = self.at(0);
                if c == b':'
                    && (self.is_blankz(1)
                        || (!self.flow.is_empty() && b",?[]{}".contains(&self.at(1))))
                {
                    break;
                }
                if !self.flow.is_empty() && b",[]{}".contains(&c) {
                    break;
                }
                self.advance();
            }
            if !(self.is_blank(0) || self.break_len(0) > 0) {
                break;
            }
            while self.is_blank(0) || self.break_len(0) > 0 {
                if self.break_len(0) > 0 {
                    line_breaks = true;
                }
                self.advance();
            }
            if self.flow.is_empty() && self.col < indent {
                break;
            }
        }
        if line_breaks {
            self.key_allowed = true;
            self.key_col = None;
        }
    }

    /// A `|` or `>` scalar: its lines are text (libyaml's scan_block_scalar).
    fn block_scalar(&mut self) {
        self.advance();
        let mut increment = 0;
        if matches!(self.at(0), b'+' | b'-') {
            self.advance();
            if self.at(0).is_ascii_digit() {
                increment = usize::from(self.at(0) - b'0');
                self.advance();
            }
        } else if self.at(0).is_ascii_digit() {
            increment = usize::from(self.at(0) - b'0');
            self.advance();
            if matches!(self.at(0), b'+' | b'-') {
                self.advance();
            }
        }
        // The rest of the header line is blanks and a comment.
        self.skip_to_break();
        if self.eof() {
            return;
        }
        self.advance();
        let parent = self.top_column();
        let mut indent = match (increment, parent) {
            (0, _) => 0,
            (n, Some(p)) => p + n,
            (n, None) => n,
        };
        let mut max_indent = 0;
        self.block_breaks(&mut indent, &mut max_indent);
        if indent == 0 {
            indent = max_indent.max(parent.map_or(0, |p| p + 1)).max(1);
        }
        while self.col == indent && !self.eof() {
            self.skip_to_break();
            if self.eof() {
                return;
            }
            self.advance();
            self.block_breaks(&mut indent, &mut max_indent);
        }
    }

    /// Indentation and empty lines of a block scalar; `max_indent` keeps
    /// the deepest indentation met (it decides an indentation not given).
    fn block_breaks(&mut self, indent: &mut usize, max_indent: &mut usize) {
        loop {
            while (*indent == 0 || self.col < *indent) && self.at(0) == b' ' {
                self.advance();
            }
            *max_indent = (*max_indent).max(self.col);
            if self.break_len(0) == 0 {
                return;
            }
            self.advance();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_profiles_nest_shallowly() {
        for name in ["default", "container-strict", "audit"] {
            let text = super::super::extends::bundled_text(name).unwrap();
            let depth = max_nesting(text);
            assert!((1..12).contains(&depth), "{name}: {depth}");
            assert_eq!(check(text), Ok(()));
        }
    }

    #[test]
    fn counts_match_simple_documents() {
        for (text, depth) in [
            ("a: 1\n", 1),
            ("[1, [2, [3]]]", 3),
            ("{\"a\": [1, {\"b\": 2}]}", 3),
            ("rules:\n  - name: r\n    exec: { names: [a] }\n", 5),
            ("rules:\n- name: r\n", 3),
            ("- - - x\n", 3),
            ("a: \"[[[[\"\nb: '{{{{'\n", 1),
            ("a: x [[[[ # [[[[\n", 1),
            ("a: |\n  [[[[ \"\n  {{{{\nb: 1\n", 1),
            ("a: b\n  [[[[\n", 1),
            ("\"a\": [\"]]]\", [[1]]]", 4),
        ] {
            assert_eq!(max_nesting(text), depth, "{text:?}");
        }
    }

    #[test]
    fn deep_flow_and_block_nests_are_refused_where_the_limit_is_passed() {
        let flow = "[".repeat(100_000);
        assert_eq!(
            check(&flow),
            Err(TooDeep {
                line: 1,
                column: MAX_NESTING + 1
            })
        );
        let block = "- ".repeat(100_000);
        assert_eq!(
            check(&block),
            Err(TooDeep {
                line: 1,
                column: 2 * MAX_NESTING + 1
            })
        );
        // Refused at the key that opens the level past the limit.
        let indented: String = (0..100).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert_eq!(
            check(&indented),
            Err(TooDeep {
                line: MAX_NESTING + 1,
                column: MAX_NESTING + 1
            })
        );
        let ok: String = (0..MAX_NESTING)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect();
        assert_eq!(check(&ok), Ok(()));
    }

    #[test]
    fn brackets_hidden_from_a_naive_scan_still_count() {
        // An apostrophe inside a plain scalar opens no quote.
        let text = format!("a: it's\nb: {}\nc: 'x'\n", "[".repeat(80));
        assert!(check(&text).is_err());
        // A plain scalar continued on the next line: its quote is text.
        let text = format!("a: x\n \"\nb: {}\nc: \"y\"\n", "[".repeat(80));
        assert!(check(&text).is_err());
        // Closing brackets inside quotes close nothing.
        let text = "[\"]]]]]]]]\", ".repeat(70);
        assert!(check(&text).is_err());
    }

    #[test]
    fn cases_the_property_test_found() {
        for (text, depth) in [
            // `key: value` in a flow sequence is a one-pair mapping.
            ("#\n[\\: ", 2),
            // ... and a flow collection as its key is inside that mapping.
            ("[{}: ]-\"", 3),
            // yaml-rust2 skips a tab where libyaml would stop.
            ("\t\n- [- :\"", 3),
        ] {
            assert!(yaml_rust2_depth(text) <= depth, "{text:?}");
            assert_eq!(max_nesting(text), depth, "{text:?}");
        }
    }

    /// YAML-ish text from the characters that decide structure.
    fn arb_yamlish() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just("["),
            Just("]"),
            Just("{"),
            Just("}"),
            Just(","),
            Just(": "),
            Just(":"),
            Just("- "),
            Just("-"),
            Just("? "),
            Just("#"),
            Just(" #"),
            Just("\""),
            Just("'"),
            Just("\\"),
            Just("|"),
            Just(">"),
            Just("|2"),
            Just("!t "),
            Just("!<[x]> "),
            Just("a"),
            Just("b c"),
            Just("\n"),
            Just("\n  "),
            Just("\n    "),
            Just(" "),
            Just("\t"),
            Just("---\n"),
            Just("\r\n"),
            Just("@"),
            Just("%"),
            Just("`"),
            Just("&a "),
            Just("*a"),
            Just("...\n"),
        ];
        proptest::collection::vec(piece, 0..60).prop_map(|v| v.concat())
    }

    fn value_depth(v: &serde_yaml::Value) -> usize {
        match v {
            serde_yaml::Value::Sequence(s) => 1 + s.iter().map(value_depth).max().unwrap_or(0),
            serde_yaml::Value::Mapping(m) => {
                1 + m
                    .iter()
                    .map(|(k, v)| value_depth(k).max(value_depth(v)))
                    .max()
                    .unwrap_or(0)
            }
            serde_yaml::Value::Tagged(t) => value_depth(&t.value),
            _ => 0,
        }
    }

    /// The deepest nesting yaml-rust2 reaches before it finishes or stops.
    fn yaml_rust2_depth(text: &str) -> usize {
        use yaml_rust2::parser::{Event, Parser};
        let mut parser = Parser::new_from_str(text);
        let (mut depth, mut max) = (0usize, 0usize);
        while let Ok((event, _)) = parser.next_token() {
            match event {
                Event::SequenceStart(..) | Event::MappingStart(..) => {
                    depth += 1;
                    max = max.max(depth);
                }
                Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
                Event::StreamEnd => break,
                _ => {}
            }
        }
        max
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            std::env::var("MG_NESTING_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
        ))]

        /// The bound holds for whatever the parsers build. yaml-rust2 only
        /// ever reads text that serde_yaml (libyaml) accepted, and spells
        /// anchors differently (`*a"` is one name to it, an error to
        /// libyaml), so it is compared on such text without anchors.
        #[test]
        fn the_count_bounds_what_parsers_build(text in arb_yamlish()) {
            let bound = max_nesting(&text);
            if let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(&text) {
                // Aliases repeat nodes without nesting the text.
                if !text.contains('*') {
                    proptest::prop_assert!(value_depth(&v) <= bound, "serde_yaml {} > {bound}", value_depth(&v));
                }
                if !text.contains(['*', '&']) {
                    let reached = yaml_rust2_depth(&text);
                    proptest::prop_assert!(reached <= bound, "yaml-rust2 {reached} > {bound}");
                }
            }
        }
    }
}
