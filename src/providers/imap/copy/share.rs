//! Work shared among an account's connection pairs: the queue of folders they take from
//! (`FolderQueue`), and the large folders ([`SHARE_FROM`](super::survey::SHARE_FROM) messages or
//! more to send), cut into chunks that every pair may help send: `share_folder` on the side of the
//! pair that read the folder, `part` on each pair's side (`open_part` first, for a pair that
//! helps).
//!
//! Invariants: parts finish out of order, so each records the folder's mark from before the
//! pass, pending (`PartLedger`); only the owner records the final mark, once every part ended;
//! a failed or interrupted part stops the others after their current chunk.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::context::{CopyContext, CopyError};
use super::ledger::{FolderCounts, FolderRecord, IssueKind, Ledger};
use super::matching::Wanted;
use super::survey::Survey;
use super::transfer::{TargetFlags, TransferFlow, cut, transfer};
use crate::providers::imap::append::add;
use crate::providers::imap::error::{ImapError, ImapErrorKind};
use crate::providers::imap::folders::FolderMapping;
use crate::providers::imap::identity::MessageFacts;
use crate::providers::imap::timeout::{bounded, op_timeout};

/// Messages and bytes of a shared folder's chunk: what a pair takes at once.
const CHUNK_MESSAGES: usize = 1000;

const CHUNK_BYTES: u64 = 64 << 20;

/// What the connection pairs of one account share: the folders and the next one to take.
pub(super) struct FolderQueue<'a> {
    pub(super) survey: &'a Survey,
    pub(super) next: std::sync::atomic::AtomicUsize,
    /// Per mapping: the target folder was missing before this pass.
    pub(super) missing: Vec<bool>,
    /// Per mapping: the target refused to create its folder (or a parent), with its words.
    pub(super) not_created: Vec<Option<ImapError>>,
    /// Other pairs may come: large folders are shared.
    pub(super) sharing: bool,
    /// The shared folders being sent.
    pub(super) open: std::sync::Mutex<Vec<Arc<SharedFolder>>>,
    /// Folders large enough to be shared that a pair is reading (not yet shared or not): a
    /// pair with nothing left waits for them rather than log out.
    pub(super) preparing: std::sync::atomic::AtomicUsize,
    /// A folder was shared, or found not to be.
    pub(super) changed: tokio::sync::Notify,
}

/// A folder that may be shared, while its pair reads it ([`FolderQueue::preparing`]); dropped once
/// it is shared or found too small, or when its pair fails.
pub(super) struct MayShare<'s, 'a> {
    shared: &'s FolderQueue<'a>,
    index: usize,
}

impl<'s, 'a> MayShare<'s, 'a> {
    pub(super) fn new(shared: &'s FolderQueue<'a>, index: usize) -> Self {
        shared.preparing.fetch_add(1, Ordering::SeqCst);
        MayShare { shared, index }
    }
}

impl Drop for MayShare<'_, '_> {
    fn drop(&mut self) {
        self.shared.preparing.fetch_sub(1, Ordering::SeqCst);
        self.shared.changed.notify_waiters();
    }
}

impl FolderQueue<'_> {
    /// A shared folder with chunks left, joined (counted as working on it).
    pub(super) fn joinable(&self) -> Option<Arc<SharedFolder>> {
        let open = self.open.lock().ok()?;
        open.iter()
            .find(|f| {
                f.state.lock().is_ok_and(|mut st| {
                    let joins = !st.failed && !st.chunks.is_empty();
                    if joins {
                        st.working += 1;
                    }
                    joins
                })
            })
            .cloned()
    }
}

/// A large folder that every pair of the account may help send (see [`SHARE_FROM`]): what is to
/// be sent, cut into chunks that the pairs take one at a time.
pub(super) struct SharedFolder {
    /// Its mapping's index.
    pub(super) index: usize,
    uidvalidity: u32,
    flow: TransferFlow,
    /// What the target folder keeps, as it said when its owner opened it.
    flags: TargetFlags,
    /// The ledger's mark from before this pass. Parts finish out of order, so no later mark would
    /// be true until all are done: each part records this one, pending.
    base: u32,
    state: std::sync::Mutex<SharedState>,
    /// A part ended.
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct SharedState {
    chunks: std::collections::VecDeque<Vec<Wanted>>,
    /// Pairs sending a part now, the folder's owner included.
    working: usize,
    /// A part failed or was interrupted: no more chunks are taken, the folder stays pending.
    failed: bool,
    /// What all parts did.
    counts: FolderCounts,
}

/// The ledger as a shared folder's parts see it: each mark is recorded as the mark from before
/// the pass, pending (see [`SharedFolder::base`]); counts, issues and the rest pass through.
struct PartLedger<'a> {
    inner: &'a dyn Ledger,
    base: u32,
}

