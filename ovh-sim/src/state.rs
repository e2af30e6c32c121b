//! The simulated world: legacy domains, MX Plan and Exchange services with their mailboxes and
//! domains, and the asynchronous tasks that change them.
//!
//! Entry points: [`State::new`] (from a fixture, seeding the mail backend), [`State::schedule`]
//! (every mutating call that answers a task), [`State::advance`] (called before each request and
//! every few milliseconds: moves tasks `todo → doing → done|error` and applies their effects when
//! they end). Invariants: tasks on the same subject (a mailbox, a legacy account, a domain) run one
//! after the other, in the order they were made; a task's effect is applied exactly once, when it
//! ends; ids (accounts and tasks) come from one counter and are never reused.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::auth::Credentials;
use crate::clock::now_unix;
use crate::faults::FaultKind;
use crate::fixture::{AccountFixture, DomainFixture, Fixture, PasswordPolicy, Timing};
use crate::mail::{MailBackend, Side};

/// The domain of free, unconfigured accounts.
pub(crate) const PLACEHOLDER_DOMAIN: &str = "configureme.me";

/// SQL `LIKE` as the API's list filters apply it: `%` matches any run of characters, the
/// comparison ignores case; without `%` it is an equality.
pub(crate) fn like(pattern: &str, value: &str) -> bool {
    crate::auth::path_matches(
        &pattern.to_lowercase().replace('%', "*"),
        &value.to_lowercase(),
    )
}

/// A legacy (`/email/domain`) mailbox.
#[derive(Debug, Clone)]
pub(crate) struct LegacyAccount {
    pub name: String,
    pub password: String,
    pub size: u64,
    pub description: String,
    pub filters: Vec<String>,
    pub check_errors: Vec<String>,
    /// Migrated to Exchange: when it goes away (`None`: not migrated, or kept for the
    /// simulator's life). Until then it is still listed, as the real source is kept for up to
    /// 15 days.
    pub deleted_at: Option<Instant>,
}

/// A legacy redirection.
#[derive(Debug, Clone)]
pub(crate) struct Redirection {
    pub id: String,
    pub from: String,
    pub to: String,
}

/// A legacy auto-reply.
#[derive(Debug, Clone)]
pub(crate) struct Responder {
    pub account: String,
    pub content: String,
}

/// A historical MX Plan domain.
#[derive(Debug)]
pub(crate) struct LegacyDomain {
    pub name: String,
    pub migrated_to: Option<String>,
    pub accounts: BTreeMap<String, LegacyAccount>,
    pub redirections: Vec<Redirection>,
    pub responders: BTreeMap<String, Responder>,
    pub created: u64,
}

/// An MX Plan or Exchange mailbox (a free `@configureme.me` slot too).
#[derive(Debug, Clone)]
pub(crate) struct Mailbox {
    pub id: u64,
    pub login: String,
    pub domain: String,
    pub password: Option<String>,
    pub state: String,
    pub display_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub license: String,
    pub created: u64,
    pub updated: u64,
    pub password_updated: Option<u64>,
}

impl Mailbox {
    pub fn address(&self) -> String {
        format!("{}@{}", self.login, self.domain)
    }

    pub fn is_placeholder(&self) -> bool {
        self.domain.eq_ignore_ascii_case(PLACEHOLDER_DOMAIN)
    }
}

/// A domain attached to an MX Plan or Exchange service.
#[derive(Debug, Clone)]
pub(crate) struct Domain {
    pub name: String,
    pub kind: String,
    pub state: String,
    pub main: bool,
}

/// Where a mailbox lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Place {
    MxPlan(String),
    Exchange(String, String),
}

impl Place {
    /// The server its mailboxes are on, in the mail backend.
    pub fn side(&self) -> Side {
        match self {
            Place::MxPlan(_) => Side::MxPlan,
            Place::Exchange(..) => Side::Exchange,
        }
    }
}

/// An MX Plan or Exchange service (the two share their shape).
#[derive(Debug)]
pub(crate) struct Service {
    pub place: Place,
    pub offer: String,
    pub hostname: String,
    pub policy: PasswordPolicy,
    pub domains: BTreeMap<String, Domain>,
    pub accounts: BTreeMap<u64, Mailbox>,
}

