//! An `apply` on a shared (`PostgreSQL`) state is a worker of a run that any number of `apply`
//! processes, on any machines, share (`Worker`): no run lock; it joins the run (refused when
//! the live workers run another version of the plan), keeps itself alive, and claims each step
//! before running it (see `exec::store::pg::leases` for what a claim guarantees). The runner calls it
//! from its coordinator; on `SQLite` there is none and the run lock stays.
//!
//! The lease a claim holds lasts [`lease`] (`MAILPLAN_LEASE_SECONDS`, default 60 s) and is
//! renewed every third of it with the worker's heartbeat; a worker that dies loses its steps
//! when its leases run out, and another worker takes them over (a copy resumes from its folder
//! records; its reconciliation after a crash is what makes that safe).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::exec::store::StateError;
use crate::exec::store::pg::{BlockingPgStore, Claim, PgError, PgStore, WorkerId};

/// The variable that sets the lease of a claim, in seconds (tests make it short).
pub const LEASE_VARIABLE: &str = "MAILPLAN_LEASE_SECONDS";
const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The lease of a claim: `MAILPLAN_LEASE_SECONDS` (1 to 3600), or 60 s.
pub fn lease() -> Duration {
    std::env::var(LEASE_VARIABLE)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| (1..=3600).contains(s))
        .map_or(DEFAULT_LEASE, Duration::from_secs)
}

/// This process as a worker of a shared run.
#[derive(Debug)]
pub(crate) struct Worker {
    store: BlockingPgStore,
    id: WorkerId,
    run: i64,
    label: String,
    lease: Duration,
    /// Workers alive when this one joined.
    pub(crate) others: usize,
    /// What coordinating with the other workers cost this one: the leases' requests and
    /// those of the shared limits, each with the time waited for them.
    leases: Meter,
    limits: Meter,
    /// The ends of claims, sent in order by a task of the store's runtime, several per request
    /// when they come together (see [`Worker::end`]).
    ends: mpsc::UnboundedSender<Ending>,
    /// The first end that could not be written, until it is reported.
    end_failed: Arc<Mutex<Option<PgError>>>,
}

/// What the ender task is told: an end to write, or to answer once every earlier one is written.
enum Ending {
    End(String, Option<String>),
    Flush(oneshot::Sender<()>),
}

/// Requests and the time waited for them.
#[derive(Debug, Default)]
struct Meter {
    requests: AtomicU64,
    nanos: AtomicU64,
}

impl Meter {
    /// `f`, one request, counted.
    fn timed<T>(&self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        out
    }

    /// One request not waited for.
    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> Spent {
        Spent {
            requests: self.requests.load(Ordering::Relaxed),
            spent: Duration::from_nanos(self.nanos.load(Ordering::Relaxed)),
        }
    }
}

/// What a worker spent on coordination: the requests to the shared state that a run on the
/// embedded state does not make, and the time it waited for their answers. `leases`: claims,
/// their ends, heartbeats with the renewals, polls of the steps other workers hold; `limits`:
/// what holds the limits across workers (connection slots, OVH placeholders).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Coordination {
    pub(crate) leases: Spent,
    pub(crate) limits: Spent,
}

use crate::exec::events::Spent;

impl Worker {
    /// Join the run of the plan whose steps have the fingerprints `steps` (by key).
    pub(crate) fn join(
        store: &BlockingPgStore,
        host: &str,
        pid: u32,
        plan_fingerprint: &str,
        steps: &BTreeMap<String, String>,
    ) -> Result<Worker, StateError> {
        let lease = lease();
        let joined = store.wait(
            store
                .inner()
                .join(host, pid, plan_fingerprint, steps, lease),
        )?;
        let (ends, pending) = mpsc::unbounded_channel();
        let end_failed = Arc::new(Mutex::new(None));
        store.spawn(write_ends(
            store.inner().clone(),
            joined.id,
            joined.run,
            pending,
            Arc::clone(&end_failed),
        ));
        Ok(Worker {
            store: store.clone(),
            id: joined.id,
            run: joined.run,
            label: format!("{host} pid {pid}"),
            lease,
            others: joined.others,
            leases: Meter::default(),
            limits: Meter::default(),
            ends,
            end_failed,
        })
    }

    /// What coordination cost this worker so far.
    pub(crate) fn coordination(&self) -> Coordination {
        Coordination {
            leases: self.leases.read(),
            limits: self.limits.read(),
        }
    }

    /// Claim every step of `keys` in one request: what each is now (see [`Claim`]).
    pub(crate) fn claim_all(&self, keys: &[String]) -> Result<Vec<(String, Claim)>, StateError> {
        self.leases.timed(|| {
            Ok(self.store.wait(self.store.inner().claim_all(
                self.id,
                self.run,
                &self.label,
                keys,
                self.lease,
            ))?)
        })
    }

    /// The steps of `keys` (held by other workers when last looked at) that moved: those
    /// now taken here (their holder's lease ran out) and those that ended in this run, with
    /// how. One read, and a claim only when something moved.
    pub(crate) fn poll(&self, keys: &[String]) -> Result<Vec<(String, Claim)>, StateError> {
        let moved = self.leases.timed(|| {
            self.store
                .wait(self.store.inner().claimable(keys, self.run))
        })?;
        if moved.is_empty() {
            return Ok(Vec::new());
        }
        self.claim_all(&moved)
    }

