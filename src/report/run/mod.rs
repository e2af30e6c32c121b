//! `mailplan status` and `mailplan report`: what the state store says about a plan's run, for
//! people (text), machines (JSON), pull requests and tickets (Markdown) and browsers (HTML).
//! Here: the formats, [`render_report`], and what every rendering shares (an account's state in
//! one word, totals, the accounts' rows, the problems grouped per account and reason, the DNS
//! to-do's lines); `status` renders [`render_status`], `markdown` and `html` the report.

use std::io::{self, Write};

use crate::exec::events::human_bytes;
use crate::exec::snapshot::{AccountState, DnsTodo, Snapshot};
use crate::exec::store::{IssueRow, StepRecord, StepStatus};
use crate::graph::StepKind;

mod html;
mod markdown;
mod status;

use html::html;
use markdown::markdown;
pub use status::render_status;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Markdown,
    Json,
    Html,
}

/// One word for an account: where it stands.
fn account_state(a: &AccountState) -> &'static str {
    let status = |kind: StepKind| a.steps.iter().find(|s| s.kind == kind).map(|s| s.status);
    if a.steps.is_empty() {
        "not started"
    } else if a.steps.iter().any(|s| s.status == StepStatus::Failed) {
        "failed"
    } else if a.steps.iter().any(|s| s.status == StepStatus::Running) {
        // Only while an apply holds the lock: the snapshot calls the others interrupted.
        "running"
    } else if a.steps.iter().any(|s| s.status == StepStatus::Interrupted) {
        "interrupted"
    } else if status(StepKind::Verify) == Some(StepStatus::Done) {
        "verified"
    } else if a.steps.iter().any(|s| s.status == StepStatus::Skipped) {
        "blocked"
    } else {
        "in progress"
    }
}

/// A step's time as people read it: `340 ms`, `4.2 s`, `3 min 05 s`, `1 h 02 min`.
fn duration(ms: Option<i64>) -> String {
    ms.map_or_else(String::new, |ms| {
        let ms = ms.max(0);
        if ms < 1000 {
            format!("{ms} ms")
        } else if ms < 60_000 {
            format!("{}.{} s", ms / 1000, ms % 1000 / 100)
        } else {
            human_seconds(ms / 1000)
        }
    })
}

/// Whole seconds as people read them: `42 s`, `3 min 05 s`, `1 h 02 min`, `3 d 04 h` (a
/// migration run in waves over days).
fn human_seconds(s: i64) -> String {
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{} h {:02} min", s / 3600, s % 3600 / 60)
    } else {
        format!("{} d {:02} h", s / 86_400, s % 86_400 / 3600)
    }
}

/// `1 account`, `2 accounts`.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// When the steps ran: `2026-12-04T18:01:02Z → 2026-12-04T18:03:10Z (2 min 08 s)`, from the
/// first step's start to the last one's end, over every run (waves may be days apart).
fn ran(s: &Snapshot) -> Option<String> {
    let (from, to) = (s.started.as_deref()?, s.finished.as_deref()?);
    let took = s.elapsed_s.map(human_seconds).unwrap_or_default();
    Some(format!("{from} → {to} ({took})"))
}

pub fn render_report(s: &Snapshot, format: ReportFormat, out: &mut dyn Write) -> io::Result<()> {
    match format {
        ReportFormat::Json => {
            let mut v = serde_json::to_value(s).map_err(io::Error::other)?;
            v["format"] = serde_json::json!("mailplan.report/v1");
            serde_json::to_writer_pretty(&mut *out, &v)?;
            writeln!(out)
        }
        ReportFormat::Markdown => markdown(s, out),
        ReportFormat::Html => html(s, out),
    }
}

/// A domain's DNS to-do in plain lines: what to change, or that nothing is left.
fn dns_lines(d: &DnsTodo) -> Vec<String> {
    match d.status.as_str() {
        "done" if d.advice.is_empty() => {
            vec![format!(
                "{}: nothing to change (MX, SRV and SPF are valid)",
                d.domain
            )]
        }
        "done" => d
            .advice
            .iter()
            .map(|a| format!("{}: to change: {a}", d.domain))
            .collect(),
        "pending" => vec![format!(
            "{}: not checked yet (check-dns runs once the domain's accounts are verified)",
            d.domain
        )],
        other => vec![format!("{}: check-dns {other}", d.domain)],
    }
}

/// Source messages neither on the target nor left out with a reason (too large, refused).
fn left(a: &AccountState, on_target: u64) -> u64 {
    a.found.saturating_sub(on_target + a.too_large + a.refused)
}

