//! A running command's stderr read line by line, for tests that wait for what it says.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::time::Duration;

/// Read `child`'s piped stderr until a line starts with `prefix` (that line), or until no line
/// came for `quiet` (none); also every line read before it, for the failure message.
pub fn wait_for_line(
    child: &mut Child,
    prefix: &str,
    quiet: Duration,
) -> (Option<String>, Vec<String>) {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(quiet) {
            Ok(line) if line.starts_with(prefix) => return (Some(line), seen),
            Ok(line) => seen.push(line),
            Err(_) => return (None, seen),
        }
    }
}
