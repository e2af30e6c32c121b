//! The runner: drives the step graph with tokio. One coordinator owns the ready-queue, the state
//! store and the printer; each step runs as a task and reports back.
//!
//! - `parallelism` steps run at once; each IMAP server takes at most its cap of connections
//!   (the plan's `max-connections`, the command line's, or [`DEFAULT_PER_SERVER`]);
//!   an account's copy uses up to `connections` pairs, the extra ones only on free slots.
//! - A failed step skips only the steps that depend on it; the others go on.
//! - Resume: a step whose definition and dependencies are unchanged (its fingerprint) and that is
//!   done is not run again; `copy-mail` always runs (an incremental pass that copies only what is
//!   new); `verify` runs again only when the copy's progress moved.
//! - The first interrupt stops new work and lets running copies reach a safe point; the second
//!   exits at once. Either way the next `apply` resumes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use petgraph::algo::toposort;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::ovh;
use super::printer::{Event, Printer, human_bytes};
use super::secrets;
use super::store::{StateError, StateStore, StepStatus};
use crate::graph::{ReadyQueue, StepGraph, StepId, StepKind, Subject};
use crate::plan::model::{Account, Flow, ImapServer, Plan};
use crate::plan::secret::Secret;
use crate::providers::RunMode;
use crate::providers::imap::connect::server_name;
use crate::providers::imap::copy::{
    self, CopyContext, CopyError, CopyEvent, FolderCounts, FolderRecord, IssueKind, Ledger,
};
use crate::providers::imap::{self, ImapError};

/// A pass carrying fewer messages than this (or all in one folder) runs on one connection pair,
/// unless the target is far away.
const EXTRA_PAIRS_FROM: u64 = 500;

/// Whether a copy pass gets more connection pairs: only for several folders with mail, and
/// either enough messages (near, each pair's two logins are most of a small account's time) or
/// a target far away (there each folder costs a few round trips, which pairs take in parallel:
/// a delta pass over six folders at 26 ms spends most of its time on them).
fn extra_pairs_pay_off(connections: usize, work: copy::Work, far: bool) -> bool {
    connections > 1 && work.divisible() && (far || work.messages >= EXTRA_PAIRS_FROM)
}

/// Retries of a step after a network error or a "try later" answer.
const MAX_RETRIES: u32 = 5;

/// How `apply` runs.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub state_path: PathBuf,
    pub parallelism: usize,
    /// `--max-connections-per-server` when given: the default cap, and a limit on every server's.
    pub per_server: Option<usize>,
    /// Connection pairs per account copy (folders are shared out among them).
    pub connections: usize,
    /// OVH API calls per minute at most (all steps together).
    pub ovh_requests_per_minute: u32,
    pub retry_failed: bool,
    pub break_lock: bool,
    pub mode: RunMode,
}

/// Errors that stop `apply` before or around the run (not a step's failure).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ExecError {
    #[error("{count} secret(s) cannot be resolved; nothing was executed:\n{list}")]
    #[diagnostic(
        code(exec::unresolved_secret),
        help("set the variables, create the files, or fix the commands the plan refers to")
    )]
    Secrets { count: usize, list: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Ovh(#[from] crate::providers::ovh::OvhError),
    #[error("{count} check(s) before the run failed; nothing was executed:\n{list}")]
    #[diagnostic(
        code(exec::preflight),
        help(
            "fix each problem listed (order the missing Hosted Exchange accounts, change the \
             domain or the account in the control panel, the password or the consumer key), \
             then run apply again; `plan --refresh` shows the same checks"
        )
    )]
    Preflight { count: usize, list: String },
}

impl ExecError {
    /// 2 for what is wrong before anything ran.
    pub fn exit_code(&self) -> u8 {
        2
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub done: usize,
    pub failed: usize,
    pub skipped: usize,
    pub interrupted: bool,
    pub messages: u64,
    pub bytes: u64,
}

impl RunSummary {
    /// 0 done, 1 some steps failed, 130 interrupted.
    pub fn exit_code(&self) -> u8 {
        if self.interrupted {
            130
        } else {
            u8::from(self.failed > 0 || self.skipped > 0)
        }
    }
}

/// Logins and passwords of one account, resolved.
#[derive(Debug)]
pub(crate) struct Credentials {
    pub source_login: String,
    pub source_password: Secret,
    pub target_login: String,
    pub target_password: Secret,
}

/// What every step task shares.
#[derive(Debug)]
struct Shared {
    plan: Plan,
    credentials: Vec<Credentials>,
    store: Option<Arc<dyn StateStore>>,
    printer: Arc<Printer>,
    stop: Arc<AtomicBool>,
    /// A state write failed: the run stops as at a first Ctrl-C (no step starts, running ones
    /// stop at a safe point) and exits 1, since what it does next could not be recorded.
    state_failed: AtomicBool,
    mode: RunMode,
    servers: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Each server's connection cap, by [`server_name`] ([`server_caps`]).
    caps: HashMap<String, usize>,
    /// The cap of a server the plan does not name (none: every server is some platform's).
    per_server: usize,
    connections: usize,
    /// The OVH API side, when the plan has OVH steps.
    ovh: Option<ovh::Ovh>,
    /// Verification results computed by `copy-mail` on its connections, for `verify`.
    verified: Mutex<HashMap<usize, Vec<copy::FolderCheck>>>,
    /// Message sizes the IMAP targets refused as too large in this run.
    size_refusals: copy::SizeRefusals,
    /// Messages and bytes the targets acknowledged in this run, whatever became of their step
    /// (an interrupted or failed copy carried mail too): the run's summary counts these.
    copied: std::sync::atomic::AtomicU64,
    copied_bytes: std::sync::atomic::AtomicU64,
}

/// The stable name of a step in the state store and the output: `copy-mail alice@x.example`.
pub fn step_key(plan: &Plan, graph: &StepGraph, id: StepId) -> String {
    graph.step(id).key(plan)
}

/// The OVH client when the plan has OVH steps, and the run's preflight
/// ([`super::preflight::check`]): everything that can be checked before the first change.
async fn ovh_preflight(
    plan: &Plan,
    options: &ApplyOptions,
    credentials: &[Credentials],
    printer: &Printer,
) -> Result<Option<ovh::Ovh>, ExecError> {
    if plan.accounts.iter().all(|a| a.flow == Flow::ImapToImap) {
        return Ok(None);
    }
    let ovh_side = ovh::Ovh::connect(plan, options.ovh_requests_per_minute)?;
    let store = super::store::open_read_only(&options.state_path, &plan.name)?;
    let done = |kind: StepKind, who: &str| {
        store
            .as_ref()
            .and_then(|s| s.step(&kind.key(who)).ok().flatten())
            .is_some_and(|r| r.status == StepStatus::Done)
    };
    let what = format!(
        "the OVH API at {} (its clock, the services, domains and accounts the plan names, \
         checked before anything changes)",
        ovh_side.client.base_url()
    );
    let problems = announced(
        printer,
        &what,
        super::preflight::check(&ovh_side, plan, credentials, &done),
    )
    .await?;
    if !problems.is_empty() {
        return Err(ExecError::Preflight {
            count: problems.len(),
            list: problems
                .iter()
                .map(|p| format!("  {}", p.text))
                .collect::<Vec<_>>()
                .join("\n"),
        });
    }
    Ok(Some(ovh_side))
}

/// The first notice of a wait, then one every [`WAIT_NOTICE_EVERY`].
const WAIT_NOTICE_AFTER: Duration = Duration::from_secs(5);
const WAIT_NOTICE_EVERY: Duration = Duration::from_secs(10);

/// Run `work`, saying what the run waits for while it takes long (an unreachable API is
/// retried for minutes: the operator must see why nothing happens).
async fn announced<F: std::future::Future>(printer: &Printer, what: &str, work: F) -> F::Output {
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval_at(started + WAIT_NOTICE_AFTER, WAIT_NOTICE_EVERY);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticks.tick() => printer.event(&Event::Waiting {
                what,
                elapsed: started.elapsed(),
            }),
        }
    }
}

