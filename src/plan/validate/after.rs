//! The `after:` graph: each name an account waits for must be an account of the plan (else a
//! suggestion, found without a scan of every address per unknown name), of the same wave or an
//! earlier one, and the waits must form no loop (a loop is named in full, in the order written).
//!
//! Entry point: [`check_after`], called by [`super::checks::check_accounts`] once duplicates are
//! known.

use std::collections::HashMap;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::plan::decode::{Reader, did_you_mean};
use crate::plan::diag::{Code, Diagnostic};

use super::Written;

/// Comparisons of an unknown `after` name with the plan's addresses, at most, for suggestions.
const SUGGESTION_COMPARISONS: usize = 2_000_000;

fn local_part(address: &str) -> &str {
    address.split('@').next().unwrap_or(address)
}

pub(super) fn check_after(
    r: &mut Reader<'_>,
    written: &[Written],
    by_address: &HashMap<String, usize>,
) {
    let mut graph: DiGraph<usize, ()> = DiGraph::with_capacity(written.len(), 0);
    let nodes: Vec<NodeIndex> = (0..written.len()).map(|i| graph.add_node(i)).collect();
    // "Did you mean" for unknown names in linear time: an address of the same local part (a
    // typo in the domain) is looked up; a scan of every address (a typo in the local part) is
    // made for the first names only, within a budget of comparisons, so that thousands of
    // unknown names do not cost thousands of scans.
    let mut names: Vec<&str> = by_address.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut by_local: HashMap<&str, Vec<&str>> = HashMap::new();
    for n in &names {
        by_local.entry(local_part(n)).or_default().push(n);
    }
    let mut scans_left = SUGGESTION_COMPARISONS / names.len().max(1);
    for (i, w) in written.iter().enumerate() {
        for (name, span) in w.account.after.iter().zip(&w.after_spans) {
            let Some(&j) = by_address.get(name) else {
                let mut d = Diagnostic::error(
                    Code::UnknownAccount,
                    format!("`after` names {name}, which is not an account of this plan"),
                )
                .with_label(&w.source, *span, "unknown account");
                let best = by_local
                    .get(local_part(name))
                    .and_then(|same| did_you_mean(name, same))
                    .or_else(|| {
                        scans_left = scans_left.checked_sub(1)?;
                        did_you_mean(name, &names)
                    });
                if let Some(best) = best {
                    d = d.with_help(format!("did you mean {best}?"));
                }
                r.diags.push(d);
                continue;
            };
            if written[j].account.wave > w.account.wave {
                r.diags.push(
                    Diagnostic::error(
                        Code::AfterLaterWave,
                        format!(
                            "{} (wave {}) waits for {name}, which only starts in wave {}",
                            w.account.address, w.account.wave, written[j].account.wave
                        ),
                    )
                    .with_label(&w.source, *span, "in a later wave")
                    .with_label(
                        &written[j].source,
                        written[j].address_span,
                        format!("wave {}", written[j].account.wave),
                    )
                    .with_help("move one of them so that an account never waits for a later wave"),
                );
            }
            // Edge from the account waited for to the one that waits.
            graph.add_edge(nodes[j], nodes[i], ());
        }
    }
    for scc in petgraph::algo::tarjan_scc(&graph) {
        let is_loop = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
        if !is_loop {
            continue;
        }
        // Walk the loop inside the component, against the edges (from waiter to awaited), so it
        // reads as written: a after b after … after a.
        let members: std::collections::HashSet<NodeIndex> = scc.iter().copied().collect();
        let start = *scc.iter().min_by_key(|n| graph[**n]).unwrap_or(&scc[0]);
        let mut path = vec![start];
        let mut current = start;
        loop {
            let next = graph
                .neighbors_directed(current, petgraph::Direction::Incoming)
                .filter(|n| members.contains(n))
                .min_by_key(|n| graph[*n]);
            let Some(next) = next else { break };
            if let Some(pos) = path.iter().position(|n| *n == next) {
                path.drain(..pos);
                path.push(next);
                break;
            }
            path.push(next);
            current = next;
        }
        let names: Vec<&str> = path
            .iter()
            .map(|n| written[graph[*n]].account.address.as_str())
            .collect();
        let mut d = Diagnostic::error(
            Code::AfterCycle,
            format!("`after` forms a loop: {}", names.join(" → ")),
        );
        for pair in path.windows(2) {
            let (waiter, awaited) = (&written[graph[pair[0]]], &written[graph[pair[1]]]);
            if let Some(k) = waiter
                .account
                .after
                .iter()
                .position(|a| *a == awaited.account.address)
            {
                d = d.with_label(
                    &waiter.source,
                    waiter.after_spans[k],
                    format!(
                        "{} waits for {}",
                        waiter.account.address, awaited.account.address
                    ),
                );
            }
        }
        r.diags
            .push(d.with_help("remove one `after` entry of the loop"));
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::fixtures::with_accounts;
    use crate::plan::diag::{Code, Diagnostic};
    use crate::plan::load;
    use crate::plan::source::SourceFile;

    #[test]
    fn a_cycle_names_the_whole_loop_and_duplicates_label_both_places() {
        let text = with_accounts(
            "  - { address: a@acme.example, from: isp, to: exchange, after: [b@acme.example] }
  - { address: b@acme.example, from: isp, to: exchange, after: [c@acme.example] }
  - { address: c@acme.example, from: isp, to: exchange, after: [a@acme.example] }
  - { address: c@acme.example, from: isp, to: exchange }
",
        );
        let source = SourceFile::new("p.yaml", text.as_str());
        let (_, diags) = load(&source, &PathBuf::from("p.yaml"));
        let cycle = diags
            .items
            .iter()
            .find(|d| d.code == Code::AfterCycle)
            .expect("cycle");
        assert_eq!(
            cycle.message,
            "`after` forms a loop: a@acme.example → b@acme.example → c@acme.example → a@acme.example"
        );
        assert_eq!(cycle.labels.len(), 3);
        let dup = diags
            .items
            .iter()
            .find(|d| d.code == Code::DuplicateAccount)
            .expect("dup");
        let lines: Vec<usize> = dup
            .labels
            .iter()
            .map(|l| source.line_col(l.span.offset).0)
            .collect();
        assert_eq!(lines, [16, 15]);
    }

    #[test]
    fn unknown_after_names_get_suggestions_without_a_scan_each() {
        use std::fmt::Write as _;
        let mut accounts = String::new();
        for i in 0..3000 {
            let _ = writeln!(
                accounts,
                "  - {{ address: u{i}@x.example, from: isp, to: isp2, after: [u{}@x.exmple] }}",
                (i + 1) % 3000
            );
        }
        accounts.push_str(
            "  - { address: alice@x.example, from: isp, to: isp2, after: [alcie@x.example] }\n",
        );
        let text = with_accounts(&accounts).replace(
            "domains:",
            "  isp2: { type: imap, imap: { host: imap.new.example } }\ndomains:",
        );
        let source = SourceFile::new("p.yaml", text.as_str());
        let (_, diags) = load(&source, &PathBuf::from("plans/p.yaml"));
        let unknown: Vec<&Diagnostic> = diags
            .items
            .iter()
            .filter(|d| d.code == Code::UnknownAccount)
            .collect();
        assert_eq!(unknown.len(), 3001);
        // A typo in the domain: found through the local part, for every one of them.
        assert!(
            unknown[..3000]
                .iter()
                .zip(1..)
                .all(|(d, i)| d.help.as_deref()
                    == Some(&format!("did you mean u{}@x.example?", i % 3000))),
            "{:?}",
            unknown[0].help
        );
        // A typo in the local part: found by a scan.
        assert_eq!(
            unknown[3000].help.as_deref(),
            Some("did you mean alice@x.example?")
        );
    }
}
