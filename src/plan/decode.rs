//! Typed reading of a [`Node`] tree: mappings with known keys, strings, integers, booleans.
//!
//! Every reader pushes a [`Diagnostic`] and returns `None` on a problem instead of stopping, so a
//! plan's wrong types, unknown keys and missing keys are all reported in one run.

use std::sync::Arc;

use super::diag::{Code, Diagnostic, Diagnostics};
use super::source::{SourceFile, Span};
use super::yaml::{Node, Value};

/// Where diagnostics go while reading one source file.
#[derive(Debug)]
pub struct Reader<'a> {
    pub source: &'a Arc<SourceFile>,
    pub diags: &'a mut Diagnostics,
}

/// A mapping whose keys are checked against the ones its place allows.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'n> {
    pub node: &'n Node,
    entries: &'n [(Node, Node)],
}

impl Reader<'_> {
    pub fn error(&mut self, code: Code, span: Span, message: String, label: &str) {
        let d = Diagnostic::error(code, message).with_label(self.source, span, label);
        self.diags.push(d);
    }

    fn wrong_type(&mut self, node: &Node, what: &str, expected: &str) {
        let found = node.value.kind();
        self.error(
            Code::WrongType,
            node.span,
            format!("{what} must be {expected}, found {found}"),
            &format!("expected {expected}"),
        );
    }

    /// Read a mapping and report its unknown keys (with a "did you mean" help).
    pub fn fields<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: &[&str],
    ) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, what, "a mapping");
            return None;
        };
        for (key, _) in entries {
            let Value::Str(k) = &key.value else {
                self.wrong_type(key, &format!("a key of {what}"), "a string");
                continue;
            };
            if !allowed.contains(&k.as_str()) {
                let mut d =
                    Diagnostic::error(Code::UnknownKey, format!("unknown key `{k}` in {what}"))
                        .with_label(self.source, key.span, "not a key of this mapping");
                d = match did_you_mean(k, allowed) {
                    Some(best) => d.with_help(format!("did you mean `{best}`?")),
                    None => d.with_help(format!("the keys allowed here: {}", allowed.join(", "))),
                };
                self.diags.push(d);
            }
        }
        Some(Fields { node, entries })
    }

    /// A required key: reports `plan::missing_key` at the mapping when absent.
    pub fn required<'n>(&mut self, fields: Fields<'n>, key: &str, what: &str) -> Option<&'n Node> {
        let found = fields.get(key);
        if found.is_none() {
            let d = Diagnostic::error(Code::MissingKey, format!("{what} has no `{key}`"))
                .with_label(
                    self.source,
                    first_line(self.source, fields.node.span),
                    "here",
                )
                .with_help(format!("add `{key}:`"));
            self.diags.push(d);
        }
        found
    }

    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.wrong_type(node, what, "a string");
                None
            }
        }
    }

    pub fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong_type(node, what, "true or false");
                None
            }
        }
    }

    pub fn integer<T: TryFrom<i64>>(&mut self, node: &Node, what: &str, range: &str) -> Option<T> {
        if let Value::Int(i) = node.value {
            if let Ok(v) = T::try_from(i) {
                return Some(v);
            }
            self.error(
                Code::InvalidValue,
                node.span,
                format!("{what} must be {range}, found {i}"),
                "out of range",
            );
            return None;
        }
        self.wrong_type(node, what, &format!("an integer ({range})"));
        None
    }

    /// A list; a single value is not silently taken as a list of one.
    pub fn list<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.wrong_type(node, what, "a list");
                None
            }
        }
    }

    /// One of a fixed set of spellings.
    pub fn choice(
        &mut self,
        node: &Node,
        what: &str,
        allowed: &[&'static str],
    ) -> Option<&'static str> {
        let s = self.string(node, what)?;
        if let Some(found) = allowed.iter().find(|a| **a == s) {
            return Some(found);
        }
        let mut d = Diagnostic::error(Code::InvalidValue, format!("`{s}` is not a valid {what}"))
            .with_label(
                self.source,
                node.span,
                format!("one of: {}", allowed.join(", ")),
            );
        if let Some(best) = did_you_mean(&s, allowed) {
            d = d.with_help(format!("did you mean `{best}`?"));
        }
        self.diags.push(d);
        None
    }
}

impl<'n> Fields<'n> {
    /// The value of `key`, the first one when a key is duplicated (reported by the parser).
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
            .map(|(_, v)| v)
    }

    /// The span of `key` itself, for labels that point at a key rather than its value.
    pub fn key_span(&self, key: &str) -> Option<Span> {
        self.entries
            .iter()
            .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
            .map(|(k, _)| k.span)
    }

    pub fn entries(&self) -> &'n [(Node, Node)] {
        self.entries
    }
}

/// The allowed spelling closest to `word`, when it is close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (strsim::jaro_winkler(word, a), *a))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, a)| a)
}

/// The first line of a span: a mapping's span can cover many lines; a label on its first line
/// reads better.
fn first_line(source: &SourceFile, span: Span) -> Span {
    let text = &source.text[span.offset.min(source.text.len())..];
    let len = text.find('\n').unwrap_or(text.len()).min(span.len.max(1));
    Span::new(span.offset, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::yaml::parse;

    #[test]
    fn did_you_mean_finds_typos_only() {
        let keys = ["address", "from", "to", "display-name"];
        assert_eq!(did_you_mean("adress", &keys), Some("address"));
        assert_eq!(did_you_mean("displayname", &keys), Some("display-name"));
        assert_eq!(did_you_mean("zzz", &keys), None);
    }

    #[test]
    fn every_problem_of_a_mapping_is_reported() {
        let text = "adress: a@x.fr\nwave: many\nport: 70000\n";
        let source = SourceFile::new("p.yaml", text);
        let (node, _) = parse(&source).expect("parses");
        let mut diags = Diagnostics::default();
        let mut r = Reader {
            source: &source,
            diags: &mut diags,
        };
        let f = r
            .fields(&node, "an account", &["address", "wave", "port"])
            .expect("mapping");
        assert!(r.required(f, "address", "an account").is_none());
        let wave = f.get("wave").expect("wave");
        assert_eq!(r.integer::<u32>(wave, "`wave`", "0 or more"), None);
        let port = f.get("port").expect("port");
        assert_eq!(r.integer::<u16>(port, "`port`", "1 to 65535"), None);
        let codes: Vec<_> = diags.items.iter().map(|d| d.code).collect();
        assert_eq!(
            codes,
            [
                Code::UnknownKey,
                Code::MissingKey,
                Code::WrongType,
                Code::InvalidValue
            ]
        );
        assert_eq!(
            diags.items[0].help.as_deref(),
            Some("did you mean `address`?")
        );
        assert_eq!(diags.items[0].location(), Some(("p.yaml", 1, 1)));
        assert_eq!(diags.items[2].location(), Some(("p.yaml", 2, 7)));
        assert_eq!(diags.items[3].location(), Some(("p.yaml", 3, 7)));
    }
}