impl Service {
    /// The mailbox whose primary address is `address` (case-insensitive).
    pub fn find(&self, address: &str) -> Option<&Mailbox> {
        self.accounts
            .values()
            .find(|account| account.address().eq_ignore_ascii_case(address))
    }
}

/// What a task works on: tasks on the same subject run one after the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subject {
    Mailbox(u64),
    Legacy(String, String),
    Domain(Place, String),
}

/// What a task does when it ends.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    /// Legacy migration: the placeholder `target` of `(org, svc)` becomes `account@domain`, the
    /// legacy account is removed, its mail moves to the Exchange side.
    LegacyMigrate {
        domain: String,
        account: String,
        exchange: Place,
        target: u64,
    },
    /// A legacy password change.
    LegacyPassword {
        domain: String,
        account: String,
        password: String,
    },
    /// A mailbox takes a new login and domain (rename, or configuring a placeholder).
    Rename {
        place: Place,
        id: u64,
        login: String,
        domain: String,
    },
    /// A mailbox's password changes.
    Password {
        place: Place,
        id: u64,
        password: String,
    },
    /// A mailbox goes back to a free `@configureme.me` slot, its mail emptied.
    Reset { place: Place, id: u64 },
    /// A domain being added becomes `ok`.
    DomainReady { place: Place, name: String },
}

/// The API a task belongs to (decides its model and where it is listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Family {
    Legacy(String),
    Service(Place),
}

/// An asynchronous task.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub id: u64,
    pub family: Family,
    pub function: &'static str,
    pub subject: Subject,
    pub todo_date: u64,
    pub doing_at: Instant,
    pub done_at: Instant,
    pub status: &'static str,
    pub finish_date: Option<u64>,
    /// When it ended (a status task is dropped `timing.done_kept_ms` after).
    pub finished_at: Option<Instant>,
    pub effect: Effect,
    pub fail: bool,
}

impl Task {
    pub fn is_pending(&self) -> bool {
        matches!(self.status, "todo" | "doing")
    }
}

/// Everything the simulator knows.
#[derive(Debug)]
pub(crate) struct State {
    pub credentials: Credentials,
    pub timing: Timing,
    pub legacy_migration: crate::fixture::LegacyMigrationFixture,
    pub legacy: BTreeMap<String, LegacyDomain>,
    pub services: BTreeMap<Place, Service>,
    pub foreign_domains: Vec<String>,
    pub dns: BTreeMap<String, crate::fixture::DnsFixture>,
    pub tasks: BTreeMap<u64, Task>,
    pub mail: Option<MailBackend>,
    /// Problems met while applying effects to the mail backend.
    pub mail_errors: Vec<String>,
    /// Task faults that apply to the call being handled.
    call_faults: Vec<FaultKind>,
    /// Whether the call being handled made a task.
    call_made_task: bool,
    next_id: u64,
}

