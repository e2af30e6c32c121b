//! `mailplan plan --refresh`: the live state of each account, read without changing anything —
//! for IMAP → IMAP accounts, log in, list both sides' folders, show where each source folder goes
//! and how many messages each side holds; for the OVH flows, what each step finds (already done,
//! what would change, every failed prerequisite) with GET calls only, and the verdicts of the
//! run's preflight ([`super::preflight`], `run-preflight` lines) as `apply` would find them.
//! Nothing is written to a server or to the state store.

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Error;
use super::credentials::resolve_credentials;
use super::ovh::{self, Ovh};
use crate::plan::model::{Flow, Plan};
use crate::providers::RunMode;
use crate::providers::imap::connect::server_name;
use crate::providers::imap::copy::mapping;
use crate::providers::imap::{self, ImapError};

/// One source folder and where it goes.
#[derive(Debug, Clone, Serialize)]
pub struct FolderLine {
    pub source: String,
    pub target: String,
    /// `map`, `special-use` or `same-path`.
    pub reason: &'static str,
    /// The name the folder gets on the target instead, when the target's separator is in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renamed: Option<String>,
    pub target_exists: bool,
    pub source_messages: u32,
    pub target_messages: u32,
}

/// An OVH step as the live state shows it (GET calls only).
#[derive(Debug, Clone, Serialize)]
pub struct StepLine {
    pub step: &'static str,
    /// What is already done, what would change, or the failed prerequisite.
    pub state: String,
    /// `false` when a prerequisite fails.
    pub ok: bool,
}

/// What was found for one account.
#[derive(Debug, Clone, Serialize)]
pub struct AccountRefresh {
    pub address: String,
    /// Why the account could not be read (the server's words), if it could not.
    pub error: Option<String>,
    pub folders: Vec<FolderLine>,
    /// The OVH steps, for the accounts of the OVH flows.
    pub steps: Vec<StepLine>,
}

/// What the OVH API says of an account's steps, with GET calls only.
async fn ovh_steps(
    ovh_side: &Ovh,
    plan: &Plan,
    a: &crate::plan::model::Account,
    password: &crate::plan::secret::Secret,
) -> Vec<StepLine> {
    let stop = CancellationToken::new();
    let mode = RunMode::DryRun;
    let mut lines = Vec::new();
    let mut push = |step: &'static str, r: Result<ovh::Done, ovh::Failure>| {
        let (state, ok) = match r {
            Ok(d) => (d.summary, true),
            Err(ovh::Failure::Ovh(e)) => (e.to_string(), false),
            Err(ovh::Failure::Blocked(why)) => (why, false),
            Err(ovh::Failure::Interrupted) => ("interrupted".to_owned(), false),
        };
        lines.push(StepLine { step, state, ok });
    };
    if plan
        .domains
        .iter()
        .any(|d| d.name == a.domain() && d.platform == a.to)
    {
        push(
            "add-domain",
            ovh::add_domain(ovh_side, plan, a.domain(), mode, &stop).await,
        );
    }
    match a.flow {
        Flow::MxplanToExchange => {
            push(
                "rename-source",
                ovh::rename_source(ovh_side, plan, a, mode, &stop).await,
            );
            push(
                "configure-target",
                ovh::configure_target(ovh_side, plan, a, password, mode, &stop).await,
            );
        }
        Flow::ImapToExchange => push(
            "configure-target",
            ovh::configure_target(ovh_side, plan, a, password, mode, &stop).await,
        ),
        Flow::LegacyToExchange => {
            push("preflight", ovh::preflight(ovh_side, plan, a, &stop).await);
            push(
                "migrate-legacy",
                ovh::migrate_legacy(ovh_side, plan, a, password, None, mode, &stop).await,
            );
        }
        Flow::ImapToImap => {}
    }
    lines
}

/// Read the live state of every account of the plan: folders and counts over IMAP for
/// IMAP → IMAP accounts, the OVH steps' state (GET calls only) for the others.
pub async fn refresh(plan: &Plan) -> Result<Vec<AccountRefresh>, Error> {
    let credentials = resolve_credentials(plan)?;
    let ovh_side = if plan.accounts.iter().any(|a| a.flow != Flow::ImapToImap) {
        Some(Ovh::connect(plan, 600)?)
    } else {
        None
    };
    // The run's preflight, as `apply` would judge it now (the state store aside: what the live
    // state shows as done is not counted again).
    let problems = match &ovh_side {
        Some(o) => super::preflight::check(o, plan, &credentials, &|_, _| false).await?,
        None => Vec::new(),
    };
    let mut out = Vec::with_capacity(plan.accounts.len());
    for (a, c) in plan.accounts.iter().zip(&credentials) {
        if a.flow != Flow::ImapToImap {
            let mut steps = Vec::new();
            let mine: Vec<&super::preflight::Problem> =
                problems.iter().filter(|p| p.concerns(plan, a)).collect();
            if mine.is_empty() {
                steps.push(StepLine {
                    step: "run-preflight",
                    state: "every check before the run passes".to_owned(),
                    ok: true,
                });
            }
            for p in mine {
                steps.push(StepLine {
                    step: "run-preflight",
                    state: p.text.clone(),
                    ok: false,
                });
            }
            if let Some(o) = &ovh_side {
                let password = if a.flow == Flow::LegacyToExchange {
                    &c.source_password
                } else {
                    &c.target_password
                };
                steps.extend(ovh_steps(o, plan, a, password).await);
            }
            out.push(AccountRefresh {
                address: a.address.clone(),
                error: None,
                folders: Vec::new(),
                steps,
            });
            continue;
        }
        let server = |p: &str| plan.platforms.get(p).and_then(|p| p.imap.clone());
        let (Some(source), Some(target)) = (server(&a.from), server(&a.to)) else {
            continue;
        };
        let read = async {
            let mut s = imap::connect(&source, &c.source_login, &c.source_password).await?;
            let mut t = imap::connect(&target, &c.target_login, &c.target_password).await?;
            let (ss, ts) = (server_name(&source), server_name(&target));
            let (mappings, _) = mapping(&mut s, &ss, &mut t, &ts, &a.copy).await?;
            let mut lines = Vec::with_capacity(mappings.len());
            for m in mappings {
                let count = |mb: async_imap::types::Mailbox| mb.exists;
                let source_messages = s
                    .status(&m.source.wire, "(MESSAGES)")
                    .await
                    .map(count)
                    .map_err(|e| {
                        ImapError::from_imap(&ss, format!("counting {}", m.source.path), e)
                    })?;
                let target_messages = if m.target_exists {
                    t.status(&m.target_wire, "(MESSAGES)")
                        .await
                        .map(count)
                        .map_err(|e| {
                            ImapError::from_imap(&ts, format!("counting {}", m.target_path), e)
                        })?
                } else {
                    0
                };
                lines.push(FolderLine {
                    source: m.source.path.clone(),
                    target: m.target_path.clone(),
                    reason: m.reason,
                    renamed: m.renamed.clone(),
                    target_exists: m.target_exists,
                    source_messages,
                    target_messages,
                });
            }
            let _ = s.logout().await;
            let _ = t.logout().await;
            Ok::<_, ImapError>(lines)
        };
        let (folders, error) = match read.await {
            Ok(f) => (f, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        out.push(AccountRefresh {
            address: a.address.clone(),
            error,
            folders,
            steps: Vec::new(),
        });
    }
    Ok(out)
}
