//! The `OVHcloud` API: legacy MX Plan (`/email/domain`), new MX Plan (`/email/mxplan`) and Hosted
//! Exchange (`/email/exchange`), as the plan's steps need them.
//!
//! - [`config`]: the endpoint and the credentials, found as the official clients find them
//!   (environment, then `./ovh.conf`, `~/.ovh.conf`, `/etc/ovh.conf`).
//! - [`client`]: the signed HTTP [`Client`] (reqwest, rustls): server time, retries with
//!   backoff, the shared rate limit.
//! - [`tasks`]: waiting for asynchronous tasks with each API's rule.
//! - [`api`]: the typed calls and models.
//! - [`error`]: the layer's one error type, [`OvhError`], with stable codes (`ovh::not_found`).
//!
//! Invariants: only [`client`] talks to the network; no secret (application secret, consumer
//! key, mailbox password) reaches an error or a log; every request is rate-limited and signed
//! over the exact bytes sent.

pub mod api;
pub mod client;
pub mod config;
pub mod error;
pub mod tasks;

pub use client::{Client, ClientOptions, RetryPolicy, SharedPace};
pub use config::{ConfigSources, Credentials, Endpoint};
pub use error::{OvhError, OvhErrorKind};
pub use tasks::{PollOptions, TaskRef};

#[cfg(test)]
mod http_tests;
