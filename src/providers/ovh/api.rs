//! The typed calls the plan's steps make, one small async fn each, with serde models taken from
//! the API's schemas (copies in `ovh-sim/tests/schemas/`). Models keep the fields mailplan reads;
//! unknown fields are ignored and missing optional ones default, so a newer API does not break
//! them.
//!
//! Modules: [`exchange`] (Hosted Exchange: accounts, `@configureme.me` placeholders, password,
//! service policy, domains and their DNS diagnostics), [`mxplan`] (new MX Plan: account, rename,
//! reset), [`legacy`] (historical MX Plan: accounts, redirections, responders, the `migrate`
//! tree and `checkMigrate`), [`auth`] (`/auth/credential` and the access rules mailplan needs).
//!
//! Every fn takes the caller's `activity` ("configuring john@acme.fr"), which every error
//! carries. Paths are built by the `*_path` fns so that a test can check each against
//! [`auth::ACCESS_RULES`].

use serde::{Deserialize, Serialize};

use super::client::{Client, segment};
use super::error::OvhError;
use super::tasks::{LegacyTaskList, Task, TaskRef};

/// The placeholder domain of unconfigured Exchange (and new MX Plan) accounts.
pub const PLACEHOLDER_DOMAIN: &str = "configureme.me";

/// Whether an address is a `@configureme.me` placeholder (case-insensitive, as the manager).
pub fn is_placeholder_address(address: &str) -> bool {
    address
        .rsplit_once('@')
        .is_some_and(|(_, d)| d.eq_ignore_ascii_case(PLACEHOLDER_DOMAIN))
}

/// `ObjectStateEnum` of Exchange and Email Pro / new MX Plan objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ObjectState {
    Creating,
    Deleting,
    InternalMigration,
    Ok,
    Reopening,
    Suspended,
    Suspending,
    #[serde(other)]
    Unknown,
}

/// Hosted Exchange: `/email/exchange/{organization}/service/{service}`.
pub mod exchange {
    use super::{
        Client, Deserialize, ObjectState, OvhError, PLACEHOLDER_DOMAIN, Serialize, Task, TaskRef,
        is_placeholder_address, segment,
    };
    use crate::plan::model::DomainType;
    use crate::plan::secret::Secret;

