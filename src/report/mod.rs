//! Renderers: everything mailplan prints goes through here.
//!
//! Entry point: [`diagnostics::render`] for `validate`'s three formats. Data goes to stdout
//! (`json`, `github`), human text to stderr; colours follow the terminal and `NO_COLOR`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod diagnostics;
pub mod dry_run;
pub mod graph;
pub mod login;
pub mod progress;
pub mod run;
