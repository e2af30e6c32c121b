//! YAML → a tree of spanned nodes, safely.
//!
//! The plan is first read into a generic [`Node`] tree (with serde-saphyr, keeping every node's
//! byte span) and only then decoded into plan types, so that decoding can report *every* wrong
//! type, unknown key and missing key in one run instead of stopping at the first.
//!
//! Hostile input is bounded before and during parsing: a size cap, binary and non-UTF-8
//! detection, and serde-saphyr budgets on depth, aliases, anchors and nodes (sized so that a
//! legitimate plan of 100,000 accounts still loads). Every failure is a [`Diagnostic`], never a
//! panic.

use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::diag::{Code, Diagnostic};
use super::source::{SourceFile, Span};

/// Largest plan file accepted. A larger one is refused before parsing (help: use a CSV import).
pub const MAX_PLAN_BYTES: usize = 32 * 1024 * 1024;

/// A YAML node with the byte span it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub span: Span,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in written order; duplicates are kept so both places can be reported.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// How this kind of value is named in diagnostics ("expected a mapping, found a list").
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Refuse a plan larger than [`MAX_PLAN_BYTES`]; callers that know the size before reading
/// (a file's metadata) check it first, so an oversized file is never read into memory.
pub fn check_size(name: &str, len: usize) -> Result<(), Diagnostic> {
    if len <= MAX_PLAN_BYTES {
        return Ok(());
    }
    Err(Diagnostic::error(
        Code::Unreadable,
        format!(
            "{name} is {} MiB; a plan may be at most {} MiB",
            len / (1024 * 1024),
            MAX_PLAN_BYTES / (1024 * 1024)
        ),
    )
    .with_help(
        "a plan of 100,000 accounts is about 15 MB; split larger migrations into several plans",
    ))
}

/// Decode raw bytes as a plan source: refuses too large, binary and non-UTF-8 files.
pub fn decode(name: &str, bytes: Vec<u8>) -> Result<Arc<SourceFile>, Diagnostic> {
    check_size(name, bytes.len())?;
    if bytes.contains(&0) {
        return Err(Diagnostic::error(
            Code::Unreadable,
            format!("{name} is a binary file (it holds NUL bytes), not a YAML plan"),
        ));
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(SourceFile::new(name, text)),
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let source = SourceFile::new(name, lossy);
            let (line, column) = source.line_col(offset);
            Err(Diagnostic::error(
                Code::Unreadable,
                format!(
                    "{name} is not valid UTF-8 (first bad byte at line {line}, column {column})"
                ),
            )
            .with_label(&source, Span::new(offset, 1), "not UTF-8")
            .with_help("save the plan as UTF-8"))
        }
    }
}

/// Parse a source into a node tree. Duplicate keys are reported (with both places) as errors
/// beside the tree, which is still returned so that decoding can go on.
pub fn parse(source: &Arc<SourceFile>) -> Result<(Node, Vec<Diagnostic>), Diagnostic> {
    if source.text.trim().is_empty() {
        return Err(Diagnostic::error(
            Code::Syntax,
            format!(
                "{} is empty: a plan needs at least `version: 1`",
                source.name
            ),
        )
        .with_label(source, Span::new(0, 0), "empty"));
    }
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: 32,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_nodes: 5_000_000,
            max_events: 20_000_000,
            max_total_scalar_bytes: MAX_PLAN_BYTES,
            max_recorded_anchor_events: 100_000,
        },
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        with_snippet: false,
    };
    let root: Spanned<Value> = serde_saphyr::from_str_with_options(&source.text, options)
        .map_err(|e| syntax_error(source, &e))?;
    let node = to_node(root);
    let mut duplicates = Vec::new();
    find_duplicate_keys(source, &node, &mut duplicates);
    Ok((node, duplicates))
}

