//! The runner: drives the step graph with tokio. One coordinator ([`apply`]) owns the
//! ready-queue, the state store and the printer; each step runs as a task
//! (`steps::run_step`) and reports back. Cargo's job queue is the model.
//!
//! - `parallelism` steps run at once; each IMAP server takes at most its cap of connections
//!   (the plan's `max-connections`, the command line's, or [`DEFAULT_PER_SERVER`]);
//!   an account's copy uses up to `connections` pairs, the extra ones only on free slots.
//! - A failed step skips only the steps that depend on it; the others go on.
//! - Resume: a step whose definition and dependencies are unchanged (its fingerprint) and that is
//!   done is not run again; `copy-mail` always runs (an incremental pass that copies only what is
//!   new); `verify` runs again only when the copy's progress moved.
//! - The first interrupt stops new work and lets running copies reach a safe point; the second
//!   exits at once, and so does a run whose IMAP connections move no byte for [`STALLED`] after
//!   the first (servers that stopped answering). Either way the next `apply` resumes.
//! - On `SQLite` one `apply` runs at a time (the run lock). On a `PostgreSQL` state this
//!   `apply` is one worker of a shared run ([`crate::exec::worker`]): no lock; it claims each
//!   ready step before running it, waits for (polls) the steps other workers hold, takes over
//!   those whose lease ran out, and counts the steps that ended elsewhere as ended here.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::exec::Error;
use crate::exec::credentials::{Credentials, resolve_credentials};
use crate::exec::events::{Event, Sink};
use crate::exec::fingerprint::{Dirty, Freshness, fingerprints, freshness, hex, progress_mark};
use crate::exec::ovh;
use crate::exec::slots::Slots;
use crate::exec::step::{Ended, Retrying, Shared, StepOutcome, StepTask, step_key};
use crate::exec::steps::{announced, run_step};
use crate::exec::store::pg::{BlockingPgStore, Claim};
use crate::exec::store::{StateError, StateLocation, StateStore, StepStatus};
use crate::exec::worker::{SharedOvhPace, Worker};
use crate::graph::Subject;
use crate::graph::{ReadyQueue, StepGraph, StepId, StepKind};
use crate::plan::model::{Flow, Plan};
use crate::providers::RunMode;
use crate::providers::imap::{self, copy};

/// How `apply` runs.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Where the state is (`--state`).
    pub state: StateLocation,
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
    /// What a second interrupt does, after the progress bars are taken down: end the process
    /// (the command line exits with its code for an interruption).
    pub on_second_interrupt: fn(),
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

