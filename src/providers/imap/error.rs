//! The IMAP layer's one error type: what failed, on which server, while doing what, and whether
//! trying again later can help.

use std::fmt;
use std::time::Duration;

/// How an IMAP failure should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapErrorKind {
    /// Connection refused, reset, closed or timed out: retried with backoff.
    Network,
    /// The TLS handshake or the certificate check failed.
    Tls,
    /// The server refused the login.
    Auth,
    /// The server answered NO or BAD to a command.
    Refused,
    /// The server asked to slow down (`[THROTTLED]`, "Suggested Backoff Time", `[UNAVAILABLE]`,
    /// `[INUSE]`). `[LIMIT]` (RFC 5530: an implementation limit, e.g. a size) is permanent.
    Throttled,
    /// The target takes nothing more: `[OVERQUOTA]`, or a `[LIMIT]` that refused message after
    /// message. The account's copy stops there (trying the remaining messages cannot help);
    /// not retried.
    Full,
    /// The server sent something that is not IMAP as mailplan reads it (a server bug, such as
    /// an unquoted folder name with a space): not retried, the same answer would come again.
    Protocol,
}

/// An IMAP failure: `IMAP host:port while <activity>: <the server's words>`.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ImapError {
    pub kind: ImapErrorKind,
    /// `host:port`.
    pub server: String,
    /// What mailplan was doing ("logging in as alice", "appending to Sent").
    pub activity: String,
    /// The server's or the system's words. Never contains a secret.
    pub message: String,
    /// How long the server asked us to wait, when it said.
    pub backoff: Option<Duration>,
}

impl fmt::Display for ImapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IMAP {} while {}: {}",
            self.server, self.activity, self.message
        )
    }
}

impl miette::Diagnostic for ImapError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        let code = match self.kind {
            ImapErrorKind::Network => "imap::network",
            ImapErrorKind::Tls => "imap::tls",
            ImapErrorKind::Auth => "imap::auth",
            ImapErrorKind::Refused => "imap::refused",
            ImapErrorKind::Throttled => "imap::throttled",
            ImapErrorKind::Full => "imap::full",
            ImapErrorKind::Protocol => "imap::protocol",
        };
        Some(Box::new(code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        let help = match self.kind {
            ImapErrorKind::Network => "the step is retried; check the host, port and network",
            ImapErrorKind::Tls => {
                "check `tls:` (implicit, starttls) and the certificate; only `tls-verify: false` \
                 in the plan turns the check off"
            }
            ImapErrorKind::Auth => "check the login and the password reference in the plan",
            ImapErrorKind::Full => {
                "the target account takes no more mail: free space or raise its quota or limit, \
                 then run apply again with --retry-failed (what was copied stays; the copy \
                 resumes where it stopped)"
            }
            ImapErrorKind::Protocol => {
                "the server's answer breaks the IMAP syntax; run again with --trace-imap DIR \
                 and attach the transcript to a report to the server's maintainers (or ours)"
            }
            ImapErrorKind::Refused | ImapErrorKind::Throttled => return None,
        };
        Some(Box::new(help))
    }
}

impl ImapError {
    pub fn new(
        kind: ImapErrorKind,
        server: &str,
        activity: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ImapError {
            kind,
            server: server.to_owned(),
            activity: activity.into(),
            message: message.into(),
            backoff: None,
        }
    }

