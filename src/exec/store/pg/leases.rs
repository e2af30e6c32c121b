//! The workers of a shared run and the leases on its steps: a worker registers, takes a ready
//! step (`FOR UPDATE SKIP LOCKED`), renews its lease while it works, releases it once the
//! outcome is recorded; a lease that runs out, or a worker whose heartbeat stops, lets another
//! worker take the step over. Times are the database's clock, never a worker's.
//!
//! What `apply` uses on a shared state ([`PgStore::join`], [`PgStore::claim`],
//! [`PgStore::end_claim`], [`PgStore::keep_alive`], [`PgStore::retire_worker`]): the workers of one
//! *run* (the workers alive together; a worker that finds none alive starts a new run) each walk
//! the whole step graph, and before running a ready step claim it in `claims`. A claim succeeds
//! when no live worker holds the step and it has not ended (done or failed) in this run; a step
//! held elsewhere is waited for (polled) and a step ended elsewhere counts as ended here, so
//! every step runs once per run while its dependents become ready on every worker. Claims are
//! kept apart from `steps` so that the step records stay exactly what `StateStore` writes.

use std::time::Duration;

use serde::Serialize;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{PgError, PgStore, to_u32};

/// A worker's id in the `workers` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct WorkerId(pub i64);

/// A worker of a shared run, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerRow {
    pub id: WorkerId,
    pub host: String,
    pub pid: u32,
    /// Seconds since the epoch, by the database's clock.
    pub started: i64,
    pub heartbeat: i64,
    /// The keys of the steps it holds a lease on, in plan order.
    pub steps: Vec<String>,
}

/// What [`PgStore::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The step is this worker's until it ends it (or its lease runs out).
    Taken,
    /// Another live worker holds it.
    Held,
    /// It ended in this run, in another worker's hands: `done` or `failed`.
    Ended(String),
}

/// A worker that joined a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub id: WorkerId,
    /// The run: the same for every worker alive together.
    pub run: i64,
    /// The other workers alive when it joined.
    pub others: usize,
}

/// A step a worker took: its key and what it needs to start it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leased {
    pub key: String,
    pub account: Option<String>,
    pub kind: String,
    pub fingerprint: String,
    /// `ready`, or `running` when it was taken over from a worker whose lease expired (the
    /// step then resumes from its folder records).
    pub status: String,
}

impl PgStore {
    /// A worker joins the run: its row, with the database's time as `started` and `heartbeat`.
    pub async fn register_worker(&self, host: &str, pid: u32) -> Result<WorkerId, PgError> {
        let rows = self
            .query(
                "INSERT INTO workers (host, pid) VALUES ($1, $2) RETURNING id",
                &[&host, &i64::from(pid)],
            )
            .await?;
        Ok(WorkerId(rows.first().map_or(0, |r| r.get(0))))
    }

    /// The worker is alive: its heartbeat is now. `false` when its row is gone (it was
    /// retired as dead by [`PgStore::expire_leases`]): it must stop taking steps.
    pub async fn heartbeat(&self, worker: WorkerId) -> Result<bool, PgError> {
        Ok(self
            .execute(
                "UPDATE workers SET heartbeat = clock_timestamp() WHERE id = $1",
                &[&worker.0],
            )
            .await?
            == 1)
    }

    /// A worker leaves: its leases are released and its row removed.
    pub async fn retire_worker(&self, worker: WorkerId) -> Result<(), PgError> {
        // ON DELETE SET NULL clears `leased_by`; the lease time goes with it.
        self.execute(
            "UPDATE steps SET lease_until = NULL WHERE leased_by = $1",
            &[&worker.0],
        )
        .await?;
        self.execute("DELETE FROM workers WHERE id = $1", &[&worker.0])
            .await
            .map(drop)
    }

