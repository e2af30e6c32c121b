//! The typed calls the plan's steps make, one small async fn each, with serde models taken from
//! the API's schemas (copies in `ovh-sim/tests/schemas/`). Models keep the fields mailplan reads;
//! unknown fields are ignored and missing optional ones default, so a newer API does not break
//! them.
//!
//! Modules: [`exchange`] (Hosted Exchange: accounts, `@configureme.me` placeholders, password,
//! service policy, domains and their DNS diagnostics), [`mxplan`] (new MX Plan: account, rename,
//! reset), [`legacy`] (historical MX Plan: accounts, redirections, responders, the `migrate`
//! tree and `checkMigrate`), [`auth`] (`/auth/credential` and the access rules mailplan needs).
//!
//! Every fn takes the caller's `activity` ("configuring john@acme.fr"), which every error
//! carries. Paths are built by the `*_path` fns so that a test can check each against
//! [`auth::ACCESS_RULES`].

use serde::{Deserialize, Serialize};

use super::client::{Client, segment};
use super::error::OvhError;
use super::tasks::{LegacyTaskList, Task, TaskRef};

/// The placeholder domain of unconfigured Exchange (and new MX Plan) accounts.
pub const PLACEHOLDER_DOMAIN: &str = "configureme.me";

/// Whether an address is a `@configureme.me` placeholder (case-insensitive, as the manager).
pub fn is_placeholder_address(address: &str) -> bool {
    address
        .rsplit_once('@')
        .is_some_and(|(_, d)| d.eq_ignore_ascii_case(PLACEHOLDER_DOMAIN))
}

/// `ObjectStateEnum` of Exchange and Email Pro / new MX Plan objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ObjectState {
    Creating,
    Deleting,
    InternalMigration,
    Ok,
    Reopening,
    Suspended,
    Suspending,
    #[serde(other)]
    Unknown,
}

pub mod exchange;

pub mod mxplan;

pub mod legacy;

pub mod auth;

#[cfg(test)]
mod tests {
    use super::legacy::{MigrationCheck, MigrationCheckCode};
    use super::*;
    use crate::plan::model::DomainType;
    use crate::plan::secret::Secret;

    #[test]
    fn each_exchange_offer_is_listed_under_its_migration_type() {
        use legacy::MigrationServiceType as T;
        for (offer, api) in [
            (Some("hosted"), "HOSTED EXCHANGE"),
            (Some("dedicated"), "PRIVATE EXCHANGE"),
            (Some("dedicatedCluster"), "PRIVATE EXCHANGE"),
            (Some("provider"), "PROVIDER EXCHANGE"),
            (None, "HOSTED EXCHANGE"),
        ] {
            assert_eq!(T::for_exchange_offer(offer).api_name(), api, "{offer:?}");
        }
    }

