//! The OVH API steps: the dispatch of a step's kind to its body in [`crate::exec::ovh`].

use crate::exec::ovh;
use crate::exec::step::{Shared, StepError, StepOutcome};
use crate::exec::steps::imap::source_counts;
use crate::graph::StepKind;
use crate::providers::RunMode;

/// The OVH API steps.
pub(crate) async fn ovh_step(
    shared: &Shared,
    kind: StepKind,
    account: Option<usize>,
    domain: Option<&str>,
) -> Result<StepOutcome, StepError> {
    let Some(ovh_side) = &shared.ovh else {
        return Ok(StepOutcome::failed("no OVH API client".to_owned()));
    };
    let (plan, mode, stop) = (&shared.plan, shared.mode, &shared.stop);
    let a = account.map(|i| &plan.accounts[i]);
    let result = match (kind, a) {
        (StepKind::AddDomain, _) => {
            ovh::add_domain(ovh_side, plan, domain.unwrap_or_default(), mode, stop).await
        }
        (StepKind::CheckDns, _) => {
            ovh::check_dns(ovh_side, plan, domain.unwrap_or_default(), mode).await
        }
        (StepKind::RenameSource, Some(a)) => {
            ovh::rename_source(ovh_side, plan, a, mode, stop).await
        }
        (StepKind::ConfigureTarget, Some(a)) => {
            let password = &shared.credentials[account.unwrap_or_default()].target_password;
            ovh::configure_target(ovh_side, plan, a, password, mode, stop).await
        }
        (StepKind::Preflight, Some(a)) => ovh::preflight(ovh_side, plan, a, stop).await,
        (StepKind::MigrateLegacy, Some(a)) => {
            let i = account.unwrap_or_default();
            let counts = if mode == RunMode::Real {
                source_counts(shared, i).await
            } else {
                None
            };
            // Kept apart from the step's output: a re-run after the migration (the source is
            // gone then) must not lose what the source held.
            if let (Some(counts), Some(store)) = (&counts, &shared.store)
                && let Ok(g) = store.lock()
            {
                let key = format!("source-counts {}", a.address);
                if g.meta(&key).ok().flatten().is_none() {
                    let _ = g.set_meta(&key, &serde_json::json!(counts).to_string());
                }
            }
            let password = &shared.credentials[i].source_password;
            ovh::migrate_legacy(ovh_side, plan, a, password, counts, mode, stop).await
        }
        (StepKind::ResetSource, Some(a)) => ovh::reset_source(ovh_side, plan, a, mode, stop).await,
        (other, _) => {
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
