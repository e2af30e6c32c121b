//! The scenario a [`crate::Simulator`] starts from: credentials, legacy e-mail domains, new MX
//! Plan services, Exchange services, DNS records, task timing and an optional mail backend.
//!
//! Entry points: [`Fixture::from_yaml`] (YAML; JSON is YAML too), [`Fixture::load`] (a file) and
//! the plain structs, which tests build directly. Unknown keys are refused so that a typo in a
//! scenario is an error, not a silently ignored setting. `ovh-sim/README.md` documents the format
//! with a full example.
//!
//! Where a setting models what OVH does, [V] marks behaviour verified in OVH's documentation,
//! schemas or clients, and [I] an inference the simulator chose (a setting lets a test try the
//! other reading).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A whole scenario. Only `auth` is required.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// Application key and secret, consumer keys and their access rules, clock settings.
    pub auth: AuthFixture,
    /// How long each task stays in each state.
    #[serde(default)]
    pub timing: Timing,
    /// Historical MX Plan: `/email/domain/{domain}`.
    #[serde(default)]
    pub legacy_domains: Vec<LegacyDomainFixture>,
    /// New MX Plan: `/email/mxplan/{service}`.
    #[serde(default)]
    pub mxplan_services: Vec<MxPlanFixture>,
    /// Hosted Exchange: `/email/exchange/{organization}/service/{service}`.
    #[serde(default)]
    pub exchange_services: Vec<ExchangeFixture>,
    /// Domains attached to some other customer's Exchange service: adding one to a service here
    /// fails with "UPN suffix … is already used".
    #[serde(default)]
    pub foreign_domains: Vec<String>,
    /// The DNS records of each domain, from which the Exchange domain diagnostics are computed.
    /// A domain not listed has no records (every check is invalid).
    #[serde(default)]
    pub dns: BTreeMap<String, DnsFixture>,
    /// Where the mailboxes live (a Dovecot passwd-file and maildir root); none: API only.
    #[serde(default)]
    pub mail: Option<MailFixture>,
    /// How a historical MX Plan migration (`POST …/migrate`) lands on Exchange.
    #[serde(default)]
    pub legacy_migration: LegacyMigrationFixture,
}

/// What OVH's own migration does to a historical MX Plan mailbox.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyMigrationFixture {
    /// The default folders arrive under their Exchange names: `Sent` → `Sent Items`, `Trash`
    /// → `Deleted Items`, `Junk`/`Spam` → `Junk Email` (as seen on real migrations, issue 14;
    /// OVH does not document the layout).
    #[serde(default = "yes")]
    pub exchange_folder_names: bool,
    /// [I] Every other folder arrives under the Inbox (`Archive` → `INBOX/Archive`): "possibly",
    /// says the field report; off by default.
    #[serde(default)]
    pub others_under_inbox: bool,
    /// How long the migrated source account stays listed (its mail already moved), in
    /// milliseconds; absent: for the simulator's whole life. The UI says "deleted within 15
    /// days" [V]; what the account looks like meanwhile is [I] (the same object).
    #[serde(default)]
    pub source_kept_ms: Option<u64>,
}

impl Default for LegacyMigrationFixture {
    fn default() -> Self {
        LegacyMigrationFixture {
            exchange_folder_names: true,
            others_under_inbox: false,
            source_kept_ms: None,
        }
    }
}

