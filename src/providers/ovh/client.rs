//! The signed HTTP client of the OVH API (reqwest over rustls).
//!
//! Entry points: [`Client::new`] from [`Credentials`] and [`ClientOptions`], then
//! [`Client::get`], [`Client::post`], [`Client::put`], [`Client::delete`] (typed JSON through
//! serde) and [`Client::post_unauthenticated`] (`/auth/credential`). Paths are built by the
//! caller with [`segment`] for each variable part.
//!
//! Invariants:
//! - the bytes signed are the bytes sent: the body is serialised once (compact JSON, like
//!   python-ovh) and the signature covers the URL exactly as reqwest sends it, query included
//!   (as the official clients sign: `"$1$" + sha1_hex(AS+CK+METHOD+URL+BODY+TS)`, the parts
//!   joined with `+`);
//! - the timestamp is the local clock corrected by the server's, read from `/auth/time` on first
//!   use and once more after a `QUERY_TIME_OUT` or `INVALID_SIGNATURE` refusal (then resent);
//!   the request is signed when it leaves, after its rate-limiter wait;
//! - every request, retries and `/auth/time` included, first waits for the client's
//!   [`RateLimiter`] (governor), shared by every clone of the client, so all tasks together stay
//!   under the configured rate;
//! - failures are retried with exponential backoff and jitter (backon), at most
//!   [`RetryPolicy::max_attempts`] times, only when [`OvhError::is_retryable`] says so; a
//!   `Retry-After` is honoured (longer than [`RetryPolicy::max_retry_after`]: not retried);
//! - no secret reaches an error: errors carry the method, the path, the caller's activity and
//!   the server's words.
//!
//! Crates do the generic parts: governor the rate limit, backon the backoff's pauses,
//! percent-encoding the URL escapes, sha1 the digest. Written here is only what is OVH's own: the
//! signature's layout, the `/v1`/`/v2` base rule, which failures are retried, and the retry loop
//! itself, since a resend after a clock resync uses no attempt and no pause and a `Retry-After`
//! replaces backon's pause.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha1::{Digest, Sha1};
use tokio_rustls::rustls;

use crate::plan::secret::Secret;

use super::config::Credentials;
use super::error::{OvhError, OvhErrorKind};

/// Tunables of a [`Client`].
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// Requests per minute, all tasks together; 0 turns the limit off. OVH's fair use is about
    /// 60 per minute per consumer key: the default stays well under it.
    pub requests_per_minute: u32,
    /// Requests that may go at once after a quiet period.
    pub burst: u32,
    pub retry: RetryPolicy,
    /// Per-request timeout (the official clients use 180 s).
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            requests_per_minute: 30,
            burst: 5,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(180),
        }
    }
}

/// How failed requests are repeated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first pause; doubled after each failure.
    pub base_delay: Duration,
    /// The longest pause between two attempts, before jitter.
    pub max_delay: Duration,
    /// A longer `Retry-After` ends the retries: the error is returned.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The pauses between attempts, from backon's exponential backoff with jitter: one for each
    /// attempt after the first (`max_attempts − 1` in all), the n-th drawn uniformly from
    /// `[d/2, d)` where `d = min(max_delay, base · 2^(n−1))` ("equal jitter"), so that tasks that
    /// failed together do not come back together. backon adds its jitter above the delay
    /// (`[x, 2x)`): it is given half the delays.
    pub fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::new()
            .with_min_delay(self.base_delay.min(self.max_delay) / 2)
            .with_max_delay(self.max_delay / 2)
            .with_factor(2.0)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_jitter()
            .build()
    }

    /// The pause before the next attempt, given the next pause of [`RetryPolicy::backoff`]
    /// (`None`: the attempts are spent) and the server's `Retry-After`. `None`: do not retry.
    ///
    /// With a `Retry-After`, exactly what the server asked, plus up to a quarter of a second
    /// (longer than [`RetryPolicy::max_retry_after`]: not retried); it uses up an attempt too.
    pub fn pause(
        &self,
        backoff: Option<Duration>,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let backoff = backoff?;
        match retry_after {
            Some(wait) if wait > self.max_retry_after => None,
            Some(wait) => Some(wait + Duration::from_millis(250).mul_f64(fastrand::f64())),
            None => Some(backoff),
        }
    }
}

