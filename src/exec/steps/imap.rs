//! The IMAP steps: `copy-mail` (one account's copy over up to `connections` pairs, the extra
//! ones only when they pay off) and `verify` (every source message is on the target; a
//! historical MX Plan account is compared with the counts read before OVH migrated it).

use crate::exec::events::{Event, human_bytes};
use crate::exec::ledger::StoreLedger;
use crate::exec::slots::Permit;
use crate::exec::step::{Carried, Shared, StepError, StepOutcome, server};
use crate::exec::store::StepStatus;
use crate::graph::StepKind;
use crate::plan::model::{Flow, ImapServer};
use crate::providers::RunMode;
use crate::providers::imap::connect::server_name;
use crate::providers::imap::copy::{self, CopyContext, CopyEvent, FolderCounts};
use crate::providers::imap::{self, ImapError};

/// A pass carrying fewer messages than this (or all in one folder) runs on one connection pair,
/// unless the target is far away.
pub(crate) const EXTRA_PAIRS_FROM: u64 = 500;

/// Whether a copy pass gets more connection pairs: only for several folders with mail, and
/// either enough messages (near, each pair's two logins are most of a small account's time) or
/// a target far away (there each folder costs a few round trips, which pairs take in parallel:
/// a delta pass over six folders at 26 ms spends most of its time on them).
pub(crate) fn extra_pairs_pay_off(connections: usize, work: copy::Work, far: bool) -> bool {
    connections > 1 && work.divisible() && (far || work.messages >= EXTRA_PAIRS_FROM)
}

/// `copy-mail` and `verify`: IMAP work.
pub(crate) async fn imap_step(
    shared: &Shared,
    kind: StepKind,
    i: usize,
    carried: &Carried,
) -> Result<StepOutcome, StepError> {
    let a = &shared.plan.accounts[i];
    let (Some(source), Some(target)) = (server(shared, &a.from), server(shared, &a.to)) else {
        return Ok(StepOutcome::failed(
            "the plan gives no IMAP server (`imap:`) for this account's platforms".to_owned(),
        ));
    };
    let dry = shared.mode == RunMode::DryRun;
    match (kind, a.flow) {
        // The OVH flows' accounts exist on IMAP only once the steps before have run.
        (StepKind::CopyMail, flow) if dry && flow != Flow::ImapToImap => Ok(StepOutcome::done(
            format!(
                "would copy mail over IMAP from {} to {} once both are ready",
                a.copy_source_address(),
                a.address
            ),
            "{}".to_owned(),
        )),
        (StepKind::Verify, _) if dry => Ok(StepOutcome::done(
            "would verify every source message on the target".to_owned(),
            "{}".to_owned(),
        )),
        (StepKind::Verify, Flow::LegacyToExchange) => verify_migrated(shared, i, target).await,
        (StepKind::CopyMail, _) => copy_step(shared, i, source, target, carried).await,
        _ => verify_step(shared, i, source, target).await,
    }
}

/// Messages per folder of a historical MX Plan mailbox, read over IMAP before OVH migrates it
/// (the source is gone afterwards); `None` when the plan gives no IMAP server for it.
pub(crate) async fn source_counts(
    shared: &Shared,
    account: usize,
) -> Option<std::collections::BTreeMap<String, u32>> {
    let a = &shared.plan.accounts[account];
    let source = server(shared, &a.from)?;
    let c = &shared.credentials[account];
    let mut s = imap::connect(source, &c.source_login, &c.source_password)
        .await
        .ok()?;
    let name = server_name(source);
    let folders = imap::folders::list(&mut s, &name).await.ok()?;
    let mut counts = std::collections::BTreeMap::new();
    for f in folders.iter().filter(|f| f.selectable) {
        let n = s.status(&f.wire, "(MESSAGES)").await.ok()?.exists;
        counts.insert(f.path.clone(), n);
    }
    let _ = s.logout().await;
    Some(counts)
}

