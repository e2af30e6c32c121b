//! The mail backend on plain directories: what each task does to the passwd-files and maildirs.

use std::path::Path;

use ovh_sim::Simulator;
use ovh_sim::fixture::{MailFixture, MailStoreFixture};
use serde_json::json;

use crate::support::{Client, EX, MX, fixture, placeholders, wait_gone, wait_status};

fn users(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, Iterator::count)
}

#[test]
fn each_flow_moves_the_mail() {
    let source = tempfile::tempdir().expect("temp dir");
    let target = tempfile::tempdir().expect("temp dir");
    let mut fixture = fixture();
    fixture.mail = Some(MailFixture {
        users_file: source.path().join("users"),
        mail_root: source.path().join("mail"),
        exchange: Some(MailStoreFixture {
            users_file: target.path().join("users"),
            mail_root: target.path().join("mail"),
        }),
        owner: None,
    });
    let sim = Simulator::start(fixture);
    let client = Client::new(&sim, "ck-all");
    let (src_users, dst_users) = (source.path().join("users"), target.path().join("users"));
    let (src_mail, dst_mail) = (source.path().join("mail"), target.path().join("mail"));
    assert_eq!(
        users(&src_users),
        [
            "alice@legacy.test:{PLAIN}Alice-pass-1::::::",
            "bob@legacy.test:{PLAIN}Bob-pass-12::::::",
            "carol@legacy.test:{PLAIN}Carol-pass-1::::::",
            "dan@legacy.test:{PLAIN}Dan-pass-12::::::",
            "dave@new.test:{PLAIN}Dave-pass-1::::::",
            "erin@new.test:{PLAIN}Erin-pass-1::::::",
        ]
    );
    assert_eq!(
        users(&dst_users),
        ["frank@legacy.test:{PLAIN}Frank-pass-1::::::"]
    );
    assert_eq!(count(&src_mail.join("alice@legacy.test/cur")), 3);
    assert_eq!(count(&src_mail.join("alice@legacy.test/.Archive/cur")), 1);

    // Legacy: migrate moves alice's mail and login to the Exchange side.
    let slot = placeholders(&client)[0].clone();
    let task = client
        .post(
            &format!("/email/domain/legacy.test/account/alice/migrate/hosted-ab12345-1/destinationEmailAddress/{slot}/migrate"),
            &json!({"password": "Alice-pass-1"}),
        )
        .ok();
    wait_gone(
        &client,
        &format!("/email/domain/legacy.test/task/account/{}", task["id"]),
    );
    assert!(!src_mail.join("alice@legacy.test").exists());
    assert_eq!(count(&dst_mail.join("alice@legacy.test/cur")), 3);
    assert!(!users(&src_users).iter().any(|l| l.starts_with("alice@")));
    assert!(users(&dst_users).contains(&"alice@legacy.test:{PLAIN}Alice-pass-1::::::".to_owned()));

    // New MX Plan: the rename moves dave's line and maildir to the provisional login.
    client
        .put(
            &format!("{MX}/account/dave@new.test"),
            &json!({"login": "dave.old", "domain": "new.test"}),
        )
        .ok();
    let renamed = loop {
        let response = client.get(&format!("{MX}/account/dave.old@new.test"));
        if response.status == 200 {
            break response.json();
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert_eq!(renamed["taskPendingId"], 0);
    assert!(users(&src_users).contains(&"dave.old@new.test:{PLAIN}Dave-pass-1::::::".to_owned()));
    assert!(!users(&src_users).iter().any(|l| l.starts_with("dave@")));
    assert_eq!(count(&src_mail.join("dave.old@new.test/cur")), 2);
    assert!(!src_mail.join("dave@new.test").exists());

    // Exchange: add the domain, configure a placeholder as dave@new.test, set its password.
    let domain = client
        .post(
            &format!("{EX}/domain"),
            &json!({"name": "new.test", "type": "nonAuthoritative"}),
        )
        .ok();
    wait_status(&client, &format!("{EX}/task/{}", domain["id"]));
    let slot = placeholders(&client)[0].clone();
    client
        .put(
            &format!("{EX}/account/{slot}"),
            &json!({"login": "dave", "domain": "new.test"}),
        )
        .ok();
    let password = client
        .post(
            &format!("{EX}/account/{slot}/changePassword"),
            &json!({"password": "Dave-new-2024"}),
        )
        .ok();
    wait_status(&client, &format!("{EX}/task/{}", password["id"]));
    assert!(users(&dst_users).contains(&"dave@new.test:{PLAIN}Dave-new-2024::::::".to_owned()));

    // Reset: the Exchange account loses its line and its mail.
    std::fs::create_dir_all(dst_mail.join("dave@new.test/cur")).expect("mkdir");
    let reset = client.delete(&format!("{EX}/account/dave@new.test")).ok();
    wait_status(&client, &format!("{EX}/task/{}", reset["id"]));
    assert!(!users(&dst_users).iter().any(|l| l.starts_with("dave@")));
    assert!(!dst_mail.join("dave@new.test").exists());
    // And the MX Plan reset of the renamed source.
    let reset = client
        .delete(&format!("{MX}/account/dave.old@new.test"))
        .ok();
    wait_status(&client, &format!("{MX}/task/{}", reset["id"]));
    assert!(!src_mail.join("dave.old@new.test").exists());
    assert!(!users(&src_users).iter().any(|l| l.starts_with("dave.old@")));
    assert!(sim.task_errors().is_empty(), "{:?}", sim.task_errors());
}

#[test]
fn a_legacy_migration_lands_with_the_exchange_folder_layout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut fixture = fixture();
    let alice = fixture.legacy_domains[0]
        .accounts
        .iter_mut()
        .find(|a| a.name == "alice")
        .expect("alice");
    alice.messages = [
        ("INBOX", 3),
        ("Archive", 1),
        ("Sent", 2),
        ("Spam", 1),
        ("Junk", 1),
    ]
    .into_iter()
    .map(|(f, n)| (f.to_owned(), n))
    .collect();
    fixture.legacy_migration.others_under_inbox = true;
    fixture.mail = Some(MailFixture {
        users_file: dir.path().join("users"),
        mail_root: dir.path().join("mail"),
        exchange: None,
        owner: None,
    });
    let sim = Simulator::start(fixture);
    let client = Client::new(&sim, "ck-all");
    let slot = placeholders(&client)[0].clone();
    let task = client
        .post(
            &format!("/email/domain/legacy.test/account/alice/migrate/hosted-ab12345-1/destinationEmailAddress/{slot}/migrate"),
            &json!({"password": "Alice-pass-1"}),
        )
        .ok();
    wait_gone(
        &client,
        &format!("/email/domain/legacy.test/task/account/{}", task["id"]),
    );
    let mail = dir.path().join("mail/alice@legacy.test");
    assert_eq!(count(&mail.join("cur")), 3);
    assert_eq!(count(&mail.join(".Sent Items/cur")), 2);
    assert_eq!(
        count(&mail.join(".Junk Email/cur")),
        2,
        "Junk and Spam merged"
    );
    assert_eq!(count(&mail.join(".INBOX.Archive/cur")), 1);
    for gone in [".Sent", ".Spam", ".Junk", ".Archive"] {
        assert!(!mail.join(gone).exists(), "{gone} is still there");
    }
    assert!(sim.task_errors().is_empty(), "{:?}", sim.task_errors());
}
