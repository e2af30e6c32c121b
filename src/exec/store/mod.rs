//! The state store that makes runs resumable: the [`StateStore`] trait every caller uses (the
//! runner, `status`, `report`), the records it reads and writes, its errors, and [`open`] /
//! [`open_read_only`], which pick the backend from the `--state` value ([`StateLocation`]):
//! [`SqliteStore`] (one `SQLite` file per plan, [`sqlite`], the default) or, for a
//! `postgres://` URL, [`BlockingPgStore`] (a database several machines share,
//! [`crate::exec::store::pg`]).
//!
//! What a backend must keep:
//! - **Every write is durable and atomic when the method returns**: the copy records each batch
//!   ([`StateStore::begin_batch`] before its first APPEND, [`StateStore::end_batch`] after), and
//!   a crash at any instant must leave the last returned write as the truth. The batch marker
//!   must survive a power cut (the `SQLite` backend syncs that one commit to disk).
//! - **A folder's record belongs to its route** (source mailbox and server, target mailbox and
//!   server, target folder): [`StateStore::folder`] finds it only for the same route and target.
//! - **It refuses, before writing, a store that is not this plan's** (another plan's, a newer
//!   schema's, another program's) with a [`StateError`] naming the place.
//! - **No secret is ever written**: only addresses, folder names, counters and servers' words.
//!
//! Why the trait is synchronous (`&self` methods, `Send + Sync`, used as `Box<dyn StateStore>`
//! / `Arc<dyn StateStore>`): the hottest caller is the copy's ledger, a synchronous callback
//! the pipelined APPEND loop calls once per batch and must wait for anyway (the marker is
//! written before the APPENDs it covers), and the `SQLite` write it makes is a local WAL commit
//! (not even synced to disk, but for the marker); a synchronous trait costs it nothing (no boxed future per batch, no
//! thread hop) and is dyn-compatible without `async-trait` (native `async fn` in traits is not).
//! A backend with an async client (tokio-postgres) runs each call with
//! `tokio::task::block_in_place(|| runtime.block_on(..))` from the multi-thread runtime the
//! commands use: the calling worker thread waits for its round trip while the runtime moves the
//! other tasks elsewhere (futures joined inside the same task, as an account's connection pairs
//! are, wait with it). The `PostgreSQL` backend keeps its connections on a small runtime of its
//! own, so that `status` and `report` (no runtime) use it the same way
//! ([`crate::exec::store::pg::BlockingPgStore`]).
//! Backends synchronise themselves (the runner shares one store among all steps without a lock
//! of its own): `SQLite` keeps its one connection behind a mutex, a network backend a pool.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::graph::StepKind;
use crate::providers::imap::copy::{FolderCounts, FolderRecord, IssueKind};
use crate::providers::imap::identity::MessageFacts;
use pg::{BlockingPgStore, PgError, PgTarget, WorkerRow, is_postgres_url};

pub mod pg;
mod place;
mod schema;
pub mod sqlite;

pub use place::check_place;
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use sqlite::SqliteStore;

/// Where a plan's state is: the `--state` value (or `MAILPLAN_STATE`), read once.
#[derive(Debug, Clone)]
pub enum StateLocation {
    /// A `SQLite` file.
    File(PathBuf),
    /// A `PostgreSQL` database (`postgres://…` or `postgresql://…`).
    Postgres(Box<PgTarget>),
}

impl StateLocation {
    /// `value` as given to `--state`: a `postgres://` or `postgresql://` URL (read with the
    /// libpq variables, [`PgTarget::parse`]) or a file path. An unreadable URL is an error that
    /// does not show its password.
    pub fn parse(value: &Path) -> Result<StateLocation, PgError> {
        match value.to_str() {
            Some(url) if is_postgres_url(url) => {
                Ok(StateLocation::Postgres(Box::new(PgTarget::parse(url)?)))
            }
            _ => Ok(StateLocation::File(value.to_owned())),
        }
    }
}

