//! [`ConfigError`]: what is wrong with the configuration, and where.

use std::fmt;
use std::path::PathBuf;

/// A configuration error: which field, where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file, when the value came from one.
    pub file: Option<PathBuf>,
    /// The line in the file, when known.
    pub line: Option<u64>,
    /// The field, as a dotted path or a flag name.
    pub field: Option<String>,
    /// What is wrong with it, and what would be right.
    pub message: String,
}

impl ConfigError {
    /// An error in `field` (a dotted path or a flag name), not yet tied to
    /// a file.
    pub(crate) fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: None,
            line: None,
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(file) = &self.file {
            parts.push(format!("config file {}", file.display()));
        }
        if let Some(line) = self.line {
            parts.push(format!("line {line}"));
        }
        if let Some(field) = &self.field {
            parts.push(format!("field `{field}`"));
        }
        if parts.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", parts.join(", "), self.message)
        }
    }
}

impl std::error::Error for ConfigError {}
