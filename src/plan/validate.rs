//! Node tree → validated [`Plan`], collecting every problem.
//!
//! Entry point: [`validate`]. It reads each section with [`Reader`] (types, unknown and missing
//! keys), then checks what spans sections: platform names, flows, attached domains, duplicate
//! addresses, provisional-name collisions, and the `after:` graph (unknown names, cycles named in
//! full, later waves). A plan is returned only when no error was found.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};

use super::decode::{Fields, Reader, did_you_mean};
use super::diag::{Code, Diagnostic, Diagnostics, Label};
use super::import::{self, FileReader};
use super::model::{
    Account, AfterOptions, CopyOptions, DomainAttachment, DomainType, Flow, ImapServer,
    OvhSettings, Plan, Platform, PlatformKind, SecretOrigins, TlsMode,
};
use super::secret::SecretRef;
use super::source::{Origin, SourceFile, Span};
use super::yaml::{Node, Value};
use crate::providers::ovh::config::KNOWN_ENDPOINTS;

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
const PLATFORM_KEYS: &[&str] = &["type", "service", "organization", "domain", "imap"];
const PLATFORM_TYPES: &[&str] = &["ovh-mxplan", "ovh-mxplan-legacy", "ovh-exchange", "imap"];
const IMAP_KEYS: &[&str] = &[
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
const DOMAIN_KEYS: &[&str] = &["name", "platform", "type"];
const DEFAULTS_KEYS: &[&str] = &["provisional-name", "copy", "wave"];
const COPY_KEYS: &[&str] = &["folders", "max-message-size"];
const FOLDERS_KEYS: &[&str] = &["map", "exclude", "include"];
const ACCOUNT_KEYS: &[&str] = &[
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
const SECRET_KEYS: &[&str] = &["env", "file", "command"];
const IMPORT_KEYS: &[&str] = &["import"];

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

const DEFAULT_PROVISIONAL_NAME: &str = "{local}-old";
/// The new MX Plan's IMAP server, per the `OVHcloud` documentation.
const MXPLAN_IMAP_HOST: &str = "ssl0.ovh.net";

/// An account as written, with the spans later checks point at.
struct Written {
    account: Account,
    /// The file the account was written in: the plan, or a CSV import.
    source: Arc<SourceFile>,
    address_span: Span,
    to_span: Span,
    after_spans: Vec<Span>,
    provisional_span: Span,
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
type Platforms = BTreeMap<String, (Platform, Origin)>;

/// An accounts-list entry with an `import` key (any other key beside it is reported).
fn is_import(item: &Node) -> bool {
    matches!(&item.value, Value::Map(entries)
        if entries.iter().any(|(k, _)| matches!(&k.value, Value::Str(s) if s == "import")))
}

/// What the imports read so far hold, and what they may not be.
struct Imported {
    /// Each import read, with where it was named.
    paths: Vec<(std::path::PathBuf, Span)>,
    /// The plan's `file:` secrets, joined to its folder: never read as a CSV file.
    secret_files: Vec<std::path::PathBuf>,
    /// Bytes the imports still to read may hold together.
    budget: usize,
}

/// The value of `key` in a mapping's entries.
fn entry<'n>(entries: &'n [(Node, Node)], key: &str) -> Option<&'n Value> {
    entries
        .iter()
        .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
        .map(|(_, v)| &v.value)
}

/// The `file:` secrets the plan's YAML accounts name, joined to the plan's folder.
fn secret_files(accounts: Option<&Node>, plan_path: &Path) -> Vec<std::path::PathBuf> {
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
fn imports_that_are_secrets(
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
fn read_import(
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
fn label_imports(
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

fn read_platforms(r: &mut Reader<'_>, top: Fields<'_>) -> Platforms {
    let mut out = Platforms::new();
    let Some(node) = r.required(top, "platforms", "the plan") else {
        return out;
    };
    let Value::Map(entries) = &node.value else {
        r.fields(node, "`platforms`", &[]);
        return out;
    };
    for (key, value) in entries {
        let Some(name) = r.string(key, "a platform name") else {
            continue;
        };
        let what = format!("platform `{name}`");
        let Some(f) = r.fields(value, &what, PLATFORM_KEYS) else {
            continue;
        };
        let Some(type_node) = r.required(f, "type", &what) else {
            continue;
        };
        let Some(kind_name) = r.choice(type_node, "platform type", PLATFORM_TYPES) else {
            continue;
        };
        let text = |r: &mut Reader<'_>, key: &str| {
            r.required(f, key, &what)
                .and_then(|n| r.string(n, &format!("`{key}`")))
        };
        let kind = match kind_name {
            "ovh-mxplan" => text(r, "service").map(|service| PlatformKind::OvhMxplan { service }),
            "ovh-mxplan-legacy" => {
                text(r, "domain").map(|domain| PlatformKind::OvhMxplanLegacy { domain })
            }
            "ovh-exchange" => text(r, "organization").map(|organization| {
                let service = f
                    .get("service")
                    .and_then(|n| r.string(n, "`service`"))
                    .unwrap_or_else(|| organization.clone());
                PlatformKind::OvhExchange {
                    organization,
                    service,
                }
            }),
            _ => Some(PlatformKind::Imap),
        };
        let imap = match f.get("imap") {
            // A block with errors (already reported) still counts as written: the accounts
            // reading from this platform are not told that it has no `imap:` block.
            Some(n) => read_imap(r, n, &what).or_else(|| {
                Some(ImapServer {
                    host: String::new(),
                    port: 993,
                    tls: TlsMode::Implicit,
                    tls_verify: true,
                    max_connections: None,
                })
            }),
            None if kind_name == "imap" => {
                r.required(f, "imap", &what);
                None
            }
            None if kind_name == "ovh-mxplan" => Some(ImapServer {
                host: MXPLAN_IMAP_HOST.to_owned(),
                port: 993,
                tls: TlsMode::Implicit,
                tls_verify: true,
                max_connections: None,
            }),
            None => None,
        };
        if let Some(kind) = kind {
            out.insert(
                name.clone(),
                (
                    Platform { name, kind, imap },
                    Origin::new(r.source, key.span),
                ),
            );
        }
    }
    out
}

fn read_imap(r: &mut Reader<'_>, node: &Node, platform: &str) -> Option<ImapServer> {
    let what = format!("the `imap` block of {platform}");
    let f = r.fields(node, &what, IMAP_KEYS)?;
    let host_node = r.required(f, "host", &what)?;
    let host = r.string(host_node, "`imap.host`")?;
    let tls = match f.get("tls") {
        Some(n) => match r.choice(n, "TLS mode", &["implicit", "starttls", "none"])? {
            "starttls" => TlsMode::Starttls,
            "none" => TlsMode::None,
            _ => TlsMode::Implicit,
        },
        None => TlsMode::Implicit,
    };
    if let Err(why) = check_host(&host) {
        r.error(
            Code::InvalidValue,
            host_node.span,
            format!("`imap.host` {host:?} {why}"),
            "not a host",
        );
        return None;
    }
    let port = match f.get("port") {
        Some(n) => {
            let port = r.integer::<u16>(n, "`imap.port`", "1 to 65535")?;
            if port == 0 {
                r.error(
                    Code::InvalidValue,
                    n.span,
                    "`imap.port` must be 1 to 65535, found 0".to_owned(),
                    "out of range",
                );
                return None;
            }
            port
        }
        None => tls.default_port(),
    };
    let allow_insecure = match f.get("allow-insecure") {
        Some(n) => r.boolean(n, "`imap.allow-insecure`")?,
        None => false,
    };
    let tls_verify = match f.get("tls-verify") {
        Some(n) => r.boolean(n, "`imap.tls-verify`")?,
        None => true,
    };
    let max_connections = match f.get("max-connections") {
        Some(n) => {
            let range = "2 to 256 (a copy holds a connection on each side at once)";
            let v = r.integer::<u16>(n, "`imap.max-connections`", range)?;
            if !MAX_CONNECTIONS.contains(&v) {
                r.error(
                    Code::InvalidValue,
                    n.span,
                    format!("`imap.max-connections` must be {range}, found {v}"),
                    "out of range",
                );
                return None;
            }
            Some(v)
        }
        None => None,
    };
    if tls == TlsMode::None && !allow_insecure {
        let span = f.get("tls").map_or(node.span, |n| n.span);
        r.diags.push(
            Diagnostic::error(Code::Insecure, format!("{platform} would send passwords in clear text"))
                .with_label(r.source, span, "tls: none")
                .with_help("use `tls: implicit` or `starttls`, or write `allow-insecure: true` if this is really wanted"),
        );
    }
    if !tls_verify {
        let span = f.get("tls-verify").map_or(node.span, |n| n.span);
        r.diags.push(
            Diagnostic::warning(Code::Insecure, format!("{platform} does not check the server's certificate"))
                .with_label(r.source, span, "tls-verify: false")
                .with_help("anyone on the path can read the passwords; remove it once the server has a valid certificate"),
        );
    }
    Some(ImapServer {
        host,
        port,
        tls,
        tls_verify,
        max_connections,
    })
}

fn read_domains(
    r: &mut Reader<'_>,
    top: Fields<'_>,
    platforms: &Platforms,
) -> Vec<(DomainAttachment, Span)> {
    let mut out: Vec<(DomainAttachment, Span)> = Vec::new();
    let Some(items) = top.get("domains").and_then(|n| r.list(n, "`domains`")) else {
        return out;
    };
    for item in items {
        let Some(f) = r.fields(item, "a domain", DOMAIN_KEYS) else {
            continue;
        };
        let name_node = r.required(f, "name", "a domain");
        let platform_node = r.required(f, "platform", "a domain");
        let domain_type = match f.get("type") {
            Some(n) => match r.choice(n, "domain type", &["authoritative", "non-authoritative"]) {
                Some("authoritative") => DomainType::Authoritative,
                _ => DomainType::NonAuthoritative,
            },
            None => DomainType::NonAuthoritative,
        };
        let (Some(name_node), Some(platform_node)) = (name_node, platform_node) else {
            continue;
        };
        let (Some(name), Some(platform)) = (
            r.string(name_node, "a domain name"),
            r.string(platform_node, "a domain's platform"),
        ) else {
            continue;
        };
        let name = name.to_lowercase();
        if !check_platform_ref(r, platforms, &platform, platform_node.span) {
            continue;
        }
        if let Some((p, _)) = platforms.get(&platform)
            && !matches!(p.kind, PlatformKind::OvhExchange { .. })
        {
            {
                r.diags.push(
                    Diagnostic::error(
                        Code::InvalidValue,
                        format!(
                            "domains are attached to Exchange platforms; `{platform}` is {}",
                            p.kind.type_name()
                        ),
                    )
                    .with_label(
                        r.source,
                        platform_node.span,
                        "not an ovh-exchange platform",
                    ),
                );
                continue;
            }
        }
        if let Some((_, first)) = out.iter().find(|(d, _)| d.name == name) {
            r.diags.push(
                Diagnostic::error(
                    Code::DuplicateDomain,
                    format!("domain {name} is listed twice"),
                )
                .with_label(r.source, name_node.span, "again here")
                .with_label(r.source, *first, "first here"),
            );
            continue;
        }
        out.push((
            DomainAttachment {
                name,
                platform,
                domain_type,
            },
            name_node.span,
        ));
    }
    out
}

/// Account settings that `defaults:` gives every account.
#[derive(Debug, Default)]
struct Defaults {
    provisional_name: Option<String>,
    copy: CopyOptions,
    wave: u32,
}

fn read_defaults(r: &mut Reader<'_>, top: Fields<'_>) -> Defaults {
    let mut out = Defaults::default();
    let Some(f) = top
        .get("defaults")
        .and_then(|n| r.fields(n, "`defaults`", DEFAULTS_KEYS))
    else {
        return out;
    };
    if let Some(n) = f.get("provisional-name") {
        out.provisional_name = r.string(n, "`provisional-name`");
    }
    if let Some(n) = f.get("wave") {
        out.wave = r.integer(n, "`wave`", "0 or more").unwrap_or(0);
    }
    if let Some(n) = f.get("copy") {
        out.copy = read_copy(r, n, CopyOptions::default());
    }
    out
}

fn read_copy(r: &mut Reader<'_>, node: &Node, mut copy: CopyOptions) -> CopyOptions {
    let Some(f) = r.fields(node, "`copy`", COPY_KEYS) else {
        return copy;
    };
    if let Some(n) = f.get("max-message-size") {
        copy.max_message_size = read_size(r, n);
    }
    if let Some(folders) = f
        .get("folders")
        .and_then(|n| r.fields(n, "`copy.folders`", FOLDERS_KEYS))
    {
        if let Some(map) = folders.get("map") {
            if let Value::Map(entries) = &map.value {
                for (k, v) in entries {
                    if let (Some(name), Some(target)) =
                        (r.string(k, "a folder name"), r.string(v, "a folder name"))
                    {
                        if let Some((node, what)) = [(k, "source"), (v, "target")]
                            .into_iter()
                            .find(|(n, _)| matches!(&n.value, Value::Str(s) if s.trim().is_empty()))
                        {
                            r.error(
                                Code::InvalidValue,
                                node.span,
                                format!("a folder map names an empty {what} folder"),
                                "an empty folder name",
                            );
                            continue;
                        }
                        copy.folder_map.insert(name, target);
                    }
                }
            } else {
                r.fields(map, "`copy.folders.map`", &[]);
            }
        }
        for (key, target) in [
            ("exclude", &mut copy.exclude),
            ("include", &mut copy.include),
        ] {
            if let Some(items) = folders
                .get(key)
                .and_then(|n| r.list(n, &format!("`{key}`")))
            {
                *target = items
                    .iter()
                    .filter_map(|n| r.string(n, "a folder pattern"))
                    .collect();
            }
        }
    }
    copy
}

/// `35MB`, `1.5 GiB`, `500000`: a size in bytes.
fn read_size(r: &mut Reader<'_>, node: &Node) -> Option<u64> {
    let parsed = match &node.value {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::Str(s) => parse_size(s),
        _ => None,
    };
    if parsed.is_none() {
        r.error(
            Code::InvalidValue,
            node.span,
            "`max-message-size` must be a size such as 35MB, 20MiB or 1000000".to_owned(),
            "not a size",
        );
    }
    parsed
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = (number * factor).round();
    // The range check makes the cast exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (0.0..1e18).contains(&bytes).then_some(bytes as u64)
}

fn read_secret(r: &mut Reader<'_>, node: &Node, what: &str) -> Option<SecretRef> {
    if let Value::Str(_) = node.value {
        r.diags.push(
            Diagnostic::error(Code::Insecure, format!("{what} is written in the plan in clear"))
                .with_secret_label(r.source, node.span, "a password in a plan file")
                .with_help("refer to it instead: `{ env: NAME }`, `{ file: PATH }` or `{ command: \"pass show …\" }`"),
        );
        return None;
    }
    let f = r.fields(node, what, SECRET_KEYS)?;
    let entries = f.entries();
    if entries.len() != 1 {
        r.error(
            Code::InvalidValue,
            node.span,
            format!("{what} must name exactly one of env, file or command"),
            "one key expected",
        );
        return None;
    }
    let (key, value) = &entries[0];
    let text = r.string(value, what)?;
    match &key.value {
        Value::Str(k) if k == "env" => Some(SecretRef::Env(text)),
        Value::Str(k) if k == "file" => Some(SecretRef::File(text)),
        Value::Str(k) if k == "command" => Some(SecretRef::Command(text)),
        _ => None,
    }
}

#[allow(clippy::too_many_lines)] // one flat list of an account's keys reads best
fn read_account(
    r: &mut Reader<'_>,
    node: &Node,
    defaults: &Defaults,
    platforms: &Platforms,
) -> Option<Written> {
    let f = r.fields(node, "an account", ACCOUNT_KEYS)?;
    let address_node = r.required(f, "address", "an account");
    let from_node = r.required(f, "from", "an account");
    let to_node = r.required(f, "to", "an account");
    let opt_string =
        |r: &mut Reader<'_>, key: &str| f.get(key).and_then(|n| r.string(n, &format!("`{key}`")));
    let display_name = opt_string(r, "display-name");
    let source_login = opt_string(r, "source-login");
    let target_login = opt_string(r, "target-login");
    let source_password = f
        .get("source-password")
        .and_then(|n| read_secret(r, n, "`source-password`"));
    let target_password = f
        .get("target-password")
        .and_then(|n| read_secret(r, n, "`target-password`"));
    let wave = match f.get("wave") {
        Some(n) => r.integer(n, "`wave`", "0 or more")?,
        None => defaults.wave,
    };
    let mut after = Vec::new();
    let mut after_spans = Vec::new();
    if let Some(items) = f.get("after").and_then(|n| r.list(n, "`after`")) {
        for item in items {
            if let Some(a) = r.string(item, "an address in `after`") {
                after.push(a.to_lowercase());
                after_spans.push(item.span);
            }
        }
    }
    let copy = match f.get("copy") {
        Some(n) => read_copy(r, n, defaults.copy.clone()),
        None => defaults.copy.clone(),
    };
    let provisional_node = f.get("provisional-name");
    let provisional_rule = match provisional_node {
        Some(n) => r.string(n, "`provisional-name`"),
        None => defaults.provisional_name.clone(),
    };

    let address_node = address_node?;
    let address = r.string(address_node, "`address`")?.to_lowercase();
    if let Err(why) = check_address(&address) {
        r.diags.push(
            Diagnostic::error(
                Code::InvalidAddress,
                format!("`{address}` is not an e-mail address: {why}"),
            )
            .with_label(r.source, address_node.span, "invalid address"),
        );
        return None;
    }
    let (from_node, to_node) = (from_node?, to_node?);
    let from = r.string(from_node, "`from`")?;
    let to = r.string(to_node, "`to`")?;
    let from_ok = check_platform_ref(r, platforms, &from, from_node.span);
    let to_ok = check_platform_ref(r, platforms, &to, to_node.span);
    if !(from_ok && to_ok) {
        return None;
    }
    let flow = decide_flow(r, platforms, (&from, from_node.span), (&to, to_node.span))?;

    let provisional_address = (flow == Flow::MxplanToExchange).then(|| {
        let rule = provisional_rule
            .as_deref()
            .unwrap_or(DEFAULT_PROVISIONAL_NAME);
        let (local, domain) = address.split_once('@').unwrap_or((&address, ""));
        let local = rule.replace("{local}", local).replace("{domain}", domain);
        format!("{local}@{domain}").to_lowercase()
    });
    if let Some(p) = &provisional_address {
        if let Err(why) = check_address(p) {
            let span = provisional_node.map_or(address_node.span, |n| n.span);
            r.diags.push(
                Diagnostic::error(
                    Code::InvalidAddress,
                    format!("provisional address `{p}` is not an e-mail address: {why}"),
                )
                .with_label(r.source, span, "from this rule")
                .with_help(
                    "a provisional name is a local part; `{local}` stands for the account's own",
                ),
            );
            return None;
        }
        if *p == address {
            let span = provisional_node.map_or(address_node.span, |n| n.span);
            r.error(
                Code::ProvisionalNameCollision,
                span,
                format!("the provisional name of {address} is the address itself"),
                "the source must be renamed to a different name",
            );
            return None;
        }
    }

    // Every flow logs in to its source, and to its target except OVH's own migration (which
    // gives the Exchange account the source's password): a missing password is the plan's
    // problem, found here rather than when `apply` resolves secrets.
    let needs_target = flow != Flow::LegacyToExchange;
    for (key, needed) in [("source-password", true), ("target-password", needs_target)] {
        if needed && f.get(key).is_none() {
            r.diags.push(
                Diagnostic::error(
                    Code::MissingKey,
                    format!("account {address} has no `{key}`, and its flow ({flow}) logs in with it"),
                )
                .with_label(r.source, address_node.span, format!("no `{key}`"))
                .with_help(format!(
                    "add `{key}: {{ env: NAME }}` (or `{{ file: PATH }}`, `{{ command: \"…\" }}`) to this account in the plan, or a `{key}` column to its CSV import"
                )),
            );
        }
    }

    Some(Written {
        source: Arc::clone(r.source),
        address_span: address_node.span,
        to_span: to_node.span,
        provisional_span: provisional_node.map_or(address_node.span, |n| n.span),
        after_spans,
        account: Account {
            address,
            from,
            to,
            flow,
            display_name,
            source_login,
            target_login,
            source_password,
            target_password,
            provisional_address,
            wave,
            after,
            copy,
            origin: Origin::new(r.source, node.span),
            secret_origins: SecretOrigins {
                source_password: f
                    .get("source-password")
                    .map(|n| Origin::new(r.source, n.span)),
                target_password: f
                    .get("target-password")
                    .map(|n| Origin::new(r.source, n.span)),
            },
        },
    })
}

fn check_platform_ref(r: &mut Reader<'_>, platforms: &Platforms, name: &str, span: Span) -> bool {
    if platforms.contains_key(name) {
        return true;
    }
    let names: Vec<&str> = platforms.keys().map(String::as_str).collect();
    let help = match did_you_mean(name, &names) {
        Some(best) => format!("did you mean `{best}`?"),
        None if names.is_empty() => "declare it under `platforms:`".to_owned(),
        None => format!("the plan's platforms: {}", names.join(", ")),
    };
    r.diags.push(
        Diagnostic::error(
            Code::UnknownPlatform,
            format!("no platform is named `{name}`"),
        )
        .with_label(r.source, span, "unknown platform")
        .with_help(help),
    );
    false
}

fn decide_flow(
    r: &mut Reader<'_>,
    platforms: &Platforms,
    (from, from_span): (&str, Span),
    (to, to_span): (&str, Span),
) -> Option<Flow> {
    let (source, _) = &platforms[from];
    let (target, _) = &platforms[to];
    if from == to {
        r.diags.push(
            Diagnostic::error(
                Code::SameSourceAndTarget,
                format!("`from` and `to` are both `{from}`"),
            )
            .with_label(r.source, to_span, "same as `from`")
            .with_help("a migration moves mail between two platforms"),
        );
        return None;
    }
    let flow = match (&source.kind, &target.kind) {
        (PlatformKind::OvhMxplan { .. }, PlatformKind::OvhExchange { .. }) => {
            Some(Flow::MxplanToExchange)
        }
        (PlatformKind::OvhMxplanLegacy { .. }, PlatformKind::OvhExchange { .. }) => {
            Some(Flow::LegacyToExchange)
        }
        (PlatformKind::Imap, PlatformKind::OvhExchange { .. }) => Some(Flow::ImapToExchange),
        (_, PlatformKind::Imap) if source.imap.is_some() => Some(Flow::ImapToImap),
        _ => None,
    };
    let Some(flow) = flow else {
        let why = match (&source.kind, &target.kind) {
            (_, PlatformKind::OvhMxplanLegacy { .. }) => {
                "mail cannot be migrated to a historical MX Plan; move it to Exchange, or declare the server as `type: imap`".to_owned()
            }
            (_, PlatformKind::Imap) => format!(
                "`{from}` has no `imap:` block to read the mail from; add one"
            ),
            _ => format!(
                "supported: ovh-mxplan, ovh-mxplan-legacy or imap → ovh-exchange, and any platform with an `imap:` block → imap; declare `{to}` as `type: imap` to copy into an existing mailbox"
            ),
        };
        r.diags.push(
            Diagnostic::error(
                Code::UnsupportedFlow,
                format!(
                    "no migration from {} to {}",
                    source.kind.type_name(),
                    target.kind.type_name()
                ),
            )
            .with_label(r.source, from_span, source.kind.type_name())
            .with_label(r.source, to_span, target.kind.type_name())
            .with_help(why),
        );
        return None;
    };
    let needs_target_imap = matches!(flow, Flow::MxplanToExchange | Flow::ImapToExchange);
    if needs_target_imap && target.imap.is_none() {
        let (_, declared) = &platforms[to];
        r.diags.push(
            Diagnostic::error(Code::MissingKey, format!("platform `{to}` has no `imap` block, and {flow} copies mail into it over IMAP"))
                .with_label(&declared.source, declared.span, "this platform")
                .with_label(r.source, to_span, "copied into here")
                .with_help("add `imap: { host: exN.mail.ovh.net }` (the server shown in the Exchange control panel)"),
        );
        return None;
    }
    Some(flow)
}

/// An endpoint `apply` can use: a known name, an `https://` base URL with a host, or an
/// `http://` one on the loopback (a simulator): never passwords in clear over a network.
fn check_endpoint(endpoint: &str) -> Result<(), &'static str> {
    if KNOWN_ENDPOINTS.iter().any(|(name, _)| *name == endpoint) {
        return Ok(());
    }
    let (scheme, rest) = endpoint
        .split_once("://")
        .ok_or("is neither a known endpoint name nor a base URL")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err("has no host");
    }
    match scheme {
        "https" => Ok(()),
        "http" => {
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err("is http:// to another machine: the API keys would cross the network in clear")
            }
        }
        _ => Err("is not an http(s) URL"),
    }
}

/// A host name or address for `imap.host`: not empty, no scheme, path, port or space.
fn check_host(host: &str) -> Result<(), &'static str> {
    if host.trim().is_empty() {
        return Err("is empty");
    }
    if host.contains("://") || host.contains('/') {
        return Err("is a URL; write the host name alone (and `port:` beside it)");
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("holds a space");
    }
    if host.parse::<std::net::IpAddr>().is_err()
        && host
            .trim_matches(['[', ']'])
            .parse::<std::net::Ipv6Addr>()
            .is_err()
        && (host.contains(':') || host.len() > 253)
    {
        return Err("is not a host name (a port goes in `port:`)");
    }
    Ok(())
}

