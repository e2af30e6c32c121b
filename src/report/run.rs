//! `mailplan status` and `mailplan report`: what the state store says about a plan's run, for
//! people (text), machines (JSON), pull requests and tickets (Markdown) and browsers (HTML).

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::exec::events::human_bytes;
use crate::exec::snapshot::{AccountState, DnsTodo, Snapshot};
use crate::exec::store::{IssueRow, StepRecord, StepStatus};
use crate::graph::StepKind;

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

pub fn render_status(s: &Snapshot, format: StatusFormat, out: &mut dyn Write) -> io::Result<()> {
    if format == StatusFormat::Json {
        serde_json::to_writer_pretty(&mut *out, s)?;
        return writeln!(out);
    }
    if let Some(r) = &s.running {
        writeln!(
            out,
            "{}: apply is running (host {}, pid {}, since {}); state {}",
            s.plan, r.host, r.pid, r.since, s.state
        )?;
    } else if s.exists {
        writeln!(
            out,
            "{}: state {} (last run {})",
            s.plan,
            s.state,
            s.last_run.as_deref().unwrap_or("unfinished")
        )?;
        if let Some(r) = &s.stale_lock {
            writeln!(
                out,
                "the apply started {} (host {}, pid {}) stopped without finishing; run apply \
                 again to resume",
                r.since, r.host, r.pid
            )?;
        }
    } else {
        writeln!(
            out,
            "{}: apply has not run yet (no state at {})",
            s.plan, s.state
        )?;
    }
    if !s.workers.is_empty() {
        writeln!(out, "{} worker(s) running:", s.workers.len())?;
        for w in &s.workers {
            let holds = if w.steps.is_empty() {
                "nothing".to_owned()
            } else {
                w.steps.join(", ")
            };
            writeln!(
                out,
                "  {} pid {}: since {}, heartbeat {}, holds {holds}",
                w.host,
                w.pid,
                crate::exec::store::timestamp(w.started),
                crate::exec::store::timestamp(w.heartbeat)
            )?;
        }
    }
    for a in &s.accounts {
        writeln!(out, "\n{} [{}] {}", a.address, a.flow, account_state(a))?;
        for st in &a.steps {
            writeln!(out, "{}", step_line(st))?;
        }
        if let Some(on_target) = a.on_target {
            if a.copied_by == "ovh" {
                writeln!(
                    out,
                    "  messages (counted by verify): {} in the source before OVH's migration, \
                     {on_target} on the target after it",
                    a.found
                )?;
            } else {
                writeln!(
                    out,
                    "  messages: {} in the source, {on_target} on the target ({} copied by \
                     mailplan, {}), {} left, {} refused, {} too large",
                    a.found,
                    a.copied,
                    human_bytes(a.bytes),
                    left(a, on_target),
                    a.refused,
                    a.too_large
                )?;
            }
        }
        let messages: Vec<&IssueRow> = a.issues.iter().filter(|i| i.uid != 0).collect();
        for i in messages.iter().take(STATUS_MESSAGES) {
            writeln!(
                out,
                "  {}: {}",
                kind_words(&i.kind),
                named_line(i, |s| format!("\"{s}\""))
            )?;
        }
        if messages.len() > STATUS_MESSAGES {
            writeln!(
                out,
                "  … and {} more message(s): `mailplan report` lists them all",
                messages.len() - STATUS_MESSAGES
            )?;
        }
        for f in a.folders.iter().filter(|f| f.record.pending) {
            writeln!(
                out,
                "  {}: a batch was interrupted; the next apply reconciles it",
                f.source
            )?;
        }
    }
    if !s.shared_steps.is_empty() {
        writeln!(out, "\nShared steps (domains, waves)")?;
        for st in &s.shared_steps {
            writeln!(out, "{}", step_line(st))?;
        }
    }
    if !s.dns.is_empty() {
        writeln!(out, "\nDNS to-do (check-dns)")?;
        for d in &s.dns {
            for line in dns_lines(d) {
                writeln!(out, "  {line}")?;
            }
        }
    }
    Ok(())
}

