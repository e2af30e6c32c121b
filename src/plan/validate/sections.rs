//! The plan's settings, section by section: `platforms:` (with each `imap:` block), `domains:`,
//! `defaults:` (with `copy:` and its sizes) and the secret references accounts use.
//!
//! Entry points: [`read_platforms`], [`read_domains`], [`read_defaults`]; [`read_copy`] and
//! [`read_secret`] also read an account's own `copy:` and passwords. Each reports what it finds
//! wrong and keeps what it could read; a platform or domain with an error is left out.

use crate::plan::decode::{Fields, Reader};
use crate::plan::diag::{Code, Diagnostic};
use crate::plan::model::{
    CopyOptions, DomainAttachment, DomainType, ImapServer, Platform, PlatformKind, TlsMode,
};
use crate::plan::secret::SecretRef;
use crate::plan::source::{Origin, Span};
use crate::plan::yaml::{Node, Value};

use super::checks::{check_host, check_platform_ref};
use super::{
    COPY_KEYS, DEFAULTS_KEYS, DOMAIN_KEYS, FOLDERS_KEYS, IMAP_KEYS, MAX_CONNECTIONS, PLATFORM_KEYS,
    PLATFORM_TYPES, Platforms, SECRET_KEYS,
};

/// The new MX Plan's IMAP server, per the `OVHcloud` documentation.
const MXPLAN_IMAP_HOST: &str = "ssl0.ovh.net";

pub(super) fn read_platforms(r: &mut Reader<'_>, top: Fields<'_>) -> Platforms {
    let mut out = Platforms::new();
    let Some(node) = r.required(top, "platforms", "the plan") else {
        return out;
    };
    let Value::Map(entries) = &node.value else {
        r.fields(node, "`platforms`", &[]);
        return out;
    };
    for (key, value) in entries {
        let Some(name) = r.string(key, "a platform name") else {
            continue;
        };
        let what = format!("platform `{name}`");
        let Some(f) = r.fields(value, &what, PLATFORM_KEYS) else {
            continue;
        };
        let Some(type_node) = r.required(f, "type", &what) else {
            continue;
        };
        let Some(kind_name) = r.choice(type_node, "platform type", PLATFORM_TYPES) else {
            continue;
        };
        let text = |r: &mut Reader<'_>, key: &str| {
            r.required(f, key, &what)
                .and_then(|n| r.string(n, &format!("`{key}`")))
        };
        let kind = match kind_name {
            "ovh-mxplan" => text(r, "service").map(|service| PlatformKind::OvhMxplan { service }),
            "ovh-mxplan-legacy" => {
                text(r, "domain").map(|domain| PlatformKind::OvhMxplanLegacy { domain })
            }
            "ovh-exchange" => text(r, "organization").map(|organization| {
                let service = f
                    .get("service")
                    .and_then(|n| r.string(n, "`service`"))
                    .unwrap_or_else(|| organization.clone());
                PlatformKind::OvhExchange {
                    organization,
                    service,
                }
            }),
            _ => Some(PlatformKind::Imap),
        };
        let imap = match f.get("imap") {
            // A block with errors (already reported) still counts as written: the accounts
            // reading from this platform are not told that it has no `imap:` block.
            Some(n) => read_imap(r, n, &what).or_else(|| {
                Some(ImapServer {
                    host: String::new(),
                    port: 993,
                    tls: TlsMode::Implicit,
                    tls_verify: true,
                    max_connections: None,
                })
            }),
            None if kind_name == "imap" => {
                r.required(f, "imap", &what);
                None
            }
            None if kind_name == "ovh-mxplan" => Some(ImapServer {
                host: MXPLAN_IMAP_HOST.to_owned(),
                port: 993,
                tls: TlsMode::Implicit,
                tls_verify: true,
                max_connections: None,
            }),
            None => None,
        };
        if let Some(kind) = kind {
            out.insert(
                name.clone(),
                (
                    Platform { name, kind, imap },
                    Origin::new(r.source, key.span),
                ),
            );
        }
    }
    out
}

