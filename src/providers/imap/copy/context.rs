//! What the copy of one account is given and gives back: [`CopyContext`] (both sessions, the
//! options, the [`Ledger`], the run mode, the observer, the stop token,
//! the refusals of the run, new sessions), [`CopyEvent`] (progress, for bars and event streams),
//! [`CopyError`] (why a copy stopped) and [`FolderOutcome`] (one folder's result).
//!
//! Plain types, no I/O; of the copy's files this one imports only the ledger, so every other
//! file (and `append.rs`) may use it.

use std::fmt;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::ledger::{FolderCounts, Ledger, SizeRefusals};
use crate::plan::model::CopyOptions;
use crate::providers::RunMode;
use crate::providers::imap::connect::Session;
use crate::providers::imap::error::ImapError;
use crate::providers::imap::relogin::Relogin;

/// Progress as it happens, for bars and event streams.
#[derive(Debug, Clone)]
pub enum CopyEvent<'a> {
    Folder {
        source: &'a str,
        target: &'a str,
        counts: &'a FolderCounts,
    },
    Copied {
        messages: u64,
        bytes: u64,
    },
}

/// Why a copy stopped.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CopyError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Imap(#[from] ImapError),
    #[error("state store: {0}")]
    #[diagnostic(code(imap::ledger))]
    Ledger(String),
    #[error("interrupted at a safe point; run apply again to resume")]
    #[diagnostic(code(imap::interrupted))]
    Interrupted,
    /// The target closed the connection after refusing a message, which is recorded with the
    /// server's words: the folder is copied again on new connections
    /// ([`relogin`](crate::providers::imap::relogin)). `accepted`: a message was accepted on that
    /// connection before.
    #[error("{error}")]
    #[diagnostic(code(imap::closed))]
    Closed { error: ImapError, accepted: bool },
}

/// Everything the copy of one account needs.
pub struct CopyContext<'a> {
    pub source: &'a mut Session,
    pub source_server: &'a str,
    pub target: &'a mut Session,
    pub target_server: &'a str,
    pub options: &'a CopyOptions,
    pub ledger: &'a dyn Ledger,
    pub mode: RunMode,
    pub observer: &'a (dyn Fn(CopyEvent<'_>) + Send + Sync),
    /// Cancelled by the first Ctrl-C: finish the current batch, record it, stop.
    pub stop: &'a CancellationToken,
    /// Sizes the targets refused as too large earlier in this run.
    pub refusals: &'a SizeRefusals,
    /// New sessions when these cannot be used any more.
    pub relogin: &'a Relogin<'a>,
}

impl fmt::Debug for CopyContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyContext")
            .field("source", &self.source_server)
            .field("target", &self.target_server)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// The result of copying (or, in a dry run, of planning to copy) one folder.
#[derive(Debug, Clone, Serialize)]
pub struct FolderOutcome {
    pub source: String,
    pub target: String,
    /// `map`, `special-use` or `same-path`.
    pub reason: &'static str,
    pub created: bool,
    pub counts: FolderCounts,
    /// Why this folder was not copied (the target refused to create it, or an answer about
    /// it could not be read), when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `error` is an answer about the folder that broke the IMAP syntax.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unreadable: bool,
}
