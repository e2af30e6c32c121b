//! The step graph: every step of a plan and what it waits for, as plain data (petgraph).
//!
//! Entry points: [`StepGraph::build`] from a validated plan, [`StepGraph::stages`] (the sets of
//! steps that can run in parallel), and [`ReadyQueue`], the pure scheduler the executor drives
//! (`next_ready`, `finish(id) -> newly ready`, `fail(id) -> skipped`).
//!
//! Invariants: the graph is acyclic (validation rejected `after:` loops and waits on later
//! waves); `add-domain` exists once per attached domain and is shared by its accounts, and every
//! account's first step on that domain waits for it (`OVHcloud`'s order for a new MX Plan source:
//! `add-domain → rename-source → configure-target → copy-mail → verify`, so nothing is renamed
//! before the domain is attached); waves are joined by one gate step each, so the edge count stays
//! linear in the number of accounts.

use std::collections::{BTreeSet, HashMap, VecDeque};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::plan::model::{Flow, Plan};

/// A step's identity in one graph.
pub type StepId = NodeIndex;

/// What a step does. The spelling (`add-domain`, …) is the one printed and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepKind {
    AddDomain,
    Preflight,
    RenameSource,
    ConfigureTarget,
    MigrateLegacy,
    CopyMail,
    Verify,
    ResetSource,
    CheckDns,
    /// No work: wave `n` starts once every account of the previous wave is verified.
    WaveGate,
}

impl StepKind {
    pub fn name(self) -> &'static str {
        match self {
            StepKind::AddDomain => "add-domain",
            StepKind::Preflight => "preflight",
            StepKind::RenameSource => "rename-source",
            StepKind::ConfigureTarget => "configure-target",
            StepKind::MigrateLegacy => "migrate-legacy",
            StepKind::CopyMail => "copy-mail",
            StepKind::Verify => "verify",
            StepKind::ResetSource => "reset-source",
            StepKind::CheckDns => "check-dns",
            StepKind::WaveGate => "wave-gate",
        }
    }

    pub const ALL: [StepKind; 10] = [
        StepKind::AddDomain,
        StepKind::Preflight,
        StepKind::RenameSource,
        StepKind::ConfigureTarget,
        StepKind::MigrateLegacy,
        StepKind::CopyMail,
        StepKind::Verify,
        StepKind::ResetSource,
        StepKind::CheckDns,
        StepKind::WaveGate,
    ];

    /// The stable name of a step of this kind about `subject` (an account's address, a
    /// domain, `wave 2`: [`Subject::name`]) in the state store and the output:
    /// `copy-mail alice@x.example`. The one constructor of a step's key.
    pub fn key(self, subject: &str) -> String {
        format!("{} {subject}", self.name())
    }

    /// The kind named `name` ([`StepKind::name`]'s spelling): the one way back from the text.
    pub fn parse(name: &str) -> Option<StepKind> {
        StepKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl serde::Serialize for StepKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// What a step is about: exactly one of an account, a domain or a wave.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Index in `plan.accounts`.
    Account(usize),
    /// The domain of `add-domain` and `check-dns`.
    Domain(String),
    /// The wave a gate opens.
    Wave(u32),
}

impl Subject {
    /// How keys and the output name it: the account's address, the domain, `wave 2`.
    pub fn name(&self, plan: &Plan) -> String {
        match self {
            Subject::Account(i) => plan.accounts[*i].address.clone(),
            Subject::Domain(d) => d.clone(),
            Subject::Wave(w) => format!("wave {w}"),
        }
    }

    /// The account's index, for an account's step.
    pub fn account(&self) -> Option<usize> {
        match self {
            Subject::Account(i) => Some(*i),
            Subject::Domain(_) | Subject::Wave(_) => None,
        }
    }
}

/// One step: its kind and what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: StepKind,
    pub subject: Subject,
}

impl Step {
    fn for_domain(kind: StepKind, domain: &str) -> Self {
        Step {
            kind,
            subject: Subject::Domain(domain.to_owned()),
        }
    }

    fn for_account(kind: StepKind, account: usize) -> Self {
        Step {
            kind,
            subject: Subject::Account(account),
        }
    }

    /// Its key in the state store and the output ([`StepKind::key`]).
    pub fn key(&self, plan: &Plan) -> String {
        self.kind.key(&self.subject.name(plan))
    }
}

