//! Connecting to an IMAP server: TCP, TLS (implicit or STARTTLS, rustls with the system's
//! roots — `SSL_CERT_FILE` is honoured), the greeting, and the login (LOGIN, or AUTHENTICATE
//! PLAIN when the server disables LOGIN).
//!
//! Every network wait is bounded by a timeout, so a silent server ends in a retryable
//! [`ImapError`] instead of a hang.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, pki_types::ServerName};

use super::error::{ImapError, ImapErrorKind};
use super::{activity, trace};
use crate::plan::model::{ImapServer, TlsMode};
use crate::plan::secret::Secret;

/// Longest wait for a connection, the greeting, the TLS handshake or the login.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub use super::transport::Transport;

/// A logged-in IMAP session.
pub type Session = async_imap::Session<Box<dyn Transport>>;

/// `host:port`, as errors name the server.
pub fn server_name(server: &ImapServer) -> String {
    format!("{}:{}", server.host, server.port)
}

/// Connect to `server` and log in as `login`.
pub async fn connect(
    server: &ImapServer,
    login: &str,
    password: &Secret,
) -> Result<Session, ImapError> {
    let name = server_name(server);
    let net = |activity: &str, e: std::io::Error| {
        ImapError::new(ImapErrorKind::Network, &name, activity, e.to_string())
    };
    let tcp = bounded(&name, "connecting", async {
        TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(|e| net("connecting", e))
    })
    .await?;
    let _ = tcp.set_nodelay(true);

    let client = match server.tls {
        TlsMode::Implicit => {
            let tls = handshake(server, &name, tcp).await?;
            let mut client =
                async_imap::Client::new(trace::wrap(activity::wrap(Box::new(tls)), &name));
            read_greeting(&name, &mut client).await?;
            client
        }
        TlsMode::None => {
            let mut client =
                async_imap::Client::new(trace::wrap(activity::wrap(Box::new(tcp)), &name));
            read_greeting(&name, &mut client).await?;
            client
        }
        TlsMode::Starttls => {
            let mut plain = async_imap::Client::new(tcp);
            read_greeting(&name, &mut plain).await?;
            bounded(&name, "starting TLS", async {
                plain
                    .run_command_and_check_ok("STARTTLS", None)
                    .await
                    .map_err(|e| ImapError::from_imap(&name, "starting TLS (STARTTLS)", e))
            })
            .await?;
            let tls = handshake(server, &name, plain.into_inner()).await?;
            async_imap::Client::new(trace::wrap(activity::wrap(Box::new(tls)), &name))
        }
    };
    login_with(&name, client, login, password).await
}

async fn login_with(
    name: &str,
    client: async_imap::Client<Box<dyn Transport>>,
    login: &str,
    password: &Secret,
) -> Result<Session, ImapError> {
    let activity = format!("logging in as {login}");
    let attempt = bounded(name, &activity, async {
        Ok(client.login(login, password.expose()).await)
    })
    .await?;
    match attempt {
        Ok(session) => Ok(session),
        Err((e, client)) => {
            // A server with LOGINDISABLED refuses LOGIN with BAD/NO; PLAIN may still work.
            let disabled = matches!(&e, async_imap::error::Error::Bad(_));
            if disabled {
                let plain = Plain {
                    login: login.to_owned(),
                    password: password.clone(),
                };
                let retry = bounded(name, &activity, async {
                    Ok(client.authenticate("PLAIN", plain).await)
                })
                .await?;
                return retry.map_err(|(e, _)| auth_error(name, &activity, e));
            }
            Err(auth_error(name, &activity, e))
        }
    }
}

fn auth_error(name: &str, activity: &str, e: async_imap::error::Error) -> ImapError {
    let mut err = ImapError::from_imap(name, activity, e);
    if err.kind == ImapErrorKind::Refused {
        err.kind = ImapErrorKind::Auth;
    }
    err
}

/// SASL PLAIN (RFC 4616): `\0login\0password`.
struct Plain {
    login: String,
    password: Secret,
}

impl async_imap::Authenticator for &Plain {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.login.len() + self.password.expose().len() + 2);
        out.push(0);
        out.extend_from_slice(self.login.as_bytes());
        out.push(0);
        out.extend_from_slice(self.password.expose().as_bytes());
        out
    }
}

impl async_imap::Authenticator for Plain {
    type Response = Vec<u8>;
    fn process(&mut self, challenge: &[u8]) -> Vec<u8> {
        (&*self).process(challenge)
    }
}

