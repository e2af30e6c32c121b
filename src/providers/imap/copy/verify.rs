//! The verification: [`verify_account`] lists and maps both sides, then [`verify_folders`]
//! reads every folder's identities on both sides at once (one pipelined round trip per side)
//! and reports per folder ([`FolderCheck`]) the source messages missing on the target;
//! [`verdict`] says whether the account passes, and how that reads.
//!
//! Invariants: reads only (`EXAMINE`); messages above the ledger's trusted mark arrived after
//! the copy and are counted, not missing; a mark that cannot be trusted checks the folder
//! whole; messages left out on purpose (`max-message-size`) are counted as skipped.

use serde::Serialize;

use super::ledger::{FolderRecord, Ledger};
use super::matching::matching;
use super::survey::mapping;
use crate::plan::model::CopyOptions;
use crate::providers::imap::connect::Session;
use crate::providers::imap::error::ImapError;
use crate::providers::imap::folders::FolderMapping;
use crate::providers::imap::pipelined::{self, Listed, Listing, Open, Read};

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

/// What a verification says: its summary, or why it fails. A message the copy was to carry and
/// that is not on the target fails it. Mail that arrived after the copy read its folder is only
/// counted (the next `apply` copies it), unless the source is to be reset next (`resets_source`):
/// that would destroy it, so it fails too and the next `apply` copies it first.
pub fn verdict(checks: &[FolderCheck], resets_source: bool) -> Result<String, String> {
    use std::fmt::Write as _;
    let sum = |f: fn(&FolderCheck) -> u64| checks.iter().map(f).sum::<u64>();
    let (missing, messages) = (sum(|c| c.missing_count), sum(|c| c.source_messages));
    let (skipped, resized, arrived) = (sum(|c| c.skipped), sum(|c| c.resized), sum(|c| c.arrived));
    if missing > 0 {
        let detail: Vec<String> = checks
            .iter()
            .filter(|c| c.missing_count > 0)
            .map(|c| {
                format!(
                    "{} ({} missing, e.g. {})",
                    c.source,
                    c.missing_count,
                    c.missing.first().map_or("", String::as_str)
                )
            })
            .collect();
        return Err(format!(
            "{missing} source message(s) missing on the target: {}",
            detail.join("; ")
        ));
    }
    if arrived > 0 && resets_source {
        return Err(format!(
            "{arrived} message(s) arrived in the source after the copy read it; run apply again \
             to copy them before the source is reset"
        ));
    }
    let mut summary = format!(
        "all {} message(s) of {} folder(s) are on the target",
        messages - skipped,
        checks.len()
    );
    if skipped > 0 {
        let _ = write!(summary, " ({skipped} left out on purpose)");
    }
    if resized > 0 {
        let _ = write!(
            summary,
            "; {resized} of them at another size than the source's (the target re-renders \
             messages or estimates sizes, as Exchange does)"
        );
    }
    if arrived > 0 {
        let _ = write!(
            summary,
            "; {arrived} more arrived in the source after the copy read it (the next apply \
             copies them)"
        );
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::imap::identity::Identity;

    fn id(s: &str) -> Identity {
        Identity::new(format!("Message-ID: {s}\r\n\r\n").as_bytes())
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
    fn mail_that_arrived_after_the_copy_is_counted_unless_the_source_is_reset_next() {
        let check = |missing_count, arrived| FolderCheck {
            source: "INBOX".to_owned(),
            target: "INBOX".to_owned(),
            source_messages: 10,
            target_messages: 10,
            skipped: 0,
            resized: 0,
            arrived,
            missing: (0..missing_count)
                .map(|u| format!("uid {u}: <m> 10"))
                .collect(),
            missing_count,
        };
        assert_eq!(
            verdict(&[check(0, 0)], true).as_deref(),
            Ok("all 10 message(s) of 1 folder(s) are on the target")
        );
        assert_eq!(
            verdict(&[check(0, 3), check(0, 0)], false).as_deref(),
            Ok(
                "all 20 message(s) of 2 folder(s) are on the target; 3 more arrived in the \
                source after the copy read it (the next apply copies them)"
            )
        );
        let reset = verdict(&[check(0, 3)], true).expect_err("the reset would lose them");
        assert!(reset.starts_with("3 message(s) arrived"), "{reset}");
        let missing = verdict(&[check(2, 3)], false).expect_err("missing mail");
        assert!(
            missing.starts_with(
                "2 source message(s) missing on the target: INBOX (2 missing, e.g. uid 0"
            ),
            "{missing}"
        );
    }
}
