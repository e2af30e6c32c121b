//! Secret references and secret values.
//!
//! A plan never holds a secret, only a [`SecretRef`] saying where to find it: an environment
//! variable, a file, or a command's output. The value, once resolved at run time, lives in a
//! [`Secret`] whose `Debug` and `Display` print `****`, so it cannot reach a log, a report, the
//! state store or an error message by accident.

use std::fmt;

use serde::Serialize;

/// Where a secret comes from. Printing a reference is safe: it names the place, not the value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretRef {
    /// `{ env: NAME }`: an environment variable.
    Env(String),
    /// `{ file: PATH }`: a file's content, trailing newline removed; relative to the plan.
    File(String),
    /// `{ command: "pass show x" }`: a command's standard output, trailing newline removed.
    Command(String),
}

impl SecretRef {
    /// Parse the CSV cell form: `env:NAME`, `file:PATH` or `command:CMD`.
    pub fn parse_cell(cell: &str) -> Option<SecretRef> {
        let (kind, rest) = cell.split_once(':')?;
        if rest.is_empty() {
            return None;
        }
        match kind.trim() {
            "env" => Some(SecretRef::Env(rest.to_owned())),
            "file" => Some(SecretRef::File(rest.to_owned())),
            "command" => Some(SecretRef::Command(rest.to_owned())),
            _ => None,
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::File(path) => write!(f, "file:{path}"),
            SecretRef::Command(cmd) => write!(f, "command:{cmd}"),
        }
    }
}

/// A resolved secret value. It is only readable through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that sends it (an IMAP login, an API body).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s}"), "****");
        assert_eq!(format!("{s:?}"), "****");
        assert_eq!(format!("{:?}", Some(&s)), "Some(****)");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn csv_cells_parse_to_references() {
        assert_eq!(
            SecretRef::parse_cell("env:JOHN_PW"),
            Some(SecretRef::Env("JOHN_PW".into()))
        );
        assert_eq!(
            SecretRef::parse_cell("file:secrets/j.pass"),
            Some(SecretRef::File("secrets/j.pass".into()))
        );
        assert_eq!(
            SecretRef::parse_cell("command:pass show mail/john"),
            Some(SecretRef::Command("pass show mail/john".into()))
        );
        assert_eq!(SecretRef::parse_cell("plaintext"), None);
        assert_eq!(SecretRef::parse_cell("env:"), None);
        assert_eq!(SecretRef::parse_cell("vault:x"), None);
    }

    #[test]
    fn references_display_their_place() {
        assert_eq!(SecretRef::Env("A".into()).to_string(), "env:A");
        assert_eq!(SecretRef::File("f".into()).to_string(), "file:f");
    }
}
