//! What new MX Plan (`/email/mxplan/{service}`) and Hosted Exchange
//! (`/email/exchange/{org}/service/{service}`) share: accounts with `@configureme.me` slots,
//! rename/configure by `PUT` + a `setAccount` task, `changePassword`, reset by `DELETE`, domains,
//! and tasks with a status (`todo → doing → done|error`).
//!
//! Entry point: [`route`], called by [`crate::mxplan`] and [`crate::exchange`] with the service's
//! [`Place`]; the two differ only where the API does (the account task list is `task` on MX Plan,
//! `tasks` on Exchange; only Exchange adds domains by `POST`; the object models).

use serde_json::{Map, Value, json};

use crate::clock::iso_datetime;
use crate::http::{Reply, Request};
use crate::legacy::{claimed_by_migration, not_found_url};
use crate::state::{
    Domain, Effect, Family, Mailbox, PLACEHOLDER_DOMAIN, Place, Service, State, Subject, Task,
    like, policy_violation,
};

/// The MX targets OVH expects for a domain whose mail it hosts.
const OVH_MX: [&str; 4] = [
    "mx0.mail.ovh.net",
    "mx1.mail.ovh.net",
    "mx2.mail.ovh.net",
    "mx3.mail.ovh.net",
];
/// The SPF record OVH expects.
const OVH_SPF: &str = "v=spf1 include:mx.ovh.com ~all";

pub(crate) fn route(state: &mut State, request: &Request, place: &Place, tail: &[&str]) -> Reply {
    let exchange = matches!(place, Place::Exchange(..));
    let Some(service) = state.services.get(place) else {
        return not_found_url();
    };
    match (request.method.as_str(), tail) {
        ("GET", []) => Reply::ok(service_view(state, service)),
        ("GET", ["account"]) => {
            let pattern = request.query("primaryEmailAddress");
            let id = request.query("id").and_then(|id| id.parse::<u64>().ok());
            let license = request.query("accountLicense");
            let mut addresses: Vec<String> = service
                .accounts
                .values()
                .filter(|m| pattern.as_ref().is_none_or(|p| like(p, &m.address())))
                .filter(|m| id.is_none_or(|id| id == m.id))
                .filter(|m| license.as_ref().is_none_or(|l| *l == m.license))
                .map(Mailbox::address)
                .collect();
            addresses.sort();
            Reply::ok(json!(addresses))
        }
        (method, ["account", address, rest @ ..]) => {
            let Some(mailbox) = service.find(address).cloned() else {
                return Reply::no_object("primaryEmailAddress", address);
            };
            account_route(state, request, place, &mailbox, method, rest)
        }
        ("GET", ["domain"]) => {
            let wanted_state = request.query("state");
            let main = request.query("main");
            let names: Vec<&String> = service
                .domains
                .values()
                .filter(|d| wanted_state.as_ref().is_none_or(|s| *s == d.state))
                .filter(|d| main.as_ref().is_none_or(|m| *m == d.main.to_string()))
                .map(|d| &d.name)
                .collect();
            Reply::ok(json!(names))
        }
        ("POST", ["domain"]) if exchange => add_domain(state, request, place),
        ("GET", ["domain", name]) => match service.domains.get(&name.to_lowercase()) {
            Some(domain) => Reply::ok(domain_view(state, service, domain)),
            None => Reply::no_object("domainName", name),
        },
        ("PUT", ["domain", name]) => {
            let body = match request.json_body() {
                Ok(body) => body,
                Err(reply) => return reply,
            };
            let kind = body.get("type").and_then(Value::as_str).map(str::to_owned);
            if kind
                .as_deref()
                .is_some_and(|k| !["authoritative", "nonAuthoritative"].contains(&k))
            {
                return Reply::bad_request("Invalid value for type");
            }
            let Some(domain) = state
                .services
                .get_mut(place)
                .and_then(|s| s.domains.get_mut(&name.to_lowercase()))
            else {
                return Reply::no_object("domainName", name);
            };
            if let Some(kind) = kind {
                domain.kind = kind;
            }
            Reply::void()
        }
        ("GET", ["task"]) => {
            let ids: Vec<u64> = service_tasks(state, place)
                .filter(|task| task.is_pending())
                .map(|task| task.id)
                .collect();
            Reply::ok(json!(ids))
        }
        ("GET", ["task", id]) => {
            let task = id
                .parse::<u64>()
                .ok()
                .and_then(|id| service_tasks(state, place).find(|task| task.id == id));
            match task {
                Some(task) => Reply::ok(task_view(task)),
                None => Reply::no_object("id", id),
            }
        }
        _ => not_found_url(),
    }
}

