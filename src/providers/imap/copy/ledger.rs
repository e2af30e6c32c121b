//! What the copy remembers. Across runs: the [`Ledger`] the state store implements, one
//! [`FolderRecord`] per folder and route (UIDVALIDITY, the highest UID done, a batch left
//! pending, messages not on the target), the [`FolderCounts`] of a pass and the [`IssueKind`] of
//! a message left out or refused. Within a run: [`SizeRefusals`], what the targets refused, so
//! that a later pass does not send it again.
//!
//! Invariants: each [`Ledger`] call is one transaction; a batch is begun before its first APPEND
//! and ended after its last answer, so a record that is not pending is true of the target.
//! Plain types, no I/O; this file imports no other file of the copy.

use std::collections::HashMap;

use serde::Serialize;

use crate::providers::imap::identity::MessageFacts;

/// Message sizes the targets refused as too large (`[TOOBIG]`) during this run, by server: the
/// smallest such size and the server's words. A later pass on the same server leaves out the
/// messages of that size or more up front, so that a server that closes the connection after
/// such a refusal (Cyrus) is not sent the same message again on every attempt. Also the
/// messages a target refused for another reason before it closed the connection, by server and
/// source folder, left out of the next passes the same way.
#[derive(Debug, Default)]
pub struct SizeRefusals {
    sizes: std::sync::Mutex<HashMap<String, (u64, String)>>,
    closed: std::sync::Mutex<HashMap<(String, String), Refused>>,
}

/// Messages of a folder a target refused, by UID, with its words.
type Refused = Vec<(u32, String)>;

impl SizeRefusals {
    /// `server` refused a message of `size` bytes (or a MULTIAPPEND group whose largest message
    /// is `size` bytes: that one at least is over the limit) as too large.
    pub fn record(&self, server: &str, size: u64, words: &str) {
        if let Ok(mut known) = self.sizes.lock() {
            let entry = known
                .entry(server.to_owned())
                .or_insert_with(|| (size, words.to_owned()));
            if size < entry.0 {
                *entry = (size, words.to_owned());
            }
        }
    }

    /// The smallest size `server` refused as too large in this run, with its words.
    pub fn smallest(&self, server: &str) -> Option<(u64, String)> {
        self.sizes.lock().ok()?.get(server).cloned()
    }

    /// `server` refused message `uid` of source folder `folder` (not as too large) in `words`,
    /// then closed the connection.
    pub fn record_closed(&self, server: &str, folder: &str, uid: u32, words: &str) {
        if let Ok(mut known) = self.closed.lock() {
            known
                .entry((server.to_owned(), folder.to_owned()))
                .or_default()
                .push((uid, words.to_owned()));
        }
    }

    /// The messages of `folder` that `server` refused before closing the connection, in this
    /// run, with its words.
    pub fn closed_on(&self, server: &str, folder: &str) -> Vec<(u32, String)> {
        self.closed
            .lock()
            .ok()
            .and_then(|known| known.get(&(server.to_owned(), folder.to_owned())).cloned())
            .unwrap_or_default()
    }
}

/// What the state store remembers of a folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FolderRecord {
    pub uidvalidity: u32,
    /// Every source UID up to this one is on the target (copied, already there, skipped or
    /// recorded as failed).
    pub last_uid: u32,
    /// A batch was started and not finished: reconcile before sending anything.
    pub pending: bool,
    /// Messages at or below `last_uid` that are not on the target: refused by it, or left out
    /// by `max-message-size`. A folder with any is reconciled on the next run, so a fixed cause
    /// (a raised limit, a freed quota) gets them copied.
    pub failed: u64,
}

/// Counters of one folder for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FolderCounts {
    /// Messages in the source folder.
    pub found: u64,
    /// Messages to send this run.
    pub to_copy: u64,
    pub copied: u64,
    /// Already on the target (by identity).
    pub already: u64,
    /// Left out with a reason (e.g. larger than `max-message-size`).
    pub skipped: u64,
    /// Refused by the target; the reasons are in the ledger.
    pub failed: u64,
    pub bytes: u64,
}

/// Why a message was not copied, or not whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueKind {
    TooLarge,
    Refused,
    /// Copied without the keywords the target folder cannot keep (its `PERMANENTFLAGS`): one
    /// issue per folder (UID 0) that names them.
    KeywordsDropped,
    /// The server's answer about the folder broke the IMAP syntax (a server bug): the folder
    /// is not copied, or not whole; one issue per folder (UID 0) naming the command and showing
    /// an excerpt of the answer.
    Unreadable,
}

impl IssueKind {
    pub fn name(self) -> &'static str {
        match self {
            IssueKind::TooLarge => "too-large",
            IssueKind::Refused => "refused",
            IssueKind::KeywordsDropped => "keywords-dropped",
            IssueKind::Unreadable => "unreadable",
        }
    }
}

/// Where the copy keeps its progress (the state store, for one account). Each call is one
/// transaction.
pub trait Ledger: Send + Sync {
    /// The record of `source` as copied to `target` on this account's current route; none when
    /// the folder was never copied there (a new folder, or a plan edited since: another target
    /// folder, login or server), which makes the pass compare the folder whole.
    fn folder(&self, source: &str, target: &str) -> Result<Option<FolderRecord>, String>;
    /// Before the first APPEND of a batch.
    fn begin_batch(&self, source: &str, target: &str, uidvalidity: u32) -> Result<(), String>;
    /// After the last APPEND of a batch was acknowledged: the new mark and what this batch did.
    /// `record.pending` stays true while later batches are already on the wire.
    fn end_batch(
        &self,
        source: &str,
        target: &str,
        record: FolderRecord,
        counts: &FolderCounts,
    ) -> Result<(), String>;
    /// A message left out or refused, with the reason (the server's words) and what names the
    /// message for a person (empty for an issue of a whole folder, UID 0).
    fn issue(
        &self,
        source: &str,
        uid: u32,
        kind: IssueKind,
        detail: &str,
        message: &MessageFacts,
    ) -> Result<(), String>;
    /// Forget the issues of a folder before it is reconciled (they are found again if still true).
    fn clear_issues(&self, source: &str) -> Result<(), String>;
}
