//! The plan layer's one error type: [`Diagnostic`], with a stable [`Code`], a severity, a help
//! line and a label on every span involved (both places for a duplicate).
//!
//! Validation never stops at the first problem: stages push into a [`Diagnostics`] list and the
//! caller decides (errors block everything that executes; warnings only inform).

use std::fmt;
use std::sync::Arc;

use miette::{LabeledSpan, MietteError, SourceCode, SourceSpan, SpanContents};
use serde::Serialize;

use super::source::{SourceFile, Span};

/// Stable diagnostic codes. Their spelling (`plan::duplicate_account`) is part of the interface:
/// `--format json` and `--format github` print it, and docs/plan-format.md lists them
/// ("Diagnostic codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Code {
    /// The file could not be read (missing, not UTF-8, too large, binary).
    Unreadable,
    /// YAML syntax, or a resource budget (aliases, depth, size) breached.
    Syntax,
    /// The same key twice in one mapping.
    DuplicateKey,
    /// A value of the wrong type (a list where a mapping is expected, …).
    WrongType,
    /// A key the plan format does not know.
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A value outside its allowed set or range.
    InvalidValue,
    /// `version:` absent or not 1.
    UnsupportedVersion,
    /// `from:`/`to:`/`platform:` names no platform, or `type:` names no platform kind.
    UnknownPlatform,
    /// Two accounts with the same address.
    DuplicateAccount,
    /// An address that is not an e-mail address.
    InvalidAddress,
    /// An account's domain is not attached to its Exchange target.
    DomainNotAttached,
    /// Source and target are the same platform.
    SameSourceAndTarget,
    /// No supported migration between these platform kinds.
    UnsupportedFlow,
    /// A provisional name equals another account's address or provisional name.
    ProvisionalNameCollision,
    /// `after:` names an account that is not in the plan.
    UnknownAccount,
    /// `after:` forms a loop.
    AfterCycle,
    /// `after:` points to an account of a later wave.
    AfterLaterWave,
    /// A CSV import that cannot be read or parsed.
    CsvImport,
    /// A secret reference that cannot be resolved now (unset variable, missing file).
    UnresolvedSecret,
    /// A plaintext secret or a setting that lowers security.
    Insecure,
    /// The same domain attached twice.
    DuplicateDomain,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unreadable => "plan::unreadable",
            Code::Syntax => "plan::syntax",
            Code::DuplicateKey => "plan::duplicate_key",
            Code::WrongType => "plan::wrong_type",
            Code::UnknownKey => "plan::unknown_key",
            Code::MissingKey => "plan::missing_key",
            Code::InvalidValue => "plan::invalid_value",
            Code::UnsupportedVersion => "plan::unsupported_version",
            Code::UnknownPlatform => "plan::unknown_platform",
            Code::DuplicateAccount => "plan::duplicate_account",
            Code::InvalidAddress => "plan::invalid_address",
            Code::DomainNotAttached => "plan::domain_not_attached",
            Code::SameSourceAndTarget => "plan::same_source_and_target",
            Code::UnsupportedFlow => "plan::unsupported_flow",
            Code::ProvisionalNameCollision => "plan::provisional_name_collision",
            Code::UnknownAccount => "plan::unknown_account",
            Code::AfterCycle => "plan::after_cycle",
            Code::AfterLaterWave => "plan::after_later_wave",
            Code::CsvImport => "plan::csv_import",
            Code::UnresolvedSecret => "plan::unresolved_secret",
            Code::Insecure => "plan::insecure",
            Code::DuplicateDomain => "plan::duplicate_domain",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// A labelled place in a source file.
#[derive(Debug, Clone)]
pub struct Label {
    pub source: Arc<SourceFile>,
    pub span: Span,
    pub text: String,
    /// The span holds a secret written in clear: its text is masked in every snippet (see
    /// [`Diagnostics::hide_secrets`]).
    pub secret: bool,
}

/// One problem found in a plan.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub help: Option<String>,
    /// The first label is the primary place; miette shows the labels that share its file.
    pub labels: Vec<Label>,
    /// Places that may hold a secret in clear, masked in every snippet without a label of
    /// their own (see [`Diagnostics::hide_secrets`]).
    pub masks: Vec<(Arc<SourceFile>, Span)>,
}

