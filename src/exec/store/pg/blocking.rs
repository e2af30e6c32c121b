//! [`BlockingPgStore`]: the `PostgreSQL` store behind the synchronous [`StateStore`] trait the
//! commands use (see the trait's module doc for why it is synchronous).
//!
//! The store owns a small multi-thread runtime of its own, and every connection of its pool
//! lives there: `tokio-postgres` drives each connection with a task on the runtime that made
//! it, so a store opened by `status` (no runtime) or by `apply` (the commands' runtime) works
//! the same, and no connection depends on a runtime the caller may drop. A call waits for its
//! round trip with `block_in_place` when it comes from a worker thread of a multi-thread
//! runtime (the runner: the other tasks move elsewhere meanwhile), on a scoped thread when it
//! comes from a current-thread runtime (where `block_in_place` is not allowed), and directly
//! otherwise.

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

use super::{PgError, PgStore, PgTarget, WorkerRow};
use crate::exec::store::{
    FolderRow, IssueRow, LockHolder, SourceCounts, StateError, StateStore, StepRecord, StepStatus,
};
use crate::graph::StepKind;
use crate::providers::imap::copy::{FolderCounts, FolderRecord, IssueKind};
use crate::providers::imap::identity::MessageFacts;

/// The `PostgreSQL` store as a [`StateStore`]; see the module doc.
#[derive(Debug, Clone)]
pub struct BlockingPgStore {
    store: PgStore,
    runtime: Arc<OwnRuntime>,
}

impl BlockingPgStore {
    /// [`PgStore::open`], for a run that writes.
    pub fn open(target: &PgTarget, plan: &str) -> Result<BlockingPgStore, PgError> {
        let runtime = Arc::new(OwnRuntime::new(target)?);
        let store = runtime.wait(PgStore::open(target, plan))?;
        Ok(BlockingPgStore { store, runtime })
    }

    /// [`PgStore::open_read_only`]: `None` when there is no store there yet.
    pub fn open_read_only(
        target: &PgTarget,
        plan: &str,
    ) -> Result<Option<BlockingPgStore>, PgError> {
        let runtime = Arc::new(OwnRuntime::new(target)?);
        let store = runtime.wait(PgStore::open_read_only(target, plan))?;
        Ok(store.map(|store| BlockingPgStore { store, runtime }))
    }

    /// The async store, for what the trait does not cover (workers and leases); its futures
    /// must run through [`BlockingPgStore::wait`], where its connections live.
    pub fn inner(&self) -> &PgStore {
        &self.store
    }

    /// Run `f` (a future of [`BlockingPgStore::inner`]) to its end on the store's runtime.
    pub fn wait<F: Future + Send>(&self, f: F) -> F::Output
    where
        F::Output: Send,
    {
        self.runtime.wait(f)
    }

    /// Run `f` on the store's runtime without waiting for it (a slot given back on drop).
    pub fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = &self.runtime.0 {
            runtime.spawn(f);
        }
    }

    fn call<T: Send>(
        &self,
        f: impl Future<Output = Result<T, PgError>> + Send,
    ) -> Result<T, StateError> {
        self.wait(f).map_err(StateError::from)
    }
}

/// The store's runtime; shut down without waiting when the last clone goes (which may happen
/// inside the commands' runtime, where a blocking shutdown is not allowed).
#[derive(Debug)]
struct OwnRuntime(Option<Runtime>);

impl OwnRuntime {
    fn new(target: &PgTarget) -> Result<OwnRuntime, PgError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mailplan-pg")
            .enable_all()
            .build()
            .map(|r| OwnRuntime(Some(r)))
            .map_err(|e| PgError::Store {
                shown: target.shown().to_owned(),
                message: format!("cannot start the store's async runtime: {e}"),
            })
    }

    fn wait<F: Future + Send>(&self, f: F) -> F::Output
    where
        F::Output: Send,
    {
        // Present until Drop.
        let Some(runtime) = &self.0 else {
            unreachable!("the store's runtime is gone before the store")
        };
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| runtime.block_on(f)),
            Ok(_) => std::thread::scope(|s| {
                s.spawn(|| runtime.block_on(f))
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }),
            Err(_) => runtime.block_on(f),
        }
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl StateStore for BlockingPgStore {
    fn lock(&self, host: &str, pid: u32, force: bool) -> Result<(), StateError> {
        self.call(self.store.lock(host, pid, force))
    }

    fn lock_holder(&self) -> Result<Option<LockHolder>, StateError> {
        self.call(self.store.lock_holder())
    }

    fn unlock(&self, pid: u32) -> Result<(), StateError> {
        self.call(self.store.unlock(pid))
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StateError> {
        self.call(self.store.meta(key))
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StateError> {
        self.call(self.store.set_meta(key, value))
    }

    fn step(&self, key: &str) -> Result<Option<StepRecord>, StateError> {
        self.call(self.store.step(key))
    }

    fn steps(&self) -> Result<Vec<StepRecord>, StateError> {
        self.call(self.store.steps())
    }

    fn step_started(
        &self,
        key: &str,
        account: Option<&str>,
        kind: StepKind,
        fingerprint: &str,
    ) -> Result<(), StateError> {
        self.call(
            self.store
                .step_started(key, account, kind.name(), fingerprint),
        )
    }

    fn step_retried(&self, key: &str) -> Result<(), StateError> {
        self.call(self.store.step_retried(key))
    }

    fn step_finished(
        &self,
        key: &str,
        status: StepStatus,
        duration_ms: Option<i64>,
        output: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        self.call(
            self.store
                .step_finished(key, status.as_str(), duration_ms, output, error),
        )
    }

    fn step_skipped(
        &self,
        key: &str,
        account: Option<&str>,
        kind: StepKind,
        fingerprint: &str,
        reason: &str,
    ) -> Result<(), StateError> {
        self.call(
            self.store
                .step_skipped(key, account, kind.name(), fingerprint, reason),
        )
    }

    fn begin_batch(
        &self,
        account: &str,
        source: &str,
        target: &str,
        route: &str,
        uidvalidity: u32,
    ) -> Result<(), StateError> {
        self.call(
            self.store
                .begin_batch(account, source, target, route, uidvalidity),
        )
    }

    fn end_batch(
        &self,
        account: &str,
        source: &str,
        target: &str,
        route: &str,
        record: FolderRecord,
        counts: &FolderCounts,
    ) -> Result<(), StateError> {
        self.call(
            self.store
                .end_batch(account, source, target, route, record, counts),
        )
    }

    fn folders(&self, account: &str) -> Result<Vec<FolderRow>, StateError> {
        self.call(self.store.folders(account))
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
        self.call(
            self.store
                .issue(account, folder, uid, kind, detail, message),
        )
    }

    fn clear_issues(&self, account: &str, folder: &str) -> Result<(), StateError> {
        self.call(self.store.clear_issues(account, folder))
    }

    fn issues(&self, account: &str) -> Result<Vec<IssueRow>, StateError> {
        self.call(self.store.issues(account))
    }

    fn issue_folders(&self, account: &str) -> Result<Vec<String>, StateError> {
        self.call(self.store.issue_folders(account))
    }

    fn source_counts(&self, account: &str) -> Result<Option<SourceCounts>, StateError> {
        self.call(self.store.source_counts(account))
    }

    fn keep_source_counts(&self, account: &str, counts: &SourceCounts) -> Result<(), StateError> {
        self.call(self.store.keep_source_counts(account, counts))
    }

    fn workers(&self) -> Result<Vec<WorkerRow>, StateError> {
        self.call(self.store.workers())
    }
}
