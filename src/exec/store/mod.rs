//! The state store that makes runs resumable; today one backend, [`sqlite`].

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::providers::imap::copy::FolderRecord;

mod place;
mod schema;
mod sqlite;

pub use place::check_place;
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use sqlite::*;

/// The exec layer's store errors. Always name the file.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StateError {
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
    pub kind: String,
    pub fingerprint: String,
    /// `running`, `done`, `failed`, `skipped`, `interrupted`.
    pub status: String,
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
    pub record: FolderRecord,
    /// Cumulated over every run.
    pub copied: u64,
    pub failed: u64,
    pub bytes: u64,
}

/// A message left out or refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssueRow {
    pub account: String,
    pub folder: String,
    pub uid: u32,
    pub kind: String,
    pub detail: String,
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
