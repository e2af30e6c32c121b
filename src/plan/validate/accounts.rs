//! One account, from a YAML entry of `accounts:` or a row of a CSV import: its keys, its flow,
//! its provisional name and the passwords its flow needs.
//!
//! Entry point: [`read_account`], which returns the account with the spans later checks point at
//! ([`Written`]), or `None` when it has an error that would hide others.

use std::sync::Arc;

use crate::plan::decode::Reader;
use crate::plan::diag::{Code, Diagnostic};
use crate::plan::model::{Account, Flow, SecretOrigins};
use crate::plan::source::Origin;
use crate::plan::yaml::Node;

use super::checks::{check_address, check_platform_ref, decide_flow};
use super::sections::{Defaults, read_copy, read_secret};
use super::{ACCOUNT_KEYS, Platforms, Written};

const DEFAULT_PROVISIONAL_NAME: &str = "{local}-old";

#[allow(clippy::too_many_lines)] // one flat list of an account's keys reads best
pub(super) fn read_account(
    r: &mut Reader<'_>,
    node: &Node,
    defaults: &Defaults,
    platforms: &Platforms,
) -> Option<Written> {
    let f = r.fields(node, "an account", ACCOUNT_KEYS)?;
    let address_node = r.required(f, "address", "an account");
    let from_node = r.required(f, "from", "an account");
    let to_node = r.required(f, "to", "an account");
    let opt_string =
        |r: &mut Reader<'_>, key: &str| f.get(key).and_then(|n| r.string(n, &format!("`{key}`")));
    let display_name = opt_string(r, "display-name");
    let source_login = opt_string(r, "source-login");
    let target_login = opt_string(r, "target-login");
    let source_password = f
        .get("source-password")
        .and_then(|n| read_secret(r, n, "`source-password`"));
    let target_password = f
        .get("target-password")
        .and_then(|n| read_secret(r, n, "`target-password`"));
    let wave = match f.get("wave") {
        Some(n) => r.integer(n, "`wave`", "0 or more")?,
        None => defaults.wave,
    };
    let mut after = Vec::new();
    let mut after_spans = Vec::new();
    if let Some(items) = f.get("after").and_then(|n| r.list(n, "`after`")) {
        for item in items {
            if let Some(a) = r.string(item, "an address in `after`") {
                after.push(a.to_lowercase());
                after_spans.push(item.span);
            }
        }
    }
    let copy = match f.get("copy") {
        Some(n) => read_copy(r, n, defaults.copy.clone()),
        None => defaults.copy.clone(),
    };
    let provisional_node = f.get("provisional-name");
    let provisional_rule = match provisional_node {
        Some(n) => r.string(n, "`provisional-name`"),
        None => defaults.provisional_name.clone(),
    };

    let address_node = address_node?;
    let address = r.string(address_node, "`address`")?.to_lowercase();
    if let Err(why) = check_address(&address) {
        r.diags.push(
            Diagnostic::error(
                Code::InvalidAddress,
                format!("`{address}` is not an e-mail address: {why}"),
            )
            .with_label(r.source, address_node.span, "invalid address"),
        );
        return None;
    }
    let (from_node, to_node) = (from_node?, to_node?);
    let from = r.string(from_node, "`from`")?;
    let to = r.string(to_node, "`to`")?;
    let from_ok = check_platform_ref(r, platforms, &from, from_node.span);
    let to_ok = check_platform_ref(r, platforms, &to, to_node.span);
    if !(from_ok && to_ok) {
        return None;
    }
    let flow = decide_flow(r, platforms, (&from, from_node.span), (&to, to_node.span))?;

    let provisional_address = (flow == Flow::MxplanToExchange).then(|| {
        let rule = provisional_rule
            .as_deref()
            .unwrap_or(DEFAULT_PROVISIONAL_NAME);
        let (local, domain) = address.split_once('@').unwrap_or((&address, ""));
        let local = rule.replace("{local}", local).replace("{domain}", domain);
        format!("{local}@{domain}").to_lowercase()
    });
    if let Some(p) = &provisional_address {
        if let Err(why) = check_address(p) {
            let span = provisional_node.map_or(address_node.span, |n| n.span);
            r.diags.push(
                Diagnostic::error(
                    Code::InvalidAddress,
                    format!("provisional address `{p}` is not an e-mail address: {why}"),
                )
                .with_label(r.source, span, "from this rule")
                .with_help(
                    "a provisional name is a local part; `{local}` stands for the account's own",
                ),
            );
            return None;
        }
        if *p == address {
            let span = provisional_node.map_or(address_node.span, |n| n.span);
            r.error(
                Code::ProvisionalNameCollision,
                span,
                format!("the provisional name of {address} is the address itself"),
                "the source must be renamed to a different name",
            );
            return None;
        }
    }

    // Every flow logs in to its source, and to its target except OVH's own migration (which
    // gives the Exchange account the source's password): a missing password is the plan's
    // problem, found here rather than when `apply` resolves secrets.
    let needs_target = flow != Flow::LegacyToExchange;
    for (key, needed) in [("source-password", true), ("target-password", needs_target)] {
        if needed && f.get(key).is_none() {
            r.diags.push(
                Diagnostic::error(
                    Code::MissingKey,
                    format!("account {address} has no `{key}`, and its flow ({flow}) logs in with it"),
                )
                .with_label(r.source, address_node.span, format!("no `{key}`"))
                .with_help(format!(
                    "add `{key}: {{ env: NAME }}` (or `{{ file: PATH }}`, `{{ command: \"…\" }}`) to this account in the plan, or a `{key}` column to its CSV import"
                )),
            );
        }
    }

    Some(Written {
        source: Arc::clone(r.source),
        address_span: address_node.span,
        to_span: to_node.span,
        provisional_span: provisional_node.map_or(address_node.span, |n| n.span),
        after_spans,
        account: Account {
            address,
            from,
            to,
            flow,
            display_name,
            source_login,
            target_login,
            source_password,
            target_password,
            provisional_address,
            wave,
            after,
            copy,
            origin: Origin::new(r.source, node.span),
            secret_origins: SecretOrigins {
                source_password: f
                    .get("source-password")
                    .map(|n| Origin::new(r.source, n.span)),
                target_password: f
                    .get("target-password")
                    .map(|n| Origin::new(r.source, n.span)),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::fixtures::with_accounts;
    use crate::plan::diag::Code;
    use crate::plan::load;
    use crate::plan::source::SourceFile;

    #[test]
    fn an_account_without_a_password_it_needs_is_an_error() {
        let text = with_accounts(
            "  - { address: a@isp.example, from: isp, to: isp2, source-password: { env: S } }
  - { address: b@acme.example, from: legacy, to: exchange, source-password: { env: S } }
  - { address: c@acme.example, from: old, to: exchange, target-password: { env: T } }
",
        )
        .replace(
            "domains:",
            "  isp2: { type: imap, imap: { host: imap.new.example } }\ndomains:",
        );
        let source = SourceFile::new("p.yaml", text.as_str());
        let (plan, diags) = load(&source, &PathBuf::from("plans/p.yaml"));
        assert!(plan.is_none());
        let found: Vec<(Code, &str, usize, usize)> = diags
            .items
            .iter()
            .map(|d| {
                let (_, line, col) = d.location().unwrap_or(("", 0, 0));
                (d.code, d.message.as_str(), line, col)
            })
            .collect();
        // OVH's own migration (b) needs no target password: it keeps the source's.
        assert_eq!(
            found,
            [
                (
                    Code::MissingKey,
                    "account a@isp.example has no `target-password`, and its flow (imap-to-imap) logs in with it",
                    14,
                    16
                ),
                (
                    Code::MissingKey,
                    "account c@acme.example has no `source-password`, and its flow (mxplan-to-exchange) logs in with it",
                    16,
                    16
                ),
            ]
        );
        let help = diags.items[0].help.as_deref().unwrap_or_default();
        assert!(help.contains("to this account in the plan"), "{help}");
        assert!(
            !help.contains("environment") && !help.contains("set it"),
            "{help}"
        );
    }
}
