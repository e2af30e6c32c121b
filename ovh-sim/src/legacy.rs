//! Historical MX Plan: `/email/domain/{domain}/…`: accounts keyed by local part, redirections,
//! responders, the `migrate` tree towards Exchange, and `TaskPop` tasks that have no status and
//! vanish when done.
//!
//! Entry point: [`route`]. Invariants: while a task is pending on an account, every mutating call
//! on it answers 409 "This pop is already being processed"; `checkMigrate` answers 200 with its
//! findings in `error[]`; `POST …/migrate` refuses what `checkMigrate` would report.

use serde_json::{Value, json};

use crate::clock::{iso_date, iso_datetime};
use crate::http::{Reply, Request};
use crate::state::{
    Effect, Family, LegacyAccount, LegacyDomain, Place, State, Subject, Task, like,
};

/// `email.domain.MigrationServiceType` values and the Exchange offers each lists.
const MIGRATION_TYPES: [(&str, &[&str]); 4] = [
    ("EMAIL PRO", &[]),
    ("HOSTED EXCHANGE", &["hosted"]),
    ("PRIVATE EXCHANGE", &["dedicated", "dedicatedCluster"]),
    ("PROVIDER EXCHANGE", &["provider"]),
];

pub(crate) fn route(state: &mut State, request: &Request, rest: &[&str]) -> Reply {
    let method = request.method.as_str();
    if rest.is_empty() {
        return match method {
            "GET" => Reply::ok(json!(state.legacy.keys().collect::<Vec<_>>())),
            _ => not_found_url(),
        };
    }
    let domain = rest[0].to_lowercase();
    let Some(legacy) = state.legacy.get(&domain) else {
        return Reply::no_object("domain", rest[0]);
    };
    match (method, &rest[1..]) {
        ("GET", []) => Reply::ok(domain_view(state, legacy)),
        ("GET", ["account"]) => {
            let name = request.query("accountName");
            let description = request.query("description");
            let names: Vec<&String> = legacy
                .accounts
                .values()
                .filter(|a| name.as_ref().is_none_or(|p| like(p, &a.name)))
                .filter(|a| description.as_ref().is_none_or(|p| like(p, &a.description)))
                .map(|a| &a.name)
                .collect();
            Reply::ok(json!(names))
        }
        (_, ["account", account, tail @ ..]) => {
            let Some(found) = legacy.accounts.get(*account) else {
                return Reply::no_object("accountName", account);
            };
            let found = found.clone();
            account_route(state, request, &domain, &found, tail)
        }
        ("GET", ["redirection"]) => {
            let from = request.query("from");
            let to = request.query("to");
            let ids: Vec<&String> = legacy
                .redirections
                .iter()
                .filter(|r| {
                    from.as_ref()
                        .is_none_or(|f| f.eq_ignore_ascii_case(&r.from))
                })
                .filter(|r| to.as_ref().is_none_or(|t| t.eq_ignore_ascii_case(&r.to)))
                .map(|r| &r.id)
                .collect();
            Reply::ok(json!(ids))
        }
        ("GET", ["redirection", id]) => match legacy.redirections.iter().find(|r| r.id == *id) {
            Some(r) => Reply::ok(json!({"from": r.from, "id": r.id, "to": r.to})),
            None => Reply::no_object("id", id),
        },
        ("GET", ["responder"]) => {
            let account = request.query("account");
            let names: Vec<&String> = legacy
                .responders
                .keys()
                .filter(|name| account.as_ref().is_none_or(|a| a == *name))
                .collect();
            Reply::ok(json!(names))
        }
        ("GET", ["responder", account]) => match legacy.responders.get(*account) {
            Some(r) => Reply::ok(json!({
                "account": r.account, "content": r.content, "copy": false,
                "copyTo": null, "from": null, "to": null,
            })),
            None => Reply::no_object("account", account),
        },
        ("GET", ["task", "account"]) => {
            let name = request.query("name");
            let ids: Vec<u64> = legacy_tasks(state, &domain)
                .filter(|task| name.as_ref().is_none_or(|n| subject_name(task) == Some(n)))
                .map(|task| task.id)
                .collect();
            Reply::ok(json!(ids))
        }
        ("GET", ["task", "account", id]) => {
            let task = id
                .parse::<u64>()
                .ok()
                .and_then(|id| legacy_tasks(state, &domain).find(|task| task.id == id));
            match task {
                Some(task) => Reply::ok(task_view(task)),
                None => Reply::no_object("id", id),
            }
        }
        (
            "GET",
            [
                "task",
                "redirection" | "responder" | "filter" | "mailinglist",
            ],
        ) => Reply::ok(json!([])),
        _ => not_found_url(),
    }
}