/// The quota of a [`RateLimiter`]: `burst` requests at once after a quiet period, then one
/// every `60 / per_minute` seconds (governor's GCRA, the continuous form of a token bucket).
/// `None` when `per_minute` is 0: no limit.
pub fn quota(per_minute: u32, burst: u32) -> Option<Quota> {
    let per_minute = NonZeroU32::new(per_minute)?;
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Some(Quota::per_minute(per_minute).allow_burst(burst))
}

/// The rate limit shared by every clone of a [`Client`]: governor's direct (unkeyed) limiter.
/// A waiter sleeps until the limiter has a cell for it, so all tasks together stay under the
/// quota and never all go at once.
#[derive(Debug)]
pub struct RateLimiter {
    limiter: Option<DefaultDirectRateLimiter>,
}

impl RateLimiter {
    /// `per_minute == 0`: no limit.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        RateLimiter {
            limiter: quota(per_minute, burst).map(governor::RateLimiter::direct),
        }
    }

    /// Wait for a token.
    pub async fn acquire(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
    }
}

/// A request pace shared with other processes (the workers of a shared run, through their
/// state store): each call reserves the next turn of all of them and says how long to wait
/// for it. Used on top of the client's own [`RateLimiter`].
pub trait SharedPace: Send + Sync + std::fmt::Debug {
    /// Reserve the next request's turn; how long until it comes (zero: now). An error to
    /// reserve one is no reason to stop a request: it answers zero.
    fn reserve(&self) -> Duration;
}

/// `X-Ovh-Signature` for one request: `$1$` and the SHA-1 of the application secret, consumer
/// key, method, URL, body and timestamp joined with `+`.
pub fn sign(
    application_secret: &Secret,
    consumer_key: &Secret,
    method: &str,
    url: &str,
    body: &[u8],
    timestamp: i64,
) -> String {
    let mut hasher = Sha1::new();
    hasher.update(application_secret.expose().as_bytes());
    hasher.update(b"+");
    hasher.update(consumer_key.expose().as_bytes());
    hasher.update(b"+");
    hasher.update(method.to_ascii_uppercase().as_bytes());
    hasher.update(b"+");
    hasher.update(url.as_bytes());
    hasher.update(b"+");
    hasher.update(body);
    hasher.update(b"+");
    hasher.update(timestamp.to_string().as_bytes());
    format!("$1${:x}", hasher.finalize())
}

/// What a path segment or a query value keeps as it is: the RFC 3986 unreserved characters and
/// `@` (addresses stay readable in paths, as the official clients send them).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');
/// What a query key keeps as it is: the unreserved characters.
const QUERY_KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode one path segment or query value: everything but the RFC 3986 unreserved
/// characters and `@` (addresses stay readable in paths, as the official clients send them).
pub fn segment(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// The full URL of `path` (which starts with `/`) with its query. Like the official clients, a
/// path under `/v1` or `/v2` replaces the base URL's `/1.0`.
pub fn target_url(base_url: &str, path: &str, query: &[(&str, &str)]) -> String {
    let base = if path.starts_with("/v1/") || path.starts_with("/v2/") {
        base_url.strip_suffix("/1.0").unwrap_or(base_url)
    } else {
        base_url
    };
    let mut url = format!("{base}{path}");
    for (i, (key, value)) in query.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(&utf8_percent_encode(key, QUERY_KEY).to_string());
        url.push('=');
        url.push_str(&segment(value));
    }
    url
}

/// `Retry-After`: delay-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(date.timestamp()).ok()?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// One call to make.
#[derive(Debug, Clone)]
struct Call<'a> {
    method: Method,
    path: &'a str,
    query: &'a [(&'a str, &'a str)],
    /// The exact bytes sent and signed.
    body: Option<Vec<u8>>,
    authenticated: bool,
    activity: &'a str,
}

impl Call<'_> {
    /// `METHOD /path`, as errors name the call.
    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// The OVH API client. Cheap to clone: clones share the connection pool, the server time delta
