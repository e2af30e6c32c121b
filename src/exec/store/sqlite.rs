//! The state store: one `SQLite` file per plan (`.mailplan/<plan name>.db` beside the plan, mode
//! 0600) recording the plan's fingerprint, every step's status, attempts, timings, output and
//! error, each folder's copy progress, and every message left out or refused with the reason.
//!
//! Every write is one transaction (WAL journal), so a crash at any instant leaves the store
//! consistent: the last committed batch is the truth, and the copy reconciles anything after it.
//! Secrets are never written here: only addresses, folder names, counters and servers' words.
//!
//! A store knows itself: `PRAGMA application_id` says it is mailplan's ([`APPLICATION_ID`]),
//! `PRAGMA user_version` its schema version ([`SCHEMA_VERSION`], older ones migrated in place),
//! and its `meta` table the plan it belongs to. Before anything is written, [`StateStore::open`]
//! refuses (and leaves untouched) a file that is not a mailplan store, one made by a newer
//! mailplan, another plan's store, a symbolic link, and a file or `.mailplan/` folder that
//! others may read or change (see [`check_place`]). The batch marker written before each
//! APPEND group ([`StateStore::begin_batch`]) is synced to disk, so a power cut cannot lose it.
//!
//! A folder's record belongs to one *route*: the source mailbox (login and server) and the
//! target mailbox and folder it was copied to. It is only found again for that same route, so a
//! plan edited between runs (another `target-login`, target server or platform, a `map` entry)
//! makes the next pass compare the folder with its new target instead of trusting a mark that
//! was earned elsewhere.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, ToSql, TransactionBehavior, params};

use super::place::{check_owner, check_place, create_private, restrict};
use super::schema::{APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, TABLES_V0};
use super::{
    FolderRow, IssueRow, LockHolder, SourceCounts, StateError, StateStore, StepRecord, StepStatus,
    now, process_alive, timestamp,
};
use crate::graph::StepKind;
use crate::providers::imap::copy::{FolderCounts, FolderRecord, IssueKind};
use crate::providers::imap::identity::MessageFacts;

/// What is at a state path, read without writing anything.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Nothing,
    /// Version 0 or later, the plan it belongs to if recorded.
    Store {
        version: i64,
        plan: Option<String>,
    },
}

/// The `SQLite` backend of [`StateStore`]. Its one connection is behind a mutex: every method
/// is one statement or one transaction under it, so callers share the store freely.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Whether `folders` has its `route` column (a store written before it has none until a
    /// run that writes opens it; read only, its records are then never trusted).
    routes: bool,
    /// Whether the source counts have their tables (schema version 4); a read-only store of an
    /// older version has them in `meta`.
    counts_table: bool,
}

