//! The pipelined IMAP reads (`providers::imap::pipelined`) against a real Dovecot: each folder's
//! answers land with that folder, a folder that does not exist fails alone (the commands after it
//! still answer for their own folders), and empty folders read as empty; commands Dovecot
//! completes out of order each get their own verdict.

use std::collections::BTreeMap;
use std::time::Duration;

use mailplan::plan::model::{ImapServer, TlsMode};
use mailplan::plan::secret::Secret;
use mailplan::providers::imap::pipelined::{self, Open, Read};
use mailplan::providers::imap::{connect, folders};

use crate::support::corpus::Corpus;
use crate::support::dovecot::Dovecot;

const USER: (&str, &str) = ("pipe@example.org", "pipe-secret");

#[test]
fn pipelined_reads_answer_for_each_folder_and_a_missing_folder_fails_alone() {
    let dovecot = Dovecot::start();
    dovecot.add_user(USER.0, USER.1);
    let corpus = Corpus::with_seed(60, 21);
    corpus.seed(&dovecot, USER.0, USER.1);
    let mut expected: BTreeMap<String, usize> =
        corpus.folders.iter().map(|f| (f.clone(), 0)).collect();
    for m in &corpus.messages {
        *expected.entry(m.folder.clone()).or_default() += 1;
    }
    assert!(
        expected.values().any(|&n| n == 0),
        "the corpus has empty folders"
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let (mut session, name) = login(&dovecot).await;
        let listed: Vec<_> = folders::list(&mut session, &name)
            .await
            .expect("LIST")
            .into_iter()
            .filter(|f| f.selectable)
            .collect();
        // A folder that does not exist, in the middle of the others.
        let mut names: Vec<(String, String)> = listed
            .iter()
            .map(|f| (f.wire.clone(), f.path.clone()))
            .collect();
        let middle = names.len() / 2;
        names.insert(middle, ("Nowhere".to_owned(), "Nowhere".to_owned()));

        let pairs: Vec<(&str, &str)> = names
            .iter()
            .map(|(w, p)| (w.as_str(), p.as_str()))
            .collect();
        let statuses = pipelined::statuses(&mut session, &name, &pairs)
            .await
            .expect("the connection survives");
        for ((_, path), status) in names.iter().zip(&statuses) {
            match expected.get(path) {
                Some(&n) => {
                    let status = status.as_ref().expect("an existing folder");
                    assert_eq!(status.messages as usize, n, "STATUS of {path}");
                    assert!(status.uid_next.is_some() && status.uid_validity.is_some());
                }
                None => assert!(status.is_err(), "{path} does not exist"),
            }
        }
        let status_of: std::collections::HashMap<&str, Option<u32>> = names
            .iter()
            .zip(&statuses)
            .filter_map(|((_, path), s)| Some((path.as_str(), s.as_ref().ok()?.uid_validity)))
            .collect();

        for headers in [true, false] {
            let reads: Vec<Read<'_>> = names
                .iter()
                .map(|(wire, path)| Read {
                    wire,
                    path,
                    from: 1,
                    headers,
                })
                .collect();
            let read = pipelined::identities(&mut session, &name, Open::Examine, &reads)
                .await
                .expect("the connection survives");
            assert_eq!(read.len(), names.len());
            for ((_, path), got) in names.iter().zip(read) {
                match expected.get(path) {
                    Some(&n) => {
                        let got = got.expect("an existing folder");
                        assert_eq!(
                            got.uid_validity,
                            status_of[path.as_str()],
                            "{path}: the UIDVALIDITY its STATUS gave"
                        );
                        let got = got.messages;
                        assert_eq!(got.len(), n, "messages of {path} (headers: {headers})");
                        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "UID order");
                        assert!(got.iter().all(|(_, size, _)| *size > 0));
                        if headers && path == "INBOX" {
                            let shared = got
                                .iter()
                                .filter(|(_, _, id)| {
                                    id.as_str().starts_with("<shared-id@corpus.mailplan.test>")
                                })
                                .count();
                            assert_eq!(shared, 2, "two messages share a Message-ID in INBOX");
                        }
                        if !headers {
                            let sizes: Vec<u32> = got.iter().map(|(_, s, _)| *s).collect();
                            assert!(sizes.iter().all(|s| *s > 0));
                        }
                    }
                    None => {
                        let err = got.expect_err("no such folder");
                        assert!(err.activity.contains("Nowhere"), "{err}");
                    }
                }
            }
        }

        // From a UID up: only what is at or above it, even though `N:*` answers the last.
        let inbox = names.iter().find(|(_, p)| p == "INBOX").expect("INBOX");
        let all = uids_from(&mut session, &name, inbox, 1).await;
        let last = all.last().expect("INBOX has mail").0;
        let above = uids_from(&mut session, &name, inbox, last + 1).await;
        assert!(above.is_empty(), "{above:?}");
        session.logout().await.ok();
    });
}

