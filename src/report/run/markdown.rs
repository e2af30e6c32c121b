//! The report as Markdown, for a ticket or a pull request: the same sections as the HTML page.

use std::io::{self, Write};

use super::{
    COLUMNS, dns_lines, kind_words, md, md_text, named_line, plural, problems, ran, rows, totals,
};
use crate::exec::events::human_bytes;
use crate::exec::snapshot::Snapshot;

pub(super) fn markdown(s: &Snapshot, out: &mut dyn Write) -> io::Result<()> {
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
