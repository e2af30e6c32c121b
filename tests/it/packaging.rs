//! Packaging: the licence files, the release profile, the man pages, the README's install lines
//! on a fresh home, the Dockerfile and the GitHub Actions example (docs/ci/migration.yml).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::mailplan;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_licence_files_match_cargo_toml() {
    for manifest in ["Cargo.toml", "ovh-sim/Cargo.toml"] {
        assert!(
            read(manifest).contains("\nlicense = \"MIT OR Apache-2.0\"\n"),
            "{manifest}'s licence"
        );
    }
    assert!(read("LICENSE-MIT").starts_with("MIT License\n"));
    let apache = read("LICENSE-APACHE");
    assert!(apache.contains("Apache License") && apache.contains("Version 2.0, January 2004"));
    assert!(
        apache.contains("END OF TERMS AND CONDITIONS"),
        "the whole licence"
    );
}

#[test]
fn the_release_profile_strips_and_uses_lto() {
    let manifest = read("Cargo.toml");
    let release = manifest
        .split("\n[profile.release]\n")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .expect("a [profile.release] section");
    assert!(release.contains("strip = true"), "{release}");
    assert!(release.contains("lto = "), "{release}");
    assert!(!release.contains("debug ="), "{release}");
    assert!(
        read("README.md").contains("cargo install --locked"),
        "the README installs with the lock file"
    );
}

/// `mailplan-apply(1)` and the others that a page names.
fn named_pages(roff: &str) -> BTreeSet<String> {
    roff.lines()
        .filter_map(|l| l.strip_suffix("(1)"))
        .filter(|l| l.starts_with("mailplan\\-"))
        .map(|l| format!("{}.1", l.replace("\\-", "-")))
        .collect()
}