    /// One Exchange service; for hosted offers the organization and the service have the same
    /// name.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Service {
        pub organization: String,
        pub service: String,
    }

    impl Service {
        pub fn path(&self) -> String {
            format!(
                "/email/exchange/{}/service/{}",
                segment(&self.organization),
                segment(&self.service)
            )
        }

        pub fn account_path(&self, address: &str) -> String {
            format!("{}/account/{}", self.path(), segment(address))
        }

        pub fn domain_path(&self, name: &str) -> String {
            format!("{}/domain/{}", self.path(), segment(name))
        }

        /// The task of this service with `id`.
        pub fn task(&self, id: u64) -> TaskRef {
            TaskRef::Exchange {
                organization: self.organization.clone(),
                service: self.service.clone(),
                id,
            }
        }
    }

    /// `email.exchange.Account` (the fields mailplan reads).
    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Account {
        pub primary_email_address: String,
        pub login: String,
        pub domain: String,
        #[serde(default)]
        pub display_name: Option<String>,
        #[serde(default)]
        pub first_name: Option<String>,
        #[serde(default)]
        pub last_name: Option<String>,
        #[serde(default)]
        pub configured: bool,
        pub state: ObjectState,
        #[serde(default)]
        pub task_pending_id: Option<u64>,
        #[serde(default)]
        pub id: Option<u64>,
        #[serde(default)]
        pub account_license: Option<String>,
        #[serde(default, rename = "SAMAccountName")]
        pub sam_account_name: Option<String>,
    }

    impl Account {
        /// A `@configureme.me` placeholder (the manager's test: the domain).
        pub fn is_placeholder(&self) -> bool {
            self.domain.eq_ignore_ascii_case(PLACEHOLDER_DOMAIN)
        }

        /// A placeholder that can be claimed now: state ok, no task pending.
        pub fn is_free_placeholder(&self) -> bool {
            self.is_placeholder()
                && self.state == ObjectState::Ok
                && self.task_pending_id.unwrap_or(0) == 0
        }
    }

    /// The body of the PUT that configures (renames) an account.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct AccountUpdate {
        pub login: String,
        pub domain: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub display_name: Option<String>,
    }

    /// `email.exchange.ExchangeServiceWithIAM` (state and the account password policy).
    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ServiceInfo {
        #[serde(default)]
        pub domain: String,
        #[serde(default)]
        pub offer: Option<String>,
        #[serde(default)]
        pub state: Option<String>,
        #[serde(default)]
        pub hostname: Option<String>,
        #[serde(default)]
        pub display_name: Option<String>,
        #[serde(default)]
        pub complexity_enabled: bool,
        #[serde(default)]
        pub min_password_length: Option<u32>,
        #[serde(default)]
        pub min_password_age: Option<u32>,
        #[serde(default)]
        pub max_password_age: Option<u32>,
        #[serde(default)]
        pub password_history_count: Option<u32>,
        #[serde(default)]
        pub task_pending_id: Option<u64>,
    }

    impl ServiceInfo {
        pub fn password_policy(&self) -> PasswordPolicy {
            PasswordPolicy {
                min_length: self.min_password_length.unwrap_or(0),
                complexity: self.complexity_enabled,
            }
        }
    }

    /// The account password rules of a service (`passwordPolicy`), as the control panel checks
    /// them before sending; the server enforces the Active Directory rules they mirror.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PasswordPolicy {
        pub min_length: u32,
        pub complexity: bool,
    }

    /// The longest password the control panel accepts.
    pub const MAX_PASSWORD_LENGTH: usize = 127;

    impl PasswordPolicy {
        /// What is wrong with `password` for an account `login` named `display_name`; empty when
        /// it is acceptable. The messages never quote the password.
        pub fn violations(
            &self,
            password: &Secret,
            login: &str,
            display_name: Option<&str>,
        ) -> Vec<String> {
            let p = password.expose();
            let mut out = Vec::new();
            let len = p.chars().count();
            if len < self.min_length as usize {
                out.push(format!(
                    "is {len} characters long; the service requires at least {}",
                    self.min_length
                ));
            }
            if len > MAX_PASSWORD_LENGTH {
                out.push(format!(
                    "is {len} characters long; at most {MAX_PASSWORD_LENGTH} are accepted"
                ));
            }
            if !self.complexity {
                return out;
            }
            let categories = [
                p.chars().any(char::is_uppercase),
                p.chars().any(char::is_lowercase),
                p.chars().any(|c| c.is_ascii_digit()),
                p.chars().any(|c| !c.is_alphanumeric()),
            ];
            let count = categories.iter().filter(|c| **c).count();
            if count < 3 {
                out.push(format!(
                    "uses {count} of the 4 kinds of characters (upper case, lower case, digits, \
                     others); the service's complexity rule requires 3"
                ));
            }
            if p.chars().any(char::is_whitespace) {
                out.push("contains a space; the complexity rule forbids it".to_owned());
            }
            let lower = p.to_lowercase();
            if !login.is_empty() && lower.contains(&login.to_lowercase()) {
                out.push("contains the account's login".to_owned());
            }
            // Which word is not said: it is a part of the password too.
            if let Some(name) = display_name
                && name
                    .split([',', '.', '-', '_', '£', ' ', '\t'])
                    .any(|t| t.chars().count() >= 3 && lower.contains(&t.to_lowercase()))
            {
                out.push(
                    "contains a word of 3 characters or more of the display name; the \
                     complexity rule forbids it"
                        .to_owned(),
                );
            }
            out
        }
    }

    /// `email.exchange.Domain`: state and the DNS diagnostics. The booleans are the API's.
    #[allow(clippy::struct_excessive_bools)]
    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Domain {
        pub name: String,
        #[serde(rename = "type")]
        pub domain_type: String,
        pub state: ObjectState,
        #[serde(default)]
        pub task_pending_id: u64,
        #[serde(default)]
        pub cname_to_check: Option<String>,
        #[serde(default)]
        pub domain_validated: bool,
        #[serde(default)]
        pub main: Option<bool>,
        #[serde(default)]
        pub mx_relay: Option<String>,
        #[serde(default)]
        pub mx_is_valid: bool,
        #[serde(default)]
        pub mx_record: Option<Vec<String>>,
        #[serde(default, rename = "expectedMX")]
        pub expected_mx: Vec<String>,
        #[serde(default)]
        pub srv_is_valid: bool,
        #[serde(default)]
        pub srv_record: Option<Vec<String>>,
        #[serde(default, rename = "expectedAutodiscoverSRV")]
        pub expected_autodiscover_srv: String,
        #[serde(default)]
        pub spf_is_valid: bool,
        #[serde(default)]
        pub spf_record: Option<Vec<String>>,
        #[serde(default, rename = "expectedSPF")]
        pub expected_spf: String,
    }

    impl Domain {
        /// Attached and idle.
        pub fn is_ready(&self) -> bool {
            self.state == ObjectState::Ok && self.task_pending_id == 0
        }

        /// The `cnameToCheck` a domain not yet `ok` waits for: its DNS zone is not in the same
        /// OVH account, and the record `<cname>.<domain> CNAME ovh.com.` proves ownership.
        pub fn awaited_cname(&self) -> Option<&str> {
            self.cname_to_check.as_deref().filter(|c| {
                !c.is_empty() && !self.domain_validated && self.state != ObjectState::Ok
            })
        }

        /// What to change in the domain's DNS, one line per problem; empty when MX, SRV and
        /// SPF are valid and ownership is proven.
        pub fn dns_advice(&self) -> Vec<String> {
            let shown = |r: &Option<Vec<String>>| match r.as_deref() {
                None | Some([]) => "none".to_owned(),
                Some(v) => v.join(", "),
            };
            let mut out = Vec::new();
            if let Some(cname) = self.cname_to_check.as_deref().filter(|c| !c.is_empty())
                && !self.domain_validated
            {
                out.push(format!(
                    "prove ownership: create the DNS record `{cname}.{} CNAME ovh.com.`",
                    self.name
                ));
            }
            if !self.mx_is_valid {
                out.push(format!(
                    "MX: found {}; expected {}",
                    shown(&self.mx_record),
                    if self.expected_mx.is_empty() {
                        "the Exchange service's MX".to_owned()
                    } else {
                        self.expected_mx.join(", ")
                    }
                ));
            }
            if !self.srv_is_valid {
                out.push(format!(
                    "SRV _autodiscover._tcp.{}: found {}; expected {}",
                    self.name,
                    shown(&self.srv_record),
                    self.expected_autodiscover_srv
                ));
            }
            if !self.spf_is_valid {
                out.push(format!(
                    "SPF: found {}; expected {}",
                    shown(&self.spf_record),
                    self.expected_spf
                ));
            }
            out
        }
    }

    /// The body of `POST …/domain`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct NewDomain {
        pub name: String,
        #[serde(rename = "type")]
        pub domain_type: &'static str,
        pub configure_mx: bool,
        pub configure_autodiscover: bool,
        pub main: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub mx_relay: Option<String>,
    }

    impl NewDomain {
        /// What the hosted wizard sends; DNS is left to the user (`configureMx: false`), since
        /// the MX must only move when every account is migrated.
        pub fn new(name: &str, domain_type: DomainType) -> Self {
            NewDomain {
                name: name.trim_start_matches("www.").to_ascii_lowercase(),
                domain_type: domain_type.api_name(),
                configure_mx: false,
                configure_autodiscover: false,
                main: false,
                mx_relay: None,
            }
        }
    }

    /// Accounts, optionally filtered by a `primaryEmailAddress` LIKE pattern (`%` wildcard).
    pub async fn list_accounts(
        client: &Client,
        activity: &str,
        service: &Service,
        like: Option<&str>,
    ) -> Result<Vec<String>, OvhError> {
        let path = format!("{}/account", service.path());
        match like {
            Some(pattern) => {
                client
                    .get(activity, &path, &[("primaryEmailAddress", pattern)])
                    .await
            }
            None => client.get(activity, &path, &[]).await,
        }
    }

    pub async fn get_account(
        client: &Client,
        activity: &str,
        service: &Service,
        address: &str,
    ) -> Result<Account, OvhError> {
        client
            .get(activity, &service.account_path(address), &[])
            .await
    }

    /// The `@configureme.me` addresses of the service, sorted (the list is unordered). One
    /// call: whether each can be claimed now is [`Account::is_free_placeholder`] on a fresh
    /// [`get_account`], done by whoever claims it.
    pub async fn placeholder_addresses(
        client: &Client,
        activity: &str,
        service: &Service,
    ) -> Result<Vec<String>, OvhError> {
        let pattern = format!("%@{PLACEHOLDER_DOMAIN}");
        let mut found: Vec<String> = list_accounts(client, activity, service, Some(&pattern))
            .await?
            .into_iter()
            .filter(|a| is_placeholder_address(a))
            .collect();
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// The capacity check: how many placeholders the service has that claiming would take
    /// ([`Account::is_free_placeholder`]: state ok, no task pending; a `suspended` or
    /// `creating` one is not counted), reading them one by one and stopping at `at_most`. The
    /// addresses in `skip` (held by this run already) are not counted.
    pub async fn count_free_placeholders(
        client: &Client,
        activity: &str,
        service: &Service,
        skip: &(dyn Fn(&str) -> bool + Sync),
        at_most: usize,
    ) -> Result<usize, OvhError> {
        let mut free = 0;
        for address in placeholder_addresses(client, activity, service).await? {
            if free >= at_most {
                break;
            }
            if skip(&address) {
                continue;
            }
            match get_account(client, activity, service, &address).await {
                Ok(account) if account.is_free_placeholder() => free += 1,
                Ok(_) => {}
                // Claimed between the listing and the read: not free.
                Err(e) if e.kind == crate::providers::ovh::OvhErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(free)
    }

    /// Configure (rename) an account: `PUT` login, domain, display name. Returns nothing; the
    /// work shows as the account's `taskPendingId`.
    pub async fn configure_account(
        client: &Client,
        activity: &str,
        service: &Service,
        address: &str,
        update: &AccountUpdate,
    ) -> Result<(), OvhError> {
        client
            .put(activity, &service.account_path(address), update)
            .await
    }

    pub async fn change_password(
        client: &Client,
        activity: &str,
        service: &Service,
        address: &str,
        password: &Secret,
    ) -> Result<Task, OvhError> {
        #[derive(Serialize)]
        struct Body<'a> {
            password: &'a str,
        }
        let path = format!("{}/changePassword", service.account_path(address));
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

    /// The service: state and password policy.
    pub async fn get_service(
        client: &Client,
        activity: &str,
        service: &Service,
    ) -> Result<ServiceInfo, OvhError> {
        client.get(activity, &service.path(), &[]).await
    }

    pub async fn list_domains(
        client: &Client,
        activity: &str,
        service: &Service,
    ) -> Result<Vec<String>, OvhError> {
        client
            .get(activity, &format!("{}/domain", service.path()), &[])
            .await
    }

    pub async fn get_domain(
        client: &Client,
        activity: &str,
        service: &Service,
        name: &str,
    ) -> Result<Domain, OvhError> {
        client.get(activity, &service.domain_path(name), &[]).await
    }

    /// Attach a domain. The two refusals the wizard knows get what to do appended to the API's
    /// message.
    pub async fn add_domain(
        client: &Client,
        activity: &str,
        service: &Service,
        domain: &NewDomain,
    ) -> Result<Task, OvhError> {
        let path = format!("{}/domain", service.path());
        client.post(activity, &path, domain).await.map_err(|mut e| {
            if let Some(advice) = add_domain_advice(&e.message) {
                e.message = format!("{}: {advice}", e.message).into();
            }
            e
        })
    }

    /// What to do about an add-domain refusal, from the words of OVH's answer.
    pub fn add_domain_advice(message: &str) -> Option<&'static str> {
        if message.contains("Authoritative domain detected") {
            Some(
                "the domain is authoritative on another OVHcloud e-mail platform; set it to \
                 non-authoritative there and use `type: non-authoritative` in the plan",
            )
        } else if message.trim_start().starts_with("UPN suffix") {
            Some(
                "the domain is already attached to another Exchange or Email Pro service; \
                 detach it there first",
            )
        } else {
            None
        }
    }
}

/// New MX Plan: `/email/mxplan/{service}`.
pub mod mxplan {
    use super::{Client, Deserialize, ObjectState, OvhError, Serialize, Task, TaskRef, segment};

    pub fn service_path(service: &str) -> String {
        format!("/email/mxplan/{}", segment(service))
    }

    pub fn account_path(service: &str, address: &str) -> String {
        format!("{}/account/{}", service_path(service), segment(address))
    }

    /// The task of `service` with `id`.
    pub fn task(service: &str, id: u64) -> TaskRef {
        TaskRef::Mxplan {
            service: service.to_owned(),
            id,
        }
    }

    /// `email.mxplan.Account` (the fields mailplan reads).
    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Account {
        pub primary_email_address: String,
        pub login: String,
        pub domain: String,
        #[serde(default)]
        pub display_name: Option<String>,
        #[serde(default)]
        pub configured: bool,
        pub state: ObjectState,
        #[serde(default)]
        pub task_pending_id: Option<u64>,
        #[serde(default)]
        pub id: Option<u64>,
    }

    /// The body of the PUT that renames an account.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct AccountRename {
        pub login: String,
        pub domain: String,
    }

    pub async fn list_accounts(
        client: &Client,
        activity: &str,
        service: &str,
        like: Option<&str>,
    ) -> Result<Vec<String>, OvhError> {
        let path = format!("{}/account", service_path(service));
        match like {
            Some(pattern) => {
                client
                    .get(activity, &path, &[("primaryEmailAddress", pattern)])
                    .await
            }
            None => client.get(activity, &path, &[]).await,
        }
    }

    pub async fn get_account(
        client: &Client,
        activity: &str,
        service: &str,
        address: &str,
    ) -> Result<Account, OvhError> {
        client
            .get(activity, &account_path(service, address), &[])
            .await
    }

    /// `email.pro.Domain` of a new MX Plan service (the fields mailplan reads).
    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Domain {
        pub name: String,
        /// `authoritative` or `nonAuthoritative`.
        #[serde(rename = "type")]
        pub domain_type: String,
    }

    /// A domain of the service (404 when it is not one of its domains).
    pub async fn get_domain(
        client: &Client,
        activity: &str,
        service: &str,
        name: &str,
    ) -> Result<Domain, OvhError> {
        let path = format!("{}/domain/{}", service_path(service), segment(name));
        client.get(activity, &path, &[]).await
    }

    /// Rename an account (change its primary address) with a PUT; void, the work shows as the
    /// account's `taskPendingId`.
    pub async fn rename_account(
        client: &Client,
        activity: &str,
        service: &str,
        address: &str,
        rename: &AccountRename,
    ) -> Result<(), OvhError> {
        client
            .put(activity, &account_path(service, address), rename)
            .await
    }

    /// "Reset this account": empties it and returns the slot to a placeholder. Destructive.
    pub async fn reset_account(
        client: &Client,
        activity: &str,
        service: &str,
        address: &str,
    ) -> Result<Task, OvhError> {
        client
            .delete(activity, &account_path(service, address))
            .await
    }
}

