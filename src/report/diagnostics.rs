//! Diagnostics as miette reports (humans), GitHub Actions annotations, or a JSON list.
//!
//! Entry point: [`render`]. At scale (a plan of 10,000 accounts whose secrets are not set on
//! the reviewer's machine) a person reads a summary, not thousands of snippets: the human and
//! GitHub formats show the first few diagnostics of each code in full, then one line with the
//! count of the rest and where to see them (`--verbose`, `--format json`, which lists every
//! one). Each snippet is cut from an excerpt of the lines it shows, long lines shortened
//! around their labels, so rendering costs the same at the end of a large file as at its top
//! and a megabyte-long CSV cell is never printed whole.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;

use miette::{LabeledSpan, MietteError, SourceCode, SourceSpan, SpanContents};
use serde::Serialize;

use crate::plan::diag::{Code, Diagnostic, Diagnostics, Severity};
use crate::plan::source::SourceFile;

/// How many diagnostics of one code the human format shows in full, unless verbose.
pub const SHOWN_PER_CODE: usize = 3;
/// How many annotations of one code the GitHub format writes (GitHub shows ten per step).
const GITHUB_PER_CODE: usize = 10;
/// Characters of a long source line kept before, and from, a label's start in a snippet.
const KEEP_BEFORE: usize = 40;
const KEEP_AFTER: usize = 80;
/// A line longer than this (in bytes) is shortened in snippets.
const LONG_LINE: usize = 200;

/// What the human and GitHub formats leave out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Detail {
    /// Every diagnostic in full (no grouping).
    pub verbose: bool,
    /// Errors only: warnings are counted in the summary, never shown.
    pub quiet: bool,
}

/// Output formats of `mailplan validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Annotated source snippets, for people.
    Human,
    /// `::error file=…,line=…::` lines that GitHub Actions shows on the pull request.
    Github,
    /// A versioned JSON document, for machines.
    Json,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    format: &'static str,
    valid: bool,
    errors: usize,
    warnings: usize,
    diagnostics: Vec<JsonDiagnostic<'a>>,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    code: &'static str,
    severity: Severity,
    message: &'a str,
    help: Option<&'a str>,
    labels: Vec<JsonLabel<'a>>,
}

#[derive(Serialize)]
struct JsonLabel<'a> {
    file: &'a str,
    line: usize,
    column: usize,
    offset: usize,
    length: usize,
    text: &'a str,
}

/// Render every diagnostic. Human text goes to `err`, machine formats to `out`.
pub fn render(
    diags: &Diagnostics,
    format: Format,
    color: bool,
    detail: Detail,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<()> {
    match format {
        Format::Human => {
            let theme = if color {
                miette::GraphicalTheme::unicode()
            } else {
                miette::GraphicalTheme::unicode_nocolor()
            };
            let handler = miette::GraphicalReportHandler::new_themed(theme);
            let mut groups = Groups::new(detail, SHOWN_PER_CODE);
            for d in &diags.items {
                if !groups.show(d) {
                    continue;
                }
                let shown = Shown::new(d);
                let mut text = String::new();
                handler
                    .render_report(&mut text, &shown)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                writeln!(err, "{text}")?;
            }
            for line in groups.summary() {
                writeln!(err, "{line}")?;
            }
            Ok(())
        }
        Format::Github => {
            let mut groups = Groups::new(detail, GITHUB_PER_CODE);
            for d in &diags.items {
                if groups.show(d) {
                    writeln!(out, "{}", github_line(d))?;
                }
            }
            for line in groups.summary() {
                writeln!(out, "::notice title=mailplan::{line}")?;
            }
            Ok(())
        }
        Format::Json => {
            let report = JsonReport {
                format: "mailplan.validate/v1",
                valid: !diags.has_errors(),
                errors: diags.error_count(),
                warnings: diags.warning_count(),
                diagnostics: diags.items.iter().map(json_diagnostic).collect(),
            };
            serde_json::to_writer_pretty(&mut *out, &report)?;
            writeln!(out)
        }
    }
}

/// Which diagnostics are shown, and the count of those left out per code and severity.
struct Groups {
    detail: Detail,
    per_code: usize,
    seen: BTreeMap<(Code, Severity), usize>,
}

impl Groups {
    fn new(detail: Detail, per_code: usize) -> Self {
        Groups {
            detail,
            per_code,
            seen: BTreeMap::new(),
        }
    }

    /// Count `d`; whether it is shown in full.
    fn show(&mut self, d: &Diagnostic) -> bool {
        let seen = self.seen.entry((d.code, d.severity)).or_default();
        *seen += 1;
        if self.detail.quiet && d.severity == Severity::Warning {
            return false;
        }
        self.detail.verbose || *seen <= self.per_code
    }

    /// One line per code with diagnostics left out: how many, and how to see them.
    fn summary(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter_map(|(&(code, severity), &count)| {
                let what = match severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                if self.detail.quiet && severity == Severity::Warning {
                    return None;
                }
                let hidden = count.saturating_sub(if self.detail.verbose {
                    count
                } else {
                    self.per_code
                });
                (hidden > 0).then(|| {
                    format!(
                        "{code}: {hidden} more {what}(s) of this kind not shown ({count} in all); \
                         `--verbose` shows every one, `--format json` lists them"
                    )
                })
            })
            .collect()
    }
}

/// A diagnostic as miette renders it: its labels in the primary label's file, over an
/// [`Excerpt`] of the lines they need.
struct Shown<'d> {
    d: &'d Diagnostic,
    excerpt: Option<Excerpt>,
    labels: Vec<LabeledSpan>,
}

