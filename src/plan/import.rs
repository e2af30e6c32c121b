//! CSV imports: `- import: accounts.csv` in the accounts list, expanded where it stands.
//!
//! Entry points: [`FileReader`] (how the plan layer asks for a file without doing I/O itself:
//! the CLI passes one backed by the disk) and [`read_csv`], which turns a CSV file into one
//! account mapping per row, as [`Node`]s whose spans point into the CSV text. Those nodes then go
//! through exactly the code YAML accounts go through, so an imported account gets every check,
//! and each of its diagnostics names the CSV file, line and column.
//!
//! Invariants: the CSV is its own [`SourceFile`]; a header name is an account key that makes
//! sense as a scalar ([`CSV_KEYS`]); an empty cell is an absent key; a secret cell is
//! `env:NAME`, `file:PATH` or `command:CMD` and anything else is refused as a clear-text secret.
//! A header problem is reported once, at the header, not once per row.

use std::path::Path;
use std::sync::Arc;

use super::decode::{Reader, did_you_mean};
use super::diag::{Code, Diagnostic};
use super::secret::SecretRef;
use super::source::{SourceFile, Span};
use super::yaml::{Node, Value};

/// Largest CSV file an import may name; refused before it is read.
pub const MAX_IMPORT_BYTES: usize = 32 * 1024 * 1024;
/// Largest sum of the imports of one plan: each file is read once, and what all of them hold
/// together is bounded too.
pub const MAX_TOTAL_IMPORT_BYTES: usize = 64 * 1024 * 1024;

/// The account keys a CSV header may name: those that make sense as one cell.
pub const CSV_KEYS: &[&str] = &[
    "address",
    "from",
    "to",
    "display-name",
    "source-login",
    "target-login",
    "source-password",
    "target-password",
    "provisional-name",
    "wave",
];
const SECRET_COLUMNS: &[&str] = &["source-password", "target-password"];
const REQUIRED_COLUMNS: &[&str] = &["address", "from", "to"];

/// How the plan layer reads an imported file. `read` gets the path (already joined to the plan's
/// folder) and the largest size accepted; it returns the bytes or a message naming the path.
/// The disk's reader (in the CLI) also refuses what is not a regular file under the plan's
/// folder. `same_file` tells whether two paths name one file (through links, `..`).
pub trait FileReader {
    fn read(&self, path: &Path, max_len: usize) -> Result<Vec<u8>, String>;

    fn same_file(&self, a: &Path, b: &Path) -> bool {
        a == b
    }
}

impl<F: Fn(&Path, usize) -> Result<Vec<u8>, String>> FileReader for F {
    fn read(&self, path: &Path, max_len: usize) -> Result<Vec<u8>, String> {
        self(path, max_len)
    }
}

/// A reader for callers that have no files (tests, a plan given as text): every import fails.
#[derive(Debug, Clone, Copy)]
pub struct NoFiles;

impl FileReader for NoFiles {
    fn read(&self, path: &Path, _max_len: usize) -> Result<Vec<u8>, String> {
        Err(format!(
            "{}: imports are not available here (no file reader)",
            path.display()
        ))
    }
}

/// Read an import's bytes into a source file, or say (at `import_span` in the plan) why not.
pub fn open(
    r: &mut Reader<'_>,
    files: &dyn FileReader,
    path: &Path,
    import_span: Span,
    max_len: usize,
) -> Option<Arc<SourceFile>> {
    let name = path.display().to_string();
    let fail = |r: &mut Reader<'_>, message: String, help: &str| {
        r.diags.push(
            Diagnostic::error(Code::CsvImport, message)
                .with_label(r.source, import_span, "imported here")
                .with_help(help.to_owned()),
        );
    };
    let max_len = max_len.min(MAX_IMPORT_BYTES);
    let bytes = match files.read(path, max_len) {
        Ok(bytes) => bytes,
        Err(why) => {
            fail(
                r,
                format!("cannot read the import: {why}"),
                "the path is relative to the plan's folder",
            );
            return None;
        }
    };
    if bytes.len() > max_len {
        fail(
            r,
            format!(
                "{name} is {} MiB; an import may be at most {} MiB, and the imports of a plan {} MiB together",
                bytes.len() / (1024 * 1024),
                MAX_IMPORT_BYTES / (1024 * 1024),
                MAX_TOTAL_IMPORT_BYTES / (1024 * 1024),
            ),
            "split the accounts over several plans",
        );
        return None;
    }
    if bytes.contains(&0) {
        fail(
            r,
            format!("{name} is a binary file (it holds NUL bytes), not a CSV file"),
            "an import is a UTF-8 CSV file with a header row",
        );
        return None;
    }
    match String::from_utf8(bytes) {
        Ok(text) => Some(SourceFile::new(name, text)),
        Err(e) => {
            // Located by line and column, never shown: the file may not be the CSV it claims.
            let offset = e.utf8_error().valid_up_to();
            let before = &e.as_bytes()[..offset];
            let line = before.split(|&b| b == b'\n').count();
            let column = offset
                - before
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1)
                + 1;
            fail(
                r,
                format!(
                    "{name} is not valid UTF-8 (first bad byte at line {line}, byte {column} of the line)"
                ),
                "save the CSV file as UTF-8",
            );
            None
        }
    }
}

