//! Historical MX Plan: `/email/domain/{domain}`.

use std::fmt;

use super::{Client, Deserialize, LegacyTaskList, OvhError, Serialize, TaskRef, segment};
use crate::plan::secret::Secret;

pub fn domain_path(domain: &str) -> String {
    format!("/email/domain/{}", segment(domain))
}

pub fn account_path(domain: &str, account: &str) -> String {
    format!("{}/account/{}", domain_path(domain), segment(account))
}

/// `…/account/{account}/migrate/{destination}/destinationEmailAddress/{address}`.
pub fn destination_path(domain: &str, account: &str, destination: &str, address: &str) -> String {
    format!(
        "{}/migrate/{}/destinationEmailAddress/{}",
        account_path(domain, account),
        segment(destination),
        segment(address)
    )
}

/// `email.domain.Account`. `account_name` is the local part.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub account_name: String,
    pub domain: String,
    pub email: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub is_blocked: bool,
    #[serde(default)]
    pub size: u64,
}

/// `email.domain.RedirectionGlobal`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Redirection {
    pub id: String,
    pub from: String,
    pub to: String,
}

/// `email.domain.Responder`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Responder {
    pub account: String,
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
}

/// `email.domain.TaskPop`: no status; it vanishes when done.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TaskPop {
    pub id: u64,
    /// `migration`, `changePassword`…
    pub action: String,
    #[serde(default)]
    pub date: Option<String>,
    pub domain: String,
    /// The account name.
    pub name: String,
}

impl TaskPop {
    pub fn task_ref(&self) -> TaskRef {
        TaskRef::Legacy {
            domain: self.domain.clone(),
            list: LegacyTaskList::Account,
            id: self.id.to_string(),
        }
    }
}

/// `email.domain.MigrationServiceType`: the kinds of destination, spelled with spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationServiceType {
    EmailPro,
    HostedExchange,
    PrivateExchange,
    ProviderExchange,
}

impl MigrationServiceType {
    /// The type under which `migrate?type=` lists an Exchange service of this `offer`
    /// (`email.exchange.ServiceOfferEnum`): `dedicated` and `dedicatedCluster` are private,
    /// `provider` is provider, anything else hosted.
    pub fn for_exchange_offer(offer: Option<&str>) -> Self {
        match offer {
            Some("dedicated" | "dedicatedCluster") => MigrationServiceType::PrivateExchange,
            Some("provider") => MigrationServiceType::ProviderExchange,
            _ => MigrationServiceType::HostedExchange,
        }
    }

    pub fn api_name(self) -> &'static str {
        match self {
            MigrationServiceType::EmailPro => "EMAIL PRO",
            MigrationServiceType::HostedExchange => "HOSTED EXCHANGE",
            MigrationServiceType::PrivateExchange => "PRIVATE EXCHANGE",
            MigrationServiceType::ProviderExchange => "PROVIDER EXCHANGE",
        }
    }
}

/// `email.domain.MigrationCheckCodeEnum` (the API's spelling, `UNKNOW` included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MigrationCheckCode {
    AccountEmpty,
    AccountInprogress,
    DelegationExist,
    DomainEmpty,
    FilterExist,
    ForwardExist,
    ForwardLocal,
    MailinglistExist,
    MailinglistInprogress,
    MailproxyBadInfra,
    MailproxyEmpty,
    MailproxyInprogress,
    MailproxyReservation,
    RedirectionInprogress,
    ResponderExist,
    ResponderInprogress,
    #[serde(rename = "UNKNOW")]
    Unknow,
    /// A code this version does not know.
    #[serde(other)]
    Other,
}