impl std::fmt::Display for StateLocation {
    /// The path, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateLocation::File(path) => write!(f, "{}", path.display()),
            StateLocation::Postgres(target) => f.write_str(target.shown()),
        }
    }
}

/// Open the store at `location` for a run of the plan `plan` that writes, creating or
/// migrating it; refuses what is not this plan's store (see [`StateError`]).
pub fn open(location: &StateLocation, plan: &str) -> Result<Box<dyn StateStore>, StateError> {
    Ok(match location {
        StateLocation::File(path) => Box::new(SqliteStore::open(path, plan)?),
        StateLocation::Postgres(target) => Box::new(BlockingPgStore::open(target, plan)?),
    })
}

/// Open the existing store at `location` without writing anything (`status`, `report`, dry
/// runs); `None` when there is none yet. The same refusals as [`open`].
pub fn open_read_only(
    location: &StateLocation,
    plan: &str,
) -> Result<Option<Box<dyn StateStore>>, StateError> {
    Ok(match location {
        StateLocation::File(path) => {
            SqliteStore::open_read_only(path, plan)?.map(|s| Box::new(s) as Box<dyn StateStore>)
        }
        StateLocation::Postgres(target) => BlockingPgStore::open_read_only(target, plan)?
            .map(|s| Box::new(s) as Box<dyn StateStore>),
    })
}

/// Everything a run, `status` and `report` do with the state of a plan. Steps are named by
/// their key ([`crate::graph::Step::key`]); folder records and issues by the account's address
/// and the source folder's path. See the module doc for what every backend keeps.
pub trait StateStore: Send + Sync + std::fmt::Debug {
    // The run lock: one `apply` at a time on a plan's state.

    /// Take the run lock, or say who holds it ([`StateError::Locked`]). A lock left by a dead
    /// process of this host is taken over; `force` (`--break-lock`) takes over any lock.
    fn lock(&self, host: &str, pid: u32, force: bool) -> Result<(), StateError>;
    /// Who holds the run lock, if anyone: a running `apply`, or one that died without
    /// releasing it.
    fn lock_holder(&self) -> Result<Option<LockHolder>, StateError>;
    /// Release the lock if `pid` holds it.
    fn unlock(&self, pid: u32) -> Result<(), StateError>;

    // Facts about the whole plan: `plan_name`, `plan_fingerprint`, `last_run`.

    fn meta(&self, key: &str) -> Result<Option<String>, StateError>;
    fn set_meta(&self, key: &str, value: &str) -> Result<(), StateError>;

    // Steps.