/// Historical MX Plan: `/email/domain/{domain}`.
pub mod legacy {
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
    pub fn destination_path(
        domain: &str,
        account: &str,
        destination: &str,
        address: &str,
    ) -> String {
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
}

/// `/auth`: consumer keys.
pub mod auth {
    use super::{Client, Deserialize, OvhError, Serialize};
    use crate::plan::secret::Secret;

    /// `auth.AccessRuleRequest`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    pub struct AccessRule {
        pub method: &'static str,
        pub path: &'static str,
    }

    const fn rule(method: &'static str, path: &'static str) -> AccessRule {
        AccessRule { method, path }
    }

    /// Exactly the calls mailplan makes, `*` standing for each variable part. `/auth/time` and
    /// `/auth/credential` need no rule.
    pub const ACCESS_RULES: &[AccessRule] = &[
        // Hosted Exchange.
        rule("GET", "/email/exchange/*/service/*"),
        rule("GET", "/email/exchange/*/service/*/account"),
        rule("GET", "/email/exchange/*/service/*/account/*"),
        rule("PUT", "/email/exchange/*/service/*/account/*"),
        rule(
            "POST",
            "/email/exchange/*/service/*/account/*/changePassword",
        ),
        rule("GET", "/email/exchange/*/service/*/domain"),
        rule("POST", "/email/exchange/*/service/*/domain"),
        rule("GET", "/email/exchange/*/service/*/domain/*"),
        rule("GET", "/email/exchange/*/service/*/task/*"),
        // New MX Plan.
        rule("GET", "/email/mxplan/*/account"),
        rule("GET", "/email/mxplan/*/account/*"),
        rule("PUT", "/email/mxplan/*/account/*"),
        rule("DELETE", "/email/mxplan/*/account/*"),
        rule("GET", "/email/mxplan/*/task/*"),
        // The run's preflight: a domain authoritative on the MX Plan.
        rule("GET", "/email/mxplan/*/domain/*"),
        // Historical MX Plan.
        rule("GET", "/email/domain/*/account"),
        rule("GET", "/email/domain/*/account/*"),
        rule("GET", "/email/domain/*/redirection"),
        rule("GET", "/email/domain/*/redirection/*"),
        rule("GET", "/email/domain/*/responder"),
        rule("GET", "/email/domain/*/responder/*"),
        rule("GET", "/email/domain/*/account/*/migrate"),
        rule(
            "GET",
            "/email/domain/*/account/*/migrate/*/destinationEmailAddress",
        ),
        rule(
            "GET",
            "/email/domain/*/account/*/migrate/*/destinationEmailAddress/*/checkMigrate",
        ),
        rule(
            "POST",
            "/email/domain/*/account/*/migrate/*/destinationEmailAddress/*/migrate",
        ),
        rule("GET", "/email/domain/*/task/account"),
        rule("GET", "/email/domain/*/task/account/*"),
        // The run's preflight: the key's own rules.
        rule("GET", "/auth/currentCredential"),
    ];