fn step_ms(a: &AccountState, kind: StepKind) -> Option<i64> {
    a.steps
        .iter()
        .find(|s| s.kind == kind)
        .and_then(|s| s.duration_ms)
}

/// The figures of the whole plan.
#[derive(Default)]
struct Totals {
    accounts: usize,
    verified: usize,
    failed: usize,
    found: u64,
    on_target: u64,
    copied: u64,
    bytes: u64,
    problems: usize,
}

fn totals(s: &Snapshot) -> Totals {
    let mut t = Totals {
        accounts: s.accounts.len(),
        ..Totals::default()
    };
    for a in &s.accounts {
        match account_state(a) {
            "verified" => t.verified += 1,
            "failed" => t.failed += 1,
            _ => {}
        }
        t.found += a.found;
        t.on_target += a.on_target.unwrap_or(0);
        t.copied += a.copied;
        t.bytes += a.bytes;
        t.problems += a.issues.len() + a.steps.iter().filter(|st| st.error.is_some()).count();
    }
    t
}

/// One row of the accounts table, as text cells.
struct Row<'a> {
    account: &'a AccountState,
    state: &'static str,
    cells: [String; 8],
}

const COLUMNS: [&str; 9] = [
    "state",
    "in the source",
    "on the target",
    "copied by mailplan",
    "too large",
    "refused",
    "data copied",
    "copy (last pass)",
    "verify",
];

fn rows(s: &Snapshot) -> Vec<Row<'_>> {
    s.accounts
        .iter()
        .map(|a| {
            let counted = a.on_target.is_some();
            let count = |n: u64| {
                if counted {
                    n.to_string()
                } else {
                    "–".to_owned()
                }
            };
            let copied = if a.copied_by == "ovh" {
                "by OVH".to_owned()
            } else {
                count(a.copied)
            };
            Row {
                account: a,
                state: account_state(a),
                cells: [
                    count(a.found),
                    count(a.on_target.unwrap_or(0)),
                    copied,
                    a.too_large.to_string(),
                    a.refused.to_string(),
                    human_bytes(a.bytes),
                    duration(step_ms(a, StepKind::CopyMail)),
                    duration(step_ms(a, StepKind::Verify)),
                ],
            }
        })
        .collect()
}

/// What went wrong for one account: its failed steps, then its left-out or refused messages
/// grouped by reason.
struct Problems<'a> {
    address: &'a str,
    steps: Vec<&'a StepRecord>,
    groups: Vec<IssueGroup<'a>>,
}

struct IssueGroup<'a> {
    kind: &'a str,
    reason: String,
    issues: Vec<&'a IssueRow>,
}

/// A too-large message's detail is `N bytes, larger than max-message-size (M bytes)`: the size is
/// the message's own, the rest is the reason shared by all of them.
fn split_detail(i: &IssueRow) -> (String, Option<u64>) {
    if i.kind == "too-large"
        && let Some((size, reason)) = i.detail.split_once(" bytes, ")
        && let Ok(size) = size.trim().parse::<u64>()
    {
        return (reason.to_owned(), Some(size));
    }
    (i.detail.clone(), None)
}

/// What names a message left out or refused, as people read it: its date (`2024-06-03 09:05
/// +0200` when its Date parses), subject (decoded when stored), Message-ID and size, each empty
/// when unknown. Never its body.
struct Named {
    date: String,
    subject: String,
    message_id: String,
    size: String,
}

fn named(i: &IssueRow) -> Named {
    let m = &i.message;
    let date = m.date.as_deref().map_or_else(String::new, |d| {
        chrono::DateTime::parse_from_rfc2822(d).map_or_else(
            |_| d.to_owned(),
            |t| t.format("%Y-%m-%d %H:%M %z").to_string(),
        )
    });
    Named {
        date,
        subject: m.subject.clone().unwrap_or_default(),
        message_id: m.message_id.clone().unwrap_or_default(),
        size: m
            .size
            .or(split_detail(i).1)
            .map(human_bytes)
            .unwrap_or_default(),
    }
}

/// A message's line in `status` and Markdown: `Archive, uid 3, 2024-06-03 09:05 +0200, “Hello”,
/// <id@host>, 150.0 kB`, the unknown parts left out; `quote` writes the subject.
fn named_line(i: &IssueRow, quote: impl Fn(&str) -> String) -> String {
    let n = named(i);
    let mut parts = vec![i.folder.clone(), format!("uid {}", i.uid)];
    if !n.date.is_empty() {
        parts.push(n.date);
    }
    if !n.subject.is_empty() {
        parts.push(quote(&n.subject));
    }
    if !n.message_id.is_empty() {
        parts.push(n.message_id);
    }
    if !n.size.is_empty() {
        parts.push(n.size);
    }
    parts.join(", ")
}

