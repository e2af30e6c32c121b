//! Node tree → validated [`Plan`], collecting every problem.
//!
//! Entry point: [`validate`]. It reads each section with [`Reader`] (types, unknown and missing
//! keys), then checks what spans sections: platform names, flows, attached domains, duplicate
//! addresses, provisional-name collisions, and the `after:` graph (unknown names, cycles named in
//! full, later waves). A plan is returned only when no error was found.
//!
//! The files, by concern, in the order [`validate`] uses them:
//! - `sections`: the plan's settings: `platforms:` (with each `imap:` block), `domains:`,
//!   `defaults:`, `copy:` and its sizes, secret references;
//! - `imports`: the CSV `import:` entries of `accounts:` (which files, read once each, never a
//!   `file:` secret, within one byte budget), and the `imported here` label of their diagnostics;
//! - `accounts`: one account, from a YAML entry or a CSV row, with its flow, provisional name and
//!   the passwords its flow needs;
//! - `checks`: checks of values (endpoint, host, address) and across sections (platform
//!   references, flows, duplicate addresses, provisional-name collisions, attached domains);
//! - `after`: the `after:` graph (unknown names with suggestions, later waves, cycles).
//!
//! Invariants: every reader reports what it finds wrong and goes on (one run lists every
//! problem); the files import one another as a tree (`accounts` → `sections` → `checks` →
//! `after`, `accounts` → `checks`), and none of them imports more from this file than the key
//! lists and the shared `Written` and `Platforms`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::decode::Reader;
use super::diag::{Code, Diagnostic, Diagnostics};
use super::import::{self, FileReader};
use super::model::{Account, AfterOptions, OvhSettings, Plan, Platform};
use super::source::{Origin, SourceFile, Span};
use super::yaml::{Node, Value};
use crate::providers::ovh::config::KNOWN_ENDPOINTS;

mod accounts;
mod after;
mod checks;
mod imports;
mod sections;

pub use checks::{ascii_domain, check_address};

use accounts::read_account;
use checks::{check_accounts, check_endpoint};
use imports::{
    Imported, imports_that_are_secrets, is_import, label_imports, read_import, secret_files,
};
use sections::{read_defaults, read_domains, read_platforms};

const TOP_KEYS: &[&str] = &[
    "version",
    "name",
    "ovh",
    "platforms",
    "domains",
    "defaults",
    "accounts",
    "after",
];
pub(super) const PLATFORM_KEYS: &[&str] = &["type", "service", "organization", "domain", "imap"];
pub(super) const PLATFORM_TYPES: &[&str] =
    &["ovh-mxplan", "ovh-mxplan-legacy", "ovh-exchange", "imap"];
pub(super) const IMAP_KEYS: &[&str] = &[
    "host",
    "port",
    "tls",
    "allow-insecure",
    "tls-verify",
    "max-connections",
];

/// The range of `imap.max-connections`: a copy holds a connection on each side at once, and
/// both may be on the same server.
pub const MAX_CONNECTIONS: std::ops::RangeInclusive<u16> = 2..=256;
pub(super) const DOMAIN_KEYS: &[&str] = &["name", "platform", "type"];
pub(super) const DEFAULTS_KEYS: &[&str] = &["provisional-name", "copy", "wave"];
pub(super) const COPY_KEYS: &[&str] = &["folders", "max-message-size"];
pub(super) const FOLDERS_KEYS: &[&str] = &["map", "exclude", "include"];
pub(super) const ACCOUNT_KEYS: &[&str] = &[
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
    "after",
    "copy",
];
pub(super) const SECRET_KEYS: &[&str] = &["env", "file", "command"];
pub(super) const IMPORT_KEYS: &[&str] = &["import"];

/// The keys each place of a plan allows, for the JSON Schema's tests ([`super::schema`]).
pub mod keys {
    pub const TOP: &[&str] = super::TOP_KEYS;
    pub const PLATFORM: &[&str] = super::PLATFORM_KEYS;
    pub const PLATFORM_TYPES: &[&str] = super::PLATFORM_TYPES;
    pub const IMAP: &[&str] = super::IMAP_KEYS;
    pub const DOMAIN: &[&str] = super::DOMAIN_KEYS;
    pub const DEFAULTS: &[&str] = super::DEFAULTS_KEYS;
    pub const COPY: &[&str] = super::COPY_KEYS;
    pub const FOLDERS: &[&str] = super::FOLDERS_KEYS;
    pub const ACCOUNT: &[&str] = super::ACCOUNT_KEYS;
    pub const SECRET: &[&str] = super::SECRET_KEYS;
    pub const IMPORT: &[&str] = super::IMPORT_KEYS;
}

