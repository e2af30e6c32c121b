//! The HTTP side: hyper on a tokio listener, one [`Request`] in, one [`Reply`] out, every call
//! recorded, faults injected, `X-Ovh-QueryID` on every response.
//!
//! Entry points: [`serve`] (the accept loop, run by [`crate::Simulator`] on its own thread) and
//! [`handle`] (synchronous: authentication, faults, routing to [`crate::legacy`],
//! [`crate::mxplan`] and [`crate::exchange`]). The whole state sits behind one mutex that no
//! handler holds across an `.await`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::auth::Verdict;
use crate::faults::{Fault, FaultKind};
use crate::http::{RecordedRequest, Reply, Request, percent_decode};
use crate::state::State;

/// Largest request body accepted.
const MAX_BODY: usize = 1 << 20;
/// How often pending tasks are advanced when no request comes.
const TICK: Duration = Duration::from_millis(10);

/// What the server thread shares with the [`crate::Simulator`] handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub log: Mutex<Vec<RecordedRequest>>,
    pub faults: Mutex<Vec<Fault>>,
    pub echo: AtomicBool,
    seq: AtomicU64,
}

impl Shared {
    pub fn new(state: State) -> Self {
        Shared {
            state: Mutex::new(state),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            echo: AtomicBool::new(false),
            seq: AtomicU64::new(0),
        }
    }

    /// The state, even when a handler panicked while holding it (a test then sees the panic).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn log(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn faults(&self) -> MutexGuard<'_, Vec<Fault>> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Accepts connections until `shutdown` fires; advances tasks every [`TICK`].
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("ovh-sim: cannot listen: {err}");
            return;
        }
    };
    let ticker_shared = Arc::clone(&shared);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(TICK);
        loop {
            interval.tick().await;
            ticker_shared.state().advance(Instant::now());
        }
    });
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, Infallible>(respond(&shared, request).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

async fn respond(
    shared: &Shared,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => {
            return build(
                shared,
                Reply::bad_request("The request body is too large or was cut"),
            );
        }
    };
    let request = Request {
        method: parts.method.as_str().to_ascii_uppercase(),
        target: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let reply = handle(shared, &request);
    let query_id = format!(
        "EU.ext-sim.{:08x}.{}.{:04}",
        crate::clock::now_unix(),
        std::process::id(),
        shared.seq.fetch_add(1, Ordering::Relaxed)
    );
    let api_target = request
        .target
        .strip_prefix("/1.0")
        .unwrap_or(&request.target)
        .to_owned();
    let record = RecordedRequest {
        method: request.method.clone(),
        path: api_target,
        body: String::from_utf8_lossy(&request.body).into_owned(),
        status: reply.status,
        response: String::from_utf8_lossy(&reply.body).into_owned(),
        at: SystemTime::now(),
        consumer_key: request.header("x-ovh-consumer").map(str::to_owned),
        query_id: query_id.clone(),
    };
    if shared.echo.load(Ordering::Relaxed) {
        eprintln!("{} {} -> {}", record.method, record.path, record.status);
    }
    shared.log().push(record);
    let mut response = build(shared, reply);
    if let Ok(value) = hyper::header::HeaderValue::from_str(&query_id) {
        response.headers_mut().insert("x-ovh-queryid", value);
    }
    response
}

fn build(_shared: &Shared, reply: Reply) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(reply.content_type),
    );
    if let Some(seconds) = reply.retry_after {
        headers.insert(hyper::header::RETRY_AFTER, seconds.into());
    }
    if let Some(reason) = reply.reason {
        response
            .extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(reason.as_bytes()));
    }
    response
}

/// Authenticates, injects faults and routes one request.
pub(crate) fn handle(shared: &Shared, request: &Request) -> Reply {
    let raw_path = request.raw_path().to_owned();
    let mut state = shared.state();
    state.advance(Instant::now());
    if request.method == "GET" && (raw_path == "/auth/" || raw_path == "/auth") {
        let token = request.query("credentialToken").unwrap_or_default();
        return state.credentials.validate_token(&token);
    }
    let Some(api_path) = raw_path
        .strip_prefix("/1.0")
        .or_else(|| raw_path.strip_prefix("/v1"))
    else {
        return Reply::not_found("Got an invalid (or empty) URL");
    };
    let api_path = api_path.to_owned();
    match (request.method.as_str(), api_path.as_str()) {
        ("GET", "/auth/time") => return Reply::ok(json!(state.credentials.server_time())),
        ("POST", "/auth/credential") => return state.credentials.request_credential(request),
        _ => {}
    }
    let consumer = match state.credentials.check(request, &api_path) {
        Verdict::Allowed(consumer) => consumer,
        Verdict::Refused(reply) => return reply,
    };
    if let Some(wait) = state.credentials.over_rate(&consumer, Instant::now()) {
        let mut reply = Reply::json(429, json!({"message": "Too many requests"}));
        reply.retry_after = Some(wait);
        return reply;
    }
    if let Some(reply) = take_request_fault(shared, &request.method, &api_path) {
        return reply;
    }
    state.begin_call(task_faults(shared, &request.method, &api_path));
    let segments: Vec<String> = api_path
        .split('/')
        .skip(1)
        .map(|segment| percent_decode(segment, false))
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = request.method.as_str();
    let reply = match segments.as_slice() {
        ["auth", "currentCredential"] if method == "GET" => state.credentials.current(&consumer),
        ["email", "domain", rest @ ..] => crate::legacy::route(&mut state, request, rest),
        ["email", "mxplan", rest @ ..] => crate::mxplan::route(&mut state, request, rest),
        ["email", "exchange", rest @ ..] => crate::exchange::route(&mut state, request, rest),
        _ => Reply::not_found("Got an invalid (or empty) URL"),
    };
    if state.end_call() {
        consume_task_faults(shared, method, &api_path);
    }
    reply
}

fn take_request_fault(shared: &Shared, method: &str, path: &str) -> Option<Reply> {
    let mut faults = shared.faults();
    let index = faults
        .iter()
        .position(|fault| fault.kind.is_request_fault() && fault.matches(method, path))?;
    let kind = faults[index].kind.clone();
    faults[index].times -= 1;
    if faults[index].times == 0 {
        faults.remove(index);
    }
    drop(faults);
    Some(kind.reply(path))
}

/// The task faults that apply to this call's tasks (consumed only if it makes one).
fn task_faults(shared: &Shared, method: &str, path: &str) -> Vec<FaultKind> {
    shared
        .faults()
        .iter()
        .filter(|fault| !fault.kind.is_request_fault() && fault.matches(method, path))
        .map(|fault| fault.kind.clone())
        .collect()
}

fn consume_task_faults(shared: &Shared, method: &str, path: &str) {
    shared.faults().retain_mut(|fault| {
        if !fault.kind.is_request_fault() && fault.matches(method, path) {
            fault.times -= 1;
            fault.times > 0
        } else {
            true
        }
    });
}
