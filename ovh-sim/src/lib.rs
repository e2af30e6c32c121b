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
//! - `http`: one request and its reply as the handlers see them, and [`RecordedRequest`].
//! - `faults`: [`Fault`] and [`FaultKind`], what a test injects.
//! - `server`: hyper glue, recording, applying faults, routing.
//! - `state`: the simulated world and the task engine.
//! - `clock`: Unix time and the API's date formats.
//! - `legacy` (`/email/domain`), `mxplan` (`/email/mxplan`), `exchange` (`/email/exchange`), and
//!   `service` (what MX Plan and Exchange share).
//! - `mail`: the Dovecot-backed mailboxes.
//!
//! No two modules import each other: the handlers (`auth`, `legacy`, `mxplan`, `exchange` and
//! the `service` they share) use `http`, `state` and `clock`; `server` routes to the handlers.

pub mod fixture;

mod auth;
mod clock;
mod exchange;
mod faults;
mod http;
mod legacy;
mod mail;
mod mxplan;
mod server;
mod service;
mod state;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use auth::signature;
pub use faults::{Fault, FaultKind};
pub use fixture::{CredentialState, Fixture, FixtureError};
pub use http::RecordedRequest;

use server::Shared;
use state::State;

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
