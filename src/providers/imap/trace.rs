//! IMAP transcripts (`--trace-imap DIR`): each connection's commands and answers written to a
//! file of its own, safe to attach to a bug report, as imapsync's `--debugimap` gives.
//!
//! Entry points: [`enable`] (once, from the command line), [`wrap`] (by [`super::connect`], on
//! every new connection once TLS is up).
//! Invariants: the arguments of `LOGIN` and of `AUTHENTICATE` (and the client's SASL answers
//! after it) are written as `****`; every literal (message bodies, header fields, a password sent
//! as a literal) is written as its size only; a file stops growing at [`MAX_FILE_BYTES`], a line
//! at [`MAX_LINE_BYTES`].

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::transport::Transport;

/// A transcript file stops here (with a line that says so).
pub const MAX_FILE_BYTES: u64 = 8 << 20;
/// Longer lines are cut (with a mark).
pub const MAX_LINE_BYTES: usize = 2000;

static DIR: OnceLock<PathBuf> = OnceLock::new();
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// Write a transcript of every IMAP connection of this process into `dir` (created if needed).
pub fn enable(dir: &Path) -> std::io::Result<()> {
    fs_err::create_dir_all(dir)?;
    let _ = DIR.set(dir.to_owned());
    Ok(())
}

/// `stream` with its traffic written to a new transcript for `server` (`host:port`), when
/// transcripts are on; `stream` itself otherwise, or when the file cannot be created (a trace
/// never stops a copy).
pub fn wrap(stream: Box<dyn Transport>, server: &str) -> Box<dyn Transport> {
    let Some(dir) = DIR.get() else {
        return stream;
    };
    let n = CONNECTIONS.fetch_add(1, Ordering::SeqCst) + 1;
    let name: String = server
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{}-{n:04}-{name}.log", std::process::id()));
    match std::fs::File::create(&path) {
        Ok(file) => Box::new(Traced {
            inner: stream,
            log: Mutex::new(Log {
                file: std::io::BufWriter::new(file),
                written: 0,
                full: false,
                client: Side::default(),
                server: Side::default(),
            }),
        }),
        Err(_) => stream,
    }
}

/// A connection whose bytes are written to a transcript as they pass.
struct Traced {
    inner: Box<dyn Transport>,
    log: Mutex<Log>,
}

impl std::fmt::Debug for Traced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traced")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

struct Log {
    file: std::io::BufWriter<std::fs::File>,
    written: u64,
    full: bool,
    client: Side,
    server: Side,
}

/// What one direction's bytes are in the middle of.
#[derive(Default)]
struct Side {
    /// The line read so far.
    line: Vec<u8>,
    /// Bytes of a literal still to pass (not written).
    literal_left: u64,
    /// The literal's size, for the line that replaces it.
    literal_size: u64,
    /// The next line is a SASL answer (after `AUTHENTICATE`): masked.
    mask_next: bool,
}

impl Log {
    fn saw(&mut self, from_client: bool, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let side = if from_client {
                &mut self.client
            } else {
                &mut self.server
            };
            if side.literal_left > 0 {
                let n = usize::try_from(side.literal_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                side.literal_left -= n as u64;
                bytes = &bytes[n..];
                if side.literal_left == 0 {
                    let text = format!("<literal of {} bytes>", side.literal_size);
                    self.write(from_client, text.as_bytes());
                }
                continue;
            }
            let end = bytes.iter().position(|b| *b == b'\n');
            let take = end.map_or(bytes.len(), |i| i + 1);
            if side.line.len() < MAX_LINE_BYTES + 2 {
                let room = MAX_LINE_BYTES + 2 - side.line.len();
                side.line.extend_from_slice(&bytes[..take.min(room)]);
            }
            bytes = &bytes[take..];
            if end.is_some() {
                let line = std::mem::take(&mut side.line);
                let literal = literal_size(&line);
                let shown = if from_client {
                    mask(&line, &mut side.mask_next)
                } else {
                    line
                };
                if let Some(size) = literal {
                    side.literal_left = size;
                    side.literal_size = size;
                }
                self.write(from_client, &shown);
                if literal == Some(0) {
                    self.write(from_client, b"<literal of 0 bytes>");
                }
            }
        }
    }

