//! The state store as the copy of one account sees it ([`StoreLedger`], the copy's
//! [`Ledger`](crate::providers::imap::copy::Ledger)): folder records keyed by the route the mail
//! takes, so that a record is only trusted for the mailboxes it was made on. A failed write stops
//! the run, since what the copy does next could not be recorded.

use std::sync::atomic::Ordering;

use crate::exec::credentials::Credentials;
use crate::exec::step::Shared;
use crate::exec::store::{StateError, StateStore};
use crate::plan::model::ImapServer;
use crate::providers::RunMode;
use crate::providers::imap::connect::server_name;
use crate::providers::imap::copy::{FolderCounts, FolderRecord, IssueKind, Ledger};
use crate::providers::imap::identity::MessageFacts;

/// The state store seen by the copy of one account.
pub(crate) struct StoreLedger<'a> {
    store: Option<&'a dyn StateStore>,
    account: &'a str,
    /// Where this account's mail goes now (see [`route`]): a folder's record is only trusted
    /// for the route and target folder it was recorded on.
    route: String,
    mode: RunMode,
    /// The run's [`Shared`], told when a write fails (the run stops).
    shared: &'a Shared,
}

/// The mailboxes an account's copy reads and writes, as the plan says today: the source login
/// and server, the target login and server. An edit of any of them between runs makes every
/// folder's record of the old route untrustworthy for the new one.
pub(crate) fn route(c: &Credentials, source: &ImapServer, target: &ImapServer) -> String {
    format!(
        "{} at {} -> {} at {}",
        c.source_login,
        server_name(source),
        c.target_login,
        server_name(target)
    )
}

impl<'a> StoreLedger<'a> {
    /// The ledger of account `i` of the run, copying from `source` to `target`.
    pub(crate) fn of(
        shared: &'a Shared,
        i: usize,
        source: &ImapServer,
        target: &ImapServer,
    ) -> Self {
        StoreLedger {
            store: shared.store.as_deref(),
            account: &shared.plan.accounts[i].address,
            route: route(&shared.credentials[i], source, target),
            mode: shared.mode,
            shared,
        }
    }
}

impl StoreLedger<'_> {
    fn with<T>(
        &self,
        f: impl FnOnce(&dyn StateStore) -> Result<T, StateError>,
    ) -> Result<T, String> {
        let store = self.store.ok_or("no state store")?;
        f(store).map_err(|e| e.to_string())
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&dyn StateStore) -> Result<T, StateError>,
    ) -> Result<T, String> {
        if self.mode == RunMode::DryRun {
            return Err("a dry run must not write to the state store".to_owned());
        }
        let written = self.with(f);
        if written.is_err() {
            self.shared.state_failed.store(true, Ordering::SeqCst);
            self.shared.stop.cancel();
        }
        written
    }
}

impl Ledger for StoreLedger<'_> {
    fn folder(&self, source: &str, target: &str) -> Result<Option<FolderRecord>, String> {
        if self.store.is_none() {
            return Ok(None);
        }
        self.with(|s| s.folder(self.account, source, target, &self.route))
    }
    fn begin_batch(&self, source: &str, target: &str, uidvalidity: u32) -> Result<(), String> {
        self.write(|s| s.begin_batch(self.account, source, target, &self.route, uidvalidity))
    }
    fn end_batch(
        &self,
        source: &str,
        target: &str,
        r: FolderRecord,
        c: &FolderCounts,
    ) -> Result<(), String> {
        self.write(|s| s.end_batch(self.account, source, target, &self.route, r, c))
    }
    fn issue(
        &self,
        source: &str,
        uid: u32,
        kind: IssueKind,
        detail: &str,
        message: &MessageFacts,
    ) -> Result<(), String> {
        self.write(|s| s.issue(self.account, source, uid, kind, detail, message))
    }
    fn clear_issues(&self, source: &str) -> Result<(), String> {
        self.write(|s| s.clear_issues(self.account, source))
    }
}
