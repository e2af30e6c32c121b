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

const SECRET: &str = "pw-Never-Shown-42";

/// A plan in `dir` whose one account is imported from `import` and whose other account reads
/// its password from `secrets/pw.pass`.
fn importing(dir: &Path, import: &str) -> String {
    std::fs::create_dir_all(dir.join("secrets")).expect("mkdir");
    std::fs::write(dir.join("secrets/pw.pass"), format!("{SECRET}\n")).expect("write");
    std::fs::write(
        dir.join("ovh.conf"),
        format!("[ovh-eu]\napplication_key=ak\napplication_secret={SECRET}\n"),
    )
    .expect("write");
    let text = plan_of(1, |_| {
        "    source-password: { file: secrets/pw.pass }\n    target-password: { file: secrets/pw.pass }\n".to_owned()
    });
    write_plan(dir, &format!("{text}  - import: {import}\n"))
}

/// `mailplan validate PLAN ARGS…`, which must end within 20 s (a FIFO must not hang it).
fn validate_within(plan: &str, args: &[&str]) -> std::process::Output {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_mailplan"))
        .arg("validate")
        .arg(plan)
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    if let Ok(out) = rx.recv_timeout(std::time::Duration::from_secs(20)) {
        return out.expect("output");
    }
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    panic!("validate {plan} {args:?} hangs");
}

