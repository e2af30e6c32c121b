//! The `mailplan` executable. Commands arrive with the plan loader (issue 3); until then the
//! binary only answers `--help` and `--version`.

use clap::Parser;

/// Plan, review and run e-mail migrations for many accounts at once.
#[derive(Debug, Parser)]
#[command(name = "mailplan", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
