//! Whole-mailbox snapshots over IMAP, compared as multisets: [`snapshot`] lists every selectable
//! folder (names decoded to UTF-8) and every message as a [`MessageKey`] (folder, SHA-256 of the
//! exact `BODY[]` bytes, sorted flags without `\Recent`, INTERNALDATE as a Unix time), counted.
//! Two mailboxes hold the same mail exactly when their [`Multiset`]s are equal; [`diff`] says
//! what differs in words fit for an assert message. Also [`folder_list`] and [`message_count`].
//!
//! Snapshots only read: folders are opened with EXAMINE and bodies fetched with `BODY.PEEK[]`, so taking
//! one changes neither `\Seen` nor `\Recent`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;

use async_imap::types::NameAttribute;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};

use super::corpus::format_internal_date;
use super::dovecot::Dovecot;
use super::imap::{Session, block_on, connect, decode_folder, flag_name};

/// One message as a migration must preserve it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageKey {
    /// The folder, UTF-8, `/`-separated.
    pub folder: String,
    /// SHA-256 of the exact message bytes, lowercase hex.
    pub digest: String,
    /// Flags and keywords as written in IMAP, sorted, without `\Recent`.
    pub flags: Vec<String>,
    /// INTERNALDATE in seconds since the Unix epoch (servers may change its time zone).
    pub internal_date: i64,
}

impl MessageKey {
    /// The key of `bytes` in `folder`; `flags` are sorted here.
    pub fn new(folder: &str, bytes: &[u8], flags: &[String], internal_date: i64) -> MessageKey {
        let mut flags = flags.to_vec();
        flags.sort();
        flags.dedup();
        MessageKey {
            folder: folder.to_owned(),
            digest: digest(bytes),
            flags,
            internal_date,
        }
    }
}

/// A mailbox's folders and messages; messages counted, since copies are legitimate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Multiset {
    /// Every selectable folder, empty ones included.
    pub folders: BTreeSet<String>,
    /// Each distinct message and how many times it occurs.
    pub messages: BTreeMap<MessageKey, usize>,
}

impl Multiset {
    /// Counts one more occurrence of `key`.
    pub fn insert(&mut self, key: MessageKey) {
        *self.messages.entry(key).or_default() += 1;
    }

    /// The number of messages, copies included.
    pub fn message_total(&self) -> usize {
        self.messages.values().sum()
    }

    /// The same mail with every folder renamed by `name` (e.g. a server's `INBOX.Work.2024` to
    /// the logical `Work/2024`), to compare servers that name folders differently.
    pub fn renamed(&self, name: impl Fn(&str) -> String) -> Multiset {
        let mut out = Multiset {
            folders: self.folders.iter().map(|f| name(f)).collect(),
            ..Multiset::default()
        };
        for (key, count) in &self.messages {
            let key = MessageKey {
                folder: name(&key.folder),
                ..key.clone()
            };
            *out.messages.entry(key).or_default() += count;
        }
        out
    }

    /// The same mail with every keyword (flags not starting with `\\`) dropped: what a server
    /// that keeps no keywords can hold.
    pub fn without_keywords(&self) -> Multiset {
        let mut out = Multiset {
            folders: self.folders.clone(),
            ..Multiset::default()
        };
        for (key, count) in &self.messages {
            let key = MessageKey {
                flags: key
                    .flags
                    .iter()
                    .filter(|f| f.starts_with('\\'))
                    .cloned()
                    .collect(),
                ..key.clone()
            };
            *out.messages.entry(key).or_default() += count;
        }
        out
    }
}

/// What differs between `expected` and `actual`, one line each; empty when they are equal.
pub fn diff(expected: &Multiset, actual: &Multiset) -> String {
    let mut out = String::new();
    for folder in expected.folders.difference(&actual.folders) {
        writeln!(out, "folder missing: {folder}").expect("write to a String");
    }
    for folder in actual.folders.difference(&expected.folders) {
        writeln!(out, "folder unexpected: {folder}").expect("write to a String");
    }
    let keys: BTreeSet<&MessageKey> = expected
        .messages
        .keys()
        .chain(actual.messages.keys())
        .collect();
    for key in keys {
        let want = expected.messages.get(key).copied().unwrap_or(0);
        let got = actual.messages.get(key).copied().unwrap_or(0);
        if want != got {
            writeln!(
                out,
                "message in {:?} sha256 {} flags [{}] date {}: expected {want}, found {got}",
                key.folder,
                &key.digest[..16],
                key.flags.join(" "),
                format_internal_date(key.internal_date, 0),
            )
            .expect("write to a String");
        }
    }
    if !out.is_empty() {
        writeln!(
            out,
            "(expected {} folders, {} messages; found {} folders, {} messages)",
            expected.folders.len(),
            expected.message_total(),
            actual.folders.len(),
            actual.message_total()
        )
        .expect("write to a String");
    }
    out
}

