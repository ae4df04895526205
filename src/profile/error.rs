//! Profile errors, reported compiler style: file, field path, line, problem.

use std::{fmt, path::Path, path::PathBuf};

/// One problem in a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Field path, e.g. `rules[3].connect.ports[1]`.
    pub field: String,
    /// 1-based line where the format gives one.
    pub line: Option<usize>,
    /// 1-based column where the format gives one.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            field: field.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

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

/// Why a profile was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("reading profile {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// YAML/JSON syntax or shape error (unknown key, wrong type, ...).
    #[error("{}", render(file, std::slice::from_ref(diagnostic)))]
    Syntax {
        /// The file, when parsed from one.
        file: Option<PathBuf>,
        /// The problem.
        diagnostic: Diagnostic,
    },
    /// The profile parsed but breaks one or more rules of the language.
    #[error("{}", render(file, diagnostics))]
    Invalid {
        /// The file, when parsed from one.
        file: Option<PathBuf>,
        /// Every problem found.
        diagnostics: Vec<Diagnostic>,
    },
}

fn render(file: &Option<PathBuf>, diagnostics: &[Diagnostic]) -> String {
    let name = file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<profile>".into());
    let mut out = String::new();
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{name}:{d}"));
    }
    out
}

/// `text` cut to at most `max` characters, marked when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}… (message shortened)", &text[..at]),
        None => text.to_string(),
    }
}

impl ProfileError {
    pub(crate) fn syntax(file: Option<&Path>, err: &serde_yaml::Error) -> Self {
        let loc = err.location();
        // serde_yaml prefixes the path it knows ("rules[0]: unknown field ...").
        let text = err.to_string();
        let text = match loc {
            Some(_) => text
                .rsplit_once(" at line ")
                .map(|(m, _)| m.to_string())
                .unwrap_or(text),
            None => text,
        };
        // serde quotes offending values; a huge one (e.g. a whole file named
        // by `extends`) must not be echoed into logs.
        let text = shorten(&text, 200);
        let (field, message) = match text.split_once(": ") {
            Some((f, m)) if f.starts_with("rules") || !f.contains(' ') => {
                (f.to_string(), m.to_string())
            }
            _ => (String::new(), text),
        };
        ProfileError::Syntax {
            file: file.map(Path::to_path_buf),
            diagnostic: Diagnostic {
                field,
                line: loc.as_ref().map(|l| l.line()),
                column: loc.as_ref().map(|l| l.column()),
                message,
            },
        }
    }

    pub(crate) fn in_file(self, path: Option<&Path>) -> Self {
        match self {
            ProfileError::Invalid { diagnostics, .. } => ProfileError::Invalid {
                file: path.map(Path::to_path_buf),
                diagnostics,
            },
            other => other,
        }
    }

    /// Every problem, one per entry (I/O errors give one without a field).
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            ProfileError::Io { source, .. } => vec![Diagnostic::new("", source.to_string())],
            ProfileError::Syntax { diagnostic, .. } => vec![diagnostic.clone()],
            ProfileError::Invalid { diagnostics, .. } => diagnostics.clone(),
        }
    }
}
