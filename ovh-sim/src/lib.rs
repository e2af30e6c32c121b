//! ovh-sim: a local simulator of the `OVHcloud` API for mailplan's tests and demo.
//!
//! [`Simulator::start`] serves HTTP on `127.0.0.1` (a free port) from its own thread and tokio
//! runtime, so synchronous tests and async code can both use it; it stops when dropped. It checks
//! signatures and access rules like the real API, answers with the real models, runs tasks
//! asynchronously (their effects applied when they end, in a Dovecot passwd-file and maildirs
//! when the fixture has a mail backend), records every request and injects faults on demand.
//!
//! Modules:
//! - [`fixture`]: the scenario format (YAML or JSON), documented in `ovh-sim/README.md`.
//! - `auth`: signature (`$1$` SHA-1), consumer keys and access rules, `/auth/*`.
//! - `server`: hyper glue, recording, fault injection, routing.
//! - `state`: the simulated world and the task engine.
//! - `legacy` (`/email/domain`), `mxplan` (`/email/mxplan`), `exchange` (`/email/exchange`), and
//!   `service` (what MX Plan and Exchange share).
//! - `mail`: the Dovecot-backed mailboxes.

pub mod fixture;

mod auth;
mod exchange;
mod legacy;
mod mail;
mod mxplan;
mod server;
mod service;
mod state;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

pub use auth::signature;
pub use fixture::{CredentialState, Fixture, FixtureError};

use server::{Reply, Shared};
use state::State;

/// One request the simulator answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `PUT`, `DELETE`.
    pub method: String,
    /// The path after the `/1.0` prefix, with its query as sent (still percent-encoded), e.g.
    /// `/email/exchange/org/service/svc/account?primaryEmailAddress=%25%40configureme.me`.
    pub path: String,
    /// The body as received.
    pub body: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The body answered.
    pub response: String,
    /// When it was answered.
    pub at: SystemTime,
    /// `X-Ovh-Consumer`, when the request had one.
    pub consumer_key: Option<String>,
    /// The `X-Ovh-QueryID` answered.
    pub query_id: String,
}

impl RecordedRequest {
    /// Whether the request could change something (`POST`, `PUT`, `DELETE`).
    pub fn is_mutating(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "DELETE")
    }

    /// The path without its query.
    pub fn path_only(&self) -> &str {
        self.path
            .split_once('?')
            .map_or(&self.path, |(path, _)| path)
    }
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// 429 `{"message": "Too many requests"}` with `Retry-After: N`.
    TooManyRequests {
        /// The `Retry-After` value, in seconds.
        retry_after_secs: u64,
    },
    /// 409 "… already being processed …".
    AlreadyProcessing,
    /// 500 `{"class": "Server::InternalServerError", …}`.
    ServerError,
    /// 404 `{"class": "Client::NotFound", …}` naming the path's last segment but one: the object
    /// went away between a listing and this call (another admin, another step).
    Gone,
    /// The tasks the matching calls make take this long in each state.
    SlowTasks {
        /// Milliseconds in `todo`.
        todo_ms: u64,
        /// Milliseconds in `doing`.
        doing_ms: u64,
    },
    /// The tasks the matching calls make end in `error` (their effects not applied).
    FailingTasks,
}

impl FaultKind {
    fn is_request_fault(&self) -> bool {
        matches!(
            self,
            FaultKind::TooManyRequests { .. }
                | FaultKind::AlreadyProcessing
                | FaultKind::ServerError
                | FaultKind::Gone
        )
    }

    fn reply(&self, path: &str) -> Reply {
        match self {
            FaultKind::TooManyRequests { retry_after_secs } => {
                let mut reply =
                    Reply::json(429, serde_json::json!({"message": "Too many requests"}));
                reply.retry_after = Some(*retry_after_secs);
                reply
            }
            FaultKind::AlreadyProcessing => {
                let subject = path.rsplit('/').next().unwrap_or(path);
                Reply::busy(subject)
            }
            FaultKind::Gone => {
                let mut segments = path.trim_end_matches('/').rsplit('/');
                let last = segments.next().unwrap_or(path);
                let object = segments
                    .next()
                    .filter(|_| last.chars().all(char::is_alphabetic));
                Reply::not_found(&format!(
                    "The requested object ({}) does not exist",
                    object.unwrap_or(last)
                ))
            }
            _ => Reply::error(500, "Server::InternalServerError", "Internal server error"),
        }
    }
}

/// A fault to inject: the next `times` authenticated calls whose method and path match answer
/// with it (request faults), or have their tasks changed by it (task faults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// Only calls with this method; `None`: any.
    pub method: Option<String>,
    /// Only calls whose path (after `/1.0`, without query) starts with this.
    pub path_prefix: String,
    /// How many calls it applies to.
    pub times: u32,
}

impl Fault {
    fn new(kind: FaultKind) -> Fault {
        Fault {
            kind,
            method: None,
            path_prefix: "/".to_owned(),
            times: 1,
        }
    }

    /// 429 with `Retry-After`.
    pub fn too_many_requests(retry_after_secs: u64) -> Fault {
        Fault::new(FaultKind::TooManyRequests { retry_after_secs })
    }