fn account_route(
    state: &mut State,
    request: &Request,
    domain: &str,
    account: &LegacyAccount,
    tail: &[&str],
) -> Reply {
    let address = format!("{}@{domain}", account.name);
    let subject = Subject::Legacy(domain.to_owned(), account.name.clone());
    let busy = state.pending_on(&subject).is_some();
    if busy && request.method != "GET" {
        return Reply::busy(&address);
    }
    match (request.method.as_str(), tail) {
        ("GET", []) => Reply::ok(json!({
            "accountName": account.name, "description": account.description,
            "domain": domain, "email": address, "isBlocked": false, "size": account.size,
        })),
        ("PUT", []) => {
            if busy {
                return Reply::busy(&address);
            }
            let body = match request.json_body() {
                Ok(body) => body,
                Err(reply) => return reply,
            };
            if let Some(stored) = state
                .legacy
                .get_mut(domain)
                .and_then(|legacy| legacy.accounts.get_mut(&account.name))
            {
                if let Some(description) = body.get("description").and_then(Value::as_str) {
                    description.clone_into(&mut stored.description);
                }
                if let Some(size) = body.get("size").and_then(Value::as_u64) {
                    stored.size = size;
                }
            }
            Reply::void()
        }
        ("POST", ["changePassword"]) => {
            if busy {
                return Reply::busy(&address);
            }
            let password = match legacy_password(request) {
                Ok(password) => password,
                Err(reply) => return reply,
            };
            let effect = Effect::LegacyPassword {
                domain: domain.to_owned(),
                account: account.name.clone(),
                password,
            };
            let id = state.schedule(
                Family::Legacy(domain.to_owned()),
                "changePassword",
                subject,
                effect,
            );
            Reply::ok(state.tasks.get(&id).map_or(Value::Null, task_view))
        }
        ("GET", ["filter"]) => Reply::ok(json!(account.filters)),
        ("GET", ["delegation"]) => Reply::ok(json!([])),
        ("GET", ["migrate"]) => {
            let kind = request.query("type");
            let offers: Vec<&str> = MIGRATION_TYPES
                .iter()
                .filter(|(name, _)| kind.as_deref().is_none_or(|k| k == *name))
                .flat_map(|(_, offers)| offers.iter().copied())
                .collect();
            if kind
                .as_deref()
                .is_some_and(|k| !MIGRATION_TYPES.iter().any(|(n, _)| *n == k))
            {
                return Reply::bad_request(&format!(
                    "Invalid value for parameter type: {}",
                    kind.unwrap_or_default()
                ));
            }
            let names: Vec<&String> = state
                .services
                .values()
                .filter(|service| offers.contains(&service.offer.as_str()))
                .filter_map(|service| match &service.place {
                    Place::Exchange(_, name) => Some(name),
                    Place::MxPlan(_) => None,
                })
                .collect();
            Reply::ok(json!(names))
        }
        (method, ["migrate", destination, rest @ ..]) => {
            let Some(place) = exchange_by_service(state, destination) else {
                return Reply::no_object("destinationServiceName", destination);
            };
            migrate_route(state, request, method, domain, account, &place, rest)
        }
        _ => not_found_url(),
    }
}

