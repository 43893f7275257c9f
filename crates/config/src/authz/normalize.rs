//! Request path normalization before authorization, as MeshConfig `pathNormalization` says.
//!
//! istio/api `mesh/v1alpha1/config.proto`, `ProxyPathNormalization`: "BASE: Normalize
//! according to RFC 3986 … MERGE_SLASHES: In addition to normalization in BASE, merge adjacent
//! slashes into one. DECODE_AND_MERGE_SLASHES: In addition to normalization in
//! MERGE_SLASHES, slash characters are UTF-8 decoded (case insensitive) prior to merging. …
//! NONE: Pass through the path as-is." The normalized path is both what policies match and
//! what the app receives, so the two can never disagree.
//!
//! Deny when in doubt — where Envoy would pass something through that an app may read
//! differently, Meshward refuses the request (the proxy answers 400) instead of matching it
//! raw:
//! - an escaped slash or backslash (`%2F`, `%5C`) under BASE and MERGE_SLASHES, which Istio
//!   keeps unchanged (a rule on `/admin/*` would not see `/admin%2Fusers`, an app that decodes
//!   would);
//! - NUL or another control character, raw or percent-encoded;
//! - a malformed escape (`%4`, `%zz`) or a fragment (`#`).

use thiserror::Error;

use crate::resources::mesh_config::NormalizationType;

/// Why a path cannot be normalized safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PathError {
    /// The path does not start with `/` (or is empty).
    #[error("the path must start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    BadEscape,
    /// NUL or another control character, raw or encoded.
    #[error("control character in the path")]
    ControlCharacter,
    /// `%2F` or `%5C` where the normalization keeps them.
    #[error("escaped slash or backslash in the path")]
    EscapedSlash,
    /// A `#` in the request target.
    #[error("fragment in the request target")]
    Fragment,
}

/// Normalizes the path of a request target (`/a/../b?x=1`): the query string is kept as is
/// and returned after the normalized path.
pub fn normalize_path(target: &str, mode: NormalizationType) -> Result<String, PathError> {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    if target.contains('#') {
        return Err(PathError::Fragment);
    }
    if target.bytes().any(|b| b.is_ascii_control()) {
        return Err(PathError::ControlCharacter);
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let mut normalized = match mode {
        NormalizationType::None => path.to_owned(),
        NormalizationType::Default | NormalizationType::Base => base(path, false)?,
        NormalizationType::MergeSlashes => merge_slashes(&base(path, false)?),
        NormalizationType::DecodeAndMergeSlashes => merge_slashes(&base(path, true)?),
    };
    if let Some(query) = query {
        normalized.push('?');
        normalized.push_str(query);
    }
    Ok(normalized)
}

/// RFC 3986 §6.2.2: decode percent-encoded unreserved characters, upper-case the hex digits of
/// the other escapes, turn `\` into `/` (as Envoy's normalizer does), then remove dot segments
/// (§5.2.4). With `decode_slashes`, `%2F` and `%5C` become `/` first.
fn base(path: &str, decode_slashes: bool) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let byte = bytes
                    .get(i + 1..i + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or(PathError::BadEscape)?;
                match byte {
                    b if b.is_ascii_control() => return Err(PathError::ControlCharacter),
                    b'/' | b'\\' if decode_slashes => out.push('/'),
                    b'/' | b'\\' => return Err(PathError::EscapedSlash),
                    b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                        out.push(char::from(b));
                    }
                    b => out.push_str(&format!("%{b:02X}")),
                }
                i += 3;
            }
            b'\\' => {
                out.push('/');
                i += 1;
            }
            _ => {
                // Copy the run up to the next special byte (keeps multi-byte characters whole).
                let end = bytes[i..]
                    .iter()
                    .position(|b| matches!(b, b'%' | b'\\'))
                    .map_or(bytes.len(), |n| i + n);
                out.push_str(&path[i..end]);
                i = end;
            }
        }
    }
    Ok(remove_dot_segments(&out))
}

/// RFC 3986 §5.2.4 for an absolute path: `.` segments vanish, `..` removes the segment before
/// it (never above the root); a trailing `.` or `..` leaves a trailing slash.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = path.split('/').skip(1).peekable();
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            other => {
                segments.push(other);
                continue;
            }
        }
        if last {
            segments.push("");
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use NormalizationType::{Base, DecodeAndMergeSlashes, MergeSlashes, None as Raw};

    #[test]
    fn normalizes_as_istio_documents() {
        let cases: &[(&str, NormalizationType, Result<&str, PathError>)] = &[
            // "BASE: Normalize according to RFC 3986": dot segments, e.g. `/a/../b` → `/b`.
            ("/a/../b", Base, Ok("/b")),
            ("/a/./b/.", Base, Ok("/a/b/")),
            ("/../../etc/passwd", Base, Ok("/etc/passwd")),
            ("/public/..", Base, Ok("/")),
            ("/admin/%2e%2e/public", Base, Ok("/public")),
            ("/%2E%2E/admin", Base, Ok("/admin")),
            // Unreserved characters are decoded, other escapes are kept in upper case.
            ("/%61dmin", Base, Ok("/admin")),
            ("/a%20b%3f", Base, Ok("/a%20b%3F")),
            ("/caf\u{e9}", Base, Ok("/caf\u{e9}")),
            // Envoy's normalizer turns backslashes into slashes.
            ("/admin\\..\\public", Base, Ok("/public")),
            // BASE keeps adjacent slashes; MERGE_SLASHES merges them.
            ("//admin//x", Base, Ok("//admin//x")),
            ("//admin//x", MergeSlashes, Ok("/admin/x")),
            // DECODE_AND_MERGE_SLASHES decodes %2F and %5C, then merges.
            ("/admin%2F%2fx%5cy", DecodeAndMergeSlashes, Ok("/admin/x/y")),
            ("/a/%2F../b", DecodeAndMergeSlashes, Ok("/a/b")),
            // Escaped slashes where Istio keeps them: refused (an app may decode them).
            ("/admin%2Fusers", Base, Err(PathError::EscapedSlash)),
            ("/admin%5Cusers", MergeSlashes, Err(PathError::EscapedSlash)),
            // The query string is not normalized.
            ("/a/../b?x=/../y&z=%2F", Base, Ok("/b?x=/../y&z=%2F")),
            // Never matched raw: NUL, control characters, bad escapes, fragments.
            ("/a%00b", Base, Err(PathError::ControlCharacter)),
            ("/a\0b", Base, Err(PathError::ControlCharacter)),
            ("/a%0d%0aX: y", Base, Err(PathError::ControlCharacter)),
            ("/a%4", Base, Err(PathError::BadEscape)),
            ("/a%zz", Base, Err(PathError::BadEscape)),
            ("/a#frag", Base, Err(PathError::Fragment)),
            ("a/b", Base, Err(PathError::NotAbsolute)),
            ("", Base, Err(PathError::NotAbsolute)),
            // "NONE: Pass through the path as-is" (control characters still refused).
            ("/a/../b%2F", Raw, Ok("/a/../b%2F")),
            ("/a%00", Raw, Ok("/a%00")),
        ];
        for (path, mode, want) in cases {
            let got = normalize_path(path, *mode);
            assert_eq!(
                got.as_deref().map_err(|e| *e),
                *want,
                "{path:?} under {mode:?}"
            );
        }
    }

    #[test]
    fn default_is_base() {
        assert_eq!(
            normalize_path("/a/./b/../c", NormalizationType::Default),
            normalize_path("/a/./b/../c", Base)
        );
    }
}
