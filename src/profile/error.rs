//! Profile errors, reported compiler style: file, line, column, field path,
//! problem.

use std::{fmt, path::Path, path::PathBuf};

use serde::ser::{Serialize, SerializeStruct, Serializer};

/// One problem in a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in, when it came from one. A problem inside
    /// a profile named by `extends` names that file; otherwise
    /// [`ProfileError::diagnostics`] fills in the file that was loaded.
    pub file: Option<PathBuf>,
    /// Field path, e.g. `rules[3].connect.ports[1]` (empty for the whole
    /// document).
    pub field: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: None,
            field: field.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub(crate) fn at(mut self, position: Option<(usize, usize)>) -> Self {
        if let Some((line, column)) = position {
            self.line = Some(line);
            self.column = Some(column);
        }
        self
    }
}

/// `line:column: field: message` (the file is for the caller to prefix:
/// [`ProfileError`]'s `Display` does).
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{l}:{c}: ")?,
            (Some(l), None) => write!(f, "{l}: ")?,
            _ => {}
        }
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// As `{"file", "line", "column", "field", "message"}`; unknown values are
/// `null`, and a file name that is not UTF-8 is shown lossily.
impl Serialize for Diagnostic {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Diagnostic", 5)?;
        st.serialize_field(
            "file",
            &self.file.as_ref().map(|p| p.to_string_lossy().into_owned()),
        )?;
        st.serialize_field("line", &self.line)?;
        st.serialize_field("column", &self.column)?;
        st.serialize_field("field", &self.field)?;
        st.serialize_field("message", &self.message)?;
        st.end()
    }
}

/// What a path that is not a regular file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A named pipe.
    Fifo,
    /// A character device (`/dev/zero`, a terminal, ...).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A Unix socket.
    Socket,
    /// Anything else that is not a regular file.
    Other,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Socket => "a socket",
            FileKind::Other => "not a file",
        })
    }
}

/// Why a profile was rejected.
///
/// Messages never quote a file's content unless it is shaped like a
/// profile (a mapping with `apiVersion`): a path named by mistake, or by
/// someone probing (`extends: /etc/shadow`), is reported by name only.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be opened or read.
    #[error("reading profile {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The path names something other than a regular file (a FIFO, a
    /// device such as `/dev/zero`, a directory): profiles are read from
    /// regular files only.
    #[error("reading profile {}: is {kind}, not a regular file", path.display())]
    NotRegularFile {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: FileKind,
    },
    /// The file is larger than [`MAX_PROFILE_BYTES`](super::MAX_PROFILE_BYTES).
    #[error("reading profile {}: larger than {limit} bytes, the most a profile may hold", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit, in bytes.
        limit: u64,
    },
    /// Collections nest deeper than [`MAX_NESTING`](super::MAX_NESTING)
    /// levels (refused before any parser reads the text).
    #[error(
        "{}:{line}:{column}: nesting deeper than {limit} levels, the most a profile may use",
        name(file)
    )]
    TooDeep {
        /// The file, when parsed from one.
        file: Option<PathBuf>,
        /// 1-based line where the limit was passed.
        line: usize,
        /// 1-based column where the limit was passed.
        column: usize,
        /// The limit.
        limit: usize,
    },
    /// The text is YAML (or JSON) but not a profile: the top level is not a
    /// mapping with an `apiVersion` key. Nothing of its content is quoted.
    #[error("`{}` is not a minerguard profile (line {line}: {reason})", name(file))]
    NotAProfile {
        /// The file, when parsed from one.
        file: Option<PathBuf>,
        /// 1-based line of the document's first content.
        line: usize,
        /// What was expected.
        reason: String,
    },
    /// The text is not valid YAML (or JSON): where parsing stopped.
    #[error("{}", render(file, std::slice::from_ref(&**diagnostic)))]
    Syntax {
        /// The file, when parsed from one.
        file: Option<PathBuf>,
        /// The problem (boxed: it keeps every `Result<_, ProfileError>`
        /// small).
        diagnostic: Box<Diagnostic>,
    },
    /// The profile breaks the language: wrong types, unknown keys, and
    /// every rule of the language that the parser cannot check, all of
    /// them, in document order.
    #[error("{}", render(file, diagnostics))]
    Invalid {
        /// The file, when parsed from one.
        file: Option<PathBuf>,
        /// Every problem found.
        diagnostics: Vec<Diagnostic>,
    },
}

fn name(file: &Option<PathBuf>) -> String {
    file.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<profile>".into())
}

