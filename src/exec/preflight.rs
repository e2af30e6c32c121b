//! The run's preflight: before the first mutating call of a run, everything that can be checked
//! without changing anything, for the whole selection, so that a run never starts a migration it
//! can already tell will fail half way (a source renamed, then no account to configure).
//!
//! Entry point: [`check`], called by `apply` (any problem: exit 2, nothing executed) and by
//! `plan --refresh` (the same verdicts, shown per account). Only GET calls and IMAP logins.
//!
//! What is checked, for the steps not done yet (the state store says which; the live state is
//! read too, so a lost store does not count a migrated account twice):
//! - the consumer key's access rules (`/auth/currentCredential`) cover the calls the plan needs;
//! - every domain to attach is attachable: not attached to another Exchange service of the
//!   plan, not authoritative on a new MX Plan service of the plan when the plan attaches it as
//!   authoritative ("Authoritative domain detected"), its CNAME proof made when it is attached
//!   but waits for one;
//! - every Exchange service has the `@configureme.me` accounts claiming would take (state ok,
//!   no task pending) for the accounts that still need one, and says how many to order;
//! - every target password meets its service's policy;
//! - no redirection from or to, and no responder on, a historical MX Plan source;
//! - the IMAP login of every source whose copy (or OVH's migration) comes next.
//!
//! Secrets are resolved before (an unresolvable one is already an error, exit 2).

use std::collections::{BTreeMap, BTreeSet};

use super::credentials::Credentials;
use super::ovh::{Ovh, cname_advice, exchange_service};
use crate::graph::StepKind;
use crate::plan::model::{Account, DomainType, Flow, Plan, PlatformKind};
use crate::providers::imap;
use crate::providers::ovh::api::{auth, exchange, legacy, mxplan};
use crate::providers::ovh::{OvhError, OvhErrorKind};

/// What a problem is about: how `plan --refresh` shows it beside the accounts it concerns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Subject {
    /// The OVH credential: every OVH account.
    Credential,
    /// An Exchange service (`service`): the accounts that need one of its placeholders.
    Service(String),
    /// A domain to attach: its accounts.
    Domain(String),
    /// One account (its address).
    Account(String),
}

/// One failed check, in words that say what to do.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Problem {
    pub subject: Subject,
    pub text: String,
}

impl Problem {
    fn new(subject: Subject, text: impl Into<String>) -> Self {
        Problem {
            subject,
            text: text.into(),
        }
    }

    /// Whether the problem concerns `a` (for `plan --refresh`).
    pub(crate) fn concerns(&self, plan: &Plan, a: &Account) -> bool {
        match &self.subject {
            Subject::Credential => a.flow != Flow::ImapToImap,
            Subject::Service(s) => {
                a.flow.needs_placeholder()
                    && exchange_service(plan, &a.to).is_some_and(|x| &x.service == s)
            }
            Subject::Domain(d) => a.flow != Flow::ImapToImap && a.domain() == d,
            Subject::Account(addr) => &a.address == addr,
        }
    }
}

