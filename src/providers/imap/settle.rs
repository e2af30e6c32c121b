//! Waiting for a target to settle before a folder left *pending* is reconciled.
//!
//! A run killed (`kill -9`, a crash, a lost machine) in the middle of its APPENDs leaves bytes
//! on their way to the target: in its sockets' buffers, in the network, in a proxy. The server
//! still commits every command that arrives whole, seconds later — after a resume started at
//! once has read the target's identities, found those messages missing and sent them again. So
//! before the folders whose batch was left pending are compared, [`settle`] reads their
//! `STATUS (MESSAGES UIDNEXT)` on the target, all in one pipelined round trip, again and again
//! until none has moved for a quiet period: the dead connections' last commands have landed (an
//! unfinished `APPEND` or `MULTIAPPEND` adds nothing). Whoever held the lock before, however
//! that run ended, the same wait applies; a folder not pending is never waited for.
//!
//! The quiet period ([`Settling`], pure) is [`QUIET`], or three times the longest pause seen
//! between two moves when that is longer, so a slow link whose groups land seconds apart is
//! waited for. The wait is capped at [`LIMIT`]: a target folder that keeps receiving mail of
//! its own never stops moving; the reconcile then goes ahead as it always did (nothing is lost;
//! a message still in flight may be sent twice).

use std::time::{Duration, Instant};

use super::connect::Session;
use super::error::ImapError;
use super::pipelined;

/// How long the pending folders must stay still.
pub const QUIET: Duration = Duration::from_secs(3);
/// The longest wait, whatever the folders do.
pub const LIMIT: Duration = Duration::from_secs(120);
/// Between two readings.
const POLL: Duration = Duration::from_millis(250);

/// One reading of a folder: its message count and its `UIDNEXT` (either moves when a command
/// lands; `None` when the server did not say).
pub type Reading = (u32, Option<u32>);

/// Whether the folders have settled, from successive readings; no I/O.
#[derive(Debug, Clone)]
pub struct Settling {
    started: Instant,
    last: Vec<Reading>,
    last_move: Instant,
    longest_pause: Duration,
    moves: u32,
}

/// What [`Settling::observe`] concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Read again later.
    Wait,
    /// Nothing moved for the quiet period.
    Settled,
    /// Still moving at [`LIMIT`].
    GaveUp,
}

impl Settling {
    /// The first reading, taken at `now`.
    pub fn new(now: Instant, first: Vec<Reading>) -> Settling {
        Settling {
            started: now,
            last: first,
            last_move: now,
            longest_pause: Duration::ZERO,
            moves: 0,
        }
    }

    /// How long nothing must move: [`QUIET`], or three times the longest pause between two
    /// moves seen so far.
    pub fn quiet(&self) -> Duration {
        QUIET.max(self.longest_pause.saturating_mul(3))
    }

    /// Times a reading differed from the one before.
    pub fn moves(&self) -> u32 {
        self.moves
    }

    /// A later reading, taken at `now`.
    pub fn observe(&mut self, now: Instant, reading: Vec<Reading>) -> Verdict {
        if reading != self.last {
            // The first move's pause counts from the first reading: a group was already on
            // its way then, so the real pause was at least that long.
            self.longest_pause = self.longest_pause.max(now - self.last_move);
            self.last_move = now;
            self.last = reading;
            self.moves += 1;
        }
        if now - self.last_move >= self.quiet() {
            Verdict::Settled
        } else if now - self.started >= LIMIT {
            Verdict::GaveUp
        } else {
            Verdict::Wait
        }
    }
}

/// How a wait ended, for the caller's account of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub waited: Duration,
    /// Times the folders moved while waited for (what the dead run still delivered).
    pub moves: u32,
    pub verdict: Verdict,
}

/// Wait until the target folders `(wire name, logical path)` stop moving (see the module doc).
pub async fn settle(
    target: &mut Session,
    server: &str,
    folders: &[(&str, &str)],
) -> Result<Settled, ImapError> {
    let started = Instant::now();
    let mut settling = Settling::new(started, read(target, server, folders).await?);
    loop {
        tokio::time::sleep(POLL).await;
        let reading = read(target, server, folders).await?;
        let verdict = settling.observe(Instant::now(), reading);
        if verdict != Verdict::Wait {
            return Ok(Settled {
                waited: started.elapsed(),
                moves: settling.moves(),
                verdict,
            });
        }
    }
}

async fn read(
    target: &mut Session,
    server: &str,
    folders: &[(&str, &str)],
) -> Result<Vec<Reading>, ImapError> {
    Ok(pipelined::statuses(target, server, folders)
        .await?
        .into_iter()
        // A folder the server cannot report on reads as nothing: it is compared all the same.
        .map(|s| s.map_or((0, None), |s| (s.messages, s.uid_next)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn still_folders_settle_after_the_quiet_period_and_not_before() {
        let t = Instant::now();
        let mut s = Settling::new(t, vec![(10, Some(11))]);
        assert_eq!(s.observe(at(t, 250), vec![(10, Some(11))]), Verdict::Wait);
        assert_eq!(s.observe(at(t, 2_900), vec![(10, Some(11))]), Verdict::Wait);
        assert_eq!(
            s.observe(at(t, 3_000), vec![(10, Some(11))]),
            Verdict::Settled
        );
        assert_eq!(s.moves(), 0);
    }

    #[test]
    fn a_move_restarts_the_quiet_period_and_long_pauses_lengthen_it() {
        let t = Instant::now();
        let mut s = Settling::new(t, vec![(10, Some(11)), (0, Some(1))]);
        // A group lands 2 s after the first reading: the link delivers one every 2 s or so,
        // so 6 s of stillness are needed now, counted from that move.
        assert_eq!(
            s.observe(at(t, 2_000), vec![(30, Some(31)), (0, Some(1))]),
            Verdict::Wait
        );
        assert_eq!(s.quiet(), Duration::from_secs(6));
        assert_eq!(
            s.observe(at(t, 5_500), vec![(30, Some(31)), (0, Some(1))]),
            Verdict::Wait
        );
        // The UIDNEXT alone moving (a message appended, another expunged) is a move too; its
        // pause of 4 s asks for 12 s of stillness.
        let (one, two) = ((30, Some(31)), (0, Some(2)));
        assert_eq!(s.observe(at(t, 6_000), vec![one, two]), Verdict::Wait);
        assert_eq!(s.quiet(), Duration::from_secs(12));
        assert_eq!(s.observe(at(t, 17_900), vec![one, two]), Verdict::Wait);
        assert_eq!(s.observe(at(t, 18_000), vec![one, two]), Verdict::Settled);
        assert_eq!(s.moves(), 2);
    }

    #[test]
    fn a_folder_that_never_stops_moving_is_given_up_on_at_the_limit() {
        let t = Instant::now();
        let mut s = Settling::new(t, vec![(0, Some(1))]);
        let mut n = 0;
        let mut verdict = Verdict::Wait;
        let mut ms = 0;
        while verdict == Verdict::Wait {
            ms += 500;
            n += 1;
            verdict = s.observe(at(t, ms), vec![(n, Some(n + 1))]);
            assert!(ms <= 121_000, "no verdict at {ms} ms");
        }
        assert_eq!(verdict, Verdict::GaveUp);
        assert!(Duration::from_millis(ms) >= LIMIT);
    }
}
