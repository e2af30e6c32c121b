//! Renderers: everything mailplan prints goes through here.
//!
//! Entry points: [`diagnostics::render`] for `validate`'s three formats, [`dry_run`] for `plan`,
//! [`graph`] for `graph`, [`progress::Printer`] (the [`crate::exec::events::Sink`] of `apply`),
//! [`run`] for `status` and `report`, [`login::render`] for `ovh login`. Data goes to stdout
//! (`json`, `github`), human text to stderr; colours follow the terminal and `NO_COLOR`. The crate
//! denies `print!` and `eprint!` outside this module.

#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod diagnostics;
pub mod dry_run;
pub mod graph;
pub mod login;
pub mod progress;
pub mod run;
