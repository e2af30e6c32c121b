//! Injected 429/409/500, the request log and `X-Ovh-QueryID`.

use ovh_sim::Fault;
use serde_json::json;

use crate::support::{CK, EX, start};

#[test]
fn injected_429_409_and_500_then_normal_answers() {
    let (sim, client) = start();
    sim.inject(
        Fault::too_many_requests(2)
            .on("GET", "/email/exchange")
            .times(2),
    );
    sim.inject(Fault::already_processing().on("POST", "/email/domain"));
    sim.inject(Fault::server_error().on_path("/email/mxplan"));
    // Other paths are untouched.
    assert_eq!(client.get("/email/domain").status, 200);
    for _ in 0..2 {
        let limited = client.get(EX);
        assert_eq!(limited.status, 429);
        assert_eq!(limited.header("Retry-After"), Some("2"));
        assert_eq!(limited.json(), json!({"message": "Too many requests"}));
        assert!(limited.header("X-Ovh-QueryID").is_some());
    }
    assert_eq!(client.get(EX).status, 200);
    let busy = client.post(
        "/email/domain/legacy.test/account/bob/changePassword",
        &json!({"password": "Bob-new-pass-1"}),
    );
    assert_eq!(busy.status, 409);
    assert!(
        busy.json()["message"]
            .as_str()
            .expect("message")
            .contains("already being processed")
    );
    let failed = client.get("/email/mxplan");
    assert_eq!(failed.status, 500);
    assert_eq!(failed.json()["class"], "Server::InternalServerError");
    assert_eq!(client.get("/email/mxplan").status, 200);
    // Faults come after authentication: a bad call is still refused as such.
    sim.inject(Fault::server_error());
    assert_eq!(client.with_ck("nope").get("/email/mxplan").status, 403);
    assert_eq!(client.get("/email/mxplan").status, 500);
}

#[test]
fn every_request_is_recorded() {
    let (sim, client) = start();
    client.get("/email/domain/legacy.test/account?accountName=%25a%25");
    client.put(
        "/email/domain/legacy.test/account/alice",
        &json!({"description": "boss"}),
    );
    client
        .with_ck("ck-read")
        .delete("/email/mxplan/mxplan-ab12345-1/account/erin@new.test");
    client.raw("GET", "/1.0/auth/time", &[], b"");
    let log = sim.requests();
    assert_eq!(log.len(), 4);
    assert_eq!(
        (log[0].method.as_str(), log[0].path.as_str()),
        (
            "GET",
            "/email/domain/legacy.test/account?accountName=%25a%25"
        )
    );
    assert_eq!(log[0].path_only(), "/email/domain/legacy.test/account");
    assert_eq!(log[0].response, r#"["alice","carol","dan"]"#);
    assert_eq!(log[0].consumer_key.as_deref(), Some(CK));
    assert!(!log[0].is_mutating());
    assert_eq!(
        (log[1].method.as_str(), log[1].body.as_str(), log[1].status),
        ("PUT", r#"{"description":"boss"}"#, 200)
    );
    assert!(log[1].is_mutating());
    assert_eq!(
        (log[2].status, log[2].consumer_key.as_deref()),
        (403, Some("ck-read"))
    );
    assert_eq!(
        (log[3].path.as_str(), log[3].consumer_key.as_deref()),
        ("/auth/time", None)
    );
    assert!(
        log.windows(2)
            .all(|w| w[0].at <= w[1].at && w[0].query_id != w[1].query_id)
    );
    assert_eq!(
        client.get("/email/domain/legacy.test/account/alice").ok()["description"],
        "boss"
    );
    sim.clear_requests();
    assert!(sim.requests().is_empty());
}

#[test]
fn unknown_routes_and_objects_answer_404_with_a_body() {
    let (_sim, client) = start();
    for path in [
        "/email/nothing",
        "/email/domain/legacy.test/nothing",
        "/email/domain/unknown.test",
    ] {
        let response = client.get(path);
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(response.json()["class"], "Client::NotFound");
        assert!(response.header("X-Ovh-QueryID").is_some());
    }
}

#[test]
fn usable_from_async_code() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (sim, client) = start();
        let status = tokio::task::spawn_blocking(move || client.get("/email/domain").status)
            .await
            .expect("join");
        assert_eq!(status, 200);
        drop(sim);
    });
}