/// Resolve every account's logins and passwords; all problems at once.
pub(crate) fn resolve_credentials(plan: &Plan) -> Result<Vec<Credentials>, ExecError> {
    let dir = plan
        .path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let mut problems = Vec::new();
    let mut creds = Vec::with_capacity(plan.accounts.len());
    // Each distinct reference once; commands concurrently.
    let resolved = secrets::resolve_all(
        plan.accounts
            .iter()
            .flat_map(|a| [a.source_password.as_ref(), a.target_password.as_ref()])
            .flatten(),
        &dir,
    );
    for a in &plan.accounts {
        let mut get = |side: &str, r: Option<&crate::plan::secret::SecretRef>| match r {
            None => {
                problems.push(format!("  {}: no {side}-password in the plan", a.address));
                None
            }
            Some(r) => match resolved
                .get(r)
                .unwrap_or(&Err(secrets::SecretError::Unresolved))
            {
                Ok(s) => Some(s.clone()),
                Err(e) => {
                    problems.push(format!("  {}: {side}-password {e}", a.address));
                    None
                }
            },
        };
        let sp = get("source", a.source_password.as_ref());
        // OVH's own migration keeps the source password on the Exchange account.
        let target_ref = a
            .target_password
            .as_ref()
            .or(if a.flow == Flow::LegacyToExchange {
                a.source_password.as_ref()
            } else {
                None
            });
        let tp = get("target", target_ref);
        if let (Some(source_password), Some(target_password)) = (sp, tp) {
            creds.push(Credentials {
                source_login: a
                    .source_login
                    .clone()
                    .unwrap_or_else(|| a.copy_source_address().to_owned()),
                source_password,
                target_login: a.target_login.clone().unwrap_or_else(|| a.address.clone()),
                target_password,
            });
        }
    }
    if !problems.is_empty() {
        return Err(ExecError::Secrets {
            count: problems.len(),
            list: problems.join("\n"),
        });
    }
    Ok(creds)
}