    /// The workers of the run and the steps each holds, oldest first.
    pub async fn workers(&self) -> Result<Vec<WorkerRow>, PgError> {
        let rows = self
            .query(
                "SELECT w.id, w.host, w.pid,
                   extract(epoch FROM w.started)::bigint, extract(epoch FROM w.heartbeat)::bigint,
                   COALESCE(array_agg(h.key ORDER BY h.seq NULLS LAST, h.key)
                            FILTER (WHERE h.key IS NOT NULL), '{}')
                 FROM workers w LEFT JOIN (
                   SELECT key, seq, leased_by AS holder FROM steps WHERE leased_by IS NOT NULL
                   UNION ALL
                   SELECT c.key, s.seq, c.worker FROM claims c LEFT JOIN steps s USING (key)
                   WHERE c.worker IS NOT NULL) h ON h.holder = w.id
                 GROUP BY w.id ORDER BY w.id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| WorkerRow {
                id: WorkerId(r.get(0)),
                host: r.get(1),
                pid: to_u32(r.get(2)),
                started: r.get(3),
                heartbeat: r.get(4),
                steps: r.get(5),
            })
            .collect())
    }

    /// A step is ready to run (its dependencies are done): recorded as `ready` for any worker
    /// to take, unless it is done, already waiting or in a worker's hands.
    pub async fn step_ready(
        &self,
        key: &str,
        account: Option<&str>,
        kind: &str,
        fingerprint: &str,
    ) -> Result<(), PgError> {
        self.execute(
            "INSERT INTO steps (key, account, kind, fingerprint, status)
             VALUES ($1, $2, $3, $4, 'ready')
             ON CONFLICT (key) DO UPDATE SET status = 'ready', fingerprint = $4
             WHERE steps.status NOT IN ('done', 'ready') AND steps.leased_by IS NULL",
            &[&key, &account, &kind, &fingerprint],
        )
        .await
        .map(drop)
    }

    /// Take one step for `worker`, leased for `lease`: the first ready step no worker holds,
    /// or a step whose holder's lease ran out or was freed by [`PgStore::expire_leases`] (it is
    /// `running` when that worker died in it: in a shared run every running step is leased, so
    /// a running step without a live lease is a lost worker's).
    /// Rows another taker is locking are skipped (`FOR UPDATE SKIP LOCKED`), so takers never
    /// wait on each other and never get the same step. `None` when nothing is to be taken.
    pub async fn take_step(
        &self,
        worker: WorkerId,
        lease: Duration,
    ) -> Result<Option<Leased>, PgError> {
        let rows = self
            .query(
                "UPDATE steps SET leased_by = $1,
                   lease_until = clock_timestamp() + $2 * interval '1 millisecond'
                 WHERE key = (
                   SELECT key FROM steps
                   WHERE status IN ('ready', 'running')
                     AND (leased_by IS NULL OR lease_until < clock_timestamp())
                   ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING key, account, kind, fingerprint, status",
                &[&worker.0, &millis(lease)],
            )
            .await?;
        Ok(rows.first().map(|r| Leased {
            key: r.get(0),
            account: r.get(1),
            kind: r.get(2),
            fingerprint: r.get(3),
            status: r.get(4),
        }))
    }

    /// Extend `worker`'s lease on `key` to `lease` from now. `false` when the worker no longer
    /// holds it (it expired and another worker took it): the worker must stop that step.
    pub async fn renew(
        &self,
        worker: WorkerId,
        key: &str,
        lease: Duration,
    ) -> Result<bool, PgError> {
        Ok(self
            .execute(
                "UPDATE steps SET lease_until = clock_timestamp() + $3 * interval '1 millisecond'
                 WHERE key = $2 AND leased_by = $1",
                &[&worker.0, &key, &millis(lease)],
            )
            .await?
            == 1)
    }

    /// `worker` lets go of `key` (after recording its outcome, or on a clean stop).
    pub async fn release(&self, worker: WorkerId, key: &str) -> Result<(), PgError> {
        self.execute(
            "UPDATE steps SET leased_by = NULL, lease_until = NULL
             WHERE key = $2 AND leased_by = $1",
            &[&worker.0, &key],
        )
        .await
        .map(drop)
    }

    /// Clear the leases that ran out, and retire the workers whose heartbeat is older than
    /// `dead_after` (their remaining leases go with them). Returns the keys set free, in plan
    /// order. [`PgStore::take_step`] takes expired steps over by itself; this is the sweep
    /// that makes `status` true and frees what a lost worker held in the database.
    pub async fn expire_leases(&self, dead_after: Duration) -> Result<Vec<String>, PgError> {
        let mut client = self.connect().await?;
        let tx = client.transaction().await.map_err(|e| self.error(&e))?;
        let mut freed: Vec<(i64, String)> = tx
            .query(
                "UPDATE steps SET leased_by = NULL, lease_until = NULL
                 WHERE key IN (
                   SELECT key FROM steps
                   WHERE leased_by IS NOT NULL AND (lease_until < clock_timestamp()
                     OR leased_by IN (SELECT id FROM workers
                       WHERE heartbeat < clock_timestamp() - $1 * interval '1 millisecond'))
                   FOR UPDATE SKIP LOCKED)
                 RETURNING seq, key",
                &[&millis(dead_after)],
            )
            .await
            .map_err(|e| self.error(&e))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        tx.execute(
            "DELETE FROM workers
             WHERE heartbeat < clock_timestamp() - $1 * interval '1 millisecond'",
            &[&millis(dead_after)],
        )
        .await
        .map_err(|e| self.error(&e))?;
        tx.commit().await.map_err(|e| self.error(&e))?;
        freed.sort();
        Ok(freed.into_iter().map(|(_, key)| key).collect())
    }
}

