//! The `PostgreSQL` state store: the same records as the `SQLite` one ([`crate::exec::store`]),
//! kept in a database that several `mailplan apply` processes, on several machines, share.
//!
//! Entry points: [`PgTarget::parse`] reads `--state postgres://…` (or `postgresql://…`) and the
//! libpq variables; [`PgStore::open`] (a run that writes) and [`PgStore::open_read_only`]
//! (`status`, `report`) connect, check and migrate; then the operations of `StateStore`, with
//! the same names, semantics and records, as `async fn`s, plus the worker and lease operations
//! that cooperating workers need ([`PgStore::join`], [`PgStore::claim_all`],
//! [`PgStore::end_claim`], [`PgStore::keep_alive`], [`PgStore::retire_worker`]). The commands use it
//! as a [`crate::exec::store::StateStore`] through [`BlockingPgStore`].
//!
//! **Client**: `tokio-postgres` with a `deadpool-postgres` pool. `tokio-postgres` is the
//! maintained native async client the rest of the stack fits (tokio, rustls through
//! `tokio-postgres-rustls`), with no compile-time database and no macro layer; `sqlx` would
//! bring a second query layer and its own TLS and runtime features for the dozen statements here.
//! The pool lets the copy's writes, a lease renewal and a status read run at once without a
//! mutex around one connection.
//!
//! **Where**: `postgres://user@host:port/db?sslmode=…&schema=…`; what the URL leaves out comes
//! from `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`,
//! as with libpq (host `localhost`, user `$USER` when neither says). `sslmode` is libpq's:
//! `disable`; `prefer` (the default) and `require` encrypt without checking the certificate
//! (unless `sslrootcert` is given: then as `verify-ca`); `verify-ca` checks the chain;
//! `verify-full` the chain and the host name. The roots are `sslrootcert` (a PEM file) or the
//! system's (`SSL_CERT_FILE` honoured). The password is never shown: messages name the store by
//! [`PgTarget::shown`], built from the parsed settings without it.
//!
//! **Invariants**: everything lives in one `PostgreSQL` schema of mailplan's own (`schema=`,
//! default `mailplan`, a plain lower-case identifier), set as the connections' `search_path`.
//! Its `schema_version` row says it is mailplan's and which version ([`SCHEMA_VERSION`], older
//! ones migrated in place); its `meta` row the plan it belongs to. Before anything is written,
//! [`PgStore::open`] refuses (and leaves untouched) a schema holding another program's tables,
//! one made by a newer mailplan, and another plan's store. Creation and migration hold a
//! transaction-scoped advisory lock, so workers starting together migrate once. Leases are
//! timed by the database's clock, never the workers', so machines with skewed clocks agree.
//! Secrets are never written: only addresses, folder names, counters and servers' words.

//!
//! Files: `target.rs` reads where the store is (URL, libpq variables, TLS); this file opens,
//! checks and migrates it and holds the records `StateStore` keeps; `leases.rs` the workers and
//! the leases of a shared run; `blocking.rs` the synchronous `StateStore` over all of it.

mod blocking;
mod leases;
mod target;

use std::fmt::Write as _;

use deadpool_postgres::Pool;

use crate::exec::store::{
    FolderRow, IssueRow, LockHolder, SourceCounts, StepRecord, StepStatus, now, timestamp,
};
use crate::graph::StepKind;
use crate::providers::imap::copy::{FolderCounts, FolderRecord, IssueKind};
use crate::providers::imap::identity::MessageFacts;

pub use blocking::BlockingPgStore;
pub use leases::{Claim, Joined, WorkerId, WorkerRow};
use target::Sessions;
pub use target::{DEFAULT_SCHEMA, PgTarget, TlsMode, is_postgres_url};