fn migrate_route(
    state: &mut State,
    request: &Request,
    method: &str,
    domain: &str,
    account: &LegacyAccount,
    place: &Place,
    rest: &[&str],
) -> Reply {
    let Some(service) = state.services.get(place) else {
        return not_found_url();
    };
    let Place::Exchange(_, service_name) = place else {
        return not_found_url();
    };
    match (method, rest) {
        ("GET", []) => {
            let kind = MIGRATION_TYPES
                .iter()
                .find(|(_, offers)| offers.contains(&service.offer.as_str()))
                .map_or("HOSTED EXCHANGE", |(name, _)| name);
            let created = state
                .legacy
                .get(domain)
                .map_or(0, |l: &LegacyDomain| l.created);
            Reply::ok(json!({
                "contactAdmin": "sim-ovh", "contactBilling": "sim-ovh", "contactTech": "sim-ovh",
                "creation": iso_date(created), "destinationServiceName": service_name,
                "expiration": iso_date(created + 365 * 86_400), "type": kind,
            }))
        }
        ("GET", ["destinationEmailAddress"]) => {
            let free: Vec<String> = free_placeholders(state, place)
                .into_iter()
                .map(|(_, address)| address)
                .collect();
            Reply::ok(json!(free))
        }
        (_, ["destinationEmailAddress", address, tail @ ..]) => {
            let Some(target) = free_placeholders(state, place)
                .into_iter()
                .find(|(_, free)| free.eq_ignore_ascii_case(address))
                .map(|(id, _)| id)
            else {
                return Reply::no_object("destinationEmailAddress", address);
            };
            match (method, tail) {
                ("GET", []) => Reply::ok(json!({"destinationEmailAddress": address, "quota": 50})),
                ("GET", ["checkMigrate"]) => Reply::ok(check_migrate(state, domain, account)),
                ("POST", ["migrate"]) => {
                    start_migration(state, request, domain, account, place, target)
                }
                _ => not_found_url(),
            }
        }
        _ => not_found_url(),
    }
}

fn start_migration(
    state: &mut State,
    request: &Request,
    domain: &str,
    account: &LegacyAccount,
    place: &Place,
    target: u64,
) -> Reply {
    let address = format!("{}@{domain}", account.name);
    let subject = Subject::Legacy(domain.to_owned(), account.name.clone());
    if state.pending_on(&subject).is_some() {
        return Reply::busy(&address);
    }
    let password = match legacy_password(request) {
        Ok(password) => password,
        Err(reply) => return reply,
    };
    let check = check_migrate(state, domain, account);
    let codes: Vec<&str> = check["error"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|error| error["code"].as_str())
        .collect();
    if !codes.is_empty() {
        return Reply::bad_request(&format!(
            "Migration of {address} is not possible: {}",
            codes.join(", ")
        ));
    }
    if password != account.password {
        return Reply::bad_request(&format!("Invalid password for {address}"));
    }
    let effect = Effect::LegacyMigrate {
        domain: domain.to_owned(),
        account: account.name.clone(),
        exchange: place.clone(),
        target,
    };
    let id = state.schedule(
        Family::Legacy(domain.to_owned()),
        "migration",
        subject,
        effect,
    );
    Reply::ok(state.tasks.get(&id).map_or(Value::Null, task_view))
}

/// `email.domain.MigrationCheckStruct` for one account.
fn check_migrate(state: &State, domain: &str, account: &LegacyAccount) -> Value {
    let address = format!("{}@{domain}", account.name);
    let mut errors: Vec<Value> = Vec::new();
    let mut push = |code: &str, details: Option<String>| {
        errors.push(json!({"code": code, "details": details}));
    };
    let subject = Subject::Legacy(domain.to_owned(), account.name.clone());
    if state.pending_on(&subject).is_some() {
        push("ACCOUNT_INPROGRESS", None);
    }
    let legacy = state.legacy.get(domain);
    let redirections = legacy
        .map(|l| l.redirections.as_slice())
        .unwrap_or_default();
    let forwards: Vec<&String> = redirections
        .iter()
        .filter(|r| r.from.eq_ignore_ascii_case(&address))
        .map(|r| &r.to)
        .collect();
    if !forwards.is_empty() {
        push("FORWARD_EXIST", Some(format!("{address} is redirected")));
    }
    if redirections
        .iter()
        .any(|r| r.to.eq_ignore_ascii_case(&address))
    {
        push(
            "FORWARD_LOCAL",
            Some(format!("a redirection goes to {address}")),
        );
    }
    if legacy.is_some_and(|l| l.responders.contains_key(&account.name)) {
        push(
            "RESPONDER_EXIST",
            Some(format!("{address} has an auto-reply")),
        );
    }
    for code in &account.check_errors {
        push(code, None);
    }
    let warnings: Vec<Value> = if account.filters.is_empty() {
        Vec::new()
    } else {
        vec![json!({"code": "FILTER_EXIST", "details": "filters are not migrated"})]
    };
    json!({
        "alias": [], "error": errors, "filter": account.filters,
        "forward": forwards, "warning": warnings,
    })
}

