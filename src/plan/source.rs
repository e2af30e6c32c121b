//! Source files (the plan and its CSV imports) and positions inside them.
//!
//! Every diagnostic points into a [`SourceFile`] by byte range; line and column are computed
//! from the text on demand so that parsing stays cheap.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// A file the plan was read from, shared by every diagnostic and account that points into it.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The path as the user wrote it (or as it was resolved against the plan's folder).
    pub name: String,
    pub text: Arc<str>,
}

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
        })
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.split(|&b| b == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        (line, column)
    }

    /// Byte offset of a 1-based line and column (in characters), clamped to the text.
    pub fn offset_of(&self, line: usize, column: usize) -> usize {
        let text: &str = &self.text;
        let line_start = if line <= 1 {
            0
        } else {
            text.match_indices('\n')
                .nth(line - 2)
                .map_or(text.len(), |(i, _)| i + 1)
        };
        let rest = &text[line_start..];
        let line_text = &rest[..rest.find('\n').unwrap_or(rest.len())];
        line_start
            + line_text
                .char_indices()
                .nth(column.saturating_sub(1))
                .map_or(line_text.len(), |(i, _)| i)
    }
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
    }
}
