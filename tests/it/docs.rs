//! The documents stay true: every plan in a `yaml` block of README.md and docs/*.md validates,
//! every `mailplan …` command line of their code blocks parses with mailplan's own command line
//! (subcommand, flags and their values), every inline `mailplan …` names a real subcommand and
//! real flags, every relative link points at a file (and a heading) that exists, the README links
//! every page of docs/, and the output shown for the commands that contact nothing (`validate`,
//! `plan`, `graph`) is what they print.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{CommandFactory, Parser};
use mailplan::cli::Cli;

use crate::text;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown page of docs/, as (path relative to the repository, text).
fn documents() -> Vec<(String, String)> {
    let mut paths = vec![PathBuf::from("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("an entry of docs/").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| Path::new("docs").join(p.file_name().expect("a file name")))
        .collect();
    pages.sort();
    paths.extend(pages);
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(repo().join(&p))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.display().to_string(), text)
        })
        .collect()
}

/// A fenced code block: its language, first line (1-based, the fence's) and lines.
struct Block {
    lang: String,
    line: usize,
    lines: Vec<String>,
}

/// The fenced code blocks of a Markdown text, and its lines outside them (numbered from 1).
fn split(text: &str) -> (Vec<Block>, Vec<(usize, &str)>) {
    let mut blocks = Vec::new();
    let mut prose = Vec::new();
    let mut open: Option<(String, Block)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let fence: String = trimmed.chars().take_while(|&c| c == '`').collect();
        match &mut open {
            Some((opening, block)) => {
                if fence.len() >= opening.len() && trimmed[fence.len()..].trim().is_empty() {
                    let (_, block) = open.take().expect("an open block");
                    blocks.push(block);
                } else {
                    // Lines of a block indented under a list item lose that indentation.
                    block.lines.push(line.to_owned());
                }
            }
            None if fence.len() >= 3 => {
                let lang = trimmed[fence.len()..].trim().to_owned();
                open = Some((
                    fence,
                    Block {
                        lang,
                        line: n + 1,
                        lines: Vec::new(),
                    },
                ));
            }
            None => prose.push((n + 1, line)),
        }
    }
    assert!(open.is_none(), "a code block is never closed");
    (blocks, prose)
}

#[test]
fn every_plan_in_the_docs_validates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut plans = 0;
    for (doc, page) in documents() {
        for block in split(&page).0.iter().filter(|b| b.lang == "yaml") {
            let yaml = block.lines.join("\n");
            let value: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap_or_else(|e| {
                panic!("{doc}:{}: a yaml block that is not YAML: {e}", block.line)
            });
            if value.get("version").is_none() {
                continue; // a fragment, not a plan
            }
            plans += 1;
            let path = dir.path().join(format!("plan-{plans}.yaml"));
            std::fs::write(&path, &yaml).expect("write the plan");
            let out = Command::new(env!("CARGO_BIN_EXE_mailplan"))
                .args(["validate", "--format", "json"])
                .arg(&path)
                .current_dir(dir.path())
                .env("NO_COLOR", "1")
                .output()
                .expect("mailplan runs");
            let report: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
            assert!(
                out.status.code() == Some(0) && report["valid"] == true,
                "{doc}:{}: the plan does not validate\n{}",
                block.line,
                text(&out)
            );
        }
    }
    // The README's plan and the plan format's reference, at least.
    assert!(plans >= 2, "only {plans} plan(s) found in the docs");
}

/// The `mailplan` arguments of a shell line, when it runs mailplan: `mailplan …`, `$ mailplan …`,
/// `cargo run -- …` or the image's command in `docker run … mailplan …`; cut at a redirection,
/// a pipe, a comment or the next command.
fn mailplan_args(line: &str) -> Option<Vec<String>> {
    let line = line.trim().trim_start_matches("$ ");
    let rest = if let Some(rest) = line.strip_prefix("mailplan ") {
        rest
    } else if let Some(rest) = line.strip_prefix("cargo run -- ") {
        rest
    } else if line.starts_with("docker run ") {
        line.rsplit_once(" mailplan ")?.1
    } else {
        return None;
    };
    let end = [" >", " |", " #", " &&", ";"]
        .iter()
        .filter_map(|cut| rest.find(cut))
        .min()
        .unwrap_or(rest.len());
    Some(
        rest[..end]
            .split_whitespace()
            .map(|a| a.trim_matches(['"', '\'']).to_owned())
            .collect(),
    )
}

