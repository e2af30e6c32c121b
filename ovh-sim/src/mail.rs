//! The mail backend: the Dovecot passwd-file and maildirs that hold the simulated mailboxes, so
//! that what the API does (rename, configure, migrate, reset) shows over IMAP.
//!
//! Layout, as mailplan's test Dovecot (`tests/dovecot/dovecot.conf.in`) reads it: one line per user
//! `ADDRESS:{PLAIN}PASSWORD::::::` in the passwd-file, mail in `MAIL_ROOT/ADDRESS/` (Maildir++:
//! `cur/ new/ tmp/`, a folder `X` in `.X/`). Entry points: [`MailBackend::store`] (one side's
//! [`MailStore`]) and [`MailBackend::transfer`] (move a mailbox, possibly to the other side).
//! Invariants: the passwd-file is replaced with write-to-temp + rename, so Dovecot never reads a
//! half-written file; maildirs move with `rename` (ownership kept), or, across file systems, are
//! copied then removed; every file made here is given to the configured owner.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fixture::MailFixture;

/// Which server a mailbox lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Legacy and new MX Plan.
    MxPlan,
    /// Hosted Exchange.
    Exchange,
}

/// One passwd-file and maildir root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MailStore {
    users_file: PathBuf,
    mail_root: PathBuf,
    owner: Option<(u32, u32)>,
}

/// Both sides (the same store when the fixture names one).
#[derive(Debug)]
pub(crate) struct MailBackend {
    mxplan: MailStore,
    exchange: MailStore,
}

impl MailBackend {
    pub fn new(config: &MailFixture) -> Result<MailBackend, String> {
        let owner = match &config.owner {
            Some(name) => Some(system_ids(name)?),
            None => None,
        };
        let mxplan = MailStore {
            users_file: config.users_file.clone(),
            mail_root: config.mail_root.clone(),
            owner,
        };
        let exchange = match &config.exchange {
            Some(other) => MailStore {
                users_file: other.users_file.clone(),
                mail_root: other.mail_root.clone(),
                owner,
            },
            None => mxplan.clone(),
        };
        Ok(MailBackend { mxplan, exchange })
    }

    pub fn store(&self, side: Side) -> &MailStore {
        match side {
            Side::MxPlan => &self.mxplan,
            Side::Exchange => &self.exchange,
        }
    }

    /// Moves the mailbox `old` of `from` to `new` of `to`, whose password becomes `password`.
    pub fn transfer(
        &self,
        from: Side,
        old: &str,
        to: Side,
        new: &str,
        password: &str,
    ) -> io::Result<()> {
        let (source, target) = (self.store(from), self.store(to));
        if source == target && old == new {
            return target.set_password(new, password);
        }
        let (old_dir, new_dir) = (source.maildir(old)?, target.maildir(new)?);
        if old_dir.exists() {
            if new_dir.exists() {
                std::fs::remove_dir_all(&new_dir)?;
            }
            if let Some(parent) = new_dir.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if std::fs::rename(&old_dir, &new_dir).is_err() {
                // Another file system: copy (ownership given to the owner), then remove.
                copy_tree(&old_dir, &new_dir, target.owner)?;
                std::fs::remove_dir_all(&old_dir)?;
            }
        }
        target.set_password(new, password)?;
        if source != target || old != new {
            source.remove_user(old)?;
        }
        Ok(())
    }
}

/// The folder names OVH's migration gives the default folders on Exchange: a source folder
/// (top level, any case) → its Exchange name.
const EXCHANGE_NAMES: [(&str, &str); 7] = [
    ("sent", "Sent Items"),
    ("sent messages", "Sent Items"),
    ("trash", "Deleted Items"),
    ("deleted messages", "Deleted Items"),
    ("junk", "Junk Email"),
    ("spam", "Junk Email"),
    ("drafts", "Drafts"),
];

