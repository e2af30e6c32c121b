//! New MX Plan and Exchange: accounts, rename/configure, passwords, reset, domains, task models.

use ovh_sim::Fault;
use serde_json::json;

use crate::support::{EX, MX, offered, placeholders, start, wait_status};

#[test]
fn mxplan_rename_is_a_set_account_task_with_a_status() {
    let (sim, client) = start();
    assert_eq!(
        client.get("/email/mxplan").ok(),
        json!(["mxplan-ab12345-1"])
    );
    let accounts = client
        .get(&format!("{MX}/account?primaryEmailAddress=%25%40new.test"))
        .ok();
    assert_eq!(accounts, json!(["dave@new.test", "erin@new.test"]));
    sim.inject(Fault::slow_tasks(120, 120).on("PUT", "/email/mxplan"));
    let put = client.put(
        &format!("{MX}/account/dave@new.test"),
        &json!({"login": "dave.old", "domain": "new.test"}),
    );
    assert_eq!((put.status, put.json()), (200, json!(null)));
    let account = client.get(&format!("{MX}/account/dave@new.test")).ok();
    let id = account["taskPendingId"].as_u64().expect("id");
    assert_ne!(id, 0);
    assert_eq!(
        client.get(&format!("{MX}/account/dave@new.test/task")).ok(),
        json!([id])
    );
    assert_eq!(client.get(&format!("{MX}/task")).ok(), json!([id]));
    let task = client.get(&format!("{MX}/task/{id}")).ok();
    assert_eq!(task["function"], "setAccount");
    assert_eq!(
        client
            .get(&format!("{MX}/account/dave.old@new.test"))
            .status,
        404
    );
    let seen = wait_status(&client, &format!("{MX}/task/{id}"));
    assert_eq!(seen, ["todo", "doing", "done"]);
    assert!(client.get(&format!("{MX}/task/{id}")).ok()["finishDate"].is_string());
    assert_eq!(
        client.get(&format!("{MX}/account/dave@new.test")).status,
        404
    );
    let renamed = client.get(&format!("{MX}/account/dave.old@new.test")).ok();
    assert_eq!(
        (renamed["taskPendingId"].as_u64(), renamed["login"].as_str()),
        (Some(0), Some("dave.old"))
    );
    assert_eq!(client.get(&format!("{MX}/task")).ok(), json!([]));
    // Taken names and foreign domains are refused; the same name again is a no-op.
    let taken = client.put(
        &format!("{MX}/account/dave.old@new.test"),
        &json!({"login": "erin", "domain": "new.test"}),
    );
    assert_eq!(
        (taken.status, taken.json()["message"].as_str()),
        (400, Some("Email address is already used."))
    );
    let foreign = client.put(
        &format!("{MX}/account/dave.old@new.test"),
        &json!({"login": "dave", "domain": "other.test"}),
    );
    assert_eq!(foreign.status, 400);
    let same = client.put(
        &format!("{MX}/account/dave.old@new.test"),
        &json!({"login": "dave.old", "domain": "new.test"}),
    );
    assert_eq!(same.status, 200);
    assert_eq!(
        client.get(&format!("{MX}/account/dave.old@new.test")).ok()["taskPendingId"],
        0
    );
}

#[test]
fn mxplan_reset_returns_a_placeholder() {
    let (_sim, client) = start();
    let task = client.delete(&format!("{MX}/account/erin@new.test")).ok();
    assert_eq!(task["function"], "deleteAccount");
    wait_status(&client, &format!("{MX}/task/{}", task["id"]));
    assert_eq!(
        client.get(&format!("{MX}/account/erin@new.test")).status,
        404
    );
    let free = client
        .get(&format!(
            "{MX}/account?primaryEmailAddress=%25configureme.me%25"
        ))
        .ok();
    assert_eq!(free.as_array().map(Vec::len), Some(2));
}

