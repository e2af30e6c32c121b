//! Before anything is copied: [`mapping`] (both folder lists and their mapping; also used by
//! `plan --refresh`) and [`survey`] (the mapping, the STATUS of every source folder the plan
//! takes in one pipelined round trip, the target's capabilities and round trip, hence how its
//! transfers flow). [`Survey::estimates`] and [`Survey::work`] say what the pass is likely to
//! carry before it starts, for progress bars and for how many connection pairs help.
//!
//! Invariants: reads only, both sides at once; a STATUS answer that cannot be read costs only
//! its folder (asked again one folder at a time on a new connection), unless several in a row
//! fail, which fails the account.

use std::collections::HashMap;

use super::context::CopyContext;
use super::ledger::{FolderRecord, Ledger};
use super::transfer::TransferFlow;
use crate::plan::model::CopyOptions;
use crate::providers::imap::append::AppendMode;
use crate::providers::imap::connect::Session;
use crate::providers::imap::error::{ImapError, ImapErrorKind};
use crate::providers::imap::folders::{self, FolderMapping, RemoteFolder};
use crate::providers::imap::pipelined::{self, FolderStatus};
use crate::providers::imap::relogin::Relogin;
use crate::providers::imap::timeout::{bounded, op_timeout};

/// A folder with this many messages or more to send is shared: the account's other connection
/// pairs, once they have nothing else to do, help send it, a chunk at a time.
pub const SHARE_FROM: usize = 2000;

/// List and map the account's folders (also used by `plan --refresh`); both sides at once.
pub async fn mapping(
    source: &mut Session,
    source_server: &str,
    target: &mut Session,
    target_server: &str,
    options: &CopyOptions,
) -> Result<(Vec<FolderMapping>, Vec<RemoteFolder>), ImapError> {
    let (source_folders, (target_folders, namespace)) = tokio::try_join!(
        folders::list(source, source_server),
        folders::list_with_namespace(target, target_server)
    )?;
    Ok((
        folders::map_folders(&source_folders, &target_folders, &namespace, options),
        target_folders,
    ))
}

/// What an account holds, read before anything is copied: both folder lists and their mapping,
/// every source folder's `STATUS` (one pipelined round trip for all), and whether the target
/// takes MULTIAPPEND.
#[derive(Debug)]
pub struct Survey {
    pub mappings: Vec<FolderMapping>,
    /// The source folders' STATUS, one per mapping.
    pub(super) statuses: Vec<FolderStatus>,
    /// Per mapping: the source's answer to its STATUS could not be read (a server bug).
    pub(super) unreadable: Vec<Option<ImapError>>,
    /// Where the target's folders are created.
    pub(super) target_namespace: folders::Namespace,
    /// The target creates folders with a special use (`CREATE-SPECIAL-USE`).
    pub(super) target_special_use: bool,
    pub(super) flow: TransferFlow,
}

/// Read what [`copy_account`](super::account::copy_account) needs to know first, two round trips on
/// each side at once: the source lists its folders then asks the STATUS of every folder the plan
/// takes (pipelined), while the target lists its folders and says its capabilities.
pub async fn survey(ctx: &mut CopyContext<'_>) -> Result<Survey, ImapError> {
    let (ss, ts) = (ctx.source_server, ctx.target_server);
    let (options, relogin) = (ctx.options, ctx.relogin);
    let (source, target) = (&mut *ctx.source, &mut *ctx.target);
    let ((source_folders, mut by_path), (target_folders, flow)) = tokio::try_join!(
        async move {
            let list = folders::list(source, ss).await?;
            let filter = folders::Filter::new(options);
            let taken: Vec<(&str, &str)> = list
                .iter()
                .filter(|f| f.selectable && filter.takes(&f.path))
                .map(|f| (f.wire.as_str(), f.path.as_str()))
                .collect();
            let statuses = match pipelined::statuses(source, ss, &taken).await {
                // One answer broke the IMAP syntax and the connection with it: ask again one
                // folder at a time, so that only the folder it concerns is lost.
                Err(e) if e.kind == ImapErrorKind::Protocol => {
                    statuses_one_by_one(source, ss, relogin, &taken).await?
                }
                other => other?,
            };
            let mut by_path = HashMap::new();
            for ((_, path), status) in taken.iter().zip(statuses) {
                let status = match status {
                    Err(e) if e.kind == ImapErrorKind::Protocol => Err(e),
                    other => Ok(other?),
                };
                by_path.insert((*path).to_owned(), status);
            }
            Ok((list, by_path))
        },
        async move {
            // The distance to the target: the shorter of two round trips (LIST, CAPABILITY);
            // a busy server or client only ever adds to it.
            let asked = std::time::Instant::now();
            let list = folders::list_with_namespace(target, ts).await?;
            let listed = std::time::Instant::now();
            let (append, limit, special_use) = target_caps(target, ts).await?;
            let rtt = (listed - asked).min(listed.elapsed());
            Ok((
                (list, special_use),
                TransferFlow {
                    append_limit: limit,
                    ..TransferFlow::new(append, rtt)
                },
            ))
        }
    )?;
    let ((target_folders, target_namespace), target_special_use) = target_folders;
    let mappings =
        folders::map_folders(&source_folders, &target_folders, &target_namespace, options);
    let (statuses, unreadable) = mappings
        .iter()
        .map(|m| match by_path.remove(&m.source.path) {
            Some(Err(e)) => (FolderStatus::default(), Some(e)),
            found => (found.and_then(Result::ok).unwrap_or_default(), None),
        })
        .unzip();
    Ok(Survey {
        mappings,
        statuses,
        unreadable,
        target_namespace,
        target_special_use,
        flow,
    })
}