/// The steps of a plan and their order.
#[derive(Debug, Clone)]
pub struct StepGraph {
    /// Behind the methods below: no caller outside `graph/` depends on petgraph.
    graph: DiGraph<Step, ()>,
}

impl StepGraph {
    /// Build the graph of a validated plan.
    pub fn build(plan: &Plan) -> StepGraph {
        let mut g: DiGraph<Step, ()> =
            DiGraph::with_capacity(plan.accounts.len() * 5, plan.accounts.len() * 6);
        let mut add_domain: HashMap<(&str, &str), StepId> = HashMap::new();
        for d in &plan.domains {
            let id = g.add_node(Step::for_domain(StepKind::AddDomain, &d.name));
            add_domain.insert((d.name.as_str(), d.platform.as_str()), id);
        }

        let mut entry = Vec::with_capacity(plan.accounts.len());
        let mut verify = Vec::with_capacity(plan.accounts.len());
        for (i, a) in plan.accounts.iter().enumerate() {
            let domain_step = add_domain.get(&(a.domain(), a.to.as_str())).copied();
            let mut chain = |kinds: &[StepKind]| -> Vec<StepId> {
                let ids: Vec<StepId> = kinds
                    .iter()
                    .map(|k| g.add_node(Step::for_account(*k, i)))
                    .collect();
                for pair in ids.windows(2) {
                    g.add_edge(pair[0], pair[1], ());
                }
                ids
            };
            let (first, last) = match a.flow {
                Flow::MxplanToExchange => {
                    // `OVHcloud`'s order for a new MX Plan: the domain is attached (state ok) before
                    // the source frees its address, so a refused domain leaves the source as it
                    // was.
                    let ids = chain(&[
                        StepKind::RenameSource,
                        StepKind::ConfigureTarget,
                        StepKind::CopyMail,
                        StepKind::Verify,
                    ]);
                    if let Some(d) = domain_step {
                        g.add_edge(d, ids[0], ());
                    }
                    if plan.resets_source(a) {
                        let reset = g.add_node(Step::for_account(StepKind::ResetSource, i));
                        g.add_edge(ids[3], reset, ());
                    }
                    (vec![ids[0]], ids[3])
                }
                Flow::LegacyToExchange | Flow::ImapToExchange => {
                    let kinds = if a.flow == Flow::LegacyToExchange {
                        [
                            StepKind::Preflight,
                            StepKind::MigrateLegacy,
                            StepKind::Verify,
                        ]
                    } else {
                        [
                            StepKind::ConfigureTarget,
                            StepKind::CopyMail,
                            StepKind::Verify,
                        ]
                    };
                    let ids = chain(&kinds);
                    if let Some(d) = domain_step {
                        g.add_edge(d, ids[0], ());
                    }
                    (vec![ids[0]], ids[2])
                }
                Flow::ImapToImap => {
                    let ids = chain(&[StepKind::CopyMail, StepKind::Verify]);
                    (vec![ids[0]], ids[1])
                }
            };
            entry.push(first);
            verify.push(last);
        }

        // check-dns once every account of the domain on that platform is verified.
        for d in &plan.domains {
            let check = g.add_node(Step::for_domain(StepKind::CheckDns, &d.name));
            g.add_edge(
                add_domain[&(d.name.as_str(), d.platform.as_str())],
                check,
                (),
            );
            for (i, a) in plan.accounts.iter().enumerate() {
                if a.domain() == d.name && a.to == d.platform {
                    g.add_edge(verify[i], check, ());
                }
            }
        }

        // Waves: one gate per wave after the first.
        let waves: BTreeSet<u32> = plan.accounts.iter().map(|a| a.wave).collect();
        let waves: Vec<u32> = waves.into_iter().collect();
        for pair in waves.windows(2) {
            let gate = g.add_node(Step {
                kind: StepKind::WaveGate,
                subject: Subject::Wave(pair[1]),
            });
            for (i, a) in plan.accounts.iter().enumerate() {
                if a.wave == pair[0] {
                    g.add_edge(verify[i], gate, ());
                } else if a.wave == pair[1] {
                    for e in &entry[i] {
                        g.add_edge(gate, *e, ());
                    }
                }
            }
        }

        // after: the awaited account's verify before the waiting account's first steps.
        let index: HashMap<&str, usize> = plan
            .accounts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.address.as_str(), i))
            .collect();
        for (i, a) in plan.accounts.iter().enumerate() {
            for awaited in &a.after {
                if let Some(&j) = index.get(awaited.as_str()) {
                    for e in &entry[i] {
                        g.add_edge(verify[j], *e, ());
                    }
                }
            }
        }
        StepGraph { graph: g }
    }

    pub fn step(&self, id: StepId) -> &Step {
        &self.graph[id]
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// Every step, in the order they were added (the order of their [`StepId::index`]).
    pub fn ids(&self) -> impl Iterator<Item = StepId> + '_ {
        self.graph.node_indices()
    }

    /// Every edge `(before, after)`: `after` waits for `before`.
    pub fn edges(&self) -> impl Iterator<Item = (StepId, StepId)> + '_ {
        self.graph
            .edge_indices()
            .filter_map(|e| self.graph.edge_endpoints(e))
    }

    /// Every step after all the steps it waits for (the graph has no cycle: validation refuses
    /// the plans that would make one).
    pub fn in_order(&self) -> Vec<StepId> {
        petgraph::algo::toposort(&self.graph, None).unwrap_or_default()
    }

    /// The steps `id` waits for.
    pub fn dependencies(&self, id: StepId) -> impl Iterator<Item = StepId> + '_ {
        self.graph.neighbors_directed(id, Direction::Incoming)
    }

    /// Steps grouped by the earliest moment they can run: every step of stage `n` only waits
    /// for steps of earlier stages, so each stage's steps can run in parallel.
    pub fn stages(&self) -> Vec<Vec<StepId>> {
        let order = self.in_order();
        let mut level = vec![0usize; self.graph.node_count()];
        let mut stages: Vec<Vec<StepId>> = Vec::new();
        for id in order {
            let l = self
                .dependencies(id)
                .map(|d| level[d.index()] + 1)
                .max()
                .unwrap_or(0);
            level[id.index()] = l;
            if stages.len() <= l {
                stages.resize_with(l + 1, Vec::new);
            }
            stages[l].push(id);
        }
        for s in &mut stages {
            s.sort_unstable();
        }
        stages
    }
}

