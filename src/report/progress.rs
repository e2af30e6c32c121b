//! The one printer of a run: what `apply` shows while it works, the [`Sink`] the CLI gives the
//! runner for its [`Event`]s.
//!
//! - [`Output::Bars`] on a terminal: an indicatif bar per active account (messages, bytes, rate,
//!   ETA) and a total line; their lengths come from the survey's estimates, known before the
//!   first message is sent, corrected as each folder's real count is known, so that the ETA is
//!   right from the start and the total agrees with the account bars;
//! - [`Output::Lines`] off a terminal (CI): one plain line per event on stderr, and a progress
//!   line per copying account every [`LINE_EVERY`] while it copies (a long folder is not silent);
//! - [`Output::Json`]: one JSON object per event on stdout (`mailplan.events/v1`);
//! - [`Output::Quiet`] (`-q`): no bar and no progress; only what needs a person on stderr: each
//!   failed step, the interrupt notice and the final summary.
//!
//! Workers call it from any task; it serialises its own output.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::exec::events::{Event, Sink, Spent, human_bytes};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Bars,
    Lines,
    Json,
    Quiet,
}

#[derive(Debug)]
struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    accounts: HashMap<String, ProgressBar>,
}

/// The bars: counts with thousands separators, the `{rate}` of [`with_rate`].
const TOTAL_BAR: &str =
    "{prefix:>24.bold} {human_pos}/{human_len} messages, {rate}, eta {eta} [{elapsed_precise}]";
const ACCOUNT_BAR: &str =
    "{prefix:>24.bold} [{bar:30}] {human_pos}/{human_len} msgs, {msg}, {rate}, eta {eta}";

/// A progress line off a terminal, per copying account, at most this often.
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// What an account's copy is expected to send and has sent, in this run.
#[derive(Debug, Clone)]
struct Progress {
    /// Messages expected: the estimates, each replaced by the real count once known.
    expected: u64,
    /// Folders whose estimate is still in `expected` (not yet replaced).
    estimates: HashMap<String, u64>,
    copied: u64,
    bytes: u64,
    started: Instant,
    /// When the last progress line was printed (off a terminal).
    last_line: Instant,
}

impl Progress {
    fn new(now: Instant) -> Progress {
        Progress {
            expected: 0,
            estimates: HashMap::new(),
            copied: 0,
            bytes: 0,
            started: now,
            last_line: now,
        }
    }

    /// A folder's real count replaces its estimate; returns the change of `expected`.
    fn folder(&mut self, source: &str, to_copy: u64) -> i64 {
        let estimate = self.estimates.remove(source).unwrap_or(0);
        let before = self.expected;
        self.expected = self.expected - estimate.min(self.expected) + to_copy;
        signed(self.expected) - signed(before)
    }

