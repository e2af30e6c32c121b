//! Historical MX Plan: accounts, redirections, responders, the migrate tree and `TaskPop`.

use serde_json::json;

use crate::support::{EX, offered, placeholders, start, wait_gone};

const D: &str = "/email/domain/legacy.test";

#[test]
fn accounts_redirections_and_responders() {
    let (_sim, client) = start();
    assert_eq!(
        client.get(&format!("{D}/account")).ok(),
        json!(["alice", "bob", "carol", "dan"])
    );
    let alice = client.get(&format!("{D}/account/alice")).ok();
    assert_eq!(alice["email"], "alice@legacy.test");
    assert_eq!(alice["size"], 5_000_000_000_u64);
    assert_eq!(client.get(&format!("{D}/account/nobody")).status, 404);
    let ids = client
        .get(&format!("{D}/redirection?from=carol%40legacy.test"))
        .ok();
    let id = ids[0].as_str().expect("string ids");
    let redirection = client.get(&format!("{D}/redirection/{id}")).ok();
    assert_eq!(redirection["to"], "elsewhere@example.org");
    assert_eq!(
        client
            .get(&format!("{D}/redirection?from=alice%40legacy.test"))
            .ok(),
        json!([])
    );
    assert_eq!(
        client.get(&format!("{D}/responder?account=bob")).ok(),
        json!(["bob"])
    );
    assert_eq!(
        client.get(&format!("{D}/responder/bob")).ok()["content"],
        "On holiday"
    );
    assert_eq!(client.get(&format!("{D}/responder/alice")).status, 404);
}

#[test]
fn the_migrate_tree_lists_services_and_free_placeholders() {
    let (_sim, client) = start();
    let hosted = client
        .get(&format!("{D}/account/alice/migrate?type=HOSTED%20EXCHANGE"))
        .ok();
    assert_eq!(hosted, json!(["hosted-ab12345-1", "hosted-zz99999-1"]));
    assert_eq!(
        client
            .get(&format!("{D}/account/alice/migrate?type=EMAIL+PRO"))
            .ok(),
        json!([])
    );
    assert_eq!(
        client
            .get(&format!("{D}/account/alice/migrate?type=NOPE"))
            .status,
        400
    );
    let service = client
        .get(&format!("{D}/account/alice/migrate/hosted-ab12345-1"))
        .ok();
    assert_eq!(service["type"], "HOSTED EXCHANGE");
    let free = client
        .get(&format!(
            "{D}/account/alice/migrate/hosted-ab12345-1/destinationEmailAddress"
        ))
        .ok();
    let free: Vec<&str> = free
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(free.len(), 3);
    assert!(free.iter().all(|a| a.ends_with("@configureme.me")));
    assert_eq!(free, placeholders(&client));
    let one = client
        .get(&format!(
            "{D}/account/alice/migrate/hosted-ab12345-1/destinationEmailAddress/{}",
            free[0]
        ))
        .ok();
    assert_eq!(one["destinationEmailAddress"], free[0]);
}

#[test]
fn check_migrate_answers_200_with_its_errors() {
    let (_sim, client) = start();
    let target = placeholders(&client)[0].clone();
    let check = |account: &str| {
        client
            .get(&format!("{D}/account/{account}/migrate/hosted-ab12345-1/destinationEmailAddress/{target}/checkMigrate"))
            .ok()
    };
    let codes = |value: &serde_json::Value, key: &str| -> Vec<String> {
        value[key]
            .as_array()
            .expect("list")
            .iter()
            .map(|e| e["code"].as_str().expect("code").to_owned())
            .collect()
    };
    assert!(codes(&check("alice"), "error").is_empty());
    assert_eq!(codes(&check("carol"), "error"), ["FORWARD_EXIST"]);
    let bob = check("bob");
    assert_eq!(codes(&bob, "error"), ["RESPONDER_EXIST"]);
    assert_eq!(codes(&bob, "warning"), ["FILTER_EXIST"]);
    assert_eq!(codes(&check("dan"), "error"), ["MAILPROXY_RESERVATION"]);
    // POST migrate refuses what checkMigrate reports.
    let refused = client.post(
        &format!(
            "{D}/account/carol/migrate/hosted-ab12345-1/destinationEmailAddress/{target}/migrate"
        ),
        &json!({"password": "Carol-pass-1"}),
    );
    assert_eq!(refused.status, 400);
    assert!(
        refused.json()["message"]
            .as_str()
            .expect("message")
            .contains("FORWARD_EXIST")
    );
}