/// The run's checks. `done(kind, who)` says whether the step `kind` of `who` (an address or a
/// domain) is recorded as done. `credentials` are the accounts' resolved secrets, in plan order.
/// An API error that stops the checks themselves (a bad signature, the API unreachable) is the
/// `Err`.
pub(crate) async fn check(
    ovh: &Ovh,
    plan: &Plan,
    credentials: &[Credentials],
    done: &dyn Fn(StepKind, &str) -> bool,
) -> Result<Vec<Problem>, OvhError> {
    let c = &ovh.client;
    let mut problems = Vec::new();
    let ovh_accounts: Vec<(usize, &Account)> = plan
        .accounts
        .iter()
        .enumerate()
        .filter(|(_, a)| a.flow != Flow::ImapToImap)
        .collect();
    if ovh_accounts.is_empty() && plan.domains.is_empty() {
        return Ok(problems);
    }

    access_rules(ovh, plan, &mut problems).await?;

    // Each Exchange service of the plan: its accounts and domains, read once.
    let mut services: BTreeMap<String, exchange::Service> = BTreeMap::new();
    for p in plan.platforms.values() {
        if let Some(s) = exchange_service(plan, &p.name) {
            services.insert(s.path(), s);
        }
    }
    let mut addresses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut domains: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, s) in &services {
        let activity = format!("reading {} before the run", s.service);
        let list = exchange::list_accounts(c, &activity, s, None).await?;
        addresses.insert(
            path.clone(),
            list.iter().map(|x| x.to_lowercase()).collect(),
        );
        let list = exchange::list_domains(c, &activity, s).await?;
        domains.insert(
            path.clone(),
            list.iter().map(|x| x.to_lowercase()).collect(),
        );
    }
    let on_exchange = |a: &Account| {
        exchange_service(plan, &a.to)
            .and_then(|s| addresses.get(&s.path()))
            .is_some_and(|set| set.contains(&a.address))
    };

    attachable_domains(ovh, plan, &domains, done, &mut problems).await?;

    // Placeholders: the accounts that still need one (not configured or migrated, by the store
    // or by the live state), per service, against what claiming would take.
    let mut needing: BTreeMap<String, (exchange::Service, usize)> = BTreeMap::new();
    for (_, a) in &ovh_accounts {
        let step = if a.flow == Flow::LegacyToExchange {
            StepKind::MigrateLegacy
        } else {
            StepKind::ConfigureTarget
        };
        if !a.flow.needs_placeholder() || done(step, &a.address) || on_exchange(a) {
            continue;
        }
        if let Some(s) = exchange_service(plan, &a.to) {
            needing.entry(s.path()).or_insert((s, 0)).1 += 1;
        }
    }
    for (service, needed) in needing.values() {
        let activity = format!(
            "counting the free @configureme.me accounts of {}",
            service.service
        );
        let have =
            exchange::count_free_placeholders(c, &activity, service, &|_| false, *needed).await?;
        if have < *needed {
            problems.push(Problem::new(
                Subject::Service(service.service.clone()),
                format!(
                    "{}: {needed} account(s) need a free @configureme.me account, {have} \
                     available (state ok, no task pending): order {} more",
                    service.service,
                    needed - have
                ),
            ));
        }
    }

    // Target passwords against each service's policy.
    let mut policies = BTreeMap::new();
    for (i, a) in &ovh_accounts {
        if !matches!(a.flow, Flow::MxplanToExchange | Flow::ImapToExchange)
            || done(StepKind::ConfigureTarget, &a.address)
        {
            continue;
        }
        let Some(s) = exchange_service(plan, &a.to) else {
            continue;
        };
        let policy = match policies.entry(s.path()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let activity = format!("reading the password policy of {}", s.service);
                e.insert(
                    exchange::get_service(c, &activity, &s)
                        .await?
                        .password_policy(),
                )
            }
        };
        let violations = policy.violations(
            &credentials[*i].target_password,
            a.local_part(),
            a.display_name.as_deref(),
        );
        if !violations.is_empty() {
            problems.push(Problem::new(
                Subject::Account(a.address.clone()),
                format!(
                    "{}: the target password does not meet {}'s policy: {}",
                    a.address,
                    s.service,
                    violations.join("; ")
                ),
            ));
        }
    }

    // Historical sources: no redirection, no responder (OVH's migration refuses them).
    for (_, a) in &ovh_accounts {
        let PlatformKind::OvhMxplanLegacy { domain } = &plan.platforms[&a.from].kind else {
            continue;
        };
        if done(StepKind::MigrateLegacy, &a.address) || on_exchange(a) {
            continue;
        }
        let activity = format!("checking {} before the run", a.address);
        let from = legacy::redirections(c, &activity, domain, Some(&a.address), None).await?;
        let to = legacy::redirections(c, &activity, domain, None, Some(&a.address)).await?;
        if !from.is_empty() || !to.is_empty() {
            problems.push(Problem::new(
                Subject::Account(a.address.clone()),
                format!(
                    "{}: {} redirection(s) from or to the account: remove them in the control \
                     panel first",
                    a.address,
                    from.len() + to.len()
                ),
            ));
        }
        if !legacy::responders(c, &activity, domain, Some(a.local_part()))
            .await?
            .is_empty()
        {
            problems.push(Problem::new(
                Subject::Account(a.address.clone()),
                format!("{}: an auto-responder is set: remove it first", a.address),
            ));
        }
    }

    source_logins(ovh, plan, credentials, done, &on_exchange, &mut problems).await?;
    problems.sort();
    problems.dedup();
    Ok(problems)
}

