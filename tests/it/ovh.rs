//! The `OVHcloud` flows end to end: `mailplan apply` against the OVH API simulator (`ovh-sim`)
//! whose mailboxes live in a real Dovecot, so a renamed, configured or migrated account really
//! holds its mail over IMAP.

use std::process::{Command, Output};

use ovh_sim::{Fault, Fixture, Simulator};

use crate::support::dovecot::Dovecot;
use crate::support::mailbox::snapshot;
use crate::text;

mod waits;

const AK: &str = "test-ak";
const AS: &str = "test-application-secret";
const CK: &str = "test-ck";
const MARY_OLD: &str = "Mary-old-secret-1";
const MARY_NEW: &str = "Spring-Tulip-2026x";
const JOHN: &str = "John-secret-12";

/// Dovecot, the simulator over its mail, and a plan mixing both MX Plan flows and IMAP.
struct World {
    dovecot: Dovecot,
    sim: Simulator,
    dir: tempfile::TempDir,
}

fn fixture_yaml(dir: &str, extra_legacy: &str) -> String {
    format!(
        r#"
auth:
  application_key: {AK}
  application_secret: {AS}
  requests_per_minute: 0
  consumer_keys:
    - key: {CK}
      rules:
        - {{ method: GET, path: "/email/*" }}
        - {{ method: POST, path: "/email/*" }}
        - {{ method: PUT, path: "/email/*" }}
        - {{ method: DELETE, path: "/email/*" }}
# Finished tasks are dropped at once, as OVH drops them: a wait must not take that for a loss.
timing: {{ todo_ms: 20, doing_ms: 30, done_kept_ms: 0 }}
legacy_domains:
  - domain: legacy.test
    accounts:
      - name: john
        password: "{JOHN}"
        messages: {{ INBOX: 4, Archive: 2, Sent: 1 }}
{extra_legacy}
# As OVH's tool lands a mailbox: Sent → Sent Items, others under the Inbox.
legacy_migration: {{ exchange_folder_names: true, others_under_inbox: true }}
mxplan_services:
  - service: mxplan-test-1
    domains:
      - {{ name: acme.test }}
    accounts:
      - {{ login: mary, domain: acme.test, password: "{MARY_OLD}", display_name: Mary,
          messages: {{ INBOX: 5, Sent: 2 }} }}
exchange_services:
  - organization: hosted-test-1
    placeholders: 3
dns:
  acme.test:
    mx: ["1 mx1.old-provider.example."]
    ovh_zone: true
mail:
  users_file: {dir}/users
  mail_root: {dir}/mail
  owner: dovecot
"#
    )
}

impl World {
    fn new(extra_legacy: &str) -> World {
        World::edited(extra_legacy, |yaml| yaml)
    }