/// Shell lines of a block, with `\` continuations joined; a console block's commands only.
fn shell_lines(block: &Block) -> Vec<String> {
    let console = block.lang == "console";
    let mut lines = Vec::new();
    let mut pending = String::new();
    for line in &block.lines {
        let line = line.trim();
        if pending.is_empty() && console && !line.starts_with("$ ") {
            continue; // output
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(line);
        lines.push(std::mem::take(&mut pending));
    }
    lines
}

#[test]
fn every_mailplan_command_line_in_the_docs_parses() {
    let mut checked = 0;
    for (doc, page) in documents() {
        let blocks = split(&page).0;
        let shell = blocks
            .iter()
            .filter(|b| matches!(b.lang.as_str(), "sh" | "console" | "bash" | "shell" | ""));
        for block in shell {
            for line in shell_lines(block) {
                let Some(args) = mailplan_args(&line) else {
                    continue;
                };
                checked += 1;
                let parsed =
                    Cli::try_parse_from(std::iter::once("mailplan".to_owned()).chain(args.clone()));
                if let Err(e) = parsed {
                    use clap::error::ErrorKind;
                    assert!(
                        matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion),
                        "{doc}:{}: `{line}` is not a mailplan command line:\n{e}",
                        block.line
                    );
                }
                // The example files it names exist.
                for arg in args.iter().filter(|a| {
                    (a.starts_with("plans/") || a.starts_with("docs/"))
                        && Path::new(a.as_str()).extension().is_some()
                }) {
                    assert!(
                        repo().join(arg).is_file(),
                        "{doc}:{}: `{line}` names {arg}, which does not exist",
                        block.line
                    );
                }
            }
        }
    }
    assert!(
        checked >= 15,
        "only {checked} command line(s) found in the docs"
    );
}

/// The flags a (sub)command takes: its own and the global ones, as `--long` and `-s`.
fn flags(command: &clap::Command, root: &clap::Command) -> Vec<String> {
    let mut names = vec!["--help".to_owned(), "-h".to_owned()];
    for arg in command.get_arguments().chain(root.get_arguments()) {
        names.extend(arg.get_long().map(|l| format!("--{l}")));
        names.extend(arg.get_short().map(|s| format!("-{s}")));
    }
    names
}

