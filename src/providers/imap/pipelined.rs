//! Several commands on the wire at once (RFC 3501 §5.5): a whole list of folders costs one round
//! trip instead of one or two per folder. Used where the commands' answers can be told apart:
//! `STATUS` answers name their folder, and the answers of pipelined `EXAMINE`/`SELECT` and
//! `UID FETCH` commands come in order, each command's untagged answers before its tagged one
//! (a command that depends on the selected folder is never run ahead of the previous one).
//! Other commands may be run side by side and completed in any order: Dovecot completes a
//! `STATUS` sent after a long `FETCH` first, its answer arriving during the FETCH's. So every
//! completion is matched by its tag, and a `STATUS` answer by the folder it names.
//!
//! Also the helpers every pipelined reader uses (here, in the copy and on the appending side):
//! `next_response` (the next answer, within a time limit), `tagged` and `verdict` (a completion
//! and what it says), `only` (the one folder of a read).

use std::time::Duration;

use async_imap::imap_proto::{
    AttributeValue, MailboxDatum, Outcome, Response, ResponseCode, StatusAttribute,
};

use super::connect::Session;
use super::error::{ImapError, ImapErrorKind};
use super::folders::SpecialUse;
use super::identity::{FACT_FIELDS, IDENTITY_FIELDS, Identity, MessageFacts};

/// How long to wait for the next answer before calling the connection dead.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Read the next response and hand it, parsed, to `f`. No answer within `limit`, a network
/// error and the server closing the connection are errors of `activity`.
pub(super) async fn next_response<T>(
    session: &mut Session,
    server: &str,
    activity: &str,
    limit: Duration,
    f: impl FnOnce(&Response<'_>) -> T,
) -> Result<T, ImapError> {
    let response = tokio::time::timeout(limit, session.read_response())
        .await
        .map_err(|_| ImapError::timeout(server, activity, limit))?
        .map_err(|e| ImapError::from_io(server, activity, &e))?
        .ok_or_else(|| {
            ImapError::new(
                ImapErrorKind::Network,
                server,
                activity,
                "the server closed the connection",
            )
        })?;
    Ok(f(response.parsed()))
}

/// A tagged answer's tag, status and text; `None` for any other response.
pub(super) fn tagged<'r>(
    response: &'r async_imap::imap_proto::Response<'_>,
) -> Option<(
    &'r async_imap::imap_proto::RequestId,
    &'r async_imap::imap_proto::Status,
    &'r str,
)> {
    match response {
        async_imap::imap_proto::Response::Done {
            tag,
            status,
            outcome,
        } => Some((
            tag,
            status,
            outcome.information.as_deref().unwrap_or_default(),
        )),
        _ => None,
    }
}

/// A tagged answer as a result: OK, or the server's words.
pub(super) fn verdict(
    server: &str,
    activity: &str,
    status: &async_imap::imap_proto::Status,
    text: &str,
) -> Result<(), ImapError> {
    use async_imap::imap_proto::Status;
    let text = text.to_owned();
    match status {
        Status::Ok => Ok(()),
        Status::No => Err(ImapError::from_imap(
            server,
            activity,
            async_imap::error::Error::No(text),
        )),
        _ => Err(ImapError::from_imap(
            server,
            activity,
            async_imap::error::Error::Bad(text),
        )),
    }
}

