//! Folders: listing a server's folders (LIST with special-use attributes, RFC 6154), decoding
//! their modified UTF-7 names (RFC 3501 §5.1.3), and mapping source folders to target folders.
//!
//! Folder paths are handled in a logical form — UTF-8, `/` between levels, without the server's
//! personal namespace prefix (RFC 2342: Cyrus's Debian default puts every folder under `INBOX.`)
//! — so that the plan's `map`, `include` and `exclude` read the same whatever the servers'
//! separators and prefixes are: `INBOX.Archive` on one server is `Archive` on a server without
//! a prefix, and back. The mapping ([`map_folders`]) is pure: explicit `map` first, then
//! special-use (source `\Sent` → the target's `\Sent`, and so on), then the same path.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Serialize;

use super::connect::Session;
use super::error::ImapError;
use crate::plan::model::CopyOptions;

/// RFC 6154 special uses that are mapped automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
}

impl SpecialUse {
    /// The attribute as IMAP writes it (`\Sent`).
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Archive => "\\Archive",
        }
    }
}

/// A folder as a server lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteFolder {
    /// The name on the wire (modified UTF-7, the server's separator).
    pub wire: String,
    /// Logical path: UTF-8, `/` between levels; `INBOX` for the inbox.
    pub path: String,
    pub separator: Option<char>,
    pub special: Option<SpecialUse>,
    /// `\Noselect` / `\NonExistent` folders hold no messages.
    pub selectable: bool,
}

/// Where one source folder goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FolderMapping {
    pub source: RemoteFolder,
    /// Logical path on the target.
    pub target_path: String,
    /// The target name on the wire (modified UTF-7, the target's separator).
    pub target_wire: String,
    /// Whether the target already has it.
    pub target_exists: bool,
    /// Why this target: `map`, `special-use`, `same-path`.
    pub reason: &'static str,
    /// The path the target folder gets instead of `target_path`, when the target's separator
    /// is in one of its names (`Releases/v1.2` becomes `Releases/v1_2` on a `.` server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renamed: Option<String>,
}

/// A server's personal namespace (RFC 2342): the prefix of the user's own folders (on the wire,
/// e.g. `INBOX.`; empty for most servers) and its hierarchy separator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Namespace {
    pub prefix: String,
    pub separator: Option<char>,
}

impl Namespace {
    /// Logical path → wire name on this server: the prefix, then the path with its separator.
    /// `INBOX` is `INBOX` whatever the prefix.
    pub fn wire_name(&self, path: &str) -> String {
        let name = wire_name(path, self.separator);
        if name == "INBOX" {
            name
        } else {
            format!("{}{name}", self.prefix)
        }
    }

    /// Wire name → logical path: the prefix taken off, where the name has it.
    pub fn logical_path(&self, wire: &str, separator: Option<char>) -> String {
        let inner = wire
            .strip_prefix(self.prefix.as_str())
            .filter(|rest| !self.prefix.is_empty() && !rest.is_empty())
            .unwrap_or(wire);
        logical_path(inner, separator)
    }
}

/// LIST every folder of the session's account.
pub async fn list(session: &mut Session, server: &str) -> Result<Vec<RemoteFolder>, ImapError> {
    Ok(list_with_namespace(session, server).await?.0)
}

/// The personal namespace (NAMESPACE, RFC 2342), then every folder (LIST), paths in logical
/// form. A server without NAMESPACE has no prefix; the separator then comes from LIST.
pub async fn list_with_namespace(
    session: &mut Session,
    server: &str,
) -> Result<(Vec<RemoteFolder>, Namespace), ImapError> {
    let activity = "listing folders";
    let mut namespace = personal_namespace(session, server).await?;
    let limit = super::timeout::op_timeout(0);
    let names: Vec<async_imap::types::Name> = tokio::time::timeout(limit, async {
        session
            .list(Some(""), Some("*"))
            .await
            .map_err(|e| ImapError::from_imap(server, activity, e))?
            .try_collect()
            .await
            .map_err(|e| ImapError::from_imap(server, activity, e))
    })
    .await
    .map_err(|_| ImapError::timeout(server, activity, limit))??;
    if namespace.separator.is_none() {
        namespace.separator = names
            .iter()
            .find_map(|n| n.delimiter().and_then(|d| d.chars().next()));
    }
    let mut folders: Vec<RemoteFolder> =
        names.iter().map(|n| remote_folder(n, &namespace)).collect();
    folders.sort_by(|a, b| a.path.cmp(&b.path));
    folders.dedup_by(|a, b| a.wire == b.wire);
    Ok((folders, namespace))
}

