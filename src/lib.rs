//! mailplan: plan, review and run e-mail migrations for many accounts at once.
//!
//! Module map (see `../shared/STYLE.md` for the shape: plan everything, then execute or print):
//! - [`plan`]: the plan language, pure. Source files and spans ([`plan::source`]), the layer's
//!   diagnostics with stable codes ([`plan::diag`]), secret references ([`plan::secret`]) and
//!   the validated model every later stage consumes ([`plan::model`]); [`plan::load`] reads a
//!   plan's text into it.
//! - [`graph`]: the step graph (petgraph), its parallel stages and the pure ready-queue.
//! - [`report`]: renderers; all output goes through them.
//! - [`exec`]: what touches the world when a plan runs; for now [`exec::secrets`] (resolving
//!   secret references, and the offline check `validate` and `plan` warn with).
//! - [`cli`]: clap definitions and dispatch; `main.rs` only calls [`cli::run`].
//!
//! Still to come (see the open issues): the executor and state store (`exec/`), and the OVH and
//! IMAP providers (`providers/`).

pub mod cli;
pub mod exec;
pub mod graph;
pub mod plan;
pub mod report;