    /// The scenario with `extra_legacy` in the legacy domain and `edit` applied to the YAML.
    fn edited(extra_legacy: &str, edit: impl Fn(String) -> String) -> World {
        let dovecot = Dovecot::start();
        let dir = dovecot.dir.path().display().to_string();
        let yaml = edit(fixture_yaml(&dir, extra_legacy));
        let sim = Simulator::start(Fixture::from_yaml(&yaml).expect("the fixture parses"));
        // The IMAP → IMAP account lives on the same Dovecot.
        dovecot.add_user("alice@old.example", "alice-old");
        dovecot.add_user("alice@new.example", "alice-new");
        World {
            dovecot,
            sim,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn plan(&self, extra_accounts: &str) -> std::path::PathBuf {
        let imap = format!(
            "{{ host: localhost, port: {}, tls: implicit }}",
            self.dovecot.imaps_port
        );
        let text = format!(
            r#"version: 1
name: ovh-e2e
ovh: {{ endpoint: "{base}" }}
platforms:
  old-mxplan: {{ type: ovh-mxplan, service: mxplan-test-1, imap: {imap} }}
  old-legacy: {{ type: ovh-mxplan-legacy, domain: legacy.test, imap: {imap} }}
  exchange: {{ type: ovh-exchange, organization: hosted-test-1, imap: {imap} }}
  old-isp: {{ type: imap, imap: {imap} }}
  new-isp: {{ type: imap, imap: {imap} }}
domains:
  - {{ name: acme.test, platform: exchange, type: non-authoritative }}
  - {{ name: legacy.test, platform: exchange, type: non-authoritative }}
accounts:
  - address: mary@acme.test
    from: old-mxplan
    to: exchange
    display-name: Mary
    source-password: {{ env: MARY_OLD }}
    target-password: {{ env: MARY_NEW }}
  - address: john@legacy.test
    from: old-legacy
    to: exchange
    source-password: {{ env: JOHN }}
  - address: alice@old.example
    from: old-isp
    to: new-isp
    target-login: alice@new.example
    source-password: {{ env: ALICE_OLD }}
    target-password: {{ env: ALICE_NEW }}
{extra_accounts}"#,
            base = self.sim.base_url()
        );
        let path = self.dir.path().join("ovh-e2e.yaml");
        std::fs::write(&path, text).expect("write the plan");
        path
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("mailplan runs")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mailplan"));
        c.args(args);
        if args.first() == Some(&"apply") {
            c.args(["--ovh-requests-per-minute", "100000"]);
        }
        c.env("NO_COLOR", "1")
            .env("SSL_CERT_FILE", self.dovecot.ca_cert_path())
            .env("OVH_APPLICATION_KEY", AK)
            .env("OVH_APPLICATION_SECRET", AS)
            .env("OVH_CONSUMER_KEY", CK)
            .env("MARY_OLD", MARY_OLD)
            .env("MARY_NEW", MARY_NEW)
            .env("JOHN", JOHN)
            .env("ALICE_OLD", "alice-old")
            .env("ALICE_NEW", "alice-new")
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path());
        c
    }

    fn mutating(&self) -> Vec<String> {
        self.sim
            .requests()
            .iter()
            .filter(|r| r.is_mutating())
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
}

#[test]
fn both_mx_plan_flows_and_an_imap_account_migrate_end_to_end() {
    let w = World::new("");
    let plan = w.plan("");
    let plan = plan.to_str().expect("utf-8");

    // The dry run reads (GET only) and changes nothing.
    let out = w.run(&["apply", plan, "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(w.mutating().is_empty(), "a dry run sent {:?}", w.mutating());
    let out = w.run(&["plan", plan, "--refresh"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        w.mutating().is_empty(),
        "plan --refresh sent {:?}",
        w.mutating()
    );
    let live = String::from_utf8_lossy(&out.stdout);
    for line in [
        "would attach acme.test as nonAuthoritative",
        "would rename mary@acme.test to mary-old@acme.test",
        "ready: no redirection, no responder, checkMigrate clear",
        "would migrate john@legacy.test to hosted-test-1",
        "every check before the run passes",
    ] {
        assert!(
            live.contains(line),
            "plan --refresh lacks `{line}`:\n{live}"
        );
    }

    let out = w.run(&["apply", plan]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n--- users\n{}\n--- dovecot log\n{}",
        text(&out),
        std::fs::read_to_string(w.dovecot.dir.path().join("users")).unwrap_or_default(),
        w.dovecot.log()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    for step in [
        "done    add-domain acme.test",
        "done    add-domain legacy.test",
        "done    rename-source mary@acme.test",
        "done    configure-target mary@acme.test",
        "done    copy-mail mary@acme.test",
        "done    verify mary@acme.test",
        "done    preflight john@legacy.test",
        "done    migrate-legacy john@legacy.test",
        "done    verify john@legacy.test",
        "done    check-dns acme.test",
        "done    verify alice@old.example",
    ] {
        assert!(err.contains(step), "missing `{step}`:\n{err}");
    }
    assert!(
        err.contains("MX: found"),
        "check-dns says what to change: {err}"
    );

    // The order in the recorded requests: domain and rename before configure.
    let calls = w.mutating();
    let at = |needle: &str| {
        calls
            .iter()
            .position(|c| c.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in {calls:?}"))
    };
    let configure = calls
        .iter()
        .position(|c| c.starts_with("PUT /email/exchange/") && c.contains("configureme.me"))
        .expect("a placeholder was configured");
    assert!(at("POST /email/exchange/hosted-test-1/service/hosted-test-1/domain") < configure);
    assert!(at("PUT /email/mxplan/mxplan-test-1/account/mary@acme.test") < configure);
    // The guide's order: acme.test attached, its task answered done, before Mary is renamed.
    let requests = w.sim.requests();
    let acme_added = requests
        .iter()
        .position(|r| {
            r.method == "POST" && r.path.ends_with("/domain") && r.body.contains("acme.test")
        })
        .expect("acme.test was attached");
    let rename = requests
        .iter()
        .position(|r| r.method == "PUT" && r.path.starts_with("/email/mxplan/"))
        .expect("Mary was renamed");
    assert!(
        acme_added < rename,
        "renamed before the domain was attached"
    );
    assert!(
        requests[acme_added..rename]
            .iter()
            .any(|r| r.method == "GET"
                && r.path.ends_with("/domain/acme.test")
                && r.response.contains("\"state\":\"ok\"")),
        "the rename did not wait for acme.test to be ok"
    );
    assert!(at("changePassword") > configure);
    assert!(at("/migrate") > 0 || calls.iter().any(|c| c.ends_with("/migrate")));

    // Mail arrived: Mary's on Exchange with her new password, the renamed source kept its
    // copy; John's migrated mailbox on Exchange with his password.
    let mary = snapshot(&w.dovecot, "mary@acme.test", MARY_NEW);
    assert_eq!(mary.message_total(), 7);
    let old = snapshot(&w.dovecot, "mary-old@acme.test", MARY_OLD);
    assert_eq!(
        old.message_total(),
        7,
        "the copy is additive: the source keeps its mail"
    );
    let john = snapshot(&w.dovecot, "john@legacy.test", JOHN);
    assert_eq!(john.message_total(), 7);
    // Verified through OVH's layout, not by the same folder names.
    for f in ["INBOX", "INBOX/Archive", "Sent Items"] {
        assert!(
            john.folders.contains(f),
            "no {f} on Exchange: {:?}",
            john.folders
        );
    }

    // A re-run does nothing twice: no POST, PUT or DELETE.
    w.sim.clear_requests();
    let out = w.run(&["apply", plan]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        w.mutating().is_empty(),
        "the re-run sent {:?}",
        w.mutating()
    );
    assert_eq!(
        snapshot(&w.dovecot, "mary@acme.test", MARY_NEW).message_total(),
        7
    );

    // The state store lost: the migrated source is still listed (OVH deletes it within days),
    // yet nothing is migrated, renamed or claimed a second time.
    std::fs::remove_dir_all(w.dir.path().join(".mailplan")).expect("remove the state store");
    w.sim.clear_requests();
    let out = w.run(&["apply", plan]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let again: Vec<String> = w
        .mutating()
        .into_iter()
        .filter(|c| !c.ends_with("/changePassword"))
        .collect();
    assert!(again.is_empty(), "the run without its store sent {again:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already migrated"), "{err}");

    // plan --refresh sees it too, and every check before a run passes.
    w.sim.clear_requests();
    let out = w.run(&["plan", plan, "--refresh"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let live = String::from_utf8_lossy(&out.stdout);
    assert!(live.contains("already migrated"), "{live}");
    assert!(!live.contains("would migrate"), "{live}");
    assert!(w.mutating().is_empty(), "{:?}", w.mutating());
}

#[test]
fn injected_429_409_and_500_are_survived() {
    let w = World::new("");
    let plan = w.plan("");
    w.sim.inject(
        Fault::too_many_requests(1)
            .on("GET", "/email/exchange")
            .times(2),
    );
    w.sim
        .inject(Fault::server_error().on("GET", "/email/mxplan").times(2));
    w.sim.inject(
        Fault::already_processing()
            .on("PUT", "/email/mxplan")
            .times(1),
    );
    let out = w.run(&["apply", plan.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let statuses: Vec<u16> = w.sim.requests().iter().map(|r| r.status).collect();
    for code in [429, 500, 409] {
        assert!(
            statuses.contains(&code),
            "no {code} was injected: {statuses:?}"
        );
    }
    assert_eq!(
        snapshot(&w.dovecot, "mary@acme.test", MARY_NEW).message_total(),
        7
    );
}

#[test]
fn a_placeholder_taken_between_the_listing_and_its_check_is_replaced_by_another() {
    // Another step (or admin) turns the @configureme.me account the preflight listed into a
    // real address before its checkMigrate: the API answers 404; the preflight lists again
    // and the migration goes on (this race failed a run of the end-to-end test once).
    let w = World::new("");
    let plan = w.plan("");
    w.sim.inject(
        Fault::gone()
            .on(
                "GET",
                "/email/domain/legacy.test/account/john/migrate/hosted-test-1/destinationEmailAddress/",
            )
            .times(1),
    );
    let out = w.run(&["apply", plan.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let checks: Vec<u16> = w
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/checkMigrate"))
        .map(|r| r.status)
        .collect();
    assert_eq!(checks.first(), Some(&404), "{checks:?}");
    assert!(checks[1..].contains(&200), "{checks:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("done    migrate-legacy john@legacy.test"),
        "{err}"
    );
}

#[test]
fn a_bad_application_secret_stops_everything_before_it_starts_with_a_clear_error() {
    let w = World::new("");
    let plan = w.plan("");
    let out = w
        .command(&["apply", plan.to_str().expect("utf-8")])
        .env("OVH_APPLICATION_SECRET", "not-the-secret")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ovh::invalid_signature") && err.contains("Invalid signature"),
        "{err}"
    );
    assert!(
        err.contains("EU.ext-sim."),
        "the X-Ovh-QueryID is named: {err}"
    );
    assert!(!err.contains("not-the-secret"), "the secret was printed");
    assert!(w.mutating().is_empty(), "something ran: {:?}", w.mutating());
    assert!(
        !w.dir.path().join(".mailplan").exists(),
        "a state store was written"
    );
}

#[test]
fn a_run_killed_during_a_task_poll_resumes_without_doing_anything_twice() {
    let w = World::new("");
    let plan = w.plan("");
    let plan = plan.to_str().expect("utf-8");
    // Slow tasks, so the kill lands while mailplan polls the rename's and the configure's tasks.
    w.sim
        .inject(Fault::slow_tasks(1500, 1500).on_path("/email/").times(20));
    let mut child = w
        .command(&["apply", plan])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let start = std::time::Instant::now();
    while !w
        .mutating()
        .iter()
        .any(|c| c.starts_with("PUT /email/mxplan/"))
        && start.elapsed() < std::time::Duration::from_secs(30)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(
        w.mutating()
            .iter()
            .any(|c| c.starts_with("PUT /email/mxplan/")),
        "the kill came before the rename"
    );

    let out = w.run(&["apply", plan]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let calls = w.mutating();
    let count = |prefix: &str| calls.iter().filter(|c| c.starts_with(prefix)).count();
    assert_eq!(count("PUT /email/mxplan/"), 1, "renamed twice: {calls:?}");
    assert_eq!(
        count("POST /email/exchange/hosted-test-1/service/hosted-test-1/domain"),
        2,
        "each domain attached once: {calls:?}"
    );
    // A placeholder that the killed run's historical migration is moving into may be tried
    // first and refused (409, nothing changed); exactly one configure is accepted.
    let configures: Vec<(String, u16)> = w
        .sim
        .requests()
        .iter()
        .filter(|r| {
            r.method == "PUT"
                && r.path.starts_with("/email/exchange/")
                && r.path.contains("configureme.me")
        })
        .map(|r| (r.path.clone(), r.status))
        .collect();
    assert_eq!(
        configures.iter().filter(|(_, s)| *s < 300).count(),
        1,
        "one placeholder configured for Mary: {configures:?}"
    );
    assert!(
        configures.iter().all(|(_, s)| *s < 300 || *s == 409),
        "a configure was refused for another reason than a busy placeholder: {configures:?}"
    );
    assert_eq!(count("POST /email/domain/"), 1, "migrated once: {calls:?}");
    assert_eq!(
        snapshot(&w.dovecot, "mary@acme.test", MARY_NEW).message_total(),
        7
    );
    assert_eq!(
        snapshot(&w.dovecot, "john@legacy.test", JOHN).message_total(),
        7
    );
}

#[test]
fn a_placeholder_a_killed_run_is_migrating_into_is_not_configured_again() {
    // A run killed while OVH migrates a historical account into a @configureme.me account: the
    // next run cannot know that placeholder is taken until the migration ends, and Exchange
    // refuses to configure it (409). configure-target takes another one instead of failing
    // (this failed the task-poll kill test once in CI).
    let w = World::new("");
    let plan = w.plan("");
    let plan = plan.to_str().expect("utf-8");
    let migrate = "/email/domain/legacy.test/account/john/migrate/";
    w.sim
        .inject(Fault::slow_tasks(8000, 8000).on("POST", migrate).times(1));
    let mut child = w
        .command(&["apply", plan, "--only", "john@legacy.test"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let posted = |w: &World| {
        w.mutating()
            .iter()
            .any(|c| c.starts_with(&format!("POST {migrate}")))
    };
    let start = std::time::Instant::now();
    while !posted(&w) && start.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(posted(&w), "the kill came before the migration");
    assert!(w.sim.tasks_pending(), "the migration already ended");

    let out = w.run(&["apply", plan]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let calls = w.mutating();
    let migrations = calls
        .iter()
        .filter(|c| c.starts_with(&format!("POST {migrate}")))
        .count();
    assert_eq!(migrations, 1, "migrated twice: {calls:?}");
    assert_eq!(
        snapshot(&w.dovecot, "mary@acme.test", MARY_NEW).message_total(),
        7
    );
    assert_eq!(
        snapshot(&w.dovecot, "john@legacy.test", JOHN).message_total(),
        7
    );
}

#[test]
fn a_placeholder_gone_between_the_listing_and_its_claim_is_passed_over() {
    // A @configureme.me account listed, then gone when configure-target reads it (a historical
    // migration renamed it meanwhile: this race failed the task-poll kill test once in CI).
    let w = World::new("");
    let plan = w.plan("");
    let plan = plan.to_str().expect("utf-8");
    // Which placeholder a claim reads first: the dry run reads them in the same order.
    let dry = w.run(&["apply", plan, "--dry-run", "--only", "mary@acme.test"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let first = w
        .sim
        .requests()
        .iter()
        .find(|r| {
            r.method == "GET" && r.path.contains("/account/") && r.path.ends_with("@configureme.me")
        })
        .map(|r| r.path.clone())
        .expect("a placeholder read");
    w.sim.clear_requests();
    w.sim.inject(Fault::gone().on("GET", &first).times(1000));
    let out = w.run(&["apply", plan, "--only", "mary@acme.test"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let gone = w
        .sim
        .requests()
        .iter()
        .any(|r| r.path == first && r.status == 404);
    assert!(gone, "the placeholder was not read");
    let configured: Vec<String> = w
        .mutating()
        .into_iter()
        .filter(|c| c.starts_with("PUT /email/exchange/") && c.contains("configureme.me"))
        .collect();
    assert_eq!(configured.len(), 1, "{configured:?}");
    assert!(!configured[0].ends_with(&first), "{configured:?}");
    assert_eq!(
        snapshot(&w.dovecot, "mary@acme.test", MARY_NEW).message_total(),
        7
    );
}

fn world_with(edit: impl Fn(String) -> String) -> World {
    World::edited("", edit)
}

#[test]
fn without_enough_placeholders_nothing_runs_and_the_error_says_how_many_to_order() {
    let w = world_with(|y| y.replace("placeholders: 3", "placeholders: 1"));
    let plan = w.plan("");
    let out = w.run(&["apply", plan.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exec::preflight")
            && err.contains("2 account(s) need a free @configureme.me account, 1 available")
            && err.contains("order 1 more"),
        "{err}"
    );
    assert!(w.mutating().is_empty(), "something ran: {:?}", w.mutating());
}

#[test]
fn a_suspended_placeholder_is_not_counted_and_nothing_is_changed() {
    // Issue 14, defect 2: three @configureme.me accounts, but one is suspended and one is still
    // being created: claiming would take only one, and the run needs two.
    let w = world_with(|y| {
        y.replace(
            "    placeholders: 3",
            "    placeholders: 1\n    accounts:\n      - { login: frozen01, domain: configureme.me, state: suspended }\n      - { login: newborn01, domain: configureme.me, state: creating }",
        )
    });
    let plan = w.plan("");
    let out = w.run(&["apply", plan.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2 account(s) need a free @configureme.me account, 1 available")
            && err.contains("order 1 more"),
        "{err}"
    );
    assert!(
        w.mutating().is_empty(),
        "a change was made before the shortfall was known: {:?}",
        w.mutating()
    );
}

#[test]
fn every_failed_check_is_listed_before_any_change() {
    // A weak target password, a redirection on the historical source, a domain authoritative on
    // the MX Plan while the plan attaches it as authoritative, a consumer key without the PUT
    // rules: all in one list, exit 2, not one mutating request.
    let w = World::edited(
        "    redirections:\n      - { from: john@legacy.test, to: john@elsewhere.example }\n",
        |y| {
            y.replace(
                "        - { method: PUT, path: \"/email/*\" }\n",
                "        - { method: GET, path: \"/auth/currentCredential\" }\n",
            )
        },
    );
    let plan = w.plan("");
    let text_plan = std::fs::read_to_string(&plan).expect("plan").replace(
        "{ name: acme.test, platform: exchange, type: non-authoritative }",
        "{ name: acme.test, platform: exchange, type: authoritative }",
    );
    std::fs::write(&plan, text_plan).expect("write");
    let out = w
        .command(&["apply", plan.to_str().expect("utf-8")])
        .env("MARY_NEW", "short")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "exec::preflight",
        "4 check(s) before the run failed",
        "mary@acme.test: the target password does not meet hosted-test-1's policy",
        "john@legacy.test: 1 redirection(s) from or to the account",
        "acme.test is authoritative on the MX Plan mxplan-test-1",
        "the OVH consumer key does not allow PUT /email/exchange/*/service/*/account/*",
    ] {
        assert!(err.contains(needle), "missing `{needle}`:\n{err}");
    }
    assert!(!err.contains("short"), "a password was printed: {err}");
    assert!(w.mutating().is_empty(), "something ran: {:?}", w.mutating());

    // plan --refresh shows the same verdicts, beside the accounts they concern.
    let out = w
        .command(&["plan", plan.to_str().expect("utf-8"), "--refresh"])
        .env("MARY_NEW", "short")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let live = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "the target password does not meet hosted-test-1's policy",
        "1 redirection(s) from or to the account",
        "acme.test is authoritative on the MX Plan mxplan-test-1",
        "does not allow PUT /email/exchange/*/service/*/account/*",
    ] {
        assert!(
            live.contains(needle),
            "plan --refresh lacks `{needle}`:\n{live}"
        );
    }
    assert!(
        w.mutating().is_empty(),
        "plan --refresh sent {:?}",
        w.mutating()
    );
}

#[test]
fn only_runs_the_shared_steps_of_the_selected_accounts() {
    // Issue 14, defect 3: --only naming John (any case in the domain part) must not attach
    // Mary's domain to Exchange, nor check its DNS.
    let w = World::new("");
    let plan = w.plan("");
    let out = w.run(&[
        "apply",
        plan.to_str().expect("utf-8"),
        "--only",
        "john@LEGACY.Test",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let calls = w.mutating();
    assert!(
        calls.iter().all(|c| !c.contains("acme.test")),
        "a step of an account that was not selected ran: {calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c == "POST /email/exchange/hosted-test-1/service/hosted-test-1/domain"),
        "{calls:?}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("add-domain acme.test"), "{err}");
    assert!(!err.contains("check-dns acme.test"), "{err}");
    assert!(err.contains("done    verify john@legacy.test"), "{err}");
}

#[test]
fn a_domain_refused_at_run_time_leaves_the_source_unrenamed() {
    // Issue 14, defect 1: a domain attached to another customer's Exchange cannot be seen before
    // trying ("UPN suffix …"); the rename waits for the domain, so Mary's address stays hers.
    let w = world_with(|y| y.replace("dns:", "foreign_domains: [acme.test]\ndns:"));
    let plan = w.plan("");
    let out = w.run(&["apply", plan.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("FAILED  add-domain acme.test") && err.contains("detach it there first"),
        "the UPN-suffix refusal says what to do: {err}"
    );
    for skipped in [
        "skipped rename-source mary@acme.test",
        "skipped configure-target mary@acme.test",
    ] {
        assert!(err.contains(skipped), "missing `{skipped}`: {err}");
    }
    assert!(err.contains("done    verify john@legacy.test"), "{err}");
    assert!(err.contains("done    verify alice@old.example"), "{err}");
    assert!(
        !w.mutating()
            .iter()
            .any(|c| c.starts_with("PUT /email/mxplan/") || c.starts_with("PUT /email/exchange/")),
        "the source was renamed or a placeholder configured: {:?}",
        w.mutating()
    );
    assert_eq!(
        snapshot(&w.dovecot, "mary@acme.test", MARY_OLD).message_total(),
        7,
        "Mary's mailbox is still at her address"
    );
}

#[test]
fn a_domain_outside_ovh_zones_says_at_once_which_cname_to_create() {
    // acme.test's zone is elsewhere: attached, it waits for its ownership proof. add-domain
    // says which record to create instead of waiting; Mary's source is not renamed.
    let w = world_with(|y| y.replace("    ovh_zone: true", "    ovh_zone: false"));
    let plan = w.plan("");
    let plan = plan.to_str().expect("utf-8");
    let started = std::time::Instant::now();
    let out = w.run(&["apply", plan]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "add-domain waited for the proof"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("FAILED  add-domain acme.test")
            && err.contains("-check.acme.test. CNAME ovh.com.`"),
        "{err}"
    );
    assert!(
        err.contains("skipped rename-source mary@acme.test"),
        "{err}"
    );
    assert!(
        !w.mutating()
            .iter()
            .any(|c| c.starts_with("PUT /email/mxplan/")),
        "{:?}",
        w.mutating()
    );

    // Until the record exists, the preflight stops the next run before any change.
    w.sim.clear_requests();
    let out = w.run(&["apply", plan, "--retry-failed"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exec::preflight") && err.contains("CNAME ovh.com."),
        "{err}"
    );
    assert!(w.mutating().is_empty(), "{:?}", w.mutating());

    // The owner creates it: the run goes on.
    w.sim.prove_domain("acme.test");
    let out = w.run(&["apply", plan, "--retry-failed"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        snapshot(&w.dovecot, "mary@acme.test", MARY_NEW).message_total(),
        7
    );
}

#[test]
fn a_historical_account_migrates_to_a_provider_exchange_too() {
    // A provider (or dedicated) Exchange is offered under its own `migrate?type=`, not as
    // hosted: the migration must ask for the type of the plan's service.
    let w = world_with(|y| {
        y.replace(
            "  - organization: hosted-test-1\n",
            "  - organization: hosted-test-1\n    offer: provider\n",
        )
    });
    let plan = w.plan("");
    let out = w.run(&[
        "apply",
        plan.to_str().expect("utf-8"),
        "--only",
        "john@legacy.test",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("done    verify john@legacy.test"), "{err}");
    assert!(
        w.sim
            .requests()
            .iter()
            .any(|r| r.path.contains("/migrate?type=PROVIDER%20EXCHANGE")),
        "the provider type was not asked for"
    );
}

#[test]
fn a_source_login_named_after_the_rename_passes_the_preflight_before_it() {
    // The plan names the copy's login (the provisional address): before the rename the
    // mailbox still answers at its address, which is what the preflight tries.
    let w = World::new("");
    let plan = w.plan("");
    let text_plan = std::fs::read_to_string(&plan).expect("plan").replace(
        "    display-name: Mary\n",
        "    display-name: Mary\n    source-login: mary-old@acme.test\n",
    );
    std::fs::write(&plan, text_plan).expect("write");
    let out = w.run(&[
        "apply",
        plan.to_str().expect("utf-8"),
        "--only",
        "mary@acme.test",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        snapshot(&w.dovecot, "mary@acme.test", MARY_NEW).message_total(),
        7
    );
}

#[test]
fn a_clock_that_jumps_during_a_run_is_read_again_and_the_run_goes_on() {
    // The server's clock moves an hour once the run is under way: the next signed call is
    // refused (QUERY_TIME_OUT), the client reads /auth/time again and resends.
    let w = World::new("");
    let plan = w.plan("");
    w.sim
        .inject(Fault::slow_tasks(300, 300).on_path("/email/").times(4));
    let child = w
        .command(&["apply", plan.to_str().expect("utf-8")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = std::time::Instant::now();
    while !w.mutating().iter().any(|c| c.starts_with("POST "))
        && start.elapsed() < std::time::Duration::from_secs(30)
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    w.sim.set_clock_offset(3600);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let requests = w.sim.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.status == 400 && r.response.contains("QUERY_TIME_OUT")),
        "the jump was not seen"
    );
    assert!(
        requests.iter().filter(|r| r.path == "/auth/time").count() >= 2,
        "the time was not read again"
    );
}

#[test]
fn a_wrong_legacy_password_stops_the_run_before_any_change() {
    let w = World::new("");
    let plan = w.plan("");
    let out = w
        .command(&["apply", plan.to_str().expect("utf-8")])
        .env("JOHN", "Wrong-password-99")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exec::preflight") && err.contains("john@legacy.test: the source login fails"),
        "{err}"
    );
    assert!(!err.contains("Wrong-password-99"), "a password was printed");
    assert!(w.mutating().is_empty(), "something ran: {:?}", w.mutating());
}

#[test]
fn ovh_login_asks_for_a_consumer_key_with_the_tools_rules() {
    let w = World::new("");
    let out = w
        .command(&["ovh", "login", "--endpoint", &w.sim.base_url()])
        .env_remove("OVH_CONSUMER_KEY")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let url = stdout
        .lines()
        .find_map(|l| l.strip_prefix("validation_url="))
        .expect("a validation URL");
    assert!(url.contains("credentialToken="), "{url}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PUT") && err.contains("/email/mxplan/"),
        "{err}"
    );
    let request = w
        .sim
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with("/auth/credential"))
        .expect("POST /auth/credential was sent");
    assert_eq!(request.method, "POST");
    assert!(!request.body.is_empty());
}

#[test]
fn ovh_login_save_stores_the_key_in_ovh_conf_and_prints_no_key() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new("");
    let conf = w.dir.path().join("ovh.conf");
    std::fs::write(&conf, "[default]\nendpoint=ovh-eu\n").expect("write ovh.conf");
    let out = w
        .command(&[
            "ovh",
            "login",
            "--endpoint",
            &w.sim.base_url(),
            "--save",
            conf.to_str().expect("utf-8"),
        ])
        .env_remove("OVH_CONSUMER_KEY")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stored = std::fs::read_to_string(&conf).expect("ovh.conf");
    assert!(
        stored.starts_with("[default]\nendpoint=ovh-eu\n"),
        "{stored}"
    );
    let key = stored
        .lines()
        .find_map(|l| l.strip_prefix("consumer_key="))
        .expect("a consumer key stored");
    assert!(!key.is_empty(), "{stored}");
    let all = text(&out);
    assert!(!all.contains(key), "the key was printed: {all}");
    assert!(all.contains("validation_url="), "{all}");
    let mode = std::fs::metadata(&conf).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn reset_source_runs_only_when_asked_and_only_after_verify() {
    let w = World::new("");
    let plan = w.plan("after:\n  reset-source: true\n");
    let out = w.run(&["apply", plan.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let verify = err
        .find("done    verify mary@acme.test")
        .expect("Mary verified");
    let reset = err
        .find("done    reset-source mary@acme.test")
        .expect("Mary's source reset");
    assert!(verify < reset, "reset before verify:\n{err}");
    assert!(
        w.mutating()
            .iter()
            .any(|c| c == "DELETE /email/mxplan/mxplan-test-1/account/mary-old@acme.test"),
        "{:?}",
        w.mutating()
    );
    // The copy on Exchange is untouched.
    assert_eq!(
        snapshot(&w.dovecot, "mary@acme.test", MARY_NEW).message_total(),
        7
    );
}

#[test]
fn check_migrate_codes_are_said_in_words_with_what_to_do() {
    // OVH's checkMigrate refuses John's migration with two codes that waiting does not clear.
    let w = world_with(|y| {
        y.replace(
            "        messages: { INBOX: 4, Archive: 2, Sent: 1 }\n",
            "        messages: { INBOX: 4, Archive: 2, Sent: 1 }\n        \
             check_errors: [DELEGATION_EXIST, MAILINGLIST_EXIST]\n",
        )
    });
    let plan = w.plan("");
    let plan = plan.to_str().expect("utf-8");
    let out = w.run(&["apply", plan, "--only", "john@legacy.test"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    for sentence in [
        "The account is delegated to other accounts: remove its delegations in the OVHcloud \
         control panel, then run apply again (OVH code DELEGATION_EXIST).",
        "A mailing list uses this address, which cannot be migrated: remove the mailing list in \
         the control panel, then run apply again (OVH code MAILINGLIST_EXIST).",
    ] {
        assert!(said.contains(sentence), "missing `{sentence}`:\n{said}");
    }
    for rust in ["DelegationExist", "MailinglistExist"] {
        assert!(!said.contains(rust), "a Rust variant name: {said}");
    }
    let migrate = w
        .mutating()
        .into_iter()
        .filter(|r| r.contains("/migrate"))
        .collect::<Vec<_>>();
    assert!(migrate.is_empty(), "the migration was asked: {migrate:?}");
}

/// Two `apply` workers at once on a `PostgreSQL` state: the OVH steps, the shared domain steps
/// included, run once between them: the simulator records the same mutating requests as one
/// `apply` alone sends on a world of its own, none twice.
#[test]
fn two_workers_on_a_shared_state_send_every_mutating_request_once() {
    use crate::support::postgres::Postgres;
    let sorted = |w: &World| {
        let mut calls = w.mutating();
        calls.sort();
        calls
    };
    // One apply alone (SQLite): the requests a run sends.
    let alone = World::new("");
    let plan = alone.plan("");
    let out = alone.run(&["apply", plan.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let expected = sorted(&alone);

    let w = World::new("");
    let plan = w.plan("");
    let plan = plan.to_str().expect("utf-8");
    let pg = Postgres::shared();
    let db = pg.database();
    let url = pg.url(&db);
    let workers: Vec<std::process::Child> = (0..2)
        .map(|_| {
            // One step at a time each, so that both take some of the first ones.
            w.command(&["apply", plan, "--state", &url, "--parallelism", "1"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn apply")
        })
        .collect();
    let outs: Vec<Output> = workers
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let mut ran = Vec::new();
    for out in &outs {
        assert_eq!(out.status.code(), Some(0), "{}", text(out));
        let err = String::from_utf8_lossy(&out.stderr);
        // Each line after the worker's own names it: `[HOST pid N] done …`.
        ran.push(
            err.lines()
                .filter(|l| l.starts_with('[') && l.contains("] done "))
                .count(),
        );
    }
    // How many steps each worker ran (shown with --nocapture).
    eprintln!("steps run per worker: {ran:?}");
    assert!(ran.iter().all(|n| *n > 0), "a worker ran nothing: {ran:?}");
    assert_eq!(
        sorted(&w),
        expected,
        "the two workers' requests differ from one run's"
    );
    // Every step ran once: taken once.
    assert_eq!(
        pg.sql(&db, "SELECT count(*) FROM mailplan.claims WHERE taken <> 1"),
        "0"
    );
    assert_eq!(
        snapshot(&w.dovecot, "mary@acme.test", MARY_NEW).message_total(),
        7
    );
    assert_eq!(
        snapshot(&w.dovecot, "john@legacy.test", JOHN).message_total(),
        7
    );
}

/// The OVH request pace holds for the workers of a shared run together: two workers allowed 300
/// requests a minute (one every 200 ms) never send more than that together, as the simulator's
/// clock of the requests shows (a margin of two for the jitter between a turn and its send).
#[test]
fn two_workers_share_the_ovh_request_pace() {
    use crate::support::postgres::Postgres;
    let w = World::new("");
    let plan = w.plan("");
    let plan = plan.to_str().expect("utf-8");
    let pg = Postgres::shared();
    let db = pg.database();
    let url = pg.url(&db);
    let workers: Vec<std::process::Child> = (0..2)
        .map(|_| {
            // `command` adds a fast pace to an `apply` given first: this one sets its own.
            w.command(&[])
                .args(["apply", plan, "--state", &url, "--parallelism", "1"])
                .args(["--ovh-requests-per-minute", "300"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn apply")
        })
        .collect();
    for c in workers {
        let out = c.wait_with_output().expect("wait");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let mut at: Vec<std::time::SystemTime> = w.sim.requests().iter().map(|r| r.at).collect();
    at.sort();
    let window = std::time::Duration::from_secs(1);
    let busiest = (0..at.len())
        .map(|i| {
            at[i..]
                .iter()
                .take_while(|t| t.duration_since(at[i]).unwrap_or_default() < window)
                .count()
        })
        .max()
        .unwrap_or(0);
    eprintln!("{} requests, at most {busiest} in a second", at.len());
    assert!(at.len() > 20, "too few requests to tell: {}", at.len());
    assert!(
        busiest <= 5 + 2,
        "{busiest} requests in one second, two workers at 300 a minute together"
    );
}

/// Two workers configuring two accounts of one Exchange service each claim a placeholder of
/// their own (the claims of a shared run are kept in its state): every placeholder configured
/// once, none refused as taken, and both mailboxes hold their mail.
#[test]
fn two_workers_never_configure_the_same_placeholder() {
    use crate::support::postgres::Postgres;
    const PAUL_OLD: &str = "Paul-old-secret-3";
    const PAUL_NEW: &str = "Summer-Rose-2026y";
    let w = World::edited("", |yaml| {
        yaml.replacen(
            "exchange_services:",
            &format!(
                "      - {{ login: paul, domain: acme.test, password: \"{PAUL_OLD}\", \
                 display_name: Paul, messages: {{ INBOX: 3 }} }}\nexchange_services:"
            ),
            1,
        )
    });
    let plan = w.plan(
        "  - address: paul@acme.test\n    from: old-mxplan\n    to: exchange\n    \
         display-name: Paul\n    source-password: { env: PAUL_OLD }\n    target-password: \
         { env: PAUL_NEW }\n",
    );
    let plan = plan.to_str().expect("utf-8");
    let pg = Postgres::shared();
    let db = pg.database();
    let url = pg.url(&db);
    let workers: Vec<std::process::Child> = (0..2)
        .map(|_| {
            w.command(&["apply", plan, "--state", &url, "--parallelism", "2"])
                .env("PAUL_OLD", PAUL_OLD)
                .env("PAUL_NEW", PAUL_NEW)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn apply")
        })
        .collect();
    for c in workers {
        let out = c.wait_with_output().expect("wait");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let configured: Vec<(String, u16)> = w
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("configureme.me"))
        .map(|r| (r.path.clone(), r.status))
        .collect();
    let mut paths: Vec<&String> = configured.iter().map(|(p, _)| p).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), configured.len(), "{configured:?}");
    assert!(
        configured.iter().all(|(_, status)| *status < 300),
        "{configured:?}"
    );
    assert_eq!(
        pg.sql(&db, "SELECT count(*) FROM mailplan.placeholders"),
        "3",
        "mary's, paul's and john's"
    );
    assert_eq!(
        snapshot(&w.dovecot, "mary@acme.test", MARY_NEW).message_total(),
        7
    );
    assert_eq!(
        snapshot(&w.dovecot, "paul@acme.test", PAUL_NEW).message_total(),
        3
    );
    assert_eq!(
        snapshot(&w.dovecot, "john@legacy.test", JOHN).message_total(),
        7
    );
}