/// The errors of the `PostgreSQL` store. Every message names the store by its URL without the
/// password; the codes are the `SQLite` store's where the meaning is the same.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PgError {
    #[error("state store {shown}: {message}")]
    #[diagnostic(
        code(exec::state_url),
        help(
            "write it as postgres://USER@HOST:PORT/DATABASE?sslmode=verify-full&schema=mailplan; \
             PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE and PGSSLMODE fill what it leaves out"
        )
    )]
    Url { shown: String, message: String },
    #[error("state store {shown}: cannot connect: {message}")]
    #[diagnostic(
        code(exec::state_unreachable),
        help(
            "check that PostgreSQL runs there and accepts this user (pg_hba.conf), the host and \
             port, the password (in the URL or PGPASSWORD; ~/.pgpass is not read), sslmode, and for \
             a certificate refused, sslrootcert=PATH (or PGSSLROOTCERT): the PEM file of its CA"
        )
    )]
    Unreachable { shown: String, message: String },
    #[error("state store {shown}: {message}")]
    #[diagnostic(code(exec::state))]
    Store { shown: String, message: String },
    #[error("the state {shown} is locked by {host}, pid {pid}, since {since}")]
    #[diagnostic(
        code(exec::locked),
        help(
            "another `mailplan apply` is running on this plan; wait for it, or, if that process \
             is gone (another machine, a reboot), run again with --break-lock"
        )
    )]
    Locked {
        shown: String,
        host: String,
        pid: u32,
        since: String,
    },
    #[error(
        "the schema `{schema}` of {shown} is not a mailplan state store ({what}); it was left \
         untouched"
    )]
    #[diagnostic(
        code(exec::state_foreign),
        help(
            "give mailplan a schema of its own: add schema=NAME to the URL (a new one is created)"
        )
    )]
    Foreign {
        shown: String,
        schema: String,
        what: String,
    },
    #[error(
        "{workers} worker(s) of another version of this plan are running on {shown} \
         ({difference}); this one was refused"
    )]
    #[diagnostic(
        code(exec::state_plan_changed),
        help(
            "every worker of a shared run must run the same plan (and the same --only and \
             --exclude): give this one the plan the others run, or let them finish (or stop \
             them; their leases run out) and start again with the new plan"
        )
    )]
    OtherPlanVersion {
        shown: String,
        workers: usize,
        difference: String,
    },
    #[error(
        "the state store {shown} has schema version {found}, newer than this mailplan's \
         ({supported}); it was left untouched"
    )]
    #[diagnostic(
        code(exec::state_version),
        help("use the mailplan release that wrote it, or a newer one")
    )]
    Newer {
        shown: String,
        found: i64,
        supported: i64,
    },
    #[error(
        "the state store {shown} belongs to the plan `{found}`, not `{plan}`; it was left untouched"
    )]
    #[diagnostic(
        code(exec::state_plan),
        help(
            "each plan keeps its own store: give another schema (schema=NAME in the URL), or run \
             the plan `{found}`"
        )
    )]
    OtherPlan {
        shown: String,
        found: String,
        plan: String,
    },
}

/// The version this mailplan writes in `schema_version`: one per entry of `MIGRATIONS`.
pub const SCHEMA_VERSION: i64 = 4;
/// What `schema_version.application` says in a mailplan store.
const APPLICATION: &str = "mailplan";
/// `MIGRATIONS[v]` takes a store from version `v` to `v + 1` (0: an empty schema). Version 1:
/// the `SQLite` store's tables at its version 2 (folder records with routes), the `workers`
/// of a shared run and the lease of each step; `seq` keeps the order steps were first written
/// in, which `SQLite` reads from its `rowid`.
/// Version 2: what the `SQLite` store's versions 3 and 4 added: what names a message left out
/// or refused (date, subject, Message-ID, size; the issues of an older store have none), and
/// the source counts of a historical account in their own tables.
/// Version 3: the claims of the `apply` workers of a shared run (one row per step taken: who
/// holds it and until when, how often it was taken, by whom last, and how it ended in which
/// run), each worker's run, the IMAP connection slots each worker holds (one row each), and the
/// next turn of a request pace all workers share (the OVH API's), and the OVH placeholders the
/// workers of a run claimed.
/// Version 4: the lease columns of `steps` (a first lease design, before claims) dropped.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE schema_version (
    id INTEGER PRIMARY KEY CHECK (id = 1), application TEXT NOT NULL, version BIGINT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE lock (
    id INTEGER PRIMARY KEY CHECK (id = 1), host TEXT NOT NULL, pid BIGINT NOT NULL,
    since TEXT NOT NULL);
