//! Saved plans (Terraform's `plan -out`): what was reviewed is what runs.
//!
//! `mailplan plan PLAN --out FILE` writes a [`SavedPlan`]: the digests of the plan and of every
//! file it imports, the selection (`--only`/`--exclude`), each step's key and fingerprint (what
//! `apply` compares to decide that a step changed), the dry run itself and, with `--refresh`, a
//! digest per account of the live state it read. `mailplan apply FILE` loads the plan again,
//! makes the same record and runs only when [`differences`] finds none; otherwise it refuses and
//! names each difference.
//!
//! Invariants: a saved plan holds no secret (the plan holds only references; the dry run and the
//! live state hold none either); message counts are not part of the live digest (mail keeps
//! arriving until the MX records move, and the copy is incremental anyway): only what changes a
//! step is (where each folder goes and whether it exists, a server that cannot be read, what
//! each OVH step would do).

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::refresh::AccountRefresh;
use crate::graph::StepGraph;
use crate::plan::model::Plan;

/// The format tag of a saved plan file.
pub const FORMAT: &str = "mailplan.saved-plan/v1";

/// A file and the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub path: String,
    pub sha256: String,
}

/// A step as `apply` identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedStep {
    pub key: String,
    pub fingerprint: String,
}

/// What `--refresh` read of one account, reduced to what changes its steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveDigest {
    pub address: String,
    pub sha256: String,
}

/// The record `plan --out` writes and `apply FILE` checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: String,
    /// The mailplan version that wrote it.
    pub mailplan: String,
    pub plan: FileDigest,
    pub imports: Vec<FileDigest>,
    pub only: Vec<String>,
    pub exclude: Vec<String>,
    pub steps: Vec<SavedStep>,
    /// `None` without `--refresh`.
    pub live: Option<Vec<LiveDigest>>,
    /// The dry run as `plan --format json` prints it (what the reviewer saw).
    pub dry_run: serde_json::Value,
}

/// Hex SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Everything but the dry run: the plan's and imports' digests, the selection, the steps.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub plan_path: &'a str,
    pub plan_text: &'a str,
    /// The imported files in the order the plan read them, with their bytes' digests.
    pub imports: Vec<FileDigest>,
    pub only: &'a [String],
    pub exclude: &'a [String],
}

/// The record of `plan` as loaded now (and of `live`, when the live state was read).
pub fn record(
    inputs: Inputs<'_>,
    plan: &Plan,
    graph: &StepGraph,
    live: Option<&[AccountRefresh]>,
    dry_run: serde_json::Value,
) -> SavedPlan {
    let fingerprints = super::fingerprint::fingerprints(plan, graph);
    let steps = graph
        .ids()
        .map(|id| SavedStep {
            key: super::step::step_key(plan, graph, id),
            fingerprint: fingerprints[id.index()].clone(),
        })
        .collect();
    SavedPlan {
        format: FORMAT.to_owned(),
        mailplan: env!("CARGO_PKG_VERSION").to_owned(),
        plan: FileDigest {
            path: inputs.plan_path.to_owned(),
            sha256: sha256(inputs.plan_text.as_bytes()),
        },
        imports: inputs.imports,
        only: inputs.only.to_vec(),
        exclude: inputs.exclude.to_vec(),
        steps,
        live: live.map(|l| l.iter().map(live_digest).collect()),
        dry_run,
    }
}

/// One account's live state without its message counts.
fn live_digest(a: &AccountRefresh) -> LiveDigest {
    let mut text = format!("error:{}\n", a.error.is_some());
    for f in &a.folders {
        let _ = writeln!(
            text,
            "folder:{}\t{}\t{}\t{}",
            f.source, f.target, f.reason, f.target_exists
        );
    }
    for s in &a.steps {
        let _ = writeln!(text, "step:{}\t{}\t{}", s.step, s.ok, s.state);
    }
    LiveDigest {
        address: a.address.clone(),
        sha256: sha256(text.as_bytes()),
    }
}

/// Whether `bytes` look like a saved plan rather than a YAML plan.
pub fn is_saved_plan(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && String::from_utf8_lossy(head).contains(FORMAT)
}

