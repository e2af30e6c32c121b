//! `mailplan status` and `mailplan report`: what the state store says about a plan's run, for
//! people (text), machines (JSON), pull requests and tickets (Markdown) and browsers (HTML).

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::exec::printer::human_bytes;
use crate::exec::snapshot::{AccountState, Snapshot};

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
    let status = |kind: &str| {
        a.steps
            .iter()
            .find(|s| s.kind == kind)
            .map(|s| s.status.as_str())
    };
    if a.steps.is_empty() {
        "not started"
    } else if a.steps.iter().any(|s| s.status == "failed") {
        "failed"
    } else if a.steps.iter().any(|s| s.status == "running") {
        // Only while an apply holds the lock: the snapshot calls the others interrupted.
        "running"
    } else if a.steps.iter().any(|s| s.status == "interrupted") {
        "interrupted"
    } else if status("verify") == Some("done") {
        "verified"
    } else if a.steps.iter().any(|s| s.status == "skipped") {
        "blocked"
    } else {
        "in progress"
    }
}

fn duration(ms: Option<i64>) -> String {
    ms.map_or_else(String::new, |ms| {
        format!("{}.{} s", ms / 1000, ms % 1000 / 100)
    })
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
    for a in &s.accounts {
        writeln!(out, "\n{} [{}] {}", a.address, a.flow, account_state(a))?;
        for st in &a.steps {
            let mut line = format!(
                "  {:<9} {:<16} {}",
                st.status,
                st.kind,
                duration(st.duration_ms)
            );
            if st.attempts > 1 {
                let _ = write!(line, " ({} attempts)", st.attempts);
            }
            if let Some(e) = &st.error {
                let _ = write!(line, " — {e}");
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        if let Some(on_target) = a.on_target {
            writeln!(
                out,
                "  messages: {} in the source, {on_target} on the target ({} copied by mailplan, \
                 {}), {} left, {} refused, {} too large",
                a.found,
                a.copied,
                human_bytes(a.bytes),
                left(a, on_target),
                a.refused,
                a.too_large
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
    for st in &s.shared_steps {
        writeln!(out, "{:<9} {}", st.status, st.key)?;
    }
    Ok(())
}

pub fn render_report(s: &Snapshot, format: ReportFormat, out: &mut dyn Write) -> io::Result<()> {
    match format {
        ReportFormat::Json => {
            let mut v = serde_json::to_value(s).map_err(io::Error::other)?;
            v["schema"] = serde_json::json!("mailplan.report/v1");
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

/// A count that only a copy by mailplan gives, or `–` (a historical account: OVH copies it).
fn copy_count(a: &AccountState, n: u64) -> String {
    if a.on_target.is_some() {
        n.to_string()
    } else {
        "–".to_owned()
    }
}

fn step_ms(a: &AccountState, kind: &str) -> Option<i64> {
    a.steps
        .iter()
        .find(|s| s.kind == kind)
        .and_then(|s| s.duration_ms)
}

fn markdown(s: &Snapshot, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "## Migration report: {}\n", s.plan)?;
    if !s.exists {
        return writeln!(out, "`apply` has not run yet.");
    }
    writeln!(
        out,
        "| account | state | in the source | on the target | copied by mailplan | too large | refused | bytes | copy | verify |"
    )?;
    writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")?;
    for a in &s.accounts {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            a.address,
            account_state(a),
            copy_count(a, a.found),
            copy_count(a, a.on_target.unwrap_or(0)),
            copy_count(a, a.copied),
            a.too_large,
            a.refused,
            human_bytes(a.bytes),
            duration(step_ms(a, "copy-mail")),
            duration(step_ms(a, "verify")),
        )?;
    }
    let problems: Vec<&AccountState> = s
        .accounts
        .iter()
        .filter(|a| !a.issues.is_empty() || a.steps.iter().any(|st| st.error.is_some()))
        .collect();
    if !problems.is_empty() {
        writeln!(out, "\n### Problems\n")?;
        for a in problems {
            for st in a.steps.iter().filter(|st| st.error.is_some()) {
                writeln!(
                    out,
                    "- `{}` {}: {}",
                    st.key,
                    st.status,
                    st.error.as_deref().unwrap_or_default().replace('\n', " ")
                )?;
            }
            for i in &a.issues {
                writeln!(
                    out,
                    "- {} {} uid {}: {} — {}",
                    a.address, i.folder, i.uid, i.kind, i.detail
                )?;
            }
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

fn html(s: &Snapshot, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Migration \
         report: {0}</title>\n<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:\
         collapse}}td,th{{border:1px solid #999;padding:.3em .6em}}td.n{{text-align:right}}\
         </style></head><body>\n<h1>Migration report: {0}</h1>",
        escape(&s.plan)
    )?;
    if s.exists {
        writeln!(
            out,
            "<table><tr><th>account</th><th>state</th><th>in the source</th><th>on the target\
             </th><th>copied by mailplan</th><th>too large</th><th>refused</th><th>bytes</th><th>copy</th><th>verify\
             </th></tr>"
        )?;
        for a in &s.accounts {
            writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}\
                 </td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td>\
                 <td class=n>{}</td></tr>",
                escape(&a.address),
                account_state(a),
                copy_count(a, a.found),
                copy_count(a, a.on_target.unwrap_or(0)),
                copy_count(a, a.copied),
                a.too_large,
                a.refused,
                human_bytes(a.bytes),
                duration(step_ms(a, "copy-mail")),
                duration(step_ms(a, "verify"))
            )?;
        }
        writeln!(out, "</table>")?;
        let issues: Vec<_> = s.accounts.iter().flat_map(|a| a.issues.iter()).collect();
        let errors: Vec<_> = s
            .accounts
            .iter()
            .flat_map(|a| a.steps.iter())
            .filter(|st| st.error.is_some())
            .collect();
        if !issues.is_empty() || !errors.is_empty() {
            writeln!(out, "<h2>Problems</h2><ul>")?;
            for st in errors {
                writeln!(
                    out,
                    "<li><code>{}</code> {}: {}</li>",
                    escape(&st.key),
                    st.status,
                    escape(st.error.as_deref().unwrap_or_default())
                )?;
            }
            for i in issues {
                writeln!(
                    out,
                    "<li>{} {} uid {}: {} — {}</li>",
                    escape(&i.account),
                    escape(&i.folder),
                    i.uid,
                    i.kind,
                    escape(&i.detail)
                )?;
            }
            writeln!(out, "</ul>")?;
        }
    } else {
        writeln!(out, "<p><code>apply</code> has not run yet.</p>")?;
    }
    writeln!(out, "</body></html>")
}