/// The application and its consumer keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFixture {
    /// The `X-Ovh-Application` value every call must carry.
    pub application_key: String,
    /// The secret that signs the calls.
    pub application_secret: String,
    /// Consumer keys known from the start.
    #[serde(default)]
    pub consumer_keys: Vec<ConsumerKeyFixture>,
    /// Largest accepted difference between `X-Ovh-Timestamp` and the server clock, in seconds.
    #[serde(default = "default_max_skew")]
    pub max_skew_secs: u64,
    /// The server clock is the local clock plus this many seconds (`/auth/time` shows it), so a
    /// client that does not correct its timestamps with the server delta is caught.
    #[serde(default)]
    pub clock_offset_secs: i64,
    /// Consumer keys made by `POST /auth/credential` are validated at once (no visit to the
    /// validation URL needed).
    #[serde(default)]
    pub auto_validate: bool,
    /// Authenticated calls a consumer key may make in any 60 seconds; more answer 429 with a
    /// `Retry-After`. OVH's fair use is "60 req/min by consumer key" (a maintainer's words on
    /// the official client's tracker; the exact window and answer are [I]). 0: no limit.
    #[serde(default = "default_requests_per_minute")]
    pub requests_per_minute: u32,
}

fn default_requests_per_minute() -> u32 {
    60
}

fn default_max_skew() -> u64 {
    300
}

/// One consumer key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerKeyFixture {
    /// The key itself (`X-Ovh-Consumer`).
    pub key: String,
    /// Only `validated` keys may call the API.
    #[serde(default = "validated")]
    pub state: CredentialState,
    /// What the key may call.
    pub rules: Vec<AccessRule>,
}

fn validated() -> CredentialState {
    CredentialState::Validated
}

/// `auth.CredentialStateEnum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CredentialState {
    /// Expired: refused.
    Expired,
    /// Made but not yet validated by its owner: refused.
    PendingValidation,
    /// Refused by its owner.
    Refused,
    /// Usable.
    Validated,
}

/// `auth.AccessRule`: an HTTP method and a path pattern where `*` matches anything (`/` too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: String,
    /// E.g. `/email/*` or `/email/exchange/org/service/svc/account`.
    pub path: String,
}

/// How long a task stays `todo`, then `doing`, before it is `done` (its effects applied).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// Milliseconds in `todo`.
    #[serde(default = "default_todo_ms")]
    pub todo_ms: u64,
    /// Milliseconds in `doing`.
    #[serde(default = "default_doing_ms")]
    pub doing_ms: u64,
    /// [I] Milliseconds an Exchange or MX Plan task stays readable by id once it ended (OVH
    /// drops finished tasks); absent: for good.
    #[serde(default)]
    pub done_kept_ms: Option<u64>,
}

fn default_todo_ms() -> u64 {
    20
}
fn default_doing_ms() -> u64 {
    30
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            todo_ms: default_todo_ms(),
            doing_ms: default_doing_ms(),
            done_kept_ms: None,
        }
    }
}

/// A historical MX Plan domain (`/email/domain/{domain}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyDomainFixture {
    /// The domain, e.g. `example.com`.
    pub domain: String,
    /// `migratedMXPlanServiceName`: the new MX Plan service this domain was moved to, if any.
    #[serde(default)]
    pub migrated_mxplan_service_name: Option<String>,
    /// Mailboxes, keyed by local part.
    #[serde(default)]
    pub accounts: Vec<LegacyAccountFixture>,
    /// Redirections (`from` and `to` are full addresses).
    #[serde(default)]
    pub redirections: Vec<RedirectionFixture>,
    /// Auto-replies.
    #[serde(default)]
    pub responders: Vec<ResponderFixture>,
}

/// A legacy mailbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyAccountFixture {
    /// The local part (`accountName`).
    pub name: String,
    /// Its password: `POST …/migrate` must be given it, and the mail backend uses it.
    pub password: String,
    /// Quota in bytes.
    #[serde(default = "default_legacy_size")]
    pub size: u64,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Filter names (`checkMigrate` then reports `FILTER_EXIST` as a warning).
    #[serde(default)]
    pub filters: Vec<String>,
    /// Extra `checkMigrate` error codes to report (e.g. `MAILPROXY_RESERVATION`), for tests of
    /// the rarer refusals.
    #[serde(default)]
    pub check_errors: Vec<String>,
    /// Messages to seed in the mail backend: folder name → how many.
    #[serde(default)]
    pub messages: BTreeMap<String, u32>,
}

fn default_legacy_size() -> u64 {
    5_000_000_000
}

