//! Connection slots ([`Slots`]): each IMAP server takes at most its cap of connections at once
//! ([`server_caps`]: the plan's `max-connections`, the command line's, or
//! [`DEFAULT_PER_SERVER`]). A copy takes a source and a target slot without deadlock
//! ([`Slots::pair`]); extra pairs only take free slots ([`Slots::try_slot`]).
//! On a shared (`PostgreSQL`) state the cap holds for all workers together: a slot is also
//! taken in the database ([`Slots::shared_with`]), waited for by polling, in the same order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::exec::worker::{SharedSlots, Worker};
use crate::plan::model::{ImapServer, Plan};
use crate::providers::imap::connect::server_name;

/// Connections per server when neither the plan nor the command line gives a cap.
pub(crate) const DEFAULT_PER_SERVER: usize = 8;

/// Each IMAP server's connection cap, by [`server_name`]: the smallest of the `max-connections`
/// the plan's platforms give it and the command line's `--max-connections-per-server` (the
/// operator's limit for this run), or [`DEFAULT_PER_SERVER`] when neither says. Never under 2:
/// a copy holds a connection on each side at once, and both may be on one server.
pub(crate) fn server_caps(plan: &Plan, flag: Option<usize>) -> HashMap<String, usize> {
    let mut declared: HashMap<String, Option<usize>> = HashMap::new();
    for server in plan.platforms.values().filter_map(|p| p.imap.as_ref()) {
        let own = server.max_connections.map(usize::from);
        declared
            .entry(server_name(server))
            .and_modify(|d| *d = [*d, own].into_iter().flatten().min())
            .or_insert(own);
    }
    declared
        .into_iter()
        .map(|(name, own)| {
            let cap = [own, flag].into_iter().flatten().min();
            (name, cap.unwrap_or(DEFAULT_PER_SERVER).max(2))
        })
        .collect()
}

/// The connection slots of every IMAP server of a run.
#[derive(Debug)]
pub(crate) struct Slots {
    servers: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Each server's connection cap, by [`server_name`] ([`server_caps`]).
    caps: HashMap<String, usize>,
    /// The cap of a server the plan does not name (none: every server is some platform's).
    per_server: usize,
    /// A worker of a shared run: the caps count every worker's connections.
    shared: Option<Arc<Worker>>,
}

/// A held connection slot (or two on one server); given back on drop.
#[derive(Debug)]
pub(crate) struct Permit {
    _local: OwnedSemaphorePermit,
    _shared: Option<SharedSlots>,
}

/// How often a worker asks again for a slot all workers' connections fill.
const SHARED_POLL: Duration = Duration::from_millis(100);

/// A slot could not be had: the run is shutting its slots down (never while steps run).
#[derive(Debug, thiserror::Error)]
#[error("no connection slot: {0}")]
pub(crate) struct SlotError(String);

impl Slots {
    /// The slots of `plan`'s servers, `flag` being `--max-connections-per-server`.
    pub(crate) fn new(plan: &Plan, flag: Option<usize>) -> Self {
        Slots {
            servers: Mutex::new(HashMap::new()),
            caps: server_caps(plan, flag),
            per_server: flag.unwrap_or(DEFAULT_PER_SERVER).max(2),
            shared: None,
        }
    }

    /// The caps hold for every worker of `worker`'s shared run together.
    pub(crate) fn shared_with(mut self, worker: Arc<Worker>) -> Self {
        self.shared = Some(worker);
        self
    }

    fn cap(&self, name: &str) -> usize {
        self.caps.get(name).copied().unwrap_or(self.per_server)
    }

    /// `n` slots on `name` in the shared state, waiting until they are free; none to take
    /// outside a shared run.
    async fn shared(&self, name: &str, n: usize) -> Result<Option<SharedSlots>, SlotError> {
        let Some(worker) = &self.shared else {
            return Ok(None);
        };
        loop {
            match worker.take_slots(name, n, self.cap(name)) {
                Ok(Some(slots)) => return Ok(Some(slots)),
                Ok(None) => tokio::time::sleep(SHARED_POLL).await,
                Err(e) => return Err(SlotError(e.to_string())),
            }
        }
    }

    /// A connection slot on a server, held for the step's duration.
    pub(crate) async fn slot(&self, server: &ImapServer) -> Result<Permit, SlotError> {
        let local = self
            .semaphore(server)?
            .acquire_owned()
            .await
            .map_err(|e| SlotError(e.to_string()))?;
        Ok(Permit {
            _local: local,
            _shared: self.shared(&server_name(server), 1).await?,
        })
    }

    fn semaphore(&self, server: &ImapServer) -> Result<Arc<Semaphore>, SlotError> {
        let mut map = self.servers.lock().map_err(|e| SlotError(e.to_string()))?;
        let name = server_name(server);
        let cap = self.cap(&name);
        Ok(Arc::clone(
            map.entry(name)
                .or_insert_with(|| Arc::new(Semaphore::new(cap))),
        ))
    }

    /// A source and a target slot, without deadlock: both at once when it is the same server,
    /// else in the servers' name order (so two steps never each hold what the other waits for).
    pub(crate) async fn pair(
        &self,
        source: &ImapServer,
        target: &ImapServer,
    ) -> Result<Vec<Permit>, SlotError> {
        let fail = |e: tokio::sync::AcquireError| SlotError(e.to_string());
        let (s_name, t_name) = (server_name(source), server_name(target));
        if s_name == t_name {
            let both = self
                .semaphore(source)?
                .acquire_many_owned(2)
                .await
                .map_err(fail)?;
            return Ok(vec![Permit {
                _local: both,
                _shared: self.shared(&s_name, 2).await?,
            }]);
        }
        let (first, second) = if s_name < t_name {
            (source, target)
        } else {
            (target, source)
        };
        let a = self.slot(first).await?;
        let b = self.slot(second).await?;
        Ok(vec![a, b])
    }

    /// A slot when one is free now, without waiting.
    pub(crate) fn try_slot(&self, server: &ImapServer) -> Option<Permit> {
        let local = self.semaphore(server).ok()?.try_acquire_owned().ok()?;
        let shared = match &self.shared {
            Some(worker) => {
                let name = server_name(server);
                Some(worker.take_slots(&name, 1, self.cap(&name)).ok()??)
            }
            None => None,
        };
        Some(Permit {
            _local: local,
            _shared: shared,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_gets_the_smallest_of_its_platforms_caps_and_the_flag() {
        let text = "version: 1
platforms:
  a: { type: imap, imap: { host: one.example, max-connections: 6 } }
  b: { type: imap, imap: { host: one.example, max-connections: 3 } }
  c: { type: imap, imap: { host: two.example } }
  d: { type: imap, imap: { host: three.example, max-connections: 20 } }
";
        let source = crate::plan::source::SourceFile::new("p.yaml", text);
        let (plan, diags) = crate::plan::load(&source, std::path::Path::new("p.yaml"));
        let plan = plan.unwrap_or_else(|| panic!("{diags:?}"));
        let caps = server_caps(&plan, None);
        assert_eq!(caps["one.example:993"], 3, "the smaller of a and b");
        assert_eq!(caps["two.example:993"], DEFAULT_PER_SERVER);
        assert_eq!(
            caps["three.example:993"], 20,
            "the plan may raise the default"
        );
        let caps = server_caps(&plan, Some(4));
        assert_eq!(caps["one.example:993"], 3);
        assert_eq!(caps["two.example:993"], 4);
        assert_eq!(caps["three.example:993"], 4, "the flag lowers every cap");
    }
}
