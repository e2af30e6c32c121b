//! What a run reports as it goes: the engine's one door for output.
//!
//! The runner emits [`Event`]s to a [`Sink`] it is given and prints nothing itself; the sinks
//! live in [`crate::report`] ([`crate::report::progress::Printer`]: bars on a terminal, plain
//! lines off one, JSON lines), so that `exec` never depends on how a run is shown.

use std::time::Duration;

/// Where the runner sends what happens. Called from any task at once: a sink serialises its own
/// output.
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// Report an event.
    fn event(&self, event: &Event<'_>);
    /// Take down any live display (bars) before an exit that skips [`Event::Finished`].
    fn clear(&self);
}

/// A shared sink is a sink (the runner hands `&Arc<dyn Sink>` where `&dyn Sink` is asked).
impl<S: Sink + ?Sized> Sink for std::sync::Arc<S> {
    fn event(&self, event: &Event<'_>) {
        (**self).event(event);
    }

    fn clear(&self) {
        (**self).clear();
    }
}

/// What happened, as the runner reports it.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    Started {
        plan: &'a str,
        steps: usize,
        dry_run: bool,
        state: &'a str,
    },
    /// This `apply` joined a shared run as a worker (`host pid N`), with `others` workers
    /// already in it.
    Worker {
        worker: &'a str,
        others: usize,
    },
    /// At the end of a worker's run: what coordinating with the other workers cost it (the
    /// requests to the shared state a run on the embedded state does not make, and the time
    /// spent waiting for them), and the steps it ran.
    Coordination {
        /// Claims, their ends, heartbeats with the renewals, polls of steps held elsewhere.
        leases: Spent,
        /// Connection slots and OVH placeholders shared across workers.
        limits: Spent,
        steps: usize,
    },
    /// A step begins; `why` says why a step that ran before runs again.
    StepStarted {
        key: &'a str,
        why: Option<&'a str>,
    },
    /// A step that did not need to run.
    StepUnchanged {
        key: &'a str,
        why: &'a str,
    },
    StepDone {
        key: &'a str,
        summary: &'a str,
        ms: u64,
    },
    StepFailed {
        key: &'a str,
        error: &'a str,
    },
    StepSkipped {
        key: &'a str,
        because: &'a str,
    },
    StepInterrupted {
        key: &'a str,
    },
    Retry {
        key: &'a str,
        attempt: u32,
        wait: Duration,
        error: &'a str,
    },
    /// A folder is about to be copied (or, in a dry run, would be).
    Folder {
        account: &'a str,
        source: &'a str,
        target: &'a str,
        to_copy: u64,
        already: u64,
        skipped: u64,
        dry_run: bool,
    },
    Copied {
        account: &'a str,
        messages: u64,
        bytes: u64,
    },
    /// An account's copy surveyed its folders: per source folder, the messages it is likely to
    /// send (an upper bound until the folder's [`Event::Folder`] gives the real count).
    Estimated {
        account: &'a str,
        folders: &'a [(String, u64)],
    },
    Interrupting,
    /// After an interrupt, the IMAP connections moved no byte for `quiet`: the servers stopped
    /// answering, and the run ends now instead of waiting for its safe point.
    InterruptStalled {
        quiet: Duration,
    },
    /// Something the run cannot go on without is slow to answer: said at a steady interval, so
    /// that a long silence never hides what the run waits for.
    Waiting {
        what: &'a str,
        elapsed: Duration,
    },
    Finished {
        done: usize,
        failed: usize,
        skipped: usize,
        interrupted: bool,
        messages: u64,
        bytes: u64,
    },
}

/// Requests to a shared state and the time spent waiting for their answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    pub requests: u64,
    pub spent: std::time::Duration,
}

/// `1.5 MB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