/// Fingerprints of every step: its kind, its account's definition and its dependencies'.
pub(crate) fn fingerprints(plan: &Plan, graph: &StepGraph) -> Vec<String> {
    let mut out = vec![String::new(); graph.len()];
    let order = toposort(&graph.graph, None).unwrap_or_default();
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
fn account_definition(plan: &Plan, a: &Account) -> String {
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// What a step task returns.
#[derive(Debug)]
enum StepResult {
    Done { summary: String, output: String },
    Failed(String),
    Interrupted,
}

/// Run the plan. Step failures are in the summary; errors here mean nothing ran.
pub async fn apply(
    plan: Plan,
    options: &ApplyOptions,
    printer: Arc<Printer>,
) -> Result<RunSummary, ExecError> {
    let credentials = resolve_credentials(&plan)?;
    let graph = Arc::new(StepGraph::build(&plan));
    let ovh_side = ovh_preflight(&plan, options, &credentials, &printer).await?;
    let fps = fingerprints(&plan, &graph);
    let pid = std::process::id();
    let host = gethostname::gethostname().to_string_lossy().into_owned();

    let store = match options.mode {
        RunMode::Real => {
            let s = super::store::open(&options.state_path, &plan.name)?;
            s.lock(&host, pid, options.break_lock)?;
            Some(s)
        }
        RunMode::DryRun => super::store::open_read_only(&options.state_path, &plan.name)?,
    };
    if let Some(s) = store.as_ref().filter(|_| options.mode == RunMode::Real) {
        // The plan as a whole: a changed plan is visible in `status --format json`.
        let mut h = Sha256::new();
        for fp in &fps {
            h.update(fp);
        }
        s.set_meta("plan_fingerprint", &hex(&h.finalize()[..12]))?;
        s.set_meta("plan_name", &plan.name)?;
    }
    let store: Option<Arc<dyn StateStore>> = store.map(Arc::from);
    let dry = options.mode == RunMode::DryRun;
    let state_display = options.state_path.display().to_string();
    printer.event(&Event::Started {
        plan: &plan.name,
        steps: graph.len(),
        dry_run: dry,
        state: &state_display,
    });

    let stop = Arc::new(AtomicBool::new(false));
    let signals = tokio::spawn(watch_interrupts(Arc::clone(&stop), Arc::clone(&printer)));
    let keys: Vec<String> = graph
        .graph
        .node_indices()
        .map(|id| step_key(&plan, &graph, id))
        .collect();
    let caps = server_caps(&plan, options.per_server);
    let shared = Arc::new(Shared {
        plan,
        credentials,
        store: store.clone(),
        printer: Arc::clone(&printer),
        stop: Arc::clone(&stop),
        state_failed: AtomicBool::new(false),
        mode: options.mode,
        servers: Mutex::new(HashMap::new()),
        caps,
        per_server: options.per_server.unwrap_or(DEFAULT_PER_SERVER).max(2),
        connections: options.connections.max(1),
        ovh: ovh_side,
        verified: Mutex::new(HashMap::new()),
        size_refusals: copy::SizeRefusals::default(),
        copied: 0.into(),
        copied_bytes: 0.into(),
    });

    let mut summary = RunSummary::default();
    let mut queue = ReadyQueue::new(&graph);
    let mut running: JoinSet<(StepId, StepResult, Duration)> = JoinSet::new();
    // Whether the write went through (or there is nothing to write to).
    let with_store = |f: &dyn Fn(&dyn StateStore) -> Result<(), StateError>| -> bool {
        if let (Some(s), false) = (&store, dry)
            && let Err(e) = f(s.as_ref())
        {
            shared.state_failed.store(true, Ordering::SeqCst);
            shared.stop.store(true, Ordering::SeqCst);
            printer.event(&Event::StepFailed {
                key: "state",
                error: &format!("{e}; the run stops"),
            });
            return false;
        }
        true
    };

    loop {
        while running.len() < options.parallelism.max(1) && !stop.load(Ordering::SeqCst) {
            let Some(id) = queue.next_ready() else { break };
            let key = &keys[id.index()];
            let next = graph.step(id).clone();
            let account = next
                .subject
                .account()
                .map(|i| shared.plan.accounts[i].address.clone());
            let mut fp = fps[id.index()].clone();
            if next.kind == StepKind::Verify
                && let Subject::Account(i) = next.subject
            {
                fp = format!(
                    "{fp}:{}",
                    progress_mark(&shared, &shared.plan.accounts[i].address)
                );
            }
            let previous = match &store {
                Some(s) => s.step(key).ok().flatten(),
                None => None,
            };
            let why = match &previous {
                Some(p) if p.fingerprint != fp && p.status == StepStatus::Done => {
                    Some("changed since the last run")
                }
                Some(p)
                    if p.status == StepStatus::Failed
                        && p.fingerprint == fp
                        && !options.retry_failed =>
                {
                    let reason = format!(
                        "failed in an earlier run ({}); use --retry-failed to try again",
                        p.error.as_deref().unwrap_or("no reason recorded")
                    );
                    printer.event(&Event::StepFailed {
                        key,
                        error: &reason,
                    });
                    summary.failed += 1;
                    skip_dependents(
                        &mut queue,
                        id,
                        key,
                        &keys,
                        &graph,
                        &fps,
                        &shared,
                        &mut summary,
                        &with_store,
                    );
                    continue;
                }
                Some(p) if p.status == StepStatus::Failed => Some("retrying a failed step"),
                Some(p)
                    if p.status == StepStatus::Running || p.status == StepStatus::Interrupted =>
                {
                    Some("resuming an interrupted step")
                }
                _ => None,
            };
            let unchanged = previous
                .as_ref()
                .is_some_and(|p| p.status == StepStatus::Done && p.fingerprint == fp);
            if unchanged && next.kind != StepKind::CopyMail {
                let why = if next.kind == StepKind::Verify {
                    "verified, nothing copied since"
                } else {
                    "done, unchanged"
                };
                printer.event(&Event::StepUnchanged { key, why });
                summary.done += 1;
                queue.finish(id);
                continue;
            }
            if next.kind == StepKind::WaveGate {
                with_store(&|s| {
                    s.step_started(key, None, next.kind, &fp)?;
                    s.step_finished(key, StepStatus::Done, Some(0), None, None)
                });
                summary.done += 1;
                queue.finish(id);
                continue;
            }
            // A step whose start cannot be recorded does not start.
            if !with_store(&|s| s.step_started(key, account.as_deref(), next.kind, &fp)) {
                continue;
            }
            printer.event(&Event::StepStarted { key, why });
            let shared = Arc::clone(&shared);
            let key = key.clone();
            running.spawn(async move {
                let started = Instant::now();
                let result = run_step(&shared, &key, next.kind, &next.subject).await;
                (id, result, started.elapsed())
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (id, result, elapsed) = match joined {
            Ok(r) => r,
            Err(e) => {
                // A panicking step is a bug; the others go on.
                printer.event(&Event::StepFailed {
                    key: "internal",
                    error: &e.to_string(),
                });
                summary.failed += 1;
                continue;
            }
        };
        let key = &keys[id.index()];
        let ms = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
        match result {
            StepResult::Done {
                summary: text,
                output,
            } => {
                with_store(&|s| {
                    s.step_finished(key, StepStatus::Done, Some(ms), Some(&output), None)
                });
                printer.event(&Event::StepDone {
                    key,
                    summary: &text,
                    ms: u64::try_from(ms).unwrap_or(0),
                });
                summary.done += 1;
                queue.finish(id);
            }
            StepResult::Failed(error) => {
                with_store(&|s| {
                    s.step_finished(key, StepStatus::Failed, Some(ms), None, Some(&error))
                });
                printer.event(&Event::StepFailed { key, error: &error });
                summary.failed += 1;
                skip_dependents(
                    &mut queue,
                    id,
                    key,
                    &keys,
                    &graph,
                    &fps,
                    &shared,
                    &mut summary,
                    &with_store,
                );
            }
            StepResult::Interrupted => {
                with_store(&|s| {
                    s.step_finished(key, StepStatus::Interrupted, Some(ms), None, None)
                });
                printer.event(&Event::StepInterrupted { key });
            }
        }
    }

    let state_failed = shared.state_failed.load(Ordering::SeqCst);
    summary.interrupted = stop.load(Ordering::SeqCst) && !state_failed;
    summary.failed += usize::from(state_failed);
    summary.messages = shared.copied.load(Ordering::SeqCst);
    summary.bytes = shared.copied_bytes.load(Ordering::SeqCst);
    signals.abort();
    if let (Some(s), false) = (&store, dry) {
        let _ = s.set_meta("last_run", &super::store::timestamp(super::store::now()));
        let _ = s.unlock(pid);
    }
    printer.event(&Event::Finished {
        done: summary.done,
        failed: summary.failed,
        skipped: summary.skipped,
        interrupted: summary.interrupted,
        messages: summary.messages,
        bytes: summary.bytes,
    });
    Ok(summary)
}

/// Runs a write on the state store (when the run writes one).
type WithStore<'a> = &'a dyn Fn(&dyn Fn(&dyn StateStore) -> Result<(), StateError>) -> bool;

/// Mark and report everything that depends on a failed step.
#[allow(clippy::too_many_arguments)]
fn skip_dependents(
    queue: &mut ReadyQueue<'_>,
    failed: StepId,
    failed_key: &str,
    keys: &[String],
    graph: &StepGraph,
    fps: &[String],
    shared: &Shared,
    summary: &mut RunSummary,
    with_store: WithStore<'_>,
) {
    let because = format!("{failed_key} failed");
    for s in queue.fail(failed) {
        let key = &keys[s.index()];
        let step = graph.step(s);
        let account = step
            .subject
            .account()
            .map(|i| shared.plan.accounts[i].address.as_str());
        with_store(&|st| st.step_skipped(key, account, step.kind, &fps[s.index()], &because));
        shared.printer.event(&Event::StepSkipped {
            key,
            because: &because,
        });
        summary.skipped += 1;
    }
}

/// The copy progress of an account as a short digest: verification is due again when it moves.
fn progress_mark(shared: &Shared, account: &str) -> String {
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

/// First interrupt: stop at safe points. Second: exit at once (130); the store stays consistent
/// because every write is a transaction.
async fn watch_interrupts(stop: Arc<AtomicBool>, printer: Arc<Printer>) {
    let mut count = 0;
    loop {
        interrupted().await;
        count += 1;
        if count == 1 {
            stop.store(true, Ordering::SeqCst);
            printer.event(&Event::Interrupting);
        } else {
            // Nothing stale stays on the terminal: the bars are taken down first.
            printer.clear();
            std::process::exit(130);
        }
    }
}

#[cfg(unix)]
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn interrupted() {
    let _ = tokio::signal::ctrl_c().await;
}

/// The state store seen by the copy of one account.
struct StoreLedger<'a> {
    store: Option<&'a dyn StateStore>,
    account: &'a str,
    /// Where this account's mail goes now (see [`route`]): a folder's record is only trusted
    /// for the route and target folder it was recorded on.
    route: String,
    mode: RunMode,
    /// The run's [`Shared`], told when a write fails (the run stops).
    shared: &'a Shared,
}

/// The mailboxes an account's copy reads and writes, as the plan says today: the source login
/// and server, the target login and server. An edit of any of them between runs makes every
/// folder's record of the old route untrustworthy for the new one.
fn route(c: &Credentials, source: &ImapServer, target: &ImapServer) -> String {
    format!(
        "{} at {} -> {} at {}",
        c.source_login,
        server_name(source),
        c.target_login,
        server_name(target)
    )
}

impl<'a> StoreLedger<'a> {
    /// The ledger of account `i` of the run, copying from `source` to `target`.
    fn of(shared: &'a Shared, i: usize, source: &ImapServer, target: &ImapServer) -> Self {
        StoreLedger {
            store: shared.store.as_deref(),
            account: &shared.plan.accounts[i].address,
            route: route(&shared.credentials[i], source, target),
            mode: shared.mode,
            shared,
        }
    }
}

impl StoreLedger<'_> {
    fn with<T>(
        &self,
        f: impl FnOnce(&dyn StateStore) -> Result<T, StateError>,
    ) -> Result<T, String> {
        let store = self.store.ok_or("no state store")?;
        f(store).map_err(|e| e.to_string())
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&dyn StateStore) -> Result<T, StateError>,
    ) -> Result<T, String> {
        if self.mode == RunMode::DryRun {
            return Err("a dry run must not write to the state store".to_owned());
        }
        let written = self.with(f);
        if written.is_err() {
            self.shared.state_failed.store(true, Ordering::SeqCst);
            self.shared.stop.store(true, Ordering::SeqCst);
        }
        written
    }
}

impl Ledger for StoreLedger<'_> {
    fn folder(&self, source: &str, target: &str) -> Result<Option<FolderRecord>, String> {
        if self.store.is_none() {
            return Ok(None);
        }
        self.with(|s| s.folder(self.account, source, target, &self.route))
    }
    fn begin_batch(&self, source: &str, target: &str, uidvalidity: u32) -> Result<(), String> {
        self.write(|s| s.begin_batch(self.account, source, target, &self.route, uidvalidity))
    }
    fn end_batch(
        &self,
        source: &str,
        target: &str,
        r: FolderRecord,
        c: &FolderCounts,
    ) -> Result<(), String> {
        self.write(|s| s.end_batch(self.account, source, target, &self.route, r, c))
    }
    fn issue(&self, source: &str, uid: u32, kind: IssueKind, detail: &str) -> Result<(), String> {
        self.write(|s| s.issue(self.account, source, uid, kind, detail))
    }
    fn clear_issues(&self, source: &str) -> Result<(), String> {
        self.write(|s| s.clear_issues(self.account, source))
    }
}

async fn run_step(shared: &Shared, key: &str, kind: StepKind, subject: &Subject) -> StepResult {
    let account = subject.account();
    let mut attempt = 0;
    // An OVH step may wait minutes (tasks, retries of an API that does not answer): say so.
    let waits_for = format!("{key} (the OVH API and its tasks)");
    let printer = &shared.printer;
    loop {
        let result = match (kind, account) {
            (StepKind::AddDomain | StepKind::CheckDns, _) => {
                let step = ovh_step(shared, kind, subject);
                announced(printer, &waits_for, step).await
            }
            (StepKind::CopyMail | StepKind::Verify, Some(i)) => imap_step(shared, kind, i).await,
            (_, Some(_)) => announced(printer, &waits_for, ovh_step(shared, kind, subject)).await,
            (other, None) => Ok(StepResult::Failed(format!(
                "{} has no account to work on",
                other.name()
            ))),
        };
        match result {
            Ok(r) => return r,
            Err(StepError::Interrupted) => return StepResult::Interrupted,
            Err(StepError::Imap(e))
                if (e.is_retryable() || fresh_login(shared, kind, account, &e))
                    && attempt < MAX_RETRIES =>
            {
                attempt += 1;
                let wait = e.backoff.unwrap_or_else(|| backoff(attempt));
                shared.printer.event(&Event::Retry {
                    key,
                    attempt,
                    wait,
                    error: &e.to_string(),
                });
                if let (Some(store), RunMode::Real) = (&shared.store, shared.mode) {
                    let _ = store.step_retried(key);
                }
                if !sleep_unless_stopped(wait, &shared.stop).await {
                    return StepResult::Interrupted;
                }
            }
            Err(StepError::Imap(e)) => return StepResult::Failed(e.to_string()),
            Err(StepError::Other(e)) => return StepResult::Failed(e),
        }
    }
}

/// `copy-mail` and `verify`: IMAP work.
async fn imap_step(shared: &Shared, kind: StepKind, i: usize) -> Result<StepResult, StepError> {
    let a = &shared.plan.accounts[i];
    let (Some(source), Some(target)) = (server(shared, &a.from), server(shared, &a.to)) else {
        return Ok(StepResult::Failed(
            "the plan gives no IMAP server (`imap:`) for this account's platforms".to_owned(),
        ));
    };
    let dry = shared.mode == RunMode::DryRun;
    match (kind, a.flow) {
        // The OVH flows' accounts exist on IMAP only once the steps before have run.
        (StepKind::CopyMail, flow) if dry && flow != Flow::ImapToImap => Ok(done(
            format!(
                "would copy mail over IMAP from {} to {} once both are ready",
                a.copy_source_address(),
                a.address
            ),
            "{}".to_owned(),
        )),
        (StepKind::Verify, _) if dry => Ok(done(
            "would verify every source message on the target".to_owned(),
            "{}".to_owned(),
        )),
        (StepKind::Verify, Flow::LegacyToExchange) => verify_migrated(shared, i, target).await,
        (StepKind::CopyMail, _) => copy_step(shared, i, source, target).await,
        _ => verify_step(shared, i, source, target).await,
    }
}

fn done(summary: String, output: String) -> StepResult {
    StepResult::Done { summary, output }
}

/// The OVH API steps.
async fn ovh_step(
    shared: &Shared,
    kind: StepKind,
    subject: &Subject,
) -> Result<StepResult, StepError> {
    let Some(ovh_side) = &shared.ovh else {
        return Ok(StepResult::Failed("no OVH API client".to_owned()));
    };
    let (plan, mode, stop) = (&shared.plan, shared.mode, shared.stop.as_ref());
    let account = subject.account().map(|i| (i, &plan.accounts[i]));
    let result = match (kind, subject, account) {
        (StepKind::AddDomain, Subject::Domain(d), _) => {
            ovh::add_domain(ovh_side, plan, d, mode, stop).await
        }
        (StepKind::CheckDns, Subject::Domain(d), _) => {
            ovh::check_dns(ovh_side, plan, d, mode).await
        }
        (StepKind::RenameSource, _, Some((_, a))) => {
            ovh::rename_source(ovh_side, plan, a, mode, stop).await
        }
        (StepKind::ConfigureTarget, _, Some((i, a))) => {
            let password = &shared.credentials[i].target_password;
            ovh::configure_target(ovh_side, plan, a, password, mode, stop).await
        }
        (StepKind::Preflight, _, Some((_, a))) => ovh::preflight(ovh_side, plan, a, stop).await,
        (StepKind::MigrateLegacy, _, Some((i, a))) => {
            let counts = if mode == RunMode::Real {
                source_counts(shared, i).await
            } else {
                None
            };
            // Kept apart from the step's output: a re-run after the migration (the source is
            // gone then) must not lose what the source held.
            if let (Some(counts), Some(store)) = (&counts, &shared.store) {
                let _ = store.keep_source_counts(&a.address, counts);
            }
            let password = &shared.credentials[i].source_password;
            ovh::migrate_legacy(ovh_side, plan, a, password, counts, mode, stop).await
        }
        (StepKind::ResetSource, _, Some((_, a))) => {
            ovh::reset_source(ovh_side, plan, a, mode, stop).await
        }
        (other, _, _) => {
            return Ok(StepResult::Failed(format!(
                "{} cannot run here",
                other.name()
            )));
        }
    };
    match result {
        Ok(d) => Ok(done(d.summary, d.output.to_string())),
        Err(ovh::Failure::Interrupted) => Err(StepError::Interrupted),
        Err(ovh::Failure::Ovh(e)) => Ok(StepResult::Failed(e.to_string())),
        Err(ovh::Failure::Blocked(why)) => Ok(StepResult::Failed(why)),
    }
}

/// Messages per folder of a historical MX Plan mailbox, read over IMAP before OVH migrates it
/// (the source is gone afterwards); `None` when the plan gives no IMAP server for it.
async fn source_counts(
    shared: &Shared,
    account: usize,
) -> Option<std::collections::BTreeMap<String, u32>> {
    let a = &shared.plan.accounts[account];
    let source = server(shared, &a.from)?;
    let c = &shared.credentials[account];
    let mut s = imap::connect(source, &c.source_login, &c.source_password)
        .await
        .ok()?;
    let name = server_name(source);
    let folders = imap::folders::list(&mut s, &name).await.ok()?;
    let mut counts = std::collections::BTreeMap::new();
    for f in folders.iter().filter(|f| f.selectable) {
        let n = s.status(&f.wire, "(MESSAGES)").await.ok()?.exists;
        counts.insert(f.path.clone(), n);
    }
    let _ = s.logout().await;
    Some(counts)
}

/// `verify` of a historical MX Plan account: the Exchange mailbox holds at least what the
/// source held, folder by folder (counts read before the migration).
async fn verify_migrated(
    shared: &Shared,
    account: usize,
    target: &ImapServer,
) -> Result<StepResult, StepError> {
    let a = &shared.plan.accounts[account];
    let before = shared
        .store
        .as_ref()
        .and_then(|s| s.source_counts(&a.address).ok().flatten());
    let c = &shared.credentials[account];
    let _slot = slot(shared, target).await?;
    let mut t = imap::connect(target, &c.target_login, &c.target_password).await?;
    let name = server_name(target);
    let folders = imap::folders::list(&mut t, &name).await?;
    let mut after = std::collections::BTreeMap::new();
    let layout: Vec<(String, Option<imap::folders::SpecialUse>)> = folders
        .iter()
        .filter(|f| f.selectable)
        .map(|f| (f.path.clone(), f.special))
        .collect();
    for f in folders.iter().filter(|f| f.selectable) {
        let n = t
            .status(&f.wire, "(MESSAGES)")
            .await
            .map_err(|e| ImapError::from_imap(&name, format!("counting {}", f.path), e))?
            .exists;
        after.insert(f.path.clone(), n);
    }
    let _ = t.logout().await;
    let total: u32 = after.values().sum();
    let output = serde_json::json!({"before": before, "after": after}).to_string();
    let Some(before) = before else {
        return Ok(done(
            format!(
                "{total} message(s) in {} folder(s) on the target (no source counts to compare:                  the plan gives no IMAP server for the source)",
                after.len()
            ),
            output,
        ));
    };
    // OVH's migration renames folders on the way (`Sent` → `Sent Items`, …): each source
    // folder is compared with the folder it lands in.
    let short: Vec<String> = super::legacy_layout::expected_counts(&before, &layout)
        .into_iter()
        .filter_map(|(target, (sources, n))| {
            let have = target.and_then(|t| after.get(t)).copied().unwrap_or(0);
            (have < n).then(|| {
                format!(
                    "{} → {}: {n} before, {have} after",
                    sources.join(" + "),
                    target.unwrap_or("no such folder")
                )
            })
        })
        .collect();
    if short.is_empty() {
        Ok(done(
            format!(
                "all {} message(s) of {} folder(s) are on the target",
                before.values().sum::<u32>(),
                before.len()
            ),
            output,
        ))
    } else {
        Ok(StepResult::Failed(format!(
            "the migrated mailbox holds fewer messages than the source did: {}",
            short.join("; ")
        )))
    }
}

/// A login refused right after OVH renamed or configured the account: the mail servers take a
/// moment to know the new name or password, so this is retried like a network error.
fn fresh_login(shared: &Shared, kind: StepKind, account: Option<usize>, e: &ImapError) -> bool {
    e.kind == crate::providers::imap::ImapErrorKind::Auth
        && matches!(kind, StepKind::CopyMail | StepKind::Verify)
        && account.is_some_and(|i| shared.plan.accounts[i].flow != Flow::ImapToImap)
}

/// Exponential backoff with jitter: about 1, 2, 4, 8, 16 s, at most 60 s.
fn backoff(attempt: u32) -> Duration {
    let base = 1000u64 << attempt.saturating_sub(1).min(6);
    let jitter = fastrand::u64(0..=base / 2);
    Duration::from_millis((base / 2 + jitter + base / 4).min(60_000))
}

async fn sleep_unless_stopped(wait: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + wait;
    while Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100).min(end - Instant::now())).await;
    }
    !stop.load(Ordering::SeqCst)
}

