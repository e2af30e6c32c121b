//! Checks of values and across sections: the OVH endpoint, IMAP hosts and e-mail addresses;
//! the platforms accounts and domains name, and the flow between an account's two platforms; then,
//! once every account is read, duplicate addresses (Unicode and punycode alike), provisional names
//! that collide, domains not attached to their Exchange platform, and the `after:` graph
//! ([`super::after`]).
//!
//! Entry points: [`check_endpoint`], [`check_host`], [`check_address`] (and [`ascii_domain`]),
//! [`check_platform_ref`], [`decide_flow`], [`check_accounts`].

use std::collections::HashMap;

use crate::plan::decode::{Reader, did_you_mean};
use crate::plan::diag::{Code, Diagnostic};
use crate::plan::model::{DomainAttachment, Flow, PlatformKind};
use crate::plan::source::Span;
use crate::providers::ovh::config::KNOWN_ENDPOINTS;

use super::after::check_after;
use super::{Platforms, Written};

pub(super) fn check_platform_ref(
    r: &mut Reader<'_>,
    platforms: &Platforms,
    name: &str,
    span: Span,
) -> bool {
    if platforms.contains_key(name) {
        return true;
    }
    let names: Vec<&str> = platforms.keys().map(String::as_str).collect();
    let help = match did_you_mean(name, &names) {
        Some(best) => format!("did you mean `{best}`?"),
        None if names.is_empty() => "declare it under `platforms:`".to_owned(),
        None => format!("the plan's platforms: {}", names.join(", ")),
    };
    r.diags.push(
        Diagnostic::error(
            Code::UnknownPlatform,
            format!("no platform is named `{name}`"),
        )
        .with_label(r.source, span, "unknown platform")
        .with_help(help),
    );
    false
}

pub(super) fn decide_flow(
    r: &mut Reader<'_>,
    platforms: &Platforms,
    (from, from_span): (&str, Span),
    (to, to_span): (&str, Span),
) -> Option<Flow> {
    let (source, _) = &platforms[from];
    let (target, _) = &platforms[to];
    if from == to {
        r.diags.push(
            Diagnostic::error(
                Code::SameSourceAndTarget,
                format!("`from` and `to` are both `{from}`"),
            )
            .with_label(r.source, to_span, "same as `from`")
            .with_help("a migration moves mail between two platforms"),
        );
        return None;
    }
    let flow = match (&source.kind, &target.kind) {
        (PlatformKind::OvhMxplan { .. }, PlatformKind::OvhExchange { .. }) => {
            Some(Flow::MxplanToExchange)
        }
        (PlatformKind::OvhMxplanLegacy { .. }, PlatformKind::OvhExchange { .. }) => {
            Some(Flow::LegacyToExchange)
        }
        (PlatformKind::Imap, PlatformKind::OvhExchange { .. }) => Some(Flow::ImapToExchange),
        (_, PlatformKind::Imap) if source.imap.is_some() => Some(Flow::ImapToImap),
        _ => None,
    };
    let Some(flow) = flow else {
        let why = match (&source.kind, &target.kind) {
            (_, PlatformKind::OvhMxplanLegacy { .. }) => {
                "mail cannot be migrated to a historical MX Plan; move it to Exchange, or declare the server as `type: imap`".to_owned()
            }
            (_, PlatformKind::Imap) => format!(
                "`{from}` has no `imap:` block to read the mail from; add one"
            ),
            _ => format!(
                "supported: ovh-mxplan, ovh-mxplan-legacy or imap → ovh-exchange, and any platform with an `imap:` block → imap; declare `{to}` as `type: imap` to copy into an existing mailbox"
            ),
        };
        r.diags.push(
            Diagnostic::error(
                Code::UnsupportedFlow,
                format!(
                    "no migration from {} to {}",
                    source.kind.type_name(),
                    target.kind.type_name()
                ),
            )
            .with_label(r.source, from_span, source.kind.type_name())
            .with_label(r.source, to_span, target.kind.type_name())
            .with_help(why),
        );
        return None;
    };
    let needs_target_imap = matches!(flow, Flow::MxplanToExchange | Flow::ImapToExchange);
    if needs_target_imap && target.imap.is_none() {
        let (_, declared) = &platforms[to];
        r.diags.push(
            Diagnostic::error(Code::MissingKey, format!("platform `{to}` has no `imap` block, and {flow} copies mail into it over IMAP"))
                .with_label(&declared.source, declared.span, "this platform")
                .with_label(r.source, to_span, "copied into here")
                .with_help("add `imap: { host: exN.mail.ovh.net }` (the server shown in the Exchange control panel)"),
        );
        return None;
    }
    Some(flow)
}

