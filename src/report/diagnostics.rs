//! Diagnostics as miette reports (humans), GitHub Actions annotations, or a JSON list.

use std::io::{self, Write};

use serde::Serialize;

use crate::plan::diag::{Diagnostic, Diagnostics, Severity};

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
            for d in &diags.items {
                let mut text = String::new();
                handler
                    .render_report(&mut text, d)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                writeln!(err, "{text}")?;
            }
            Ok(())
        }
        Format::Github => {
            for d in &diags.items {
                writeln!(out, "{}", github_line(d))?;
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