impl State {
    /// Builds the state and seeds the mail backend (users and messages).
    pub fn new(fixture: &Fixture) -> Result<State, String> {
        let mail = match &fixture.mail {
            Some(config) => Some(MailBackend::new(config)?),
            None => None,
        };
        let now = now_unix();
        let mut state = State {
            credentials: Credentials::new(&fixture.auth),
            timing: fixture.timing,
            legacy_migration: fixture.legacy_migration,
            legacy: BTreeMap::new(),
            services: BTreeMap::new(),
            foreign_domains: fixture
                .foreign_domains
                .iter()
                .map(|d| d.to_lowercase())
                .collect(),
            dns: fixture
                .dns
                .iter()
                .map(|(name, records)| (name.to_lowercase(), records.clone()))
                .collect(),
            tasks: BTreeMap::new(),
            mail,
            mail_errors: Vec::new(),
            call_faults: Vec::new(),
            call_made_task: false,
            next_id: 1000,
        };
        for domain in &fixture.legacy_domains {
            let name = domain.domain.to_lowercase();
            let mut legacy = LegacyDomain {
                name: name.clone(),
                migrated_to: domain.migrated_mxplan_service_name.clone(),
                accounts: BTreeMap::new(),
                redirections: Vec::new(),
                responders: BTreeMap::new(),
                created: now,
            };
            for account in &domain.accounts {
                legacy.accounts.insert(
                    account.name.clone(),
                    LegacyAccount {
                        name: account.name.clone(),
                        password: account.password.clone(),
                        size: account.size,
                        description: account.description.clone(),
                        filters: account.filters.clone(),
                        check_errors: account.check_errors.clone(),
                        deleted_at: None,
                    },
                );
                if let Some(mail) = &state.mail {
                    let address = format!("{}@{name}", account.name);
                    mail.store(Side::MxPlan)
                        .create(&address, &account.password, &account.messages)
                        .map_err(|err| format!("seeding {address}: {err}"))?;
                }
            }
            for redirection in &domain.redirections {
                let id = state.next_id().to_string();
                legacy.redirections.push(Redirection {
                    id,
                    from: redirection.from.clone(),
                    to: redirection.to.clone(),
                });
            }
            for responder in &domain.responders {
                legacy.responders.insert(
                    responder.account.clone(),
                    Responder {
                        account: responder.account.clone(),
                        content: responder.content.clone(),
                    },
                );
            }
            state.legacy.insert(name, legacy);
        }
        for service in &fixture.mxplan_services {
            let place = Place::MxPlan(service.service.clone());
            state.add_service(
                place,
                "MXPLAN",
                &service.hostname,
                service.password_policy,
                &service.domains,
                &service.accounts,
                service.placeholders,
            )?;
        }
        for service in &fixture.exchange_services {
            let name = service
                .service
                .clone()
                .unwrap_or_else(|| service.organization.clone());
            let place = Place::Exchange(service.organization.clone(), name);
            state.add_service(
                place,
                &service.offer,
                &service.hostname,
                service.password_policy,
                &service.domains,
                &service.accounts,
                service.placeholders,
            )?;
        }
        Ok(state)
    }

