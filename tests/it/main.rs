//! The one integration test binary: runs the real `mailplan` executable.

mod codes;
mod schema;
mod snapshots;
mod validate;

use std::process::{Command, Output};

/// Run the real executable, without colours.
pub fn mailplan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailplan"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("the mailplan binary runs")
}