/// Whether a CSV text is recognisably a CSV of accounts: its first line names at least one
/// account key. Anything else (a password file, an `ovh.conf`, a key) is refused whole, without
/// a snippet, so that no diagnostic quotes a line of a file that was never meant to be one.
pub fn looks_like_accounts(text: &str) -> bool {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    first
        .split(',')
        .map(|cell| cell.trim().trim_matches('"').trim())
        .any(|cell| CSV_KEYS.contains(&cell))
}

/// Turn a CSV source into one account mapping per row. `r` reads the CSV source: every
/// diagnostic points into it.
pub fn read_csv(r: &mut Reader<'_>) -> Vec<Node> {
    let text: &str = &r.source.text;
    // A byte-order mark is not part of the first header name.
    let base = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let body = &text[base..];
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body.as_bytes());
    let mut record = csv::StringRecord::new();
    let mut columns: Vec<Option<(&'static str, Span)>> = Vec::new();
    let mut rows = Vec::new();
    let mut header_seen = false;
    loop {
        match csv.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let offset = e
                    .position()
                    .map_or(0, |p| base + usize::try_from(p.byte()).unwrap_or(0));
                r.error(
                    Code::CsvImport,
                    Span::new(offset, 0),
                    format!("{} is not a valid CSV file: {e}", r.source.name),
                    "here",
                );
                return rows;
            }
        }
        let mut start = base
            + record
                .position()
                .map_or(0, |p| usize::try_from(p.byte()).unwrap_or(0));
        // The reader skips blank lines; its position can be at the start of them.
        while matches!(text.as_bytes().get(start), Some(b'\n' | b'\r')) {
            start += 1;
        }
        let spans = match field_spans(text, start) {
            Ok(spans) => spans,
            Err((offset, why)) => {
                // The row's cells cannot be told apart: every cell from the first of a secret
                // column on is masked (a broken quote is often in a password).
                let line_end = text[start..].find('\n').map_or(text.len(), |e| start + e);
                let mut d = Diagnostic::error(Code::CsvImport, format!("malformed CSV row: {why}"))
                    .with_label(r.source, Span::new(offset, 1), "bad quoting");
                let first_secret = columns
                    .iter()
                    .position(|c| c.is_some_and(|(k, _)| SECRET_COLUMNS.contains(&k)));
                if header_seen && let Some(i) = first_secret {
                    let cut = text[start..line_end]
                        .match_indices(',')
                        .nth(i.saturating_sub(1))
                        .map_or(start, |(p, _)| start + p + 1);
                    let cut = if i == 0 { start } else { cut };
                    d = d.with_mask(r.source, Span::new(cut, line_end - cut));
                }
                r.diags.push(d);
                // After a quoting error the rows that follow cannot be trusted.
                return rows;
            }
        };
        if spans.len() != record.len() {
            r.error(
                Code::CsvImport,
                row_span(&spans, start),
                "malformed CSV row: its quoting could not be read".to_owned(),
                "this row",
            );
            return rows;
        }
        if !header_seen {
            header_seen = true;
            match read_header(r, &record, &spans) {
                Some(c) => columns = c,
                None => return rows,
            }
            continue;
        }
        if record.len() != columns.len() {
            // Cells of secret columns that are not references, and cells past the header, may
            // be passwords: masked in the snippet of the row.
            let mut masks = Vec::new();
            for (i, (cell, span)) in record.iter().zip(&spans).enumerate() {
                let secret = match columns.get(i) {
                    Some(Some((key, _))) => SECRET_COLUMNS.contains(key),
                    Some(None) => false,
                    None => true,
                };
                if secret && !cell.is_empty() && SecretRef::parse_cell(cell).is_none() {
                    masks.push(*span);
                }
            }
            let mut d = Diagnostic::error(
                    Code::CsvImport,
                    format!(
                        "malformed CSV row: {} fields, the header has {}",
                        record.len(),
                        columns.len()
                    ),
                )
                .with_label(r.source, row_span(&spans, start), "this row")
                .with_help("every row has one cell per header name; leave a cell empty for an absent value, and quote cells that hold a comma");
            for span in masks {
                d = d.with_mask(r.source, span);
            }
            r.diags.push(d);
            continue;
        }
        rows.push(row_node(r, &record, &spans, &columns, start));
    }
    if !header_seen {
        r.error(
            Code::CsvImport,
            Span::new(0, 0),
            format!("{} is empty: an import needs a header row", r.source.name),
            "empty",
        );
    }
    rows
}

