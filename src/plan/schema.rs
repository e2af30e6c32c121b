//! The plan's JSON Schema (`schemas/plan.schema.json`, `mailplan schema`), generated with
//! schemars from `Raw*` types that mirror what [`super::validate`] accepts.
//!
//! Entry point: [`generate`]. The `Raw*` types are documentation first: their doc comments
//! become the schema's descriptions, shown by editors (`# yaml-language-server: $schema=…`).
//! They also deserialize (serde, `deny_unknown_fields`), which the tests use on `plans/`.
//!
//! Invariants, checked by tests: the property names of each `Raw*` type equal the key list the
//! hand decoder uses for the same place ([`super::validate`]), so the two cannot drift; the
//! committed `schemas/plan.schema.json` equals [`generate`]'s output.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// A mailplan migration plan (version 1).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(rename = "Plan", title = "mailplan plan")]
pub struct RawPlan {
    /// The plan format's version; this mailplan reads 1.
    #[schemars(extend("const" = 1))]
    pub version: u32,
    /// The plan's name; defaults to the file name without extension. Names the state store.
    pub name: Option<String>,
    /// OVH API settings. Credentials are never written here: `OVH_*` environment variables
    /// or `ovh.conf`, like the official clients.
    pub ovh: Option<RawOvh>,
    /// Where mail lives, by name; accounts refer to these names in `from` and `to`.
    pub platforms: BTreeMap<String, RawPlatform>,
    /// Domains to attach to Exchange platforms before their accounts are configured.
    pub domains: Option<Vec<RawDomain>>,
    /// Settings every account gets unless it says otherwise.
    pub defaults: Option<RawDefaults>,
    /// The mailboxes to migrate, or `import:` entries naming CSV files of them.
    pub accounts: Option<Vec<RawAccountEntry>>,
    /// What happens once accounts are verified.
    pub after: Option<RawAfter>,
}

/// OVH API settings.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(rename = "Ovh")]
pub struct RawOvh {
    /// `ovh-eu`, `ovh-ca`, `ovh-us`, or a base URL (the simulator in tests).
    pub endpoint: String,
}

/// The kind of a platform.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[schemars(rename = "PlatformType")]
pub enum RawPlatformType {
    /// New MX Plan offer (`mxplan-…` service); needs `service`.
    OvhMxplan,
    /// Historical MX Plan, API under `/email/domain/{domain}`; needs `domain`.
    OvhMxplanLegacy,
    /// Hosted Exchange; needs `organization` (and `imap` to copy mail into it).
    OvhExchange,
    /// Any IMAP server: copy and verify only; needs `imap`.
    Imap,
}

/// A platform: where mail is read from or written to.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(rename = "Platform")]
pub struct RawPlatform {
    /// The platform's kind; it decides which other keys are required.
    #[serde(rename = "type")]
    pub kind: RawPlatformType,
    /// `ovh-mxplan`: the service name (`mxplan-…`). `ovh-exchange`: the service, when it differs
    /// from the organization.
    pub service: Option<String>,
    /// `ovh-exchange`: the organization (`hosted-…`).
    pub organization: Option<String>,
    /// `ovh-mxplan-legacy`: the domain whose historical MX Plan holds the mailboxes.
    pub domain: Option<String>,
    /// The IMAP server. Defaults to `ssl0.ovh.net` for `ovh-mxplan`; required for `imap`.
    pub imap: Option<RawImap>,
}

/// How the IMAP connection is secured.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[schemars(rename = "Tls")]
pub enum RawTls {
    /// TLS from the first byte (port 993 by default).
    Implicit,
    /// STARTTLS on a clear connection (port 143 by default).
    Starttls,
    /// No encryption: passwords in clear text. Needs `allow-insecure: true`.
    None,
}