/// `verify` of a historical MX Plan account: the Exchange mailbox holds at least what the
/// source held, folder by folder (counts read before the migration).
pub(crate) async fn verify_migrated(
    shared: &Shared,
    account: usize,
    target: &ImapServer,
) -> Result<StepOutcome, StepError> {
    let a = &shared.plan.accounts[account];
    let before = shared
        .store
        .as_ref()
        .and_then(|s| s.source_counts(&a.address).ok().flatten());
    let c = &shared.credentials[account];
    let _slot = shared.slots.slot(target).await?;
    let mut t = imap::connect(target, &c.target_login, &c.target_password).await?;
    let name = server_name(target);
    let folders = imap::folders::list(&mut t, &name).await?;
    let mut after = std::collections::BTreeMap::new();
    let layout: Vec<(String, Option<imap::folders::SpecialUse>)> = folders
        .iter()
        .filter(|f| f.selectable)
        .map(|f| (f.path.clone(), f.special))
        .collect();
    for f in folders.iter().filter(|f| f.selectable) {
        let n = t
            .status(&f.wire, "(MESSAGES)")
            .await
            .map_err(|e| ImapError::from_imap(&name, format!("counting {}", f.path), e))?
            .exists;
        after.insert(f.path.clone(), n);
    }
    let _ = t.logout().await;
    let total: u32 = after.values().sum();
    let output = serde_json::json!({"before": before, "after": after}).to_string();
    let Some(before) = before else {
        return Ok(StepOutcome::done(uncompared(total, after.len()), output));
    };
    // OVH's migration renames folders on the way (`Sent` → `Sent Items`, …): each source
    // folder is compared with the folder it lands in.
    let short: Vec<String> = crate::exec::legacy_layout::expected_counts(&before, &layout)
        .into_iter()
        .filter_map(|(target, (sources, n))| {
            let have = target.and_then(|t| after.get(t)).copied().unwrap_or(0);
            (have < n).then(|| {
                format!(
                    "{} → {}: {n} before, {have} after",
                    sources.join(" + "),
                    target.unwrap_or("no such folder")
                )
            })
        })
        .collect();
    if short.is_empty() {
        Ok(StepOutcome::done(
            format!(
                "all {} message(s) of {} folder(s) are on the target",
                before.values().sum::<u32>(),
                before.len()
            ),
            output,
        ))
    } else {
        Ok(StepOutcome::failed(format!(
            "the migrated mailbox holds fewer messages than the source did: {}",
            short.join("; ")
        )))
    }
}

/// The summary of a migrated account's verification without the source's counts.
fn uncompared(total: u32, folders: usize) -> String {
    format!(
        "{total} message(s) in {folders} folder(s) on the target (no source counts to compare: \
         the plan gives no IMAP server for the source)"
    )
}

pub(crate) async fn sessions(
    shared: &Shared,
    i: usize,
    source: &ImapServer,
    target: &ImapServer,
) -> Result<(imap::Session, imap::Session, Vec<Permit>), StepError> {
    let c = &shared.credentials[i];
    let slots = shared.slots.pair(source, target).await?;
    let (s, t) = tokio::join!(
        imap::connect(source, &c.source_login, &c.source_password),
        imap::connect(target, &c.target_login, &c.target_password)
    );
    Ok((s?, t?, slots))
}

/// Up to `n` more connection pairs for an account, only on free server slots (never waiting:
/// the account's first pair is enough to make progress, and other accounts need slots too).
pub(crate) async fn extra_sessions(
    shared: &Shared,
    account: usize,
    source: &ImapServer,
    target: &ImapServer,
    count: usize,
) -> Vec<(imap::Session, imap::Session, [Permit; 2])> {
    let c = &shared.credentials[account];
    let mut slots = Vec::new();
    for _ in 0..count {
        let (Some(s_slot), Some(t_slot)) =
            (shared.slots.try_slot(source), shared.slots.try_slot(target))
        else {
            break;
        };
        slots.push([s_slot, t_slot]);
    }
    // All pairs log in at once; one that fails is simply not used.
    let logins = slots.into_iter().map(|slots| async move {
        let (s, t) = tokio::join!(
            imap::connect(source, &c.source_login, &c.source_password),
            imap::connect(target, &c.target_login, &c.target_password)
        );
        match (s, t) {
            (Ok(s), Ok(t)) => Some((s, t, slots)),
            _ => None,
        }
    });
    futures::future::join_all(logins)
        .await
        .into_iter()
        .flatten()
        .collect()
}

