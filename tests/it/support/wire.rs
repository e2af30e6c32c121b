//! An IMAP conversation read back from a proxy [`Transcript`]: the client's commands and the
//! server's tagged answers (literals skipped, counted), each placed at the transcript chunk in
//! which it ended. With those positions a test can tell what a client really did on the wire:
//! how many messages one APPEND carried, and how many commands it had sent before the answers
//! came back (pipelining), which no end state can show.

use super::proxy::{Side, Transcript};

/// A command the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub tag: String,
    /// Upper case, e.g. `APPEND`.
    pub name: String,
    /// Literals in the command (a MULTIAPPEND has one per message).
    pub literals: usize,
    /// The transcript chunk holding its first line's end: from there it is in flight (its
    /// literals may follow later, each after the server's go-ahead).
    pub started: usize,
    /// The transcript chunk holding its last byte.
    pub at: usize,
}

/// A tagged answer from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub tag: String,
    /// `OK`, `NO` or `BAD`.
    pub status: String,
    pub at: usize,
}

/// The client's commands, in order.
pub fn commands(t: &Transcript) -> Vec<Command> {
    logical_lines(t, Side::Client)
        .into_iter()
        .filter_map(|(line, literals, started, at)| {
            let mut words = line.split(' ');
            let tag = words.next()?.to_owned();
            let name = words.next()?.to_ascii_uppercase();
            Some(Command {
                tag,
                name,
                literals: literals.len(),
                started,
                at,
            })
        })
        .collect()
}

/// The server's tagged answers, in order.
pub fn answers(t: &Transcript) -> Vec<Answer> {
    logical_lines(t, Side::Server)
        .into_iter()
        .filter_map(|(line, _, _, at)| {
            let mut words = line.split(' ');
            let tag = words.next()?;
            if tag == "*" || tag == "+" {
                return None;
            }
            let status = words.next()?.to_ascii_uppercase();
            ["OK", "NO", "BAD"]
                .contains(&status.as_str())
                .then(|| Answer {
                    tag: tag.to_owned(),
                    status,
                    at,
                })
        })
        .collect()
}

/// The largest literal one side sent (for the server: the most bytes of a message it sent in one
/// answer).
pub fn largest_literal(t: &Transcript, side: Side) -> usize {
    logical_lines(t, side)
        .iter()
        .flat_map(|(_, literals, _, _)| literals.iter().copied())
        .max()
        .unwrap_or(0)
}

/// The client's commands with their text (literals left out), e.g. to look for a command's
/// arguments.
pub fn command_lines(t: &Transcript) -> Vec<String> {
    logical_lines(t, Side::Client)
        .into_iter()
        .map(|(line, _, _, _)| line)
        .collect()
}

/// The most commands named `name` started and not yet answered at any one time, as the proxy
/// saw them (a client that waits for each answer before the next command scores 1).
pub fn most_in_flight(t: &Transcript, name: &str) -> usize {
    let sent = commands(t);
    let tags: std::collections::HashSet<&str> = sent
        .iter()
        .filter(|c| c.name == name)
        .map(|c| c.tag.as_str())
        .collect();
    let answered = answers(t);
    let mut events: Vec<(usize, i64)> = sent
        .iter()
        .filter(|c| c.name == name)
        .map(|c| (c.started, 1))
        .chain(
            answered
                .iter()
                .filter(|a| tags.contains(a.tag.as_str()))
                .map(|a| (a.at, -1)),
        )
        .collect();
    // A chunk is one side's: a command and an answer never share a position.
    events.sort_unstable();
    let (mut now, mut most) = (0i64, 0i64);
    for (_, step) in events {
        now += step;
        most = most.max(now);
    }
    usize::try_from(most).unwrap_or(0)
}

/// One side's stream cut into logical lines (a line continued after each literal it announces):
/// the text with literals left out, the literals' sizes, and the chunks where its first line and
/// the whole line ended.
fn logical_lines(t: &Transcript, side: Side) -> Vec<(String, Vec<usize>, usize, usize)> {
    let mut stream = Vec::new();
    // (end offset in `stream`, transcript chunk index), in order.
    let mut ends = Vec::new();
    for (i, (from, bytes)) in t.iter().enumerate() {
        if *from == side {
            stream.extend_from_slice(bytes);
            ends.push((stream.len(), i));
        }
    }
    let chunk_of = |offset: usize| {
        let at = ends.partition_point(|(end, _)| *end <= offset);
        ends.get(at).map_or(usize::MAX, |(_, i)| *i)
    };
    let mut lines = Vec::new();
    let (mut pos, mut text, mut literals) = (0, String::new(), Vec::new());
    let mut started = None;
    while let Some(nl) = find_crlf(&stream[pos..]) {
        let segment = &stream[pos..pos + nl];
        pos += nl + 2;
        let first = *started.get_or_insert(chunk_of(pos - 1));
        text.push_str(&String::from_utf8_lossy(segment));
        if let Some(n) = literal_size(segment) {
            // The literal's bytes follow the line end; the line goes on after them.
            pos = (pos + n).min(stream.len());
            literals.push(n);
            continue;
        }
        lines.push((
            std::mem::take(&mut text),
            std::mem::take(&mut literals),
            first,
            chunk_of(pos - 1),
        ));
        started = None;
    }
    lines
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

/// `{N}` or `{N+}` at the end of a line: the size of the literal that follows.
fn literal_size(line: &[u8]) -> Option<usize> {
    let line = std::str::from_utf8(line).ok()?;
    let inner = line.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    inner[open + 1..].trim_end_matches('+').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_answers_and_what_was_in_flight_are_read_back() {
        let t: Transcript = vec![
            (
                Side::Client,
                b"a1 APPEND INBOX {3+}\r\nabc {2+}\r\nde\r\n".to_vec(),
            ),
            (Side::Client, b"a2 APPEND INBOX {1+}\r\nx\r\n".to_vec()),
            (Side::Server, b"a1 OK done\r\n* 3 EXISTS\r\n".to_vec()),
            (Side::Client, b"a3 APPEND INBOX {1}\r\n".to_vec()),
            (Side::Server, b"+ go\r\na2 OK done\r\n".to_vec()),
            (Side::Client, b"y\r\n".to_vec()),
            (Side::Server, b"a3 NO [LIMIT] too big\r\n".to_vec()),
        ];
        let sent = commands(&t);
        assert_eq!(
            sent.iter()
                .map(|c| (c.tag.as_str(), c.literals, c.started, c.at))
                .collect::<Vec<_>>(),
            vec![("a1", 2, 0, 0), ("a2", 1, 1, 1), ("a3", 1, 3, 5)]
        );
        let got = answers(&t);
        assert_eq!(
            got.iter()
                .map(|a| (a.tag.as_str(), a.status.as_str(), a.at))
                .collect::<Vec<_>>(),
            vec![("a1", "OK", 2), ("a2", "OK", 4), ("a3", "NO", 6)]
        );
        assert_eq!(most_in_flight(&t, "APPEND"), 2);
        assert_eq!(largest_literal(&t, Side::Client), 3);
        assert_eq!(largest_literal(&t, Side::Server), 0);
        assert_eq!(command_lines(&t)[1], "a2 APPEND INBOX {1+}");
    }
}