impl MailStore {
    /// Lays a migrated mailbox out as OVH's migration does on Exchange: with `exchange_names`,
    /// the default folders under their Exchange names; with `others_under_inbox`, every other
    /// folder under the Inbox (`Archive` → `INBOX/Archive`). Two source folders with one
    /// Exchange name are merged.
    pub fn exchange_layout(
        &self,
        address: &str,
        exchange_names: bool,
        others_under_inbox: bool,
    ) -> io::Result<()> {
        let root = self.maildir(address)?;
        let Ok(entries) = std::fs::read_dir(&root) else {
            return Ok(());
        };
        let mut folders: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|name| name.starts_with('.') && name.len() > 1)
            .collect();
        folders.sort();
        for dir in folders {
            let name = &dir[1..];
            let (top, rest) = name.split_once('.').map_or((name, ""), |(t, r)| (t, r));
            let default_folder = EXCHANGE_NAMES
                .iter()
                .find(|(from, _)| from.eq_ignore_ascii_case(top) && rest.is_empty());
            let renamed = match default_folder {
                Some((_, exchange)) if exchange_names => format!(".{exchange}"),
                Some(_) => continue,
                _ if others_under_inbox && !top.eq_ignore_ascii_case("INBOX") => {
                    format!(".INBOX.{name}")
                }
                _ => continue,
            };
            if renamed == dir {
                continue;
            }
            let (from, to) = (root.join(&dir), root.join(&renamed));
            if to.exists() {
                for sub in ["cur", "new"] {
                    std::fs::create_dir_all(to.join(sub))?;
                    for file in std::fs::read_dir(from.join(sub))?.filter_map(Result::ok) {
                        // A Maildir name is unique per folder only: keep both when they meet.
                        let name = file.file_name().to_string_lossy().into_owned();
                        let mut dest = to.join(sub).join(&name);
                        let mut n = 0;
                        while dest.exists() {
                            n += 1;
                            let (unique, info) = name.split_once(':').unwrap_or((&name, ""));
                            let info = if info.is_empty() {
                                String::new()
                            } else {
                                format!(":{info}")
                            };
                            dest = to.join(sub).join(format!("{unique}.m{n}{info}"));
                        }
                        std::fs::rename(file.path(), dest)?;
                    }
                }
                std::fs::remove_dir_all(&from)?;
            } else {
                std::fs::rename(&from, &to)?;
            }
        }
        // Dovecot's folder list cache and UID lists name the old folders: let it read again.
        for entry in std::fs::read_dir(&root)?.filter_map(Result::ok) {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("dovecot.list.index") || name == "subscriptions" {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// `MAIL_ROOT/ADDRESS`, refusing names that would leave the root.
    fn maildir(&self, address: &str) -> io::Result<PathBuf> {
        check_field(address)?;
        if address.contains('/') || address.starts_with('.') || address.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{address:?} cannot be a maildir name"),
            ));
        }
        Ok(self.mail_root.join(address))
    }

    /// Adds the user (or changes its password) and seeds `messages` (folder → count).
    pub fn create(
        &self,
        address: &str,
        password: &str,
        messages: &BTreeMap<String, u32>,
    ) -> io::Result<()> {
        self.set_password(address, password)?;
        if messages.is_empty() {
            return Ok(());
        }
        let root = self.maildir(address)?;
        for (folder, count) in messages {
            let dir = if folder.eq_ignore_ascii_case("INBOX") {
                root.clone()
            } else {
                root.join(format!(".{}", folder.replace('/', ".")))
            };
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(dir.join(sub))?;
            }
            for index in 1..=*count {
                let name = format!(
                    "{}.M{index}P{}.ovh-sim",
                    crate::clock::now_unix(),
                    std::process::id()
                );
                let text = format!(
                    "From: Seed <seed@ovh-sim.invalid>\nTo: <{address}>\nSubject: {folder} message {index}\nDate: Mon, 1 Jan 2024 10:00:00 +0000\nMessage-ID: <{index}.{folder}.{address}@ovh-sim>\n\nMessage {index} of {folder} for {address}.\n"
                );
                std::fs::write(dir.join("cur").join(format!("{name}:2,S")), text)?;
            }
        }
        chown_tree(&root, self.owner)
    }

    /// Adds the user or replaces its password.
    pub fn set_password(&self, address: &str, password: &str) -> io::Result<()> {
        check_field(address)?;
        check_field(password)?;
        self.rewrite(
            address,
            Some(&format!("{address}:{{PLAIN}}{password}::::::")),
        )
    }

    /// Removes the user's line (not its mail).
    pub fn remove_user(&self, address: &str) -> io::Result<()> {
        self.rewrite(address, None)
    }

    /// Removes the user and its mail.
    pub fn delete(&self, address: &str) -> io::Result<()> {
        self.remove_user(address)?;
        let dir = self.maildir(address)?;
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        Ok(())
    }

    /// The passwd-file without `address`'s line, plus `line` if given; replaced atomically.
    fn rewrite(&self, address: &str, line: Option<&str>) -> io::Result<()> {
        // Task effects run concurrently: without this lock, two read-modify-writes of the same
        // file lose each other's lines (and share the temporary file).
        static REWRITE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = REWRITE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = match std::fs::read_to_string(&self.users_file) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(err),
        };
        let mut lines: Vec<&str> = old
            .lines()
            .filter(|existing| !existing.is_empty() && existing.split(':').next() != Some(address))
            .collect();
        if let Some(line) = line {
            lines.push(line);
        }
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        let file_name = self.users_file.file_name().map_or_else(
            || "users".into(),
            |name| name.to_string_lossy().into_owned(),
        );
        let tmp = self
            .users_file
            .with_file_name(format!(".{file_name}.ovh-sim.tmp"));
        std::fs::write(&tmp, text)?;
        if let Ok(metadata) = std::fs::metadata(&self.users_file) {
            std::fs::set_permissions(&tmp, metadata.permissions())?;
        }
        std::fs::rename(&tmp, &self.users_file)
    }
}

