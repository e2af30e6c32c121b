//! The validated plan: what every later stage (graph, report, exec) consumes.
//!
//! Only [`crate::plan::validate`] builds these values, and only from a plan that produced no
//! error, so the invariants below hold everywhere else:
//! - every account's `from`/`to` names a platform of the plan, and the pair is a supported
//!   [`Flow`];
//! - addresses are lower-cased, syntactically valid and unique; provisional addresses collide with
//!   no other address;
//! - every account whose target is an Exchange platform has its domain attached to it in
//!   [`Plan::domains`];
//! - `after:` names existing accounts and has no cycle, and never points to a later wave.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::secret::SecretRef;
use super::source::Origin;

/// A validated migration plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The plan's name (`name:`), or the file stem when absent. Names the state store later.
    pub name: String,
    /// Where the plan file is; imports and `file:` secrets are relative to its folder.
    pub path: PathBuf,
    pub ovh: Option<OvhSettings>,
    /// Platforms by name, in name order.
    pub platforms: BTreeMap<String, Platform>,
    /// Domains to attach to destination platforms, in plan order.
    pub domains: Vec<DomainAttachment>,
    /// Accounts in plan order (imports expanded where they stand).
    pub accounts: Vec<Account>,
    pub after: AfterOptions,
}

/// `ovh:` settings. Credentials are never part of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct OvhSettings {
    /// `ovh-eu`, `ovh-ca`, `ovh-us` or a base URL.
    pub endpoint: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Platform {
    pub name: String,
    pub kind: PlatformKind,
    /// The IMAP server mail is read from or written to; `None` only for platforms that never
    /// take part in an IMAP copy (a historical MX Plan migrated by OVH's own `migrate` call).
    pub imap: Option<ImapServer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum PlatformKind {
    /// New MX Plan offer, `/email/mxplan/{service}`.
    OvhMxplan { service: String },
    /// Historical MX Plan, `/email/domain/{domain}`.
    OvhMxplanLegacy { domain: String },
    /// Hosted Exchange, `/email/exchange/{organization}/service/{service}`.
    OvhExchange {
        organization: String,
        service: String,
    },
    /// Any IMAP server: copy and verify only.
    Imap,
}

impl PlatformKind {
    /// The `type:` spelling of this kind.
    pub fn type_name(&self) -> &'static str {
        match self {
            PlatformKind::OvhMxplan { .. } => "ovh-mxplan",
            PlatformKind::OvhMxplanLegacy { .. } => "ovh-mxplan-legacy",
            PlatformKind::OvhExchange { .. } => "ovh-exchange",
            PlatformKind::Imap => "imap",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImapServer {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// Certificate checking; only `tls-verify: false` written in the plan turns it off.
    pub tls_verify: bool,
    /// Connections to this server at most, all accounts together (`max-connections`); `None`:
    /// the command line's default.
    pub max_connections: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    Implicit,
    Starttls,
    /// Clear text; only accepted with `allow-insecure: true`.
    None,
}

impl TlsMode {
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::Implicit => 993,
            TlsMode::Starttls | TlsMode::None => 143,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DomainType {
    Authoritative,
    NonAuthoritative,
}

impl DomainType {
    /// The OVH API's spelling.
    pub fn api_name(self) -> &'static str {
        match self {
            DomainType::Authoritative => "authoritative",
            DomainType::NonAuthoritative => "nonAuthoritative",
        }
    }
}

/// A domain to attach to a destination platform before its accounts are configured.
#[derive(Debug, Clone, Serialize)]
pub struct DomainAttachment {
    pub name: String,
    pub platform: String,
    pub domain_type: DomainType,
}

/// How an account moves; decided by the kinds of its source and target platforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flow {
    /// New MX Plan → Exchange (the new MX Plan part of `OVHcloud`'s migration guide): rename,
    /// configure, copy over IMAP, verify.
    MxplanToExchange,
    /// Historical MX Plan → Exchange (the historical MX Plan part of `OVHcloud`'s migration
    /// guide): preflight, OVH's `migrate`, verify.
    LegacyToExchange,
    /// Any IMAP server → Exchange: configure a placeholder account, copy, verify.
    ImapToExchange,
    /// Any IMAP server → any IMAP server: copy and verify.
    ImapToImap,
}

impl Flow {
    pub fn name(self) -> &'static str {
        match self {
            Flow::MxplanToExchange => "mxplan-to-exchange",
            Flow::LegacyToExchange => "legacy-to-exchange",
            Flow::ImapToExchange => "imap-to-exchange",
            Flow::ImapToImap => "imap-to-imap",
        }
    }

    /// Whether the target side needs a free `@configureme.me` Exchange account.
    pub fn needs_placeholder(self) -> bool {
        matches!(
            self,
            Flow::MxplanToExchange | Flow::LegacyToExchange | Flow::ImapToExchange
        )
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One mailbox to migrate.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    /// The account's identity in the plan: its address, lower-cased.
    pub address: String,
    pub from: String,
    pub to: String,
    pub flow: Flow,
    pub display_name: Option<String>,
    /// IMAP login on the source; defaults to the address the mailbox has at copy time.
    pub source_login: Option<String>,
    pub target_login: Option<String>,
    pub source_password: Option<SecretRef>,
    pub target_password: Option<SecretRef>,
    /// The address the source mailbox is renamed to (new MX Plan only).
    pub provisional_address: Option<String>,
    /// Pilot users first: wave `n + 1` starts when every account of wave `n` is verified.
    pub wave: u32,
    /// Accounts that must be verified before this one starts.
    pub after: Vec<String>,
    pub copy: CopyOptions,
    /// Where the account was written (plan file or CSV row), for diagnostics at run time.
    #[serde(skip)]
    pub origin: Origin,
    /// Where each secret reference was written, for diagnostics about resolving it.
    #[serde(skip)]
    pub secret_origins: SecretOrigins,
}

/// Where an account's secret references were written (the YAML value or the CSV cell).
#[derive(Debug, Clone, Default)]
pub struct SecretOrigins {
    pub source_password: Option<Origin>,
    pub target_password: Option<Origin>,
}

impl Account {
    /// The local part of the address.
    pub fn local_part(&self) -> &str {
        self.address.split_once('@').map_or("", |(l, _)| l)
    }

    /// The domain of the address.
    pub fn domain(&self) -> &str {
        self.address.split_once('@').map_or("", |(_, d)| d)
    }

    /// The address the source mailbox is read from during the copy.
    pub fn copy_source_address(&self) -> &str {
        self.provisional_address.as_deref().unwrap_or(&self.address)
    }
}

/// What the IMAP copy takes and where it puts it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopyOptions {
    /// Source folder → target folder, applied before the automatic special-use mapping.
    pub folder_map: BTreeMap<String, String>,
    /// Glob patterns of source folders to leave out.
    pub exclude: Vec<String>,
    /// Glob patterns of source folders to take; empty means all.
    pub include: Vec<String>,
    /// Messages larger than this are skipped with a reason.
    pub max_message_size: Option<u64>,
}

/// `after:` options: what happens once accounts are verified.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct AfterOptions {
    /// Reset (empty and release) the renamed new-MX-Plan source once verified. Destructive.
    pub reset_source: bool,
}

