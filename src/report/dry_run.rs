//! `mailplan plan`: the offline dry run, for people (text), machines (JSON) and pull requests
//! (Markdown). Everything here is derived from the plan and its step graph; nothing is contacted.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use crate::exec::refresh::AccountRefresh;
use crate::graph::{StepGraph, StepId, StepKind, Subject};
use crate::plan::model::{Account, Plan};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

/// Accounts beyond this many are summarised in Markdown, to fit a pull-request comment.
const MARKDOWN_ACCOUNT_LIMIT: usize = 50;

/// Stages beyond this many are summarised in text: the first and last halves are shown.
const TEXT_STAGE_LIMIT: usize = 20;

/// What one step would do, in words.
pub fn describe(plan: &Plan, graph: &StepGraph, id: StepId) -> String {
    let step = graph.step(id);
    let account = step.subject.account().map(|i| &plan.accounts[i]);
    let platform = |name: &str| -> String {
        plan.platforms
            .get(name)
            .map_or_else(String::new, |p| format!("{name} ({})", p.kind.type_name()))
    };
    match (step.kind, &step.subject, account) {
        (StepKind::AddDomain, Subject::Domain(domain), _) => {
            let d = plan.domains.iter().find(|d| &d.name == domain);
            d.map_or_else(String::new, |d| {
                format!(
                    "attach {} to {} as {}, wait until its state is ok",
                    d.name,
                    platform(&d.platform),
                    d.domain_type.api_name()
                )
            })
        }
        (StepKind::CheckDns, Subject::Domain(domain), _) => {
            format!("report the MX, SRV and SPF diagnostics of {domain} and what to change")
        }
        (StepKind::WaveGate, Subject::Wave(wave), _) => {
            format!("start wave {wave} once the previous wave is verified")
        }
        (kind, _, Some(a)) => describe_account_step(kind, a),
        (_, _, None) => String::new(),
    }
}

fn describe_account_step(kind: StepKind, a: &Account) -> String {
    let provisional = a.copy_source_address();
    match kind {
        StepKind::RenameSource => format!(
            "rename {} on {} to {provisional}, wait for the task",
            a.address, a.from
        ),
        StepKind::Preflight => format!(
            "check {} on {}: no redirection, no responder, checkMigrate without error, a free @configureme.me account",
            a.address, a.from
        ),
        StepKind::MigrateLegacy => format!(
            "migrate {} into a free @configureme.me account of {} (OVH migrate), wait",
            a.address, a.to
        ),
        StepKind::ConfigureTarget => format!(
            "configure a free @configureme.me account of {} as {}, set its password",
            a.to, a.address
        ),
        StepKind::CopyMail => {
            let source = a.source_login.as_deref().unwrap_or(provisional);
            let target = a.target_login.as_deref().unwrap_or(&a.address);
            let mut s = format!(
                "copy mail over IMAP from {source} on {} to {target} on {}",
                a.from, a.to
            );
            if !a.copy.exclude.is_empty() {
                s.push_str(", excluding ");
                s.push_str(&a.copy.exclude.join(", "));
            }
            s
        }
        StepKind::Verify => format!(
            "check every source message of {} is on {}, folder by folder",
            a.address, a.to
        ),
        StepKind::ResetSource => format!("reset {provisional} on {} (after.reset-source)", a.from),
        _ => String::new(),
    }
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    format: &'static str,
    plan: &'a str,
    totals: Totals,
    shared_steps: Vec<JsonStep>,
    accounts: Vec<JsonAccount<'a>>,
    stages: Vec<Vec<usize>>,
    /// `--refresh`: what the servers hold now.
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<&'a [AccountRefresh]>,
}

#[derive(Serialize, Default)]
struct Totals {
    accounts: usize,
    steps: usize,
    by_kind: BTreeMap<&'static str, usize>,
    by_flow: BTreeMap<&'static str, usize>,
    stages: usize,
}

#[derive(Serialize)]
struct JsonAccount<'a> {
    address: &'a str,
    flow: &'static str,
    from: &'a str,
    to: &'a str,
    wave: u32,
    steps: Vec<JsonStep>,
}

#[derive(Serialize)]
struct JsonStep {
    id: usize,
    kind: &'static str,
    action: String,
    after: Vec<usize>,
}