/// An IMAP server.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(rename = "Imap")]
pub struct RawImap {
    /// Host name of the IMAP server.
    pub host: String,
    /// TCP port; 993 for `tls: implicit`, 143 otherwise.
    #[schemars(range(min = 1))]
    pub port: Option<u16>,
    /// `implicit` (default), `starttls` or `none`.
    pub tls: Option<RawTls>,
    /// Accept `tls: none`. Passwords then cross the network in clear text.
    pub allow_insecure: Option<bool>,
    /// Check the server's certificate (default true); `false` is warned about.
    pub tls_verify: Option<bool>,
    /// Connections to this server at most, all accounts together (default: `apply
    /// --max-connections-per-server`, 8). Where several platforms name one server, the smallest
    /// applies.
    #[schemars(range(min = 2, max = 256))]
    pub max_connections: Option<u16>,
}

/// How a domain is attached to Exchange.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[schemars(rename = "DomainType")]
pub enum RawDomainType {
    /// Exchange is the only mail server of the domain.
    Authoritative,
    /// Old and new platforms coexist while accounts move (the default).
    NonAuthoritative,
}

/// A domain to attach to an Exchange platform.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(rename = "Domain")]
pub struct RawDomain {
    /// The domain name, e.g. `acme.example`.
    pub name: String,
    /// The `ovh-exchange` platform to attach it to.
    pub platform: String,
    /// `non-authoritative` (default) or `authoritative`.
    #[serde(rename = "type")]
    pub kind: Option<RawDomainType>,
}

/// Settings every account gets unless it says otherwise.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(rename = "Defaults")]
pub struct RawDefaults {
    /// What a new MX Plan source mailbox is renamed to before its address moves to Exchange:
    /// `{local}` is the address's local part, `{domain}` its domain. Default `{local}-old`.
    pub provisional_name: Option<String>,
    /// What the IMAP copy takes and where it puts it.
    pub copy: Option<RawCopy>,
    /// The wave of accounts that give none (default 0).
    pub wave: Option<u32>,
}

/// What the IMAP copy takes and where it puts it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(rename = "Copy")]
pub struct RawCopy {
    /// Folder selection and renaming.
    pub folders: Option<RawFolders>,
    /// Messages larger than this are skipped with a reason: bytes, or `35MB`, `20MiB`, `1GB`.
    pub max_message_size: Option<RawSize>,
}

/// A size: a number of bytes, or a number with a unit (`KB`, `MB`, `GB`, `KiB`, `MiB`, `GiB`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Size")]
pub enum RawSize {
    Bytes(u64),
    #[schemars(extend("pattern" = r"^\s*[0-9.]+\s*([kKmMgG]([iI]?[bB])?|[bB])?\s*$"))]
    Text(String),
}

/// Folder selection and renaming for the IMAP copy.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(rename = "Folders")]
pub struct RawFolders {
    /// Source folder → target folder, applied before the automatic special-use mapping.
    pub map: Option<BTreeMap<String, String>>,
    /// Glob patterns of source folders to leave out.
    pub exclude: Option<Vec<String>>,
    /// Glob patterns of source folders to take; empty or absent means all.
    pub include: Option<Vec<String>>,
}

/// An entry of `accounts`: one account, or a CSV file of accounts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "AccountEntry")]
pub enum RawAccountEntry {
    Import(RawImport),
    Account(Box<RawAccount>),
}

/// Accounts from a CSV file, expanded where the entry stands.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(rename = "Import")]
pub struct RawImport {
    /// The CSV file, relative to the plan's folder. Its header names account keys (`address`,
    /// `from`, `to`, `display-name`, `source-login`, `target-login`, `source-password`,
    /// `target-password`, `provisional-name`, `wave`); a secret cell reads `env:NAME`,
    /// `file:PATH` or `command:CMD`; an empty cell means absent.
    pub import: String,
}