    #[test]
    fn check_migrate_answers_decode_and_classify() {
        let clear: MigrationCheck = serde_json::from_str(
            r#"{"alias":[],"filter":null,"forward":[],"error":[],"warning":null}"#,
        )
        .expect("decodes");
        assert!(clear.is_clear());
        assert!(!clear.is_retryable());

        let busy: MigrationCheck = serde_json::from_str(
            r#"{"error":[{"code":"ACCOUNT_INPROGRESS","details":null},{"code":"MAILPROXY_RESERVATION"}]}"#,
        )
        .expect("decodes");
        assert!(!busy.is_clear());
        assert!(busy.is_retryable());

        let blocked: MigrationCheck = serde_json::from_str(
            r#"{"forward":["a@b.c"],"error":[{"code":"FORWARD_EXIST","details":"a@b.c"},{"code":"ACCOUNT_INPROGRESS"}]}"#,
        )
        .expect("decodes");
        assert!(
            !blocked.is_retryable(),
            "a redirection does not go away by waiting"
        );
        assert_eq!(
            blocked.describe(),
            "Redirections from or to this account cannot be migrated: remove them in the control \
             panel, run apply again, and recreate them on Exchange (OVH code FORWARD_EXIST, about \
             a@b.c). Another task is running on this account: wait for it to end, then run \
             apply again (OVH code ACCOUNT_INPROGRESS)."
        );

        let odd: MigrationCheck =
            serde_json::from_str(r#"{"error":[{"code":"UNKNOW"},{"code":"NEW_THING"}]}"#)
                .expect("decodes");
        assert_eq!(odd.errors()[0].code, MigrationCheckCode::Unknow);
        assert_eq!(odd.errors()[1].code, MigrationCheckCode::Other);
    }

    #[test]
    fn every_check_code_has_an_explanation_and_only_in_progress_ones_retry() {
        use MigrationCheckCode as C;
        let all = [
            C::AccountEmpty,
            C::AccountInprogress,
            C::DelegationExist,
            C::DomainEmpty,
            C::FilterExist,
            C::ForwardExist,
            C::ForwardLocal,
            C::MailinglistExist,
            C::MailinglistInprogress,
            C::MailproxyBadInfra,
            C::MailproxyEmpty,
            C::MailproxyInprogress,
            C::MailproxyReservation,
            C::RedirectionInprogress,
            C::ResponderExist,
            C::ResponderInprogress,
            C::Unknow,
        ];
        for code in all {
            assert!(!code.explanation().is_empty());
            let name = code.api_name();
            assert_eq!(
                serde_json::from_str::<MigrationCheckCode>(&format!("\"{name}\"")).ok(),
                Some(code),
                "the API's own spelling"
            );
            assert!(code.explanation().ends_with('.'), "a sentence: {name}");
            assert_eq!(
                code.is_retryable(),
                name.ends_with("INPROGRESS") || name.ends_with("RESERVATION"),
                "{name}"
            );
        }
    }

    #[test]
    fn exchange_placeholder_account_decodes() {
        let a: exchange::Account = serde_json::from_str(
            r#"{"primaryEmailAddress":"ab12cd@configureme.me","login":"ab12cd","domain":"configureme.me","displayName":null,"configured":false,"state":"ok","taskPendingId":0,"id":17,"accountLicense":"basic","SAMAccountName":null,"quota":50,"hiddenFromGAL":false}"#,
        )
        .expect("decodes");
        assert!(a.is_placeholder() && a.is_free_placeholder());
        let busy = exchange::Account {
            task_pending_id: Some(4),
            ..a.clone()
        };
        assert!(!busy.is_free_placeholder());
        assert!(is_placeholder_address("X@ConfigureMe.me"));
        assert!(!is_placeholder_address("john@acme.fr"));
    }

    #[test]
    fn configure_and_add_domain_bodies() {
        let body = serde_json::to_string(&exchange::AccountUpdate {
            login: "john.smith".into(),
            domain: "acme.fr".into(),
            display_name: Some("John Smith".into()),
        })
        .expect("serialises");
        assert_eq!(
            body,
            r#"{"login":"john.smith","domain":"acme.fr","displayName":"John Smith"}"#
        );
        let body = serde_json::to_string(&exchange::NewDomain::new(
            "www.Acme.fr",
            DomainType::NonAuthoritative,
        ))
        .expect("serialises");
        assert_eq!(
            body,
            r#"{"name":"acme.fr","type":"nonAuthoritative","configureMx":false,"configureAutodiscover":false,"main":false}"#
        );
    }

    #[test]
    fn add_domain_refusals_get_advice() {
        assert!(
            exchange::add_domain_advice("Authoritative domain detected")
                .is_some_and(|a| a.contains("non-authoritative"))
        );
        assert!(
            exchange::add_domain_advice("UPN suffix acme.fr already exists")
                .is_some_and(|a| a.contains("detach"))
        );
        assert_eq!(exchange::add_domain_advice("Internal error"), None);
    }

    #[test]
    fn domain_dns_advice() {
        let d: exchange::Domain = serde_json::from_str(
            r#"{"name":"acme.fr","type":"authoritative","state":"ok","taskPendingId":0,"cnameToCheck":"ab1cd-check","domainValidated":false,"mxIsValid":false,"mxRecord":["mx1.mail.ovh.net"],"expectedMX":["ex5.mail.ovh.net"],"srvIsValid":true,"srvRecord":[],"expectedAutodiscoverSRV":"0 0 443 ex5.mail.ovh.net","spfIsValid":false,"spfRecord":null,"expectedSPF":"v=spf1 include:mx.ovh.com ~all","dkimDiagnostics":{"state":"disabled"}}"#,
        )
        .expect("decodes");
        assert!(d.is_ready());
        assert_eq!(
            d.dns_advice(),
            vec![
                "prove ownership: create the DNS record `ab1cd-check.acme.fr CNAME ovh.com.`",
                "MX: found mx1.mail.ovh.net; expected ex5.mail.ovh.net",
                "SPF: found none; expected v=spf1 include:mx.ovh.com ~all",
            ]
        );
    }

    #[test]
    fn password_policy() {
        let policy = exchange::PasswordPolicy {
            min_length: 8,
            complexity: true,
        };
        let ok = Secret::new("Zx9!kq2Lm");
        assert!(
            policy
                .violations(&ok, "john.smith", Some("John Smith"))
                .is_empty()
        );
        let short = Secret::new("aB1!");
        let v = policy.violations(&short, "john", None);
        assert_eq!(
            v,
            vec!["is 4 characters long; the service requires at least 8"]
        );
        let weak = Secret::new("smithsmithsmith");
        let v = policy.violations(&weak, "john.smith", Some("John Smith"));
        assert!(v.iter().any(|m| m.contains("1 of the 4 kinds")), "{v:?}");
        assert!(
            v.iter()
                .any(|m| m.contains("a word of 3 characters or more of the display name")),
            "{v:?}"
        );
        // No part of the password is quoted, not even the display name's word it contains.
        assert!(
            v.iter().all(|m| !m.to_lowercase().contains("smith")),
            "a part of the password in {v:?}"
        );
        let relaxed = exchange::PasswordPolicy {
            min_length: 0,
            complexity: false,
        };
        assert!(relaxed.violations(&weak, "x", None).is_empty());
    }

    #[test]
    fn access_rules_cover_every_call_and_every_rule_is_used() {
        let svc = exchange::Service {
            organization: "hosted-ab1".into(),
            service: "hosted-ab1".into(),
        };
        let calls: Vec<(&str, String)> = vec![
            ("GET", svc.path()),
            ("GET", format!("{}/account", svc.path())),
            ("GET", svc.account_path("x@configureme.me")),
            ("PUT", svc.account_path("x@configureme.me")),
            (
                "POST",
                format!("{}/changePassword", svc.account_path("john@acme.fr")),
            ),
            ("GET", format!("{}/domain", svc.path())),
            ("POST", format!("{}/domain", svc.path())),
            ("GET", svc.domain_path("acme.fr")),
            ("GET", svc.task(3).path()),
            (
                "GET",
                format!("{}/account", mxplan::service_path("mxplan-1")),
            ),
            ("GET", mxplan::account_path("mxplan-1", "john@acme.fr")),
            ("PUT", mxplan::account_path("mxplan-1", "john@acme.fr")),
            ("DELETE", mxplan::account_path("mxplan-1", "john01@acme.fr")),
            ("GET", mxplan::task("mxplan-1", 3).path()),
            ("GET", format!("{}/account", legacy::domain_path("acme.fr"))),
            ("GET", legacy::account_path("acme.fr", "john")),
            (
                "GET",
                format!("{}/redirection", legacy::domain_path("acme.fr")),
            ),
            (
                "GET",
                format!("{}/redirection/abc", legacy::domain_path("acme.fr")),
            ),
            (
                "GET",
                format!("{}/responder", legacy::domain_path("acme.fr")),
            ),
            (
                "GET",
                format!("{}/responder/john", legacy::domain_path("acme.fr")),
            ),
            (
                "GET",
                format!("{}/migrate", legacy::account_path("acme.fr", "john")),
            ),
            (
                "GET",
                format!(
                    "{}/migrate/hosted-ab1/destinationEmailAddress",
                    legacy::account_path("acme.fr", "john")
                ),
            ),
            (
                "GET",
                format!(
                    "{}/checkMigrate",
                    legacy::destination_path("acme.fr", "john", "hosted-ab1", "x@configureme.me")
                ),
            ),
            (
                "POST",
                format!(
                    "{}/migrate",
                    legacy::destination_path("acme.fr", "john", "hosted-ab1", "x@configureme.me")
                ),
            ),
            (
                "GET",
                format!("{}/task/account", legacy::domain_path("acme.fr")),
            ),
            (
                "GET",
                legacy::TaskPop {
                    id: 5,
                    action: "migration".into(),
                    date: None,
                    domain: "acme.fr".into(),
                    name: "john".into(),
                }
                .task_ref()
                .path(),
            ),
            ("GET", "/auth/currentCredential".to_owned()),
            ("GET", "/email/mxplan/mxplan-1/domain/acme.fr".to_owned()),
        ];
        for (method, path) in &calls {
            assert!(
                auth::ACCESS_RULES
                    .iter()
                    .any(|r| auth::allows(r, method, path)),
                "no rule for {method} {path}"
            );
        }
        // Every rule is used by some call (the list is exactly what the tool needs).
        for rule in auth::ACCESS_RULES {
            assert!(
                calls.iter().any(|(m, p)| auth::allows(rule, m, p)),
                "unused rule {rule:?}"
            );
        }
        // Nothing beyond: no DELETE on Exchange accounts, no PUT on legacy accounts.
        assert!(!auth::ACCESS_RULES.iter().any(|r| auth::allows(
            r,
            "DELETE",
            &svc.account_path("john@acme.fr")
        )));
        assert!(!auth::ACCESS_RULES.iter().any(|r| auth::allows(
            r,
            "PUT",
            &legacy::account_path("acme.fr", "john")
        )));
    }
}
