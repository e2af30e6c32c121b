//! A message's identity across servers: its Message-ID or — without one — a digest of a few
//! header fields. Identities are compared as multisets, so two distinct messages that share a
//! Message-ID are both copied, and two identical copies of one message stay two. The size is
//! not part of it but compared beside it (see `copy::difference`): a server may report another
//! size for the very message it was given (Exchange gives estimated RFC822.SIZEs unless its
//! `EnableExactRFC822Size` is set; a copy made by mbsync carries an added `X-TUID` header).

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// The header fields fetched to compute an identity (`BODY.PEEK[HEADER.FIELDS (…)]`).
pub const IDENTITY_FIELDS: &str = "MESSAGE-ID DATE FROM TO SUBJECT";

/// A message's identity; comparable between the source and the target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(String);

impl Identity {
    /// From the returned header fields.
    pub fn new(header_fields: &[u8]) -> Identity {
        match message_id(header_fields) {
            Some(id) => Identity(id),
            None => {
                let digest = Sha256::digest(header_fields);
                let hex = digest[..8].iter().fold(String::new(), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                });
                Identity(format!("headers:{hex}"))
            }
        }
    }

    /// No identity (nothing read to compute one); takes no memory. Only for messages that are
    /// not compared, e.g. those of a source folder whose target is new.
    pub fn blank() -> Identity {
        Identity(String::new())
    }

    /// Printable form for reports (`<id@host>` or `headers:…`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The Message-ID field's value, unfolded and trimmed; `None` when absent or empty.
pub fn message_id(header: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n')).peekable();
    while let Some(line) = lines.next() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("message-id") || name.starts_with([' ', '\t']) {
            continue;
        }
        let mut value = value.trim().to_owned();
        while let Some(next) = lines.peek() {
            if next.starts_with([' ', '\t']) {
                value.push_str(next.trim());
                lines.next();
            } else {
                break;
            }
        }
        return (!value.is_empty()).then_some(value);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
