//! The target side of a transfer: how messages are appended, from what the target advertises
//! ([`AppendMode`]), and the `Appender` that keeps groups in flight and records batches in the
//! ledger as their answers come.
//!
//! Entry points: `AppendMode::from_capabilities`, `Appender` (`send`, `mark`,
//! `begin_streamed`/`stream_piece`, `complete_oldest`, `finish`), and what the fetching side
//! hands it: `Fetched` (a whole message), `StreamHead` and `Piece` (a message streamed).
//! Invariants: the ledger says *pending* before anything is written and until every answer
//! before a mark is in, so a crash anywhere leads to a reconcile by identity; a refusal is
//! recorded for the messages it concerns only (a refused MULTIAPPEND is retried one by one);
//! answers are matched to commands by tag, whatever their order.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::connect::Session;
use super::copy::context::{CopyError, CopyEvent};
use super::copy::ledger::{FolderCounts, FolderRecord, IssueKind, Ledger, SizeRefusals};
use super::error::{ImapError, ImapErrorKind};
use super::folders::FolderMapping;
use super::identity::MessageFacts;
use super::pipelined::{next_response, quote, tagged, verdict};
use super::timeout::op_timeout;

/// A fetched message on its way to the target.
pub(super) struct Fetched {
    pub(super) uid: u32,
    pub(super) flags: String,
    pub(super) date: Option<String>,
    /// The FETCH response itself: its buffer holds the message, which is never copied.
    pub(super) fetch: async_imap::types::Fetch,
    /// Released when the message is appended: bounds the bytes in flight.
    pub(super) _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Fetched {
    /// The message's bytes, exactly as the source served them.
    pub(super) fn body(&self) -> &[u8] {
        self.fetch.body().unwrap_or_default()
    }
}

/// What the target needs to know before a streamed message's first byte.
pub(super) struct StreamHead {
    pub(super) uid: u32,
    pub(super) flags: String,
    pub(super) date: Option<String>,
    pub(super) size: u32,
}

/// A piece of a streamed message, with its share of the byte budget.
pub(super) struct Piece {
    pub(super) bytes: Vec<u8>,
    pub(super) _permit: tokio::sync::OwnedSemaphorePermit,
}

/// How messages reach the target, from what it advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppendMode {
    /// MULTIAPPEND (RFC 3502) with LITERAL+ (RFC 7888): a group of messages per command, the
    /// groups pipelined (Dovecot, Cyrus).
    Multiappend,
    /// LITERAL+ alone: one APPEND per message, written without waiting for any answer, so a
    /// group is still one round trip (Exchange and Outlook.com advertise this).
    LiteralPlus,
    /// Neither: one APPEND at a time, its literal sent once the server says go ahead.
    Synchronising,
}

impl AppendMode {
    pub(super) fn from_capabilities(multiappend: bool, literal_plus: bool) -> AppendMode {
        match (multiappend, literal_plus) {
            (true, true) => AppendMode::Multiappend,
            (false, true) => AppendMode::LiteralPlus,
            _ => AppendMode::Synchronising,
        }
    }

    /// Whether groups are written without waiting for answers.
    pub(super) fn pipelined(self) -> bool {
        self != AppendMode::Synchronising
    }
}

/// Refusals with `[LIMIT]` this many in a row (messages or MULTIAPPEND groups, nothing accepted
/// between them) mean the target refuses every message: the copy stops.
pub(super) const LIMIT_STREAK: u32 = 10;

/// Counts `[LIMIT]` refusals in a row. `[LIMIT]` (RFC 5530) is usually one message's size, and
/// the copy goes on; a limit that refuses message after message (a mailbox's message count, a
/// daily cap) is not, and trying every remaining message cannot help.
#[derive(Debug, Default)]
pub(super) struct LimitStreak(u32);

impl LimitStreak {
    /// The target took a message.
    fn accepted(&mut self) {
        self.0 = 0;
    }

    /// The target refused a message or a group with `e`: an error of kind
    /// [`ImapErrorKind::Full`] once that makes [`LIMIT_STREAK`] `[LIMIT]`s in a row.
    fn refused(&mut self, e: &ImapError) -> Result<(), CopyError> {
        if !e.message.to_ascii_uppercase().contains("[LIMIT]") {
            self.0 = 0;
            return Ok(());
        }
        self.0 += 1;
        if self.0 < LIMIT_STREAK {
            return Ok(());
        }
        let mut stop = e.clone();
        stop.kind = ImapErrorKind::Full;
        stop.message = format!(
            "{} ({} refusals in a row with [LIMIT]: the target refuses every message, the copy \
             stops)",
            e.message, self.0
        );
        Err(stop.into())
    }
}