impl Ledger for PartLedger<'_> {
    fn folder(&self, source: &str, target: &str) -> Result<Option<FolderRecord>, String> {
        self.inner.folder(source, target)
    }
    fn begin_batch(&self, source: &str, target: &str, uidvalidity: u32) -> Result<(), String> {
        self.inner.begin_batch(source, target, uidvalidity)
    }
    fn end_batch(
        &self,
        source: &str,
        target: &str,
        record: FolderRecord,
        counts: &FolderCounts,
    ) -> Result<(), String> {
        let record = FolderRecord {
            last_uid: self.base,
            pending: true,
            ..record
        };
        self.inner.end_batch(source, target, record, counts)
    }
    fn issue(
        &self,
        source: &str,
        uid: u32,
        kind: IssueKind,
        detail: &str,
        message: &MessageFacts,
    ) -> Result<(), String> {
        self.inner.issue(source, uid, kind, detail, message)
    }
    fn clear_issues(&self, source: &str) -> Result<(), String> {
        self.inner.clear_issues(source)
    }
}

/// `wanted` in chunks of [`CHUNK_MESSAGES`] and [`CHUNK_BYTES`] at most (a larger message is a
/// chunk of its own).
fn chunks(wanted: &[Wanted]) -> std::collections::VecDeque<Vec<Wanted>> {
    cut(wanted, CHUNK_MESSAGES, CHUNK_BYTES, |_| false).into()
}

/// Send a shared folder's chunks on `c`'s connections until none is left (`open`: select the
/// folders first, for a pair that helps), then say this part ended. A failure or an
/// interruption stops the other parts after their current chunk.
pub(super) async fn part(
    c: &mut CopyContext<'_>,
    m: &FolderMapping,
    folder: &SharedFolder,
    open: bool,
) -> Result<(), CopyError> {
    let ledger = PartLedger {
        inner: c.ledger,
        base: folder.base,
    };
    let mut counts = FolderCounts::default();
    let result = async {
        if open {
            open_part(c, m, folder.uidvalidity).await?;
        }
        let mut ctx = CopyContext {
            source: &mut *c.source,
            target: &mut *c.target,
            ledger: &ledger,
            ..*c
        };
        let stop = c.stop;
        let mut next = || {
            let mut st = folder.state.lock().ok()?;
            if st.failed || stop.is_cancelled() {
                None
            } else {
                st.chunks.pop_front()
            }
        };
        let flow = folder.flow;
        transfer(
            &mut ctx,
            m,
            folder.uidvalidity,
            &mut next,
            (flow, &folder.flags),
            &mut counts,
        )
        .await
    }
    .await;
    if let Ok(mut st) = folder.state.lock() {
        st.working = st.working.saturating_sub(1);
        add(&mut st.counts, &counts);
        if result.is_err() {
            st.failed = true;
            st.chunks.clear();
        }
    }
    folder.changed.notify_waiters();
    result
}

/// A helping pair opens the shared folder: the source read-only, the target to append to; the
/// source must still be the one whose UIDs are being sent.
async fn open_part(
    c: &mut CopyContext<'_>,
    m: &FolderMapping,
    uidvalidity: u32,
) -> Result<(), ImapError> {
    let (ss, ts) = (c.source_server, c.target_server);
    let (source, target) = (&mut *c.source, &mut *c.target);
    let (source_activity, target_activity) = (
        format!("opening {}", m.source.path),
        format!("opening {}", m.target_path),
    );
    let (opened, ()) = tokio::try_join!(
        bounded(ss, &source_activity, op_timeout(0), async {
            source
                .examine(&m.source.wire)
                .await
                .map_err(|e| ImapError::from_imap(ss, &source_activity, e))
        }),
        bounded(ts, &target_activity, op_timeout(0), async {
            target
                .select(&m.target_wire)
                .await
                .map(drop)
                .map_err(|e| ImapError::from_imap(ts, &target_activity, e))
        })
    )?;
    match opened.uid_validity {
        Some(now) if now != uidvalidity => Err(ImapError::new(
            ImapErrorKind::Network,
            ss,
            format!("opening {}", m.source.path),
            format!(
                "its UIDVALIDITY changed from {uidvalidity} to {now} during the copy; the next \
                 attempt compares it again"
            ),
        )),
        _ => Ok(()),
    }
}