/// A copy of a plan whose `*-password` values are `*` (same length, so that every offset still
/// points at the same place), except those written as references (`{ env: … }`, `{ file: … }`,
/// `{ command: … }`). A value runs to the end of its line, and over the lines below indented
/// deeper than its key (a block scalar). For snippets of a plan that could not be parsed: there
/// is no tree to say which values are secrets, and the broken line may be a password.
pub fn mask_passwords(text: &str) -> String {
    let mut out = text.as_bytes().to_vec();
    let mut masking_below: Option<usize> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        let body = line.trim_end_matches(['\n', '\r']);
        if let Some(key_indent) = masking_below {
            if !body.trim().is_empty() && indent <= key_indent {
                masking_below = None;
            } else {
                mask(&mut out, offset + indent, offset + body.len());
            }
        }
        if masking_below.is_none() {
            let mut from = 0;
            while let Some(found) = body[from..].find("-password") {
                let key_end = from + found + "-password".len();
                let after = body[key_end..].trim_start_matches(['"', '\'']);
                let Some(value) = after.trim_start().strip_prefix(':') else {
                    from = key_end;
                    continue;
                };
                let start = body.len() - value.len();
                let trimmed = value.trim();
                let reference = ["env", "file", "command"].iter().any(|k| {
                    trimmed
                        .strip_prefix('{')
                        .map(str::trim_start)
                        .is_some_and(|v| {
                            v.starts_with(k) && v[k.len()..].trim_start().starts_with(':')
                        })
                });
                if !reference {
                    mask(&mut out, offset + start, offset + body.len());
                    if trimmed.is_empty() || trimmed.starts_with(['|', '>']) {
                        masking_below = Some(indent);
                    }
                }
                break;
            }
        }
        offset += line.len();
    }
    // Only ASCII bytes were replaced by `*`, within whole characters: the text stays UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// Replace every non-space character of `bytes[start..end]` by `*`, keeping UTF-8 whole.
fn mask(bytes: &mut [u8], start: usize, end: usize) {
    // A multi-byte character becomes as many `*`: the length is kept.
    for b in &mut bytes[start..end] {
        if !b.is_ascii_whitespace() {
            *b = b'*';
        }
    }
}

fn syntax_error(source: &Arc<SourceFile>, e: &serde_saphyr::Error) -> Diagnostic {
    // The snippet shows the plan around the error: its passwords masked.
    let source = &SourceFile::new(source.name.clone(), mask_passwords(&source.text));
    let message = e.to_string();
    // serde-saphyr appends " at line L, column C"; the label says where, so keep the message.
    let mut d = Diagnostic::error(Code::Syntax, format!("invalid YAML: {message}"));
    if let Some(loc) = e.location() {
        // Parse errors carry a line and column but often no byte offset.
        let offset = loc
            .span()
            .byte_offset()
            .and_then(|o| usize::try_from(o).ok())
            .unwrap_or_else(|| {
                let line = usize::try_from(loc.line()).unwrap_or(0);
                let column = usize::try_from(loc.column()).unwrap_or(0);
                source.offset_of(line, column)
            });
        d = d.with_label(source, Span::new(offset.min(source.text.len()), 1), "here");
    } else {
        d = d.with_label(source, Span::new(0, 0), "");
    }
    d
}

fn span_of<T>(s: &Spanned<T>) -> Span {
    let span = s.referenced.span();
    let offset = span.byte_offset().and_then(|o| usize::try_from(o).ok());
    let len = span.byte_len().and_then(|l| usize::try_from(l).ok());
    Span::new(offset.unwrap_or(0), len.unwrap_or(0))
}

fn to_node(s: Spanned<Value>) -> Node {
    let span = span_of(&s);
    Node {
        span,
        value: s.value,
    }
}

