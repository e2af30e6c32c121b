//! The commands on a `PostgreSQL` state (`--state postgres://…`, or `MAILPLAN_STATE`): `apply`
//! of an IMAP → IMAP plan on Dovecot writes its records there, a second `apply` does nothing
//! again, `status` and `report` read them; no output shows the password, nothing is made beside
//! the plan; an unreachable server or an unreadable URL is exit 2 before anything runs.

use std::path::Path;

use crate::apply::{Sandbox, json_events};
use crate::support::corpus::Corpus;
use crate::support::postgres::{PASSWORD, Postgres};
use crate::text;

/// Only the plan and its password file are in the sandbox's folder: no state file, no folder
/// named after the URL.
fn assert_nothing_made_beside(dir: &Path, plan: &str) {
    let mut made: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let mut expected = vec![plan.to_owned(), "target.pw".to_owned()];
    made.sort();
    expected.sort();
    assert_eq!(made, expected, "made beside the plan");
}

#[test]
fn apply_status_and_report_run_on_a_postgres_state_without_showing_its_password() {
    let s = Sandbox::new();
    Corpus::small().seed(&s.dovecot, crate::apply::SOURCE.0, crate::apply::SOURCE.1);
    let names = ["bob", "carol"];
    let (lines, envs) = s.more_accounts(&names, 41);
    let plan = s.plan("shared", None, &lines);
    let plan = plan.to_str().expect("utf-8");
    let pg = Postgres::shared();
    let db = pg.database();
    let url = pg.url(&db);
    let run = |args: &[&str]| {
        let out = s
            .command(args)
            .envs(envs.iter().cloned())
            .output()
            .expect("run");
        let shown = text(&out);
        assert!(
            !shown.contains(PASSWORD),
            "{args:?} showed the password: {shown}"
        );
        out
    };

    let out = run(&["apply", plan, "--state", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    s.assert_accounts_copied(&names);
    assert_nothing_made_beside(s.dir.path(), "shared.yaml");
    // The records are in the database: every account verified.
    assert_eq!(
        pg.sql(
            &db,
            "SELECT count(*) FROM mailplan.steps WHERE kind = 'verify' AND status = 'done'"
        ),
        "3"
    );
    let copied: u64 = pg
        .sql(&db, "SELECT sum(copied) FROM mailplan.folders")
        .parse()
        .expect("a number");
    assert!(copied > 0, "no folder record");

    // Again: nothing to do, said so, nothing sent; the targets unchanged.
    let target = s.target();
    let out = run(&["apply", plan, "--state", &url, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let events = json_events(&out);
    let finished = events.last().expect("events");
    assert_eq!(
        (finished["event"].as_str(), finished["messages"].as_u64()),
        (Some("finished"), Some(0)),
        "{}",
        text(&out)
    );
    for name in ["alice", "bob", "carol"] {
        let verify = format!("verify {name}@old.example");
        assert!(
            events
                .iter()
                .any(|e| e["event"] == "step-unchanged" && e["step"] == verify.as_str()),
            "{verify} ran again: {}",
            text(&out)
        );
    }
    assert!(
        !events.iter().any(|e| e["event"] == "step-started"
            && e["step"]
                .as_str()
                .is_some_and(|k| !k.starts_with("copy-mail"))),
        "a step other than an incremental copy ran again: {}",
        text(&out)
    );
    crate::apply::assert_same(&target, &s.target());
    s.assert_accounts_copied(&names);

    // status and report read the database; the state is named without the password.
    let status = run(&["status", plan, "--state", &url, "--format", "json"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(json["exists"], true, "{json}");
    let state = json["state"].as_str().expect("state");
    assert!(
        state.starts_with("postgres://mailplan_test@127.0.0.1:") && state.contains(&db),
        "{state}"
    );
    let accounts = json["accounts"].as_array().expect("accounts");
    assert_eq!(accounts.len(), 3, "{json}");
    // The same from MAILPLAN_STATE, --state absent.
    let from_env = s
        .command(&["status", plan, "--format", "json"])
        .env("MAILPLAN_STATE", &url)
        .output()
        .expect("run");
    assert_eq!(
        String::from_utf8_lossy(&from_env.stdout),
        String::from_utf8_lossy(&status.stdout),
        "{}",
        text(&from_env)
    );
    let human = run(&["status", plan, "--state", &url]);
    assert_eq!(human.status.code(), Some(0), "{}", text(&human));

    let report = run(&["report", plan, "--state", &url, "--format", "json"]);
    assert_eq!(report.status.code(), Some(0), "{}", text(&report));
    let json: serde_json::Value = serde_json::from_slice(&report.stdout).expect("report JSON");
    let alice = json["accounts"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["address"] == "alice@old.example"))
        .expect("alice in the report");
    assert_eq!(
        alice["copied"].as_u64(),
        Some(s.source().message_total() as u64),
        "{alice}"
    );
    assert_nothing_made_beside(s.dir.path(), "shared.yaml");

    // What a killed worker leaves: its step still `running`, claimed by a worker whose heartbeat
    // stopped an hour ago, while another worker lives and holds a running step of its own.
    // `status` lists only the live worker, shows its step running and the dead one's interrupted.
    let keys = pg.sql(
        &db,
        "SELECT string_agg(key, ',' ORDER BY key) FROM mailplan.steps WHERE kind = 'copy-mail'",
    );
    let keys: Vec<&str> = keys.split(',').collect();
    let (dead_key, live_key) = (keys[0], keys[1]);
    pg.sql(
        &db,
        &format!(
            "WITH dead AS (INSERT INTO mailplan.workers (host, pid, heartbeat)
                 VALUES ('gone', 1, now() - interval '1 hour') RETURNING id),
               live AS (INSERT INTO mailplan.workers (host, pid) VALUES ('here', 2) RETURNING id)
             INSERT INTO mailplan.claims (key, worker, lease_until, taken, taken_by)
               SELECT '{dead_key}', id, now() - interval '59 minutes', 1, 'gone' FROM dead
               UNION ALL
               SELECT '{live_key}', id, now() + interval '1 hour', 1, 'here' FROM live
             ON CONFLICT (key) DO UPDATE SET worker = EXCLUDED.worker,
               lease_until = EXCLUDED.lease_until, taken_by = EXCLUDED.taken_by, run = NULL,
               outcome = NULL;
             UPDATE mailplan.steps SET status = 'running' WHERE key IN ('{dead_key}', '{live_key}')"
        ),
    );
    let status = run(&["status", plan, "--state", &url, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let workers: Vec<&str> = json["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter_map(|w| w["host"].as_str())
        .collect();
    assert_eq!(workers, ["here"], "{json}");
    let status_of = |key: &str| {
        json["accounts"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["steps"].as_array().into_iter().flatten())
            .find(|st| st["key"] == key)
            .map(|st| st["status"].clone())
    };
    assert_eq!(status_of(live_key), Some("running".into()), "{json}");
    assert_eq!(status_of(dead_key), Some("interrupted".into()), "{json}");
}

#[test]
fn an_unreachable_postgres_or_an_unreadable_url_is_exit_2_before_anything_runs() {
    let s = Sandbox::new();
    Corpus::small().seed(&s.dovecot, crate::apply::SOURCE.0, crate::apply::SOURCE.1);
    let plan = s.plan("unreachable", None, "");
    let plan = plan.to_str().expect("utf-8");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let url =
        format!("postgresql://mailplan_test:{PASSWORD}@127.0.0.1:{closed}/db?sslmode=disable");
    for command in ["apply", "status", "report"] {
        let out = s.run(&[command, plan, "--state", &url]);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "{command}: {shown}");
        assert!(
            shown.contains(&format!("127.0.0.1:{closed}")) && shown.contains("cannot connect"),
            "{command}: {shown}"
        );
        assert!(!shown.contains(PASSWORD), "{command}: {shown}");
    }
    let bad = format!("postgres://mailplan_test:{PASSWORD}@127.0.0.1/db?sslmode=sometimes");
    for command in ["apply", "status", "report"] {
        let out = s
            .command(&[command, plan])
            .env("MAILPLAN_STATE", &bad)
            .output()
            .expect("run");
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "{command}: {shown}");
        assert!(shown.contains("sslmode `sometimes`"), "{command}: {shown}");
        assert!(!shown.contains(PASSWORD), "{command}: {shown}");
    }
    assert_eq!(s.target().message_total(), 0, "apply ran");
    assert_nothing_made_beside(s.dir.path(), "unreachable.yaml");
}
