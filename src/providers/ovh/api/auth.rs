//! `/auth`: consumer keys.

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
