//! The plan's CSV imports: which `accounts:` entries are imports, which files they may open
//! (once each, never a `file:` secret, within one byte budget, only a CSV of accounts), and the
//! `imported here` label each diagnostic in a CSV file gets.
//!
//! Entry points: [`is_import`], [`secret_files`] and [`read_import`] while the accounts are read,
//! then [`imports_that_are_secrets`] and [`label_imports`] once they all are. The rows themselves
//! are read by [`crate::plan::import`] and turned into accounts like YAML ones.

use std::path::Path;
use std::sync::Arc;

use crate::plan::decode::Reader;
use crate::plan::diag::{Code, Diagnostic, Diagnostics, Label};
use crate::plan::import::{self, FileReader};
use crate::plan::secret::SecretRef;
use crate::plan::source::{SourceFile, Span};
use crate::plan::yaml::{Node, Value};

use super::{IMPORT_KEYS, Written};

/// An accounts-list entry with an `import` key (any other key beside it is reported).
pub(super) fn is_import(item: &Node) -> bool {
    matches!(&item.value, Value::Map(entries)
        if entries.iter().any(|(k, _)| matches!(&k.value, Value::Str(s) if s == "import")))
}

/// What the imports read so far hold, and what they may not be.
pub(super) struct Imported {
    /// Each import read, with where it was named.
    pub(super) paths: Vec<(std::path::PathBuf, Span)>,
    /// The plan's `file:` secrets, joined to its folder: never read as a CSV file.
    pub(super) secret_files: Vec<std::path::PathBuf>,
    /// Bytes the imports still to read may hold together.
    pub(super) budget: usize,
}

/// The value of `key` in a mapping's entries.
fn entry<'n>(entries: &'n [(Node, Node)], key: &str) -> Option<&'n Value> {
    entries
        .iter()
        .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
        .map(|(_, v)| &v.value)
}

/// The `file:` secrets the plan's YAML accounts name, joined to the plan's folder.
pub(super) fn secret_files(accounts: Option<&Node>, plan_path: &Path) -> Vec<std::path::PathBuf> {
    let dir = plan_path.parent().unwrap_or_else(|| Path::new(""));
    let Some(Node {
        value: Value::Seq(items),
        ..
    }) = accounts
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Map(entries) = &item.value else {
            continue;
        };
        for key in ["source-password", "target-password"] {
            if let Some(Value::Map(secret)) = entry(entries, key)
                && let Some(Value::Str(file)) = entry(secret, "file")
            {
                out.push(dir.join(file));
            }
        }
    }
    out
}

/// An import that is also a `file:` secret named in a CSV row (known only once that row was
/// read; those of the YAML accounts are refused before reading, in [`read_import`]). Nothing of
/// such a file was quoted unless it reads as a CSV of accounts; the plan is refused all the same.
pub(super) fn imports_that_are_secrets(
    r: &mut Reader<'_>,
    written: &[Written],
    imported: &Imported,
    read: &[(Arc<SourceFile>, Span)],
    plan_path: &Path,
    files: &dyn FileReader,
) {
    let dir = plan_path.parent().unwrap_or_else(|| Path::new(""));
    let accepted = |span: &Span| read.iter().any(|(_, s)| s == span);
    for (path, span) in imported.paths.iter().filter(|(_, s)| accepted(s)) {
        let user = written.iter().find_map(|w| {
            let a = &w.account;
            [&a.source_password, &a.target_password]
                .into_iter()
                .flatten()
                .any(|s| matches!(s, SecretRef::File(f) if files.same_file(&dir.join(f), path)))
                .then_some(a.address.as_str())
        });
        if let Some(address) = user {
            r.error(
                Code::CsvImport,
                *span,
                format!(
                    "{} is a `file:` secret of {address}; it is not read as a CSV file",
                    path.strip_prefix(dir).unwrap_or(path).display()
                ),
                "a secret file",
            );
        }
    }
}

/// Open the CSV file an `import:` entry names, relative to the plan's folder: once per file,
/// never a file the plan uses as a `file:` secret, within the plan's import budget, and only
/// when it is recognisably a CSV of accounts (otherwise nothing of it is quoted).
pub(super) fn read_import(
    r: &mut Reader<'_>,
    item: &Node,
    plan_path: &Path,
    files: &dyn FileReader,
    imported: &mut Imported,
) -> Option<(Arc<SourceFile>, Span)> {
    let f = r.fields(item, "an import", IMPORT_KEYS)?;
    let node = f.get("import")?;
    let relative = r.string(node, "`import`")?;
    let path = plan_path
        .parent()
        .unwrap_or_else(|| Path::new(""))
        .join(&relative);
    if let Some((_, first)) = imported
        .paths
        .iter()
        .find(|(p, _)| files.same_file(p, &path))
    {
        r.diags.push(
            Diagnostic::error(Code::CsvImport, format!("{relative} is imported twice"))
                .with_label(r.source, node.span, "again here")
                .with_label(r.source, *first, "first here")
                .with_help(
                    "each row would be a second account of the same address; keep one import",
                ),
        );
        return None;
    }
    if imported
        .secret_files
        .iter()
        .any(|secret| files.same_file(secret, &path))
    {
        r.error(
            Code::CsvImport,
            node.span,
            format!("{relative} is a `file:` secret of this plan; it is not read as a CSV file"),
            "a secret file",
        );
        return None;
    }
    let csv = import::open(r, files, &path, node.span, imported.budget)?;
    imported.budget = imported.budget.saturating_sub(csv.text.len());
    imported.paths.push((path, node.span));
    if !import::looks_like_accounts(&csv.text) {
        r.diags.push(
            Diagnostic::error(
                Code::CsvImport,
                format!("{relative} is not a CSV file of accounts: its first line names no account key"),
            )
            .with_label(r.source, node.span, "imported here")
            .with_help(format!(
                "an import's first line names its columns ({}); nothing of this file is shown, in case it is not the file meant",
                import::CSV_KEYS.join(", ")
            )),
        );
        return None;
    }
    Some((csv, node.span))
}