#[test]
fn exchange_placeholders_are_configured_then_given_a_password() {
    let (_sim, client) = start();
    assert_eq!(
        client.get("/email/exchange").ok(),
        json!(["hosted-ab12345-1", "hosted-zz99999-1"])
    );
    assert_eq!(
        client.get("/email/exchange/hosted-ab12345-1/service").ok(),
        json!(["hosted-ab12345-1"])
    );
    let free = placeholders(&client);
    assert_eq!(free.len(), 3);
    let slot = &free[0];
    let before = client.get(&format!("{EX}/account/{slot}")).ok();
    assert_eq!(
        (before["configured"].as_bool(), before["domain"].as_str()),
        (Some(false), Some("configureme.me"))
    );
    // Addresses already in use anywhere are refused, the MX Plan ones included.
    for login in ["frank", "alice"] {
        let used = client.put(
            &format!("{EX}/account/{slot}"),
            &json!({"login": login, "domain": "legacy.test"}),
        );
        assert_eq!(
            used.json()["message"],
            "Email address is already used.",
            "{login}"
        );
    }
    let unattached = client.put(
        &format!("{EX}/account/{slot}"),
        &json!({"login": "gina", "domain": "dns-ok.test"}),
    );
    assert_eq!(unattached.status, 400);
    let put = client.put(
        &format!("{EX}/account/{slot}"),
        &json!({"login": "gina", "domain": "legacy.test", "displayName": "Gina"}),
    );
    assert_eq!(put.status, 200);
    let pending = client.get(&format!("{EX}/account/{slot}")).ok();
    let id = pending["taskPendingId"].as_u64().expect("id");
    assert_eq!(
        client.get(&format!("{EX}/account/{slot}/tasks")).ok(),
        json!([id])
    );
    assert_eq!(
        client.get(&format!("{EX}/account/{slot}/tasks/{id}")).ok()["function"],
        "setAccount"
    );
    assert_eq!(
        client.get(&format!("{EX}/account/{slot}/task")).status,
        404,
        "Exchange says tasks"
    );
    assert!(
        !offered(&client).contains(slot),
        "a slot being configured is not offered for migration"
    );
    wait_status(&client, &format!("{EX}/task/{id}"));
    let gina = client.get(&format!("{EX}/account/gina@legacy.test")).ok();
    assert_eq!(
        (gina["configured"].as_bool(), gina["displayName"].as_str()),
        (Some(true), Some("Gina"))
    );
    let weak = client.post(
        &format!("{EX}/account/gina@legacy.test/changePassword"),
        &json!({"password": "short"}),
    );
    assert_eq!(weak.status, 400);
    assert!(
        weak.json()["message"]
            .as_str()
            .expect("message")
            .contains("password policy")
    );
    let task = client
        .post(
            &format!("{EX}/account/gina@legacy.test/changePassword"),
            &json!({"password": "Secret-pass-2024"}),
        )
        .ok();
    assert_eq!(
        (task["function"].as_str(), task["status"].as_str()),
        (Some("changePassword"), Some("todo"))
    );
    assert_eq!(
        wait_status(&client, &format!("{EX}/task/{}", task["id"]))
            .last()
            .map(String::as_str),
        Some("done")
    );
    assert!(
        client.get(&format!("{EX}/account/gina@legacy.test")).ok()["passwordLastUpdate"]
            .is_string()
    );
    // DELETE resets it to a placeholder.
    let reset = client
        .delete(&format!("{EX}/account/gina@legacy.test"))
        .ok();
    wait_status(&client, &format!("{EX}/task/{}", reset["id"]));
    assert_eq!(
        client.get(&format!("{EX}/account/gina@legacy.test")).status,
        404
    );
    assert_eq!(placeholders(&client).len(), 3);
}

#[test]
fn tasks_on_one_account_run_in_order() {
    let (_sim, client) = start();
    let slot = placeholders(&client)[0].clone();
    // The manager's generic editor sends both at once, on the old address.
    assert_eq!(
        client
            .put(
                &format!("{EX}/account/{slot}"),
                &json!({"login": "hal", "domain": "legacy.test"})
            )
            .status,
        200
    );
    let password = client
        .post(
            &format!("{EX}/account/{slot}/changePassword"),
            &json!({"password": "Secret-pass-2024"}),
        )
        .ok();
    wait_status(&client, &format!("{EX}/task/{}", password["id"]));
    let hal = client.get(&format!("{EX}/account/hal@legacy.test")).ok();
    assert_eq!(hal["taskPendingId"], 0);
    assert!(hal["passwordLastUpdate"].is_string());
}