/// Ask the server's personal namespace. The IMAP library does not know the NAMESPACE answer,
/// so the command is written and its answer read on the raw connection, which is idle here
/// (every earlier answer read): nothing else is in flight, and reading stops at the tagged
/// answer. A server that does not know the command (BAD) has no prefix.
async fn personal_namespace(session: &mut Session, server: &str) -> Result<Namespace, ImapError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const TAG: &str = "mpns";
    let activity = "reading the personal namespace (NAMESPACE)";
    let limit = super::timeout::op_timeout(0);
    let net = |e: std::io::Error| {
        ImapError::new(
            super::error::ImapErrorKind::Network,
            server,
            activity,
            e.to_string(),
        )
    };
    let stream = session.get_mut();
    let answer = tokio::time::timeout(limit, async {
        stream
            .write_all(format!("{TAG} NAMESPACE\r\n").as_bytes())
            .await
            .map_err(net)?;
        stream.flush().await.map_err(net)?;
        let mut text: Vec<u8> = Vec::new();
        let mut byte = [0u8; 1];
        // Byte by byte: not one byte past the tagged answer may be taken from the library.
        loop {
            if stream.read(&mut byte).await.map_err(net)? == 0 {
                return Err(net(std::io::ErrorKind::UnexpectedEof.into()));
            }
            text.push(byte[0]);
            if text.ends_with(b"\r\n") {
                let start = text[..text.len() - 2]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1);
                if text[start..].starts_with(format!("{TAG} ").as_bytes()) {
                    return Ok(String::from_utf8_lossy(&text).into_owned());
                }
            }
            if text.len() > 64 * 1024 {
                return Err(net(std::io::Error::other("NAMESPACE answer too long")));
            }
        }
    })
    .await
    .map_err(|_| ImapError::timeout(server, activity, limit))??;
    Ok(answer.lines().find_map(parse_namespace).unwrap_or_default())
}

/// The personal namespace of a `* NAMESPACE` line: its first entry's prefix and separator.
fn parse_namespace(line: &str) -> Option<Namespace> {
    let rest = line.trim_end();
    let rest = rest
        .get(..12)
        .filter(|head| head.eq_ignore_ascii_case("* NAMESPACE "))
        .map(|_| &rest[12..])?;
    let rest = rest.strip_prefix("((")?;
    let (prefix, rest) = quoted(rest)?;
    let rest = rest.trim_start();
    let separator = if rest.get(..3).is_some_and(|n| n.eq_ignore_ascii_case("NIL")) {
        None
    } else {
        quoted(rest)?.0.chars().next()
    };
    Some(Namespace { prefix, separator })
}

/// An IMAP quoted string at the start of `s` (`"…"`, with `\\` and `\"`), and what follows.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.strip_prefix('"')?.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, &s[i + 2..])),
            c => out.push(c),
        }
    }
    None
}

fn remote_folder(name: &async_imap::types::Name, namespace: &Namespace) -> RemoteFolder {
    use async_imap::types::NameAttribute as A;
    let separator = name.delimiter().and_then(|d| d.chars().next());
    let mut special = None;
    let mut selectable = true;
    for attr in name.attributes() {
        match attr {
            A::Sent => special = Some(SpecialUse::Sent),
            A::Drafts => special = Some(SpecialUse::Drafts),
            A::Trash => special = Some(SpecialUse::Trash),
            A::Junk => special = Some(SpecialUse::Junk),
            A::Archive => special = Some(SpecialUse::Archive),
            A::NoSelect => selectable = false,
            A::Extension(e) if e.eq_ignore_ascii_case("\\NonExistent") => selectable = false,
            _ => {}
        }
    }
    RemoteFolder {
        wire: name.name().to_owned(),
        path: namespace.logical_path(name.name(), separator),
        separator,
        special,
        selectable,
    }
}

/// Wire name → logical path.
pub fn logical_path(wire: &str, separator: Option<char>) -> String {
    if wire.eq_ignore_ascii_case("INBOX") {
        return "INBOX".to_owned();
    }
    let decoded = utf7_imap::decode_utf7_imap(wire.to_owned());
    match separator {
        Some(sep) if sep != '/' => decoded
            .split(sep)
            .map(|part| part.replace('/', "_"))
            .collect::<Vec<_>>()
            .join("/"),
        _ => decoded,
    }
}