#[test]
fn a_migration_is_a_vanishing_task_that_renames_the_placeholder() {
    let (sim, client) = start();
    sim.inject(ovh_sim::Fault::slow_tasks(150, 150).on("POST", "/email/domain"));
    let target = placeholders(&client)[0].clone();
    let migrate = format!(
        "{D}/account/alice/migrate/hosted-ab12345-1/destinationEmailAddress/{target}/migrate"
    );
    let wrong = client.post(&migrate, &json!({"password": "Wrong-pass-1"}));
    assert_eq!(wrong.status, 400);
    let short = client.post(&migrate, &json!({"password": "short"}));
    assert_eq!(short.status, 400);
    let task = client
        .post(&migrate, &json!({"password": "Alice-pass-1"}))
        .ok();
    assert_eq!(task["action"], "migration");
    assert_eq!(task["name"], "alice");
    assert_eq!(task["domain"], "legacy.test");
    let id = task["id"].as_u64().expect("numeric id");
    assert_eq!(
        client.get(&format!("{D}/task/account?name=alice")).ok(),
        json!([id])
    );
    assert_eq!(
        client.get(&format!("{D}/task/account?name=bob")).ok(),
        json!([])
    );
    // While it runs: the account is busy, and the placeholder is no longer offered.
    let busy = client.post(
        &format!("{D}/account/alice/changePassword"),
        &json!({"password": "Other-pass-1"}),
    );
    assert_eq!(busy.status, 409);
    assert_eq!(busy.reason, "ActionInProgress");
    assert_eq!(
        busy.json(),
        json!({"message": "This pop is already being processed: alice@legacy.test, please try later"})
    );
    let again = client.post(&migrate, &json!({"password": "Alice-pass-1"}));
    assert_eq!(again.status, 409);
    let check = client
        .get(&format!(
            "{D}/account/alice/migrate/hosted-ab12345-1/destinationEmailAddress/{}/checkMigrate",
            offered(&client)[0]
        ))
        .ok();
    assert_eq!(check["error"][0]["code"], "ACCOUNT_INPROGRESS");
    assert!(!offered(&client).contains(&target));
    assert!(
        placeholders(&client).contains(&target),
        "listed until renamed"
    );
    assert_eq!(client.get(&format!("{D}/task/account/{id}")).ok()["id"], id);
    wait_gone(&client, &format!("{D}/task/account/{id}"));
    assert_eq!(client.get(&format!("{D}/task/account")).ok(), json!([]));
    // The source stays listed for a while, as the real one does ("deleted within 15 days").
    assert_eq!(client.get(&format!("{D}/account/alice")).status, 200);
    let migrated = client.get(&format!("{EX}/account/alice@legacy.test")).ok();
    assert_eq!(migrated["configured"], true);
    assert_eq!(migrated["login"], "alice");
    assert_eq!(client.get(&format!("{EX}/account/{target}")).status, 404);
    assert_eq!(placeholders(&client).len(), 2);
    assert!(sim.task_errors().is_empty(), "{:?}", sim.task_errors());
}

#[test]
fn a_legacy_password_change_blocks_the_account_until_done() {
    let (_sim, client) = start();
    let task = client
        .post(
            &format!("{D}/account/bob/changePassword"),
            &json!({"password": "Bob-new-pass-1"}),
        )
        .ok();
    assert_eq!(task["action"], "changePassword");
    let id = task["id"].as_u64().expect("id");
    let second = client.post(
        &format!("{D}/account/bob/changePassword"),
        &json!({"password": "Bob-new-pass-2"}),
    );
    assert_eq!(second.status, 409);
    wait_gone(&client, &format!("{D}/task/account/{id}"));
    assert_eq!(
        client
            .post(
                &format!("{D}/account/bob/changePassword"),
                &json!({"password": "Bob-new-pass-2"})
            )
            .status,
        200
    );
}

#[test]
fn a_migrated_source_goes_away_once_its_time_is_up() {
    let mut fixture = crate::support::fixture();
    fixture.legacy_migration.source_kept_ms = Some(1500);
    let sim = ovh_sim::Simulator::start(fixture);
    let client = crate::support::Client::new(&sim, "ck-all");
    let target = placeholders(&client)[0].clone();
    let task = client
        .post(
            &format!(
                "{D}/account/alice/migrate/hosted-ab12345-1/destinationEmailAddress/{target}/migrate"
            ),
            &json!({"password": "Alice-pass-1"}),
        )
        .ok();
    wait_gone(&client, &format!("{D}/task/account/{}", task["id"]));
    assert_eq!(client.get(&format!("{D}/account/alice")).status, 200);
    let start = std::time::Instant::now();
    while client.get(&format!("{D}/account/alice")).status != 404 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "the migrated source was never deleted"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        client.get(&format!("{EX}/account/alice@legacy.test")).ok()["configured"],
        true
    );
}

#[test]
fn placeholders_in_other_states_are_listed_but_never_offered() {
    let mut fixture = crate::support::fixture();
    let service = &mut fixture.exchange_services[0];
    service.placeholders = 1;
    for (login, state) in [("frozen01", "suspended"), ("newborn01", "creating")] {
        service.accounts.push(ovh_sim::fixture::AccountFixture {
            login: login.to_owned(),
            domain: "configureme.me".to_owned(),
            password: None,
            state: state.to_owned(),
            display_name: None,
            license: "standard".to_owned(),
            messages: std::collections::BTreeMap::new(),
        });
    }
    let sim = ovh_sim::Simulator::start(fixture);
    let client = crate::support::Client::new(&sim, "ck-all");
    let listed = placeholders(&client);
    assert_eq!(listed.len(), 3, "{listed:?}");
    let offered = offered(&client);
    assert_eq!(offered.len(), 1, "{offered:?}");
    assert!(
        !offered
            .iter()
            .any(|a| a.starts_with("frozen01") || a.starts_with("newborn01"))
    );
    let frozen = client
        .get(&format!("{EX}/account/frozen01@configureme.me"))
        .ok();
    assert_eq!(frozen["state"], "suspended");
}