/// The consumer key's rules against the calls the plan needs. A key that may not read its own
/// rules is not a problem: the check is then skipped (the calls themselves will say).
async fn access_rules(ovh: &Ovh, plan: &Plan, problems: &mut Vec<Problem>) -> Result<(), OvhError> {
    let granted =
        match auth::current_credential(&ovh.client, "reading the consumer key's rules").await {
            Ok(current) => current.rules,
            Err(e) if e.kind == OvhErrorKind::NotGranted => return Ok(()),
            Err(e) => return Err(e),
        };
    let has = |f: Flow| plan.accounts.iter().any(|a| a.flow == f);
    let resets = plan.accounts.iter().any(|a| plan.resets_source(a));
    // Each rule made concrete with the plan's own services, so that a key limited to them fits.
    let mut calls: Vec<(&'static str, &'static str, String)> = Vec::new();
    for rule in auth::ACCESS_RULES {
        if auth::OPTIONAL_RULES.contains(rule) {
            continue;
        }
        let values: Vec<Vec<String>> = if rule.path.starts_with("/email/exchange/") {
            plan.platforms
                .values()
                .filter_map(|p| exchange_service(plan, &p.name))
                .map(|s| vec![s.organization, s.service])
                .collect()
        } else if rule.path.starts_with("/email/mxplan/") {
            if !has(Flow::MxplanToExchange) || (rule.method == "DELETE" && !resets) {
                continue;
            }
            plan.platforms
                .values()
                .filter_map(|p| match &p.kind {
                    PlatformKind::OvhMxplan { service } => Some(vec![service.clone()]),
                    _ => None,
                })
                .collect()
        } else if rule.path.starts_with("/email/domain/") {
            if !has(Flow::LegacyToExchange) {
                continue;
            }
            plan.platforms
                .values()
                .filter_map(|p| match &p.kind {
                    PlatformKind::OvhMxplanLegacy { domain } => Some(vec![domain.clone()]),
                    _ => None,
                })
                .collect()
        } else {
            vec![Vec::new()]
        };
        for v in values {
            calls.push((rule.method, rule.path, concrete(rule.path, &v)));
        }
    }
    let mut missing: Vec<String> = calls
        .iter()
        .filter(|(method, _, path)| !auth::granted(&granted, method, path))
        .map(|(method, pattern, _)| format!("{method} {pattern}"))
        .collect();
    missing.sort();
    missing.dedup();
    if !missing.is_empty() {
        problems.push(Problem::new(
            Subject::Credential,
            format!(
                "the OVH consumer key does not allow {}: create one with `mailplan ovh login` \
                 (it asks for exactly the calls mailplan makes)",
                missing.join(", ")
            ),
        ));
    }
    Ok(())
}

/// `pattern` with its first `*`s replaced by `values`, the others by a sample segment.
fn concrete(pattern: &str, values: &[String]) -> String {
    let mut out = String::new();
    let mut values = values.iter();
    for (i, part) in pattern.split('*').enumerate() {
        if i > 0 {
            out.push_str(values.next().map_or("x", String::as_str));
        }
        out.push_str(part);
    }
    out
}