/// The pure scheduler: which steps may start now. No I/O; the executor reports back.
#[derive(Debug, Clone)]
pub struct ReadyQueue<'g> {
    graph: &'g StepGraph,
    waiting_on: Vec<usize>,
    ready: VecDeque<StepId>,
    skipped: Vec<bool>,
}

impl<'g> ReadyQueue<'g> {
    pub fn new(graph: &'g StepGraph) -> Self {
        let waiting_on: Vec<usize> = graph
            .graph
            .node_indices()
            .map(|n| graph.dependencies(n).count())
            .collect();
        let ready = graph
            .graph
            .node_indices()
            .filter(|n| waiting_on[n.index()] == 0)
            .collect();
        ReadyQueue {
            graph,
            waiting_on,
            ready,
            skipped: vec![false; graph.len()],
        }
    }

    /// The next step that may start, if any.
    pub fn next_ready(&mut self) -> Option<StepId> {
        self.ready.pop_front()
    }

    /// `id` succeeded: returns the steps that became ready (also queued for `next_ready`, ahead
    /// of the steps that were ready before: an account runs to its end before new accounts
    /// start, so accounts finish, verified, one after another instead of all at the end).
    pub fn finish(&mut self, id: StepId) -> Vec<StepId> {
        let mut newly = Vec::new();
        for next in self.graph.graph.neighbors_directed(id, Direction::Outgoing) {
            let w = &mut self.waiting_on[next.index()];
            *w -= 1;
            if *w == 0 && !self.skipped[next.index()] {
                newly.push(next);
            }
        }
        newly.sort_unstable();
        for next in newly.iter().rev() {
            self.ready.push_front(*next);
        }
        newly
    }

