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