fn json_step(plan: &Plan, graph: &StepGraph, id: StepId) -> JsonStep {
    let mut after: Vec<usize> = graph.dependencies(id).map(StepId::index).collect();
    after.sort_unstable();
    JsonStep {
        id: id.index(),
        kind: graph.step(id).kind.name(),
        action: describe(plan, graph, id),
        after,
    }
}

/// Steps per account in graph order (which follows each flow's order), and shared steps.
fn group(plan: &Plan, graph: &StepGraph) -> (Vec<Vec<StepId>>, Vec<StepId>) {
    let mut per_account = vec![Vec::new(); plan.accounts.len()];
    let mut shared = Vec::new();
    for id in graph.ids() {
        match graph.step(id).subject.account() {
            Some(i) => per_account[i].push(id),
            None => shared.push(id),
        }
    }
    (per_account, shared)
}

fn totals(plan: &Plan, graph: &StepGraph, stages: usize) -> Totals {
    let mut t = Totals {
        accounts: plan.accounts.len(),
        steps: graph.len(),
        stages,
        ..Totals::default()
    };
    for id in graph.ids() {
        *t.by_kind.entry(graph.step(id).kind.name()).or_default() += 1;
    }
    for a in &plan.accounts {
        *t.by_flow.entry(a.flow.name()).or_default() += 1;
    }
    t
}

/// Render the dry run; `live` is what `--refresh` read from the servers.
pub fn render(
    plan: &Plan,
    graph: &StepGraph,
    format: Format,
    live: Option<&[AccountRefresh]>,
    out: &mut dyn Write,
) -> io::Result<()> {
    render_offline(plan, graph, format, live, out)?;
    match (live, format) {
        (Some(live), Format::Text) => render_live_text(live, out),
        (Some(live), Format::Markdown) => render_live_markdown(live, out),
        _ => Ok(()),
    }
}

fn render_live_text(live: &[AccountRefresh], out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "\nLive state (read with --refresh; nothing was changed):"
    )?;
    for a in live {
        writeln!(out, "\n{}:", a.address)?;
        if let Some(e) = &a.error {
            writeln!(out, "  cannot read: {e}")?;
            continue;
        }
        for st in &a.steps {
            let mark = if st.ok { "" } else { "PROBLEM: " };
            writeln!(out, "  {:<17} {mark}{}", st.step, st.state)?;
        }
        for f in &a.folders {
            let target = match (&f.renamed, f.target_exists) {
                (_, true) => format!("{} ({} messages)", f.target, f.target_messages),
                (Some(name), false) => {
                    format!("{name} (to create; the target's separator is in the name)")
                }
                (None, false) => format!("{} (to create)", f.target),
            };
            writeln!(
                out,
                "  {} ({} messages) -> {target} [{}]",
                f.source, f.source_messages, f.reason
            )?;
        }
    }
    Ok(())
}

fn render_live_markdown(live: &[AccountRefresh], out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "\n#### Live state (`--refresh`)\n")?;
    writeln!(
        out,
        "| account | source folder | messages | target folder | messages | why |\n|---|---|--:|---|--:|---|"
    )?;
    for a in live {
        if let Some(e) = &a.error {
            writeln!(
                out,
                "| `{}` | cannot read: {} | | | | |",
                a.address,
                e.replace('|', "\\|")
            )?;
        }
        for f in &a.folders {
            let (target, count) = match (&f.renamed, f.target_exists) {
                (_, true) => (f.target.clone(), f.target_messages.to_string()),
                (Some(name), false) => (format!("{name} (to create, renamed)"), String::new()),
                (None, false) => (format!("{} (to create)", f.target), String::new()),
            };
            writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} |",
                a.address, f.source, f.source_messages, target, count, f.reason
            )?;
        }
    }
    Ok(())
}

