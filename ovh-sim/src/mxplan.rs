//! New MX Plan: `/email/mxplan` and `/email/mxplan/{service}/…` (the Email Pro platform, whose
//! models are `email.mxplan.*` and `email.pro.Task`).
//!
//! Entry point: [`route`]. There is no migrate route and no account creation here: accounts are
//! renamed by `PUT` (a `setAccount` task) and reset by `DELETE`; the shared logic is in
//! [`crate::service`].

use serde_json::json;

use crate::http::{Reply, Request};
use crate::legacy::not_found_url;
use crate::state::{Place, State};

pub(crate) fn route(state: &mut State, request: &Request, rest: &[&str]) -> Reply {
    match (request.method.as_str(), rest) {
        ("GET", []) => {
            let names: Vec<&String> = state
                .services
                .keys()
                .filter_map(|place| match place {
                    Place::MxPlan(name) => Some(name),
                    Place::Exchange(..) => None,
                })
                .collect();
            Reply::ok(json!(names))
        }
        (_, [service, tail @ ..]) => {
            let place = Place::MxPlan((*service).to_owned());
            if !state.services.contains_key(&place) {
                return Reply::no_object("service", service);
            }
            crate::service::route(state, request, &place, tail)
        }
        _ => not_found_url(),
    }
}
