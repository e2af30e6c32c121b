//! Tests of the test harness itself (`support`): Dovecot instances run side by side and die with
//! their handle, a seeded corpus reads back exactly as the corpus says it wrote, folder names
//! round-trip through modified UTF-7, and the proxy forwards, delays, throttles and cuts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::corpus::{Corpus, SPECIAL_FOLDERS};
use crate::support::dovecot::Dovecot;
use crate::support::imap::{block_on, tls_greeting};
use crate::support::mailbox::{diff, folder_list, message_count, snapshot, snapshot_at};
use crate::support::proxy::{Faults, Proxy};

const USER: &str = "alice@example.org";
const PASSWORD: &str = "secret";

fn dovecot_with_user() -> Dovecot {
    let dovecot = Dovecot::start();
    dovecot.add_user(USER, PASSWORD);
    dovecot
}

/// A line-level IMAP client, to see exactly what goes over the wire and when.
struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    /// Connects and reads the greeting.
    fn connect(addr: SocketAddr) -> Raw {
        let writer = TcpStream::connect(addr).expect("connect");
        writer
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set a read timeout");
        let mut raw = Raw {
            reader: BufReader::new(writer.try_clone().expect("clone the socket")),
            writer,
        };
        let greeting = raw.line().expect("greeting");
        assert!(greeting.starts_with("* OK"), "greeting: {greeting}");
        raw
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line)
    }

    /// Sends `tag command` and returns the tagged response line.
    fn command(&mut self, tag: &str, command: &str) -> std::io::Result<String> {
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())?;
        loop {
            let line = self.line()?;
            if line.starts_with(&format!("{tag} ")) {
                return Ok(line);
            }
        }
    }
}

#[test]
fn two_dovecots_run_in_parallel_serve_tls_and_die_with_their_handle() {
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(dovecot_with_user);
        let b = scope.spawn(dovecot_with_user);
        (
            a.join().expect("first start"),
            b.join().expect("second start"),
        )
    });
    let ports = [a.imap_port, a.imaps_port, b.imap_port, b.imaps_port];
    for (i, port) in ports.iter().enumerate() {
        assert!(!ports[i + 1..].contains(port), "ports shared: {ports:?}");
    }
    for dovecot in [&a, &b] {
        let ok = Raw::connect(dovecot.imap_addr())
            .command("a", &format!("LOGIN {USER} {PASSWORD}"))
            .expect("LOGIN");
        assert!(ok.starts_with("a OK"), "{ok}\n{}", dovecot.log());
        let (addr, ca) = (dovecot.imaps_addr(), dovecot.ca_cert_path());
        let greeting = block_on(|| async move { tls_greeting(addr, &ca).await })
            .expect("the server certificate verifies against the test CA");
        assert!(greeting.starts_with("* OK"), "{greeting}");
    }
    // One instance's CA does not vouch for the other's certificate: each has its own.
    let (addr, ca) = (a.imaps_addr(), b.ca_cert_path());
    assert!(block_on(|| async move { tls_greeting(addr, &ca).await }).is_err());

    let gone = a.imap_addr();
    drop(a);
    assert!(
        TcpStream::connect(gone).is_err(),
        "Dovecot still listens after Drop"
    );
    assert!(b.doveadm(&["user", USER]).contains("mail"));
}

