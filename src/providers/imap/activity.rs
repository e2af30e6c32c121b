//! Whether the IMAP connections still move: every connection's stream counts the bytes it
//! reads and writes into one process-wide counter ([`wrap`], [`bytes`]), and the connections
//! open ([`open`]); [`silent_for`] waits until they stop moving. After an interrupt the run
//! waits for its safe point only while bytes move: a server that stopped answering would
//! otherwise hold it until the commands' time limits (minutes).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::transport::Transport;

/// Bytes read or written on every IMAP connection of this process so far.
static BYTES: AtomicU64 = AtomicU64::new(0);

/// Bytes read or written on every IMAP connection of this process so far.
pub fn bytes() -> u64 {
    BYTES.load(Ordering::Relaxed)
}

/// IMAP connections open now.
static OPEN: AtomicU64 = AtomicU64::new(0);

/// IMAP connections of this process open now.
pub fn open() -> u64 {
    OPEN.load(Ordering::Relaxed)
}

/// `stream`, its traffic counted into [`bytes`], itself into [`open`] until dropped.
pub fn wrap(stream: Box<dyn Transport>) -> Box<dyn Transport> {
    OPEN.fetch_add(1, Ordering::Relaxed);
    Box::new(Counted { inner: stream })
}

#[derive(Debug)]
struct Counted {
    inner: Box<dyn Transport>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            BYTES.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            BYTES.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves once IMAP connections are open and none of them has read or written a byte for
/// `quiet`; never while none is open (a run waiting on something else is not stalled).
pub async fn silent_for(quiet: Duration) {
    let mut last = bytes();
    let mut moved = Instant::now();
    loop {
        tokio::time::sleep(POLL).await;
        let now = bytes();
        if now != last || open() == 0 {
            last = now;
            moved = Instant::now();
        } else if moved.elapsed() >= quiet {
            return;
        }
    }
}

/// How often [`silent_for`] looks at the counters.
const POLL: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::time::{sleep, timeout};

    // One test: the counters are process-wide, so a second test running alongside with its own
    // connection would change what this one sees.
    #[tokio::test(start_paused = true)]
    async fn silence_counts_only_while_a_connection_is_open_and_any_byte_starts_it_again() {
        let quiet = Duration::from_secs(15);
        assert!(
            timeout(Duration::from_secs(60), silent_for(quiet))
                .await
                .is_err(),
            "silent with no connection open"
        );

        let (near, _far) = tokio::io::duplex(64);
        let mut connection = wrap(Box::new(near));
        assert_eq!(open(), 1);
        let waiting = silent_for(quiet);
        tokio::pin!(waiting);
        for _ in 0..6 {
            tokio::select! {
                () = &mut waiting => panic!("silent while a byte moves every 10 s"),
                () = sleep(Duration::from_secs(10)) => {}
            }
            connection.write_all(b".").await.expect("write");
        }
        timeout(quiet + Duration::from_secs(1), &mut waiting)
            .await
            .expect("silent once no byte moves");

        drop(connection);
        assert_eq!(open(), 0);
    }
}