fn render_offline(
    plan: &Plan,
    graph: &StepGraph,
    format: Format,
    live: Option<&[AccountRefresh]>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let stages = graph.stages();
    let (per_account, shared) = group(plan, graph);
    let totals = totals(plan, graph, stages.len());
    match format {
        Format::Json => {
            let doc = JsonPlan {
                format: "mailplan.plan/v1",
                plan: &plan.name,
                shared_steps: shared
                    .iter()
                    .map(|id| json_step(plan, graph, *id))
                    .collect(),
                accounts: plan
                    .accounts
                    .iter()
                    .zip(&per_account)
                    .map(|(a, ids)| JsonAccount {
                        address: &a.address,
                        flow: a.flow.name(),
                        from: &a.from,
                        to: &a.to,
                        wave: a.wave,
                        steps: ids.iter().map(|id| json_step(plan, graph, *id)).collect(),
                    })
                    .collect(),
                stages: stages
                    .iter()
                    .map(|s| s.iter().map(|id| id.index()).collect())
                    .collect(),
                totals,
                live,
            };
            serde_json::to_writer(&mut *out, &doc)?;
            writeln!(out)
        }
        Format::Text => {
            writeln!(
                out,
                "Plan {}: {}, {} in {} (dry run: nothing is contacted)",
                plan.name,
                count(totals.accounts, "account"),
                count(totals.steps, "step"),
                count(totals.stages, "stage")
            )?;
            if !shared.is_empty() {
                writeln!(out, "\nShared steps:")?;
                for id in &shared {
                    writeln!(
                        out,
                        "  {:<17} {}",
                        graph.step(*id).kind.name(),
                        describe(plan, graph, *id)
                    )?;
                }
            }
            for (a, ids) in plan.accounts.iter().zip(&per_account) {
                writeln!(out, "\n{} ({}, wave {}):", a.address, a.flow, a.wave)?;
                for (n, id) in ids.iter().enumerate() {
                    writeln!(
                        out,
                        "  {}. {:<17} {}",
                        n + 1,
                        graph.step(*id).kind.name(),
                        describe(plan, graph, *id)
                    )?;
                }
            }
            writeln!(out, "\nStages (steps that can run in parallel):")?;
            // A long chain of `after:` makes thousands of stages: show both ends of it.
            let shown = |n: usize| {
                stages.len() <= TEXT_STAGE_LIMIT
                    || n < TEXT_STAGE_LIMIT / 2
                    || n >= stages.len() - TEXT_STAGE_LIMIT / 2
            };
            for (n, stage) in stages.iter().enumerate() {
                if shown(n) {
                    writeln!(out, "  {}: {}", n + 1, kind_counts(graph, stage))?;
                } else if n == TEXT_STAGE_LIMIT / 2 {
                    let hidden = stages.len() - TEXT_STAGE_LIMIT;
                    let steps: usize = stages[n..n + hidden].iter().map(Vec::len).sum();
                    writeln!(
                        out,
                        "  … {hidden} more stages ({steps} steps; `--format json` lists them all)"
                    )?;
                }
            }
            Ok(())
        }
        Format::Markdown => {
            writeln!(out, "### mailplan: `{}`\n", plan.name)?;
            writeln!(
                out,
                "{}, {} in {}.\n",
                count_bold(totals.accounts, "account"),
                count_bold(totals.steps, "step"),
                count_bold(totals.stages, "stage")
            )?;
            writeln!(out, "| flow | accounts |\n|---|---|")?;
            for (flow, n) in &totals.by_flow {
                writeln!(out, "| {flow} | {n} |")?;
            }
            if !shared.is_empty() {
                writeln!(
                    out,
                    "\nShared steps (one per domain or wave, before or after its accounts):\n\n\
                     | step | for | what |\n|---|---|---|"
                )?;
                for id in &shared {
                    let step = graph.step(*id);
                    let what = step.subject.name(plan);
                    writeln!(
                        out,
                        "| {} | {what} | {} |",
                        step.kind.name(),
                        describe(plan, graph, *id).replace('|', "\\|")
                    )?;
                }
            }
            writeln!(
                out,
                "\n| account | flow | wave | steps |\n|---|---|---|---|"
            )?;
            for (a, ids) in plan
                .accounts
                .iter()
                .zip(&per_account)
                .take(MARKDOWN_ACCOUNT_LIMIT)
            {
                let steps: Vec<&str> = ids.iter().map(|id| graph.step(*id).kind.name()).collect();
                writeln!(
                    out,
                    "| `{}` | {} | {} | {} |",
                    a.address,
                    a.flow,
                    a.wave,
                    steps.join(" → ")
                )?;
            }
            if plan.accounts.len() > MARKDOWN_ACCOUNT_LIMIT {
                writeln!(
                    out,
                    "\n…and {} more accounts (`mailplan plan --format text` lists them all).",
                    plan.accounts.len() - MARKDOWN_ACCOUNT_LIMIT
                )?;
            }
            Ok(())
        }
    }
}