    fn write(&mut self, from_client: bool, line: &[u8]) {
        if self.full {
            return;
        }
        let mut text = String::from_utf8_lossy(line).trim_end().to_owned();
        if text.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(" …(line cut)");
        }
        let entry = format!("{} {text}\n", if from_client { "C:" } else { "S:" });
        self.written += entry.len() as u64;
        if self.written > MAX_FILE_BYTES {
            self.full = true;
            let _ = writeln!(
                self.file,
                "-- transcript stopped at {MAX_FILE_BYTES} bytes --"
            );
        } else {
            let _ = self.file.write_all(entry.as_bytes());
        }
        let _ = self.file.flush();
    }
}

/// The size of the literal that follows a line ending in `{N}` or `{N+}` (RFC 3501, RFC 7888).
fn literal_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|b| *b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A client line with any credential replaced by `****`: the arguments of `LOGIN` and
/// `AUTHENTICATE` (its mechanism kept), and the SASL answer lines after `AUTHENTICATE`.
fn mask(line: &[u8], mask_next: &mut bool) -> Vec<u8> {
    if std::mem::take(mask_next) {
        // A SASL answer; `*` alone cancels the exchange.
        return if line.trim_ascii() == b"*" {
            line.to_vec()
        } else {
            b"****".to_vec()
        };
    }
    let text = String::from_utf8_lossy(line);
    let mut words = text.split_ascii_whitespace();
    let (Some(tag), Some(command)) = (words.next(), words.next()) else {
        return line.to_vec();
    };
    if command.eq_ignore_ascii_case("LOGIN") {
        return format!("{tag} {command} ****").into_bytes();
    }
    if command.eq_ignore_ascii_case("AUTHENTICATE") {
        let mechanism = words.next().unwrap_or_default();
        *mask_next = true;
        let initial = if words.next().is_some() { " ****" } else { "" };
        return format!("{tag} {command} {mechanism}{initial}").into_bytes();
    }
    line.to_vec()
}

impl AsyncRead for Traced {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && let Ok(mut log) = self.log.lock()
        {
            log.saw(false, &buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for Traced {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled
            && let Ok(mut log) = self.log.lock()
        {
            log.saw(true, &buf[..n]);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_and_literals_shown_as_sizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.log");
        let mut log = Log {
            file: std::io::BufWriter::new(std::fs::File::create(&path).expect("file")),
            written: 0,
            full: false,
            client: Side::default(),
            server: Side::default(),
        };
        log.saw(true, b"A1 LOGIN \"alice\" \"s3cret\"\r\n");
        log.saw(true, b"A2 AUTHENTICATE PLAIN\r\n");
        log.saw(false, b"+ \r\n");
        log.saw(true, b"AGFsaWNlAHMzY3JldA==\r\n");
        log.saw(true, b"A3 APPEND \"INBOX\" (\\Seen) {11+}\r\nHello");
        log.saw(true, b" body\r\nA4 NOOP\r\n");
        log.saw(
            false,
            b"* 1 FETCH (UID 7 BODY[] {9}\r\nSecret!\r\n)\r\nA5 OK done\r\n",
        );
        drop(log);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            "C: A1 LOGIN ****\nC: A2 AUTHENTICATE PLAIN\nS: +\nC: ****\n\
             C: A3 APPEND \"INBOX\" (\\Seen) {11+}\nC: <literal of 11 bytes>\nC: \nC: A4 NOOP\n\
             S: * 1 FETCH (UID 7 BODY[] {9}\nS: <literal of 9 bytes>\nS: )\nS: A5 OK done\n"
        );
        assert_eq!(literal_size(b"x {0}\r\n"), Some(0));
        assert_eq!(literal_size(b"x {12+}\r\n"), Some(12));
        assert_eq!(literal_size(b"x {a}\r\n"), None);
    }
}