/// One mailbox to migrate.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(rename = "Account")]
pub struct RawAccount {
    /// The account's address: its identity in the plan (compared without case).
    pub address: String,
    /// The platform the mail is on now.
    pub from: String,
    /// The platform the mail moves to.
    pub to: String,
    /// The name shown on the Exchange account.
    pub display_name: Option<String>,
    /// IMAP login on the source, when it is not the address.
    pub source_login: Option<String>,
    /// IMAP login on the target, when it is not the address.
    pub target_login: Option<String>,
    /// The source mailbox's password (a reference, never the password itself).
    pub source_password: Option<RawSecret>,
    /// The target mailbox's password (a reference, never the password itself).
    pub target_password: Option<RawSecret>,
    /// This account's rename rule (see `defaults.provisional-name`).
    pub provisional_name: Option<String>,
    /// Pilot users first: wave N+1 starts once every account of wave N is verified.
    pub wave: Option<u32>,
    /// Addresses of accounts that must be verified before this one starts.
    pub after: Option<Vec<String>>,
    /// This account's copy settings, on top of `defaults.copy`.
    pub copy: Option<RawCopy>,
}

/// Where a secret comes from: exactly one of `env`, `file`, `command`. A password written in
/// clear is refused.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(rename = "Secret")]
pub enum RawSecret {
    /// An environment variable's name.
    Env(String),
    /// A file whose content (trailing newline removed) is the secret; relative to the plan.
    File(String),
    /// A command run with `sh -c` whose first line of output is the secret.
    Command(String),
}

/// What happens once accounts are verified.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(rename = "After")]
pub struct RawAfter {
    /// Reset (empty and release) the renamed new MX Plan source once verified. Destructive.
    pub reset_source: Option<bool>,
}

/// The plan's JSON Schema as pretty-printed JSON, ending with a newline.
pub fn generate() -> String {
    let schema = schemars::schema_for!(RawPlan);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::import::CSV_KEYS;
    use crate::plan::validate::keys;
    use serde_json::Value;

    /// The property names a schema allows: its own, or those of its `oneOf`/`anyOf` branches.
    fn properties<'a>(root: &'a Value, schema: &'a Value) -> Vec<&'a str> {
        let schema = match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => &root["$defs"][r.trim_start_matches("#/$defs/")],
            None => schema,
        };
        let mut names: Vec<&str> = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for key in ["oneOf", "anyOf"] {
            for branch in schema
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                names.extend(properties(root, branch));
            }
        }
        names.sort_unstable();
        names.dedup();
        names
    }

    fn sorted<'a>(keys: &[&'a str]) -> Vec<&'a str> {
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn schema_keys_are_the_decoders_keys() {
        let root: Value = serde_json::from_str(&generate()).expect("json");
        let def = |name: &str| {
            root["$defs"]
                .get(name)
                .unwrap_or_else(|| panic!("no $defs/{name}"))
        };
        let cases: [(&str, &Value, &[&str]); 9] = [
            ("top level", &root, keys::TOP),
            ("platform", def("Platform"), keys::PLATFORM),
            ("imap", def("Imap"), keys::IMAP),
            ("domain", def("Domain"), keys::DOMAIN),
            ("defaults", def("Defaults"), keys::DEFAULTS),
            ("copy", def("Copy"), keys::COPY),
            ("folders", def("Folders"), keys::FOLDERS),
            ("account", def("Account"), keys::ACCOUNT),
            ("secret", def("Secret"), keys::SECRET),
        ];
        for (place, schema, expected) in cases {
            assert_eq!(properties(&root, schema), sorted(expected), "{place}");
        }
        assert_eq!(properties(&root, def("Import")), sorted(keys::IMPORT));
        assert_eq!(properties(&root, def("Ovh")), ["endpoint"]);
        assert_eq!(properties(&root, def("After")), ["reset-source"]);
        // A CSV column is an account key.
        let account = properties(&root, def("Account"));
        assert!(CSV_KEYS.iter().all(|k| account.contains(k)));
        // Platform types and TLS modes are the decoder's spellings.
        let types: Vec<&str> = def("PlatformType")["oneOf"]
            .as_array()
            .expect("oneOf")
            .iter()
            .filter_map(|b| b["const"].as_str())
            .collect();
        assert_eq!(types, keys::PLATFORM_TYPES);
        assert_eq!(root["properties"]["version"]["const"], 1);
        assert_eq!(root["additionalProperties"], false);
    }
}
