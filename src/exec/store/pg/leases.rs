//! The workers of a shared run and their claims on its steps: a worker joins, claims ready steps,
//! renews its leases with its heartbeat while it works, and ends each claim once the outcome is
//! recorded; a lease that runs out, or a worker whose heartbeat stops, lets another worker take
//! the step over. Times are the database's clock, never a worker's.
//!
//! What `apply` uses on a shared state ([`PgStore::join`], [`PgStore::claim_all`],
//! [`PgStore::end_claim`], [`PgStore::keep_alive`], [`PgStore::retire_worker`]): the workers of one
//! *run* (the workers alive together; a worker that finds none alive starts a new run) each walk
//! the whole step graph, and claim the ready steps in `claims` before running them, a batch of
//! them per request. A claim succeeds when no live worker holds the step and it has not ended
//! (done or failed) in this run; a step held elsewhere is waited for (polled, all of them in one
//! request) and a step ended elsewhere counts as ended here, so every step runs once per run
//! while its dependents become ready on every worker. Claims are kept apart from `steps` so that
//! the step records stay exactly what `StateStore` writes.
//!
//! A claim is one conditional `INSERT … ON CONFLICT DO UPDATE … WHERE` per batch rather than a
//! queue taken with `SELECT … FOR UPDATE SKIP LOCKED`: every worker walks the same graph and
//! asks for the steps it found ready by key, so there is no queue to skip through; the upsert
//! is atomic (two workers claiming a step together: one takes it, the other finds it held) and
//! waits on another worker's row lock for one statement at most.

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

impl PgStore {
    /// The worker is alive: its heartbeat is now. `false` when its row is gone (it was
    /// retired as dead by a worker that joined since): it must stop taking steps.
    pub async fn heartbeat(&self, worker: WorkerId) -> Result<bool, PgError> {
        Ok(self
            .execute(
                "UPDATE workers SET heartbeat = clock_timestamp() WHERE id = $1",
                &[&worker.0],
            )
            .await?
            == 1)
    }