    /// Let go of `key`: `done` or `failed` in this run, or `None` (interrupted: another worker
    /// may take it). Not waited for: the end is written by a task of the store, after every
    /// earlier one and with those that come meanwhile, so that the next step starts at once;
    /// [`Worker::retire`] waits for them all first (a claim ended after its worker left would
    /// stay without its outcome). An error is that of an earlier end that failed.
    pub(crate) fn end(&self, key: &str, outcome: Option<&str>) -> Result<(), StateError> {
        self.failed_end()?;
        self.leases.count();
        let _ = self
            .ends
            .send(Ending::End(key.to_owned(), outcome.map(str::to_owned)));
        Ok(())
    }

    fn failed_end(&self) -> Result<(), StateError> {
        match self.end_failed.lock().ok().and_then(|mut e| e.take()) {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Heartbeat and lease renewal; `false` when this worker was retired as dead meanwhile.
    pub(crate) fn keep_alive(&self) -> Result<bool, StateError> {
        self.leases.timed(|| {
            Ok(self
                .store
                .wait(self.store.inner().keep_alive(self.id, self.lease))?)
        })
    }

    /// Leave the run: every claim still held is released.
    pub(crate) fn retire(&self) -> Result<(), StateError> {
        let (done, written) = oneshot::channel();
        if self.ends.send(Ending::Flush(done)).is_ok() {
            self.leases.timed(|| self.store.wait(written)).ok();
        }
        let ended = self.failed_end();
        self.store.wait(self.store.inner().retire_worker(self.id))?;
        ended
    }

    /// `n` of the slots all workers share on `server` (at most `cap` together), when free
    /// now; given back when the returned value is dropped.
    /// `n` of the slots all workers share on `server` (at most `cap` together), when free
    /// now; given back when the returned value is dropped.
    pub(crate) fn take_slots(
        &self,
        server: &str,
        n: usize,
        cap: usize,
    ) -> Result<Option<SharedSlots>, StateError> {
        let ids = self.limits.timed(|| {
            self.store.wait(
                self.store
                    .inner()
                    .take_slots(self.id, server, n, cap, self.lease),
            )
        })?;
        Ok(ids.map(|ids| SharedSlots {
            store: self.store.clone(),
            ids,
        }))
    }

    /// Claim the OVH placeholder `address` for this run: `false` when a worker of this run
    /// claimed it already.
    pub(crate) fn claim_placeholder(&self, address: &str) -> Result<bool, StateError> {
        self.limits.timed(|| {
            Ok(self.store.wait(self.store.inner().claim_placeholder(
                address,
                self.run,
                &self.label,
            ))?)
        })
    }

    /// Whether a worker of this run claimed the OVH placeholder `address`.
    pub(crate) fn placeholder_claimed(&self, address: &str) -> Result<bool, StateError> {
        self.limits.timed(|| {
            Ok(self
                .store
                .wait(self.store.inner().placeholder_claimed(address, self.run))?)
        })
    }

    /// How often the heartbeat and the renewals run.
    pub(crate) fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// How often a step held by another worker is looked at again.
    pub(crate) fn poll_every(&self) -> Duration {
        (self.lease / 4).min(Duration::from_millis(500))
    }

    /// `host pid N`, as the records name this worker.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }
}

/// Connection slots held in the shared state (see [`Worker::take_slots`]); given back on drop,
/// without waiting (a slot not given back goes with its worker's row).
#[derive(Debug)]
pub(crate) struct SharedSlots {
    store: BlockingPgStore,
    ids: Vec<i64>,
}

/// Given back at once: a worker that kept its slots for its next step (to save the requests)
/// would starve the others once the server's cap is reached, since they poll and it never lets
/// go (measured: 8 steps of 400 for the second of two workers).
impl Drop for SharedSlots {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut self.ids);
        let store = self.store.clone();
        self.store.spawn(async move {
            let _ = store.inner().free_slots(&ids).await;
        });
    }
}

/// The OVH request pace shared by the workers of a run: one request every `60 / rate` seconds,
/// all workers together (`--ovh-requests-per-minute`), reserved in the state store.
#[derive(Debug)]
pub(crate) struct SharedOvhPace {
    store: BlockingPgStore,
    interval: Duration,
}

impl SharedOvhPace {
    /// `None` when there is no limit (`per_minute` 0).
    pub(crate) fn new(store: &BlockingPgStore, per_minute: u32) -> Option<SharedOvhPace> {
        (per_minute > 0).then(|| SharedOvhPace {
            store: store.clone(),
            interval: Duration::from_secs(60) / per_minute,
        })
    }
}

impl crate::providers::ovh::SharedPace for SharedOvhPace {
    fn reserve(&self) -> Duration {
        self.store
            .wait(self.store.inner().reserve_turn("ovh", self.interval))
            .unwrap_or(Duration::ZERO)
    }
}

/// The ender task of a worker: writes the ends it is sent, in order, all those waiting in one
/// request; remembers the first failure (the runner stops on it).
async fn write_ends(
    store: PgStore,
    worker: WorkerId,
    run: i64,
    mut pending: mpsc::UnboundedReceiver<Ending>,
    failed: Arc<Mutex<Option<PgError>>>,
) {
    while let Some(first) = pending.recv().await {
        let mut batch = vec![first];
        while let Ok(next) = pending.try_recv() {
            batch.push(next);
        }
        let mut ends = Vec::new();
        let mut flushes = Vec::new();
        for ending in batch {
            match ending {
                Ending::End(key, outcome) => ends.push((key, outcome)),
                Ending::Flush(done) => flushes.push(done),
            }
        }
        if !ends.is_empty()
            && let Err(e) = store.end_claims(worker, run, &ends).await
            && let Ok(mut first) = failed.lock()
        {
            first.get_or_insert(e);
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}
