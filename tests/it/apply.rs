//! `mailplan apply`, `status` and `report` end to end on a real Dovecot: exact copies compared as
//! multisets of (folder, bytes digest, flags, date), no-op re-runs, delta passes, resume after
//! SIGKILL, a connection cut mid-APPEND, the dry-run contract, the lock, a wrong password.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::corpus::Corpus;
use crate::support::dovecot::Dovecot;
use crate::support::mailbox::{Multiset, diff, folder_list, message_count, snapshot};
use crate::support::proxy::{Faults, Proxy, Side};
use crate::support::wire;
use crate::text;

mod edits;
mod messages;
mod status;

pub(crate) const SOURCE: (&str, &str) = ("alice@old.example", "source-secret");
pub(crate) const TARGET: (&str, &str) = ("alice@new.example", "target-secret");

/// One Dovecot with a source and a target user, and a plan folder (also the store tests').
pub(crate) struct Sandbox {
    pub(crate) dovecot: Dovecot,
    pub(crate) dir: tempfile::TempDir,
}

impl Sandbox {
    pub(crate) fn new() -> Sandbox {
        Sandbox::with_config("")
    }

    /// A sandbox whose Dovecot has settings appended to its configuration.
    fn with_config(extra: &str) -> Sandbox {
        let dovecot = Dovecot::start_with(extra);
        dovecot.add_user(SOURCE.0, SOURCE.1);
        dovecot.add_user(TARGET.0, TARGET.1);
        Sandbox {
            dovecot,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A plan copying SOURCE to TARGET; `target_addr` lets a proxy stand between.
    pub(crate) fn plan(
        &self,
        name: &str,
        target_addr: Option<std::net::SocketAddr>,
        extra: &str,
    ) -> PathBuf {
        self.plan_via(name, None, target_addr, extra)
    }

    /// [`Sandbox::plan`] with a proxy before the source too.
    pub(crate) fn plan_via(
        &self,
        name: &str,
        source_addr: Option<std::net::SocketAddr>,
        target_addr: Option<std::net::SocketAddr>,
        extra: &str,
    ) -> PathBuf {
        let tls = |addr: Option<std::net::SocketAddr>| match addr {
            // Through a proxy: clear text on loopback, said explicitly.
            Some(a) => format!(
                "{{ host: 127.0.0.1, port: {}, tls: none, allow-insecure: true }}",
                a.port()
            ),
            None => format!(
                "{{ host: localhost, port: {}, tls: implicit }}",
                self.dovecot.imaps_port
            ),
        };
        let text = format!(
            "version: 1\nname: {name}\nplatforms:\n  old:\n    type: imap\n    imap: {}\n  new:\n    \
             type: imap\n    imap: {}\naccounts:\n  - address: {}\n    from: old\n    to: new\n    \
             target-login: {}\n    source-password: {{ env: SOURCE_PW }}\n    target-password: \
             {{ file: target.pw }}\n{extra}",
            tls(source_addr),
            tls(target_addr),
            SOURCE.0,
            TARGET.0,
        );
        std::fs::write(self.dir.path().join("target.pw"), format!("{}\n", TARGET.1))
            .expect("write the password file");
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).expect("write the plan");
        path
    }

    /// A plan whose target is reached with STARTTLS on the plain port.
    fn plan_starttls(&self, name: &str) -> PathBuf {
        let path = self.plan(name, None, "");
        let text = std::fs::read_to_string(&path).expect("plan");
        let implicit = format!(
            "{{ host: localhost, port: {}, tls: implicit }}",
            self.dovecot.imaps_port
        );
        let starttls = format!(
            "{{ host: localhost, port: {}, tls: starttls }}",
            self.dovecot.imap_port
        );
        // The second server block is the target's.
        let at = text.rfind(&implicit).expect("the target's server");
        let text = format!("{}{starttls}{}", &text[..at], &text[at + implicit.len()..]);
        std::fs::write(&path, text).expect("write the plan");
        path
    }

    /// A proxy to Dovecot's clear-text port capped at `bytes_per_s` each way, so that a copy
    /// lasts long enough to be interrupted in its middle.
    fn throttled(&self, bytes_per_s: u64) -> Proxy {
        Proxy::start(
            self.dovecot.imap_addr(),
            Faults {
                bandwidth: Some(bytes_per_s),
                ..Faults::default()
            },
        )
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mailplan"));
        c.args(args)
            .env("NO_COLOR", "1")
            .env("SSL_CERT_FILE", self.dovecot.ca_cert_path())
            .env("SOURCE_PW", SOURCE.1)
            .current_dir(self.dir.path());
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("mailplan runs")
    }

    pub(crate) fn source(&self) -> Multiset {
        snapshot(&self.dovecot, SOURCE.0, SOURCE.1)
    }

    pub(crate) fn target(&self) -> Multiset {
        snapshot(&self.dovecot, TARGET.0, TARGET.1)
    }

    /// Source and target users for each name (`NAME@old.example`, `NAME@new.example`), a
    /// small corpus in each source, and the accounts' plan lines (platforms `old` and `new`)
    /// with the environment their passwords come from.
    pub(crate) fn more_accounts(
        &self,
        names: &[&str],
        seed: u64,
    ) -> (String, Vec<(String, String)>) {
        for name in names {
            self.dovecot
                .add_user(&format!("{name}@old.example"), &format!("{name}-old"));
            self.dovecot
                .add_user(&format!("{name}@new.example"), &format!("{name}-new"));
        }
        // Dovecot notices a changed passwd-file by its modification time, at a one-second
        // resolution: rewrites within the same second as its last read may go unseen.
        std::thread::sleep(Duration::from_millis(1100));
        let (mut lines, mut envs) = (String::new(), Vec::new());
        for name in names {
            Corpus::with_seed(20, seed).seed(
                &self.dovecot,
                &format!("{name}@old.example"),
                &format!("{name}-old"),
            );
            let _ = write!(
                lines,
                "  - address: {name}@old.example\n    from: old\n    to: new\n    target-login: \
                 {name}@new.example\n    source-password: {{ env: PW_{name} }}\n    \
                 target-password: {{ env: PW_NEW_{name} }}\n"
            );
            envs.push((format!("PW_{name}"), format!("{name}-old")));
            envs.push((format!("PW_NEW_{name}"), format!("{name}-new")));
        }
        (lines, envs)
    }

    /// Every account's target holds exactly its source: SOURCE's and those of
    /// [`Sandbox::more_accounts`].
    pub(crate) fn assert_accounts_copied(&self, names: &[&str]) {
        assert_same(&self.source(), &self.target());
        for name in names {
            let user = |side: &str| format!("{name}@{side}.example");
            assert_same(
                &snapshot(&self.dovecot, &user("old"), &format!("{name}-old")),
                &snapshot(&self.dovecot, &user("new"), &format!("{name}-new")),
            );
        }
    }

    fn state(&self, name: &str) -> PathBuf {
        self.dir.path().join(".mailplan").join(format!("{name}.db"))
    }
}

/// The JSON events of an `apply --format json` run, in order (every line of stdout is one).
pub(crate) fn json_events(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// The last event of a run: `finished`.
fn finished_event(out: &Output) -> serde_json::Value {
    json_events(out).pop().expect("a finished event")
}

/// The `step-done` event of the run's verify step, as text (empty when there is none).
fn verify_done(events: &[serde_json::Value]) -> String {
    events
        .iter()
        .find(|e| {
            e["event"] == "step-done" && e["step"].as_str().is_some_and(|k| k.starts_with("verify"))
        })
        .map(ToString::to_string)
        .unwrap_or_default()
}

pub(crate) fn assert_same(expected: &Multiset, actual: &Multiset) {
    let d = diff(expected, actual);
    assert!(d.is_empty(), "the target differs from the source:\n{d}");
}

#[test]
fn a_full_copy_is_exact_a_rerun_copies_nothing_and_a_delta_pass_takes_only_new_mail() {
    let s = Sandbox::new();
    let corpus = Corpus::small();
    corpus.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let plan = s.plan("full", None, "");
    let plan = plan.to_str().expect("utf-8");

    let out = s.run(&["apply", plan]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let source = s.source();
    assert_eq!(source.message_total(), corpus.expected().message_total());
    assert_same(&source, &s.target());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("done    verify alice@old.example: all"),
        "{}",
        text(&out)
    );
    assert!(
        !err.contains(SOURCE.1) && !err.contains(TARGET.1),
        "a password was printed"
    );

    // A re-run copies nothing and changes nothing.
    let out = s.run(&["apply", plan, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let events = json_events(&out);
    let finished = events.last().expect("events");
    assert_eq!(finished["event"], "finished");
    assert_eq!(finished["messages"], 0, "{}", text(&out));
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "step-unchanged" && e["step"] == "verify alice@old.example"),
        "verify is not repeated when nothing moved: {}",
        text(&out)
    );
    assert_same(&source, &s.target());

    // Delta pass: new mail in two folders arrives since the full copy.
    let new_mail = Corpus::with_seed(12, 99);
    new_mail.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let out = s.run(&["apply", plan, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let last = finished_event(&out);
    assert_eq!(last["messages"], 12, "{}", text(&out));
    assert_same(&s.source(), &s.target());

    // status and report read the store.
    let out = s.run(&["status", plan, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(status["format"], "mailplan.status/v1");
    let account = &status["accounts"][0];
    assert_eq!(
        account["copied"].as_u64(),
        Some(source.message_total() as u64 + 12)
    );
    assert_eq!(account["missing"], 0);
    // After the delta pass: every source message is on the target, all copied by mailplan over
    // the runs (the report does not count them twice as "copied" and "already there").
    let total = source.message_total() as u64 + 12;
    assert_eq!(account["found"].as_u64(), Some(total), "{status}");
    assert_eq!(account["on_target"].as_u64(), Some(total), "{status}");
    let out = s.run(&["report", plan, "--format", "markdown"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.contains(&format!(
            "| alice@old.example | verified | {total} | {total} | {total} | 0 | 0 |"
        )),
        "{md}"
    );
    let out = s.run(&["status", plan]);
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        human.contains(&format!(
            "{total} in the source, {total} on the target ({total} copied by mailplan"
        )),
        "{human}"
    );
    let out = s.run(&["report", plan, "--format", "html"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("<td>alice@old.example</td>"));

    // The store holds no secret and is private.
    let bytes = std::fs::read(s.state("full")).expect("state file");
    let stored = String::from_utf8_lossy(&bytes);
    assert!(!stored.contains(SOURCE.1) && !stored.contains(TARGET.1));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.state("full"))
            .expect("state")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn mail_arriving_during_the_copy_is_counted_by_verify_not_failed_and_the_next_run_copies_it() {
    let s = Sandbox::new();
    Corpus::small().seed(&s.dovecot, SOURCE.0, SOURCE.1);
    // The source at 100 kB/s: the copy lasts seconds, and mail keeps arriving in its INBOX
    // (straight into Dovecot) until apply ends: some after the copy read INBOX.
    let slow_source = s.throttled(100_000);
    let plan = s.plan_via("arriving", Some(slow_source.addr()), None, "");
    let plan = plan.to_str().expect("utf-8");
    let mut child = s
        .command(&["apply", plan, "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apply starts");
    let mut arrived = 0;
    while child.try_wait().expect("apply runs").is_none() {
        Corpus::arrivals(arrived, 1).seed(&s.dovecot, SOURCE.0, SOURCE.1);
        arrived += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("apply ends");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let verify = verify_done(&json_events(&out));
    let event: serde_json::Value = serde_json::from_str(&verify).expect("a verify step");
    let counted: usize = event["summary"]
        .as_str()
        .and_then(|summary| {
            summary.split("; ").find_map(|part| {
                part.strip_suffix(
                    " more arrived in the source after the copy read it (the next apply copies \
                     them)",
                )
            })
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("verify counts what arrived: {verify}"));
    assert!(
        (1..=arrived).contains(&counted),
        "{counted} of {arrived} arrivals after the copy: {verify}"
    );

    // Nothing arrives any more: the next run copies what arrived, exactly once.
    let out = s.run(&["apply", plan, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let copied = finished_event(&out)["messages"].as_u64().expect("a count");
    assert!(
        copied >= counted as u64,
        "{copied} copied, {counted} counted"
    );
    let verify = verify_done(&json_events(&out));
    assert!(
        verify.contains("are on the target") && !verify.contains("arrived"),
        "verify ran again and counted no arrival: {}",
        text(&out)
    );
    assert_same(&s.source(), &s.target());
}

#[test]
fn a_dry_run_reads_live_state_and_writes_nothing() {
    let s = Sandbox::new();
    Corpus::with_count(40).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    // Something already on the target, to see that the dry run counts it as already there.
    let plan = s.plan("dry", None, "");
    let plan = plan.to_str().expect("utf-8");
    let before = s.target();
    let out = s.run(&["apply", plan, "--dry-run", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let events = json_events(&out);
    let would: u64 = events
        .iter()
        .filter(|e| e["event"] == "folder")
        .map(|e| {
            assert_eq!(e["dry_run"], true);
            e["to_copy"].as_u64().expect("to_copy")
        })
        .sum();
    assert_eq!(would, 40, "{}", text(&out));
    assert_same(&before, &s.target());
    assert!(
        !s.state("dry").exists(),
        "a dry run created the state store"
    );
    assert!(!s.dir.path().join(".mailplan").exists());
}

#[test]
fn a_run_killed_with_sigkill_resumes_without_loss_or_duplicate() {
    killed_three_times_then_resumed(&Corpus::with_seed(900, 7), &[]);
}

#[test]
fn a_shared_folder_killed_with_sigkill_resumes_without_loss_or_duplicate() {
    // One folder large enough that both connection pairs send it, chunks finishing out of
    // order: the kills land while both are appending.
    killed_three_times_then_resumed(&Corpus::with_seed(2400, 8).all_in("INBOX"), &[]);
}

/// Copy `corpus` through a slow link to the target, kill apply (SIGKILL) three times at a
/// sixth, a third and two thirds of it, then resume: the target must be exactly the source.
fn killed_three_times_then_resumed(corpus: &Corpus, args: &[&str]) {
    let s = Sandbox::new();
    corpus.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    // A slow link to the target so the kills land in the middle of the copy.
    let proxy = s.throttled(2_000_000);
    let plan = s.plan("killed", Some(proxy.addr()), "");
    let plan = plan.to_str().expect("utf-8");
    let total = u32::try_from(corpus.expected().message_total()).expect("a small corpus");

    let mut kills = 0;
    for wait_for in [total / 6, total / 3, total * 2 / 3] {
        let mut child = s
            .command(&[&["apply", plan], args].concat())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn apply");
        let start = Instant::now();
        loop {
            let copied: u32 = target_count(&s.dovecot);
            if copied >= wait_for || start.elapsed() > Duration::from_secs(60) {
                break;
            }
            if child.try_wait().expect("try_wait").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait().expect("try_wait").is_none() {
            child.kill().expect("SIGKILL");
            kills += 1;
        }
        child.wait().expect("reap");
        // What the killed run had written is still on its way through the slow link (the
        // server may yet commit a whole MULTIAPPEND): resume once that has landed, as a person
        // or a CI retry would, seconds later. (A resume started at once waits for it itself:
        // store::twenty_immediate_resumes_after_sigkill_behind_a_slow_link_leave_no_duplicate.)
        assert!(
            proxy.wait_idle(Duration::from_secs(30)),
            "the killed run's connections did not drain"
        );
    }
    assert!(kills >= 2, "the copy finished before it could be killed");
    let out = s.run(&[&["apply", plan], args].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&s.source(), &s.target());
}

/// Messages on the target, all folders.
/// The messages on the target, in every folder it has (a resumed copy may take its folders in
/// any order: counting a few of them let a run finish unseen while a test waited for it).
fn target_count(d: &Dovecot) -> u32 {
    folder_list(d, TARGET.0, TARGET.1)
        .iter()
        .map(|f| message_count_or_zero(d, &f.name))
        .sum()
}

fn message_count_or_zero(d: &Dovecot, folder: &str) -> u32 {
    std::panic::catch_unwind(|| message_count(d, TARGET.0, TARGET.1, folder)).unwrap_or(0)
}

#[test]
fn a_connection_cut_mid_append_is_retried_and_nothing_is_lost_or_doubled() {
    let s = Sandbox::new();
    Corpus::with_seed(300, 11).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    // Every connection to the target dies after 150 kB sent: mid-APPEND, several times.
    let proxy = Proxy::start(
        s.dovecot.imap_addr(),
        Faults {
            cut_after_client_bytes: Some(150_000),
            ..Faults::default()
        },
    );
    let plan = s.plan("cut", Some(proxy.addr()), "");
    let plan = plan.to_str().expect("utf-8");
    let mut out = s.run(&["apply", plan]);
    let mut log = text(&out);
    // Each connection makes progress; a few runs at most (each retries 5 times) finish it.
    for _ in 0..5 {
        if out.status.code() == Some(0) {
            break;
        }
        out = s.run(&["apply", plan, "--retry-failed"]);
        log.push_str(&text(&out));
    }
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(
        log.contains("retry   copy-mail alice@old.example") && log.contains("closed"),
        "no connection was cut and retried: {log}"
    );
    assert_same(&s.source(), &s.target());
}

#[test]
fn a_second_apply_on_the_same_state_is_refused_while_the_first_runs() {
    let s = Sandbox::new();
    Corpus::with_seed(200, 3).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let proxy = Proxy::start(
        s.dovecot.imap_addr(),
        Faults::latency(Duration::from_millis(20)),
    );
    let plan = s.plan("locked", Some(proxy.addr()), "");
    let plan = plan.to_str().expect("utf-8");
    let mut first = s
        .command(&["apply", plan])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while !s.state("locked").exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let second = s.run(&["apply", plan]);
    let still_running = first.try_wait().expect("try_wait").is_none();
    first.kill().ok();
    first.wait().ok();
    assert!(
        still_running,
        "the first apply ended too early to test the lock"
    );
    assert_eq!(second.status.code(), Some(2), "{}", text(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("is locked by") && err.contains("pid"), "{err}");

    // The first one was killed: its lock is stale now and the next run takes over.
    let out = s.run(&["apply", plan]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&s.source(), &s.target());
}

#[test]
fn a_wrong_password_fails_that_account_only_with_the_servers_words() {
    let s = Sandbox::new();
    Corpus::with_count(20).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    s.dovecot.add_user("bob@old.example", "bob-secret");
    s.dovecot.add_user("bob@new.example", "bob-new");
    let extra = "  - address: bob@old.example\n    from: old\n    to: new\n    target-login: \
                 bob@new.example\n    source-password: { env: BOB_PW }\n    target-password: { env: \
                 BOB_NEW_PW }\n";
    let plan = s.plan("password", None, extra);
    let plan = plan.to_str().expect("utf-8");
    let out = s
        .command(&["apply", plan])
        .env("BOB_PW", "not-bobs-password")
        .env("BOB_NEW_PW", "bob-new")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("FAILED  copy-mail bob@old.example: IMAP localhost:")
            && err.contains("while logging in as bob@old.example"),
        "{err}"
    );
    assert!(err.contains("skipped verify bob@old.example"), "{err}");
    assert!(
        !err.contains("not-bobs-password"),
        "the password was printed"
    );
    assert!(err.contains("done    verify alice@old.example"), "{err}");
    assert_same(&s.source(), &s.target());
}

#[test]
fn an_unset_secret_stops_apply_before_anything_runs() {
    let s = Sandbox::new();
    let plan = s.plan("unset", None, "");
    let out = Command::new(env!("CARGO_BIN_EXE_mailplan"))
        .args(["apply", plan.to_str().expect("utf-8")])
        .env("NO_COLOR", "1")
        .env_remove("SOURCE_PW")
        .current_dir(s.dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("env:SOURCE_PW"), "{err}");
    assert!(!s.state("unset").exists(), "something ran");
}

/// Send `signal` (`INT`, `TERM`) to a child.
pub(crate) fn signal(child: &std::process::Child, signal: &str) {
    let ok = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -{signal} failed");
}

/// Wait for a child to end, at most `limit`; its exit code.
fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        if start.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_interrupt_stops_at_a_safe_point_with_130_and_the_next_run_resumes() {
    let s = Sandbox::new();
    let corpus = Corpus::with_seed(600, 5);
    corpus.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    // Slow enough that the interrupt lands mid-copy even on a loaded machine (the corpus is
    // about 1 MB: at 1.5 MB/s a busy CI machine saw the whole copy end first).
    let proxy = s.throttled(250_000);
    let plan = s.plan("interrupted", Some(proxy.addr()), "");
    let plan = plan.to_str().expect("utf-8");
    let total = u32::try_from(corpus.expected().message_total()).expect("small");

    // SIGTERM once: finish the batch, record it, exit 130.
    let mut child = s
        .command(&["apply", plan])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while target_count(&s.dovecot) < total / 5 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "TERM");
    let code = wait_exit(&mut child, Duration::from_secs(60));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut err).ok();
    assert_eq!(code, Some(130), "{err}");
    assert!(
        err.contains("interrupt") && err.contains("stopped copy-mail"),
        "{err}"
    );
    let copied = target_count(&s.dovecot);
    assert!(copied < total, "the copy ended before the interrupt");

    let out = s.run(&["status", plan]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("interrupted"), "{status}");

    // Two interrupts: the second exits at once; still resumable.
    let mut child = s
        .command(&["apply", plan])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while target_count(&s.dovecot) <= copied && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the second run ended before it could be interrupted"
    );
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(50));
    signal(&child, "INT");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(130));

    let out = s.run(&["apply", plan]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&s.source(), &s.target());
}

#[test]
fn a_folder_larger_than_the_memory_budget_streams_through_pipelined_groups() {
    // 60 messages of ~150 kB in one folder: 9 MB, more than the 4 MB a connection pair may
    // hold, in MULTIAPPEND groups filled by size. A regression test: groups in flight held the
    // whole budget while the appender waited for the next message, and the copy hung.
    let s = Sandbox::new();
    let corpus = Corpus::with_seed(20, 12).with_bulky("Archive", 60, 150_000);
    corpus.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let plan = s.plan("bulky", None, "");
    let plan = plan.to_str().expect("utf-8");
    let mut child = s
        .command(&["apply", plan])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let code = wait_exit(&mut child, Duration::from_secs(90));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut err).ok();
    assert_eq!(code, Some(0), "the copy did not finish in 90 s: {err}");
    assert_eq!(
        s.source().message_total(),
        corpus.expected().message_total()
    );
    assert_same(&s.source(), &s.target());
}

/// The flow the `copy-mail` step recorded in the state store (how it appended, its budget).
fn recorded_flow(s: &Sandbox, plan_name: &str) -> serde_json::Value {
    let db = rusqlite::Connection::open(s.state(plan_name)).expect("state store");
    let output: String = db
        .query_row(
            "SELECT output FROM steps WHERE key = ?1",
            [format!("copy-mail {}", SOURCE.0)],
            |row| row.get(0),
        )
        .expect("the copy-mail step's output");
    serde_json::from_str::<serde_json::Value>(&output).expect("JSON")["flow"].clone()
}

/// A proxy before the sandbox's Dovecot that records both directions of every connection and
/// delays each by `ms` (so that pipelining shows on the wire).
fn recording_proxy(s: &Sandbox, ms: u64) -> Proxy {
    Proxy::start(
        s.dovecot.imap_addr(),
        Faults {
            record: true,
            ..Faults::latency(Duration::from_millis(ms))
        },
    )
}

/// The APPEND commands of every recorded connection: (messages per APPEND, most in flight at
/// once) per connection that sent any.
fn appends_on_the_wire(proxy: &Proxy) -> Vec<(Vec<usize>, usize)> {
    proxy
        .transcripts()
        .iter()
        .filter_map(|t| {
            let literals: Vec<usize> = wire::commands(t)
                .iter()
                .filter(|c| c.name == "APPEND")
                .map(|c| c.literals)
                .collect();
            (!literals.is_empty()).then(|| (literals, wire::most_in_flight(t, "APPEND")))
        })
        .collect()
}

#[test]
fn a_target_with_literal_plus_and_no_multiappend_gets_pipelined_appends_and_per_message_refusals() {
    // Exchange and Outlook.com advertise LITERAL+ without MULTIAPPEND (their CAPABILITY, less
    // the AUTH= items): one APPEND per message, several written before the first answer. The
    // target refuses messages over 2 kB: each refusal is that message's alone.
    let s = Sandbox::with_config(
        "imap_capability = IMAP4rev1 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE \
         LITERAL+\n",
    );
    s.dovecot
        .add_user_with(TARGET.0, TARGET.1, "userdb_quota_max_mail_size=2k");
    let corpus = Corpus::with_seed(150, 43);
    corpus.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let proxy = recording_proxy(&s, 2);
    let plan = s.plan("literal-plus", Some(proxy.addr()), "");
    let plan = plan.to_str().expect("utf-8");
    let out = s.run(&["apply", plan]);
    assert_eq!(out.status.code(), Some(1), "verify fails: {}", text(&out));
    assert_eq!(recorded_flow(&s, "literal-plus")["append"], "literal-plus");
    assert_refusals_recorded(&s, plan);
    let source = s.source();
    let appends = appends_on_the_wire(&proxy);
    let sent: usize = appends.iter().map(|(l, _)| l.len()).sum();
    assert_eq!(
        sent as u64,
        source.message_total() as u64,
        "one APPEND per message, each sent once"
    );
    assert!(
        appends.iter().all(|(l, _)| l.iter().all(|n| *n == 1)),
        "MULTIAPPEND sent to a server that does not offer it: {appends:?}"
    );
    assert!(
        appends.iter().any(|(_, most)| *most > 1),
        "the APPENDs were not pipelined: {appends:?}"
    );
}

#[test]
fn a_target_without_literal_plus_gets_each_literal_after_its_go_ahead_and_an_exact_copy() {
    // Each literal waits for the server's go-ahead, but the next APPEND is written as soon as a
    // literal is: the answer to one and the go-ahead of the next come back together (at most
    // two APPENDs in flight: one round trip per message, not two).
    let s = Sandbox::with_config(SYNCHRONISING);
    // Two messages over 2 MB: streamed, each literal sent once the server says go ahead.
    let corpus = Corpus::with_seed(60, 44)
        .with_bulky("Archive", 8, 150_000)
        .with_bulky("Sent", 2, 2_600_000);
    corpus.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let proxy = recording_proxy(&s, 1);
    let plan = s.plan("synchronising", Some(proxy.addr()), "");
    let plan = plan.to_str().expect("utf-8");
    let out = s.run(&["apply", plan]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        recorded_flow(&s, "synchronising")["append"],
        "synchronising"
    );
    assert_eq!(
        s.source().message_total(),
        corpus.expected().message_total()
    );
    assert_same(&s.source(), &s.target());
    let appends = appends_on_the_wire(&proxy);
    assert!(
        appends
            .iter()
            .all(|(l, most)| *most <= 2 && l.iter().all(|n| *n == 1)),
        "{appends:?}"
    );
    assert!(appends.iter().any(|(_, most)| *most == 2), "{appends:?}");
    let non_synchronising = proxy
        .transcripts()
        .iter()
        .flat_map(wire::command_lines)
        .filter(|l| l.contains(" APPEND ") && l.ends_with("+}"))
        .count();
    assert_eq!(non_synchronising, 0, "LITERAL+ used where not offered");
}

/// What a server offering neither MULTIAPPEND nor LITERAL+ says after login.
const SYNCHRONISING: &str =
    "imap_capability = IMAP4rev1 SASL-IR UIDPLUS ID UNSELECT CHILDREN IDLE NAMESPACE\n";

#[test]
fn without_literal_plus_a_refused_message_is_recorded_alone_and_the_rest_is_copied() {
    let s = Sandbox::with_config(SYNCHRONISING);
    s.dovecot
        .add_user_with(TARGET.0, TARGET.1, "userdb_quota_max_mail_size=2k");
    Corpus::with_seed(60, 46).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let plan = s.plan("sync-refused", None, "");
    let plan = plan.to_str().expect("utf-8");
    let out = s.run(&["apply", plan]);
    assert_eq!(out.status.code(), Some(1), "verify fails: {}", text(&out));
    assert_eq!(recorded_flow(&s, "sync-refused")["append"], "synchronising");
    assert_refusals_recorded(&s, plan);
}

/// After a copy to a target refusing some messages: each refusal is in the report with the
/// server's words, everything else is on the target, nothing unexpected is.
fn assert_refusals_recorded(s: &Sandbox, plan: &str) {
    let report: serde_json::Value =
        serde_json::from_slice(&s.run(&["report", plan, "--format", "json"]).stdout).expect("JSON");
    let account = &report["accounts"][0];
    let refused = account["refused"].as_u64().expect("refused");
    assert!(refused > 0, "nothing was refused: {report}");
    let issues = account["issues"].as_array().expect("issues");
    assert!(
        issues.iter().all(|i| i["kind"] == "refused"
            && i["detail"]
                .as_str()
                .is_some_and(|d| d.contains("[LIMIT] Mail size is larger"))),
        "{report}"
    );
    let (source, target) = (s.source(), s.target());
    assert_eq!(
        target.message_total() as u64 + refused,
        source.message_total() as u64,
        "everything but the refused messages is on the target: {report}"
    );
    for key in target.messages.keys() {
        assert!(source.messages.contains_key(key), "unexpected: {key:?}");
    }
}

#[test]
fn messages_over_two_megabytes_are_read_in_pieces_and_arrive_byte_for_byte() {
    // Memory stays bounded whatever the sizes: a large message is never read whole. Through a
    // recording proxy before the source, no answer carries more than a 1 MB piece.
    let s = Sandbox::new();
    let corpus = Corpus::with_seed(40, 45)
        .with_bulky("Archive", 3, 3_500_000)
        .with_bulky("Work", 1, 2_200_000);
    corpus.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let proxy = recording_proxy(&s, 1);
    let plan = s.plan_via("pieces", Some(proxy.addr()), None, "");
    let plan = plan.to_str().expect("utf-8");
    let out = s.run(&["apply", plan]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        s.source().message_total(),
        corpus.expected().message_total()
    );
    assert_same(&s.source(), &s.target());
    let transcripts = proxy.transcripts();
    let largest = transcripts
        .iter()
        .map(|t| wire::largest_literal(t, Side::Server))
        .max()
        .unwrap_or(0);
    assert!(
        largest > 0 && largest <= 1 << 20,
        "the source sent {largest} bytes in one answer"
    );
    let pieces = transcripts
        .iter()
        .flat_map(wire::command_lines)
        .filter(|l| l.contains("BODY.PEEK[]<"))
        .count();
    // 3 × 3.5 MB and 2.2 MB: at least 4 + 4 + 4 + 3 pieces, and a probe of each last byte.
    assert!(pieces >= 15 + 4, "{pieces} partial reads");

    let out = s.run(&["apply", plan, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&s.source(), &s.target());
}

#[test]
fn a_target_far_away_gets_the_wider_flow_and_the_copy_stays_exact() {
    // 8 ms each way: the target's first round trip is over 10 ms, so the copy runs with the
    // wider byte budget and four MULTIAPPEND groups in flight. A re-run then copies nothing.
    let s = Sandbox::new();
    let corpus = Corpus::with_seed(120, 14).with_bulky("Archive", 50, 150_000);
    corpus.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let proxy = Proxy::start(
        s.dovecot.imap_addr(),
        Faults::latency(Duration::from_millis(8)),
    );
    let plan = s.plan("far", Some(proxy.addr()), "");
    let plan = plan.to_str().expect("utf-8");
    let out = s.run(&["apply", plan]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        s.source().message_total(),
        corpus.expected().message_total()
    );
    assert_same(&s.source(), &s.target());
    // The copy measured the distance and took the wider flow (the step's recorded output).
    let flow = recorded_flow(&s, "far");
    assert!(flow["target_round_trip_ms"].as_u64() >= Some(10), "{flow}");
    assert_eq!(flow["groups_in_flight"], 4, "{flow}");
    assert_eq!(flow["append"], "multiappend", "{flow}");

    let out = s.run(&["apply", plan, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let last = finished_event(&out);
    assert_eq!(last["messages"], 0, "{}", text(&out));
    assert_same(&s.source(), &s.target());
}

#[test]
fn a_message_over_max_message_size_is_skipped_with_a_reason_and_copied_once_the_limit_goes() {
    let s = Sandbox::new();
    let corpus = Corpus::with_seed(30, 8).with_large_message();
    corpus.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let limited = s.plan("sizes", None, "    copy:\n      max-message-size: 10MB\n");
    let out = s.run(&["apply", limited.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 left out on purpose"), "{err}");
    let out = s.run(&[
        "report",
        limited.to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let issue = &report["accounts"][0]["issues"][0];
    assert_eq!(issue["kind"], "too-large", "{report}");
    assert!(
        issue["detail"]
            .as_str()
            .is_some_and(|d| d.contains("larger than max-message-size")),
        "{report}"
    );
    assert_eq!(
        s.target().message_total() + 1,
        s.source().message_total(),
        "all but the large message"
    );

    // Without the limit (same plan name, so the same state): the next run copies it.
    let unlimited = s.plan("sizes", None, "");
    let out = s.run(&["apply", unlimited.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&s.source(), &s.target());
}

#[test]
fn plan_refresh_shows_the_live_folder_mapping_and_changes_nothing() {
    let s = Sandbox::new();
    Corpus::with_count(30).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let plan = s.plan(
        "refresh",
        None,
        "    copy:\n      folders:\n        map: { Archive: Old/Archive }\n        exclude: [Junk]\n",
    );
    let plan = plan.to_str().expect("utf-8");
    // The target already has its Sent folder (special use \Sent in the server's config).
    s.dovecot
        .doveadm(&["mailbox", "create", "-s", "-u", TARGET.0, "Sent"]);
    let before = s.target();
    let out = s.run(&["plan", plan, "--refresh"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Live state"), "{stdout}");
    assert!(
        stdout.contains("-> Old/Archive (to create) [map]"),
        "{stdout}"
    );
    assert!(stdout.contains("-> INBOX ("), "{stdout}");
    assert!(
        !stdout.contains("  Junk ("),
        "excluded folders are not listed: {stdout}"
    );

    let out = s.run(&["plan", plan, "--refresh", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let folders = doc["live"][0]["folders"].as_array().expect("live folders");
    let sent = folders
        .iter()
        .find(|f| f["source"] == "Sent")
        .expect("Sent is listed");
    assert_eq!(sent["reason"], "special-use");
    assert_same(&before, &s.target());
    assert!(!s.dir.path().join(".mailplan").exists());
}

#[test]
fn messages_the_target_refuses_are_recorded_with_its_words_and_the_rest_is_copied() {
    let s = Sandbox::new();
    // The target refuses messages over 2 kB (Dovecot's quota plugin): some in the middle of
    // MULTIAPPEND groups, which must fall back to one APPEND each to isolate them.
    s.dovecot
        .add_user_with(TARGET.0, TARGET.1, "userdb_quota_max_mail_size=2k");
    let corpus = Corpus::with_seed(150, 21);
    corpus.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let plan = s.plan("refused", None, "");
    let plan = plan.to_str().expect("utf-8");
    let out = s.run(&["apply", plan]);
    assert_eq!(out.status.code(), Some(1), "verify fails: {}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FAILED  verify alice@old.example"), "{err}");

    assert_refusals_recorded(&s, plan);
    let md = String::from_utf8_lossy(&s.run(&["report", plan]).stdout).into_owned();
    assert!(
        md.contains("### Problems") && md.contains("refused"),
        "{md}"
    );
}

#[test]
fn messages_already_on_the_target_at_another_size_are_found_not_copied_again() {
    // The target already holds every message, each a little larger (a header added, as a
    // server that re-renders what it stores, e.g. Exchange with its estimated RFC822.SIZE, or
    // an earlier mbsync run, reports other sizes). mailplan finds them by identity and copies
    // nothing; verify passes and says how many were found at another size.
    let s = Sandbox::new();
    let corpus = Corpus::with_seed(90, 52);
    corpus.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    corpus
        .altered("X-TUID: bP1QfNpa6Y2S\r\n")
        .seed(&s.dovecot, TARGET.0, TARGET.1);
    let before = s.target();
    let plan = s.plan("resized", None, "");
    let plan = plan.to_str().expect("utf-8");
    let out = s.run(&["apply", plan, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let events = json_events(&out);
    let last = events.last().expect("a finished event");
    assert_eq!(last["messages"], 0, "nothing copied: {}", text(&out));
    let after = s.target();
    assert!(diff(&before, &after).is_empty(), "the target changed");
    assert_eq!(
        after.message_total(),
        s.source().message_total(),
        "no message doubled"
    );
    let verify = verify_done(&events);
    assert!(
        verify.contains(&format!(
            "{} of them at another size",
            s.source().message_total()
        )),
        "{}",
        text(&out)
    );
}

#[test]
fn a_message_without_message_id_is_found_after_the_target_gave_it_one() {
    // Exchange gives a message without Message-ID one of its own. Such a message's identity on
    // the source (a digest of its header fields) is not its copy's (that Message-ID): it is
    // found by its fields, not copied a second time, and verify passes. One of them is not on
    // the target yet: that one, and only that one, is copied.
    let s = Sandbox::new();
    let corpus = Corpus::with_seed(60, 53).without_message_ids(5);
    let bare = |m: &crate::support::corpus::Message| {
        !String::from_utf8_lossy(&m.bytes).contains("Message-ID:")
    };
    let without_id = corpus.messages.iter().filter(|m| bare(m)).count();
    assert!(without_id >= 10, "{without_id} messages without Message-ID");
    corpus.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let mut stored = corpus.as_exchange_stores();
    let absent = corpus
        .messages
        .iter()
        .rposition(bare)
        .expect("a message without Message-ID");
    stored.messages.remove(absent);
    stored.seed(&s.dovecot, TARGET.0, TARGET.1);
    let plan = s.plan("given-ids", None, "");
    let plan = plan.to_str().expect("utf-8");
    let out = s.run(&["apply", plan, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let events = json_events(&out);
    let last = events.last().expect("a finished event");
    assert_eq!(last["messages"], 1, "only the absent one: {}", text(&out));
    assert_eq!(
        s.target().message_total(),
        s.source().message_total(),
        "no message doubled"
    );
    let verify = verify_done(&events);
    assert!(
        verify.contains(&format!("{} of them at another size", without_id - 1)),
        "{}",
        text(&out)
    );
    // A second run finds everything there.
    let out = s.run(&["apply", plan, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        s.target().message_total(),
        s.source().message_total(),
        "still no message doubled"
    );
}

#[test]
fn a_changed_uidvalidity_falls_back_to_identities_and_copies_only_what_is_missing() {
    let s = Sandbox::new();
    Corpus::with_seed(80, 31).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let plan = s.plan_starttls("uidvalidity");
    let plan = plan.to_str().expect("utf-8");
    let out = s.run(&["apply", plan]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&s.source(), &s.target());

    // The source's INBOX gets a new UIDVALIDITY (a restored or rebuilt mailbox) and new mail.
    s.dovecot.doveadm(&[
        "mailbox",
        "update",
        "-u",
        SOURCE.0,
        "--uid-validity",
        "4242",
        "INBOX",
    ]);
    let new_mail = Corpus::with_seed(3, 77);
    new_mail.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let out = s.run(&["apply", plan, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let finished = finished_event(&out);
    assert_eq!(
        finished["messages"].as_u64(),
        Some(new_mail.expected().message_total() as u64),
        "only the new messages: {}",
        text(&out)
    );
    let inbox = json_events(&out)
        .into_iter()
        .find(|e| e["event"] == "folder" && e["source"] == "INBOX")
        .expect("INBOX had new mail");
    assert!(
        inbox["already"].as_u64().is_some_and(|n| n > 0),
        "the rebuilt INBOX was compared by identity, its old messages found: {inbox}"
    );
    assert_same(&s.source(), &s.target());
}

#[test]
fn many_accounts_on_one_server_share_a_small_connection_cap_without_deadlock() {
    let s = Sandbox::new();
    let (extra, envs) = s.more_accounts(&["bob", "carol", "dave"], 40);
    Corpus::with_seed(20, 41).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let plan = s.plan("cap", None, &extra);
    // Eight steps at once but two connections in all on the (one) server: without taking a
    // step's source and target slots together, each step would hold one and wait for the other.
    let mut child = s
        .command(&[
            "apply",
            plan.to_str().expect("utf-8"),
            "--parallelism",
            "8",
            "--max-connections-per-server",
            "2",
        ])
        .envs(envs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(90)),
        Some(0),
        "apply did not finish (deadlock?) or failed"
    );
    assert_same(&s.source(), &s.target());
}

#[test]
fn a_servers_max_connections_in_the_plan_caps_its_sessions_across_accounts() {
    let s = Sandbox::new();
    let names = ["bob", "carol", "dave"];
    let (extra, envs) = s.more_accounts(&names, 50);
    Corpus::with_seed(30, 51).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    // The source server behind a proxy that counts the sessions logged in at once, 10 ms away
    // so that each account's session lasts long enough to overlap the others'.
    let proxy = Proxy::start(
        s.dovecot.imap_addr(),
        Faults::latency(Duration::from_millis(10)),
    );
    let plan = s.plan_via("capped", Some(proxy.addr()), None, &extra);
    let written = std::fs::read_to_string(&plan).expect("plan");
    let capped = written.replacen(
        "allow-insecure: true }",
        "allow-insecure: true, max-connections: 2 }",
        1,
    );
    assert_ne!(capped, written);
    std::fs::write(&plan, capped).expect("write the plan");
    // Four accounts at once, each with up to two connection pairs by default: eight source
    // sessions could be open together but for the plan's cap.
    let out = s
        .command(&["apply", plan.to_str().expect("utf-8"), "--parallelism", "4"])
        .envs(envs)
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        proxy.peak_sessions(),
        2,
        "the source's sessions at once: the cap, reached by four accounts"
    );
    s.assert_accounts_copied(&names);
}

#[test]
fn a_slow_account_does_not_hold_back_the_others() {
    let s = Sandbox::new();
    let names = ["bob", "carol", "dave"];
    let (extra, envs) = s.more_accounts(&names, 60);
    // Alice's source is slow: 1.5 MB behind 300 KB/s, five seconds of copying at least.
    Corpus::with_seed(10, 61)
        .with_bulky("Archive", 3, 500_000)
        .seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let proxy = s.throttled(300_000);
    let plan = s.plan("slow", None, &extra);
    let written = std::fs::read_to_string(&plan).expect("plan");
    let slow = written
        .replacen(
            "platforms:\n",
            &format!(
                "platforms:\n  slow:\n    type: imap\n    imap: {{ host: 127.0.0.1, port: {}, \
                 tls: none, allow-insecure: true }}\n",
                proxy.port()
            ),
            1,
        )
        // Alice's is the first account.
        .replacen("    from: old\n", "    from: slow\n", 1);
    std::fs::write(&plan, &slow).expect("write the plan");
    assert!(
        slow.contains("address: alice@old.example\n    from: slow\n"),
        "{slow}"
    );

    // Two steps at once: Alice's copy holds one slot all along, the other three accounts go
    // through the other, one after another.
    let out = s
        .command(&[
            "apply",
            plan.to_str().expect("utf-8"),
            "--parallelism",
            "2",
            "--format",
            "json",
        ])
        .envs(envs)
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let done: Vec<String> = json_events(&out)
        .iter()
        .filter(|e| e["event"] == "step-done")
        .filter_map(|e| e["step"].as_str().map(ToOwned::to_owned))
        .collect();
    let at = |step: &str| {
        done.iter()
            .position(|d| d == step)
            .unwrap_or_else(|| panic!("no step-done for {step} in {done:?}"))
    };
    let alice_copied = at("copy-mail alice@old.example");
    for name in names {
        assert!(
            at(&format!("verify {name}@old.example")) < alice_copied,
            "{name} was held back by the slow account: {done:?}"
        );
    }
    s.assert_accounts_copied(&names);
}

#[test]
fn a_large_folder_is_shared_by_the_accounts_connection_pairs() {
    let s = Sandbox::new();
    let corpus = Corpus::with_seed(2400, 9).all_in("INBOX");
    corpus.seed(&s.dovecot, SOURCE.0, SOURCE.1);
    // The source at 1 MB/s a connection: the first pair reads the folder's headers long after
    // the second pair has logged in and found nothing else to take; it must wait for the
    // folder to be shared, not log out.
    let slow_source = s.throttled(1_000_000);
    let proxy = recording_proxy(&s, 1);
    let plan = s.plan_via("shared", Some(slow_source.addr()), Some(proxy.addr()), "");
    let plan = plan.to_str().expect("utf-8");
    let out = s.run(&["apply", plan, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(finished_event(&out)["messages"], 2400, "{}", text(&out));
    assert_same(&s.source(), &s.target());
    // Both target connections appended to the one folder, every message once.
    let appending = appends_on_the_wire(&proxy);
    assert_eq!(
        appending.len(),
        2,
        "connections that appended: {appending:?}"
    );
    let sent: usize = appending.iter().flat_map(|(l, _)| l).sum();
    assert_eq!(sent, 2400);
    // Recorded as done once every part was: the highest UID, nothing pending (the next pass
    // takes the fast path, from that mark).
    let db = rusqlite::Connection::open(s.state("shared")).expect("state store");
    let (last_uid, pending, copied): (u32, bool, u64) = db
        .query_row(
            "SELECT last_uid, pending, copied FROM folders WHERE source = 'INBOX'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("INBOX's record");
    assert_eq!((last_uid, pending, copied), (2400, false, 2400));
    drop(db);
    // A re-run finds nothing to send.
    let out = s.run(&["apply", plan, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(finished_event(&out)["messages"], 0, "{}", text(&out));
    assert_same(&s.source(), &s.target());
}
