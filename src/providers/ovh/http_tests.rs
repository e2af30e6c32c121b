//! The client over real HTTP: a tiny HTTP/1.1 server on 127.0.0.1 answers canned responses and
//! records each request (method, target, headers, body), so the tests can check the signature
//! headers, the retries, `Retry-After`, the errors' query id and the task polling rules. The
//! full OVH simulator replaces it in the integration tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::api::{auth, exchange};
use super::client::{Client, ClientOptions, RetryPolicy, sign};
use super::config::{Credentials, Endpoint, Origin};
use super::error::OvhErrorKind;
use super::tasks::{self, LegacyTaskList, PollOptions, TaskRef, TaskStatus};
use crate::plan::secret::Secret;

const AK: &str = "test-application-key";
const AS: &str = "test-application-secret";
const CK: &str = "test-consumer-key";
const SERVER_TIME: i64 = 1_457_018_875;

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    target: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// `(status, extra headers, body)`.
type Answer = (u16, Vec<(&'static str, String)>, String);
type Responder = dyn Fn(&Recorded, usize) -> Answer + Send + Sync;

struct Server {
    base: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    /// Serve with `respond(request, n)`, `n` counting the requests to the same path before this
    /// one. `/1.0/auth/time` always answers [`SERVER_TIME`].
    async fn start(respond: impl Fn(&Recorded, usize) -> Answer + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}/1.0", listener.local_addr().expect("addr"));
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let respond: Arc<Responder> = Arc::new(respond);
        let log = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (log, respond) = (log.clone(), respond.clone());
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut socket).await else {
                        return;
                    };
                    let (status, headers, body) = if request.target == "/1.0/auth/time" {
                        (200, vec![], SERVER_TIME.to_string())
                    } else {
                        let path = request.target.split('?').next().unwrap_or("").to_owned();
                        let n = log
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .iter()
                            .filter(|r| r.target.split('?').next() == Some(path.as_str()))
                            .count();
                        respond(&request, n)
                    };
                    log.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(request);
                    let mut out = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\
                         Content-Type: application/json\r\n",
                        body.len()
                    );
                    for (name, value) in headers {
                        out.push_str(name);
                        out.push_str(": ");
                        out.push_str(&value);
                        out.push_str("\r\n");
                    }
                    out.push_str("\r\n");
                    out.push_str(&body);
                    let _ = socket.write_all(out.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Server { base, requests }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Requests other than `/auth/time`.
    fn calls(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.target != "/1.0/auth/time")
            .collect()
    }

    fn client(&self) -> Client {
        self.client_with(fast_retries())
    }

    fn client_with(&self, retry: RetryPolicy) -> Client {
        Client::new(
            credentials(&self.base),
            ClientOptions {
                requests_per_minute: 0,
                burst: 1,
                retry,
                timeout: Duration::from_secs(10),
            },
        )
        .expect("client")
    }
}