/// A step of `status`: status, what, duration, attempts, error.
fn step_line(st: &StepRecord) -> String {
    let what = match &st.account {
        Some(_) => st.kind.name().to_owned(),
        None => st.key.clone(),
    };
    let mut line = format!("  {:<11} {what:<22}", st.status);
    if st.duration_ms.is_some() {
        let _ = write!(line, " {}", duration(st.duration_ms));
    }
    if st.attempts > 1 {
        let _ = write!(line, " ({} attempts)", st.attempts);
    }
    let mut line = line.trim_end().to_owned();
    if let Some(e) = &st.error {
        let _ = write!(line, " — {}", e.replace('\n', " "));
    }
    line
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

fn markdown(s: &Snapshot, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "## Migration report: {}\n", md(&s.plan))?;
    if !s.exists {
        return writeln!(out, "`apply` has not run yet (no state at `{}`).", s.state);
    }
    let t = totals(s);
    if let Some(ran) = ran(s) {
        writeln!(out, "- **Ran:** {ran}")?;
    }
    writeln!(
        out,
        "- **Last run finished:** {}",
        s.last_run.as_deref().unwrap_or("unfinished")
    )?;
    writeln!(out, "- **State:** `{}`", s.state)?;
    writeln!(
        out,
        "- **Accounts:** {}, {} verified, {} failed",
        plural(t.accounts, "account", "accounts"),
        t.verified,
        t.failed
    )?;
    writeln!(
        out,
        "- **Messages:** {} in the source, {} on the target, {} copied by mailplan ({})\n",
        t.found,
        t.on_target,
        t.copied,
        human_bytes(t.bytes)
    )?;
    if !s.dns.is_empty() {
        writeln!(out, "### DNS: what is left to do\n")?;
        for d in &s.dns {
            let done = d.status == "done" && d.advice.is_empty();
            for line in dns_lines(d) {
                writeln!(out, "- [{}] {}", if done { "x" } else { " " }, md(&line))?;
            }
        }
        writeln!(out)?;
    }
    writeln!(out, "### Accounts\n")?;
    writeln!(out, "| account | {} |", COLUMNS.join(" | "))?;
    writeln!(out, "|---|---|{}", "--:|".repeat(COLUMNS.len() - 1))?;
    for r in rows(s) {
        let (mark, state) = if r.state == "failed" {
            ("❌ ", format!("**{}**", r.state))
        } else {
            ("", r.state.to_owned())
        };
        writeln!(
            out,
            "| {mark}{} | {state} | {} |",
            r.account.address,
            r.cells.join(" | ")
        )?;
    }
    let problems = problems(s);
    if !problems.is_empty() {
        writeln!(out, "\n### Problems\n")?;
        for p in problems {
            writeln!(out, "#### {}\n", p.address)?;
            for st in p.steps {
                writeln!(
                    out,
                    "- `{}` {}: {}",
                    st.kind,
                    st.status,
                    md(st.error.as_deref().unwrap_or_default())
                )?;
            }
            for g in p.groups {
                writeln!(
                    out,
                    "- {} ({}): {}",
                    kind_words(g.kind),
                    g.issues.len(),
                    md(&g.reason)
                )?;
                for i in g.issues {
                    let line = named_line(i, |s| format!("“{s}”"));
                    writeln!(out, "  - {}", md_text(&line))?;
                }
            }
            writeln!(out)?;
        }
    }
    Ok(())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report's style: no web font, no image, nothing fetched; prints on A4 or Letter.
const STYLE: &str = "
:root{--ink:#1d2430;--muted:#5b6472;--line:#d8dde5;--ok:#1f7a4d;--bad:#b3261e;--warn:#9a6700;
--accent:#2456a6;--soft:#f3f6fa}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;
color:var(--ink);margin:0 auto;max-width:1100px;padding:32px 40px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 10px;padding-bottom:4px;
border-bottom:2px solid var(--line)}h3{font-size:15px;margin:18px 0 6px}
.sub{color:var(--muted);margin:0 0 18px}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;
margin-top:20px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;background:var(--soft)}
.card b{display:block;font-size:22px}.card span{color:var(--muted);font-size:12px}
.card.bad b{color:var(--bad)}.card.ok b{color:var(--ok)}
table{border-collapse:collapse;width:100%;font-size:12.5px}
th,td{border-bottom:1px solid var(--line);padding:5px 7px;text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600;vertical-align:bottom}td.n,th.n{text-align:right;
font-variant-numeric:tabular-nums}td.n{white-space:nowrap}
.problem table{width:auto;min-width:50%}
tr.failed td{background:#fdecea}tr.failed td:first-child{border-left:4px solid var(--bad)}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;
white-space:nowrap}
.s-verified,.s-done{background:#e3f4ea;color:var(--ok)}.s-failed{background:#fdecea;color:var(--bad)}
.s-interrupted,.s-blocked,.s-pending,.s-in-progress,.s-not-started,.s-skipped,.s-running{
background:#fff4d6;color:var(--warn)}
ul.dns{list-style:none;padding:0;margin:0}ul.dns>li{padding:6px 0;border-bottom:1px solid
var(--line)}ul.dns ul{margin:4px 0 0;padding-left:22px}
.todo{color:var(--bad);font-weight:600}.done{color:var(--ok);font-weight:600}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:24px}
figure{margin:0}figcaption{color:var(--muted);font-size:12px;margin-bottom:4px}
svg text{font:12px system-ui,'DejaVu Sans',sans-serif;fill:var(--ink)}
.problem{border-left:4px solid var(--bad);padding:2px 0 2px 12px;margin:12px 0}
.problem table{margin:4px 0 8px}code{font-size:12px}
footer{margin-top:36px;color:var(--muted);font-size:12px}
@media print{body{padding:0;max-width:none;font-size:11px;-webkit-print-color-adjust:exact;
print-color-adjust:exact}.cards{grid-template-columns:repeat(6,1fr)}
section,tr,.problem{break-inside:avoid}h2{break-after:avoid}a{color:inherit}}
";

fn badge(state: &str) -> String {
    format!(
        "<span class=\"badge s-{}\">{}</span>",
        state.replace(' ', "-"),
        escape(state)
    )
}

/// Bars per chart at most: a chart of thousands of accounts is read by nobody.
const CHART_BARS: usize = 25;

/// A horizontal bar chart in inline SVG: one bar per account, `value` against the largest.
/// Beyond [`CHART_BARS`] accounts, only the largest are drawn (the caption says so).
fn bar_chart(caption: &str, bars: &[(&str, u64, String)]) -> String {
    const ROW: usize = 22;
    const LABEL: usize = 190;
    const WIDTH: usize = 500;
    const BAR: usize = 220;
    let mut caption = caption.to_owned();
    let mut largest: Vec<&(&str, u64, String)>;
    let bars = if bars.len() > CHART_BARS {
        largest = bars.iter().collect();
        largest.sort_by_key(|b| std::cmp::Reverse(b.1));
        largest.truncate(CHART_BARS);
        let _ = write!(
            caption,
            " (the {CHART_BARS} largest of {} accounts)",
            bars.len()
        );
        largest
    } else {
        bars.iter().collect()
    };
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let height = bars.len() * ROW + 6;
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg role=\"img\" aria-label=\"{0}\" \
         viewBox=\"0 0 {WIDTH} {height}\" width=\"100%\">",
        escape(&caption)
    );
    for (i, (label, value, shown)) in bars.iter().copied().enumerate() {
        let y = i * ROW + 4;
        #[allow(clippy::cast_possible_truncation)]
        let w = ((u128::from(*value) * BAR as u128) / u128::from(max)) as usize;
        let short: String = if label.chars().count() > 28 {
            label.chars().take(27).chain(['…']).collect()
        } else {
            (*label).to_owned()
        };
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{}\" rx=\"2\" fill=\"#2456a6\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            LABEL - 8,
            y + 13,
            escape(&short),
            LABEL,
            w.max(1),
            ROW - 8,
            LABEL + w + 6,
            y + 13,
            escape(shown)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

fn html(s: &Snapshot, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Migration report: {0}</title><style>{STYLE}</style></head><body>\n\
         <header><h1>Migration report: {0}</h1>",
        escape(&s.plan)
    )?;
    if !s.exists {
        writeln!(
            out,
            "<p class=\"sub\"><code>apply</code> has not run yet (no state at <code>{}</code>).\
             </p></header></body></html>",
            escape(&s.state)
        )?;
        return Ok(());
    }
    let t = totals(s);
    writeln!(
        out,
        "<p class=\"sub\">E-mail migration with mailplan: where every mailbox stands, what was \
         copied, and what is left to do.</p><dl class=\"meta\"><dt>Plan</dt><dd>{}</dd>",
        escape(&s.plan)
    )?;
    if let Some(ran) = ran(s) {
        writeln!(out, "<dt>Ran</dt><dd>{}</dd>", escape(&ran))?;
    }
    writeln!(
        out,
        "<dt>Last run finished</dt><dd>{}</dd><dt>State</dt><dd><code>{}</code></dd></dl>",
        escape(s.last_run.as_deref().unwrap_or("unfinished")),
        escape(&s.state)
    )?;
    let card = |class: &str, value: &str, label: &str| {
        format!("<div class=\"card {class}\"><b>{value}</b><span>{label}</span></div>")
    };
    writeln!(
        out,
        "<div class=\"cards\">{}{}{}{}{}{}</div></header>",
        card("", &t.accounts.to_string(), "accounts"),
        card("ok", &t.verified.to_string(), "verified"),
        card(
            if t.failed > 0 { "bad" } else { "" },
            &t.failed.to_string(),
            "failed"
        ),
        card(
            "",
            &t.on_target.to_string(),
            &format!("messages on the target (of {} in the source)", t.found)
        ),
        card(
            "",
            &escape(&human_bytes(t.bytes)),
            &format!("copied by mailplan ({} messages)", t.copied)
        ),
        card(
            if t.problems > 0 { "bad" } else { "" },
            &t.problems.to_string(),
            "problems"
        ),
    )?;

    if !s.dns.is_empty() {
        writeln!(
            out,
            "<section><h2>DNS: what is left to do</h2><p>Mail reaches the new mailboxes once \
             these records point at them; change them at the domain's DNS host.</p><ul class=\"dns\">"
        )?;
        for d in &s.dns {
            let done = d.status == "done" && d.advice.is_empty();
            let (class, word) = match (d.status.as_str(), done) {
                (_, true) => ("done", "nothing to change"),
                ("done", false) => ("todo", "to change"),
                _ => ("todo", "not checked yet"),
            };
            let mut text = String::new();
            if d.status == "done" && !done {
                text.push_str("<ul>");
                for a in &d.advice {
                    let _ = write!(text, "<li>{}</li>", escape(a));
                }
                text.push_str("</ul>");
            } else if d.status != "done" && d.status != "pending" {
                text = format!(" (check-dns {})", escape(&d.status));
            }
            writeln!(
                out,
                "<li><b>{}</b>: <span class=\"{class}\">{word}</span>{text}</li>",
                escape(&d.domain),
            )?;
        }
        writeln!(out, "</ul></section>")?;
    }

    writeln!(
        out,
        "<section><h2>Accounts</h2><table><thead><tr><th>account</th>"
    )?;
    for (i, c) in COLUMNS.iter().enumerate() {
        let class = if i == 0 { "" } else { " class=\"n\"" };
        write!(out, "<th{class}>{c}</th>")?;
    }
    writeln!(out, "</tr></thead><tbody>")?;
    for r in rows(s) {
        let class = if r.state == "failed" {
            " class=\"failed\""
        } else {
            ""
        };
        write!(
            out,
            "<tr{class}><td>{}</td><td>{}</td>",
            escape(&r.account.address),
            badge(r.state)
        )?;
        for c in &r.cells {
            write!(out, "<td class=\"n\">{}</td>", escape(c))?;
        }
        writeln!(out, "</tr>")?;
    }
    writeln!(out, "</tbody></table></section>")?;

    if !s.accounts.is_empty() {
        let messages: Vec<(&str, u64, String)> = s
            .accounts
            .iter()
            .map(|a| {
                let n = a.on_target.unwrap_or(0);
                (a.address.as_str(), n, n.to_string())
            })
            .collect();
        let bytes: Vec<(&str, u64, String)> = s
            .accounts
            .iter()
            .map(|a| (a.address.as_str(), a.bytes, human_bytes(a.bytes)))
            .collect();
        writeln!(
            out,
            "<section><h2>Messages and data per account</h2><div class=\"charts\">{}{}</div>\
             </section>",
            bar_chart("Messages on the target", &messages),
            bar_chart("Data copied by mailplan", &bytes)
        )?;
    }

    let problems = problems(s);
    writeln!(out, "<section><h2>Problems</h2>")?;
    if problems.is_empty() {
        writeln!(
            out,
            "<p>None: no step failed, no message was left out or refused.</p>"
        )?;
    }
    for p in problems {
        writeln!(out, "<div class=\"problem\"><h3>{}</h3>", escape(p.address))?;
        if !p.steps.is_empty() {
            writeln!(out, "<ul>")?;
            for st in p.steps {
                writeln!(
                    out,
                    "<li><code>{}</code> {}: {}</li>",
                    escape(st.kind.name()),
                    badge(st.status.as_str()),
                    escape(st.error.as_deref().unwrap_or_default())
                )?;
            }
            writeln!(out, "</ul>")?;
        }
        for g in p.groups {
            writeln!(
                out,
                "<p><b>{} ({})</b>: {}</p><table><thead><tr><th>folder</th><th class=\"n\">uid\
                 </th><th class=\"n\">date</th><th>subject</th><th>Message-ID</th><th class=\"n\">size</th>\
                 </tr></thead><tbody>",
                kind_words(g.kind),
                g.issues.len(),
                escape(&g.reason)
            )?;
            for i in g.issues {
                let n = named(i);
                writeln!(
                    out,
                    "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td>\
                     <td><code>{}</code></td><td class=\"n\">{}</td></tr>",
                    escape(&i.folder),
                    i.uid,
                    escape(&n.date),
                    escape(&n.subject),
                    escape(&n.message_id),
                    escape(&n.size)
                )?;
            }
            writeln!(out, "</tbody></table>")?;
        }
        writeln!(out, "</div>")?;
    }
    writeln!(
        out,
        "</section><footer>Made by mailplan {} from the state store. Counts are those of the \
         last pass; \"copied by mailplan\" and the data copied add up every run.</footer>\
         </body></html>",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
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
