//! Execution: the runner that drives the step graph ([`runner`]), the events it emits to a
//! [`events::Sink`] (rendered by [`crate::report`]), the state store that makes runs resumable
//! ([`state`]), secret resolution ([`secrets`]) and the bounded reading of the files a plan names
//! ([`files`]). With [`crate::providers`], the only code that does I/O; none of it prints.

pub mod events;
pub mod files;
pub(crate) mod legacy_layout;
pub(crate) mod ovh;
pub(crate) mod preflight;
pub mod refresh;
pub mod runner;
pub mod saved;
pub mod secrets;
pub mod snapshot;
pub mod state;
