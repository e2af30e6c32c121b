//! A TCP proxy on 127.0.0.1 that injects faults between a client and a server:
//! [`Proxy::start`] listens on a free port and forwards each connection to `upstream`, applying
//! [`Faults`]: a delay per direction (every chunk is held that long, order preserved), a
//! bandwidth cap, a cut after N client→server bytes (a drop mid-APPEND), [`Proxy::cut_now`],
//! and [`Proxy::stall_now`] (a server that stops answering, its connections left open).
//! It counts connections and bytes and, when asked ([`Faults::record`]), keeps a transcript of
//! each connection: what each side sent, in the order the proxy received it.
//!
//! The proxy owns its tokio runtime, so it keeps forwarding while a synchronous test blocks on
//! a child process; dropping the [`Proxy`] stops it and closes every connection. Memory is
//! bounded: each direction holds at most [`WINDOW`] bytes in flight, like a TCP window: the
//! delay line stays full whatever the sizes of the peers' writes, so throughput is limited by
//! the delay only as far as a real network of that latency would limit it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::Instant;

/// The largest chunk read and forwarded at once.
const CHUNK: usize = 64 * 1024;
/// Bytes in flight per direction before the reader waits (backpressure, bounded memory): Linux's
/// default largest TCP send buffer (`net.ipv4.tcp_wmem`), so a long delay costs what it costs
/// over a real network and no more.
const WINDOW: usize = 4 * 1024 * 1024;

/// The faults to inject; `Faults::default()` forwards faithfully.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Added to every chunk going client → server.
    pub client_to_server_delay: Duration,
    /// Added to every chunk going server → client.
    pub server_to_client_delay: Duration,
    /// Bytes per second in each direction of each connection; `None` for no cap.
    pub bandwidth: Option<u64>,
    /// Close a connection once this many client → server bytes were forwarded on it (those
    /// bytes reach the server, nothing after them does).
    pub cut_after_client_bytes: Option<u64>,
    /// Keep every connection's bytes for [`Proxy::transcripts`] (small tests only).
    pub record: bool,
    /// Server → client, replace these bytes by those of the same length (e.g. hide a capability
    /// by renaming it) wherever a chunk holds them.
    pub rewrite_server: Option<(&'static [u8], &'static [u8])>,
}

/// Which side sent a transcript's chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// One connection's chunks, in the order the proxy read them from either side.
pub type Transcript = Vec<(Side, Vec<u8>)>;