    /// The rules the run's preflight reads without requiring them: a key made before they
    /// were asked for still runs (the checks they serve are then skipped).
    pub const OPTIONAL_RULES: &[AccessRule] = &[
        rule("GET", "/auth/currentCredential"),
        rule("GET", "/email/mxplan/*/domain/*"),
    ];

    /// `auth.ApiCredential` (the fields mailplan reads).
    #[derive(Debug, Clone, Deserialize)]
    pub struct CurrentCredential {
        #[serde(default)]
        pub rules: Vec<GrantedRule>,
        #[serde(default)]
        pub status: Option<String>,
    }

    /// `auth.AccessRule` as the API returns it.
    #[derive(Debug, Clone, Deserialize)]
    pub struct GrantedRule {
        pub method: String,
        pub path: String,
    }

    /// `GET /auth/currentCredential`: the consumer key's rules and status.
    pub async fn current_credential(
        client: &Client,
        activity: &str,
    ) -> Result<CurrentCredential, OvhError> {
        client.get(activity, "/auth/currentCredential", &[]).await
    }

    /// Whether a granted rule allows `method path` (`*` matches any run of characters).
    pub fn granted(rules: &[GrantedRule], method: &str, path: &str) -> bool {
        rules
            .iter()
            .any(|r| r.method == method && glob(r.path.as_bytes(), path.as_bytes()))
    }