async fn read_greeting<T>(name: &str, client: &mut async_imap::Client<T>) -> Result<(), ImapError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug,
{
    let greeting = bounded(name, "reading the greeting", async {
        client.read_response().await.map_err(|e| {
            ImapError::new(
                ImapErrorKind::Network,
                name,
                "reading the greeting",
                e.to_string(),
            )
        })
    })
    .await?;
    match greeting {
        Some(_) => Ok(()),
        None => Err(ImapError::new(
            ImapErrorKind::Network,
            name,
            "reading the greeting",
            "the server closed the connection before greeting",
        )),
    }
}

async fn handshake(
    server: &ImapServer,
    name: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ImapError> {
    let config = if server.tls_verify {
        verified_config(name)?
    } else {
        unverified_config()
    };
    let host = ServerName::try_from(server.host.clone())
        .map_err(|e| ImapError::new(ImapErrorKind::Tls, name, "starting TLS", e.to_string()))?;
    bounded(name, "starting TLS", async {
        TlsConnector::from(config)
            .connect(host, tcp)
            .await
            .map_err(|e| {
                let words = tls_failure(&server.host, &e);
                ImapError::new(ImapErrorKind::Tls, name, "starting TLS", words)
            })
    })
    .await
}

/// What a failed TLS handshake means to the person running the plan, and what to do: a
/// certificate from an authority this system does not trust (a private CA, a self-signed
/// certificate) is the common case, and has two answers.
fn tls_failure(host: &str, e: &std::io::Error) -> String {
    use rustls::CertificateError as C;
    let cause = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let Some(rustls::Error::InvalidCertificate(cert)) = cause else {
        return e.to_string();
    };
    let private = "its certificate is signed by an authority this system does not trust (a \
                   private CA or a self-signed certificate). To trust that CA, run with \
                   SSL_CERT_FILE=bundle.pem, a PEM file holding it and the system's roots (e.g. \
                   `cat /etc/ssl/certs/ca-certificates.crt private-ca.pem > bundle.pem`: the \
                   file replaces the system's roots for mailplan); or, to accept an \
                   unauthenticated connection, set `tls-verify: false` in the `imap:` block of \
                   the platform that names this server in the plan";
    match cert {
        C::UnknownIssuer | C::BadSignature => private.to_owned(),
        C::NotValidForName | C::NotValidForNameContext { .. } => format!(
            "its certificate is not valid for the name {host}: check `host:` in the platform's \
             `imap:` block (the name the certificate gives, not an IP address or an alias)"
        ),
        C::Expired | C::ExpiredContext { .. } => {
            "its certificate has expired (or this machine's clock is wrong); the server's \
             administrator must renew it, or `tls-verify: false` in the platform's `imap:` \
             block accepts it unauthenticated"
                .to_owned()
        }
        C::NotValidYet | C::NotValidYetContext { .. } => {
            "its certificate is not valid yet (is this machine's clock right?)".to_owned()
        }
        other => format!(
            "its certificate was refused ({other}); SSL_CERT_FILE names the authorities to \
             trust, and `tls-verify: false` in the platform's `imap:` block turns the check off"
        ),
    }
}

/// The system's roots (or `SSL_CERT_FILE`), loaded once per process.
fn verified_config(name: &str) -> Result<Arc<rustls::ClientConfig>, ImapError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "no trusted certificate authority found on this system{}",
                    found
                        .errors
                        .first()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ));
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(|m| ImapError::new(ImapErrorKind::Tls, name, "starting TLS", m))
}

/// `tls-verify: false`: encryption without authentication of the server, written in the plan.
fn unverified_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(crate::providers::tls::AnyCertificate(
                    provider,
                )))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Run `fut` with [`CONNECT_TIMEOUT`].
async fn bounded<T>(
    name: &str,
    activity: &str,
    fut: impl Future<Output = Result<T, ImapError>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(ImapError::timeout(name, activity, CONNECT_TIMEOUT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_untrusted_certificate_says_how_to_trust_its_ca_or_where_to_turn_the_check_off() {
        let refused = |cert: rustls::CertificateError| {
            let e = std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(cert),
            );
            tls_failure("imap.example", &e)
        };
        let words = refused(rustls::CertificateError::UnknownIssuer);
        assert!(words.contains("SSL_CERT_FILE=bundle.pem"), "{words}");
        assert!(
            words.contains("`tls-verify: false` in the `imap:` block"),
            "{words}"
        );
        let words = refused(rustls::CertificateError::NotValidForName);
        assert!(
            words.contains("not valid for the name imap.example"),
            "{words}"
        );
        let words = refused(rustls::CertificateError::Expired);
        assert!(words.contains("expired"), "{words}");
        // Anything else keeps its own words.
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        assert_eq!(tls_failure("imap.example", &reset), "reset by peer");
    }
}