/// `1 account`, `2 accounts`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `**1** account`, `**2** accounts`.
fn count_bold(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("**1** {noun}")
    } else {
        format!("**{n}** {noun}s")
    }
}

fn kind_counts(graph: &StepGraph, stage: &[StepId]) -> String {
    let mut counts: BTreeMap<StepKind, usize> = BTreeMap::new();
    for id in stage {
        *counts.entry(graph.step(*id).kind).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{} ×{n}", k.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::load;
    use crate::plan::source::SourceFile;
    use std::path::Path;

    fn render_text(accounts: &str) -> String {
        render_as(accounts, Format::Text)
    }

    fn render_as(accounts: &str, format: Format) -> String {
        let text = format!(
            "version: 1\nplatforms:\n  a: {{ type: imap, imap: {{ host: a.example }} }}\n  b: {{ type: imap, imap: {{ host: b.example }} }}\naccounts:\n{accounts}"
        );
        // Every account logs in with its passwords (references: nothing is resolved here).
        let text = text.replace(
            ", from: ",
            ", source-password: { env: S }, target-password: { env: T }, from: ",
        );
        let (plan, diags) = load(&SourceFile::new("p.yaml", text), Path::new("p.yaml"));
        let plan = plan.unwrap_or_else(|| panic!("{:?}", diags.items));
        let graph = StepGraph::build(&plan);
        let mut out = Vec::new();
        render(&plan, &graph, format, None, &mut out).expect("render");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn one_account_is_counted_in_the_singular() {
        let one = "  - { address: u0@x.example, from: a, to: b }\n";
        let text = render_text(one);
        assert!(
            text.starts_with("Plan p: 1 account, 2 steps in 2 stages"),
            "{text}"
        );
        let md = render_as(one, Format::Markdown);
        assert!(
            md.contains("**1** account, **2** steps in **2** stages."),
            "{md}"
        );
    }

    #[test]
    fn markdown_lists_the_shared_steps() {
        let md = render_as(
            "  - { address: u0@x.example, from: a, to: b }\n  \
             - { address: u1@x.example, from: a, to: b, wave: 1 }\n",
            Format::Markdown,
        );
        assert!(
            md.contains(
                "| step | for | what |\n|---|---|---|\n| wave-gate | wave 1 | start wave 1 once \
                 the previous wave is verified |\n"
            ),
            "{md}"
        );
    }

    #[test]
    fn text_summarises_long_stage_lists_and_keeps_short_ones() {
        // Each account waits for the previous one: two stages (copy, verify) per account.
        let chain: String = (0..30)
            .map(|i| match i {
                0 => "  - { address: u0@x.example, from: a, to: b }\n".to_owned(),
                _ => format!(
                    "  - {{ address: u{i}@x.example, from: a, to: b, after: [u{}@x.example] }}\n",
                    i - 1
                ),
            })
            .collect();
        let text = render_text(&chain);
        assert!(text.contains("60 steps in 60 stages"), "{text}");
        let stages: Vec<&str> = text
            .split("Stages (steps that can run in parallel):\n")
            .nth(1)
            .expect("stages")
            .lines()
            .collect();
        assert_eq!(stages.len(), TEXT_STAGE_LIMIT + 1, "{stages:#?}");
        assert_eq!(stages[0], "  1: copy-mail ×1");
        assert_eq!(
            stages[10],
            "  … 40 more stages (40 steps; `--format json` lists them all)"
        );
        assert_eq!(stages[20], "  60: verify ×1");

        let text = render_text("  - { address: u0@x.example, from: a, to: b }\n");
        assert!(
            text.ends_with(
                "Stages (steps that can run in parallel):\n  1: copy-mail ×1\n  2: verify ×1\n"
            ),
            "{text}"
        );
    }
}