/// and the rate limit.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base_url: String,
    application_key: String,
    application_secret: Secret,
    consumer_key: Option<Secret>,
    limiter: RateLimiter,
    /// The pace shared with other workers, once set ([`Client::share_pace`]).
    pace: std::sync::OnceLock<Arc<dyn SharedPace>>,
    retry: RetryPolicy,
    /// The server clock minus the local one, read from `/auth/time` on first use and again
    /// once after a timestamp or signature refusal.
    time_delta: tokio::sync::Mutex<Option<i64>>,
}

impl Client {
    pub fn new(credentials: Credentials, options: ClientOptions) -> Result<Client, OvhError> {
        let builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("mailplan/", env!("CARGO_PKG_VERSION")));
        // Always preconfigured: reqwest has no crypto provider of its own here (no aws-lc), and
        // panics without one, even for a plain-HTTP endpoint such as the simulator.
        let https = credentials.endpoint.base_url.starts_with("https://");
        let builder = builder.tls_backend_preconfigured(tls_config(https)?);
        let http = builder
            .build()
            .map_err(|e| OvhError::config(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url: credentials.endpoint.base_url,
                application_key: credentials.application_key,
                application_secret: credentials.application_secret,
                consumer_key: credentials.consumer_key,
                limiter: RateLimiter::new(options.requests_per_minute, options.burst),
                pace: std::sync::OnceLock::new(),
                retry: options.retry,
                time_delta: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Every clone of this client also keeps to `pace`, shared with other processes (set
    /// once; a second call changes nothing).
    pub fn share_pace(&self, pace: Arc<dyn SharedPace>) {
        let _ = self.inner.pace.set(pace);
    }

    /// The base URL calls go to (`https://eu.api.ovh.com/1.0`).
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// Whether a consumer key is configured (authenticated calls need one).
    pub fn has_consumer_key(&self) -> bool {
        self.inner.consumer_key.is_some()
    }

    /// `GET path?query`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        activity: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, OvhError> {
        self.call(Call {
            method: Method::GET,
            path,
            query,
            body: None,
            authenticated: true,
            activity,
        })
        .await
    }

    /// `POST path` with a JSON body.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        activity: &str,
        path: &str,
        body: &B,
    ) -> Result<T, OvhError> {
        let body = Some(to_body(activity, &format!("POST {path}"), body)?);
        self.call(Call {
            method: Method::POST,
            path,
            query: &[],
            body,
            authenticated: true,
            activity,
        })
        .await
    }

    /// `PUT path` with a JSON body.
    pub async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        activity: &str,
        path: &str,
        body: &B,
    ) -> Result<T, OvhError> {
        let body = Some(to_body(activity, &format!("PUT {path}"), body)?);
        self.call(Call {
            method: Method::PUT,
            path,
            query: &[],
            body,
            authenticated: true,
            activity,
        })
        .await
    }

    /// `DELETE path`.
    pub async fn delete<T: DeserializeOwned>(
        &self,
        activity: &str,
        path: &str,
    ) -> Result<T, OvhError> {
        self.call(Call {
            method: Method::DELETE,
            path,
            query: &[],
            body: None,
            authenticated: true,
            activity,
        })
        .await
    }