impl Plan {
    /// Whether the account's source is reset once it is verified (`after.reset-source`, for the
    /// new MX Plan flow: the only one with a renamed source to release).
    pub fn resets_source(&self, account: &Account) -> bool {
        self.after.reset_source && account.flow == Flow::MxplanToExchange
    }

    /// Keep only the accounts named in `only` (all when empty) and not in `exclude`. `after:`
    /// entries pointing outside the selection are dropped: those accounts are not part of this
    /// run. The shared steps follow the selection: a domain none of whose selected accounts
    /// goes to its platform is dropped too, so it is neither attached nor checked.
    ///
    /// An address matches without regard to case, domain and local part alike ([`same_address`]).
    pub fn select(&mut self, only: &[String], exclude: &[String]) {
        if only.is_empty() && exclude.is_empty() {
            return;
        }
        let named = |list: &[String], address: &str| list.iter().any(|x| same_address(x, address));
        self.accounts.retain(|a| {
            (only.is_empty() || named(only, &a.address)) && !named(exclude, &a.address)
        });
        let kept: std::collections::HashSet<String> =
            self.accounts.iter().map(|a| a.address.clone()).collect();
        for a in &mut self.accounts {
            a.after.retain(|x| kept.contains(x));
        }
        let accounts = &self.accounts;
        self.domains.retain(|d| {
            accounts
                .iter()
                .any(|a| a.domain() == d.name && a.to == d.platform)
        });
    }
}

/// Whether `selector` (from `--only`/`--exclude`) names `address`. The domain part is compared
/// without regard to case (RFC 5321 §2.4). So is the local part, although RFC 5321 lets a server
/// tell `John` from `john`: the plan's identity of an account is its lower-cased address (two
/// accounts that differ only by case are one duplicate), and every server mailplan migrates
/// between folds the local part (OVH MX Plan, Exchange, Dovecot's usual configuration).
pub fn same_address(selector: &str, address: &str) -> bool {
    selector.trim().to_lowercase() == address.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::load;
    use crate::plan::source::SourceFile;
    use std::path::Path;

    fn plan() -> Plan {
        let text = "version: 1
platforms:
  old: { type: ovh-mxplan, service: mxplan-1 }
  ex: { type: ovh-exchange, organization: hosted-1, imap: { host: ex5.mail.ovh.net } }
domains:
  - { name: acme.example, platform: ex }
  - { name: beta.example, platform: ex }
accounts:
  - { address: john@acme.example, from: old, to: ex,
      source-password: { env: OLD }, target-password: { env: NEW } }
  - { address: jane@acme.example, from: old, to: ex, after: [john@acme.example],
      source-password: { env: OLD }, target-password: { env: NEW } }
  - { address: bob@beta.example, from: old, to: ex,
      source-password: { env: OLD }, target-password: { env: NEW } }
";
        let (plan, diags) = load(&SourceFile::new("p.yaml", text), Path::new("p.yaml"));
        plan.unwrap_or_else(|| panic!("{:?}", diags.items))
    }

    fn domains(p: &Plan) -> Vec<&str> {
        p.domains.iter().map(|d| d.name.as_str()).collect()
    }

    #[test]
    fn shared_steps_follow_the_selected_accounts() {
        let mut p = plan();
        p.select(&["Jane@ACME.Example".to_owned()], &[]);
        let kept: Vec<&str> = p.accounts.iter().map(|a| a.address.as_str()).collect();
        assert_eq!(kept, ["jane@acme.example"]);
        assert_eq!(
            domains(&p),
            ["acme.example"],
            "beta.example is not attached"
        );
        assert!(p.accounts[0].after.is_empty());

        let mut p = plan();
        p.select(&[], &["bob@BETA.example".to_owned()]);
        assert_eq!(domains(&p), ["acme.example"]);

        let mut p = plan();
        p.select(&[], &[]);
        assert_eq!(domains(&p), ["acme.example", "beta.example"]);
    }
}