    fn step(&self, key: &str) -> Result<Option<StepRecord>, StateError>;
    /// Every recorded step, in the order they were first recorded.
    fn steps(&self) -> Result<Vec<StepRecord>, StateError>;
    /// A step starts: [`StepStatus::Running`], one more attempt (the first again after `done`),
    /// its fingerprint now `fingerprint`, its end and error cleared.
    fn step_started(
        &self,
        key: &str,
        account: Option<&str>,
        kind: StepKind,
        fingerprint: &str,
    ) -> Result<(), StateError>;
    /// A running step tries again after a network error or a "try later" answer.
    fn step_retried(&self, key: &str) -> Result<(), StateError>;
    /// A step ends (`done`, `failed`, `skipped`, `interrupted`); `output`, when `None`, keeps
    /// the one recorded.
    fn step_finished(
        &self,
        key: &str,
        status: StepStatus,
        duration_ms: Option<i64>,
        output: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StateError>;
    /// A step that never started because a dependency failed (a `done` step stays done).
    fn step_skipped(
        &self,
        key: &str,
        account: Option<&str>,
        kind: StepKind,
        fingerprint: &str,
        reason: &str,
    ) -> Result<(), StateError>;

    // Folder records: the copy's progress, one per account and source folder.

    /// The record of a folder copied along `route` to `target`; none when it was copied along
    /// another route or to another folder (the plan changed since): [`FolderRow::record_on`].
    fn folder(
        &self,
        account: &str,
        source: &str,
        target: &str,
        route: &str,
    ) -> Result<Option<FolderRecord>, StateError> {
        Ok(self
            .folders(account)?
            .into_iter()
            .find(|r| r.source == source)
            .and_then(|r| r.record_on(target, route)))
    }
    /// The batch marker, written before a group's first APPEND and durable even across a power
    /// cut: the folder is pending, and its record then belongs to `route` and `target`.
    fn begin_batch(
        &self,
        account: &str,
        source: &str,
        target: &str,
        route: &str,
        uidvalidity: u32,
    ) -> Result<(), StateError>;
    /// After a batch (or a pass that had nothing to send): the folder's new mark along `route`
    /// to `target`, and what the batch did (added to the folder's totals).
    fn end_batch(
        &self,
        account: &str,
        source: &str,
        target: &str,
        route: &str,
        record: FolderRecord,
        counts: &FolderCounts,
    ) -> Result<(), StateError>;
    /// Every folder record of an account, by source path.
    fn folders(&self, account: &str) -> Result<Vec<FolderRow>, StateError>;

    // Issues: messages left out or refused, one per account, folder and UID.

    fn issue(
        &self,
        account: &str,
        folder: &str,
        uid: u32,
        kind: IssueKind,
        detail: &str,
        message: &MessageFacts,
    ) -> Result<(), StateError>;
    /// Forget a folder's issues (a new pass records them again).
    fn clear_issues(&self, account: &str, folder: &str) -> Result<(), StateError>;
    /// An account's issues, by folder and UID.
    fn issues(&self, account: &str) -> Result<Vec<IssueRow>, StateError>;
    /// The folders of an account that have issues.
    fn issue_folders(&self, account: &str) -> Result<Vec<String>, StateError>;

    // Source counts of a historical MX Plan account, taken before OVH migrates it.

    /// The counts kept for `account`, if it was counted.
    fn source_counts(&self, account: &str) -> Result<Option<SourceCounts>, StateError>;
    /// Keep `counts` for `account` unless it was counted before: the first count, taken while
    /// the source still held everything, is the one `verify` compares with (a run after the
    /// migration finds the source gone or emptied).
    fn keep_source_counts(&self, account: &str, counts: &SourceCounts) -> Result<(), StateError>;

    // Workers of a shared run (a backend several `apply` processes share).

    /// The workers registered in a shared run, oldest first, and the steps each holds; none
    /// for a backend of one `apply` at a time.
    fn workers(&self) -> Result<Vec<WorkerRow>, StateError> {
        Ok(Vec::new())
    }
}

/// Messages per folder (by path) of a source mailbox.
pub type SourceCounts = BTreeMap<String, u32>;

/// A step's status as recorded. Its text (`running`, `done`, …) is what the store holds, the
/// JSON of `status` shows and the output prints: [`StepStatus::as_str`] and
/// [`StepStatus::parse`] are the one conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepStatus {
    Running,
    Done,
    Failed,
    /// Not run because a step it depends on failed.
    Skipped,
    /// Stopped by an interrupt (or a crash: `status` shows a `running` step of no live `apply`
    /// as interrupted).
    Interrupted,
}

