//! Waiting for OVH's asynchronous tasks, with the right rule for each API.
//!
//! Entry points: [`wait`] for one task named by a [`TaskRef`], and [`wait_legacy_account_idle`]
//! for "no task left on this legacy account" (the control panel's rule).
//!
//! The rules, as OVH's task resources behave:
//! - legacy MX Plan (`/email/domain/{d}/task/account/{id}`, `TaskPop` and relatives) has no
//!   status: a task is there while pending and **vanishes when done**, so 404 means done;
//! - Exchange (`/email/exchange/{o}/service/{s}/task/{id}`) and new MX Plan
//!   (`/email/mxplan/{s}/task/{id}`) tasks have a `status`: `done` ends the wait, `error` and
//!   `cancelled` are a [`OvhErrorKind::TaskFailed`] naming the task's function, `todo`/`doing`
//!   wait on. A 404 there is success only when the service's task list (its pending tasks)
//!   does not name the task either: OVH drops finished tasks. Otherwise, after a few in a row,
//!   it is [`OvhErrorKind::TaskLost`].
//!
//! Polling starts at [`PollOptions::initial_interval`] and backs off to
//! [`PollOptions::max_interval`]; the whole wait is bounded by [`PollOptions::timeout`]. The
//! cancellation token ends the wait between polls, at once (never in the middle of a request),
//! with [`OvhErrorKind::Cancelled`].

use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::client::{Client, segment};
use super::error::{OvhError, OvhErrorKind};

/// The task lists of the legacy API, each its own path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyTaskList {
    /// `task/account` (`TaskPop`: account creation, password, migration…).
    Account,
    /// `task/redirection` (`TaskSpecialAccount`, string ids).
    Redirection,
    /// `task/responder` (`TaskSpecialAccount`).
    Responder,
    /// `task/filter` (`TaskFilter`).
    Filter,
    /// `task/mailinglist` (`TaskMl`).
    MailingList,
}

impl LegacyTaskList {
    fn path(self) -> &'static str {
        match self {
            LegacyTaskList::Account => "account",
            LegacyTaskList::Redirection => "redirection",
            LegacyTaskList::Responder => "responder",
            LegacyTaskList::Filter => "filter",
            LegacyTaskList::MailingList => "mailinglist",
        }
    }
}

/// One task to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskRef {
    /// `/email/domain/{domain}/task/{list}/{id}`: vanishes when done.
    Legacy {
        domain: String,
        list: LegacyTaskList,
        /// Numeric for most lists, a string for redirections.
        id: String,
    },
    /// `/email/exchange/{organization}/service/{service}/task/{id}`.
    Exchange {
        organization: String,
        service: String,
        id: u64,
    },
    /// `/email/mxplan/{service}/task/{id}`.
    Mxplan { service: String, id: u64 },
}

impl TaskRef {
    /// The task's path.
    pub fn path(&self) -> String {
        match self {
            TaskRef::Legacy { domain, list, id } => format!(
                "/email/domain/{}/task/{}/{}",
                segment(domain),
                list.path(),
                segment(id)
            ),
            TaskRef::Exchange {
                organization,
                service,
                id,
            } => format!(
                "/email/exchange/{}/service/{}/task/{id}",
                segment(organization),
                segment(service)
            ),
            TaskRef::Mxplan { service, id } => {
                format!("/email/mxplan/{}/task/{id}", segment(service))
            }
        }
    }
}

/// `email.exchange.Task` and `email.pro.Task` (same shape).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: u64,
    /// `setAccount`, `changePassword`, `addDomain`…
    pub function: String,
    pub status: TaskStatus,
    #[serde(default)]
    pub todo_date: Option<String>,
    #[serde(default)]
    pub finish_date: Option<String>,
    /// Not in the schema; kept if a server sends it, to explain a failure.
    #[serde(default)]
    pub comment: Option<String>,
}

/// `TaskStatusEnum` of Exchange and Email Pro / new MX Plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TaskStatus {
    Todo,
    Doing,
    Done,
    Error,
    Cancelled,
    /// Any value this version does not know (the newer legacy enum has `init`, `customerError`,
    /// `ovhError`): waited on.
    #[serde(other)]
    Unknown,
}