/// The free `@configureme.me` accounts of an Exchange service: placeholders in state `ok` ([I]: a
/// `suspended` or `creating` one cannot take a mailbox) with no pending task and not the target
/// of a pending migration, sorted by address.
pub(crate) fn free_placeholders(state: &State, place: &Place) -> Vec<(u64, String)> {
    let Some(service) = state.services.get(place) else {
        return Vec::new();
    };
    let mut free: Vec<(u64, String)> = service
        .accounts
        .values()
        .filter(|mailbox| mailbox.is_placeholder() && mailbox.state == "ok")
        .filter(|mailbox| state.pending_on(&Subject::Mailbox(mailbox.id)).is_none())
        .filter(|mailbox| !claimed_by_migration(state, mailbox.id))
        .map(|mailbox| (mailbox.id, mailbox.address()))
        .collect();
    free.sort_by(|a, b| a.1.cmp(&b.1));
    free
}

/// Whether a pending legacy migration will rename this placeholder.
pub(crate) fn claimed_by_migration(state: &State, id: u64) -> bool {
    state.tasks.values().any(|task| {
        task.is_pending()
            && matches!(task.effect, Effect::LegacyMigrate { target, .. } if target == id)
    })
}

fn exchange_by_service(state: &State, name: &str) -> Option<Place> {
    state.services.keys().find_map(|place| match place {
        Place::Exchange(_, service) if service == name => Some(place.clone()),
        _ => None,
    })
}

/// The `password` of a legacy call: 9 to 30 characters, no space at either end.
fn legacy_password(request: &Request) -> Result<String, Reply> {
    let body = request.json_body()?;
    let Some(password) = body.get("password").and_then(Value::as_str) else {
        return Err(Reply::bad_request("Missing parameter(s): password"));
    };
    let length = password.chars().count();
    if !(9..=30).contains(&length) || password.trim() != password {
        return Err(Reply::bad_request(
            "Invalid password: length must be in [9;30], with no space at begin and end",
        ));
    }
    Ok(password.to_owned())
}

/// Pending tasks of a legacy domain (done ones vanish).
fn legacy_tasks<'a>(state: &'a State, domain: &'a str) -> impl Iterator<Item = &'a Task> {
    state.tasks.values().filter(move |task| {
        task.is_pending() && matches!(&task.family, Family::Legacy(d) if d == domain)
    })
}

fn subject_name(task: &Task) -> Option<&String> {
    match &task.subject {
        Subject::Legacy(_, name) => Some(name),
        _ => None,
    }
}

/// `email.domain.TaskPop`.
fn task_view(task: &Task) -> Value {
    let (domain, name) = match &task.subject {
        Subject::Legacy(domain, name) => (domain.as_str(), name.as_str()),
        _ => ("", ""),
    };
    json!({
        "action": task.function, "date": iso_datetime(task.todo_date),
        "domain": domain, "id": task.id, "name": name,
    })
}

fn domain_view(state: &State, legacy: &LegacyDomain) -> Value {
    let dns = state.dns.get(&legacy.name);
    let mx_valid = match dns {
        None => "none",
        Some(records)
            if records
                .mx
                .iter()
                .any(|mx| mx.trim_end_matches('.').ends_with("mail.ovh.net")) =>
        {
            "valid"
        }
        Some(_) => "invalid",
    };
    let spf_valid = match dns {
        None => "none",
        Some(records)
            if records
                .spf
                .iter()
                .any(|spf| spf.contains("include:mx.ovh.com")) =>
        {
            "valid"
        }
        Some(_) => "invalid",
    };
    json!({
        "allowedAccountSize": [2_500_000_000_u64, 5_000_000_000_u64],
        "creationDate": iso_datetime(legacy.created),
        "domain": legacy.name, "filerz": null, "isMXValid": mx_valid, "isSPFValid": spf_valid,
        "linkTo": null, "migratedMXPlanServiceName": legacy.migrated_to,
        "offer": "MX Plan", "status": "ok",
    })
}

pub(crate) fn not_found_url() -> Reply {
    Reply::not_found("Got an invalid (or empty) URL")
}