/// What differs between the reviewed record and the one made now, in words; empty when `apply`
/// may run it.
pub fn differences(saved: &SavedPlan, now: &SavedPlan) -> Vec<String> {
    let mut out = Vec::new();
    if saved.plan.sha256 != now.plan.sha256 {
        out.push(format!(
            "the plan {} changed since it was saved",
            saved.plan.path
        ));
    }
    for old in &saved.imports {
        match now.imports.iter().find(|n| n.path == old.path) {
            None => out.push(format!("the plan no longer imports {}", old.path)),
            Some(n) if n.sha256 != old.sha256 => {
                out.push(format!(
                    "the import {} changed since it was saved",
                    old.path
                ));
            }
            Some(_) => {}
        }
    }
    for new in &now.imports {
        if !saved.imports.iter().any(|o| o.path == new.path) {
            out.push(format!("the plan now imports {}", new.path));
        }
    }
    // The plan's text may be the same while what it means is not (an import, a default): the
    // steps are what runs.
    for old in &saved.steps {
        match now.steps.iter().find(|n| n.key == old.key) {
            None => out.push(format!("step `{}` is no longer in the plan", old.key)),
            Some(n) if n.fingerprint != old.fingerprint => {
                out.push(format!("step `{}` changed", old.key));
            }
            Some(_) => {}
        }
    }
    for new in &now.steps {
        if !saved.steps.iter().any(|o| o.key == new.key) {
            out.push(format!("step `{}` is new", new.key));
        }
    }
    if let (Some(saved_live), Some(now_live)) = (&saved.live, &now.live) {
        for old in saved_live {
            if now_live
                .iter()
                .find(|n| n.address == old.address)
                .is_none_or(|n| n.sha256 != old.sha256)
            {
                out.push(format!(
                    "the live state of {} moved since it was read (`plan --refresh` shows it now)",
                    old.address
                ));
            }
        }
    }
    out
}

/// Write `saved` as pretty JSON to `path`.
pub fn write(path: &Path, saved: &SavedPlan) -> Result<(), SavedPlanError> {
    let text = serde_json::to_string_pretty(saved).map_err(|e| SavedPlanError::Unreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    fs_err::write(path, text + "\n").map_err(|e| SavedPlanError::Unreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Read a saved plan.
pub fn read(path: &Path, bytes: &[u8]) -> Result<SavedPlan, SavedPlanError> {
    let saved: SavedPlan =
        serde_json::from_slice(bytes).map_err(|e| SavedPlanError::Unreadable {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    if saved.format != FORMAT {
        return Err(SavedPlanError::Unreadable {
            path: path.display().to_string(),
            reason: format!("format `{}`, expected `{FORMAT}`", saved.format),
        });
    }
    Ok(saved)
}

/// A saved plan that cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SavedPlanError {
    #[error("cannot use the saved plan {path}: {reason}")]
    #[diagnostic(
        code(exec::saved_plan),
        help("make it again with `mailplan plan PLAN --out FILE`")
    )]
    Unreadable { path: String, reason: String },
    #[error(
        "the saved plan {path} is not what would run now; nothing was executed:\n{}",
        list.iter().map(|l| format!("  - {l}")).collect::<Vec<_>>().join("\n")
    )]
    #[diagnostic(
        code(exec::saved_plan_stale),
        help(
            "review the plan again: `mailplan plan PLAN --out FILE` (with `--refresh` if it was used), then `mailplan apply FILE`"
        )
    )]
    Stale { path: String, list: Vec<String> },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(plan: &str, imports: &[(&str, &str)], steps: &[(&str, &str)]) -> SavedPlan {
        SavedPlan {
            format: FORMAT.to_owned(),
            mailplan: "0".to_owned(),
            plan: FileDigest {
                path: "p.yaml".to_owned(),
                sha256: sha256(plan.as_bytes()),
            },
            imports: imports
                .iter()
                .map(|(p, t)| FileDigest {
                    path: (*p).to_owned(),
                    sha256: sha256(t.as_bytes()),
                })
                .collect(),
            only: Vec::new(),
            exclude: Vec::new(),
            steps: steps
                .iter()
                .map(|(k, f)| SavedStep {
                    key: (*k).to_owned(),
                    fingerprint: (*f).to_owned(),
                })
                .collect(),
            live: None,
            dry_run: serde_json::Value::Null,
        }
    }

    #[test]
    fn the_same_record_has_no_difference_and_each_change_is_named() {
        let a = saved("plan", &[("a.csv", "x")], &[("copy-mail a@b", "1")]);
        assert!(differences(&a, &a.clone()).is_empty());
        let b = saved(
            "plan 2",
            &[("a.csv", "y"), ("b.csv", "z")],
            &[("copy-mail a@b", "2"), ("verify a@b", "3")],
        );
        assert_eq!(
            differences(&a, &b),
            [
                "the plan p.yaml changed since it was saved",
                "the import a.csv changed since it was saved",
                "the plan now imports b.csv",
                "step `copy-mail a@b` changed",
                "step `verify a@b` is new",
            ]
        );
    }

    #[test]
    fn a_saved_plan_is_told_from_a_yaml_plan() {
        let json = serde_json::to_vec(&saved("p", &[], &[])).expect("json");
        assert!(is_saved_plan(&json));
        assert!(!is_saved_plan(b"version: 1\nname: x\n"));
        assert!(!is_saved_plan(b"{ version: 1 }\n"));
    }
}
