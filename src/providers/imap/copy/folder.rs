//! One folder's pass (`copy_folder`): nothing to do when the ledger's mark can be trusted and
//! the survey's STATUS shows nothing new; otherwise both folders opened and read in one round
//! trip per side, the messages the target lacks found by identity (`matching.rs`), those too
//! large for the plan or the target (and those it refused before closing the connection) left
//! out and recorded, and the rest sent (`transfer.rs`) or shared among the pairs (`share.rs`).
//! Also the outcome of a folder that cannot be copied (`not_created`, `unreadable`).
//!
//! Invariants: the folder's final mark is recorded only after every message below it is on
//! the target, left out or recorded as failed; a dry run reads and counts, it writes nothing.

use super::context::{CopyContext, CopyError, CopyEvent, FolderOutcome};
use super::ledger::{FolderCounts, FolderRecord, IssueKind};
use super::matching::{Wanted, difference};
use super::share::{MayShare, share_folder};
use super::survey::{SHARE_FROM, fast_path};
use super::transfer::{TargetFlags, TransferFlow, append_flag, transfer};
use crate::providers::RunMode;
use crate::providers::imap::error::ImapError;
use crate::providers::imap::folders::FolderMapping;
use crate::providers::imap::identity::MessageFacts;
use crate::providers::imap::pipelined::{self, FolderStatus, Open, Read, only};
use crate::providers::imap::timeout::{bounded, op_timeout};

pub(super) async fn copy_folder(
    ctx: &mut CopyContext<'_>,
    m: &FolderMapping,
    status: FolderStatus,
    missing: bool,
    flow: TransferFlow,
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
fn target_limit(flow: TransferFlow, refused: Option<(u64, String)>) -> Option<TargetLimit> {
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

/// A folder whose work met an answer that breaks the IMAP syntax (a server bug): not copied
/// (or not whole), the others are; recorded (an issue of the folder, UID 0) with the command
/// and an excerpt of the answer, and reconciled on the next run.
pub(super) fn unreadable(
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
    Ok(not_copied(m, status, detail, true))
}

/// A folder the target refused to create: nothing of it is copied, the others are; recorded
/// (as an issue of the folder, UID 0) with the server's words and the `map:` line that would
/// give it a name the target takes.
pub(super) fn not_created(
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
    Ok(not_copied(m, status, detail, false))
}

/// The outcome of a folder none of whose messages was copied, for `detail`: every message it
/// holds counted as failed; `unreadable` when a server's answer about it could not be read.
fn not_copied(
    m: &FolderMapping,
    status: FolderStatus,
    detail: String,
    unreadable: bool,
) -> FolderOutcome {
    FolderOutcome {
        source: m.source.path.clone(),
        target: m.target_path.clone(),
        reason: m.reason,
        created: false,
        counts: FolderCounts {
            found: u64::from(status.messages),
            failed: u64::from(status.messages),
            ..FolderCounts::default()
        },
        error: Some(detail),
        unreadable,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use super::super::ledger::SizeRefusals;
    use crate::providers::imap::append::AppendMode;

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
        let flow = |limit| TransferFlow {
            append_limit: limit,
            ..TransferFlow::new(AppendMode::Multiappend, Duration::ZERO)
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
}