    #[allow(clippy::too_many_arguments)]
    fn add_service(
        &mut self,
        place: Place,
        offer: &str,
        hostname: &str,
        policy: PasswordPolicy,
        domains: &[DomainFixture],
        accounts: &[AccountFixture],
        placeholders: u32,
    ) -> Result<(), String> {
        let side = place.side();
        let mut service = Service {
            place: place.clone(),
            offer: offer.to_owned(),
            hostname: hostname.to_owned(),
            policy,
            domains: BTreeMap::new(),
            accounts: BTreeMap::new(),
        };
        for domain in domains {
            service.domains.insert(
                domain.name.to_lowercase(),
                Domain {
                    name: domain.name.to_lowercase(),
                    kind: domain.kind.clone(),
                    state: domain.state.clone(),
                    main: domain.main,
                },
            );
        }
        for account in accounts {
            let id = self.next_id();
            let mailbox = Mailbox {
                id,
                login: account.login.clone(),
                domain: account.domain.to_lowercase(),
                password: account.password.clone(),
                state: account.state.clone(),
                display_name: account.display_name.clone(),
                first_name: None,
                last_name: None,
                license: account.license.clone(),
                created: now_unix(),
                updated: now_unix(),
                password_updated: account.password.as_ref().map(|_| now_unix()),
            };
            if let (Some(mail), Some(password)) = (&self.mail, &account.password) {
                let address = mailbox.address();
                mail.store(side)
                    .create(&address, password, &account.messages)
                    .map_err(|err| format!("seeding {address}: {err}"))?;
            }
            service.accounts.insert(id, mailbox);
        }
        for _ in 0..placeholders {
            let id = self.next_id();
            service.accounts.insert(id, placeholder(id, "standard"));
        }
        self.services.insert(place, service);
        Ok(())
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Starts handling a call: the task faults it took apply to the tasks it makes.
    pub fn begin_call(&mut self, faults: Vec<FaultKind>) {
        self.call_faults = faults;
        self.call_made_task = false;
    }

    /// Ends the call: whether it made a task (its task faults are then used up).
    pub fn end_call(&mut self) -> bool {
        self.call_faults.clear();
        std::mem::take(&mut self.call_made_task)
    }

    /// The pending task on `subject`, if any.
    pub fn pending_on(&self, subject: &Subject) -> Option<&Task> {
        self.tasks
            .values()
            .find(|task| task.is_pending() && &task.subject == subject)
    }

    /// Makes a task that starts once the tasks already queued on its subject have ended.
    pub fn schedule(
        &mut self,
        family: Family,
        function: &'static str,
        subject: Subject,
        effect: Effect,
    ) -> u64 {
        let now = Instant::now();
        let mut timing = self.timing;
        let mut fail = false;
        for fault in &self.call_faults {
            match fault {
                FaultKind::SlowTasks { todo_ms, doing_ms } => {
                    timing = Timing {
                        todo_ms: *todo_ms,
                        doing_ms: *doing_ms,
                        ..timing
                    };
                }
                FaultKind::FailingTasks => fail = true,
                _ => {}
            }
        }
        let start = self
            .tasks
            .values()
            .filter(|task| task.is_pending() && task.subject == subject)
            .map(|task| task.done_at)
            .max()
            .map_or(now, |end| end.max(now));
        let doing_at = start + Duration::from_millis(timing.todo_ms);
        let id = self.next_id();
        self.call_made_task = true;
        self.tasks.insert(
            id,
            Task {
                id,
                family,
                function,
                subject,
                todo_date: now_unix(),
                doing_at,
                done_at: doing_at + Duration::from_millis(timing.doing_ms),
                status: "todo",
                finish_date: None,
                finished_at: None,
                effect,
                fail,
            },
        );
        id
    }

    /// Moves every task whose time has come and applies the effects of those that end; drops
    /// the migrated sources and the finished status tasks whose time is up.
    pub fn advance(&mut self, now: Instant) {
        if let Some(kept) = self.timing.done_kept_ms {
            let kept = Duration::from_millis(kept);
            self.tasks.retain(|_, t| {
                matches!(t.family, Family::Legacy(_))
                    || t.finished_at.is_none_or(|end| end + kept > now)
            });
        }
        for legacy in self.legacy.values_mut() {
            legacy
                .accounts
                .retain(|_, a| a.deleted_at.is_none_or(|end| end > now));
        }
        let due: Vec<u64> = self
            .tasks
            .values()
            .filter(|task| task.is_pending() && task.doing_at <= now)
            .map(|task| task.id)
            .collect();
        // Ids grow with creation time, so queued tasks end in the order they were made.
        for id in due {
            let Some(task) = self.tasks.get(&id).cloned() else {
                continue;
            };
            if task.done_at > now {
                if let Some(task) = self.tasks.get_mut(&id) {
                    task.status = "doing";
                }
                continue;
            }
            let outcome = if task.fail {
                Err("injected task failure".to_owned())
            } else {
                self.apply(&task.effect)
            };
            if let Err(err) = &outcome {
                self.mail_errors
                    .push(format!("task {id} ({}): {err}", task.function));
            }
            if let Some(task) = self.tasks.get_mut(&id) {
                task.status = if outcome.is_ok() { "done" } else { "error" };
                task.finish_date = Some(now_unix());
                task.finished_at = Some(now);
            }
        }
    }

    fn mailbox_mut(&mut self, place: &Place, id: u64) -> Result<&mut Mailbox, String> {
        self.services
            .get_mut(place)
            .and_then(|service| service.accounts.get_mut(&id))
            .ok_or_else(|| format!("account {id} vanished"))
    }

    fn apply(&mut self, effect: &Effect) -> Result<(), String> {
        match effect {
            Effect::LegacyMigrate {
                domain,
                account,
                exchange,
                target,
            } => {
                let layout = self.legacy_migration;
                let source = self
                    .legacy
                    .get_mut(domain)
                    .and_then(|legacy| legacy.accounts.get_mut(account))
                    .ok_or_else(|| format!("legacy account {account}@{domain} vanished"))?;
                // The source stays listed for a while (its mail is gone from it).
                source.deleted_at = layout
                    .source_kept_ms
                    .map(|ms| Instant::now() + Duration::from_millis(ms));
                let source = source.clone();
                let address = format!("{account}@{domain}");
                let mailbox = self.mailbox_mut(exchange, *target)?;
                if !mailbox.is_placeholder() {
                    return Err(format!("{} is no longer free", mailbox.address()));
                }
                mailbox.login.clone_from(account);
                mailbox.domain.clone_from(domain);
                mailbox.password = Some(source.password.clone());
                mailbox.password_updated = Some(now_unix());
                mailbox.updated = now_unix();
                if let Some(mail) = &self.mail {
                    mail.transfer(
                        Side::MxPlan,
                        &address,
                        Side::Exchange,
                        &address,
                        &source.password,
                    )
                    .map_err(|err| format!("moving the mail of {address}: {err}"))?;
                    if layout.exchange_folder_names || layout.others_under_inbox {
                        mail.store(Side::Exchange)
                            .exchange_layout(
                                &address,
                                layout.exchange_folder_names,
                                layout.others_under_inbox,
                            )
                            .map_err(|err| format!("laying out {address} on Exchange: {err}"))?;
                    }
                }
                Ok(())
            }
            Effect::LegacyPassword {
                domain,
                account,
                password,
            } => {
                let legacy = self
                    .legacy
                    .get_mut(domain)
                    .and_then(|legacy| legacy.accounts.get_mut(account))
                    .ok_or_else(|| format!("legacy account {account}@{domain} vanished"))?;
                legacy.password.clone_from(password);
                if let Some(mail) = &self.mail {
                    mail.store(Side::MxPlan)
                        .set_password(&format!("{account}@{domain}"), password)
                        .map_err(|err| err.to_string())?;
                }
                Ok(())
            }
            Effect::Rename {
                place,
                id,
                login,
                domain,
            } => {
                let new_address = format!("{login}@{domain}");
                let taken = self.services.get(place).is_some_and(|service| {
                    service
                        .find(&new_address)
                        .is_some_and(|other| other.id != *id)
                });
                if taken {
                    return Err(format!("{new_address} is already used"));
                }
                let mailbox = self.mailbox_mut(place, *id)?;
                let old_address = mailbox.address();
                let was_placeholder = mailbox.is_placeholder();
                mailbox.login.clone_from(login);
                mailbox.domain.clone_from(domain);
                mailbox.updated = now_unix();
                let password = mailbox.password.clone();
                if let Some(mail) = &self.mail {
                    let side = place.side();
                    let result = match (was_placeholder, password) {
                        (false, Some(password)) => {
                            mail.transfer(side, &old_address, side, &new_address, &password)
                        }
                        (true, Some(password)) => {
                            mail.store(side)
                                .create(&new_address, &password, &BTreeMap::new())
                        }
                        (_, None) => Ok(()),
                    };
                    result.map_err(|err| format!("renaming {old_address}: {err}"))?;
                }
                Ok(())
            }
            Effect::Password {
                place,
                id,
                password,
            } => {
                let mailbox = self.mailbox_mut(place, *id)?;
                mailbox.password = Some(password.clone());
                mailbox.password_updated = Some(now_unix());
                let (address, placeholder) = (mailbox.address(), mailbox.is_placeholder());
                if let (Some(mail), false) = (&self.mail, placeholder) {
                    mail.store(place.side())
                        .set_password(&address, password)
                        .map_err(|err| err.to_string())?;
                }
                Ok(())
            }
            Effect::Reset { place, id } => {
                let mailbox = self.mailbox_mut(place, *id)?;
                let old = std::mem::replace(mailbox, placeholder(*id, &mailbox.license));
                if let (Some(mail), false) = (&self.mail, old.is_placeholder()) {
                    mail.store(place.side())
                        .delete(&old.address())
                        .map_err(|err| err.to_string())?;
                }
                Ok(())
            }
            Effect::DomainReady { place, name } => {
                let proven = self.domain_proven(name);
                let domain = self
                    .services
                    .get_mut(place)
                    .and_then(|service| service.domains.get_mut(name))
                    .ok_or_else(|| format!("domain {name} vanished"))?;
                // [I] A zone OVH does not manage: the task ends, the domain waits for its
                // CNAME (the control panel's wizard polls until `cnameToCheck` is filled).
                if proven {
                    "ok".clone_into(&mut domain.state);
                }
                Ok(())
            }
        }
    }

    /// Whether the domain's ownership is proven: its zone is managed here, or its CNAME exists.
    pub fn domain_proven(&self, name: &str) -> bool {
        self.dns
            .get(name)
            .is_none_or(|dns| dns.ovh_zone || dns.cname_proof)
    }

    /// The owner creates the CNAME: the domain is proven, and wherever it waited it is `ok`.
    pub fn prove_domain(&mut self, name: &str) {
        let name = name.to_lowercase();
        self.dns.entry(name.clone()).or_default().cname_proof = true;
        let waiting: Vec<Place> = self
            .services
            .iter()
            .filter(|(_, s)| s.domains.contains_key(&name))
            .map(|(p, _)| p.clone())
            .collect();
        for place in waiting {
            let pending = self
                .pending_on(&Subject::Domain(place.clone(), name.clone()))
                .is_some();
            if let Some(domain) = self
                .services
                .get_mut(&place)
                .and_then(|s| s.domains.get_mut(&name))
                .filter(|_| !pending)
            {
                "ok".clone_into(&mut domain.state);
            }
        }
    }

    /// Whether `address` is used anywhere: an MX Plan or Exchange mailbox, or a legacy account.
    pub fn address_in_use(&self, address: &str, except: Option<u64>) -> bool {
        let in_services = self.services.values().any(|service| {
            service
                .find(address)
                .is_some_and(|mailbox| Some(mailbox.id) != except)
        });
        let in_legacy = address.rsplit_once('@').is_some_and(|(local, domain)| {
            self.legacy
                .get(&domain.to_lowercase())
                .is_some_and(|legacy| legacy.accounts.contains_key(local))
        });
        in_services || in_legacy
    }
}

/// A free slot: a generated login at `configureme.me`, not configured.
pub(crate) fn placeholder(id: u64, license: &str) -> Mailbox {
    // The real format is unknown; ten hex digits that look generated and differ per slot.
    let login = format!("{:010x}", id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 24);
    Mailbox {
        id,
        login,
        domain: PLACEHOLDER_DOMAIN.to_owned(),
        password: None,
        state: "ok".to_owned(),
        display_name: None,
        first_name: None,
        last_name: None,
        license: license.to_owned(),
        created: now_unix(),
        updated: now_unix(),
        password_updated: None,
    }
}

/// Checks a password against a service's policy (the manager's client-side rules, which mirror
/// Active Directory's): the reason it is refused, if it is.
pub(crate) fn policy_violation(
    policy: PasswordPolicy,
    password: &str,
    login: &str,
) -> Option<String> {
    let length = password.chars().count();
    let min = usize::try_from(policy.min_length).unwrap_or(usize::MAX);
    if length < min {
        return Some(format!(
            "the password must be at least {min} characters long"
        ));
    }
    if length > 127 {
        return Some("the password must be at most 127 characters long".to_owned());
    }
    if policy.complexity {
        if password.chars().any(char::is_whitespace) {
            return Some("the password must not contain spaces".to_owned());
        }
        let classes = [
            password.chars().any(char::is_uppercase),
            password.chars().any(char::is_lowercase),
            password.chars().any(|c| c.is_ascii_digit()),
            password.chars().any(|c| !c.is_alphanumeric()),
        ];
        if classes.iter().filter(|&&present| present).count() < 3 {
            return Some(
                "the password must contain three of: upper case, lower case, digit, other"
                    .to_owned(),
            );
        }
        if login.len() >= 3 && password.to_lowercase().contains(&login.to_lowercase()) {
            return Some("the password must not contain the login".to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_filters() {
        assert!(like("%@configureme.me", "abc@configureme.me"));
        assert!(like("%configureme.me%", "abc@CONFIGUREME.ME"));
        assert!(!like("%@configureme.me", "abc@example.com"));
        assert!(like("john@example.com", "John@Example.com"));
        assert!(!like("john", "john@example.com"));
    }

    #[test]
    fn policy() {
        let policy = PasswordPolicy {
            min_length: 8,
            complexity: true,
        };
        assert!(policy_violation(policy, "Abcdef12", "john").is_none());
        assert!(policy_violation(policy, "Abc12", "john").is_some());
        assert!(policy_violation(policy, "abcdefgh", "john").is_some());
        assert!(policy_violation(policy, "Abc def12", "john").is_some());
        assert!(policy_violation(policy, "xJohn-2024", "john").is_some());
    }
}