fn read_imap(r: &mut Reader<'_>, node: &Node, platform: &str) -> Option<ImapServer> {
    let what = format!("the `imap` block of {platform}");
    let f = r.fields(node, &what, IMAP_KEYS)?;
    let host_node = r.required(f, "host", &what)?;
    let host = r.string(host_node, "`imap.host`")?;
    let tls = match f.get("tls") {
        Some(n) => match r.choice(n, "TLS mode", &["implicit", "starttls", "none"])? {
            "starttls" => TlsMode::Starttls,
            "none" => TlsMode::None,
            _ => TlsMode::Implicit,
        },
        None => TlsMode::Implicit,
    };
    if let Err(why) = check_host(&host) {
        r.error(
            Code::InvalidValue,
            host_node.span,
            format!("`imap.host` {host:?} {why}"),
            "not a host",
        );
        return None;
    }
    let port = match f.get("port") {
        Some(n) => {
            let port = r.integer::<u16>(n, "`imap.port`", "1 to 65535")?;
            if port == 0 {
                r.error(
                    Code::InvalidValue,
                    n.span,
                    "`imap.port` must be 1 to 65535, found 0".to_owned(),
                    "out of range",
                );
                return None;
            }
            port
        }
        None => tls.default_port(),
    };
    let allow_insecure = match f.get("allow-insecure") {
        Some(n) => r.boolean(n, "`imap.allow-insecure`")?,
        None => false,
    };
    let tls_verify = match f.get("tls-verify") {
        Some(n) => r.boolean(n, "`imap.tls-verify`")?,
        None => true,
    };
    let max_connections = match f.get("max-connections") {
        Some(n) => {
            let range = "2 to 256 (a copy holds a connection on each side at once)";
            let v = r.integer::<u16>(n, "`imap.max-connections`", range)?;
            if !MAX_CONNECTIONS.contains(&v) {
                r.error(
                    Code::InvalidValue,
                    n.span,
                    format!("`imap.max-connections` must be {range}, found {v}"),
                    "out of range",
                );
                return None;
            }
            Some(v)
        }
        None => None,
    };
    if tls == TlsMode::None && !allow_insecure {
        let span = f.get("tls").map_or(node.span, |n| n.span);
        r.diags.push(
            Diagnostic::error(Code::Insecure, format!("{platform} would send passwords in clear text"))
                .with_label(r.source, span, "tls: none")
                .with_help("use `tls: implicit` or `starttls`, or write `allow-insecure: true` if this is really wanted"),
        );
    }
    if !tls_verify {
        let span = f.get("tls-verify").map_or(node.span, |n| n.span);
        r.diags.push(
            Diagnostic::warning(Code::Insecure, format!("{platform} does not check the server's certificate"))
                .with_label(r.source, span, "tls-verify: false")
                .with_help("anyone on the path can read the passwords; remove it once the server has a valid certificate"),
        );
    }
    Some(ImapServer {
        host,
        port,
        tls,
        tls_verify,
        max_connections,
    })
}