#[test]
fn a_seeded_corpus_reads_back_exactly() {
    let dovecot = dovecot_with_user();
    let corpus = Corpus::small();
    assert_eq!(corpus.messages.len(), 150);
    corpus.seed(&dovecot, USER, PASSWORD);

    let expected = corpus.expected();
    let actual = snapshot(&dovecot, USER, PASSWORD);
    assert!(actual == expected, "{}", diff(&expected, &actual));
    // The special cases survive as such: two identical copies count twice, empty folders exist.
    assert!(expected.messages.values().any(|&count| count == 2));
    assert!(actual.folders.contains("Work/Empty & odd"));
    assert_eq!(
        message_count(&dovecot, USER, PASSWORD, "Reçus"),
        u32::try_from(
            corpus
                .messages
                .iter()
                .filter(|m| m.folder == "Reçus")
                .count()
        )
        .expect("small count")
    );

    let folders = folder_list(&dovecot, USER, PASSWORD);
    let wire = |name: &str| {
        folders
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} listed: {folders:?}"))
    };
    assert_eq!(wire("Reçus").wire_name, "Re&AOc-us");
    assert_eq!(wire("Work/Empty & odd").wire_name, "Work/Empty &- odd");
    for name in ["Документы", "日本語/サブフォルダ"] {
        assert!(wire(name).wire_name.is_ascii());
    }
    // Dovecot reports special-use in a plain LIST, from its configuration.
    for (name, attribute) in SPECIAL_FOLDERS {
        assert!(
            wire(name).attributes.iter().any(|a| a == attribute),
            "{name}: {:?}",
            wire(name).attributes
        );
    }
}

#[test]
fn a_thirty_megabyte_message_round_trips() {
    let dovecot = dovecot_with_user();
    let corpus = Corpus::with_count(5).with_large_message();
    let large = corpus
        .messages
        .iter()
        .map(|m| m.bytes.len())
        .max()
        .expect("messages");
    assert!(large > 30_000_000, "{large} bytes");
    corpus.seed(&dovecot, USER, PASSWORD);
    let (expected, actual) = (corpus.expected(), snapshot(&dovecot, USER, PASSWORD));
    assert!(actual == expected, "{}", diff(&expected, &actual));
}

#[test]
fn the_proxy_forwards_an_imap_session_and_counts_it() {
    let dovecot = dovecot_with_user();
    Corpus::with_count(20).seed(&dovecot, USER, PASSWORD);
    let proxy = Proxy::start(dovecot.imap_addr(), Faults::default());

    let mut raw = Raw::connect(proxy.addr());
    let login = raw
        .command("a", &format!("LOGIN {USER} {PASSWORD}"))
        .expect("LOGIN");
    assert!(login.starts_with("a OK"), "{login}");
    let select = raw.command("b", "SELECT INBOX").expect("SELECT");
    assert!(select.starts_with("b OK"), "{select}");
    drop(raw);

    let through = snapshot_at(proxy.addr(), USER, PASSWORD);
    assert!(
        through == snapshot(&dovecot, USER, PASSWORD),
        "a snapshot through the proxy differs"
    );
    assert_eq!(proxy.connections(), 2);
    assert!(proxy.client_to_server_bytes() > 40);
    assert!(proxy.server_to_client_bytes() > 10_000);
}

#[test]
fn the_proxy_delays_each_direction() {
    let dovecot = dovecot_with_user();
    let proxy = Proxy::start(
        dovecot.imap_addr(),
        Faults::latency(Duration::from_millis(25)),
    );
    let mut raw = Raw::connect(proxy.addr());
    let started = Instant::now();
    let noop = raw.command("a", "NOOP").expect("NOOP");
    let round_trip = started.elapsed();
    assert!(noop.starts_with("a OK"), "{noop}");
    // A lower bound only: a loaded machine may take any longer.
    assert!(round_trip >= Duration::from_millis(50), "{round_trip:?}");
}

