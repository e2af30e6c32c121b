//! The `OVHcloud` steps of a plan, in the order of `OVHcloud`'s public guide "Migrer une adresse
//! e-mail MX Plan vers un compte Exchange" (migrating an MX Plan address to an Exchange
//! account): attach the domain to Exchange, rename the new-MX-Plan source, configure a free
//! `@configureme.me` Exchange account, the historical MX Plan's preflight and server-side
//! migration, the opt-in reset of the source, and the DNS check.
//!
//! Every step first reads the remote state and does nothing when its work is already done, so
//! a crash between an API call and the state store's write is harmless on the next run. In a dry
//! run only GET calls are made. Placeholders are claimed under one lock, so two steps never
//! configure the same one; on a shared state the claims are also kept in the database
//! ([`Ovh::share_claims`]), so two workers never do either.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::exec::worker::Worker;
use crate::plan::model::{Account, DomainAttachment, Plan, PlatformKind};
use crate::plan::secret::Secret;
use crate::providers::RunMode;
use crate::providers::ovh::api::{exchange, legacy, mxplan};
use crate::providers::ovh::{
    Client, ClientOptions, ConfigSources, OvhError, OvhErrorKind, PollOptions,
};

/// What a finished OVH step says and records.
#[derive(Debug, Clone)]
pub(crate) struct Done {
    pub summary: String,
    pub output: serde_json::Value,
}

/// Why an OVH step stopped.
#[derive(Debug)]
pub(crate) enum Failure {
    Ovh(OvhError),
    /// A prerequisite or a state the step cannot fix; the text says what to do.
    Blocked(String),
    Interrupted,
}

impl From<OvhError> for Failure {
    fn from(e: OvhError) -> Self {
        if e.kind == OvhErrorKind::Cancelled {
            Failure::Interrupted
        } else {
            Failure::Ovh(e)
        }
    }
}

type StepResult = Result<Done, Failure>;

/// The OVH side of a run: the API client and the placeholders claimed so far.
#[derive(Debug)]
pub(crate) struct Ovh {
    pub client: Client,
    claimed: Mutex<HashSet<String>>,
    /// A worker of a shared run: the placeholders claimed by every worker of the run.
    shared: std::sync::OnceLock<std::sync::Arc<Worker>>,
    /// Each Exchange service's migration type (from its offer), read once.
    offers: Mutex<BTreeMap<String, legacy::MigrationServiceType>>,
    poll: PollOptions,
}

impl Ovh {
    /// The client from the environment and `ovh.conf` files, the plan's endpoint first.
    pub(crate) fn connect(plan: &Plan, requests_per_minute: u32) -> Result<Ovh, OvhError> {
        let endpoint = plan.ovh.as_ref().map(|o| o.endpoint.as_str());
        let credentials = crate::providers::ovh::config::load(&ConfigSources::system(), endpoint)?;
        let options = ClientOptions {
            requests_per_minute,
            ..ClientOptions::default()
        };
        Ok(Ovh {
            client: Client::new(credentials, options)?,
            claimed: Mutex::new(HashSet::new()),
            shared: std::sync::OnceLock::new(),
            offers: Mutex::new(BTreeMap::new()),
            poll: PollOptions {
                initial_interval: Duration::from_millis(200),
                ..PollOptions::default()
            },
        })
    }
}

impl Ovh {
    /// The placeholders claimed by the steps of `worker`'s shared run count here too, and this
    /// worker's claims are kept there (set once).
    pub(crate) fn share_claims(&self, worker: std::sync::Arc<Worker>) {
        let _ = self.shared.set(worker);
    }

    /// Whether a step of this run (of any worker of a shared run) claimed `p`.
    fn is_claimed(&self, p: &str) -> Result<bool, Failure> {
        let here = self
            .claimed
            .lock()
            .map_err(|e| Failure::Blocked(e.to_string()))?
            .contains(p);
        match self.shared.get() {
            Some(worker) if !here => worker
                .placeholder_claimed(p)
                .map_err(|e| Failure::Blocked(e.to_string())),
            _ => Ok(here),
        }
    }

