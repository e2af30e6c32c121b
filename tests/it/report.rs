//! `status` and `report` after a real `apply` (Dovecot and the OVH API simulator): the DNS to-do
//! of `check-dns`, historical accounts counted by `verify`, failed accounts marked, problems
//! grouped per account and reason; the HTML rendered by a real browser (headless Chromium) with
//! no console error, showing what the state holds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ovh_sim::{Fixture, Simulator};

use crate::support::corpus::Corpus;
use crate::support::dovecot::Dovecot;
use crate::text;

const AK: &str = "report-ak";
const AS: &str = "report-application-secret";
const CK: &str = "report-ck";
const MARY_OLD: &str = "Mary-old-secret-1";
const MARY_NEW: &str = "Spring-Tulip-2026x";
const JOHN: &str = "John-secret-12";

/// A finished migration with something of everything a report shows: an MX Plan account whose
/// domain's MX still points elsewhere, a historical account, an IMAP account with messages left
/// out as too large, and one whose target refuses the password.
struct Finished {
    _dovecot: Dovecot,
    _sim: Simulator,
    dir: tempfile::TempDir,
    plan: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Finished {
    fn new() -> Finished {
        let dovecot = Dovecot::start();
        let mail = dovecot.dir.path().display().to_string();
        let fixture = format!(
            r#"
auth:
  application_key: {AK}
  application_secret: {AS}
  consumer_keys:
    - key: {CK}
      rules:
        - {{ method: GET, path: "/email/*" }}
        - {{ method: POST, path: "/email/*" }}
        - {{ method: PUT, path: "/email/*" }}
        - {{ method: DELETE, path: "/email/*" }}
timing: {{ todo_ms: 10, doing_ms: 10 }}
legacy_domains:
  - domain: legacy.test
    accounts:
      - name: john
        password: "{JOHN}"
        messages: {{ INBOX: 4, Archive: 2 }}
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
  users_file: {mail}/users
  mail_root: {mail}/mail
  owner: dovecot
"#
        );
        let sim = Simulator::start(Fixture::from_yaml(&fixture).expect("the fixture parses"));
        for (user, password) in [
            ("alice@old.example", "alice-old"),
            ("alice@new.example", "alice-new"),
            ("bob@old.example", "bob-old"),
            ("bob@new.example", "bob-new"),
        ] {
            dovecot.add_user(user, password);
        }
        Corpus::with_count(20)
            .with_bulky("Archive", 2, 150_000)
            .seed(&dovecot, "alice@old.example", "alice-old");
        Corpus::with_count(8).seed(&dovecot, "bob@old.example", "bob-old");
        let dir = tempfile::tempdir().expect("tempdir");
        let imap = format!(
            "{{ host: localhost, port: {}, tls: implicit }}",
            dovecot.imaps_port
        );
        let yaml = format!(
            r#"version: 1
name: acme-migration
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
    copy: {{ max-message-size: 100kB }}
  - address: bob@old.example
    from: old-isp
    to: new-isp
    target-login: bob@new.example
    source-password: {{ env: BOB_OLD }}
    target-password: {{ env: BOB_NEW }}
"#,
            base = sim.base_url()
        );
        let plan = dir.path().join("acme-migration.yaml");
        std::fs::write(&plan, yaml).expect("write the plan");
        let env = vec![
            (
                "SSL_CERT_FILE",
                dovecot.ca_cert_path().display().to_string(),
            ),
            ("OVH_APPLICATION_KEY", AK.to_owned()),
            ("OVH_APPLICATION_SECRET", AS.to_owned()),
            ("OVH_CONSUMER_KEY", CK.to_owned()),
            ("MARY_OLD", MARY_OLD.to_owned()),
            ("MARY_NEW", MARY_NEW.to_owned()),
            ("JOHN", JOHN.to_owned()),
            ("ALICE_OLD", "alice-old".to_owned()),
            ("ALICE_NEW", "alice-new".to_owned()),
            ("BOB_OLD", "bob-old".to_owned()),
            ("BOB_NEW", "not-bobs-password".to_owned()),
        ];
        let f = Finished {
            _dovecot: dovecot,
            _sim: sim,
            dir,
            plan,
            env,
        };
        let out = f.run(&["apply", "--ovh-requests-per-minute", "100000"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "Bob's account fails, the others finish: {}",
            text(&out)
        );
        f
    }

    /// `mailplan COMMAND PLAN ARGS…` with the plan's secrets and the sandbox's CA.
    fn run(&self, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mailplan"));
        c.arg(args[0]).arg(&self.plan).args(&args[1..]);
        c.env("NO_COLOR", "1")
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.output().expect("mailplan runs")
    }

    fn stdout(&self, args: &[&str]) -> String {
        self.stdout_exiting(args, 0)
    }

    /// The output of a command that must exit with `code` (`status` exits 1 when a step failed).
    fn stdout_exiting(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out));
        String::from_utf8(out.stdout).expect("utf-8")
    }
}

