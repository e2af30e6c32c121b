//! Whether a step's definition changed since it last ran: a step's fingerprint hashes its kind,
//! its account's definition and its dependencies' fingerprints ([`fingerprints`]); a `verify`
//! adds the copy's progress ([`progress_mark`]). A step's record then says whether it is to run
//! again, and why ([`freshness`]: `Fresh` or `Dirty(reason)`). Secrets enter only as their
//! references.

use sha2::{Digest, Sha256};

use crate::exec::step::Shared;
use crate::exec::store::{StepRecord, StepStatus};
use crate::graph::{StepGraph, StepKind, Subject};
use crate::plan::model::{Account, Plan};

/// Fingerprints of every step: its kind, its account's definition and its dependencies'.
pub(crate) fn fingerprints(plan: &Plan, graph: &StepGraph) -> Vec<String> {
    let mut out = vec![String::new(); graph.len()];
    let order = graph.in_order();
    for id in order {
        let step = graph.step(id);
        let mut h = Sha256::new();
        h.update(step.kind.name());
        if let Subject::Account(i) = step.subject {
            let a = &plan.accounts[i];
            h.update(account_definition(plan, a));
            // Only the step that writes it: another display name configures the target again,
            // it does not make the copy or the checks of other steps look changed by itself.
            if step.kind == StepKind::ConfigureTarget {
                h.update(format!("display-name:{:?}", a.display_name));
            }
        }
        if let Subject::Domain(d) = &step.subject {
            h.update(d);
        }
        let mut deps: Vec<&String> = graph.dependencies(id).map(|d| &out[d.index()]).collect();
        deps.sort();
        for d in deps {
            h.update(d);
        }
        out[id.index()] = hex(&h.finalize()[..12]);
    }
    out
}

/// What a step of this account depends on, as text: servers, logins, references, options.
pub(crate) fn account_definition(plan: &Plan, a: &Account) -> String {
    let server = |name: &str| {
        plan.platforms
            .get(name)
            .and_then(|p| p.imap.as_ref())
            .map(|s| format!("{}:{}:{:?}:{}", s.host, s.port, s.tls, s.tls_verify))
    };
    serde_json::json!({
        "address": a.address,
        "flow": a.flow,
        "from": [a.from, server(&a.from)],
        "to": [a.to, server(&a.to)],
        "source_login": a.source_login,
        "target_login": a.target_login,
        "source_password": a.source_password,
        "target_password": a.target_password,
        "provisional": a.provisional_address,
        "copy": a.copy,
    })
    .to_string()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Whether a step's record still holds for its fingerprint now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Done with this very definition (and, for `verify`, this copy progress).
    Fresh,
    /// To run (again), and why.
    Dirty(Dirty),
}

/// Why a step is to run (again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dirty {
    /// Never ran, or was skipped because a dependency failed.
    New,
    /// Done, but its definition or a dependency's changed since.
    Changed,
    /// Failed in an earlier run: with this very definition (`same_definition`, it runs again
    /// only when asked to) or with another.
    Failed {
        same_definition: bool,
        error: Option<String>,
    },
    /// Started and never finished (interrupted, or the process was killed).
    Interrupted,
}

impl Dirty {
    /// Why the step starts, for the output; `None` for a first run.
    pub(crate) fn why(&self) -> Option<&'static str> {
        match self {
            Dirty::New => None,
            Dirty::Changed => Some("changed since the last run"),
            Dirty::Failed { .. } => Some("retrying a failed step"),
            Dirty::Interrupted => Some("resuming an interrupted step"),
        }
    }
}

/// The freshness of a step whose fingerprint is `fingerprint` now and whose record is
/// `previous`.
pub(crate) fn freshness(previous: Option<&StepRecord>, fingerprint: &str) -> Freshness {
    let Some(p) = previous else {
        return Freshness::Dirty(Dirty::New);
    };
    let same_definition = p.fingerprint == fingerprint;
    Freshness::Dirty(match p.status {
        StepStatus::Done if same_definition => return Freshness::Fresh,
        StepStatus::Done => Dirty::Changed,
        StepStatus::Failed => Dirty::Failed {
            same_definition,
            error: p.error.clone(),
        },
        StepStatus::Running | StepStatus::Interrupted => Dirty::Interrupted,
        StepStatus::Skipped => Dirty::New,
    })
}