/// A session of `USER` on the Dovecot (clear text), and the server's name for errors.
async fn login(dovecot: &Dovecot) -> (mailplan::providers::imap::Session, String) {
    let server = ImapServer {
        host: "127.0.0.1".to_owned(),
        port: dovecot.imap_addr().port(),
        tls: TlsMode::None,
        tls_verify: true,
        max_connections: None,
    };
    let name = format!("127.0.0.1:{}", server.port);
    let session = tokio::time::timeout(
        Duration::from_secs(30),
        connect(&server, USER.0, &Secret::new(USER.1)),
    )
    .await
    .expect("in time")
    .expect("login");
    (session, name)
}

/// A folder's messages from UID `from` up, without headers.
async fn uids_from(
    session: &mut mailplan::providers::imap::Session,
    server: &str,
    (wire, path): &(String, String),
    from: u32,
) -> Vec<pipelined::Listed> {
    let read = Read {
        wire,
        path,
        from,
        headers: false,
    };
    pipelined::identities(session, server, Open::Examine, &[read])
        .await
        .expect("read")
        .remove(0)
        .expect("the folder")
        .messages
}

#[test]
fn commands_completed_out_of_order_each_get_their_own_answer() {
    // Dovecot runs pipelined commands side by side when it can: a STATUS sent after a long
    // FETCH completes first, its answer arriving while the FETCH is still going. Each command
    // must still get its own verdict (the FETCH and the NOOP are not failed for having been
    // overtaken), and a STATUS answer must be read by the folder it names.
    let dovecot = Dovecot::start();
    dovecot.add_user(USER.0, USER.1);
    Corpus::with_seed(40, 22)
        .with_large_message()
        .seed(&dovecot, USER.0, USER.1);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let (mut session, name) = login(&dovecot).await;
        let commands: Vec<(String, String)> = [
            "EXAMINE INBOX",
            "UID FETCH 1:* (BODY.PEEK[])",
            "NOOP",
            "STATUS \"Sent\" (MESSAGES)",
        ]
        .iter()
        .map(|c| ((*c).to_owned(), format!("running {c}")))
        .collect();
        let mut status_seen_during = Vec::new();
        let verdicts = pipelined::run(&mut session, &name, &commands, |current, response| {
            if let async_imap::imap_proto::Response::MailboxData(
                async_imap::imap_proto::MailboxDatum::Status { .. },
            ) = response
            {
                status_seen_during.push(current);
            }
        })
        .await
        .expect("the connection survives");
        assert_eq!(verdicts.len(), 4);
        for (verdict, (command, _)) in verdicts.iter().zip(&commands) {
            assert!(verdict.is_ok(), "{command}: {verdict:?}");
        }
        // The reordering this test is about did happen: the STATUS answer (command 3) came
        // while an earlier command (the FETCH or the NOOP) was not yet completed.
        assert_eq!(status_seen_during.len(), 1, "{status_seen_during:?}");
        assert!(
            status_seen_during[0] < 3,
            "the STATUS answer came after every earlier command completed: {status_seen_during:?}"
        );
        session.logout().await.ok();
    });
}