CREATE TABLE workers (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, host TEXT NOT NULL, pid BIGINT NOT NULL,
    started TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    heartbeat TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
CREATE TABLE steps (
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    key TEXT PRIMARY KEY, account TEXT, kind TEXT NOT NULL, fingerprint TEXT NOT NULL,
    status TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, started_at BIGINT,
    finished_at BIGINT, duration_ms BIGINT, output TEXT, error TEXT,
    leased_by BIGINT REFERENCES workers (id) ON DELETE SET NULL, lease_until TIMESTAMPTZ);
CREATE INDEX steps_leases ON steps (leased_by) WHERE leased_by IS NOT NULL;
CREATE TABLE folders (
    account TEXT NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL,
    route TEXT NOT NULL DEFAULT '',
    uidvalidity BIGINT NOT NULL DEFAULT 0, last_uid BIGINT NOT NULL DEFAULT 0,
    pending BOOLEAN NOT NULL DEFAULT FALSE, failed_now BIGINT NOT NULL DEFAULT 0,
    copied BIGINT NOT NULL DEFAULT 0, failed BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0, updated_at BIGINT,
    PRIMARY KEY (account, source));
CREATE TABLE issues (
    account TEXT NOT NULL, folder TEXT NOT NULL, uid BIGINT NOT NULL, kind TEXT NOT NULL,
    detail TEXT NOT NULL, PRIMARY KEY (account, folder, uid));
",
    "
ALTER TABLE issues ADD COLUMN date TEXT, ADD COLUMN subject TEXT, ADD COLUMN message_id TEXT,
    ADD COLUMN size BIGINT;
CREATE TABLE source_counts (account TEXT PRIMARY KEY, counted_at BIGINT);
CREATE TABLE source_folder_counts (
    account TEXT NOT NULL REFERENCES source_counts (account), folder TEXT NOT NULL,
    messages BIGINT NOT NULL, PRIMARY KEY (account, folder));
",
    "
ALTER TABLE workers ADD COLUMN run BIGINT, ADD COLUMN label TEXT;
CREATE TABLE claims (
    key TEXT PRIMARY KEY, worker BIGINT REFERENCES workers (id) ON DELETE SET NULL,
    lease_until TIMESTAMPTZ, taken BIGINT NOT NULL DEFAULT 0, taken_by TEXT, run BIGINT,
    outcome TEXT);
CREATE INDEX claims_workers ON claims (worker) WHERE worker IS NOT NULL;
CREATE TABLE slots (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, server TEXT NOT NULL,
    worker BIGINT NOT NULL REFERENCES workers (id) ON DELETE CASCADE);
CREATE INDEX slots_servers ON slots (server);
CREATE TABLE pace (name TEXT PRIMARY KEY, next_at TIMESTAMPTZ NOT NULL);
CREATE TABLE placeholders (address TEXT PRIMARY KEY, run BIGINT NOT NULL, worker TEXT NOT NULL);
",
    "
DROP INDEX steps_leases;
ALTER TABLE steps DROP COLUMN leased_by, DROP COLUMN lease_until;
",
];

/// The store. `Sync`: its pools serve concurrent callers.
///
/// Two pools, as the `SQLite` store syncs only some commits to disk: `pool`'s commits return
/// before the WAL is flushed (`synchronous_commit=off`: a crash of the server may lose the last
/// fraction of a second of them, which the next run redoes or reconciles: a step or a batch's
/// record, an issue, a heartbeat), `durable`'s only once it is on disk, for what must survive a
/// crash of the server to keep mail from being sent twice: the batch marker written before a
/// group's first APPEND, a worker's claim on a step or a placeholder, and the schema.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: Pool,
    durable: Pool,
    shown: String,
}

/// The pool size of a store that writes: the copy's writes, the lease renewals and a read.
const POOL_SIZE: usize = 8;
/// The durable pool's: batch markers and claims.
const DURABLE_POOL_SIZE: usize = 4;