impl Diagnostic {
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            help: None,
            labels: Vec::new(),
            masks: Vec::new(),
        }
    }

    pub fn warning(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    #[must_use]
    pub fn with_label(
        mut self,
        source: &Arc<SourceFile>,
        span: Span,
        text: impl Into<String>,
    ) -> Self {
        self.labels.push(Label {
            source: Arc::clone(source),
            span,
            text: text.into(),
            secret: false,
        });
        self
    }

    /// [`Diagnostic::with_label`] on a secret written in clear: no snippet shows its text.
    #[must_use]
    pub fn with_secret_label(
        self,
        source: &Arc<SourceFile>,
        span: Span,
        text: impl Into<String>,
    ) -> Self {
        let mut d = self.with_label(source, span, text);
        if let Some(l) = d.labels.last_mut() {
            l.secret = true;
        }
        d
    }

    /// Mask `span` in every snippet (it may hold a password in clear), without labelling it.
    #[must_use]
    pub fn with_mask(mut self, source: &Arc<SourceFile>, span: Span) -> Self {
        self.masks.push((Arc::clone(source), span));
        self
    }

    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The labels outside the primary label's file, as `file:line:column (text)`.
    fn elsewhere(&self) -> Vec<String> {
        let Some(primary) = self.labels.first() else {
            return Vec::new();
        };
        self.labels
            .iter()
            .filter(|l| !Arc::ptr_eq(&l.source, &primary.source))
            .map(|l| {
                let (line, column) = l.source.line_col(l.span.offset);
                format!("{}:{line}:{column} ({})", l.source.name, l.text)
            })
            .collect()
    }

    /// The primary place: file, 1-based line and column.
    pub fn location(&self) -> Option<(&str, usize, usize)> {
        self.labels.first().map(|l| {
            let (line, col) = l.source.line_col(l.span.offset);
            (l.source.name.as_str(), line, col)
        })
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

impl miette::Diagnostic for Diagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code.as_str()))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Warning => miette::Severity::Warning,
            Severity::Error => miette::Severity::Error,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        // The snippet shows one file; the places in other files (the plan line importing a CSV
        // row, the first of two duplicates) are named after the help.
        let elsewhere = self.elsewhere();
        if elsewhere.is_empty() {
            return self
                .help
                .as_ref()
                .map(|h| Box::new(h) as Box<dyn fmt::Display>);
        }
        let mut text = self.help.clone().unwrap_or_default();
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str("see also ");
        text.push_str(&elsewhere.join(", "));
        Some(Box::new(text))
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.labels
            .first()
            .map(|l| l.source.as_ref() as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary = self.labels.first()?;
        // miette shows one source per diagnostic: labels in another file (a CSV row and the plan
        // line importing it) appear in `--format json` and `github`, not in the snippet.
        Some(Box::new(
            self.labels
                .iter()
                .filter(move |l| Arc::ptr_eq(&l.source, &primary.source))
                .enumerate()
                .map(|(i, l)| {
                    let span = SourceSpan::new(l.span.offset.into(), l.span.len);
                    let text = (!l.text.is_empty()).then(|| l.text.clone());
                    if i == 0 {
                        LabeledSpan::new_primary_with_span(text, span)
                    } else {
                        LabeledSpan::new_with_span(text, span)
                    }
                }),
        ))
    }
}

impl SourceCode for SourceFile {
    /// The lines around `span`, found through the line index: the cost does not grow with the
    /// span's distance from the top of the file.
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let (offset, len) = (span.offset(), span.len());
        if offset + len > self.text.len() {
            return Err(MietteError::OutOfBounds);
        }
        let first = self.line_index(offset).saturating_sub(context_lines_before);
        let last = (self.line_index(offset + len.saturating_sub(1)) + context_lines_after + 1)
            .min(self.line_count() - 1);
        let window_start = self.line_range(first).start;
        // The window ends after the last line's break, as miette's own windows do.
        let window_end = self.line_range(last + 1).start;
        let window = &self.text[window_start..window_end];
        let local = SourceSpan::new((offset - window_start).into(), len);
        let inner = window.read_span(&local, context_lines_before, context_lines_after)?;
        let data_offset = inner.span().offset() + window_start;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            SourceSpan::new(data_offset.into(), inner.span().len()),
            inner.line() + first,
            inner.column(),
            inner.line_count(),
        )))
    }
}