impl MigrationCheckCode {
    /// What the code means and what to do, as a sentence (the control panel's texts for
    /// `checkMigrate`).
    pub fn explanation(self) -> &'static str {
        use MigrationCheckCode as C;
        match self {
            C::AccountEmpty
            | C::DomainEmpty
            | C::MailproxyBadInfra
            | C::MailproxyEmpty
            | C::Unknow => {
                "OVHcloud reports an internal error for this account: contact OVHcloud \
                 support with the code below."
            }
            C::AccountInprogress => {
                "Another task is running on this account: wait for it to end, then run \
                 apply again."
            }
            C::DelegationExist => {
                "The account is delegated to other accounts: remove its delegations in the \
                 OVHcloud control panel, then run apply again."
            }
            C::FilterExist => {
                "The account has filters, which are not migrated: note them, remove them in \
                 the control panel, run apply again, and recreate them on Exchange."
            }
            C::ForwardExist => {
                "Redirections from or to this account cannot be migrated: remove them in the \
                 control panel, run apply again, and recreate them on Exchange."
            }
            C::ForwardLocal => {
                "A redirection keeps a local copy on this account, which cannot be migrated: \
                 remove it in the control panel, then run apply again."
            }
            C::MailinglistExist => {
                "A mailing list uses this address, which cannot be migrated: remove the \
                 mailing list in the control panel, then run apply again."
            }
            C::MailinglistInprogress => {
                "A task is running on a mailing list of the domain: wait for it to end, then \
                 run apply again."
            }
            C::MailproxyInprogress | C::MailproxyReservation => {
                "A task is running on OVHcloud's mail proxy for this domain: wait a few \
                 minutes, then run apply again."
            }
            C::RedirectionInprogress => {
                "A task is running on the domain's redirections: wait for it to end, then \
                 run apply again."
            }
            C::ResponderExist => {
                "The account has an auto-reply: remove it in the control panel, run apply \
                 again, and set it again on Exchange."
            }
            C::ResponderInprogress => {
                "A task is running on the domain's auto-replies: wait for it to end, then \
                 run apply again."
            }
            C::Other => {
                "OVHcloud gave a check code this version of mailplan does not know: see the \
                 migration wizard of the control panel, or contact OVHcloud support."
            }
        }
    }

    /// The code as the API spells it (what the support of OVH knows it by).
    pub fn api_name(self) -> &'static str {
        use MigrationCheckCode as C;
        match self {
            C::AccountEmpty => "ACCOUNT_EMPTY",
            C::AccountInprogress => "ACCOUNT_INPROGRESS",
            C::DelegationExist => "DELEGATION_EXIST",
            C::DomainEmpty => "DOMAIN_EMPTY",
            C::FilterExist => "FILTER_EXIST",
            C::ForwardExist => "FORWARD_EXIST",
            C::ForwardLocal => "FORWARD_LOCAL",
            C::MailinglistExist => "MAILINGLIST_EXIST",
            C::MailinglistInprogress => "MAILINGLIST_INPROGRESS",
            C::MailproxyBadInfra => "MAILPROXY_BAD_INFRA",
            C::MailproxyEmpty => "MAILPROXY_EMPTY",
            C::MailproxyInprogress => "MAILPROXY_INPROGRESS",
            C::MailproxyReservation => "MAILPROXY_RESERVATION",
            C::RedirectionInprogress => "REDIRECTION_INPROGRESS",
            C::ResponderExist => "RESPONDER_EXIST",
            C::ResponderInprogress => "RESPONDER_INPROGRESS",
            C::Unknow => "UNKNOW",
            C::Other => "unknown to mailplan",
        }
    }

    /// Whether waiting and checking again can clear it (the `*_INPROGRESS` and
    /// `*_RESERVATION` codes, as the control panel says "wait a few minutes").
    pub fn is_retryable(self) -> bool {
        use MigrationCheckCode as C;
        matches!(
            self,
            C::AccountInprogress
                | C::MailinglistInprogress
                | C::MailproxyInprogress
                | C::MailproxyReservation
                | C::RedirectionInprogress
                | C::ResponderInprogress
        )
    }
}

/// `email.domain.MigrationCheckResultStruct`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MigrationCheckResult {
    pub code: MigrationCheckCode,
    #[serde(default)]
    pub details: Option<String>,
}

impl fmt::Display for MigrationCheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The sentence ends with its period: the code (and what it is about) follows it.
        let sentence = self.code.explanation().trim_end_matches('.');
        write!(f, "{sentence} (OVH code {}", self.code.api_name())?;
        if let Some(d) = self.details.as_deref().filter(|d| !d.is_empty()) {
            write!(f, ", about {d}")?;
        }
        write!(f, ").")
    }
}

/// `email.domain.MigrationCheckStruct`. The call answers 200 even when migration is
/// impossible: only an empty `error` list means go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct MigrationCheck {
    #[serde(default)]
    pub alias: Option<Vec<String>>,
    #[serde(default)]
    pub filter: Option<Vec<String>>,
    #[serde(default)]
    pub forward: Option<Vec<String>>,
    #[serde(default)]
    pub error: Option<Vec<MigrationCheckResult>>,
    #[serde(default)]
    pub warning: Option<Vec<MigrationCheckResult>>,
}

impl MigrationCheck {
    pub fn errors(&self) -> &[MigrationCheckResult] {
        self.error.as_deref().unwrap_or_default()
    }