    /// Whether `rule` allows `method path` (`*` matches any run of characters, as OVH's rules).
    pub fn allows(rule: &AccessRule, method: &str, path: &str) -> bool {
        rule.method == method && glob(rule.path.as_bytes(), path.as_bytes())
    }

    fn glob(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
            Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
        }
    }

    /// `auth.ApiCredentialRequestParams`.
    #[derive(Debug, Clone, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct CredentialRequest {
        pub access_rules: Vec<AccessRule>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub redirection: Option<String>,
    }

    /// `auth.ApiCredentialRequest`: the new consumer key, to validate at `validation_url`.
    #[derive(Debug, Clone)]
    pub struct PendingCredential {
        pub consumer_key: Secret,
        /// `pendingValidation` until the user validates it.
        pub state: String,
        pub validation_url: String,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RawPendingCredential {
        consumer_key: String,
        #[serde(default)]
        state: String,
        validation_url: String,
    }

    /// Ask for a consumer key with `request`'s rules (unauthenticated: only the application key).
    pub async fn request_credential(
        client: &Client,
        activity: &str,
        request: &CredentialRequest,
    ) -> Result<PendingCredential, OvhError> {
        let raw: RawPendingCredential = client
            .post_unauthenticated(activity, "/auth/credential", request)
            .await?;
        Ok(PendingCredential {
            consumer_key: Secret::new(raw.consumer_key),
            state: raw.state,
            validation_url: raw.validation_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::legacy::{MigrationCheck, MigrationCheckCode};
    use super::*;
    use crate::plan::model::DomainType;
    use crate::plan::secret::Secret;

    #[test]
    fn each_exchange_offer_is_listed_under_its_migration_type() {
        use legacy::MigrationServiceType as T;
        for (offer, api) in [
            (Some("hosted"), "HOSTED EXCHANGE"),
            (Some("dedicated"), "PRIVATE EXCHANGE"),
            (Some("dedicatedCluster"), "PRIVATE EXCHANGE"),
            (Some("provider"), "PROVIDER EXCHANGE"),
            (None, "HOSTED EXCHANGE"),
        ] {
            assert_eq!(T::for_exchange_offer(offer).api_name(), api, "{offer:?}");
        }
    }

    #[test]
    fn check_migrate_answers_decode_and_classify() {
        let clear: MigrationCheck = serde_json::from_str(
            r#"{"alias":[],"filter":null,"forward":[],"error":[],"warning":null}"#,
        )
        .expect("decodes");
        assert!(clear.is_clear());
        assert!(!clear.is_retryable());

        let busy: MigrationCheck = serde_json::from_str(
            r#"{"error":[{"code":"ACCOUNT_INPROGRESS","details":null},{"code":"MAILPROXY_RESERVATION"}]}"#,
        )
        .expect("decodes");
        assert!(!busy.is_clear());
        assert!(busy.is_retryable());

        let blocked: MigrationCheck = serde_json::from_str(
            r#"{"forward":["a@b.c"],"error":[{"code":"FORWARD_EXIST","details":"a@b.c"},{"code":"ACCOUNT_INPROGRESS"}]}"#,
        )
        .expect("decodes");
        assert!(
            !blocked.is_retryable(),
            "a redirection does not go away by waiting"
        );
        assert_eq!(
            blocked.describe(),
            "Redirections from or to this account cannot be migrated: remove them in the control \
             panel, run apply again, and recreate them on Exchange (OVH code FORWARD_EXIST, about \
             a@b.c). Another task is running on this account: wait for it to end, then run \
             apply again (OVH code ACCOUNT_INPROGRESS)."
        );

        let odd: MigrationCheck =
            serde_json::from_str(r#"{"error":[{"code":"UNKNOW"},{"code":"NEW_THING"}]}"#)
                .expect("decodes");
        assert_eq!(odd.errors()[0].code, MigrationCheckCode::Unknow);
        assert_eq!(odd.errors()[1].code, MigrationCheckCode::Other);
    }

    #[test]
    fn every_check_code_has_an_explanation_and_only_in_progress_ones_retry() {
        use MigrationCheckCode as C;
        let all = [
            C::AccountEmpty,
            C::AccountInprogress,
            C::DelegationExist,
            C::DomainEmpty,
            C::FilterExist,
            C::ForwardExist,
            C::ForwardLocal,
            C::MailinglistExist,
            C::MailinglistInprogress,
            C::MailproxyBadInfra,
            C::MailproxyEmpty,
            C::MailproxyInprogress,
            C::MailproxyReservation,
            C::RedirectionInprogress,
            C::ResponderExist,
            C::ResponderInprogress,
            C::Unknow,
        ];
        for code in all {
            assert!(!code.explanation().is_empty());
            let name = code.api_name();
            assert_eq!(
                serde_json::from_str::<MigrationCheckCode>(&format!("\"{name}\"")).ok(),
                Some(code),
                "the API's own spelling"
            );
            assert!(code.explanation().ends_with('.'), "a sentence: {name}");
            assert_eq!(
                code.is_retryable(),
                name.ends_with("INPROGRESS") || name.ends_with("RESERVATION"),
                "{name}"
            );
        }
    }

    #[test]
    fn exchange_placeholder_account_decodes() {
        let a: exchange::Account = serde_json::from_str(
            r#"{"primaryEmailAddress":"ab12cd@configureme.me","login":"ab12cd","domain":"configureme.me","displayName":null,"configured":false,"state":"ok","taskPendingId":0,"id":17,"accountLicense":"basic","SAMAccountName":null,"quota":50,"hiddenFromGAL":false}"#,
        )
        .expect("decodes");
        assert!(a.is_placeholder() && a.is_free_placeholder());
        let busy = exchange::Account {
            task_pending_id: Some(4),
            ..a.clone()
        };
        assert!(!busy.is_free_placeholder());
        assert!(is_placeholder_address("X@ConfigureMe.me"));
        assert!(!is_placeholder_address("john@acme.fr"));
    }

    #[test]
    fn configure_and_add_domain_bodies() {
        let body = serde_json::to_string(&exchange::AccountUpdate {
            login: "john.smith".into(),
            domain: "acme.fr".into(),
            display_name: Some("John Smith".into()),
        })
        .expect("serialises");
        assert_eq!(
            body,
            r#"{"login":"john.smith","domain":"acme.fr","displayName":"John Smith"}"#
        );
        let body = serde_json::to_string(&exchange::NewDomain::new(
            "www.Acme.fr",
            DomainType::NonAuthoritative,
        ))
        .expect("serialises");
        assert_eq!(
            body,
            r#"{"name":"acme.fr","type":"nonAuthoritative","configureMx":false,"configureAutodiscover":false,"main":false}"#
        );
    }

    #[test]
    fn add_domain_refusals_get_advice() {
        assert!(
            exchange::add_domain_advice("Authoritative domain detected")
                .is_some_and(|a| a.contains("non-authoritative"))
        );
        assert!(
            exchange::add_domain_advice("UPN suffix acme.fr already exists")
                .is_some_and(|a| a.contains("detach"))
        );
        assert_eq!(exchange::add_domain_advice("Internal error"), None);
    }

    #[test]
    fn domain_dns_advice() {
        let d: exchange::Domain = serde_json::from_str(
            r#"{"name":"acme.fr","type":"authoritative","state":"ok","taskPendingId":0,"cnameToCheck":"ab1cd-check","domainValidated":false,"mxIsValid":false,"mxRecord":["mx1.mail.ovh.net"],"expectedMX":["ex5.mail.ovh.net"],"srvIsValid":true,"srvRecord":[],"expectedAutodiscoverSRV":"0 0 443 ex5.mail.ovh.net","spfIsValid":false,"spfRecord":null,"expectedSPF":"v=spf1 include:mx.ovh.com ~all","dkimDiagnostics":{"state":"disabled"}}"#,
        )
        .expect("decodes");
        assert!(d.is_ready());
        assert_eq!(
            d.dns_advice(),
            vec![
                "prove ownership: create the DNS record `ab1cd-check.acme.fr CNAME ovh.com.`",
                "MX: found mx1.mail.ovh.net; expected ex5.mail.ovh.net",
                "SPF: found none; expected v=spf1 include:mx.ovh.com ~all",
            ]
        );
    }

    #[test]
    fn password_policy() {
        let policy = exchange::PasswordPolicy {
            min_length: 8,
            complexity: true,
        };
        let ok = Secret::new("Zx9!kq2Lm");
        assert!(
            policy
                .violations(&ok, "john.smith", Some("John Smith"))
                .is_empty()
        );
        let short = Secret::new("aB1!");
        let v = policy.violations(&short, "john", None);
        assert_eq!(
            v,
            vec!["is 4 characters long; the service requires at least 8"]
        );
        let weak = Secret::new("smithsmithsmith");
        let v = policy.violations(&weak, "john.smith", Some("John Smith"));
        assert!(v.iter().any(|m| m.contains("1 of the 4 kinds")), "{v:?}");
        assert!(
            v.iter()
                .any(|m| m.contains("a word of 3 characters or more of the display name")),
            "{v:?}"
        );
        // No part of the password is quoted, not even the display name's word it contains.
        assert!(
            v.iter().all(|m| !m.to_lowercase().contains("smith")),
            "a part of the password in {v:?}"
        );
        let relaxed = exchange::PasswordPolicy {
            min_length: 0,
            complexity: false,
        };
        assert!(relaxed.violations(&weak, "x", None).is_empty());
    }

    #[test]
    fn access_rules_cover_every_call_and_every_rule_is_used() {
        let svc = exchange::Service {
            organization: "hosted-ab1".into(),
            service: "hosted-ab1".into(),
        };
        let calls: Vec<(&str, String)> = vec![
            ("GET", svc.path()),
            ("GET", format!("{}/account", svc.path())),
            ("GET", svc.account_path("x@configureme.me")),
            ("PUT", svc.account_path("x@configureme.me")),
            (
                "POST",
                format!("{}/changePassword", svc.account_path("john@acme.fr")),
            ),
            ("GET", format!("{}/domain", svc.path())),
            ("POST", format!("{}/domain", svc.path())),
            ("GET", svc.domain_path("acme.fr")),
            ("GET", svc.task(3).path()),
            (
                "GET",
                format!("{}/account", mxplan::service_path("mxplan-1")),
            ),
            ("GET", mxplan::account_path("mxplan-1", "john@acme.fr")),
            ("PUT", mxplan::account_path("mxplan-1", "john@acme.fr")),
            ("DELETE", mxplan::account_path("mxplan-1", "john01@acme.fr")),
            ("GET", mxplan::task("mxplan-1", 3).path()),
            ("GET", format!("{}/account", legacy::domain_path("acme.fr"))),
            ("GET", legacy::account_path("acme.fr", "john")),
            (
                "GET",
                format!("{}/redirection", legacy::domain_path("acme.fr")),
            ),
            (
                "GET",
                format!("{}/redirection/abc", legacy::domain_path("acme.fr")),
            ),
            (
                "GET",
                format!("{}/responder", legacy::domain_path("acme.fr")),
            ),
            (
                "GET",
                format!("{}/responder/john", legacy::domain_path("acme.fr")),
            ),
            (
                "GET",
                format!("{}/migrate", legacy::account_path("acme.fr", "john")),
            ),
            (
                "GET",
                format!(
                    "{}/migrate/hosted-ab1/destinationEmailAddress",
                    legacy::account_path("acme.fr", "john")
                ),
            ),
            (
                "GET",
                format!(
                    "{}/checkMigrate",
                    legacy::destination_path("acme.fr", "john", "hosted-ab1", "x@configureme.me")
                ),
            ),
            (
                "POST",
                format!(
                    "{}/migrate",
                    legacy::destination_path("acme.fr", "john", "hosted-ab1", "x@configureme.me")
                ),
            ),
            (
                "GET",
                format!("{}/task/account", legacy::domain_path("acme.fr")),
            ),
            (
                "GET",
                legacy::TaskPop {
                    id: 5,
                    action: "migration".into(),
                    date: None,
                    domain: "acme.fr".into(),
                    name: "john".into(),
                }
                .task_ref()
                .path(),
            ),
            ("GET", "/auth/currentCredential".to_owned()),
            ("GET", "/email/mxplan/mxplan-1/domain/acme.fr".to_owned()),
        ];
        for (method, path) in &calls {
            assert!(
                auth::ACCESS_RULES
                    .iter()
                    .any(|r| auth::allows(r, method, path)),
                "no rule for {method} {path}"
            );
        }
        // Every rule is used by some call (the list is exactly what the tool needs).
        for rule in auth::ACCESS_RULES {
            assert!(
                calls.iter().any(|(m, p)| auth::allows(rule, m, p)),
                "unused rule {rule:?}"
            );
        }
        // Nothing beyond: no DELETE on Exchange accounts, no PUT on legacy accounts.
        assert!(!auth::ACCESS_RULES.iter().any(|r| auth::allows(
            r,
            "DELETE",
            &svc.account_path("john@acme.fr")
        )));
        assert!(!auth::ACCESS_RULES.iter().any(|r| auth::allows(
            r,
            "PUT",
            &legacy::account_path("acme.fr", "john")
        )));
    }
}