pub(crate) async fn copy_step(
    shared: &Shared,
    i: usize,
    source: &ImapServer,
    target: &ImapServer,
    carried: &Carried,
) -> Result<StepOutcome, StepError> {
    let a = &shared.plan.accounts[i];
    let (mut s, mut t, _slots) = sessions(shared, i, source, target).await?;
    let ledger = StoreLedger::of(shared, i, source, target);
    let printer = &shared.printer;
    let address = a.address.as_str();
    let dry = shared.mode == RunMode::DryRun;
    let observer = move |e: CopyEvent<'_>| match e {
        CopyEvent::Folder {
            source,
            target,
            counts,
        } => {
            // Every folder, also those with nothing to send: the printer corrects its estimate.
            printer.event(&Event::Folder {
                account: address,
                source,
                target,
                to_copy: counts.to_copy,
                already: counts.already,
                skipped: counts.skipped,
                dry_run: dry,
            });
        }
        CopyEvent::Copied { messages, bytes } => {
            carried.add(messages, bytes);
            printer.event(&Event::Copied {
                account: address,
                messages,
                bytes,
            });
        }
    };
    let (ss, ts) = (server_name(source), server_name(target));
    let logins = &shared.credentials[i];
    let relogin = imap::relogin::Relogin {
        source,
        source_login: &logins.source_login,
        source_password: &logins.source_password,
        target,
        target_login: &logins.target_login,
        target_password: &logins.target_password,
    };
    let mut ctx = CopyContext {
        source: &mut s,
        source_server: &ss,
        target: &mut t,
        target_server: &ts,
        options: &a.copy,
        ledger: &ledger,
        mode: shared.mode,
        observer: &observer,
        stop: &shared.stop,
        refusals: &shared.size_refusals,
        relogin: &relogin,
    };
    // Both folder lists and every source folder's STATUS first: they say what this pass has
    // to carry, and so whether more connection pairs pay off.
    let mut survey = copy::survey(&mut ctx).await?;
    if !dry {
        // What the pass is likely to carry, before anything is sent: bars and ETAs start right.
        let estimates: Vec<(String, u64)> = survey
            .estimates(&ledger)
            .into_iter()
            .map(|(folder, n)| (folder.to_owned(), n))
            .collect();
        printer.event(&Event::Estimated {
            account: address,
            folders: &estimates,
        });
    }
    let worth_more = shared.mode == RunMode::Real
        && extra_pairs_pay_off(
            shared.connections,
            survey.work(&ledger),
            survey.flow().far(),
        );
    // The extra pairs log in while the first pair copies; they take what is left.
    let more = worth_more.then_some(async {
        extra_sessions(shared, i, source, target, shared.connections - 1)
            .await
            .into_iter()
            .map(|(source, target, hold)| copy::Pair {
                source,
                target,
                hold,
            })
            .collect()
    });
    let outcomes = copy::copy_account(&mut ctx, &mut survey, more).await?;
    let copied: u64 = outcomes.iter().map(|o| o.counts.copied).sum();
    let verified_before = shared.store.as_ref().is_some_and(|st| {
        st.step(&StepKind::Verify.key(&a.address))
            .ok()
            .flatten()
            .is_some_and(|r| r.status == StepStatus::Done)
    });
    if !dry && (copied > 0 || !verified_before) {
        // The verify step comes next: check now, on these connections, and let it use the
        // result instead of logging in again (with many small accounts, logins are the cost).
        let (ss, ts) = (server_name(source), server_name(target));
        if let Ok(checks) =
            copy::verify_folders(&mut s, &ss, &mut t, &ts, &survey.mappings, &a.copy, &ledger).await
            && let Ok(mut cache) = shared.verified.lock()
        {
            cache.insert(i, checks);
        }
    }
    let _ = s.logout().await;
    let _ = t.logout().await;
    let total = outcomes.iter().fold(FolderCounts::default(), |mut acc, o| {
        acc.found += o.counts.found;
        acc.to_copy += o.counts.to_copy;
        acc.copied += o.counts.copied;
        acc.already += o.counts.already;
        acc.skipped += o.counts.skipped;
        acc.failed += o.counts.failed;
        acc.bytes += o.counts.bytes;
        acc
    });
    let summary = if dry {
        format!(
            "would copy {} message(s) in {} folder(s); {} already there, {} skipped",
            total.to_copy,
            outcomes.len(),
            total.already,
            total.skipped
        )
    } else {
        format!(
            "{} copied ({}), {} already there, {} skipped, {} refused, {} folder(s)",
            total.copied,
            human_bytes(total.bytes),
            total.already,
            total.skipped,
            total.failed,
            outcomes.len()
        ) + &not_created(&outcomes)
    };
    let output = serde_json::json!({ "folders": outcomes, "total": total, "flow": survey.flow() })
        .to_string();
    Ok(StepOutcome::done(summary, output))
}