/// Map each header cell to the account key it names; `None` when the header is unusable.
#[allow(clippy::type_complexity)]
fn read_header(
    r: &mut Reader<'_>,
    record: &csv::StringRecord,
    spans: &[Span],
) -> Option<Vec<Option<(&'static str, Span)>>> {
    let mut columns: Vec<Option<(&'static str, Span)>> = Vec::with_capacity(record.len());
    for (name, span) in record.iter().zip(spans) {
        if let Some(key) = CSV_KEYS.iter().find(|k| **k == name) {
            if let Some((_, first)) = columns.iter().flatten().find(|(k, _)| k == key) {
                r.diags.push(
                    Diagnostic::error(
                        Code::DuplicateKey,
                        format!("column `{key}` appears twice in the header"),
                    )
                    .with_label(r.source, *span, "again here")
                    .with_label(r.source, *first, "first here"),
                );
                columns.push(None);
            } else {
                columns.push(Some((key, *span)));
            }
            continue;
        }
        let help = if ["after", "copy", "import"].contains(&name) {
            format!("`{name}` cannot be written in a cell; write these accounts in the YAML plan")
        } else if let Some(best) = did_you_mean(name, CSV_KEYS) {
            format!("did you mean `{best}`?")
        } else {
            format!("the columns allowed: {}", CSV_KEYS.join(", "))
        };
        r.diags.push(
            Diagnostic::error(
                Code::UnknownKey,
                format!("unknown column `{name}` in the CSV header"),
            )
            .with_label(r.source, *span, "not an account key")
            .with_help(help),
        );
        columns.push(None);
    }
    let mut complete = true;
    for key in REQUIRED_COLUMNS {
        if !columns.iter().flatten().any(|(k, _)| k == key) {
            complete = false;
            let header = row_span(spans, spans.first().map_or(0, |s| s.offset));
            r.diags.push(
                Diagnostic::error(
                    Code::MissingKey,
                    format!("the CSV header has no `{key}` column"),
                )
                .with_label(r.source, header, "the header")
                .with_help(format!("add a `{key}` column")),
            );
        }
    }
    // Without the identity columns every row would report the same problem: report it once.
    complete.then_some(columns)
}

/// One row as an account mapping, cells typed by their column.
fn row_node(
    r: &mut Reader<'_>,
    record: &csv::StringRecord,
    spans: &[Span],
    columns: &[Option<(&'static str, Span)>],
    start: usize,
) -> Node {
    let mut entries = Vec::new();
    for ((cell, span), column) in record.iter().zip(spans).zip(columns) {
        let Some((key, key_span)) = column else {
            continue;
        };
        if cell.is_empty() {
            continue;
        }
        let value = if *key == "wave" {
            cell.parse::<i64>()
                .map_or_else(|_| Value::Str(cell.to_owned()), Value::Int)
        } else if SECRET_COLUMNS.contains(key) {
            if let Some(secret) = SecretRef::parse_cell(cell) {
                let (kind, value) = match secret {
                    SecretRef::Env(v) => ("env", v),
                    SecretRef::File(v) => ("file", v),
                    SecretRef::Command(v) => ("command", v),
                };
                Value::Map(vec![(
                    Node {
                        span: *span,
                        value: Value::Str(kind.to_owned()),
                    },
                    Node {
                        span: *span,
                        value: Value::Str(value),
                    },
                )])
            } else {
                // Never echo the cell: it may well be a password.
                r.diags.push(
                    Diagnostic::error(
                        Code::Insecure,
                        format!("`{key}` is written in the CSV file in clear"),
                    )
                    .with_secret_label(r.source, *span, "not a secret reference")
                    .with_help("refer to it instead: `env:NAME`, `file:PATH` or `command:CMD`"),
                );
                continue;
            }
        } else {
            Value::Str(cell.to_owned())
        };
        entries.push((
            Node {
                span: *key_span,
                value: Value::Str((*key).to_owned()),
            },
            Node { span: *span, value },
        ));
    }
    Node {
        span: row_span(spans, start),
        value: Value::Map(entries),
    }
}

/// The row from its first byte to the end of its last cell.
fn row_span(spans: &[Span], start: usize) -> Span {
    let end = spans.last().map_or(start, |s| s.offset + s.len);
    Span::new(start, end.saturating_sub(start))
}

/// The byte span of every cell of the record starting at `start` (trimmed; quotes included), and
/// a strict check of its quoting, which the `csv` crate reads leniently.
fn field_spans(text: &str, start: usize) -> Result<Vec<Span>, (usize, &'static str)> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut p = start;
    loop {
        while p < bytes.len() && (bytes[p] == b' ' || bytes[p] == b'\t') {
            p += 1;
        }
        if p < bytes.len() && bytes[p] == b'"' {
            let open = p;
            p += 1;
            loop {
                match bytes[p..].iter().position(|&b| b == b'"') {
                    None => return Err((open, "a quoted cell is never closed")),
                    Some(q) if bytes.get(p + q + 1) == Some(&b'"') => p += q + 2,
                    Some(q) => {
                        p += q + 1;
                        break;
                    }
                }
            }
            spans.push(Span::new(open, p - open));
            while p < bytes.len() && (bytes[p] == b' ' || bytes[p] == b'\t') {
                p += 1;
            }
            if p < bytes.len() && !matches!(bytes[p], b',' | b'\n' | b'\r') {
                return Err((p, "text after a quoted cell's closing quote"));
            }
        } else {
            let cell_start = p;
            while p < bytes.len() && !matches!(bytes[p], b',' | b'\n' | b'\r') {
                if bytes[p] == b'"' {
                    return Err((p, "a quote inside a cell that does not start with one"));
                }
                p += 1;
            }
            let cell = text[cell_start..p].trim_end();
            spans.push(Span::new(cell_start, cell.len()));
        }
        if p < bytes.len() && bytes[p] == b',' {
            p += 1;
        } else {
            return Ok(spans);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::diag::Diagnostics;

    fn read(text: &str) -> (Vec<Node>, Diagnostics, Arc<SourceFile>) {
        let source = SourceFile::new("a.csv", text);
        let mut diags = Diagnostics::default();
        let rows = read_csv(&mut Reader {
            source: &source,
            diags: &mut diags,
        });
        (rows, diags, source)
    }

    fn found(diags: &Diagnostics) -> Vec<(Code, usize, usize)> {
        diags
            .items
            .iter()
            .map(|d| {
                let (_, line, col) = d.location().unwrap_or(("", 0, 0));
                (d.code, line, col)
            })
            .collect()
    }

    #[test]
    fn rows_become_mappings_with_typed_cells_and_spans() {
        let (rows, diags, source) = read(
            "\u{feff}address, from ,to,wave,source-password,display-name\n\
             a@x.example,old,ex,2,env:A_PW,\"Smith, John\"\n\
             \n\
             b@x.example,old,ex,,,\n",
        );
        assert!(diags.items.is_empty(), "{:?}", diags.items);
        assert_eq!(rows.len(), 2);
        let Value::Map(entries) = &rows[0].value else {
            panic!("not a mapping")
        };
        let keys: Vec<&str> = entries
            .iter()
            .map(|(k, _)| match &k.value {
                Value::Str(s) => s.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(
            keys,
            [
                "address",
                "from",
                "to",
                "wave",
                "source-password",
                "display-name"
            ]
        );
        assert_eq!(entries[3].1.value, Value::Int(2));
        assert!(matches!(&entries[4].1.value, Value::Map(m) if m.len() == 1));
        assert_eq!(entries[5].1.value, Value::Str("Smith, John".into()));
        assert_eq!(&source.text[entries[0].1.span.range()], "a@x.example");
        assert_eq!(&source.text[entries[5].1.span.range()], "\"Smith, John\"");
        assert_eq!(source.line_col(rows[1].span.offset), (4, 1));
        // Empty cells are absent keys.
        let Value::Map(second) = &rows[1].value else {
            panic!("not a mapping")
        };
        assert_eq!(second.len(), 3);
    }

    #[test]
    fn header_and_row_problems_are_located() {
        let (rows, diags, _) = read(
            "address,from,to,adress,after,address\n\
             a@x.example,old,ex,,,\n\
             b@x.example,old\n\
             c@x.example,old,ex,,,\n",
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(
            found(&diags),
            [
                (Code::UnknownKey, 1, 17),
                (Code::UnknownKey, 1, 24),
                (Code::DuplicateKey, 1, 30),
                (Code::CsvImport, 3, 1),
            ]
        );
        assert_eq!(
            diags.items[0].help.as_deref(),
            Some("did you mean `address`?")
        );
        assert!(
            diags.items[1]
                .help
                .as_deref()
                .is_some_and(|h| h.contains("in the YAML plan"))
        );
        assert_eq!(
            diags.items[3].message,
            "malformed CSV row: 2 fields, the header has 6"
        );
    }

    #[test]
    fn crlf_line_endings_are_read() {
        let (rows, diags, source) =
            read("address,from,to\r\na@x.example,old,ex\r\n\r\nb@x.example,old,ex\r\n");
        assert!(diags.items.is_empty(), "{:?}", diags.items);
        assert_eq!(rows.len(), 2);
        assert_eq!(source.line_col(rows[1].span.offset), (4, 1));
        assert_eq!(&source.text[rows[1].span.range()], "b@x.example,old,ex");
    }

    #[test]
    fn a_missing_identity_column_is_reported_once() {
        let (rows, diags, _) = read("address,from\na@x.example,old\nb@x.example,old\n");
        assert!(rows.is_empty());
        assert_eq!(found(&diags), [(Code::MissingKey, 1, 1)]);
    }

    #[test]
    fn bad_quoting_and_clear_secrets() {
        let (_, diags, _) = read("address,from,to\na@x.example,\"old\"x,ex\n");
        assert_eq!(found(&diags), [(Code::CsvImport, 2, 18)]);
        let (_, diags, _) = read("address,from,to\na@x.example,o\"ld,ex\n");
        assert_eq!(found(&diags), [(Code::CsvImport, 2, 14)]);
        let (_, diags, _) = read("address,from,to\na@x.example,\"old,ex\nb,c,d\n");
        assert_eq!(found(&diags), [(Code::CsvImport, 2, 13)]);
        let (rows, diags, _) =
            read("address,from,to,source-password\na@x.example,old,ex,hunter2\n");
        assert_eq!(rows.len(), 1);
        assert_eq!(found(&diags), [(Code::Insecure, 2, 20)]);
        assert!(!diags.items[0].message.contains("hunter2"));
        let (rows, diags, _) = read("");
        assert!(rows.is_empty());
        assert_eq!(found(&diags), [(Code::CsvImport, 1, 1)]);
    }

    #[test]
    fn open_refuses_unreadable_binary_and_non_utf8_files() {
        let plan = SourceFile::new("p.yaml", "accounts:\n  - import: a.csv\n");
        let span = Span::new(22, 5);
        let cases: [(&[u8], &str); 2] = [
            (b"a,b\0", "binary file"),
            (
                b"address\ncaf\xe9\n",
                "not valid UTF-8 (first bad byte at line 2, byte 4 of the line)",
            ),
        ];
        for (bytes, expected) in cases {
            let mut diags = Diagnostics::default();
            let mut r = Reader {
                source: &plan,
                diags: &mut diags,
            };
            let files = |_: &Path, _: usize| Ok(bytes.to_vec());
            assert!(open(&mut r, &files, Path::new("a.csv"), span, MAX_IMPORT_BYTES).is_none());
            assert_eq!(diags.items[0].code, Code::CsvImport);
            assert!(
                diags.items[0].message.contains(expected),
                "{:?}",
                diags.items
            );
        }
        let mut diags = Diagnostics::default();
        let mut r = Reader {
            source: &plan,
            diags: &mut diags,
        };
        assert!(open(&mut r, &NoFiles, Path::new("a.csv"), span, MAX_IMPORT_BYTES).is_none());
        assert_eq!(diags.items[0].location(), Some(("p.yaml", 2, 13)));
    }
}
