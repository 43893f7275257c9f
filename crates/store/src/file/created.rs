//! `metadata.creationTimestamp`, set by the store on first apply as the Kubernetes API server
//! does, and kept on every update.

use meshward_config::{Document, Limits, parse_stream};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::StoreError;

/// Now, in RFC 3339 at second precision (`2026-11-23T04:00:00Z`).
pub(super) fn now() -> String {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// `document` with `creationTimestamp` set to `created` unless it already has one. The stored
/// text is rewritten (as JSON, which is YAML) so the stamp survives a restart.
pub(super) fn stamp(
    document: Document,
    created: &str,
    limits: &Limits,
) -> Result<Document, StoreError> {
    if document.resource.metadata().creation_timestamp.is_some() {
        return Ok(document);
    }
    let invalid = |reason: String| StoreError::Conflict(format!("{}: {reason}", document.location));
    let mut value: serde_json::Value =
        serde_saphyr::from_str(&document.text).map_err(|e| invalid(e.to_string()))?;
    let metadata = value
        .get_mut("metadata")
        .and_then(|m| m.as_object_mut())
        .ok_or_else(|| invalid("no metadata".into()))?;
    metadata.insert(
        "creationTimestamp".into(),
        serde_json::Value::String(created.to_owned()),
    );
    let text = serde_json::to_string_pretty(&value).map_err(|e| invalid(e.to_string()))?;
    let source = document.location.source.to_string();
    let mut reparsed = parse_stream(&source, &text, limits)
        .into_documents()
        .map_err(StoreError::Invalid)?;
    match (reparsed.pop(), reparsed.is_empty()) {
        (Some(doc), true) => Ok(doc),
        _ => Err(invalid(
            "stamping the creation time changed the document count".into(),
        )),
    }
}
