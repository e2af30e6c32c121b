//! The workers of a shared run and the leases on its steps: a worker registers, takes a ready
//! step (`FOR UPDATE SKIP LOCKED`), renews its lease while it works, releases it once the
//! outcome is recorded; a lease that runs out, or a worker whose heartbeat stops, lets another
//! worker take the step over. Times are the database's clock, never a worker's.

use std::time::Duration;

use serde::Serialize;

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
                   COALESCE(array_agg(s.key ORDER BY s.seq) FILTER (WHERE s.key IS NOT NULL),
                            '{}')
                 FROM workers w LEFT JOIN steps s ON s.leased_by = w.id
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

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
