//! The copy of one account ([`copy_account`]): after the target folders a dead run left pending
//! have settled, the missing target folders are created in one pipelined round trip, then each
//! connection pair runs a worker that takes the next folder from the account's queue (see
//! `share.rs`) until none is left, then helps send the large folders still being sent.
//!
//! Invariants: one outcome per folder, in listing order; a folder the target refused to create,
//! or whose answers cannot be read, fails alone and the others are copied; a target that closes
//! the connection after refusing a message gets the folder again on new connections, without
//! that message; a real error wins over an interruption when the pairs report.

use std::sync::atomic::Ordering;

use super::context::{CopyContext, CopyError, FolderOutcome};
use super::folder::{copy_folder, not_created, unreadable};
use super::share::{FolderQueue, MayShare, part};
use super::survey::{SHARE_FROM, Survey};
use crate::providers::RunMode;
use crate::providers::imap::connect::Session;
use crate::providers::imap::error::{ImapError, ImapErrorKind};
use crate::providers::imap::folders;
use crate::providers::imap::pipelined;
use crate::providers::imap::relogin::CloseStreak;
use crate::providers::imap::settle;

/// More connections for the same account (folders are shared out among all pairs), with what
/// must live as long as they do (`hold`, e.g. the server slots they take).
#[derive(Debug)]
pub struct Pair<H> {
    pub source: Session,
    pub target: Session,
    pub hold: H,
}

/// Copy every mapped folder of the account, on `ctx`'s connections and on each pair `extra_pairs`
/// yields, if any (folders are taken from a shared list, so a large folder does not hold the others
/// back, and a folder of [`SHARE_FROM`] messages or more to send is shared: a pair with nothing
/// left to take helps send it; the extra pairs log in while the first pair already copies, and take
/// what is left when they are ready; they are logged out at the end). The target folders that are
/// missing are created first, all at once. Returns one outcome per folder, in listing order;
/// afterwards every mapping's target exists (but in a dry run).
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
    let shared = FolderQueue {
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

/// One connection pair's share of the copy: folders taken one at a time until none is left, then
/// chunks of the shared folders still being sent.
async fn worker(
    mut c: CopyContext<'_>,
    shared: &FolderQueue<'_>,
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