/// An endpoint `apply` can use: a known name, an `https://` base URL with a host, or an
/// `http://` one on the loopback (a simulator): never passwords in clear over a network.
pub(super) fn check_endpoint(endpoint: &str) -> Result<(), &'static str> {
    if KNOWN_ENDPOINTS.iter().any(|(name, _)| *name == endpoint) {
        return Ok(());
    }
    let (scheme, rest) = endpoint
        .split_once("://")
        .ok_or("is neither a known endpoint name nor a base URL")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err("has no host");
    }
    match scheme {
        "https" => Ok(()),
        "http" => {
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err("is http:// to another machine: the API keys would cross the network in clear")
            }
        }
        _ => Err("is not an http(s) URL"),
    }
}

/// A host name or address for `imap.host`: not empty, no scheme, path, port or space.
pub(super) fn check_host(host: &str) -> Result<(), &'static str> {
    if host.trim().is_empty() {
        return Err("is empty");
    }
    if host.contains("://") || host.contains('/') {
        return Err("is a URL; write the host name alone (and `port:` beside it)");
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("holds a space");
    }
    if host.parse::<std::net::IpAddr>().is_err()
        && host
            .trim_matches(['[', ']'])
            .parse::<std::net::Ipv6Addr>()
            .is_err()
        && (host.contains(':') || host.len() > 253)
    {
        return Err("is not a host name (a port goes in `port:`)");
    }
    Ok(())
}

/// A practical address check (the OVH Exchange panel's rule, lower-cased): a local part of
/// letters, digits and the specials of RFC 5322 in dot-separated atoms, and a domain of at least two
/// labels of letters, digits and inner hyphens.
pub fn check_address(address: &str) -> Result<(), &'static str> {
    let Some((local, domain)) = address.split_once('@') else {
        return Err("it has no @");
    };
    if local.is_empty() {
        return Err("nothing before the @");
    }
    // RFC 5321's limits, which servers enforce: 64 bytes before the @, 63 per label of the
    // domain (once in ASCII), 254 in all.
    if local.len() > 64 {
        return Err("the part before the @ is longer than 64 characters");
    }
    let ascii = ascii_domain(domain);
    if ascii.split('.').any(|l| l.len() > 63) {
        return Err("a label of the domain is longer than 63 characters");
    }
    if local.len() + 1 + ascii.len() > 254 {
        return Err("it is longer than 254 characters");
    }
    let atom_char = |c: char| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    if local
        .split('.')
        .any(|atom| atom.is_empty() || !atom.chars().all(atom_char))
    {
        return Err("the part before the @ has a character that is not allowed, or misplaced dots");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err("the domain needs at least one dot");
    }
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !labels.iter().all(label_ok) {
        return Err("the domain has an empty label or a character that is not allowed");
    }
    Ok(())
}

/// A domain as the DNS writes it: Unicode labels in punycode (`bücher.example` and
/// `xn--bcher-kva.example` are one domain); as written when it is not a valid domain.
pub fn ascii_domain(domain: &str) -> String {
    idna::domain_to_ascii(domain).unwrap_or_else(|_| domain.to_owned())
}

/// An address with its domain in ASCII, to compare two addresses.
fn address_key(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", ascii_domain(domain)),
        None => address.to_owned(),
    }
}