/// A passwd-file field cannot hold `:` or a line break.
fn check_field(field: &str) -> io::Result<()> {
    if field.contains([':', '\n', '\r']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a passwd-file field cannot hold ':' or line breaks",
        ));
    }
    Ok(())
}

/// The uid and gid of a system user, from `id` (to stay free of libc).
fn system_ids(name: &str) -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, name])
            .output()
            .map_err(|err| format!("cannot run id: {err}"))?;
        if !out.status.success() {
            return Err(format!("no system user {name:?} (mail owner)"));
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|err| format!("id {flag} {name}: {err}"))
    };
    Ok((id("-u")?, id("-g")?))
}

fn chown_tree(path: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    let Some((uid, gid)) = owner else {
        return Ok(());
    };
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), owner)?;
        }
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        chown_one(to, owner)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()), owner)?;
        }
    } else {
        std::fs::copy(from, to)?;
        chown_one(to, owner)?;
    }
    Ok(())
}

fn chown_one(path: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    match owner {
        Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> MailStore {
        MailStore {
            users_file: dir.join("users"),
            mail_root: dir.join("mail"),
            owner: None,
        }
    }

    #[test]
    fn passwd_lines_are_replaced_and_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store(dir.path());
        std::fs::write(dir.path().join("users"), "other:{PLAIN}x::::::\n").expect("write");
        store.set_password("a@x.test", "one").expect("add");
        store.set_password("a@x.test", "two").expect("replace");
        let text = std::fs::read_to_string(dir.path().join("users")).expect("read");
        assert_eq!(text, "other:{PLAIN}x::::::\na@x.test:{PLAIN}two::::::\n");
        store.remove_user("a@x.test").expect("remove");
        let text = std::fs::read_to_string(dir.path().join("users")).expect("read");
        assert_eq!(text, "other:{PLAIN}x::::::\n");
        assert!(store.set_password("b@x.test", "has:colon").is_err());
        assert!(store.maildir("../etc").is_err());
    }

    #[test]
    fn seeded_messages_move_with_their_mailbox() {
        let dir = tempfile::tempdir().expect("temp dir");
        let other = tempfile::tempdir().expect("temp dir");
        let backend = MailBackend {
            mxplan: store(dir.path()),
            exchange: store(other.path()),
        };
        let messages = BTreeMap::from([("INBOX".to_owned(), 2), ("Archive".to_owned(), 1)]);
        backend
            .store(Side::MxPlan)
            .create("a@x.test", "pw", &messages)
            .expect("seed");
        assert_eq!(
            std::fs::read_dir(dir.path().join("mail/a@x.test/cur"))
                .expect("cur")
                .count(),
            2
        );
        backend
            .transfer(Side::MxPlan, "a@x.test", Side::Exchange, "a@x.test", "pw")
            .expect("move");
        assert!(!dir.path().join("mail/a@x.test").exists());
        let moved = other.path().join("mail/a@x.test/.Archive/cur");
        assert_eq!(std::fs::read_dir(moved).expect("moved").count(), 1);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("users")).expect("read"),
            ""
        );
        assert_eq!(
            std::fs::read_to_string(other.path().join("users")).expect("read"),
            "a@x.test:{PLAIN}pw::::::\n"
        );
    }
}