/// A legacy redirection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectionFixture {
    /// Full address redirected.
    pub from: String,
    /// Full address it goes to.
    pub to: String,
}

/// A legacy auto-reply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponderFixture {
    /// The local part it answers for.
    pub account: String,
    /// The reply text.
    #[serde(default)]
    pub content: String,
}

/// Password rules of a service (the fields of the service object).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordPolicy {
    /// `minPasswordLength`.
    #[serde(default = "default_min_length")]
    pub min_length: u32,
    /// `complexityEnabled`: three of upper case, lower case, digit, other; no whitespace.
    #[serde(default = "yes")]
    pub complexity: bool,
}

fn default_min_length() -> u32 {
    8
}
fn yes() -> bool {
    true
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_length: default_min_length(),
            complexity: true,
        }
    }
}

/// A new MX Plan service (`/email/mxplan/{service}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MxPlanFixture {
    /// The service name, e.g. `mxplan-ab12345-1`.
    pub service: String,
    /// Its domains.
    #[serde(default)]
    pub domains: Vec<DomainFixture>,
    /// Its configured accounts.
    #[serde(default)]
    pub accounts: Vec<AccountFixture>,
    /// How many free `@configureme.me` slots it has besides.
    #[serde(default)]
    pub placeholders: u32,
    /// `hostname` of the service.
    #[serde(default = "default_mxplan_hostname")]
    pub hostname: String,
    /// Password rules.
    #[serde(default)]
    pub password_policy: PasswordPolicy,
}

fn default_mxplan_hostname() -> String {
    "ssl0.ovh.net".to_owned()
}

/// A Hosted Exchange service (`/email/exchange/{organization}/service/{service}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeFixture {
    /// The organisation name, e.g. `hosted-ab12345-1`.
    pub organization: String,
    /// The service name; the organisation name when absent (as on hosted offers).
    #[serde(default)]
    pub service: Option<String>,
    /// `hosted`, `dedicated`, `dedicatedCluster` or `provider` (decides which legacy
    /// `migrate?type=` lists it).
    #[serde(default = "default_offer")]
    pub offer: String,
    /// `hostname` of the service (the IMAP server).
    #[serde(default = "default_exchange_hostname")]
    pub hostname: String,
    /// Attached domains.
    #[serde(default)]
    pub domains: Vec<DomainFixture>,
    /// Configured accounts.
    #[serde(default)]
    pub accounts: Vec<AccountFixture>,
    /// How many free `@configureme.me` accounts it has besides.
    #[serde(default)]
    pub placeholders: u32,
    /// Password rules.
    #[serde(default)]
    pub password_policy: PasswordPolicy,
}

fn default_offer() -> String {
    "hosted".to_owned()
}
fn default_exchange_hostname() -> String {
    "ex5.mail.ovh.net".to_owned()
}

/// A domain attached to an MX Plan or Exchange service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainFixture {
    /// The domain.
    pub name: String,
    /// `authoritative` or `nonAuthoritative`.
    #[serde(default = "default_domain_type", rename = "type")]
    pub kind: String,
    /// `ok`, `creating`, …
    #[serde(default = "default_state")]
    pub state: String,
    /// `main` (Exchange only).
    #[serde(default)]
    pub main: bool,
}

fn default_domain_type() -> String {
    "authoritative".to_owned()
}
fn default_state() -> String {
    "ok".to_owned()
}

/// A configured account of an MX Plan or Exchange service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountFixture {
    /// Local part.
    pub login: String,
    /// Domain (attached to the service).
    pub domain: String,
    /// Its password (the mail backend uses it); none: unknown, unusable over IMAP.
    #[serde(default)]
    pub password: Option<String>,
    /// `ok`, `suspended`, …
    #[serde(default = "default_state")]
    pub state: String,
    /// `displayName`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// `accountLicense` (Exchange).
    #[serde(default = "default_license")]
    pub license: String,
    /// Messages to seed in the mail backend: folder name → how many.
    #[serde(default)]
    pub messages: BTreeMap<String, u32>,
}

