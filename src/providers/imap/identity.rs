//! A message's identity across servers: its Message-ID or — without one — a digest of a few
//! header fields. Identities are compared as multisets, so two distinct messages that share a
//! Message-ID are both copied, and two identical copies of one message stay two. The size is
//! not part of it but compared beside it (see `copy::matching`): a server may report another
//! size for the very message it was given (Exchange gives estimated RFC822.SIZEs unless its
//! `EnableExactRFC822Size` is set; a copy made by mbsync carries an added `X-TUID` header).
//!
//! The digest is of the fields as read, not of their bytes: names in a fixed order, values
//! unfolded with their white space collapsed, and a Date that parses compared as the instant it
//! names. Every identity carries it, including those that are a Message-ID, because a server may
//! give a message that has none a Message-ID of its own (Exchange does): `copy::matching` then
//! finds such a source message on the target by its header fields.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use mailparse::MailHeaderMap as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The header fields fetched to compute an identity (`BODY.PEEK[HEADER.FIELDS (…)]`).
pub const IDENTITY_FIELDS: &str = "MESSAGE-ID DATE FROM TO SUBJECT";

/// The header fields fetched to name a message in a report ([`MessageFacts`]).
pub const FACT_FIELDS: &str = "MESSAGE-ID DATE SUBJECT";

/// The fields digested, in the order they are digested (`MESSAGE-ID` is not one of them).
const DIGESTED: [&str; 4] = ["date", "from", "to", "subject"];

/// A message's identity; comparable between the source and the target. Equality, hashing and
/// order are those of the Message-ID (or, without one, of the header digest).
#[derive(Debug, Clone)]
pub struct Identity {
    /// The Message-ID, `headers:` and the digest in hex without one, empty when blank.
    key: String,
    /// The digest of the header fields other than the Message-ID.
    fields: u64,
    /// Whether `key` is a Message-ID.
    message_id: bool,
}

impl PartialEq for Identity {
    fn eq(&self, other: &Identity) -> bool {
        self.key == other.key
    }
}

impl Eq for Identity {}

impl Hash for Identity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl PartialOrd for Identity {
    fn partial_cmp(&self, other: &Identity) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Identity {
    fn cmp(&self, other: &Identity) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

impl Identity {
    /// From the returned header fields.
    pub fn new(header_fields: &[u8]) -> Identity {
        let text = String::from_utf8_lossy(header_fields);
        let read = unfolded_fields(&text);
        let fields = fields_digest(&read);
        match id_of(&read) {
            Some(id) => Identity {
                key: id,
                fields,
                message_id: true,
            },
            None => Identity {
                key: format!("headers:{fields:016x}"),
                fields,
                message_id: false,
            },
        }
    }

    /// No identity (nothing read to compute one); takes no memory. Only for messages that are
    /// not compared, e.g. those of a source folder whose target is new.
    pub fn blank() -> Identity {
        Identity {
            key: String::new(),
            fields: 0,
            message_id: false,
        }
    }

    /// Printable form for reports (`<id@host>` or `headers:…`).
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// Whether the message has a Message-ID (else its identity is its header digest).
    pub fn has_message_id(&self) -> bool {
        self.message_id
    }

    /// The digest of the header fields other than the Message-ID (set for every identity).
    pub fn fields(&self) -> u64 {
        self.fields
    }
}

/// What names a message for a person reading a report about it (a message left out or refused):
/// its Date, Subject (RFC 2047 decoded) and Message-ID as its header gives them, and its size.
/// Read from the header only, never the body; any of them may be unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MessageFacts {
    pub date: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub size: Option<u64>,
}

impl MessageFacts {
    /// Only the size (what is known of a message whose header was not read).
    pub fn sized(size: u64) -> MessageFacts {
        MessageFacts {
            size: Some(size),
            ..MessageFacts::default()
        }
    }

    /// From a message, or the start of one, or its header fields alone: only the header (up to
    /// the first empty line) is read.
    pub fn read(message: &[u8], size: Option<u64>) -> MessageFacts {
        let Ok((headers, _)) = mailparse::parse_headers(message) else {
            return MessageFacts {
                size,
                ..MessageFacts::default()
            };
        };
        let field = |name: &str| {
            headers
                .get_first_value(name)
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .filter(|v| !v.is_empty())
        };
        MessageFacts {
            date: field("Date"),
            subject: field("Subject"),
            message_id: field("Message-ID").map(|v| v.replace(' ', "")),
            size,
        }
    }
}

/// The digest of the fields in [`DIGESTED`], read as fields: unfolded, white space collapsed,
/// names in a fixed order (a server that reorders or refolds them, or writes a date another way,
/// gives the same digest), a Date that parses replaced by its instant.
fn fields_digest(read: &[(&str, String)]) -> u64 {
    let mut found: Vec<(usize, String)> = Vec::new();
    for (name, value) in read {
        let name = name.trim().to_ascii_lowercase();
        let Some(rank) = DIGESTED.iter().position(|d| *d == name) else {
            continue;
        };
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        let value = if rank == 0 {
            chrono::DateTime::parse_from_rfc2822(&value)
                .map_or(value, |d| format!("@{}", d.timestamp()))
        } else {
            value
        };
        found.push((rank, value));
    }
    // Stable: two fields of one name keep their order.
    found.sort_by_key(|(rank, _)| *rank);
    let mut text = String::new();
    for (rank, value) in &found {
        let _ = writeln!(text, "{}:{value}", DIGESTED[*rank]);
    }
    let digest = Sha256::digest(text.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The header's fields as (name, unfolded value); lines that are not fields are left out.
fn unfolded_fields(text: &str) -> Vec<(&str, String)> {
    let mut fields: Vec<(&str, String)> = Vec::new();
    for line in text.split("\r\n").flat_map(|l| l.split('\n')) {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name, value.trim().to_owned()));
        }
    }
    fields
}