impl<'d> Shown<'d> {
    fn new(d: &'d Diagnostic) -> Self {
        let Some(primary) = d.labels.first() else {
            return Shown {
                d,
                excerpt: None,
                labels: Vec::new(),
            };
        };
        let same: Vec<_> = d
            .labels
            .iter()
            .filter(|l| Arc::ptr_eq(&l.source, &primary.source))
            .collect();
        let spans: Vec<(usize, usize)> = same.iter().map(|l| (l.span.offset, l.span.len)).collect();
        let excerpt = Excerpt::new(&primary.source, &spans);
        let labels = same
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let span = excerpt.map(l.span.offset, l.span.len);
                let text = (!l.text.is_empty()).then(|| l.text.clone());
                if i == 0 {
                    LabeledSpan::new_primary_with_span(text, span)
                } else {
                    LabeledSpan::new_with_span(text, span)
                }
            })
            .collect();
        Shown {
            d,
            excerpt: Some(excerpt),
            labels,
        }
    }
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.d, f)
    }
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.d, f)
    }
}

impl std::error::Error for Shown<'_> {}

impl miette::Diagnostic for Shown<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        miette::Diagnostic::code(self.d)
    }

    fn severity(&self) -> Option<miette::Severity> {
        miette::Diagnostic::severity(self.d)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        miette::Diagnostic::help(self.d)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.excerpt.as_ref().map(|e| e as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.excerpt
            .as_ref()
            .map(|_| Box::new(self.labels.iter().cloned()) as Box<dyn Iterator<Item = _>>)
    }
}

/// The lines of a source file that a snippet shows (its labels' lines and one line of context
/// on each side), each longer than [`LONG_LINE`] bytes cut to the parts around the labels that
/// start on it, `…` standing for what is left out. Offsets into the file are mapped to offsets
/// into the excerpt with [`Excerpt::map`]; its snippets carry the file's real line numbers.
struct Excerpt {
    source: Arc<SourceFile>,
    text: String,
    /// 0-based line of the file where the excerpt starts.
    first_line: usize,
    /// Kept pieces of the file: (file offset, length, excerpt offset), in order. Between two
    /// pieces of one line stands an ellipsis.
    pieces: Vec<(usize, usize, usize)>,
}

impl Excerpt {
    const ELLIPSIS: &'static str = "…";

