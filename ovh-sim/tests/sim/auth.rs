//! Signature, consumer keys, access rules, timestamps and `/auth/*`.

use ovh_sim::signature;
use serde_json::json;

use crate::support::{AK, Client, start};

#[test]
fn the_signature_is_the_python_ovh_one() {
    let (secret, ck, url, ts) = (
        "9ufkBmLaTQ9nz5yMUlg79taH0GNnzDjk",
        "5mBuy6SUQcRw2ZUxg0cG68BoDKpED4KY",
        "https://eu.api.ovh.com/1.0/auth",
        "1457018875",
    );
    let body = br#"{"a":"b","c":"d"}"#;
    assert_eq!(
        signature(secret, ck, "GET", url, b"", ts),
        "$1$e9556054b6309771395efa467c22e627407461ad"
    );
    assert_eq!(
        signature(secret, ck, "POST", url, body, ts),
        "$1$ec2fb5c7a81f64723c77d2e5b609ae6f58a84fc1"
    );
    assert_eq!(
        signature(secret, ck, "PUT", url, body, ts),
        "$1$8a75a9e7c8e7296c9dbeda6a2a735eb6bd58ec4b"
    );
    assert_eq!(
        signature(secret, ck, "DELETE", url, b"", ts),
        "$1$a1eecd00b3b02b6cf5708b84b9ff42059a950d85"
    );
}

#[test]
fn a_well_signed_call_is_accepted_and_carries_a_query_id() {
    let (_sim, client) = start();
    let response = client.get("/email/domain");
    assert_eq!(response.json(), json!(["legacy.test"]));
    assert!(
        response
            .header("X-Ovh-QueryID")
            .is_some_and(|id| id.starts_with("EU."))
    );
    // The query string is part of the signed URL.
    let filtered = client.get("/email/domain/legacy.test/account?accountName=%25li%25");
    assert_eq!(filtered.ok(), json!(["alice"]));
}

#[test]
fn auth_time_needs_nothing_and_shows_the_server_clock() {
    let (sim, client) = start();
    let response = client.raw("GET", "/1.0/auth/time", &[], b"");
    let server = response.ok().as_i64().expect("an integer");
    let local = client.timestamp().parse::<i64>().expect("number");
    assert!((server - local).abs() <= 2, "{server} vs {local}");
    assert!(response.header("X-Ovh-QueryID").is_some());
    drop(sim);
    let mut fixture = crate::support::fixture();
    fixture.auth.clock_offset_secs = 3600;
    let sim = ovh_sim::Simulator::start(fixture);
    let mut client = Client::new(&sim, "ck-all");
    let server = client
        .raw("GET", "/1.0/auth/time", &[], b"")
        .ok()
        .as_i64()
        .expect("integer");
    assert!((server - local - 3600).abs() <= 2);
    // Local time is an hour off: refused until the client corrects it with the delta.
    let refused = client.get("/email/domain");
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["errorCode"], "QUERY_TIME_OUT");
    client.skew = 3600;
    assert_eq!(client.get("/email/domain").status, 200);
}