    /// 409 "already being processed".
    pub fn already_processing() -> Fault {
        Fault::new(FaultKind::AlreadyProcessing)
    }

    /// 500.
    pub fn server_error() -> Fault {
        Fault::new(FaultKind::ServerError)
    }

    /// 404 Not Found, as for an object that went away meanwhile.
    pub fn gone() -> Fault {
        Fault::new(FaultKind::Gone)
    }

    /// Tasks made by the matching calls take `todo_ms` then `doing_ms`.
    pub fn slow_tasks(todo_ms: u64, doing_ms: u64) -> Fault {
        Fault::new(FaultKind::SlowTasks { todo_ms, doing_ms })
    }

    /// Tasks made by the matching calls end in `error`.
    pub fn failing_tasks() -> Fault {
        Fault::new(FaultKind::FailingTasks)
    }

    /// Restricts the fault to `method` (any case) and paths starting with `path_prefix`.
    #[must_use]
    pub fn on(mut self, method: &str, path_prefix: &str) -> Fault {
        self.method = Some(method.to_ascii_uppercase());
        path_prefix.clone_into(&mut self.path_prefix);
        self
    }

    /// Restricts the fault to paths starting with `path_prefix`, any method.
    #[must_use]
    pub fn on_path(mut self, path_prefix: &str) -> Fault {
        path_prefix.clone_into(&mut self.path_prefix);
        self
    }

    /// Applies to the next `times` matching calls (1 by default).
    #[must_use]
    pub fn times(mut self, times: u32) -> Fault {
        self.times = times;
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.times > 0
            && self.method.as_deref().is_none_or(|m| m == method)
            && path.starts_with(&self.path_prefix)
    }
}

/// Why a simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The fixture is inconsistent or its mail backend could not be seeded.
    #[error("invalid fixture: {0}")]
    Fixture(String),
    /// The port could not be bound or the runtime made.
    #[error("cannot serve on 127.0.0.1:{port}: {source}")]
    Io {
        /// The port asked for (0: any).
        port: u16,
        /// Why.
        source: std::io::Error,
    },
}

/// A running simulator; see the crate doc. Stops when dropped.
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Simulator {
    /// Starts on a free port; panics when it cannot (a test fixture error).
    pub fn start(fixture: Fixture) -> Simulator {
        match Simulator::try_start(fixture, 0) {
            Ok(simulator) => simulator,
            Err(err) => panic!("ovh-sim did not start: {err}"),
        }
    }

    /// Starts on `port` (0: a free one).
    #[allow(clippy::needless_pass_by_value)] // Owned, so a test can hand over a fixture it built.
    pub fn try_start(fixture: Fixture, port: u16) -> Result<Simulator, StartError> {
        let state = State::new(&fixture).map_err(StartError::Fixture)?;
        let io = |source| StartError::Io { port, source };
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        let addr = listener.local_addr().map_err(io)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io)?;
        let shared = Arc::new(Shared::new(state));
        let (shutdown, stopped) = tokio::sync::oneshot::channel();
        let served = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("ovh-sim-{}", addr.port()))
            .spawn(move || runtime.block_on(server::serve(listener, served, stopped)))
            .map_err(io)?;
        Ok(Simulator {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT/1.0`: the endpoint to give the client.
    pub fn base_url(&self) -> String {
        format!("http://{}/1.0", self.addr)
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.log().clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.log().clear();
    }

    /// Adds a fault; faults are tried in the order they were added.
    pub fn inject(&self, fault: Fault) {
        self.shared.faults().push(fault);
    }

    /// Prints every answered request on stderr (`METHOD path -> status`).
    pub fn set_echo(&self, echo: bool) {
        self.shared.echo.store(echo, Ordering::Relaxed);
    }

    /// What the owner's visit to a validation URL does: the consumer key becomes usable. False
    /// when the key is unknown.
    pub fn validate_consumer_key(&self, consumer_key: &str) -> bool {
        self.shared
            .state()
            .credentials
            .set_state(consumer_key, CredentialState::Validated)
    }

    /// Moves the server clock: it becomes the local clock plus `seconds` (`/auth/time` shows
    /// it), as a server whose clock jumped, to test a client's resynchronisation.
    pub fn set_clock_offset(&self, seconds: i64) {
        self.shared.state().credentials.clock_offset_secs = seconds;
    }

    /// The owner creates the domain's ownership record (`<cnameToCheck>.<domain> CNAME
    /// ovh.com.`): a domain that waited for it becomes `ok` and `domainValidated`.
    pub fn prove_domain(&self, domain: &str) {
        self.shared.state().prove_domain(domain);
    }

    /// Problems met while applying task effects (mail backend errors, injected failures).
    pub fn task_errors(&self) -> Vec<String> {
        self.shared.state().mail_errors.clone()
    }

    /// Whether any task is still `todo` or `doing`.
    pub fn tasks_pending(&self) -> bool {
        let mut state = self.shared.state();
        state.advance(std::time::Instant::now());
        state.tasks.values().any(state::Task::is_pending)
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
