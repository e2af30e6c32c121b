//! Every response of every implemented route, checked against the API's own schemas
//! (`tests/schemas/`, copies of the June 2024 `OVHcloud` API documents): each returned field exists
//! in the model with a compatible JSON type and enum value, and every field the model says cannot
//! be null (or is required) is present and not null.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};

use crate::support::{EX, MX, placeholders, start, wait_gone, wait_status};

struct Schemas {
    models: BTreeMap<String, Value>,
    /// (method, path template, response type)
    operations: Vec<(String, String, String)>,
}

fn load() -> Schemas {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemas");
    let mut schemas = Schemas {
        models: BTreeMap::new(),
        operations: Vec::new(),
    };
    for file in [
        "auth.json",
        "email-domain.json",
        "email-mxplan.json",
        "email-exchange.json",
    ] {
        let text = std::fs::read_to_string(dir.join(file)).expect("read a schema");
        let doc: Value = serde_json::from_str(&text).expect("schema JSON");
        for (name, model) in doc["models"].as_object().expect("models") {
            schemas.models.insert(name.clone(), model.clone());
        }
        for api in doc["apis"].as_array().expect("apis") {
            for op in api["operations"].as_array().expect("operations") {
                schemas.operations.push((
                    op["httpMethod"].as_str().expect("method").to_owned(),
                    api["path"].as_str().expect("path").to_owned(),
                    op["responseType"]
                        .as_str()
                        .expect("responseType")
                        .to_owned(),
                ));
            }
        }
    }
    schemas
}

impl Schemas {
    /// The operation a concrete call matches: the template with the most literal segments.
    fn operation(&self, method: &str, path: &str) -> Option<(&str, &str)> {
        let segments: Vec<String> = path.split('/').map(decode).collect();
        self.operations
            .iter()
            .filter(|(m, _, _)| m == method)
            .filter_map(|(_, template, response)| {
                let parts: Vec<&str> = template.split('/').collect();
                let fits = parts.len() == segments.len()
                    && parts
                        .iter()
                        .zip(&segments)
                        .all(|(p, s)| p.starts_with('{') || p == s);
                fits.then(|| {
                    (
                        parts.iter().filter(|p| !p.starts_with('{')).count(),
                        template.as_str(),
                        response.as_str(),
                    )
                })
            })
            .max_by_key(|(literals, _, _)| *literals)
            .map(|(_, template, response)| (template, response))
    }

    fn check(&self, value: &Value, kind: &str, at: &str, problems: &mut Vec<String>) {
        if let Some(inner) = kind.strip_suffix("[]") {
            match value.as_array() {
                Some(items) => {
                    for (index, item) in items.iter().enumerate() {
                        self.check(item, inner, &format!("{at}[{index}]"), problems);
                    }
                }
                None => problems.push(format!("{at}: {value} is not an array ({kind})")),
            }
            return;
        }
        let primitive = match kind {
            "string" | "password" | "text" | "ipBlock" | "phoneNumber" | "datetime" | "date" => {
                Some(value.is_string())
            }
            "long" | "int" => Some(value.is_i64() || value.is_u64()),
            "double" => Some(value.is_number()),
            "boolean" => Some(value.is_boolean()),
            "void" => Some(value.is_null()),
            _ if kind.ends_with(":string") => Some(value.is_string()),
            _ => None,
        };
        if let Some(fits) = primitive {
            if !fits {
                problems.push(format!("{at}: {value} is not a {kind}"));
            }
            return;
        }
        let Some(model) = self.models.get(kind) else {
            problems.push(format!("{at}: unknown type {kind}"));
            return;
        };
        if let Some(values) = model["enum"].as_array() {
            if !values.contains(value) {
                problems.push(format!("{at}: {value} is not one of {kind} {values:?}"));
            }
            return;
        }
        let properties = model["properties"]
            .as_object()
            .expect("a model with properties");
        let Some(object) = value.as_object() else {
            problems.push(format!("{at}: {value} is not an object ({kind})"));
            return;
        };
        for (key, field) in object {
            match properties.get(key) {
                None => problems.push(format!("{at}.{key}: not a field of {kind}")),
                Some(_) if field.is_null() => {}
                Some(property) => {
                    let field_kind = property["fullType"]
                        .as_str()
                        .or(property["type"].as_str())
                        .expect("a type");
                    self.check(field, field_kind, &format!("{at}.{key}"), problems);
                }
            }
        }
        for (key, property) in properties {
            let mandatory =
                property["canBeNull"] == json!(false) || property["required"] == json!(true);
            if mandatory && object.get(key).is_none_or(Value::is_null) {
                problems.push(format!(
                    "{at}.{key}: missing, {kind} says it cannot be null"
                ));
            }
        }
    }
}