    /// `POST path` without a consumer key or signature (only `X-Ovh-Application`), for
    /// `/auth/credential`.
    pub async fn post_unauthenticated<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        activity: &str,
        path: &str,
        body: &B,
    ) -> Result<T, OvhError> {
        let body = Some(to_body(activity, &format!("POST {path}"), body)?);
        self.call(Call {
            method: Method::POST,
            path,
            query: &[],
            body,
            authenticated: false,
            activity,
        })
        .await
    }

    /// Seconds to add to the local clock to get the server's; read from `/auth/time` on first
    /// use, then kept (one read, however many tasks ask at once).
    pub async fn time_delta(&self) -> Result<i64, OvhError> {
        let mut delta = self.inner.time_delta.lock().await;
        if let Some(d) = *delta {
            return Ok(d);
        }
        let d = self.read_server_time().await?;
        *delta = Some(d);
        Ok(d)
    }

    /// Read `/auth/time` again (the clock moved, or the first read was stale).
    async fn resync_time(&self) -> Result<i64, OvhError> {
        let mut delta = self.inner.time_delta.lock().await;
        let d = self.read_server_time().await?;
        *delta = Some(d);
        Ok(d)
    }

    async fn read_server_time(&self) -> Result<i64, OvhError> {
        // Boxed: an unauthenticated call never comes back here, but the compiler cannot know
        // that `call` does not recurse.
        let server: i64 = Box::pin(self.call(Call {
            method: Method::GET,
            path: "/auth/time",
            query: &[],
            body: None,
            authenticated: false,
            activity: "reading the OVH server time",
        }))
        .await?;
        Ok(server - unix_now())
    }

    async fn call<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, OvhError> {
        let mut backoff = self.inner.retry.backoff();
        let mut resynced = false;
        loop {
            let (error, connected) = match self.attempt(&call).await {
                Ok(bytes) => return decode(&call, &bytes),
                Err(failure) => failure,
            };
            // A timestamp out of the server's window (`QUERY_TIME_OUT`), or a signature it
            // refuses, can be a clock that moved since `/auth/time` was read: read it again
            // once and resend (the server refused the call, so nothing was done).
            if call.authenticated
                && !resynced
                && matches!(
                    error.kind,
                    OvhErrorKind::ClockSkew | OvhErrorKind::InvalidSignature
                )
            {
                resynced = true;
                self.resync_time().await?;
                continue;
            }
            if !error.is_retryable(call.method.as_str(), connected) {
                return Err(error);
            }
            match self.inner.retry.pause(backoff.next(), error.retry_after) {
                Some(pause) => tokio::time::sleep(pause).await,
                None => return Err(error),
            }
        }
    }

    /// One attempt: the body bytes of a 2xx answer, or the error and whether the request may
    /// have reached the server.
    async fn attempt(&self, call: &Call<'_>) -> Result<Vec<u8>, (OvhError, bool)> {
        let inner = &self.inner;
        let name = call.name();
        let url = target_url(&inner.base_url, call.path, call.query);
        let url = reqwest::Url::parse(&url).map_err(|e| {
            (
                OvhError::new(
                    OvhErrorKind::Config,
                    call.activity,
                    name.as_str(),
                    e.to_string(),
                ),
                false,
            )
        })?;
        let body = call.body.clone().unwrap_or_default();
        let mut request = inner
            .http
            .request(call.method.clone(), url.clone())
            .header("X-Ovh-Application", &inner.application_key)
            .header("Accept", "application/json");
        let delta = if call.authenticated {
            Some(self.time_delta().await.map_err(|e| (e, false))?)
        } else {
            None
        };
        // The rate limiter's wait comes before the signature: the timestamp is the moment the
        // request leaves, however long it waited for its turn.
        inner.limiter.acquire().await;
        if let Some(pace) = inner.pace.get() {
            let wait = pace.reserve();
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        if let Some(delta) = delta {
            let Some(consumer_key) = &inner.consumer_key else {
                return Err((
                    OvhError::new(
                        OvhErrorKind::InvalidCredential,
                        call.activity,
                        name.as_str(),
                        "no consumer key: the call needs one (OVH answers \"You must login \
                         first\", NOT_CREDENTIAL); run `mailplan ovh login`, open the validation \
                         URL, then set OVH_CONSUMER_KEY or `consumer_key=` in ovh.conf",
                    ),
                    false,
                ));
            };
            let timestamp = unix_now() + delta;
            let signature = sign(
                &inner.application_secret,
                consumer_key,
                call.method.as_str(),
                url.as_str(),
                &body,
                timestamp,
            );
            request = request
                .header("X-Ovh-Consumer", consumer_key.expose())
                .header("X-Ovh-Timestamp", timestamp.to_string())
                .header("X-Ovh-Signature", signature);
        }
        if call.body.is_some() {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }

        let network = |e: &reqwest::Error, connected: bool| {
            (
                OvhError::new(
                    OvhErrorKind::Network,
                    call.activity,
                    name.as_str(),
                    network_message(e),
                ),
                connected,
            )
        };
        let response = request
            .send()
            .await
            .map_err(|e| network(&e, !e.is_connect()))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let query_id = header("X-Ovh-QueryID");
        let retry_after =
            header("Retry-After").and_then(|v| parse_retry_after(&v, SystemTime::now()));
        let bytes = response.bytes().await.map_err(|e| network(&e, true))?;
        if (200..300).contains(&status) {
            return Ok(bytes.to_vec());
        }
        Err((
            OvhError::from_response(call.activity, &name, status, query_id, retry_after, &bytes),
            true,
        ))
    }
}