fn account_route(
    state: &mut State,
    request: &Request,
    place: &Place,
    mailbox: &Mailbox,
    method: &str,
    rest: &[&str],
) -> Reply {
    let exchange = matches!(place, Place::Exchange(..));
    let tasks_segment = if exchange { "tasks" } else { "task" };
    let family = Family::Service(place.clone());
    let subject = Subject::Mailbox(mailbox.id);
    match (method, rest) {
        ("GET", []) => Reply::ok(account_view(state, place, mailbox)),
        ("PUT", []) => put_account(state, request, place, mailbox),
        ("DELETE", []) => {
            if mailbox.is_placeholder() {
                return Reply::bad_request(&format!(
                    "Account {} is not configured: there is nothing to reset",
                    mailbox.address()
                ));
            }
            let effect = Effect::Reset {
                place: place.clone(),
                id: mailbox.id,
            };
            let id = state.schedule(family, "deleteAccount", subject, effect);
            Reply::ok(state.tasks.get(&id).map_or(Value::Null, task_view))
        }
        ("POST", ["changePassword"]) => {
            let body = match request.json_body() {
                Ok(body) => body,
                Err(reply) => return reply,
            };
            let Some(password) = body.get("password").and_then(Value::as_str) else {
                return Reply::bad_request("Missing parameter(s): password");
            };
            let policy = state
                .services
                .get(place)
                .map(|s| s.policy)
                .unwrap_or_default();
            if let Some(reason) = policy_violation(policy, password, &mailbox.login) {
                return Reply::bad_request(&format!(
                    "The password does not meet the password policy of the service: {reason}"
                ));
            }
            let effect = Effect::Password {
                place: place.clone(),
                id: mailbox.id,
                password: password.to_owned(),
            };
            let id = state.schedule(family, "changePassword", subject, effect);
            Reply::ok(state.tasks.get(&id).map_or(Value::Null, task_view))
        }
        ("GET", [segment]) if *segment == tasks_segment => {
            let ids: Vec<u64> = state
                .tasks
                .values()
                .filter(|task| task.is_pending() && task.subject == subject)
                .map(|task| task.id)
                .collect();
            Reply::ok(json!(ids))
        }
        ("GET", [segment, id]) if *segment == tasks_segment => {
            let task = id
                .parse::<u64>()
                .ok()
                .and_then(|id| state.tasks.get(&id))
                .filter(|task| task.subject == subject);
            match task {
                Some(task) => Reply::ok(task_view(task)),
                None => Reply::no_object("id", id),
            }
        }
        _ => not_found_url(),
    }
}