impl PgStore {
    /// Connect (creating the schema when there is none) for a run of the plan `plan` that
    /// writes. Refuses, before writing anything, a schema that is not mailplan's, one of a newer
    /// mailplan, another plan's store; migrates an older schema.
    pub async fn open(target: &PgTarget, plan: &str) -> Result<PgStore, PgError> {
        let store = PgStore {
            pool: target.pool(POOL_SIZE, Sessions::Prompt)?,
            durable: target.pool(DURABLE_POOL_SIZE, Sessions::Durable)?,
            shown: target.shown().to_owned(),
        };
        let mut client = store.connect_durable().await?;
        let tx = client.transaction().await.map_err(|e| store.error(&e))?;
        // Workers that start together: one creates or migrates, the others wait and then see it.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('mailplan store ' || $1::text))",
            &[&target.schema()],
        )
        .await
        .map_err(|e| store.error(&e))?;
        let version = match store.inspect(&tx, target.schema()).await? {
            Found::Nothing => 0,
            Found::Store { version, plan: p } => {
                store.check_identity(version, p, plan)?;
                version
            }
        };
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", target.schema()))
            .await
            .map_err(|e| store.error(&e))?;
        for (v, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            tx.batch_execute(sql).await.map_err(|e| store.error(&e))?;
            let next = i64::try_from(v + 1).unwrap_or(i64::MAX);
            tx.execute(
                "INSERT INTO schema_version (id, application, version) VALUES (1, $1, $2)
                 ON CONFLICT (id) DO UPDATE SET version = $2",
                &[&APPLICATION, &next],
            )
            .await
            .map_err(|e| store.error(&e))?;
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('plan_name', $1)
             ON CONFLICT (key) DO UPDATE SET value = $1",
            &[&plan],
        )
        .await
        .map_err(|e| store.error(&e))?;
        tx.commit().await.map_err(|e| store.error(&e))?;
        Ok(store)
    }

    /// Connect to an existing store of the plan `plan` without writing anything (`status`,
    /// `report`, dry runs): `None` when there is none yet; the same refusals as
    /// [`PgStore::open`]. The server itself refuses writes on these connections.
    pub async fn open_read_only(target: &PgTarget, plan: &str) -> Result<Option<PgStore>, PgError> {
        let pool = target.pool(2, Sessions::ReadOnly)?;
        let store = PgStore {
            durable: pool.clone(),
            pool,
            shown: target.shown().to_owned(),
        };
        let client = store.connect().await?;
        match store.inspect(&client, target.schema()).await? {
            Found::Nothing => Ok(None),
            Found::Store { version, plan: p } => {
                store.check_identity(version, p, plan)?;
                drop(client);
                Ok(Some(store))
            }
        }
    }

    /// The store as messages name it (the URL without the password).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// How each pool's sessions commit, as the server says (`SHOW synchronous_commit`): the
    /// ordinary pool's, then the durable one's (see [`PgStore`]). For tests and diagnosis.
    pub async fn commit_settings(&self) -> Result<(String, String), PgError> {
        let show = |client: deadpool_postgres::Object| async move {
            client
                .query_one("SHOW synchronous_commit", &[])
                .await
                .map(|r| r.get::<_, String>(0))
                .map_err(|e| self.error(&e))
        };
        Ok((
            show(self.connect().await?).await?,
            show(self.connect_durable().await?).await?,
        ))
    }

    async fn connect(&self) -> Result<deadpool_postgres::Object, PgError> {
        self.connect_to(&self.pool).await
    }

    /// A session whose commits return once they are on disk (see [`PgStore`]).
    async fn connect_durable(&self) -> Result<deadpool_postgres::Object, PgError> {
        self.connect_to(&self.durable).await
    }

    async fn connect_to(&self, pool: &Pool) -> Result<deadpool_postgres::Object, PgError> {
        pool.get().await.map_err(|e| {
            let message = match e {
                deadpool_postgres::PoolError::Backend(e) => words(&e),
                other => other.to_string(),
            };
            PgError::Unreachable {
                shown: self.shown.clone(),
                message,
            }
        })
    }

    fn error(&self, e: &tokio_postgres::Error) -> PgError {
        PgError::Store {
            shown: self.shown.clone(),
            message: words(e),
        }
    }

    /// What the schema holds, read without writing anything.
    async fn inspect(
        &self,
        client: &impl deadpool_postgres::GenericClient,
        schema: &str,
    ) -> Result<Found, PgError> {
        let tables: Vec<String> = client
            .query(
                "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = $1
                 ORDER BY tablename",
                &[&schema],
            )
            .await
            .map_err(|e| self.error(&e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if tables.is_empty() {
            return Ok(Found::Nothing);
        }
        let foreign = |what: String| PgError::Foreign {
            shown: self.shown.clone(),
            schema: schema.to_owned(),
            what,
        };
        if !tables.iter().any(|t| t == "schema_version") {
            let mut named: Vec<&str> = tables.iter().map(String::as_str).collect();
            named.truncate(5);
            return Err(foreign(format!(
                "it holds another program's tables: {}",
                named.join(", ")
            )));
        }
        let row = client
            .query_opt(
                "SELECT application, version FROM schema_version WHERE id = 1",
                &[],
            )
            .await
            .map_err(|e| foreign(words(&e)))?;
        let Some(row) = row else {
            return Err(foreign("its schema_version table is empty".to_owned()));
        };
        let (application, version): (String, i64) = (row.get(0), row.get(1));
        if application != APPLICATION {
            return Err(foreign(format!("its schema_version says `{application}`")));
        }
        let plan = if tables.iter().any(|t| t == "meta") {
            client
                .query_opt("SELECT value FROM meta WHERE key = 'plan_name'", &[])
                .await
                .map_err(|e| self.error(&e))?
                .map(|r| r.get(0))
        } else {
            None
        };
        Ok(Found::Store { version, plan })
    }

    fn check_identity(
        &self,
        version: i64,
        found: Option<String>,
        plan: &str,
    ) -> Result<(), PgError> {
        if version > SCHEMA_VERSION {
            return Err(PgError::Newer {
                shown: self.shown.clone(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        match found {
            Some(found) if found != plan => Err(PgError::OtherPlan {
                shown: self.shown.clone(),
                found,
                plan: plan.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, PgError> {
        self.execute_on(self.connect().await?, sql, params).await
    }

    /// [`PgStore::execute`] on a session whose commit returns once it is on disk.
    async fn execute_durable(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, PgError> {
        self.execute_on(self.connect_durable().await?, sql, params)
            .await
    }

    async fn execute_on(
        &self,
        client: deadpool_postgres::Object,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, PgError> {
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.error(&e))?;
        client
            .execute(&statement, params)
            .await
            .map_err(|e| self.error(&e))
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, PgError> {
        self.query_on(self.connect().await?, sql, params).await
    }

    /// [`PgStore::query`] on a session whose commit returns once it is on disk (a write that
    /// returns rows).
    pub(super) async fn query_durable(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, PgError> {
        self.query_on(self.connect_durable().await?, sql, params)
            .await
    }

    async fn query_on(
        &self,
        client: deadpool_postgres::Object,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, PgError> {
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.error(&e))?;
        client
            .query(&statement, params)
            .await
            .map_err(|e| self.error(&e))
    }

    /// Take the run lock, or say who holds it. A lock left by a dead process of this host is
    /// taken over; `force` takes over any lock. (A shared run's workers take leases instead.)
    pub async fn lock(&self, host: &str, pid: u32, force: bool) -> Result<(), PgError> {
        let mut client = self.connect().await?;
        let tx = client.transaction().await.map_err(|e| self.error(&e))?;
        // Row locks cannot guard a row that is not there yet: lock the table for this one
        // short transaction, as SQLite's IMMEDIATE transaction does.
        tx.batch_execute("LOCK TABLE lock IN EXCLUSIVE MODE")
            .await
            .map_err(|e| self.error(&e))?;
        let held = tx
            .query_opt("SELECT host, pid, since FROM lock WHERE id = 1", &[])
            .await
            .map_err(|e| self.error(&e))?;
        if let Some(row) = held {
            let holder = LockHolder {
                host: row.get(0),
                pid: to_u32(row.get(1)),
                since: row.get(2),
            };
            let stale = holder.host == host && (holder.pid == pid || !holder.alive(host));
            if !stale && !force {
                return Err(PgError::Locked {
                    shown: self.shown.clone(),
                    host: holder.host,
                    pid: holder.pid,
                    since: holder.since,
                });
            }
        }
        tx.execute(
            "INSERT INTO lock (id, host, pid, since) VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET host = $1, pid = $2, since = $3",
            &[&host, &i64::from(pid), &timestamp(now())],
        )
        .await
        .map_err(|e| self.error(&e))?;
        tx.commit().await.map_err(|e| self.error(&e))
    }

    /// Who holds the run lock, if anyone.
    pub async fn lock_holder(&self) -> Result<Option<LockHolder>, PgError> {
        Ok(self
            .query("SELECT host, pid, since FROM lock WHERE id = 1", &[])
            .await?
            .first()
            .map(|r| LockHolder {
                host: r.get(0),
                pid: to_u32(r.get(1)),
                since: r.get(2),
            }))
    }

    pub async fn unlock(&self, pid: u32) -> Result<(), PgError> {
        self.execute("DELETE FROM lock WHERE pid = $1", &[&i64::from(pid)])
            .await
            .map(drop)
    }

    pub async fn meta(&self, key: &str) -> Result<Option<String>, PgError> {
        Ok(self
            .query("SELECT value FROM meta WHERE key = $1", &[&key])
            .await?
            .first()
            .map(|r| r.get(0)))
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), PgError> {
        self.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = $2",
            &[&key, &value],
        )
        .await
        .map(drop)
    }

    pub async fn step(&self, key: &str) -> Result<Option<StepRecord>, PgError> {
        self.query(
            "SELECT key, account, kind, fingerprint, status, attempts, started_at, \
                 finished_at, duration_ms, output, error FROM steps WHERE key = $1",
            &[&key],
        )
        .await?
        .first()
        .map(|r| self.step_row(r))
        .transpose()
    }

    /// Every step, in the order they were first written.
    pub async fn steps(&self) -> Result<Vec<StepRecord>, PgError> {
        self.query(
            "SELECT key, account, kind, fingerprint, status, attempts, started_at, \
             finished_at, duration_ms, output, error FROM steps ORDER BY seq",
            &[],
        )
        .await?
        .iter()
        .map(|r| self.step_row(r))
        .collect()
    }

    /// A step starts: status `running`, one more attempt (the first of a new round after
    /// `done`).
    pub async fn step_started(
        &self,
        key: &str,
        account: Option<&str>,
        kind: &str,
        fingerprint: &str,
    ) -> Result<(), PgError> {
        self.execute(
            "INSERT INTO steps (key, account, kind, fingerprint, status, attempts, started_at)
             VALUES ($1, $2, $3, $4, 'running', 1, $5)
             ON CONFLICT (key) DO UPDATE SET fingerprint = $4, status = 'running',
               attempts = CASE WHEN steps.status = 'done' THEN 1 ELSE steps.attempts + 1 END,
               started_at = $5, finished_at = NULL, error = NULL",
            &[&key, &account, &kind, &fingerprint, &now()],
        )
        .await
        .map(drop)
    }

    /// A running step tries again after a network error or a "try later" answer.
    pub async fn step_retried(&self, key: &str) -> Result<(), PgError> {
        self.execute(
            "UPDATE steps SET attempts = attempts + 1 WHERE key = $1",
            &[&key],
        )
        .await
        .map(drop)
    }

    /// A step ends (`done`, `failed`, `skipped`, `interrupted`).
    pub async fn step_finished(
        &self,
        key: &str,
        status: &str,
        duration_ms: Option<i64>,
        output: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), PgError> {
        self.execute(
            "UPDATE steps SET status = $2, finished_at = $3, duration_ms = $4,
               output = COALESCE($5, output), error = $6 WHERE key = $1",
            &[&key, &status, &now(), &duration_ms, &output, &error],
        )
        .await
        .map(drop)
    }

    /// A step that never started because a dependency failed.
    pub async fn step_skipped(
        &self,
        key: &str,
        account: Option<&str>,
        kind: &str,
        fingerprint: &str,
        reason: &str,
    ) -> Result<(), PgError> {
        self.execute(
            "INSERT INTO steps (key, account, kind, fingerprint, status, error)
             VALUES ($1, $2, $3, $4, 'skipped', $5)
             ON CONFLICT (key) DO UPDATE SET status = 'skipped', error = $5
             WHERE steps.status <> 'done'",
            &[&key, &account, &kind, &fingerprint, &reason],
        )
        .await
        .map(drop)
    }

    /// The batch marker, written before a group's first APPEND: committed and on disk (a
    /// durable session: the WAL is flushed before the commit returns) before any message is
    /// sent. The folder is pending, and its record then belongs to `route` and
    /// `target`.
    pub async fn begin_batch(
        &self,
        account: &str,
        source: &str,
        target: &str,
        route: &str,
        uidvalidity: u32,
    ) -> Result<(), PgError> {
        self.execute_durable(
            "INSERT INTO folders (account, source, target, route, uidvalidity, pending,
               updated_at)
             VALUES ($1, $2, $3, $6, $4, TRUE, $5)
             ON CONFLICT (account, source) DO UPDATE SET target = $3, route = $6,
               pending = TRUE, updated_at = $5",
            &[
                &account,
                &source,
                &target,
                &i64::from(uidvalidity),
                &now(),
                &route,
            ],
        )
        .await
        .map(drop)
    }

    /// After a batch (or a pass that had nothing to send): the folder's new mark along `route`
    /// to `target`, and what the batch did (added to the totals).
    pub async fn end_batch(
        &self,
        account: &str,
        source: &str,
        target: &str,
        route: &str,
        record: FolderRecord,
        counts: &FolderCounts,
    ) -> Result<(), PgError> {
        self.execute(
            "INSERT INTO folders (account, source, target, route, uidvalidity, last_uid,
               pending, failed_now, copied, failed, bytes, updated_at)
             VALUES ($1, $2, $11, $12, $3, $4, $10, $5, $6, $7, $8, $9)
             ON CONFLICT (account, source) DO UPDATE SET target = $11, route = $12,
               uidvalidity = $3, last_uid = $4, pending = $10, failed_now = $5,
               copied = folders.copied + $6, failed = folders.failed + $7,
               bytes = folders.bytes + $8, updated_at = $9",
            &[
                &account,
                &source,
                &i64::from(record.uidvalidity),
                &i64::from(record.last_uid),
                &to_i64(record.failed),
                &to_i64(counts.copied),
                &to_i64(counts.failed),
                &to_i64(counts.bytes),
                &now(),
                &record.pending,
                &target,
                &route,
            ],
        )
        .await
        .map(drop)
    }

    pub async fn issue(
        &self,
        account: &str,
        folder: &str,
        uid: u32,
        kind: IssueKind,
        detail: &str,
        message: &MessageFacts,
    ) -> Result<(), PgError> {
        self.execute(
            "INSERT INTO issues (account, folder, uid, kind, detail, date, subject, message_id,
               size) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (account, folder, uid) DO UPDATE SET kind = $4, detail = $5, date = $6,
               subject = $7, message_id = $8, size = $9",
            &[
                &account,
                &folder,
                &i64::from(uid),
                &kind.name(),
                &detail,
                &message.date,
                &message.subject,
                &message.message_id,
                &message.size.map(to_i64),
            ],
        )
        .await
        .map(drop)
    }

    pub async fn clear_issues(&self, account: &str, folder: &str) -> Result<(), PgError> {
        self.execute(
            "DELETE FROM issues WHERE account = $1 AND folder = $2",
            &[&account, &folder],
        )
        .await
        .map(drop)
    }

    pub async fn folders(&self, account: &str) -> Result<Vec<FolderRow>, PgError> {
        Ok(self
            .query(
                "SELECT account, source, target, uidvalidity, last_uid, pending, failed_now,
                   copied, failed, bytes, route FROM folders WHERE account = $1 ORDER BY source",
                &[&account],
            )
            .await?
            .iter()
            .map(|r| FolderRow {
                account: r.get(0),
                source: r.get(1),
                target: r.get(2),
                record: FolderRecord {
                    uidvalidity: to_u32(r.get(3)),
                    last_uid: to_u32(r.get(4)),
                    pending: r.get(5),
                    failed: to_u64(r.get(6)),
                },
                copied: to_u64(r.get(7)),
                failed: to_u64(r.get(8)),
                bytes: to_u64(r.get(9)),
                route: r.get(10),
            })
            .collect())
    }

    pub async fn issue_folders(&self, account: &str) -> Result<Vec<String>, PgError> {
        Ok(self
            .query(
                "SELECT DISTINCT folder FROM issues WHERE account = $1",
                &[&account],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    pub async fn issues(&self, account: &str) -> Result<Vec<IssueRow>, PgError> {
        Ok(self
            .query(
                "SELECT account, folder, uid, kind, detail, date, subject, message_id, size
                 FROM issues WHERE account = $1 ORDER BY folder, uid",
                &[&account],
            )
            .await?
            .iter()
            .map(|r| IssueRow {
                account: r.get(0),
                folder: r.get(1),
                uid: to_u32(r.get(2)),
                kind: r.get(3),
                detail: r.get(4),
                message: MessageFacts {
                    date: r.get(5),
                    subject: r.get(6),
                    message_id: r.get(7),
                    size: r.get::<_, Option<i64>>(8).map(to_u64),
                },
            })
            .collect())
    }

    /// The source counts kept for `account`, if it was counted.
    pub async fn source_counts(&self, account: &str) -> Result<Option<SourceCounts>, PgError> {
        let counted = self
            .query(
                "SELECT 1 FROM source_counts WHERE account = $1",
                &[&account],
            )
            .await?;
        if counted.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            self.query(
                "SELECT folder, messages FROM source_folder_counts WHERE account = $1",
                &[&account],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), to_u32(r.get(1))))
            .collect(),
        ))
    }

    /// Keep `counts` for `account` unless it was counted before (the first count is the one
    /// `verify` compares with).
    pub async fn keep_source_counts(
        &self,
        account: &str,
        counts: &SourceCounts,
    ) -> Result<(), PgError> {
        let mut client = self.connect().await?;
        let tx = client.transaction().await.map_err(|e| self.error(&e))?;
        let new = tx
            .execute(
                "INSERT INTO source_counts (account, counted_at) VALUES ($1, $2)
                 ON CONFLICT (account) DO NOTHING",
                &[&account, &now()],
            )
            .await
            .map_err(|e| self.error(&e))?;
        if new == 1 {
            for (folder, messages) in counts {
                tx.execute(
                    "INSERT INTO source_folder_counts (account, folder, messages)
                     VALUES ($1, $2, $3)",
                    &[&account, folder, &i64::from(*messages)],
                )
                .await
                .map_err(|e| self.error(&e))?;
            }
        }
        tx.commit().await.map_err(|e| self.error(&e))
    }
}

/// What a schema holds.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Nothing,
    Store { version: i64, plan: Option<String> },
}

impl PgStore {
    /// A `steps` row; a kind or status this mailplan does not know is an error, never a guess.
    fn step_row(&self, r: &tokio_postgres::Row) -> Result<StepRecord, PgError> {
        let unknown = |what: &str, text: &str| PgError::Store {
            shown: self.shown.clone(),
            message: format!("a step has the unknown {what} `{text}`"),
        };
        let (kind, status): (String, String) = (r.get(2), r.get(4));
        Ok(StepRecord {
            key: r.get(0),
            account: r.get(1),
            kind: StepKind::parse(&kind).ok_or_else(|| unknown("kind", &kind))?,
            fingerprint: r.get(3),
            status: StepStatus::parse(&status).ok_or_else(|| unknown("status", &status))?,
            attempts: to_u32(r.get(5)),
            started_at: r.get(6),
            finished_at: r.get(7),
            duration_ms: r.get(8),
            output: r.get(9),
            error: r.get(10),
        })
    }
}

/// The columns are `BIGINT` for `u32` and `u64` values mailplan wrote itself: in range.
pub(super) fn to_u32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or_default()
}

pub(super) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A client error in plain words: the server's message (and detail) for a database error,
/// else the error and its causes (`error connecting to server: Connection refused`).
fn words(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            let _ = write!(text, " ({detail})");
        }
        return text;
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            let _ = write!(text, ": {said}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_is_one_migration_per_schema_version() {
        assert_eq!(i64::try_from(MIGRATIONS.len()), Ok(SCHEMA_VERSION));
    }
}