    /// `copying a@x: 1,200 of 5,000 message(s), 12.3 MB, 2,408/s`.
    fn line(&self, account: &str, now: Instant) -> String {
        #[allow(clippy::cast_precision_loss)]
        let rate = self.copied as f64 / now.duration_since(self.started).as_secs_f64().max(0.001);
        format!(
            "copying {account}: {} of {} message(s), {}, {}",
            thousands(self.copied),
            thousands(self.expected.max(self.copied)),
            human_bytes(self.bytes),
            per_second(rate)
        )
    }
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The printer. Construct once per run.
#[derive(Debug)]
pub struct Printer {
    output: Output,
    bars: Mutex<Option<Bars>>,
    progress: Mutex<HashMap<String, Progress>>,
    /// On a shared run, the worker this process is ([`Event::Worker`]): every line and JSON
    /// event after that one names it, since several workers' output often ends up in one log.
    worker: Mutex<Option<String>>,
}

impl Printer {
    pub fn new(output: Output) -> Printer {
        let bars = (output == Output::Bars).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            let total = multi.add(ProgressBar::new(0));
            total.set_style(
                ProgressStyle::with_template(TOTAL_BAR)
                    .map_or_else(|_| ProgressStyle::default_bar(), with_rate),
            );
            total.set_prefix("total");
            Bars {
                multi,
                total,
                accounts: HashMap::new(),
            }
        });
        Printer {
            output,
            bars: Mutex::new(bars),
            progress: Mutex::new(HashMap::new()),
            worker: Mutex::new(None),
        }
    }

    /// `text` as this process prints it: after the worker's name on a shared run.
    fn named(&self, text: String) -> String {
        match self
            .worker
            .lock()
            .ok()
            .as_deref()
            .and_then(Option::as_deref)
        {
            Some(worker) => format!("[{worker}] {text}"),
            None => text,
        }
    }

    /// Take the bars down (before an exit that skips [`Event::Finished`]).
    pub fn clear(&self) {
        if let Ok(mut guard) = self.bars.lock()
            && let Some(bars) = guard.as_mut()
        {
            for (_, bar) in bars.accounts.drain() {
                bar.finish_and_clear();
            }
            bars.total.finish_and_clear();
            let _ = bars.multi.clear();
        }
    }

    /// Report an event.
    pub fn event(&self, event: &Event<'_>) {
        self.show(event);
        // The worker line names the worker itself; every line after it does too.
        if let Event::Worker { worker, .. } = event
            && let Ok(mut named) = self.worker.lock()
        {
            *named = Some((*worker).to_owned());
        }
    }

    fn show(&self, event: &Event<'_>) {
        let change = self.track(event);
        match self.output {
            Output::Json => {
                if shown(event) {
                    let mut v = json_event(event);
                    if let Some(worker) = self
                        .worker
                        .lock()
                        .ok()
                        .as_deref()
                        .and_then(Option::as_deref)
                    {
                        v["worker"] = json!(worker);
                    }
                    let mut out = io::stdout().lock();
                    let _ = writeln!(out, "{v}");
                    let _ = out.flush();
                }
            }
            Output::Lines => {
                let text = match (event, change) {
                    (Event::Copied { .. }, Change::Line(text)) => Some(text),
                    _ => line(event),
                };
                if let Some(text) = text {
                    let _ = writeln!(io::stderr().lock(), "{}", self.named(text));
                }
            }
            Output::Bars => self.bar_event(event, &change),
            Output::Quiet => {
                if let Event::StepFailed { .. }
                | Event::Interrupting
                | Event::InterruptStalled { .. }
                | Event::Finished { .. } = event
                    && let Some(text) = line(event)
                {
                    let _ = writeln!(io::stderr().lock(), "{}", self.named(text));
                }
            }
        }
    }

    /// Keep each account's progress: what it is expected to send, what it sent.
    fn track(&self, event: &Event<'_>) -> Change {
        let Ok(mut all) = self.progress.lock() else {
            return Change::None;
        };
        let now = Instant::now();
        match event {
            Event::Estimated { account, folders } => {
                let p = all
                    .entry((*account).to_owned())
                    .or_insert_with(|| Progress::new(now));
                // A new survey (a copy retried after a network error) starts over from what
                // was sent so far.
                let before = p.expected;
                p.estimates = folders.iter().cloned().collect();
                p.expected = p.copied + folders.iter().map(|(_, n)| n).sum::<u64>();
                Change::Expected(p.expected, signed(p.expected) - signed(before))
            }
            Event::Folder {
                account,
                source,
                to_copy,
                dry_run: false,
                ..
            } => {
                let p = all
                    .entry((*account).to_owned())
                    .or_insert_with(|| Progress::new(now));
                let delta = p.folder(source, *to_copy);
                Change::Expected(p.expected, delta)
            }
            Event::Copied {
                account,
                messages,
                bytes,
            } => {
                let p = all
                    .entry((*account).to_owned())
                    .or_insert_with(|| Progress::new(now));
                p.copied += messages;
                p.bytes += bytes;
                if now.duration_since(p.last_line) >= LINE_EVERY {
                    p.last_line = now;
                    Change::Line(p.line(account, now))
                } else {
                    Change::Bytes(p.bytes)
                }
            }
            Event::StepDone { key, .. }
            | Event::StepFailed { key, .. }
            | Event::StepInterrupted { key }
                if key.starts_with("copy-mail ") =>
            {
                // What was not sent is no longer expected: the total keeps what was.
                let account = key.trim_start_matches("copy-mail ");
                match all.remove(account) {
                    Some(p) => Change::Ended(signed(p.copied) - signed(p.expected)),
                    None => Change::None,
                }
            }
            _ => Change::None,
        }
    }

    fn bar_event(&self, event: &Event<'_>, change: &Change) {
        let Ok(mut guard) = self.bars.lock() else {
            return;
        };
        let Some(bars) = guard.as_mut() else { return };
        match event {
            Event::Estimated { account, .. } | Event::Folder { account, .. } => {
                let Change::Expected(expected, delta) = *change else {
                    return;
                };
                add_length(&bars.total, delta);
                if expected == 0 && !bars.accounts.contains_key(*account) {
                    return;
                }
                let bar = bars
                    .accounts
                    .entry((*account).to_owned())
                    .or_insert_with(|| {
                        // Complete before it is first drawn.
                        let bar = ProgressBar::new(expected)
                            .with_style(
                                ProgressStyle::with_template(ACCOUNT_BAR)
                                    .map_or_else(|_| ProgressStyle::default_bar(), with_rate)
                                    .progress_chars("=> "),
                            )
                            .with_prefix(short(account))
                            .with_message(human_bytes(0));
                        bars.multi.add(bar)
                    });
                bar.set_length(expected.max(bar.position()));
            }
            Event::Copied {
                account, messages, ..
            } => {
                if let Some(bar) = bars.accounts.get(*account) {
                    bar.inc(*messages);
                    if let Change::Bytes(bytes) = change {
                        bar.set_message(human_bytes(*bytes));
                    }
                }
                bars.total.inc(*messages);
            }
            Event::StepDone { key, .. }
            | Event::StepFailed { key, .. }
            | Event::StepInterrupted { key } => {
                if let Change::Ended(delta) = *change {
                    add_length(&bars.total, delta);
                }
                if let Some(line) = line(event) {
                    bars.multi.suspend(|| eprintln_safe(&line));
                }
                if let Some(account) = key.split_once(' ').map(|(_, a)| a)
                    && key.starts_with("copy-mail")
                    && let Some(bar) = bars.accounts.remove(account)
                {
                    bar.finish_and_clear();
                    bars.multi.remove(&bar);
                }
            }
            Event::Finished { .. } => {
                bars.total.finish_and_clear();
                for (_, bar) in bars.accounts.drain() {
                    bar.finish_and_clear();
                }
                let _ = bars.multi.clear();
                if let Some(line) = line(event) {
                    eprintln_safe(&self.named(line));
                }
            }
            other => {
                if let Some(line) = line(other) {
                    let line = self.named(line);
                    bars.multi.suspend(|| eprintln_safe(&line));
                }
            }
        }
    }
}

