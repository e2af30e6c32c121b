//! `mailplan plan --refresh`: the live state of each account, read without changing anything —
//! log in, list both sides' folders, show where each source folder goes and how many messages
//! each side holds. Nothing is written to a server or to the state store.

use serde::Serialize;

use super::runner::{ExecError, resolve_credentials};
use crate::plan::model::{Flow, Plan};
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
    pub target_exists: bool,
    pub source_messages: u32,
    pub target_messages: u32,
}

/// What was found for one account.
#[derive(Debug, Clone, Serialize)]
pub struct AccountRefresh {
    pub address: String,
    /// Why the account could not be read (the server's words), if it could not.
    pub error: Option<String>,
    pub folders: Vec<FolderLine>,
}

/// Read the live state of every IMAP → IMAP account of the plan.
pub async fn refresh(plan: &Plan) -> Result<Vec<AccountRefresh>, ExecError> {
    let credentials = resolve_credentials(plan)?;
    let mut out = Vec::with_capacity(plan.accounts.len());
    for (a, c) in plan.accounts.iter().zip(&credentials) {
        if a.flow != Flow::ImapToImap {
            out.push(AccountRefresh {
                address: a.address.clone(),
                error: Some(format!(
                    "{}: reading it needs the OVH API (not yet)",
                    a.flow
                )),
                folders: Vec::new(),
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
        });
    }
    Ok(out)
}