fn default_license() -> String {
    "standard".to_owned()
}

/// A domain's DNS records, as a diagnostic would find them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsFixture {
    /// MX targets, e.g. `mx1.mail.ovh.net`.
    #[serde(default)]
    pub mx: Vec<String>,
    /// SRV records, e.g. `_autodiscover._tcp.example.com. 0 0 443 ex5.mail.ovh.net`.
    #[serde(default)]
    pub srv: Vec<String>,
    /// TXT SPF records, e.g. `v=spf1 include:mx.ovh.com ~all`.
    #[serde(default)]
    pub spf: Vec<String>,
    /// Whether the DNS zone is managed in the same OVH account; when false, an added Exchange
    /// domain shows a `cnameToCheck`.
    #[serde(default = "yes")]
    pub ovh_zone: bool,
    /// The ownership record `<cnameToCheck>.<domain> CNAME ovh.com.` exists (only matters when
    /// `ovh_zone` is false): without it an added domain waits, `creating`, once its task ends.
    #[serde(default)]
    pub cname_proof: bool,
}

/// The mail backend: a Dovecot passwd-file and a maildir root (`maildir:MAIL_ROOT/%u`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailFixture {
    /// The MX Plan side (legacy and new MX Plan accounts).
    pub users_file: PathBuf,
    /// The MX Plan side's maildir root.
    pub mail_root: PathBuf,
    /// The Exchange side, when it is another server; absent: the same files as MX Plan.
    #[serde(default)]
    pub exchange: Option<MailStoreFixture>,
    /// The system user that owns the maildirs (`dovecot` in mailplan's tests); new files are
    /// given to it. Absent: ownership is left as it is.
    #[serde(default)]
    pub owner: Option<String>,
}

/// One passwd-file and maildir root.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailStoreFixture {
    /// The passwd-file.
    pub users_file: PathBuf,
    /// The maildir root.
    pub mail_root: PathBuf,
}

/// A fixture that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The file could not be read.
    #[error("cannot read the fixture {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML (or JSON) is not a fixture.
    #[error("invalid fixture: {0}")]
    Parse(String),
}

impl Fixture {
    /// Parses a fixture from YAML (or JSON).
    pub fn from_yaml(text: &str) -> Result<Fixture, FixtureError> {
        serde_saphyr::from_str(text).map_err(|err| FixtureError::Parse(err.to_string()))
    }

    /// Reads and parses a fixture file.
    pub fn load(path: &Path) -> Result<Fixture, FixtureError> {
        let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Read {
            path: path.to_owned(),
            source,
        })?;
        Fixture::from_yaml(&text)
    }

    /// A fixture with only credentials: application key and secret, and one validated consumer
    /// key allowed everything under `/*`.
    pub fn minimal(application_key: &str, application_secret: &str, consumer_key: &str) -> Self {
        Fixture {
            auth: AuthFixture {
                application_key: application_key.to_owned(),
                application_secret: application_secret.to_owned(),
                consumer_keys: vec![ConsumerKeyFixture {
                    key: consumer_key.to_owned(),
                    state: CredentialState::Validated,
                    rules: ["GET", "POST", "PUT", "DELETE"]
                        .into_iter()
                        .map(|method| AccessRule {
                            method: method.to_owned(),
                            path: "/*".to_owned(),
                        })
                        .collect(),
                }],
                max_skew_secs: default_max_skew(),
                clock_offset_secs: 0,
                auto_validate: false,
                requests_per_minute: default_requests_per_minute(),
            },
            timing: Timing::default(),
            legacy_domains: Vec::new(),
            mxplan_services: Vec::new(),
            exchange_services: Vec::new(),
            foreign_domains: Vec::new(),
            dns: BTreeMap::new(),
            mail: None,
            legacy_migration: LegacyMigrationFixture::default(),
        }
    }
}
