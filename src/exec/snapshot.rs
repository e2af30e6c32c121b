//! What the state store knows about a plan's accounts, gathered for `status` and `report`
//! (rendered by [`crate::report::run`]). Read-only: opening the store writes nothing.

use serde::Serialize;

use super::store::pg::WorkerRow;
use super::store::{
    FolderRow, IssueRow, LockHolder, StateError, StateLocation, StepRecord, StepStatus,
};
use crate::graph::StepKind;
use crate::plan::model::{Flow, Plan};

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
    /// Who copied the mail: `mailplan` (IMAP copy) or `ovh` (a historical MX Plan account,
    /// moved by OVH's migration; its counts are the ones `verify` took before and after).
    pub copied_by: &'static str,
}

/// What the user still has to change in a domain's DNS, from its `check-dns` step.
#[derive(Debug, Clone, Serialize)]
pub struct DnsTodo {
    pub domain: String,
    /// The `check-dns` step's status (`done`, `failed`, …), or `pending` when it has not run.
    pub status: String,
    /// What to change (empty once MX, SRV and SPF are valid, or before the check ran).
    pub advice: Vec<String>,
    /// When the check ran (UTC, RFC 3339).
    pub checked_at: Option<String>,
}

/// The whole plan as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The JSON format tag (`mailplan.status/v1`; the report's JSON says `mailplan.report/v1`).
    pub format: &'static str,
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
    /// The live workers of a shared run (a `PostgreSQL` state): host, pid, started and last
    /// heartbeat (seconds since the epoch) and the steps each holds. A worker whose heartbeat
    /// is older than a lease (`MAILPLAN_LEASE_SECONDS`, 60 s) is gone and not listed.
    pub workers: Vec<WorkerRow>,
    /// The earliest start and the latest end of any recorded step (UTC, RFC 3339), and the time
    /// spent between them, in seconds, over every run.
    pub started: Option<String>,
    pub finished: Option<String>,
    pub elapsed_s: Option<i64>,
    /// The DNS changes left to the user, per domain the plan checks (MX Plan flows).
    pub dns: Vec<DnsTodo>,
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
        u8::from(steps.any(|s| s.status == StepStatus::Failed || s.status == StepStatus::Skipped))
    }
}

/// Read the store at `location` (absent: every account shown as not started).
pub fn read(plan: &Plan, location: &StateLocation) -> Result<Snapshot, StateError> {
    let store = super::store::open_read_only(location, &plan.name)?;
    let mut snapshot = Snapshot {
        format: "mailplan.status/v1",
        plan: plan.name.clone(),
        state: location.to_string(),
        exists: store.is_some(),
        last_run: None,
        running: None,
        stale_lock: None,
        workers: Vec::new(),
        started: None,
        finished: None,
        elapsed_s: None,
        dns: Vec::new(),
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
            let lease = i64::try_from(crate::exec::worker::lease().as_secs()).unwrap_or(60);
            snapshot.workers = s.workers()?;
            snapshot
                .workers
                .retain(|w| super::store::now() - w.heartbeat <= lease);
            s.steps()?
        }
        None => Vec::new(),
    };
    let mut steps = steps;
    if snapshot.running.is_none() {
        // No apply holds the run lock: a step still marked running was cut short (a kill, a
        // crash), unless a live worker of a shared run holds it (a dead worker's steps are
        // interrupted, whatever the other workers do).
        let held: std::collections::HashSet<&str> = snapshot
            .workers
            .iter()
            .flat_map(|w| w.steps.iter().map(String::as_str))
            .collect();
        for step in steps
            .iter_mut()
            .filter(|s| s.status == StepStatus::Running && !held.contains(s.key.as_str()))
        {
            step.status = StepStatus::Interrupted;
        }
    }
    let first = steps.iter().filter_map(|s| s.started_at).min();
    let last = steps.iter().filter_map(|s| s.finished_at).max();
    snapshot.started = first.map(super::store::timestamp);
    snapshot.finished = last.map(super::store::timestamp);
    snapshot.elapsed_s = first.zip(last).map(|(a, b)| (b - a).max(0));
    snapshot.dns = dns_todo(plan, &steps);
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
        let output = |kind: StepKind| -> Option<serde_json::Value> {
            steps
                .iter()
                .find(|s| s.kind == kind)
                .and_then(|s| s.output.as_deref())
                .and_then(|o| serde_json::from_str(o).ok())
        };
        let copy = output(StepKind::CopyMail);
        let verify = output(StepKind::Verify);
        let total = |field: &str| {
            copy.as_ref()
                .and_then(|c| c["total"][field].as_u64())
                .unwrap_or(0)
        };
        let by_ovh = a.flow == Flow::LegacyToExchange;
        // A historical account: OVH copied it; `verify` counted the source before the migration
        // and the Exchange mailbox after it.
        let counted = |side: &str| -> Option<u64> {
            let counts = verify.as_ref()?.get(side)?.as_object()?;
            Some(counts.values().filter_map(serde_json::Value::as_u64).sum())
        };
        let (found, on_target) = if by_ovh {
            (counted("before").unwrap_or(0), counted("after"))
        } else {
            (
                total("found"),
                copy.as_ref().map(|_| total("already") + total("copied")),
            )
        };
        snapshot.accounts.push(AccountState {
            address: a.address.clone(),
            flow: a.flow.name().to_owned(),
            copied_by: if by_ovh { "ovh" } else { "mailplan" },
            found,
            already: total("already"),
            on_target,
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

/// One entry per domain of the plan (each has its `check-dns` step), in the plan's order.
fn dns_todo(plan: &Plan, steps: &[StepRecord]) -> Vec<DnsTodo> {
    plan.domains
        .iter()
        .map(|d| {
            let step = steps
                .iter()
                .find(|s| s.kind == StepKind::CheckDns && s.key == StepKind::CheckDns.key(&d.name));
            let advice = step
                .and_then(|s| s.output.as_deref())
                .and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok())
                .and_then(|o| {
                    o["advice"].as_array().map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                })
                .unwrap_or_default();
            DnsTodo {
                domain: d.name.clone(),
                status: step.map_or_else(|| "pending".to_owned(), |s| s.status.as_str().to_owned()),
                advice,
                checked_at: step
                    .filter(|s| s.status == StepStatus::Done)
                    .and_then(|s| s.finished_at)
                    .map(super::store::timestamp),
            }
        })
        .collect()
}