/// An account as written, with the spans later checks point at.
pub(super) struct Written {
    pub(super) account: Account,
    /// The file the account was written in: the plan, or a CSV import.
    pub(super) source: Arc<SourceFile>,
    pub(super) address_span: Span,
    pub(super) to_span: Span,
    pub(super) after_spans: Vec<Span>,
    pub(super) provisional_span: Span,
}

/// Validate a parsed plan. `path` is the plan file (its stem names an unnamed plan, its folder
/// anchors imports); `files` reads the CSV imports.
pub fn validate(
    source: &Arc<SourceFile>,
    root: &Node,
    path: &Path,
    files: &dyn FileReader,
    diags: &mut Diagnostics,
) -> Option<Plan> {
    let mut r = Reader { source, diags };
    let top = r.fields(root, "the plan", TOP_KEYS)?;

    match top.get("version") {
        Some(Node {
            value: Value::Int(1),
            ..
        }) => {}
        Some(v) => r.diags.push(
            Diagnostic::error(Code::UnsupportedVersion, "unsupported plan version")
                .with_label(source, v.span, "this mailplan reads `version: 1`")
                .with_help("write `version: 1`"),
        ),
        None => {
            r.required(top, "version", "the plan");
        }
    }
    let name = top
        .get("name")
        .and_then(|n| r.string(n, "`name`"))
        .unwrap_or_else(|| {
            path.file_stem()
                .map_or_else(|| "plan".to_owned(), |s| s.to_string_lossy().into_owned())
        });
    let ovh = top.get("ovh").and_then(|n| {
        let f = r.fields(n, "`ovh`", &["endpoint"])?;
        let node = r.required(f, "endpoint", "`ovh`")?;
        let endpoint = r.string(node, "`ovh.endpoint`")?;
        if let Err(why) = check_endpoint(&endpoint) {
            let names: Vec<&str> = KNOWN_ENDPOINTS.iter().map(|(n, _)| *n).collect();
            r.diags.push(
                Diagnostic::error(
                    Code::InvalidValue,
                    format!("`ovh.endpoint` {endpoint:?} {why}"),
                )
                .with_label(r.source, node.span, "not an OVH API endpoint")
                .with_help(format!(
                    "one of {}, an https:// base URL, or http:// on this machine (127.0.0.1, localhost, [::1]) for a simulator",
                    names.join(", ")
                )),
            );
            return None;
        }
        Some(OvhSettings { endpoint })
    });

    let platforms = read_platforms(&mut r, top);
    let domains = read_domains(&mut r, top, &platforms);
    let defaults = read_defaults(&mut r, top);
    let after = top
        .get("after")
        .and_then(|n| {
            let f = r.fields(n, "`after`", &["reset-source"])?;
            let reset_source = match f.get("reset-source") {
                Some(v) => r.boolean(v, "`after.reset-source`")?,
                None => false,
            };
            Some(AfterOptions { reset_source })
        })
        .unwrap_or_default();

    let mut written = Vec::new();
    let mut imports: Vec<(Arc<SourceFile>, Span)> = Vec::new();
    let mut imported = Imported {
        paths: Vec::new(),
        secret_files: secret_files(top.get("accounts"), path),
        budget: import::MAX_TOTAL_IMPORT_BYTES,
    };
    if let Some(list) = top.get("accounts")
        && let Some(items) = r.list(list, "`accounts`")
    {
        for item in items {
            if is_import(item) {
                let Some(csv) = read_import(&mut r, item, path, files, &mut imported) else {
                    continue;
                };
                let mut cr = Reader {
                    source: &csv.0,
                    diags: &mut *r.diags,
                };
                for row in import::read_csv(&mut cr) {
                    if let Some(w) = read_account(&mut cr, &row, &defaults, &platforms) {
                        written.push(w);
                    }
                }
                imports.push(csv);
            } else if let Some(w) = read_account(&mut r, item, &defaults, &platforms) {
                written.push(w);
            }
        }
    }
    imports_that_are_secrets(&mut r, &written, &imported, &imports, path, files);
    check_accounts(&mut r, &mut written, &platforms, &domains);
    label_imports(r.diags, &imports, source);

    // Any error, including duplicate keys found while parsing, withholds the plan.
    if r.diags.has_errors() {
        return None;
    }
    Some(Plan {
        name,
        path: path.to_path_buf(),
        ovh,
        platforms: platforms.into_iter().map(|(k, (p, _))| (k, p)).collect(),
        domains: domains.into_iter().map(|(d, _)| d).collect(),
        accounts: written.into_iter().map(|w| w.account).collect(),
        after,
    })
}