/// The owner's side of a shared folder: offer its chunks to the other pairs, send chunks too,
/// wait for the parts taken by others, add up what all did.
#[allow(clippy::too_many_arguments)]
pub(super) async fn share_folder(
    ctx: &mut CopyContext<'_>,
    share: MayShare<'_, '_>,
    uidvalidity: u32,
    base: u32,
    wanted: &[Wanted],
    (flow, flags): (TransferFlow, &TargetFlags),
    counts: &mut FolderCounts,
) -> Result<(), CopyError> {
    let (shared, index) = (share.shared, share.index);
    let folder = Arc::new(SharedFolder {
        index,
        uidvalidity,
        flow,
        flags: flags.clone(),
        base,
        state: std::sync::Mutex::new(SharedState {
            chunks: chunks(wanted),
            working: 1,
            ..SharedState::default()
        }),
        changed: tokio::sync::Notify::new(),
    });
    if let Ok(mut open) = shared.open.lock() {
        open.push(Arc::clone(&folder));
    }
    // Shared: the pairs waiting for it are told.
    drop(share);
    let m = &shared.survey.mappings[index];
    let mine = part(ctx, m, &folder, false).await;
    loop {
        let ended = folder.changed.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        if folder.state.lock().map_or(true, |st| st.working == 0) {
            break;
        }
        ended.await;
    }
    if let Ok(mut open) = shared.open.lock() {
        open.retain(|f| !Arc::ptr_eq(f, &folder));
    }
    mine?;
    let st = folder
        .state
        .lock()
        .map_err(|e| CopyError::Ledger(e.to_string()))?;
    if st.failed {
        // A helping pair failed or was interrupted; its worker reports why.
        return Err(CopyError::Interrupted);
    }
    add(counts, &st.counts);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_folder_is_cut_into_chunks_of_counts_and_bytes() {
        let many: Vec<Wanted> = (1..=2500).map(|uid| Wanted { uid, size: 100 }).collect();
        let sizes: Vec<usize> = chunks(&many).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);
        let firsts: Vec<u32> = chunks(&many).iter().map(|c| c[0].uid).collect();
        assert_eq!(firsts, vec![1, 1001, 2001], "in UID order, none left out");
        let large: Vec<Wanted> = (1..=5)
            .map(|uid| Wanted {
                uid,
                size: 30 << 20,
            })
            .collect();
        let sizes: Vec<usize> = chunks(&large).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 2, 1], "64 MB at most, or one message");
    }

    /// Records what the copy writes, in order.
    #[derive(Default)]
    struct Written(std::sync::Mutex<Vec<(FolderRecord, u64)>>);

    impl Ledger for Written {
        fn folder(&self, _: &str, _: &str) -> Result<Option<FolderRecord>, String> {
            Ok(None)
        }
        fn begin_batch(&self, _: &str, _: &str, _: u32) -> Result<(), String> {
            Ok(())
        }
        fn end_batch(
            &self,
            _: &str,
            _: &str,
            r: FolderRecord,
            c: &FolderCounts,
        ) -> Result<(), String> {
            self.0
                .lock()
                .map_err(|e| e.to_string())?
                .push((r, c.copied));
            Ok(())
        }
        fn issue(
            &self,
            _: &str,
            _: u32,
            _: IssueKind,
            _: &str,
            _: &MessageFacts,
        ) -> Result<(), String> {
            Ok(())
        }
        fn clear_issues(&self, _: &str) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn a_parts_marks_are_recorded_as_the_old_mark_pending_and_its_counts_kept() {
        let inner = Written::default();
        let part = PartLedger {
            inner: &inner,
            base: 40,
        };
        let done = FolderCounts {
            copied: 7,
            ..FolderCounts::default()
        };
        for pending in [true, false] {
            let record = FolderRecord {
                uidvalidity: 9,
                last_uid: 900,
                pending,
                failed: 1,
            };
            part.end_batch("INBOX", "INBOX", record, &done)
                .expect("recorded");
        }
        let written = inner.0.lock().expect("lock").clone();
        let kept = FolderRecord {
            uidvalidity: 9,
            last_uid: 40,
            pending: true,
            failed: 1,
        };
        assert_eq!(written, vec![(kept, 7), (kept, 7)]);
    }
}
