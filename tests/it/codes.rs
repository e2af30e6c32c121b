//! Every diagnostic code, produced by the real executable and located: for each code a plan that
//! triggers it, and the file, line and column its primary label points at (`--format json`).

use mailplan::plan::diag::Code;
use std::process::Command;

/// Every code, by an exhaustive match: a new code does not compile until it is added here, and
/// the test below then fails until it has a case.
fn all_codes() -> Vec<Code> {
    let codes = [
        Code::Unreadable,
        Code::Syntax,
        Code::DuplicateKey,
        Code::WrongType,
        Code::UnknownKey,
        Code::MissingKey,
        Code::InvalidValue,
        Code::UnsupportedVersion,
        Code::UnknownPlatform,
        Code::DuplicateAccount,
        Code::InvalidAddress,
        Code::DomainNotAttached,
        Code::SameSourceAndTarget,
        Code::UnsupportedFlow,
        Code::ProvisionalNameCollision,
        Code::UnknownAccount,
        Code::AfterCycle,
        Code::AfterLaterWave,
        Code::CsvImport,
        Code::UnresolvedSecret,
        Code::Insecure,
        Code::DuplicateDomain,
    ];
    for code in codes {
        match code {
            Code::Unreadable
            | Code::Syntax
            | Code::DuplicateKey
            | Code::WrongType
            | Code::UnknownKey
            | Code::MissingKey
            | Code::InvalidValue
            | Code::UnsupportedVersion
            | Code::UnknownPlatform
            | Code::DuplicateAccount
            | Code::InvalidAddress
            | Code::DomainNotAttached
            | Code::SameSourceAndTarget
            | Code::UnsupportedFlow
            | Code::ProvisionalNameCollision
            | Code::UnknownAccount
            | Code::AfterCycle
            | Code::AfterLaterWave
            | Code::CsvImport
            | Code::UnresolvedSecret
            | Code::Insecure
            | Code::DuplicateDomain => {}
        }
    }
    codes.to_vec()
}

const HEADER: &str = "version: 1
platforms:
  old: { type: ovh-mxplan, service: mxplan-ab12345-1 }
  legacy: { type: ovh-mxplan-legacy, domain: acme.example }
  exchange:
    type: ovh-exchange
    organization: hosted-ab12345-1
    imap: { host: ex5.mail.ovh.net }
  isp: { type: imap, imap: { host: imap.isp.example } }
domains:
  - { name: acme.example, platform: exchange }
accounts:
";

/// (code, plan bytes, CSV file `a.csv` if any, file the label is in, line, column)
type Case = (Code, Vec<u8>, Option<&'static str>, &'static str, u64, u64);

fn account(line: &str) -> Vec<u8> {
    format!("{HEADER}  - {{ {line} }}\n").into_bytes()
}