/// Add to every diagnostic located in a CSV import a second label at the `import:` line, so
/// that machine formats (and readers) can tell which entry brought the row in.
pub(super) fn label_imports(
    diags: &mut Diagnostics,
    imports: &[(Arc<SourceFile>, Span)],
    plan: &Arc<SourceFile>,
) {
    if imports.is_empty() {
        return;
    }
    for d in &mut diags.items {
        let Some(first) = d.labels.first() else {
            continue;
        };
        if let Some((_, span)) = imports
            .iter()
            .find(|(csv, _)| Arc::ptr_eq(csv, &first.source))
        {
            d.labels.push(Label {
                source: Arc::clone(plan),
                span: *span,
                text: "imported here".to_owned(),
                secret: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::fixtures::{is_missing_password, run, with_accounts};
    use crate::plan::diag::Code;
    use crate::plan::model::Flow;
    use crate::plan::secret::SecretRef;
    use crate::plan::source::SourceFile;

    #[test]
    fn csv_rows_get_every_check_and_point_into_the_csv() {
        let text = with_accounts(
            "  - { address: a@acme.example, from: old, to: exchange }
  - import: more.csv
",
        );
        let csv = "address,from,to,wave,target-password\n\
                   b@acme.example,isp,exchange,1,file:b.pass\n\
                   A@acme.example,isp,exchange,,\n\
                   c@other.example,isp,exchange,,\n\
                   d@acme.example,old,exchange,soon,\n";
        let source = SourceFile::new("plans/p.yaml", text.as_str());
        let files = |path: &Path, _: usize| {
            assert_eq!(path, Path::new("plans/more.csv"));
            Ok(csv.as_bytes().to_vec())
        };
        let (plan, diags) = crate::plan::load_with(&source, Path::new("plans/p.yaml"), &files);
        assert!(plan.is_none());
        let found: Vec<(Code, &str, usize, usize)> = diags
            .items
            .iter()
            .filter(|d| !is_missing_password(d))
            .map(|d| {
                let (file, line, col) = d.location().unwrap_or(("", 0, 0));
                (d.code, file, line, col)
            })
            .collect();
        assert_eq!(
            found,
            [
                (Code::DuplicateAccount, "plans/more.csv", 3, 1),
                (Code::DomainNotAttached, "plans/more.csv", 4, 21),
                (Code::WrongType, "plans/more.csv", 5, 29),
            ]
        );
        // The duplicate shows both places, in both files, and every CSV diagnostic the import line.
        let dup = diags
            .items
            .iter()
            .find(|d| d.code == Code::DuplicateAccount)
            .expect("the duplicate");
        let places: Vec<(&str, usize)> = dup
            .labels
            .iter()
            .map(|l| (l.source.name.as_str(), l.source.line_col(l.span.offset).0))
            .collect();
        assert_eq!(
            places,
            [
                ("plans/more.csv", 3),
                ("plans/p.yaml", 13),
                ("plans/p.yaml", 14)
            ]
        );
        assert!(
            diags
                .items
                .iter()
                .filter(|d| d
                    .location()
                    .is_some_and(|(file, ..)| file == "plans/more.csv"))
                .all(|d| d.labels.last().is_some_and(|l| l.text == "imported here"))
        );

        // Without the problems, the rows are accounts in place, after the YAML ones.
        let csv = "address,from,to,wave,target-password,source-password\n\
                   b@acme.example,isp,exchange,1,file:b.pass,env:S\n";
        let files = |_: &Path, _: usize| Ok(csv.as_bytes().to_vec());
        let text = text.replace(
            "to: exchange }",
            "to: exchange, source-password: { env: S }, target-password: { env: T } }",
        );
        let source = SourceFile::new("plans/p.yaml", text.as_str());
        let (plan, diags) = crate::plan::load_with(&source, Path::new("plans/p.yaml"), &files);
        let plan = plan.unwrap_or_else(|| panic!("{:?}", diags.items));
        let b = &plan.accounts[1];
        assert_eq!(
            (b.address.as_str(), b.flow, b.wave),
            ("b@acme.example", Flow::ImapToExchange, 1)
        );
        assert_eq!(b.target_password, Some(SecretRef::File("b.pass".into())));
        assert_eq!(b.origin.to_string(), "plans/more.csv:2:1");
        let secret = b.secret_origins.target_password.as_ref().expect("origin");
        assert_eq!(secret.to_string(), "plans/more.csv:2:31");
    }

    #[test]
    fn an_unreadable_import_is_located_at_the_import_line() {
        let text = with_accounts("  - import: missing.csv\n    adress: x\n");
        let (plan, found) = run(&text);
        assert!(plan.is_none());
        assert_eq!(
            found,
            [
                (Code::CsvImport, "missing.csv".to_owned(), 13, 13),
                (Code::UnknownKey, "adress".to_owned(), 14, 5),
            ]
        );
    }
}
