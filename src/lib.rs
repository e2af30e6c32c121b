//! mailplan: plan, review and run e-mail migrations for many accounts at once.
//!
//! The shape: plan everything, then execute or print. Plans are parsed and validated into a
//! model, turned into a graph of steps, and only then executed or shown; each layer uses only
//! the ones before it (plan → graph → providers → exec → report → cli).
//!
//! Module map:
//! - [`plan`]: the plan language, pure. [`plan::yaml`] (YAML → spanned nodes),
//!   [`plan::decode`] (typed reading of the nodes), [`plan::import`] (CSV imports),
//!   [`plan::validate`] (nodes → validated plan, every problem collected; by concern:
//!   `validate::sections` the plan's settings, `validate::imports` its CSV imports,
//!   `validate::accounts` one account, `validate::checks` checks of values and across sections,
//!   `validate::after` the `after:` graph), [`plan::model`] (the
//!   validated model every later stage consumes), [`plan::source`] (source files and spans),
//!   [`plan::diag`] (the layer's diagnostics with stable codes), [`plan::secret`] (secret
//!   references and values), [`plan::schema`] (the generated JSON Schema); [`plan::load`] reads
//!   a plan's text into the model.
//! - [`graph`]: the step graph (petgraph), its parallel stages and the pure ready-queue.
//! - [`providers`]: the servers, and [`providers::RunMode`] (dry run or real).
//!   - [`providers::imap`]: any IMAP server: [`providers::imap::connect`](mod@providers::imap::connect) (TCP, TLS, login),
//!     [`providers::imap::folders`] (listing and mapping), [`providers::imap::identity`] (a
//!     message's identity across servers), [`providers::imap::copy`] (the resumable copy and its
//!     verification, by concern: `copy::ledger` what it remembers, `copy::context` what it is
//!     given and gives back, `copy::matching` what the target lacks, `copy::transfer` fetching
//!     and appending at once, `copy::survey` what an account holds, `copy::share` the work of
//!     an account's connection pairs, `copy::folder` one folder's pass, `copy::account` one
//!     account's copy, `copy::verify` the verification), [`providers::imap::append`] (the
//!     target side of a transfer),
//!     [`providers::imap::pipelined`] (several commands on the wire at once),
//!     [`providers::imap::settle`] (waiting for a target to settle), [`providers::imap::trace`]
//!     (`--trace-imap` transcripts), [`providers::imap::error`] (the layer's error),
//!     [`providers::imap::relogin`] (new connections in the middle of a copy),
//!     [`providers::imap::activity`] (whether any connection still moves bytes),
//!     [`providers::imap::transport`] (the byte stream under a session), and the crate's own
//!     `providers::imap::timeout` (how long a command may take).
//!   - [`providers::ovh`]: the `OVHcloud` API: [`providers::ovh::config`] (endpoint and
//!     credentials, `ovh.conf`), [`providers::ovh::client`] (the signed, rate-limited client),
//!     [`providers::ovh::tasks`] (waiting for asynchronous tasks), [`providers::ovh::api`] (the
//!     typed calls: `api::exchange`, `api::mxplan`, `api::legacy`, `api::auth`),
//!     [`providers::ovh::error`] (the layer's error).
//!   - the crate's own `providers::tls` (the verifier of connections whose certificate is not
//!     checked).
//! - [`exec`]: everything that runs: [`exec::runner`] (the coordinator: it alone owns the
//!   ready-queue, writes step records and emits the run's events), [`exec::events`] (the events
//!   a run emits and the [`exec::events::Sink`] they go to), [`exec::store`] (the
//!   [`exec::store::StateStore`] trait that makes a run resumable, with its backends
//!   [`exec::store::sqlite`] and [`exec::store::pg`]), [`exec::worker`] (one `apply` among the
//!   workers of a shared `PostgreSQL` run: claims and leases), [`exec::snapshot`] (what the
//!   store knows, for `status` and `report`), [`exec::secrets`] (secret resolution),
//!   [`exec::files`] (bounded reading of the files a plan names), [`exec::saved`] (saved plans,
//!   `plan --out`), [`exec::refresh`] (`plan --refresh`: live state, read only), and the crate's
//!   own: `exec::steps` (the step bodies: `steps::imap`, `steps::ovh`, and the retry loop),
//!   `exec::step` (what a step runs with and returns), `exec::slots` (connection slots per
//!   server), `exec::fingerprint` (whether a step changed since it ran), `exec::ledger` (the
//!   copy's view of the store), `exec::credentials` (resolved logins and passwords),
//!   `exec::error` (the run's [`exec::Error`]), `exec::ovh` (the `OVHcloud` steps),
//!   `exec::preflight` (checks before the first mutating call) and `exec::legacy_layout` (where
//!   OVH's migration puts each folder).
//! - [`report`]: renderers; all output goes through them: [`report::diagnostics`] (`validate`),
//!   [`report::dry_run`] (`plan`), [`report::graph`] (`graph`), [`report::progress`] (`apply`'s
//!   bars, lines or JSON events), [`report::run`] (`status` and `report`: `run::status`,
//!   `run::markdown`, `run::html`), [`report::login`] (`ovh login`).
//! - [`cli`]: clap definitions and dispatch (`cli::commands`: what the commands do beyond it);
//!   `main.rs` only calls [`cli::run`].

// One door for output: nothing prints with `print!`/`eprint!` outside `report/` (allowed there).
#![deny(clippy::print_stdout, clippy::print_stderr)]
// Whatever is `pub` is reachable from outside the crate: crate-internal items say `pub(crate)`.
#![warn(unreachable_pub)]

pub mod cli;
pub mod exec;
pub mod graph;
pub mod plan;
pub mod providers;
pub mod report;
