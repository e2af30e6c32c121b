//! The report as one self-contained HTML page: no web font, no image, nothing fetched;
//! printable; the chart drawn in inline SVG.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::{COLUMNS, kind_words, named, problems, ran, rows, totals};
use crate::exec::events::human_bytes;
use crate::exec::snapshot::Snapshot;

pub(super) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report's style: no web font, no image, nothing fetched; prints on A4 or Letter.
pub(super) const STYLE: &str = "
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

pub(super) fn badge(state: &str) -> String {
    format!(
        "<span class=\"badge s-{}\">{}</span>",
        state.replace(' ', "-"),
        escape(state)
    )
}

/// Bars per chart at most: a chart of thousands of accounts is read by nobody.
pub(super) const CHART_BARS: usize = 25;

/// A horizontal bar chart in inline SVG: one bar per account, `value` against the largest.
/// Beyond [`CHART_BARS`] accounts, only the largest are drawn (the caption says so).
pub(super) fn bar_chart(caption: &str, bars: &[(&str, u64, String)]) -> String {
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

pub(super) fn html(s: &Snapshot, out: &mut dyn Write) -> io::Result<()> {
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