#[test]
fn the_proxy_caps_bandwidth() {
    let dovecot = dovecot_with_user();
    let faults = Faults {
        bandwidth: Some(40_000),
        ..Faults::default()
    };
    let proxy = Proxy::start(dovecot.imap_addr(), faults);
    let mut raw = Raw::connect(proxy.addr());
    let login = raw
        .command("a", &format!("LOGIN {USER} {PASSWORD}"))
        .expect("LOGIN");
    assert!(login.starts_with("a OK"), "{login}");
    let started = Instant::now();
    // 20,000 bytes of literal at 40,000 bytes/s: at least half a second.
    let body = "x".repeat(78) + "\r\n";
    let message = format!("Subject: slow\r\n\r\n{}", body.repeat(250));
    let append = raw
        .command(
            "b",
            &format!("APPEND INBOX {{{}+}}\r\n{message}", message.len()),
        )
        .expect("APPEND");
    assert!(append.starts_with("b OK"), "{append}");
    // A lower bound only, as for latency.
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_proxy_cuts_mid_append_after_n_client_bytes() {
    let dovecot = dovecot_with_user();
    let faults = Faults {
        cut_after_client_bytes: Some(2_000),
        ..Faults::default()
    };
    let proxy = Proxy::start(dovecot.imap_addr(), faults);
    let mut raw = Raw::connect(proxy.addr());
    let login = raw
        .command("a", &format!("LOGIN {USER} {PASSWORD}"))
        .expect("LOGIN");
    assert!(login.starts_with("a OK"), "{login}");

    let body = "y".repeat(78) + "\r\n";
    let message = format!("Subject: cut\r\n\r\n{}", body.repeat(100));
    let sent = raw
        .writer
        .write_all(format!("b APPEND INBOX {{{}+}}\r\n{message}\r\n", message.len()).as_bytes());
    // The write may already fail on the reset; if not, reading must.
    let mut rest = String::new();
    let read = raw.reader.read_to_string(&mut rest);
    assert!(
        sent.is_err() || read.is_err() || !rest.contains("b OK"),
        "the APPEND completed: {rest}"
    );
    assert!(proxy.client_to_server_bytes() <= 2_000);
    assert_eq!(message_count(&dovecot, USER, PASSWORD, "INBOX"), 0);
}

#[test]
fn cut_now_ends_live_connections_only() {
    let dovecot = dovecot_with_user();
    let proxy = Proxy::start(dovecot.imap_addr(), Faults::default());
    let mut raw = Raw::connect(proxy.addr());
    proxy.cut_now();
    assert!(
        raw.command("a", "NOOP").is_err(),
        "the connection survived cut_now"
    );
    let mut later = Raw::connect(proxy.addr());
    assert!(
        later
            .command("a", "NOOP")
            .expect("NOOP")
            .starts_with("a OK")
    );
}

#[test]
fn cyrus_runs_beside_dovecot_in_each_layout_with_real_passwords() {
    use crate::support::cyrus::{Cyrus, Layout};
    let _dovecot = dovecot_with_user();
    for layout in [Layout::InboxDot, Layout::AltDot, Layout::AltSlash] {
        let cyrus = Cyrus::start(layout);
        cyrus.add_user("alice", PASSWORD);
        let mut raw = Raw::connect(cyrus.addr());
        let refused = raw.command("a", "LOGIN alice wrong").expect("answer");
        assert!(refused.starts_with("a NO"), "{layout:?}: {refused}");
        let mut raw = Raw::connect(cyrus.addr());
        let ok = raw
            .command("b", &format!("LOGIN alice {PASSWORD}"))
            .expect("answer");
        assert!(ok.starts_with("b OK"), "{layout:?}: {ok}");
        raw.writer.write_all(b"c NAMESPACE\r\n").expect("send");
        let namespace = raw.line().expect("NAMESPACE answer");
        let (prefix, sep) = layout.namespace();
        assert!(
            namespace.starts_with(&format!("* NAMESPACE ((\"{prefix}\" \"{sep}\"))")),
            "{layout:?}: {namespace}"
        );
        // The corpus seeds in the layout's names and reads back the same.
        let corpus = Corpus::with_count(12);
        corpus.seed_named(cyrus.addr(), "alice", PASSWORD, &|f| layout.server_name(f));
        let read = snapshot_at(cyrus.addr(), "alice", PASSWORD).renamed(|f| layout.logical_name(f));
        assert_eq!(diff(&corpus.expected(), &read), "", "{layout:?}");
    }
}
