//! A TCP proxy with latency, a bandwidth cap and cuts, for benchmarks "across a real network"
//! (e.g. Dovecot 25 ms away). The same code as the tests' proxy (`tests/it/support/proxy.rs`).
//!
//! ```sh
//! cargo run --release --example fault-proxy -- UPSTREAM_HOST:PORT LISTEN_PORT DELAY_MS [BYTES_PER_S]
//! ```
//! `DELAY_MS` is one way: a round trip takes at least twice that. Runs until killed.

#[allow(dead_code)]
#[path = "../tests/it/support/proxy.rs"]
mod proxy;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: fault-proxy UPSTREAM_HOST:PORT LISTEN_PORT DELAY_MS [BYTES_PER_S]");
        std::process::exit(2);
    }
    let upstream: SocketAddr = args[0]
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| {
            eprintln!("fault-proxy: cannot resolve {}", args[0]);
            std::process::exit(2);
        });
    let listen: u16 = args[1].parse().unwrap_or_else(|_| {
        eprintln!("fault-proxy: LISTEN_PORT must be a number");
        std::process::exit(2);
    });
    let delay: u64 = args[2].parse().unwrap_or_else(|_| {
        eprintln!("fault-proxy: DELAY_MS must be a number");
        std::process::exit(2);
    });
    let mut faults = proxy::Faults::latency(Duration::from_millis(delay));
    faults.bandwidth = args.get(3).and_then(|b| b.parse().ok());
    let p = proxy::Proxy::start_on(listen, upstream, faults);
    println!(
        "fault-proxy: 127.0.0.1:{} -> {upstream}, {delay} ms each way",
        p.port()
    );
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
