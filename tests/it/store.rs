//! The state store and the crash guarantee end to end: `apply` killed with SIGKILL over and over
//! behind a slow link, each time resumed at once, leaves the target exactly the source (nothing
//! missing, nothing twice).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::apply::{SOURCE, Sandbox, TARGET};
use crate::support::corpus::Corpus;
use crate::support::dovecot::Dovecot;
use crate::support::mailbox::{diff, message_count, snapshot};
use crate::support::proxy::{Faults, Proxy};
use crate::text;

/// Messages on the target in `folders` (0 for a folder not created yet).
fn target_count(s: &Sandbox, folders: &[&str]) -> u32 {
    folders
        .iter()
        .map(|f| {
            std::panic::catch_unwind(|| message_count(&s.dovecot, TARGET.0, TARGET.1, f))
                .unwrap_or(0)
        })
        .sum()
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
    let plan = s.plan("stress", Some(proxy.addr()), "");
    let plan = plan.to_str().expect("utf-8");
    let watched = ["INBOX", "Archive"];
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);

    let started = Instant::now();
    let mut kills = 0;
    while kills < 22 {
        let before = target_count(&s, &watched);
        let mut child = s
            .command(&["apply", plan])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn apply");
        // A random instant while this run appends: once the target has grown (its groups are
        // landing, more are in flight), then up to 0.8 s later.
        let spawned = Instant::now();
        while target_count(&s, &watched) <= before
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
    // How far the killed runs got (shown with --nocapture): the corpus must outlast them.
    eprintln!(
        "{kills} kills in {:?}: {} of {} messages on the target (seed {seed})",
        started.elapsed(),
        target_count(&s, &watched),
        corpus.messages.len()
    );
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

/// A plan of `names` (each `NAME@old.example` → `NAME@new.example`, passwords `NAME-old` and
/// `NAME-new` from the environment), both sides on Dovecot's TLS port.
fn accounts_plan(s: &Sandbox, name: &str, names: &[&str]) -> PathBuf {
    let mut text = format!(
        "version: 1\nname: {name}\nplatforms:\n  old:\n    type: imap\n    imap: {{ host: \
         localhost, port: {0}, tls: implicit }}\n  new:\n    type: imap\n    imap: {{ host: \
         localhost, port: {0}, tls: implicit }}\naccounts:\n",
        s.dovecot.imaps_port
    );
    for n in names {
        s.dovecot
            .add_user(&format!("{n}@old.example"), &format!("{n}-old"));
        s.dovecot
            .add_user(&format!("{n}@new.example"), &format!("{n}-new"));
        let _ = write!(
            text,
            "  - address: {n}@old.example\n    from: old\n    to: new\n    target-login: \
             {n}@new.example\n    source-password: {{ env: PW_{n} }}\n    target-password: \
             {{ env: PW_NEW_{n} }}\n"
        );
    }
    let path = s.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, text).expect("write the plan");
    path
}

/// [`Sandbox::command`] with the passwords of [`accounts_plan`]'s accounts.
fn accounts_command(s: &Sandbox, names: &[&str], args: &[&str]) -> Command {
    let mut c = s.command(args);
    for n in names {
        c.env(format!("PW_{n}"), format!("{n}-old"))
            .env(format!("PW_NEW_{n}"), format!("{n}-new"));
    }
    c
}