/// Platforms by name, with where each name was written in the plan.
pub(super) type Platforms = BTreeMap<String, (Platform, Origin)>;

/// What the unit tests of every file of this module share: a plan's header with one platform of
/// each type, and a run that lists each diagnostic's code, labelled text and place.
#[cfg(test)]
mod fixtures {
    use std::path::PathBuf;

    use crate::plan::diag::{Code, Diagnostic};
    use crate::plan::load;
    use crate::plan::model::Plan;
    use crate::plan::source::SourceFile;

    pub(super) const HEADER: &str = "version: 1
platforms:
  old: { type: ovh-mxplan, service: mxplan-ab12345-1 }
  legacy: { type: ovh-mxplan-legacy, domain: acme.example }
  exchange:
    type: ovh-exchange
    organization: hosted-ab12345-1
    imap: { host: ex5.mail.ovh.net }
  isp: { type: imap, imap: { host: imap.isp.example } }
domains:
  - { name: acme.example, platform: exchange }
";

    /// Each diagnostic as (code, labelled text, line, column).
    pub(super) type Found = Vec<(Code, String, usize, usize)>;

    pub(super) fn run(text: &str) -> (Option<Plan>, Found) {
        let source = SourceFile::new("p.yaml", text);
        let (plan, diags) = load(&source, &PathBuf::from("plans/p.yaml"));
        let found = diags
            .items
            .iter()
            .filter(|d| !is_missing_password(d))
            .map(|d| {
                let (_, line, col) = d.location().unwrap_or(("", 0, 0));
                let label = d
                    .labels
                    .first()
                    .map(|l| text[l.span.range()].to_owned())
                    .unwrap_or_default();
                (d.code, label, line, col)
            })
            .collect();
        (plan, found)
    }

    /// The plans of these tests, about other checks, write no passwords; the missing-password
    /// check has its own test ([`an_account_without_a_password_it_needs_is_an_error`]).
    pub(super) fn is_missing_password(d: &Diagnostic) -> bool {
        d.code == Code::MissingKey && d.message.ends_with("logs in with it")
    }