#[derive(Debug)]
enum StepError {
    Imap(ImapError),
    Interrupted,
    Other(String),
}

impl From<ImapError> for StepError {
    fn from(e: ImapError) -> Self {
        StepError::Imap(e)
    }
}

impl From<CopyError> for StepError {
    fn from(e: CopyError) -> Self {
        match e {
            CopyError::Imap(e) => StepError::Imap(e),
            CopyError::Interrupted => StepError::Interrupted,
            CopyError::Ledger(m) => StepError::Other(format!("state store: {m}")),
        }
    }
}

fn server<'a>(shared: &'a Shared, platform: &str) -> Option<&'a ImapServer> {
    shared.plan.platforms.get(platform)?.imap.as_ref()
}

/// A connection slot on a server, held for the step's duration.
async fn slot(shared: &Shared, server: &ImapServer) -> Result<OwnedSemaphorePermit, StepError> {
    server_semaphore(shared, server)?
        .acquire_owned()
        .await
        .map_err(|e| StepError::Other(e.to_string()))
}

fn server_semaphore(shared: &Shared, server: &ImapServer) -> Result<Arc<Semaphore>, StepError> {
    let mut map = shared
        .servers
        .lock()
        .map_err(|e| StepError::Other(e.to_string()))?;
    let name = server_name(server);
    let cap = shared.caps.get(&name).copied().unwrap_or(shared.per_server);
    Ok(Arc::clone(
        map.entry(name)
            .or_insert_with(|| Arc::new(Semaphore::new(cap))),
    ))
}