impl Faults {
    /// The same delay in both directions: a round trip takes at least twice `one_way`.
    pub fn latency(one_way: Duration) -> Faults {
        Faults {
            client_to_server_delay: one_way,
            server_to_client_delay: one_way,
            ..Faults::default()
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    /// Connections still relaying (their bytes in flight not yet all delivered).
    open: AtomicU64,
    client_to_server: AtomicU64,
    server_to_client: AtomicU64,
    /// IMAP sessions now logged in: from the client's `LOGIN` or `AUTHENTICATE` to its `LOGOUT`
    /// or close, both read before the server answers them, so a client that waits for its
    /// `LOGOUT` to be answered before it logs in again is never counted twice.
    sessions: AtomicU64,
    /// The most `sessions` at once.
    peak_sessions: AtomicU64,
}

/// What [`Counters`] follows of one connection's client → server bytes: whether it is logged in,
/// and the start of the line being read (a client may write a command in several pieces, its
/// tag, a space and the rest, each read as a chunk of its own).
#[derive(Debug, Default)]
struct ClientLines {
    logged_in: bool,
    /// The first [`ClientLines::KEEP`] bytes of the line not yet ended.
    head: Vec<u8>,
}

impl ClientLines {
    /// Enough for a tag and a command name.
    const KEEP: usize = 64;
}

impl Counters {
    /// Follows one connection's client → server lines for [`Counters::sessions`].
    fn saw(&self, lines: &mut ClientLines, bytes: &[u8]) {
        let mut pieces = bytes.split(|b| *b == b'\n').peekable();
        while let Some(piece) = pieces.next() {
            let room = ClientLines::KEEP.saturating_sub(lines.head.len());
            lines
                .head
                .extend_from_slice(&piece[..piece.len().min(room)]);
            if pieces.peek().is_none() {
                break; // the line goes on in the next chunk
            }
            let line = std::mem::take(&mut lines.head);
            let mut words = line.split(|b| *b == b' ' || *b == b'\r');
            let command = words.nth(1).unwrap_or_default().to_ascii_uppercase();
            match command.as_slice() {
                b"LOGIN" | b"AUTHENTICATE" if !lines.logged_in => {
                    lines.logged_in = true;
                    let now = self.sessions.fetch_add(1, Ordering::SeqCst) + 1;
                    self.peak_sessions.fetch_max(now, Ordering::SeqCst);
                }
                b"LOGOUT" if lines.logged_in => self.ended(lines),
                _ => {}
            }
        }
    }

    fn ended(&self, lines: &mut ClientLines) {
        if std::mem::take(&mut lines.logged_in) {
            self.sessions.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A running proxy; see the module doc.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    counters: Arc<Counters>,
    /// Bumped by [`Proxy::cut_now`]; every live connection watches it.
    cuts: watch::Sender<u64>,
    /// Bumped by [`Proxy::stall_now`]; every live connection watches it.
    stalls: watch::Sender<u64>,
    transcripts: Arc<Mutex<Vec<Arc<Mutex<Transcript>>>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    /// Starts forwarding from a free port on 127.0.0.1 to `upstream`.
    pub fn start(upstream: SocketAddr, faults: Faults) -> Proxy {
        Proxy::start_on(0, upstream, faults)
    }

    /// [`Proxy::start`] on a given port of 127.0.0.1 (0: any free port).
    pub fn start_on(port: u16, upstream: SocketAddr, faults: Faults) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-proxy")
            .enable_all()
            .build()
            .expect("build the proxy runtime");
        let listener = runtime
            .block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, port)))
            .expect("bind the proxy on 127.0.0.1");
        let addr = listener.local_addr().expect("proxy address");
        let counters = Arc::new(Counters::default());
        let (cuts, _) = watch::channel(0);
        let (stalls, _) = watch::channel(0);
        let accept_counters = Arc::clone(&counters);
        let accept_cuts = cuts.clone();
        let accept_stalls = stalls.clone();
        let transcripts: Arc<Mutex<Vec<Arc<Mutex<Transcript>>>>> = Arc::default();
        let accept_transcripts = Arc::clone(&transcripts);
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accept_counters.connections.fetch_add(1, Ordering::Relaxed);
                let counters = Arc::clone(&accept_counters);
                let cut = accept_cuts.subscribe();
                let stall = accept_stalls.subscribe();
                let transcript = faults.record.then(|| {
                    let t = Arc::new(Mutex::new(Transcript::new()));
                    if let Ok(mut all) = accept_transcripts.lock() {
                        all.push(Arc::clone(&t));
                    }
                    t
                });
                counters.open.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let lines = (cut, stall);
                        relay(client, server, faults, &counters, lines, transcript).await;
                    }
                    counters.open.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        Proxy {
            addr,
            counters,
            cuts,
            stalls,
            transcripts,
            runtime: Some(runtime),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients connect to on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Closes every connection open now; later connections are served normally.
    pub fn cut_now(&self) {
        self.cuts.send_modify(|generation| *generation += 1);
    }

    /// Every connection open now stops forwarding, in both directions, and stays open: a server
    /// that no longer answers (nor reads). Later connections are served normally.
    pub fn stall_now(&self) {
        self.stalls.send_modify(|generation| *generation += 1);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::Relaxed)
    }

    /// Connections still open: a client that went away (even killed) may still have bytes on
    /// their way to the server, as over a real network, until its connection closes here.
    pub fn open_connections(&self) -> u64 {
        self.counters.open.load(Ordering::Relaxed)
    }

