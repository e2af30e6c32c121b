//! A plan edited between runs (issue 16): each kind of edit that changes where a folder's mail
//! goes (the target login, the target server, a platform, a `map` entry, `include`/`exclude`)
//! makes the next `apply` compare that folder with its new target, so that the run ends
//! verified with the target exact, and nothing is copied twice where the target did not change.

use super::{SOURCE, Sandbox, TARGET, assert_same, finished_event, json_events, text, verify_done};
use crate::support::corpus::Corpus;
use crate::support::dovecot::Dovecot;
use crate::support::mailbox::{Multiset, snapshot};

/// Replace `from` by `to` in the plan file (which must contain it).
fn edit(plan: &str, from: &str, to: &str) {
    let text = std::fs::read_to_string(plan).expect("read the plan");
    assert!(text.contains(from), "the plan has no {from:?}:\n{text}");
    std::fs::write(plan, text.replacen(from, to, 1)).expect("write the plan");
}

/// Run `apply` with JSON events; it must end with 0 and a passed verification. Returns how many
/// messages it copied.
fn apply_verified(s: &Sandbox, plan: &str) -> u64 {
    let out = s.run(&["apply", plan, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let events = json_events(&out);
    let verified_now = verify_done(&events).contains("are on the target");
    let verified_before = events
        .iter()
        .any(|e| e["event"] == "step-unchanged" && e["why"] == "verified, nothing copied since");
    assert!(
        verified_now || verified_before,
        "verify passed: {}",
        text(&out)
    );
    finished_event(&out)["messages"]
        .as_u64()
        .expect("a message count")
}

/// The messages of `set` in `folder`, as if they were in `renamed`.
fn folder_as(set: &Multiset, folder: &str, renamed: &str) -> Multiset {
    let mut out = Multiset::default();
    out.folders.insert(renamed.to_owned());
    for (key, n) in &set.messages {
        if key.folder == folder {
            let mut key = key.clone();
            renamed.clone_into(&mut key.folder);
            for _ in 0..*n {
                out.insert(key.clone());
            }
        }
    }
    out
}

/// `set` without `folder`.
fn without(set: &Multiset, folder: &str) -> Multiset {
    let mut out = set.clone();
    out.folders.remove(folder);
    out.messages.retain(|key, _| key.folder != folder);
    out
}

fn corpus_seeded(s: &Sandbox) -> Multiset {
    Corpus::small().seed(&s.dovecot, SOURCE.0, SOURCE.1);
    s.source()
}

#[test]
fn a_changed_target_login_copies_everything_to_the_new_mailbox_and_verifies_it() {
    let s = Sandbox::new();
    let other = "alice.two@new.example";
    s.dovecot.add_user(other, TARGET.1);
    let source = corpus_seeded(&s);
    let plan = s.plan("login", None, "");
    let plan = plan.to_str().expect("utf-8");
    assert_eq!(apply_verified(&s, plan), source.message_total() as u64);
    let first = s.target();

    // The same account, now to an empty mailbox.
    edit(
        plan,
        &format!("target-login: {}", TARGET.0),
        &format!("target-login: {other}"),
    );
    let copied = apply_verified(&s, plan);
    assert_eq!(copied, source.message_total() as u64, "everything, once");
    assert_same(&source, &snapshot(&s.dovecot, other, TARGET.1));
    assert_same(&first, &s.target());

    // And the next run is a no-op on the new route.
    assert_eq!(apply_verified(&s, plan), 0);
    assert_same(&source, &snapshot(&s.dovecot, other, TARGET.1));
}

#[test]
fn the_same_mailbox_reached_another_way_gets_nothing_twice() {
    let s = Sandbox::new();
    let source = corpus_seeded(&s);
    let plan = s.plan("server", None, "");
    let plan = plan.to_str().expect("utf-8");
    assert_eq!(apply_verified(&s, plan), source.message_total() as u64);

    // The target server's address changes (STARTTLS on the plain port): the same mailbox.
    let plan = s.plan_starttls("server");
    let plan = plan.to_str().expect("utf-8");
    assert_eq!(apply_verified(&s, plan), 0, "nothing copied twice");
    assert_same(&source, &s.target());
}

#[test]
fn an_account_moved_to_another_platform_is_copied_there_whole_and_verified() {
    let s = Sandbox::new();
    let elsewhere = Dovecot::start();
    elsewhere.add_user(TARGET.0, TARGET.1);
    let source = corpus_seeded(&s);
    let plan = s.plan("moved", None, "");
    let plan = plan.to_str().expect("utf-8");
    assert_eq!(apply_verified(&s, plan), source.message_total() as u64);

    // Same login, another server: a new platform in the plan, and the account moved to it.
    edit(
        plan,
        "accounts:",
        &format!(
            "  elsewhere:\n    type: imap\n    imap: {{ host: 127.0.0.1, port: {}, tls: none, \
             allow-insecure: true }}\naccounts:",
            elsewhere.imap_port
        ),
    );
    edit(plan, "to: new", "to: elsewhere");
    assert_eq!(apply_verified(&s, plan), source.message_total() as u64);
    assert_same(&source, &snapshot(&elsewhere, TARGET.0, TARGET.1));
    assert_same(&source, &s.target());
}

#[test]
fn a_new_map_entry_sends_that_folder_to_its_new_target_and_nothing_else() {
    let s = Sandbox::new();
    let source = corpus_seeded(&s);
    let plan = s.plan("map", None, "");
    let plan = plan.to_str().expect("utf-8");
    assert_eq!(apply_verified(&s, plan), source.message_total() as u64);

    let plan_text = std::fs::read_to_string(plan).expect("plan");
    std::fs::write(
        plan,
        format!("{plan_text}    copy:\n      folders:\n        map: {{ Reçus: Receipts }}\n"),
    )
    .expect("write the plan");
    let moved = folder_as(&source, "Reçus", "Receipts");
    assert!(moved.message_total() > 0, "the corpus has mail in Reçus");
    assert_eq!(apply_verified(&s, plan), moved.message_total() as u64);
    let target = s.target();
    // Receipts holds Reçus's mail; everything else (the old Reçus too) is as it was.
    assert_same(&moved, &folder_as(&target, "Receipts", "Receipts"));
    assert_same(&source, &without(&target, "Receipts"));
}

#[test]
fn a_folder_excluded_then_included_again_is_copied_then_and_verify_follows_the_plan() {
    let s = Sandbox::new();
    let source = corpus_seeded(&s);
    let plan = s.plan(
        "include",
        None,
        "    copy:\n      folders:\n        exclude: [Reçus]\n",
    );
    let plan = plan.to_str().expect("utf-8");
    let left_out = folder_as(&source, "Reçus", "Reçus").message_total() as u64;
    assert!(left_out > 0, "the corpus has mail in Reçus");
    // Verified without the excluded folder.
    assert_eq!(
        apply_verified(&s, plan),
        source.message_total() as u64 - left_out
    );
    assert_same(&without(&source, "Reçus"), &without(&s.target(), "Reçus"));

    edit(plan, "exclude: [Reçus]", "exclude: []");
    assert_eq!(
        apply_verified(&s, plan),
        left_out,
        "only the folder taken now"
    );
    assert_same(&source, &s.target());

    // Excluded again: verify no longer asks for it, nothing is copied or removed.
    edit(plan, "exclude: []", "exclude: [Reçus, Work]");
    assert_eq!(apply_verified(&s, plan), 0);
    assert_same(&source, &s.target());
}

/// The state store keeps no secret whichever route it recorded.
#[test]
fn routes_in_the_store_name_logins_and_servers_never_passwords() {
    let s = Sandbox::new();
    corpus_seeded(&s);
    let plan = s.plan("routes", None, "");
    let plan = plan.to_str().expect("utf-8");
    apply_verified(&s, plan);
    let bytes = std::fs::read(s.state("routes")).expect("state");
    let stored = String::from_utf8_lossy(&bytes);
    assert!(
        stored.contains(&format!("{} at localhost:", TARGET.0)),
        "the route is kept"
    );
    assert!(!stored.contains(SOURCE.1) && !stored.contains(TARGET.1));
}