/// Connections per server when neither the plan nor the command line gives a cap.
pub const DEFAULT_PER_SERVER: usize = 8;

/// Each IMAP server's connection cap, by [`server_name`]: the smallest of the `max-connections`
/// the plan's platforms give it and the command line's `--max-connections-per-server` (the
/// operator's limit for this run), or [`DEFAULT_PER_SERVER`] when neither says. Never under 2:
/// a copy holds a connection on each side at once, and both may be on one server.
fn server_caps(plan: &Plan, flag: Option<usize>) -> HashMap<String, usize> {
    let mut declared: HashMap<String, Option<usize>> = HashMap::new();
    for server in plan.platforms.values().filter_map(|p| p.imap.as_ref()) {
        let own = server.max_connections.map(usize::from);
        declared
            .entry(server_name(server))
            .and_modify(|d| *d = [*d, own].into_iter().flatten().min())
            .or_insert(own);
    }
    declared
        .into_iter()
        .map(|(name, own)| {
            let cap = [own, flag].into_iter().flatten().min();
            (name, cap.unwrap_or(DEFAULT_PER_SERVER).max(2))
        })
        .collect()
}

/// A source and a target slot, without deadlock: both at once when it is the same server, else
/// in the servers' name order (so two steps never each hold what the other waits for).
async fn slot_pair(
    shared: &Shared,
    source: &ImapServer,
    target: &ImapServer,
) -> Result<Vec<OwnedSemaphorePermit>, StepError> {
    let fail = |e: tokio::sync::AcquireError| StepError::Other(e.to_string());
    let (s_name, t_name) = (server_name(source), server_name(target));
    if s_name == t_name {
        let both = server_semaphore(shared, source)?
            .acquire_many_owned(2)
            .await
            .map_err(fail)?;
        return Ok(vec![both]);
    }
    let (first, second) = if s_name < t_name {
        (source, target)
    } else {
        (target, source)
    };
    let a = slot(shared, first).await?;
    let b = slot(shared, second).await?;
    Ok(vec![a, b])
}

