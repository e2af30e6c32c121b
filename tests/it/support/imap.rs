//! The small IMAP client layer the support modules share: log in over plain TCP
//! ([`connect`]), check the TLS port against the test CA ([`tls_greeting`]), convert folder names
//! to and from modified UTF-7 ([`encode_folder`], [`decode_folder`]) and flags to their wire form
//! ([`flag_name`]), and run async code from synchronous tests ([`block_on`]).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use async_imap::types::Flag;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// A logged-in session over clear-text TCP (the test servers allow it).
pub type Session = async_imap::Session<TcpStream>;

/// Runs `make()`'s future to completion on a fresh current-thread runtime on its own thread, so
/// it works from plain `#[test]`s and from inside another runtime alike. Panics propagate.
pub fn block_on<F, Fut>(make: F) -> Fut::Output
where
    F: FnOnce() -> Fut + Send,
    Fut: Future,
    Fut::Output: Send,
{
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a tokio runtime")
                .block_on(make())
        });
        match worker.join() {
            Ok(output) => output,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Connects to `addr`, reads the greeting and logs in.
pub async fn connect(addr: SocketAddr, user: &str, password: &str) -> Session {
    let stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to IMAP at {addr}: {e}"));
    let mut client = async_imap::Client::new(stream);
    client
        .read_response()
        .await
        .expect("read the IMAP greeting")
        .expect("the server greets before closing");
    client
        .login(user, password)
        .await
        .unwrap_or_else(|(e, _)| panic!("IMAP LOGIN as {user} at {addr}: {e}"))
}

/// Opens a TLS connection to `addr` as `localhost`, trusting only the PEM certificates in
/// `ca_path`, and returns the IMAP greeting line: proves the certificate chain verifies.
pub async fn tls_greeting(addr: SocketAddr, ca_path: &Path) -> Result<String, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_path).map_err(|e| e.to_string())? {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    let mut line = String::new();
    BufReader::new(tls)
        .read_line(&mut line)
        .await
        .map_err(|e| e.to_string())?;
    Ok(line)
}

/// A UTF-8 folder name in the modified UTF-7 IMAP puts on the wire (RFC 3501 §5.1.3).
pub fn encode_folder(name: &str) -> String {
    utf7_imap::encode_utf7_imap(name.to_owned())
}

/// A folder name from the wire, decoded to UTF-8.
pub fn decode_folder(wire: &str) -> String {
    utf7_imap::decode_utf7_imap(wire.to_owned())
}

/// A flag as written in IMAP (`\Seen`, `$Label1`); `None` for `\Recent` and `\*`, which are
/// not properties of a message a migration can carry.
pub fn flag_name(flag: &Flag<'_>) -> Option<String> {
    Some(match flag {
        Flag::Seen => "\\Seen".to_owned(),
        Flag::Answered => "\\Answered".to_owned(),
        Flag::Flagged => "\\Flagged".to_owned(),
        Flag::Deleted => "\\Deleted".to_owned(),
        Flag::Draft => "\\Draft".to_owned(),
        Flag::Recent | Flag::MayCreate => return None,
        Flag::Custom(name) => name.to_string(),
    })
}