pub(super) fn read_domains(
    r: &mut Reader<'_>,
    top: Fields<'_>,
    platforms: &Platforms,
) -> Vec<(DomainAttachment, Span)> {
    let mut out: Vec<(DomainAttachment, Span)> = Vec::new();
    let Some(items) = top.get("domains").and_then(|n| r.list(n, "`domains`")) else {
        return out;
    };
    for item in items {
        let Some(f) = r.fields(item, "a domain", DOMAIN_KEYS) else {
            continue;
        };
        let name_node = r.required(f, "name", "a domain");
        let platform_node = r.required(f, "platform", "a domain");
        let domain_type = match f.get("type") {
            Some(n) => match r.choice(n, "domain type", &["authoritative", "non-authoritative"]) {
                Some("authoritative") => DomainType::Authoritative,
                _ => DomainType::NonAuthoritative,
            },
            None => DomainType::NonAuthoritative,
        };
        let (Some(name_node), Some(platform_node)) = (name_node, platform_node) else {
            continue;
        };
        let (Some(name), Some(platform)) = (
            r.string(name_node, "a domain name"),
            r.string(platform_node, "a domain's platform"),
        ) else {
            continue;
        };
        let name = name.to_lowercase();
        if !check_platform_ref(r, platforms, &platform, platform_node.span) {
            continue;
        }
        if let Some((p, _)) = platforms.get(&platform)
            && !matches!(p.kind, PlatformKind::OvhExchange { .. })
        {
            {
                r.diags.push(
                    Diagnostic::error(
                        Code::InvalidValue,
                        format!(
                            "domains are attached to Exchange platforms; `{platform}` is {}",
                            p.kind.type_name()
                        ),
                    )
                    .with_label(
                        r.source,
                        platform_node.span,
                        "not an ovh-exchange platform",
                    ),
                );
                continue;
            }
        }
        if let Some((_, first)) = out.iter().find(|(d, _)| d.name == name) {
            r.diags.push(
                Diagnostic::error(
                    Code::DuplicateDomain,
                    format!("domain {name} is listed twice"),
                )
                .with_label(r.source, name_node.span, "again here")
                .with_label(r.source, *first, "first here"),
            );
            continue;
        }
        out.push((
            DomainAttachment {
                name,
                platform,
                domain_type,
            },
            name_node.span,
        ));
    }
    out
}

/// Account settings that `defaults:` gives every account.
#[derive(Debug, Default)]
pub(super) struct Defaults {
    pub(super) provisional_name: Option<String>,
    pub(super) copy: CopyOptions,
    pub(super) wave: u32,
}

pub(super) fn read_defaults(r: &mut Reader<'_>, top: Fields<'_>) -> Defaults {
    let mut out = Defaults::default();
    let Some(f) = top
        .get("defaults")
        .and_then(|n| r.fields(n, "`defaults`", DEFAULTS_KEYS))
    else {
        return out;
    };
    if let Some(n) = f.get("provisional-name") {
        out.provisional_name = r.string(n, "`provisional-name`");
    }
    if let Some(n) = f.get("wave") {
        out.wave = r.integer(n, "`wave`", "0 or more").unwrap_or(0);
    }
    if let Some(n) = f.get("copy") {
        out.copy = read_copy(r, n, CopyOptions::default());
    }
    out
}

pub(super) fn read_copy(r: &mut Reader<'_>, node: &Node, mut copy: CopyOptions) -> CopyOptions {
    let Some(f) = r.fields(node, "`copy`", COPY_KEYS) else {
        return copy;
    };
    if let Some(n) = f.get("max-message-size") {
        copy.max_message_size = read_size(r, n);
    }
    if let Some(folders) = f
        .get("folders")
        .and_then(|n| r.fields(n, "`copy.folders`", FOLDERS_KEYS))
    {
        if let Some(map) = folders.get("map") {
            if let Value::Map(entries) = &map.value {
                for (k, v) in entries {
                    if let (Some(name), Some(target)) =
                        (r.string(k, "a folder name"), r.string(v, "a folder name"))
                    {
                        if let Some((node, what)) = [(k, "source"), (v, "target")]
                            .into_iter()
                            .find(|(n, _)| matches!(&n.value, Value::Str(s) if s.trim().is_empty()))
                        {
                            r.error(
                                Code::InvalidValue,
                                node.span,
                                format!("a folder map names an empty {what} folder"),
                                "an empty folder name",
                            );
                            continue;
                        }
                        copy.folder_map.insert(name, target);
                    }
                }
            } else {
                r.fields(map, "`copy.folders.map`", &[]);
            }
        }
        for (key, target) in [
            ("exclude", &mut copy.exclude),
            ("include", &mut copy.include),
        ] {
            if let Some(items) = folders
                .get(key)
                .and_then(|n| r.list(n, &format!("`{key}`")))
            {
                *target = items
                    .iter()
                    .filter_map(|n| r.string(n, "a folder pattern"))
                    .collect();
            }
        }
    }
    copy
}