fn cases() -> Vec<Case> {
    vec![
        (Code::Unreadable, b"version: 1\nname: caf\xe9\n".to_vec(), None, "p.yaml", 2, 10),
        (Code::Syntax, b"version: 1\nplatforms:\n  a: \"x\n".to_vec(), None, "p.yaml", 3, 6),
        (Code::DuplicateKey, b"version: 1\nplatforms: {}\nplatforms: {}\n".to_vec(), None, "p.yaml", 3, 1),
        (Code::WrongType, b"version: 1\nplatforms: []\n".to_vec(), None, "p.yaml", 2, 12),
        (Code::UnknownKey, b"version: 1\nplatforms: {}\nacounts: []\n".to_vec(), None, "p.yaml", 3, 1),
        (Code::MissingKey, b"name: x\nplatforms: {}\n".to_vec(), None, "p.yaml", 1, 1),
        (Code::InvalidValue, b"version: 1\nplatforms:\n  x: { type: exchange }\n".to_vec(), None, "p.yaml", 3, 14),
        (Code::UnsupportedVersion, b"version: 2\nplatforms: {}\n".to_vec(), None, "p.yaml", 1, 10),
        (Code::UnknownPlatform, account("address: b@acme.example, from: olde, to: exchange"), None, "p.yaml", 13, 38),
        (
            Code::DuplicateAccount,
            [account("address: d@acme.example, from: old, to: exchange"), b"  - { address: D@acme.example, from: old, to: exchange }\n".to_vec()].concat(),
            None, "p.yaml", 14, 16,
        ),
        (Code::InvalidAddress, account("address: not-an-address, from: old, to: exchange"), None, "p.yaml", 13, 16),
        (Code::DomainNotAttached, account("address: e@other.example, from: old, to: exchange"), None, "p.yaml", 13, 48),
        (Code::SameSourceAndTarget, account("address: f@acme.example, from: isp, to: isp"), None, "p.yaml", 13, 47),
        (Code::UnsupportedFlow, account("address: g@acme.example, from: exchange, to: legacy"), None, "p.yaml", 13, 38),
        (
            Code::ProvisionalNameCollision,
            [account("address: h@acme.example, from: old, to: exchange, provisional-name: \"{local}2\""), b"  - { address: h2@acme.example, from: old, to: exchange }\n".to_vec()].concat(),
            None, "p.yaml", 13, 75,
        ),
        (Code::UnknownAccount, account("address: k@acme.example, from: isp, to: exchange, after: [nobody@acme.example]"), None, "p.yaml", 13, 65),
        (
            Code::AfterCycle,
            [account("address: i@acme.example, from: isp, to: exchange, after: [j@acme.example]"), b"  - { address: j@acme.example, from: isp, to: exchange, after: [i@acme.example] }\n".to_vec()].concat(),
            None, "p.yaml", 13, 65,
        ),
        (
            Code::AfterLaterWave,
            [account("address: l@acme.example, from: isp, to: exchange, after: [m@acme.example]"), b"  - { address: m@acme.example, from: isp, to: exchange, wave: 2 }\n".to_vec()].concat(),
            None, "p.yaml", 13, 65,
        ),
        (
            Code::CsvImport,
            [HEADER.as_bytes(), b"  - import: a.csv\n"].concat(),
            Some("address,from,to\nx@acme.example,isp,exchange\ny@acme.example,isp\n"),
            "a.csv", 3, 1,
        ),
        (Code::UnresolvedSecret, account("address: n@acme.example, from: isp, to: exchange, source-password: { env: MAILPLAN_CODES_UNSET_9 }, target-password: { env: MAILPLAN_CODES_UNSET_9 }"), None, "p.yaml", 13, 74),
        (Code::Insecure, b"version: 1\nplatforms:\n  x: { type: imap, imap: { host: h, tls: none } }\n".to_vec(), None, "p.yaml", 3, 42),
        (
            Code::DuplicateDomain,
            HEADER.replace("accounts:\n", "  - { name: ACME.example, platform: exchange }\n").into_bytes(),
            None, "p.yaml", 12, 13,
        ),
    ]
}

#[test]
fn every_code_is_reported_at_its_place() {
    let cases = cases();
    for code in all_codes() {
        assert!(cases.iter().any(|c| c.0 == code), "no case for {code}");
    }
    for (code, plan, csv, file, line, column) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("p.yaml"), plan).expect("write");
        if let Some(csv) = csv {
            std::fs::write(dir.path().join("a.csv"), csv).expect("write");
        }
        let out = Command::new(env!("CARGO_BIN_EXE_mailplan"))
            .current_dir(dir.path())
            .args(["validate", "p.yaml", "--format", "json"])
            .env_remove("MAILPLAN_CODES_UNSET_9")
            .output()
            .expect("runs");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let found: Vec<(&str, &str, u64, u64)> = report["diagnostics"]
            .as_array()
            .expect("list")
            .iter()
            .map(|d| {
                let l = &d["labels"][0];
                (
                    d["code"].as_str().unwrap_or_default(),
                    l["file"].as_str().unwrap_or_default(),
                    l["line"].as_u64().unwrap_or_default(),
                    l["column"].as_u64().unwrap_or_default(),
                )
            })
            .collect();
        assert!(
            found.contains(&(code.as_str(), file, line, column)),
            "{code} at {file}:{line}:{column} not in {found:?}"
        );
        let expected_exit = if code == Code::UnresolvedSecret { 0 } else { 2 };
        assert_eq!(out.status.code(), Some(expected_exit), "{code}");
    }
}