/// The report's JSON account `address`.
fn account<'a>(report: &'a serde_json::Value, address: &str) -> &'a serde_json::Value {
    report["accounts"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["address"] == address))
        .unwrap_or_else(|| panic!("{address} in the report: {report}"))
}

#[test]
fn status_and_reports_show_the_dns_to_do_the_historical_counts_and_grouped_problems() {
    let f = Finished::new();
    let json: serde_json::Value =
        serde_json::from_str(&f.stdout(&["report", "--format", "json"])).expect("JSON");
    assert_eq!(json["format"], "mailplan.report/v1");
    let advice: Vec<String> = json["dns"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["domain"] == "acme.test"))
        .and_then(|d| d["advice"].as_array())
        .expect("acme.test's DNS to-do")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    assert!(
        advice.iter().any(|a| a.contains("MX")),
        "check-dns found the MX pointing elsewhere: {advice:?}"
    );
    // The historical account: the counts verify took (6 in the source, 6 on Exchange).
    let john = account(&json, "john@legacy.test");
    assert_eq!((&john["found"], &john["on_target"]), (&6.into(), &6.into()));
    assert_eq!(john["copied_by"], "ovh");
    let alice = account(&json, "alice@old.example");
    assert_eq!(alice["too_large"], 2, "{alice}");

    // status: the shared steps under their heading, the DNS to-do, the historical counts.
    // bob's copy failed: `status` says so with exit 1.
    let status = f.stdout_exiting(&["status"], 1);
    assert!(
        status.contains("\nShared steps (domains, waves)\n"),
        "{status}"
    );
    assert!(status.contains("add-domain acme.test"), "{status}");
    assert!(status.contains("\nDNS to-do (check-dns)\n"), "{status}");
    for a in &advice {
        assert!(
            status.contains(&format!("acme.test: to change: {a}")),
            "{status}"
        );
    }
    assert!(
        status.contains("6 in the source before OVH's migration, 6 on the target after it"),
        "{status}"
    );
    assert!(
        status.contains("legacy.test: nothing to change")
            || status.contains("legacy.test: to change"),
        "{status}"
    );

    // Markdown: the same content, in a form that fits a ticket.
    let md = f.stdout(&["report", "--format", "markdown"]);
    assert!(
        md.contains("- **Accounts:** 4 accounts, 3 verified, 1 failed"),
        "{md}"
    );
    for a in &advice {
        assert!(
            md.contains(&format!("- [ ] acme.test: to change: {a}")),
            "{md}"
        );
    }
    assert!(md.contains("| ❌ bob@old.example | **failed** |"), "{md}");
    assert!(
        md.contains("| john@legacy.test | verified | 6 | 6 | by OVH |"),
        "{md}"
    );
    assert!(md.contains("#### alice@old.example"), "{md}");
    assert!(
        md.contains("- left out, too large (2): larger than max-message-size (100000 bytes)"),
        "the two messages are one group with one reason: {md}"
    );
    assert!(md.contains("#### bob@old.example"), "{md}");
}

