//! The OVH API steps: the dispatch of a step's kind to its body in [`crate::exec::ovh`].

use crate::exec::ovh;
use crate::exec::step::{Shared, StepError, StepOutcome};
use crate::exec::steps::imap::source_counts;
use crate::graph::{StepKind, Subject};
use crate::providers::RunMode;

/// The OVH API steps.
pub(crate) async fn ovh_step(
    shared: &Shared,
    kind: StepKind,
    subject: &Subject,
) -> Result<StepOutcome, StepError> {
    let Some(ovh_side) = &shared.ovh else {
        return Ok(StepOutcome::failed("no OVH API client".to_owned()));
    };
    let (plan, mode, stop) = (&shared.plan, shared.mode, &shared.stop);
    let account = subject.account().map(|i| (i, &plan.accounts[i]));
    let result = match (kind, subject, account) {
        (StepKind::AddDomain, Subject::Domain(d), _) => {
            ovh::add_domain(ovh_side, plan, d, mode, stop).await
        }
        (StepKind::CheckDns, Subject::Domain(d), _) => {
            ovh::check_dns(ovh_side, plan, d, mode).await
        }
        (StepKind::RenameSource, _, Some((_, a))) => {
            ovh::rename_source(ovh_side, plan, a, mode, stop).await
        }
        (StepKind::ConfigureTarget, _, Some((i, a))) => {
            let password = &shared.credentials[i].target_password;
            ovh::configure_target(ovh_side, plan, a, password, mode, stop).await
        }
        (StepKind::Preflight, _, Some((_, a))) => ovh::preflight(ovh_side, plan, a, stop).await,
        (StepKind::MigrateLegacy, _, Some((i, a))) => {
            let counts = if mode == RunMode::Real {
                source_counts(shared, i).await
            } else {
                None
            };
            // Kept apart from the step's output: a re-run after the migration (the source is
            // gone then) must not lose what the source held.
            if let (Some(counts), Some(store)) = (&counts, &shared.store) {
                let _ = store.keep_source_counts(&a.address, counts);
            }
            let password = &shared.credentials[i].source_password;
            ovh::migrate_legacy(ovh_side, plan, a, password, counts, mode, stop).await
        }
        (StepKind::ResetSource, _, Some((_, a))) => {
            ovh::reset_source(ovh_side, plan, a, mode, stop).await
        }
        (other, _, _) => {
            return Ok(StepOutcome::failed(format!(
                "{} cannot run here",
                other.name()
            )));
        }
    };
    match result {
        Ok(d) => Ok(StepOutcome::done(d.summary, d.output.to_string())),
        Err(ovh::Failure::Interrupted) => Err(StepError::Interrupted),
        Err(ovh::Failure::Ovh(e)) => Ok(StepOutcome::failed(e.to_string())),
        Err(ovh::Failure::Blocked(why)) => Ok(StepOutcome::failed(why)),
    }
}
