//! The one integration test binary: runs the real `mailplan` executable, against real servers
//! on 127.0.0.1 where it talks to any (see `support`).

mod apply;
mod codes;
mod docs;
mod harness;
mod input;
mod interop;
mod operator;
mod ovh;
mod packaging;
mod pg_apply;
mod pg_store;
mod pg_workers;
mod pipelined;
mod report;
mod saved_plan;
mod schema;
mod snapshots;
mod store;
mod support;
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

/// A finished command's exit code, stdout and stderr, for an assertion's message.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
