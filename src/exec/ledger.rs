//! The state store as the copy of one account sees it ([`StoreLedger`], the copy's
//! [`Ledger`](crate::providers::imap::copy::Ledger)): folder records keyed by the route the mail
//! takes, so that a record is only trusted for the mailboxes it was made on. A failed write stops
//! the run, since what the copy does next could not be recorded.
//!
//! A step's ledger reads the account's records once ([`Known`]) and keeps them as it writes
//! them: while a step runs, no one else writes its account's records (one `apply` holds the
//! run lock, or, in a shared run, this worker holds the step's claim), so what it wrote is
//! what the store holds. The copy asks for a folder's record several times in a pass (the
//! estimates, the pass, the check); each is one round trip to a shared store. A folder with no
//! issue needs no `DELETE` before its pass, and a mark written again unchanged with nothing
//! counted is not written.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use crate::exec::credentials::Credentials;
use crate::exec::step::Shared;
use crate::exec::store::{FolderRow, StateError, StateStore};
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
    /// The account's records as the store holds them, read on first use.
    known: Mutex<Option<Known>>,
}

/// An account's folder records and the folders that have issues, as the store holds them.
#[derive(Debug, Default)]
struct Known {
    /// By source folder.
    folders: HashMap<String, FolderRow>,
    with_issues: HashSet<String>,
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
            known: Mutex::new(None),
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

    /// A row as the store would hold it after a write along this ledger's route (the counts,
    /// which the copy never reads back, left out).
    fn row(&self, source: &str, target: &str, record: FolderRecord) -> FolderRow {
        FolderRow {
            account: self.account.to_owned(),
            source: source.to_owned(),
            target: target.to_owned(),
            route: self.route.clone(),
            record,
            copied: 0,
            failed: 0,
            bytes: 0,
        }
    }

    /// `f` on the account's records as known, read from the store first if need be.
    fn known<T>(&self, f: impl FnOnce(&mut Known) -> T) -> Result<T, String> {
        let mut known = self
            .known
            .lock()
            .map_err(|_| "the ledger's lock is poisoned")?;
        if known.is_none() {
            let (folders, with_issues) =
                self.with(|s| Ok((s.folders(self.account)?, s.issue_folders(self.account)?)))?;
            *known = Some(Known {
                folders: folders.into_iter().map(|r| (r.source.clone(), r)).collect(),
                with_issues: with_issues.into_iter().collect(),
            });
        }
        Ok(f(known.get_or_insert_with(Known::default)))
    }
}

impl Ledger for StoreLedger<'_> {
    fn folder(&self, source: &str, target: &str) -> Result<Option<FolderRecord>, String> {
        if self.store.is_none() {
            return Ok(None);
        }
        self.known(|k| {
            k.folders
                .get(source)
                .and_then(|r| r.record_on(target, &self.route))
        })
    }
    fn begin_batch(&self, source: &str, target: &str, uidvalidity: u32) -> Result<(), String> {
        self.write(|s| s.begin_batch(self.account, source, target, &self.route, uidvalidity))?;
        // As the store does: a record kept (its marks too) or made, now pending on this route.
        self.known(|k| {
            let row = k.folders.entry(source.to_owned()).or_insert_with(|| {
                self.row(
                    source,
                    target,
                    FolderRecord {
                        uidvalidity,
                        ..FolderRecord::default()
                    },
                )
            });
            target.clone_into(&mut row.target);
            self.route.clone_into(&mut row.route);
            row.record.pending = true;
        })
    }
    fn end_batch(
        &self,
        source: &str,
        target: &str,
        r: FolderRecord,
        c: &FolderCounts,
    ) -> Result<(), String> {
        let unchanged = self.known(|k| {
            k.folders
                .get(source)
                .and_then(|row| row.record_on(target, &self.route))
                == Some(r)
        })?;
        if unchanged && *c == FolderCounts::default() {
            return Ok(());
        }
        self.write(|s| s.end_batch(self.account, source, target, &self.route, r, c))?;
        self.known(|k| {
            k.folders
                .insert(source.to_owned(), self.row(source, target, r));
        })
    }
    fn issue(
        &self,
        source: &str,
        uid: u32,
        kind: IssueKind,
        detail: &str,
        message: &MessageFacts,
    ) -> Result<(), String> {
        self.write(|s| s.issue(self.account, source, uid, kind, detail, message))?;
        self.known(|k| {
            k.with_issues.insert(source.to_owned());
        })
    }
    fn clear_issues(&self, source: &str) -> Result<(), String> {
        if !self.known(|k| k.with_issues.contains(source))? {
            return Ok(());
        }
        self.write(|s| s.clear_issues(self.account, source))?;
        self.known(|k| {
            k.with_issues.remove(source);
        })
    }
}
