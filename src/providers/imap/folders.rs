//! Folders: listing a server's folders (LIST with special-use attributes, RFC 6154), decoding
//! their modified UTF-7 names (RFC 3501 §5.1.3), and mapping source folders to target folders.
//!
//! Folder paths are handled in a logical form — UTF-8, `/` between levels — so that the plan's
//! `map`, `include` and `exclude` read the same whatever the servers' separators are. The
//! mapping ([`map_folders`]) is pure: explicit `map` first, then special-use (source `\Sent` →
//! the target's `\Sent`, and so on), then the same path.

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
}

/// LIST every folder of the session's account.
pub async fn list(session: &mut Session, server: &str) -> Result<Vec<RemoteFolder>, ImapError> {
    let activity = "listing folders";
    let names: Vec<async_imap::types::Name> = session
        .list(Some(""), Some("*"))
        .await
        .map_err(|e| ImapError::from_imap(server, activity, e))?
        .try_collect()
        .await
        .map_err(|e| ImapError::from_imap(server, activity, e))?;
    let mut folders: Vec<RemoteFolder> = names.iter().map(remote_folder).collect();
    folders.sort_by(|a, b| a.path.cmp(&b.path));
    folders.dedup_by(|a, b| a.wire == b.wire);
    Ok(folders)
}

fn remote_folder(name: &async_imap::types::Name) -> RemoteFolder {
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
        path: logical_path(name.name(), separator),
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

/// Map every selectable, included source folder to its target. Pure.
pub fn map_folders(
    source: &[RemoteFolder],
    target: &[RemoteFolder],
    options: &CopyOptions,
) -> Vec<FolderMapping> {
    let filter = Filter::new(options);
    let target_separator = target.iter().find_map(|f| f.separator).or(Some('/'));
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
        out.push(FolderMapping {
            source: folder.clone(),
            target_wire: found.map_or_else(
                || wire_name(&target_path, target_separator),
                |f| f.wire.clone(),
            ),
            target_exists: found.is_some_and(|f| f.selectable),
            target_path,
            reason,
        });
    }
    out
}

/// Wire names of `path`'s parents then `path`, for creating a folder with its parents.
pub fn with_parents(path: &str, separator: Option<char>) -> Vec<String> {
    let parts: Vec<&str> = path.split('/').collect();
    (1..=parts.len())
        .map(|n| wire_name(&parts[..n].join("/"), separator))
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
        let m = map_folders(&source, &target, &options);
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
        assert_eq!(with_parents("a/b/c", Some('.')), vec!["a", "a.b", "a.b.c"]);
    }
}
