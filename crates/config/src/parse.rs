//! Multi-document YAML and JSON streams → typed, validated [`Document`]s that remember where
//! they came from.
//!
//! Every input is bounded ([`Limits`]): total size, number of documents, nesting depth, aliases
//! and nodes, so a hostile stream (a "billion laughs") fails fast with a named budget.
//! Duplicate keys are errors. Each document is parsed on its own: one bad document does not
//! hide the verdict on the others, and [`ParsedStream::into_documents`] gives all-or-nothing.

use std::sync::Arc;

use serde::Deserialize;
use serde_saphyr::{Budget, DuplicateKeyPolicy, Options, Spanned};

use crate::diagnostic::{Diagnostic, Location, Severity};
use crate::resources::Resource;
use crate::validate;

mod dispatch;
mod locate;
mod split;

use locate::{Node, PathIndex};

/// Bounds on one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in the whole stream.
    pub max_bytes: usize,
    /// Documents in the stream.
    pub max_documents: usize,
    /// Nesting depth of one document.
    pub max_depth: usize,
    /// Alias uses (`*ref`) in one document.
    pub max_aliases: usize,
    /// Nodes in one document.
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 8 * 1024 * 1024,
            max_documents: 10_000,
            max_depth: 32,
            max_aliases: 100,
            max_nodes: 100_000,
        }
    }
}

impl Limits {
    pub(crate) fn options(&self) -> Options {
        let mut budget = Budget::default();
        budget.max_depth = self.max_depth;
        budget.max_aliases = self.max_aliases;
        budget.max_nodes = self.max_nodes;
        budget.max_documents = 1;
        let mut options = Options::default();
        options.budget = Some(budget);
        options.duplicate_keys = DuplicateKeyPolicy::Error;
        options.with_snippet = false;
        options
    }
}

/// A valid resource and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The resource.
    pub resource: Resource,
    /// Where the document starts.
    pub location: Location,
    /// The document's own text, exactly as written (what a store persists).
    pub text: String,
}

/// The verdict on one document of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedDocument {
    /// Where the document starts.
    pub location: Location,
    /// `Kind namespace/name` when the header could be read.
    pub resource: Option<String>,
    /// The resource, when the document has no error.
    pub document: Option<Document>,
    /// Errors and warnings, each with its own location.
    pub diagnostics: Vec<Diagnostic>,
}

impl ParsedDocument {
    /// Whether the document is accepted.
    pub fn is_valid(&self) -> bool {
        self.document.is_some()
    }
}

/// Every document of a stream, valid or not.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedStream {
    /// The documents, in order.
    pub documents: Vec<ParsedDocument>,
    /// Errors about the stream as a whole (size, count, JSON syntax).
    pub errors: Vec<Diagnostic>,
}

impl ParsedStream {
    /// Whether every document is valid.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty() && self.documents.iter().all(ParsedDocument::is_valid)
    }

    /// Every error of the stream, in order.
    pub fn all_errors(&self) -> Vec<Diagnostic> {
        let mut errors = self.errors.clone();
        for document in &self.documents {
            errors.extend(
                document
                    .diagnostics
                    .iter()
                    .filter(|d| d.severity == Severity::Error)
                    .cloned(),
            );
        }
        errors
    }

    /// All the documents, or every error when any document is invalid (all-or-nothing).
    pub fn into_documents(self) -> Result<Vec<Document>, Vec<Diagnostic>> {
        if !self.is_valid() {
            return Err(self.all_errors());
        }
        Ok(self
            .documents
            .into_iter()
            .filter_map(|parsed| parsed.document)
            .collect())
    }
}

