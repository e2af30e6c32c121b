//! What a step runs with and what it gives back: the context every step task shares
//! ([`Shared`]), a step's stable name ([`step_key`]), its outcome ([`StepOutcome`]) and its error
//! ([`StepError`]). Step bodies live in [`super::steps`]; only the coordinator
//! ([`super::runner`]) turns results into step records and run events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::exec::credentials::Credentials;
use crate::exec::events::Sink;
use crate::exec::ovh;
use crate::exec::slots::{SlotError, Slots};
use crate::exec::store::{StateStore, StepStatus};
use crate::graph::{StepGraph, StepId, StepKind, Subject};
use crate::plan::model::{ImapServer, Plan};
use crate::providers::RunMode;
use crate::providers::imap::ImapError;
use crate::providers::imap::copy::{self, CopyError};

/// What every step task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) plan: Plan,
    pub(crate) credentials: Vec<Credentials>,
    pub(crate) store: Option<Arc<dyn StateStore>>,
    pub(crate) printer: Arc<dyn Sink>,
    /// Cancelled by the first interrupt or a failed state write: no step starts, running ones
    /// stop at their next safe point (a copy at the end of its current batch).
    pub(crate) stop: CancellationToken,
    /// A state write failed: the run stops as at a first Ctrl-C (no step starts, running ones
    /// stop at a safe point) and exits 1, since what it does next could not be recorded.
    pub(crate) state_failed: AtomicBool,
    pub(crate) mode: RunMode,
    pub(crate) slots: Slots,
    pub(crate) connections: usize,
    /// The OVH API side, when the plan has OVH steps.
    pub(crate) ovh: Option<ovh::Ovh>,
    /// Verification results computed by `copy-mail` on its connections, for `verify`.
    pub(crate) verified: Mutex<HashMap<usize, Vec<copy::FolderCheck>>>,
    /// Message sizes the IMAP targets refused as too large in this run.
    pub(crate) size_refusals: copy::SizeRefusals,
}

/// The stable name of a step in the state store and the output: `copy-mail alice@x.example`.
pub(crate) fn step_key(plan: &Plan, graph: &StepGraph, id: StepId) -> String {
    graph.step(id).key(plan)
}

/// The step a task runs.
#[derive(Debug)]
pub(crate) struct StepTask<'a> {
    pub(crate) id: StepId,
    /// Its [`step_key`].
    pub(crate) key: &'a str,
    pub(crate) kind: StepKind,
    pub(crate) subject: &'a Subject,
}

/// A running step is to be tried again after `wait`: the coordinator says so and records the
/// attempt.
#[derive(Debug)]
pub(crate) struct Retrying {
    pub(crate) id: StepId,
    pub(crate) attempt: u32,
    pub(crate) wait: Duration,
    pub(crate) error: String,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Done,
    Failed,
    /// Stopped at a safe point by the run's cancellation; the next run resumes it.
    Interrupted,
}

impl Ended {
    /// The status the state store records for it.
    pub(crate) fn recorded(self) -> StepStatus {
        match self {
            Ended::Done => StepStatus::Done,
            Ended::Failed => StepStatus::Failed,
            Ended::Interrupted => StepStatus::Interrupted,
        }
    }
}

/// The mail a step carried to its target, whatever became of the step (an interrupted or failed
/// copy carried mail too). Atomic: the copy's observer adds to it from its connection pairs.
#[derive(Debug, Default)]
pub(crate) struct Carried {
    pub(crate) messages: AtomicU64,
    pub(crate) bytes: AtomicU64,
}

impl Carried {
    pub(crate) fn add(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Ordering::SeqCst);
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
    }

    fn counts(&self) -> StepCounts {
        StepCounts {
            messages: self.messages.load(Ordering::SeqCst),
            bytes: self.bytes.load(Ordering::SeqCst),
        }
    }
}

/// Messages and bytes a step carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StepCounts {
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
}

/// What a step task gives back to the coordinator, the only one that records it and reports it.
#[derive(Debug)]
pub(crate) struct StepOutcome {
    pub(crate) status: Ended,
    /// What the step did (done), or why it failed; empty when interrupted.
    pub(crate) summary: String,
    /// The step's structured output (JSON) for the state store and the report: a done step's,
    /// and a failed verification's checks (what is missing where).
    pub(crate) output: Option<String>,
    pub(crate) counts: StepCounts,
}

impl StepOutcome {
    pub(crate) fn done(summary: String, output: String) -> Self {
        Self::new(Ended::Done, summary, Some(output))
    }

    pub(crate) fn failed(why: String) -> Self {
        Self::new(Ended::Failed, why, None)
    }

    /// A failure with the output that shows it (a verification's checks).
    pub(crate) fn failed_with(why: String, output: String) -> Self {
        Self::new(Ended::Failed, why, Some(output))
    }

    pub(crate) fn interrupted() -> Self {
        Self::new(Ended::Interrupted, String::new(), None)
    }

    fn new(status: Ended, summary: String, output: Option<String>) -> Self {
        StepOutcome {
            status,
            summary,
            output,
            counts: StepCounts::default(),
        }
    }

    /// This outcome with what the step carried.
    pub(crate) fn carried(mut self, carried: &Carried) -> Self {
        self.counts = carried.counts();
        self
    }
}

#[derive(Debug)]
pub(crate) enum StepError {
    Imap(ImapError),
    Interrupted,
    Other(String),
}

impl From<ImapError> for StepError {
    fn from(e: ImapError) -> Self {
        StepError::Imap(e)
    }
}

impl From<SlotError> for StepError {
    fn from(e: SlotError) -> Self {
        StepError::Other(e.to_string())
    }
}

impl From<CopyError> for StepError {
    fn from(e: CopyError) -> Self {
        match e {
            CopyError::Imap(e) | CopyError::Closed { error: e, .. } => StepError::Imap(e),
            CopyError::Interrupted => StepError::Interrupted,
            CopyError::Ledger(m) => StepError::Other(format!("state store: {m}")),
        }
    }
}

pub(crate) fn server<'a>(shared: &'a Shared, platform: &str) -> Option<&'a ImapServer> {
    shared.plan.platforms.get(platform)?.imap.as_ref()
}
