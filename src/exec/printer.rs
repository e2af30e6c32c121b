//! The one printer of a run: what `apply` shows while it works.
//!
//! - [`Output::Bars`] on a terminal: an indicatif bar per active account (messages, bytes, rate,
//!   ETA) and a total line;
//! - [`Output::Lines`] off a terminal (CI): one plain line per event on stderr;
//! - [`Output::Json`]: one JSON object per event on stdout (`mailplan.events/v1`).
//!
//! Workers call it from any task; it serialises its own output.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Bars,
    Lines,
    Json,
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
    Interrupting,
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

#[derive(Debug)]
struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    accounts: HashMap<String, ProgressBar>,
    bytes: HashMap<String, u64>,
}

/// The printer. Construct once per run.
#[derive(Debug)]
pub struct Printer {
    output: Output,
    bars: Mutex<Option<Bars>>,
}

impl Printer {
    pub fn new(output: Output) -> Printer {
        let bars = (output == Output::Bars).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            let total = multi.add(ProgressBar::new(0));
            total.set_style(
                ProgressStyle::with_template(
                    "{prefix:>24.bold} {pos}/{len} messages [{elapsed_precise}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            total.set_prefix("total");
            Bars {
                multi,
                total,
                accounts: HashMap::new(),
                bytes: HashMap::new(),
            }
        });
        Printer {
            output,
            bars: Mutex::new(bars),
        }
    }

    /// Report an event.
    pub fn event(&self, event: &Event<'_>) {
        match self.output {
            Output::Json => {
                let mut out = io::stdout().lock();
                let _ = writeln!(out, "{}", json_event(event));
                let _ = out.flush();
            }
            Output::Lines => {
                if let Some(line) = line(event) {
                    let _ = writeln!(io::stderr().lock(), "{line}");
                }
            }
            Output::Bars => self.bar_event(event),
        }
    }

    fn bar_event(&self, event: &Event<'_>) {
        let Ok(mut guard) = self.bars.lock() else {
            return;
        };
        let Some(bars) = guard.as_mut() else { return };
        match event {
            Event::Folder {
                account, to_copy, ..
            } if *to_copy > 0 => {
                let bar = bars
                    .accounts
                    .entry((*account).to_owned())
                    .or_insert_with(|| {
                        let bar = bars.multi.add(ProgressBar::new(0));
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{prefix:>24.bold} [{bar:30}] {pos}/{len} msgs, {msg}, {per_sec}, \
                             eta {eta}",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                        );
                        bar.set_prefix(short(account));
                        bar
                    });
                bar.inc_length(*to_copy);
                bars.total.inc_length(*to_copy);
            }
            Event::Copied {
                account,
                messages,
                bytes,
            } => {
                if let Some(bar) = bars.accounts.get(*account) {
                    let total = bars.bytes.entry((*account).to_owned()).or_default();
                    *total += *bytes;
                    bar.inc(*messages);
                    bar.set_message(human_bytes(*total));
                }
                bars.total.inc(*messages);
            }
            Event::StepDone { key, .. }
            | Event::StepFailed { key, .. }
            | Event::StepInterrupted { key } => {
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
                    eprintln_safe(&line);
                }
            }
            other => {
                if let Some(line) = line(other) {
                    bars.multi.suspend(|| eprintln_safe(&line));
                }
            }
        }
    }
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
        Event::Copied { .. } => return None,
        Event::Waiting { what, elapsed } => format!(
            "waiting for {what} ({} s so far; Ctrl-C stops)",
            elapsed.as_secs()
        ),
        Event::Interrupting => "interrupt: finishing the current batches, then stopping (press \
                                Ctrl-C again to stop at once; apply resumes either way)"
            .to_owned(),
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
        Event::Interrupting => json!({"event": "interrupting"}),
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
}