impl PgStore {
    /// A worker joins the shared run of `plan_fingerprint` (the plan's steps and their
    /// fingerprints in `steps`). Dead workers (no heartbeat for `dead_after`) are retired
    /// first; when no worker is left alive a new run starts with this plan. A worker of another
    /// plan version than the live ones is refused ([`PgError::OtherPlanVersion`], naming the
    /// steps that differ) before anything is written.
    pub async fn join(
        &self,
        host: &str,
        pid: u32,
        plan_fingerprint: &str,
        steps: &BTreeMap<String, String>,
        dead_after: Duration,
    ) -> Result<Joined, PgError> {
        let mut client = self.connect().await?;
        let tx = client.transaction().await.map_err(|e| self.error(&e))?;
        let e = |e: tokio_postgres::Error| self.error(&e);
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('mailplan workers ' || current_schema()))",
            &[],
        )
        .await
        .map_err(e)?;
        tx.execute(
            "DELETE FROM workers
             WHERE heartbeat < clock_timestamp() - $1 * interval '1 millisecond'",
            &[&millis(dead_after)],
        )
        .await
        .map_err(e)?;
        let others = tx.query("SELECT run FROM workers", &[]).await.map_err(e)?;
        let meta = |key: &'static str| {
            let tx = &tx;
            async move {
                tx.query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
                    .await
                    .map(|r| r.map(|r| r.get::<_, String>(0)))
            }
        };
        let run = if let Some(row) = others.first() {
            let running = meta("plan_fingerprint").await.map_err(e)?;
            if running.as_deref() != Some(plan_fingerprint) {
                let theirs: BTreeMap<String, String> = meta("plan_steps")
                    .await
                    .map_err(e)?
                    .and_then(|j| serde_json::from_str(&j).ok())
                    .unwrap_or_default();
                return Err(PgError::OtherPlanVersion {
                    shown: self.shown.clone(),
                    workers: others.len(),
                    difference: difference(&theirs, steps),
                });
            }
            row.get::<_, Option<i64>>(0).unwrap_or_default()
        } else {
            let run: i64 = tx
                .query_one(
                    "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
                    &[],
                )
                .await
                .map_err(e)?
                .get(0);
            let steps_json = serde_json::to_string(steps).unwrap_or_default();
            for (key, value) in [
                ("plan_fingerprint", plan_fingerprint),
                ("plan_steps", steps_json.as_str()),
            ] {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = $2",
                    &[&key, &value],
                )
                .await
                .map_err(e)?;
            }
            run
        };
        let label = format!("{host} pid {pid}");
        let id: i64 = tx
            .query_one(
                "INSERT INTO workers (host, pid, run, label) VALUES ($1, $2, $3, $4) RETURNING id",
                &[&host, &i64::from(pid), &run, &label],
            )
            .await
            .map_err(e)?
            .get(0);
        tx.commit().await.map_err(e)?;
        Ok(Joined {
            id: WorkerId(id),
            run,
            others: others.len(),
        })
    }

    /// `worker` (of run `run`, named `label` in the records) claims the step `key` for `lease`;
    /// see [`Claim`].
    pub async fn claim(
        &self,
        worker: WorkerId,
        run: i64,
        label: &str,
        key: &str,
        lease: Duration,
    ) -> Result<Claim, PgError> {
        let taken = self
            .query_durable(
                "INSERT INTO claims (key, worker, lease_until, taken, taken_by)
                 VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond', 1, $4)
                 ON CONFLICT (key) DO UPDATE SET worker = $2,
                   lease_until = clock_timestamp() + $3 * interval '1 millisecond',
                   taken = claims.taken + 1, taken_by = $4
                 WHERE (claims.worker IS NULL OR claims.lease_until < clock_timestamp())
                   AND claims.run IS DISTINCT FROM $5
                 RETURNING key",
                &[&key, &worker.0, &millis(lease), &label, &run],
            )
            .await?;
        if !taken.is_empty() {
            return Ok(Claim::Taken);
        }
        let row = self
            .query("SELECT run, outcome FROM claims WHERE key = $1", &[&key])
            .await?;
        Ok(match row.first() {
            Some(r) if r.get::<_, Option<i64>>(0) == Some(run) => {
                Claim::Ended(r.get::<_, Option<String>>(1).unwrap_or_default())
            }
            _ => Claim::Held,
        })
    }

    /// `worker` lets go of `key`: with `outcome` (`done`, `failed`) the step ended in `run`
    /// and no worker of this run takes it again; without, another may (an interrupted step).
    pub async fn end_claim(
        &self,
        worker: WorkerId,
        run: i64,
        key: &str,
        outcome: Option<&str>,
    ) -> Result<(), PgError> {
        self.execute(
            "UPDATE claims SET worker = NULL, lease_until = NULL,
               run = CASE WHEN $4::text IS NULL THEN run ELSE $3 END,
               outcome = COALESCE($4, outcome)
             WHERE key = $2 AND worker = $1",
            &[&worker.0, &key, &run, &outcome],
        )
        .await
        .map(drop)
    }

    /// The heartbeat of `worker` and the renewal of every claim it holds, to `lease` from now.
    /// `false` when its row is gone (retired as dead by another worker): its claims may be
    /// another's now.
    pub async fn keep_alive(&self, worker: WorkerId, lease: Duration) -> Result<bool, PgError> {
        let alive = self.heartbeat(worker).await?;
        self.execute(
            "UPDATE claims SET lease_until = clock_timestamp() + $2 * interval '1 millisecond'
             WHERE worker = $1",
            &[&worker.0, &millis(lease)],
        )
        .await?;
        Ok(alive)
    }
}