    /// Claim `p` for a step of this run: `false` when a step (of any worker) holds it already.
    fn claim(&self, p: &str) -> Result<bool, Failure> {
        let mut claimed = self
            .claimed
            .lock()
            .map_err(|e| Failure::Blocked(e.to_string()))?;
        if claimed.contains(p) {
            return Ok(false);
        }
        if let Some(worker) = self.shared.get()
            && !worker
                .claim_placeholder(p)
                .map_err(|e| Failure::Blocked(e.to_string()))?
        {
            return Ok(false);
        }
        claimed.insert(p.to_owned());
        Ok(true)
    }
}

#[allow(clippy::unnecessary_wraps)] // the steps' common last expression
fn done(summary: impl Into<String>, output: serde_json::Value) -> StepResult {
    Ok(Done {
        summary: summary.into(),
        output,
    })
}

pub(crate) fn exchange_service(plan: &Plan, platform: &str) -> Option<exchange::Service> {
    match &plan.platforms.get(platform)?.kind {
        PlatformKind::OvhExchange {
            organization,
            service,
        } => Some(exchange::Service {
            organization: organization.clone(),
            service: service.clone(),
        }),
        _ => None,
    }
}

fn not_found(e: &OvhError) -> bool {
    e.kind == OvhErrorKind::NotFound
}

/// A 409 on a placeholder's PUT that is about the placeholder (busy with a migration or another
/// task), not about the address it was to take ("Email address is already used.", which no
/// other placeholder can help with); or a 404: it went away since it was claimed.
fn placeholder_busy(e: &OvhError) -> bool {
    (e.kind == OvhErrorKind::Conflict && !e.message.to_ascii_lowercase().contains("already used"))
        || not_found(e)
}

/// Poll `check` until it returns `Some`, every `interval`, at most `timeout`.
async fn until<T, F, Fut>(
    stop: &CancellationToken,
    timeout: Duration,
    mut check: F,
) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, Failure>>,
{
    let start = Instant::now();
    let mut interval = Duration::from_millis(100);
    loop {
        if let Some(t) = check().await? {
            return Ok(t);
        }
        if stop.is_cancelled() {
            return Err(Failure::Interrupted);
        }
        if start.elapsed() > timeout {
            return Err(Failure::Blocked(format!(
                "still not ready after {} s",
                timeout.as_secs()
            )));
        }
        tokio::select! {
            () = stop.cancelled() => return Err(Failure::Interrupted),
            () = tokio::time::sleep(interval) => {}
        }
        interval = (interval * 3 / 2).min(Duration::from_secs(10));
    }
}

/// A plan domain's attachment and the Exchange service it goes to.
fn domain_parts<'a>(
    plan: &'a Plan,
    domain: &str,
) -> Result<(&'a DomainAttachment, exchange::Service), Failure> {
    let Some(attachment) = plan.domains.iter().find(|d| d.name == domain) else {
        return Err(Failure::Blocked(format!(
            "{domain} is not in the plan's domains"
        )));
    };
    let Some(service) = exchange_service(plan, &attachment.platform) else {
        return Err(Failure::Blocked(format!(
            "{} is not an Exchange platform",
            attachment.platform
        )));
    };
    Ok((attachment, service))
}

const READY_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What to do for a domain that waits for its ownership proof.
pub(crate) fn cname_advice(domain: &str, cname: &str) -> String {
    format!(
        "{domain} is attached but waits for its ownership proof (its DNS zone is not in this OVH \
         account): create the record `{cname}.{domain}. CNAME ovh.com.`, then run apply again"
    )
}