#[test]
fn a_foreign_sqlite_file_given_as_state_is_refused_with_exit_2_and_left_untouched() {
    let s = Sandbox::new();
    Corpus::with_count(20).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let proxy = Proxy::start(s.dovecot.imap_addr(), Faults::default());
    let plan = s.plan("foreign", Some(proxy.addr()), "");
    let plan = plan.to_str().expect("utf-8");
    let foreign = s.dir.path().join("app.db");
    {
        let conn = rusqlite::Connection::open(&foreign).expect("create");
        conn.execute_batch(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO customers (name) VALUES ('ACME');",
        )
        .expect("fill");
    }
    let before = std::fs::read(&foreign).expect("read");
    let state = foreign.to_str().expect("utf-8");
    for args in [
        &["apply", plan, "--state", state][..],
        &["status", plan, "--state", state],
        &["report", plan, "--state", state],
    ] {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("exec::state_foreign") && err.contains("not a mailplan state store"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        std::fs::read(&foreign).expect("read"),
        before,
        "the file changed"
    );
    assert_eq!(proxy.connections(), 0, "apply reached the target");
    // Another plan's store is refused the same way, and this plan's own works.
    let other = s.plan("other", Some(proxy.addr()), "");
    let out = s.run(&["apply", other.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let theirs = s.dir.path().join(".mailplan/other.db");
    let out = s.run(&["apply", plan, "--state", theirs.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("belongs to the plan `other`"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_state_write_that_fails_stops_the_run() {
    let s = Sandbox::new();
    let names = ["carol", "dave"];
    let plan = accounts_plan(&s, "failing", &names);
    std::thread::sleep(Duration::from_millis(1100)); // Dovecot rereads its passwd-file by mtime
    for n in names {
        Corpus::with_seed(30, 5).seed(&s.dovecot, &format!("{n}@old.example"), &format!("{n}-old"));
    }
    let plan = plan.to_str().expect("utf-8");
    let out = accounts_command(&s, &names, &["apply", plan, "--only", "carol@old.example"])
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The store's own file, made to refuse the next step's record (as a full disk or an I/O
    // error would), and only that one.
    let state = s.dir.path().join(".mailplan/failing.db");
    {
        let conn = rusqlite::Connection::open(&state).expect("open the store");
        conn.execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON steps WHEN NEW.account = 'dave@old.example'
             BEGIN SELECT RAISE(ABORT, 'injected write failure'); END;",
        )
        .expect("trigger");
    }
    let out = accounts_command(&s, &names, &["apply", plan, "--parallelism", "1"])
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("injected write failure") && err.contains("the run stops"),
        "{err}"
    );
    assert_eq!(
        message_count(&s.dovecot, "dave@new.example", "dave-new", "INBOX"),
        0,
        "dave was copied although its step could not be recorded:\n{err}"
    );
}

/// The batch marker is synced to disk before the APPENDs it announces (a power cut cannot lose
/// it), and the other writes are not (they cost a reconcile at worst): `fdatasync`/`fsync` of
/// the store's write-ahead log, counted with strace, at least once per folder appended to.
#[test]
fn the_batch_marker_is_synced_to_disk_before_each_folders_appends() {
    let s = Sandbox::new();
    let corpus = Corpus::with_count(150);
    corpus.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let folders: std::collections::BTreeSet<&str> =
        corpus.messages.iter().map(|m| m.folder.as_str()).collect();
    let proxy = Proxy::start(s.dovecot.imap_addr(), Faults::default());
    let plan = s.plan("synced", Some(proxy.addr()), "");
    let trace = s.dir.path().join("syncs.txt");
    let mut c = Command::new("strace");
    c.args(["-f", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_mailplan"))
        .args(["apply", plan.to_str().expect("utf-8")])
        .env("NO_COLOR", "1")
        .env("SSL_CERT_FILE", s.dovecot.ca_cert_path())
        .env("SOURCE_PW", SOURCE.1)
        .env("TARGET_PW", TARGET.1)
        .current_dir(s.dir.path());
    let out = c.output().expect("strace runs (the strace package)");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let trace = std::fs::read_to_string(&trace).expect("trace");
    let wal_syncs = trace
        .lines()
        .filter(|l| l.contains("sync(") && l.contains("synced.db-wal>"))
        .count();
    assert!(
        wal_syncs >= folders.len(),
        "{wal_syncs} syncs of the log for {} folders:\n{trace}",
        folders.len()
    );
    assert!(
        wal_syncs <= folders.len() + 6,
        "{wal_syncs} syncs of the log for {} folders: more than the batch markers\n{trace}",
        folders.len()
    );
    let target = snapshot(&s.dovecot, TARGET.0, TARGET.1);
    assert!(diff(&corpus.expected(), &target).is_empty());
}

/// The refusals recorded in a plan's store (messages the target refused, with its words).
fn refusals(s: &Sandbox, plan_name: &str) -> Vec<String> {
    let state = s.dir.path().join(format!(".mailplan/{plan_name}.db"));
    let conn = rusqlite::Connection::open(state).expect("open the store");
    let mut st = conn
        .prepare("SELECT detail FROM issues WHERE kind = 'refused'")
        .expect("query");
    st.query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("details")
}

#[test]
fn a_full_target_stops_the_accounts_copy_with_the_servers_words() {
    let s = Sandbox::new();
    // The target on a Dovecot of its own whose quota plugin allows 40 kB a user, about a third
    // of the corpus (a rule holds a ':', which a passwd-file's per-user fields cannot).
    let full = Dovecot::start_with("plugin {\n  quota_rule = *:storage=40K\n}\n");
    full.add_user(TARGET.0, TARGET.1);
    let corpus = Corpus::with_seed(150, 21);
    corpus.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let proxy = Proxy::start(full.imap_addr(), Faults::default());
    let plan = s.plan("full", Some(proxy.addr()), "");
    let out = s.run(&["apply", plan.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("FAILED  copy-mail alice@old.example") && err.contains("[OVERQUOTA]"),
        "{err}"
    );
    // Stopped at the first refusal: no message was tried and refused one after another.
    let refused = refusals(&s, "full");
    assert!(
        refused.is_empty(),
        "{} refusals recorded: {refused:?}",
        refused.len()
    );
    let on_target = snapshot(&full, TARGET.0, TARGET.1).message_total();
    assert!(
        on_target > 0 && on_target < corpus.messages.len(),
        "{on_target}"
    );
}

#[test]
fn a_limit_that_refuses_every_message_stops_the_copy() {
    let s = Sandbox::new();
    // Every message is over the target's 100-byte limit: `NO [LIMIT] Mail size is larger…`.
    s.dovecot
        .add_user_with(TARGET.0, TARGET.1, "userdb_quota_max_mail_size=100");
    let corpus = Corpus::with_seed(150, 22).all_in("INBOX");
    corpus.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let proxy = Proxy::start(s.dovecot.imap_addr(), Faults::default());
    let plan = s.plan("limited", Some(proxy.addr()), "");
    let out = s.run(&["apply", plan.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("FAILED  copy-mail alice@old.example")
            && err.contains("[LIMIT]")
            && err.contains("refuses every message"),
        "{err}"
    );
    let refused = refusals(&s, "limited");
    assert!(
        !refused.is_empty() && refused.len() < 15,
        "{} of {} messages tried and refused",
        refused.len(),
        corpus.messages.len()
    );
}

#[cfg(unix)]
#[test]
fn an_ovh_conf_others_may_read_is_warned_about_and_does_not_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/new-mxplan-to-exchange.yaml");
    let plan = dir.path().join("p.yaml");
    std::fs::copy(example, &plan).expect("copy the example plan");
    let conf = dir.path().join("ovh.conf");
    std::fs::write(&conf, "[default]\nendpoint=ovh-eu\n").expect("write ovh.conf");
    let validate = || {
        Command::new(env!("CARGO_BIN_EXE_mailplan"))
            .args(["validate", "p.yaml"])
            .env("NO_COLOR", "1")
            .env("HOME", dir.path())
            .current_dir(dir.path())
            .output()
            .expect("validate runs")
    };
    let set_mode = |mode: u32| {
        std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .expect("chmod");
    };
    set_mode(0o644);
    let out = validate();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plan::insecure") && err.contains("ovh.conf may be read by others (mode 644)"),
        "{err}"
    );
    set_mode(0o600);
    let out = validate();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("may be read by others"),
        "{}",
        text(&out)
    );
}