impl Sink for Printer {
    fn event(&self, event: &Event<'_>) {
        Printer::event(self, event);
    }

    fn clear(&self) {
        Printer::clear(self);
    }
}

/// What an event changed in the progress kept by the printer.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    None,
    /// The account's expected messages now, and by how many they changed.
    Expected(u64, i64),
    /// Bytes the account sent so far.
    Bytes(u64),
    /// A progress line is due (off a terminal).
    Line(String),
    /// The account's copy ended: the change from what was expected to what was sent.
    Ended(i64),
}

/// Whether an event is worth a line or a JSON object: a folder with nothing to send or leave
/// out is only bookkeeping (a dry run shows every folder).
fn shown(event: &Event<'_>) -> bool {
    match event {
        Event::Folder {
            to_copy,
            skipped,
            dry_run,
            ..
        } => *to_copy > 0 || *skipped > 0 || *dry_run,
        _ => true,
    }
}

fn add_length(bar: &ProgressBar, delta: i64) {
    let length = bar.length().unwrap_or(0);
    let next = if delta >= 0 {
        length.saturating_add(delta.unsigned_abs())
    } else {
        length.saturating_sub(delta.unsigned_abs())
    };
    bar.set_length(next.max(bar.position()));
}

/// The `{rate}` key: messages a second as people read them.
fn with_rate(style: ProgressStyle) -> ProgressStyle {
    style.with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&per_second(state.per_sec()));
        },
    )
}