    pub(super) fn with_accounts(accounts: &str) -> String {
        format!("{HEADER}accounts:\n{accounts}")
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{run, with_accounts};
    use crate::plan::diag::Code;
    use crate::plan::model::Flow;

    #[test]
    fn a_valid_plan_gives_flows_and_provisional_names() {
        let (plan, found) = run(&with_accounts(
            "  - { address: John.Smith@acme.example, from: old, to: exchange, source-password: { env: S }, target-password: { env: T } }
  - { address: jane@acme.example, from: legacy, to: exchange, wave: 1, after: [john.smith@acme.example], source-password: { env: S } }
  - { address: bob@isp.example, from: isp, to: isp2, source-password: { env: S }, target-password: { env: T } }
",
        ).replace("domains:", "  isp2: { type: imap, imap: { host: imap.new.example, tls: starttls } }\ndomains:"));
        assert!(found.is_empty(), "{found:?}");
        let plan = plan.expect("valid");
        assert_eq!(plan.name, "p");
        let flows: Vec<Flow> = plan.accounts.iter().map(|a| a.flow).collect();
        assert_eq!(
            flows,
            [
                Flow::MxplanToExchange,
                Flow::LegacyToExchange,
                Flow::ImapToImap
            ]
        );
        assert_eq!(plan.accounts[0].address, "john.smith@acme.example");
        assert_eq!(
            plan.accounts[0].provisional_address.as_deref(),
            Some("john.smith-old@acme.example")
        );
        assert_eq!(
            plan.platforms["isp2"].imap.as_ref().map(|i| i.port),
            Some(143)
        );
        assert_eq!(
            plan.platforms["old"].imap.as_ref().map(|i| i.host.as_str()),
            Some("ssl0.ovh.net")
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_span() {
        let text = with_accounts(
            "  - { adress: a@acme.example, from: old, to: exchange }
  - { address: b@acme.example, from: olde, to: exchange }
  - { address: c@acme.example, from: old, to: exchange, wave: soon }
  - { address: not-an-address, from: old, to: exchange }
  - { address: d@acme.example, from: old, to: exchange }
  - { address: D@acme.example, from: old, to: exchange }
  - { address: e@other.example, from: old, to: exchange }
  - { address: f@acme.example, from: isp, to: isp }
  - { address: g@acme.example, from: exchange, to: legacy }
  - { address: h@acme.example, from: old, to: exchange, provisional-name: \"{local}2\" }
  - { address: h2@acme.example, from: old, to: exchange }
  - { address: i@acme.example, from: isp, to: exchange, after: [j@acme.example] }
  - { address: j@acme.example, from: isp, to: exchange, after: [i@acme.example] }
  - { address: k@acme.example, from: isp, to: exchange, after: [nobody@acme.example] }
  - { address: l@acme.example, from: isp, to: exchange, after: [m@acme.example] }
  - { address: m@acme.example, from: isp, to: exchange, wave: 2 }
  - { address: n@acme.example, from: isp, to: exchange, source-password: hunter2 }
",
        );
        let (plan, found) = run(&text);
        assert!(plan.is_none());
        let expect = [
            (Code::UnknownKey, "adress", 13, 7),
            (Code::MissingKey, "{", 13, 5),
            (Code::UnknownPlatform, "olde", 14, 38),
            (Code::WrongType, "soon", 15, 63),
            (Code::InvalidAddress, "not-an-address", 16, 16),
            (Code::DuplicateAccount, "D@acme.example", 18, 16),
            (Code::DomainNotAttached, "exchange", 19, 48),
            (Code::SameSourceAndTarget, "isp", 20, 47),
            (Code::UnsupportedFlow, "exchange", 21, 38),
            (Code::ProvisionalNameCollision, "\"{local}2\"", 22, 75),
            (Code::AfterCycle, "j@acme.example", 24, 65),
            (Code::UnknownAccount, "nobody@acme.example", 26, 65),
            (Code::AfterLaterWave, "m@acme.example", 27, 65),
            (Code::Insecure, "hunter2", 29, 74),
        ];
        for (code, label, line, col) in expect {
            assert!(
                found.contains(&(code, label.to_owned(), line, col)),
                "{code} at {line}:{col} on {label:?} not in {found:#?}"
            );
        }
        assert_eq!(found.len(), expect.len(), "{found:#?}");
    }

    #[test]
    fn top_level_problems() {
        let (_, found) = run("version: 2\nplatforms: {}\nacounts: []\n");
        let codes: Vec<Code> = found.iter().map(|f| f.0).collect();
        assert_eq!(codes, [Code::UnsupportedVersion, Code::UnknownKey]);
        let (_, found) = run("name: x\nplatforms: {}\n");
        assert_eq!(found[0].0, Code::MissingKey);
        let (_, found) = run("version: 1\nplatforms:\n  x: { type: exchange }\n");
        assert_eq!(found[0].0, Code::InvalidValue);
        assert_eq!(found[0].1, "exchange");
        let (_, found) =
            run("version: 1\nplatforms:\n  x: { type: imap, imap: { host: h, tls: none } }\n");
        assert_eq!(found[0].0, Code::Insecure);
        let (plan, found) = run(
            "version: 1\nplatforms:\n  x: { type: imap, imap: { host: h, tls-verify: false } }\n",
        );
        assert!(plan.is_some(), "a warning does not block: {found:?}");
        assert_eq!(found[0].0, Code::Insecure);
    }

    #[test]
    fn a_duplicate_key_alone_withholds_the_plan() {
        let (plan, found) = run("version: 1\nplatforms: {}\nplatforms: {}\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, Code::DuplicateKey);
        assert!(plan.is_none());
    }
}
