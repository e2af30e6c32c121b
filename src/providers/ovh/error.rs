//! The OVH layer's one error type: which call failed, while doing what, with the API's own words
//! (`message`, `errorCode`) and the `X-Ovh-QueryID` that OVH support asks for, and whether trying
//! again later can help.
//!
//! Entry points: [`OvhError::from_response`] classifies an HTTP answer (status, headers, body);
//! [`OvhError::is_retryable`] is the one retry rule the client applies.
//!
//! Invariant: no secret ever reaches an `OvhError`. The client only puts the method and path, the
//! caller's activity and the server's words in it; request bodies (passwords) never are.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// How an OVH API failure should be handled. Each kind has a stable code (`ovh::not_found`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OvhErrorKind {
    /// No usable credentials or endpoint (missing key, unknown endpoint name, unreadable file).
    Config,
    /// 400 `INVALID_SIGNATURE`: the application secret is wrong or the clock is far off.
    InvalidSignature,
    /// 400 `QUERY_TIME_OUT`: `X-Ovh-Timestamp` is outside the server's window (a clock that
    /// moved since `/auth/time` was read; the client reads it again once).
    ClockSkew,
    /// 403 `INVALID_KEY`, `INVALID_CREDENTIAL`, `NOT_CREDENTIAL`: unknown, expired or
    /// unvalidated application or consumer key.
    InvalidCredential,
    /// 403 `NOT_GRANTED_CALL` (or another 403): the consumer key's access rules do not cover
    /// the call, or the account lacks the right (IAM, contacts).
    NotGranted,
    /// Any other 4xx the caller must act on (400 Bad Request with the API's message).
    BadRequest,
    /// 404: the object does not exist (or no longer does).
    NotFound,
    /// 409 other than "already being processed": the request conflicts with the object's state.
    Conflict,
    /// 409 "… is already being processed …": another operation on the same object is running.
    /// Retried.
    Busy,
    /// 460: the service has expired.
    Expired,
    /// 429: too many requests. Retried, honouring `Retry-After`.
    RateLimited,
    /// 5xx. Retried (see [`OvhError::is_retryable`] for POST).
    Server,
    /// No answer: connection refused or reset, DNS, TLS, timeout. Retried.
    Network,
    /// A 2xx answer whose body is not the JSON the schema promises.
    InvalidResponse,
    /// An asynchronous task ended in `error` or `cancelled`.
    TaskFailed,
    /// A task did not finish within the poller's overall timeout.
    TaskTimeout,
    /// A task with a status disappeared before it was seen done.
    TaskLost,
    /// The user interrupted (Ctrl-C) while waiting.
    Cancelled,
}

