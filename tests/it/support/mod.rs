//! Test support for real-server integration tests: throw-away Dovecot instances ([`dovecot`]),
//! Cyrus IMAP instances in its usual folder layouts ([`cyrus`]), GNU imap4d ([`imap4d`]),
//! a deterministic mailbox generator ([`corpus`]), whole-mailbox snapshots compared as multisets
//! ([`mailbox`]), a fault-injecting TCP proxy ([`proxy`]), a command's stderr read line by line
//! ([`lines`]), the IMAP conversation read back from
//! its transcripts ([`wire`]) and the small IMAP client they share ([`imap`]).
//!
//! Everything here is synchronous from the caller's side (each call runs its own small tokio
//! runtime on a helper thread, the proxy owns one), so tests that run the `mailplan` binary with
//! `std::process::Command` can use it, and so can `#[tokio::test]`s.

// The engine's integration tests, the main users of this module, are written later: until then
// some entry points have no caller in the test binary.
#![allow(dead_code)]

pub mod corpus;
pub mod cyrus;
pub mod dovecot;
pub mod imap;
pub mod imap4d;
pub mod lines;
pub mod mailbox;
pub mod postgres;
pub mod proxy;
pub mod wire;