/// Parses and validates a stream read from `source` (a file name, `-`, a store key).
pub fn parse_stream(source: &str, text: &str, limits: &Limits) -> ParsedStream {
    let source: Arc<str> = Arc::from(source);
    let at = |line: u64, column: u64| Location {
        source: source.clone(),
        line,
        column,
    };
    let mut stream = ParsedStream::default();
    if text.len() > limits.max_bytes {
        stream.errors.push(Diagnostic {
            location: Some(at(1, 1)),
            ..Diagnostic::error(format!(
                "the stream is {} bytes, more than the limit of {} bytes",
                text.len(),
                limits.max_bytes
            ))
        });
        return stream;
    }
    let chunks = match split::split(text) {
        Ok(chunks) => chunks,
        Err((line, column, message)) => {
            stream.errors.push(Diagnostic {
                // serde_json says column 0 for an end of input at the start of a line.
                location: Some(at(line.max(1), column.max(1))),
                ..Diagnostic::error(format!("invalid JSON: {message}"))
            });
            return stream;
        }
    };
    if chunks.len() > limits.max_documents {
        stream.errors.push(Diagnostic {
            location: Some(at(1, 1)),
            ..Diagnostic::error(format!(
                "the stream has {} documents, more than the limit of {}",
                chunks.len(),
                limits.max_documents
            ))
        });
        return stream;
    }
    let options = limits.options();
    for chunk in chunks {
        let place = Placement {
            source: source.clone(),
            line: chunk.line,
            column_offset: chunk.column_offset,
        };
        stream
            .documents
            .push(parse_document(&place, chunk.text, &options));
    }
    stream
}

/// Maps positions inside one chunk to positions in the stream.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    pub(crate) source: Arc<str>,
    pub(crate) line: u64,
    pub(crate) column_offset: u64,
}

impl Placement {
    pub(crate) fn at(&self, line: u64, column: u64) -> Location {
        let line = line.max(1);
        let column = if line == 1 {
            column + self.column_offset
        } else {
            column
        };
        Location {
            source: self.source.clone(),
            line: self.line + line - 1,
            column: column.max(1),
        }
    }

    /// The location of a serde-saphyr error, or the document start when it has none.
    pub(crate) fn of_error(&self, err: &serde_saphyr::Error) -> Location {
        match err.location() {
            Some(loc) if loc.line() > 0 => self.at(loc.line(), loc.column()),
            _ => self.at(1, 1),
        }
    }
}

/// `apiVersion`, `kind` and the names, read leniently before the strict typed parse.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<HeaderMeta>,
}

#[derive(Debug, Default, Deserialize)]
struct HeaderMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

fn parse_document(place: &Placement, text: &str, options: &Options) -> ParsedDocument {
    let mut parsed = ParsedDocument {
        location: place.at(1, 1),
        resource: None,
        document: None,
        diagnostics: Vec::new(),
    };
    let header: Header = match serde_saphyr::from_str_with_options(text, options.clone()) {
        Ok(header) => header,
        Err(err) => {
            parsed.diagnostics.push(Diagnostic {
                location: Some(place.of_error(&err)),
                ..Diagnostic::error(err.without_snippet().to_string())
            });
            return parsed;
        }
    };
    let kind = header.kind.unwrap_or_default();
    let api_version = header.api_version.unwrap_or_default();
    let meta = header.metadata.unwrap_or_default();
    let label = format!(
        "{} {}{}",
        if kind.is_empty() { "<no kind>" } else { &kind },
        meta.namespace
            .map(|ns| format!("{ns}/"))
            .unwrap_or_default(),
        meta.name.unwrap_or_default()
    );
    parsed.resource = Some(label.clone());
    let resource = match dispatch::typed(place, text, options, &api_version, &kind) {
        Ok(resource) => resource,
        Err(mut diagnostic) => {
            diagnostic.resource = Some(label);
            parsed.diagnostics.push(*diagnostic);
            return parsed;
        }
    };
    let label = resource.key().to_string();
    parsed.resource = Some(label.clone());
    let issues = validate::validate(&resource);
    if !issues.is_empty() {
        let index = serde_saphyr::from_str_with_options::<Spanned<Node>>(text, options.clone())
            .map(|root| PathIndex::build(&root))
            .unwrap_or_default();
        for issue in issues {
            let location = index
                .find(&issue.path)
                .map_or_else(|| place.at(1, 1), |(line, col)| place.at(line, col));
            parsed.diagnostics.push(Diagnostic {
                severity: issue.severity,
                code: None,
                resource: Some(label.clone()),
                path: Some(issue.path),
                message: issue.message,
                location: Some(location),
            });
        }
    }
    if parsed
        .diagnostics
        .iter()
        .all(|d| d.severity != Severity::Error)
    {
        parsed.document = Some(Document {
            resource,
            location: parsed.location.clone(),
            text: text.to_owned(),
        });
    }
    parsed
}

#[cfg(test)]
mod tests;
