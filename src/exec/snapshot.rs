//! What the state store knows about a plan's accounts, gathered for `status` and `report`
//! (rendered by [`crate::report::run`]). Read-only: opening the store writes nothing.

use serde::Serialize;

use super::state::{FolderRow, IssueRow, LockHolder, StateError, StateStore, StepRecord};
use crate::plan::model::Plan;

/// One account as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct AccountState {
    pub address: String,
    pub flow: String,
    pub steps: Vec<StepRecord>,
    pub folders: Vec<FolderRow>,
    pub issues: Vec<IssueRow>,
    /// From the last `copy-mail`: messages in the source, already on the target before that
    /// pass, and on the target after it (already there plus copied by it). `None` for an account
    /// whose flow copies no mail itself (a historical MX Plan account).
    pub found: u64,
    pub already: u64,
    pub on_target: Option<u64>,
    /// Cumulated over every run.
    pub copied: u64,
    pub bytes: u64,
    pub too_large: u64,
    pub refused: u64,
    /// From the last `verify`: messages missing on the target.
    pub missing: Option<u64>,
}

/// The whole plan as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub schema: &'static str,
    pub plan: String,
    pub state: String,
    /// `false` when `apply` never ran (no store yet).
    pub exists: bool,
    pub last_run: Option<String>,
    /// The `apply` running on this state now (host, pid, since), when one is.
    pub running: Option<LockHolder>,
    /// An `apply` that held the lock and died without finishing (killed, a crash): its steps
    /// marked running were interrupted.
    pub stale_lock: Option<LockHolder>,
    /// Steps not tied to an account (domains, wave gates).
    pub shared_steps: Vec<StepRecord>,
    pub accounts: Vec<AccountState>,
}

impl Snapshot {
    /// `status`'s exit code: 1 when a step failed or was skipped because of a failure (what
    /// `apply` would exit with), 0 otherwise (done, not started, in progress or running).
    pub fn exit_code(&self) -> u8 {
        let mut steps = self
            .accounts
            .iter()
            .flat_map(|a| &a.steps)
            .chain(&self.shared_steps);
        u8::from(steps.any(|s| s.status == "failed" || s.status == "skipped"))
    }
}

/// Read the store at `path` (absent: every account shown as not started).
pub fn read(plan: &Plan, path: &std::path::Path) -> Result<Snapshot, StateError> {
    let store = StateStore::open_read_only(path, &plan.name)?;
    let mut snapshot = Snapshot {
        schema: "mailplan.status/v1",
        plan: plan.name.clone(),
        state: path.display().to_string(),
        exists: store.is_some(),
        last_run: None,
        running: None,
        stale_lock: None,
        shared_steps: Vec::new(),
        accounts: Vec::with_capacity(plan.accounts.len()),
    };
    let steps = match &store {
        Some(s) => {
            snapshot.last_run = s.meta("last_run")?;
            if let Some(holder) = s.lock_holder()? {
                let host = gethostname::gethostname().to_string_lossy().into_owned();
                if holder.alive(&host) {
                    snapshot.running = Some(holder);
                } else {
                    snapshot.stale_lock = Some(holder);
                }
            }
            s.steps()?
        }
        None => Vec::new(),
    };
    let mut steps = steps;
    if snapshot.running.is_none() {
        // No apply runs now: a step still marked running was cut short (a kill, a crash).
        for step in steps.iter_mut().filter(|s| s.status == "running") {
            "interrupted".clone_into(&mut step.status);
        }
    }
    let mut by_account: std::collections::HashMap<String, Vec<StepRecord>> =
        std::collections::HashMap::new();
    for step in steps {
        match &step.account {
            Some(a) => by_account.entry(a.clone()).or_default().push(step),
            None => snapshot.shared_steps.push(step),
        }
    }
    for a in &plan.accounts {
        let steps = by_account.remove(&a.address).unwrap_or_default();
        let (folders, issues) = match &store {
            Some(s) => (s.folders(&a.address)?, s.issues(&a.address)?),
            None => (Vec::new(), Vec::new()),
        };
        let output = |kind: &str| -> Option<serde_json::Value> {
            steps
                .iter()
                .find(|s| s.kind == kind)
                .and_then(|s| s.output.as_deref())
                .and_then(|o| serde_json::from_str(o).ok())
        };
        let copy = output("copy-mail");
        let verify = output("verify");
        let total = |field: &str| {
            copy.as_ref()
                .and_then(|c| c["total"][field].as_u64())
                .unwrap_or(0)
        };
        snapshot.accounts.push(AccountState {
            address: a.address.clone(),
            flow: a.flow.name().to_owned(),
            found: total("found"),
            already: total("already"),
            on_target: copy.as_ref().map(|_| total("already") + total("copied")),
            copied: folders.iter().map(|f| f.copied).sum(),
            bytes: folders.iter().map(|f| f.bytes).sum(),
            too_large: issues.iter().filter(|i| i.kind == "too-large").count() as u64,
            refused: issues.iter().filter(|i| i.kind == "refused").count() as u64,
            missing: verify.and_then(|v| v["missing"].as_u64()),
            steps,
            folders,
            issues,
        });
    }
    Ok(snapshot)
}
