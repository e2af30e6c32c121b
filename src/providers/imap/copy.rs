//! The resumable, additive copy of a mailbox, and its verification.
//!
//! Per account ([`survey`], then [`copy_account`]): LIST on both sides at once, then the STATUS
//! of every source folder in one pipelined round trip ([`pipelined`]), the missing target
//! folders created in another. Per folder:
//! - **Fast path**: the [`Ledger`] knows the folder's UIDVALIDITY and the highest UID done, and
//!   no batch was left pending: the survey's STATUS says whether anything arrived; only UIDs
//!   above the mark are fetched and appended. A no-op re-run costs nothing per folder beyond
//!   that one pipelined STATUS.
//! - **Reconcile**: no record, a changed UIDVALIDITY, a batch left pending by a crash, or
//!   messages that failed last time: both folders' identities ([`Identity`]) are compared as
//!   multisets and only the difference is sent. This is what makes a crash between an APPEND
//!   and the ledger write harmless: the message is found on the target and not sent again.
//!
//! Opening a folder and reading its identities is one round trip per side, both sides at once.
//! Fetching and appending overlap (two connections, a channel between them; as few `UID FETCH`
//! commands as the UID sets allow, groups of messages appended pipelined: one MULTIAPPEND each,
//! or one APPEND per message with LITERAL+ alone, see [`AppendMode`]) while a byte budget bounds
//! what is held in memory; batches are recorded as their last group is acknowledged, without
//! stopping the flow. A folder with [`SHARE_FROM`] messages or more to send is shared by the
//! account's connection pairs, each taking chunks of it when it has nothing else to do; its
//! parts finish out of order, so it stays *pending* at its old mark until all are done.
//! Verification reads every folder's identities on both sides, each side in one pipelined
//! round trip.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::append::{AppendMode, Appender, Fetched, Piece, StreamHead, add};
use super::connect::Session;
use super::error::{ImapError, ImapErrorKind};
use super::folders::{self, FolderMapping, RemoteFolder};
use super::identity::{Identity, MessageFacts};
use super::pipelined::{self, FolderStatus, Listed, Listing, Open, Read, only, tagged, verdict};
use super::relogin::{CloseStreak, Relogin};
use super::settle;
use super::timeout::{bounded, op_timeout};
use crate::plan::model::CopyOptions;
use crate::providers::RunMode;

/// Messages fetched per `UID FETCH` (and recorded per ledger batch).
const BATCH_MESSAGES: usize = 200;
/// Bytes fetched per batch, at most (a larger message is a batch of its own).
const BATCH_BYTES: u64 = 4 << 20;
/// Messages this large or larger are streamed: read in pieces of [`PIECE`] (`BODY.PEEK[]<…>`)
/// and written into their APPEND's literal as the pieces come, so that no message is ever held
/// whole, whatever its size.
const STREAM_FROM: u32 = 2 << 20;
const PIECE: u32 = 1 << 20;
/// A folder with this many messages or more to send is shared: the account's other connection
/// pairs, once they have nothing else to do, help send it, a chunk at a time.
pub const SHARE_FROM: usize = 2000;
/// Messages and bytes of a shared folder's chunk: what a pair takes at once.
const CHUNK_MESSAGES: usize = 1000;
const CHUNK_BYTES: u64 = 64 << 20;
/// Messages and bytes sent in one MULTIAPPEND.
const MULTIAPPEND_MESSAGES: usize = 50;
const MULTIAPPEND_BYTES: usize = 2 << 20;
/// Bytes held between the fetching and the appending connection, at most (a message of
/// [`STREAM_FROM`] or more passes in pieces, each taking its share).
const BUFFER_KIB: u32 = 4 << 10;
/// The same for a target far away (a round trip of [`FAR_RTT`] or more): more bytes must be in
/// flight to keep the link busy.
const FAR_BUFFER_KIB: u32 = 8 << 10;
/// A target this far away (its first answered command's round trip) gets the wider flow.
const FAR_RTT: Duration = Duration::from_millis(10);

/// How a transfer flows: how messages are appended, the byte budget between fetch and append,
/// the groups in flight; chosen from the target's capabilities and round trip, and recorded in
/// the `copy-mail` step's output.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Flow {
    append: AppendMode,
    #[serde(rename = "buffer_kib")]
    budget_kib: u32,
    #[serde(rename = "groups_in_flight")]
    depth: usize,
    target_round_trip_ms: u64,
    /// The largest message the target takes, as it advertises (`APPENDLIMIT=`, RFC 7889).
    #[serde(
        rename = "target_append_limit",
        skip_serializing_if = "Option::is_none"
    )]
    append_limit: Option<u64>,
}

impl Flow {
    /// Whether the target is far away (its round trip 10 ms or more).
    pub fn far(&self) -> bool {
        self.target_round_trip_ms >= u64::try_from(FAR_RTT.as_millis()).unwrap_or(u64::MAX)
    }

    fn new(append: AppendMode, rtt: Duration) -> Flow {
        let far = rtt >= FAR_RTT;
        Flow {
            append,
            budget_kib: if far { FAR_BUFFER_KIB } else { BUFFER_KIB },
            depth: if far { 4 } else { 2 },
            target_round_trip_ms: u64::try_from(rtt.as_millis()).unwrap_or(u64::MAX),
            append_limit: None,
        }
    }
}

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

/// The flags a target folder keeps (RFC 3501 `PERMANENTFLAGS`): a server that keeps no keywords
/// (no `\*`) refuses a whole message that carries one ("Unrecognized flag"), so only what it
/// keeps is sent, and what is left out is recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetFlags {
    /// `None`: the folder did not say, every flag is sent.
    permanent: Option<Vec<String>>,
}

impl TargetFlags {
    /// From the folder's `PERMANENTFLAGS`; an empty list (a server that did not say, as the IMAP
    /// library reports it) keeps everything.
    pub fn from_permanent(flags: Option<Vec<String>>) -> TargetFlags {
        TargetFlags {
            permanent: flags.filter(|f| !f.is_empty()),
        }
    }