/// `2,408/s`, `3.5/s`.
pub fn per_second(rate: f64) -> String {
    if !rate.is_finite() || rate <= 0.0 {
        return "0/s".to_owned();
    }
    if rate < 10.0 {
        return format!("{rate:.1}/s");
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let whole = rate.round() as u64;
    format!("{}/s", thousands(whole))
}

/// `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn eprintln_safe(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

fn short(account: &str) -> String {
    if account.chars().count() <= 24 {
        account.to_owned()
    } else {
        let s: String = account.chars().take(23).collect();
        format!("{s}…")
    }
}

/// The plain line of an event (also what bars print above themselves).
fn line(event: &Event<'_>) -> Option<String> {
    Some(match event {
        Event::Started {
            plan,
            steps,
            dry_run,
            state,
        } => {
            if *dry_run {
                format!("dry run of {plan}: {steps} step(s); nothing will be written")
            } else {
                format!("applying {plan}: {steps} step(s), state in {state}")
            }
        }
        Event::Worker { worker, others } => {
            format!("worker  {worker} of a shared run, with {others} other worker(s)")
        }
        Event::Coordination {
            leases,
            limits,
            steps,
        } => {
            #[allow(clippy::cast_precision_loss)]
            let per_step = |s: &Spent| s.spent.as_secs_f64() * 1000.0 / (*steps).max(1) as f64;
            format!(
                "worker  coordination, for {steps} step(s) run here: leases {} request(s), \
                 {:.2} s ({:.2} ms per step); shared limits {} request(s), {:.2} s ({:.2} ms \
                 per step)",
                leases.requests,
                leases.spent.as_secs_f64(),
                per_step(leases),
                limits.requests,
                limits.spent.as_secs_f64(),
                per_step(limits)
            )
        }
        Event::StepStarted { key, why } => match why {
            Some(why) => format!("start   {key} ({why})"),
            None => format!("start   {key}"),
        },
        Event::StepUnchanged { key, why } => format!("ok      {key} ({why})"),
        Event::StepDone { key, summary, ms } => {
            format!(
                "done    {key}: {summary} [{}.{} s]",
                ms / 1000,
                ms % 1000 / 100
            )
        }
        Event::StepFailed { key, error } => format!("FAILED  {key}: {error}"),
        Event::StepSkipped { key, because } => format!("skipped {key}: {because}"),
        Event::StepInterrupted { key } => format!("stopped {key} at a safe point"),
        Event::Retry {
            key,
            attempt,
            wait,
            error,
        } => format!(
            "retry   {key} (attempt {attempt}) in {:.1} s after: {error}",
            wait.as_secs_f64()
        ),
        Event::Folder { .. } | Event::Estimated { .. } if !shown(event) => return None,
        Event::Folder {
            account,
            source,
            target,
            to_copy,
            already,
            skipped,
            dry_run,
        } => {
            let verb = if *dry_run { "would copy" } else { "copying" };
            let mut s = format!(
                "folder  {account}: {source} -> {target}: {verb} {to_copy}, {already} already there"
            );
            if *skipped > 0 {
                let _ = write!(s, ", {skipped} skipped");
            }
            s
        }
        Event::Copied { .. } | Event::Estimated { .. } => return None,
        Event::Waiting { what, elapsed } => format!(
            "waiting for {what} ({} s so far; Ctrl-C stops)",
            elapsed.as_secs()
        ),
        Event::Interrupting => "interrupt: finishing the current batches, then stopping (press \
                                Ctrl-C again to stop at once; apply resumes either way)"
            .to_owned(),
        Event::InterruptStalled { quiet } => format!(
            "interrupt: no IMAP server has answered for {} s; stopping now (apply resumes)",
            quiet.as_secs()
        ),
        Event::Finished {
            done,
            failed,
            skipped,
            interrupted,
            messages,
            bytes,
        } => {
            let state = if *interrupted {
                "interrupted"
            } else if *failed > 0 {
                "finished with failures"
            } else {
                "finished"
            };
            format!(
                "{state}: {done} step(s) done, {failed} failed, {skipped} skipped; {messages} \
                 message(s), {} copied",
                human_bytes(*bytes)
            )
        }
    })
}

fn json_event(event: &Event<'_>) -> serde_json::Value {
    let mut v = match event {
        Event::Started {
            plan,
            steps,
            dry_run,
            state,
        } => {
            json!({"event": "started", "plan": plan, "steps": steps, "dry_run": dry_run, "state": state})
        }
        Event::Worker { worker, others } => {
            json!({"event": "worker", "worker": worker, "others": others})
        }
        Event::Coordination {
            leases,
            limits,
            steps,
        } => {
            let spent =
                |s: &Spent| json!({"requests": s.requests, "ms": s.spent.as_secs_f64() * 1000.0});
            json!({"event": "coordination", "steps": steps, "leases": spent(leases),
                   "limits": spent(limits)})
        }
        Event::StepStarted { key, why } => {
            json!({"event": "step-started", "step": key, "why": why})
        }
        Event::StepUnchanged { key, why } => {
            json!({"event": "step-unchanged", "step": key, "why": why})
        }
        Event::StepDone { key, summary, ms } => {
            json!({"event": "step-done", "step": key, "summary": summary, "ms": ms})
        }
        Event::StepFailed { key, error } => {
            json!({"event": "step-failed", "step": key, "error": error})
        }
        Event::StepSkipped { key, because } => {
            json!({"event": "step-skipped", "step": key, "because": because})
        }
        Event::StepInterrupted { key } => json!({"event": "step-interrupted", "step": key}),
        Event::Retry {
            key,
            attempt,
            wait,
            error,
        } => json!({"event": "retry", "step": key, "attempt": attempt,
                    "wait_ms": u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "error": error}),
        Event::Folder {
            account,
            source,
            target,
            to_copy,
            already,
            skipped,
            dry_run,
        } => json!({"event": "folder", "account": account, "source": source, "target": target,
                    "to_copy": to_copy, "already": already, "skipped": skipped, "dry_run": dry_run}),
        Event::Copied {
            account,
            messages,
            bytes,
        } => json!({"event": "copied", "account": account, "messages": messages, "bytes": bytes}),
        Event::Estimated { account, folders } => {
            json!({"event": "estimated", "account": account,
                   "messages": folders.iter().map(|(_, n)| n).sum::<u64>()})
        }
        Event::Interrupting => json!({"event": "interrupting"}),
        Event::InterruptStalled { quiet } => {
            json!({"event": "interrupt-stalled", "seconds": quiet.as_secs()})
        }
        Event::Waiting { what, elapsed } => {
            json!({"event": "waiting", "for": what, "seconds": elapsed.as_secs()})
        }
        Event::Finished {
            done,
            failed,
            skipped,
            interrupted,
            messages,
            bytes,
        } => json!({"event": "finished", "done": done, "failed": failed, "skipped": skipped,
                    "interrupted": interrupted, "messages": messages, "bytes": bytes}),
    };
    v["format"] = json!("mailplan.events/v1");
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_well_and_json_is_tagged() {
        let e = Event::Folder {
            account: "a@x",
            source: "Sent Items",
            target: "Sent",
            to_copy: 3,
            already: 2,
            skipped: 1,
            dry_run: true,
        };
        assert_eq!(
            line(&e).as_deref(),
            Some("folder  a@x: Sent Items -> Sent: would copy 3, 2 already there, 1 skipped")
        );
        let j = json_event(&e);
        assert_eq!(j["event"], "folder");
        assert_eq!(j["format"], "mailplan.events/v1");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(999), "999 B");
    }

    #[test]
    fn the_bar_templates_parse() {
        for template in [TOTAL_BAR, ACCOUNT_BAR] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }

    #[test]
    fn rates_and_counts_read_as_people_write_them() {
        assert_eq!(per_second(2408.081), "2,408/s");
        assert_eq!(per_second(1_234_567.4), "1,234,567/s");
        assert_eq!(per_second(3.46), "3.5/s");
        assert_eq!(per_second(f64::NAN), "0/s");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(0), "0");
    }

    #[test]
    fn estimates_give_the_total_first_and_each_folder_corrects_its_own() {
        let printer = Printer::new(Output::Lines);
        let folders = [("INBOX".to_owned(), 100), ("Sent".to_owned(), 40)];
        let change = printer.track(&Event::Estimated {
            account: "a@x",
            folders: &folders,
        });
        assert_eq!(
            change,
            Change::Expected(140, 140),
            "known before anything is sent"
        );
        let folder = |source, to_copy| Event::Folder {
            account: "a@x",
            source,
            target: source,
            to_copy,
            already: 0,
            skipped: 0,
            dry_run: false,
        };
        // INBOX was compared whole: only 30 of its 100 are missing on the target.
        assert_eq!(
            printer.track(&folder("INBOX", 30)),
            Change::Expected(70, -70)
        );
        assert_eq!(printer.track(&folder("Sent", 40)), Change::Expected(70, 0));
        let copied = printer.track(&Event::Copied {
            account: "a@x",
            messages: 50,
            bytes: 5_000,
        });
        assert_eq!(copied, Change::Bytes(5_000));
        // Interrupted after 50: the total drops what was not sent.
        let ended = printer.track(&Event::StepInterrupted {
            key: "copy-mail a@x",
        });
        assert_eq!(ended, Change::Ended(-20));
        // A retried copy surveys again: what was sent, plus the new estimates.
        let printer = Printer::new(Output::Lines);
        let first = [("INBOX".to_owned(), 100)];
        printer.track(&Event::Estimated {
            account: "a@x",
            folders: &first,
        });
        printer.track(&folder("INBOX", 100));
        printer.track(&Event::Copied {
            account: "a@x",
            messages: 40,
            bytes: 400,
        });
        let again = [("INBOX".to_owned(), 100)];
        let change = printer.track(&Event::Estimated {
            account: "a@x",
            folders: &again,
        });
        assert_eq!(change, Change::Expected(140, 40));
        assert_eq!(
            printer.track(&folder("INBOX", 60)),
            Change::Expected(100, -40)
        );
        // Bookkeeping is not printed.
        assert_eq!(line(&folder("Drafts", 0)), None);
        assert_eq!(
            line(&Event::Estimated {
                account: "a@x",
                folders: &folders
            }),
            None
        );
    }

    #[test]
    fn off_a_terminal_a_progress_line_says_where_a_copy_stands() {
        let start = Instant::now();
        let mut p = Progress::new(start);
        p.expected = 5_000;
        p.copied = 1_200;
        p.bytes = 12_300_000;
        let line = p.line("a@x", start + Duration::from_secs(2));
        assert_eq!(
            line,
            "copying a@x: 1,200 of 5,000 message(s), 12.3 MB, 600/s"
        );
    }
}
