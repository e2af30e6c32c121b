//! Test support: a tiny signed HTTP/1.1 client over `std::net::TcpStream` (one connection per
//! call, `Connection: close`), the shared scenario, and task polling helpers.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime};

use ovh_sim::{Fixture, Simulator, signature};
use serde_json::Value;

pub const AK: &str = "ak-test";
pub const AS: &str = "as-test-secret";
pub const CK: &str = "ck-all";

/// The scenario most tests use; `mail` is added by the mail tests.
pub const FIXTURE: &str = r#"
auth:
  application_key: ak-test
  application_secret: as-test-secret
  requests_per_minute: 0      # the tests call fast; auth.rs tests the limit
  consumer_keys:
    - key: ck-all
      rules:
        - { method: GET, path: "/*" }
        - { method: POST, path: "/*" }
        - { method: PUT, path: "/*" }
        - { method: DELETE, path: "/*" }
    - key: ck-read
      rules:
        - { method: GET, path: "/email/*" }
    - key: ck-pending
      state: pendingValidation
      rules:
        - { method: GET, path: "/*" }
timing: { todo_ms: 15, doing_ms: 25 }
legacy_domains:
  - domain: legacy.test
    accounts:
      - { name: alice, password: "Alice-pass-1", messages: { INBOX: 3, Archive: 1 } }
      - { name: bob, password: "Bob-pass-12", filters: [spam] }
      - { name: carol, password: "Carol-pass-1" }
      - { name: dan, password: "Dan-pass-12", check_errors: [MAILPROXY_RESERVATION] }
    redirections:
      - { from: carol@legacy.test, to: elsewhere@example.org }
    responders:
      - { account: bob, content: "On holiday" }
mxplan_services:
  - service: mxplan-ab12345-1
    domains: [{ name: new.test }]
    accounts:
      - { login: dave, domain: new.test, password: "Dave-pass-1", messages: { INBOX: 2 } }
      - { login: erin, domain: new.test, password: "Erin-pass-1" }
    placeholders: 1
exchange_services:
  - organization: hosted-ab12345-1
    domains: [{ name: legacy.test, type: nonAuthoritative }]
    accounts:
      - { login: frank, domain: legacy.test, password: "Frank-pass-1" }
    placeholders: 3
  - organization: hosted-zz99999-1
    domains: [{ name: taken.test }]
foreign_domains: [foreign.test]
dns:
  dns-ok.test:
    mx: ["1 mx1.mail.ovh.net.", "5 mx2.mail.ovh.net."]
    srv: ["_autodiscover._tcp.dns-ok.test. 0 0 443 ex5.mail.ovh.net."]
    spf: ["v=spf1 include:mx.ovh.com ~all"]
  other.test: { ovh_zone: false, mx: ["mx.elsewhere.example."] }
"#;

pub fn fixture() -> Fixture {
    Fixture::from_yaml(FIXTURE).expect("the test fixture parses")
}

pub fn start() -> (Simulator, Client) {
    let simulator = Simulator::start(fixture());
    let client = Client::new(&simulator, CK);
    (simulator, client)
}

/// One HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON, after checking the status is 200.
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.status, 200,
            "expected 200, got {}: {}",
            self.status, self.body
        );
        self.json()
    }
}

/// A signed client, as the official ones sign.
#[derive(Debug, Clone)]
pub struct Client {
    pub host: String,
    pub ak: String,
    pub secret: String,
    pub ck: String,
    /// Seconds added to the local clock in `X-Ovh-Timestamp`.
    pub skew: i64,
}

impl Client {
    pub fn new(simulator: &Simulator, ck: &str) -> Client {
        Client {
            host: simulator.addr().to_string(),
            ak: AK.to_owned(),
            secret: AS.to_owned(),
            ck: ck.to_owned(),
            skew: 0,
        }
    }

    pub fn with_ck(&self, ck: &str) -> Client {
        Client {
            ck: ck.to_owned(),
            ..self.clone()
        }
    }

    pub fn timestamp(&self) -> String {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        (i64::try_from(now).expect("fits") + self.skew).to_string()
    }

    /// A signed call to `/1.0{path}` (path with its query, already encoded).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        let body = body
            .map(|b| serde_json::to_string(b).expect("serialise"))
            .unwrap_or_default();
        let target = format!("/1.0{path}");
        let timestamp = self.timestamp();
        let url = format!("http://{}{target}", self.host);
        let sig = signature(
            &self.secret,
            &self.ck,
            method,
            &url,
            body.as_bytes(),
            &timestamp,
        );
        self.raw(
            method,
            &target,
            &[
                ("X-Ovh-Application", &self.ak),
                ("X-Ovh-Consumer", &self.ck),
                ("X-Ovh-Timestamp", &timestamp),
                ("X-Ovh-Signature", &sig),
            ],
            body.as_bytes(),
        )
    }

    pub fn get(&self, path: &str) -> Response {
        self.call("GET", path, None)
    }
    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.call("POST", path, Some(body))
    }
    pub fn put(&self, path: &str, body: &Value) -> Response {
        self.call("PUT", path, Some(body))
    }
    pub fn delete(&self, path: &str) -> Response {
        self.call("DELETE", path, None)
    }

    /// Any request, headers as given.
    pub fn raw(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut stream = TcpStream::connect(&self.host).expect("connect to the simulator");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (name, value) in headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("send");
        stream.write_all(body).expect("send body");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read the response");
        let text = String::from_utf8(raw).expect("UTF-8 response");
        let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        let mut parts = status_line.splitn(3, ' ');
        parts.next();
        let status = parts
            .next()
            .expect("status")
            .parse()
            .expect("numeric status");
        let reason = parts.next().unwrap_or_default().to_owned();
        let headers = lines
            .filter_map(|line| line.split_once(": "))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Response {
            status,
            reason,
            headers,
            body: body.to_owned(),
        }
    }
}

/// Polls `path` (a task with a status) until it is `done` or `error`; returns the statuses seen.
pub fn wait_status(client: &Client, path: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen: Vec<String> = Vec::new();
    loop {
        let task = client.get(path).ok();
        let status = task["status"].as_str().expect("a status").to_owned();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status == "done" || status == "error" {
            return seen;
        }
        assert!(Instant::now() < deadline, "task {path} stuck in {status}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `path` (a legacy task) until it answers 404.
pub fn wait_gone(client: &Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get(path).status == 200 {
        assert!(
            Instant::now() < deadline,
            "legacy task {path} never vanished"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub const EX: &str = "/email/exchange/hosted-ab12345-1/service/hosted-ab12345-1";
pub const MX: &str = "/email/mxplan/mxplan-ab12345-1";

/// The free placeholders of the main Exchange service, sorted.
pub fn placeholders(client: &Client) -> Vec<String> {
    let list = client
        .get(&format!(
            "{EX}/account?primaryEmailAddress=%25%40configureme.me"
        ))
        .ok();
    list.as_array()
        .expect("a list")
        .iter()
        .map(|v| v.as_str().expect("string").to_owned())
        .collect()
}

/// The placeholders the legacy migrate tree offers (free, not claimed by a pending task).
pub fn offered(client: &Client) -> Vec<String> {
    let list = client
        .get("/email/domain/legacy.test/account/bob/migrate/hosted-ab12345-1/destinationEmailAddress")
        .ok();
    list.as_array()
        .expect("a list")
        .iter()
        .map(|v| v.as_str().expect("string").to_owned())
        .collect()
}
