//! Cooperating workers on a `PostgreSQL` state: several `mailplan apply` processes on one plan
//! share its steps through claims, each step run by exactly one of them; a worker killed with
//! SIGKILL in the middle of a copy loses its step when its lease runs out, and another worker
//! takes it over and finishes it exactly; a worker of another version of the plan is refused,
//! naming the difference; `status` lists the workers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::apply::{SOURCE, Sandbox, json_events};
use crate::support::corpus::Corpus;
use crate::support::postgres::{PASSWORD, Postgres};
use crate::support::proxy::{Faults, Proxy};

/// A running `mailplan apply` whose output goes to files.
struct Running {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

/// What a worker printed and how it ended.
struct Ended {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn spawn(
    s: &Sandbox,
    envs: &[(String, String)],
    args: &[&str],
    logs: &Path,
    name: &str,
) -> Running {
    let (out, err) = (
        logs.join(format!("{name}.out")),
        logs.join(format!("{name}.err")),
    );
    let child = s
        .command(args)
        .envs(envs.iter().cloned())
        .env("MAILPLAN_LEASE_SECONDS", "3")
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn apply");
    Running { child, out, err }
}

/// Wait for `r` to end, at most `limit` (then it is killed and the test fails).
fn finish(mut r: Running, limit: Duration) -> Ended {
    let start = Instant::now();
    let code = loop {
        if let Some(status) = r.child.try_wait().expect("try_wait") {
            break status.code();
        }
        if start.elapsed() > limit {
            r.child.kill().ok();
            r.child.wait().ok();
            panic!(
                "a worker did not end in {limit:?}: {}",
                std::fs::read_to_string(&r.err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ended {
        code,
        stdout: std::fs::read_to_string(&r.out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&r.err).unwrap_or_default(),
    }
}

/// Poll `f` every 100 ms until it is true, at most `limit`.
fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Each claimed step: how many times it was taken and by whom last.
fn claims(pg: &Postgres, db: &str) -> BTreeMap<String, (u32, String)> {
    pg.sql(
        db,
        "SELECT key || '|' || taken || '|' || taken_by FROM mailplan.claims ORDER BY key",
    )
    .lines()
    .map(|l| {
        let mut parts = l.splitn(3, '|');
        let key = parts.next().expect("key").to_owned();
        let taken = parts.next().expect("taken").parse().expect("a number");
        (key, (taken, parts.next().expect("taken_by").to_owned()))
    })
    .collect()
}

#[test]
fn three_workers_share_a_plan_and_run_each_step_exactly_once() {
    let s = Sandbox::new();
    Corpus::with_seed(60, 3).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    // Thirty accounts: the main one and 29 more.
    let names: Vec<String> = (1..=29).map(|i| format!("u{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (lines, envs) = s.more_accounts(&names, 29);
    let plan = s.plan("many", None, &lines);
    let plan = plan.to_str().expect("utf-8");
    let pg = Postgres::shared();
    let db = pg.database();
    let url = pg.url(&db);
    let logs = tempfile::tempdir().expect("tempdir");

    let args = [
        "apply",
        plan,
        "--state",
        &url,
        "--format",
        "json",
        "--parallelism",
        "2",
    ];
    let workers: Vec<Running> = ["a", "b", "c"]
        .iter()
        .map(|n| spawn(&s, &envs, &args, logs.path(), n))
        .collect();
    let ended: Vec<Ended> = workers
        .into_iter()
        .map(|w| finish(w, Duration::from_secs(300)))
        .collect();
    for e in &ended {
        assert_eq!(e.code, Some(0), "{}\n{}", e.stdout, e.stderr);
        assert!(!e.stdout.contains(PASSWORD) && !e.stderr.contains(PASSWORD));
    }
    s.assert_accounts_copied(&names);

    // Every step was claimed once, and started by exactly one worker.
    let steps: Vec<String> = pg
        .sql(&db, "SELECT key FROM mailplan.steps ORDER BY key")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        steps.len(),
        30 * 2,
        "copy-mail and verify per account: {steps:?}"
    );
    let claimed = claims(pg, &db);
    assert_eq!(
        claimed.keys().cloned().collect::<Vec<_>>(),
        steps,
        "every step was claimed"
    );
    for (key, (taken, _)) in &claimed {
        assert_eq!(*taken, 1, "{key} was taken {taken} times");
    }
    let mut started: BTreeMap<String, usize> = BTreeMap::new();
    for e in &ended {
        let out = std::process::Output {
            status: std::process::ExitStatus::default(),
            stdout: e.stdout.clone().into_bytes(),
            stderr: Vec::new(),
        };
        let events = json_events(&out);
        // Each worker's events name it, from its `worker` event on, as the claims do.
        let first = events
            .iter()
            .position(|ev| ev["event"] == "worker")
            .expect("a worker event");
        let label = events[first]["worker"].as_str().expect("label").to_owned();
        assert!(label.contains(" pid "), "{label}");
        for ev in &events[first..] {
            assert_eq!(ev["worker"], label.as_str(), "{ev}");
        }
        let mut here = 0;
        for ev in &events {
            if ev["event"] == "step-started" {
                here += 1;
                *started
                    .entry(ev["step"].as_str().expect("step").to_owned())
                    .or_default() += 1;
            }
        }
        // What coordination cost it: its requests, and the steps it ran.
        let cost = events
            .iter()
            .find(|ev| ev["event"] == "coordination")
            .expect("a coordination event");
        assert_eq!(cost["steps"], here, "{cost}");
        // At least a claim and its end per step run here, and the connection slots of each
        // copy (the default cap of 8 per server holds across workers).
        let leases = cost["leases"]["requests"].as_u64().expect("requests");
        assert!(leases > here, "{cost}");
        assert!(cost["leases"]["ms"].as_f64().expect("ms") > 0.0, "{cost}");
        if here > 0 {
            assert!(
                cost["limits"]["requests"].as_u64().expect("requests") >= 1,
                "{cost}"
            );
        }
    }
    assert_eq!(
        started.keys().cloned().collect::<Vec<_>>(),
        steps,
        "every step started somewhere"
    );
    assert!(
        started.values().all(|n| *n == 1),
        "a step started twice: {started:?}"
    );
    let mut shares: BTreeMap<&String, usize> = BTreeMap::new();
    for (_, by) in claimed.values() {
        *shares.entry(by).or_default() += 1;
    }
    // How the steps were shared (shown with --nocapture).
    eprintln!("steps per worker: {shares:?}");
    assert!(shares.len() >= 2, "the work was not shared: {shares:?}");
    // Every attempt recorded once: no step ran twice.
    assert_eq!(
        pg.sql(
            &db,
            "SELECT count(*) FROM mailplan.steps WHERE status = 'done' AND attempts = 1"
        ),
        "60"
    );
    // The workers left: none registered, no claim held.
    assert_eq!(pg.sql(&db, "SELECT count(*) FROM mailplan.workers"), "0");
    assert_eq!(
        pg.sql(
            &db,
            "SELECT count(*) FROM mailplan.claims WHERE worker IS NOT NULL"
        ),
        "0"
    );
}

#[test]
fn a_killed_worker_s_copy_is_taken_over_after_its_lease_and_another_plan_is_refused() {
    let s = Sandbox::new();
    Corpus::with_seed(300, 5).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let names = ["bob", "carol"];
    let (lines, envs) = s.more_accounts(&names, 7);
    // 200 kB/s to the target: alice's copy lasts long enough to be killed in its middle.
    let slow = Proxy::start(
        s.dovecot.imap_addr(),
        Faults {
            bandwidth: Some(200_000),
            ..Faults::default()
        },
    );
    let plan = s.plan("killed", Some(slow.addr()), &lines);
    let plan = plan.to_str().expect("utf-8");
    let pg = Postgres::shared();
    let db = pg.database();
    let url = pg.url(&db);
    let logs = tempfile::tempdir().expect("tempdir");
    let args = ["apply", plan, "--state", &url, "--parallelism", "1"];

    // Worker A takes alice's copy (the first step) and copies part of it.
    let mut a = spawn(&s, &envs, &args, logs.path(), "a");
    wait_until(Duration::from_secs(60), "alice's copy under way", || {
        pg.sql(
            &db,
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'mailplan'
               AND tablename = 'folders'",
        ) == "1"
            && pg.sql(
                &db,
                "SELECT count(*) FROM mailplan.folders
                 WHERE account = 'alice@old.example' AND copied > 0",
            ) != "0"
    });
    // Worker B joins while A works.
    let b = spawn(&s, &envs, &args, logs.path(), "b");
    wait_until(Duration::from_secs(30), "two workers", || {
        pg.sql(&db, "SELECT count(*) FROM mailplan.workers") == "2"
    });

    // status lists both workers, and who holds alice's copy.
    let status = s
        .command(&["status", plan, "--state", &url, "--format", "json"])
        .envs(envs.iter().cloned())
        .output()
        .expect("status");
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let workers = json["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2, "{json}");
    assert!(
        workers.iter().any(|w| w["pid"] == a.child.id()
            && w["steps"]
                .as_array()
                .is_some_and(|s| s.iter().any(|k| k == "copy-mail alice@old.example"))),
        "{json}"
    );
    let human = s
        .command(&["status", plan, "--state", &url])
        .output()
        .expect("status");
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains("2 worker(s) running:"), "{human}");
    assert!(human.contains("copy-mail alice@old.example"), "{human}");

    // A worker of another version of the plan (carol left out) is refused, naming it.
    let other = s.dir.path().join("other.yaml");
    let text = std::fs::read_to_string(plan).expect("plan");
    let cut = text.find("  - address: carol@").expect("carol's entry");
    std::fs::write(&other, &text[..cut]).expect("write");
    let refused = s
        .command(&["apply", other.to_str().expect("utf-8"), "--state", &url])
        .envs(envs.iter().cloned())
        .output()
        .expect("apply");
    let said = crate::text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(
        said.contains("another version of this plan")
            && said.contains("only in theirs: copy-mail carol@old.example"),
        "{said}"
    );
    assert!(!said.contains(PASSWORD), "{said}");

    // A dies in the middle of alice's copy; B takes it over once A's lease (3 s) ran out.
    a.child.kill().expect("SIGKILL");
    a.child.wait().expect("reap");
    let b = finish(b, Duration::from_secs(300));
    eprintln!("worker B:\n{}", b.stderr);
    assert_eq!(b.code, Some(0), "{}\n{}", b.stdout, b.stderr);
    s.assert_accounts_copied(&names);
    let claimed = claims(pg, &db);
    let (taken, by) = &claimed["copy-mail alice@old.example"];
    assert_eq!(*taken, 2, "{claimed:?}");
    assert!(by.ends_with(&format!("pid {}", b_pid(&b))), "{by}");
    assert!(
        b.stderr.contains("start   copy-mail alice@old.example"),
        "{}",
        b.stderr
    );
    // Every line after B's worker line names B, as its worker line does.
    let label = b
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("worker  "))
        .and_then(|l| l.split(" of a shared run").next())
        .expect("a worker line");
    let after: Vec<&str> = b
        .stderr
        .lines()
        .skip_while(|l| !l.starts_with("worker  "))
        .skip(1)
        .collect();
    assert!(!after.is_empty());
    for line in after {
        assert!(line.starts_with(&format!("[{label}] ")), "{line}");
    }
}

/// The pid B printed in its `worker` line.
fn b_pid(b: &Ended) -> String {
    b.stderr
        .lines()
        .find_map(|l| l.strip_prefix("worker  "))
        .and_then(|l| l.split(" pid ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .expect("a worker line")
        .to_owned()
}

/// A worker that finds itself retired as dead (its heartbeat was late, and another worker
/// freed its steps) stops at a safe point with exit 1 rather than run a step another worker may
/// hold now; the next `apply` finishes exactly.
#[test]
fn a_worker_retired_as_dead_stops_and_the_next_apply_finishes() {
    let s = Sandbox::new();
    Corpus::with_seed(300, 8).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let slow = Proxy::start(
        s.dovecot.imap_addr(),
        Faults {
            bandwidth: Some(200_000),
            ..Faults::default()
        },
    );
    let plan = s.plan("retired", Some(slow.addr()), "");
    let plan = plan.to_str().expect("utf-8");
    let pg = Postgres::shared();
    let db = pg.database();
    let url = pg.url(&db);
    let logs = tempfile::tempdir().expect("tempdir");
    let a = spawn(&s, &[], &["apply", plan, "--state", &url], logs.path(), "a");
    wait_until(Duration::from_secs(60), "alice's copy under way", || {
        pg.sql(
            &db,
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'mailplan'
               AND tablename = 'folders'",
        ) == "1"
            && pg.sql(
                &db,
                "SELECT count(*) FROM mailplan.folders
                 WHERE account = 'alice@old.example' AND copied > 0",
            ) != "0"
    });
    // What another worker's join does to a worker without a recent heartbeat.
    pg.sql(&db, "DELETE FROM mailplan.workers");
    let a = finish(a, Duration::from_secs(120));
    assert_eq!(a.code, Some(1), "{}", a.stderr);
    assert!(
        a.stderr.contains("could not renew its leases"),
        "{}",
        a.stderr
    );
    let out = s
        .command(&["apply", plan, "--state", &url])
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(0), "{}", crate::text(&out));
    crate::apply::assert_same(&s.source(), &s.target());
}

/// A server's `max-connections` holds for all workers together: three workers, each allowed
/// four steps at once, never have more than three sessions logged in at once on the capped
/// source (counted by the proxy in front of it).
#[test]
fn a_servers_max_connections_holds_across_three_workers() {
    let s = Sandbox::new();
    let names = ["bob", "carol", "dave", "erin", "frank", "grace", "heidi"];
    let (lines, envs) = s.more_accounts(&names, 52);
    Corpus::with_seed(30, 53).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    // 10 ms away: each account's sessions last long enough to overlap the others'.
    let proxy = Proxy::start(
        s.dovecot.imap_addr(),
        Faults::latency(Duration::from_millis(10)),
    );
    let plan = s.plan_via("capped", Some(proxy.addr()), None, &lines);
    let written = std::fs::read_to_string(&plan).expect("plan");
    let capped = written.replacen(
        "allow-insecure: true }",
        "allow-insecure: true, max-connections: 3 }",
        1,
    );
    assert_ne!(capped, written);
    std::fs::write(&plan, capped).expect("write the plan");
    let plan = plan.to_str().expect("utf-8");
    let pg = Postgres::shared();
    let db = pg.database();
    let url = pg.url(&db);
    let logs = tempfile::tempdir().expect("tempdir");
    let args = ["apply", plan, "--state", &url, "--parallelism", "4"];
    let workers: Vec<Running> = ["a", "b", "c"]
        .iter()
        .map(|n| spawn(&s, &envs, &args, logs.path(), n))
        .collect();
    for w in workers {
        let e = finish(w, Duration::from_secs(300));
        assert_eq!(e.code, Some(0), "{}", e.stderr);
    }
    s.assert_accounts_copied(&names);
    let peak = proxy.peak_sessions();
    assert!(
        (2..=3).contains(&peak),
        "the source's sessions at once, all workers together: {peak}"
    );
    assert_eq!(
        pg.sql(&db, "SELECT count(*) FROM mailplan.slots"),
        "0",
        "every slot given back"
    );
}