/// Each domain still to attach: attachable, or attached and waiting for its CNAME proof.
async fn attachable_domains(
    ovh: &Ovh,
    plan: &Plan,
    attached: &BTreeMap<String, BTreeSet<String>>,
    done: &dyn Fn(StepKind, &str) -> bool,
    problems: &mut Vec<Problem>,
) -> Result<(), OvhError> {
    let c = &ovh.client;
    for d in &plan.domains {
        if done(StepKind::AddDomain, &d.name) {
            continue;
        }
        let Some(target) = exchange_service(plan, &d.platform) else {
            continue;
        };
        let activity = format!("checking that {} can be attached", d.name);
        let subject = || Subject::Domain(d.name.clone());
        if attached
            .get(&target.path())
            .is_some_and(|set| set.contains(&d.name))
        {
            let live = exchange::get_domain(c, &activity, &target, &d.name).await?;
            if let Some(cname) = live.awaited_cname() {
                problems.push(Problem::new(subject(), cname_advice(&d.name, cname)));
            }
            continue;
        }
        for (path, set) in attached {
            if path != &target.path() && set.contains(&d.name) {
                problems.push(Problem::new(
                    subject(),
                    format!(
                        "{} is attached to another Exchange service ({path}); OVH would refuse \
                         it (\"UPN suffix … already used\"): detach it there first",
                        d.name
                    ),
                ));
            }
        }
        if d.domain_type != DomainType::Authoritative {
            continue;
        }
        for p in plan.platforms.values() {
            let PlatformKind::OvhMxplan { service } = &p.kind else {
                continue;
            };
            match mxplan::get_domain(c, &activity, service, &d.name).await {
                Ok(on) if on.domain_type == "authoritative" => problems.push(Problem::new(
                    subject(),
                    format!(
                        "{} is authoritative on the MX Plan {service}; OVH would refuse it as \
                         authoritative on Exchange (\"Authoritative domain detected\"): set it \
                         to non-authoritative on {service} and use `type: non-authoritative` \
                         in the plan",
                        d.name
                    ),
                )),
                Ok(_) => {}
                Err(e) if matches!(e.kind, OvhErrorKind::NotFound | OvhErrorKind::NotGranted) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// The IMAP login of every source whose copy or migration is next: the name it has now (a new
/// MX Plan source not renamed yet answers at its address), with the plan's password.
async fn source_logins(
    ovh: &Ovh,
    plan: &Plan,
    credentials: &[Credentials],
    done: &dyn Fn(StepKind, &str) -> bool,
    on_exchange: &dyn Fn(&Account) -> bool,
    problems: &mut Vec<Problem>,
) -> Result<(), OvhError> {
    let c = &ovh.client;
    let mut renamed: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (i, a) in plan.accounts.iter().enumerate() {
        let next = match a.flow {
            Flow::ImapToImap => continue,
            Flow::LegacyToExchange => !done(StepKind::MigrateLegacy, &a.address) && !on_exchange(a),
            Flow::MxplanToExchange | Flow::ImapToExchange => !done(StepKind::CopyMail, &a.address),
        };
        let Some(server) = plan.platforms[&a.from].imap.as_ref() else {
            continue;
        };
        if !next {
            continue;
        }
        let cred = &credentials[i];
        let mut login = cred.source_login.clone();
        // The copy's login is the renamed source's; until the rename, the mailbox answers at
        // its address (an MX Plan login is the address).
        if let PlatformKind::OvhMxplan { service } = &plan.platforms[&a.from].kind {
            if !renamed.contains_key(service.as_str()) {
                let activity = format!("reading the accounts of {service} before the run");
                let list = mxplan::list_accounts(c, &activity, service, None).await?;
                renamed.insert(service, list.iter().map(|x| x.to_lowercase()).collect());
            }
            let provisional_exists = a
                .provisional_address
                .as_ref()
                .is_some_and(|p| renamed[service.as_str()].contains(p));
            if !provisional_exists {
                a.address.clone_into(&mut login);
            }
        }
        match imap::connect(server, &login, &cred.source_password).await {
            Ok(mut s) => {
                let _ = s.logout().await;
            }
            Err(e) => problems.push(Problem::new(
                Subject::Account(a.address.clone()),
                format!("{}: the source login fails: {e}", a.address),
            )),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::concrete;
    use crate::providers::ovh::api::auth::{GrantedRule, granted};

    #[test]
    fn rules_are_checked_against_the_plans_own_services() {
        let org = ["hosted-1".to_owned(), "hosted-1".to_owned()];
        let path = concrete("/email/exchange/*/service/*/account/*", &org);
        assert_eq!(path, "/email/exchange/hosted-1/service/hosted-1/account/x");
        let rule = |m: &str, p: &str| GrantedRule {
            method: m.to_owned(),
            path: p.to_owned(),
        };
        // A key limited to the plan's service fits; one for another service does not.
        assert!(granted(
            &[rule("PUT", "/email/exchange/hosted-1/*")],
            "PUT",
            &path
        ));
        assert!(!granted(
            &[rule("PUT", "/email/exchange/hosted-2/*")],
            "PUT",
            &path
        ));
        assert!(!granted(&[rule("GET", "/email/*")], "PUT", &path));
    }
}