/// Everything found while loading and validating a plan, in the order found.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    /// Mask every secret written in clear (the spans of secret labels) in the files the
    /// diagnostics show: each such file is replaced, in every label, by a copy whose secret
    /// bytes are `*` (same length, so every span still points at the same place). A snippet
    /// then never prints a password, not even as a context line of another problem.
    pub fn hide_secrets(&mut self) {
        let mut masked: Vec<(Arc<SourceFile>, Arc<SourceFile>)> = Vec::new();
        let secrets: Vec<(Arc<SourceFile>, Span)> = self
            .items
            .iter()
            .flat_map(|d| d.labels.iter())
            .filter(|l| l.secret)
            .map(|l| (Arc::clone(&l.source), l.span))
            .chain(self.items.iter().flat_map(|d| d.masks.iter().cloned()))
            .collect();
        for (source, _) in &secrets {
            if masked
                .iter()
                .any(|(original, _)| Arc::ptr_eq(original, source))
            {
                continue;
            }
            let mut bytes = source.text.as_bytes().to_vec();
            for (_, span) in secrets.iter().filter(|(s, _)| Arc::ptr_eq(s, source)) {
                let end = (span.offset + span.len).min(bytes.len());
                for b in &mut bytes[span.offset.min(end)..end] {
                    *b = b'*';
                }
            }
            // Spans hold whole characters, so the masked text stays UTF-8.
            let text = String::from_utf8_lossy(&bytes).into_owned();
            masked.push((
                Arc::clone(source),
                SourceFile::new(source.name.clone(), text),
            ));
        }
        for label in self.items.iter_mut().flat_map(|d| d.labels.iter_mut()) {
            if let Some((_, copy)) = masked
                .iter()
                .find(|(original, _)| Arc::ptr_eq(original, &label.source))
            {
                label.source = Arc::clone(copy);
            }
        }
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }

    pub fn warning_count(&self) -> usize {
        self.items.len() - self.error_count()
    }

    /// Turn every warning of `code` into an error: what warns in `validate` blocks `apply`.
    pub fn escalate(&mut self, code: Code) {
        for d in &mut self.items {
            if d.code == code {
                d.severity = Severity::Error;
            }
        }
    }

    /// Stable order for output: by file, then position, then code.
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            let key = |d: &Diagnostic| {
                d.labels
                    .first()
                    .map(|l| (l.source.name.clone(), l.span.offset))
            };
            key(a).cmp(&key(b)).then(a.code.cmp(&b.code))
        });
    }
}

impl Extend<Diagnostic> for Diagnostics {
    fn extend<T: IntoIterator<Item = Diagnostic>>(&mut self, iter: T) {
        self.items.extend(iter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miette::Diagnostic as _;

    #[test]
    fn duplicate_labels_both_places_and_renders_code_and_help() {
        let src = SourceFile::new(
            "p.yaml",
            "accounts:\n  - address: a@x.fr\n  - address: a@x.fr\n",
        );
        let d = Diagnostic::error(Code::DuplicateAccount, "account a@x.fr is listed twice")
            .with_label(&src, Span::new(43, 6), "again here")
            .with_label(&src, Span::new(23, 6), "first here")
            .with_help("remove one of the two entries");
        let labels: Vec<LabeledSpan> = d.labels().expect("labels").collect();
        assert_eq!(labels.len(), 2);
        assert_eq!(labels[0].offset(), 43);
        assert!(labels[0].primary());
        assert_eq!(labels[1].offset(), 23);
        assert_eq!(d.location(), Some(("p.yaml", 3, 14)));

        let mut out = String::new();
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .render_report(&mut out, &d)
            .expect("render");
        assert!(out.contains("plan::duplicate_account"), "{out}");
        assert!(
            out.contains("first here") && out.contains("again here"),
            "{out}"
        );
        assert!(out.contains("remove one of the two entries"), "{out}");
        assert!(out.contains("p.yaml"), "{out}");
    }

    #[test]
    fn labels_in_another_file_are_named_in_the_help() {
        let plan = SourceFile::new("p.yaml", "accounts:\n  - import: a.csv\n");
        let csv = SourceFile::new("a.csv", "address\nx@y.example\n");
        let d = Diagnostic::error(Code::DuplicateAccount, "twice")
            .with_label(&csv, Span::new(8, 11), "again here")
            .with_label(&plan, Span::new(22, 5), "imported here")
            .with_help("remove one");
        assert_eq!(d.labels().expect("labels").count(), 1);
        assert_eq!(
            d.help().expect("help").to_string(),
            "remove one\nsee also p.yaml:2:13 (imported here)"
        );
    }

    #[test]
    fn escalate_turns_warnings_of_one_code_into_errors() {
        let mut all = Diagnostics::default();
        all.push(Diagnostic::warning(
            Code::UnresolvedSecret,
            "JOHN_PW is not set",
        ));
        all.push(Diagnostic::warning(Code::Insecure, "tls-verify is off"));
        assert!(!all.has_errors());
        all.escalate(Code::UnresolvedSecret);
        assert_eq!((all.error_count(), all.warning_count()), (1, 1));
    }
}