    fn new(source: &Arc<SourceFile>, spans: &[(usize, usize)]) -> Self {
        let text: &str = &source.text;
        let first = spans
            .iter()
            .map(|&(o, _)| source.line_index(o))
            .min()
            .unwrap_or(0)
            .saturating_sub(1);
        let last = spans
            .iter()
            .map(|&(o, l)| source.line_index(o + l.saturating_sub(1)))
            .max()
            .unwrap_or(0)
            .saturating_add(1)
            .min(source.line_count() - 1);
        let mut out = Excerpt {
            source: Arc::clone(source),
            text: String::new(),
            first_line: first,
            pieces: Vec::new(),
        };
        for line in first..=last {
            let range = source.line_range(line);
            let mut keep = vec![(range.start, range.start + KEEP_BEFORE)];
            if range.len() > LONG_LINE {
                for &(o, _) in spans {
                    if range.contains(&o) {
                        keep.push((o.saturating_sub(KEEP_BEFORE), o + KEEP_AFTER));
                    }
                }
            } else {
                keep = vec![(range.start, range.end)];
            }
            keep.sort_unstable();
            let mut merged: Vec<(usize, usize)> = Vec::new();
            for (s, e) in keep {
                let s = floor_char(text, s.clamp(range.start, range.end));
                let e = floor_char(text, e.clamp(range.start, range.end));
                match merged.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            for (i, &(s, e)) in merged.iter().enumerate() {
                if i > 0 {
                    out.text.push_str(Self::ELLIPSIS);
                }
                out.pieces.push((s, e - s, out.text.len()));
                out.text.push_str(&text[s..e]);
            }
            if merged.last().is_some_and(|&(_, e)| e < range.end) {
                out.text.push_str(Self::ELLIPSIS);
            }
            // The line break is a piece too, so that an offset on it maps to itself.
            let next = source.line_range(line + 1).start;
            if line < last || next > range.end {
                let end = if line < last {
                    next
                } else {
                    next.min(text.len())
                };
                out.pieces
                    .push((range.end, end - range.end, out.text.len()));
                out.text.push_str(&text[range.end..end]);
            }
        }
        out
    }

    /// A file span (offset, length) as an excerpt span: an end that falls in a left-out part
    /// takes in its ellipsis; a start there points at the ellipsis.
    fn map(&self, offset: usize, len: usize) -> SourceSpan {
        let start = self.position(offset, false);
        let end = self.position(offset + len, true).max(start);
        SourceSpan::new(start.into(), end - start)
    }

    /// The file offset of an excerpt offset (an ellipsis stands at the end of the piece before).
    fn file_offset(&self, at_excerpt: usize) -> usize {
        let i = self.pieces.partition_point(|&(_, _, at)| at <= at_excerpt);
        i.checked_sub(1)
            .and_then(|i| self.pieces.get(i))
            .map_or(0, |&(s, l, at)| s + (at_excerpt - at).min(l))
    }

    fn position(&self, offset: usize, end: bool) -> usize {
        let i = self.pieces.partition_point(|&(s, _, _)| s <= offset);
        let Some(&(s, l, at)) = i.checked_sub(1).and_then(|i| self.pieces.get(i)) else {
            return 0;
        };
        if offset <= s + l {
            at + (offset - s)
        } else if end {
            (at + l + Self::ELLIPSIS.len()).min(self.text.len())
        } else {
            at + l
        }
    }
}

/// The largest char boundary at or before `i`.
fn floor_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner =
            self.text
                .as_str()
                .read_span(span, context_lines_before, context_lines_after)?;
        // The column the header shows (`file:line:column`) is the file's, not the excerpt's.
        let start = self.file_offset(inner.span().offset());
        let line_start = self.source.line_range(self.source.line_index(start)).start;
        let column = self.source.text[line_start..start].chars().count();
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.source.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line() + self.first_line,
            column,
            inner.line_count(),
        )))
    }
}

fn json_diagnostic(d: &Diagnostic) -> JsonDiagnostic<'_> {
    JsonDiagnostic {
        code: d.code.as_str(),
        severity: d.severity,
        message: &d.message,
        help: d.help.as_deref(),
        labels: d
            .labels
            .iter()
            .map(|l| {
                let (line, column) = l.source.line_col(l.span.offset);
                JsonLabel {
                    file: &l.source.name,
                    line,
                    column,
                    offset: l.span.offset,
                    length: l.span.len,
                    text: &l.text,
                }
            })
            .collect(),
    }
}