/// A practical address check (the OVH Exchange panel's rule, lower-cased): a local part of
/// letters, digits and the specials of RFC 5322 in dot-separated atoms, and a domain of at least two
/// labels of letters, digits and inner hyphens.
pub fn check_address(address: &str) -> Result<(), &'static str> {
    let Some((local, domain)) = address.split_once('@') else {
        return Err("it has no @");
    };
    if local.is_empty() {
        return Err("nothing before the @");
    }
    // RFC 5321's limits, which servers enforce: 64 bytes before the @, 63 per label of the
    // domain (once in ASCII), 254 in all.
    if local.len() > 64 {
        return Err("the part before the @ is longer than 64 characters");
    }
    let ascii = ascii_domain(domain);
    if ascii.split('.').any(|l| l.len() > 63) {
        return Err("a label of the domain is longer than 63 characters");
    }
    if local.len() + 1 + ascii.len() > 254 {
        return Err("it is longer than 254 characters");
    }
    let atom_char = |c: char| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    if local
        .split('.')
        .any(|atom| atom.is_empty() || !atom.chars().all(atom_char))
    {
        return Err("the part before the @ has a character that is not allowed, or misplaced dots");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err("the domain needs at least one dot");
    }
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !labels.iter().all(label_ok) {
        return Err("the domain has an empty label or a character that is not allowed");
    }
    Ok(())
}