pub(super) fn check_accounts(
    r: &mut Reader<'_>,
    written: &mut [Written],
    platforms: &Platforms,
    domains: &[(DomainAttachment, Span)],
) {
    let mut by_address: HashMap<String, usize> = HashMap::with_capacity(written.len());
    // The same address in Unicode and in punycode is one mailbox.
    let mut by_key: HashMap<String, usize> = HashMap::with_capacity(written.len());
    for (i, w) in written.iter().enumerate() {
        let key = address_key(&w.account.address);
        let first = by_address
            .get(&w.account.address)
            .or_else(|| by_key.get(&key))
            .copied();
        by_key.entry(key).or_insert(i);
        if let Some(first) = first {
            r.diags.push(
                Diagnostic::error(
                    Code::DuplicateAccount,
                    format!("account {} is listed twice", w.account.address),
                )
                .with_label(&w.source, w.address_span, "again here")
                .with_label(
                    &written[first].source,
                    written[first].address_span,
                    "first here",
                )
                .with_help("an address is migrated once; remove one of the two entries"),
            );
        } else {
            by_address.insert(w.account.address.clone(), i);
        }
    }

    // Provisional names must be free: no other account has that address or provisional name.
    let mut provisional: HashMap<&str, usize> = HashMap::new();
    for (i, w) in written.iter().enumerate() {
        let Some(p) = w.account.provisional_address.as_deref() else {
            continue;
        };
        if by_address.get(&w.account.address) != Some(&i) {
            continue; // a duplicate account, already reported
        }
        let other = by_address
            .get(p)
            .map(|&j| (j, written[j].address_span, "that account's address"))
            .or_else(|| {
                provisional
                    .get(p)
                    .map(|&j| (j, written[j].provisional_span, "its provisional name too"))
            });
        if let Some((j, span, what)) = other {
            r.diags.push(
                Diagnostic::error(
                    Code::ProvisionalNameCollision,
                    format!(
                        "{} would be renamed to {p}, which {} already uses",
                        w.account.address, written[j].account.address
                    ),
                )
                .with_label(&w.source, w.provisional_span, format!("renames to {p}"))
                .with_label(&written[j].source, span, what)
                .with_help(
                    "set a `provisional-name` rule that gives a free name, e.g. \"{local}-old\"",
                ),
            );
        } else {
            provisional.insert(p, i);
        }
    }

    for w in written.iter() {
        let (target, _) = &platforms[&w.account.to];
        if !matches!(target.kind, PlatformKind::OvhExchange { .. }) {
            continue;
        }
        let domain = w.account.domain();
        if !domains
            .iter()
            .any(|(d, _)| d.name == domain && d.platform == w.account.to)
        {
            r.diags.push(
                Diagnostic::error(
                    Code::DomainNotAttached,
                    format!("domain {domain} is not attached to `{}`", w.account.to),
                )
                .with_label(&w.source, w.to_span, "an Exchange platform")
                .with_label(&w.source, w.address_span, format!("an address of {domain}"))
                .with_help(format!(
                    "add it under `domains:`:\n  - name: {domain}\n    platform: {}\n    type: non-authoritative",
                    w.account.to
                )),
            );
        }
    }
    check_after(r, written, &by_address);
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::run;
    use super::check_endpoint;
    use crate::plan::diag::Code;

    #[test]
    fn what_apply_would_fail_on_is_refused_with_its_span() {
        let long_local = "l".repeat(300);
        let long_label = "d".repeat(70);
        let text = format!(
            "version: 1
ovh: {{ endpoint: http://api.example.com/1.0 }}
platforms:
  a: {{ type: imap, imap: {{ host: \"imaps://a.example:993\" }} }}
  b: {{ type: imap, imap: {{ host: \"\" }} }}
  c: {{ type: imap, imap: {{ host: \"c example\" }} }}
  d: {{ type: imap, imap: {{ host: d.example, port: 0 }} }}
  e: {{ type: imap, imap: {{ host: \"[::1]\" }} }}
  f: {{ type: imap, imap: {{ host: 127.0.0.1 }} }}
accounts:
  - {{ address: {long_local}@x.example, from: e, to: f }}
  - {{ address: a@{long_label}.example, from: e, to: f }}
  - {{ address: b@bücher.example, from: e, to: f }}
  - {{ address: b@xn--bcher-kva.example, from: e, to: f }}
  - {{ address: c@x.example, from: e, to: f, copy: {{ folders: {{ map: {{ Sent: \"\" }} }} }} }}
"
        );
        let (plan, found) = run(&text);
        assert!(plan.is_none());
        let found: Vec<(Code, usize, usize)> = found.iter().map(|f| (f.0, f.2, f.3)).collect();
        assert_eq!(
            found,
            [
                (Code::InvalidValue, 2, 18),
                (Code::InvalidValue, 4, 34),
                (Code::InvalidValue, 5, 34),
                (Code::InvalidValue, 6, 34),
                (Code::InvalidValue, 7, 51),
                (Code::InvalidAddress, 11, 16),
                (Code::InvalidAddress, 12, 16),
                (Code::DuplicateAccount, 14, 16),
                (Code::InvalidValue, 15, 77),
            ]
        );
        for ok in [
            "ovh-eu",
            "https://eu.api.ovh.com/1.0",
            "http://127.0.0.1:8080/1.0",
            "http://localhost/1.0",
            "http://[::1]:80/1.0",
        ] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ovh-moon",
            "ftp://x/1.0",
            "http://10.0.0.1/1.0",
            "https:///1.0",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }
}
