//! `mailplan validate` end to end: example plans, exit codes, formats, hostile files.

use std::path::Path;
use std::process::Command;

use super::mailplan;

#[test]
fn every_example_plan_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("plans/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        seen += 1;
        let out = mailplan(&["validate", path.to_str().expect("utf-8 path")]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(seen >= 2, "only {seen} example plans");
}

#[test]
fn an_invalid_plan_exits_2_and_lists_every_problem_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("bad.yaml");
    std::fs::write(
        &plan,
        "version: 1\nplatforms:\n  a: { type: imap, imap: { host: a.example } }\naccounts:\n  - { adress: x@y.example, from: a, to: b }\n  - { address: bad, from: a, to: a }\n",
    )
    .expect("write");
    let out = mailplan(&["validate", plan.to_str().expect("path"), "--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(report["format"], "mailplan.validate/v1");
    assert_eq!(report["valid"], false);
    let codes: Vec<&str> = report["diagnostics"]
        .as_array()
        .expect("list")
        .iter()
        .map(|d| d["code"].as_str().expect("code"))
        .collect();
    for code in [
        "plan::unknown_key",
        "plan::missing_key",
        "plan::invalid_address",
    ] {
        assert!(codes.contains(&code), "{code} not in {codes:?}");
    }
    let unknown = &report["diagnostics"]
        .as_array()
        .expect("list")
        .iter()
        .find(|d| d["code"] == "plan::unknown_key")
        .expect("unknown key")["labels"][0];
    assert_eq!(
        (unknown["line"].as_u64(), unknown["column"].as_u64()),
        (Some(5), Some(7))
    );
}

#[test]
fn github_format_prints_annotations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("p.yaml");
    std::fs::write(&plan, "version: 3\nplatforms: {}\n").expect("write");
    let out = mailplan(&[
        "validate",
        plan.to_str().expect("path"),
        "--format",
        "github",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        text.starts_with("::error file=")
            && text.contains("line=1,col=10,title=plan%3A%3Aunsupported_version::"),
        "{text}"
    );
}

#[test]
fn hostile_files_end_in_a_clear_error_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("empty.yaml", Vec::new(), "is empty"),
        (
            "binary.yaml",
            vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0],
            "binary file",
        ),
        (
            "latin1.yaml",
            b"version: 1\nname: caf\xe9\n".to_vec(),
            "not valid UTF-8",
        ),
        (
            "deep.yaml",
            format!("{}1{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            "invalid YAML",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        let out = mailplan(&["validate", path.to_str().expect("path")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    let big = dir.path().join("big.yaml");
    let mut text = b"name: ".to_vec();
    text.resize(50 * 1024 * 1024, b'x');
    std::fs::write(&big, text).expect("write");
    let out = mailplan(&["validate", big.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a plan may be at most 32 MiB"));
}

#[test]
fn usage_errors_exit_2() {
    let out = mailplan(&["validate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = mailplan(&["validate", "/nonexistent/plan.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/plan.yaml"));
}

#[test]
fn graph_prints_dot_and_mermaid_and_refuses_invalid_plans() {
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/new-mxplan-to-exchange.yaml");
    let plan = plan.to_str().expect("path");
    let out = mailplan(&["graph", plan, "--format", "dot"]);
    assert_eq!(out.status.code(), Some(0));
    let dot = String::from_utf8(out.stdout).expect("utf-8");
    assert!(dot.starts_with("digraph \"acme-to-exchange\" {"), "{dot}");
    assert!(
        dot.contains("label=\"rename-source john.smith@acme.example\""),
        "{dot}"
    );
    assert!(dot.contains("label=\"wave-gate wave 1\""), "{dot}");
    let out = mailplan(&["graph", plan, "--format", "mermaid"]);
    let mermaid = String::from_utf8(out.stdout).expect("utf-8");
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    assert!(
        mermaid.contains("[\"check-dns acme.example\"]"),
        "{mermaid}"
    );
    assert!(mermaid.contains(" --> "), "{mermaid}");

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "version: 1\n").expect("write");
    let out = mailplan(&["graph", bad.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn plan_dry_run_in_three_formats_with_selection() {
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/new-mxplan-to-exchange.yaml");
    let plan = plan.to_str().expect("path");

    let out = mailplan(&["plan", plan, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["format"], "mailplan.plan/v1");
    assert_eq!(doc["totals"]["accounts"], 2);
    let john = &doc["accounts"][0];
    assert_eq!(john["address"], "john.smith@acme.example");
    let kinds: Vec<&str> = john["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        ["rename-source", "configure-target", "copy-mail", "verify"]
    );
    assert!(
        john["steps"][0]["action"]
            .as_str()
            .expect("action")
            .contains("to john.smith-old@acme.example"),
        "{john}"
    );

    let out = mailplan(&["plan", plan, "--only", "JANE@acme.example"]);
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        text.starts_with("Plan acme-to-exchange: 1 account,"),
        "{text}"
    );
    assert!(
        text.contains("jane@acme.example (mxplan-to-exchange, wave 1)")
            && !text.contains("john.smith@"),
        "{text}"
    );

    let out = mailplan(&[
        "plan",
        plan,
        "--format",
        "markdown",
        "--exclude",
        "jane@acme.example",
    ]);
    let md = String::from_utf8(out.stdout).expect("utf-8");
    assert!(md.contains("| `john.smith@acme.example` | mxplan-to-exchange | 0 | rename-source → configure-target → copy-mail → verify |"), "{md}");
    assert!(!md.contains("jane@"), "{md}");
}

#[test]
fn completions_and_man_page() {
    let out = mailplan(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    let bash = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        bash.contains("_mailplan()") && bash.contains("validate"),
        "{bash}"
    );
    let out = mailplan(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let roff = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        roff.contains(".TH mailplan") && roff.contains("validate"),
        "{roff}"
    );
    assert_eq!(mailplan(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn csv_imports_are_read_relative_to_the_plan_and_located_by_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("p.yaml");
    std::fs::write(
        &plan,
        "version: 1\nplatforms:\n  a: { type: imap, imap: { host: a.example } }\n  b: { type: imap, imap: { host: b.example } }\naccounts:\n  - import: rows.csv\n  - import: missing.csv\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("rows.csv"),
        "address,from,to,wave,source-password,target-password\nx@y.example,a,b,1,env:A,env:B\nbad,a,b,,,\nz@y.example,a,b\n",
    )
    .expect("write");
    let out = mailplan(&["validate", plan.to_str().expect("path"), "--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let found: Vec<(String, String, u64, u64)> = report["diagnostics"]
        .as_array()
        .expect("list")
        .iter()
        .map(|d| {
            let l = &d["labels"][0];
            let file = l["file"].as_str().expect("file");
            let file = Path::new(file).file_name().expect("name").to_string_lossy();
            (
                d["code"].as_str().expect("code").to_owned(),
                file.into_owned(),
                l["line"].as_u64().expect("line"),
                l["column"].as_u64().expect("column"),
            )
        })
        .collect();
    let expected = [
        ("plan::csv_import", "p.yaml", 7, 13),
        ("plan::invalid_address", "rows.csv", 3, 1),
        ("plan::csv_import", "rows.csv", 4, 1),
    ];
    assert_eq!(found.len(), expected.len(), "{found:?}");
    for ((code, file, line, col), (c, f, l, k)) in found.iter().zip(expected) {
        assert_eq!((code.as_str(), file.as_str(), *line, *col), (c, f, l, k));
    }
    let missing = report["diagnostics"][0]["message"]
        .as_str()
        .expect("message");
    assert!(missing.contains("missing.csv"), "{missing}");

    // An oversized import is refused before it is read (a sparse file: nothing is written).
    let big = std::fs::File::create(dir.path().join("missing.csv")).expect("create");
    big.set_len(33 * 1024 * 1024).expect("set_len");
    let out = mailplan(&["validate", plan.to_str().expect("path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("an import may be at most 32 MiB"),
        "{stderr}"
    );
    std::fs::remove_file(dir.path().join("missing.csv")).expect("remove");

    // The human output shows the CSV row and names the import line.
    let out = mailplan(&["validate", plan.to_str().expect("path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rows.csv:3:1"), "{stderr}");
    assert!(stderr.contains("p.yaml:6:13 (imported here)"), "{stderr}");
}

#[test]
fn unresolvable_secrets_are_warnings_and_no_secret_value_is_ever_printed() {
    const VALUE: &str = "Zq9-the-secret-value-7Xw";
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("p.yaml");
    std::fs::write(
        &plan,
        "version: 1\nplatforms:\n  a: { type: imap, imap: { host: a.example } }\n  b: { type: imap, imap: { host: b.example } }\naccounts:\n  - { address: x@y.example, from: a, to: b, source-password: { env: MAILPLAN_IT_SET }, target-password: { file: x.pass } }\n  - { address: z@y.example, from: a, to: b, source-password: { env: MAILPLAN_IT_UNSET_41 }, target-password: { file: gone.pass } }\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("x.pass"), VALUE).expect("write");
    // Private, as a secret file should be (a wider one is a `plan::insecure` warning).
    #[cfg(unix)]
    std::fs::set_permissions(
        dir.path().join("x.pass"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let plan = plan.to_str().expect("path");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mailplan"))
            .args(args)
            .env("NO_COLOR", "1")
            .env("MAILPLAN_IT_SET", VALUE)
            .env_remove("MAILPLAN_IT_UNSET_41")
            .output()
            .expect("runs")
    };

    let out = run(&["validate", plan, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "warnings only");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let warnings: Vec<(&str, &str, u64)> = report["diagnostics"]
        .as_array()
        .expect("list")
        .iter()
        .map(|d| {
            (
                d["code"].as_str().expect("code"),
                d["severity"].as_str().expect("severity"),
                d["labels"][0]["line"].as_u64().expect("line"),
            )
        })
        .collect();
    assert_eq!(
        warnings,
        [
            ("plan::unresolved_secret", "warning", 7),
            ("plan::unresolved_secret", "warning", 7),
        ]
    );

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/company-waves.yaml");
    let example = example.to_str().expect("path");
    for p in [plan, example] {
        for args in [
            &["validate", p][..],
            &["validate", p, "--format", "json"],
            &["validate", p, "--format", "github"],
            &["plan", p],
            &["plan", p, "--format", "json"],
            &["plan", p, "--format", "markdown"],
            &["graph", p],
        ] {
            let out = run(args);
            assert_eq!(out.status.code(), Some(0), "{args:?}");
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!all.contains(VALUE), "{args:?} printed the secret:\n{all}");
        }
    }
    let out = run(&["validate", plan]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("environment variable MAILPLAN_IT_UNSET_41 is not set")
            && stderr.contains("valid (2 warning(s))"),
        "{stderr}"
    );
}

#[test]
fn a_password_written_in_clear_is_refused_and_never_printed() {
    // In the plan and in an imported CSV file: exit 2, the place named, and the value masked
    // in every snippet (also where another problem's snippet shows its line as context).
    const IN_PLAN: &str = "hunter2-plain-Kq4";
    const IN_CSV: &str = "csv-plain-Zr8";
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("p.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nplatforms:\n  a: {{ type: imap, imap: {{ host: a.example }} }}\n  b: {{ type: imap, imap: {{ host: b.example }} }}\naccounts:\n  - address: x@y.example\n    from: a\n    to: a\n    source-password: {IN_PLAN}\n    target-password: {{ env: X }}\n  - import: rows.csv\n"
        ),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("rows.csv"),
        format!(
            "address,from,to,source-password,target-password\nz@y.example,a,b,{IN_CSV},env:Z\n"
        ),
    )
    .expect("write");
    let plan = plan.to_str().expect("path");
    for format in ["human", "json", "github"] {
        let out = Command::new(env!("CARGO_BIN_EXE_mailplan"))
            .args(["validate", plan, "--format", format])
            .env("NO_COLOR", "1")
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{format}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains(IN_PLAN) && !all.contains(IN_CSV),
            "{format}: {all}"
        );
        assert!(
            all.contains("written in the plan in clear"),
            "{format}: {all}"
        );
        assert!(
            all.contains("written in the CSV file in clear"),
            "{format}: {all}"
        );
        if format == "human" {
            // Both snippets show the line, masked: the `from`/`to` problem's context too.
            assert!(all.contains(&"*".repeat(IN_PLAN.len())), "{all}");
            assert!(all.contains(&"*".repeat(IN_CSV.len())), "{all}");
            assert!(all.contains("same as `from`"), "{all}");
        }
    }
}
