//! New MX Plan: `/email/mxplan/{service}`.

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