/// The OVH client when the plan has OVH steps, and the run's preflight
/// ([`crate::exec::preflight::check`]): everything that can be checked before the first change.
async fn ovh_preflight(
    plan: &Plan,
    options: &ApplyOptions,
    credentials: &[Credentials],
    printer: &dyn Sink,
    shared: Option<&BlockingPgStore>,
) -> Result<Option<ovh::Ovh>, Error> {
    if plan.accounts.iter().all(|a| a.flow == Flow::ImapToImap) {
        return Ok(None);
    }
    let ovh_side = ovh::Ovh::connect(plan, options.ovh_requests_per_minute)?;
    // A worker of a shared run: the pace holds for all workers together, the preflight's
    // requests included.
    if let Some(pace) = shared.and_then(|s| SharedOvhPace::new(s, options.ovh_requests_per_minute))
    {
        ovh_side.client.share_pace(Arc::new(pace));
    }
    let store = super::store::open_read_only(&options.state, &plan.name)?;
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
        crate::exec::preflight::check(&ovh_side, plan, credentials, &done),
    )
    .await?;
    if !problems.is_empty() {
        return Err(Error::Preflight {
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

/// Run the plan. Step failures are in the summary; errors here mean nothing ran.
pub async fn apply(
    plan: Plan,
    options: &ApplyOptions,
    printer: Arc<dyn Sink>,
) -> Result<RunSummary, Error> {
    let credentials = resolve_credentials(&plan)?;
    let graph = Arc::new(StepGraph::build(&plan));
    // A shared state is opened first: the OVH pace its workers share starts with the preflight.
    let pg = match (options.mode, &options.state) {
        (RunMode::Real, StateLocation::Postgres(target)) => {
            Some(BlockingPgStore::open(target, &plan.name).map_err(StateError::from)?)
        }
        _ => None,
    };
    let ovh_side = ovh_preflight(&plan, options, &credentials, &printer, pg.as_ref()).await?;
    let fps = fingerprints(&plan, &graph);
    let pid = std::process::id();
    let host = gethostname::gethostname().to_string_lossy().into_owned();

    let keys: Vec<String> = graph.ids().map(|id| step_key(&plan, &graph, id)).collect();
    // The plan as a whole: a changed plan is visible in `status --format json`, and the
    // workers of a shared run must all run the same one.
    let plan_fingerprint = {
        let mut h = Sha256::new();
        for fp in &fps {
            h.update(fp);
        }
        hex(&h.finalize()[..12])
    };

    let (store, worker) = match (options.mode, pg) {
        (RunMode::Real, Some(pg)) => {
            // A shared state: this `apply` is one worker of the run; no run lock.
            let steps: BTreeMap<String, String> =
                keys.iter().cloned().zip(fps.iter().cloned()).collect();
            let worker = Worker::join(&pg, &host, pid, &plan_fingerprint, &steps)?;
            (
                Some(Box::new(pg) as Box<dyn StateStore>),
                Some(Arc::new(worker)),
            )
        }
        (RunMode::Real, None) => {
            let s = super::store::open(&options.state, &plan.name)?;
            s.lock(&host, pid, options.break_lock)?;
            s.set_meta("plan_fingerprint", &plan_fingerprint)?;
            s.set_meta("plan_name", &plan.name)?;
            (Some(s), None)
        }
        (RunMode::DryRun, _) => (
            super::store::open_read_only(&options.state, &plan.name)?,
            None,
        ),
    };
    let store: Option<Arc<dyn StateStore>> = store.map(Arc::from);
    let dry = options.mode == RunMode::DryRun;
    let state_display = options.state.to_string();
    printer.event(&Event::Started {
        plan: &plan.name,
        steps: graph.len(),
        dry_run: dry,
        state: &state_display,
    });
    if let Some(w) = &worker {
        printer.event(&Event::Worker {
            worker: w.label(),
            others: w.others,
        });
    }
    let stop = CancellationToken::new();
    let lost = Arc::new(AtomicBool::new(false));
    // The heartbeat and the renewal of this worker's leases, while it runs. A worker that can
    // no longer hold its leases (retired as dead by another, or the database unreachable for
    // two thirds of a lease) stops at a safe point: its steps may be another worker's soon.
    let keeper = worker.clone().map(|w| {
        let (stop, lost) = (stop.clone(), Arc::clone(&lost));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(w.renew_every());
            tick.tick().await;
            let mut renewed = Instant::now();
            loop {
                tick.tick().await;
                let held = match w.keep_alive() {
                    Ok(true) => {
                        renewed = Instant::now();
                        true
                    }
                    Ok(false) => false,
                    Err(_) => renewed.elapsed() < w.renew_every() * 2,
                };
                if !held {
                    lost.store(true, Ordering::SeqCst);
                    stop.cancel();
                    break;
                }
            }
        })
    });
    let signals = tokio::spawn(watch_interrupts(
        stop.clone(),
        Arc::clone(&printer),
        options.on_second_interrupt,
    ));
    if let (Some(w), Some(ovh)) = (&worker, &ovh_side) {
        ovh.share_claims(Arc::clone(w));
    }
    let slots = match &worker {
        // A shared run: the caps hold for all workers' connections together.
        Some(w) => Slots::new(&plan, options.per_server).shared_with(Arc::clone(w)),
        None => Slots::new(&plan, options.per_server),
    };
    let shared = Arc::new(Shared {
        plan,
        credentials,
        store: store.clone(),
        printer: Arc::clone(&printer),
        stop: stop.clone(),
        state_failed: AtomicBool::new(false),
        mode: options.mode,
        slots,
        connections: options.connections.max(1),
        ovh: ovh_side,
        verified: Mutex::new(HashMap::new()),
        size_refusals: copy::SizeRefusals::default(),
    });

    let mut walk = Walk {
        queue: ReadyQueue::new(&graph),
        summary: RunSummary::default(),
        keys: &keys,
        graph: &graph,
        fps: &fps,
    };
    let mut running: JoinSet<(StepId, StepOutcome, Duration)> = JoinSet::new();
    let (retries, mut retrying) = mpsc::unbounded_channel::<Retrying>();
    // Whether the write went through (or there is nothing to write to).
    let fail_state = |e: &StateError| {
        shared.state_failed.store(true, Ordering::SeqCst);
        shared.stop.cancel();
        printer.event(&Event::StepFailed {
            key: "state",
            error: &format!("{e}; the run stops"),
        });
    };
    let with_store = |f: &dyn Fn(&dyn StateStore) -> Result<(), StateError>| -> bool {
        if let (Some(s), false) = (&store, dry)
            && let Err(e) = f(s.as_ref())
        {
            fail_state(&e);
            return false;
        }
        true
    };

    // A shared run: steps another worker holds (looked at again every `poll_every`), and
    // those taken back from that list, ready to run here.
    let mut elsewhere: BTreeSet<StepId> = BTreeSet::new();
    let mut taken: VecDeque<StepId> = VecDeque::new();
    // Only a worker's claims: the outcome of `key` in this run (`None`: it may run again).
    let end_claim = |key: &str, outcome: Option<&str>| {
        if let Some(w) = &worker
            && let Err(e) = w.end(key, outcome)
        {
            fail_state(&e);
        }
    };

    let mut polled = Instant::now();
    // Steps started by this process (for a worker's coordination cost per step).
    let mut ran_here = 0usize;
    loop {
        if let Some(w) = &worker
            && !stop.is_cancelled()
            && !elsewhere.is_empty()
            && polled.elapsed() >= w.poll_every()
        {
            polled = Instant::now();
            // Steps held elsewhere, looked at in one request: taken over when their holder's
            // lease ran out, finished here when they ended there.
            let polled: HashMap<&str, StepId> = elsewhere
                .iter()
                .map(|id| (keys[id.index()].as_str(), *id))
                .collect();
            let asked: Vec<String> = polled.keys().map(|k| (*k).to_owned()).collect();
            match w.poll(&asked) {
                Ok(found) => {
                    let mut found: Vec<(StepId, Claim)> = found
                        .into_iter()
                        .filter_map(|(key, claim)| Some((*polled.get(key.as_str())?, claim)))
                        .collect();
                    found.sort_by_key(|(id, _)| *id);
                    for (id, claim) in found {
                        match claim {
                            Claim::Held => {}
                            Claim::Taken => {
                                elsewhere.remove(&id);
                                taken.push_back(id);
                            }
                            Claim::Ended(outcome) => {
                                elsewhere.remove(&id);
                                walk.ended_elsewhere(id, &outcome, &shared, &with_store);
                            }
                        }
                    }
                }
                Err(e) => fail_state(&e),
            }
        }
        while running.len() < options.parallelism.max(1) && !stop.is_cancelled() {
            // A worker claims the next ready steps, as many as it runs at once, in one request:
            // it runs those it took, waits for those another worker holds.
            if let Some(w) = &worker
                && taken.is_empty()
            {
                let batch: Vec<StepId> = std::iter::from_fn(|| walk.queue.next_ready())
                    .take(options.parallelism.max(1))
                    .collect();
                if batch.is_empty() {
                    break;
                }
                let asked: Vec<String> = batch.iter().map(|id| keys[id.index()].clone()).collect();
                let found: HashMap<String, Claim> = match w.claim_all(&asked) {
                    Ok(found) => found.into_iter().collect(),
                    Err(e) => {
                        fail_state(&e);
                        break;
                    }
                };
                for id in batch {
                    let key = &keys[id.index()];
                    match found.get(key) {
                        Some(Claim::Taken) => taken.push_back(id),
                        Some(Claim::Ended(outcome)) => {
                            walk.ended_elsewhere(id, outcome, &shared, &with_store);
                        }
                        Some(Claim::Held) | None => {
                            elsewhere.insert(id);
                        }
                    }
                }
                continue;
            }
            let id = match taken.pop_front() {
                Some(id) => id,
                None => {
                    let Some(id) = walk.queue.next_ready() else {
                        break;
                    };
                    id
                }
            };
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
            let freshness = freshness(previous.as_ref(), &fp);
            if let Freshness::Dirty(Dirty::Failed {
                same_definition: true,
                error,
            }) = &freshness
                && !options.retry_failed
            {
                let reason = format!(
                    "failed in an earlier run ({}); use --retry-failed to try again",
                    error.as_deref().unwrap_or("no reason recorded")
                );
                printer.event(&Event::StepFailed {
                    key,
                    error: &reason,
                });
                end_claim(key, Some(StepStatus::Failed.as_str()));
                walk.summary.failed += 1;
                walk.skip_dependents(id, &shared, &with_store);
                continue;
            }
            // A copy always runs: its pass is incremental, and new mail may have arrived.
            if freshness == Freshness::Fresh && next.kind != StepKind::CopyMail {
                let why = if next.kind == StepKind::Verify {
                    "verified, nothing copied since"
                } else {
                    "done, unchanged"
                };
                printer.event(&Event::StepUnchanged { key, why });
                end_claim(key, Some(StepStatus::Done.as_str()));
                walk.summary.done += 1;
                walk.queue.finish(id);
                continue;
            }
            let why = match &freshness {
                Freshness::Fresh => None,
                Freshness::Dirty(dirty) => dirty.why(),
            };
            if next.kind == StepKind::WaveGate {
                with_store(&|s| {
                    s.step_started(key, None, next.kind, &fp)?;
                    s.step_finished(key, StepStatus::Done, Some(0), None, None)
                });
                end_claim(key, Some(StepStatus::Done.as_str()));
                walk.summary.done += 1;
                walk.queue.finish(id);
                continue;
            }
            // A step whose start cannot be recorded does not start.
            if !with_store(&|s| s.step_started(key, account.as_deref(), next.kind, &fp)) {
                end_claim(key, None);
                continue;
            }
            printer.event(&Event::StepStarted { key, why });
            ran_here += 1;
            let shared = Arc::clone(&shared);
            let key = key.clone();
            let retries = retries.clone();
            running.spawn(async move {
                let started = Instant::now();
                let task = StepTask {
                    id,
                    key: &key,
                    kind: next.kind,
                    subject: &next.subject,
                };
                let outcome = run_step(&shared, &task, &retries).await;
                (id, outcome, started.elapsed())
            });
        }
        // A worker with nothing to run but steps held elsewhere waits for them.
        let poll = worker
            .as_ref()
            .map_or(Duration::from_secs(1), |w| w.poll_every());
        if running.is_empty() && !elsewhere.is_empty() && !stop.is_cancelled() {
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                () = stop.cancelled() => {}
            }
            continue;
        }
        // What running steps report comes first: a step sends its retries before it ends.
        let joined = tokio::select! {
            biased;
            Some(retry) = retrying.recv() => {
                let key = &keys[retry.id.index()];
                printer.event(&Event::Retry {
                    key,
                    attempt: retry.attempt,
                    wait: retry.wait,
                    error: &retry.error,
                });
                with_store(&|s| s.step_retried(key));
                continue;
            }
            joined = running.join_next() => joined,
            () = tokio::time::sleep(poll), if !elsewhere.is_empty() => continue,
        };
        let Some(joined) = joined else {
            break;
        };
        let (id, outcome, elapsed) = match joined {
            Ok(r) => r,
            Err(e) => {
                // A panicking step is a bug; the others go on.
                printer.event(&Event::StepFailed {
                    key: "internal",
                    error: &e.to_string(),
                });
                walk.summary.failed += 1;
                continue;
            }
        };
        let key = &keys[id.index()];
        let ms = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
        walk.summary.messages += outcome.counts.messages;
        walk.summary.bytes += outcome.counts.bytes;
        let (status, output) = (outcome.status, outcome.output.as_deref());
        // The error column holds why a step failed; a done step's summary is only shown.
        let error = (status == Ended::Failed).then_some(outcome.summary.as_str());
        with_store(&|s| s.step_finished(key, status.recorded(), Some(ms), output, error));
        end_claim(
            key,
            match status {
                Ended::Done => Some(StepStatus::Done.as_str()),
                Ended::Failed => Some(StepStatus::Failed.as_str()),
                Ended::Interrupted => None,
            },
        );
        match status {
            Ended::Done => {
                printer.event(&Event::StepDone {
                    key,
                    summary: &outcome.summary,
                    ms: u64::try_from(ms).unwrap_or(0),
                });
                walk.summary.done += 1;
                walk.queue.finish(id);
            }
            Ended::Failed => {
                printer.event(&Event::StepFailed {
                    key,
                    error: &outcome.summary,
                });
                walk.summary.failed += 1;
                walk.skip_dependents(id, &shared, &with_store);
            }
            Ended::Interrupted => printer.event(&Event::StepInterrupted { key }),
        }
    }

    if lost.load(Ordering::SeqCst) {
        printer.event(&Event::StepFailed {
            key: "state",
            error: "this worker could not renew its leases in time (retired as dead by another \
                    worker, or the database out of reach); the run stops, another worker or the \
                    next apply takes its steps over",
        });
        shared.state_failed.store(true, Ordering::SeqCst);
    }
    signals.abort();
    if let Some(keeper) = keeper {
        keeper.abort();
    }
    if let (Some(s), false) = (&store, dry) {
        let _ = s.set_meta("last_run", &super::store::timestamp(super::store::now()));
        match &worker {
            // The claims' ends are written before the worker leaves; one that could not be is
            // a failed state write (the step may run again in this run, elsewhere).
            Some(w) => {
                if let Err(e) = w.retire() {
                    fail_state(&e);
                }
            }
            None => {
                let _ = s.unlock(pid);
            }
        }
    }
    let state_failed = shared.state_failed.load(Ordering::SeqCst);
    walk.summary.interrupted = stop.is_cancelled() && !state_failed;
    walk.summary.failed += usize::from(state_failed);
    if let Some(w) = &worker {
        let spent = w.coordination();
        printer.event(&Event::Coordination {
            leases: spent.leases,
            limits: spent.limits,
            steps: ran_here,
        });
    }
    printer.event(&Event::Finished {
        done: walk.summary.done,
        failed: walk.summary.failed,
        skipped: walk.summary.skipped,
        interrupted: walk.summary.interrupted,
        messages: walk.summary.messages,
        bytes: walk.summary.bytes,
    });
    Ok(walk.summary)
}

