//! Messages a person can act on (issue 16), seen in a real run.

use super::{SOURCE, Sandbox, text};
use crate::support::corpus::Corpus;
use crate::support::dovecot::Dovecot;

#[test]
fn a_server_certificate_from_an_untrusted_ca_says_how_to_trust_it() {
    let s = Sandbox::new();
    Corpus::with_count(5).seed(&s.dovecot, SOURCE.0, SOURCE.1);
    let plan = s.plan("private-ca", None, "");
    let plan = plan.to_str().expect("utf-8");
    // Another authority than the one that signed the server's certificate.
    let other = Dovecot::start();
    let out = s
        .command(&["apply", plan])
        .env("SSL_CERT_FILE", other.ca_cert_path())
        .output()
        .expect("apply runs");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "while starting TLS: its certificate is signed by an authority this system \
                      does not trust"
        ),
        "{err}"
    );
    assert!(err.contains("SSL_CERT_FILE=bundle.pem"), "{err}");
    assert!(
        err.contains("`tls-verify: false` in the `imap:` block"),
        "{err}"
    );
    // status says the same.
    let status = s.run(&["status", plan]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("SSL_CERT_FILE=bundle.pem"),
        "{}",
        text(&status)
    );
}