/// A domain as the DNS writes it: Unicode labels in punycode (`bücher.example` and
/// `xn--bcher-kva.example` are one domain); as written when it is not a valid domain.
pub fn ascii_domain(domain: &str) -> String {
    idna::domain_to_ascii(domain).unwrap_or_else(|_| domain.to_owned())
}

/// An address with its domain in ASCII, to compare two addresses.
fn address_key(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", ascii_domain(domain)),
        None => address.to_owned(),
    }
}

fn check_accounts(
    r: &mut Reader<'_>,
    written: &mut [Written],
    platforms: &Platforms,
    domains: &[(DomainAttachment, Span)],
) {
    let mut by_address: HashMap<String, usize> = HashMap::with_capacity(written.len());
    // The same address in Unicode and in punycode is one mailbox.
    let mut by_key: HashMap<String, usize> = HashMap::with_capacity(written.len());
    for (i, w) in written.iter().enumerate() {
        let key = address_key(&w.account.address);
        let first = by_address
            .get(&w.account.address)
            .or_else(|| by_key.get(&key))
            .copied();
        by_key.entry(key).or_insert(i);
        if let Some(first) = first {
            r.diags.push(
                Diagnostic::error(
                    Code::DuplicateAccount,
                    format!("account {} is listed twice", w.account.address),
                )
                .with_label(&w.source, w.address_span, "again here")
                .with_label(
                    &written[first].source,
                    written[first].address_span,
                    "first here",
                )
                .with_help("an address is migrated once; remove one of the two entries"),
            );
        } else {
            by_address.insert(w.account.address.clone(), i);
        }
    }

    // Provisional names must be free: no other account has that address or provisional name.
    let mut provisional: HashMap<&str, usize> = HashMap::new();
    for (i, w) in written.iter().enumerate() {
        let Some(p) = w.account.provisional_address.as_deref() else {
            continue;
        };
        if by_address.get(&w.account.address) != Some(&i) {
            continue; // a duplicate account, already reported
        }
        let other = by_address
            .get(p)
            .map(|&j| (j, written[j].address_span, "that account's address"))
            .or_else(|| {
                provisional
                    .get(p)
                    .map(|&j| (j, written[j].provisional_span, "its provisional name too"))
            });
        if let Some((j, span, what)) = other {
            r.diags.push(
                Diagnostic::error(
                    Code::ProvisionalNameCollision,
                    format!(
                        "{} would be renamed to {p}, which {} already uses",
                        w.account.address, written[j].account.address
                    ),
                )
                .with_label(&w.source, w.provisional_span, format!("renames to {p}"))
                .with_label(&written[j].source, span, what)
                .with_help(
                    "set a `provisional-name` rule that gives a free name, e.g. \"{local}-old\"",
                ),
            );
        } else {
            provisional.insert(p, i);
        }
    }

    for w in written.iter() {
        let (target, _) = &platforms[&w.account.to];
        if !matches!(target.kind, PlatformKind::OvhExchange { .. }) {
            continue;
        }
        let domain = w.account.domain();
        if !domains
            .iter()
            .any(|(d, _)| d.name == domain && d.platform == w.account.to)
        {
            r.diags.push(
                Diagnostic::error(
                    Code::DomainNotAttached,
                    format!("domain {domain} is not attached to `{}`", w.account.to),
                )
                .with_label(&w.source, w.to_span, "an Exchange platform")
                .with_label(&w.source, w.address_span, format!("an address of {domain}"))
                .with_help(format!(
                    "add it under `domains:`:\n  - name: {domain}\n    platform: {}\n    type: non-authoritative",
                    w.account.to
                )),
            );
        }
    }
    check_after(r, written, &by_address);
}

