//! Resolving secret references at run time: an environment variable, a file (relative to the
//! plan's folder, trailing newline removed) or a command's first line of output.
//!
//! Errors name the reference, never the value.

use std::path::Path;
use std::process::Command;

use crate::plan::secret::{Secret, SecretRef};

/// A reference that could not be resolved.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reference}: {reason}")]
pub struct SecretError {
    pub reference: String,
    pub reason: String,
}

/// Resolve `r`, relative to `plan_dir` for files.
pub fn resolve(r: &SecretRef, plan_dir: &Path) -> Result<Secret, SecretError> {
    let fail = |reason: String| SecretError {
        reference: r.to_string(),
        reason,
    };
    let value = match r {
        SecretRef::Env(name) => std::env::var(name)
            .map_err(|_| fail("the environment variable is not set".to_owned()))?,
        SecretRef::File(path) => {
            let text =
                fs_err::read_to_string(plan_dir.join(path)).map_err(|e| fail(e.to_string()))?;
            text.trim_end_matches(['\r', '\n']).to_owned()
        }
        SecretRef::Command(cmd) => {
            let out = Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .current_dir(plan_dir)
                .output()
                .map_err(|e| fail(e.to_string()))?;
            if !out.status.success() {
                return Err(fail(format!("the command exited with {}", out.status)));
            }
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        }
    };
    if value.is_empty() {
        return Err(fail("the secret is empty".to_owned()));
    }
    Ok(Secret::new(value))
}