fn to_body<B: Serialize + ?Sized>(
    activity: &str,
    call: &str,
    body: &B,
) -> Result<Vec<u8>, OvhError> {
    serde_json::to_vec(body).map_err(|e| {
        OvhError::new(
            OvhErrorKind::InvalidResponse,
            activity,
            call,
            format!("cannot serialise the request: {e}"),
        )
    })
}

/// Decode a 2xx body; an empty one (204, `void`) reads as JSON `null`. The serde message is not
/// quoted: it can contain a value of the answer, and `/auth/credential` answers a secret.
fn decode<T: DeserializeOwned>(call: &Call<'_>, bytes: &[u8]) -> Result<T, OvhError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| {
        OvhError::new(
            OvhErrorKind::InvalidResponse,
            call.activity,
            call.name(),
            format!(
                "the answer is not the expected JSON ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        )
    })
}

fn network_message(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    // reqwest's own text names the URL; the cause chain says what went wrong.
    let mut message = if e.is_timeout() {
        "no answer in time".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "the connection failed".to_owned()
    };
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// rustls with ring and the system's roots (the crypto provider the IMAP layer uses too). The
/// roots are only required, and only read, for an `https` endpoint.
fn tls_config(https: bool) -> Result<rustls::ClientConfig, OvhError> {
    let mut roots = rustls::RootCertStore::empty();
    if https {
        for cert in rustls_native_certs::load_native_certs().certs {
            // A certificate the system ships but rustls cannot parse is skipped, as browsers do.
            let _ = roots.add(cert);
        }
    }
    if https && roots.is_empty() {
        return Err(OvhError::config(
            "no trusted root certificate found on this system (install ca-certificates)",
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| OvhError::config(format!("TLS set-up: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AS: &str = "9ufkBmLaTQ9nz5yMUlg79taH0GNnzDjk";
    const CK: &str = "5mBuy6SUQcRw2ZUxg0cG68BoDKpED4KY";
    const URL: &str = "https://eu.api.ovh.com/1.0/auth";

    #[test]
    fn signature_test_vectors_of_python_ovh() {
        let (s, c) = (Secret::new(AS), Secret::new(CK));
        let body = br#"{"a":"b","c":"d"}"#;
        assert_eq!(
            sign(&s, &c, "GET", URL, b"", 1_457_018_875),
            "$1$e9556054b6309771395efa467c22e627407461ad"
        );
        assert_eq!(
            sign(&s, &c, "POST", URL, body, 1_457_018_875),
            "$1$ec2fb5c7a81f64723c77d2e5b609ae6f58a84fc1"
        );
        assert_eq!(
            sign(&s, &c, "PUT", URL, body, 1_457_018_875),
            "$1$8a75a9e7c8e7296c9dbeda6a2a735eb6bd58ec4b"
        );
        assert_eq!(
            sign(&s, &c, "DELETE", URL, b"", 1_457_018_875),
            "$1$a1eecd00b3b02b6cf5708b84b9ff42059a950d85"
        );
        // The method is upper-cased before hashing.
        assert_eq!(
            sign(&s, &c, "get", URL, b"", 1_457_018_875),
            "$1$e9556054b6309771395efa467c22e627407461ad"
        );
    }

    #[test]
    fn the_body_bytes_are_compact_json_as_python_ovh_sends() {
        #[derive(Serialize)]
        struct B<'a> {
            a: &'a str,
            c: &'a str,
        }
        let bytes = to_body("x", "POST /auth", &B { a: "b", c: "d" }).expect("serialises");
        assert_eq!(bytes, br#"{"a":"b","c":"d"}"#);
    }

    #[test]
    fn urls_encode_the_query_and_keep_addresses_readable() {
        assert_eq!(
            target_url(
                "https://eu.api.ovh.com/1.0",
                "/email/domain/x/account",
                &[("accountName", "%foo%")]
            ),
            "https://eu.api.ovh.com/1.0/email/domain/x/account?accountName=%25foo%25"
        );
        assert_eq!(
            target_url(
                "http://127.0.0.1:1/1.0",
                &format!("/email/domain/acme.fr/account/{}/migrate", segment("john")),
                &[("type", "HOSTED EXCHANGE")]
            ),
            "http://127.0.0.1:1/1.0/email/domain/acme.fr/account/john/migrate?type=HOSTED%20EXCHANGE"
        );
        assert_eq!(segment("ab12@configureme.me"), "ab12@configureme.me");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(
            target_url("https://eu.api.ovh.com/1.0", "/v2/iam/policy", &[]),
            "https://eu.api.ovh.com/v2/iam/policy"
        );
        // reqwest sends what was signed: parsing leaves the encoded URL as it is.
        let url = "https://eu.api.ovh.com/1.0/email/exchange/o/service/s/account?primaryEmailAddress=%25%40configureme.me";
        assert_eq!(reqwest::Url::parse(url).expect("parses").as_str(), url);
        let url = "http://127.0.0.1:1/1.0/email/mxplan/m/account/john@acme.fr";
        assert_eq!(reqwest::Url::parse(url).expect("parses").as_str(), url);
    }

    #[test]
    fn backoff_doubles_is_capped_jittered_and_bounded() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        };
        // Five attempts: four pauses, each a random point of [d/2, d) for d = 1, 2, 4, 5 s.
        for _ in 0..100 {
            let pauses: Vec<Duration> = p.backoff().collect();
            assert_eq!(pauses.len(), 4, "five attempts were made: {pauses:?}");
            for (pause, d) in pauses.iter().zip([1000, 2000, 4000, 5000]) {
                let d = Duration::from_millis(d);
                assert!(
                    *pause >= d / 2 && *pause < d,
                    "{pause:?} not in [{d:?}/2, {d:?})"
                );
            }
        }
        // Jittered: tasks that failed together do not all come back together.
        let firsts: std::collections::BTreeSet<Duration> =
            (0..20).filter_map(|_| p.backoff().next()).collect();
        assert!(firsts.len() > 1, "{firsts:?}");
        let one = Some(Duration::from_secs(1));
        assert_eq!(p.pause(one, None), one);
        assert_eq!(p.pause(None, None), None, "the attempts are spent");
        let asked = p
            .pause(one, Some(Duration::from_secs(7)))
            .expect("Retry-After honoured");
        assert!(asked >= Duration::from_secs(7) && asked <= Duration::from_millis(7250));
        assert_eq!(p.pause(one, Some(Duration::from_secs(31))), None);
        assert_eq!(p.pause(None, Some(Duration::from_secs(7))), None);
    }

    #[test]
    fn retry_after_seconds_and_http_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_767); // Sun, 06 Nov 1994 08:49:27 GMT
        assert_eq!(parse_retry_after("12", now), Some(Duration::from_secs(12)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn the_quota_allows_a_burst_then_spaces_requests_at_the_rate() {
        use governor::clock::{Clock as _, FakeRelativeClock};
        type Limiter = governor::RateLimiter<
            governor::state::NotKeyed,
            governor::state::InMemoryState,
            FakeRelativeClock,
            governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
        >;
        assert!(quota(0, 3).is_none(), "0 a minute: no limit");
        let clock = FakeRelativeClock::default();
        let limiter =
            governor::RateLimiter::direct_with_clock(quota(30, 3).expect("a quota"), clock.clone());
        let wait = |limiter: &Limiter| {
            limiter
                .check()
                .err()
                .map(|not_until| not_until.wait_time_from(clock.now()))
        };
        for _ in 0..3 {
            assert_eq!(wait(&limiter), None);
        }
        // 30/min = one every 2 s.
        assert_eq!(wait(&limiter), Some(Duration::from_secs(2)));
        clock.advance(Duration::from_secs(2));
        assert_eq!(wait(&limiter), None);
        assert_eq!(wait(&limiter), Some(Duration::from_secs(2)));
        // Never more than the burst after a long pause.
        clock.advance(Duration::from_secs(3600));
        for _ in 0..3 {
            assert_eq!(wait(&limiter), None);
        }
        assert!(wait(&limiter).is_some());
        // A burst of 0 is a burst of 1.
        let one =
            governor::RateLimiter::direct_with_clock(quota(30, 0).expect("a quota"), clock.clone());
        assert_eq!(wait(&one), None);
        assert_eq!(wait(&one), Some(Duration::from_secs(2)));
    }
}