#[test]
fn every_inline_mailplan_command_names_a_real_subcommand_and_real_flags() {
    let root = Cli::command();
    let mut checked = 0;
    for (doc, page) in documents() {
        for (n, line) in split(&page).1 {
            // `mailplan …` spans of inline code.
            for span in line.split('`').skip(1).step_by(2) {
                let Some(rest) = span.strip_prefix("mailplan ") else {
                    continue;
                };
                checked += 1;
                let words: Vec<&str> = rest.split_whitespace().collect();
                let Some(first) = words.first() else { continue };
                let placeholder = first
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_' || c == '…');
                let mut command = &root;
                let mut at = 0;
                let mut name = String::from("mailplan");
                if !first.starts_with('-') && !placeholder {
                    command = root.find_subcommand(first).unwrap_or_else(|| {
                        panic!("{doc}:{n}: `{span}`: `{first}` is not a subcommand of mailplan")
                    });
                    at = 1;
                    name = format!("mailplan {first}");
                    if let Some(sub) = words.get(1).and_then(|w| command.find_subcommand(w)) {
                        command = sub;
                        at = 2;
                        name = format!("{name} {}", sub.get_name());
                    } else if command.has_subcommands() {
                        panic!("{doc}:{n}: `{span}`: `{first}` needs one of its subcommands");
                    }
                }
                let known = flags(command, &root);
                for word in &words[at..] {
                    let flag = word
                        .trim_matches(['[', ']', '(', ')', ',', '.', '…'])
                        .split(['=', '|', '/'])
                        .next()
                        .unwrap_or_default();
                    if flag.starts_with('-') && flag.len() > 1 {
                        assert!(
                            known.iter().any(|k| k == flag),
                            "{doc}:{n}: `{span}`: `{name}` has no {flag}"
                        );
                    }
                }
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} inline command(s) found in the docs"
    );
}

/// GitHub's anchor for a heading: lower case, letters, digits, `-` and `_` kept, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown text's headings (a repeated one gets `-1`, `-2`, …).
fn anchors(text: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for (_, line) in split(text).1 {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let base = anchor(heading.trim_start_matches('#'));
        let count = seen
            .iter()
            .filter(|a| {
                **a == base
                    || a.strip_prefix(&format!("{base}-"))
                        .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count();
        seen.push(if count == 0 {
            base
        } else {
            format!("{base}-{count}")
        });
    }
    seen
}

#[test]
fn every_relative_link_in_the_docs_points_at_something_that_exists() {
    let mut checked = 0;
    for (doc, page) in documents() {
        let folder = Path::new(&doc).parent().expect("a folder").to_owned();
        for (n, line) in split(&page).1 {
            for link in line.split("](").skip(1) {
                let Some(target) = link.split(')').next() else {
                    continue;
                };
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
                let file = if path.is_empty() {
                    repo().join(&doc)
                } else {
                    repo().join(&folder).join(path)
                };
                assert!(
                    file.exists(),
                    "{doc}:{n}: the link `{target}` points at nothing"
                );
                if !fragment.is_empty() && file.extension().is_some_and(|e| e == "md") {
                    let linked = std::fs::read_to_string(&file).expect("the linked page");
                    assert!(
                        anchors(&linked).iter().any(|a| a == fragment),
                        "{doc}:{n}: the link `{target}`: no such heading; there are {:?}",
                        anchors(&linked)
                    );
                }
            }
        }
    }
    assert!(checked >= 20, "only {checked} link(s) found in the docs");
}

#[test]
fn anchors_are_github_s() {
    assert_eq!(
        anchor(" `mailplan completions SHELL` and `mailplan man`"),
        "mailplan-completions-shell-and-mailplan-man"
    );
    assert_eq!(anchor(" The steps `apply` runs"), "the-steps-apply-runs");
    assert_eq!(
        anchors("# A\n## B\n```\n# not a heading\n```\n## B\n"),
        ["a", "b", "b-1"]
    );
}

#[test]
fn the_readme_links_every_page_of_docs() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let pages: Vec<String> = documents()
        .into_iter()
        .map(|(doc, _)| doc)
        .filter(|doc| doc.starts_with("docs/"))
        .collect();
    assert!(pages.len() >= 10, "{pages:?}");
    for page in pages {
        assert!(
            readme.contains(&format!("]({page})")) || readme.contains(&format!("]({page}#")),
            "the README does not link {page}"
        );
    }
}

/// The variables a plan's `{ env: NAME }` secrets name.
fn env_names(plan: &str) -> Vec<String> {
    plan.split("env:")
        .skip(1)
        .map(|rest| {
            rest.trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

#[test]
fn the_output_the_docs_show_for_offline_commands_is_what_they_print() {
    // Commands that contact nothing: what the docs show them print can be checked here.
    const OFFLINE: [&str; 3] = ["validate", "plan", "graph"];
    let mut checked = 0;
    for (doc, page) in documents() {
        for block in split(&page).0.iter().filter(|b| b.lang == "console") {
            let mut lines = block.lines.iter().map(|l| l.trim_end()).peekable();
            while let Some(line) = lines.next() {
                let Some(args) = line.strip_prefix("$ ").and_then(mailplan_args) else {
                    continue;
                };
                let mut shown = Vec::new();
                while let Some(next) = lines.next_if(|l| !l.starts_with("$ ")) {
                    shown.push(next);
                }
                if !OFFLINE.contains(&args[0].as_str())
                    || args.iter().any(|a| a == "--refresh" || a == "--out")
                {
                    continue;
                }
                checked += 1;
                // The secrets the plan refers to are set, as they are where the output was taken.
                let plan = std::fs::read_to_string(repo().join(&args[1])).unwrap_or_default();
                let out = Command::new(env!("CARGO_BIN_EXE_mailplan"))
                    .args(&args)
                    .current_dir(repo())
                    .env("NO_COLOR", "1")
                    .envs(env_names(&plan).into_iter().map(|name| (name, "set")))
                    .output()
                    .expect("mailplan runs");
                let printed = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                // Lines cut short (`…`) are left out; every other one is printed as shown.
                for expected in shown
                    .iter()
                    .filter(|l| !l.trim().is_empty() && !l.contains('…'))
                {
                    assert!(
                        printed.lines().any(|p| p.trim_end() == *expected),
                        "{doc}:{}: `{line}` does not print `{expected}`:\n{}",
                        block.line,
                        text(&out)
                    );
                }
            }
        }
    }
    // The README's validate and plan, docs/commands.md's validate at least.
    assert!(checked >= 3, "only {checked} output(s) checked");
}
