//! Execution: the runner that drives the step graph ([`runner`]), the state store that makes
//! runs resumable ([`state`]; [`pg`] keeps the same records in `PostgreSQL`), the printer of a
//! run ([`printer`]), secret resolution ([`secrets`]) and the bounded reading of the files a
//! plan names ([`files`]). With [`crate::providers`], the only code that does I/O.

pub mod files;
pub(crate) mod legacy_layout;
pub(crate) mod ovh;
pub mod pg;
pub(crate) mod preflight;
pub mod printer;
pub mod refresh;
pub mod runner;
pub mod saved;
pub mod secrets;
pub mod snapshot;
pub mod state;
