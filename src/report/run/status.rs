//! `mailplan status`: the snapshot as text for a terminal, or as JSON.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::{
    STATUS_MESSAGES, StatusFormat, account_state, dns_lines, duration, kind_words, left, named_line,
};
use crate::exec::events::human_bytes;
use crate::exec::snapshot::Snapshot;
use crate::exec::store::IssueRow;
use crate::exec::store::StepRecord;

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
pub(super) fn step_line(st: &StepRecord) -> String {
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