    /// `id` failed: every step that depends on it, directly or not, is skipped and returned.
    /// Independent steps go on.
    pub fn fail(&mut self, id: StepId) -> Vec<StepId> {
        let mut skipped = Vec::new();
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            for next in self.graph.graph.neighbors_directed(n, Direction::Outgoing) {
                if !self.skipped[next.index()] {
                    self.skipped[next.index()] = true;
                    skipped.push(next);
                    stack.push(next);
                }
            }
        }
        self.ready.retain(|r| !self.skipped[r.index()]);
        skipped.sort_unstable();
        skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::load;
    use crate::plan::source::SourceFile;
    use std::path::Path;

    fn plan(accounts: &str, reset: bool) -> Plan {
        let text = format!(
            "version: 1
platforms:
  old: {{ type: ovh-mxplan, service: mxplan-1 }}
  legacy: {{ type: ovh-mxplan-legacy, domain: acme.example }}
  ex: {{ type: ovh-exchange, organization: hosted-1, imap: {{ host: ex5.mail.ovh.net }} }}
  a: {{ type: imap, imap: {{ host: a.example }} }}
  b: {{ type: imap, imap: {{ host: b.example }} }}
domains:
  - {{ name: acme.example, platform: ex }}
accounts:
{accounts}
after: {{ reset-source: {reset} }}
"
        );
        // Every account logs in with its passwords (references: nothing is resolved here).
        let text = text.replace(
            ", from: ",
            ", source-password: { env: S }, target-password: { env: T }, from: ",
        );
        let (plan, diags) = load(&SourceFile::new("p.yaml", text), Path::new("p.yaml"));
        plan.unwrap_or_else(|| panic!("{:?}", diags.items))
    }

    fn names(g: &StepGraph, ids: &[StepId]) -> Vec<String> {
        ids.iter()
            .map(|id| {
                let s = g.step(*id);
                let who = match &s.subject {
                    Subject::Account(i) => i.to_string(),
                    Subject::Domain(d) => d.clone(),
                    Subject::Wave(w) => format!("wave {w}"),
                };
                format!("{}({who})", s.kind.name())
            })
            .collect()
    }

    fn run_all(g: &StepGraph) -> Vec<String> {
        let mut q = ReadyQueue::new(g);
        let mut done = Vec::new();
        while let Some(id) = q.next_ready() {
            done.push(id);
            q.finish(id);
        }
        assert_eq!(done.len(), g.len(), "every step runs once");
        names(g, &done)
    }

    #[test]
    fn mxplan_flow_orders_domain_rename_configure_copy_verify_reset() {
        let g = StepGraph::build(&plan(
            "  - { address: john@acme.example, from: old, to: ex }",
            true,
        ));
        let order = run_all(&g);
        assert_eq!(
            order,
            [
                "add-domain(acme.example)",
                "rename-source(0)",
                "configure-target(0)",
                "copy-mail(0)",
                "verify(0)",
                "reset-source(0)",
                "check-dns(acme.example)",
            ]
        );
    }

