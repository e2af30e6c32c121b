//! Execution: the runner that drives the step graph ([`runner`], the coordinator; the step
//! bodies in `steps`, what they run with and return in `step`; connection `slots`, step
//! `fingerprint`s, the copy's view of the store in `ledger`, resolved `credentials`; the run's
//! [`Error`]), the events it emits to an [`events::Sink`] (rendered by [`crate::report`]), the
//! state store that makes runs resumable ([`store`]; [`pg`] keeps the same records in
//! `PostgreSQL`, where each `apply` is a [`worker`] of a shared run), secret resolution ([`secrets`]) and the
//! bounded reading of the files a plan names ([`files`]). With [`crate::providers`], the only
//! code that does I/O; none of it prints.

mod credentials;
mod error;
pub mod events;
pub mod files;
mod fingerprint;
mod ledger;
pub(crate) mod legacy_layout;
pub(crate) mod ovh;
pub(crate) mod preflight;
pub mod refresh;
pub mod runner;
pub mod saved;
pub mod secrets;
mod slots;
pub mod snapshot;
mod step;
mod steps;
pub mod store;
pub mod worker;

pub use error::Error;