/// Comparisons of an unknown `after` name with the plan's addresses, at most, for suggestions.
const SUGGESTION_COMPARISONS: usize = 2_000_000;

fn local_part(address: &str) -> &str {
    address.split('@').next().unwrap_or(address)
}

fn check_after(r: &mut Reader<'_>, written: &[Written], by_address: &HashMap<String, usize>) {
    let mut graph: DiGraph<usize, ()> = DiGraph::with_capacity(written.len(), 0);
    let nodes: Vec<NodeIndex> = (0..written.len()).map(|i| graph.add_node(i)).collect();
    // "Did you mean" for unknown names in linear time: an address of the same local part (a
    // typo in the domain) is looked up; a scan of every address (a typo in the local part) is
    // made for the first names only, within a budget of comparisons, so that thousands of
    // unknown names do not cost thousands of scans.
    let mut names: Vec<&str> = by_address.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut by_local: HashMap<&str, Vec<&str>> = HashMap::new();
    for n in &names {
        by_local.entry(local_part(n)).or_default().push(n);
    }
    let mut scans_left = SUGGESTION_COMPARISONS / names.len().max(1);
    for (i, w) in written.iter().enumerate() {
        for (name, span) in w.account.after.iter().zip(&w.after_spans) {
            let Some(&j) = by_address.get(name) else {
                let mut d = Diagnostic::error(
                    Code::UnknownAccount,
                    format!("`after` names {name}, which is not an account of this plan"),
                )
                .with_label(&w.source, *span, "unknown account");
                let best = by_local
                    .get(local_part(name))
                    .and_then(|same| did_you_mean(name, same))
                    .or_else(|| {
                        scans_left = scans_left.checked_sub(1)?;
                        did_you_mean(name, &names)
                    });
                if let Some(best) = best {
                    d = d.with_help(format!("did you mean {best}?"));
                }
                r.diags.push(d);
                continue;
            };
            if written[j].account.wave > w.account.wave {
                r.diags.push(
                    Diagnostic::error(
                        Code::AfterLaterWave,
                        format!(
                            "{} (wave {}) waits for {name}, which only starts in wave {}",
                            w.account.address, w.account.wave, written[j].account.wave
                        ),
                    )
                    .with_label(&w.source, *span, "in a later wave")
                    .with_label(
                        &written[j].source,
                        written[j].address_span,
                        format!("wave {}", written[j].account.wave),
                    )
                    .with_help("move one of them so that an account never waits for a later wave"),
                );
            }
            // Edge from the account waited for to the one that waits.
            graph.add_edge(nodes[j], nodes[i], ());
        }
    }
    for scc in petgraph::algo::tarjan_scc(&graph) {
        let is_loop = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
        if !is_loop {
            continue;
        }
        // Walk the loop inside the component, against the edges (from waiter to awaited), so it
        // reads as written: a after b after … after a.
        let members: std::collections::HashSet<NodeIndex> = scc.iter().copied().collect();
        let start = *scc.iter().min_by_key(|n| graph[**n]).unwrap_or(&scc[0]);
        let mut path = vec![start];
        let mut current = start;
        loop {
            let next = graph
                .neighbors_directed(current, petgraph::Direction::Incoming)
                .filter(|n| members.contains(n))
                .min_by_key(|n| graph[*n]);
            let Some(next) = next else { break };
            if let Some(pos) = path.iter().position(|n| *n == next) {
                path.drain(..pos);
                path.push(next);
                break;
            }
            path.push(next);
            current = next;
        }
        let names: Vec<&str> = path
            .iter()
            .map(|n| written[graph[*n]].account.address.as_str())
            .collect();
        let mut d = Diagnostic::error(
            Code::AfterCycle,
            format!("`after` forms a loop: {}", names.join(" → ")),
        );
        for pair in path.windows(2) {
            let (waiter, awaited) = (&written[graph[pair[0]]], &written[graph[pair[1]]]);
            if let Some(k) = waiter
                .account
                .after
                .iter()
                .position(|a| *a == awaited.account.address)
            {
                d = d.with_label(
                    &waiter.source,
                    waiter.after_spans[k],
                    format!(
                        "{} waits for {}",
                        waiter.account.address, awaited.account.address
                    ),
                );
            }
        }
        r.diags
            .push(d.with_help("remove one `after` entry of the loop"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::load;
    use std::path::PathBuf;

    const HEADER: &str = "version: 1
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
    type Found = Vec<(Code, String, usize, usize)>;

    fn run(text: &str) -> (Option<Plan>, Found) {
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
    fn is_missing_password(d: &Diagnostic) -> bool {
        d.code == Code::MissingKey && d.message.ends_with("logs in with it")
    }

    fn with_accounts(accounts: &str) -> String {
        format!("{HEADER}accounts:\n{accounts}")
    }

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
    fn a_cycle_names_the_whole_loop_and_duplicates_label_both_places() {
        let text = with_accounts(
            "  - { address: a@acme.example, from: isp, to: exchange, after: [b@acme.example] }
  - { address: b@acme.example, from: isp, to: exchange, after: [c@acme.example] }
  - { address: c@acme.example, from: isp, to: exchange, after: [a@acme.example] }
  - { address: c@acme.example, from: isp, to: exchange }
",
        );
        let source = SourceFile::new("p.yaml", text.as_str());
        let (_, diags) = load(&source, &PathBuf::from("p.yaml"));
        let cycle = diags
            .items
            .iter()
            .find(|d| d.code == Code::AfterCycle)
            .expect("cycle");
        assert_eq!(
            cycle.message,
            "`after` forms a loop: a@acme.example → b@acme.example → c@acme.example → a@acme.example"
        );
        assert_eq!(cycle.labels.len(), 3);
        let dup = diags
            .items
            .iter()
            .find(|d| d.code == Code::DuplicateAccount)
            .expect("dup");
        let lines: Vec<usize> = dup
            .labels
            .iter()
            .map(|l| source.line_col(l.span.offset).0)
            .collect();
        assert_eq!(lines, [16, 15]);
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
    fn max_connections_is_read_and_checked() {
        let text = |value: &str| {
            format!(
                "version: 1\nplatforms:\n  x: {{ type: imap, imap: {{ host: h, max-connections: {value} }} }}\n"
            )
        };
        let (plan, found) = run(&text("3"));
        assert!(found.is_empty(), "{found:?}");
        let imap = plan.expect("plan").platforms["x"].imap.clone();
        assert_eq!(imap.expect("imap").max_connections, Some(3));
        for value in ["1", "300", "-1"] {
            let source = SourceFile::new("p.yaml", text(value).as_str());
            let (plan, diags) = load(&source, &PathBuf::from("p.yaml"));
            assert!(plan.is_none(), "{value}");
            let d = &diags.items[0];
            assert_eq!(d.code, Code::InvalidValue, "{value}");
            assert_eq!(
                d.message,
                format!(
                    "`imap.max-connections` must be 2 to 256 (a copy holds a connection on each \
                     side at once), found {value}"
                )
            );
            assert_eq!(
                &text(value)[d.labels[0].span.range()],
                value,
                "points at the value"
            );
        }
        let (_, found) = run(&text("many"));
        assert_eq!(found[0].0, Code::WrongType);
    }

    #[test]
    fn an_account_without_a_password_it_needs_is_an_error() {
        let text = with_accounts(
            "  - { address: a@isp.example, from: isp, to: isp2, source-password: { env: S } }
  - { address: b@acme.example, from: legacy, to: exchange, source-password: { env: S } }
  - { address: c@acme.example, from: old, to: exchange, target-password: { env: T } }
",
        )
        .replace(
            "domains:",
            "  isp2: { type: imap, imap: { host: imap.new.example } }\ndomains:",
        );
        let source = SourceFile::new("p.yaml", text.as_str());
        let (plan, diags) = load(&source, &PathBuf::from("plans/p.yaml"));
        assert!(plan.is_none());
        let found: Vec<(Code, &str, usize, usize)> = diags
            .items
            .iter()
            .map(|d| {
                let (_, line, col) = d.location().unwrap_or(("", 0, 0));
                (d.code, d.message.as_str(), line, col)
            })
            .collect();
        // OVH's own migration (b) needs no target password: it keeps the source's.
        assert_eq!(
            found,
            [
                (
                    Code::MissingKey,
                    "account a@isp.example has no `target-password`, and its flow (imap-to-imap) logs in with it",
                    14,
                    16
                ),
                (
                    Code::MissingKey,
                    "account c@acme.example has no `source-password`, and its flow (mxplan-to-exchange) logs in with it",
                    16,
                    16
                ),
            ]
        );
        let help = diags.items[0].help.as_deref().unwrap_or_default();
        assert!(help.contains("to this account in the plan"), "{help}");
        assert!(
            !help.contains("environment") && !help.contains("set it"),
            "{help}"
        );
    }

    #[test]
    fn what_apply_would_fail_on_is_refused_with_its_span() {
        let long_local = "l".repeat(300);
        let long_label = "d".repeat(70);
        let text = format!(
            "version: 1
ovh: {{ endpoint: http://api.example.com/1.0 }}
platforms:
  a: {{ type: imap, imap: {{ host: \"imaps://a.example:993\" }} }}
  b: {{ type: imap, imap: {{ host: \"\" }} }}
  c: {{ type: imap, imap: {{ host: \"c example\" }} }}
  d: {{ type: imap, imap: {{ host: d.example, port: 0 }} }}
  e: {{ type: imap, imap: {{ host: \"[::1]\" }} }}
  f: {{ type: imap, imap: {{ host: 127.0.0.1 }} }}
accounts:
  - {{ address: {long_local}@x.example, from: e, to: f }}
  - {{ address: a@{long_label}.example, from: e, to: f }}
  - {{ address: b@bücher.example, from: e, to: f }}
  - {{ address: b@xn--bcher-kva.example, from: e, to: f }}
  - {{ address: c@x.example, from: e, to: f, copy: {{ folders: {{ map: {{ Sent: \"\" }} }} }} }}
"
        );
        let (plan, found) = run(&text);
        assert!(plan.is_none());
        let found: Vec<(Code, usize, usize)> = found.iter().map(|f| (f.0, f.2, f.3)).collect();
        assert_eq!(
            found,
            [
                (Code::InvalidValue, 2, 18),
                (Code::InvalidValue, 4, 34),
                (Code::InvalidValue, 5, 34),
                (Code::InvalidValue, 6, 34),
                (Code::InvalidValue, 7, 51),
                (Code::InvalidAddress, 11, 16),
                (Code::InvalidAddress, 12, 16),
                (Code::DuplicateAccount, 14, 16),
                (Code::InvalidValue, 15, 77),
            ]
        );
        for ok in [
            "ovh-eu",
            "https://eu.api.ovh.com/1.0",
            "http://127.0.0.1:8080/1.0",
            "http://localhost/1.0",
            "http://[::1]:80/1.0",
        ] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ovh-moon",
            "ftp://x/1.0",
            "http://10.0.0.1/1.0",
            "https:///1.0",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_after_names_get_suggestions_without_a_scan_each() {
        use std::fmt::Write as _;
        let mut accounts = String::new();
        for i in 0..3000 {
            let _ = writeln!(
                accounts,
                "  - {{ address: u{i}@x.example, from: isp, to: isp2, after: [u{}@x.exmple] }}",
                (i + 1) % 3000
            );
        }
        accounts.push_str(
            "  - { address: alice@x.example, from: isp, to: isp2, after: [alcie@x.example] }\n",
        );
        let text = with_accounts(&accounts).replace(
            "domains:",
            "  isp2: { type: imap, imap: { host: imap.new.example } }\ndomains:",
        );
        let source = SourceFile::new("p.yaml", text.as_str());
        let (_, diags) = load(&source, &PathBuf::from("plans/p.yaml"));
        let unknown: Vec<&Diagnostic> = diags
            .items
            .iter()
            .filter(|d| d.code == Code::UnknownAccount)
            .collect();
        assert_eq!(unknown.len(), 3001);
        // A typo in the domain: found through the local part, for every one of them.
        assert!(
            unknown[..3000]
                .iter()
                .zip(1..)
                .all(|(d, i)| d.help.as_deref()
                    == Some(&format!("did you mean u{}@x.example?", i % 3000))),
            "{:?}",
            unknown[0].help
        );
        // A typo in the local part: found by a scan.
        assert_eq!(
            unknown[3000].help.as_deref(),
            Some("did you mean alice@x.example?")
        );
    }

    #[test]
    fn a_bad_imap_setting_is_not_followed_by_a_missing_imap_block() {
        let text = "version: 1
platforms:
  old: { type: imap, imap: { host: a.example, max-connections: 1 } }
  new: { type: imap, imap: { host: b.example, port: 0x } }
accounts:
  - { address: a@x.example, from: old, to: new, source-password: { env: S }, target-password: { env: T } }
";
        let (plan, found) = run(text);
        assert!(plan.is_none());
        let codes: Vec<Code> = found.iter().map(|f| f.0).collect();
        assert_eq!(codes, [Code::InvalidValue, Code::WrongType], "{found:?}");
    }

    #[test]
    fn a_duplicate_key_alone_withholds_the_plan() {
        let (plan, found) = run("version: 1\nplatforms: {}\nplatforms: {}\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, Code::DuplicateKey);
        assert!(plan.is_none());
    }

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

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("35MB"), Some(35_000_000));
        assert_eq!(parse_size("20 MiB"), Some(20 * 1024 * 1024));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("lots"), None);
    }
}