    /// Whether the same operation may succeed later (after a backoff and a new connection).
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ImapErrorKind::Network | ImapErrorKind::Throttled)
    }

    /// Classify an async-imap error raised while doing `activity`.
    pub fn from_imap(
        server: &str,
        activity: impl Into<String>,
        e: async_imap::error::Error,
    ) -> Self {
        use async_imap::error::Error as E;
        let (kind, message) = match e {
            E::Io(e) => return ImapError::from_io(server, activity, &e),
            E::Parse(e) => (ImapErrorKind::Protocol, excerpt(&e.to_string())),
            E::ConnectionLost => (
                ImapErrorKind::Network,
                "the server closed the connection".to_owned(),
            ),
            E::No(text) | E::Bad(text) => {
                let text = plain_words(&text);
                (classify_refusal(&text), text)
            }
            other => (ImapErrorKind::Refused, other.to_string()),
        };
        let backoff = if kind == ImapErrorKind::Throttled {
            suggested_backoff(&message)
        } else {
            None
        };
        ImapError {
            kind,
            server: server.to_owned(),
            activity: activity.into(),
            message,
            backoff,
        }
    }

    /// An error reading or writing the connection: a network error, or (the IMAP library reports
    /// them as I/O errors too) an answer it could not parse, which is a [`ImapErrorKind::Protocol`]
    /// error with a short excerpt of what the server sent.
    pub fn from_io(server: &str, activity: impl Into<String>, e: &std::io::Error) -> Self {
        let text = e.to_string();
        // An untagged BYE where a command's answer was expected (Cyrus after `NO [TOOBIG]`).
        if text.starts_with("status: Bye") {
            return ImapError::new(
                ImapErrorKind::Network,
                server,
                activity,
                format!(
                    "the server closed the connection (BYE {})",
                    plain_words(&text)
                ),
            );
        }
        match text.split_once(" during parsing of ") {
            Some((_, sent)) => ImapError::new(
                ImapErrorKind::Protocol,
                server,
                activity,
                format!(
                    "the server's answer could not be read as IMAP: {}",
                    excerpt(sent)
                ),
            ),
            None => ImapError::new(ImapErrorKind::Network, server, activity, plain_words(&text)),
        }
    }

    /// A command that got no answer in time.
    pub fn timeout(server: &str, activity: impl Into<String>, after: Duration) -> Self {
        ImapError::new(
            ImapErrorKind::Network,
            server,
            activity,
            format!("no answer within {} s", after.as_secs()),
        )
    }
}

/// The server's words as it wrote them. async-imap hands a NO or BAD over in Rust's debug
/// notation (`code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")`,
/// `outcome: Some("…")`); a person reads `[AUTHENTICATIONFAILED] Authentication failed.`.
/// Any other text is returned as it is.
fn plain_words(text: &str) -> String {
    let mut code = None;
    let info = if let Some(rest) = text.strip_prefix("code: ") {
        let Some((c, info)) = rest.split_once(", info: ") else {
            return text.to_owned();
        };
        code = response_code(c);
        info
    } else if let Some(rest) = text.strip_prefix("outcome: Outcome { code: ") {
        // `outcome: Outcome { code: None, information: Some("…") }` (SELECT, EXAMINE).
        let Some((c, info)) = rest
            .strip_suffix(" }")
            .and_then(|r| r.split_once(", information: "))
        else {
            return text.to_owned();
        };
        code = response_code(c);
        info
    } else if let Some(info) = text.strip_prefix("outcome: ") {
        info
    } else if let Some(rest) = text.strip_prefix("status: ") {
        // `status: Bye, code: None, information: Some("…")`.
        let Some((_, rest)) = rest.split_once(", code: ") else {
            return text.to_owned();
        };
        let Some((c, info)) = rest.split_once(", information: ") else {
            return text.to_owned();
        };
        code = response_code(c);
        info
    } else {
        return text.to_owned();
    };
    let words = match info {
        "None" => Some(String::new()),
        _ => info
            .strip_prefix("Some(\"")
            .and_then(|i| i.strip_suffix("\")"))
            .and_then(unescape),
    };
    let Some(words) = words else {
        return text.to_owned();
    };
    match (code, words.is_empty()) {
        (Some(c), true) => format!("[{c}]"),
        (Some(c), false) => format!("[{c}] {words}"),
        (None, true) => "no reason given".to_owned(),
        (None, false) => words,
    }
}

/// `Some(Alert)`, `Some(UidValidity(7))` → `ALERT`, `UIDVALIDITY` (the response code as the
/// server wrote it, without its arguments); `None` → none.
fn response_code(debug: &str) -> Option<String> {
    let inner = debug.strip_prefix("Some(")?.strip_suffix(')')?;
    let name: String = inner
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    Some(match name.as_str() {
        "" => return None,
        "ReadOnly" => "READ-ONLY".to_owned(),
        "ReadWrite" => "READ-WRITE".to_owned(),
        "Capabilities" => "CAPABILITY".to_owned(),
        _ => name.to_ascii_uppercase(),
    })
}

