//! Fault injection: a [`Fault`] makes the next matching calls answer an error (request faults)
//! or changes the tasks they make (task faults); the server applies them as calls come in.

use crate::http::Reply;

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// 429 `{"message": "Too many requests"}` with `Retry-After: N`.
    TooManyRequests {
        /// The `Retry-After` value, in seconds.
        retry_after_secs: u64,
    },
    /// 409 "… already being processed …".
    AlreadyProcessing,
    /// 500 `{"class": "Server::InternalServerError", …}`.
    ServerError,
    /// 404 `{"class": "Client::NotFound", …}` naming the path's last segment but one: the object
    /// went away between a listing and this call (another admin, another step).
    Gone,
    /// The tasks the matching calls make take this long in each state.
    SlowTasks {
        /// Milliseconds in `todo`.
        todo_ms: u64,
        /// Milliseconds in `doing`.
        doing_ms: u64,
    },
    /// The tasks the matching calls make end in `error` (their effects not applied).
    FailingTasks,
}

impl FaultKind {
    pub(crate) fn is_request_fault(&self) -> bool {
        matches!(
            self,
            FaultKind::TooManyRequests { .. }
                | FaultKind::AlreadyProcessing
                | FaultKind::ServerError
                | FaultKind::Gone
        )
    }

    pub(crate) fn reply(&self, path: &str) -> Reply {
        match self {
            FaultKind::TooManyRequests { retry_after_secs } => {
                let mut reply =
                    Reply::json(429, serde_json::json!({"message": "Too many requests"}));
                reply.retry_after = Some(*retry_after_secs);
                reply
            }
            FaultKind::AlreadyProcessing => {
                let subject = path.rsplit('/').next().unwrap_or(path);
                Reply::busy(subject)
            }
            FaultKind::Gone => {
                let mut segments = path.trim_end_matches('/').rsplit('/');
                let last = segments.next().unwrap_or(path);
                let object = segments
                    .next()
                    .filter(|_| last.chars().all(char::is_alphabetic));
                Reply::not_found(&format!(
                    "The requested object ({}) does not exist",
                    object.unwrap_or(last)
                ))
            }
            _ => Reply::error(500, "Server::InternalServerError", "Internal server error"),
        }
    }
}

/// A fault to inject: the next `times` authenticated calls whose method and path match answer
/// with it (request faults), or have their tasks changed by it (task faults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// Only calls with this method; `None`: any.
    pub method: Option<String>,
    /// Only calls whose path (after `/1.0`, without query) starts with this.
    pub path_prefix: String,
    /// How many calls it applies to.
    pub times: u32,
}

impl Fault {
    fn new(kind: FaultKind) -> Fault {
        Fault {
            kind,
            method: None,
            path_prefix: "/".to_owned(),
            times: 1,
        }
    }

    /// 429 with `Retry-After`.
    pub fn too_many_requests(retry_after_secs: u64) -> Fault {
        Fault::new(FaultKind::TooManyRequests { retry_after_secs })
    }

    /// 409 "already being processed".
    pub fn already_processing() -> Fault {
        Fault::new(FaultKind::AlreadyProcessing)
    }

    /// 500.
    pub fn server_error() -> Fault {
        Fault::new(FaultKind::ServerError)
    }

    /// 404 Not Found, as for an object that went away meanwhile.
    pub fn gone() -> Fault {
        Fault::new(FaultKind::Gone)
    }

    /// Tasks made by the matching calls take `todo_ms` then `doing_ms`.
    pub fn slow_tasks(todo_ms: u64, doing_ms: u64) -> Fault {
        Fault::new(FaultKind::SlowTasks { todo_ms, doing_ms })
    }

    /// Tasks made by the matching calls end in `error`.
    pub fn failing_tasks() -> Fault {
        Fault::new(FaultKind::FailingTasks)
    }

    /// Restricts the fault to `method` (any case) and paths starting with `path_prefix`.
    #[must_use]
    pub fn on(mut self, method: &str, path_prefix: &str) -> Fault {
        self.method = Some(method.to_ascii_uppercase());
        path_prefix.clone_into(&mut self.path_prefix);
        self
    }

    /// Restricts the fault to paths starting with `path_prefix`, any method.
    #[must_use]
    pub fn on_path(mut self, path_prefix: &str) -> Fault {
        path_prefix.clone_into(&mut self.path_prefix);
        self
    }

    /// Applies to the next `times` matching calls (1 by default).
    #[must_use]
    pub fn times(mut self, times: u32) -> Fault {
        self.times = times;
        self
    }

    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        self.times > 0
            && self.method.as_deref().is_none_or(|m| m == method)
            && path.starts_with(&self.path_prefix)
    }
}