impl SqliteStore {
    /// Open (creating it, mode 0600 in a 0700 folder) for a run of the plan `plan` that writes.
    /// Refuses, before writing anything, what is not this plan's store or is not safe to use
    /// (see the module doc); migrates an older schema.
    pub fn open(path: &Path, plan: &str) -> Result<SqliteStore, StateError> {
        let err = |m: String| StateError::Store {
            path: path.to_owned(),
            message: m,
        };
        check_place(path)?;
        let version = match inspect(path)? {
            Found::Nothing => 0,
            Found::Store { version, plan: p } => {
                check_identity(path, version, p, plan)?;
                version
            }
        };
        check_owner(path)?;
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            fs_err::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            restrict(dir, 0o700).map_err(|e| err(e.to_string()))?;
        }
        if !path.exists() {
            // Create it 0600 before SQLite does; its journal files copy these permissions.
            create_private(path).map_err(|e| err(e.to_string()))?;
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )
        .map_err(|e| err(e.to_string()))?;
        let mut store = SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            routes: true,
            counts_table: true,
        };
        store
            .conn()?
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| store.error(&e))?;
        store
            .conn()?
            // WAL with NORMAL: a commit survives the process being killed at any instant (it is
            // in the log before the call returns); only an OS crash or power loss may drop the
            // last commits, and every step re-reads the remote state before acting, so that
            // costs a reconcile, never a lost or duplicated message. FULL would fsync every
            // batch: with many small accounts the store, not the servers, became the limit.
            // The one write a power cut must not lose, the batch marker, is synced on its own
            // (`begin_batch`).
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(|e| store.error(&e))?;
        store.migrate(version)?;
        store.routes = true;
        store.set_meta("plan_name", plan)?;
        Ok(store)
    }

    /// Bring the schema from `version` to [`SCHEMA_VERSION`], one transaction per step, and mark
    /// the file as mailplan's.
    fn migrate(&self, version: i64) -> Result<(), StateError> {
        let path = self.path.clone();
        let e = |e: rusqlite::Error| StateError::Store {
            path: path.clone(),
            message: e.to_string(),
        };
        for (v, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            let mut conn = self.conn()?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(e)?;
            tx.execute_batch(sql).map_err(e)?;
            tx.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {};",
                v + 1
            ))
            .map_err(e)?;
            tx.commit().map_err(e)?;
        }
        Ok(())
    }

    fn has_table(&self, name: &str) -> Result<bool, StateError> {
        self.conn()?
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                params![name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| self.error(&e))
    }

    fn has_routes(&self) -> Result<bool, StateError> {
        self.conn()?
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('folders') WHERE name = 'route'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| self.error(&e))
    }

    /// Open an existing store of the plan `plan` without writing anything (`status`, `report`,
    /// dry runs); the same refusals as [`SqliteStore::open`].
    pub fn open_read_only(path: &Path, plan: &str) -> Result<Option<SqliteStore>, StateError> {
        check_place(path)?;
        match inspect(path)? {
            Found::Nothing => return Ok(None),
            Found::Store { version, plan: p } => check_identity(path, version, p, plan)?,
        }
        check_owner(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )
        .map_err(|e| StateError::Store {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut store = SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            routes: false,
            counts_table: false,
        };
        store.routes = store.has_routes()?;
        store.counts_table = store.has_table("source_counts")?;
        Ok(Some(store))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for one statement or one transaction.
    fn conn(&self) -> Result<MutexGuard<'_, Connection>, StateError> {
        self.conn.lock().map_err(|_| StateError::Store {
            path: self.path.clone(),
            message: "a thread panicked while writing to it".to_owned(),
        })
    }

    fn error(&self, e: &rusqlite::Error) -> StateError {
        StateError::Store {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }
}

impl StateStore for SqliteStore {
    /// Take the run lock, or say who holds it. A lock left by a dead process of this host is
    /// taken over; `force` takes over any lock.
    fn lock(&self, host: &str, pid: u32, force: bool) -> Result<(), StateError> {
        let path = self.path.clone();
        let e = |e: rusqlite::Error| StateError::Store {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let held: Option<(String, u32, String)> = tx
            .query_row("SELECT host, pid, since FROM lock WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(e)?;
        if let Some((h, p, since)) = held {
            let stale = h == host && (p == pid || !process_alive(p));
            if !stale && !force {
                return Err(StateError::Locked {
                    path: self.path.clone(),
                    host: h,
                    pid: p,
                    since,
                });
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO lock (id, host, pid, since) VALUES (1, ?1, ?2, ?3)",
            params![host, pid, timestamp(now())],
        )
        .map_err(e)?;
        tx.commit().map_err(e)
    }

    /// Who holds the run lock, if anyone: a running `apply`, or one that died without
    /// releasing it.
    fn lock_holder(&self) -> Result<Option<LockHolder>, StateError> {
        self.conn()?
            .query_row("SELECT host, pid, since FROM lock WHERE id = 1", [], |r| {
                Ok(LockHolder {
                    host: r.get(0)?,
                    pid: r.get(1)?,
                    since: r.get(2)?,
                })
            })
            .optional()
            .map_err(|e| self.error(&e))
    }

    fn unlock(&self, pid: u32) -> Result<(), StateError> {
        self.conn()?
            .execute("DELETE FROM lock WHERE pid = ?1", params![pid])
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StateError> {
        self.conn()?
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.error(&e))
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StateError> {
        self.conn()?
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    fn step(&self, key: &str) -> Result<Option<StepRecord>, StateError> {
        self.conn()?
            .query_row(
                "SELECT key, account, kind, fingerprint, status, attempts, started_at, \
                 finished_at, duration_ms, output, error FROM steps WHERE key = ?1",
                params![key],
                step_row,
            )
            .optional()
            .map_err(|e| self.error(&e))
    }

    fn steps(&self) -> Result<Vec<StepRecord>, StateError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare(
                "SELECT key, account, kind, fingerprint, status, attempts, started_at, \
                 finished_at, duration_ms, output, error FROM steps ORDER BY rowid",
            )
            .map_err(|e| self.error(&e))?;
        let rows = stmt
            .query_map([], step_row)
            .map_err(|e| self.error(&e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error(&e))?;
        Ok(rows)
    }

    /// A step starts: status `running`, one more attempt.
    fn step_started(
        &self,
        key: &str,
        account: Option<&str>,
        kind: StepKind,
        fingerprint: &str,
    ) -> Result<(), StateError> {
        self.conn()?
            .execute(
                "INSERT INTO steps (key, account, kind, fingerprint, status, attempts, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?6, 1, ?5)
                 ON CONFLICT (key) DO UPDATE SET fingerprint = ?4, status = ?6,
                   attempts = CASE WHEN status = ?7 THEN 1 ELSE attempts + 1 END,
                   started_at = ?5, finished_at = NULL, error = NULL",
                params![
                    key,
                    account,
                    kind,
                    fingerprint,
                    now(),
                    StepStatus::Running,
                    StepStatus::Done
                ],
            )
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    /// A running step tries again after a network error or a "try later" answer.
    fn step_retried(&self, key: &str) -> Result<(), StateError> {
        self.conn()?
            .execute(
                "UPDATE steps SET attempts = attempts + 1 WHERE key = ?1",
                params![key],
            )
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    /// A step ends (`done`, `failed`, `skipped`, `interrupted`).
    fn step_finished(
        &self,
        key: &str,
        status: StepStatus,
        duration_ms: Option<i64>,
        output: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        self.conn()?
            .execute(
                "UPDATE steps SET status = ?2, finished_at = ?3, duration_ms = ?4,
                   output = COALESCE(?5, output), error = ?6 WHERE key = ?1",
                params![key, status, now(), duration_ms, output, error],
            )
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    /// A step that never started because a dependency failed.
    fn step_skipped(
        &self,
        key: &str,
        account: Option<&str>,
        kind: StepKind,
        fingerprint: &str,
        reason: &str,
    ) -> Result<(), StateError> {
        self.conn()?
            .execute(
                "INSERT INTO steps (key, account, kind, fingerprint, status, error)
                 VALUES (?1, ?2, ?3, ?4, ?6, ?5)
                 ON CONFLICT (key) DO UPDATE SET status = ?6, error = ?5
                 WHERE status <> ?7",
                params![
                    key,
                    account,
                    kind,
                    fingerprint,
                    reason,
                    StepStatus::Skipped,
                    StepStatus::Done
                ],
            )
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    /// The record of a folder copied along `route` to `target`; none when it was copied along
    /// another route or to another folder (the plan changed since).
    /// The batch marker, written before a group's first APPEND: synced to disk before it
    /// returns (`synchronous = FULL` for this one commit), so that after a power cut the folder
    /// is still known to be pending and is reconciled rather than trusted.
    /// The folder is pending, and its record then belongs to
    /// `route` and `target`.
    fn begin_batch(
        &self,
        account: &str,
        source: &str,
        target: &str,
        route: &str,
        uidvalidity: u32,
    ) -> Result<(), StateError> {
        let conn = self.conn()?;
        conn.execute_batch("PRAGMA synchronous = FULL")
            .map_err(|e| self.error(&e))?;
        let written = conn.execute(
            "INSERT INTO folders (account, source, target, route, uidvalidity, pending,
                   updated_at)
                 VALUES (?1, ?2, ?3, ?6, ?4, 1, ?5)
                 ON CONFLICT (account, source) DO UPDATE SET target = ?3, route = ?6,
                   pending = 1, updated_at = ?5",
            params![account, source, target, uidvalidity, now(), route],
        );
        let normal = conn.execute_batch("PRAGMA synchronous = NORMAL");
        written.map_err(|e| self.error(&e))?;
        normal.map_err(|e| self.error(&e))
    }

    /// After a batch (or a pass that had nothing to send): the folder's new mark along `route`
    /// to `target`, and what the batch did.
    fn end_batch(
        &self,
        account: &str,
        source: &str,
        target: &str,
        route: &str,
        record: FolderRecord,
        counts: &FolderCounts,
    ) -> Result<(), StateError> {
        self.conn()?
            .execute(
                "INSERT INTO folders (account, source, target, route, uidvalidity, last_uid,
                   pending, failed_now, copied, failed, bytes, updated_at)
                 VALUES (?1, ?2, ?11, ?12, ?3, ?4, ?10, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (account, source) DO UPDATE SET target = ?11, route = ?12,
                   uidvalidity = ?3, last_uid = ?4, pending = ?10, failed_now = ?5,
                   copied = copied + ?6, failed = failed + ?7, bytes = bytes + ?8,
                   updated_at = ?9",
                params![
                    account,
                    source,
                    record.uidvalidity,
                    record.last_uid,
                    record.failed,
                    counts.copied,
                    counts.failed,
                    counts.bytes,
                    now(),
                    record.pending,
                    target,
                    route
                ],
            )
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    fn issue(
        &self,
        account: &str,
        folder: &str,
        uid: u32,
        kind: IssueKind,
        detail: &str,
        message: &MessageFacts,
    ) -> Result<(), StateError> {
        self.conn()?
            .execute(
                "INSERT OR REPLACE INTO issues
                   (account, folder, uid, kind, detail, date, subject, message_id, size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    account,
                    folder,
                    uid,
                    kind.name(),
                    detail,
                    message.date,
                    message.subject,
                    message.message_id,
                    message.size
                ],
            )
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    fn clear_issues(&self, account: &str, folder: &str) -> Result<(), StateError> {
        self.conn()?
            .execute(
                "DELETE FROM issues WHERE account = ?1 AND folder = ?2",
                params![account, folder],
            )
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    fn issue_folders(&self, account: &str) -> Result<Vec<String>, StateError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare("SELECT DISTINCT folder FROM issues WHERE account = ?1")
            .map_err(|e| self.error(&e))?;
        stmt.query_map(params![account], |r| r.get(0))
            .map_err(|e| self.error(&e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error(&e))
    }

    fn folders(&self, account: &str) -> Result<Vec<FolderRow>, StateError> {
        let conn = self.conn()?;
        // A store read as it is, from before routes, has no route column: '' (never trusted).
        let route = if self.routes { "route" } else { "''" };
        let mut stmt = conn
            .prepare(&format!(
                "SELECT account, source, target, uidvalidity, last_uid, pending, failed_now,
                   copied, failed, bytes, {route} FROM folders WHERE account = ?1 ORDER BY source"
            ))
            .map_err(|e| self.error(&e))?;
        stmt.query_map(params![account], |r| {
            Ok(FolderRow {
                account: r.get(0)?,
                source: r.get(1)?,
                target: r.get(2)?,
                record: FolderRecord {
                    uidvalidity: r.get(3)?,
                    last_uid: r.get(4)?,
                    pending: r.get(5)?,
                    failed: r.get(6)?,
                },
                copied: r.get(7)?,
                failed: r.get(8)?,
                bytes: r.get(9)?,
                route: r.get(10)?,
            })
        })
        .map_err(|e| self.error(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| self.error(&e))
    }

    fn issues(&self, account: &str) -> Result<Vec<IssueRow>, StateError> {
        let conn = self.conn()?;
        // A store read without writing may be older than the message columns (version 3).
        let named = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('issues') WHERE name = 'message_id'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(|e| self.error(&e))?
            > 0;
        let columns = if named {
            "date, subject, message_id, size"
        } else {
            "NULL, NULL, NULL, NULL"
        };
        let mut stmt = conn
            .prepare(&format!(
                "SELECT account, folder, uid, kind, detail, {columns} FROM issues
                 WHERE account = ?1 ORDER BY folder, uid"
            ))
            .map_err(|e| self.error(&e))?;
        stmt.query_map(params![account], |r| {
            Ok(IssueRow {
                account: r.get(0)?,
                folder: r.get(1)?,
                uid: r.get(2)?,
                kind: r.get(3)?,
                detail: r.get(4)?,
                message: MessageFacts {
                    date: r.get(5)?,
                    subject: r.get(6)?,
                    message_id: r.get(7)?,
                    size: r.get(8)?,
                },
            })
        })
        .map_err(|e| self.error(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| self.error(&e))
    }

    fn source_counts(&self, account: &str) -> Result<Option<SourceCounts>, StateError> {
        if !self.counts_table {
            // A store older than version 4, opened read-only: where that version kept them.
            let kept = self.meta(&format!("source-counts {account}"))?;
            return Ok(kept.and_then(|o| serde_json::from_str(&o).ok()));
        }
        let conn = self.conn()?;
        let counted = conn
            .query_row(
                "SELECT 1 FROM source_counts WHERE account = ?1",
                params![account],
                |_| Ok(()),
            )
            .optional()
            .map_err(|e| self.error(&e))?;
        if counted.is_none() {
            return Ok(None);
        }
        let mut stmt = conn
            .prepare("SELECT folder, messages FROM source_folder_counts WHERE account = ?1")
            .map_err(|e| self.error(&e))?;
        stmt.query_map(params![account], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.error(&e))?
            .collect::<Result<SourceCounts, _>>()
            .map(Some)
            .map_err(|e| self.error(&e))
    }

    fn keep_source_counts(&self, account: &str, counts: &SourceCounts) -> Result<(), StateError> {
        let mut conn = self.conn()?;
        let e = |e: rusqlite::Error| self.error(&e);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let new = tx
            .execute(
                "INSERT OR IGNORE INTO source_counts (account, counted_at) VALUES (?1, ?2)",
                params![account, now()],
            )
            .map_err(e)?;
        if new == 1 {
            let mut insert = tx
                .prepare(
                    "INSERT INTO source_folder_counts (account, folder, messages)
                     VALUES (?1, ?2, ?3)",
                )
                .map_err(e)?;
            for (folder, messages) in counts {
                insert
                    .execute(params![account, folder, messages])
                    .map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }
}

/// What is at `path`, read with a read-only connection (nothing is written, not even a journal
/// mode): nothing (no file, or an empty one), a mailplan store of some version, or a refusal.
fn inspect(path: &Path) -> Result<Found, StateError> {
    let foreign = |what: &str| StateError::Foreign {
        path: path.to_owned(),
        what: what.to_owned(),
    };
    match fs_err::metadata(path) {
        Ok(m) if m.len() == 0 => return Ok(Found::Nothing),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(e) => {
            return Err(StateError::Store {
                path: path.to_owned(),
                message: e.to_string(),
            });
        }
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(|e| foreign(&e.to_string()))?;
    let pragma = |name: &str| -> Result<i64, StateError> {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .map_err(|e| foreign(&e.to_string()))
    };
    let (id, version) = (pragma("application_id")?, pragma("user_version")?);
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| foreign(&e.to_string()))?;
    match id {
        APPLICATION_ID => {}
        0 if version == 0 && tables.iter().all(|t| TABLES_V0.contains(&t.as_str())) => {
            if tables.is_empty() {
                return Ok(Found::Nothing); // an empty database: nothing to lose
            }
        }
        0 => {
            let mut named: Vec<&str> = tables.iter().map(String::as_str).collect();
            named.truncate(5);
            return Err(foreign(&format!(
                "an SQLite database of another program, with the tables {}",
                named.join(", ")
            )));
        }
        other => {
            return Err(foreign(&format!(
                "an SQLite database of another program, application_id {other:#x}"
            )));
        }
    }
    let plan = if tables.iter().any(|t| t == "meta") {
        conn.query_row("SELECT value FROM meta WHERE key = 'plan_name'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| foreign(&e.to_string()))?
    } else {
        None
    };
    Ok(Found::Store { version, plan })
}

/// A mailplan store of `version` that says it belongs to `found`: usable for `plan`?
fn check_identity(
    path: &Path,
    version: i64,
    found: Option<String>,
    plan: &str,
) -> Result<(), StateError> {
    if version > SCHEMA_VERSION {
        return Err(StateError::Newer {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    match found {
        Some(found) if found != plan => Err(StateError::OtherPlan {
            path: path.to_owned(),
            found,
            plan: plan.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// The one conversion of a step's status to and from its SQL text ([`StepStatus::as_str`]).
impl ToSql for StepStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for StepStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        StepStatus::parse(text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown step status `{text}`").into()))
    }
}

/// The one conversion of a step's kind to and from its SQL text ([`StepKind::name`]).
impl ToSql for StepKind {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.name()))
    }
}

impl FromSql for StepKind {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        StepKind::parse(text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown step kind `{text}`").into()))
    }
}

fn step_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StepRecord> {
    Ok(StepRecord {
        key: r.get(0)?,
        account: r.get(1)?,
        kind: r.get(2)?,
        fingerprint: r.get(3)?,
        status: r.get(4)?,
        attempts: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        duration_ms: r.get(8)?,
        output: r.get(9)?,
        error: r.get(10)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::SourceCounts;
    use super::super::schema::SCHEMA;
    use super::*;

    #[test]
    fn batches_are_recorded_and_pending_survives_until_the_batch_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".mailplan/p.db");
        let store = SqliteStore::open(&path, "p").expect("open");
        store
            .begin_batch("a@x", "INBOX", "INBOX", ROUTE, 7)
            .expect("begin");
        let rec = store
            .folder("a@x", "INBOX", "INBOX", ROUTE)
            .expect("read")
            .expect("row");
        assert!(rec.pending);
        let counts = FolderCounts {
            copied: 3,
            bytes: 300,
            ..FolderCounts::default()
        };
        let done = FolderRecord {
            uidvalidity: 7,
            last_uid: 12,
            pending: false,
            failed: 0,
        };
        for _ in 0..2 {
            store
                .end_batch("a@x", "INBOX", "INBOX", ROUTE, done, &counts)
                .expect("end");
        }
        let rows = store.folders("a@x").expect("rows");
        assert_eq!(rows[0].record, done);
        assert_eq!((rows[0].copied, rows[0].bytes), (6, 600));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    fn pragma(path: &Path, name: &str) -> i64 {
        let conn = Connection::open(path).expect("open");
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .expect("pragma")
    }

    #[test]
    fn every_step_kind_and_status_reads_back_as_written_and_a_stranger_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(&path, "p").expect("open");
        for kind in StepKind::ALL {
            for status in StepStatus::ALL {
                let key = format!("{kind} {status}");
                store
                    .step_started(&key, Some("a@x"), kind, "fp")
                    .expect("start");
                store
                    .step_finished(&key, status, Some(1), None, None)
                    .expect("finish");
                let read = store.step(&key).expect("read").expect("row");
                assert_eq!((read.kind, read.status), (kind, status));
            }
        }
        drop(store);
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute("UPDATE steps SET status = 'later'", [])
                .expect("a status of another release");
        }
        let store = SqliteStore::open(&path, "p").expect("open");
        let err = store.steps().expect_err("an unknown status");
        assert!(
            err.to_string().contains("unknown step status `later`"),
            "{err}"
        );
    }

    #[test]
    fn a_version_2_store_with_source_counts_in_meta_is_read_then_migrated_to_their_tables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v2.db");
        {
            // As version 2 wrote it: the counts of a historical account as JSON in `meta`.
            create_private(&path).expect("create");
            let conn = Connection::open(&path).expect("create");
            conn.execute_batch(SCHEMA).expect("schema");
            conn.execute_batch(MIGRATIONS[1]).expect("routes");
            conn.execute_batch(&format!(
                r#"PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 2;
                 INSERT INTO meta (key, value) VALUES ('plan_name', 'p');
                 INSERT INTO meta (key, value) VALUES ('last_run', '2026-11-24T20:10:00Z');
                 INSERT INTO meta (key, value)
                    VALUES ('source-counts mary@x', '{{"INBOX":12,"Sent":3,"a b/é":0}}');
                 INSERT INTO meta (key, value) VALUES ('source-counts empty@x', '{{}}');"#
            ))
            .expect("a version-2 store");
        }
        let mary: SourceCounts = [("INBOX", 12), ("Sent", 3), ("a b/é", 0)]
            .into_iter()
            .map(|(f, n)| (f.to_owned(), n))
            .collect();
        let read = SqliteStore::open_read_only(&path, "p")
            .expect("open")
            .expect("exists");
        assert_eq!(
            read.source_counts("mary@x").expect("read"),
            Some(mary.clone())
        );
        assert_eq!(
            read.source_counts("empty@x").expect("read"),
            Some(SourceCounts::new())
        );
        assert_eq!(read.source_counts("john@x").expect("read"), None);
        drop(read);
        assert_eq!(pragma(&path, "user_version"), 2, "a read changed nothing");

        let store = SqliteStore::open(&path, "p").expect("migrated");
        assert_eq!(pragma(&path, "user_version"), SCHEMA_VERSION);
        assert_eq!(
            store.source_counts("mary@x").expect("read"),
            Some(mary.clone())
        );
        assert_eq!(
            store.source_counts("empty@x").expect("read"),
            Some(SourceCounts::new())
        );
        assert_eq!(store.source_counts("john@x").expect("read"), None);
        assert_eq!(store.meta("source-counts mary@x").expect("meta"), None);
        assert_eq!(
            store.meta("last_run").expect("meta").as_deref(),
            Some("2026-11-24T20:10:00Z"),
            "the rest of meta stays"
        );
    }

    #[test]
    fn the_first_source_count_of_an_account_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("s.db"), "p").expect("open");
        let first: SourceCounts = [("INBOX".to_owned(), 40), ("Sent".to_owned(), 2)].into();
        store.keep_source_counts("mary@x", &first).expect("keep");
        // A run after the migration finds the source emptied: that count is not kept.
        let later: SourceCounts = [("INBOX".to_owned(), 0)].into();
        store.keep_source_counts("mary@x", &later).expect("keep");
        assert_eq!(store.source_counts("mary@x").expect("read"), Some(first));
        store
            .keep_source_counts("none@x", &SourceCounts::new())
            .expect("keep");
        assert_eq!(
            store.source_counts("none@x").expect("read"),
            Some(SourceCounts::new())
        );
    }

    #[test]
    fn there_is_one_migration_per_schema_version() {
        assert_eq!(i64::try_from(MIGRATIONS.len()), Ok(SCHEMA_VERSION));
    }

    #[test]
    fn a_new_store_is_marked_as_mailplans_with_its_version_and_plan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".mailplan/p.db");
        drop(SqliteStore::open(&path, "p").expect("open"));
        assert_eq!(pragma(&path, "application_id"), APPLICATION_ID);
        assert_eq!(pragma(&path, "user_version"), SCHEMA_VERSION);
        let again = SqliteStore::open(&path, "p").expect("open again");
        assert_eq!(again.meta("plan_name").expect("meta").as_deref(), Some("p"));
    }

    #[test]
    fn a_foreign_database_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.db");
        {
            let conn = Connection::open(&path).expect("create");
            conn.execute_batch("CREATE TABLE invoices (id INTEGER, total REAL); INSERT INTO invoices VALUES (1, 9.5);")
                .expect("fill");
        }
        restrict(&path, 0o600).expect("chmod");
        let before = std::fs::read(&path).expect("read");
        let err = SqliteStore::open(&path, "p").expect_err("a foreign file");
        assert!(matches!(err, StateError::Foreign { .. }), "{err:?}");
        assert!(err.to_string().contains("invoices"), "{err}");
        let err = SqliteStore::open_read_only(&path, "p").expect_err("a foreign file");
        assert!(matches!(err, StateError::Foreign { .. }), "{err:?}");
        assert_eq!(std::fs::read(&path).expect("read"), before);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "journal files were made: {names:?}");
        // Another program's application_id, and a file that is not SQLite at all.
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch("PRAGMA application_id = 42")
                .expect("mark");
        }
        assert!(matches!(
            SqliteStore::open(&path, "p"),
            Err(StateError::Foreign { .. })
        ));
        std::fs::write(&path, b"not a database, just text\n").expect("write");
        assert!(matches!(
            SqliteStore::open(&path, "p"),
            Err(StateError::Foreign { .. })
        ));
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"not a database, just text\n"
        );
    }

    #[test]
    fn a_newer_schema_and_another_plans_store_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        drop(SqliteStore::open(&path, "first").expect("open"));
        match SqliteStore::open(&path, "second") {
            Err(StateError::OtherPlan { found, plan, .. }) => {
                assert_eq!((found.as_str(), plan.as_str()), ("first", "second"));
            }
            other => panic!("expected OtherPlan, got {other:?}"),
        }
        assert!(matches!(
            SqliteStore::open_read_only(&path, "second"),
            Err(StateError::OtherPlan { .. })
        ));
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
                .expect("bump");
        }
        match SqliteStore::open(&path, "first") {
            Err(StateError::Newer { found, .. }) => assert_eq!(found, SCHEMA_VERSION + 1),
            other => panic!("expected Newer, got {other:?}"),
        }
    }

    #[test]
    fn a_store_from_before_versions_is_migrated_and_keeps_its_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        {
            // What earlier releases wrote: the tables, no application_id, no user_version.
            create_private(&path).expect("create");
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(SCHEMA).expect("schema");
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('plan_name', 'p')",
                [],
            )
            .expect("meta");
            conn.execute(
                "INSERT INTO folders (account, source, target, uidvalidity, last_uid) \
                 VALUES ('a@x', 'INBOX', 'INBOX', 7, 12)",
                [],
            )
            .expect("folder");
        }
        let store = SqliteStore::open(&path, "p").expect("a version-0 store is adopted");
        let rows = store.folders("a@x").expect("rows");
        let rec = rows[0].record;
        assert_eq!((rec.uidvalidity, rec.last_uid), (7, 12));
        drop(store);
        assert_eq!(pragma(&path, "application_id"), APPLICATION_ID);
        assert_eq!(pragma(&path, "user_version"), SCHEMA_VERSION);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_a_wide_file_and_a_wide_mailplan_folder_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.db");
        drop(SqliteStore::open(&real, "p").expect("open"));
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let err = SqliteStore::open(&link, "p").expect_err("a symlink");
        assert!(err.to_string().contains("symbolic link"), "{err}");

        restrict(&real, 0o644).expect("chmod");
        let err = SqliteStore::open(&real, "p").expect_err("world-readable");
        assert!(matches!(err, StateError::Unsafe { .. }), "{err:?}");
        assert!(err.to_string().contains("644"), "{err}");
        assert!(SqliteStore::open_read_only(&real, "p").is_err());
        restrict(&real, 0o600).expect("chmod");
        drop(SqliteStore::open(&real, "p").expect("private again"));

        let own = dir.path().join(".mailplan");
        std::fs::create_dir(&own).expect("mkdir");
        restrict(&own, 0o755).expect("chmod");
        let err = SqliteStore::open(&own.join("p.db"), "p").expect_err("a wide .mailplan");
        assert!(err.to_string().contains("755"), "{err}");
        assert!(!own.join("p.db").exists(), "created despite the refusal");
        std::fs::remove_dir(&own).expect("rmdir");
        std::os::unix::fs::symlink(dir.path(), &own).expect("symlink the folder");
        let err = SqliteStore::open(&own.join("p.db"), "p").expect_err("a symlinked .mailplan");
        assert!(err.to_string().contains("symbolic link"), "{err}");

        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        restrict(&open, 0o777).expect("chmod");
        assert!(SqliteStore::open(&open.join("s.db"), "p").is_err());
        restrict(&open, 0o1777).expect("sticky, as /tmp");
        drop(SqliteStore::open(&open.join("s.db"), "p").expect("a sticky folder is fine"));
    }

    const ROUTE: &str = "a@x at old:993 -> a@y at new:993";

    #[test]
    fn a_record_is_found_only_for_the_route_and_target_it_was_earned_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("s.db"), "p").expect("open");
        let done = FolderRecord {
            uidvalidity: 7,
            last_uid: 30,
            pending: false,
            failed: 0,
        };
        let counts = FolderCounts::default();
        store
            .end_batch("a@x", "Sent", "Sent", ROUTE, done, &counts)
            .expect("end");
        let found =
            |target: &str, route: &str| store.folder("a@x", "Sent", target, route).expect("read");
        assert_eq!(found("Sent", ROUTE), Some(done));
        assert_eq!(found("Sent Items", ROUTE), None, "another target folder");
        let other = "a@x at old:993 -> b@y at new:993";
        assert_eq!(found("Sent", other), None, "another target mailbox");
        // Copied along the new route: the record is that route's now.
        store
            .end_batch("a@x", "Sent", "Sent Items", other, done, &counts)
            .expect("end");
        assert_eq!(found("Sent Items", other), Some(done));
        assert_eq!(found("Sent", ROUTE), None);
    }

    #[test]
    fn a_store_from_before_routes_gets_the_column_and_its_records_are_not_trusted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        {
            // A version-1 store, as written before folder records had routes.
            create_private(&path).expect("create");
            let conn = Connection::open(&path).expect("create");
            conn.execute_batch(SCHEMA).expect("schema");
            conn.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;
                 INSERT INTO meta (key, value) VALUES ('plan_name', 'p');
                 INSERT INTO folders (account, source, target, uidvalidity, last_uid)
                    VALUES ('a@x', 'INBOX', 'INBOX', 7, 30);"
            ))
            .expect("an old store");
        }
        let read = SqliteStore::open_read_only(&path, "p")
            .expect("open")
            .expect("exists");
        assert_eq!(
            read.folder("a@x", "INBOX", "INBOX", ROUTE).expect("read"),
            None
        );
        assert_eq!(
            read.folders("a@x").expect("rows").len(),
            1,
            "status still reads it"
        );
        drop(read);
        let store = SqliteStore::open(&path, "p").expect("migrated");
        assert_eq!(pragma(&path, "user_version"), SCHEMA_VERSION);
        assert_eq!(
            store.folder("a@x", "INBOX", "INBOX", ROUTE).expect("read"),
            None
        );
    }

    #[test]
    fn the_lock_names_its_holder_and_a_dead_holder_is_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let a = SqliteStore::open(&path, "p").expect("open");
        let me = std::process::id();
        a.lock("host-a", me, false).expect("first lock");
        let b = SqliteStore::open(&path, "p").expect("open again");
        match b.lock("host-b", me + 1, false) {
            Err(StateError::Locked { host, pid, .. }) => {
                assert_eq!((host.as_str(), pid), ("host-a", me));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        // A pid that cannot exist on this host: stale.
        a.unlock(me).expect("unlock");
        a.lock("host-a", u32::MAX - 1, false)
            .expect("lock as a dead pid");
        b.lock("host-a", me, false)
            .expect("a dead holder's lock is taken over");
    }
}