async fn sessions(
    shared: &Shared,
    i: usize,
    source: &ImapServer,
    target: &ImapServer,
) -> Result<(imap::Session, imap::Session, Vec<OwnedSemaphorePermit>), StepError> {
    let c = &shared.credentials[i];
    let slots = slot_pair(shared, source, target).await?;
    let (s, t) = tokio::join!(
        imap::connect(source, &c.source_login, &c.source_password),
        imap::connect(target, &c.target_login, &c.target_password)
    );
    Ok((s?, t?, slots))
}

/// Up to `n` more connection pairs for an account, only on free server slots (never waiting:
/// the account's first pair is enough to make progress, and other accounts need slots too).
async fn extra_sessions(
    shared: &Shared,
    account: usize,
    source: &ImapServer,
    target: &ImapServer,
    count: usize,
) -> Vec<(imap::Session, imap::Session, [OwnedSemaphorePermit; 2])> {
    let c = &shared.credentials[account];
    let mut slots = Vec::new();
    for _ in 0..count {
        let (Some(s_slot), Some(t_slot)) = (try_slot(shared, source), try_slot(shared, target))
        else {
            break;
        };
        slots.push([s_slot, t_slot]);
    }
    // All pairs log in at once; one that fails is simply not used.
    let logins = slots.into_iter().map(|slots| async move {
        let (s, t) = tokio::join!(
            imap::connect(source, &c.source_login, &c.source_password),
            imap::connect(target, &c.target_login, &c.target_password)
        );
        match (s, t) {
            (Ok(s), Ok(t)) => Some((s, t, slots)),
            _ => None,
        }
    });
    futures::future::join_all(logins)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn try_slot(shared: &Shared, server: &ImapServer) -> Option<OwnedSemaphorePermit> {
    server_semaphore(shared, server)
        .ok()?
        .try_acquire_owned()
        .ok()
}

async fn copy_step(
    shared: &Shared,
    i: usize,
    source: &ImapServer,
    target: &ImapServer,
) -> Result<StepResult, StepError> {
    let a = &shared.plan.accounts[i];
    let (mut s, mut t, _slots) = sessions(shared, i, source, target).await?;
    let ledger = StoreLedger::of(shared, i, source, target);
    let printer = &shared.printer;
    let address = a.address.as_str();
    let dry = shared.mode == RunMode::DryRun;
    let observer = move |e: CopyEvent<'_>| match e {
        CopyEvent::Folder {
            source,
            target,
            counts,
        } => {
            // Every folder, also those with nothing to send: the printer corrects its estimate.
            printer.event(&Event::Folder {
                account: address,
                source,
                target,
                to_copy: counts.to_copy,
                already: counts.already,
                skipped: counts.skipped,
                dry_run: dry,
            });
        }
        CopyEvent::Copied { messages, bytes } => {
            shared.copied.fetch_add(messages, Ordering::SeqCst);
            shared.copied_bytes.fetch_add(bytes, Ordering::SeqCst);
            printer.event(&Event::Copied {
                account: address,
                messages,
                bytes,
            });
        }
    };
    let (ss, ts) = (server_name(source), server_name(target));
    let mut ctx = CopyContext {
        source: &mut s,
        source_server: &ss,
        target: &mut t,
        target_server: &ts,
        options: &a.copy,
        ledger: &ledger,
        mode: shared.mode,
        observer: &observer,
        stop: &shared.stop,
        refusals: &shared.size_refusals,
    };
    // Both folder lists and every source folder's STATUS first: they say what this pass has
    // to carry, and so whether more connection pairs pay off.
    let mut survey = copy::survey(&mut ctx).await?;
    if !dry {
        // What the pass is likely to carry, before anything is sent: bars and ETAs start right.
        let estimates: Vec<(String, u64)> = survey
            .estimates(&ledger)
            .into_iter()
            .map(|(folder, n)| (folder.to_owned(), n))
            .collect();
        printer.event(&Event::Estimated {
            account: address,
            folders: &estimates,
        });
    }
    let worth_more = shared.mode == RunMode::Real
        && extra_pairs_pay_off(
            shared.connections,
            survey.work(&ledger),
            survey.flow().far(),
        );
    // The extra pairs log in while the first pair copies; they take what is left.
    let more = worth_more.then_some(async {
        extra_sessions(shared, i, source, target, shared.connections - 1)
            .await
            .into_iter()
            .map(|(source, target, hold)| copy::Pair {
                source,
                target,
                hold,
            })
            .collect()
    });
    let outcomes = copy::copy_account(&mut ctx, &mut survey, more).await?;
    let copied: u64 = outcomes.iter().map(|o| o.counts.copied).sum();
    let verified_before = shared.store.as_ref().is_some_and(|st| {
        st.step(&StepKind::Verify.key(&a.address))
            .ok()
            .flatten()
            .is_some_and(|r| r.status == StepStatus::Done)
    });
    if !dry && (copied > 0 || !verified_before) {
        // The verify step comes next: check now, on these connections, and let it use the
        // result instead of logging in again (with many small accounts, logins are the cost).
        let (ss, ts) = (server_name(source), server_name(target));
        if let Ok(checks) =
            copy::verify_folders(&mut s, &ss, &mut t, &ts, &survey.mappings, &a.copy, &ledger).await
            && let Ok(mut cache) = shared.verified.lock()
        {
            cache.insert(i, checks);
        }
    }
    let _ = s.logout().await;
    let _ = t.logout().await;
    let total = outcomes.iter().fold(FolderCounts::default(), |mut acc, o| {
        acc.found += o.counts.found;
        acc.to_copy += o.counts.to_copy;
        acc.copied += o.counts.copied;
        acc.already += o.counts.already;
        acc.skipped += o.counts.skipped;
        acc.failed += o.counts.failed;
        acc.bytes += o.counts.bytes;
        acc
    });
    let summary = if dry {
        format!(
            "would copy {} message(s) in {} folder(s); {} already there, {} skipped",
            total.to_copy,
            outcomes.len(),
            total.already,
            total.skipped
        )
    } else {
        format!(
            "{} copied ({}), {} already there, {} skipped, {} refused, {} folder(s)",
            total.copied,
            human_bytes(total.bytes),
            total.already,
            total.skipped,
            total.failed,
            outcomes.len()
        ) + &not_created(&outcomes)
    };
    let output = serde_json::json!({ "folders": outcomes, "total": total, "flow": survey.flow() })
        .to_string();
    Ok(StepResult::Done { summary, output })
}

