//! How long a command may take: a generous limit per command, and the wrapper that turns a
//! server that stops answering into a retryable error instead of a wait for ever.

use std::time::Duration;

use super::error::ImapError;

/// Generous per-command limit: two minutes plus one second per 100 kB.
pub(super) fn op_timeout(bytes: usize) -> Duration {
    Duration::from_secs(120 + (bytes / 100_000) as u64)
}

/// Run `fut`, at most `limit`: a server that stops answering ends in a retryable error.
pub(super) async fn bounded<T>(
    server: &str,
    activity: &str,
    limit: Duration,
    fut: impl Future<Output = Result<T, ImapError>>,
) -> Result<T, ImapError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| ImapError::timeout(server, activity, limit))?
}
