//! Authentication as the `OVHcloud` API does it: the `$1$` SHA-1 request signature, consumer keys
//! and their access rules, the timestamp window, and `/auth/*` routes.
//!
//! Entry points: [`signature`] (the formula, shared with tests), [`Credentials::check`] (every
//! authenticated call goes through it before routing) and [`Credentials::route`] for `/auth/…`.
//! The server hashes the raw body bytes it received: it never re-serialises JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;
use sha1::{Digest, Sha1};

use crate::clock::{iso_datetime, now_unix};
use crate::fixture::{AccessRule, AuthFixture, CredentialState};
use crate::http::{Reply, Request};

/// `"$1$" + hex(SHA1(secret+ck+METHOD+url+body+timestamp))`, the value of `X-Ovh-Signature`.
pub fn signature(
    application_secret: &str,
    consumer_key: &str,
    method: &str,
    full_url: &str,
    body: &[u8],
    timestamp: &str,
) -> String {
    let mut hasher = Sha1::new();
    for (index, part) in [
        application_secret.as_bytes(),
        consumer_key.as_bytes(),
        method.as_bytes(),
        full_url.as_bytes(),
        body,
        timestamp.as_bytes(),
    ]
    .into_iter()
    .enumerate()
    {
        if index > 0 {
            hasher.update(b"+");
        }
        hasher.update(part);
    }
    let mut out = String::from("$1$");
    for byte in hasher.finalize() {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Whether `pattern` (with `*` matching any run of characters, `/` included) matches `path`.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == path;
    };
    if parts.len() == 1 {
        return pattern == path;
    }
    let Some(mut rest) = path.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// An auth-layer error body: `{"errorCode", "httpCode", "message"}` (not a business error).
pub(crate) fn auth_error(status: u16, code: &str, message: &str) -> Reply {
    let phrase = match status {
        400 => "400 Bad Request",
        401 => "401 Unauthorized",
        _ => "403 Forbidden",
    };
    Reply::json(
        status,
        json!({"errorCode": code, "httpCode": phrase, "message": message}),
    )
}

/// One consumer key as the server knows it.
#[derive(Debug, Clone)]
pub(crate) struct Credential {
    pub id: u64,
    pub state: CredentialState,
    pub rules: Vec<AccessRule>,
    pub token: String,
    pub created: u64,
    pub last_use: Option<u64>,
}

/// The application and every consumer key.
#[derive(Debug)]
pub(crate) struct Credentials {
    pub application_key: String,
    pub application_secret: String,
    pub max_skew_secs: u64,
    pub clock_offset_secs: i64,
    pub auto_validate: bool,
    pub keys: BTreeMap<String, Credential>,
    /// Calls per consumer key in any 60 s (0: no limit), and each key's calls of the last 60 s.
    pub requests_per_minute: u32,
    recent: BTreeMap<String, std::collections::VecDeque<std::time::Instant>>,
    next_id: u64,
}

/// The outcome of the authentication of one call.
pub(crate) enum Verdict {
    /// Go on, as this consumer key.
    Allowed(String),
    /// Answer this.
    Refused(Reply),
}

impl Credentials {
    pub fn new(fixture: &AuthFixture) -> Self {
        let mut credentials = Credentials {
            application_key: fixture.application_key.clone(),
            application_secret: fixture.application_secret.clone(),
            max_skew_secs: fixture.max_skew_secs,
            clock_offset_secs: fixture.clock_offset_secs,
            auto_validate: fixture.auto_validate,
            keys: BTreeMap::new(),
            requests_per_minute: fixture.requests_per_minute,
            recent: BTreeMap::new(),
            next_id: 1,
        };
        for key in &fixture.consumer_keys {
            credentials.insert(key.key.clone(), key.state, key.rules.clone());
        }
        credentials
    }

    fn insert(&mut self, key: String, state: CredentialState, rules: Vec<AccessRule>) {
        let id = self.next_id;
        self.next_id += 1;
        let token = format!("{:016x}{id:08x}", id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        self.keys.insert(
            key,
            Credential {
                id,
                state,
                rules,
                token,
                created: now_unix(),
                last_use: None,
            },
        );
    }

    /// Counts one call of `consumer` at `now`; when the key already made its
    /// `requests_per_minute` in the last 60 s, the call is not counted and the answer is the
    /// seconds until one of them is a minute old (a 429's `Retry-After`).
    pub fn over_rate(&mut self, consumer: &str, now: std::time::Instant) -> Option<u64> {
        if self.requests_per_minute == 0 {
            return None;
        }
        let window = std::time::Duration::from_secs(60);
        let calls = self.recent.entry(consumer.to_owned()).or_default();
        while calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            calls.pop_front();
        }
        if calls.len() >= usize::try_from(self.requests_per_minute).unwrap_or(usize::MAX) {
            let oldest = calls.front().copied().unwrap_or(now);
            let wait = window.saturating_sub(now.duration_since(oldest));
            return Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        }
        calls.push_back(now);
        None
    }

    /// The server clock in Unix seconds.
    pub fn server_time(&self) -> i64 {
        i64::try_from(now_unix())
            .unwrap_or(i64::MAX)
            .saturating_add(self.clock_offset_secs)
    }

    /// Authenticates a call to `api_path` (no query): application key, consumer key, timestamp,
    /// signature, access rules, in that order.
    pub fn check(&mut self, request: &Request, api_path: &str) -> Verdict {
        if request.header("x-ovh-application") != Some(self.application_key.as_str()) {
            return Verdict::Refused(auth_error(
                403,
                "INVALID_KEY",
                "This application key is invalid",
            ));
        }
        let Some(consumer) = request.header("x-ovh-consumer").map(str::to_owned) else {
            return Verdict::Refused(auth_error(401, "NOT_CREDENTIAL", "You must login first"));
        };
        let Some(credential) = self.keys.get(&consumer) else {
            return Verdict::Refused(auth_error(
                403,
                "INVALID_CREDENTIAL",
                "This credential does not exist",
            ));
        };
        if credential.state != CredentialState::Validated {
            return Verdict::Refused(auth_error(
                403,
                "INVALID_CREDENTIAL",
                "This credential is not valid",
            ));
        }
        let timestamp = request.header("x-ovh-timestamp").unwrap_or_default();
        let in_window = timestamp
            .parse::<i64>()
            .is_ok_and(|sent| sent.abs_diff(self.server_time()) <= self.max_skew_secs);
        if !in_window {
            return Verdict::Refused(auth_error(400, "QUERY_TIME_OUT", "Query out of time"));
        }
        let expected = signature(
            &self.application_secret,
            &consumer,
            &request.method,
            &request.full_url(),
            &request.body,
            timestamp,
        );
        if request.header("x-ovh-signature") != Some(expected.as_str()) {
            return Verdict::Refused(auth_error(400, "INVALID_SIGNATURE", "Invalid signature"));
        }
        let granted = credential
            .rules
            .iter()
            .any(|rule| rule.method == request.method && path_matches(&rule.path, api_path));
        if !granted {
            return Verdict::Refused(auth_error(
                403,
                "NOT_GRANTED_CALL",
                "This call has not been granted",
            ));
        }
        if let Some(credential) = self.keys.get_mut(&consumer) {
            credential.last_use = Some(now_unix());
        }
        Verdict::Allowed(consumer)
    }

    /// `POST /auth/credential`: only the application key is checked.
    pub fn request_credential(&mut self, request: &Request) -> Reply {
        if request.header("x-ovh-application") != Some(self.application_key.as_str()) {
            return auth_error(403, "INVALID_KEY", "This application key is invalid");
        }
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&request.body) else {
            return Reply::bad_request("Invalid JSON body");
        };
        let Some(raw_rules) = body.get("accessRules").and_then(|rules| rules.as_array()) else {
            return Reply::bad_request("Missing parameter(s): accessRules");
        };
        let mut rules = Vec::new();
        for rule in raw_rules {
            let method = rule
                .get("method")
                .and_then(|m| m.as_str())
                .unwrap_or_default();
            let path = rule
                .get("path")
                .and_then(|p| p.as_str())
                .unwrap_or_default();
            if !["GET", "POST", "PUT", "DELETE"].contains(&method) || !path.starts_with('/') {
                return Reply::bad_request(&format!("Invalid access rule: {rule}"));
            }
            rules.push(AccessRule {
                method: method.to_owned(),
                path: path.to_owned(),
            });
        }
        let key = format!(
            "sim-ck-{:08x}{:08x}",
            self.next_id,
            now_unix() & 0xffff_ffff
        );
        let state = if self.auto_validate {
            CredentialState::Validated
        } else {
            CredentialState::PendingValidation
        };
        self.insert(key.clone(), state, rules);
        let token = self
            .keys
            .get(&key)
            .map(|c| c.token.clone())
            .unwrap_or_default();
        Reply::json(
            200,
            json!({
                "consumerKey": key,
                "state": state,
                "validationUrl": format!("{}/auth/?credentialToken={token}", request.origin()),
            }),
        )
    }

    /// `GET /auth/?credentialToken=…` (outside `/1.0`): what the owner's visit to the validation
    /// URL does.
    pub fn validate_token(&mut self, token: &str) -> Reply {
        match self.keys.values_mut().find(|c| c.token == token) {
            Some(credential) => {
                credential.state = CredentialState::Validated;
                Reply::text(
                    200,
                    "Credential validated: the consumer key may now call the API.\n",
                )
            }
            None => Reply::text(404, "Unknown credential token.\n"),
        }
    }

    /// Sets the state of a consumer key; false when it is unknown.
    pub fn set_state(&mut self, key: &str, state: CredentialState) -> bool {
        match self.keys.get_mut(key) {
            Some(credential) => {
                credential.state = state;
                true
            }
            None => false,
        }
    }

    /// `GET /auth/currentCredential` for an authenticated consumer key.
    pub fn current(&self, consumer: &str) -> Reply {
        let Some(credential) = self.keys.get(consumer) else {
            return Reply::not_found("This credential does not exist");
        };
        Reply::json(
            200,
            json!({
                "allowedIPs": null,
                "applicationId": 1,
                "creation": iso_datetime(credential.created),
                "credentialId": credential.id,
                "expiration": null,
                "lastUse": credential.last_use.map(iso_datetime),
                "ovhSupport": false,
                "rules": credential.rules,
                "status": credential.state,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AS: &str = "9ufkBmLaTQ9nz5yMUlg79taH0GNnzDjk";
    const CK: &str = "5mBuy6SUQcRw2ZUxg0cG68BoDKpED4KY";
    const URL: &str = "https://eu.api.ovh.com/1.0/auth";
    const TS: &str = "1457018875";

    #[test]
    fn the_python_ovh_vectors() {
        let body = br#"{"a":"b","c":"d"}"#;
        assert_eq!(
            signature(AS, CK, "GET", URL, b"", TS),
            "$1$e9556054b6309771395efa467c22e627407461ad"
        );
        assert_eq!(
            signature(AS, CK, "POST", URL, body, TS),
            "$1$ec2fb5c7a81f64723c77d2e5b609ae6f58a84fc1"
        );
        assert_eq!(
            signature(AS, CK, "PUT", URL, body, TS),
            "$1$8a75a9e7c8e7296c9dbeda6a2a735eb6bd58ec4b"
        );
        assert_eq!(
            signature(AS, CK, "DELETE", URL, b"", TS),
            "$1$a1eecd00b3b02b6cf5708b84b9ff42059a950d85"
        );
    }

    #[test]
    fn rule_patterns() {
        assert!(path_matches("/email/*", "/email/domain/x/account"));
        assert!(path_matches("/*", "/auth/currentCredential"));
        assert!(path_matches("/email/domain", "/email/domain"));
        assert!(!path_matches("/email/domain", "/email/domain/x"));
        assert!(path_matches("/email/*/account", "/email/domain/x/account"));
        assert!(!path_matches(
            "/email/*/account",
            "/email/domain/x/account/y"
        ));
        assert!(!path_matches("/email/exchange/*", "/email/domain/x"));
        assert!(path_matches("/email/exchange/*", "/email/exchange/"));
        assert!(!path_matches("/me/*", "/me"));
    }
}