    /// A worker leaves: its claims are released and its row removed.
    pub async fn retire_worker(&self, worker: WorkerId) -> Result<(), PgError> {
        // ON DELETE SET NULL frees its claims; its slots go with it (ON DELETE CASCADE).
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
                   SELECT c.key, s.seq, c.worker AS holder FROM claims c LEFT JOIN steps s USING (key)
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

    /// Claim `key` for `worker` of `run` with a lease of `lease` ([`PgStore::claim_all`] of one).
    pub async fn claim(
        &self,
        worker: WorkerId,
        run: i64,
        label: &str,
        key: &str,
        lease: Duration,
    ) -> Result<Claim, PgError> {
        let mut found = self
            .claim_all(worker, run, label, &[key.to_owned()], lease)
            .await?;
        Ok(found.pop().map_or(Claim::Held, |(_, claim)| claim))
    }

    /// Claim every step of `keys` for `worker` (of run `run`, named `label` in the records),
    /// with a lease of `lease`, in one statement (one round trip): what each is now, in no
    /// particular order (see [`Claim`]). A step is taken when no worker holds it or its
    /// holder's lease ran out, and it has not ended in this run; else it is held by another
    /// worker, or ended in this run (done or failed) in another's hands. The claims are on disk
    /// before this returns.
    pub async fn claim_all(
        &self,
        worker: WorkerId,
        run: i64,
        label: &str,
        keys: &[String],
        lease: Duration,
    ) -> Result<Vec<(String, Claim)>, PgError> {
        // The rows a data-modifying WITH changes are not seen by the rest of the statement:
        // the steps it did not take are read as they were, which is what is wanted. The steps
        // seen held by a live lease, or ended in this run, are not even tried: a try locks the
        // row, and a transaction that locked one waits for the disk at its commit, which a
        // worker walking past the steps others hold would pay at every batch. (One claimed
        // meanwhile is still refused by the conflict's condition.)
        let rows = self
            .query_durable(
                "WITH taken AS (
                   INSERT INTO claims (key, worker, lease_until, taken, taken_by)
                   SELECT k, $2, clock_timestamp() + $3 * interval '1 millisecond', 1, $4
                   FROM unnest($1::text[]) AS k
                   WHERE NOT EXISTS (SELECT 1 FROM claims c WHERE c.key = k
                     AND ((c.worker IS NOT NULL AND c.lease_until >= clock_timestamp())
                          OR c.run = $5))
                   ON CONFLICT (key) DO UPDATE SET worker = $2,
                     lease_until = clock_timestamp() + $3 * interval '1 millisecond',
                     taken = claims.taken + 1, taken_by = $4
                   WHERE (claims.worker IS NULL OR claims.lease_until < clock_timestamp())
                     AND claims.run IS DISTINCT FROM $5
                   RETURNING key)
                 SELECT key, TRUE, NULL::bigint, NULL::text FROM taken
                 UNION ALL
                 SELECT key, FALSE, run, outcome FROM claims
                 WHERE key = ANY($1) AND key NOT IN (SELECT key FROM taken)",
                &[&keys, &worker.0, &millis(lease), &label, &run],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let claim = if r.get::<_, bool>(1) {
                    Claim::Taken
                } else if r.get::<_, Option<i64>>(2) == Some(run) {
                    Claim::Ended(r.get::<_, Option<String>>(3).unwrap_or_default())
                } else {
                    Claim::Held
                };
                (r.get(0), claim)
            })
            .collect())
    }

    /// Of `keys`, the steps a claim would change now: free (no live holder, or its lease ran
    /// out, or never claimed) or ended in `run`. A read, without locks or writes: what a
    /// worker waiting for steps others hold asks, before it claims the few that moved.
    pub async fn claimable(&self, keys: &[String], run: i64) -> Result<Vec<String>, PgError> {
        Ok(self
            .query(
                "SELECT k FROM unnest($1::text[]) AS k LEFT JOIN claims c ON c.key = k
                 WHERE c.key IS NULL OR c.worker IS NULL OR c.lease_until < clock_timestamp()
                   OR c.run = $2",
                &[&keys, &run],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
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
        self.end_claims(worker, run, &[(key.to_owned(), outcome.map(str::to_owned))])
            .await
    }

    /// [`PgStore::end_claim`] of each of `ends` (a key and its outcome), in one statement.
    pub async fn end_claims(
        &self,
        worker: WorkerId,
        run: i64,
        ends: &[(String, Option<String>)],
    ) -> Result<(), PgError> {
        let (keys, outcomes): (Vec<&str>, Vec<Option<&str>>) = ends
            .iter()
            .map(|(key, outcome)| (key.as_str(), outcome.as_deref()))
            .unzip();
        self.execute(
            "UPDATE claims c SET worker = NULL, lease_until = NULL,
               run = CASE WHEN e.outcome IS NULL THEN c.run ELSE $2 END,
               outcome = COALESCE(e.outcome, c.outcome)
             FROM unnest($3::text[], $4::text[]) AS e (key, outcome)
             WHERE c.key = e.key AND c.worker = $1",
            &[&worker.0, &run, &keys, &outcomes],
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
        if n == 0 {
            return Ok(Some(Vec::new()));
        }
        let client = self.connect().await?;
        let e = |e: tokio_postgres::Error| self.error(&e);
        let lock = client
            .prepare_cached(
                "SELECT pg_advisory_xact_lock(hashtext('mailplan slots ' || current_schema()
                   || ' ' || $1::text))",
            )
            .await
            .map_err(e)?;
        // Counted by a statement after the lock's: its snapshot sees every slot taken by a
        // transaction that held the lock before.
        let insert = client
            .prepare_cached(
                "INSERT INTO slots (server, worker)
                 SELECT $1, $2 FROM generate_series(1, $3::bigint)
                 WHERE (SELECT count(*) FROM slots s JOIN workers w ON w.id = s.worker
                        WHERE s.server = $1
                          AND w.heartbeat >= clock_timestamp() - $5 * interval '1 millisecond')
                       + $3 <= $4
                 RETURNING id",
            )
            .await
            .map_err(e)?;
        let (n, cap) = (
            i64::try_from(n).unwrap_or(i64::MAX),
            i64::try_from(cap).unwrap_or(i64::MAX),
        );
        // One round trip: the four statements are sent together (tokio-postgres pipelines the
        // requests of one connection polled together); a failure aborts the transaction, and
        // its COMMIT then rolls it back.
        let dead_after = millis(dead_after);
        let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&server];
        let insert_params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&server, &worker.0, &n, &cap, &dead_after];
        let (begun, locked, inserted, committed) = tokio::join!(
            client.batch_execute("BEGIN"),
            client.execute(&lock, &lock_params),
            client.query(&insert, &insert_params),
            client.batch_execute("COMMIT"),
        );
        begun.map_err(e)?;
        locked.map_err(e)?;
        let ids: Vec<i64> = inserted.map_err(e)?.iter().map(|r| r.get(0)).collect();
        committed.map_err(e)?;
        Ok((!ids.is_empty()).then_some(ids))
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
