//! What an operator sees around a run (issue 16): mistakes on the command line said in plain
//! words with what to do, before anything runs.

use crate::mailplan;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_only_address_not_in_the_plan_is_an_error_with_a_did_you_mean() {
    let out = mailplan(&[
        "plan",
        "plans/imap-to-imap.yaml",
        "--only",
        "Alice@Family.exampel",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--only alice@family.exampel: no account of the plan has this address"),
        "{err}"
    );
    assert!(
        err.contains("did you mean `alice@family.example`?"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no dry run was printed");

    // A known address in any case is fine.
    let out = mailplan(&[
        "plan",
        "plans/imap-to-imap.yaml",
        "--only",
        "ALICE@family.example",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn apply_with_an_unknown_exclude_address_runs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("s.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailplan"))
        .args([
            "apply",
            "plans/imap-to-imap.yaml",
            "--exclude",
            "nobody@nowhere.test",
        ])
        .arg("--state")
        .arg(&state)
        .env("NO_COLOR", "1")
        .env("ALICE_OLD", "x")
        .env("ALICE_NEW", "y")
        .output()
        .expect("mailplan runs");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--exclude nobody@nowhere.test: no account of the plan has this address"),
        "{err}"
    );
    assert!(err.contains("lists the plan's accounts"), "{err}");
    assert!(!state.exists(), "nothing ran: {err}");
}

#[test]
fn a_silent_ovh_api_is_named_while_apply_waits_for_it() {
    use crate::support::lines::wait_for_line;
    use std::time::Duration;
    // An API that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}/1.0", silent.local_addr().expect("addr"));
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("silent.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\novh: {{ endpoint: \"{base}\" }}\nplatforms:\n  old: {{ type: \
             ovh-mxplan, service: mxplan-1 }}\n  ex: {{ type: ovh-exchange, organization: \
             hosted-1, imap: {{ host: 127.0.0.1 }} }}\ndomains:\n  - {{ name: acme.test, \
             platform: ex }}\naccounts:\n  - {{ address: a@acme.test, from: old, to: ex, \
             source-password: {{ env: A }}, target-password: {{ env: B }} }}\n"
        ),
    )
    .expect("write the plan");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailplan"))
        .arg("apply")
        .arg(&plan)
        .env("NO_COLOR", "1")
        .env("A", "Old-password-1")
        .env("B", "New-password-1")
        .env("OVH_APPLICATION_KEY", "ak")
        .env("OVH_APPLICATION_SECRET", "as")
        .env("OVH_CONSUMER_KEY", "ck")
        .env("HOME", dir.path())
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("apply starts");
    let (notice, seen) = wait_for_line(
        &mut child,
        "waiting for the OVH API",
        Duration::from_secs(20),
    );
    child.kill().ok();
    child.wait().ok();
    drop(silent);
    let notice = notice.unwrap_or_else(|| panic!("no notice of the wait: {seen:?}"));
    assert!(
        notice.contains(&base) && notice.contains("s so far"),
        "{notice}"
    );
}

#[test]
fn the_demo_run_by_another_user_than_root_says_what_it_needs_and_touches_nothing() {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let dir = tempfile::tempdir().expect("tempdir");
    let demo_dir = dir.path().join("demo");
    let mut command = if root {
        // As `nobody`.
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash"]);
        c
    } else {
        std::process::Command::new("bash")
    };
    let out = command
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo"))
        .env("DEMO_DIR", &demo_dir)
        .output()
        .expect("bash runs the demo");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.starts_with("scripts/demo needs root"), "{err}");
    assert!(err.contains("sudo bash scripts/demo"), "{err}");
    assert!(
        !err.contains("apt-get:") && !err.contains("Permission denied"),
        "{err}"
    );
    assert!(!demo_dir.exists(), "the demo touched its folder");
}

/// `-q` quiets `apply`'s progress (no step, folder or progress line) but keeps what needs a
/// person: the failed step and the final summary. The run itself is the same.
#[test]
fn quiet_apply_shows_only_failures_and_the_summary() {
    use crate::apply::{SOURCE, Sandbox, TARGET};
    use crate::support::corpus::Corpus;
    use crate::support::mailbox::message_count;

    let sandbox = Sandbox::new();
    Corpus::with_seed(20, 3).seed(&sandbox.dovecot, SOURCE.0, SOURCE.1);
    // bob has no mailbox on the server: his copy fails at login.
    let plan = sandbox.plan(
        "quiet",
        None,
        "  - address: bob@old.example\n    from: old\n    to: new\n    \
         source-password: { env: BOB_PW }\n    target-password: { env: BOB_PW }\n",
    );
    let plan = plan.to_str().expect("utf-8");
    let run = |args: &[&str]| {
        sandbox
            .command(args)
            .env("BOB_PW", "no-such-user")
            .output()
            .expect("mailplan runs")
    };
    let out = run(&["apply", plan, "-q"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("FAILED  copy-mail bob@old.example: ")),
        "{err}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("finished with failures: ")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("FAILED  ") || l.starts_with("finished with failures: ")),
        "no progress, step or folder line: {err}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout");
    // The run was the same: alice's mail is on the target.
    assert!(message_count(&sandbox.dovecot, TARGET.0, TARGET.1, "INBOX") > 0);

    // Without -q, the same run shows its steps.
    let out = run(&["apply", plan]);
    let err = stderr(&out);
    assert!(err.contains("copy-mail alice@old.example"), "{err}");
    assert!(
        err.lines().any(|l| l.starts_with("applying quiet: ")),
        "{err}"
    );
}