/// `add-domain`: attach the domain to the Exchange service and wait until its state is ok.
pub(crate) async fn add_domain(
    ovh: &Ovh,
    plan: &Plan,
    domain: &str,
    mode: RunMode,
    stop: &CancellationToken,
) -> StepResult {
    let (attachment, service) = domain_parts(plan, domain)?;
    let activity = format!("attaching {domain} to {}", service.service);
    let c = &ovh.client;
    match exchange::get_domain(c, &activity, &service, domain).await {
        Ok(d) if d.is_ready() => {
            return done(
                format!("{domain} is already attached"),
                serde_json::json!({"already": true}),
            );
        }
        Ok(_) if mode == RunMode::DryRun => {
            return done(
                format!("{domain} is being attached; would wait"),
                serde_json::json!({}),
            );
        }
        Ok(_) => {}
        Err(e) if not_found(&e) => {
            if mode == RunMode::DryRun {
                return done(
                    format!(
                        "would attach {domain} as {}",
                        attachment.domain_type.api_name()
                    ),
                    serde_json::json!({}),
                );
            }
            let task = exchange::add_domain(
                c,
                &activity,
                &service,
                &exchange::NewDomain::new(domain, attachment.domain_type),
            )
            .await?;
            crate::providers::ovh::tasks::wait(
                c,
                &activity,
                &service.task(task.id),
                &ovh.poll,
                stop,
            )
            .await?;
        }
        Err(e) => return Err(e.into()),
    }
    until(stop, READY_TIMEOUT, || async {
        let d = exchange::get_domain(c, &activity, &service, domain).await?;
        // A zone OVH does not manage: nothing happens until the owner creates the record, so
        // say which at once rather than wait for it.
        if let Some(cname) = d.awaited_cname().filter(|_| d.task_pending_id == 0) {
            return Err(Failure::Blocked(cname_advice(domain, cname)));
        }
        Ok(d.is_ready().then_some(()))
    })
    .await?;
    done(
        format!("{domain} attached, state ok"),
        serde_json::json!({"already": false}),
    )
}

fn mxplan_service<'a>(plan: &'a Plan, a: &Account) -> Option<&'a str> {
    match &plan.platforms.get(&a.from)?.kind {
        PlatformKind::OvhMxplan { service } => Some(service),
        _ => None,
    }
}

/// A new MX Plan account's service and provisional address.
fn mxplan_parts<'a>(plan: &'a Plan, a: &'a Account) -> Result<(&'a str, &'a str), Failure> {
    match (mxplan_service(plan, a), a.provisional_address.as_deref()) {
        (Some(service), Some(provisional)) => Ok((service, provisional)),
        _ => Err(Failure::Blocked(
            "not a new MX Plan account with a provisional name".to_owned(),
        )),
    }
}