/// Logical path → wire name for a server with `separator`.
pub fn wire_name(path: &str, separator: Option<char>) -> String {
    if path.eq_ignore_ascii_case("INBOX") {
        return "INBOX".to_owned();
    }
    let joined = match separator {
        Some(sep) if sep != '/' => path
            .split('/')
            .map(|part| part.replace(sep, "_"))
            .collect::<Vec<_>>()
            .join(&sep.to_string()),
        _ => path.to_owned(),
    };
    utf7_imap::encode_utf7_imap(joined)
}

/// Compiled `include`/`exclude` globs.
#[derive(Debug)]
pub struct Filter {
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl Filter {
    /// The plan's globs were checked by validation; a pattern that still fails to compile
    /// matches nothing.
    pub fn new(options: &CopyOptions) -> Filter {
        let build = |patterns: &[String]| {
            let mut b = GlobSetBuilder::new();
            for p in patterns {
                if let Ok(g) = Glob::new(p) {
                    b.add(g);
                }
            }
            b.build().unwrap_or_else(|_| GlobSet::empty())
        };
        Filter {
            include: (!options.include.is_empty()).then(|| build(&options.include)),
            exclude: build(&options.exclude),
        }
    }

    pub fn takes(&self, path: &str) -> bool {
        self.include.as_ref().is_none_or(|i| i.is_match(path)) && !self.exclude.is_match(path)
    }
}

/// Map every selectable, included source folder to its target (named in the target's
/// `namespace`). Pure.
pub fn map_folders(
    source: &[RemoteFolder],
    target: &[RemoteFolder],
    namespace: &Namespace,
    options: &CopyOptions,
) -> Vec<FolderMapping> {
    let filter = Filter::new(options);
    let by_special: BTreeMap<SpecialUse, &RemoteFolder> = target
        .iter()
        .filter_map(|f| f.special.map(|s| (s, f)))
        .collect();
    let existing: BTreeMap<&str, &RemoteFolder> =
        target.iter().map(|f| (f.path.as_str(), f)).collect();

    let mut out = Vec::new();
    for folder in source.iter().filter(|f| f.selectable) {
        if !filter.takes(&folder.path) {
            continue;
        }
        let (target_path, reason) = if let Some(to) = options.folder_map.get(&folder.path) {
            (to.clone(), "map")
        } else if let Some(t) = folder.special.and_then(|s| by_special.get(&s)) {
            (t.path.clone(), "special-use")
        } else {
            (folder.path.clone(), "same-path")
        };
        let found = existing.get(target_path.as_str());
        let target_wire =
            found.map_or_else(|| namespace.wire_name(&target_path), |f| f.wire.clone());
        // A character the target cannot hold in a name (its separator) became `_`.
        let as_written = namespace.logical_path(&target_wire, namespace.separator);
        out.push(FolderMapping {
            source: folder.clone(),
            target_wire,
            target_exists: found.is_some_and(|f| f.selectable),
            renamed: (found.is_none() && as_written != target_path).then_some(as_written),
            target_path,
            reason,
        });
    }
    out
}

/// Wire names of `path`'s parents then `path`, for creating a folder with its parents.
pub fn with_parents(path: &str, namespace: &Namespace) -> Vec<String> {
    let parts: Vec<&str> = path.split('/').collect();
    (1..=parts.len())
        .map(|n| namespace.wire_name(&parts[..n].join("/")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(path: &str, special: Option<SpecialUse>) -> RemoteFolder {
        RemoteFolder {
            wire: wire_name(path, Some('.')),
            path: path.to_owned(),
            separator: Some('.'),
            special,
            selectable: true,
        }
    }

    #[test]
    fn modified_utf7_round_trips_and_separators_translate() {
        assert_eq!(wire_name("Reçus/Été", Some('.')), "Re&AOc-us.&AMk-t&AOk-");
        assert_eq!(
            logical_path("Re&AOc-us.&AMk-t&AOk-", Some('.')),
            "Reçus/Été"
        );
        assert_eq!(wire_name("日本語", Some('/')), "&ZeVnLIqe-");
        assert_eq!(logical_path("inbox", Some('/')), "INBOX");
        assert_eq!(wire_name("A&B", Some('/')), "A&-B");
        assert_eq!(logical_path("A&-B", Some('/')), "A&B");
    }

    #[test]
    fn special_folders_map_by_use_then_map_then_same_path() {
        let source = vec![
            folder("INBOX", None),
            folder("Sent Items", Some(SpecialUse::Sent)),
            folder("Old/2019", None),
            folder("Spam", Some(SpecialUse::Junk)),
            folder("Private", None),
        ];
        let target = vec![
            RemoteFolder {
                wire: "Sent".into(),
                path: "Sent".into(),
                separator: Some('/'),
                special: Some(SpecialUse::Sent),
                selectable: true,
            },
            RemoteFolder {
                wire: "INBOX".into(),
                path: "INBOX".into(),
                separator: Some('/'),
                special: None,
                selectable: true,
            },
        ];
        let options = CopyOptions {
            folder_map: [("Old/2019".to_owned(), "Archive/2019".to_owned())].into(),
            exclude: vec!["Priv*".into()],
            ..CopyOptions::default()
        };
        let slash = Namespace {
            prefix: String::new(),
            separator: Some('/'),
        };
        let m = map_folders(&source, &target, &slash, &options);
        let pairs: Vec<(&str, &str, &str, bool)> = m
            .iter()
            .map(|f| {
                (
                    f.source.path.as_str(),
                    f.target_wire.as_str(),
                    f.reason,
                    f.target_exists,
                )
            })
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("INBOX", "INBOX", "same-path", true),
                ("Sent Items", "Sent", "special-use", true),
                ("Old/2019", "Archive/2019", "map", false),
                ("Spam", "Spam", "same-path", false),
            ]
        );
    }

    #[test]
    fn include_limits_and_parents_come_first() {
        let options = CopyOptions {
            include: vec!["Work/**".into(), "INBOX".into()],
            ..CopyOptions::default()
        };
        let f = Filter::new(&options);
        assert!(f.takes("INBOX") && f.takes("Work/a/b") && !f.takes("Home"));
        let dot = Namespace {
            prefix: String::new(),
            separator: Some('.'),
        };
        assert_eq!(with_parents("a/b/c", &dot), vec!["a", "a.b", "a.b.c"]);
        let all = CopyOptions::default();
        let m = map_folders(&[folder("Releases/v1.2", None)], &[], &dot, &all);
        assert_eq!(m[0].target_wire, "Releases.v1_2");
        assert_eq!(m[0].renamed.as_deref(), Some("Releases/v1_2"));
        let m = map_folders(&[folder("Work/2024", None)], &[], &dot, &all);
        assert_eq!(m[0].renamed, None);
    }

    #[test]
    fn a_namespace_prefix_is_taken_off_and_put_back() {
        let cyrus = parse_namespace("* NAMESPACE ((\"INBOX.\" \".\")) ((\"user.\" \".\")) NIL")
            .expect("parsed");
        assert_eq!(cyrus.prefix, "INBOX.");
        assert_eq!(cyrus.separator, Some('.'));
        assert_eq!(
            cyrus.logical_path("INBOX.Archive.2019", Some('.')),
            "Archive/2019"
        );
        assert_eq!(cyrus.logical_path("INBOX", Some('.')), "INBOX");
        assert_eq!(cyrus.wire_name("Archive/2019"), "INBOX.Archive.2019");
        assert_eq!(cyrus.wire_name("INBOX"), "INBOX");
        assert_eq!(
            with_parents("Work/2024", &cyrus),
            vec!["INBOX.Work", "INBOX.Work.2024"]
        );
        let dovecot = parse_namespace("* NAMESPACE ((\"\" \"/\")) NIL NIL").expect("parsed");
        assert_eq!(dovecot.prefix, "");
        assert_eq!(
            dovecot.logical_path("Archive/2019", Some('/')),
            "Archive/2019"
        );
        assert_eq!(parse_namespace("* NAMESPACE NIL NIL NIL"), None);
        assert_eq!(parse_namespace("* OK hello"), None);
        let odd = parse_namespace("* namespace ((\"Mail\\\\\" NIL)) NIL NIL").expect("parsed");
        assert_eq!(odd.prefix, "Mail\\");
        assert_eq!(odd.separator, None);
    }
}