/// The Message-ID field's value, unfolded, without white space; `None` when absent or empty.
pub fn message_id(header: &[u8]) -> Option<String> {
    id_of(&unfolded_fields(&String::from_utf8_lossy(header)))
}

/// [`message_id`] of fields already read.
fn id_of(read: &[(&str, String)]) -> Option<String> {
    let (_, value) = read
        .iter()
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("message-id"))?;
    let value: String = value.split_whitespace().collect();
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_read_from_the_header_alone_with_the_subject_decoded() {
        let m = b"Subject: =?UTF-8?Q?R=C3=A9union_<lundi>?=\r\n =?UTF-8?B?w6AgOWg=?=\r\n\
                  Message-ID:\r\n <a@b.example>\r\nDate: Mon, 3 Jun 2024 09:05:00 +0200\r\n\r\n\
                  Subject: not this, the body\r\n";
        let f = MessageFacts::read(m, Some(120));
        assert_eq!(f.subject.as_deref(), Some("R\u{e9}union <lundi>\u{e0} 9h"));
        assert_eq!(f.message_id.as_deref(), Some("<a@b.example>"));
        assert_eq!(f.date.as_deref(), Some("Mon, 3 Jun 2024 09:05:00 +0200"));
        assert_eq!(f.size, Some(120));
        assert_eq!(MessageFacts::read(b"", None), MessageFacts::default());
    }

    #[test]
    fn message_id_is_found_case_insensitively_and_unfolded() {
        let h = b"Subject: x\r\nmessage-id:\r\n <abc@host>\r\nDate: y\r\n\r\n";
        assert_eq!(message_id(h).as_deref(), Some("<abc@host>"));
        assert_eq!(Identity::new(h).as_str(), "<abc@host>", "the id, unfolded");
    }

    #[test]
    fn without_message_id_the_identity_digests_the_headers() {
        let a = Identity::new(b"From: a\r\nSubject: one\r\n\r\n");
        let b = Identity::new(b"From: a\r\nSubject: two\r\n\r\n");
        assert!(a.as_str().starts_with("headers:"));
        assert_ne!(a, b);
        assert_eq!(a, Identity::new(b"From: a\r\nSubject: one\r\n\r\n"));
        assert_eq!(message_id(b"Message-ID: \r\n\r\n"), None);
    }

    #[test]
    fn the_digest_reads_fields_not_bytes() {
        let sent = Identity::new(
            b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n\
              Subject: Quarterly   report\r\nDate: Mon, 3 Jun 2024 09:05:00 +0200\r\n\r\n",
        );
        // Reordered, refolded, the date written another way (same instant, in UTC).
        let stored = Identity::new(
            b"Date: Mon, 03 Jun 2024 07:05:00 +0000\r\nSubject: Quarterly\r\n report\r\n\
              To: bob@example.org\r\nFrom: Alice <alice@example.org>\r\n\r\n",
        );
        assert_eq!(sent, stored);
        assert_eq!(sent.fields(), stored.fields());
        assert!(!sent.has_message_id());
        // Another subject, another instant: another message.
        let other = Identity::new(
            b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n\
              Subject: Quarterly report 2\r\nDate: Mon, 3 Jun 2024 09:05:00 +0200\r\n\r\n",
        );
        assert_ne!(sent, other);
        let later = Identity::new(
            b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n\
              Subject: Quarterly report\r\nDate: Mon, 3 Jun 2024 09:05:01 +0200\r\n\r\n",
        );
        assert_ne!(sent, later);
    }

    #[test]
    fn a_message_id_given_by_the_server_keeps_the_fields_digest() {
        let sent = Identity::new(b"From: a@example.org\r\nSubject: hello\r\n\r\n");
        let stored = Identity::new(
            b"Message-ID: <AM0PR01MB@eurprd01.prod.exchangelabs.com>\r\n\
              From: a@example.org\r\nSubject: hello\r\n\r\n",
        );
        assert!(stored.has_message_id());
        assert_ne!(sent, stored, "not the same identity");
        assert_eq!(sent.fields(), stored.fields(), "but the same fields");
        assert_eq!(
            Identity::new(b"Message-ID: <a@example.org>\r\n\r\n"),
            Identity::new(b"message-id:\r\n  <a@example.org> \r\nSubject: other\r\n\r\n"),
            "a Message-ID is the identity whatever the other fields"
        );
    }
}
