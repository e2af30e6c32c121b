//! Integration tests of ovh-sim through real HTTP: authentication ([`auth`]), the legacy domain
//! and its migrate tree ([`legacy`]), new MX Plan and Exchange ([`services`]), faults and the
//! request log ([`faults`]), the mail backend ([`mail`]) and the responses' conformance to the
//! API's own schemas ([`schema`]).

mod auth;
mod faults;
mod legacy;
mod mail;
mod readme;
mod schema;
mod services;
mod support;