    /// The migration may go ahead.
    pub fn is_clear(&self) -> bool {
        self.errors().is_empty()
    }

    /// Every error clears by waiting (checking again later can succeed).
    pub fn is_retryable(&self) -> bool {
        !self.is_clear() && self.errors().iter().all(|e| e.code.is_retryable())
    }

    /// One sentence per error, for a message.
    pub fn describe(&self) -> String {
        self.errors()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

pub async fn list_accounts(
    client: &Client,
    activity: &str,
    domain: &str,
) -> Result<Vec<String>, OvhError> {
    let path = format!("{}/account", domain_path(domain));
    client.get(activity, &path, &[]).await
}

pub async fn get_account(
    client: &Client,
    activity: &str,
    domain: &str,
    account: &str,
) -> Result<Account, OvhError> {
    client
        .get(activity, &account_path(domain, account), &[])
        .await
}

/// Redirection ids, filtered by full `from` and/or `to` addresses.
pub async fn redirections(
    client: &Client,
    activity: &str,
    domain: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Vec<String>, OvhError> {
    let path = format!("{}/redirection", domain_path(domain));
    let mut query = Vec::new();
    if let Some(from) = from {
        query.push(("from", from));
    }
    if let Some(to) = to {
        query.push(("to", to));
    }
    client.get(activity, &path, &query).await
}

pub async fn get_redirection(
    client: &Client,
    activity: &str,
    domain: &str,
    id: &str,
) -> Result<Redirection, OvhError> {
    let path = format!("{}/redirection/{}", domain_path(domain), segment(id));
    client.get(activity, &path, &[]).await
}

/// Account names with a responder, optionally only `account`.
pub async fn responders(
    client: &Client,
    activity: &str,
    domain: &str,
    account: Option<&str>,
) -> Result<Vec<String>, OvhError> {
    let path = format!("{}/responder", domain_path(domain));
    match account {
        Some(a) => client.get(activity, &path, &[("account", a)]).await,
        None => client.get(activity, &path, &[]).await,
    }
}

pub async fn get_responder(
    client: &Client,
    activity: &str,
    domain: &str,
    account: &str,
) -> Result<Responder, OvhError> {
    let path = format!("{}/responder/{}", domain_path(domain), segment(account));
    client.get(activity, &path, &[]).await
}

/// Destination services of one kind for migrating `account` (`migrate?type=`).
pub async fn migration_destinations(
    client: &Client,
    activity: &str,
    domain: &str,
    account: &str,
    kind: MigrationServiceType,
) -> Result<Vec<String>, OvhError> {
    let path = format!("{}/migrate", account_path(domain, account));
    client
        .get(activity, &path, &[("type", kind.api_name())])
        .await
}

/// The free `@configureme.me` addresses of `destination` the account can migrate to.
pub async fn destination_addresses(
    client: &Client,
    activity: &str,
    domain: &str,
    account: &str,
    destination: &str,
) -> Result<Vec<String>, OvhError> {
    let path = format!(
        "{}/migrate/{}/destinationEmailAddress",
        account_path(domain, account),
        segment(destination)
    );
    client.get(activity, &path, &[]).await
}

/// `checkMigrate`: the errors are in the answer, not in the status.
pub async fn check_migrate(
    client: &Client,
    activity: &str,
    domain: &str,
    account: &str,
    destination: &str,
    address: &str,
) -> Result<MigrationCheck, OvhError> {
    let path = format!(
        "{}/checkMigrate",
        destination_path(domain, account, destination, address)
    );
    client.get(activity, &path, &[]).await
}

/// Start OVH's migration of `account` into the placeholder `address` of `destination`,
/// with the source account's password.
pub async fn migrate(
    client: &Client,
    activity: &str,
    domain: &str,
    account: &str,
    destination: &str,
    address: &str,
    password: &Secret,
) -> Result<TaskPop, OvhError> {
    #[derive(Serialize)]
    struct Body<'a> {
        password: &'a str,
    }
    let path = format!(
        "{}/migrate",
        destination_path(domain, account, destination, address)
    );
    client
        .post(
            activity,
            &path,
            &Body {
                password: password.expose(),
            },
        )
        .await
}

/// Pending account tasks of `account` (`task/account?name=`).
pub async fn account_tasks(
    client: &Client,
    activity: &str,
    domain: &str,
    account: &str,
) -> Result<Vec<u64>, OvhError> {
    let path = format!("{}/task/account", domain_path(domain));
    client.get(activity, &path, &[("name", account)]).await
}