/// The folders the target refused to create, for a copy's summary (the report has why).
pub(crate) fn not_created(outcomes: &[copy::FolderOutcome]) -> String {
    use std::fmt::Write as _;
    let folders = |unreadable: bool| -> Vec<&str> {
        outcomes
            .iter()
            .filter(|o| o.error.is_some() && o.unreadable == unreadable)
            .map(|o| o.source.as_str())
            .collect()
    };
    let mut out = String::new();
    for (unreadable, what) in [
        (false, "the target refused to create"),
        (true, "a server's answer could not be read as IMAP for"),
    ] {
        let failed = folders(unreadable);
        if !failed.is_empty() {
            let (n, names) = (failed.len(), failed.join(", "));
            let _ = write!(out, "; {what} {n} folder(s), not copied: {names}");
        }
    }
    out
}

pub(crate) async fn verify_step(
    shared: &Shared,
    i: usize,
    source: &ImapServer,
    target: &ImapServer,
) -> Result<StepOutcome, StepError> {
    let a = &shared.plan.accounts[i];
    // Checked by copy-mail on its own connections just before, when it could.
    let cached = shared.verified.lock().ok().and_then(|mut c| c.remove(&i));
    let checks = match cached {
        Some(checks) => checks,
        None => {
            let (mut s, mut t, _slots) = sessions(shared, i, source, target).await?;
            let (ss, ts) = (server_name(source), server_name(target));
            let ledger = StoreLedger::of(shared, i, source, target);
            let checks = copy::verify_account(&mut s, &ss, &mut t, &ts, &a.copy, &ledger).await?;
            let _ = s.logout().await;
            let _ = t.logout().await;
            checks
        }
    };
    let missing: u64 = checks.iter().map(|c| c.missing_count).sum();
    let output = serde_json::json!({ "folders": checks, "missing": missing }).to_string();
    Ok(match copy::verdict(&checks, shared.plan.resets_source(a)) {
        Ok(summary) => StepOutcome::done(summary, output),
        // The checks say what is missing where: the report shows them.
        Err(failure) => StepOutcome::failed_with(failure, output),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_pairs_for_several_busy_folders_or_a_large_one_of_enough_mail_or_far_away() {
        let work = |folders, messages, largest| copy::Work {
            folders,
            messages,
            largest,
        };
        assert!(extra_pairs_pay_off(4, work(6, 10_000, 4_000), false));
        assert!(
            !extra_pairs_pay_off(4, work(6, 100, 40), false),
            "a small near pass"
        );
        assert!(
            extra_pairs_pay_off(4, work(6, 100, 40), true),
            "a small pass far away"
        );
        assert!(
            !extra_pairs_pay_off(4, work(1, 1_999, 1_999), true),
            "one folder too small to share"
        );
        assert!(
            extra_pairs_pay_off(4, work(1, 2_000, 2_000), false),
            "one folder large enough to share"
        );
        assert!(
            !extra_pairs_pay_off(1, work(6, 10_000, 4_000), true),
            "one pair allowed"
        );
    }

    #[test]
    fn a_verification_without_source_counts_reads_as_one_sentence() {
        assert_eq!(
            uncompared(12, 3),
            "12 message(s) in 3 folder(s) on the target (no source counts to compare: the plan \
             gives no IMAP server for the source)"
        );
    }
}
