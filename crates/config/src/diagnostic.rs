//! Where a problem is and what it is: [`Location`] (source:line:column) and [`Diagnostic`].

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// A position in a named source (a file path, `-` for stdin, or a store key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    /// The source name.
    pub source: Arc<str>,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.line, self.column)
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Rejects the document.
    Error,
    /// Accepted, but probably not what was meant.
    Warning,
    /// For information.
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "Error",
            Severity::Warning => "Warning",
            Severity::Info => "Info",
        })
    }
}

/// One finding about a document or a set of resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Severity.
    pub severity: Severity,
    /// An `ISTxxxx` code where Istio has one, `MWxxxx` for Meshward's own analyzers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// The resource, as `Kind namespace/name`, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The field path, e.g. `spec.mtls.mode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What is wrong, and what to do.
    pub message: String,
    /// Where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

impl Diagnostic {
    /// An error with only a message.
    pub fn error(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code: None,
            resource: None,
            path: None,
            message: message.into(),
            location: None,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        write!(f, "{}", self.severity)?;
        if let Some(code) = self.code {
            write!(f, " [{code}]")?;
        }
        if let Some(resource) = &self.resource {
            write!(f, " ({resource})")?;
        }
        if let Some(path) = &self.path {
            write!(f, " {path}:")?;
        }
        write!(f, " {}", self.message)
    }
}