/// A Rust string literal's content, unescaped (`\"`, `\\`, `\n`, `\u{e9}`, …).
fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            '0' => out.push('\0'),
            'u' => {
                let hex: String = chars
                    .by_ref()
                    .skip_while(|c| *c == '{')
                    .take_while(|c| *c != '}')
                    .collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// At most the first line (and 160 characters) of what a server sent, as an escaped string,
/// and how long it was: a protocol error shows what went wrong without the whole buffer.
fn excerpt(sent: &str) -> String {
    // The library quotes the buffer as a Rust string: take it back to its text.
    let raw = sent
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .map_or_else(
            || sent.to_owned(),
            |s| s.replace("\\r", "\r").replace("\\n", "\n"),
        );
    let line = raw.split('\n').next().unwrap_or_default();
    let shown: String = line.chars().take(160).collect();
    let escaped = shown.escape_debug().to_string();
    let more = raw.len().saturating_sub(shown.len());
    if more > 0 {
        format!("\"{escaped}\"… ({} bytes in all)", raw.len())
    } else {
        format!("\"{escaped}\"")
    }
}

/// NO/BAD texts that mean "try later" rather than "never".
fn classify_refusal(text: &str) -> ImapErrorKind {
    let upper = text.to_ascii_uppercase();
    if upper.contains("[THROTTLED]")
        || upper.contains("SUGGESTED BACKOFF TIME")
        || upper.contains("[UNAVAILABLE]")
        || upper.contains("[INUSE]")
    {
        ImapErrorKind::Throttled
    } else if upper.contains("[OVERQUOTA]") {
        ImapErrorKind::Full
    } else {
        ImapErrorKind::Refused
    }
}

/// The longest wait a server's "Suggested Backoff Time" is followed for: a larger (or absurd)
/// figure is read as this, so that a run never sleeps for hours on one answer.
pub const MAX_SUGGESTED_BACKOFF: Duration = Duration::from_secs(5 * 60);

/// Microsoft's "Suggested Backoff Time: 12345 milliseconds", at most [`MAX_SUGGESTED_BACKOFF`].
fn suggested_backoff(text: &str) -> Option<Duration> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find("suggested backoff time")?;
    let digits: String = lower[at..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    if digits.is_empty() {
        return None;
    }
    // Too many digits for a u64 is a huge figure too.
    let ms: u64 = digits.parse().unwrap_or(u64::MAX);
    Some(Duration::from_millis(ms).min(MAX_SUGGESTED_BACKOFF))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_answers_are_retryable_and_carry_the_suggested_backoff() {
        let e = ImapError::from_imap(
            "outlook.example:993",
            "appending to INBOX",
            async_imap::error::Error::No(
                "[THROTTLED] Request is throttled. Suggested Backoff Time: 2500 milliseconds"
                    .into(),
            ),
        );
        assert_eq!(e.kind, ImapErrorKind::Throttled);
        assert!(e.is_retryable());
        assert_eq!(e.backoff, Some(Duration::from_millis(2500)));
        assert_eq!(
            e.to_string(),
            "IMAP outlook.example:993 while appending to INBOX: [THROTTLED] Request is \
             throttled. Suggested Backoff Time: 2500 milliseconds"
        );
    }

    #[test]
    fn a_suggested_backoff_is_capped_at_minutes() {
        for text in [
            "[THROTTLED] Suggested Backoff Time: 86400000 milliseconds",
            "[THROTTLED] Suggested Backoff Time: 99999999999999999999999 milliseconds",
        ] {
            let e = ImapError::from_imap(
                "h:993",
                "appending",
                async_imap::error::Error::No(text.into()),
            );
            assert_eq!(e.backoff, Some(MAX_SUGGESTED_BACKOFF), "{text}");
        }
        assert_eq!(MAX_SUGGESTED_BACKOFF, Duration::from_secs(300));
    }

    #[test]
    fn over_quota_stops_the_copy_and_is_not_retried() {
        let e = ImapError::from_imap(
            "h:993",
            "appending to INBOX",
            async_imap::error::Error::No(
                "[OVERQUOTA] Quota exceeded (mailbox for user is full)".into(),
            ),
        );
        assert_eq!(e.kind, ImapErrorKind::Full);
        assert!(!e.is_retryable());
        let code = miette::Diagnostic::code(&e).map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("imap::full"));
    }

    #[test]
    fn the_servers_words_are_given_as_written_not_in_debug_notation() {
        let login = ImapError::from_imap(
            "h:993",
            "logging in as a@x",
            async_imap::error::Error::No(
                r#"code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")"#.into(),
            ),
        );
        assert_eq!(
            login.to_string(),
            "IMAP h:993 while logging in as a@x: [AUTHENTICATIONFAILED] Authentication failed."
        );
        let cases = [
            (
                r#"code: Some(Alert), info: Some("Say \"hi\" to the admin \u{e9}")"#,
                "[ALERT] Say \"hi\" to the admin é",
            ),
            ("code: Some(TryCreate), info: None", "[TRYCREATE]"),
            ("code: None, info: None", "no reason given"),
            (
                r#"outcome: Some("Mailbox doesn't exist: Nope")"#,
                "Mailbox doesn't exist: Nope",
            ),
            (
                r#"status: Bye, code: Some(ReadOnly), information: Some("Shutting down")"#,
                "[READ-ONLY] Shutting down",
            ),
            (
                r#"outcome: Outcome { code: None, information: Some("Mailbox doesn't exist: Sent") }"#,
                "Mailbox doesn't exist: Sent",
            ),
            ("[OVERQUOTA] Quota exceeded", "[OVERQUOTA] Quota exceeded"),
            ("code: odd", "code: odd"),
        ];
        for (debug, plain) in cases {
            assert_eq!(plain_words(debug), plain, "{debug}");
        }
        let throttled = ImapError::from_imap(
            "h:993",
            "appending",
            async_imap::error::Error::No(
                r#"code: None, info: Some("[THROTTLED] Suggested Backoff Time: 100 milliseconds")"#
                    .into(),
            ),
        );
        assert_eq!(throttled.kind, ImapErrorKind::Throttled);
        assert_eq!(throttled.backoff, Some(Duration::from_millis(100)));
    }

    #[test]
    fn an_unreadable_answer_is_a_short_protocol_error_not_a_network_one() {
        let buffer = format!(
            "* STATUS Empty folder (MESSAGES 0)\r\n{}",
            "* 1 FETCH (UID 1)\r\n".repeat(5000)
        );
        let io = std::io::Error::other(format!(
            "Error(Error {{ input: [42, 32, 83], code: Tag }}) during parsing of {buffer:?}"
        ));
        let e = ImapError::from_io("h:143", "reading the folders' STATUS", &io);
        assert_eq!(e.kind, ImapErrorKind::Protocol);
        assert!(!e.is_retryable());
        assert!(e.to_string().len() < 300, "{e}");
        assert!(
            e.message
                .contains(r#""* STATUS Empty folder (MESSAGES 0)\r"… ("#),
            "{e}"
        );
        let bye = std::io::Error::other(
            "status: Bye, code: None, information: Some(\"[TOOBIG] Message size exceeds fixed \
             limit\")",
        );
        let e = ImapError::from_io("h:143", "opening Junk", &bye);
        assert_eq!(e.kind, ImapErrorKind::Network);
        assert_eq!(
            e.message,
            "the server closed the connection (BYE [TOOBIG] Message size exceeds fixed limit)"
        );
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(
            ImapError::from_io("h:143", "x", &reset).kind,
            ImapErrorKind::Network
        );
    }

    #[test]
    fn a_plain_refusal_is_permanent() {
        let e = ImapError::from_imap(
            "h:993",
            "appending",
            async_imap::error::Error::No("Message rejected by a filter".into()),
        );
        let size = ImapError::from_imap(
            "h:993",
            "appending",
            async_imap::error::Error::No("[LIMIT] Mail size is too large".into()),
        );
        assert_eq!(
            size.kind,
            ImapErrorKind::Refused,
            "a size limit is not a throttle"
        );
        assert_eq!(e.kind, ImapErrorKind::Refused);
        assert!(!e.is_retryable());
        assert_eq!(e.backoff, None);
    }
}