/// Headless Chromium (no network, no first run, a fresh profile), bounded to two minutes.
fn chromium(profile: &Path) -> Command {
    let mut c = Command::new("timeout");
    c.args([
        "120",
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

#[test]
fn the_html_report_renders_in_a_real_browser_without_errors_and_shows_the_state() {
    let f = Finished::new();
    let html = f.stdout(&["report", "--format", "html"]);
    let json: serde_json::Value =
        serde_json::from_str(&f.stdout(&["report", "--format", "json"])).expect("JSON");
    // Self-contained: nothing is fetched.
    for outside in ["src=", "href=", "@import", "url("] {
        assert!(!html.contains(outside), "the report loads `{outside}`");
    }
    let page = f.dir.path().join("report.html");
    std::fs::write(&page, &html).expect("write the report");
    let url = format!("file://{}", page.display());

    let out = chromium(&f.dir.path().join("profile"))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium runs (Debian package `chromium`)");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium: {log}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    let dom = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        dom.contains("<h1>Migration report: acme-migration</h1>"),
        "{dom}"
    );

    // What the state holds is what the page shows: every account's row with its counts.
    for a in json["accounts"].as_array().expect("accounts") {
        let address = a["address"].as_str().expect("address");
        let row = dom
            .split("<tr")
            .find(|r| r.contains(&format!("<td>{address}</td>")))
            .unwrap_or_else(|| panic!("no row for {address}: {dom}"));
        // An account whose copy never ran has no counts: `–`.
        for field in ["found", "on_target"] {
            let n = a["on_target"]
                .as_u64()
                .and(a[field].as_u64())
                .map_or_else(|| "–".to_owned(), |n| n.to_string());
            assert!(
                row.contains(&format!("<td class=\"n\">{n}</td>")),
                "{address}'s {field} ({n}) is not in its row: {row}"
            );
        }
        let failed = a["steps"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["status"] == "failed"));
        assert_eq!(
            row.starts_with(" class=\"failed\""),
            failed,
            "{address}'s row is marked failed exactly when a step failed: {row}"
        );
    }
    for d in json["dns"].as_array().expect("dns") {
        for a in d["advice"].as_array().expect("advice") {
            let a = a.as_str().expect("text");
            assert!(
                dom.contains(&format!(
                    "<li>{}</li>",
                    a.replace('&', "&amp;")
                        .replace('<', "&lt;")
                        .replace('>', "&gt;")
                )),
                "the DNS to-do `{a}` is on the page"
            );
        }
    }
    assert!(dom.contains("<svg"), "the chart is there");
    assert!(dom.contains("left out, too large (2)"), "{dom}");

    // A screenshot: the page renders to a picture (docs/report.png is the demo's, made by
    // scripts/report-screenshot).
    let shot = f.dir.path().join("report.png");
    let out = chromium(&f.dir.path().join("profile-shot"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1200,1700")
        .arg(&url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real picture"
    );

    // Printable: the browser prints it to a short PDF.
    let pdf = f.dir.path().join("report.pdf");
    let out = chromium(&f.dir.path().join("profile-pdf"))
        .arg("--no-pdf-header-footer")
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(&url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pdf = std::fs::read(&pdf).expect("the PDF");
    assert!(pdf.starts_with(b"%PDF"), "a PDF");
    let pages = pdf
        .windows(b"/Type /Page\n".len())
        .filter(|w| w.starts_with(b"/Type /Page") && !w.starts_with(b"/Type /Pages"))
        .count();
    assert!(
        (1..=3).contains(&pages),
        "{pages} printed pages for four accounts"
    );
}

/// A source whose two messages over a Cyrus target's 1 MB `maxmessagesize` have subjects that
/// need decoding (RFC 2047) and escaping: one of 3 MB (sent in pieces) in INBOX, one of 1.5 MB
/// (sent whole) in Work. Their (subject, Message-ID) as a reader sees them.
fn refused_by_size() -> (Corpus, [(&'static str, &'static str); 2]) {
    let mut corpus = Corpus::with_seed(12, 7)
        .with_bulky("INBOX", 1, 3_000_000)
        .with_bulky("Work", 1, 1_500_000);
    let named = [
        ("Devis <signé> & plans", "<devis-1@corpus.mailplan.test>"),
        ("Réunion *lundi* | à 9h", "<reunion-2@corpus.mailplan.test>"),
    ];
    let encoded = [
        "Subject: =?UTF-8?Q?Devis_<sign=C3=A9>_&_plans?=",
        "Subject: =?UTF-8?B?UsOpdW5pb24gKmx1bmRpKiB8IMOgIDloCg==?=",
    ];
    let bulky: Vec<&mut crate::support::corpus::Message> = corpus
        .messages
        .iter_mut()
        .filter(|m| m.bytes.windows(13).any(|w| w == b"Subject: bulk"))
        .collect();
    assert_eq!(bulky.len(), 2);
    for (i, m) in bulky.into_iter().enumerate() {
        let text = String::from_utf8(m.bytes.clone()).expect("ASCII");
        let text = text.replacen("Subject: bulky #0", encoded[i], 1).replacen(
            "<bulky-0@corpus.mailplan.test>",
            named[i].1,
            1,
        );
        m.bytes = text.into_bytes();
    }
    (corpus, named)
}

#[test]
fn messages_a_target_refuses_are_named_by_folder_date_subject_message_id_and_size() {
    use crate::support::cyrus::{Cyrus, Layout};
    use crate::support::proxy::{Faults, Proxy};

    let dovecot = Dovecot::start();
    dovecot.add_user("alice", "dovecot-secret");
    let cyrus = Cyrus::start_with(Layout::AltSlash, "maxmessagesize: 1000000\n");
    cyrus.add_user("alice", "cyrus-secret");
    let (corpus, named) = refused_by_size();
    corpus.seed(&dovecot, "alice", "dovecot-secret");
    // Without APPENDLIMIT (a proxy renames it, as most servers do not advertise one) both are
    // sent and refused by the server: one whole, one in pieces.
    let proxy = Proxy::start(
        cyrus.addr(),
        Faults {
            rewrite_server: Some((b"APPENDLIMIT=", b"XPPENDLIMIT=")),
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let server =
        |port: u16| format!("{{ host: 127.0.0.1, port: {port}, tls: none, allow-insecure: true }}");
    let plan = dir.path().join("refusals.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: refusals\nplatforms:\n  old: {{ type: imap, imap: {} }}\n  \
             new: {{ type: imap, imap: {} }}\naccounts:\n  - address: alice@example.org\n    \
             from: old\n    to: new\n    source-login: alice\n    target-login: alice\n    \
             source-password: {{ env: SOURCE_PW }}\n    target-password: {{ env: TARGET_PW }}\n",
            server(dovecot.imap_port),
            server(proxy.port())
        ),
    )
    .expect("write the plan");
    let run = |args: &[&str]| {
        Command::new("timeout")
            .arg("120")
            .arg(env!("CARGO_BIN_EXE_mailplan"))
            .arg(args[0])
            .arg(&plan)
            .args(&args[1..])
            .env("NO_COLOR", "1")
            .env("SOURCE_PW", "dovecot-secret")
            .env("TARGET_PW", "cyrus-secret")
            .current_dir(dir.path())
            .output()
            .expect("mailplan runs")
    };
    let out = run(&["apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let json: serde_json::Value =
        serde_json::from_slice(&run(&["report", "--format", "json"]).stdout).expect("JSON");
    let issues = json["accounts"][0]["issues"].as_array().expect("issues");
    assert_eq!(issues.len(), 2, "{json}");
    for ((subject, id), (folder, size)) in named
        .iter()
        .zip([("INBOX", 3_000_000u64), ("Work", 1_500_000)])
    {
        let issue = issues
            .iter()
            .find(|i| i["message_id"] == *id)
            .unwrap_or_else(|| panic!("{id} in {json}"));
        assert_eq!(issue["folder"], folder, "{issue}");
        assert_eq!(issue["subject"], *subject, "decoded: {issue}");
        assert_eq!(issue["date"], "Tue, 04 Jun 2024 10:00:00 +0200", "{issue}");
        let bytes = issue["size"].as_u64().expect("a size");
        assert!(
            bytes.abs_diff(size) < size / 20,
            "about {size} bytes: {issue}"
        );
    }

    // Markdown: one line per message, its subject escaped for Markdown.
    let md = String::from_utf8(run(&["report", "--format", "markdown"]).stdout).expect("utf-8");
    assert!(
        md.contains(
            ", 2024-06-04 10:00 +0200, “Devis \\<signé\\> \\& plans”, \
             \\<devis-1@corpus.mailplan.test\\>, "
        ) && md.contains("  - INBOX, uid "),
        "{md}"
    );
    assert!(md.contains("“Réunion \\*lundi\\* \\| à 9h”"), "{md}");
    // status names them too.
    let status = String::from_utf8(run(&["status"]).stdout).expect("utf-8");
    assert!(
        status.contains("\"Devis <signé> & plans\", <devis-1@corpus.mailplan.test>"),
        "{status}"
    );

    // HTML, as a browser shows it: each message's row with its folder, date, subject (escaped
    // once, shown as written), Message-ID and size.
    let html = run(&["report", "--format", "html"]).stdout;
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).expect("write the report");
    let out = chromium(&dir.path().join("profile"))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs (Debian package `chromium`)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8(out.stdout).expect("utf-8");
    let row = dom
        .split("<tr>")
        .find(|r| r.contains("<code>&lt;devis-1@corpus"))
        .unwrap_or_else(|| panic!("a row for the message: {dom}"));
    for cell in [
        "<td>INBOX</td>",
        "<td class=\"n\">2024-06-04 10:00 +0200</td>",
        "<td>Devis &lt;signé&gt; &amp; plans</td>",
        "<td><code>&lt;devis-1@corpus.mailplan.test&gt;</code></td>",
        " MB</td>",
    ] {
        assert!(row.contains(cell), "{cell} in {row}");
    }
    assert!(!dom.contains("base64"), "no body on the page");
}
