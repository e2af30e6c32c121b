//! IMAP: connect and log in ([`connect`](mod@connect)), list and map folders ([`folders`]), message
//! identities ([`identity`]), pipelined reads and the helpers that read their answers
//! ([`pipelined`]), the resumable copy and the verification ([`copy`], one file per concern:
//! [`copy::ledger`], [`copy::context`], [`copy::matching`], [`copy::transfer`],
//! [`copy::survey`](mod@copy::survey), [`copy::share`], [`copy::folder`], [`copy::account`],
//! [`copy::verify`]) and its target side, how messages are appended ([`append`]); the wait for a
//! target to settle before a folder left pending by a dead run is compared ([`settle`]); new
//! connections in the middle of a copy, after an unreadable answer or a target that closed on a
//! refused message ([`relogin`]); transcripts of the conversation for bug reports ([`trace`]);
//! how long a command may take (`timeout`); whether any connection still moves bytes
//! ([`activity`]); the byte stream under a session ([`transport`]).
//!
//! Invariants kept here, whatever the caller does:
//! - messages are appended byte for byte as the source served them, with their flags (except
//!   `\Recent`) and INTERNALDATE; nothing is ever deleted or changed on the source or the target;
//! - a batch is recorded as *pending* in the [`copy::Ledger`] before its first APPEND and as done
//!   after its last, so an interrupted batch is reconciled by identity on the next run instead of
//!   being sent twice or forgotten;
//! - memory is bounded by the byte budget between fetching and appending (a few MB), whatever
//!   the message sizes: messages of 2 MB and more pass in 1 MB pieces.

pub mod activity;
pub mod append;
pub mod connect;
pub mod copy;
pub mod error;
pub mod folders;
pub mod identity;
pub mod pipelined;
pub mod relogin;
pub mod settle;
mod timeout;
pub mod trace;
pub mod transport;

pub use connect::{Session, connect};
pub use error::{ImapError, ImapErrorKind};