/// `rename-source`: the new MX Plan account takes its provisional name, freeing the address.
pub(crate) async fn rename_source(
    ovh: &Ovh,
    plan: &Plan,
    a: &Account,
    mode: RunMode,
    stop: &CancellationToken,
) -> StepResult {
    let (service, provisional) = mxplan_parts(plan, a)?;
    let activity = format!("renaming {} to {provisional}", a.address);
    let c = &ovh.client;
    // A rename started by a run that was killed: wait for its task instead of sending another.
    if mode == RunMode::Real
        && let Ok(acc) = mxplan::get_account(c, &activity, service, &a.address).await
        && let Some(task) = acc.task_pending_id.filter(|id| *id != 0)
    {
        crate::providers::ovh::tasks::wait(
            c,
            &activity,
            &mxplan::task(service, task),
            &ovh.poll,
            stop,
        )
        .await?;
    }
    let at_provisional = mxplan::get_account(c, &activity, service, provisional).await;
    let at_address = mxplan::get_account(c, &activity, service, &a.address).await;
    match (&at_provisional, &at_address) {
        (Ok(_), Err(e)) if not_found(e) => {
            return done(
                format!("already renamed to {provisional}"),
                serde_json::json!({"already": true}),
            );
        }
        (Ok(_), Ok(_)) => {
            return Err(Failure::Blocked(format!(
                "the provisional name {provisional} is taken by another account; choose another \
                 `provisional-name`"
            )));
        }
        (Err(e), _) if !not_found(e) => return Err(Failure::Ovh(e.clone())),
        (_, Err(e)) if not_found(e) => {
            return Err(Failure::Blocked(format!(
                "neither {} nor {provisional} exists on {service}",
                a.address
            )));
        }
        (_, Err(e)) => return Err(Failure::Ovh(e.clone())),
        _ => {}
    }
    if mode == RunMode::DryRun {
        return done(
            format!("would rename {} to {provisional}", a.address),
            serde_json::json!({}),
        );
    }
    let (login, domain) = provisional.split_once('@').unwrap_or((provisional, ""));
    let rename = mxplan::AccountRename {
        login: login.to_owned(),
        domain: domain.to_owned(),
    };
    mxplan::rename_account(c, &activity, service, &a.address, &rename).await?;
    let task = until(stop, Duration::from_secs(60), || async {
        let acc = mxplan::get_account(c, &activity, service, &a.address).await;
        match acc {
            Ok(acc) => Ok(acc.task_pending_id.filter(|id| *id != 0)),
            Err(e) if not_found(&e) => Ok(Some(0)),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    if task != 0 {
        crate::providers::ovh::tasks::wait(
            c,
            &activity,
            &mxplan::task(service, task),
            &ovh.poll,
            stop,
        )
        .await?;
    }
    until(stop, READY_TIMEOUT, || async {
        match mxplan::get_account(c, &activity, service, provisional).await {
            Ok(acc) if acc.task_pending_id.unwrap_or(0) == 0 => Ok(Some(())),
            Ok(_) => Ok(None),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    done(
        format!("renamed to {provisional}"),
        serde_json::json!({"already": false}),
    )
}

/// Claim a free placeholder of `service` that no other step of this run holds.
async fn claim_placeholder(
    ovh: &Ovh,
    activity: &str,
    service: &exchange::Service,
) -> Result<String, Failure> {
    let c = &ovh.client;
    let candidates = exchange::placeholder_addresses(c, activity, service).await?;
    for p in candidates {
        if ovh.is_claimed(&p)? {
            continue;
        }
        let acc = match exchange::get_account(c, activity, service, &p).await {
            Ok(acc) => acc,
            // Gone since the listing (a historical migration renamed it): no candidate.
            Err(e) if not_found(&e) => continue,
            Err(e) => return Err(e.into()),
        };
        if acc.is_free_placeholder() && ovh.claim(&p)? {
            return Ok(p);
        }
    }
    Err(Failure::Blocked(format!(
        "no free @configureme.me account is left on {}: order one more Exchange account",
        service.service
    )))
}

/// `configure-target`: a free `@configureme.me` account becomes the address, with its password.
pub(crate) async fn configure_target(
    ovh: &Ovh,
    plan: &Plan,
    a: &Account,
    password: &Secret,
    mode: RunMode,
    stop: &CancellationToken,
) -> StepResult {
    let Some(service) = exchange_service(plan, &a.to) else {
        return Err(Failure::Blocked(format!(
            "{} is not an Exchange platform",
            a.to
        )));
    };
    let activity = format!("configuring {} on {}", a.address, service.service);
    let c = &ovh.client;
    let existing = exchange::get_account(c, &activity, &service, &a.address).await;
    match existing {
        Ok(acc) if acc.task_pending_id.unwrap_or(0) == 0 && mode == RunMode::DryRun => {
            return done(
                "already configured; would set its password again",
                serde_json::json!({}),
            );
        }
        Ok(_) if mode == RunMode::DryRun => {
            return done("being configured; would wait", serde_json::json!({}));
        }
        Ok(_) => {
            // Configured by an earlier run: make sure the password is the plan's.
            wait_account_idle(ovh, &activity, &service, &a.address, stop).await?;
            set_password(ovh, &activity, &service, &a.address, password, stop).await?;
            return done(
                "already configured; password set",
                serde_json::json!({"already": true}),
            );
        }
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(e.into()),
    }
    let info = exchange::get_service(c, &activity, &service).await?;
    let violations =
        info.password_policy()
            .violations(password, a.local_part(), a.display_name.as_deref());
    if !violations.is_empty() {
        return Err(Failure::Blocked(format!(
            "the target password does not meet {}'s policy: {}",
            service.service,
            violations.join("; ")
        )));
    }
    if mode == RunMode::DryRun {
        let held = |p: &str| ovh.is_claimed(p).unwrap_or(false);
        let free = exchange::count_free_placeholders(c, &activity, &service, &held, 1).await?;
        if free == 0 {
            return Err(Failure::Blocked(format!(
                "no free @configureme.me account is left on {}: order one more Exchange account",
                service.service
            )));
        }
        return done(
            format!(
                "would configure a free @configureme.me account as {}",
                a.address
            ),
            serde_json::json!({}),
        );
    }
    // A configure started by a run that was killed shows as a placeholder with a task pending:
    // let those finish, then look for the address again before claiming another one.
    if wait_pending_placeholders(ovh, &activity, &service, stop).await?
        && exchange::get_account(c, &activity, &service, &a.address)
            .await
            .is_ok()
    {
        wait_account_idle(ovh, &activity, &service, &a.address, stop).await?;
        set_password(ovh, &activity, &service, &a.address, password, stop).await?;
        return done(
            "configured by an interrupted run; password set",
            serde_json::json!({"already": true}),
        );
    }
    let update = exchange::AccountUpdate {
        login: a.local_part().to_owned(),
        domain: a.domain().to_owned(),
        display_name: a.display_name.clone(),
    };
    let placeholder = loop {
        let placeholder = claim_placeholder(ovh, &activity, &service).await?;
        match exchange::configure_account(c, &activity, &service, &placeholder, &update).await {
            Ok(()) => break placeholder,
            // Taken by work this run cannot see (a historical migration that a killed run
            // started towards it, another administrator): it stays claimed, so the next free
            // one is tried, until none is left.
            Err(e) if placeholder_busy(&e) => {}
            Err(e) => return Err(e.into()),
        }
    };
    // The PUT answers at once; the account has its address once the setAccount task ends.
    wait_account_ready(ovh, &activity, &service, &a.address, stop).await?;
    set_password(ovh, &activity, &service, &a.address, password, stop).await?;
    done(
        format!("{placeholder} configured as {}, password set", a.address),
        serde_json::json!({"placeholder": placeholder}),
    )
}

/// Wait until no placeholder of the service has a task pending; whether any had one.
async fn wait_pending_placeholders(
    ovh: &Ovh,
    activity: &str,
    service: &exchange::Service,
    stop: &CancellationToken,
) -> Result<bool, Failure> {
    let mut waited = false;
    for p in exchange::placeholder_addresses(&ovh.client, activity, service).await? {
        if ovh.is_claimed(&p)? {
            continue; // being configured by this run
        }
        match exchange::get_account(&ovh.client, activity, service, &p).await {
            Ok(acc) if acc.task_pending_id.unwrap_or(0) != 0 => {
                waited = true;
                until(stop, READY_TIMEOUT, || async {
                    match exchange::get_account(&ovh.client, activity, service, &p).await {
                        Ok(acc) => Ok((acc.task_pending_id.unwrap_or(0) == 0).then_some(())),
                        Err(e) if not_found(&e) => Ok(Some(())),
                        Err(e) => Err(e.into()),
                    }
                })
                .await?;
            }
            _ => {}
        }
    }
    Ok(waited)
}

/// Wait until the Exchange account exists at `address` with no task pending (a configure or a
/// migration gives it the address only when its task ends).
async fn wait_account_ready(
    ovh: &Ovh,
    activity: &str,
    service: &exchange::Service,
    address: &str,
    stop: &CancellationToken,
) -> Result<(), Failure> {
    until(stop, READY_TIMEOUT, || async {
        match exchange::get_account(&ovh.client, activity, service, address).await {
            Ok(acc) if acc.task_pending_id.unwrap_or(0) == 0 => Ok(Some(())),
            Ok(_) => Ok(None),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

async fn wait_account_idle(
    ovh: &Ovh,
    activity: &str,
    service: &exchange::Service,
    address: &str,
    stop: &CancellationToken,
) -> Result<(), Failure> {
    until(stop, READY_TIMEOUT, || async {
        let acc = exchange::get_account(&ovh.client, activity, service, address).await?;
        Ok((acc.task_pending_id.unwrap_or(0) == 0).then_some(()))
    })
    .await
}

async fn set_password(
    ovh: &Ovh,
    activity: &str,
    service: &exchange::Service,
    address: &str,
    password: &Secret,
    stop: &CancellationToken,
) -> Result<(), Failure> {
    let task = exchange::change_password(&ovh.client, activity, service, address, password).await?;
    crate::providers::ovh::tasks::wait(
        &ovh.client,
        activity,
        &service.task(task.id),
        &ovh.poll,
        stop,
    )
    .await?;
    Ok(())
}

fn legacy_domain<'a>(plan: &'a Plan, a: &Account) -> Option<&'a str> {
    match &plan.platforms.get(&a.from)?.kind {
        PlatformKind::OvhMxplanLegacy { domain } => Some(domain),
        _ => None,
    }
}

/// A historical MX Plan account's domain and its Exchange destination.
fn legacy_parts<'a>(plan: &'a Plan, a: &Account) -> Result<(&'a str, exchange::Service), Failure> {
    match (legacy_domain(plan, a), exchange_service(plan, &a.to)) {
        (Some(domain), Some(service)) => Ok((domain, service)),
        _ => Err(Failure::Blocked(
            "not a historical MX Plan → Exchange account".to_owned(),
        )),
    }
}

/// Whether an earlier run (or anyone) migrated the account: its address is a configured account
/// on Exchange. The source is no sign: OVH deletes it within days, not at once, so a re-run, a
/// `plan --refresh` or a run with a lost state store still finds it.
async fn migrated(
    ovh: &Ovh,
    activity: &str,
    service: &exchange::Service,
    a: &Account,
) -> Result<bool, Failure> {
    match exchange::get_account(&ovh.client, activity, service, &a.address).await {
        Ok(acc) => Ok(!acc.is_placeholder()),
        Err(e) if not_found(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Where a legacy account would migrate: the Exchange service and a free placeholder.
async fn legacy_destination(
    ovh: &Ovh,
    activity: &str,
    domain: &str,
    account: &str,
    service: &exchange::Service,
) -> Result<Vec<String>, Failure> {
    let c = &ovh.client;
    // A private (dedicated) or provider Exchange is listed under its own type, not as hosted.
    let kind = {
        let known = ovh
            .offers
            .lock()
            .map_err(|e| Failure::Blocked(e.to_string()))?
            .get(&service.path())
            .copied();
        match known {
            Some(kind) => kind,
            None => {
                let info = exchange::get_service(c, activity, service).await?;
                let kind = legacy::MigrationServiceType::for_exchange_offer(info.offer.as_deref());
                ovh.offers
                    .lock()
                    .map_err(|e| Failure::Blocked(e.to_string()))?
                    .insert(service.path(), kind);
                kind
            }
        }
    };
    let services = legacy::migration_destinations(c, activity, domain, account, kind).await?;
    if !services.contains(&service.service) {
        return Err(Failure::Blocked(format!(
            "{} is not offered as a migration destination for {account}@{domain} (offered: {})",
            service.service,
            if services.is_empty() {
                "none".to_owned()
            } else {
                services.join(", ")
            }
        )));
    }
    Ok(legacy::destination_addresses(c, activity, domain, account, &service.service).await?)
}

/// `preflight` (historical MX Plan): no redirection from or to the account, no responder,
/// `checkMigrate` clear, a free `@configureme.me` account. Read-only, so it runs in dry runs.
pub(crate) async fn preflight(
    ovh: &Ovh,
    plan: &Plan,
    a: &Account,
    stop: &CancellationToken,
) -> StepResult {
    let (domain, service) = legacy_parts(plan, a)?;
    let account = a.local_part();
    let activity = format!("checking {} before its migration", a.address);
    let c = &ovh.client;
    if migrated(ovh, &activity, &service, a).await? {
        return done("already migrated", serde_json::json!({"already": true}));
    }
    let mut problems = Vec::new();
    let from = legacy::redirections(c, &activity, domain, Some(&a.address), None).await?;
    let to = legacy::redirections(c, &activity, domain, None, Some(&a.address)).await?;
    if !from.is_empty() || !to.is_empty() {
        problems.push(format!(
            "{} redirection(s) from or to the account: remove them in the control panel first",
            from.len() + to.len()
        ));
    }
    if !legacy::responders(c, &activity, domain, Some(account))
        .await?
        .is_empty()
    {
        problems.push("an auto-responder is set: remove it first".to_owned());
    }
    // A placeholder another step of this run claimed is no candidate; one can still be taken
    // between the listing and the check (a `configure-target` running meanwhile turns it into
    // a real address): the check then answers 404 and the list is read again.
    let mut relisted = 0;
    let (placeholders, check) = loop {
        let placeholders: Vec<String> =
            legacy_destination(ovh, &activity, domain, account, &service)
                .await?
                .into_iter()
                .filter(|p| !ovh.is_claimed(p).unwrap_or(false))
                .collect();
        let Some(first) = placeholders.first() else {
            problems.push(format!(
                "no free @configureme.me account on {}: order one more Exchange account",
                service.service
            ));
            return Err(Failure::Blocked(problems.join("; ")));
        };
        // checkMigrate answers 200 with a list of errors; the *_INPROGRESS ones pass with time.
        let check = until(stop, Duration::from_secs(15 * 60), || async {
            match legacy::check_migrate(c, &activity, domain, account, &service.service, first)
                .await
            {
                Err(e) if e.kind == OvhErrorKind::NotFound && relisted < 3 => Ok(Some(None)),
                Err(e) => Err(e.into()),
                Ok(check) if check.is_retryable() && !check.is_clear() => Ok(None),
                Ok(check) => Ok(Some(Some(check))),
            }
        })
        .await?;
        match check {
            Some(check) => break (placeholders, check),
            None => relisted += 1, // the placeholder is gone: list again
        }
    };
    if !check.is_clear() {
        problems.push(format!(
            "OVH's migration check (checkMigrate) refuses it. {}",
            check.describe()
        ));
    }
    if !problems.is_empty() {
        return Err(Failure::Blocked(problems.join("; ")));
    }
    done(
        format!(
            "ready: no redirection, no responder, checkMigrate clear, {} placeholder(s)",
            placeholders.len()
        ),
        serde_json::json!({"placeholders": placeholders.len()}),
    )
}

/// `migrate-legacy`: OVH's own migration with the source password; `counts` are the source's
/// messages per folder read over IMAP before (for `verify`, since the source is gone after).
pub(crate) async fn migrate_legacy(
    ovh: &Ovh,
    plan: &Plan,
    a: &Account,
    source_password: &Secret,
    counts: Option<BTreeMap<String, u32>>,
    mode: RunMode,
    stop: &CancellationToken,
) -> StepResult {
    let (domain, service) = legacy_parts(plan, a)?;
    let account = a.local_part();
    let activity = format!("migrating {}", a.address);
    let c = &ovh.client;
    if migrated(ovh, &activity, &service, a).await? {
        return done("already migrated", serde_json::json!({"already": true}));
    }
    if mode == RunMode::DryRun {
        return done(
            format!("would migrate {} to {}", a.address, service.service),
            serde_json::json!({}),
        );
    }
    // A migration started by a run that was killed: wait for its task, then look again.
    if !legacy::account_tasks(c, &activity, domain, account)
        .await?
        .is_empty()
    {
        crate::providers::ovh::tasks::wait_legacy_account_idle(
            c, &activity, domain, account, &ovh.poll, stop,
        )
        .await?;
        if migrated(ovh, &activity, &service, a).await? {
            return done(
                "migrated by an interrupted run",
                serde_json::json!({"already": true, "source_counts": counts}),
            );
        }
    }
    let placeholder = {
        let free = legacy_destination(ovh, &activity, domain, account, &service).await?;
        let mut chosen = None;
        for p in free {
            if ovh.claim(&p)? {
                chosen = Some(p);
                break;
            }
        }
        let Some(p) = chosen else {
            return Err(Failure::Blocked(format!(
                "no free @configureme.me account on {}: order one more Exchange account",
                service.service
            )));
        };
        p
    };
    let task = legacy::migrate(
        c,
        &activity,
        domain,
        account,
        &service.service,
        &placeholder,
        source_password,
    )
    .await?;
    crate::providers::ovh::tasks::wait(c, &activity, &task.task_ref(), &ovh.poll, stop).await?;
    wait_account_ready(ovh, &activity, &service, &a.address, stop).await?;
    done(
        format!("migrated by OVH into {placeholder}, now {}", a.address),
        serde_json::json!({"placeholder": placeholder, "source_counts": counts}),
    )
}

/// `reset-source` (opt-in, after `verify`): the renamed new-MX-Plan source is emptied and
/// released.
pub(crate) async fn reset_source(
    ovh: &Ovh,
    plan: &Plan,
    a: &Account,
    mode: RunMode,
    stop: &CancellationToken,
) -> StepResult {
    let (service, provisional) = mxplan_parts(plan, a)?;
    let activity = format!("resetting {provisional}");
    let c = &ovh.client;
    match mxplan::get_account(c, &activity, service, provisional).await {
        Err(e) if not_found(&e) => {
            return done("already reset", serde_json::json!({"already": true}));
        }
        Err(e) => return Err(e.into()),
        Ok(_) if mode == RunMode::DryRun => {
            return done(
                format!("would reset {provisional} (destructive)"),
                serde_json::json!({}),
            );
        }
        Ok(_) => {}
    }
    let task = mxplan::reset_account(c, &activity, service, provisional).await?;
    crate::providers::ovh::tasks::wait(
        c,
        &activity,
        &mxplan::task(service, task.id),
        &ovh.poll,
        stop,
    )
    .await?;
    done(
        format!("{provisional} reset"),
        serde_json::json!({"already": false}),
    )
}

/// `check-dns`: the destination domain's MX, SRV and SPF diagnostics and what to change.
pub(crate) async fn check_dns(ovh: &Ovh, plan: &Plan, domain: &str, mode: RunMode) -> StepResult {
    let (_, service) = domain_parts(plan, domain)?;
    let activity = format!("checking the DNS of {domain}");
    let d = match exchange::get_domain(&ovh.client, &activity, &service, domain).await {
        Err(e) if not_found(&e) && mode == RunMode::DryRun => {
            return done(
                format!("would check the DNS of {domain} once it is attached"),
                serde_json::json!({}),
            );
        }
        other => other?,
    };
    let advice = d.dns_advice();
    let summary = if advice.is_empty() {
        "MX, SRV and SPF are valid".to_owned()
    } else {
        format!("to change: {}", advice.join("; "))
    };
    done(summary, serde_json::json!({"advice": advice}))
}