#[test]
fn exchange_domains_are_added_by_a_task() {
    let (sim, client) = start();
    let refusals = [
        (
            json!({"name": "new.test", "type": "authoritative"}),
            "Authoritative domain detected",
        ),
        (
            json!({"name": "taken.test", "type": "authoritative"}),
            "UPN suffix",
        ),
        (
            json!({"name": "foreign.test", "type": "nonAuthoritative"}),
            "UPN suffix",
        ),
        (
            json!({"name": "legacy.test", "type": "nonAuthoritative"}),
            "already exists",
        ),
        (json!({"name": "x.test", "type": "weird"}), "Invalid value"),
    ];
    for (body, message) in refusals {
        let response = client.post(&format!("{EX}/domain"), &body);
        assert_eq!(response.status, 400, "{body}");
        let text = response.json()["message"]
            .as_str()
            .expect("message")
            .to_owned();
        assert!(
            text.starts_with(message) || text.contains(message),
            "{body}: {text}"
        );
    }
    sim.inject(Fault::slow_tasks(100, 100).on("POST", "/email/exchange"));
    let task = client
        .post(
            &format!("{EX}/domain"),
            &json!({"name": "dns-ok.test", "type": "authoritative", "configureMx": false}),
        )
        .ok();
    assert_eq!(task["function"], "addDomain");
    let domain = client.get(&format!("{EX}/domain/dns-ok.test")).ok();
    assert_eq!(
        (domain["state"].as_str(), domain["taskPendingId"].as_u64()),
        (Some("creating"), task["id"].as_u64())
    );
    assert_eq!(
        client.get(&format!("{EX}/domain?state=creating")).ok(),
        json!(["dns-ok.test"])
    );
    wait_status(&client, &format!("{EX}/task/{}", task["id"]));
    let domain = client.get(&format!("{EX}/domain/dns-ok.test")).ok();
    assert_eq!(
        (domain["state"].as_str(), domain["taskPendingId"].as_u64()),
        (Some("ok"), Some(0))
    );
    assert_eq!(
        (
            domain["mxIsValid"].as_bool(),
            domain["srvIsValid"].as_bool(),
            domain["spfIsValid"].as_bool()
        ),
        (Some(true), Some(true), Some(true))
    );
    assert_eq!(domain["cnameToCheck"], json!(null));
    assert!(
        domain["expectedMX"]
            .as_array()
            .is_some_and(|mx| !mx.is_empty())
    );
    assert_eq!(domain["expectedSPF"], "v=spf1 include:mx.ovh.com ~all");
    // The Authoritative conflict goes away once the MX Plan side is non-authoritative.
    assert_eq!(
        client
            .put(
                &format!("{MX}/domain/new.test"),
                &json!({"type": "nonAuthoritative"})
            )
            .status,
        200
    );
    let new = client.post(
        &format!("{EX}/domain"),
        &json!({"name": "new.test", "type": "authoritative"}),
    );
    assert_eq!(new.status, 200, "{}", new.body);
    let other = client
        .post(
            &format!("{EX}/domain"),
            &json!({"name": "other.test", "type": "authoritative"}),
        )
        .ok();
    wait_status(&client, &format!("{EX}/task/{}", other["id"]));
    let other = client.get(&format!("{EX}/domain/other.test")).ok();
    assert!(other["cnameToCheck"].is_string());
    assert_eq!(
        (
            other["mxIsValid"].as_bool(),
            other["domainValidated"].as_bool()
        ),
        (Some(false), Some(false))
    );
    // Its zone is not OVH's: the task is done, the domain waits for its CNAME.
    assert_eq!(
        (other["state"].as_str(), other["taskPendingId"].as_u64()),
        (Some("creating"), Some(0))
    );
    sim.prove_domain("other.test");
    let other = client.get(&format!("{EX}/domain/other.test")).ok();
    assert_eq!(
        (other["state"].as_str(), other["domainValidated"].as_bool()),
        (Some("ok"), Some(true))
    );
}

#[test]
fn failing_tasks_end_in_error_without_effect() {
    let (sim, client) = start();
    sim.inject(Fault::failing_tasks().on("DELETE", "/email/mxplan"));
    let task = client.delete(&format!("{MX}/account/erin@new.test")).ok();
    let seen = wait_status(&client, &format!("{MX}/task/{}", task["id"]));
    assert_eq!(seen.last().map(String::as_str), Some("error"));
    assert_eq!(
        client.get(&format!("{MX}/account/erin@new.test")).status,
        200
    );
    assert_eq!(sim.task_errors().len(), 1);
}

#[test]
fn finished_tasks_can_be_dropped_as_ovh_drops_them() {
    let mut fixture = crate::support::fixture();
    fixture.timing.done_kept_ms = Some(0);
    let sim = ovh_sim::Simulator::start(fixture);
    let client = crate::support::Client::new(&sim, "ck-all");
    let task = client
        .post(
            &format!("{EX}/domain"),
            &json!({"name": "dns-ok.test", "type": "nonAuthoritative"}),
        )
        .ok();
    let id = task["id"].as_u64().expect("id");
    let start = std::time::Instant::now();
    while client.get(&format!("{EX}/task/{id}")).status != 404 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "never dropped"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(client.get(&format!("{EX}/task")).ok(), json!([]));
    assert_eq!(
        client.get(&format!("{EX}/domain/dns-ok.test")).ok()["state"],
        "ok",
        "it ran"
    );
}
