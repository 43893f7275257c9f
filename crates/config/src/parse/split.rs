//! Cuts a stream into documents without parsing it, so each document can be parsed (and fail)
//! on its own and keep its absolute line numbers.
//!
//! YAML documents are separated by `---` (or ended by `...`) at the start of a line. A stream
//! whose first significant character is `{` is a JSON stream: one or more concatenated objects.

use serde::de::IgnoredAny;

/// One document's text and where it starts in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chunk<'a> {
    pub(crate) text: &'a str,
    /// 1-based line of the chunk's first character.
    pub(crate) line: u64,
    /// 0-based column offset of the chunk's first character on that line.
    pub(crate) column_offset: u64,
}

/// Splits `text` into documents; JSON syntax errors come back as `Err((line, column, message))`.
pub(crate) fn split(text: &str) -> Result<Vec<Chunk<'_>>, (u64, u64, String)> {
    let first = text
        .lines()
        .map(str::trim_start)
        .find(|line| !line.is_empty() && !line.starts_with('#'));
    if first.is_some_and(|line| line.starts_with('{')) {
        split_json(text)
    } else {
        Ok(split_yaml(text))
    }
}

fn split_yaml(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1u64;
    let mut offset = 0usize;
    for (line_number, line) in (1u64..).zip(text.split_inclusive('\n')) {
        let bare = line.trim_end_matches(['\n', '\r']);
        let marker =
            bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t") || bare == "...";
        if marker {
            push_yaml(&mut chunks, &text[start..offset], start_line);
            start = offset + line.len();
            start_line = line_number + 1;
        }
        offset += line.len();
    }
    push_yaml(&mut chunks, &text[start..], start_line);
    chunks
}

fn push_yaml<'a>(chunks: &mut Vec<Chunk<'a>>, text: &'a str, line: u64) {
    let significant = text.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#') && !l.starts_with('%')
    });
    if significant {
        chunks.push(Chunk {
            text,
            line,
            column_offset: 0,
        });
    }
}

fn split_json(text: &str) -> Result<Vec<Chunk<'_>>, (u64, u64, String)> {
    let mut chunks = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<IgnoredAny>();
    let mut previous_end = 0usize;
    while let Some(next) = stream.next() {
        if let Err(err) = next {
            return Err((err.line() as u64, err.column() as u64, err.to_string()));
        }
        let end = stream.byte_offset();
        let raw = &text[previous_end..end];
        let leading = raw.len() - raw.trim_start().len();
        let begin = previous_end + leading;
        let before = &text[..begin];
        let line = before.matches('\n').count() as u64 + 1;
        let column_offset = before
            .rfind('\n')
            .map_or(begin, |newline| begin - newline - 1) as u64;
        chunks.push(Chunk {
            text: &text[begin..end],
            line,
            column_offset,
        });
        previous_end = end;
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_documents_keep_their_starting_line() {
        let text = "# header\n---\na: 1\n---\n\n---\nb: 2\n...\n";
        let chunks = split(text).unwrap();
        assert_eq!(chunks.len(), 2, "empty documents are skipped: {chunks:?}");
        assert_eq!((chunks[0].text, chunks[0].line), ("a: 1\n", 3));
        assert_eq!((chunks[1].text, chunks[1].line), ("b: 2\n", 7));
    }

    #[test]
    fn json_stream_of_objects() {
        let text = "{\"a\": 1}\n  {\"b\":\n 2}";
        let chunks = split(text).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!((chunks[1].line, chunks[1].column_offset), (2, 2));
        assert_eq!(chunks[1].text, "{\"b\":\n 2}");
    }

    #[test]
    fn json_syntax_error_has_a_position() {
        let (line, _, message) = split("{\"a\": }").unwrap_err();
        assert_eq!(line, 1);
        assert!(message.contains("expected value"), "{message}");
    }
}