/// The copy progress of an account as a short digest: verification is due again when it moves.
pub(crate) fn progress_mark(shared: &Shared, account: &str) -> String {
    let Some(store) = &shared.store else {
        return String::new();
    };
    let rows = store.folders(account).unwrap_or_default();
    let mut h = Sha256::new();
    for r in rows {
        h.update(format!(
            "{}:{}:{}:{}:{};",
            r.source, r.record.uidvalidity, r.record.last_uid, r.copied, r.record.failed
        ));
    }
    hex(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::exec::step::step_key;

    fn fingerprints_of(display_name: &str) -> HashMap<String, String> {
        use crate::plan::load;
        use crate::plan::source::SourceFile;
        let text = format!(
            "version: 1
platforms:
  old: {{ type: ovh-mxplan, service: mxplan-1 }}
  ex: {{ type: ovh-exchange, organization: hosted-1, imap: {{ host: ex5.mail.ovh.net }} }}
domains:
  - {{ name: acme.example, platform: ex }}
accounts:
  - {{ address: a@acme.example, from: old, to: ex, display-name: {display_name},
      source-password: {{ env: A }}, target-password: {{ env: B }} }}
"
        );
        let path = std::path::Path::new("p.yaml");
        let (plan, diags) = load(&SourceFile::new("p.yaml", text), path);
        let plan = plan.unwrap_or_else(|| panic!("{:?}", diags.items));
        let graph = StepGraph::build(&plan);
        let fps = fingerprints(&plan, &graph);
        graph
            .ids()
            .map(|id| (step_key(&plan, &graph, id), fps[id.index()].clone()))
            .collect()
    }

    #[test]
    fn another_display_name_configures_the_target_again_and_touches_no_earlier_step() {
        let (before, after) = (fingerprints_of("Alice"), fingerprints_of("Alice Smith"));
        let changed = |key: &str| before[key] != after[key];
        assert!(changed("configure-target a@acme.example"));
        assert!(!changed("rename-source a@acme.example"));
        assert!(!changed("add-domain acme.example"));
    }

    #[test]
    fn freshness_says_why_a_step_runs_again() {
        let record = |status: &str, fingerprint: &str| StepRecord {
            key: "verify a@x.example".to_owned(),
            account: None,
            kind: StepKind::Verify,
            fingerprint: fingerprint.to_owned(),
            status: StepStatus::parse(status).expect("a status"),
            attempts: 1,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            output: None,
            error: Some("3 missing".to_owned()),
        };
        let of = |status, fp| freshness(Some(&record(status, fp)), "f1");
        assert_eq!(freshness(None, "f1"), Freshness::Dirty(Dirty::New));
        assert_eq!(of("done", "f1"), Freshness::Fresh);
        assert_eq!(of("done", "f0"), Freshness::Dirty(Dirty::Changed));
        let failed = |same_definition| {
            Freshness::Dirty(Dirty::Failed {
                same_definition,
                error: Some("3 missing".to_owned()),
            })
        };
        assert_eq!(of("failed", "f1"), failed(true));
        assert_eq!(of("failed", "f0"), failed(false));
        assert_eq!(of("running", "f0"), Freshness::Dirty(Dirty::Interrupted));
        assert_eq!(
            of("interrupted", "f1"),
            Freshness::Dirty(Dirty::Interrupted)
        );
        assert_eq!(of("skipped", "f1"), Freshness::Dirty(Dirty::New));
        assert_eq!(Dirty::Changed.why(), Some("changed since the last run"));
        assert_eq!(Dirty::New.why(), None);
    }
}