impl StepStatus {
    pub const ALL: [StepStatus; 5] = [
        StepStatus::Running,
        StepStatus::Done,
        StepStatus::Failed,
        StepStatus::Skipped,
        StepStatus::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Running => "running",
            StepStatus::Done => "done",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<StepStatus> {
        StepStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for StepStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The exec layer's store errors. Always name the file (or the database, without its
/// password).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StateError {
    /// The `PostgreSQL` store's own errors, which name it by its URL without the password.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Postgres(#[from] PgError),
    #[error("state store {path}: {message}")]
    #[diagnostic(code(exec::state))]
    Store { path: PathBuf, message: String },
    #[error("the state {path} is locked by {host}, pid {pid}, since {since}")]
    #[diagnostic(
        code(exec::locked),
        help(
            "another `mailplan apply` is running on this plan; wait for it, or, if that process \
             is gone (another machine, a reboot), run again with --break-lock"
        )
    )]
    Locked {
        path: PathBuf,
        host: String,
        pid: u32,
        since: String,
    },
    #[error("{path} is not a mailplan state store ({what}); it was left untouched")]
    #[diagnostic(
        code(exec::state_foreign),
        help(
            "give --state a path of its own (a new file is created there), or the store an \
             earlier `mailplan apply` of this plan made"
        )
    )]
    Foreign { path: PathBuf, what: String },
    #[error(
        "the state store {path} has schema version {found}, newer than this mailplan's \
         ({supported}); it was left untouched"
    )]
    #[diagnostic(
        code(exec::state_version),
        help("use the mailplan release that wrote it, or a newer one")
    )]
    Newer {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "the state store {path} belongs to the plan `{found}`, not `{plan}`; it was left untouched"
    )]
    #[diagnostic(
        code(exec::state_plan),
        help(
            "each plan keeps its own store: give --state another path, or run the plan `{found}`"
        )
    )]
    OtherPlan {
        path: PathBuf,
        found: String,
        plan: String,
    },
    #[error("the state store {path} is not safe to use: {problem}")]
    #[diagnostic(code(exec::state_permissions), help("{help}"))]
    Unsafe {
        path: PathBuf,
        problem: String,
        help: String,
    },
}

/// The run lock's holder: the `apply` that took it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    pub host: String,
    pub pid: u32,
    /// When it was taken, `2026-11-24T20:10:00Z`.
    pub since: String,
}

impl LockHolder {
    /// Whether that process still runs, as far as this host can tell: on this host, its pid is
    /// alive; a lock of another host is taken to be held.
    pub fn alive(&self, this_host: &str) -> bool {
        self.host != this_host || process_alive(self.pid)
    }
}

/// A step as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepRecord {
    pub key: String,
    pub account: Option<String>,
    pub kind: StepKind,
    pub fingerprint: String,
    pub status: StepStatus,
    pub attempts: u32,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub duration_ms: Option<i64>,
    /// JSON written by the step (counts, verification results).
    pub output: Option<String>,
    pub error: Option<String>,
}

/// A folder's copy progress as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FolderRow {
    pub account: String,
    pub source: String,
    pub target: String,
    /// The route the record was made along (see `exec::ledger::route`); not shown.
    #[serde(skip)]
    pub route: String,
    pub record: FolderRecord,
    /// Cumulated over every run.
    pub copied: u64,
    pub failed: u64,
    pub bytes: u64,
}

impl FolderRow {
    /// The record, if it was made copying to `target` along `route`: only then is it true of
    /// the mailboxes the plan names now.
    pub fn record_on(&self, target: &str, route: &str) -> Option<FolderRecord> {
        (self.target == target && self.route == route).then_some(self.record)
    }
}

/// A message left out or refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssueRow {
    pub account: String,
    pub folder: String,
    pub uid: u32,
    pub kind: String,
    pub detail: String,
    /// What names the message (none for an issue of a whole folder, or a store from before
    /// they were kept).
    #[serde(flatten)]
    pub message: MessageFacts,
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The default place of a plan's state: `.mailplan/<name>.db` beside the plan.
pub fn default_path(plan_path: &Path, plan_name: &str) -> PathBuf {
    let dir = plan_path.parent().unwrap_or_else(|| Path::new("."));
    let safe: String = plan_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(".mailplan").join(format!("{safe}.db"))
}

/// `2026-11-24T20:10:00Z` from seconds since the epoch.
pub fn timestamp(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// Whether a process of this host is alive (Linux: `/proc/PID`; elsewhere assume it is).
pub(super) fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if !proc.exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}
