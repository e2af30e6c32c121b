//! Hostile and large input (issue 17, "Secrets and files", "Plans at scale"; issue 16's
//! warnings): what `validate`, `plan`, `status` and `report` show a person, and what they refuse.

use std::fmt::Write as _;
use std::path::Path;

use super::mailplan;

/// A plan of `n` IMAP → IMAP accounts; `account` adds lines to the i-th account.
fn plan_of(n: usize, account: impl Fn(usize) -> String) -> String {
    let mut text = String::from(
        "version: 1\nplatforms:\n  old: { type: imap, imap: { host: imap.old.example } }\n  new: { type: imap, imap: { host: imap.new.example } }\naccounts:\n",
    );
    for i in 0..n {
        let _ = write!(
            text,
            "  - address: user{i}@x.example\n    from: old\n    to: new\n{}",
            account(i)
        );
    }
    text
}

fn unset_secrets(i: usize) -> String {
    format!(
        "    source-password: {{ env: MAILPLAN_TEST_UNSET_{i}_OLD }}\n    target-password: {{ env: MAILPLAN_TEST_UNSET_{i}_NEW }}\n"
    )
}

fn write_plan(dir: &Path, text: &str) -> String {
    let path = dir.join("p.yaml");
    std::fs::write(&path, text).expect("write the plan");
    path.to_str().expect("utf-8 path").to_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_thousand_unset_secrets_read_as_a_summary_and_json_lists_every_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write_plan(dir.path(), &plan_of(1000, unset_secrets));
    let out = mailplan(&["validate", &plan]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.lines().count() < 60, "{text}");
    assert!(
        text.contains("plan::unresolved_secret: 1997 more warning(s) of this kind not shown (2000 in all); `--verbose` shows every one, `--format json` lists them"),
        "{text}"
    );
    assert!(text.ends_with("valid (2000 warning(s))\n"), "{text}");

    let verbose = mailplan(&["validate", &plan, "--verbose"]);
    assert_eq!(stderr(&verbose).matches("is not set").count(), 2000);

    let json = mailplan(&["validate", &plan, "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(report["diagnostics"].as_array().map(Vec::len), Some(2000));

    // The dry run's warnings are grouped the same way on stderr.
    let dry = mailplan(&["plan", &plan, "--format", "json"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    assert!(stderr(&dry).lines().count() < 60, "{}", stderr(&dry));
}

#[test]
fn quiet_shows_errors_only_and_nothing_for_a_valid_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write_plan(dir.path(), &plan_of(3, unset_secrets));
    let out = mailplan(&["-q", "validate", &plan]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stderr(&out), "");
    let out = mailplan(&["validate", "--quiet", &plan]);
    assert_eq!(stderr(&out), "");

    let bad = plan_of(3, |i| {
        if i == 1 {
            format!("{}    colour: blue\n", unset_secrets(i))
        } else {
            unset_secrets(i)
        }
    });
    let bad = bad.replace(
        "imap.old.example }",
        "imap.old.example, tls-verify: false }",
    );
    let plan = write_plan(dir.path(), &bad);
    let loud = mailplan(&["validate", &plan]);
    assert!(stderr(&loud).contains("does not check the server's certificate"));
    let out = mailplan(&["validate", &plan, "-q"]);
    assert_eq!(out.status.code(), Some(2));
    let text = stderr(&out);
    assert!(text.contains("unknown key `colour`"), "{text}");
    assert!(
        !text.contains("certificate") && !text.contains("⚠"),
        "{text}"
    );
    assert!(text.contains("1 error(s), 1 warning(s)"), "{text}");
}

#[test]
fn status_and_report_do_not_warn_about_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write_plan(dir.path(), &plan_of(2, unset_secrets));
    for command in ["status", "report"] {
        let out = mailplan(&[command, &plan]);
        let text = stderr(&out);
        assert!(
            !text.contains("unresolved_secret") && !text.contains("MAILPLAN_TEST_UNSET"),
            "{command}: {text}"
        );
    }
    // `graph`, like `validate` and `plan`, still says what `apply` would miss.
    let out = mailplan(&["graph", &plan]);
    assert!(
        stderr(&out).contains("plan::unresolved_secret"),
        "{}",
        stderr(&out)
    );
}