/// How to poll.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollOptions {
    pub initial_interval: Duration,
    /// Each pause is the previous one times this, up to `max_interval`.
    pub factor: f64,
    pub max_interval: Duration,
    /// The whole wait, after which [`OvhErrorKind::TaskTimeout`].
    pub timeout: Duration,
    /// 404s in a row on a task with a status before it is declared lost.
    pub lost_after: u32,
}

impl Default for PollOptions {
    fn default() -> Self {
        PollOptions {
            initial_interval: Duration::from_secs(2),
            factor: 1.5,
            max_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(30 * 60),
            lost_after: 3,
        }
    }
}

impl PollOptions {
    /// The pause after poll number `n` (0-based).
    pub fn interval(&self, n: u32) -> Duration {
        let factor = self
            .factor
            .max(1.0)
            .powi(i32::try_from(n.min(64)).unwrap_or(64));
        let secs = self.initial_interval.as_secs_f64() * factor;
        if secs >= self.max_interval.as_secs_f64() {
            self.max_interval
        } else {
            Duration::from_secs_f64(secs)
        }
    }
}

/// What one poll says.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Still running: poll again.
    Pending,
    /// Finished well; the task when the API has a status.
    Done(Option<Task>),
}

/// The legacy rule: present = pending, 404 = done, any other error is the caller's.
pub fn judge_legacy(answer: Result<serde_json::Value, OvhError>) -> Result<Verdict, OvhError> {
    match answer {
        Ok(_) => Ok(Verdict::Pending),
        Err(e) if e.kind == OvhErrorKind::NotFound => Ok(Verdict::Done(None)),
        Err(e) => Err(e),
    }
}

/// The status rule: `done` ends, `error`/`cancelled` fail with the task's function.
pub fn judge_status(task: Task, activity: &str, call: &str) -> Result<Verdict, OvhError> {
    match task.status {
        TaskStatus::Done => Ok(Verdict::Done(Some(task))),
        TaskStatus::Todo | TaskStatus::Doing | TaskStatus::Unknown => Ok(Verdict::Pending),
        TaskStatus::Error | TaskStatus::Cancelled => {
            let how = if task.status == TaskStatus::Error {
                "ended in error"
            } else {
                "was cancelled"
            };
            let mut message = format!("task {} ({}) {how}", task.id, task.function);
            if let Some(comment) = task.comment.as_deref().filter(|c| !c.is_empty()) {
                message.push_str(": ");
                message.push_str(comment);
            }
            Err(OvhError::new(
                OvhErrorKind::TaskFailed,
                activity,
                call,
                message,
            ))
        }
    }
}

/// Wait until `task` is done. `Ok(Some(task))` for APIs with a status, `Ok(None)` for legacy
/// tasks (they vanish).
pub async fn wait(
    client: &Client,
    activity: &str,
    task: &TaskRef,
    options: &PollOptions,
    cancel: &CancellationToken,
) -> Result<Option<Task>, OvhError> {
    let path = task.path();
    let call = format!("GET {path}");
    let legacy = matches!(task, TaskRef::Legacy { .. });
    // Atomic rather than a Cell so the waiting future stays Send (the runner spawns it).
    let missing = std::sync::atomic::AtomicU32::new(0);
    let (path, call_name, missing) = (&path, &call, &missing);
    poll(activity, &call, options, cancel, move || async move {
        if legacy {
            return judge_legacy(client.get(activity, path, &[]).await);
        }
        match client.get::<Task>(activity, path, &[]).await {
            Ok(found) => {
                missing.store(0, std::sync::atomic::Ordering::Relaxed);
                judge_status(found, activity, call_name)
            }
            Err(e) if e.kind == OvhErrorKind::NotFound => {
                // OVH drops finished tasks: one gone from the service's list of tasks (which
                // holds the pending ones) ran and ended, and is done. Only a task that cannot
                // be read while the list still names it, or whose list cannot be read, is lost.
                let pending_list = path.rsplit_once('/').map_or(path.as_str(), |(l, _)| l);
                if let (Some(id), Ok(pending)) = (
                    path.rsplit_once('/')
                        .and_then(|(_, id)| id.parse::<u64>().ok()),
                    client.get::<Vec<u64>>(activity, pending_list, &[]).await,
                ) && !pending.contains(&id)
                {
                    return Ok(Verdict::Done(None));
                }
                let seen = missing.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if seen >= options.lost_after {
                    let mut lost = e;
                    lost.kind = OvhErrorKind::TaskLost;
                    lost.message = format!(
                        "the task disappeared before it was seen done ({})",
                        lost.message
                    )
                    .into();
                    Err(lost)
                } else {
                    Ok(Verdict::Pending)
                }
            }
            Err(e) => Err(e),
        }
    })
    .await
    .map(|verdict| match verdict {
        Verdict::Done(task) => task,
        Verdict::Pending => None,
    })
}