impl OvhErrorKind {
    /// The stable diagnostic code.
    pub fn code(self) -> &'static str {
        match self {
            OvhErrorKind::Config => "ovh::config",
            OvhErrorKind::InvalidSignature => "ovh::invalid_signature",
            OvhErrorKind::ClockSkew => "ovh::clock_skew",
            OvhErrorKind::InvalidCredential => "ovh::invalid_credential",
            OvhErrorKind::NotGranted => "ovh::not_granted",
            OvhErrorKind::BadRequest => "ovh::bad_request",
            OvhErrorKind::NotFound => "ovh::not_found",
            OvhErrorKind::Conflict => "ovh::conflict",
            OvhErrorKind::Busy => "ovh::busy",
            OvhErrorKind::Expired => "ovh::expired",
            OvhErrorKind::RateLimited => "ovh::rate_limited",
            OvhErrorKind::Server => "ovh::server",
            OvhErrorKind::Network => "ovh::network",
            OvhErrorKind::InvalidResponse => "ovh::invalid_response",
            OvhErrorKind::TaskFailed => "ovh::task_failed",
            OvhErrorKind::TaskTimeout => "ovh::task_timeout",
            OvhErrorKind::TaskLost => "ovh::task_lost",
            OvhErrorKind::Cancelled => "ovh::cancelled",
        }
    }

    fn help(self) -> Option<&'static str> {
        Some(match self {
            OvhErrorKind::Config => {
                "set OVH_APPLICATION_KEY, OVH_APPLICATION_SECRET and OVH_CONSUMER_KEY, or write \
                 them in ovh.conf (see \"OVH credentials\" in docs/ovh.md); `mailplan ovh login` \
                 creates a consumer key"
            }
            OvhErrorKind::InvalidSignature => {
                "check the application secret (OVH_APPLICATION_SECRET or ovh.conf) and that it \
                 belongs to the application key"
            }
            OvhErrorKind::ClockSkew => {
                "this machine's clock differs from OVH's and kept moving after `/auth/time` was \
                 read again: set the clock right (NTP), then run again"
            }
            OvhErrorKind::InvalidCredential => {
                "\"This credential is not valid\": the consumer key was never validated (open \
                 the validation URL `mailplan ovh login` printed), has expired or was revoked; \
                 \"This credential does not exist\": it is not a key of this application. Run \
                 `mailplan ovh login` for a new one"
            }
            OvhErrorKind::NotGranted => {
                "the consumer key's access rules do not allow this call: create a new one with \
                 `mailplan ovh login`, and check that the OVH account is admin and tech contact \
                 of the services"
            }
            OvhErrorKind::Busy | OvhErrorKind::RateLimited | OvhErrorKind::Server => {
                "retried with backoff; if it persists, try again later"
            }
            OvhErrorKind::Network => "retried with backoff; check the network and the endpoint",
            OvhErrorKind::Expired => "renew the service in the OVHcloud control panel",
            OvhErrorKind::TaskTimeout => {
                "the task may still finish: rerun `mailplan apply` later to resume waiting"
            }
            OvhErrorKind::Cancelled => "rerun `mailplan apply` to resume",
            OvhErrorKind::BadRequest
            | OvhErrorKind::NotFound
            | OvhErrorKind::Conflict
            | OvhErrorKind::InvalidResponse
            | OvhErrorKind::TaskFailed
            | OvhErrorKind::TaskLost => return None,
        })
    }
}

/// An OVH API failure: `OVH API while <activity>: <METHOD /path>: <status> <message>`.
///
/// The texts are boxed `str`s so that the error stays small in every `Result`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct OvhError {
    pub kind: OvhErrorKind,
    /// What mailplan was doing ("renaming john@acme.fr"), given by the caller.
    pub activity: Box<str>,
    /// The call, `METHOD /path` without base URL or query (`PUT /email/mxplan/x/account/a@b`);
    /// empty for failures that are not about one call (configuration).
    pub call: Box<str>,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// The API's `message` or the system's words. Never contains a secret.
    pub message: Box<str>,
    /// The API's `errorCode` (`NOT_GRANTED_CALL`) or `class` (`Client::NotFound`).
    pub error_code: Option<Box<str>>,
    /// The `X-Ovh-QueryID` header of the answer.
    pub query_id: Option<Box<str>>,
    /// How long the server asked us to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl fmt::Display for OvhError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OVH API while {}: ", self.activity)?;
        if !self.call.is_empty() {
            write!(f, "{}: ", self.call)?;
        }
        if let Some(status) = self.status {
            write!(f, "{status} ")?;
        }
        f.write_str(&self.message)?;
        match (&self.error_code, &self.query_id) {
            (Some(code), Some(id)) => write!(f, " ({code}, query {id})"),
            (Some(code), None) => write!(f, " ({code})"),
            (None, Some(id)) => write!(f, " (query {id})"),
            (None, None) => Ok(()),
        }
    }
}

impl miette::Diagnostic for OvhError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.kind.code()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.kind
            .help()
            .map(|h| Box::new(h) as Box<dyn fmt::Display + 'a>)
    }
}

/// The error bodies OVH sends: auth-layer `{errorCode, httpCode, message}` and business
/// `{class, message, details}`. Every field is optional: anything else is tolerated.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    message: Option<String>,
    error_code: Option<String>,
    class: Option<String>,
}

