//! Connection slots: each IMAP server takes at most its cap of connections at once
//! ([`server_caps`]: the plan's `max-connections`, the command line's, or
//! [`DEFAULT_PER_SERVER`]). A copy takes a source and a target slot without deadlock
//! ([`slot_pair`]); extra pairs only take free slots ([`try_slot`]).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::exec::step::{Shared, StepError};
use crate::plan::model::{ImapServer, Plan};
use crate::providers::imap::connect::server_name;

/// A connection slot on a server, held for the step's duration.
pub(crate) async fn slot(
    shared: &Shared,
    server: &ImapServer,
) -> Result<OwnedSemaphorePermit, StepError> {
    server_semaphore(shared, server)?
        .acquire_owned()
        .await
        .map_err(|e| StepError::Other(e.to_string()))
}

pub(crate) fn server_semaphore(
    shared: &Shared,
    server: &ImapServer,
) -> Result<Arc<Semaphore>, StepError> {
    let mut map = shared
        .servers
        .lock()
        .map_err(|e| StepError::Other(e.to_string()))?;
    let name = server_name(server);
    let cap = shared.caps.get(&name).copied().unwrap_or(shared.per_server);
    Ok(Arc::clone(
        map.entry(name)
            .or_insert_with(|| Arc::new(Semaphore::new(cap))),
    ))
}

/// Connections per server when neither the plan nor the command line gives a cap.
pub const DEFAULT_PER_SERVER: usize = 8;

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

/// A source and a target slot, without deadlock: both at once when it is the same server, else
/// in the servers' name order (so two steps never each hold what the other waits for).
pub(crate) async fn slot_pair(
    shared: &Shared,
    source: &ImapServer,
    target: &ImapServer,
) -> Result<Vec<OwnedSemaphorePermit>, StepError> {
    let fail = |e: tokio::sync::AcquireError| StepError::Other(e.to_string());
    let (s_name, t_name) = (server_name(source), server_name(target));
    if s_name == t_name {
        let both = server_semaphore(shared, source)?
            .acquire_many_owned(2)
            .await
            .map_err(fail)?;
        return Ok(vec![both]);
    }
    let (first, second) = if s_name < t_name {
        (source, target)
    } else {
        (target, source)
    };
    let a = slot(shared, first).await?;
    let b = slot(shared, second).await?;
    Ok(vec![a, b])
}

pub(crate) fn try_slot(shared: &Shared, server: &ImapServer) -> Option<OwnedSemaphorePermit> {
    server_semaphore(shared, server)
        .ok()?
        .try_acquire_owned()
        .ok()
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
