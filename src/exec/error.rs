//! The run's errors: what stops `apply` before or around the run (unresolved secrets, a failed
//! preflight, the state store), as opposed to one step's failure (`StepError`).

use crate::exec::store::StateError;

/// Errors that stop `apply` before or around the run (not a step's failure).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    #[error("{count} secret(s) cannot be resolved; nothing was executed:\n{list}")]
    #[diagnostic(
        code(exec::unresolved_secret),
        help("set the variables, create the files, or fix the commands the plan refers to")
    )]
    Secrets { count: usize, list: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Ovh(#[from] crate::providers::ovh::OvhError),
    #[error("{count} check(s) before the run failed; nothing was executed:\n{list}")]
    #[diagnostic(
        code(exec::preflight),
        help(
            "fix each problem listed (order the missing Hosted Exchange accounts, change the \
             domain or the account in the control panel, the password or the consumer key), \
             then run apply again; `plan --refresh` shows the same checks"
        )
    )]
    Preflight { count: usize, list: String },
}