/// One GitHub Actions workflow command. Properties and message are escaped as the runner wants
/// (`%`, CR, LF everywhere; `:` and `,` in properties too).
fn github_line(d: &Diagnostic) -> String {
    let level = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let escape_data = |s: &str| {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let escape_prop = |s: &str| escape_data(s).replace(':', "%3A").replace(',', "%2C");
    let mut message = d.message.clone();
    if let Some(help) = &d.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    let title = escape_prop(d.code.as_str());
    match d.location() {
        Some((file, line, col)) => format!(
            "::{level} file={},line={line},col={col},title={title}::{}",
            escape_prop(file),
            escape_data(&message)
        ),
        None => format!("::{level} title={title}::{}", escape_data(&message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::diag::Code;
    use crate::plan::source::{SourceFile, Span};

    fn human(diags: &Diagnostics, detail: Detail) -> String {
        let mut err = Vec::new();
        render(
            diags,
            Format::Human,
            false,
            detail,
            &mut io::sink(),
            &mut err,
        )
        .expect("render");
        String::from_utf8(err).expect("utf-8")
    }

    /// `n` accounts, each with an unknown key and an unset secret.
    fn many(n: usize) -> (Arc<SourceFile>, Diagnostics) {
        let mut text = String::new();
        for i in 0..n {
            text.push_str("  - { address: u");
            text.push_str(&i.to_string());
            text.push_str("@x.example, colour: blue }\n");
        }
        let src = SourceFile::new("p.yaml", text);
        let mut diags = Diagnostics::default();
        for i in 0..n {
            let line = src.line_range(i);
            let key = line.start + src.text[line.clone()].find("colour").expect("key");
            diags.push(
                Diagnostic::error(Code::UnknownKey, format!("unknown key `colour` ({i})"))
                    .with_label(&src, Span::new(key, 6), "not a key of this mapping"),
            );
            diags.push(
                Diagnostic::warning(Code::UnresolvedSecret, format!("PW_{i} is not set"))
                    .with_label(&src, Span::new(line.start + 4, 7), "env:PW"),
            );
        }
        (src, diags)
    }

    #[test]
    fn repeated_diagnostics_are_grouped_per_code_unless_verbose() {
        let (_, diags) = many(50);
        let out = human(&diags, Detail::default());
        assert_eq!(
            out.matches("unknown key `colour`").count(),
            SHOWN_PER_CODE,
            "{out}"
        );
        assert_eq!(out.matches("is not set").count(), SHOWN_PER_CODE, "{out}");
        assert!(
            out.contains("plan::unknown_key: 47 more error(s) of this kind not shown (50 in all); `--verbose` shows every one, `--format json` lists them"),
            "{out}"
        );
        assert!(
            out.contains("plan::unresolved_secret: 47 more warning(s)"),
            "{out}"
        );
        assert!(out.lines().count() < 80, "{out}");

        let all = human(
            &diags,
            Detail {
                verbose: true,
                quiet: false,
            },
        );
        assert_eq!(all.matches("unknown key `colour`").count(), 50);
        assert!(!all.contains("not shown"), "{all}");

        let quiet = human(
            &diags,
            Detail {
                verbose: false,
                quiet: true,
            },
        );
        assert!(
            !quiet.contains("is not set") && !quiet.contains("warning"),
            "{quiet}"
        );
        assert_eq!(
            quiet.matches("unknown key `colour`").count(),
            SHOWN_PER_CODE
        );

        let mut out = Vec::new();
        render(
            &diags,
            Format::Github,
            false,
            Detail::default(),
            &mut out,
            &mut io::sink(),
        )
        .expect("render");
        let out = String::from_utf8(out).expect("utf-8");
        assert_eq!(out.matches("::error ").count(), GITHUB_PER_CODE, "{out}");
        assert!(
            out.contains("::notice title=mailplan::plan::unknown_key: 40 more error(s)"),
            "{out}"
        );
    }

    #[test]
    fn a_snippet_shows_the_files_lines_whatever_their_distance_from_the_top() {
        let (src, diags) = many(20_000);
        let last = diags.items.last().expect("diagnostic");
        let shown = Shown::new(last);
        let excerpt = shown.excerpt.as_ref().expect("excerpt");
        // The labelled line and one line before it: the excerpt does not hold the file.
        assert_eq!(excerpt.text.lines().count(), 2, "{}", excerpt.text);
        assert!(excerpt.text.len() < 200);
        let mut one = Diagnostics::default();
        one.push(last.clone());
        let out = human(&one, Detail::default());
        assert!(out.contains("[p.yaml:20000:5]"), "{out}");
        assert!(
            out.contains("20000 │   - { address: u19999@x.example"),
            "{out}"
        );
        assert!(src.text.len() > 100 * excerpt.text.len());
    }

    #[test]
    fn long_lines_are_cut_around_their_labels() {
        let cell = "x".repeat(8 * 1024 * 1024);
        let text = format!("address,display-name,colour\na@x.example,{cell},blue\n");
        let src = SourceFile::new("a.csv", text.clone());
        let at = text.rfind("blue").expect("blue");
        let d = Diagnostic::error(Code::UnknownKey, "a cell")
            .with_label(&src, Span::new(at, 4), "this cell")
            .with_label(
                &src,
                Span::new(text.find(",x").expect("cell") + 1, cell.len()),
                "long",
            );
        let mut diags = Diagnostics::default();
        diags.push(d);
        let out = human(&diags, Detail::default());
        assert!(out.len() < 2_000, "{} bytes", out.len());
        assert!(out.contains("[a.csv:2:"), "{out}");
        assert!(out.contains(&format!(":{}]", 14 + cell.len())), "{out}");
        assert!(out.contains("x…x") && out.contains("xxxx,blue"), "{out}");
        assert!(out.contains("a@x.example,xxxx"), "{out}");
        let shown = Shown::new(&diags.items[0]);
        let excerpt = shown.excerpt.as_ref().expect("excerpt");
        let label = &shown.labels[0];
        assert_eq!(
            &excerpt.text[label.offset()..label.offset() + label.len()],
            "blue"
        );
    }

    #[test]
    fn github_annotations_are_escaped_and_located() {
        let src = SourceFile::new("plans/a,b.yaml", "x: 1\ny: 2\n");
        let d = Diagnostic::error(Code::UnknownKey, "unknown key `y` in the plan: 100%")
            .with_label(&src, Span::new(5, 1), "here")
            .with_help("did you mean `x`?\nor remove it");
        assert_eq!(
            github_line(&d),
            "::error file=plans/a%2Cb.yaml,line=2,col=1,title=plan%3A%3Aunknown_key::unknown key `y` in the plan: 100%25%0Ahelp: did you mean `x`?%0Aor remove it"
        );
    }
}
