//! The body of a step task: [`run_step`] dispatches a step to its kind's code (IMAP in
//! [`imap`], the OVH API in [`ovh`]) and retries it after a network error or a "try later"
//! answer, with backoff, unless the run is stopping. It returns a result; the coordinator
//! records it.

pub(crate) mod imap;
pub(crate) mod ovh;

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::imap::imap_step;
use self::ovh::ovh_step;
use crate::exec::events::{Event, Sink};
use crate::exec::step::{Carried, Retrying, Shared, StepError, StepOutcome, StepTask};
use crate::graph::StepKind;
use crate::plan::model::Flow;
use crate::providers::imap::ImapError;

/// Retries of a step after a network error or a "try later" answer.
pub(crate) const MAX_RETRIES: u32 = 5;

/// The first notice of a wait, then one every [`WAIT_NOTICE_EVERY`].
pub(crate) const WAIT_NOTICE_AFTER: Duration = Duration::from_secs(5);
pub(crate) const WAIT_NOTICE_EVERY: Duration = Duration::from_secs(10);

/// Run `work`, saying what the run waits for while it takes long (an unreachable API is
/// retried for minutes: the operator must see why nothing happens).
pub(crate) async fn announced<F: std::future::Future>(
    printer: &dyn Sink,
    what: &str,
    work: F,
) -> F::Output {
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval_at(started + WAIT_NOTICE_AFTER, WAIT_NOTICE_EVERY);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticks.tick() => printer.event(&Event::Waiting {
                what,
                elapsed: started.elapsed(),
            }),
        }
    }
}

/// Run one step, retrying it after a network error, a "try later" answer or a login refused
/// right after OVH changed the account; each retry is reported to the coordinator (`retries`),
/// which says so and records it.
pub(crate) async fn run_step(
    shared: &Shared,
    task: &StepTask<'_>,
    retries: &mpsc::UnboundedSender<Retrying>,
) -> StepOutcome {
    let StepTask {
        id,
        key,
        kind,
        subject,
    } = *task;
    let account = subject.account();
    let mut attempt = 0;
    // An OVH step may wait minutes (tasks, retries of an API that does not answer): say so.
    let waits_for = format!("{key} (the OVH API and its tasks)");
    let printer = &shared.printer;
    let carried = Carried::default();
    let outcome = loop {
        let result = match (kind, account) {
            (StepKind::AddDomain | StepKind::CheckDns, _) => {
                let step = ovh_step(shared, kind, subject);
                announced(printer, &waits_for, step).await
            }
            (StepKind::CopyMail | StepKind::Verify, Some(i)) => {
                imap_step(shared, kind, i, &carried).await
            }
            (_, Some(_)) => announced(printer, &waits_for, ovh_step(shared, kind, subject)).await,
            (other, None) => Ok(StepOutcome::failed(format!(
                "{} has no account to work on",
                other.name()
            ))),
        };
        match result {
            Ok(r) => break r,
            Err(StepError::Interrupted) => break StepOutcome::interrupted(),
            Err(StepError::Imap(e))
                if (e.is_retryable() || fresh_login(shared, kind, account, &e))
                    && attempt < MAX_RETRIES =>
            {
                attempt += 1;
                let wait = e.backoff.unwrap_or_else(|| backoff(attempt));
                // The coordinator outlives its step tasks: a send fails only once the run is gone.
                let _ = retries.send(Retrying {
                    id,
                    attempt,
                    wait,
                    error: e.to_string(),
                });
                if !sleep_unless_stopped(wait, &shared.stop).await {
                    break StepOutcome::interrupted();
                }
            }
            Err(StepError::Imap(e)) => break StepOutcome::failed(e.to_string()),
            Err(StepError::Other(e)) => break StepOutcome::failed(e),
        }
    };
    outcome.carried(&carried)
}

/// A login refused right after OVH renamed or configured the account: the mail servers take a
/// moment to know the new name or password, so this is retried like a network error.
pub(crate) fn fresh_login(
    shared: &Shared,
    kind: StepKind,
    account: Option<usize>,
    e: &ImapError,
) -> bool {
    e.kind == crate::providers::imap::ImapErrorKind::Auth
        && matches!(kind, StepKind::CopyMail | StepKind::Verify)
        && account.is_some_and(|i| shared.plan.accounts[i].flow != Flow::ImapToImap)
}

/// The longest wait before a retry.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The wait before retry number `attempt` (from 1): exponential with jitter ([`backon`]),
/// 0.75 s doubling at each attempt plus up to as much again at random (about 1, 2, 4, 8, 16 s),
/// at most [`MAX_BACKOFF`].
pub(crate) fn backoff(attempt: u32) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(750))
        .with_factor(2.0)
        .with_max_delay(MAX_BACKOFF * 4 / 5)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempt.saturating_sub(1) as usize)
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// Wait `wait` unless the run stops first; `false` when it does (the step ends interrupted).
pub(crate) async fn sleep_unless_stopped(wait: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(wait) => !stop.is_cancelled(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..=10 {
            let b = backoff(attempt);
            let base = 1000u64 << (attempt - 1).min(6);
            assert!(
                b >= Duration::from_millis((base * 3 / 4).min(60_000)),
                "{attempt}: {b:?}"
            );
            assert!(b <= Duration::from_secs(60));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_when_the_run_is_cancelled_not_at_its_end() {
        let stop = CancellationToken::new();
        assert!(sleep_unless_stopped(Duration::from_secs(1), &stop).await);
        let started = tokio::time::Instant::now();
        let cancel = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            cancel.cancel();
        });
        assert!(!sleep_unless_stopped(Duration::from_secs(60), &stop).await);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert!(!sleep_unless_stopped(Duration::from_secs(60), &stop).await);
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(2),
            "already cancelled"
        );
    }
}