/// Runs a write on the state store (when the run writes one).
type WithStore<'a> = &'a dyn Fn(&dyn Fn(&dyn StateStore) -> Result<(), StateError>) -> bool;

/// Where the run stands in the step graph: the ready queue, what ended so far, and what names
/// and fingerprints each step.
struct Walk<'g> {
    queue: ReadyQueue<'g>,
    summary: RunSummary,
    keys: &'g [String],
    graph: &'g StepGraph,
    fps: &'g [String],
}

impl Walk<'_> {
    /// Mark and report everything that depends on the failed step `failed`.
    fn skip_dependents(&mut self, failed: StepId, shared: &Shared, with_store: WithStore<'_>) {
        let because = format!("{} failed", self.keys[failed.index()]);
        for s in self.queue.fail(failed) {
            let key = &self.keys[s.index()];
            let step = self.graph.step(s);
            let account = step
                .subject
                .account()
                .map(|i| shared.plan.accounts[i].address.as_str());
            let fp = &self.fps[s.index()];
            with_store(&|st| st.step_skipped(key, account, step.kind, fp, &because));
            shared.printer.event(&Event::StepSkipped {
                key,
                because: &because,
            });
            self.summary.skipped += 1;
        }
    }

    /// A step that ended in this run in another worker's hands (`outcome`: `done` or
    /// `failed`): done, its dependents become ready here; failed, they are skipped here too.
    fn ended_elsewhere(
        &mut self,
        id: StepId,
        outcome: &str,
        shared: &Shared,
        with_store: WithStore<'_>,
    ) {
        let key = &self.keys[id.index()];
        if outcome == StepStatus::Done.as_str() {
            shared.printer.event(&Event::StepUnchanged {
                key,
                why: "done by another worker",
            });
            self.summary.done += 1;
            self.queue.finish(id);
        } else {
            shared.printer.event(&Event::StepFailed {
                key,
                error: &format!("{outcome} in another worker"),
            });
            self.summary.failed += 1;
            self.skip_dependents(id, shared, with_store);
        }
    }
}

/// First interrupt: stop at safe points. Second: end the process at once
/// ([`ApplyOptions::on_second_interrupt`]); the store stays consistent because every write is a
/// transaction. A server that stopped answering would put the safe point off until the
/// commands' time limits (minutes): when IMAP connections are open and none has moved a byte
/// for [`STALLED`] since the first interrupt, the run ends as a second interrupt would. A batch
/// on the wire is then left pending and reconciled by the next run, as after a crash.
async fn watch_interrupts(stop: CancellationToken, printer: Arc<dyn Sink>, exit_now: fn()) {
    interrupted().await;
    stop.cancel();
    printer.event(&Event::Interrupting);
    tokio::select! {
        () = interrupted() => {}
        () = imap::activity::silent_for(STALLED) => {
            printer.event(&Event::InterruptStalled { quiet: STALLED });
        }
    }
    // Nothing stale stays on the terminal: the bars are taken down first.
    printer.clear();
    exit_now();
}

/// How long, after an interrupt, IMAP connections may move nothing before the run ends without
/// waiting for its safe point (see [`watch_interrupts`]).
pub const STALLED: Duration = Duration::from_secs(15);

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