fn decode(segment: &str) -> String {
    let mut out = Vec::new();
    let bytes = segment.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && index + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&segment[index + 1..index + 3], 16)
        {
            out.push(byte);
            index += 3;
            continue;
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8(out).expect("UTF-8 path")
}

/// Every operation the simulator implements, as (method, schema path template).
const IMPLEMENTED: &[(&str, &str)] = &[
    ("GET", "/auth/time"),
    ("POST", "/auth/credential"),
    ("GET", "/auth/currentCredential"),
    ("GET", "/email/domain"),
    ("GET", "/email/domain/{domain}"),
    ("GET", "/email/domain/{domain}/account"),
    ("GET", "/email/domain/{domain}/account/{accountName}"),
    ("PUT", "/email/domain/{domain}/account/{accountName}"),
    (
        "POST",
        "/email/domain/{domain}/account/{accountName}/changePassword",
    ),
    ("GET", "/email/domain/{domain}/account/{accountName}/filter"),
    (
        "GET",
        "/email/domain/{domain}/account/{accountName}/delegation",
    ),
    (
        "GET",
        "/email/domain/{domain}/account/{accountName}/migrate",
    ),
    (
        "GET",
        "/email/domain/{domain}/account/{accountName}/migrate/{destinationServiceName}",
    ),
    (
        "GET",
        "/email/domain/{domain}/account/{accountName}/migrate/{destinationServiceName}/destinationEmailAddress",
    ),
    (
        "GET",
        "/email/domain/{domain}/account/{accountName}/migrate/{destinationServiceName}/destinationEmailAddress/{destinationEmailAddress}",
    ),
    (
        "GET",
        "/email/domain/{domain}/account/{accountName}/migrate/{destinationServiceName}/destinationEmailAddress/{destinationEmailAddress}/checkMigrate",
    ),
    (
        "POST",
        "/email/domain/{domain}/account/{accountName}/migrate/{destinationServiceName}/destinationEmailAddress/{destinationEmailAddress}/migrate",
    ),
    ("GET", "/email/domain/{domain}/redirection"),
    ("GET", "/email/domain/{domain}/redirection/{id}"),
    ("GET", "/email/domain/{domain}/responder"),
    ("GET", "/email/domain/{domain}/responder/{account}"),
    ("GET", "/email/domain/{domain}/task/account"),
    ("GET", "/email/domain/{domain}/task/account/{id}"),
    ("GET", "/email/domain/{domain}/task/redirection"),
    ("GET", "/email/domain/{domain}/task/responder"),
    ("GET", "/email/domain/{domain}/task/filter"),
    ("GET", "/email/domain/{domain}/task/mailinglist"),
    ("GET", "/email/mxplan"),
    ("GET", "/email/mxplan/{service}"),
    ("GET", "/email/mxplan/{service}/account"),
    ("GET", "/email/mxplan/{service}/account/{email}"),
    ("PUT", "/email/mxplan/{service}/account/{email}"),
    ("DELETE", "/email/mxplan/{service}/account/{email}"),
    (
        "POST",
        "/email/mxplan/{service}/account/{email}/changePassword",
    ),
    ("GET", "/email/mxplan/{service}/account/{email}/task"),
    ("GET", "/email/mxplan/{service}/account/{email}/task/{id}"),
    ("GET", "/email/mxplan/{service}/domain"),
    ("GET", "/email/mxplan/{service}/domain/{domainName}"),
    ("PUT", "/email/mxplan/{service}/domain/{domainName}"),
    ("GET", "/email/mxplan/{service}/task"),
    ("GET", "/email/mxplan/{service}/task/{id}"),
    ("GET", "/email/exchange"),
    ("GET", "/email/exchange/{organizationName}/service"),
    (
        "GET",
        "/email/exchange/{organizationName}/service/{exchangeService}",
    ),
    (
        "GET",
        "/email/exchange/{organizationName}/service/{exchangeService}/account",
    ),
    (
        "GET",
        "/email/exchange/{organizationName}/service/{exchangeService}/account/{primaryEmailAddress}",
    ),
    (
        "PUT",
        "/email/exchange/{organizationName}/service/{exchangeService}/account/{primaryEmailAddress}",
    ),
    (
        "DELETE",
        "/email/exchange/{organizationName}/service/{exchangeService}/account/{primaryEmailAddress}",
    ),
    (
        "POST",
        "/email/exchange/{organizationName}/service/{exchangeService}/account/{primaryEmailAddress}/changePassword",
    ),
    (
        "GET",
        "/email/exchange/{organizationName}/service/{exchangeService}/account/{primaryEmailAddress}/tasks",
    ),
    (
        "GET",
        "/email/exchange/{organizationName}/service/{exchangeService}/account/{primaryEmailAddress}/tasks/{id}",
    ),
    (
        "GET",
        "/email/exchange/{organizationName}/service/{exchangeService}/domain",
    ),
    (
        "POST",
        "/email/exchange/{organizationName}/service/{exchangeService}/domain",
    ),
    (
        "GET",
        "/email/exchange/{organizationName}/service/{exchangeService}/domain/{domainName}",
    ),
    (
        "PUT",
        "/email/exchange/{organizationName}/service/{exchangeService}/domain/{domainName}",
    ),
    (
        "GET",
        "/email/exchange/{organizationName}/service/{exchangeService}/task",
    ),
    (
        "GET",
        "/email/exchange/{organizationName}/service/{exchangeService}/task/{id}",
    ),
];

