//! mailplan: plan, review and run e-mail migrations for many accounts at once.
//!
//! Module map (see `../shared/STYLE.md` for the shape: plan everything, then execute or print):
//! - [`plan`]: the plan language, pure. Source files and spans ([`plan::source`]), the layer's
//!   diagnostics with stable codes ([`plan::diag`]), secret references ([`plan::secret`]) and
//!   the validated model every later stage consumes ([`plan::model`]); [`plan::load`] reads a
//!   plan's text into it.
//! - [`graph`]: the step graph (petgraph), its parallel stages and the pure ready-queue.
//! - [`report`]: renderers; all output goes through them.
//! - [`cli`]: clap definitions and dispatch; `main.rs` only calls [`cli::run`].
//! - [`exec`]: the runner (tokio) that drives the graph, the `SQLite` state store that makes a run
//!   resumable, the printer of a run, secret resolution.
//! - [`providers`]: the servers: IMAP today ([`providers::imap`]); the OVH API comes next.

// One door for output: nothing prints with `print!`/`eprint!` outside `report/`, whose renderers
// write to the writer they are given (the CLI hands them stdout or stderr).
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod cli;
pub mod exec;
pub mod graph;
pub mod plan;
pub mod providers;
pub mod report;