/// `PUT …/account/{address}`: display fields change at once; a new login or domain is a
/// `setAccount` task (a rename, or the configuration of a free slot).
fn put_account(state: &mut State, request: &Request, place: &Place, mailbox: &Mailbox) -> Reply {
    let body = match request.json_body() {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
    let login = text("login").unwrap_or_else(|| mailbox.login.clone());
    let domain = text("domain").map_or_else(|| mailbox.domain.clone(), |d| d.to_lowercase());
    if let Some(license) = text("accountLicense")
        && !["basic", "enterprise", "standard"].contains(&license.as_str())
    {
        return Reply::bad_request(&format!("Invalid value for accountLicense: {license}"));
    }
    let renames = !login.eq_ignore_ascii_case(&mailbox.login) || domain != mailbox.domain;
    if renames {
        if claimed_by_migration(state, mailbox.id) {
            return Reply::error(
                409,
                "Client::Conflict",
                &format!("Account {} is being migrated", mailbox.address()),
            );
        }
        if !valid_login(&login) {
            return Reply::bad_request(&format!("Invalid login: {login}"));
        }
        let attached = state
            .services
            .get(place)
            .and_then(|service| service.domains.get(&domain))
            .is_some_and(|d| d.state == "ok");
        if !attached || domain == PLACEHOLDER_DOMAIN {
            return Reply::bad_request(&format!(
                "Domain {domain} is not an associated domain of this service"
            ));
        }
        if state.address_in_use(&format!("{login}@{domain}"), Some(mailbox.id)) {
            return Reply::bad_request("Email address is already used.");
        }
    }
    if let Some(stored) = state
        .services
        .get_mut(place)
        .and_then(|service| service.accounts.get_mut(&mailbox.id))
    {
        stored.display_name = text("displayName").or_else(|| stored.display_name.clone());
        stored.first_name = text("firstName").or_else(|| stored.first_name.clone());
        stored.last_name = text("lastName").or_else(|| stored.last_name.clone());
        if let Some(license) = text("accountLicense") {
            stored.license = license;
        }
    }
    if renames {
        let effect = Effect::Rename {
            place: place.clone(),
            id: mailbox.id,
            login,
            domain,
        };
        state.schedule(
            Family::Service(place.clone()),
            "setAccount",
            Subject::Mailbox(mailbox.id),
            effect,
        );
    }
    Reply::void()
}

/// A local part the API accepts (the manager's e-mail regex, local side).
fn valid_login(login: &str) -> bool {
    !login.is_empty()
        && !login.starts_with('.')
        && !login.ends_with('.')
        && !login.contains("..")
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+!#$%&'*/=?^`{|}~".contains(c))
}

/// `POST /email/exchange/{org}/service/{svc}/domain`.
fn add_domain(state: &mut State, request: &Request, place: &Place) -> Reply {
    let body = match request.json_body() {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let (Some(name), Some(kind)) = (
        body.get("name").and_then(Value::as_str),
        body.get("type").and_then(Value::as_str),
    ) else {
        return Reply::bad_request("Missing parameter(s): name, type");
    };
    let name = name.to_lowercase();
    if !["authoritative", "nonAuthoritative"].contains(&kind) {
        return Reply::bad_request(&format!("Invalid value for type: {kind}"));
    }
    if !name.contains('.') || name.contains(['/', ' ', '@']) {
        return Reply::bad_request(&format!("Invalid domain name: {name}"));
    }
    if state
        .services
        .get(place)
        .is_some_and(|service| service.domains.contains_key(&name))
    {
        return Reply::bad_request(&format!("Domain {name} already exists on this service"));
    }
    let elsewhere = state.foreign_domains.contains(&name)
        || state.services.iter().any(|(other, service)| {
            other != place
                && matches!(other, Place::Exchange(..))
                && service.domains.contains_key(&name)
        });
    if elsewhere {
        return Reply::bad_request(&format!(
            "UPN suffix {name} is already used in another organization"
        ));
    }
    let authoritative_elsewhere = state.services.iter().any(|(other, service)| {
        other != place
            && service
                .domains
                .get(&name)
                .is_some_and(|d| d.kind == "authoritative")
    });
    if kind == "authoritative" && authoritative_elsewhere {
        return Reply::bad_request("Authoritative domain detected");
    }
    let main = body.get("main").and_then(Value::as_bool).unwrap_or(false);
    if let Some(service) = state.services.get_mut(place) {
        service.domains.insert(
            name.clone(),
            Domain {
                name: name.clone(),
                kind: kind.to_owned(),
                state: "creating".to_owned(),
                main,
            },
        );
    }
    let effect = Effect::DomainReady {
        place: place.clone(),
        name: name.clone(),
    };
    let id = state.schedule(
        Family::Service(place.clone()),
        "addDomain",
        Subject::Domain(place.clone(), name),
        effect,
    );
    Reply::ok(state.tasks.get(&id).map_or(Value::Null, task_view))
}

fn service_tasks<'a>(state: &'a State, place: &'a Place) -> impl Iterator<Item = &'a Task> {
    state
        .tasks
        .values()
        .filter(move |task| matches!(&task.family, Family::Service(p) if p == place))
}

/// `email.exchange.Task` and `email.pro.Task`.
pub(crate) fn task_view(task: &Task) -> Value {
    json!({
        "finishDate": task.finish_date.map(iso_datetime),
        "function": task.function, "id": task.id, "status": task.status,
        "todoDate": iso_datetime(task.todo_date),
    })
}

fn spam_config() -> Value {
    json!({
        "checkDKIM": false, "checkSPF": false, "deleteSpam": false, "deleteVirus": true,
        "putInJunk": true, "tagSpam": true, "tagVirus": false,
    })
}

fn service_name(place: &Place) -> &str {
    match place {
        Place::MxPlan(name) | Place::Exchange(_, name) => name,
    }
}

fn service_view(state: &State, service: &Service) -> Value {
    let pending = service_tasks(state, &service.place)
        .find(|task| task.is_pending() && !matches!(task.subject, Subject::Mailbox(_)))
        .map_or(0, |task| task.id);
    let name = service_name(&service.place);
    let mut view = json!({
        "complexityEnabled": service.policy.complexity,
        "displayName": name,
        "hostname": service.hostname,
        "lockoutDuration": 0, "lockoutObservationWindow": 0, "lockoutThreshold": 0,
        "maxPasswordAge": null, "minPasswordAge": null,
        "minPasswordLength": service.policy.min_length,
        "maxReceiveSize": 100, "maxSendSize": 100,
        "spamAndVirusConfiguration": spam_config(),
        "state": "ok", "taskPendingId": pending,
        "webUrl": format!("https://{}/owa", service.hostname),
    });
    let extra = match &service.place {
        Place::Exchange(..) => json!({
            "adfsChangePassword": false, "domain": name, "offer": service.offer,
            "passwordHistoryCount": 0, "sslExpirationDate": null,
        }),
        Place::MxPlan(_) => json!({
            "domain": service.domains.keys().next().map_or(name, String::as_str),
            "isZimbra": false, "offer": "MXPLAN",
        }),
    };
    merge(&mut view, extra);
    view
}

fn account_view(state: &State, place: &Place, mailbox: &Mailbox) -> Value {
    let pending = state
        .pending_on(&Subject::Mailbox(mailbox.id))
        .map_or(0, |task| task.id);
    let configured = !mailbox.is_placeholder();
    let mut view = json!({
        "SAMAccountName": configured.then(|| mailbox.login.clone()),
        "configured": configured,
        "creationDate": iso_datetime(mailbox.created),
        "currentUsage": 0,
        "displayName": mailbox.display_name,
        "domain": mailbox.domain,
        "firstName": mailbox.first_name,
        "hiddenFromGAL": false,
        "id": mailbox.id,
        "lastName": mailbox.last_name,
        "lastUpdateDate": iso_datetime(mailbox.updated),
        "login": mailbox.login,
        "passwordLastUpdate": mailbox.password_updated.map(iso_datetime),
        "primaryEmailAddress": mailbox.address(),
        "spamAndVirusConfiguration": spam_config(),
        "spamDetected": false,
        "state": mailbox.state,
        "taskPendingId": pending,
    });
    let extra = match place {
        Place::Exchange(..) => json!({
            "accountLicense": mailbox.license, "litigation": false, "mailingFilter": ["vaderetro"],
            "numberOfAliases": 0, "outlookLicense": false, "owaLimited": false,
            "quota": 50, "storeCopyOfEmail": false,
        }),
        Place::MxPlan(_) => json!({"quota": 5.0, "mailingFilter": ["vaderetro"]}),
    };
    merge(&mut view, extra);
    view
}

fn domain_view(state: &State, service: &Service, domain: &Domain) -> Value {
    let pending = state
        .pending_on(&Subject::Domain(service.place.clone(), domain.name.clone()))
        .map_or(0, |task| task.id);
    let dns = state.dns.get(&domain.name).cloned().unwrap_or_default();
    let bare = |record: &str| {
        record
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .trim_end_matches('.')
            .to_lowercase()
    };
    let expected_mx: Vec<String> = if domain.kind == "authoritative" {
        OVH_MX.iter().map(|mx| (*mx).to_owned()).collect()
    } else {
        vec![service.hostname.clone()]
    };
    let mx_valid = !dns.mx.is_empty() && dns.mx.iter().all(|mx| expected_mx.contains(&bare(mx)));
    let srv_valid = dns
        .srv
        .iter()
        .any(|srv| bare(srv) == service.hostname && srv.contains("443"));
    let spf_valid = dns.spf.iter().any(|spf| spf.contains("include:mx.ovh.com"));
    // A domain the fixture's `dns` does not list counts as in an OVH zone.
    let proven = state.domain_proven(&domain.name);
    let cname = (!state.dns.get(&domain.name).is_none_or(|d| d.ovh_zone)).then(|| {
        let hash = domain
            .name
            .bytes()
            .fold(5381_u32, |h, b| h.wrapping_mul(33) ^ u32::from(b));
        format!("{:05x}-check", hash & 0xfffff)
    });
    let mut view = json!({
        "cnameToCheck": cname,
        "domainAliases": [],
        "domainValidated": proven,
        "expectedMX": expected_mx,
        "isAliasDomain": false,
        "mxIsValid": mx_valid,
        "mxRecord": dns.mx,
        "mxRelay": null,
        "name": domain.name,
        "srvIsValid": srv_valid,
        "srvRecord": dns.srv,
        "state": domain.state,
        "taskPendingId": pending,
        "type": domain.kind,
    });
    if matches!(service.place, Place::Exchange(..)) {
        merge(
            &mut view,
            json!({
                "dkimDiagnostics": {"state": "disabled", "errorCode": null, "message": null},
                "expectedAutodiscoverSRV": format!("_autodiscover._tcp.{}. IN SRV 0 0 443 {}.", domain.name, service.hostname),
                "expectedSPF": OVH_SPF,
                "main": domain.main,
                "organization2010": null, "sbrDefault": null, "sendConnectorIdDefault": null,
                "spfIsValid": spf_valid,
                "spfRecord": dns.spf,
            }),
        );
    }
    view
}

fn merge(view: &mut Value, extra: Value) {
    if let (Value::Object(view), Value::Object(extra)) = (view, extra) {
        let extra: Map<String, Value> = extra;
        view.extend(extra);
    }
}