/// After a pipelined STATUS broke on an unreadable answer: the STATUS of each folder alone, on
/// a new connection, and again after each folder whose answer cannot be read. So many such
/// folders in a row that the server's answers are unreadable whatever the folder fail the
/// account.
async fn statuses_one_by_one(
    source: &mut Session,
    server: &str,
    relogin: &Relogin<'_>,
    folders: &[(&str, &str)],
) -> Result<Vec<Result<FolderStatus, ImapError>>, ImapError> {
    const IN_A_ROW: usize = 3;
    relogin.source(source).await?;
    let mut out = Vec::with_capacity(folders.len());
    let mut in_a_row = 0;
    for folder in folders {
        match pipelined::statuses(source, server, std::slice::from_ref(folder)).await {
            Ok(one) => {
                in_a_row = 0;
                out.extend(one);
            }
            Err(e) if e.kind == ImapErrorKind::Protocol && in_a_row + 1 < IN_A_ROW => {
                in_a_row += 1;
                out.push(Err(e));
                relogin.source(source).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

impl Survey {
    /// How the transfers of this account flow.
    pub fn flow(&self) -> TransferFlow {
        self.flow
    }

    /// Per source folder, the messages this pass is likely to carry, from the STATUS and the
    /// ledger's marks (an upper bound: a folder to reconcile counts whole). Known before anything
    /// is copied: progress bars and ETAs start from it.
    pub fn estimates(&self, ledger: &dyn Ledger) -> Vec<(&str, u64)> {
        self.mappings
            .iter()
            .zip(&self.statuses)
            .map(|(m, status)| {
                let record = ledger.folder(&m.source.path, &m.target_path).ok().flatten();
                let n = match record.filter(|r| fast_path(r, status)) {
                    Some(r) => status
                        .uid_next
                        .map_or(0, |next| next.saturating_sub(r.last_uid.saturating_add(1))),
                    None => status.messages,
                };
                (m.source.path.as_str(), u64::from(n))
            })
            .collect()
    }

    /// What this pass is likely to carry ([`Survey::estimates`] summed up).
    pub fn work(&self, ledger: &dyn Ledger) -> Work {
        let mut work = Work::default();
        for (_, n) in self.estimates(ledger) {
            if n > 0 {
                work.folders += 1;
                work.messages += n;
                work.largest = work.largest.max(n);
            }
        }
        work
    }
}

/// What a pass is likely to carry ([`Survey::work`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    /// Folders with something to send.
    pub folders: usize,
    pub messages: u64,
    /// The most messages one folder has to send.
    pub largest: u64,
}

impl Work {
    /// Whether more connection pairs have something to share: several folders, or one large
    /// enough to be shared ([`SHARE_FROM`]).
    pub fn divisible(&self) -> bool {
        self.folders > 1 || self.largest >= SHARE_FROM as u64
    }
}

/// Whether a folder's record can be trusted for an incremental pass: the same UIDVALIDITY, no
/// batch left pending, nothing refused or left out last time.
pub(super) fn fast_path(r: &FolderRecord, status: &FolderStatus) -> bool {
    r.uidvalidity == status.uid_validity.unwrap_or(0) && !r.pending && r.failed == 0
}

/// How the target takes messages, from its capabilities, and the largest it takes
/// (`APPENDLIMIT=n`, RFC 7889; a bare `APPENDLIMIT` means limits per folder, not read here).
/// Also whether it creates folders with a special use (`CREATE-SPECIAL-USE`, RFC 6154).
async fn target_caps(
    target: &mut Session,
    server: &str,
) -> Result<(AppendMode, Option<u64>, bool), ImapError> {
    let activity = "reading the capabilities";
    let caps = bounded(server, activity, op_timeout(0), async {
        target
            .capabilities()
            .await
            .map_err(|e| ImapError::from_imap(server, activity, e))
    })
    .await?;
    let limit = caps.iter().find_map(|c| match c {
        async_imap::types::Capability::Atom(atom) => atom
            .get(..12)
            .filter(|name| name.eq_ignore_ascii_case("APPENDLIMIT="))
            .and_then(|_| atom[12..].parse::<u64>().ok()),
        _ => None,
    });
    Ok((
        AppendMode::from_capabilities(caps.has_str("MULTIAPPEND"), caps.has_str("LITERAL+")),
        limit,
        caps.has_str("CREATE-SPECIAL-USE"),
    ))
}
