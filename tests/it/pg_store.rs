//! The `PostgreSQL` state store (`exec::store::pg`) on a real `PostgreSQL` (`support::postgres`, one
//! server for the run, a database per test): the schema made and found again, the refusals
//! (newer version, another plan, another program's schema), every record written and read back
//! as the `SQLite` store does, the claims (concurrent claimers never share a step, an expired
//! claim is taken over, an ended one never again in its run, a dead worker's claims are freed),
//! and the connection errors, none of which shows the password.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use mailplan::exec::store::SourceCounts;
use mailplan::exec::store::pg::{
    Claim, Joined, PgError, PgStore, PgTarget, SCHEMA_VERSION, WorkerId,
};
use mailplan::providers::imap::copy::{FolderCounts, FolderRecord, IssueKind};
use mailplan::providers::imap::identity::MessageFacts;

use crate::support::postgres::{PASSWORD, Postgres};

/// A fresh database on the shared server and its store's target.
fn fresh() -> (&'static Postgres, String, PgTarget) {
    let pg = Postgres::shared();
    let db = pg.database();
    let target = PgTarget::parse(&pg.url(&db)).expect("the test URL parses");
    (pg, db, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_is_created_versioned_and_found_again() {
    let (pg, db, target) = fresh();
    assert!(
        PgStore::open_read_only(&target, "p")
            .await
            .expect("an empty database")
            .is_none(),
        "no store yet"
    );
    let store = PgStore::open(&target, "p").await.expect("create");
    assert_eq!(
        pg.sql(
            &db,
            "SELECT application || ' ' || version FROM mailplan.schema_version"
        ),
        format!("mailplan {SCHEMA_VERSION}")
    );
    // Ordinary writes return before the WAL is flushed; the batch markers and claims (the
    // durable sessions) only once it is on disk, as the SQLite store syncs only its marker.
    assert_eq!(
        store.commit_settings().await.expect("settings"),
        ("off".to_owned(), "on".to_owned())
    );
    assert_eq!(
        store.meta("plan_name").await.expect("meta").as_deref(),
        Some("p")
    );
    store
        .step_started("a@x/copy", Some("a@x"), "copy-mail", "f1")
        .await
        .expect("write");
    drop(store);
    // Re-opened (a second worker, a later run): nothing is re-created, the records are there.
    let again = PgStore::open(&target, "p").await.expect("open again");
    assert_eq!(again.steps().await.expect("steps").len(), 1);
    let read = PgStore::open_read_only(&target, "p")
        .await
        .expect("open read-only")
        .expect("a store now");
    assert_eq!(read.steps().await.expect("steps").len(), 1);
    // The server refuses any write on a read-only store's connections.
    let err = read.set_meta("k", "v").await.expect_err("read-only");
    assert!(err.to_string().contains("read-only"), "{err}");
    // Another schema in the same database is another store.
    let other = PgTarget::parse(&format!("{}&schema=wave_two", pg.url(&db))).expect("parse");
    let second = PgStore::open(&other, "q").await.expect("a second schema");
    assert!(second.steps().await.expect("steps").is_empty());
    assert_eq!(
        pg.sql(&db, "SELECT count(*) FROM wave_two.schema_version"),
        "1"
    );
}

/// A store an earlier mailplan made (version 1: issues without what names the message, no
/// source-count tables, no claims) is migrated in place; its issues read back with no message
/// facts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_store_is_migrated_in_place() {
    let (pg, db, target) = fresh();
    drop(PgStore::open(&target, "p").await.expect("create"));
    pg.sql(
        &db,
        "ALTER TABLE mailplan.issues DROP COLUMN date, DROP COLUMN subject,
           DROP COLUMN message_id, DROP COLUMN size;
         DROP TABLE mailplan.source_folder_counts, mailplan.source_counts, mailplan.claims,
           mailplan.slots, mailplan.pace, mailplan.placeholders;
         ALTER TABLE mailplan.workers DROP COLUMN run, DROP COLUMN label;
         ALTER TABLE mailplan.steps ADD COLUMN leased_by BIGINT
           REFERENCES mailplan.workers (id) ON DELETE SET NULL, ADD COLUMN lease_until TIMESTAMPTZ;
         CREATE INDEX steps_leases ON mailplan.steps (leased_by) WHERE leased_by IS NOT NULL;
         UPDATE mailplan.schema_version SET version = 1;
         INSERT INTO mailplan.issues (account, folder, uid, kind, detail)
           VALUES ('a@x', 'INBOX', 7, 'refused', 'NO too big')",
    );
    let store = PgStore::open(&target, "p").await.expect("migrate");
    assert_eq!(
        pg.sql(&db, "SELECT version FROM mailplan.schema_version"),
        SCHEMA_VERSION.to_string()
    );
    assert_eq!(
        pg.sql(
            &db,
            "SELECT count(*) FROM information_schema.columns
             WHERE table_schema = 'mailplan' AND table_name = 'steps'
               AND column_name IN ('leased_by', 'lease_until')"
        ),
        "0",
        "version 4 dropped the first lease columns"
    );
    let issues = store.issues("a@x").await.expect("issues");
    assert_eq!(issues.len(), 1);
    assert_eq!(
        (issues[0].detail.as_str(), &issues[0].message),
        ("NO too big", &MessageFacts::default())
    );
    let facts = MessageFacts::sized(9);
    store
        .issue("a@x", "INBOX", 8, IssueKind::TooLarge, "9 B", &facts)
        .await
        .expect("an issue with facts");
    assert_eq!(store.issues("a@x").await.expect("issues")[1].message, facts);
    assert_eq!(store.source_counts("a@x").await.expect("counts"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_starting_together_create_the_schema_once() {
    let (pg, db, target) = fresh();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move { PgStore::open(&target, "p").await.map(drop) })
        })
        .collect();
    for open in opens {
        open.await.expect("join").expect("every worker opens");
    }
    assert_eq!(
        pg.sql(&db, "SELECT count(*) FROM mailplan.schema_version"),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_version_another_plan_and_a_foreign_schema_are_refused_untouched() {
    let (pg, db, target) = fresh();
    drop(PgStore::open(&target, "first").await.expect("create"));
    match PgStore::open(&target, "second").await {
        Err(PgError::OtherPlan { found, plan, .. }) => {
            assert_eq!((found.as_str(), plan.as_str()), ("first", "second"));
        }
        other => panic!("expected OtherPlan, got {other:?}"),
    }
    assert!(matches!(
        PgStore::open_read_only(&target, "second").await,
        Err(PgError::OtherPlan { .. })
    ));
    pg.sql(
        &db,
        &format!(
            "UPDATE mailplan.schema_version SET version = {}",
            SCHEMA_VERSION + 1
        ),
    );
    for result in [
        PgStore::open(&target, "first").await.map(drop),
        PgStore::open_read_only(&target, "first").await.map(drop),
    ] {
        match result {
            Err(e @ PgError::Newer { found, .. }) => {
                assert_eq!(found, SCHEMA_VERSION + 1);
                assert!(e.to_string().contains("newer than this mailplan's"), "{e}");
            }
            other => panic!("expected Newer, got {other:?}"),
        }
    }
    assert_eq!(
        pg.sql(&db, "SELECT version FROM mailplan.schema_version"),
        (SCHEMA_VERSION + 1).to_string(),
        "left as it was"
    );

    // Another program's tables in the schema mailplan was told to use.
    let db = pg.database();
    pg.sql(
        &db,
        "CREATE SCHEMA mailplan AUTHORIZATION mailplan_test;
         CREATE TABLE mailplan.invoices (id INT, total NUMERIC);
         INSERT INTO mailplan.invoices VALUES (1, 9.5);
         ALTER TABLE mailplan.invoices OWNER TO mailplan_test;",
    );
    let target = PgTarget::parse(&pg.url(&db)).expect("parse");
    for result in [
        PgStore::open(&target, "p").await.map(drop),
        PgStore::open_read_only(&target, "p").await.map(drop),
    ] {
        match result {
            Err(e @ PgError::Foreign { .. }) => {
                assert!(e.to_string().contains("invoices"), "{e}");
            }
            other => panic!("expected Foreign, got {other:?}"),
        }
    }
    assert_eq!(
        pg.sql(
            &db,
            "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'mailplan'"
        ),
        "invoices",
        "nothing was created beside it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_written_and_read_back_as_the_sqlite_store_does() {
    let (_pg, _db, target) = fresh();
    let store = PgStore::open(&target, "p").await.expect("open");

    // Steps: order of first writing, attempts, a retry, outcome, a skip that spares `done`.
    store
        .step_started("b", Some("b@x"), "copy-mail", "f1")
        .await
        .expect("start b");
    store
        .step_started("a", None, "add-domain", "f2")
        .await
        .expect("start a");
    store.step_retried("b").await.expect("retry b");
    store
        .step_finished("b", "failed", Some(120), Some("{\"n\":1}"), Some("boom"))
        .await
        .expect("fail b");
    store
        .step_started("b", Some("b@x"), "copy-mail", "f3")
        .await
        .expect("again");
    store
        .step_finished("b", "done", Some(80), None, None)
        .await
        .expect("finish b");
    store
        .step_skipped("b", Some("b@x"), "copy-mail", "f3", "a dependency failed")
        .await
        .expect("skip b");
    store
        .step_skipped("c", Some("c@x"), "verify", "f4", "a dependency failed")
        .await
        .expect("skip c");
    let steps = store.steps().await.expect("steps");
    let keys: Vec<&str> = steps.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, ["b", "a", "c"]);
    let b = store.step("b").await.expect("read").expect("b");
    assert_eq!(
        (b.status.as_str(), b.attempts, b.fingerprint.as_str()),
        ("done", 3, "f3")
    );
    assert_eq!(
        b.output.as_deref(),
        Some("{\"n\":1}"),
        "kept when none is given"
    );
    assert_eq!((b.duration_ms, b.error.as_deref()), (Some(80), None));
    assert!(b.started_at.is_some() && b.finished_at.is_some());
    let c = store.step("c").await.expect("read").expect("c");
    assert_eq!((c.status.as_str(), c.attempts), ("skipped", 0));
    assert_eq!(c.error.as_deref(), Some("a dependency failed"));
    store
        .step_started("b", Some("b@x"), "copy-mail", "f3")
        .await
        .expect("rerun");
    let b = store.step("b").await.expect("read").expect("b");
    assert_eq!(
        (b.status.as_str(), b.attempts),
        ("running", 1),
        "a new round"
    );
    assert!(store.step("zz").await.expect("read").is_none());

    // Folders: the batch marker, cumulated counts, records found only along their route.
    let route = "a@x at old:993 -> a@y at new:993";
    store
        .begin_batch("a@x", "INBOX", "INBOX", route, 7)
        .await
        .expect("begin");
    let rec = store.folders("a@x").await.expect("rows")[0]
        .record_on("INBOX", route)
        .expect("a record along the route");
    assert!(rec.pending);
    let done = FolderRecord {
        uidvalidity: u32::MAX,
        last_uid: 4_000_000_000,
        pending: false,
        failed: 2,
    };
    let counts = FolderCounts {
        copied: 3,
        failed: 1,
        bytes: 5_000_000_000,
        ..FolderCounts::default()
    };
    for _ in 0..2 {
        store
            .end_batch("a@x", "INBOX", "INBOX", route, done, &counts)
            .await
            .expect("end");
    }
    let rows = store.folders("a@x").await.expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].record, done);
    assert_eq!(
        (rows[0].copied, rows[0].failed, rows[0].bytes),
        (6, 2, 10_000_000_000)
    );
    // The route and target are kept with the record: it is found only along them.
    let other = "a@x at old:993 -> b@y at new:993";
    assert_eq!(rows[0].record_on("INBOX", route), Some(done));
    assert_eq!(rows[0].record_on("INBOX", other), None);
    assert_eq!(rows[0].record_on("Inbox", route), None);

    // Issues: replaced per UID (with what names the message), cleared per folder.
    let named = MessageFacts {
        date: Some("Tue, 1 Dec 2026 10:00:00 +0000".to_owned()),
        subject: Some("Facture n°42".to_owned()),
        message_id: Some("<42@x>".to_owned()),
        size: Some(5_000_000_000),
    };
    store
        .issue(
            "a@x",
            "INBOX",
            5,
            IssueKind::TooLarge,
            "60 MB",
            &MessageFacts::sized(60),
        )
        .await
        .expect("issue");
    store
        .issue("a@x", "INBOX", 5, IssueKind::Refused, "NO quota", &named)
        .await
        .expect("replace");
    store
        .issue(
            "a@x",
            "Sent",
            0,
            IssueKind::KeywordsDropped,
            "$Label1",
            &MessageFacts::default(),
        )
        .await
        .expect("issue");
    let issues = store.issues("a@x").await.expect("issues");
    let seen: Vec<(&str, u32, &str, &str, &MessageFacts)> = issues
        .iter()
        .map(|i| {
            (
                i.folder.as_str(),
                i.uid,
                i.kind.as_str(),
                i.detail.as_str(),
                &i.message,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("INBOX", 5, "refused", "NO quota", &named),
            (
                "Sent",
                0,
                "keywords-dropped",
                "$Label1",
                &MessageFacts::default()
            )
        ]
    );
    store.clear_issues("a@x", "INBOX").await.expect("clear");
    assert_eq!(store.issues("a@x").await.expect("issues").len(), 1);

    // Source counts: the first count is kept, an account counted with no folder is counted.
    let first = SourceCounts::from([("INBOX".to_owned(), 3), ("Sent".to_owned(), 1)]);
    store.keep_source_counts("a@x", &first).await.expect("keep");
    store
        .keep_source_counts("a@x", &SourceCounts::from([("INBOX".to_owned(), 0)]))
        .await
        .expect("keep again");
    assert_eq!(store.source_counts("a@x").await.expect("read"), Some(first));
    store
        .keep_source_counts("none@x", &SourceCounts::new())
        .await
        .expect("keep");
    assert_eq!(
        store.source_counts("none@x").await.expect("read"),
        Some(SourceCounts::new())
    );
    assert_eq!(store.source_counts("zz@x").await.expect("read"), None);

    // Meta and the run lock.
    store.set_meta("k", "v1").await.expect("meta");
    store.set_meta("k", "v2").await.expect("meta");
    assert_eq!(store.meta("k").await.expect("meta").as_deref(), Some("v2"));
    let me = std::process::id();
    store.lock("host-a", me, false).await.expect("lock");
    let second = PgStore::open(&target, "p").await.expect("open");
    match second.lock("host-b", me, false).await {
        Err(PgError::Locked { host, pid, .. }) => assert_eq!((host.as_str(), pid), ("host-a", me)),
        other => panic!("expected Locked, got {other:?}"),
    }
    second.lock("host-b", me, true).await.expect("--break-lock");
    let holder = store.lock_holder().await.expect("holder").expect("held");
    assert_eq!(holder.host, "host-b");
    second.unlock(me).await.expect("unlock");
    assert!(store.lock_holder().await.expect("holder").is_none());
}

/// `n` step keys, in plan order, and the plan's steps as workers join with them.
fn plan_steps(n: usize) -> (Vec<String>, BTreeMap<String, String>) {
    let keys: Vec<String> = (0..n).map(|i| format!("copy-mail acct{i:03}@x")).collect();
    let steps = keys.iter().map(|k| (k.clone(), "f".to_owned())).collect();
    (keys, steps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_never_take_the_same_step() {
    let (_pg, _db, target) = fresh();
    let setup = PgStore::open(&target, "p").await.expect("open");
    let (keys, steps) = plan_steps(120);
    let lease = Duration::from_secs(60);
    // Two workers (two processes' worth: a pool each), four claimers each, all at once, each
    // walking the whole plan from its own place, four steps per request as the runner does.
    let mut claimers = Vec::new();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    for w in 0..2 {
        let store = PgStore::open(&target, "p").await.expect("open");
        let joined = store
            .join(&format!("host-{w}"), 1000 + w, "plan", &steps, lease)
            .await
            .expect("join");
        for c in 0..4 {
            let (store, start, joined) = (store.clone(), start.clone(), joined.clone());
            let mut order = keys.clone();
            order.rotate_left((w as usize * 4 + c) * 15);
            claimers.push(tokio::spawn(async move {
                start.wait().await;
                let mut taken = Vec::new();
                for batch in order.chunks(4) {
                    for (key, claim) in store
                        .claim_all(joined.id, joined.run, "w", batch, lease)
                        .await
                        .expect("claim")
                    {
                        assert!(!matches!(claim, Claim::Ended(_)), "{key}: nothing ended");
                        if claim == Claim::Taken {
                            taken.push((joined.id, key));
                        }
                    }
                }
                taken
            }));
        }
    }
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.expect("join"));
    }
    let distinct: HashSet<&String> = all.iter().map(|(_, k)| k).collect();
    assert_eq!(all.len(), keys.len(), "every step taken exactly once");
    assert_eq!(distinct.len(), keys.len());
    let workers = setup.workers().await.expect("workers");
    assert_eq!(workers.len(), 2);
    for w in &workers {
        let mut held: Vec<&String> = all
            .iter()
            .filter(|(id, _)| *id == w.id)
            .map(|(_, k)| k)
            .collect();
        held.sort();
        let mut shown: Vec<&String> = w.steps.iter().collect();
        shown.sort();
        assert_eq!(shown, held, "{w:?}");
    }
    assert!(
        workers.iter().all(|w| !w.steps.is_empty()),
        "both workers took some: {workers:?}"
    );
}

/// What `claim_all` of `keys` found, by key, for worker `w`.
async fn claims_by_key(
    store: &PgStore,
    w: &Joined,
    keys: &[String],
    lease: Duration,
) -> BTreeMap<String, Claim> {
    store
        .claim_all(w.id, w.run, "w", keys, lease)
        .await
        .expect("claim")
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_claim_is_taken_over_an_ended_one_never_and_a_dead_worker_frees_its_own() {
    let (_pg, _db, target) = fresh();
    let store = PgStore::open(&target, "p").await.expect("open");
    let (keys, steps) = plan_steps(3);
    let long = Duration::from_secs(60);
    let short = Duration::from_millis(300);
    let wa = store
        .join("host-a", 1, "plan", &steps, long)
        .await
        .expect("a");
    let wb = store
        .join("host-b", 2, "plan", &steps, long)
        .await
        .expect("b");
    assert_eq!((wa.run, wb.others), (wb.run, 1), "one run");

    // A claims the first step with a short lease and stops renewing it (killed).
    assert_eq!(
        store
            .claim(wa.id, wa.run, "a", &keys[0], short)
            .await
            .expect("claim"),
        Claim::Taken
    );
    // While the lease holds, B finds it held and takes the next one.
    let found = claims_by_key(&store, &wb, &keys[..2], long).await;
    assert_eq!(found[&keys[0]], Claim::Held);
    assert_eq!(found[&keys[1]], Claim::Taken);
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    // A's lease ran out: B takes its step over (and resumes it from its folder records).
    assert_eq!(
        store
            .claim(wb.id, wb.run, "b", &keys[0], long)
            .await
            .expect("claim"),
        Claim::Taken
    );
    let holders = store.workers().await.expect("workers");
    let held_by = |id| {
        let mut held = holders
            .iter()
            .find(|w| w.id == id)
            .expect("listed")
            .steps
            .clone();
        held.sort();
        held
    };
    assert_eq!(held_by(wb.id), [keys[0].clone(), keys[1].clone()]);
    assert!(held_by(wa.id).is_empty());
    // A's end of a claim it lost changes nothing.
    store
        .end_claim(wa.id, wa.run, &keys[0], Some("failed"))
        .await
        .expect("a no-op");

    // B ends the first step done: no worker of this run takes it again, each learns how it
    // ended. B is interrupted in the second: another worker may take it.
    store
        .end_claim(wb.id, wb.run, &keys[0], Some("done"))
        .await
        .expect("end");
    store
        .end_claim(wb.id, wb.run, &keys[1], None)
        .await
        .expect("end");
    assert_eq!(
        store
            .claim(wa.id, wa.run, "a", &keys[0], long)
            .await
            .expect("claim"),
        Claim::Ended("done".to_owned())
    );
    assert_eq!(
        store
            .claim(wa.id, wa.run, "a", &keys[1], long)
            .await
            .expect("claim"),
        Claim::Taken
    );
    assert!(store.keep_alive(wb.id, long).await.expect("beat"));

    // A's machine is lost: no heartbeat. A worker joining after A's heartbeat is older than
    // its lease retires A, whose claims then are nobody's; A learns it was retired.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(store.keep_alive(wb.id, long).await.expect("beat"));
    let wc = store
        .join("host-c", 3, "plan", &steps, short)
        .await
        .expect("c");
    assert_eq!((wc.run, wc.others), (wa.run, 1), "B is alive, A is not");
    assert_eq!(
        store
            .claim(wc.id, wc.run, "c", &keys[1], long)
            .await
            .expect("claim"),
        Claim::Taken
    );
    assert!(
        !store.keep_alive(wa.id, long).await.expect("beat"),
        "A was retired"
    );
    let left: Vec<WorkerId> = store
        .workers()
        .await
        .expect("workers")
        .iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(left, [wb.id, wc.id]);

    // Retired workers let go of everything: the next run takes the unfinished steps again.
    store.retire_worker(wc.id).await.expect("retire");
    store.retire_worker(wb.id).await.expect("retire");
    assert!(store.workers().await.expect("workers").is_empty());
    let wd = store
        .join("host-d", 4, "plan", &steps, long)
        .await
        .expect("d");
    assert_ne!(wd.run, wa.run, "a new run");
    let found = claims_by_key(&store, &wd, &keys, long).await;
    assert!(found.values().all(|c| *c == Claim::Taken), "{found:?}");
    // Several ends in one request (a worker's ends that come together), each with its outcome.
    store
        .end_claims(
            wd.id,
            wd.run,
            &[
                (keys[0].clone(), Some("done".to_owned())),
                (keys[1].clone(), None),
                (keys[2].clone(), Some("failed".to_owned())),
            ],
        )
        .await
        .expect("end");
    let we = store
        .join("host-e", 5, "plan", &steps, long)
        .await
        .expect("e");
    assert_eq!(we.run, wd.run, "D is alive: the same run");
    let found = claims_by_key(&store, &we, &keys, long).await;
    assert_eq!(found[&keys[0]], Claim::Ended("done".to_owned()));
    assert_eq!(found[&keys[1]], Claim::Taken, "interrupted: anyone's");
    assert_eq!(found[&keys[2]], Claim::Ended("failed".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_and_a_wrong_password_are_clear_errors_without_the_password() {
    let pg = Postgres::shared();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let url = format!("postgres://mailplan_test:{PASSWORD}@127.0.0.1:{closed}/x?sslmode=disable");
    let target = PgTarget::parse(&url).expect("parse");
    let err = PgStore::open(&target, "p")
        .await
        .expect_err("nothing there");
    let text = format!("{err} {err:?}");
    assert!(matches!(err, PgError::Unreachable { .. }), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{closed}")) && text.contains("refused"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");

    let db = pg.database();
    let wrong = pg.url(&db).replace(PASSWORD, "Wrong-pw-91");
    let err = PgStore::open(&PgTarget::parse(&wrong).expect("parse"), "p")
        .await
        .expect_err("a wrong password");
    let text = format!("{err} {err:?}");
    assert!(matches!(err, PgError::Unreachable { .. }), "{text}");
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(
        !text.contains("Wrong-pw-91") && !text.contains(PASSWORD),
        "{text}"
    );
}

/// The store's connections that are encrypted, and those that are not, in `db`.
fn tls_sessions(pg: &Postgres, db: &str) -> String {
    pg.sql(
        "postgres",
        &format!(
            "SELECT count(*) FILTER (WHERE s.ssl) || ' ' || count(*) FILTER (WHERE NOT s.ssl)
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.datname = '{db}' AND a.application_name = 'mailplan'"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sslmode_encrypts_and_checks_the_certificate_as_libpq_does() {
    let (pg, db, _) = fresh();
    let url = pg.url(&db);
    let ca = pg.ca_cert_path();
    let ca = ca.to_str().expect("utf-8");
    let open = |query: String| {
        let url = url.replace("sslmode=disable", &query);
        async move { PgStore::open(&PgTarget::parse(&url).expect("parse"), "p").await }
    };
    // disable: in clear; require: encrypted, the certificate not checked (no root given).
    let plain = open("sslmode=disable".to_owned()).await.expect("disable");
    assert_eq!(tls_sessions(pg, &db), "0 1");
    drop(plain);
    let encrypted = open("sslmode=require".to_owned()).await.expect("require");
    assert!(
        tls_sessions(pg, &db).starts_with("1 "),
        "{}",
        tls_sessions(pg, &db)
    );
    drop(encrypted);
    // verify-full with the CA that signed it: the name 127.0.0.1 is in the certificate.
    open(format!("sslmode=verify-full&sslrootcert={ca}"))
        .await
        .expect("verify-full with its CA");
    // verify-full with the system's roots only: refused, said so, no password shown.
    let err = open("sslmode=verify-full".to_owned())
        .await
        .map(drop)
        .expect_err("an unknown CA");
    let text = format!("{err} {err:?}");
    assert!(matches!(err, PgError::Unreachable { .. }), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    // A name that is not the certificate's (reached at its address): verify-ca accepts the
    // chain, verify-full refuses the name.
    let renamed = |mode: &str| {
        url.replace("127.0.0.1", "db.other.example").replace(
            "sslmode=disable",
            &format!("sslmode={mode}&sslrootcert={ca}&hostaddr=127.0.0.1"),
        )
    };
    PgStore::open(&PgTarget::parse(&renamed("verify-ca")).expect("parse"), "p")
        .await
        .expect("verify-ca: the chain is enough");
    let err = PgStore::open(
        &PgTarget::parse(&renamed("verify-full")).expect("parse"),
        "p",
    )
    .await
    .map(drop)
    .expect_err("verify-full: another name");
    let text = format!("{err} {err:?}");
    assert!(matches!(err, PgError::Unreachable { .. }), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}
