//! Hosted Exchange: `/email/exchange`, `/email/exchange/{org}/service` and
//! `/email/exchange/{org}/service/{service}/…` (models `email.exchange.*`).
//!
//! Entry point: [`route`]. Free accounts are `@configureme.me` placeholders, configured by `PUT`
//! (a `setAccount` task) then `changePassword`; `DELETE` resets an account to a placeholder;
//! domains are added by `POST` (state `creating → ok`). The shared logic is in
//! [`crate::service`].

use serde_json::json;

use crate::http::{Reply, Request};
use crate::legacy::not_found_url;
use crate::state::{Place, State};

pub(crate) fn route(state: &mut State, request: &Request, rest: &[&str]) -> Reply {
    let organizations = || {
        let mut names: Vec<&String> = state
            .services
            .keys()
            .filter_map(|place| match place {
                Place::Exchange(org, _) => Some(org),
                Place::MxPlan(_) => None,
            })
            .collect();
        names.dedup();
        names
    };
    match (request.method.as_str(), rest) {
        ("GET", []) => Reply::ok(json!(organizations())),
        ("GET", [org, "service"]) => {
            if !organizations().iter().any(|name| name == org) {
                return Reply::no_object("organizationName", org);
            }
            let names: Vec<&String> = state
                .services
                .keys()
                .filter_map(|place| match place {
                    Place::Exchange(o, service) if o == org => Some(service),
                    _ => None,
                })
                .collect();
            Reply::ok(json!(names))
        }
        (_, [org, "service", service, tail @ ..]) => {
            let place = Place::Exchange((*org).to_owned(), (*service).to_owned());
            if !state.services.contains_key(&place) {
                return Reply::no_object("exchangeService", service);
            }
            crate::service::route(state, request, &place, tail)
        }
        _ => not_found_url(),
    }
}