/// SHA-256 of `bytes` in lowercase hex.
pub fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut hex, byte| {
            write!(hex, "{byte:02x}").expect("write to a String");
            hex
        })
}

/// A folder as LIST reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// UTF-8 name, `/`-separated.
    pub name: String,
    /// The name as sent on the wire (modified UTF-7).
    pub wire_name: String,
    /// Attributes as written in IMAP (`\HasNoChildren`, `\Sent`, …).
    pub attributes: Vec<String>,
}

impl Folder {
    /// Whether the folder can be selected (no `\Noselect`).
    pub fn selectable(&self) -> bool {
        !self
            .attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case("\\Noselect"))
    }
}

/// Reads the whole mailbox of `user` on `dovecot`; see the module doc.
pub fn snapshot(dovecot: &Dovecot, user: &str, password: &str) -> Multiset {
    snapshot_at(dovecot.imap_addr(), user, password)
}

/// [`snapshot`] of any clear-text IMAP server (e.g. through a proxy).
pub fn snapshot_at(addr: SocketAddr, user: &str, password: &str) -> Multiset {
    block_on(|| async move {
        let mut session = connect(addr, user, password).await;
        let mut set = Multiset::default();
        for folder in list(&mut session).await {
            if !folder.selectable() {
                continue;
            }
            let mailbox = session
                .examine(&folder.wire_name)
                .await
                .unwrap_or_else(|e| panic!("EXAMINE {:?}: {e}", folder.name));
            if mailbox.exists > 0 {
                let fetches: Vec<_> = session
                    .fetch("1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
                    .await
                    .unwrap_or_else(|e| panic!("FETCH in {:?}: {e}", folder.name))
                    .try_collect()
                    .await
                    .unwrap_or_else(|e| panic!("FETCH responses in {:?}: {e}", folder.name));
                for fetch in &fetches {
                    let flags: Vec<String> = fetch.flags().filter_map(|f| flag_name(&f)).collect();
                    let date = fetch
                        .internal_date()
                        .expect("FETCH INTERNALDATE answered")
                        .timestamp();
                    let body = fetch.body().expect("FETCH BODY[] answered");
                    set.insert(MessageKey::new(&folder.name, body, &flags, date));
                }
            }
            set.folders.insert(folder.name);
        }
        session.logout().await.ok();
        set
    })
}

/// Every folder LIST "" "*" returns for `user`, in the server's order.
pub fn folder_list(dovecot: &Dovecot, user: &str, password: &str) -> Vec<Folder> {
    let addr = dovecot.imap_addr();
    block_on(|| async move {
        let mut session = connect(addr, user, password).await;
        let folders = list(&mut session).await;
        session.logout().await.ok();
        folders
    })
}

/// The number of messages in `folder` (UTF-8 name), from STATUS.
pub fn message_count(dovecot: &Dovecot, user: &str, password: &str, folder: &str) -> u32 {
    let addr = dovecot.imap_addr();
    block_on(|| async move {
        let mut session = connect(addr, user, password).await;
        let status = session
            .status(super::imap::encode_folder(folder), "(MESSAGES)")
            .await
            .unwrap_or_else(|e| panic!("STATUS {folder:?}: {e}"));
        session.logout().await.ok();
        status.exists
    })
}

async fn list(session: &mut Session) -> Vec<Folder> {
    let names: Vec<_> = session
        .list(Some(""), Some("*"))
        .await
        .expect("LIST")
        .try_collect()
        .await
        .expect("LIST responses");
    names
        .iter()
        .map(|name| Folder {
            name: decode_folder(name.name()),
            wire_name: name.name().to_owned(),
            attributes: name.attributes().iter().map(attribute_name).collect(),
        })
        .collect()
}

fn attribute_name(attribute: &NameAttribute<'_>) -> String {
    match attribute {
        NameAttribute::NoInferiors => "\\Noinferiors".to_owned(),
        NameAttribute::NoSelect => "\\Noselect".to_owned(),
        NameAttribute::Marked => "\\Marked".to_owned(),
        NameAttribute::Unmarked => "\\Unmarked".to_owned(),
        NameAttribute::All => "\\All".to_owned(),
        NameAttribute::Archive => "\\Archive".to_owned(),
        NameAttribute::Drafts => "\\Drafts".to_owned(),
        NameAttribute::Flagged => "\\Flagged".to_owned(),
        NameAttribute::Junk => "\\Junk".to_owned(),
        NameAttribute::Sent => "\\Sent".to_owned(),
        NameAttribute::Trash => "\\Trash".to_owned(),
        NameAttribute::Extension(other) => other.to_string(),
        // imap-proto may learn new attributes; their Debug form still tells a reader which.
        other => format!("{other:?}"),
    }
}
