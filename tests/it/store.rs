//! The state store and the crash guarantee end to end: `apply` killed with SIGKILL over and over
//! behind a slow link, each time resumed at once, leaves the target exactly the source (nothing
//! missing, nothing twice).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::corpus::Corpus;
use crate::support::dovecot::Dovecot;
use crate::support::mailbox::{diff, message_count, snapshot};
use crate::support::proxy::{Faults, Proxy};

const SOURCE: (&str, &str) = ("alice@old.example", "source-secret");
const TARGET: (&str, &str) = ("alice@new.example", "target-secret");

/// One Dovecot with a source and a target user, and a plan folder.
struct Sandbox {
    dovecot: Dovecot,
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dovecot = Dovecot::start();
        dovecot.add_user(SOURCE.0, SOURCE.1);
        dovecot.add_user(TARGET.0, TARGET.1);
        Sandbox {
            dovecot,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A plan copying SOURCE (directly, TLS) to TARGET through `target` (clear text on
    /// loopback).
    fn plan(&self, name: &str, target: std::net::SocketAddr) -> PathBuf {
        let text = format!(
            "version: 1\nname: {name}\nplatforms:\n  old:\n    type: imap\n    imap: {{ host: \
             localhost, port: {}, tls: implicit }}\n  new:\n    type: imap\n    imap: {{ host: \
             127.0.0.1, port: {}, tls: none, allow-insecure: true }}\naccounts:\n  - address: \
             {}\n    from: old\n    to: new\n    target-login: {}\n    source-password: {{ env: \
             SOURCE_PW }}\n    target-password: {{ env: TARGET_PW }}\n",
            self.dovecot.imaps_port,
            target.port(),
            SOURCE.0,
            TARGET.0,
        );
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).expect("write the plan");
        path
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mailplan"));
        c.args(args)
            .env("NO_COLOR", "1")
            .env("SSL_CERT_FILE", self.dovecot.ca_cert_path())
            .env("SOURCE_PW", SOURCE.1)
            .env("TARGET_PW", TARGET.1)
            .current_dir(self.dir.path());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("mailplan runs")
    }

    /// Messages on the target in `folders` (0 for a folder not created yet).
    fn target_count(&self, folders: &[&str]) -> u32 {
        folders
            .iter()
            .map(|f| {
                std::panic::catch_unwind(|| message_count(&self.dovecot, TARGET.0, TARGET.1, f))
                    .unwrap_or(0)
            })
            .sum()
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The stress test: at least 20 `kill -9` at random instants while `apply` appends,
/// each followed at once by the next `apply`, with the target behind a link that caps each
/// connection's upload at 2 MB/s and keeps delivering what a killed client had already sent
/// (the proxy drains its window and the client's socket buffer after the client died). Before a
/// resume waited for the target's folders to settle, the dead run's last groups landed after
/// the next run had read the target, which then sent them again: dozens of duplicates a
/// folder. On plain loopback nothing is in flight at a kill, so this proves nothing there.
#[test]
fn twenty_immediate_resumes_after_sigkill_behind_a_slow_link_leave_no_duplicate() {
    let s = Sandbox::new();
    // Large messages in two folders (both connection pairs append at once, groups filled by
    // size), and the corpus's special cases (twins, shared Message-IDs, no Message-ID).
    let corpus = Corpus::with_seed(200, 17)
        .with_bulky("INBOX", 1100, 60_000)
        .with_bulky("Archive", 1000, 60_000);
    corpus.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let proxy = Proxy::start(
        s.dovecot.imap_addr(),
        Faults {
            bandwidth: Some(2_000_000),
            ..Faults::default()
        },
    );
    let plan = s.plan("stress", proxy.addr());
    let plan = plan.to_str().expect("utf-8");
    let watched = ["INBOX", "Archive"];
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);

    let started = Instant::now();
    let mut kills = 0;
    while kills < 22 {
        let before = s.target_count(&watched);
        let mut child = s
            .command(&["apply", plan])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn apply");
        // A random instant while this run appends: once the target has grown (its groups are
        // landing, more are in flight), then up to 0.8 s later.
        let spawned = Instant::now();
        while s.target_count(&watched) <= before
            && spawned.elapsed() < Duration::from_secs(60)
            && child.try_wait().expect("try_wait").is_none()
        {
            std::thread::sleep(Duration::from_millis(30));
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..800)));
        let finished = child.try_wait().expect("try_wait").is_some();
        if !finished {
            child.kill().expect("SIGKILL");
            kills += 1;
        }
        child.wait().expect("reap");
        assert!(
            !finished,
            "the copy finished after {kills} kills (seed {seed}): the corpus is too small"
        );
        // No waiting: the next run starts while the dead one's bytes are still on the link.
    }
    let out = s.run(&["apply", plan]);
    let target = snapshot(&s.dovecot, TARGET.0, TARGET.1);
    let source = snapshot(&s.dovecot, SOURCE.0, SOURCE.1);
    let d = diff(&source, &target);
    assert!(
        d.is_empty(),
        "after {kills} kills in {:?} (seed {seed}), the target differs from the source:\n{d}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(kills >= 20);
}
