//! Every account's logins and passwords, resolved once before the run ([`resolve_credentials`]):
//! all the problems are reported together and nothing runs while one is left.

use crate::exec::Error;
use crate::exec::secrets;
use crate::plan::model::{Flow, Plan};
use crate::plan::secret::Secret;

/// Logins and passwords of one account, resolved.
#[derive(Debug)]
pub(crate) struct Credentials {
    pub source_login: String,
    pub source_password: Secret,
    pub target_login: String,
    pub target_password: Secret,
}

/// Resolve every account's logins and passwords; all problems at once.
pub(crate) fn resolve_credentials(plan: &Plan) -> Result<Vec<Credentials>, Error> {
    let dir = plan
        .path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let mut problems = Vec::new();
    let mut creds = Vec::with_capacity(plan.accounts.len());
    // Each distinct reference once; commands concurrently.
    let resolved = secrets::resolve_all(
        plan.accounts
            .iter()
            .flat_map(|a| [a.source_password.as_ref(), a.target_password.as_ref()])
            .flatten(),
        &dir,
    );
    for a in &plan.accounts {
        let mut get = |side: &str, r: Option<&crate::plan::secret::SecretRef>| match r {
            None => {
                problems.push(format!("  {}: no {side}-password in the plan", a.address));
                None
            }
            Some(r) => match resolved
                .get(r)
                .unwrap_or(&Err(secrets::SecretError::Unresolved))
            {
                Ok(s) => Some(s.clone()),
                Err(e) => {
                    problems.push(format!("  {}: {side}-password {e}", a.address));
                    None
                }
            },
        };
        let sp = get("source", a.source_password.as_ref());
        // OVH's own migration keeps the source password on the Exchange account.
        let target_ref = a
            .target_password
            .as_ref()
            .or(if a.flow == Flow::LegacyToExchange {
                a.source_password.as_ref()
            } else {
                None
            });
        let tp = get("target", target_ref);
        if let (Some(source_password), Some(target_password)) = (sp, tp) {
            creds.push(Credentials {
                source_login: a
                    .source_login
                    .clone()
                    .unwrap_or_else(|| a.copy_source_address().to_owned()),
                source_password,
                target_login: a.target_login.clone().unwrap_or_else(|| a.address.clone()),
                target_password,
            });
        }
    }
    if !problems.is_empty() {
        return Err(Error::Secrets {
            count: problems.len(),
            list: problems.join("\n"),
        });
    }
    Ok(creds)
}