fn find_duplicate_keys(source: &Arc<SourceFile>, node: &Node, out: &mut Vec<Diagnostic>) {
    match &node.value {
        Value::Seq(items) => {
            for item in items {
                find_duplicate_keys(source, item, out);
            }
        }
        Value::Map(entries) => {
            let mut seen: std::collections::HashMap<&str, Span> = std::collections::HashMap::new();
            for (key, value) in entries {
                if let Value::Str(k) = &key.value {
                    if let Some(first) = seen.get(k.as_str()) {
                        out.push(
                            Diagnostic::error(
                                Code::DuplicateKey,
                                format!("key `{k}` is written twice"),
                            )
                            .with_label(source, key.span, "again here")
                            .with_label(source, *first, "first here")
                            .with_help("keep one of the two; YAML does not merge them"),
                        );
                    } else {
                        seen.insert(k, key.span);
                    }
                }
                find_duplicate_keys(source, value, out);
            }
        }
        _ => {}
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or_else(|_| Value::Str(v.to_string()), Value::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(to_node(item));
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Value>>()? {
            let value = map.next_value::<Spanned<Value>>()?;
            entries.push((to_node(key), to_node(value)));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
#[allow(clippy::format_push_string, clippy::format_collect)]
mod tests {
    use super::*;

    #[test]
    fn a_password_breaking_the_syntax_is_masked_in_the_snippet() {
        let text = "accounts:\n  - address: x@y.example\n    source-password: hunt\"er2: {é\n    target-password: { env: T }\n  - { address: z@y.example, source-password: s3cr3t, target-password: {file: p} }\n    x-password: |\n      line one\n      line two\n    to: b\n";
        let masked = mask_passwords(text);
        assert_eq!(masked.len(), text.len());
        assert_eq!(
            masked,
            "accounts:\n  - address: x@y.example\n    source-password: ********* ***\n    target-password: { env: T }\n  - { address: z@y.example, source-password: ******* **************** ****** ** *\n    x-password: *\n      **** ***\n      **** ***\n    to: b\n"
        );
        let source = SourceFile::new("p.yaml", text);
        let d = parse(&source).expect_err("a syntax error");
        assert_eq!(d.code, Code::Syntax);
        let shown = &d.labels[0].source.text;
        assert!(!shown.contains("hunt") && !shown.contains("er2"), "{shown}");
        assert!(!d.message.contains("hunt"), "{}", d.message);
    }
    use std::time::{Duration, Instant};

    fn parse_text(text: &str) -> Result<(Node, Vec<Diagnostic>), Diagnostic> {
        parse(&SourceFile::new("p.yaml", text))
    }

    #[test]
    fn keeps_the_span_of_every_scalar() {
        let text = "version: 1\naccounts:\n  - address: a@x.fr\n";
        let (node, dups) = parse_text(text).expect("parses");
        assert!(dups.is_empty());
        let Value::Map(top) = &node.value else {
            panic!("mapping expected")
        };
        let (_, accounts) = &top[1];
        let Value::Seq(items) = &accounts.value else {
            panic!("list expected")
        };
        let Value::Map(account) = &items[0].value else {
            panic!("mapping expected")
        };
        let (key, value) = &account[0];
        assert_eq!(&text[key.span.range()], "address");
        assert_eq!(&text[value.span.range()], "a@x.fr");
        assert_eq!(value.value, Value::Str("a@x.fr".into()));
    }

    #[test]
    fn duplicate_keys_are_reported_with_both_places() {
        let text = "version: 1\nname: a\nname: b\n";
        let (_, dups) = parse_text(text).expect("parses");
        assert_eq!(dups.len(), 1);
        let d = &dups[0];
        assert_eq!(d.code, Code::DuplicateKey);
        assert_eq!(d.labels[0].span.offset, 19);
        assert_eq!(d.labels[1].span.offset, 11);
    }

    #[test]
    fn syntax_errors_point_at_their_line() {
        let err = parse_text("version: 1\naccounts: [a, b\n").expect_err("bad yaml");
        assert_eq!(err.code, Code::Syntax);
        assert!(err.location().is_some());
        // Regression: parse errors without a byte offset were all placed at 1:1.
        let err = parse_text("version: 1\nplatforms:\n  a: \"x\n").expect_err("bad yaml");
        assert_eq!(err.location(), Some(("p.yaml", 3, 6)), "{}", err.message);
    }

    fn assert_fast_error(text: &str, code: Code) {
        let start = Instant::now();
        let err = parse_text(text).expect_err("hostile input must fail");
        assert_eq!(err.code, code, "{}", err.message);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        assert_fast_error(&text, Code::Syntax);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_fast_error(&text, Code::Syntax);
        let block: String = (0..200)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert_fast_error(&block, Code::Syntax);
    }

    #[test]
    fn empty_binary_oversized_and_non_utf8_files_are_refused() {
        assert_eq!(parse_text("\n \n").expect_err("empty").code, Code::Syntax);
        assert_eq!(
            decode("p.yaml", vec![0x7f, b'E', b'L', b'F', 0, 1])
                .expect_err("binary")
                .code,
            Code::Unreadable
        );
        let err = decode("p.yaml", b"name: caf\xe9\n".to_vec()).expect_err("latin-1");
        assert_eq!(err.code, Code::Unreadable);
        assert_eq!(err.location(), Some(("p.yaml", 1, 10)));
        let mut big = b"name: ".to_vec();
        big.resize(MAX_PLAN_BYTES + 10, b'x');
        let start = Instant::now();
        assert_eq!(
            decode("p.yaml", big).expect_err("too large").code,
            Code::Unreadable
        );
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_plan_of_100k_accounts_stays_within_the_budgets() {
        let mut text = String::from("version: 1\naccounts:\n");
        for i in 0..100_000 {
            let _ = std::fmt::Write::write_fmt(
                &mut text,
                format_args!(
                    "  - address: user{i}@domain{}.example\n    from: old\n    to: exchange\n    display-name: User Number {i}\n    source-password: {{ env: PW_{i} }}\n    wave: {}\n",
                    i % 50,
                    i % 3
                ),
            );
        }
        assert!(text.len() > 14_000_000, "{} bytes", text.len());
        let (node, dups) = parse_text(&text).expect("a legitimate large plan loads");
        assert!(dups.is_empty());
        let Value::Map(top) = node.value else {
            panic!("mapping expected")
        };
        let Value::Seq(accounts) = &top[1].1.value else {
            panic!("list expected")
        };
        assert_eq!(accounts.len(), 100_000);
    }
}