/// `35MB`, `1.5 GiB`, `500000`: a size in bytes.
fn read_size(r: &mut Reader<'_>, node: &Node) -> Option<u64> {
    let parsed = match &node.value {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::Str(s) => parse_size(s),
        _ => None,
    };
    if parsed.is_none() {
        r.error(
            Code::InvalidValue,
            node.span,
            "`max-message-size` must be a size such as 35MB, 20MiB or 1000000".to_owned(),
            "not a size",
        );
    }
    parsed
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = (number * factor).round();
    // The range check makes the cast exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (0.0..1e18).contains(&bytes).then_some(bytes as u64)
}

pub(super) fn read_secret(r: &mut Reader<'_>, node: &Node, what: &str) -> Option<SecretRef> {
    if let Value::Str(_) = node.value {
        r.diags.push(
            Diagnostic::error(Code::Insecure, format!("{what} is written in the plan in clear"))
                .with_secret_label(r.source, node.span, "a password in a plan file")
                .with_help("refer to it instead: `{ env: NAME }`, `{ file: PATH }` or `{ command: \"pass show …\" }`"),
        );
        return None;
    }
    let f = r.fields(node, what, SECRET_KEYS)?;
    let entries = f.entries();
    if entries.len() != 1 {
        r.error(
            Code::InvalidValue,
            node.span,
            format!("{what} must name exactly one of env, file or command"),
            "one key expected",
        );
        return None;
    }
    let (key, value) = &entries[0];
    let text = r.string(value, what)?;
    match &key.value {
        Value::Str(k) if k == "env" => Some(SecretRef::Env(text)),
        Value::Str(k) if k == "file" => Some(SecretRef::File(text)),
        Value::Str(k) if k == "command" => Some(SecretRef::Command(text)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::fixtures::run;
    use super::parse_size;
    use crate::plan::diag::Code;
    use crate::plan::load;
    use crate::plan::source::SourceFile;

    #[test]
    fn max_connections_is_read_and_checked() {
        let text = |value: &str| {
            format!(
                "version: 1\nplatforms:\n  x: {{ type: imap, imap: {{ host: h, max-connections: {value} }} }}\n"
            )
        };
        let (plan, found) = run(&text("3"));
        assert!(found.is_empty(), "{found:?}");
        let imap = plan.expect("plan").platforms["x"].imap.clone();
        assert_eq!(imap.expect("imap").max_connections, Some(3));
        for value in ["1", "300", "-1"] {
            let source = SourceFile::new("p.yaml", text(value).as_str());
            let (plan, diags) = load(&source, &PathBuf::from("p.yaml"));
            assert!(plan.is_none(), "{value}");
            let d = &diags.items[0];
            assert_eq!(d.code, Code::InvalidValue, "{value}");
            assert_eq!(
                d.message,
                format!(
                    "`imap.max-connections` must be 2 to 256 (a copy holds a connection on each \
                     side at once), found {value}"
                )
            );
            assert_eq!(
                &text(value)[d.labels[0].span.range()],
                value,
                "points at the value"
            );
        }
        let (_, found) = run(&text("many"));
        assert_eq!(found[0].0, Code::WrongType);
    }

    #[test]
    fn a_bad_imap_setting_is_not_followed_by_a_missing_imap_block() {
        let text = "version: 1
platforms:
  old: { type: imap, imap: { host: a.example, max-connections: 1 } }
  new: { type: imap, imap: { host: b.example, port: 0x } }
accounts:
  - { address: a@x.example, from: old, to: new, source-password: { env: S }, target-password: { env: T } }
";
        let (plan, found) = run(text);
        assert!(plan.is_none());
        let codes: Vec<Code> = found.iter().map(|f| f.0).collect();
        assert_eq!(codes, [Code::InvalidValue, Code::WrongType], "{found:?}");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("35MB"), Some(35_000_000));
        assert_eq!(parse_size("20 MiB"), Some(20 * 1024 * 1024));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("lots"), None);
    }
}
