//! Source files (the plan and its CSV imports) and positions inside them.
//!
//! Every diagnostic points into a [`SourceFile`] by byte range; line and column are computed
//! from the text on demand so that parsing stays cheap.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

/// A file the plan was read from, shared by every diagnostic and account that points into it.
///
/// Positions are found through an index of line starts built once, on first use: rendering
/// thousands of diagnostics into one large file costs a binary search each, not a scan from the
/// top of the file each.
#[derive(Clone)]
pub struct SourceFile {
    /// The path as the user wrote it (or as it was resolved against the plan's folder).
    pub name: String,
    pub text: Arc<str>,
    line_starts: OnceLock<Vec<usize>>,
}

impl PartialEq for SourceFile {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.text == other.text
    }
}

impl Eq for SourceFile {}

impl fmt::Debug for SourceFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceFile({}, {} bytes)", self.name, self.text.len())
    }
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Arc<Self> {
        Arc::new(SourceFile {
            name: name.into(),
            text: text.into(),
            line_starts: OnceLock::new(),
        })
    }

    /// The byte offset where each line starts (the first is 0).
    fn line_starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(memchr_newlines(self.text.as_bytes()).map(|i| i + 1))
                .collect()
        })
    }

    /// 0-based number of the line holding a byte offset (clamped to the text).
    pub fn line_index(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.line_starts()
            .partition_point(|&start| start <= offset)
            .saturating_sub(1)
    }

    /// Number of lines (a final line without newline counts; an empty text has one).
    pub fn line_count(&self) -> usize {
        self.line_starts().len()
    }

    /// The byte range of a 0-based line, without its line break (`\n`, or `\r\n`).
    pub fn line_range(&self, line: usize) -> Range<usize> {
        let starts = self.line_starts();
        let start = starts.get(line).copied().unwrap_or(self.text.len());
        let mut end = starts.get(line + 1).map_or(self.text.len(), |&s| s - 1);
        if end > start && self.text.as_bytes()[end - 1] == b'\r' {
            end -= 1;
        }
        start..end.max(start)
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_index(offset);
        let line_start = self.line_starts()[line];
        let column = String::from_utf8_lossy(&self.text.as_bytes()[line_start..offset])
            .chars()
            .count()
            + 1;
        (line + 1, column)
    }

    /// Byte offset of a 1-based line and column (in characters), clamped to the text.
    pub fn offset_of(&self, line: usize, column: usize) -> usize {
        let text: &str = &self.text;
        let line_start = self
            .line_starts()
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(text.len());
        let rest = &text[line_start..];
        let line_text = &rest[..rest.find('\n').unwrap_or(rest.len())];
        line_start
            + line_text
                .char_indices()
                .nth(column.saturating_sub(1))
                .map_or(line_text.len(), |(i, _)| i)
    }
}

/// The offsets of every `\n` in `bytes`.
fn memchr_newlines(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter_map(|(i, &b)| (b == b'\n').then_some(i))
}

/// A byte range in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub offset: usize,
    pub len: usize,
}

impl Span {
    pub fn new(offset: usize, len: usize) -> Self {
        Span { offset, len }
    }

    pub fn range(self) -> Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// A place in a source file: where an account, a key or a value was written.
#[derive(Debug, Clone)]
pub struct Origin {
    pub source: Arc<SourceFile>,
    pub span: Span,
}

impl Origin {
    pub fn new(source: &Arc<SourceFile>, span: Span) -> Self {
        Origin {
            source: Arc::clone(source),
            span,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (line, column) = self.source.line_col(self.span.offset);
        write!(f, "{}:{line}:{column}", self.source.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_not_bytes() {
        let src = SourceFile::new("p.yaml", "a: 1\nnom: é x\n");
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(5), (2, 1));
        // 'x' is after a two-byte 'é': byte offset 13, character column 8.
        assert_eq!(src.line_col(13), (2, 8));
        assert_eq!(src.offset_of(2, 8), 13);
        assert_eq!(src.offset_of(1, 1), 0);
        assert_eq!(src.offset_of(9, 9), src.text.len());
        assert_eq!(src.line_col(src.text.len()), (3, 1));
    }

    #[test]
    fn line_ranges_leave_out_the_line_break() {
        let src = SourceFile::new("a.csv", "ab\r\ncd\n\nlast");
        assert_eq!(src.line_count(), 4);
        assert_eq!(src.line_range(0), 0..2);
        assert_eq!(src.line_range(1), 4..6);
        assert_eq!(src.line_range(2), 7..7);
        assert_eq!(src.line_range(3), 8..12);
        assert_eq!(src.line_index(5), 1);
        assert_eq!(src.line_index(7), 2);
    }
}
