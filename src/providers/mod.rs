//! The services mailplan talks to. Only this module and [`crate::exec`] do network I/O.
//!
//! - [`imap`]: any IMAP server (connect, list folders, copy, verify), over async-imap and rustls.
//! - [`ovh`]: the `OVHcloud` API (MX Plan, Hosted Exchange): signed client, tasks, typed calls.
//! - `tls`: the certificate verifier of connections whose certificate is not checked.

pub mod imap;
pub mod ovh;
pub(crate) mod tls;

/// Whether side effects happen. Matched where they would: a dry run reads live state and says
/// what it would do; it never writes to a server or to the state store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    Real,
    DryRun,
}