/// Send every command, then read the answers; `each(i, response)` sees every untagged response
/// with the index of the first command not yet completed (the one it answers when the server
/// runs the commands one after the other, as Dovecot does for those sent here). One verdict per
/// command, whatever order the completions come in (RFC 3501 §5.5 lets a server run commands
/// side by side): a NO or BAD to one does not stop the others (a failed `EXAMINE` leaves no
/// folder selected, so the `FETCH` after it fails too rather than reading another folder).
pub async fn run(
    session: &mut Session,
    server: &str,
    commands: &[(String, String)],
    mut each: impl FnMut(usize, &Response<'_>),
) -> Result<Vec<Result<(), ImapError>>, ImapError> {
    let mut tags = Vec::with_capacity(commands.len());
    for (command, activity) in commands {
        tags.push(
            session
                .run_command(command)
                .await
                .map_err(|e| ImapError::from_imap(server, activity, e))?,
        );
    }
    let mut verdicts: Vec<Option<Result<(), ImapError>>> = std::iter::repeat_with(|| None)
        .take(commands.len())
        .collect();
    // The first command not yet completed.
    let mut current = 0;
    while current < tags.len() {
        let activity = commands[current].1.as_str();
        let (tags, each, verdicts) = (&tags, &mut each, &mut verdicts);
        next_response(session, server, activity, ANSWER_TIMEOUT, |response| {
            match tagged(response) {
                Some((tag, status, text)) => {
                    // A tag we did not send (or already answered) is not ours to judge.
                    if let Some(i) = tags.iter().position(|t| t == tag)
                        && verdicts[i].is_none()
                    {
                        verdicts[i] = Some(verdict(server, &commands[i].1, status, text));
                    }
                }
                None => each(current, response),
            }
        })
        .await?;
        while current < tags.len() && verdicts[current].is_some() {
            current += 1;
        }
    }
    Ok(verdicts.into_iter().flatten().collect())
}

/// What `STATUS` says of a folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FolderStatus {
    pub messages: u32,
    pub uid_next: Option<u32>,
    pub uid_validity: Option<u32>,
}

/// `STATUS (MESSAGES UIDNEXT UIDVALIDITY)` of every folder (wire name, logical path) at once.
pub async fn statuses(
    session: &mut Session,
    server: &str,
    folders: &[(&str, &str)],
) -> Result<Vec<Result<FolderStatus, ImapError>>, ImapError> {
    let commands: Vec<(String, String)> = folders
        .iter()
        .map(|(wire, path)| {
            (
                format!("STATUS {} (MESSAGES UIDNEXT UIDVALIDITY)", quote(wire)),
                format!("reading the status of {path}"),
            )
        })
        .collect();
    let mut found = vec![FolderStatus::default(); folders.len()];
    let verdicts = run(session, server, &commands, |current, response| {
        if let Response::MailboxData(MailboxDatum::Status { mailbox, status }) = response {
            let i = status_of(folders, mailbox, current);
            for attribute in status {
                match attribute {
                    StatusAttribute::Messages(n) => found[i].messages = *n,
                    StatusAttribute::UidNext(n) => found[i].uid_next = Some(*n),
                    StatusAttribute::UidValidity(n) => found[i].uid_validity = Some(*n),
                    _ => {}
                }
            }
        }
    })
    .await?;
    Ok(verdicts
        .into_iter()
        .zip(found)
        .map(|(verdict, status)| verdict.map(|()| status))
        .collect())
}

/// How a folder is opened before it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Read-only (`EXAMINE`): the source, and verification.
    Examine,
    /// Read-write (`SELECT`): the target, which is appended to next (Dovecot and others keep
    /// a selected folder open between APPENDs instead of reopening it for each message).
    Select,
}

/// One folder to open and read the identities of, from UID `from` up.
#[derive(Debug, Clone, Copy)]
pub struct Read<'a> {
    pub wire: &'a str,
    pub path: &'a str,
    pub from: u32,
    /// Read the identity headers; without them only UIDs and sizes are read (cheaper for the
    /// server: no message is opened) and every identity is blank. For a source folder whose
    /// target is new and empty, where nothing is compared.
    pub headers: bool,
}

/// A message as its identity: (UID, RFC822.SIZE, identity).
pub type Listed = (u32, u32, Identity);

/// A folder as [`identities`] read it.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// What the folder's opening said: the UIDs below mean something only with it.
    pub uid_validity: Option<u32>,
    /// In UID order.
    pub messages: Vec<Listed>,
    /// The flags the folder keeps, as its opening said (`PERMANENTFLAGS`; `\*`: any keyword);
    /// `None` when it did not say.
    pub permanent_flags: Option<Vec<String>>,
}

/// Which folder a `STATUS` answer is about: the one it names (a server may answer pipelined
/// commands side by side, so the answer's place says nothing certain; a folder taken for another
/// would make a pass skip its new mail), else the first command not yet completed.
fn status_of(folders: &[(&str, &str)], mailbox: &str, current: usize) -> usize {
    folders
        .iter()
        .position(|(wire, _)| *wire == mailbox)
        .or_else(|| {
            folders.iter().position(|(wire, _)| {
                wire.eq_ignore_ascii_case("INBOX") && wire.eq_ignore_ascii_case(mailbox)
            })
        })
        .unwrap_or(current)
}