#[test]
fn bad_signatures_are_refused_with_the_real_body() {
    let (_sim, client) = start();
    let expected = json!({"errorCode": "INVALID_SIGNATURE", "httpCode": "400 Bad Request", "message": "Invalid signature"});
    let mut wrong_secret = client.clone();
    wrong_secret.secret = "not-the-secret".to_owned();
    let response = wrong_secret.get("/email/domain");
    assert_eq!((response.status, response.json()), (400, expected.clone()));
    assert!(response.header("X-Ovh-QueryID").is_some());

    // The body sent must be the body signed, byte for byte (no re-serialisation).
    let ts = client.timestamp();
    let target = "/1.0/email/domain/legacy.test/account/alice";
    let url = format!("http://{}{target}", client.host);
    let sig = signature(
        &client.secret,
        &client.ck,
        "PUT",
        &url,
        br#"{"description":"x"}"#,
        &ts,
    );
    let headers = [
        ("X-Ovh-Application", AK),
        ("X-Ovh-Consumer", "ck-all"),
        ("X-Ovh-Timestamp", ts.as_str()),
        ("X-Ovh-Signature", sig.as_str()),
    ];
    let response = client.raw("PUT", target, &headers, br#"{"description": "x"}"#);
    assert_eq!((response.status, response.json()), (400, expected.clone()));
    let response = client.raw("PUT", target, &headers, br#"{"description":"x"}"#);
    assert_eq!(response.status, 200, "{}", response.body);

    // A query string left out of the signature is caught.
    let ts = client.timestamp();
    let url = format!(
        "http://{}/1.0/email/domain/legacy.test/account",
        client.host
    );
    let sig = signature(&client.secret, &client.ck, "GET", &url, b"", &ts);
    let headers = [
        ("X-Ovh-Application", AK),
        ("X-Ovh-Consumer", "ck-all"),
        ("X-Ovh-Timestamp", ts.as_str()),
        ("X-Ovh-Signature", sig.as_str()),
    ];
    let response = client.raw(
        "GET",
        "/1.0/email/domain/legacy.test/account?accountName=bob",
        &headers,
        b"",
    );
    assert_eq!((response.status, response.json()), (400, expected));
}

#[test]
fn credentials_and_application_keys_are_checked() {
    let (_sim, client) = start();
    let unknown = client.with_ck("ck-unknown").get("/email/domain");
    assert_eq!(unknown.status, 403);
    assert_eq!(unknown.json()["errorCode"], "INVALID_CREDENTIAL");
    let pending = client.with_ck("ck-pending").get("/email/domain");
    assert_eq!(pending.status, 403);
    assert_eq!(pending.json()["errorCode"], "INVALID_CREDENTIAL");
    let mut bad_app = client.clone();
    bad_app.ak = "other-app".to_owned();
    let response = bad_app.get("/email/domain");
    assert_eq!(
        (response.status, response.json()["errorCode"].as_str()),
        (403, Some("INVALID_KEY"))
    );
    let mut late = client.clone();
    late.skew = -1000;
    let response = late.get("/email/domain");
    assert_eq!(
        (response.status, response.json()["errorCode"].as_str()),
        (400, Some("QUERY_TIME_OUT"))
    );
}

#[test]
fn access_rules_are_enforced() {
    let (_sim, client) = start();
    let reader = client.with_ck("ck-read");
    assert_eq!(reader.get("/email/exchange").status, 200);
    let expected = json!({"message": "This call has not been granted", "httpCode": "403 Forbidden", "errorCode": "NOT_GRANTED_CALL"});
    let put = reader.put(
        "/email/domain/legacy.test/account/alice",
        &json!({"description": "x"}),
    );
    assert_eq!((put.status, put.json()), (403, expected.clone()));
    let outside = reader.get("/auth/currentCredential");
    assert_eq!((outside.status, outside.json()), (403, expected));
    let mine = client.get("/auth/currentCredential").ok();
    assert_eq!(mine["status"], "validated");
    assert_eq!(mine["rules"][0], json!({"method": "GET", "path": "/*"}));
}

#[test]
fn a_requested_credential_works_once_validated() {
    let (_sim, client) = start();
    let rules = json!({"accessRules": [{"method": "GET", "path": "/email/*"}]});
    let body = serde_json::to_vec(&rules).expect("json");
    let response = client.raw(
        "POST",
        "/1.0/auth/credential",
        &[("X-Ovh-Application", AK)],
        &body,
    );
    let credential = response.ok();
    assert_eq!(credential["state"], "pendingValidation");
    let ck = credential["consumerKey"].as_str().expect("a key");
    let url = credential["validationUrl"].as_str().expect("a URL");
    let new = client.with_ck(ck);
    assert_eq!(new.get("/email/domain").status, 403);
    let target = url.split_once(&client.host).expect("served here").1;
    assert!(target.starts_with("/auth/?credentialToken="), "{url}");
    assert_eq!(client.raw("GET", target, &[], b"").status, 200);
    assert_eq!(new.get("/email/domain").status, 200);
    assert_eq!(
        new.delete("/email/mxplan/mxplan-ab12345-1/account/dave@new.test")
            .status,
        403
    );
    let no_app = client.raw("POST", "/1.0/auth/credential", &[], &body);
    assert_eq!(no_app.status, 403);
}

#[test]
fn a_consumer_key_gets_its_requests_per_minute_then_429_with_retry_after() {
    let mut fixture = crate::support::fixture();
    fixture.auth.requests_per_minute = 3;
    let sim = ovh_sim::Simulator::start(fixture);
    let client = Client::new(&sim, "ck-all");
    for _ in 0..3 {
        assert_eq!(client.get("/email/domain").status, 200);
    }
    let refused = client.get("/email/domain");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json(), json!({"message": "Too many requests"}));
    let wait: u64 = refused
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    // Per consumer key: /auth/time (no key) is not counted.
    assert_eq!(client.get("/auth/time").status, 200);
    assert_eq!(
        ovh_sim::fixture::Fixture::from_yaml("auth: {application_key: a, application_secret: b}")
            .expect("parses")
            .auth
            .requests_per_minute,
        60,
        "OVH's fair use is the default"
    );
}