#[test]
fn imports_never_print_files_they_should_not_read() {
    let outer = tempfile::tempdir().expect("tempdir");
    let dir = outer.path().join("migration");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        outer.path().join("outside.csv"),
        format!("address,from,to\n{SECRET},old,new\n"),
    )
    .expect("write");
    std::os::unix::fs::symlink(outer.path().join("outside.csv"), dir.join("link.csv"))
        .expect("symlink");
    let cases = [
        ("secrets/pw.pass", "is a `file:` secret of this plan"),
        (
            "./secrets/../secrets/pw.pass",
            "is a `file:` secret of this plan",
        ),
        ("ovh.conf", "is not a CSV file of accounts"),
        ("../outside.csv", "is outside the plan's folder"),
        ("link.csv", "is outside the plan's folder"),
        ("/etc/passwd", "is outside the plan's folder"),
        ("/proc/self/environ", "is outside the plan's folder"),
    ];
    for (import, expected) in cases {
        let plan = importing(&dir, import);
        let out = validate_within(&plan, &[]);
        let json = validate_within(&plan, &["--format", "json"]);
        let text = format!("{}{}", stderr(&out), String::from_utf8_lossy(&json.stdout));
        assert_eq!(out.status.code(), Some(2), "{import}: {text}");
        assert!(text.contains(expected), "{import}: {text}");
        assert!(text.contains("plan::csv_import"), "{import}: {text}");
        assert!(
            !text.contains(SECRET),
            "{import} printed the secret: {text}"
        );
    }
    // `--import-root` widens the confinement; the file is then read, and it is a CSV file.
    let plan = importing(&dir, "../outside.csv");
    let root = outer.path().to_str().expect("utf-8");
    let out = validate_within(&plan, &["--import-root", root]);
    assert!(
        stderr(&out).contains("is not an e-mail address"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn special_files_are_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let fifo = fifo.to_str().expect("utf-8");
    // As the plan.
    for plan in [fifo, "/dev/zero", "/dev/urandom"] {
        let out = validate_within(plan, &[]);
        assert_eq!(out.status.code(), Some(2), "{plan}");
        assert!(
            stderr(&out).contains("not a regular file"),
            "{plan}: {}",
            stderr(&out)
        );
    }
    // As an import (a FIFO in the plan's folder) and as a `file:` secret.
    let plan = write_plan(
        dir.path(),
        &format!("{}  - import: fifo\n", plan_of(1, unset_secrets)),
    );
    let out = validate_within(&plan, &["--format", "json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("fifo: it is a FIFO, not a regular file"),
        "{text}"
    );
    // The import's error withholds the plan, so the secrets are checked once it is gone.
    let plan = write_plan(
        dir.path(),
        &plan_of(1, |_| {
            "    source-password: { file: fifo }\n    target-password: { file: /dev/zero }\n"
                .to_owned()
        }),
    );
    let out = validate_within(&plan, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("secret file fifo cannot be read: it is a FIFO, not a regular file"),
        "{text}"
    );
    assert!(
        text.contains("secret file /dev/zero cannot be read: it is a device, not a regular file"),
        "{text}"
    );
}

#[test]
fn a_csv_imported_twice_is_read_once_and_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("a.csv"),
        "address,from,to,source-password,target-password\nz@x.example,old,new,env:A,env:B\n",
    )
    .expect("write");
    let mut text = plan_of(0, |_| String::new());
    for _ in 0..1000 {
        text.push_str("  - import: a.csv\n");
    }
    let plan = write_plan(dir.path(), &text);
    let out = validate_within(&plan, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let messages: Vec<&str> = report["diagnostics"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["message"].as_str())
        .collect();
    assert_eq!(messages.len(), 999, "{messages:?}");
    assert!(
        messages.iter().all(|m| *m == "a.csv is imported twice"),
        "{messages:?}"
    );
}

#[test]
fn an_empty_secret_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("empty.pass"), "").expect("write");
    let plan = write_plan(
        dir.path(),
        &plan_of(1, |_| {
            "    source-password: { env: MAILPLAN_TEST_EMPTY }\n    target-password: { file: empty.pass }\n".to_owned()
        }),
    );
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mailplan"))
            .args(args)
            .env("NO_COLOR", "1")
            .env("MAILPLAN_TEST_EMPTY", "")
            .output()
            .expect("runs")
    };
    let out = run(&["validate", &plan]);
    assert_eq!(out.status.code(), Some(0));
    let text = stderr(&out);
    assert!(
        text.contains("environment variable MAILPLAN_TEST_EMPTY is set but empty"),
        "{text}"
    );
    assert!(text.contains("secret file empty.pass is empty"), "{text}");
    // The servers of this plan do not exist: `apply` stops before it would contact them.
    let state = dir.path().join("state.db");
    let out = run(&["apply", &plan, "--state", state.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("set but empty"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was executed"),
        "{}",
        stderr(&out)
    );
    assert!(!state.exists());
}

#[test]
fn a_malformed_csv_row_never_shows_a_password_in_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write_plan(
        dir.path(),
        &format!("{}  - import: a.csv\n", plan_of(0, |_| String::new())),
    );
    for row in [
        format!("a@x.example,old,new,{SECRET},env:B,extra"),
        format!("a@x.example,old,new,{SECRET}\"x,env:B"),
        format!("a@x.example,old,new,\"{SECRET},env:B"),
    ] {
        std::fs::write(
            dir.path().join("a.csv"),
            format!("address,from,to,source-password,target-password\n{row}\n"),
        )
        .expect("write");
        let out = validate_within(&plan, &[]);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains("malformed CSV row"), "{text}");
        assert!(text.contains("a@x.example,old,new,"), "{text}");
        assert!(
            !text.contains("Never") && !text.contains("42"),
            "{row}: {text}"
        );
    }
}

#[test]
fn an_import_that_a_csv_row_names_as_a_file_secret_is_refused() {
    // `shared.csv` is an accounts CSV, and a row of `rows.csv` reads its target password from
    // it: known only once that row is read, after `shared.csv` was imported.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("shared.csv"),
        "address,from,to,source-password,target-password\nb@x.example,old,new,env:B_OLD,env:B_NEW\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("rows.csv"),
        "address,from,to,source-password,target-password\na@x.example,old,new,env:A_OLD,file:shared.csv\n",
    )
    .expect("write");
    let plan = write_plan(
        dir.path(),
        &format!(
            "{}  - import: shared.csv\n  - import: rows.csv\n",
            plan_of(0, |_| String::new())
        ),
    );
    let out = validate_within(&plan, &[]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("shared.csv is a `file:` secret of a@x.example")
            && text.contains("plan::csv_import"),
        "{text}"
    );
}