/// Wait until the legacy account has no task left (`task/account?name=` is empty).
pub async fn wait_legacy_account_idle(
    client: &Client,
    activity: &str,
    domain: &str,
    account: &str,
    options: &PollOptions,
    cancel: &CancellationToken,
) -> Result<(), OvhError> {
    let path = format!("/email/domain/{}/task/account", segment(domain));
    let call = format!("GET {path}");
    let path = &path;
    poll(activity, &call, options, cancel, move || async move {
        let ids: Vec<u64> = client.get(activity, path, &[("name", account)]).await?;
        Ok(if ids.is_empty() {
            Verdict::Done(None)
        } else {
            Verdict::Pending
        })
    })
    .await
    .map(|_| ())
}

/// Poll `check` until it says done, fails, the timeout passes or `cancel` is set.
async fn poll<F, Fut>(
    activity: &str,
    call: &str,
    options: &PollOptions,
    cancel: &CancellationToken,
    mut check: F,
) -> Result<Verdict, OvhError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Verdict, OvhError>>,
{
    let started = tokio::time::Instant::now();
    let deadline = started + options.timeout;
    let cancelled = || {
        OvhError::new(
            OvhErrorKind::Cancelled,
            activity,
            call,
            "interrupted while waiting for the task; it goes on at OVH",
        )
    };
    for n in 0u32.. {
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        if let Verdict::Done(task) = check().await? {
            return Ok(Verdict::Done(task));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(OvhError::new(
                OvhErrorKind::TaskTimeout,
                activity,
                call,
                format!(
                    "the task was not done after {} s",
                    now.duration_since(started).as_secs()
                ),
            ));
        }
        let wake = (now + options.interval(n)).min(deadline);
        tokio::select! {
            () = cancel.cancelled() => return Err(cancelled()),
            () = tokio::time::sleep_until(wake) => {}
        }
    }
    unreachable!("the poll loop only ends by returning")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(status: TaskStatus) -> Task {
        Task {
            id: 42,
            function: "setAccount".into(),
            status,
            todo_date: None,
            finish_date: None,
            comment: None,
        }
    }

    #[test]
    fn status_rule() {
        for s in [TaskStatus::Todo, TaskStatus::Doing, TaskStatus::Unknown] {
            assert_eq!(judge_status(task(s), "a", "c"), Ok(Verdict::Pending));
        }
        assert_eq!(
            judge_status(task(TaskStatus::Done), "a", "c"),
            Ok(Verdict::Done(Some(task(TaskStatus::Done))))
        );
        let e = judge_status(task(TaskStatus::Error), "renaming a@b", "GET /t").expect_err("x");
        assert_eq!(e.kind, OvhErrorKind::TaskFailed);
        assert_eq!(
            e.to_string(),
            "OVH API while renaming a@b: GET /t: task 42 (setAccount) ended in error"
        );
        let mut cancelled = task(TaskStatus::Cancelled);
        cancelled.comment = Some("quota exceeded".into());
        let e = judge_status(cancelled, "a", "c").expect_err("x");
        assert_eq!(
            &*e.message,
            "task 42 (setAccount) was cancelled: quota exceeded"
        );
    }

    #[test]
    fn tasks_decode_from_the_schema_shape_and_unknown_statuses_wait() {
        let t: Task = serde_json::from_str(
            r#"{"id":7,"function":"changePassword","status":"doing","todoDate":"2024-06-01T10:00:00+02:00","finishDate":null}"#,
        )
        .expect("decodes");
        assert_eq!(t.status, TaskStatus::Doing);
        let t: Task = serde_json::from_str(
            r#"{"id":7,"function":"x","status":"customerError","todoDate":"d"}"#,
        )
        .expect("decodes");
        assert_eq!(t.status, TaskStatus::Unknown);
    }

    #[test]
    fn legacy_rule_404_is_done() {
        assert_eq!(
            judge_legacy(Ok(serde_json::json!({"id": 1}))),
            Ok(Verdict::Pending)
        );
        let gone = OvhError::from_response("a", "GET /t", 404, None, None, b"{}");
        assert_eq!(judge_legacy(Err(gone)), Ok(Verdict::Done(None)));
        let other = OvhError::from_response("a", "GET /t", 403, None, None, b"{}");
        assert!(judge_legacy(Err(other)).is_err());
    }

    #[test]
    fn intervals_back_off_to_the_maximum() {
        let o = PollOptions {
            initial_interval: Duration::from_secs(2),
            factor: 2.0,
            max_interval: Duration::from_secs(10),
            ..PollOptions::default()
        };
        assert_eq!(o.interval(0), Duration::from_secs(2));
        assert_eq!(o.interval(1), Duration::from_secs(4));
        assert_eq!(o.interval(2), Duration::from_secs(8));
        assert_eq!(o.interval(3), Duration::from_secs(10));
        assert_eq!(o.interval(1000), Duration::from_secs(10));
    }

    #[test]
    fn paths() {
        assert_eq!(
            TaskRef::Legacy {
                domain: "acme.fr".into(),
                list: LegacyTaskList::Account,
                id: "12".into()
            }
            .path(),
            "/email/domain/acme.fr/task/account/12"
        );
        assert_eq!(
            TaskRef::Exchange {
                organization: "hosted-ab1".into(),
                service: "hosted-ab1".into(),
                id: 5
            }
            .path(),
            "/email/exchange/hosted-ab1/service/hosted-ab1/task/5"
        );
        assert_eq!(
            TaskRef::Mxplan {
                service: "mxplan-x".into(),
                id: 9
            }
            .path(),
            "/email/mxplan/mxplan-x/task/9"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn poll_times_out_and_honours_cancellation() {
        let options = PollOptions {
            initial_interval: Duration::from_secs(1),
            factor: 1.0,
            max_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            lost_after: 3,
        };
        let cancel = CancellationToken::new();
        let mut polls = 0;
        let e = poll("waiting", "GET /t", &options, &cancel, || {
            polls += 1;
            async { Ok(Verdict::Pending) }
        })
        .await
        .expect_err("times out");
        assert_eq!(e.kind, OvhErrorKind::TaskTimeout);
        assert_eq!(polls, 6, "at 0, 1, 2, 3, 4 and 5 s");

        let cancel = CancellationToken::new();
        let mut polls = 0;
        let e = poll("waiting", "GET /t", &options, &cancel, || {
            polls += 1;
            if polls == 2 {
                cancel.cancel();
            }
            async { Ok(Verdict::Pending) }
        })
        .await
        .expect_err("cancelled");
        assert_eq!(e.kind, OvhErrorKind::Cancelled);
        assert_eq!(polls, 2);

        let cancel = CancellationToken::new();
        let mut polls = 0;
        let done = poll("waiting", "GET /t", &options, &cancel, || {
            polls += 1;
            let verdict = if polls == 3 {
                Verdict::Done(None)
            } else {
                Verdict::Pending
            };
            async { Ok(verdict) }
        })
        .await;
        assert_eq!(done, Ok(Verdict::Done(None)));
    }
}