impl OvhError {
    /// A failure that is not an HTTP answer (configuration, network, task outcome).
    pub fn new(
        kind: OvhErrorKind,
        activity: impl Into<Box<str>>,
        call: impl Into<Box<str>>,
        message: impl Into<Box<str>>,
    ) -> Self {
        OvhError {
            kind,
            activity: activity.into(),
            call: call.into(),
            status: None,
            message: message.into(),
            error_code: None,
            query_id: None,
            retry_after: None,
        }
    }

    /// A configuration problem (credentials, endpoint).
    pub fn config(message: impl Into<Box<str>>) -> Self {
        OvhError::new(
            OvhErrorKind::Config,
            "reading the OVH credentials",
            "",
            message,
        )
    }

    /// Classify a non-2xx answer to `call` made while doing `activity`.
    pub fn from_response(
        activity: &str,
        call: &str,
        status: u16,
        query_id: Option<String>,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Self {
        let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
        let message = parsed.message.unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "(no message)".to_owned()
            } else {
                text.chars().take(300).collect()
            }
        });
        let error_code = parsed.error_code.or(parsed.class);
        let kind = classify(status, error_code.as_deref(), &message);
        OvhError {
            kind,
            activity: activity.into(),
            call: call.into(),
            status: Some(status),
            message: message.into(),
            error_code: error_code.map(Into::into),
            query_id: query_id.map(Into::into),
            retry_after,
        }
    }

    /// Whether the same request may succeed if sent again after a pause. `method` matters for
    /// 5xx and network failures: a POST that may have reached the server is only repeated when
    /// the server said it did nothing (502, 503, 504) or the connection was never made
    /// (`connected == false`).
    pub fn is_retryable(&self, method: &str, connected: bool) -> bool {
        match self.kind {
            OvhErrorKind::Busy | OvhErrorKind::RateLimited => true,
            OvhErrorKind::Server => method != "POST" || matches!(self.status, Some(502..=504)),
            OvhErrorKind::Network => method != "POST" || !connected,
            _ => false,
        }
    }

    /// Replace the activity (a caller that knows better what it was doing).
    #[must_use]
    pub fn during(mut self, activity: impl Into<Box<str>>) -> Self {
        self.activity = activity.into();
        self
    }
}

/// Status and `errorCode` to kind (python-ovh's mapping, plus 409 "already being processed").
fn classify(status: u16, error_code: Option<&str>, message: &str) -> OvhErrorKind {
    match (status, error_code) {
        (_, Some("INVALID_SIGNATURE")) => OvhErrorKind::InvalidSignature,
        (_, Some("QUERY_TIME_OUT")) => OvhErrorKind::ClockSkew,
        (_, Some("INVALID_KEY" | "INVALID_CREDENTIAL" | "NOT_CREDENTIAL")) => {
            OvhErrorKind::InvalidCredential
        }
        (403, _) | (_, Some("NOT_GRANTED_CALL" | "FORBIDDEN")) => OvhErrorKind::NotGranted,
        (404, _) => OvhErrorKind::NotFound,
        (409, _) if is_in_progress(message) => OvhErrorKind::Busy,
        (409, _) => OvhErrorKind::Conflict,
        (429, _) => OvhErrorKind::RateLimited,
        (460, _) => OvhErrorKind::Expired,
        (500..=599, _) => OvhErrorKind::Server,
        _ => OvhErrorKind::BadRequest,
    }
}