fn render(file: &Option<PathBuf>, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let file = if d.file.is_some() { &d.file } else { file };
        out.push_str(&format!("{}:{d}", name(file)));
    }
    out
}

/// `text` cut to at most `max` characters, marked when cut.
pub(super) fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}… (message shortened)", &text[..at]),
        None => text.to_string(),
    }
}

/// serde_yaml's message without its ` at line L column C` suffix.
pub(super) fn without_location(err: &serde_yaml::Error) -> String {
    let text = err.to_string();
    match err.location() {
        Some(loc) => {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            match text.find(&suffix) {
                // libyaml adds `, while parsing ... at line ...` after it.
                Some(at) => format!("{}{}", &text[..at], &text[at + suffix.len()..]),
                None => text,
            }
        }
        None => text,
    }
}

impl ProfileError {
    /// A serde error of a document known to be shaped like a profile (its
    /// values may be quoted).
    pub(crate) fn syntax(file: Option<&Path>, err: &serde_yaml::Error) -> Self {
        let loc = err.location();
        // serde_yaml prefixes the path it knows ("rules[0]: unknown field ...").
        let text = without_location(err);
        // serde quotes offending values; a huge one must not flood logs.
        let text = shorten(&text, 200);
        let (field, message) = match text.split_once(": ") {
            Some((f, m)) if f.starts_with("rules") || !f.contains(' ') => {
                (f.to_string(), m.to_string())
            }
            _ => (String::new(), text),
        };
        ProfileError::Syntax {
            file: file.map(Path::to_path_buf),
            diagnostic: Box::new(Diagnostic {
                file: None,
                field,
                line: loc.as_ref().map(|l| l.line()),
                column: loc.as_ref().map(|l| l.column()),
                message,
            }),
        }
    }

    /// The file the error is about, when there is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            ProfileError::Io { path, .. }
            | ProfileError::NotRegularFile { path, .. }
            | ProfileError::TooLarge { path, .. } => Some(path),
            ProfileError::TooDeep { file, .. }
            | ProfileError::NotAProfile { file, .. }
            | ProfileError::Syntax { file, .. }
            | ProfileError::Invalid { file, .. } => file.as_deref(),
        }
    }

    /// Every problem, one per entry, each with its file, and its line and
    /// column where known. Errors about the file as a whole (I/O, size,
    /// not a profile) give one entry with an empty field.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let whole = |message: String, position: Option<(usize, usize)>| {
            vec![Diagnostic::new("", message).at(position)]
        };
        let mut out = match self {
            ProfileError::Io { source, .. } => whole(source.to_string(), None),
            ProfileError::NotRegularFile { kind, .. } => {
                whole(format!("is {kind}, not a regular file"), None)
            }
            ProfileError::TooLarge { limit, .. } => whole(
                format!("larger than {limit} bytes, the most a profile may hold"),
                None,
            ),
            ProfileError::TooDeep {
                line,
                column,
                limit,
                ..
            } => whole(
                format!("nesting deeper than {limit} levels, the most a profile may use"),
                Some((*line, *column)),
            ),
            ProfileError::NotAProfile { line, reason, .. } => {
                let mut d = whole(format!("not a minerguard profile: {reason}"), None);
                d[0].line = Some(*line);
                d
            }
            ProfileError::Syntax { diagnostic, .. } => vec![(**diagnostic).clone()],
            ProfileError::Invalid { diagnostics, .. } => diagnostics.clone(),
        };
        if let Some(file) = self.file() {
            for d in &mut out {
                d.file.get_or_insert_with(|| file.to_path_buf());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_serialize_with_file_line_column_field_message() {
        let err = ProfileError::Invalid {
            file: Some(PathBuf::from("p.yaml")),
            diagnostics: vec![
                Diagnostic::new("rules[0].action", "unknown variant").at(Some((5, 13))),
                Diagnostic {
                    file: Some(PathBuf::from("base.yaml")),
                    ..Diagnostic::new("name", "empty")
                },
            ],
        };
        let json = serde_json::to_value(err.diagnostics()).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"file": "p.yaml", "line": 5, "column": 13, "field": "rules[0].action", "message": "unknown variant"},
                {"file": "base.yaml", "line": null, "column": null, "field": "name", "message": "empty"},
            ])
        );
        assert_eq!(
            err.to_string(),
            "p.yaml:5:13: rules[0].action: unknown variant\nbase.yaml:name: empty"
        );
    }
}