/// Append a refused MULTIAPPEND group again (atomic: nothing of it was added), one message per
/// command, so that only the messages the server refuses are recorded, with its words.
#[allow(clippy::too_many_arguments)]
async fn retry_one_by_one(
    target: &mut Session,
    server: &str,
    m: &FolderMapping,
    messages: Vec<Fetched>,
    batch: &mut FolderCounts,
    ledger: &dyn Ledger,
    observer: &(dyn Fn(CopyEvent<'_>) + Send + Sync),
    limits: &mut LimitStreak,
) -> Result<(), CopyError> {
    let activity = format!("appending to {}", m.target_path);
    for msg in &messages {
        let one = std::slice::from_ref(msg);
        match multiappend(target, server, &m.target_wire, &activity, one).await {
            Ok(()) => {
                limits.accepted();
                batch.copied += 1;
                batch.bytes += msg.body().len() as u64;
                observer(CopyEvent::Copied {
                    messages: 1,
                    bytes: msg.body().len() as u64,
                });
            }
            Err(err) if err.kind == ImapErrorKind::Refused => {
                batch.failed += 1;
                ledger
                    .issue(
                        &m.source.path,
                        msg.uid,
                        IssueKind::Refused,
                        &err.message,
                        &facts_of(msg),
                    )
                    .map_err(CopyError::Ledger)?;
                limits.refused(&err)?;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// One APPEND command carrying every message (RFC 3502 MULTIAPPEND) as non-synchronising
/// literals (RFC 7888 LITERAL+): the whole group costs one round trip. Atomic on the server: a
/// NO means none was added.
async fn multiappend(
    target: &mut Session,
    server: &str,
    mailbox: &str,
    activity: &str,
    messages: &[Fetched],
) -> Result<(), ImapError> {
    let tag = send_append(target, server, mailbox, activity, messages).await?;
    let total: usize = messages.iter().map(|f| f.body().len()).sum();
    await_tag(
        target,
        server,
        activity,
        &tag,
        op_timeout(total),
        &mut Vec::new(),
    )
    .await
}

/// What goes between an APPEND's mailbox and its literal: ` (FLAGS)` and ` "INTERNALDATE"`,
/// each when there is one.
fn append_options(flags: &str, date: Option<&str>) -> String {
    let mut opts = String::new();
    if !flags.is_empty() {
        let _ = write!(opts, " ({flags})");
    }
    if let Some(date) = date {
        let _ = write!(opts, " {date}");
    }
    opts
}

/// Write a MULTIAPPEND without waiting for its answer; the tag to wait for.
async fn send_append(
    target: &mut Session,
    server: &str,
    mailbox: &str,
    activity: &str,
    messages: &[Fetched],
) -> Result<async_imap::imap_proto::RequestId, ImapError> {
    use tokio::io::AsyncWriteExt;

    let total: usize = messages.iter().map(|f| f.body().len()).sum();
    let limit = op_timeout(total);
    let net =
        |e: std::io::Error| ImapError::new(ImapErrorKind::Network, server, activity, e.to_string());
    let work = async {
        let mut tag = None;
        for msg in messages {
            let opts = append_options(&msg.flags, msg.date.as_deref());
            let head = format!("{opts} {{{}+}}", msg.body().len());
            if tag.is_none() {
                let command = format!("APPEND {}{head}", quote(mailbox));
                tag = Some(
                    target
                        .run_command(&command)
                        .await
                        .map_err(|e| ImapError::from_imap(server, activity, e))?,
                );
            } else {
                target
                    .get_mut()
                    .write_all(format!("{head}\r\n").as_bytes())
                    .await
                    .map_err(net)?;
            }
            target.get_mut().write_all(msg.body()).await.map_err(net)?;
        }
        target.get_mut().write_all(b"\r\n").await.map_err(net)?;
        target.get_mut().flush().await.map_err(net)?;
        tag.ok_or_else(|| {
            ImapError::new(
                ImapErrorKind::Refused,
                server,
                activity,
                "nothing to append",
            )
        })
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| ImapError::timeout(server, activity, limit))?
}

/// Read responses until the tagged answer to `tag`; its verdict.
async fn await_tag(
    target: &mut Session,
    server: &str,
    activity: &str,
    tag: &async_imap::imap_proto::RequestId,
    limit: Duration,
    heard: &mut Heard,
) -> Result<(), ImapError> {
    let tags = std::slice::from_ref(tag);
    let verdicts = await_tags(target, server, activity, tags, limit, heard).await?;
    verdicts.into_iter().next().unwrap_or(Ok(()))
}

/// Refusals read before the connection broke, by tag: what a server said before closing.
type Heard = Vec<(async_imap::imap_proto::RequestId, ImapError)>;

/// Read responses until every tag in `tags` is answered: one verdict per tag, in the order of
/// `tags` whatever the order of the answers; the outer error is the connection's (network,
/// time limit), after which nothing more can be read. Every refusal read is also kept in
/// `heard`, so that one read just before the connection broke still says why.
async fn await_tags(
    target: &mut Session,
    server: &str,
    activity: &str,
    tags: &[async_imap::imap_proto::RequestId],
    limit: Duration,
    heard: &mut Heard,
) -> Result<Vec<Result<(), ImapError>>, ImapError> {
    let mut verdicts: Vec<Option<Result<(), ImapError>>> = tags.iter().map(|_| None).collect();
    let work = async {
        while verdicts.iter().any(Option::is_none) {
            next_response(target, server, activity, limit, |response| {
                if let Some((done, status, text)) = tagged(response) {
                    let answer = verdict(server, activity, status, text);
                    if let Err(e) = &answer {
                        heard.push((done.clone(), e.clone()));
                    }
                    if let Some(i) = tags.iter().position(|t| t == done)
                        && verdicts[i].is_none()
                    {
                        verdicts[i] = Some(answer);
                    }
                }
            })
            .await?;
        }
        Ok::<(), ImapError>(())
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| ImapError::timeout(server, activity, limit))??;
    Ok(verdicts.into_iter().map(|v| v.unwrap_or(Ok(()))).collect())
}

/// The appending side of a folder's transfer: groups sent and not yet answered (the next group
/// is written while the server stores the previous one; a group is one MULTIAPPEND, or one
/// APPEND per message with LITERAL+ alone), with the batch marks
/// between them, recorded in the ledger in order as the groups before them are acknowledged.
/// The ledger says *pending* whenever anything sent is not yet recorded, so a crash at any point
/// leads to a reconcile by identity, never to a message sent twice or skipped. Refused groups
/// are set aside and retried message by message once nothing is in flight (their answers would
/// otherwise interleave).
pub(super) struct Appender<'a, 'c> {
    target: &'a mut Session,
    server: &'a str,
    m: &'a FolderMapping,
    append: AppendMode,
    /// Groups in flight at once on the connection.
    depth: usize,
    uidvalidity: u32,
    ledger: &'a dyn Ledger,
    observer: &'a (dyn Fn(CopyEvent<'_>) + Send + Sync),
    inflight: std::collections::VecDeque<InFlight>,
    refused: Vec<Vec<Fetched>>,
    /// Done since the last record.
    batch: FolderCounts,
    /// Done and recorded, this pass.
    counts: &'c mut FolderCounts,
    /// What the ledger says now.
    recorded_pending: bool,
    /// The last mark recorded.
    last_mark: Option<u32>,
    /// Something was sent after the last mark: not covered by any record yet.
    sent_since_mark: bool,
    /// A streamed message whose literal is being written.
    streaming: Option<Streaming>,
    /// Sizes the target refused as too large in this run, for the passes after this one.
    refusals: &'a SizeRefusals,
    /// Refusals read, kept until the connection ends (see [`Appender::broken`]).
    heard: Heard,
    /// `[LIMIT]` refusals in a row.
    limits: LimitStreak,
}

/// A streamed message on its way: the literal's bytes still to write.
struct Streaming {
    uid: u32,
    size: u32,
    left: u32,
    tag: async_imap::imap_proto::RequestId,
    /// The target refused it before its literal (synchronising literals only): its pieces are
    /// read and dropped.
    refused: Option<ImapError>,
    /// What names it in a report, read from its first piece.
    facts: MessageFacts,
}

enum InFlight {
    /// A group and the tags of its commands: one for a MULTIAPPEND, one per message with
    /// LITERAL+ alone.
    Group(Vec<async_imap::imap_proto::RequestId>, Vec<Fetched>),
    /// A streamed message, written whole, its answer awaited.
    Streamed {
        tag: async_imap::imap_proto::RequestId,
        uid: u32,
        size: u32,
        facts: MessageFacts,
    },
    /// Every source UID up to this one is sent (by the groups before it).
    Mark(u32),
}

impl<'a, 'c> Appender<'a, 'c> {
    /// An appender for one folder's transfer, nothing in flight; `flow` is how to append and
    /// how many groups may be in flight.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        target: &'a mut Session,
        server: &'a str,
        m: &'a FolderMapping,
        flow: (AppendMode, usize),
        uidvalidity: u32,
        ledger: &'a dyn Ledger,
        observer: &'a (dyn Fn(CopyEvent<'_>) + Send + Sync),
        counts: &'c mut FolderCounts,
        refusals: &'a SizeRefusals,
    ) -> Self {
        Appender {
            target,
            server,
            m,
            append: flow.0,
            depth: flow.1,
            uidvalidity,
            ledger,
            observer,
            inflight: std::collections::VecDeque::new(),
            refused: Vec::new(),
            batch: FolderCounts::default(),
            counts,
            recorded_pending: false,
            last_mark: None,
            sent_since_mark: false,
            streaming: None,
            refusals,
            heard: Vec::new(),
            limits: LimitStreak::default(),
        }
    }

    /// Groups (and streamed messages) in flight: written, their answers not read yet.
    fn groups(&self) -> usize {
        self.inflight
            .iter()
            .filter(|i| !matches!(i, InFlight::Mark(_)))
            .count()
    }

    /// Whether any group awaits its answer.
    pub(super) fn in_flight(&self) -> bool {
        self.groups() > 0
    }

    fn activity(&self) -> String {
        format!("appending to {}", self.m.target_path)
    }

    /// Send a group (nothing for an empty one): pipelined, as one MULTIAPPEND or as one APPEND
    /// per message with LITERAL+; without LITERAL+, one APPEND per message, each waited for.
    pub(super) async fn send(&mut self, group: Vec<Fetched>) -> Result<(), CopyError> {
        if group.is_empty() {
            return Ok(());
        }
        self.sending()?;
        if !self.append.pipelined() {
            return self.send_synchronising(group).await;
        }
        let activity = self.activity();
        let (target, server, mailbox) = (&mut *self.target, self.server, &self.m.target_wire);
        let tags = if self.append == AppendMode::Multiappend {
            vec![send_append(target, server, mailbox, &activity, &group).await?]
        } else {
            let mut tags = Vec::with_capacity(group.len());
            for msg in &group {
                let one = std::slice::from_ref(msg);
                tags.push(send_append(target, server, mailbox, &activity, one).await?);
            }
            tags
        };
        self.inflight.push_back(InFlight::Group(tags, group));
        while self.groups() > self.depth {
            self.complete_oldest().await?;
        }
        self.settle_marks()
    }

    /// Something is about to be written: the ledger says *pending* first.
    fn sending(&mut self) -> Result<(), CopyError> {
        if !self.recorded_pending {
            self.ledger
                .begin_batch(&self.m.source.path, &self.m.target_path, self.uidvalidity)
                .map_err(CopyError::Ledger)?;
            self.recorded_pending = true;
        }
        self.sent_since_mark = true;
        Ok(())
    }

    /// Without LITERAL+: each message's APPEND command, then its literal once the server says go
    /// ahead, then the next command at once: the previous message's answer comes back while the
    /// next one waits for its go-ahead, one round trip per message instead of two.
    async fn send_synchronising(&mut self, group: Vec<Fetched>) -> Result<(), CopyError> {
        use tokio::io::AsyncWriteExt;
        let activity = self.activity();
        let server = self.server;
        for msg in group {
            let opts = append_options(&msg.flags, msg.date.as_deref());
            let command = format!(
                "APPEND {}{opts} {{{}}}",
                quote(&self.m.target_wire),
                msg.body().len()
            );
            let tag = self
                .target
                .run_command(&command)
                .await
                .map_err(|e| ImapError::from_imap(server, &activity, e))?;
            if let Some(e) = self.go_ahead(&tag).await? {
                self.refused_one(msg.uid, &facts_of(&msg), &e)?;
                continue;
            }
            let net = |e: std::io::Error| {
                ImapError::new(ImapErrorKind::Network, server, &activity, e.to_string())
            };
            let limit = op_timeout(msg.body().len());
            let target = self.target.get_mut();
            let work = async {
                target.write_all(msg.body()).await.map_err(net)?;
                target.write_all(b"\r\n").await.map_err(net)?;
                target.flush().await.map_err(net)
            };
            tokio::time::timeout(limit, work)
                .await
                .map_err(|_| ImapError::timeout(server, &activity, limit))??;
            self.inflight
                .push_back(InFlight::Group(vec![tag], vec![msg]));
            // Normally the answer came with the next go-ahead; one at most stays unread.
            while self.groups() > 1 {
                self.complete_oldest().await?;
            }
            self.settle_marks()?;
        }
        Ok(())
    }

    /// Wait for the server's go-ahead for the literal of the APPEND tagged `tag`: `None` to send
    /// it, or the server's refusal (it may refuse before the message, e.g. for its size). The
    /// answer to the previous APPEND, still in flight, is taken as it comes.
    async fn go_ahead(
        &mut self,
        tag: &async_imap::imap_proto::RequestId,
    ) -> Result<Option<ImapError>, CopyError> {
        use async_imap::imap_proto::Response;
        let activity = self.activity();
        let server = self.server;
        let limit = op_timeout(0);
        loop {
            // (true, …) for the go-ahead, else a tagged answer, if any.
            let (go, answer) = next_response(self.target, server, &activity, limit, |r| {
                let answer = tagged(r).map(|(done, status, text)| {
                    (done.clone(), verdict(server, &activity, status, text))
                });
                (matches!(r, Response::Continue { .. }), answer)
            })
            .await?;
            if go {
                return Ok(None);
            }
            let Some((done, verdict)) = answer else {
                continue;
            };
            if done == *tag {
                return match verdict {
                    Err(e) if e.kind == ImapErrorKind::Refused => Ok(Some(e)),
                    Err(e) => Err(e.into()),
                    Ok(()) => Err(ImapError::new(
                        ImapErrorKind::Network,
                        server,
                        &activity,
                        "the server ended an APPEND before its message",
                    )
                    .into()),
                };
            }
            // The previous message's answer.
            self.settle_marks()?;
            let previous = matches!(
                self.inflight.front(),
                Some(InFlight::Group(tags, _)) if tags.len() == 1 && tags[0] == done
            );
            if previous && let Some(InFlight::Group(_, group)) = self.inflight.pop_front() {
                match verdict {
                    Ok(()) => self.copied(&group),
                    Err(e) if e.kind == ImapErrorKind::Refused => {
                        for msg in &group {
                            self.refused_one(msg.uid, &facts_of(msg), &e)?;
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
                self.settle_marks()?;
            }
        }
    }

    /// Write a streamed message's APPEND up to its literal: with LITERAL+ its pieces follow at
    /// once; without, once the server says go ahead (or refuses it then and there).
    pub(super) async fn begin_streamed(&mut self, head: StreamHead) -> Result<(), CopyError> {
        self.sending()?;
        let activity = self.activity();
        let (server, size) = (self.server, head.size);
        let opts = append_options(&head.flags, head.date.as_deref());
        let plus = if self.append.pipelined() { "+" } else { "" };
        let command = format!(
            "APPEND {}{opts} {{{size}{plus}}}",
            quote(&self.m.target_wire)
        );
        let target = &mut *self.target;
        let tag = super::timeout::bounded(server, &activity, op_timeout(0), async {
            target
                .run_command(&command)
                .await
                .map_err(|e| ImapError::from_imap(server, &activity, e))
        })
        .await?;
        let refused = if self.append.pipelined() {
            None
        } else {
            self.go_ahead(&tag).await?
        };
        self.streaming = Some(Streaming {
            uid: head.uid,
            size,
            left: size,
            tag,
            refused,
            facts: MessageFacts::sized(u64::from(size)),
        });
        Ok(())
    }

    /// Write a piece of the streamed message; after its last, the APPEND is on the wire, its
    /// answer awaited like a group's.
    pub(super) async fn stream_piece(&mut self, piece: Piece) -> Result<(), CopyError> {
        use tokio::io::AsyncWriteExt;
        let activity = self.activity();
        let server = self.server;
        let Some(streaming) = self.streaming.as_mut() else {
            return Err(ImapError::new(
                ImapErrorKind::Network,
                server,
                &activity,
                "a piece of a message arrived outside any message",
            )
            .into());
        };
        if streaming.left == streaming.size {
            // The first piece starts with the header: what names the message if it is refused.
            streaming.facts = MessageFacts::read(&piece.bytes, Some(u64::from(streaming.size)));
        }
        let n = u32::try_from(piece.bytes.len()).unwrap_or(u32::MAX);
        streaming.left = streaming.left.saturating_sub(n);
        let done = streaming.left == 0;
        if streaming.refused.is_none() {
            let net = |e: std::io::Error| {
                ImapError::new(ImapErrorKind::Network, server, &activity, e.to_string())
            };
            let limit = op_timeout(piece.bytes.len());
            let target = self.target.get_mut();
            let work = async {
                target.write_all(&piece.bytes).await.map_err(net)?;
                if done {
                    target.write_all(b"\r\n").await.map_err(net)?;
                    target.flush().await.map_err(net)?;
                }
                Ok::<(), ImapError>(())
            };
            tokio::time::timeout(limit, work)
                .await
                .map_err(|_| ImapError::timeout(server, &activity, limit))??;
        }
        drop(piece);
        if !done {
            return Ok(());
        }
        let Some(streaming) = self.streaming.take() else {
            return Ok(());
        };
        if let Some(e) = streaming.refused {
            return self.refused_one(streaming.uid, &streaming.facts, &e);
        }
        self.inflight.push_back(InFlight::Streamed {
            tag: streaming.tag,
            uid: streaming.uid,
            size: streaming.size,
            facts: streaming.facts,
        });
        let depth = if self.append.pipelined() {
            self.depth
        } else {
            0
        };
        while self.groups() > depth {
            self.complete_oldest().await?;
        }
        self.settle_marks()
    }

    /// Everything up to `max_uid` was sent: recorded once the groups before it are answered.
    pub(super) fn mark(&mut self, max_uid: u32) -> Result<(), CopyError> {
        self.inflight.push_back(InFlight::Mark(max_uid));
        self.sent_since_mark = false;
        self.settle_marks()
    }

    /// Record the marks no group is waited for before.
    pub(super) fn settle_marks(&mut self) -> Result<(), CopyError> {
        while let Some(InFlight::Mark(max_uid)) = self.inflight.front() {
            let max_uid = *max_uid;
            self.inflight.pop_front();
            self.record_mark(max_uid)?;
        }
        Ok(())
    }

    fn record_mark(&mut self, max_uid: u32) -> Result<(), CopyError> {
        // Still pending while later groups are out or refused ones wait for a retry.
        let pending = self.groups() > 0 || !self.refused.is_empty();
        self.record(max_uid, pending)
    }

    pub(super) async fn complete_oldest(&mut self) -> Result<(), CopyError> {
        match self.inflight.pop_front() {
            None => Ok(()),
            Some(InFlight::Mark(max_uid)) => self.record_mark(max_uid),
            Some(InFlight::Streamed {
                tag,
                uid,
                size,
                facts,
            }) => {
                let activity = self.activity();
                let limit = op_timeout(size as usize);
                let heard = &mut self.heard;
                let answer = await_tag(self.target, self.server, &activity, &tag, limit, heard);
                match answer.await {
                    Ok(()) => {
                        self.limits.accepted();
                        self.batch.copied += 1;
                        self.batch.bytes += u64::from(size);
                        (self.observer)(CopyEvent::Copied {
                            messages: 1,
                            bytes: u64::from(size),
                        });
                        Ok(())
                    }
                    Err(e) if e.kind == ImapErrorKind::Refused => {
                        self.size_refused(&e, u64::from(size));
                        self.refused_one(uid, &facts, &e)
                    }
                    Err(e) => {
                        // Still on the wire, for `broken` to find.
                        self.inflight.push_front(InFlight::Streamed {
                            tag,
                            uid,
                            size,
                            facts,
                        });
                        Err(e.into())
                    }
                }
            }
            Some(InFlight::Group(tags, group)) => {
                let activity = self.activity();
                let total: usize = group.iter().map(|f| f.body().len()).sum();
                let limit = op_timeout(total);
                let (target, heard) = (&mut *self.target, &mut self.heard);
                let verdicts =
                    match await_tags(target, self.server, &activity, &tags, limit, heard).await {
                        Ok(verdicts) => verdicts,
                        Err(e) => {
                            // Still on the wire, for `broken` to find.
                            self.inflight.push_front(InFlight::Group(tags, group));
                            return Err(e.into());
                        }
                    };
                if let [verdict] = verdicts.as_slice()
                    && tags.len() < group.len()
                {
                    // One MULTIAPPEND: all or nothing.
                    return match verdict {
                        Ok(()) => {
                            self.copied(&group);
                            Ok(())
                        }
                        Err(e) if e.kind == ImapErrorKind::Refused => {
                            // Too large: its largest message at least is over the limit.
                            if let Some(largest) = group.iter().map(|m| m.body().len()).max() {
                                self.size_refused(e, largest as u64);
                            }
                            // Retried one by one at the end; a streak of refused groups stops
                            // the copy before every message has been tried twice.
                            self.refused.push(group);
                            self.limits.refused(e)
                        }
                        Err(e) => Err(e.clone().into()),
                    };
                }
                // One APPEND per message: each has its own answer, a refusal its own reason.
                for (msg, verdict) in group.iter().zip(verdicts) {
                    match verdict {
                        Ok(()) => self.copied(std::slice::from_ref(msg)),
                        Err(e) if e.kind == ImapErrorKind::Refused => {
                            self.size_refused(&e, msg.body().len() as u64);
                            self.refused_one(msg.uid, &facts_of(msg), &e)?;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(())
            }
        }
    }

    /// A refusal of a message of `size` bytes: if it says too large, later passes leave out
    /// messages as large (see [`SizeRefusals`]).
    fn size_refused(&self, e: &ImapError, size: u64) {
        if too_big(e) {
            self.refusals.record(self.server, size, &e.message);
        }
    }

    /// A message the target refused: counted and recorded with the server's words; a streak of
    /// `[LIMIT]`s stops the copy ([`LimitStreak`]).
    fn refused_one(
        &mut self,
        uid: u32,
        facts: &MessageFacts,
        e: &ImapError,
    ) -> Result<(), CopyError> {
        self.batch.failed += 1;
        self.ledger
            .issue(
                &self.m.source.path,
                uid,
                IssueKind::Refused,
                &e.message,
                facts,
            )
            .map_err(CopyError::Ledger)?;
        self.limits.refused(e)
    }

    /// Count messages the target acknowledged.
    fn copied(&mut self, messages: &[Fetched]) {
        if !messages.is_empty() {
            self.limits.accepted();
        }
        let bytes: u64 = messages.iter().map(|f| f.body().len() as u64).sum();
        self.batch.copied += messages.len() as u64;
        self.batch.bytes += bytes;
        (self.observer)(CopyEvent::Copied {
            messages: messages.len() as u64,
            bytes,
        });
    }

    fn record(&mut self, max_uid: u32, pending: bool) -> Result<(), CopyError> {
        let record = FolderRecord {
            uidvalidity: self.uidvalidity,
            last_uid: max_uid,
            pending,
            failed: self.counts.failed + self.counts.skipped + self.batch.failed,
        };
        self.ledger
            .end_batch(
                &self.m.source.path,
                &self.m.target_path,
                record,
                &self.batch,
            )
            .map_err(CopyError::Ledger)?;
        add(self.counts, &self.batch);
        self.batch = FolderCounts::default();
        self.recorded_pending = pending;
        self.last_mark = Some(max_uid);
        Ok(())
    }

    /// The connection to the target broke (`error`) while messages were on the wire. A server
    /// that refuses a message may close the connection right after (Cyrus answers an APPEND over
    /// its size limit with `NO [TOOBIG]` then `BYE`), and the writes of the rest of the message
    /// then fail with "connection reset": what it said before closing is read (for a few
    /// seconds at most), the refused message recorded with its words, a size refusal kept for
    /// the next passes ([`SizeRefusals`]), and the error says why the connection ended
    /// ([`CopyError::Closed`] after a refusal: the folder is taken again at once on new
    /// connections, no step retry). The batch stays *pending*: the next attempt reconciles it.
    pub(super) async fn broken(&mut self, error: ImapError) -> CopyError {
        use async_imap::imap_proto::{Response, Status};
        const LAST_WORDS: Duration = Duration::from_secs(5);
        let activity = self.activity();
        let server = self.server;
        let mut bye = None;
        let until = tokio::time::Instant::now() + LAST_WORDS;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            let heard = &mut self.heard;
            let read = next_response(self.target, server, &activity, left, |r| {
                if let Some((done, status, text)) = tagged(r)
                    && let Err(e) = verdict(server, &activity, status, text)
                {
                    heard.push((done.clone(), e));
                }
                if let Response::Data {
                    status: Status::Bye,
                    outcome,
                } = r
                {
                    bye = Some(
                        outcome
                            .information
                            .as_deref()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            })
            .await;
            if read.is_err() || left.is_zero() {
                break;
            }
        }
        // The messages on the wire, each with its command's tag: (tag, uid, size, alone), and
        // what names a message sent alone.
        let mut sent: Vec<(async_imap::imap_proto::RequestId, u32, u64, bool)> = Vec::new();
        let mut named: Vec<MessageFacts> = Vec::new();
        for item in &self.inflight {
            match item {
                InFlight::Group(tags, group) if tags.len() == group.len() => {
                    for (tag, msg) in tags.iter().zip(group) {
                        sent.push((tag.clone(), msg.uid, msg.body().len() as u64, true));
                        named.push(facts_of(msg));
                    }
                }
                InFlight::Group(tags, group) => {
                    // One MULTIAPPEND: a refusal of the group names no message; its largest
                    // is over any size limit the group broke.
                    let largest = group.iter().max_by_key(|m| m.body().len());
                    if let (Some(tag), Some(msg)) = (tags.first(), largest) {
                        sent.push((tag.clone(), msg.uid, msg.body().len() as u64, false));
                        named.push(MessageFacts::default());
                    }
                }
                InFlight::Streamed {
                    tag,
                    uid,
                    size,
                    facts,
                } => {
                    sent.push((tag.clone(), *uid, u64::from(*size), true));
                    named.push(facts.clone());
                }
                InFlight::Mark(_) => {}
            }
        }
        if let Some(s) = &self.streaming {
            sent.push((s.tag.clone(), s.uid, u64::from(s.size), true));
            named.push(s.facts.clone());
        }
        let heard = std::mem::take(&mut self.heard);
        let refused = sent
            .iter()
            .zip(&named)
            .find_map(|((tag, uid, size, alone), facts)| {
                let (_, e) = heard.iter().find(|(t, _)| t == tag)?;
                Some((*uid, *size, *alone, e.clone(), facts.clone()))
            })
            // A refused MULTIAPPEND group answered already (its size refusal is recorded), and
            // the server closed the connection after it.
            .or_else(|| {
                let (_, e) = heard.last()?;
                Some((0, 0, false, e.clone(), MessageFacts::default()))
            });
        let Some((uid, size, alone, refusal, facts)) = refused else {
            let mut error = error;
            if let Some(bye) = bye {
                error.message = format!("{} (the server said BYE: {bye})", error.message);
                error.backoff = Some(Duration::ZERO);
            }
            return error.into();
        };
        let too_big = too_big(&refusal);
        if too_big && size > 0 {
            self.refusals.record(server, size, &refusal.message);
        } else if alone {
            let folder = &self.m.source.path;
            self.refusals
                .record_closed(server, folder, uid, &refusal.message);
        }
        if alone {
            let kind = if too_big {
                IssueKind::TooLarge
            } else {
                IssueKind::Refused
            };
            if let Err(e) =
                self.ledger
                    .issue(&self.m.source.path, uid, kind, &refusal.message, &facts)
            {
                return CopyError::Ledger(e);
            }
        }
        let what = if alone {
            format!("message {uid} of {} ({size} bytes)", self.m.source.path)
        } else {
            format!("a group of messages of {}", self.m.source.path)
        };
        let mut closed = ImapError::new(
            ImapErrorKind::Network,
            server,
            activity,
            format!(
                "the server closed the connection after refusing {what}: {}",
                refusal.message
            ),
        );
        // Nothing to wait for: the next attempt leaves that message out and goes on.
        closed.backoff = Some(Duration::ZERO);
        CopyError::Closed {
            error: closed,
            accepted: self.counts.copied + self.batch.copied > 0,
        }
    }

    /// Wait for every answer, retry the refused groups one message at a time, record.
    pub(super) async fn finish(&mut self) -> Result<(), CopyError> {
        if let Some(streaming) = self.streaming.take() {
            // The fetching side stopped in the middle of a message: its APPEND cannot be
            // completed, and the connection is closed so that the server drops it (and nothing
            // else is sent on it).
            use tokio::io::AsyncWriteExt;
            self.target.get_mut().shutdown().await.ok();
            return Err(ImapError::new(
                ImapErrorKind::Network,
                self.server,
                self.activity(),
                format!(
                    "message {} ended {} bytes short; the target's connection was closed",
                    streaming.uid, streaming.left
                ),
            )
            .into());
        }
        while !self.inflight.is_empty() {
            self.complete_oldest().await?;
        }
        self.retry_refused().await?;
        // Messages sent after the last mark (the fetch failed mid-batch) stay pending: the next
        // run reconciles them by identity.
        if self.recorded_pending
            && !self.sent_since_mark
            && let Some(mark) = self.last_mark
        {
            self.record(mark, false)?;
        }
        Ok(())
    }

    /// Refused MULTIAPPEND groups wait to be retried one message at a time.
    pub(super) fn has_refused(&self) -> bool {
        !self.refused.is_empty()
    }

    /// Retry the refused groups one message at a time, so that only the refused messages are
    /// recorded. Done at the end, or as soon as the appending side would wait for the fetching
    /// side: the groups hold their share of the byte budget, which the fetching side may be
    /// waiting for.
    pub(super) async fn retry_refused(&mut self) -> Result<(), CopyError> {
        let refused = std::mem::take(&mut self.refused);
        for group in refused {
            retry_one_by_one(
                self.target,
                self.server,
                self.m,
                group,
                &mut self.batch,
                self.ledger,
                self.observer,
                &mut self.limits,
            )
            .await?;
        }
        Ok(())
    }
}

/// Whether a refusal says the message is too large (`[TOOBIG]`, RFC 4469).
fn too_big(e: &ImapError) -> bool {
    e.message.to_ascii_uppercase().contains("[TOOBIG]")
}

/// Add what a batch (or a part) did to a folder's counts.
pub(super) fn add(total: &mut FolderCounts, batch: &FolderCounts) {
    total.copied += batch.copied;
    total.failed += batch.failed;
    total.bytes += batch.bytes;
}

/// What names a fetched message in a report, from its header.
fn facts_of(msg: &Fetched) -> MessageFacts {
    MessageFacts::read(msg.body(), Some(msg.body().len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_limits_refusing_message_after_message_stop_the_copy() {
        let limit = ImapError::new(
            ImapErrorKind::Refused,
            "h:993",
            "appending to INBOX",
            "[LIMIT] Mail size is larger than the maximum size allowed",
        );
        let other = ImapError::new(ImapErrorKind::Refused, "h:993", "appending", "rejected");
        let mut streak = LimitStreak::default();
        // A few large messages among accepted ones: the copy goes on.
        for _ in 0..3 {
            for _ in 0..LIMIT_STREAK - 1 {
                assert!(streak.refused(&limit).is_ok());
            }
            streak.accepted();
        }
        for _ in 0..LIMIT_STREAK - 1 {
            assert!(streak.refused(&limit).is_ok());
        }
        assert!(
            streak.refused(&other).is_ok(),
            "another refusal breaks the streak"
        );
        for _ in 0..LIMIT_STREAK - 1 {
            assert!(streak.refused(&limit).is_ok());
        }
        match streak.refused(&limit) {
            Err(CopyError::Imap(e)) => {
                assert_eq!(e.kind, ImapErrorKind::Full);
                assert!(e.message.starts_with("[LIMIT] Mail size"), "{}", e.message);
                assert!(e.message.contains("refuses every message"), "{}", e.message);
            }
            other => panic!("expected the copy to stop, got {other:?}"),
        }
    }

    #[test]
    fn the_append_mode_follows_what_the_target_advertises() {
        use AppendMode::{LiteralPlus, Multiappend, Synchronising};
        // Dovecot, Cyrus: both. Exchange, Outlook.com: LITERAL+ only. Others: neither.
        assert_eq!(AppendMode::from_capabilities(true, true), Multiappend);
        assert_eq!(AppendMode::from_capabilities(false, true), LiteralPlus);
        assert_eq!(AppendMode::from_capabilities(false, false), Synchronising);
        // MULTIAPPEND without LITERAL+ would wait for the server between messages anyway.
        assert_eq!(AppendMode::from_capabilities(true, false), Synchronising);
        assert!(Multiappend.pipelined() && LiteralPlus.pipelined());
        assert!(!Synchronising.pipelined());
    }
}