/// "This pop is already being processed: acct@domain, please try later" and its relatives.
fn is_in_progress(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("already being processed")
        || lower.contains("actioninprogress")
        || lower.contains("action in progress")
        || lower.contains("task in progress")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, body: &str) -> OvhError {
        OvhError::from_response(
            "renaming john@acme.fr",
            "PUT /email/mxplan/mxplan-1/account/john@acme.fr",
            status,
            Some("EU.ext-99.foobar".into()),
            None,
            body.as_bytes(),
        )
    }

    #[test]
    fn invalid_signature_body_from_php_ovh_97() {
        let e = parse(
            400,
            r#"{"errorCode":"INVALID_SIGNATURE","httpCode":"400 Bad Request","message":"Invalid signature"}"#,
        );
        assert_eq!(e.kind, OvhErrorKind::InvalidSignature);
        assert_eq!(e.kind.code(), "ovh::invalid_signature");
        assert_eq!(
            e.to_string(),
            "OVH API while renaming john@acme.fr: PUT /email/mxplan/mxplan-1/account/john@acme.fr: \
             400 Invalid signature (INVALID_SIGNATURE, query EU.ext-99.foobar)"
        );
        assert!(!e.is_retryable("GET", true));
    }

    #[test]
    fn not_granted_body_from_php_ovh_102() {
        let e = parse(
            403,
            r#"{"message":"This call has not been granted","httpCode":"403 Forbidden","errorCode":"NOT_GRANTED_CALL"}"#,
        );
        assert_eq!(e.kind, OvhErrorKind::NotGranted);
        assert_eq!(e.error_code.as_deref(), Some("NOT_GRANTED_CALL"));
        assert_eq!(&*e.message, "This call has not been granted");
    }

    #[test]
    fn business_error_with_class_and_details_from_go_ovh() {
        let e = parse(
            403,
            r#"{"class":"Client::Forbidden","message":"User not granted for this request","details":{"unauthorizedActionsByIAM":"account:apiovh:me/installationTemplate/get","unauthorizedActionsByAuthentication":""}}"#,
        );
        assert_eq!(e.kind, OvhErrorKind::NotGranted);
        assert_eq!(e.error_code.as_deref(), Some("Client::Forbidden"));
        assert_eq!(&*e.message, "User not granted for this request");
    }

    #[test]
    fn credential_codes_are_their_own_kind() {
        for code in ["INVALID_KEY", "INVALID_CREDENTIAL", "NOT_CREDENTIAL"] {
            let e = parse(403, &format!(r#"{{"errorCode":"{code}","message":"x"}}"#));
            assert_eq!(e.kind, OvhErrorKind::InvalidCredential, "{code}");
        }
    }

    #[test]
    fn already_being_processed_is_busy_and_retryable_other_conflicts_are_not() {
        let e = parse(
            409,
            r#"{"message":"This pop is already being processed: john@acme.fr, please try later"}"#,
        );
        assert_eq!(e.kind, OvhErrorKind::Busy);
        assert!(e.is_retryable("POST", true));
        let e = parse(
            409,
            r#"{"class":"Client::Conflict","message":"Email address is already used."}"#,
        );
        assert_eq!(e.kind, OvhErrorKind::Conflict);
        assert!(!e.is_retryable("PUT", true));
    }

    #[test]
    fn status_mapping_and_retry_classification() {
        let cases: &[(u16, OvhErrorKind, bool, bool)] = &[
            // status, kind, retryable for GET, retryable for POST
            (400, OvhErrorKind::BadRequest, false, false),
            (404, OvhErrorKind::NotFound, false, false),
            (429, OvhErrorKind::RateLimited, true, true),
            (460, OvhErrorKind::Expired, false, false),
            (500, OvhErrorKind::Server, true, false),
            (502, OvhErrorKind::Server, true, true),
            (503, OvhErrorKind::Server, true, true),
            (504, OvhErrorKind::Server, true, true),
        ];
        for &(status, kind, get, post) in cases {
            let e = parse(status, r#"{"message":"m"}"#);
            assert_eq!(e.kind, kind, "{status}");
            assert_eq!(e.is_retryable("GET", true), get, "GET {status}");
            assert_eq!(e.is_retryable("POST", true), post, "POST {status}");
        }
    }

    #[test]
    fn network_failures_repeat_a_post_only_when_nothing_was_sent() {
        let e = OvhError::new(OvhErrorKind::Network, "a", "POST /x", "reset");
        assert!(e.is_retryable("GET", true));
        assert!(e.is_retryable("POST", false));
        assert!(!e.is_retryable("POST", true));
    }

    #[test]
    fn a_body_that_is_not_json_becomes_the_message() {
        let e = parse(502, "<html>Bad Gateway</html>");
        assert_eq!(&*e.message, "<html>Bad Gateway</html>");
        assert_eq!(e.error_code, None);
        let e = parse(503, "");
        assert_eq!(&*e.message, "(no message)");
    }
}
