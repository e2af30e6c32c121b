//! The resumable, additive copy of a mailbox, and its verification.
//!
//! Per account ([`survey`](fn@survey), then [`copy_account`]): LIST on both sides at once, then the
//! STATUS of every source folder in one pipelined round trip ([`pipelined`](super::pipelined)), the
//! missing target folders created in another. Per folder:
//! - **Fast path**: the [`Ledger`] knows the folder's UIDVALIDITY and the highest UID done, and
//!   no batch was left pending: the survey's STATUS says whether anything arrived; only UIDs
//!   above the mark are fetched and appended. A no-op re-run costs nothing per folder beyond
//!   that one pipelined STATUS.
//! - **Reconcile**: no record, a changed UIDVALIDITY, a batch left pending by a crash, or messages
//!   that failed last time: both folders' identities ([`Identity`](super::identity::Identity)) are
//!   compared as multisets and only the difference is sent. This is what makes a crash between an
//!   APPEND and the ledger write harmless: the message is found on the target and not sent again.
//!
//! Opening a folder and reading its identities is one round trip per side, both sides at once.
//! Fetching and appending overlap (two connections, a channel between them; as few `UID FETCH`
//! commands as the UID sets allow, groups of messages appended pipelined: one MULTIAPPEND each, or
//! one APPEND per message with LITERAL+ alone, see [`AppendMode`](super::append::AppendMode)) while
//! a byte budget bounds what is held in memory; batches are recorded as their last group is
//! acknowledged, without stopping the flow. A folder with [`SHARE_FROM`] messages or more to send
//! is shared by the account's connection pairs, each taking chunks of it when it has nothing else
//! to do; its parts finish out of order, so it stays *pending* at its old mark until all are done.
//! Verification reads every folder's identities on both sides, each side in one pipelined round
//! trip.
//!
//! The files, by concern (no file of the copy imports this one; each imports only those before it
//! here, and `append.rs` only the first two):
//! - [`ledger`]: what the copy remembers, across runs ([`Ledger`], [`FolderRecord`]) and within
//!   one ([`SizeRefusals`]);
//! - [`context`]: what a copy is given and gives back ([`CopyContext`], [`CopyError`],
//!   [`CopyEvent`], [`FolderOutcome`]);
//! - [`matching`]: which source messages the target lacks, by identity (pure);
//! - [`transfer`]: fetching and appending at once, streaming large messages, how a transfer
//!   flows ([`TransferFlow`]);
//! - [`survey`](mod@survey): what an account holds before anything is copied
//!   ([`survey`](fn@survey), [`mapping`]);
//! - [`share`]: what the connection pairs of an account share, and large folders sent by all;
//! - [`folder`]: one folder's pass;
//! - [`account`]: the copy of one account ([`copy_account`]);
//! - [`verify`]: the verification ([`verify_account`], [`verify_folders`]).

pub mod account;
pub mod context;
pub mod folder;
pub mod ledger;
pub mod matching;
pub mod share;
pub mod survey;
pub mod transfer;
pub mod verify;

pub use account::{Pair, copy_account};
pub use context::{CopyContext, CopyError, CopyEvent, FolderOutcome};
pub use ledger::{FolderCounts, FolderRecord, IssueKind, Ledger, SizeRefusals};
pub use survey::{SHARE_FROM, Survey, Work, mapping, survey};
pub use transfer::{TargetFlags, TransferFlow, uid_set};
pub use verify::{FolderCheck, verdict, verify_account, verify_folders};