impl PgStore {
    /// `n` connection slots on `server` for `worker`, when the live workers (a heartbeat within
    /// `dead_after`) hold fewer than `cap - n + 1` there: the slots' ids, else `None` (try
    /// again later). Checked and taken under an advisory lock of that server, so that two
    /// workers never both take the last slot.
    pub async fn take_slots(
        &self,
        worker: WorkerId,
        server: &str,
        n: usize,
        cap: usize,
        dead_after: Duration,
    ) -> Result<Option<Vec<i64>>, PgError> {
        let mut client = self.connect().await?;
        let tx = client.transaction().await.map_err(|e| self.error(&e))?;
        let e = |e: tokio_postgres::Error| self.error(&e);
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('mailplan slots ' || current_schema()
               || ' ' || $1::text))",
            &[&server],
        )
        .await
        .map_err(e)?;
        let held: i64 = tx
            .query_one(
                "SELECT count(*) FROM slots s JOIN workers w ON w.id = s.worker
                 WHERE s.server = $1
                   AND w.heartbeat >= clock_timestamp() - $2 * interval '1 millisecond'",
                &[&server, &millis(dead_after)],
            )
            .await
            .map_err(e)?
            .get(0);
        let (n, cap) = (
            i64::try_from(n).unwrap_or(i64::MAX),
            i64::try_from(cap).unwrap_or(i64::MAX),
        );
        if held + n > cap {
            return Ok(None);
        }
        let ids = tx
            .query(
                "INSERT INTO slots (server, worker) SELECT $1, $2 FROM generate_series(1, $3::bigint)
                 RETURNING id",
                &[&server, &worker.0, &n],
            )
            .await
            .map_err(e)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.commit().await.map_err(e)?;
        Ok(Some(ids))
    }

    /// Reserve the next turn of the pace `name` (one request every `interval`, all workers
    /// together, by the database's clock): how long until it comes.
    pub async fn reserve_turn(&self, name: &str, interval: Duration) -> Result<Duration, PgError> {
        let rows = self
            .query(
                "INSERT INTO pace (name, next_at)
                   VALUES ($1, clock_timestamp() + $2 * interval '1 millisecond')
                 ON CONFLICT (name) DO UPDATE SET next_at =
                   GREATEST(pace.next_at, clock_timestamp()) + $2 * interval '1 millisecond'
                 RETURNING GREATEST(0, extract(epoch FROM (next_at - $2 * interval
                   '1 millisecond' - clock_timestamp())) * 1000)::float8",
                &[&name, &millis(interval)],
            )
            .await?;
        let wait: f64 = rows.first().map_or(0.0, |r| r.get(0));
        Ok(Duration::from_secs_f64(wait / 1000.0))
    }

    /// Claim the OVH placeholder `address` for the run `run` (by `label`): `false` when it is
    /// claimed in this run already (a claim of an earlier run is stale and taken over).
    pub async fn claim_placeholder(
        &self,
        address: &str,
        run: i64,
        label: &str,
    ) -> Result<bool, PgError> {
        Ok(!self
            .query_durable(
                "INSERT INTO placeholders (address, run, worker) VALUES ($1, $2, $3)
                 ON CONFLICT (address) DO UPDATE SET run = $2, worker = $3
                 WHERE placeholders.run <> $2
                 RETURNING address",
                &[&address, &run, &label],
            )
            .await?
            .is_empty())
    }

    /// Whether the OVH placeholder `address` is claimed in the run `run`.
    pub async fn placeholder_claimed(&self, address: &str, run: i64) -> Result<bool, PgError> {
        Ok(!self
            .query(
                "SELECT 1 FROM placeholders WHERE address = $1 AND run = $2",
                &[&address, &run],
            )
            .await?
            .is_empty())
    }

    /// Give back slots taken with [`PgStore::take_slots`].
    pub async fn free_slots(&self, ids: &[i64]) -> Result<(), PgError> {
        self.execute("DELETE FROM slots WHERE id = ANY($1)", &[&ids])
            .await
            .map(drop)
    }
}

/// What differs between the running workers' plan (`theirs`) and this one's (`ours`), by step.
fn difference(theirs: &BTreeMap<String, String>, ours: &BTreeMap<String, String>) -> String {
    let list = |keys: Vec<&String>| {
        let mut text = keys
            .iter()
            .take(5)
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if keys.len() > 5 {
            let _ = write!(text, " and {} more", keys.len() - 5);
        }
        text
    };
    let changed: Vec<&String> = ours
        .iter()
        .filter(|(k, fp)| theirs.get(*k).is_some_and(|t| t != *fp))
        .map(|(k, _)| k)
        .collect();
    let added: Vec<&String> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    let gone: Vec<&String> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    let mut parts = Vec::new();
    if !changed.is_empty() {
        parts.push(format!("changed: {}", list(changed)));
    }
    if !added.is_empty() {
        parts.push(format!("only in this plan: {}", list(added)));
    }
    if !gone.is_empty() {
        parts.push(format!("only in theirs: {}", list(gone)));
    }
    if parts.is_empty() {
        "the same steps, another plan fingerprint".to_owned()
    } else {
        parts.join("; ")
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
