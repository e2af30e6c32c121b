//! Fetching and appending at the same time (`transfer`): the source side fetches the wanted
//! messages with as few `UID FETCH` commands as the UID sets allow and streams those of
//! `STREAM_FROM` bytes or more in pieces (`stream_message`); the target side (the `Appender` of
//! `append.rs`) takes them in pipelined groups; a channel and a byte budget lie between them. Also
//! how a transfer flows ([`TransferFlow`], from the target's capabilities and round trip), which
//! flags travel with a message ([`TargetFlags`]) and how messages are cut into batches.
//!
//! Invariants: the bytes held between the two sides stay within the budget, whatever the
//! message sizes; a message is appended byte for byte as the source served it; batches are
//! recorded in the ledger in UID order as their last group is acknowledged; an interruption
//! stops at a batch boundary.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::context::{CopyContext, CopyError};
use super::ledger::{FolderCounts, IssueKind};
use super::matching::Wanted;
use crate::providers::RunMode;
use crate::providers::imap::append::{AppendMode, Appender, Fetched, Piece, StreamHead};
use crate::providers::imap::connect::Session;
use crate::providers::imap::error::{ImapError, ImapErrorKind};
use crate::providers::imap::folders::FolderMapping;
use crate::providers::imap::identity::MessageFacts;
use crate::providers::imap::pipelined::{self, tagged, verdict};
use crate::providers::imap::timeout::op_timeout;

/// Messages fetched per `UID FETCH` (and recorded per ledger batch).
const BATCH_MESSAGES: usize = 200;

/// Bytes fetched per batch, at most (a larger message is a batch of its own).
const BATCH_BYTES: u64 = 4 << 20;

/// Messages this large or larger are streamed: read in pieces of [`PIECE`] (`BODY.PEEK[]<…>`)
/// and written into their APPEND's literal as the pieces come, so that no message is ever held
/// whole, whatever its size.
const STREAM_FROM: u32 = 2 << 20;

const PIECE: u32 = 1 << 20;

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
pub struct TransferFlow {
    pub(super) append: AppendMode,
    #[serde(rename = "buffer_kib")]
    pub(super) budget_kib: u32,
    #[serde(rename = "groups_in_flight")]
    pub(super) depth: usize,
    pub(super) target_round_trip_ms: u64,
    /// The largest message the target takes, as it advertises (`APPENDLIMIT=`, RFC 7889).
    #[serde(
        rename = "target_append_limit",
        skip_serializing_if = "Option::is_none"
    )]
    pub(super) append_limit: Option<u64>,
}

impl TransferFlow {
    /// Whether the target is far away (its round trip 10 ms or more).
    pub fn far(&self) -> bool {
        self.target_round_trip_ms >= u64::try_from(FAR_RTT.as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn new(append: AppendMode, rtt: Duration) -> TransferFlow {
        let far = rtt >= FAR_RTT;
        TransferFlow {
            append,
            budget_kib: if far { FAR_BUFFER_KIB } else { BUFFER_KIB },
            depth: if far { 4 } else { 2 },
            target_round_trip_ms: u64::try_from(rtt.as_millis()).unwrap_or(u64::MAX),
            append_limit: None,
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
pub(super) async fn transfer(
    ctx: &mut CopyContext<'_>,
    m: &FolderMapping,
    uidvalidity: u32,
    next: &mut (dyn FnMut() -> Option<Vec<Wanted>> + Send),
    (flow, flags): (TransferFlow, &TargetFlags),
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
    flow: TransferFlow,
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
pub(super) fn append_flag(flag: async_imap::types::Flag<'_>) -> Option<String> {
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
pub(super) fn cut(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_far_target_gets_more_bytes_and_groups_in_flight() {
        let near = TransferFlow::new(AppendMode::Multiappend, Duration::from_micros(300));
        let far = TransferFlow::new(AppendMode::Multiappend, Duration::from_millis(26));
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
}
