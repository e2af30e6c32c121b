//! New connections for an account's copy, in the middle of it: after an answer the IMAP library
//! could not parse (the connection cannot be read past it), or after a target that closed the
//! connection on refusing a message. [`Relogin::pair`] replaces both sessions of a connection
//! pair: the other side may have been left in the middle of a command (a `UID FETCH` whose
//! messages nobody reads any more), and a session is only ever reused at a command boundary.
//!
//! [`CloseStreak`] bounds how often a target may close the connection on a refused message
//! before the account fails: a server that closes on every APPEND still ends.

use super::connect::{Session, connect};
use super::error::{ImapError, ImapErrorKind};
use crate::plan::model::ImapServer;
use crate::plan::secret::Secret;

/// How to log in again on each side of one account.
pub struct Relogin<'a> {
    pub source: &'a ImapServer,
    pub source_login: &'a str,
    pub source_password: &'a Secret,
    pub target: &'a ImapServer,
    pub target_login: &'a str,
    pub target_password: &'a Secret,
}

impl std::fmt::Debug for Relogin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relogin")
            .field("source_login", &self.source_login)
            .field("target_login", &self.target_login)
            .finish_non_exhaustive()
    }
}

impl Relogin<'_> {
    /// A new source session in place of `source`, whose connection cannot be used any more.
    pub async fn source(&self, source: &mut Session) -> Result<(), ImapError> {
        *source = connect(self.source, self.source_login, self.source_password).await?;
        Ok(())
    }

    /// New sessions on both sides, in place of these (both at once); the old ones are dropped
    /// without a LOGOUT (one of them cannot be read any more).
    pub async fn pair(&self, source: &mut Session, target: &mut Session) -> Result<(), ImapError> {
        let (s, t) = tokio::join!(
            connect(self.source, self.source_login, self.source_password),
            connect(self.target, self.target_login, self.target_password)
        );
        *source = s?;
        *target = t?;
        Ok(())
    }
}

/// After this many closes in a row with no message accepted in between, the target is taken to
/// close on every APPEND and the account fails. Each close costs a login on each side, and
/// resolves one message (it is left out from then on): enough for a mailbox with a few
/// oversized messages, few enough that a server refusing everything ends in seconds.
pub const MAX_CLOSES: u32 = 20;

/// Closes of the target's connection after a refused message, in a row: a message accepted in
/// between ends the streak.
#[derive(Debug, Default)]
pub struct CloseStreak(u32);

impl CloseStreak {
    /// The target closed the connection after `refusal` (recorded already); `accepted`: a message
    /// was accepted on that connection before. Err once [`MAX_CLOSES`] came in a row.
    pub fn closed(&mut self, refusal: &ImapError, accepted: bool) -> Result<(), ImapError> {
        self.0 = if accepted { 1 } else { self.0 + 1 };
        if self.0 < MAX_CLOSES {
            return Ok(());
        }
        Err(ImapError::new(
            ImapErrorKind::Refused,
            &refusal.server,
            refusal.activity.clone(),
            format!(
                "the target closed the connection after each of the last {MAX_CLOSES} messages \
                 it refused, with no message accepted in between; the copy of this account \
                 stops (the last: {})",
                refusal.message
            ),
        ))
    }

    /// A message was accepted: the streak ends.
    pub fn accepted(&mut self) {
        self.0 = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_fails_after_max_closes_in_a_row_and_an_accepted_message_resets_the_count() {
        let refusal = ImapError::new(
            ImapErrorKind::Refused,
            "h:143",
            "appending to Work",
            "[TOOBIG] Message too large",
        );
        let mut streak = CloseStreak::default();
        for _ in 0..MAX_CLOSES - 1 {
            assert!(streak.closed(&refusal, false).is_ok());
        }
        streak.accepted();
        for _ in 0..MAX_CLOSES - 1 {
            assert!(streak.closed(&refusal, false).is_ok());
        }
        // Accepted on the connection before it closed: this close starts a new streak.
        assert!(streak.closed(&refusal, true).is_ok());
        for _ in 0..MAX_CLOSES - 2 {
            assert!(streak.closed(&refusal, false).is_ok());
        }
        let e = streak
            .closed(&refusal, false)
            .expect_err("the last close in a row ends the copy");
        assert_eq!(e.kind, ImapErrorKind::Refused);
        assert!(!e.is_retryable());
        assert!(e.message.contains("[TOOBIG] Message too large"), "{e}");
        let n = format!("each of the last {MAX_CLOSES}");
        assert!(e.message.contains(&n), "{e}");
    }
}