#[test]
fn every_response_matches_the_api_schemas() {
    let schemas = load();
    let (sim, client) = start();
    let d = "/email/domain/legacy.test";
    let body = serde_json::to_vec(&json!({"accessRules": [{"method": "GET", "path": "/*"}]}))
        .expect("json");
    client
        .raw(
            "POST",
            "/1.0/auth/credential",
            &[("X-Ovh-Application", crate::support::AK)],
            &body,
        )
        .ok();
    client.raw("GET", "/1.0/auth/time", &[], b"").ok();
    for path in [
        "/auth/currentCredential".to_owned(),
        "/email/domain".to_owned(),
        d.to_owned(),
        format!("{d}/account"),
        format!("{d}/account/alice"),
        format!("{d}/account/bob/filter"),
        format!("{d}/account/bob/delegation"),
        format!("{d}/account/alice/migrate?type=HOSTED%20EXCHANGE"),
        format!("{d}/account/alice/migrate/hosted-ab12345-1"),
        format!("{d}/account/alice/migrate/hosted-ab12345-1/destinationEmailAddress"),
        format!("{d}/redirection"),
        format!("{d}/responder"),
        format!("{d}/responder/bob"),
        format!("{d}/task/redirection"),
        format!("{d}/task/responder"),
        format!("{d}/task/filter"),
        format!("{d}/task/mailinglist"),
        "/email/mxplan".to_owned(),
        MX.to_owned(),
        format!("{MX}/account"),
        format!("{MX}/account/erin@new.test"),
        format!("{MX}/domain"),
        format!("{MX}/domain/new.test"),
        "/email/exchange".to_owned(),
        "/email/exchange/hosted-ab12345-1/service".to_owned(),
        EX.to_owned(),
        format!("{EX}/account"),
        format!("{EX}/account/frank@legacy.test"),
        format!("{EX}/domain"),
        format!("{EX}/domain/legacy.test"),
    ] {
        client.get(&path).ok();
    }
    let redirection = client.get(&format!("{d}/redirection")).ok()[0]
        .as_str()
        .expect("id")
        .to_owned();
    client.get(&format!("{d}/redirection/{redirection}")).ok();
    let slot = placeholders(&client)[0].clone();
    let target =
        format!("{d}/account/alice/migrate/hosted-ab12345-1/destinationEmailAddress/{slot}");
    client.get(&target).ok();
    client.get(&format!("{target}/checkMigrate")).ok();
    client
        .get(&format!(
            "{d}/account/carol/migrate/hosted-ab12345-1/destinationEmailAddress/{slot}/checkMigrate"
        ))
        .ok();
    client
        .put(&format!("{d}/account/bob"), &json!({"description": "x"}))
        .ok();
    let password = client
        .post(
            &format!("{d}/account/bob/changePassword"),
            &json!({"password": "Bob-new-pass-1"}),
        )
        .ok();
    client.get(&format!("{d}/task/account?name=bob")).ok();
    client
        .get(&format!("{d}/task/account/{}", password["id"]))
        .ok();
    let migration = client
        .post(
            &format!("{target}/migrate"),
            &json!({"password": "Alice-pass-1"}),
        )
        .ok();
    wait_gone(&client, &format!("{d}/task/account/{}", migration["id"]));

    let rename = format!("{MX}/account/dave@new.test");
    client
        .put(&rename, &json!({"login": "dave.old", "domain": "new.test"}))
        .ok();
    client.get(&rename).ok();
    let tasks = client.get(&format!("{rename}/task")).ok();
    client.get(&format!("{rename}/task/{}", tasks[0])).ok();
    client.get(&format!("{MX}/task")).ok();
    wait_status(&client, &format!("{MX}/task/{}", tasks[0]));
    let mx_password = client
        .post(
            &format!("{MX}/account/dave.old@new.test/changePassword"),
            &json!({"password": "Dave-new-2024"}),
        )
        .ok();
    wait_status(&client, &format!("{MX}/task/{}", mx_password["id"]));
    let reset = client
        .delete(&format!("{MX}/account/dave.old@new.test"))
        .ok();
    wait_status(&client, &format!("{MX}/task/{}", reset["id"]));
    client
        .put(
            &format!("{MX}/domain/new.test"),
            &json!({"type": "nonAuthoritative"}),
        )
        .ok();

    let domain = client
        .post(
            &format!("{EX}/domain"),
            &json!({"name": "dns-ok.test", "type": "authoritative"}),
        )
        .ok();
    client.get(&format!("{EX}/domain/dns-ok.test")).ok();
    wait_status(&client, &format!("{EX}/task/{}", domain["id"]));
    client.get(&format!("{EX}/domain/dns-ok.test")).ok();
    client
        .put(
            &format!("{EX}/domain/dns-ok.test"),
            &json!({"type": "nonAuthoritative"}),
        )
        .ok();
    let slot = placeholders(&client)[0].clone();
    client
        .put(
            &format!("{EX}/account/{slot}"),
            &json!({"login": "gina", "domain": "dns-ok.test", "displayName": "Gina"}),
        )
        .ok();
    client.get(&format!("{EX}/account/{slot}")).ok();
    let tasks = client.get(&format!("{EX}/account/{slot}/tasks")).ok();
    client
        .get(&format!("{EX}/account/{slot}/tasks/{}", tasks[0]))
        .ok();
    client.get(&format!("{EX}/task")).ok();
    wait_status(&client, &format!("{EX}/task/{}", tasks[0]));
    let ex_password = client
        .post(
            &format!("{EX}/account/gina@dns-ok.test/changePassword"),
            &json!({"password": "Secret-pass-2024"}),
        )
        .ok();
    wait_status(&client, &format!("{EX}/task/{}", ex_password["id"]));
    client.get(&format!("{EX}/account/gina@dns-ok.test")).ok();
    let reset = client
        .delete(&format!("{EX}/account/gina@dns-ok.test"))
        .ok();
    wait_status(&client, &format!("{EX}/task/{}", reset["id"]));

    let mut problems = Vec::new();
    let mut covered = BTreeSet::new();
    for request in sim.requests() {
        if request.status != 200 {
            continue;
        }
        let Some((template, response)) = schemas.operation(&request.method, request.path_only())
        else {
            problems.push(format!(
                "{} {}: no such operation in the schemas",
                request.method, request.path
            ));
            continue;
        };
        covered.insert((request.method.clone(), template.to_owned()));
        let value: Value = serde_json::from_str(&request.response).expect("JSON response");
        schemas.check(
            &value,
            response,
            &format!("{} {}", request.method, request.path),
            &mut problems,
        );
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    let expected: BTreeSet<(String, String)> = IMPLEMENTED
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let missing: Vec<_> = expected.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "implemented routes not exercised: {missing:?}"
    );
    let unlisted: Vec<_> = covered.difference(&expected).collect();
    assert!(
        unlisted.is_empty(),
        "routes answered but not listed: {unlisted:?}"
    );
}