    /// Wait (at most `limit`) until every connection has closed and delivered what it carried.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let start = std::time::Instant::now();
        while self.open_connections() > 0 {
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Each connection's transcript so far, in the order of connection (empty unless
    /// [`Faults::record`]).
    pub fn transcripts(&self) -> Vec<Transcript> {
        let all = self.transcripts.lock().expect("transcripts");
        all.iter()
            .map(|t| t.lock().expect("transcript").clone())
            .collect()
    }

    /// The most IMAP sessions that were logged in at once through the proxy (see the counter).
    pub fn peak_sessions(&self) -> u64 {
        self.counters.peak_sessions.load(Ordering::SeqCst)
    }

    /// Bytes forwarded client → server so far, all connections together.
    pub fn client_to_server_bytes(&self) -> u64 {
        self.counters.client_to_server.load(Ordering::Relaxed)
    }

    /// Bytes forwarded server → client so far, all connections together.
    pub fn server_to_client_bytes(&self) -> u64 {
        self.counters.server_to_client.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Dropping the tasks closes their sockets; shutdown_background never blocks, so Drop is
        // safe inside an async test too.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Forwards both directions until either side closes, a cut is due, or `cut_now` is called;
/// after `stall_now`, forwards nothing more and keeps both sockets open until a cut.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    faults: Faults,
    counters: &Counters,
    (mut cut, mut stall): (watch::Receiver<u64>, watch::Receiver<u64>),
    transcript: Option<Arc<Mutex<Transcript>>>,
) {
    client.set_nodelay(true).ok();
    server.set_nodelay(true).ok();
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let upstream = pump(
        client_read,
        server_write,
        faults.client_to_server_delay,
        faults,
        faults.cut_after_client_bytes,
        None,
        &counters.client_to_server,
        transcript.clone().map(|t| (Side::Client, t)),
        Some(counters),
    );
    let downstream = pump(
        server_read,
        client_write,
        faults.server_to_client_delay,
        faults,
        None,
        faults.rewrite_server,
        &counters.server_to_client,
        transcript.map(|t| (Side::Server, t)),
        None,
    );
    tokio::pin!(upstream, downstream);
    let (mut upstream_done, mut downstream_done) = (false, false);
    // A cut ends the connection at once (dropping the halves closes both sockets, with a reset
    // where unread data is left); an ordinary close of one direction lets the other drain.
    while !(upstream_done && downstream_done) {
        tokio::select! {
            was_cut = &mut upstream, if !upstream_done => {
                if was_cut {
                    return;
                }
                upstream_done = true;
            }
            _ = &mut downstream, if !downstream_done => downstream_done = true,
            _ = cut.changed() => return,
            _ = stall.changed() => {
                // Neither side hears from the other again (the pumps are no longer polled);
                // the sockets stay open until a cut or the proxy's end.
                let _ = cut.changed().await;
                return;
            }
        }
    }
}

/// One direction: a reader stamps chunks with their due time into a queue bounded by [`WINDOW`]
/// bytes, a writer sends each when due (then waits out the bandwidth cap), so order is kept
/// under any delay.
/// Returns whether it stopped because `cut_after` bytes were forwarded. `sessions`: the client
/// side's, whose lines are followed for [`Counters::sessions`].
#[allow(clippy::too_many_arguments)]
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
    faults: Faults,
    cut_after: Option<u64>,
    rewrite: Option<(&'static [u8], &'static [u8])>,
    counter: &AtomicU64,
    transcript: Option<(Side, Arc<Mutex<Transcript>>)>,
    sessions: Option<&Counters>,
) -> bool {
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>, OwnedSemaphorePermit)>();
    let window = Arc::new(Semaphore::new(WINDOW));
    let chunk = match faults.bandwidth {
        // Small chunks under a cap, so the rate is smooth rather than one burst per second.
        Some(rate) => usize::try_from(rate / 20).unwrap_or(CHUNK).clamp(1, CHUNK),
        None => CHUNK,
    };
    let reader = async move {
        let mut buf = vec![0; chunk];
        let mut left = cut_after.unwrap_or(u64::MAX);
        let mut lines = ClientLines::default();
        while left > 0 {
            // Room in the window first, then read: bytes wait in the socket (the sender's
            // buffer) while the window is full, and their delay starts when they get in.
            let want = u32::try_from(chunk).unwrap_or(u32::MAX);
            let Ok(mut room) = Arc::clone(&window).acquire_many_owned(want).await else {
                break;
            };
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let n = n.min(usize::try_from(left).unwrap_or(usize::MAX));
            left -= n as u64;
            if let Some((from, to)) = rewrite {
                let mut at = 0;
                while let Some(i) = buf[at..n].windows(from.len()).position(|w| w == from) {
                    buf[at + i..at + i + to.len()].copy_from_slice(to);
                    at += i + from.len();
                }
            }
            if let Some(c) = sessions {
                c.saw(&mut lines, &buf[..n]);
            }
            if let Some((side, t)) = &transcript
                && let Ok(mut t) = t.lock()
            {
                t.push((*side, buf[..n].to_vec()));
            }
            let Some(used) = room.split(n) else { break };
            drop(room);
            if queue
                .send((Instant::now() + delay, buf[..n].to_vec(), used))
                .is_err()
            {
                break;
            }
        }
        if let Some(c) = sessions {
            c.ended(&mut lines);
        }
        cut_after.is_some() && left == 0
    };
    let writer = async move {
        while let Some((when, bytes, _room)) = due.recv().await {
            tokio::time::sleep_until(when).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
            counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            if let Some(rate) = faults.bandwidth {
                let nanos = (bytes.len() as u64).saturating_mul(1_000_000_000) / rate.max(1);
                tokio::time::sleep(Duration::from_nanos(nanos)).await;
            }
        }
        // The reader ended (EOF, error or cut) and everything before it was delivered.
        to.shutdown().await.ok();
    };
    // The writer finishes after the reader drops the queue; joining keeps the order of events:
    // the last bytes before a cut are written before the connection closes.
    tokio::join!(reader, writer).0
}