/// Text for Markdown's inline flow: its punctuation escaped (a subject may hold `*`, `<`, `|`…).
fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '~' | '!' | '&' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// At most this many messages per account in `status` (the report lists them all).
const STATUS_MESSAGES: usize = 10;

fn problems(s: &Snapshot) -> Vec<Problems<'_>> {
    s.accounts
        .iter()
        .filter_map(|a| {
            let steps: Vec<&StepRecord> = a.steps.iter().filter(|st| st.error.is_some()).collect();
            let mut groups: Vec<IssueGroup<'_>> = Vec::new();
            for i in &a.issues {
                let (reason, _) = split_detail(i);
                match groups
                    .iter_mut()
                    .find(|g| g.kind == i.kind && g.reason == reason)
                {
                    Some(g) => g.issues.push(i),
                    None => groups.push(IssueGroup {
                        kind: &i.kind,
                        reason,
                        issues: vec![i],
                    }),
                }
            }
            (!steps.is_empty() || !groups.is_empty()).then_some(Problems {
                address: &a.address,
                steps,
                groups,
            })
        })
        .collect()
}

fn kind_words(kind: &str) -> &str {
    match kind {
        "too-large" => "left out, too large",
        "refused" => "refused by the target",
        other => other,
    }
}

/// Markdown table cells: no line breaks, no column separators.
fn md(s: &str) -> String {
    s.replace('\n', " ").replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::html::{CHART_BARS, bar_chart};
    use super::status::step_line;
    use super::*;

    fn step(status: &str, ms: Option<i64>, error: Option<&str>) -> StepRecord {
        StepRecord {
            key: "verify a@b.example".to_owned(),
            account: Some("a@b.example".to_owned()),
            kind: StepKind::Verify,
            fingerprint: String::new(),
            status: StepStatus::parse(status).expect("a step status"),
            attempts: 1,
            started_at: None,
            finished_at: None,
            duration_ms: ms,
            output: None,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn a_chart_of_many_accounts_draws_the_largest() {
        let names: Vec<String> = (0..40).map(|i| format!("u{i}@x.example")).collect();
        let bars: Vec<(&str, u64, String)> = names
            .iter()
            .zip(0u64..)
            .map(|(n, i)| (n.as_str(), i, i.to_string()))
            .collect();
        let svg = bar_chart("Messages", &bars);
        assert!(
            svg.contains("Messages (the 25 largest of 40 accounts)"),
            "{svg}"
        );
        assert_eq!(svg.matches("<rect").count(), CHART_BARS);
        assert!(svg.contains(">u39@x.example<") && !svg.contains(">u14@x.example<"));
        let few = bar_chart("Messages", &bars[..3]);
        assert_eq!(few.matches("<rect").count(), 3);
        assert!(few.contains("<figcaption>Messages</figcaption>"));
    }

    #[test]
    fn durations_read_as_people_read_them() {
        assert_eq!(duration(Some(0)), "0 ms");
        assert_eq!(duration(Some(340)), "340 ms");
        assert_eq!(duration(Some(4_250)), "4.2 s");
        assert_eq!(duration(Some(185_000)), "3 min 05 s");
        assert_eq!(duration(Some(3_720_000)), "1 h 02 min");
        assert_eq!(human_seconds(3 * 86_400 + 4 * 3600 + 59), "3 d 04 h");
        assert_eq!(duration(None), "");
    }

    #[test]
    fn a_step_line_has_no_gap_where_a_duration_is_missing() {
        assert_eq!(
            step_line(&step("skipped", None, Some("copy-mail failed"))),
            "  skipped     verify — copy-mail failed"
        );
        assert_eq!(
            step_line(&step("done", Some(72), None)),
            "  done        verify                 72 ms"
        );
    }

    #[test]
    fn too_large_messages_share_one_reason_and_keep_their_size() {
        let issue = |detail: &str| IssueRow {
            account: "a@b.example".to_owned(),
            folder: "Archive".to_owned(),
            uid: 1,
            kind: "too-large".to_owned(),
            detail: detail.to_owned(),
            message: crate::providers::imap::identity::MessageFacts::default(),
        };
        assert_eq!(
            split_detail(&issue(
                "154200 bytes, larger than max-message-size (100000 bytes)"
            )),
            (
                "larger than max-message-size (100000 bytes)".to_owned(),
                Some(154_200)
            )
        );
        let refused = IssueRow {
            kind: "refused".to_owned(),
            ..issue("[LIMIT] too big")
        };
        assert_eq!(split_detail(&refused), ("[LIMIT] too big".to_owned(), None));
    }
}