    #[test]
    fn each_step_is_about_what_its_kind_needs_and_is_keyed_by_it() {
        let p = plan(
            "  - { address: john@acme.example, from: old, to: ex }
  - { address: bob@b.example, from: a, to: b, wave: 2 }",
            true,
        );
        let g = StepGraph::build(&p);
        let mut keys = Vec::new();
        for id in g.graph.node_indices() {
            let step = g.step(id);
            let fits = match (step.kind, &step.subject) {
                (StepKind::AddDomain | StepKind::CheckDns, Subject::Domain(_))
                | (StepKind::WaveGate, Subject::Wave(_)) => true,
                (kind, Subject::Account(_)) => !matches!(
                    kind,
                    StepKind::AddDomain | StepKind::CheckDns | StepKind::WaveGate
                ),
                _ => false,
            };
            assert!(fits, "{step:?}");
            keys.push(step.key(&p));
        }
        for key in [
            "add-domain acme.example",
            "check-dns acme.example",
            "wave-gate wave 2",
            "configure-target john@acme.example",
            "copy-mail bob@b.example",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
        }
        let unique: BTreeSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "{keys:?}");
        for kind in StepKind::ALL {
            assert_eq!(StepKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(StepKind::parse("copy"), None);
    }

    #[test]
    fn a_new_mx_plan_source_is_renamed_only_once_its_domain_is_attached() {
        let g = StepGraph::build(&plan(
            "  - { address: john@acme.example, from: old, to: ex }",
            false,
        ));
        let rename = g
            .graph
            .node_indices()
            .find(|n| g.step(*n).kind == StepKind::RenameSource)
            .expect("a rename step");
        let waits: Vec<String> = names(&g, &g.dependencies(rename).collect::<Vec<_>>());
        assert_eq!(waits, ["add-domain(acme.example)"]);
        // A refused domain skips the rename and everything after it.
        let mut q = ReadyQueue::new(&g);
        let first = q.next_ready().expect("a first step");
        assert_eq!(g.step(first).kind, StepKind::AddDomain);
        assert_eq!(q.next_ready(), None, "nothing else may start before it");
        let skipped = names(&g, &q.fail(first));
        assert!(
            skipped.contains(&"rename-source(0)".to_owned()),
            "{skipped:?}"
        );
    }

    #[test]
    fn add_domain_is_shared_and_stages_run_accounts_in_parallel() {
        let g = StepGraph::build(&plan(
            "  - { address: john@acme.example, from: old, to: ex }
  - { address: jane@acme.example, from: legacy, to: ex }
  - { address: bob@b.example, from: a, to: b }",
            false,
        ));
        let add = g
            .graph
            .node_indices()
            .filter(|n| g.step(*n).kind == StepKind::AddDomain)
            .count();
        assert_eq!(add, 1);
        let stages: Vec<Vec<String>> = g.stages().iter().map(|s| names(&g, s)).collect();
        assert_eq!(
            stages,
            [
                vec!["add-domain(acme.example)", "copy-mail(2)"],
                vec!["rename-source(0)", "preflight(1)", "verify(2)"],
                vec!["configure-target(0)", "migrate-legacy(1)"],
                vec!["copy-mail(0)", "verify(1)"],
                vec!["verify(0)"],
                vec!["check-dns(acme.example)"],
            ]
        );
    }

    #[test]
    fn an_account_runs_to_its_end_before_the_next_starts() {
        let g = StepGraph::build(&plan(
            "  - { address: bob@b.example, from: a, to: b }
  - { address: carol@b.example, from: a, to: b }
  - { address: john@acme.example, from: old, to: ex }",
            false,
        ));
        assert_eq!(
            run_all(&g),
            [
                // The domain's accounts become ready when it is attached and go first.
                "add-domain(acme.example)",
                "rename-source(2)",
                "configure-target(2)",
                "copy-mail(2)",
                "verify(2)",
                "check-dns(acme.example)",
                "copy-mail(0)",
                "verify(0)",
                "copy-mail(1)",
                "verify(1)",
            ]
        );
    }

    #[test]
    fn waves_and_after_hold_accounts_back() {
        let g = StepGraph::build(&plan(
            "  - { address: pilot@b.example, from: a, to: b }
  - { address: x@b.example, from: a, to: b, wave: 1 }
  - { address: y@b.example, from: a, to: b, wave: 1, after: [x@b.example] }",
            false,
        ));
        let order = run_all(&g);
        let pos = |s: &str| order.iter().position(|o| o == s).unwrap_or(usize::MAX);
        assert!(pos("verify(0)") < pos("wave-gate(wave 1)"));
        assert!(pos("wave-gate(wave 1)") < pos("copy-mail(1)"));
        assert!(pos("verify(1)") < pos("copy-mail(2)"));
    }

    #[test]
    fn a_failure_skips_only_its_dependents() {
        let g = StepGraph::build(&plan(
            "  - { address: john@acme.example, from: old, to: ex }
  - { address: bob@b.example, from: a, to: b }",
            false,
        ));
        let mut q = ReadyQueue::new(&g);
        let mut ran = Vec::new();
        let mut skipped = Vec::new();
        while let Some(id) = q.next_ready() {
            ran.push(id);
            if g.step(id).kind == StepKind::RenameSource {
                skipped = q.fail(id);
            } else {
                q.finish(id);
            }
        }
        assert_eq!(
            names(&g, &skipped),
            [
                "configure-target(0)",
                "copy-mail(0)",
                "verify(0)",
                "check-dns(acme.example)"
            ]
        );
        let ran = names(&g, &ran);
        assert!(ran.contains(&"verify(1)".to_owned()), "{ran:?}");
        assert!(!ran.contains(&"copy-mail(0)".to_owned()), "{ran:?}");
    }
}