/// The folders the target refused to create, for a copy's summary (the report has why).
fn not_created(outcomes: &[copy::FolderOutcome]) -> String {
    let refused: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.error.is_some())
        .map(|o| o.source.as_str())
        .collect();
    if refused.is_empty() {
        String::new()
    } else {
        format!(
            "; the target refused to create {} folder(s), not copied: {}",
            refused.len(),
            refused.join(", ")
        )
    }
}

async fn verify_step(
    shared: &Shared,
    i: usize,
    source: &ImapServer,
    target: &ImapServer,
) -> Result<StepResult, StepError> {
    let a = &shared.plan.accounts[i];
    // Checked by copy-mail on its own connections just before, when it could.
    let cached = shared.verified.lock().ok().and_then(|mut c| c.remove(&i));
    let checks = match cached {
        Some(checks) => checks,
        None => {
            let (mut s, mut t, _slots) = sessions(shared, i, source, target).await?;
            let (ss, ts) = (server_name(source), server_name(target));
            let ledger = StoreLedger::of(shared, i, source, target);
            let checks = copy::verify_account(&mut s, &ss, &mut t, &ts, &a.copy, &ledger).await?;
            let _ = s.logout().await;
            let _ = t.logout().await;
            checks
        }
    };
    let missing: u64 = checks.iter().map(|c| c.missing_count).sum();
    let output = serde_json::json!({ "folders": checks, "missing": missing }).to_string();
    match verify_verdict(&checks, shared.plan.resets_source(a)) {
        Ok(summary) => Ok(StepResult::Done { summary, output }),
        Err(failure) => {
            if let Some(store) = &shared.store
                && shared.mode == RunMode::Real
            {
                let key = StepKind::Verify.key(&a.address);
                let _ = store.step_finished(&key, StepStatus::Failed, None, Some(&output), None);
            }
            Ok(StepResult::Failed(failure))
        }
    }
}

