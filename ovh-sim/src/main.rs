//! `ovh-sim --fixture FILE.yaml [--port N] [--log]`: serves the simulated `OVHcloud` API until
//! killed, after printing its endpoint and the credentials it accepts as `KEY=VALUE` lines (the
//! official clients' environment variables) for the demo script to read.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ovh_sim::{CredentialState, Fixture, Simulator};

/// A local simulator of the OVH API (MX Plan, legacy e-mail domains, Hosted Exchange).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The scenario (YAML or JSON; see ovh-sim/README.md).
    #[arg(long)]
    fixture: PathBuf,
    /// Port on 127.0.0.1 (0: a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Print every request on stderr.
    #[arg(long)]
    log: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let fixture = match Fixture::load(&cli.fixture) {
        Ok(fixture) => fixture,
        Err(err) => {
            eprintln!("ovh-sim: {err}");
            return ExitCode::from(2);
        }
    };
    let consumer_key = fixture
        .auth
        .consumer_keys
        .iter()
        .find(|key| key.state == CredentialState::Validated)
        .map(|key| key.key.clone());
    let (application_key, application_secret) = (
        fixture.auth.application_key.clone(),
        fixture.auth.application_secret.clone(),
    );
    let simulator = match Simulator::try_start(fixture, cli.port) {
        Ok(simulator) => simulator,
        Err(err) => {
            eprintln!("ovh-sim: {err}");
            return ExitCode::FAILURE;
        }
    };
    simulator.set_echo(cli.log);
    let mut out = std::io::stdout().lock();
    let mut lines = vec![
        format!("OVH_ENDPOINT={}", simulator.base_url()),
        format!("OVH_APPLICATION_KEY={application_key}"),
        format!("OVH_APPLICATION_SECRET={application_secret}"),
    ];
    if let Some(key) = consumer_key {
        lines.push(format!("OVH_CONSUMER_KEY={key}"));
    }
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            return ExitCode::FAILURE;
        }
    }
    if out.flush().is_err() {
        return ExitCode::FAILURE;
    }
    drop(out);
    eprintln!("ovh-sim: serving {} until killed", simulator.base_url());
    loop {
        std::thread::park();
    }
}
