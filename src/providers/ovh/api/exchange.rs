//! Hosted Exchange: `/email/exchange/{organization}/service/{service}`.

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
        self.cname_to_check
            .as_deref()
            .filter(|c| !c.is_empty() && !self.domain_validated && self.state != ObjectState::Ok)
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
