//! `status` tells the truth (issue 16): while an `apply` runs it says so (host, pid, since)
//! rather than "interrupted"; after a killed run it says that run stopped; its exit code says
//! whether steps failed.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{SOURCE, Sandbox, assert_same, text};
use crate::support::corpus::Corpus;

fn status(s: &Sandbox, plan: &str) -> (Option<i32>, String) {
    let out = s.run(&["status", plan]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn status_during_a_run_says_it_is_running_and_after_a_kill_that_it_stopped() {
    let s = Sandbox::new();
    Corpus::with_seed(300, 5).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    // 200 kB/s: the copy lasts long enough to be looked at.
    let slow = s.throttled(200_000);
    let plan = s.plan_via("watched", Some(slow.addr()), None, "");
    let plan = plan.to_str().expect("utf-8");
    let mut child = s
        .command(&["apply", plan])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("apply starts");
    let pid = child.id();
    let start = Instant::now();
    let mut seen = (None, String::new());
    while start.elapsed() < Duration::from_secs(30) {
        seen = status(&s, plan);
        if seen.1.contains("copy-mail") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let json = s.run(&["status", plan, "--format", "json"]);
    let still_running = child.try_wait().expect("try_wait").is_none();
    super::signal(&child, "KILL");
    child.wait().ok();
    assert!(still_running, "apply ended before status was read");
    let (code, out) = seen;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("apply is running (host ") && out.contains(&format!(", pid {pid}, since ")),
        "{out}"
    );
    assert!(
        out.contains("alice@old.example [imap-to-imap] running"),
        "{out}"
    );
    assert!(!out.contains("interrupted"), "{out}");
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("status JSON");
    assert_eq!(
        json["running"]["pid"].as_u64(),
        Some(u64::from(pid)),
        "{json}"
    );

    // Killed: the lock is stale, the step was cut short.
    let (code, out) = status(&s, plan);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("(host ") && out.contains(&format!("pid {pid}) stopped without finishing")),
        "{out}"
    );
    assert!(
        out.contains("alice@old.example [imap-to-imap] interrupted"),
        "{out}"
    );

    // Resumed to the end: nothing is said about a run any more.
    let out = s.run(&["apply", plan]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&s.source(), &s.target());
    let (code, out) = status(&s, plan);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("alice@old.example [imap-to-imap] verified"),
        "{out}"
    );
    assert!(
        !out.contains("running") && !out.contains("stopped"),
        "{out}"
    );
}

#[test]
fn status_exits_1_when_a_step_failed() {
    let s = Sandbox::new();
    Corpus::with_count(10).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let plan = s.plan("failing", None, "");
    let plan = plan.to_str().expect("utf-8");
    let out = s
        .command(&["apply", plan])
        .env("SOURCE_PW", "not-the-password")
        .output()
        .expect("apply runs");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let (code, human) = status(&s, plan);
    assert_eq!(code, Some(1), "{human}");
    assert!(
        human.contains("alice@old.example [imap-to-imap] failed"),
        "{human}"
    );
    // The server's words as it wrote them, never Rust's debug notation, wherever they appear.
    let report = |format: &str| {
        let out = s.run(&["report", plan, "--format", format]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = "while logging in as alice@old.example: [AUTHENTICATIONFAILED] Authentication \
                failed.";
    for (what, output) in [
        ("apply", String::from_utf8_lossy(&out.stderr).into_owned()),
        ("status", human.clone()),
        ("report", report("markdown")),
        ("report --format html", report("html")),
    ] {
        assert!(output.contains(said), "{what}: {output}");
        assert!(
            !output.contains("info: Some") && !output.contains("code: None"),
            "{what}: {output}"
        );
    }
    let json = s.run(&["status", plan, "--format", "json"]);
    assert_eq!(json.status.code(), Some(1), "{}", text(&json));

    // Fixed: 0.
    let out = s.run(&["apply", plan, "--retry-failed"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(status(&s, plan).0, Some(0));
}

#[test]
fn the_summary_after_an_interrupt_counts_what_was_really_copied() {
    let s = Sandbox::new();
    Corpus::with_seed(600, 6).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    // Slow enough that the run is still copying when the test, polling the target, sees 100
    // messages and sends SIGTERM, even on a loaded machine (at 1.5 MB/s it had finished).
    let proxy = s.throttled(300_000);
    let plan = s.plan("summary", Some(proxy.addr()), "");
    let plan = plan.to_str().expect("utf-8");
    let mut child = s
        .command(&["apply", plan, "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while super::target_count(&s.dovecot) < 100 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    super::signal(&child, "TERM");
    let code = super::wait_exit(&mut child, Duration::from_secs(60));
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().expect("stdout"), &mut out).ok();
    assert_eq!(code, Some(130), "{out}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let finished = events.last().expect("events");
    assert_eq!(finished["event"], "finished", "{out}");
    assert_eq!(finished["interrupted"], true, "{out}");
    // What the target holds now is what this run copied (it started empty).
    let on_target = s.target().message_total() as u64;
    assert!(on_target >= 100, "{on_target}");
    assert_eq!(finished["messages"].as_u64(), Some(on_target), "{finished}");
    let bytes: u64 = events
        .iter()
        .filter(|e| e["event"] == "copied")
        .filter_map(|e| e["bytes"].as_u64())
        .sum();
    assert_eq!(finished["bytes"].as_u64(), Some(bytes), "{finished}");
}

#[test]
fn off_a_terminal_a_long_copy_prints_progress_lines_at_a_steady_interval() {
    let s = Sandbox::new();
    Corpus::with_seed(300, 9).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    // At 120 kB/s: several seconds of copying, in one pass.
    let slow = s.throttled(120_000);
    let plan = s.plan_via("lines", Some(slow.addr()), None, "");
    let plan = plan.to_str().expect("utf-8");
    let out = s.run(&["apply", plan]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let progress: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("copying alice@old.example: "))
        .collect();
    assert!(
        !progress.is_empty(),
        "no progress line while copying: {err}"
    );
    let total = s.source().message_total();
    for line in &progress {
        // `copying a@x: 1,200 of 5,000 message(s), 12.3 MB, 2,408/s`: the total is known (the
        // survey's count, the whole mailbox here) and the rate has no decimals to skip.
        assert!(
            line.contains(&format!(" of {total} message(s), ")),
            "{line}"
        );
        assert!(line.ends_with("/s") && !line.contains(".0/s"), "{line}");
    }
    let done = err.find("done    copy-mail").expect("the copy's end");
    assert!(
        err.find("copying alice@old.example: ")
            .is_some_and(|at| at < done),
        "{err}"
    );
    assert_same(&s.source(), &s.target());
}