fn credentials(base: &str) -> Credentials {
    Credentials {
        endpoint: Endpoint::parse(base).expect("endpoint"),
        endpoint_origin: Origin::Explicit,
        application_key: AK.into(),
        application_secret: Secret::new(AS),
        consumer_key: Some(Secret::new(CK)),
        consumer_key_origin: Some(Origin::Explicit),
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(2),
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Recorded> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while data.len() < head_end + length {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    Some(Recorded {
        method,
        target,
        headers,
        body: data[head_end..].to_vec(),
    })
}

fn ok(body: &str) -> Answer {
    (200, vec![], body.to_owned())
}

#[tokio::test]
async fn requests_carry_headers_signed_over_the_exact_url_and_body() {
    let server = Server::start(|_, _| ok("null")).await;
    let client = server.client();
    let origin = server.base.trim_end_matches("/1.0").to_owned();
    let _: serde_json::Value = client
        .get(
            "listing",
            "/email/domain/acme.fr/account",
            &[("accountName", "%jo hn%")],
        )
        .await
        .expect("get");
    let update = exchange::AccountUpdate {
        login: "jöhn".into(),
        domain: "acme.fr".into(),
        display_name: None,
    };
    client
        .put::<_, ()>(
            "configuring",
            "/email/exchange/o/service/s/account/x@configureme.me",
            &update,
        )
        .await
        .expect("put");

    let all = server.requests();
    assert_eq!(
        all.iter().filter(|r| r.target == "/1.0/auth/time").count(),
        1,
        "the server time is read once"
    );
    let calls = server.calls();
    assert_eq!(calls.len(), 2);
    for r in &calls {
        assert_eq!(r.headers["x-ovh-application"], AK);
        assert_eq!(r.headers["x-ovh-consumer"], CK);
        let ts: i64 = r.headers["x-ovh-timestamp"].parse().expect("a number");
        // The server's clock, not ours (ours is years ahead of the fixed server time).
        assert!((ts - SERVER_TIME).abs() <= 5, "{ts}");
        let url = format!("{origin}{}", r.target);
        assert_eq!(
            r.headers["x-ovh-signature"],
            sign(
                &Secret::new(AS),
                &Secret::new(CK),
                &r.method,
                &url,
                &r.body,
                ts
            ),
            "{} {url}",
            r.method
        );
    }
    assert_eq!(
        calls[0].target,
        "/1.0/email/domain/acme.fr/account?accountName=%25jo%20hn%25"
    );
    assert!(calls[0].body.is_empty());
    assert!(!calls[0].headers.contains_key("content-type"));
    assert_eq!(calls[1].method, "PUT");
    assert_eq!(
        calls[1].body,
        r#"{"login":"jöhn","domain":"acme.fr"}"#.as_bytes()
    );
    assert_eq!(calls[1].headers["content-type"], "application/json");
}

#[tokio::test]
async fn rate_limited_busy_and_server_errors_are_retried_and_retry_after_is_honoured() {
    let server = Server::start(|r, n| match (r.target.as_str(), n) {
        ("/1.0/a", 0) => (
            429,
            vec![("Retry-After", "1".to_owned())],
            r#"{"message":"Too many requests"}"#.into(),
        ),
        ("/1.0/b", 0) => (
            409,
            vec![],
            r#"{"message":"This pop is already being processed: john@acme.fr, please try later"}"#
                .into(),
        ),
        ("/1.0/c", 0 | 1) => (500, vec![], r#"{"message":"Internal Server Error"}"#.into()),
        _ => ok("42"),
    })
    .await;
    let client = server.client();
    let started = std::time::Instant::now();
    let got: u32 = client.get("a", "/a", &[]).await.expect("after 429");
    assert_eq!(got, 42);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    let got: u32 = client
        .post("b", "/b", &serde_json::json!({}))
        .await
        .expect("after 409");
    assert_eq!(got, 42);
    let got: u32 = client.get("c", "/c", &[]).await.expect("after two 500s");
    assert_eq!(got, 42);
    let targets: Vec<String> = server.calls().into_iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        [
            "/1.0/a", "/1.0/a", "/1.0/b", "/1.0/b", "/1.0/c", "/1.0/c", "/1.0/c"
        ]
    );
}

#[tokio::test]
async fn retries_are_bounded_and_a_post_is_not_repeated_after_a_500() {
    let server = Server::start(|r, _| {
        if r.target == "/1.0/post" {
            (500, vec![], r#"{"message":"boom"}"#.into())
        } else {
            (
                503,
                vec![("X-Ovh-QueryID", "EU.ext-1.x".into())],
                String::new(),
            )
        }
    })
    .await;
    let client = server.client();
    let e = client
        .get::<()>("reading", "/always", &[])
        .await
        .expect_err("gives up");
    assert_eq!(e.kind, OvhErrorKind::Server);
    assert_eq!(e.status, Some(503));
    let e = client
        .post::<_, ()>(
            "migrating john",
            "/post",
            &serde_json::json!({"password": "x"}),
        )
        .await
        .expect_err("not repeated");
    assert_eq!(e.kind, OvhErrorKind::Server);
    let calls = server.calls();
    assert_eq!(
        calls.iter().filter(|r| r.target == "/1.0/always").count(),
        4
    );
    assert_eq!(calls.iter().filter(|r| r.target == "/1.0/post").count(), 1);
    assert!(!e.to_string().contains("\"x\""), "no body in {e}");
}

#[tokio::test]
async fn a_retry_after_beyond_the_bound_is_not_waited_for() {
    let server = Server::start(|_, _| {
        (
            429,
            vec![("Retry-After", "3600".to_owned())],
            r#"{"message":"slow down"}"#.into(),
        )
    })
    .await;
    let e = server
        .client()
        .get::<()>("reading", "/x", &[])
        .await
        .expect_err("429");
    assert_eq!(e.kind, OvhErrorKind::RateLimited);
    assert_eq!(e.retry_after, Some(Duration::from_secs(3600)));
    assert_eq!(server.calls().len(), 1);
}

#[tokio::test]
async fn errors_name_the_call_the_activity_the_api_words_and_the_query_id() {
    let server = Server::start(|_, _| {
        (
            404,
            vec![("X-Ovh-QueryID", "FR.ws-8.5860f657.4632.0180".into())],
            r#"{"class":"Client::NotFound","message":"The requested object (primaryEmailAddress = john@acme.fr) does not exist"}"#
                .into(),
        )
    })
    .await;
    let svc = exchange::Service {
        organization: "hosted-ab1".into(),
        service: "hosted-ab1".into(),
    };
    let e = exchange::get_account(
        &server.client(),
        "configuring john@acme.fr",
        &svc,
        "john@acme.fr",
    )
    .await
    .expect_err("404");
    assert_eq!(e.kind, OvhErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        "OVH API while configuring john@acme.fr: GET \
         /email/exchange/hosted-ab1/service/hosted-ab1/account/john@acme.fr: 404 The requested \
         object (primaryEmailAddress = john@acme.fr) does not exist (Client::NotFound, query \
         FR.ws-8.5860f657.4632.0180)"
    );
    assert_eq!(server.calls().len(), 1, "404 is not retried");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_network_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}/1.0", listener.local_addr().expect("addr"));
    drop(listener);
    let client = Client::new(
        credentials(&base),
        ClientOptions {
            requests_per_minute: 0,
            retry: RetryPolicy {
                max_attempts: 2,
                ..fast_retries()
            },
            ..ClientOptions::default()
        },
    )
    .expect("client");
    let e = client
        .get::<()>("reading", "/x", &[])
        .await
        .expect_err("refused");
    assert_eq!(e.kind, OvhErrorKind::Network);
    assert_eq!(e.kind.code(), "ovh::network");
}

#[tokio::test]
async fn credential_requests_are_unsigned_and_the_key_stays_secret() {
    let server = Server::start(|_, _| {
        ok(r#"{"consumerKey":"fresh-ck","state":"pendingValidation","validationUrl":"https://eu.api.ovh.com/auth/?credentialToken=t"}"#)
    })
    .await;
    let request = auth::CredentialRequest {
        access_rules: auth::ACCESS_RULES.to_vec(),
        redirection: None,
    };
    let pending = auth::request_credential(&server.client(), "creating a consumer key", &request)
        .await
        .expect("credential");
    assert_eq!(pending.consumer_key.expose(), "fresh-ck");
    assert_eq!(format!("{pending:?}").matches("fresh-ck").count(), 0);
    assert_eq!(pending.state, "pendingValidation");
    let r = &server.requests()[0];
    assert_eq!(r.target, "/1.0/auth/credential", "no /auth/time first");
    assert_eq!(r.headers["x-ovh-application"], AK);
    assert!(!r.headers.contains_key("x-ovh-signature"));
    assert!(!r.headers.contains_key("x-ovh-consumer"));
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(
        body["accessRules"][0],
        serde_json::json!({"method": "GET", "path": "/email/exchange/*/service/*"})
    );
}

fn quick_polls() -> PollOptions {
    PollOptions {
        initial_interval: Duration::from_millis(5),
        factor: 1.0,
        max_interval: Duration::from_millis(5),
        timeout: Duration::from_secs(10),
        lost_after: 2,
    }
}

#[tokio::test]
async fn legacy_tasks_are_done_when_they_vanish() {
    let server = Server::start(|_, n| {
        if n < 2 {
            ok(r#"{"id":12,"action":"migration","date":"2024-06-01T10:00:00+02:00","domain":"acme.fr","name":"john"}"#)
        } else {
            (404, vec![], r#"{"message":"The requested object (id = 12) does not exist"}"#.into())
        }
    })
    .await;
    let task = TaskRef::Legacy {
        domain: "acme.fr".into(),
        list: LegacyTaskList::Account,
        id: "12".into(),
    };
    let done = tasks::wait(
        &server.client(),
        "migrating john@acme.fr",
        &task,
        &quick_polls(),
        &CancellationToken::new(),
    )
    .await
    .expect("done");
    assert_eq!(done, None);
    assert_eq!(server.calls().len(), 3);
}

#[tokio::test]
async fn status_tasks_end_on_done_and_fail_on_error() {
    let server = Server::start(|r, n| {
        let status = match (r.target.as_str(), n) {
            (_, 0) => "todo",
            (_, 1) => "doing",
            ("/1.0/email/mxplan/mx/task/1", _) => "done",
            _ => "error",
        };
        ok(&format!(
            r#"{{"id":1,"function":"setAccount","status":"{status}","todoDate":"2024-06-01T10:00:00+02:00","finishDate":null}}"#
        ))
    })
    .await;
    let client = server.client();
    let cancel = CancellationToken::new();
    let done = tasks::wait(
        &client,
        "renaming john@acme.fr",
        &TaskRef::Mxplan {
            service: "mx".into(),
            id: 1,
        },
        &quick_polls(),
        &cancel,
    )
    .await
    .expect("done")
    .expect("a task");
    assert_eq!(done.status, TaskStatus::Done);
    let e = tasks::wait(
        &client,
        "configuring john@acme.fr",
        &TaskRef::Exchange {
            organization: "o".into(),
            service: "s".into(),
            id: 1,
        },
        &quick_polls(),
        &cancel,
    )
    .await
    .expect_err("error");
    assert_eq!(e.kind, OvhErrorKind::TaskFailed);
    assert!(
        e.to_string().contains("task 1 (setAccount) ended in error"),
        "{e}"
    );
}

#[tokio::test]
async fn a_status_task_that_disappears_is_lost_not_done() {
    let server =
        Server::start(|_, _| (404, vec![], r#"{"message":"does not exist"}"#.into())).await;
    let e = tasks::wait(
        &server.client(),
        "renaming",
        &TaskRef::Mxplan {
            service: "mx".into(),
            id: 9,
        },
        &quick_polls(),
        &CancellationToken::new(),
    )
    .await
    .expect_err("lost");
    assert_eq!(e.kind, OvhErrorKind::TaskLost);
    let polls = server
        .calls()
        .iter()
        .filter(|r| r.target.ends_with("/task/9"))
        .count();
    assert_eq!(polls, 2);
}

#[tokio::test]
async fn a_status_task_gone_from_the_pending_list_after_it_ran_is_done() {
    // Seen doing, then dropped: 404 by id, and the service's task list no longer names it.
    let server = Server::start(|r, n| {
        if r.target.ends_with("/task/9") && n == 0 {
            ok(r#"{"id":9,"function":"setAccount","status":"doing"}"#)
        } else if r.target.ends_with("/task/9") {
            (
                404,
                vec![],
                r#"{"message":"The requested object (id = 9) does not exist"}"#.into(),
            )
        } else {
            ok("[3]")
        }
    })
    .await;
    let done = tasks::wait(
        &server.client(),
        "renaming",
        &TaskRef::Mxplan {
            service: "mx".into(),
            id: 9,
        },
        &quick_polls(),
        &CancellationToken::new(),
    )
    .await
    .expect("done, not lost");
    assert_eq!(done, None);
    assert!(
        server
            .calls()
            .iter()
            .any(|r| r.target == "/1.0/email/mxplan/mx/task"),
        "the list was read"
    );
}

#[tokio::test]
async fn a_timestamp_refusal_reads_the_server_time_again_once_then_resends() {
    const SKEW: &str = r#"{"errorCode":"QUERY_TIME_OUT","httpCode":"400 Bad Request","message":"Query out of time"}"#;
    // Refused once: the time is read again and the call resent.
    let server = Server::start(|_, n| {
        if n == 0 {
            (400, vec![], SKEW.into())
        } else {
            ok("[]")
        }
    })
    .await;
    let client = server.client();
    let _: serde_json::Value = client
        .get("listing", "/email/mxplan", &[])
        .await
        .expect("resent after the time was read again");
    let times = |s: &Server| {
        s.requests()
            .iter()
            .filter(|r| r.target == "/1.0/auth/time")
            .count()
    };
    assert_eq!(times(&server), 2);
    assert_eq!(server.calls().len(), 2);

    // Refused again: one more read only, then the error with its own code.
    let server = Server::start(|_, _| (400, vec![], SKEW.into())).await;
    let e = server
        .client()
        .get::<serde_json::Value>("listing", "/email/mxplan", &[])
        .await
        .expect_err("still refused");
    assert_eq!(e.kind, OvhErrorKind::ClockSkew);
    assert_eq!(e.kind.code(), "ovh::clock_skew");
    assert_eq!(times(&server), 2);
    assert_eq!(server.calls().len(), 2);
}

#[tokio::test]
async fn a_request_is_signed_when_it_leaves_after_its_rate_limiter_wait() {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    // Each call's timestamp and when it arrived.
    let seen: Arc<Mutex<Vec<(i64, f64)>>> = Arc::default();
    let log = seen.clone();
    let server = Server::start(move |r, _| {
        let stamp = r.headers["x-ovh-timestamp"].parse().expect("a number");
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((stamp, now()));
        ok("[]")
    })
    .await;
    // 30 a minute, one at a time: `/auth/time` takes the first turn, so each call waits about
    // two seconds for its own.
    let client = Client::new(
        credentials(&server.base),
        ClientOptions {
            requests_per_minute: 30,
            burst: 1,
            retry: fast_retries(),
            timeout: Duration::from_secs(10),
        },
    )
    .expect("client");
    let start = now();
    for _ in 0..2 {
        let _: serde_json::Value = client
            .get("listing", "/email/mxplan", &[])
            .await
            .expect("get");
    }
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    assert_eq!(seen.len(), 2);
    for (stamp, arrived) in seen {
        // The server clock read at `start` is SERVER_TIME: a request signed when it leaves
        // carries SERVER_TIME plus the time since then.
        #[allow(clippy::cast_precision_loss)]
        let late = (arrived - start) - (stamp - SERVER_TIME) as f64;
        assert!(
            late.abs() < 1.5,
            "signed {late:.1} s before it was sent (timestamp {stamp})"
        );
    }
}

#[tokio::test]
async fn a_missing_consumer_key_gets_the_words_of_the_api_and_what_to_do() {
    let server = Server::start(|_, _| ok("[]")).await;
    let mut creds = credentials(&server.base);
    creds.consumer_key = None;
    let client = Client::new(creds, ClientOptions::default()).expect("client");
    let e = client
        .get::<serde_json::Value>("listing", "/email/mxplan", &[])
        .await
        .expect_err("no key");
    assert_eq!(e.kind, OvhErrorKind::InvalidCredential);
    let text = e.to_string();
    assert!(
        text.contains("You must login first") && text.contains("mailplan ovh login"),
        "{text}"
    );
    assert!(server.calls().is_empty(), "nothing was sent");
}

#[test]
fn an_https_endpoint_builds_with_the_system_roots_and_ring() {
    let client = Client::new(
        credentials("https://eu.api.ovh.com/1.0"),
        ClientOptions::default(),
    )
    .expect("builds without a process-wide crypto provider");
    assert_eq!(client.base_url(), "https://eu.api.ovh.com/1.0");
}
