//! Saved plans: `plan --out FILE` then `apply FILE` runs what was reviewed, and refuses (exit 2,
//! nothing run) naming the difference when the plan, an import or the live state changed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::corpus::Corpus;
use crate::support::dovecot::Dovecot;
use crate::support::mailbox::{folder_list, snapshot};
use crate::text;

struct World {
    dovecot: Dovecot,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dovecot = Dovecot::start();
        for (user, password) in [
            ("alice@old.example", "alice-old"),
            ("alice@new.example", "alice-new"),
            ("bob@old.example", "bob-old"),
            ("bob@new.example", "bob-new"),
            ("bob@other.example", "bob-new"),
        ] {
            dovecot.add_user(user, password);
        }
        Corpus::with_count(12).seed(&dovecot, "alice@old.example", "alice-old");
        Corpus::with_count(6).seed(&dovecot, "bob@old.example", "bob-old");
        let w = World {
            dovecot,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        w.write_plan("");
        w.write_csv("bob@new.example");
        w
    }

    fn plan(&self) -> PathBuf {
        self.dir.path().join("saved.yaml")
    }

    /// The plan: Alice in the YAML (with `alice_extra` under her), Bob from `accounts.csv`.
    fn write_plan(&self, alice_extra: &str) {
        let imap = format!(
            "{{ host: localhost, port: {}, tls: implicit }}",
            self.dovecot.imaps_port
        );
        let text = format!(
            "version: 1\nname: saved\nplatforms:\n  old: {{ type: imap, imap: {imap} }}\n  \
             new: {{ type: imap, imap: {imap} }}\naccounts:\n  - address: alice@old.example\n    \
             from: old\n    to: new\n    target-login: alice@new.example\n    \
             source-password: {{ env: ALICE_OLD }}\n    target-password: {{ env: ALICE_NEW }}\n\
             {alice_extra}  - import: accounts.csv\n"
        );
        std::fs::write(self.plan(), text).expect("write the plan");
    }

    fn write_csv(&self, bob_target: &str) {
        std::fs::write(
            self.dir.path().join("accounts.csv"),
            format!(
                "address,from,to,target-login,source-password,target-password\n\
                 bob@old.example,old,new,{bob_target},env:BOB_OLD,env:BOB_NEW\n"
            ),
        )
        .expect("write the CSV");
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_mailplan"))
            .args(args)
            .env("NO_COLOR", "1")
            .env("SSL_CERT_FILE", self.dovecot.ca_cert_path())
            .env("ALICE_OLD", "alice-old")
            .env("ALICE_NEW", "alice-new")
            .env("BOB_OLD", "bob-old")
            .env("BOB_NEW", "bob-new")
            .current_dir(self.dir.path())
            .output()
            .expect("mailplan runs")
    }

    fn total(&self, user: &str, password: &str) -> usize {
        snapshot(&self.dovecot, user, password).message_total()
    }
}

fn save(w: &World, saved: &Path, extra: &[&str]) {
    let mut args = vec!["plan", "saved.yaml", "--out"];
    let saved = saved.to_str().expect("utf-8");
    args.push(saved);
    args.extend_from_slice(extra);
    let out = w.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(saved).expect("the saved plan")).expect("JSON");
    assert_eq!(record["format"], "mailplan.saved-plan/v1");
    assert_eq!(record["dry_run"]["format"], "mailplan.plan/v1");
    assert!(
        !String::from_utf8_lossy(&std::fs::read(saved).expect("read")).contains("alice-old"),
        "no secret in a saved plan"
    );
}

#[test]
fn apply_runs_a_saved_plan_and_refuses_one_whose_plan_or_import_changed() {
    let w = World::new();
    let saved = w.dir.path().join("reviewed.json");

    // Reviewed, then the plan is edited: Alice now goes to another mailbox.
    save(&w, &saved, &[]);
    w.write_plan("    copy: { folders: { exclude: [Archive] } }\n");
    let out = w.run(&["apply", "reviewed.json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exec::saved_plan_stale"), "{err}");
    assert!(
        err.contains("the plan saved.yaml changed since it was saved"),
        "{err}"
    );
    assert!(
        err.contains("step `copy-mail alice@old.example` changed"),
        "{err}"
    );
    assert!(
        !err.contains("bob@old.example"),
        "Bob's steps did not change: {err}"
    );
    assert_eq!(w.total("alice@new.example", "alice-new"), 0, "nothing ran");

    // The plan back as reviewed, the import changed: refused, naming the CSV.
    w.write_plan("");
    w.write_csv("bob@other.example");
    let out = w.run(&["apply", "reviewed.json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("accounts.csv changed since it was saved"),
        "{err}"
    );
    assert!(
        err.contains("step `copy-mail bob@old.example` changed"),
        "{err}"
    );
    assert!(!err.contains("the plan saved.yaml changed"), "{err}");

    // Everything as reviewed: it runs, and --only cannot change it.
    w.write_csv("bob@new.example");
    let out = w.run(&["apply", "reviewed.json", "--only", "bob@old.example"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = w.run(&["apply", "reviewed.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the saved plan matches the plan"),
        "{}",
        text(&out)
    );
    assert_eq!(w.total("alice@new.example", "alice-new"), 12);
    assert_eq!(w.total("bob@new.example", "bob-new"), 6);
}

#[test]
fn a_saved_refreshed_plan_is_refused_when_the_live_state_moved() {
    let w = World::new();
    let saved = w.dir.path().join("reviewed.json");
    save(&w, &saved, &["--refresh"]);
    // A folder appears on Bob's target after the review: his copy would no longer create it.
    assert!(
        folder_list(&w.dovecot, "bob@old.example", "bob-old")
            .iter()
            .any(|f| f.name == "Work")
    );
    w.dovecot
        .doveadm(&["mailbox", "create", "-u", "bob@new.example", "Work"]);

    let out = w.run(&["apply", "reviewed.json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the live state of bob@old.example moved since it was read"),
        "{err}"
    );
    assert!(
        !err.contains("the live state of alice@old.example"),
        "{err}"
    );
    assert_eq!(w.total("alice@new.example", "alice-new"), 0, "nothing ran");
}

#[test]
fn plan_refresh_exits_1_when_a_server_cannot_be_read() {
    let w = World::new();
    let out = w.run(&["plan", "saved.yaml", "--refresh"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Bob's target login does not exist: his side cannot be read; the dry run is still shown.
    w.write_csv("nobody@new.example");
    let out = w.run(&["plan", "saved.yaml", "--refresh"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("cannot read"), "{stdout}");
    assert!(stdout.contains("alice@old.example"), "{stdout}");
}