    /// `flags` (as sent in an APPEND) without those the folder cannot keep; these are added to
    /// `dropped`.
    fn keep(&self, flags: &str, dropped: &mut std::collections::BTreeSet<String>) -> String {
        let Some(permanent) = &self.permanent else {
            return flags.to_owned();
        };
        let any_keyword = permanent.iter().any(|f| f == "\\*");
        let mut kept: Vec<&str> = Vec::new();
        for flag in flags.split_whitespace() {
            let listed = permanent.iter().any(|p| p.eq_ignore_ascii_case(flag));
            if listed || (any_keyword && !flag.starts_with('\\')) {
                kept.push(flag);
            } else {
                dropped.insert(flag.to_owned());
            }
        }
        kept.join(" ")
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
    /// server's words: the folder is copied again on new connections ([`relogin`]).
    /// `accepted`: a message was accepted on that connection before.
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
    statuses: Vec<FolderStatus>,
    /// Per mapping: the source's answer to its STATUS could not be read (a server bug).
    unreadable: Vec<Option<ImapError>>,
    /// Where the target's folders are created.
    target_namespace: folders::Namespace,
    /// The target creates folders with a special use (`CREATE-SPECIAL-USE`).
    target_special_use: bool,
    flow: Flow,
}

/// Read what [`copy_account`] needs to know first, two round trips on each side at once: the
/// source lists its folders then asks the STATUS of every folder the plan takes (pipelined),
/// while the target lists its folders and says its capabilities.
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
                Flow {
                    append_limit: limit,
                    ..Flow::new(append, rtt)
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
    pub fn flow(&self) -> Flow {
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
fn fast_path(r: &FolderRecord, status: &FolderStatus) -> bool {
    r.uidvalidity == status.uid_validity.unwrap_or(0) && !r.pending && r.failed == 0
}

/// More connections for the same account (folders are shared out among all pairs), with what
/// must live as long as they do (`hold`, e.g. the server slots they take).
#[derive(Debug)]
pub struct Pair<H> {
    pub source: Session,
    pub target: Session,
    pub hold: H,
}

/// Copy every mapped folder of the account, on `ctx`'s connections and on each pair `extra_pairs`
/// yields, if any (folders are taken from a shared list, so a large folder does not hold the
/// others back, and a folder of [`SHARE_FROM`] messages or more to send is shared: a pair with
/// nothing left to take helps send it; the extra pairs log in while the first pair already
/// copies, and take what is left when they are ready; they are logged out at the end). The
/// target folders that are missing are created first, all at once. Returns one outcome per folder, in listing order; afterwards every
/// mapping's target exists (but in a dry run).
pub async fn copy_account<H>(
    ctx: &mut CopyContext<'_>,
    survey: &mut Survey,
    extra_pairs: Option<impl Future<Output = Vec<Pair<H>>>>,
) -> Result<Vec<FolderOutcome>, CopyError> {
    if ctx.mode == RunMode::Real {
        settle_pending(ctx, survey).await?;
    }
    let missing: Vec<bool> = survey.mappings.iter().map(|m| !m.target_exists).collect();
    let mut not_created: Vec<Option<ImapError>> = vec![None; missing.len()];
    if ctx.mode == RunMode::Real && missing.contains(&true) {
        let mut seen = std::collections::HashSet::new();
        let mut create = Vec::new();
        for m in survey.mappings.iter().filter(|m| !m.target_exists) {
            let wires = folders::with_parents(&m.target_path, &survey.target_namespace);
            let last = wires.len().saturating_sub(1);
            for (n, wire) in wires.into_iter().enumerate() {
                if seen.insert(wire.clone()) {
                    // A special folder the target has no folder of that use for: created with
                    // the use, where the target can (RFC 6154 CREATE-SPECIAL-USE).
                    let special = m
                        .source
                        .special
                        .filter(|_| n == last && survey.target_special_use);
                    create.push((wire, m.target_path.clone(), special));
                }
            }
        }
        let refused = pipelined::create(ctx.target, ctx.target_server, &create).await?;
        for (i, m) in survey.mappings.iter_mut().enumerate() {
            if m.target_exists {
                continue;
            }
            // A folder fails with the first of its parents (or itself) the target refused.
            let wires = folders::with_parents(&m.target_path, &survey.target_namespace);
            match refused.iter().find(|(w, _)| wires.contains(w)) {
                Some((_, e)) => not_created[i] = Some(e.clone()),
                None => m.target_exists = true,
            }
        }
    }
    let shared = Shared {
        survey: &*survey,
        next: std::sync::atomic::AtomicUsize::new(0),
        missing,
        not_created,
        sharing: extra_pairs.is_some(),
        open: std::sync::Mutex::new(Vec::new()),
        preparing: std::sync::atomic::AtomicUsize::new(0),
        changed: tokio::sync::Notify::new(),
    };
    let (options, ledger, observer, stop) = (ctx.options, ctx.ledger, ctx.observer, ctx.stop);
    let (refusals, relogin) = (ctx.refusals, ctx.relogin);
    let (source_server, target_server, mode) = (ctx.source_server, ctx.target_server, ctx.mode);
    let first = CopyContext {
        source: &mut *ctx.source,
        target: &mut *ctx.target,
        ..*ctx
    };
    let shared = &shared;
    let extra = async move {
        let mut pairs = match extra_pairs {
            Some(pairs) => pairs.await,
            None => Vec::new(),
        };
        let results = futures::future::join_all(pairs.iter_mut().map(|p| {
            worker(
                CopyContext {
                    source: &mut p.source,
                    source_server,
                    target: &mut p.target,
                    target_server,
                    options,
                    ledger,
                    mode,
                    observer,
                    stop,
                    refusals,
                    relogin,
                },
                shared,
            )
        }))
        .await;
        for mut p in pairs {
            let _ = p.source.logout().await;
            let _ = p.target.logout().await;
        }
        results
    };
    let (main, extra) = tokio::join!(worker(first, shared), extra);
    let mut outcomes = Vec::with_capacity(survey.mappings.len());
    let mut first_error = None;
    for result in std::iter::once(main).chain(extra) {
        match result {
            Ok(done) => outcomes.extend(done),
            Err(e) => {
                // An interruption yields to a real error, which says more.
                if first_error.is_none() || matches!(first_error, Some(CopyError::Interrupted)) {
                    first_error = Some(e);
                }
            }
        }
    }
    match first_error {
        // A helping pair's target closed on a refused message: the step is tried again.
        Some(CopyError::Closed { error, .. }) => return Err(CopyError::Imap(error)),
        Some(e) => return Err(e),
        None => {}
    }
    outcomes.sort_by_key(|(i, _)| *i);
    Ok(outcomes.into_iter().map(|(_, o)| o).collect())
}

/// Before anything is compared: wait until the target folders whose batch a dead run left
/// pending stop moving, so that what it still had on the wire has landed ([`settle`]).
async fn settle_pending(ctx: &mut CopyContext<'_>, survey: &Survey) -> Result<(), CopyError> {
    let mut pending = Vec::new();
    for m in survey.mappings.iter().filter(|m| m.target_exists) {
        let record = ctx
            .ledger
            .folder(&m.source.path, &m.target_path)
            .map_err(CopyError::Ledger)?;
        if record.is_some_and(|r| r.pending) {
            pending.push((m.target_wire.as_str(), m.target_path.as_str()));
        }
    }
    if !pending.is_empty() {
        settle::settle(ctx.target, ctx.target_server, &pending).await?;
    }
    Ok(())
}

/// What the connection pairs of one account share: the folders and the next one to take.
struct Shared<'a> {
    survey: &'a Survey,
    next: std::sync::atomic::AtomicUsize,
    /// Per mapping: the target folder was missing before this pass.
    missing: Vec<bool>,
    /// Per mapping: the target refused to create its folder (or a parent), with its words.
    not_created: Vec<Option<ImapError>>,
    /// Other pairs may come: large folders are shared.
    sharing: bool,
    /// The shared folders being sent.
    open: std::sync::Mutex<Vec<Arc<SharedFolder>>>,
    /// Folders large enough to be shared that a pair is reading (not yet shared or not): a
    /// pair with nothing left waits for them rather than log out.
    preparing: std::sync::atomic::AtomicUsize,
    /// A folder was shared, or found not to be.
    changed: tokio::sync::Notify,
}

/// A folder that may be shared, while its pair reads it ([`Shared::preparing`]); dropped once
/// it is shared or found too small, or when its pair fails.
struct MayShare<'s, 'a> {
    shared: &'s Shared<'a>,
    index: usize,
}

impl<'s, 'a> MayShare<'s, 'a> {
    fn new(shared: &'s Shared<'a>, index: usize) -> Self {
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

impl Shared<'_> {
    /// A shared folder with chunks left, joined (counted as working on it).
    fn joinable(&self) -> Option<Arc<SharedFolder>> {
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
struct SharedFolder {
    /// Its mapping's index.
    index: usize,
    uidvalidity: u32,
    flow: Flow,
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
async fn part(
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
async fn share_folder(
    ctx: &mut CopyContext<'_>,
    share: MayShare<'_, '_>,
    uidvalidity: u32,
    base: u32,
    wanted: &[Wanted],
    (flow, flags): (Flow, &TargetFlags),
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

/// One connection pair's share of the copy: folders taken one at a time until none is left, then
/// chunks of the shared folders still being sent.
async fn worker(
    mut c: CopyContext<'_>,
    shared: &Shared<'_>,
) -> Result<Vec<(usize, FolderOutcome)>, CopyError> {
    let mut done = Vec::new();
    let mut closes = CloseStreak::default();
    loop {
        let i = shared.next.fetch_add(1, Ordering::SeqCst);
        if c.stop.is_cancelled() {
            return Err(CopyError::Interrupted);
        }
        let (Some(m), Some(status)) =
            (shared.survey.mappings.get(i), shared.survey.statuses.get(i))
        else {
            // Nothing left to take: help with a shared folder while one has chunks left, or
            // may soon have (a pair is still reading a folder large enough).
            while !c.stop.is_cancelled() {
                let changed = shared.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if let Some(folder) = shared.joinable() {
                    let m = &shared.survey.mappings[folder.index];
                    part(&mut c, m, &folder, true).await?;
                    continue;
                }
                if shared.preparing.load(Ordering::SeqCst) == 0 {
                    break;
                }
                changed.await;
            }
            return Ok(done);
        };
        if let Some(refusal) = &shared.not_created[i] {
            done.push((i, not_created(&c, m, *status, refusal)?));
            continue;
        }
        if let Some(e) = &shared.survey.unreadable[i] {
            done.push((i, unreadable(&c, m, *status, e)?));
            continue;
        }
        let large = status.messages as usize >= SHARE_FROM;
        let outcome = loop {
            let share = (shared.sharing && large).then(|| MayShare::new(shared, i));
            let flow = shared.survey.flow;
            match copy_folder(&mut c, m, *status, shared.missing[i], flow, share).await {
                Ok(outcome) => {
                    if outcome.counts.copied > 0 {
                        closes.accepted();
                    }
                    break outcome;
                }
                // The refused message is recorded; the folder is taken again on new
                // connections, and leaves it out.
                Err(CopyError::Closed { error, accepted }) => {
                    closes.closed(&error, accepted)?;
                    c.relogin.pair(c.source, c.target).await?;
                }
                // An answer that breaks the IMAP syntax, about this folder: only it fails.
                Err(CopyError::Imap(e)) if e.kind == ImapErrorKind::Protocol => {
                    c.relogin.pair(c.source, c.target).await?;
                    break unreadable(&c, m, *status, &e)?;
                }
                Err(e) => return Err(e),
            }
        };
        done.push((i, outcome));
    }
}

/// A folder whose work met an answer that breaks the IMAP syntax (a server bug): not copied
/// (or not whole), the others are; recorded (an issue of the folder, UID 0) with the command
/// and an excerpt of the answer, and reconciled on the next run.
fn unreadable(
    c: &CopyContext<'_>,
    m: &FolderMapping,
    status: FolderStatus,
    e: &ImapError,
) -> Result<FolderOutcome, CopyError> {
    let src = &m.source.path;
    let detail = e.to_string();
    (c.observer)(CopyEvent::Folder {
        source: src,
        target: &m.target_path,
        counts: &FolderCounts::default(),
    });
    if c.mode == RunMode::Real {
        c.ledger
            .issue(
                src,
                0,
                IssueKind::Unreadable,
                &detail,
                &MessageFacts::default(),
            )
            .map_err(CopyError::Ledger)?;
        // A record that an incremental pass would trust: the next run compares it whole
        // instead (and forgets this issue if the folder reads well then).
        if let Some(r) = c
            .ledger
            .folder(src, &m.target_path)
            .map_err(CopyError::Ledger)?
            .filter(|r| r.failed == 0)
        {
            let record = FolderRecord { failed: 1, ..r };
            c.ledger
                .end_batch(src, &m.target_path, record, &FolderCounts::default())
                .map_err(CopyError::Ledger)?;
        }
    }
    Ok(FolderOutcome {
        source: src.clone(),
        target: m.target_path.clone(),
        reason: m.reason,
        created: false,
        counts: FolderCounts {
            found: u64::from(status.messages),
            failed: u64::from(status.messages),
            ..FolderCounts::default()
        },
        error: Some(detail),
        unreadable: true,
    })
}

/// A folder the target refused to create: nothing of it is copied, the others are; recorded
/// (as an issue of the folder, UID 0) with the server's words and the `map:` line that would
/// give it a name the target takes.
fn not_created(
    c: &CopyContext<'_>,
    m: &FolderMapping,
    status: FolderStatus,
    refusal: &ImapError,
) -> Result<FolderOutcome, CopyError> {
    let src = &m.source.path;
    let detail = format!(
        "the target refused to create folder {}: {}; to copy it under another name, add \
         to the account's `copy: folders: map:` {}",
        m.target_path,
        refusal.message,
        suggested_map(&m.source.path, &m.target_path)
    );
    (c.observer)(CopyEvent::Folder {
        source: src,
        target: &m.target_path,
        counts: &FolderCounts::default(),
    });
    if c.mode == RunMode::Real {
        c.ledger.clear_issues(src).map_err(CopyError::Ledger)?;
        c.ledger
            .issue(
                src,
                0,
                IssueKind::Refused,
                &detail,
                &MessageFacts::default(),
            )
            .map_err(CopyError::Ledger)?;
    }
    Ok(FolderOutcome {
        source: src.clone(),
        target: m.target_path.clone(),
        reason: m.reason,
        created: false,
        counts: FolderCounts {
            found: u64::from(status.messages),
            failed: u64::from(status.messages),
            ..FolderCounts::default()
        },
        error: Some(detail),
        unreadable: false,
    })
}

/// A `map:` entry giving `target` a name most servers take: every character but letters,
/// digits, spaces and `-_&'+,()` replaced by `_` (servers refuse `.` with `/` as separator,
/// Cyrus refuses `;!^%`, many refuse `\\` and `"`).
fn suggested_map(source: &str, target: &str) -> String {
    let name: String = target
        .split('/')
        .map(|part| {
            part.chars()
                .map(|c| {
                    if c.is_alphanumeric() || " -_&'+,()".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/");
    format!("{{ {}: {} }}", yaml_string(source), yaml_string(&name))
}

fn yaml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One source message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wanted {
    uid: u32,
    size: u32,
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

async fn copy_folder(
    ctx: &mut CopyContext<'_>,
    m: &FolderMapping,
    status: FolderStatus,
    missing: bool,
    flow: Flow,
    share: Option<MayShare<'_, '_>>,
) -> Result<FolderOutcome, CopyError> {
    let src = &m.source.path;
    let (ss, ts) = (ctx.source_server, ctx.target_server);
    let record = ctx
        .ledger
        .folder(src, &m.target_path)
        .map_err(CopyError::Ledger)?;
    let uidvalidity = status.uid_validity.unwrap_or(0);
    let mut outcome = FolderOutcome {
        source: src.clone(),
        target: m.target_path.clone(),
        reason: m.reason,
        created: missing,
        counts: FolderCounts {
            found: u64::from(status.messages),
            ..FolderCounts::default()
        },
        error: None,
        unreadable: false,
    };

    let fast = record.filter(|r| fast_path(r, &status));
    if let Some(r) = fast
        && status
            .uid_next
            .is_some_and(|next| next <= r.last_uid.saturating_add(1))
    {
        // Nothing arrived since the last pass: the survey's STATUS was the whole cost.
        outcome.counts.already = outcome.counts.found;
        (ctx.observer)(CopyEvent::Folder {
            source: src,
            target: &m.target_path,
            counts: &outcome.counts,
        });
        return Ok(outcome);
    }

    // Open both folders and read what is needed, each side in one round trip: the source's
    // messages (from the mark up on the fast path), the target's identities to reconcile
    // against. The target is SELECTed (appended to next), but only EXAMINEd in a dry run.
    let real = ctx.mode == RunMode::Real;
    let open = if real { Open::Select } else { Open::Examine };
    let from = fast.map_or(1, |r| r.last_uid.saturating_add(1));
    // A target folder created by this pass is empty: nothing to compare, so the source's
    // UIDs and sizes are enough (the server need not open every message for its headers).
    let source_read = [Read {
        wire: &m.source.wire,
        path: src,
        from,
        headers: !missing && fast.is_none(),
    }];
    let target_read = [Read {
        wire: &m.target_wire,
        path: &m.target_path,
        from: 1,
        headers: true,
    }];
    let source = &mut *ctx.source;
    let target = &mut *ctx.target;
    let (source_ids, (target_ids, target_flags)) = tokio::try_join!(
        async { only(pipelined::identities(source, ss, Open::Examine, &source_read).await?) },
        async {
            if !m.target_exists {
                // A dry run: it would be created.
                Ok((Vec::new(), TargetFlags::default()))
            } else if fast.is_some() || missing {
                // Only new mail to add, or an empty new folder: no target identities needed.
                let mut flags = TargetFlags::default();
                if real {
                    let activity = format!("opening {}", m.target_path);
                    let opened = bounded(ts, &activity, op_timeout(0), async {
                        target
                            .select(&m.target_wire)
                            .await
                            .map_err(|e| ImapError::from_imap(ts, &activity, e))
                    })
                    .await?;
                    flags = TargetFlags::from_permanent(Some(
                        opened
                            .permanent_flags
                            .iter()
                            .filter_map(|f| append_flag(f.clone()))
                            .collect(),
                    ));
                }
                Ok((Vec::new(), flags))
            } else {
                let answers = pipelined::identities(target, ts, open, &target_read).await?;
                let listing = answers.into_iter().next().transpose()?.unwrap_or_default();
                let flags = TargetFlags::from_permanent(listing.permanent_flags);
                Ok((listing.messages, flags))
            }
        }
    )?;
    let max_uid = source_ids
        .iter()
        .map(|(uid, _, _)| *uid)
        .max()
        .unwrap_or(from.saturating_sub(1));
    let wanted = difference(&source_ids, &target_ids);
    if fast.is_some() {
        outcome.counts.already = outcome.counts.found.saturating_sub(wanted.len() as u64);
    } else {
        outcome.counts.found = source_ids.len() as u64;
        outcome.counts.already = (source_ids.len() - wanted.len()) as u64;
    }
    // Only what is to be sent is kept while it is sent.
    drop((source_ids, target_ids));
    if fast.is_none() && real {
        ctx.ledger.clear_issues(src).map_err(CopyError::Ledger)?;
    }

    // Leave out what the plan says is too large.
    let limit = ctx.options.max_message_size;
    let (wanted, too_large): (Vec<Wanted>, Vec<Wanted>) = wanted
        .into_iter()
        .partition(|w| limit.is_none_or(|l| u64::from(w.size) <= l));
    outcome.counts.skipped = too_large.len() as u64;
    // Leave out what the target says it cannot take: over its APPENDLIMIT, or as large as a
    // message it refused as too large earlier in this run. Sending them would only get them
    // refused, and some servers close the connection after such a refusal.
    let target_limit = target_limit(flow, ctx.refusals.smallest(ts));
    let (wanted, too_large_for_target): (Vec<Wanted>, Vec<Wanted>) = wanted
        .into_iter()
        .partition(|w| target_limit.as_ref().is_none_or(|l| l.takes(w.size)));
    // And what it refused before closing the connection, earlier in this run.
    let closed_on = ctx.refusals.closed_on(ts, src);
    let (refused_before, wanted): (Vec<Wanted>, Vec<Wanted>) = wanted
        .into_iter()
        .partition(|w| closed_on.iter().any(|(uid, _)| *uid == w.uid));
    outcome.counts.failed = (too_large_for_target.len() + refused_before.len()) as u64;
    outcome.counts.to_copy = wanted.len() as u64;

    (ctx.observer)(CopyEvent::Folder {
        source: src,
        target: &m.target_path,
        counts: &outcome.counts,
    });
    if !real {
        return Ok(outcome);
    }

    // What names the messages left out, for the report (one read, only when there are some).
    let left_out: Vec<(u32, u32)> = too_large
        .iter()
        .chain(&too_large_for_target)
        .map(|w| (w.uid, w.size))
        .collect();
    let named = pipelined::facts(&mut *ctx.source, ss, src, &left_out).await?;
    let facts = |w: &Wanted| {
        named
            .get(&w.uid)
            .cloned()
            .unwrap_or_else(|| MessageFacts::sized(u64::from(w.size)))
    };
    for w in &too_large {
        let detail = format!(
            "{} bytes, larger than max-message-size ({} bytes)",
            w.size,
            limit.unwrap_or_default()
        );
        ctx.ledger
            .issue(src, w.uid, IssueKind::TooLarge, &detail, &facts(w))
            .map_err(CopyError::Ledger)?;
    }
    if let Some(target_limit) = &target_limit {
        for w in &too_large_for_target {
            let detail = target_limit.reason(w.size);
            ctx.ledger
                .issue(src, w.uid, IssueKind::TooLarge, &detail, &facts(w))
                .map_err(CopyError::Ledger)?;
        }
    }

    for w in &refused_before {
        if let Some((_, words)) = closed_on.iter().find(|(uid, _)| *uid == w.uid) {
            ctx.ledger
                .issue(src, w.uid, IssueKind::Refused, words, &facts(w))
                .map_err(CopyError::Ledger)?;
        }
    }

    match share {
        Some(share) if wanted.len() >= SHARE_FROM => {
            let base = from.saturating_sub(1);
            let counts = &mut outcome.counts;
            let flow = (flow, &target_flags);
            share_folder(ctx, share, uidvalidity, base, &wanted, flow, counts).await?;
        }
        share if !wanted.is_empty() => {
            drop(share);
            let mut all = Some(wanted);
            transfer(
                ctx,
                m,
                uidvalidity,
                &mut || all.take(),
                (flow, &target_flags),
                &mut outcome.counts,
            )
            .await?;
        }
        _ => {}
    }

    let record = FolderRecord {
        uidvalidity,
        last_uid: max_uid,
        pending: false,
        failed: outcome.counts.failed + outcome.counts.skipped,
    };
    let nothing = FolderCounts::default();
    ctx.ledger
        .end_batch(src, &m.target_path, record, &nothing)
        .map_err(CopyError::Ledger)?;
    Ok(outcome)
}

/// The largest message a target takes, as far as this run knows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TargetLimit {
    /// Its `APPENDLIMIT`: messages of this size or less.
    Advertised(u64),
    /// It refused a message of this size as too large, in these words: smaller ones only.
    Refused(u64, String),
}

impl TargetLimit {
    fn takes(&self, size: u32) -> bool {
        match self {
            TargetLimit::Advertised(max) => u64::from(size) <= *max,
            TargetLimit::Refused(refused, _) => u64::from(size) < *refused,
        }
    }

    /// Why a message of `size` bytes is not sent (for the report).
    fn reason(&self, size: u32) -> String {
        match self {
            TargetLimit::Advertised(max) => format!(
                "{size} bytes, larger than the target's APPENDLIMIT ({max} bytes); too large \
                 for the target"
            ),
            TargetLimit::Refused(refused, words) => format!(
                "{size} bytes; too large for the target, which refused a message of {refused} \
                 bytes: {words}"
            ),
        }
    }
}

/// The tighter of what the target advertises and what it refused in this run.
fn target_limit(flow: Flow, refused: Option<(u64, String)>) -> Option<TargetLimit> {
    let advertised = flow.append_limit.map(TargetLimit::Advertised);
    let refused = refused.map(|(size, words)| TargetLimit::Refused(size, words));
    match (advertised, refused) {
        (Some(TargetLimit::Advertised(max)), Some(TargetLimit::Refused(size, words)))
            if size <= max =>
        {
            Some(TargetLimit::Refused(size, words))
        }
        (Some(advertised), _) => Some(advertised),
        (None, refused) => refused,
    }
}

enum Item {
    Message(Fetched),
    /// A streamed message begins: its pieces follow, in order, nothing between them.
    Start(StreamHead),
    Piece(Piece),
    /// Every message of the batch up to this UID has been sent to the channel.
    BatchEnd {
        max_uid: u32,
    },
}

/// How a streamed message went, from the fetching side.
enum Streamed {
    /// Every piece is in the channel.
    Sent,
    /// Not on the source any more (expunged meanwhile).
    Gone,
    /// Its body is not exactly RFC822.SIZE long: read it whole instead (the literal's size must
    /// be known before its first byte).
    Whole,
    /// The appending side stopped (it says why).
    Stopped,
}

/// Stream one large message. Its flags, date and a probe of its last byte (`BODY.PEEK[]<size-1.2>`
/// returns exactly one byte if and only if the body is RFC822.SIZE long) are asked together with
/// its first pieces; then the pieces follow, a few `UID FETCH` commands in flight at once, each
/// piece taking its share of the byte budget before it is asked for. Pieces are told apart by
/// their offset (Dovecot runs pipelined FETCH commands side by side: a piece's data may come
/// before the answer to the command ahead of it), the probe by its INTERNALDATE.
async fn stream_message(
    source: &mut Session,
    server: &str,
    folder: &str,
    w: Wanted,
    budget: &Arc<Semaphore>,
    budget_kib: u32,
    tx: &mpsc::Sender<Item>,
) -> Result<Streamed, ImapError> {
    use async_imap::imap_proto::Response;

    let activity = format!("fetching message {} of {folder}", w.uid);
    let run = |e| ImapError::from_imap(server, &activity, e);
    let probe_tag = source
        .run_command(&format!(
            "UID FETCH {} (UID FLAGS INTERNALDATE BODY.PEEK[]<{}.2>)",
            w.uid,
            w.size.saturating_sub(1)
        ))
        .await
        .map_err(run)?;
    let piece_kib = PIECE >> 10;
    let ahead = (budget_kib / piece_kib).clamp(1, 4) as usize;
    let mut asked = Asked::new();
    let mut received: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut answered: std::collections::HashSet<String> = std::collections::HashSet::new();
    // (flags, INTERNALDATE, bytes at size-1) once the probe's answer is in.
    let mut probe: Option<(String, Option<String>, usize)> = None;
    let mut offset = 0u32;
    let mut started = false;
    loop {
        while asked.len() < ahead && offset < w.size {
            let len = PIECE.min(w.size - offset);
            let permit = Arc::clone(budget)
                .acquire_many_owned((len >> 10).clamp(1, budget_kib))
                .await
                .map_err(|_| closed_copy(server))?;
            let tag = source
                .run_command(&format!(
                    "UID FETCH {} (BODY.PEEK[]<{offset}.{len}>)",
                    w.uid
                ))
                .await
                .map_err(run)?;
            asked.push_back((tag, offset, len, permit));
            offset += len;
        }
        // What is waited for now: the probe's answer first, then the oldest piece.
        let waiting = if started {
            asked
                .front()
                .map(|(tag, at, _, _)| (tag.0.clone(), Some(*at)))
        } else {
            Some((probe_tag.0.clone(), None))
        };
        let Some((tag, at)) = waiting else { break };
        let ready = |received: &HashMap<u32, Vec<u8>>,
                     answered: &std::collections::HashSet<String>| {
            answered.contains(&tag) && at.is_none_or(|at| received.contains_key(&at))
        };
        while !ready(&received, &answered) {
            let limit = op_timeout(PIECE as usize);
            let (received, answered, probe) = (&mut received, &mut answered, &mut probe);
            let answered_without_piece = pipelined::next_response(
                source,
                server,
                &activity,
                limit,
                |response| match response {
                    Response::Fetch(_, attributes) => {
                        let seen = read_piece_or_probe(attributes, &asked, received);
                        if probe.is_none() {
                            *probe = seen;
                        }
                        Ok(false)
                    }
                    other => match tagged(other) {
                        Some((done, status, text)) => {
                            verdict(server, &activity, status, text)?;
                            answered.insert(done.0.clone());
                            Ok(done.0 == tag && at.is_some_and(|at| !received.contains_key(&at)))
                        }
                        None => Ok(false),
                    },
                },
            )
            .await??;
            if answered_without_piece {
                break; // an error below
            }
        }
        answered.remove(&tag);
        let Some(at) = at else {
            // The probe is answered: stream, or say why not once the pieces asked are read.
            let verdict = match probe.take() {
                None => Streamed::Gone,
                Some((_, _, last)) if last != 1 || w.size == 0 => Streamed::Whole,
                Some((flags, date, _)) => {
                    let head = StreamHead {
                        uid: w.uid,
                        flags,
                        date,
                        size: w.size,
                    };
                    if tx.send(Item::Start(head)).await.is_err() {
                        // The pieces asked are read off, so the session stays usable.
                        drain(source, server, &activity, &asked, &mut answered).await?;
                        return Ok(Streamed::Stopped);
                    }
                    started = true;
                    continue;
                }
            };
            drain(source, server, &activity, &asked, &mut answered).await?;
            return Ok(verdict);
        };
        let Some((_, _, len, permit)) = asked.pop_front() else {
            break;
        };
        let bytes = received.remove(&at).unwrap_or_default();
        if bytes.len() != len as usize {
            return Err(ImapError::new(
                ImapErrorKind::Network,
                server,
                &activity,
                format!(
                    "asked for {len} bytes at {at} of a {}-byte message, the server sent {}",
                    w.size,
                    bytes.len()
                ),
            ));
        }
        let piece = Piece {
            bytes,
            _permit: permit,
        };
        if tx.send(Item::Piece(piece)).await.is_err() {
            drain(source, server, &activity, &asked, &mut answered).await?;
            return Ok(Streamed::Stopped);
        }
    }
    Ok(Streamed::Sent)
}

/// A FETCH answer while a message streams: a piece asked (kept by its offset in `received`), or
/// the probe (told by its INTERNALDATE): then its flags, INTERNALDATE and how many bytes it
/// found at `size - 1`.
fn read_piece_or_probe(
    attributes: &[async_imap::imap_proto::AttributeValue<'_>],
    asked: &Asked,
    received: &mut HashMap<u32, Vec<u8>>,
) -> Option<(String, Option<String>, usize)> {
    use async_imap::imap_proto::AttributeValue;
    let is_probe = attributes
        .iter()
        .any(|a| matches!(a, AttributeValue::InternalDate(_)));
    let mut flags = String::new();
    let mut internal_date = None;
    let mut last = 0;
    for a in attributes {
        match a {
            AttributeValue::Flags(names) => {
                flags = flag_list(
                    names
                        .iter()
                        .map(|f| async_imap::types::Flag::from(f.as_ref())),
                );
            }
            AttributeValue::InternalDate(d) => internal_date = Some(format!("\"{d}\"")),
            AttributeValue::BodySection {
                section: None,
                index: Some(i),
                data,
            } => {
                let bytes = data.as_deref().unwrap_or_default();
                if is_probe {
                    last = bytes.len();
                } else if asked.iter().any(|(_, o, _, _)| o == i) {
                    received.entry(*i).or_insert_with(|| bytes.to_vec());
                }
            }
            _ => {}
        }
    }
    is_probe.then_some((flags, internal_date, last))
}

/// Read (and drop) what is left of commands already sent, until each is answered.
async fn drain(
    source: &mut Session,
    server: &str,
    activity: &str,
    asked: &Asked,
    answered: &mut std::collections::HashSet<String>,
) -> Result<(), ImapError> {
    let limit = op_timeout(PIECE as usize);
    while asked
        .iter()
        .any(|(tag, _, _, _)| !answered.contains(&tag.0))
    {
        pipelined::next_response(source, server, activity, limit, |response| {
            if let Some((tag, _, _)) = tagged(response) {
                answered.insert(tag.0.clone());
            }
        })
        .await?;
    }
    Ok(())
}

/// The pieces of a streamed message asked and not yet passed on: the command's tag, the offset
/// and length asked, and the share of the byte budget they hold.
type Asked = std::collections::VecDeque<(
    async_imap::imap_proto::RequestId,
    u32,
    u32,
    tokio::sync::OwnedSemaphorePermit,
)>;

/// Whether a batch is one message to stream.
fn streamed(batch: &[Wanted]) -> bool {
    matches!(batch, [one] if one.size >= STREAM_FROM)
}

/// Longest UID set put in one `UID FETCH` (servers accept command lines of 8 kB at least).
const MAX_SET_CHARS: usize = 4000;

/// Fetch on the source and append on the target at the same time. The source streams the
/// wanted messages (taken from `next`, a chunk at a time, until it has none) with as few
/// `UID FETCH` commands as the UID sets allow (one for a contiguous folder), the target takes
/// them in pipelined groups, and batches are recorded in the ledger as their last group is
/// acknowledged: neither side waits for a round trip between batches or chunks.
async fn transfer(
    ctx: &mut CopyContext<'_>,
    m: &FolderMapping,
    uidvalidity: u32,
    next: &mut (dyn FnMut() -> Option<Vec<Wanted>> + Send),
    (flow, flags): (Flow, &TargetFlags),
    counts: &mut FolderCounts,
) -> Result<(), CopyError> {
    let (ss, ts) = (ctx.source_server, ctx.target_server);
    let src = m.source.path.as_str();
    let append = flow.append;
    let budget = Arc::new(Semaphore::new(flow.budget_kib as usize));
    let (tx, mut rx) = mpsc::channel::<Item>(BATCH_MESSAGES);
    let stop = ctx.stop;
    let source = &mut *ctx.source;
    let mut appender = Appender::new(
        &mut *ctx.target,
        ts,
        m,
        (append, flow.depth),
        uidvalidity,
        ctx.ledger,
        ctx.observer,
        counts,
        ctx.refusals,
    );

    let producer = async move {
        while let Some(chunk) = next() {
            let batches = batches(&chunk);
            let sent = send_chunk(source, ss, src, &batches, &budget, flow, &tx, stop).await?;
            if !sent || stop.is_cancelled() {
                break;
            }
        }
        Ok::<(), ImapError>(())
    };
    let mut dropped_keywords = std::collections::BTreeSet::new();
    let dropped = &mut dropped_keywords;
    // The appending side owns the receiver and the appender: when it stops (an error), both are
    // dropped with the messages and groups they hold, which frees the byte budget and closes
    // the channel, so the fetching side sees it at once instead of waiting for room for ever.
    let consumer = async move {
        let outcome = async {
            let mut group: Vec<Fetched> = Vec::new();
            let mut group_bytes = 0usize;
            loop {
                // Nothing to send yet: take the oldest answer meanwhile. The groups in flight hold
                // the byte budget, so the fetching side may be waiting for exactly that. Without
                // LITERAL+ only one message is in flight, smaller than half the budget (larger
                // ones are streamed): its answer is read with the next message's go-ahead.
                let item = match rx.try_recv() {
                    Ok(item) => item,
                    Err(mpsc::error::TryRecvError::Empty)
                        if appender.in_flight() && append.pipelined() =>
                    {
                        appender.complete_oldest().await?;
                        appender.settle_marks()?;
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Empty) if appender.has_refused() => {
                        appender.retry_refused().await?;
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => match rx.recv().await {
                        Some(item) => item,
                        None => break,
                    },
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                };
                match item {
                    Item::Message(mut msg) => {
                        msg.flags = flags.keep(&msg.flags, dropped);
                        group_bytes += msg.body().len();
                        group.push(msg);
                        if !append.pipelined()
                            || group.len() >= MULTIAPPEND_MESSAGES
                            || group_bytes >= MULTIAPPEND_BYTES
                        {
                            appender.send(std::mem::take(&mut group)).await?;
                            group_bytes = 0;
                        }
                    }
                    Item::BatchEnd { max_uid } => {
                        appender.send(std::mem::take(&mut group)).await?;
                        group_bytes = 0;
                        appender.mark(max_uid)?;
                    }
                    Item::Start(mut head) => {
                        head.flags = flags.keep(&head.flags, dropped);
                        appender.send(std::mem::take(&mut group)).await?;
                        group_bytes = 0;
                        appender.begin_streamed(head).await?;
                    }
                    Item::Piece(piece) => appender.stream_piece(piece).await?,
                }
            }
            // The producer ended (all sent, an interruption, or an error it returns).
            appender.send(std::mem::take(&mut group)).await?;
            appender.finish().await
        }
        .await;
        match outcome {
            // The target broke the connection: say why, if it said.
            Err(CopyError::Imap(e)) if e.kind == ImapErrorKind::Network => {
                Err(appender.broken(e).await)
            }
            other => other,
        }
    };

    let (fetching, appending) = tokio::join!(producer, consumer);
    if !dropped_keywords.is_empty() && ctx.mode == RunMode::Real {
        let names: Vec<&str> = dropped_keywords.iter().map(String::as_str).collect();
        let detail = format!(
            "copied without {}: the target folder {} keeps no such flag (its PERMANENTFLAGS)",
            names.join(" "),
            m.target_path
        );
        ctx.ledger
            .issue(
                src,
                0,
                IssueKind::KeywordsDropped,
                &detail,
                &MessageFacts::default(),
            )
            .map_err(CopyError::Ledger)?;
    }
    // Both fail when the fetching side failed in the middle of a streamed message: its error
    // is the cause.
    if let (Err(e), Err(_)) = (&fetching, &appending) {
        return Err(e.clone().into());
    }
    appending?;
    fetching?;
    if stop.is_cancelled() {
        return Err(CopyError::Interrupted);
    }
    Ok(())
}

/// One chunk's batches, fetched and passed to the appending side. `false`: stop (the appending
/// side stopped, it says why, or an interruption once a batch ended).
#[allow(clippy::too_many_arguments)]
async fn send_chunk(
    source: &mut Session,
    ss: &str,
    src: &str,
    batches: &[Vec<Wanted>],
    budget: &Arc<Semaphore>,
    flow: Flow,
    tx: &mpsc::Sender<Item>,
    stop: &CancellationToken,
) -> Result<bool, ImapError> {
    // Batches go into commands whole; a batch ends once all its messages passed (or, for a
    // message expunged meanwhile, once its command ended).
    let mut batch_of: HashMap<u32, usize> = HashMap::new();
    let mut left: Vec<usize> = Vec::with_capacity(batches.len());
    for (i, b) in batches.iter().enumerate() {
        left.push(b.len());
        batch_of.extend(b.iter().map(|w| (w.uid, i)));
    }
    let max_of = |i: usize| batches[i].iter().map(|w| w.uid).max().unwrap_or(0);
    let mut closed = 0;
    let mut first = 0;
    while first < batches.len() {
        if streamed(&batches[first]) {
            let w = batches[first][0];
            let streamed = stream_message(source, ss, src, w, budget, flow.budget_kib, tx).await?;
            match streamed {
                Streamed::Stopped => return Ok(false),
                Streamed::Sent | Streamed::Gone => {
                    batch_of.remove(&w.uid);
                    if tx.send(Item::BatchEnd { max_uid: w.uid }).await.is_err() {
                        return Ok(false);
                    }
                    closed += 1;
                    first += 1;
                    if stop.is_cancelled() {
                        break;
                    }
                    continue;
                }
                Streamed::Whole => {} // read whole, below
            }
        }
        let mut last = first;
        let mut set = uid_set(batches[first].iter().map(|w| w.uid));
        while let Some(b) = batches.get(last + 1)
            && !streamed(b)
        {
            let more = uid_set(b.iter().map(|w| w.uid));
            if set.len() + more.len() + 1 > MAX_SET_CHARS {
                break;
            }
            set.push(',');
            set.push_str(&more);
            last += 1;
        }
        let activity = format!("fetching messages of {src}");
        let mut stream = source
            .uid_fetch(&set, "(UID FLAGS INTERNALDATE BODY.PEEK[])")
            .await
            .map_err(|e| ImapError::from_imap(ss, &activity, e))?;
        while let Some(fetch) = next_with_timeout(&mut stream, ss, &activity).await? {
            let Some(uid) = fetch.uid else { continue };
            let Some(len) = fetch.body().map(<[u8]>::len) else {
                continue;
            };
            // Each wanted UID once (a server repeating one would otherwise end its batch
            // early).
            let Some(i) = batch_of.remove(&uid) else {
                continue;
            };
            let kib = u32::try_from(len >> 10)
                .unwrap_or(u32::MAX)
                .clamp(1, flow.budget_kib);
            let permit = Arc::clone(budget)
                .acquire_many_owned(kib)
                .await
                .map_err(|_| closed_copy(ss))?;
            let message = Fetched {
                uid,
                flags: flag_list(fetch.flags()),
                date: fetch
                    .internal_date()
                    .map(|d| format!("\"{}\"", d.format("%d-%b-%Y %H:%M:%S %z"))),
                fetch,
                _permit: permit,
            };
            if tx.send(Item::Message(message)).await.is_err() {
                return Ok(false); // the appender stopped; it says why
            }
            left[i] = left[i].saturating_sub(1);
            let before = closed;
            while closed <= last && left[closed] == 0 {
                if tx
                    .send(Item::BatchEnd {
                        max_uid: max_of(closed),
                    })
                    .await
                    .is_err()
                {
                    return Ok(false);
                }
                closed += 1;
            }
            if closed > before && stop.is_cancelled() {
                // This message ended a batch: what was sent gets recorded, nothing more is
                // read.
                return Ok(false);
            }
        }
        drop(stream);
        while closed <= last {
            if tx
                .send(Item::BatchEnd {
                    max_uid: max_of(closed),
                })
                .await
                .is_err()
            {
                return Ok(false);
            }
            closed += 1;
        }
        if stop.is_cancelled() {
            break;
        }
        first = last + 1;
    }
    Ok(true)
}

fn closed_copy(server: &str) -> ImapError {
    ImapError::new(
        ImapErrorKind::Network,
        server,
        "fetching messages",
        "the copy was cancelled",
    )
}

async fn next_with_timeout<S>(
    stream: &mut S,
    server: &str,
    activity: &str,
) -> Result<Option<async_imap::types::Fetch>, ImapError>
where
    S: futures::Stream<Item = async_imap::error::Result<async_imap::types::Fetch>> + Unpin,
{
    let limit = op_timeout(0);
    match tokio::time::timeout(limit, stream.next()).await {
        Err(_) => Err(ImapError::timeout(server, activity, limit)),
        Ok(None) => Ok(None),
        Ok(Some(Ok(f))) => Ok(Some(f)),
        Ok(Some(Err(e))) => Err(ImapError::from_imap(server, activity, e)),
    }
}

/// Flags to keep on the copy: all but `\Recent` (which only a server may set).
pub(super) fn flag_list<'a>(flags: impl Iterator<Item = async_imap::types::Flag<'a>>) -> String {
    use async_imap::types::Flag as F;
    flags
        .filter(|f| !matches!(f, F::MayCreate))
        .filter_map(append_flag)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A flag as an APPEND writes it; `None` for `\Recent`. `\*` (in `PERMANENTFLAGS`: any keyword)
/// is written as is.
fn append_flag(flag: async_imap::types::Flag<'_>) -> Option<String> {
    use async_imap::types::Flag as F;
    Some(match flag {
        F::Seen => "\\Seen".to_owned(),
        F::Answered => "\\Answered".to_owned(),
        F::Flagged => "\\Flagged".to_owned(),
        F::Deleted => "\\Deleted".to_owned(),
        F::Draft => "\\Draft".to_owned(),
        F::MayCreate => "\\*".to_owned(),
        F::Recent => return None,
        F::Custom(c) => c.into_owned(),
    })
}

/// Split the messages to send into batches of at most [`BATCH_MESSAGES`] and [`BATCH_BYTES`]; a
/// message to stream ([`STREAM_FROM`]) is a batch of its own.
fn batches(wanted: &[Wanted]) -> Vec<Vec<Wanted>> {
    cut(wanted, BATCH_MESSAGES, BATCH_BYTES, |w| {
        w.size >= STREAM_FROM
    })
}

/// `wanted`, in order, in runs of at most `messages` and `bytes` (a larger message is a run of
/// its own, and so is any message `alone` says).
fn cut(
    wanted: &[Wanted],
    messages: usize,
    bytes: u64,
    alone: impl Fn(&Wanted) -> bool,
) -> Vec<Vec<Wanted>> {
    let mut out = Vec::new();
    let mut current: Vec<Wanted> = Vec::new();
    let mut held = 0u64;
    for w in wanted {
        if !current.is_empty()
            && (current.len() >= messages
                || held + u64::from(w.size) > bytes
                || alone(w)
                || alone(&current[0]))
        {
            out.push(std::mem::take(&mut current));
            held = 0;
        }
        held += u64::from(w.size);
        current.push(*w);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// `1:3,7,9:10` from ascending UIDs.
pub fn uid_set(uids: impl IntoIterator<Item = u32>) -> String {
    let mut out = String::new();
    let mut run: Option<(u32, u32)> = None;
    let flush = |out: &mut String, (a, b): (u32, u32)| {
        if !out.is_empty() {
            out.push(',');
        }
        if a == b {
            out.push_str(&a.to_string());
        } else {
            let _ = write!(out, "{a}:{b}");
        }
    };
    for uid in uids {
        run = match run {
            Some((a, b)) if uid == b + 1 => Some((a, uid)),
            Some(r) => {
                flush(&mut out, r);
                Some((uid, uid))
            }
            None => Some((uid, uid)),
        };
    }
    if let Some(r) = run {
        flush(&mut out, r);
    }
    out
}

/// The source messages missing from the target, counting identities as multisets: for an
/// identity the source has `k` times and the target `t` times, the last `k - t` source UIDs.
fn difference<'a>(source: impl IntoIterator<Item = &'a Listed>, target: &[Listed]) -> Vec<Wanted> {
    matching(source, target).0
}

/// [`difference`], and how many source messages were found on the target at another size.
/// Identity and size are matched first; what is left is matched by identity alone, so a server
/// that reports other sizes for what it was given (Exchange's estimated RFC822.SIZE, a copy
/// with a header added) is not sent everything again, while exact pairs are never taken by a
/// resized one. Last, a source message without Message-ID that is still unmatched is looked
/// for among the target messages still unmatched by its header fields: a server may give such
/// a message a Message-ID of its own (Exchange does), which then is the copy's identity.
fn matching<'a>(
    source: impl IntoIterator<Item = &'a Listed>,
    target: &[Listed],
) -> (Vec<Wanted>, u64) {
    let mut exact: HashMap<(&Identity, u32), usize> = HashMap::new();
    for (_, size, id) in target {
        *exact.entry((id, *size)).or_default() += 1;
    }
    let mut left = Vec::new();
    for (uid, size, id) in source {
        match exact.get_mut(&(id, *size)) {
            Some(n) if *n > 0 => *n -= 1,
            _ => left.push((*uid, *size, id)),
        }
    }
    let mut loose: HashMap<&Identity, usize> = HashMap::new();
    for ((id, _), n) in exact {
        *loose.entry(id).or_default() += n;
    }
    let (mut unmatched, mut resized) = (Vec::new(), 0);
    for (uid, size, id) in left {
        match loose.get_mut(id) {
            Some(n) if *n > 0 => {
                *n -= 1;
                resized += 1;
            }
            _ => unmatched.push((uid, size, id)),
        }
    }
    let mut by_fields: HashMap<u64, usize> = HashMap::new();
    if unmatched.iter().any(|(_, _, id)| !id.has_message_id()) {
        // The target messages left over: of an identity with `n` left, `n` of its messages.
        for (_, _, id) in target {
            if let Some(n) = loose.get_mut(id)
                && *n > 0
            {
                *n -= 1;
                *by_fields.entry(id.fields()).or_default() += 1;
            }
        }
    }
    let mut wanted = Vec::with_capacity(unmatched.len());
    for (uid, size, id) in unmatched {
        match by_fields.get_mut(&id.fields()) {
            Some(n) if *n > 0 && !id.has_message_id() => {
                *n -= 1;
                resized += 1;
            }
            _ => wanted.push(Wanted { uid, size }),
        }
    }
    (wanted, resized)
}

/// Per-folder result of a verification.
#[derive(Debug, Clone, Serialize)]
pub struct FolderCheck {
    pub source: String,
    pub target: String,
    /// Source messages checked: those the copy was to carry (see `arrived`).
    pub source_messages: u64,
    pub target_messages: u64,
    /// Left out on purpose (too large), not counted as missing.
    pub skipped: u64,
    /// On the target with another size than the source's (a server that re-renders messages
    /// or estimates their sizes, as Exchange does): found, not missing.
    pub resized: u64,
    /// Source messages above the copy's mark: they arrived after the copy read the folder (a
    /// mailbox still receiving mail), so no pass has carried them yet; not counted as missing.
    /// The next `apply` copies them.
    pub arrived: u64,
    /// Identities missing on the target (at most 100 listed).
    pub missing: Vec<String>,
    pub missing_count: u64,
}

/// Check that every source message is on the target, per folder, by identity: LIST both sides,
/// then [`verify_folders`].
pub async fn verify_account(
    source: &mut Session,
    source_server: &str,
    target: &mut Session,
    target_server: &str,
    options: &CopyOptions,
    ledger: &dyn Ledger,
) -> Result<Vec<FolderCheck>, ImapError> {
    let (mappings, _) = mapping(source, source_server, target, target_server, options).await?;
    verify_folders(
        source,
        source_server,
        target,
        target_server,
        &mappings,
        options,
        ledger,
    )
    .await
}

/// Check the given folders: every folder's identities read on both sides at once, each side in
/// one pipelined round trip for all its folders. Every source message up to the mark the
/// `ledger` holds for its folder must be on the target; those above it arrived after the copy
/// read the folder and are only counted ([`FolderCheck::arrived`]). A folder whose mark cannot be
/// trusted (none, left pending, another UIDVALIDITY now) is checked whole.
pub async fn verify_folders(
    source: &mut Session,
    source_server: &str,
    target: &mut Session,
    target_server: &str,
    mappings: &[FolderMapping],
    options: &CopyOptions,
    ledger: &dyn Ledger,
) -> Result<Vec<FolderCheck>, ImapError> {
    let source_reads: Vec<Read<'_>> = mappings
        .iter()
        .map(|m| Read {
            wire: &m.source.wire,
            path: &m.source.path,
            from: 1,
            headers: true,
        })
        .collect();
    let target_reads: Vec<Read<'_>> = mappings
        .iter()
        .filter(|m| m.target_exists)
        .map(|m| Read {
            wire: &m.target_wire,
            path: &m.target_path,
            from: 1,
            headers: true,
        })
        .collect();
    let (source_reads, target_reads) = tokio::try_join!(
        pipelined::identities(source, source_server, Open::Examine, &source_reads),
        pipelined::identities(target, target_server, Open::Examine, &target_reads),
    )?;
    let mut target_reads = target_reads.into_iter();
    let limit = options.max_message_size;
    let mut checks = Vec::with_capacity(mappings.len());
    for (m, source_read) in mappings.iter().zip(source_reads) {
        let source_read = source_read?;
        let target_ids = if m.target_exists {
            target_reads
                .next()
                .unwrap_or_else(|| Ok(Listing::default()))?
                .messages
        } else {
            Vec::new()
        };
        let mark = ledger
            .folder(&m.source.path, &m.target_path)
            .ok()
            .flatten()
            .and_then(|r| trusted_mark(&r, source_read.uid_validity));
        let (source_ids, arrived) = carried(&source_read.messages, mark);
        let fits = |size: u32| limit.is_none_or(|l| u64::from(size) <= l);
        let (wanted, resized) = matching(
            source_ids.iter().filter(|(_, size, _)| fits(*size)),
            &target_ids,
        );
        let skipped = source_ids
            .iter()
            .filter(|(_, size, _)| !fits(*size))
            .count();
        // Source lists are in UID order: the missing ones are found by binary search.
        let missing = wanted
            .iter()
            .take(100)
            .filter_map(|w| {
                let at = source_ids
                    .binary_search_by_key(&w.uid, |(uid, _, _)| *uid)
                    .ok()?;
                Some(format!(
                    "uid {}: {} {}",
                    w.uid,
                    source_ids[at].2.as_str(),
                    w.size
                ))
            })
            .collect();
        checks.push(FolderCheck {
            source: m.source.path.clone(),
            target: m.target_path.clone(),
            source_messages: source_ids.len() as u64,
            target_messages: target_ids.len() as u64,
            skipped: skipped as u64,
            resized,
            arrived: arrived as u64,
            missing_count: wanted.len() as u64,
            missing,
        });
    }
    Ok(checks)
}

/// The highest UID the copy carried in a folder, if its record can be trusted for the folder as
/// it is now: finished (not pending) and of the same UIDVALIDITY.
fn trusted_mark(record: &FolderRecord, uid_validity: Option<u32>) -> Option<u32> {
    (!record.pending && uid_validity == Some(record.uidvalidity)).then_some(record.last_uid)
}

/// The messages (in UID order) the copy was to carry, up to `mark` (all without one), and how
/// many arrived after it.
fn carried(messages: &[Listed], mark: Option<u32>) -> (&[Listed], usize) {
    let upto = mark.map_or(messages.len(), |last| {
        messages.partition_point(|(uid, _, _)| *uid <= last)
    });
    (&messages[..upto], messages.len() - upto)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Identity {
        Identity::new(format!("Message-ID: {s}\r\n\r\n").as_bytes())
    }

    #[test]
    fn difference_counts_identities_as_multisets() {
        let source = vec![
            (1, 10, id("<a>")),
            (2, 10, id("<a>")),
            (3, 10, id("<b>")),
            (4, 10, id("<c>")),
        ];
        let target = vec![(7, 10, id("<a>")), (8, 10, id("<c>")), (9, 10, id("<z>"))];
        let uids: Vec<u32> = difference(&source, &target).iter().map(|w| w.uid).collect();
        assert_eq!(
            uids,
            vec![2, 3],
            "one <a> is there, the second is not; <b> is new"
        );
    }

    #[test]
    fn a_message_found_at_another_size_is_there_and_exact_pairs_come_first() {
        // Exchange reports estimated sizes: <a> and <b> are there, at other sizes.
        let source = vec![(1, 10, id("<a>")), (2, 12, id("<b>")), (3, 10, id("<c>"))];
        let target = vec![(7, 11, id("<a>")), (8, 40, id("<b>"))];
        assert_eq!(
            matching(&source, &target),
            (vec![Wanted { uid: 3, size: 10 }], 2)
        );
        // Two messages share an id: the exact pair is matched first, whatever the order, and
        // the other one is found at another size.
        let source = vec![(1, 10, id("<d>")), (2, 20, id("<d>"))];
        let target = vec![(5, 25, id("<d>")), (6, 10, id("<d>"))];
        assert_eq!(matching(&source, &target), (vec![], 1));
        // Counts still hold: one <d> on the target is one <d> found.
        let target = vec![(5, 10, id("<d>"))];
        assert_eq!(
            matching(&source, &target),
            (vec![Wanted { uid: 2, size: 20 }], 0)
        );
    }

    #[test]
    fn a_message_without_message_id_is_found_under_one_the_target_gave_it() {
        let fields = |subject: &str| format!("From: a@example.org\r\nSubject: {subject}\r\n");
        let plain = |subject: &str| Identity::new(format!("{}\r\n", fields(subject)).as_bytes());
        let given = |subject: &str, n: u32| {
            Identity::new(
                format!("Message-ID: <{n}@exchange>\r\n{}\r\n", fields(subject)).as_bytes(),
            )
        };
        // Exchange gave "one" and "two" a Message-ID; "three" is not there. <x> is a message
        // with its own Message-ID whose fields happen to be those of "four": it is taken by the
        // source's <x>, not by "four".
        let x = Identity::new(format!("Message-ID: <x>\r\n{}\r\n", fields("four")).as_bytes());
        let source = vec![
            (1, 10, plain("one")),
            (2, 10, plain("two")),
            (3, 10, plain("three")),
            (4, 10, x.clone()),
            (5, 10, plain("four")),
        ];
        let target = vec![
            (7, 60, given("one", 1)),
            (8, 60, given("two", 2)),
            (9, 10, x),
        ];
        assert_eq!(
            matching(&source, &target),
            (
                vec![Wanted { uid: 3, size: 10 }, Wanted { uid: 5, size: 10 }],
                2
            )
        );
        // A source message with a Message-ID is never matched by its fields alone.
        let source = vec![(1, 10, given("one", 5))];
        let target = vec![(7, 10, given("one", 6))];
        assert_eq!(
            matching(&source, &target),
            (vec![Wanted { uid: 1, size: 10 }], 0)
        );
    }

    #[test]
    fn verify_checks_up_to_a_trusted_mark_and_counts_what_arrived_after_it() {
        let messages: Vec<Listed> = [3, 5, 8, 9].map(|uid| (uid, 10, id("<m>"))).to_vec();
        let record = |last_uid, pending| FolderRecord {
            uidvalidity: 7,
            last_uid,
            pending,
            failed: 0,
        };
        // The copy carried up to UID 5; 8 and 9 came later.
        let mark = trusted_mark(&record(5, false), Some(7));
        assert_eq!(mark, Some(5));
        let (checked, arrived) = carried(&messages, mark);
        assert_eq!(checked.iter().map(|m| m.0).collect::<Vec<_>>(), [3, 5]);
        assert_eq!(arrived, 2);
        // A mark between UIDs, below all, above all.
        assert_eq!(carried(&messages, Some(6)).1, 2);
        assert_eq!(carried(&messages, Some(0)).1, 4);
        assert_eq!(carried(&messages, Some(100)).1, 0);
        // A mark that cannot be trusted checks the folder whole.
        assert_eq!(trusted_mark(&record(5, true), Some(7)), None, "pending");
        assert_eq!(
            trusted_mark(&record(5, false), Some(8)),
            None,
            "another UIDVALIDITY"
        );
        assert_eq!(trusted_mark(&record(5, false), None), None, "none said");
        assert_eq!(carried(&messages, None), (&messages[..], 0));
    }

    #[test]
    fn a_far_target_gets_more_bytes_and_groups_in_flight() {
        let near = Flow::new(AppendMode::Multiappend, Duration::from_micros(300));
        let far = Flow::new(AppendMode::Multiappend, Duration::from_millis(26));
        assert_eq!((near.budget_kib, near.depth), (BUFFER_KIB, 2));
        assert_eq!((far.budget_kib, far.depth), (FAR_BUFFER_KIB, 4));
        assert!(far.far() && !near.far());
        assert!(far.append.pipelined() && near.append.pipelined());
        // Every group in flight fits in the budget, so the fetching side is never starved by
        // groups waiting for their answers alone.
        let group_kib = u32::try_from(MULTIAPPEND_BYTES >> 10).expect("small");
        assert!(u32::try_from(far.depth).expect("small") * group_kib <= far.budget_kib);
    }

    #[test]
    fn a_refused_folder_gets_a_map_line_with_a_name_servers_take() {
        assert_eq!(
            suggested_map("Releases/v1.2", "Releases/v1.2"),
            r#"{ "Releases/v1.2": "Releases/v1_2" }"#
        );
        assert_eq!(
            suggested_map("Old \"x\"", "Archive/Réçus;1"),
            r#"{ "Old \"x\"": "Archive/Réçus_1" }"#
        );
    }

    #[test]
    fn the_tighter_of_the_advertised_and_the_refused_size_limits_applies() {
        let flow = |limit| Flow {
            append_limit: limit,
            ..Flow::new(AppendMode::Multiappend, Duration::ZERO)
        };
        let refused = || Some((500, "[TOOBIG] too big".to_owned()));
        assert_eq!(target_limit(flow(None), None), None);
        let advertised = target_limit(flow(Some(1000)), None).expect("a limit");
        assert!(advertised.takes(1000) && !advertised.takes(1001));
        assert!(advertised.reason(1001).contains("APPENDLIMIT (1000 bytes)"));
        let learned = target_limit(flow(Some(1000)), refused()).expect("a limit");
        assert!(learned.takes(499) && !learned.takes(500));
        assert!(learned.reason(600).contains("[TOOBIG] too big"));
        let looser = target_limit(flow(Some(100)), refused()).expect("a limit");
        assert_eq!(looser, TargetLimit::Advertised(100));
        let refusals = SizeRefusals::default();
        refusals.record("h:143", 900, "a");
        refusals.record("h:143", 700, "b");
        refusals.record("h:143", 800, "c");
        assert_eq!(refusals.smallest("h:143"), Some((700, "b".to_owned())));
        assert_eq!(refusals.smallest("other:143"), None);
    }

    #[test]
    fn only_the_flags_a_target_folder_keeps_are_sent_and_the_others_named() {
        let mut dropped = std::collections::BTreeSet::new();
        let all = TargetFlags::from_permanent(Some(vec!["\\Seen".into(), "\\*".into()]));
        assert_eq!(all.keep("\\Seen $Label1", &mut dropped), "\\Seen $Label1");
        let unknown = TargetFlags::from_permanent(Some(Vec::new()));
        assert_eq!(
            unknown.keep("\\Seen $Label1", &mut dropped),
            "\\Seen $Label1"
        );
        assert!(dropped.is_empty());
        let none = TargetFlags::from_permanent(Some(vec!["\\Seen".into(), "\\Flagged".into()]));
        assert_eq!(
            none.keep("\\Seen $Label1 \\Flagged project-x", &mut dropped),
            "\\Seen \\Flagged"
        );
        let listed = TargetFlags::from_permanent(Some(vec!["\\Seen".into(), "$label1".into()]));
        assert_eq!(
            listed.keep("\\Seen $Label1 $Junk", &mut dropped),
            "\\Seen $Label1"
        );
        let names: Vec<&str> = dropped.iter().map(String::as_str).collect();
        assert_eq!(names, ["$Junk", "$Label1", "project-x"]);
    }

    #[test]
    fn uid_sets_are_compressed() {
        assert_eq!(uid_set([1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set([5]), "5");
        assert_eq!(uid_set([]), "");
    }

    #[test]
    fn batches_respect_counts_and_bytes() {
        let many: Vec<Wanted> = (1..=450).map(|uid| Wanted { uid, size: 100 }).collect();
        let sizes: Vec<usize> = batches(&many).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![200, 200, 50]);
        let big = vec![
            Wanted {
                uid: 1,
                size: 30 << 20,
            },
            Wanted { uid: 2, size: 100 },
            Wanted { uid: 3, size: 100 },
        ];
        let sizes: Vec<usize> = batches(&big).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 2], "a large message is a batch of its own");
        let streamed_alone = vec![
            Wanted { uid: 1, size: 100 },
            Wanted {
                uid: 2,
                size: STREAM_FROM,
            },
            Wanted { uid: 3, size: 100 },
        ];
        let sizes: Vec<usize> = batches(&streamed_alone).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 1, 1], "a message to stream is a batch alone");
        assert!(streamed(&batches(&streamed_alone)[1]));
        assert!(!streamed(&batches(&streamed_alone)[0]));
    }

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