/// Open each folder and read (UID, size, identity) of its messages from `from` up, every folder
/// at once: `EXAMINE`/`SELECT` then `UID FETCH from:*` per folder, all pipelined. The last
/// folder stays selected. Per folder, in UID order, only UIDs at or above `from` (`N:*` always
/// answers the highest message, even below N), with the folder's UIDVALIDITY.
pub async fn identities(
    session: &mut Session,
    server: &str,
    open: Open,
    folders: &[Read<'_>],
) -> Result<Vec<Result<Listing, ImapError>>, ImapError> {
    let verb = match open {
        Open::Examine => "EXAMINE",
        Open::Select => "SELECT",
    };
    let with_headers = format!("(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({IDENTITY_FIELDS})])");
    let mut commands = Vec::with_capacity(folders.len() * 2);
    for f in folders {
        commands.push((
            format!("{verb} {}", quote(f.wire)),
            format!("opening {}", f.path),
        ));
        let query = if f.headers {
            with_headers.as_str()
        } else {
            "(UID RFC822.SIZE)"
        };
        commands.push((
            format!("UID FETCH {}:* {query}", f.from.max(1)),
            format!("reading the message identities of {}", f.path),
        ));
    }
    let mut exists = vec![0u32; folders.len()];
    let mut listed: Vec<Listing> = vec![Listing::default(); folders.len()];
    let verdicts = run(session, server, &commands, |i, response| match response {
        Response::MailboxData(MailboxDatum::Exists(n)) if i % 2 == 0 => exists[i / 2] = *n,
        Response::Data {
            outcome:
                Outcome {
                    code: Some(ResponseCode::UidValidity(v)),
                    ..
                },
            ..
        } if i % 2 == 0 => listed[i / 2].uid_validity = Some(*v),
        Response::Data {
            outcome:
                Outcome {
                    code: Some(ResponseCode::PermanentFlags(flags)),
                    ..
                },
            ..
        } if i % 2 == 0 => {
            listed[i / 2].permanent_flags = Some(flags.iter().map(ToString::to_string).collect());
        }
        Response::Fetch(_, attributes) if i % 2 == 1 => {
            let (mut uid, mut size, mut header) = (None, None, None);
            for a in attributes {
                match a {
                    AttributeValue::Uid(u) => uid = Some(*u),
                    AttributeValue::Rfc822Size(s) => size = Some(*s),
                    AttributeValue::BodySection {
                        section: Some(_),
                        data,
                        ..
                    } => header = Some(data.as_deref().unwrap_or_default()),
                    _ => {}
                }
            }
            // A FETCH without what was asked is a flag update from another session.
            let f = &folders[i / 2];
            let header = if f.headers { header } else { Some(&[][..]) };
            if let (Some(uid), Some(header), Some(_)) = (uid, header, size)
                && uid >= f.from
            {
                let size = size.unwrap_or(0);
                let identity = if f.headers {
                    Identity::new(header)
                } else {
                    Identity::blank()
                };
                listed[i / 2].messages.push((uid, size, identity));
            }
        }
        _ => {}
    })
    .await?;
    let mut verdicts = verdicts.into_iter();
    let mut out = Vec::with_capacity(folders.len());
    for (i, mut listing) in listed.into_iter().enumerate() {
        let opened = verdicts.next().unwrap_or(Ok(()));
        let fetched = verdicts.next().unwrap_or(Ok(()));
        out.push(match (opened, fetched) {
            // An empty folder has no `1:*` to answer; some servers say BAD to it.
            (Ok(()), _) if exists[i] == 0 => Ok(Listing {
                messages: Vec::new(),
                ..listing
            }),
            (Err(e), _) | (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(())) => {
                listing.messages.sort_by_key(|(uid, _, _)| *uid);
                Ok(listing)
            }
        });
    }
    Ok(out)
}

/// Create folders (with their parents, in order) and subscribe to them, all at once. A folder
/// that already exists is not an error; one the server refuses to create (a character it does
/// not allow, a permission) is returned with its refusal, so that only the folders under it
/// fail. The outer error is the connection's.
/// Each folder: its wire name, its path (for errors) and the special use to create it with
/// (`CREATE … (USE (\Sent))`, RFC 6154), if any.
pub async fn create(
    session: &mut Session,
    server: &str,
    folders: &[(String, String, Option<SpecialUse>)],
) -> Result<Vec<(String, ImapError)>, ImapError> {
    let mut commands = Vec::new();
    for (wire, path, special) in folders {
        let with_use = special.map_or_else(String::new, |s| format!(" (USE ({}))", s.attribute()));
        commands.push((
            format!("CREATE {}{with_use}", quote(wire)),
            format!("creating folder {path}"),
        ));
        commands.push((
            format!("SUBSCRIBE {}", quote(wire)),
            format!("subscribing to {path}"),
        ));
    }
    let mut refused: Vec<(String, ImapError)> = Vec::new();
    for (i, verdict) in run(session, server, &commands, |_, _| {})
        .await?
        .into_iter()
        .enumerate()
    {
        let wire = &folders[i / 2].0;
        match verdict {
            Ok(()) => {}
            Err(e) if i % 2 == 0 && already_exists(&e) => {}
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) if i % 2 == 0 => refused.push((wire.clone(), e)),
            // Not subscribed because not created: its refusal says why.
            Err(_) if refused.iter().any(|(w, _)| w == wire) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(refused)
}

fn already_exists(e: &ImapError) -> bool {
    e.message.to_ascii_uppercase().contains("ALREADYEXISTS")
        || e.message.to_ascii_lowercase().contains("already exists")
}

/// What names each of `messages` (UID, size) of the open folder `path` in a report, read from
/// their header fields: one `UID FETCH` per few hundred messages, pipelined. Asked only for
/// messages left out or refused, so a copy where nothing failed never pays for it. A message
/// gone meanwhile, or a folder that refuses the fetch, keeps only its size.
pub async fn facts(
    session: &mut Session,
    server: &str,
    path: &str,
    messages: &[(u32, u32)],
) -> Result<std::collections::HashMap<u32, MessageFacts>, ImapError> {
    let mut found: std::collections::HashMap<u32, MessageFacts> = messages
        .iter()
        .map(|(uid, size)| (*uid, MessageFacts::sized(u64::from(*size))))
        .collect();
    let commands: Vec<(String, String)> = messages
        .chunks(400)
        .map(|chunk| {
            let set: Vec<String> = chunk.iter().map(|(uid, _)| uid.to_string()).collect();
            (
                format!(
                    "UID FETCH {} (UID BODY.PEEK[HEADER.FIELDS ({FACT_FIELDS})])",
                    set.join(",")
                ),
                format!("reading what names the messages left out of {path}"),
            )
        })
        .collect();
    if commands.is_empty() {
        return Ok(found);
    }
    run(session, server, &commands, |_, response| {
        if let Response::Fetch(_, attributes) = response {
            let mut uid = None;
            let mut header = None;
            for a in attributes {
                match a {
                    AttributeValue::Uid(u) => uid = Some(*u),
                    AttributeValue::BodySection {
                        section: Some(_),
                        data,
                        ..
                    } => header = data.as_deref(),
                    _ => {}
                }
            }
            if let (Some(uid), Some(header)) = (uid, header)
                && let Some(f) = found.get_mut(&uid)
            {
                *f = MessageFacts::read(header, f.size);
            }
        }
    })
    .await?;
    Ok(found)
}

/// The messages of the first folder of a pipelined read (there is exactly one).
pub(super) fn only(read: Vec<Result<Listing, ImapError>>) -> Result<Vec<Listed>, ImapError> {
    read.into_iter()
        .next()
        .map_or(Ok(Vec::new()), |r| r.map(|l| l.messages))
}

/// An IMAP quoted string.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_answer_goes_to_the_folder_it_names() {
        let folders = [("INBOX", "INBOX"), ("Sent", "Sent"), ("Re&AOc-us", "Reçus")];
        // Answered out of order: the name decides, not the place.
        assert_eq!(status_of(&folders, "Re&AOc-us", 0), 2);
        assert_eq!(status_of(&folders, "Sent", 2), 1);
        // INBOX in any case.
        assert_eq!(status_of(&folders, "inbox", 1), 0);
        // A name that is none of them (a server that writes it another way): the place.
        assert_eq!(status_of(&folders, "sent", 1), 1);
        assert_eq!(status_of(&folders, "Other", 2), 2);
    }
}