/// What a verification says: its summary, or why it fails. A message the copy was to carry and
/// that is not on the target fails it. Mail that arrived after the copy read its folder is only
/// counted (the next `apply` copies it), unless the source is to be reset next (`resets_source`):
/// that would destroy it, so it fails too and the next `apply` copies it first.
fn verify_verdict(checks: &[copy::FolderCheck], resets_source: bool) -> Result<String, String> {
    use std::fmt::Write as _;
    let sum = |f: fn(&copy::FolderCheck) -> u64| checks.iter().map(f).sum::<u64>();
    let (missing, messages) = (sum(|c| c.missing_count), sum(|c| c.source_messages));
    let (skipped, resized, arrived) = (sum(|c| c.skipped), sum(|c| c.resized), sum(|c| c.arrived));
    if missing > 0 {
        let detail: Vec<String> = checks
            .iter()
            .filter(|c| c.missing_count > 0)
            .map(|c| {
                format!(
                    "{} ({} missing, e.g. {})",
                    c.source,
                    c.missing_count,
                    c.missing.first().map_or("", String::as_str)
                )
            })
            .collect();
        return Err(format!(
            "{missing} source message(s) missing on the target: {}",
            detail.join("; ")
        ));
    }
    if arrived > 0 && resets_source {
        return Err(format!(
            "{arrived} message(s) arrived in the source after the copy read it; run apply again \
             to copy them before the source is reset"
        ));
    }
    let mut summary = format!(
        "all {} message(s) of {} folder(s) are on the target",
        messages - skipped,
        checks.len()
    );
    if skipped > 0 {
        let _ = write!(summary, " ({skipped} left out on purpose)");
    }
    if resized > 0 {
        let _ = write!(
            summary,
            "; {resized} of them at another size than the source's (the target re-renders \
             messages or estimates sizes, as Exchange does)"
        );
    }
    if arrived > 0 {
        let _ = write!(
            summary,
            "; {arrived} more arrived in the source after the copy read it (the next apply \
             copies them)"
        );
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_pairs_for_several_busy_folders_or_a_large_one_of_enough_mail_or_far_away() {
        let work = |folders, messages, largest| copy::Work {
            folders,
            messages,
            largest,
        };
        assert!(extra_pairs_pay_off(4, work(6, 10_000, 4_000), false));
        assert!(
            !extra_pairs_pay_off(4, work(6, 100, 40), false),
            "a small near pass"
        );
        assert!(
            extra_pairs_pay_off(4, work(6, 100, 40), true),
            "a small pass far away"
        );
        assert!(
            !extra_pairs_pay_off(4, work(1, 1_999, 1_999), true),
            "one folder too small to share"
        );
        assert!(
            extra_pairs_pay_off(4, work(1, 2_000, 2_000), false),
            "one folder large enough to share"
        );
        assert!(
            !extra_pairs_pay_off(1, work(6, 10_000, 4_000), true),
            "one pair allowed"
        );
    }

    #[test]
    fn mail_that_arrived_after_the_copy_is_counted_unless_the_source_is_reset_next() {
        let check = |missing_count, arrived| copy::FolderCheck {
            source: "INBOX".to_owned(),
            target: "INBOX".to_owned(),
            source_messages: 10,
            target_messages: 10,
            skipped: 0,
            resized: 0,
            arrived,
            missing: (0..missing_count)
                .map(|u| format!("uid {u}: <m> 10"))
                .collect(),
            missing_count,
        };
        assert_eq!(
            verify_verdict(&[check(0, 0)], true).as_deref(),
            Ok("all 10 message(s) of 1 folder(s) are on the target")
        );
        assert_eq!(
            verify_verdict(&[check(0, 3), check(0, 0)], false).as_deref(),
            Ok(
                "all 20 message(s) of 2 folder(s) are on the target; 3 more arrived in the \
                source after the copy read it (the next apply copies them)"
            )
        );
        let reset = verify_verdict(&[check(0, 3)], true).expect_err("the reset would lose them");
        assert!(reset.starts_with("3 message(s) arrived"), "{reset}");
        let missing = verify_verdict(&[check(2, 3)], false).expect_err("missing mail");
        assert!(
            missing.starts_with(
                "2 source message(s) missing on the target: INBOX (2 missing, e.g. uid 0"
            ),
            "{missing}"
        );
    }

    #[test]
    fn each_server_gets_the_smallest_of_its_platforms_caps_and_the_flag() {
        let text = "version: 1
platforms:
  a: { type: imap, imap: { host: one.example, max-connections: 6 } }
  b: { type: imap, imap: { host: one.example, max-connections: 3 } }
  c: { type: imap, imap: { host: two.example } }
  d: { type: imap, imap: { host: three.example, max-connections: 20 } }
";
        let source = crate::plan::source::SourceFile::new("p.yaml", text);
        let (plan, diags) = crate::plan::load(&source, std::path::Path::new("p.yaml"));
        let plan = plan.unwrap_or_else(|| panic!("{diags:?}"));
        let caps = server_caps(&plan, None);
        assert_eq!(caps["one.example:993"], 3, "the smaller of a and b");
        assert_eq!(caps["two.example:993"], DEFAULT_PER_SERVER);
        assert_eq!(
            caps["three.example:993"], 20,
            "the plan may raise the default"
        );
        let caps = server_caps(&plan, Some(4));
        assert_eq!(caps["one.example:993"], 3);
        assert_eq!(caps["two.example:993"], 4);
        assert_eq!(caps["three.example:993"], 4, "the flag lowers every cap");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..=10 {
            let b = backoff(attempt);
            let base = 1000u64 << (attempt - 1).min(6);
            assert!(
                b >= Duration::from_millis((base * 3 / 4).min(60_000)),
                "{attempt}: {b:?}"
            );
            assert!(b <= Duration::from_secs(60));
        }
    }

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
            .graph
            .node_indices()
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
    fn summary_exit_codes() {
        let mut s = RunSummary::default();
        assert_eq!(s.exit_code(), 0);
        s.failed = 1;
        assert_eq!(s.exit_code(), 1);
        s.interrupted = true;
        assert_eq!(s.exit_code(), 130);
    }
}