#[test]
fn man_writes_a_page_per_subcommand_and_every_page_it_names_exists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("share/man/man1");
    let out = mailplan(&["man", "--dir", target.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut named = BTreeSet::new();
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(&target).expect("the man folder") {
        let path = entry.expect("entry").path();
        let roff = std::fs::read_to_string(&path).expect("a page");
        assert!(
            roff.starts_with(".ie") || roff.contains("\n.TH "),
            "roff: {path:?}"
        );
        named.extend(named_pages(&roff));
        files.insert(
            path.file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
        );
    }
    assert!(
        files.contains("mailplan.1") && files.contains("mailplan-apply.1"),
        "{files:?}"
    );
    assert!(named.contains("mailplan-apply.1"), "{named:?}");
    let missing: Vec<_> = named.difference(&files).collect();
    assert!(missing.is_empty(), "named but not written: {missing:?}");
    // The top page on stdout, as before.
    let out = mailplan(&["man"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("mailplan\\-apply(1)"));
}

/// The shell lines of the block that follows `heading` in the commands' reference
/// (docs/commands.md, moved there from the README).
fn readme_block(heading: &str) -> Vec<String> {
    let readme = read("docs/commands.md");
    let after = readme
        .split_once(heading)
        .unwrap_or_else(|| panic!("docs/commands.md has `{heading}`"))
        .1;
    let block = after
        .split_once("```sh\n")
        .and_then(|(_, b)| b.split_once("```"))
        .expect("a sh block")
        .0;
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_readme_completion_and_man_lines_work_on_a_fresh_home() {
    let home = tempfile::tempdir().expect("tempdir");
    let bin = Path::new(env!("CARGO_BIN_EXE_mailplan"))
        .parent()
        .expect("bin dir")
        .to_owned();
    let lines = readme_block("### `mailplan completions SHELL` and `mailplan man`");
    assert!(lines.len() >= 2, "{lines:?}");
    for line in &lines {
        let out = Command::new("sh")
            .args(["-ec", line])
            .env("HOME", home.path())
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .expect("sh runs");
        assert!(
            out.status.success(),
            "`{line}` on a fresh home: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let completion = home
        .path()
        .join(".local/share/bash-completion/completions/mailplan");
    assert!(
        std::fs::read_to_string(&completion)
            .expect("the bash completion")
            .contains("_mailplan"),
        "bash completion installed"
    );
    assert!(
        home.path()
            .join(".local/share/man/man1/mailplan-apply.1")
            .is_file(),
        "man pages installed"
    );
}

/// The Dockerfile's instructions, continuation lines joined.
fn dockerfile() -> Vec<String> {
    let text = read("Dockerfile");
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(part) = line.strip_suffix('\\') {
            current.push_str(part);
            current.push(' ');
        } else {
            current.push_str(line);
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_as_a_user_in_a_small_one() {
    let lines = dockerfile();
    let stages: Vec<&String> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(stages.len(), 2, "multi-stage: {stages:?}");
    assert!(stages[0].starts_with("FROM rust:") && stages[0].ends_with(" AS build"));
    assert!(
        stages[1].contains("-slim"),
        "a small runtime: {}",
        stages[1]
    );
    // The builder's Rust is at least the crate's rust-version.
    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .map(|v| v.trim_end_matches('"').to_owned())
        .expect("rust-version");
    let image = stages[0]
        .trim_start_matches("FROM rust:")
        .split('-')
        .next()
        .expect("a version");
    let version = |v: &str| -> Vec<u32> { v.split('.').filter_map(|p| p.parse().ok()).collect() };
    assert!(
        version(image) >= version(&rust_version),
        "{image} < {rust_version}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("cargo build --release --locked")),
        "the release profile, with the lock file"
    );

    let runtime: Vec<&String> = lines
        .iter()
        .skip_while(|l| !std::ptr::eq(*l, stages[1]))
        .collect();
    let user = runtime
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER in the runtime stage");
    assert!(
        !["root", "0", "0:0"].contains(&user.trim()),
        "non-root: {user}"
    );
    assert!(
        runtime.iter().any(|l| l.contains("ca-certificates")),
        "TLS needs the system's roots"
    );
    assert!(
        runtime
            .iter()
            .any(|l| l.starts_with("ENTRYPOINT") && l.contains("mailplan"))
    );
    // What it copies from the repository exists; the build output does not go to the daemon.
    for l in lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = l.split_whitespace().skip(1).collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                repo().join(source).exists(),
                "COPY {source}: not in the repository"
            );
        }
    }
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l == "target/"), "{ignore}");
    assert!(read("README.md").contains("docker build -t mailplan ."));
}

/// The `mailplan …` commands of a workflow step's `run:` text.
fn mailplan_commands(run: &str) -> Vec<Vec<String>> {
    run.lines()
        .filter_map(|l| l.trim().strip_prefix("mailplan "))
        .map(|l| {
            l.split(['>', '#'])
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[test]
fn the_github_workflow_is_valid_yaml_and_names_real_commands() {
    let text = read("docs/ci/migration.yml");
    let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("valid YAML");
    let jobs = doc["jobs"].as_object().expect("jobs");
    assert!(doc["on"]["pull_request"].is_object() && doc["on"]["push"].is_object());
    assert_eq!(jobs["plan"]["permissions"]["pull-requests"], "write");
    assert_eq!(jobs["apply"]["permissions"]["actions"], "read");

    let steps = |job: &str| -> Vec<serde_json::Value> {
        jobs[job]["steps"].as_array().expect("steps").clone()
    };
    let runs = |job: &str| -> String {
        steps(job)
            .iter()
            .filter_map(|s| s["run"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The state store is saved even when apply exits 1.
    let apply_steps = steps("apply");
    let at = |needle: &str| {
        apply_steps
            .iter()
            .position(|s| s.to_string().contains(needle))
            .unwrap_or_else(|| panic!("no step with `{needle}`"))
    };
    let save = &apply_steps[at("actions/cache/save")];
    assert_eq!(save["if"], "always()", "{save}");
    assert!(
        at("actions/cache/restore") < at("mailplan apply")
            && at("mailplan apply") < at("actions/cache/save")
    );
    // The pull request reviews the saved plan, the merge applies it.
    assert!(runs("plan").contains("--out saved-plan.json"));
    assert!(runs("apply").contains("mailplan apply saved-plan.json"));
    assert!(
        runs("plan")
            .contains("mailplan validate migration/plan.yaml --format github --no-secret-check")
    );

    // Every command and flag named exists.
    let mut named = 0;
    for job in ["plan", "apply"] {
        for command in mailplan_commands(&runs(job)) {
            named += 1;
            let out = mailplan(&[&command[0], "--help"]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "`mailplan {}` exists",
                command[0]
            );
            let help = String::from_utf8_lossy(&out.stdout);
            for flag in command.iter().filter(|a| a.starts_with("--")) {
                assert!(
                    help.contains(flag.as_str()),
                    "`mailplan {}` has {flag}",
                    command[0]
                );
            }
        }
    }
    assert!(named >= 4, "the workflow runs mailplan");
}

#[test]
fn the_readme_validate_example_exists_and_says_what_the_readme_shows() {
    // The example moved with the commands' reference from the README to docs/commands.md.
    let readme = read("docs/commands.md");
    let example = readme
        .split_once("```console\n$ mailplan validate ")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .expect("the README's validate example");
    let file = example.0.trim();
    let shown = example.1.split_once("```").expect("the block").0;
    let out = Command::new(env!("CARGO_BIN_EXE_mailplan"))
        .args(["validate", file])
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .output()
        .expect("mailplan runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for line in shown.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            err.contains(line),
            "README shows `{line}`; validate printed:\n{err}"
        );
    }
}

#[test]
fn no_escape_codes_off_a_terminal() {
    let runs: [&[&str]; 6] = [
        &["validate", "docs/examples/bad.yaml"],
        &["plan", "plans/demo.yaml"],
        &["plan", "plans/demo.yaml", "--format", "markdown"],
        &["graph", "plans/demo.yaml"],
        &[
            "status",
            "plans/demo.yaml",
            "--state",
            "/nonexistent/state.db",
        ],
        &["--help"],
    ];
    for args in runs {
        // NO_COLOR unset: `--color auto` must see that stdout and stderr are pipes.
        let out = Command::new(env!("CARGO_BIN_EXE_mailplan"))
            .args(args)
            .current_dir(repo())
            .env_remove("NO_COLOR")
            .env("TERM", "xterm-256color")
            .output()
            .expect("mailplan runs");
        for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !bytes.contains(&0x1b),
                "`mailplan {}` wrote an escape code on {name}: {}",
                args.join(" "),
                String::from_utf8_lossy(bytes)
            );
        }
    }
    // The demo prints its commands in bold only on a terminal.
    let demo = read("scripts/demo");
    let bold = demo
        .lines()
        .position(|l| l.contains("\\033["))
        .expect("the demo's bold step");
    assert!(
        demo.lines()
            .nth(bold - 1)
            .is_some_and(|l| l.contains("-t 2")),
        "the demo's escape codes are guarded by a terminal test"
    );
}

#[test]
fn validate_no_secret_check_leaves_out_only_the_unset_secret_warnings() {
    let validate = |extra: &[&str]| {
        let mut args = vec!["validate", "plans/company-waves.yaml", "--format", "github"];
        args.extend_from_slice(extra);
        let out = Command::new(env!("CARGO_BIN_EXE_mailplan"))
            .args(&args)
            .current_dir(repo())
            .env("NO_COLOR", "1")
            .output()
            .expect("mailplan runs");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let all = validate(&[]);
    // The annotation's title is the code, %-encoded (`plan%3A%3Aunresolved_secret`).
    assert!(
        all.contains("unresolved_secret"),
        "without secrets, validate warns: {all}"
    );
    let quiet = validate(&["--no-secret-check"]);
    assert!(!quiet.contains("unresolved_secret"), "{quiet}");
    // Every other annotation stays.
    assert_eq!(
        quiet.lines().count(),
        all.lines().count()
            - all
                .lines()
                .filter(|l| l.contains("unresolved_secret"))
                .count()
    );
}
