//! Where a `PostgreSQL` store is: the `postgres://` URL, the libpq variables that fill what it
//! leaves out, libpq's `sslmode` over rustls, and the pool of connections made from them. No
//! message built here shows the password.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::{Host, SslMode};
use tokio_rustls::rustls;

use super::PgError;

/// Whether `--state` names a `PostgreSQL` database rather than a file.
pub fn is_postgres_url(state: &str) -> bool {
    let lower = state.get(..13).unwrap_or(state).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// libpq's `sslmode`, all of it (`tokio-postgres` knows the first three only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Option<TlsMode> {
        Some(match value {
            "disable" => TlsMode::Disable,
            // `allow` tries without TLS first; plain then encrypted is never better than
            // `prefer` for a client that can do both.
            "allow" | "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// Where a `PostgreSQL` store is: the connection settings, the TLS mode and the schema.
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    tls: TlsMode,
    root_cert: Option<PathBuf>,
    schema: String,
    shown: String,
}

impl std::fmt::Debug for PgTarget {
    // `tokio_postgres::Config`'s own Debug hides the password too; this shows only `shown`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("shown", &self.shown)
            .finish_non_exhaustive()
    }
}

/// The default schema of mailplan's tables.
pub const DEFAULT_SCHEMA: &str = "mailplan";

impl PgTarget {
    /// Read a `postgres://` URL, the libpq variables filling what it leaves out.
    pub fn parse(url: &str) -> Result<PgTarget, PgError> {
        PgTarget::parse_with(url, |name| std::env::var(name).ok())
    }

    /// [`PgTarget::parse`] with the environment given (tests).
    pub fn parse_with(
        url: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<PgTarget, PgError> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let url_err = |message: String| PgError::Url {
            shown: without_password(base),
            message,
        };
        let mut kept = Vec::new();
        let (mut sslmode, mut root_cert, mut schema) = (None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| url_err(format!("the value of `{key}` is not UTF-8")))?
                .into_owned();
            match key {
                "sslmode" => sslmode = Some(decoded),
                "sslrootcert" => root_cert = Some(decoded),
                "schema" => schema = Some(decoded),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        // tokio-postgres's messages name the option, never its value.
        let mut config =
            tokio_postgres::Config::from_str(&rest).map_err(|e| url_err(e.to_string()))?;
        if config.get_hosts().is_empty() {
            let hosts = env("PGHOST").unwrap_or_else(|| "localhost".to_owned());
            for host in hosts.split(',') {
                config.host(host);
            }
        }
        if config.get_ports().is_empty()
            && let Some(ports) = env("PGPORT")
        {
            for port in ports.split(',') {
                let port = port
                    .trim()
                    .parse()
                    .map_err(|_| url_err(format!("PGPORT is not a port number: {port}")))?;
                config.port(port);
            }
        }
        if config.get_user().is_none() {
            let user = env("PGUSER")
                .or_else(|| env("USER"))
                .or_else(|| env("LOGNAME"))
                .ok_or_else(|| url_err("no user: give one in the URL or in PGUSER".to_owned()))?;
            config.user(&user);
        }
        if config.get_password().is_none()
            && let Some(password) = env("PGPASSWORD")
        {
            config.password(password);
        }
        if config.get_dbname().is_none()
            && let Some(db) = env("PGDATABASE")
        {
            config.dbname(&db);
        }
        let mode_text = sslmode
            .or_else(|| env("PGSSLMODE"))
            .unwrap_or_else(|| "prefer".to_owned());
        let tls = TlsMode::parse(&mode_text).ok_or_else(|| {
            url_err(format!(
                "sslmode `{mode_text}` is not one of disable, allow, prefer, require, verify-ca, \
                 verify-full"
            ))
        })?;
        let root_cert = root_cert
            .or_else(|| env("PGSSLROOTCERT"))
            .filter(|path| !path.is_empty())
            .map(PathBuf::from);
        let schema = schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
        if !valid_schema(&schema) {
            return Err(url_err(format!(
                "schema `{schema}` is not a plain lower-case name (a-z, 0-9, _, at most 63)"
            )));
        }
        config.ssl_mode(match tls {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("mailplan");
        }
        let mut options = config.get_options().unwrap_or_default().to_owned();
        if !options.is_empty() {
            options.push(' ');
        }
        // The schema name is checked above: nothing in it needs quoting.
        let _ = write!(options, "-c search_path={schema}");
        config.options(&options);
        let shown = show(&config, tls, &schema);
        Ok(PgTarget {
            config,
            tls,
            root_cert,
            schema,
            shown,
        })
    }

    /// The store as messages name it: the URL without the password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    pub fn tls_mode(&self) -> TlsMode {
        self.tls
    }

    /// A pool of at most `size` connections; none is made yet. Its sessions' commits are
    /// `Durable` (`synchronous_commit=on`, whatever the server's default: the WAL is on disk
    /// when the commit returns), `Prompt` (`synchronous_commit=off`: a crash of the server, not
    /// of mailplan, may lose the last few commits, never corrupt anything) or `ReadOnly`.
    pub(super) fn pool(&self, size: usize, sessions: Sessions) -> Result<Pool, PgError> {
        let mut config = self.config.clone();
        let setting = match sessions {
            Sessions::Durable => Some("synchronous_commit=on"),
            Sessions::Prompt => Some("synchronous_commit=off"),
            // The server refuses any write, whatever a caller tries.
            Sessions::ReadOnly => Some("default_transaction_read_only=on"),
        };
        if let Some(setting) = setting {
            let options = format!("{} -c {setting}", config.get_options().unwrap_or_default());
            config.options(&options);
        }
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls_config()?);
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(60)))
            .create_timeout(Some(Duration::from_secs(15)))
            .build()
            .map_err(|e| PgError::Store {
                shown: self.shown.clone(),
                message: e.to_string(),
            })
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, PgError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.url_error(e.to_string()))?;
        let mode = match (self.tls, &self.root_cert) {
            (TlsMode::Prefer | TlsMode::Require, Some(_)) => TlsMode::VerifyCa,
            (mode, _) => mode,
        };
        let config = match mode {
            TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(crate::providers::tls::AnyCertificate(
                    provider,
                )))
                .with_no_client_auth(),
            TlsMode::VerifyCa | TlsMode::VerifyFull => {
                let roots = Arc::new(self.roots()?);
                let webpki =
                    rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                        .build()
                        .map_err(|e| self.url_error(e.to_string()))?;
                if mode == TlsMode::VerifyFull {
                    builder.with_webpki_verifier(webpki).with_no_client_auth()
                } else {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                        .with_no_client_auth()
                }
            }
        };
        Ok(config)
    }

    fn roots(&self) -> Result<rustls::RootCertStore, PgError> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let mut roots = rustls::RootCertStore::empty();
        let (certs, place) = match &self.root_cert {
            Some(path) => (
                CertificateDer::pem_file_iter(path)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|e| self.url_error(format!("sslrootcert {}: {e}", path.display())))?,
                format!("sslrootcert {}", path.display()),
            ),
            None => (
                rustls_native_certs::load_native_certs().certs,
                "this system".to_owned(),
            ),
        };
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(self.url_error(format!(
                "no certificate authority found in {place} to check the server's certificate"
            )));
        }
        Ok(roots)
    }

    fn url_error(&self, message: String) -> PgError {
        PgError::Url {
            shown: self.shown.clone(),
            message,
        }
    }
}

/// `[a-z_][a-z0-9_]{0,62}`: safe to write into SQL and into `search_path` unquoted.
fn valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

/// A URL's text without the password, for a message about a URL that could not be read: the
/// `user:password@` part loses everything from the first `:`.
fn without_password(base: &str) -> String {
    let Some((scheme, rest)) = base.split_once("://") else {
        return "(a URL that could not be read; not shown, it may hold a password)".to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        None => base.to_owned(),
    }
}

/// `postgres://user@host:port,host2/db?sslmode=…&schema=…`, from the settings, no password.
fn show(config: &tokio_postgres::Config, tls: TlsMode, schema: &str) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            match ports.get(i).or_else(|| ports.first()) {
                Some(port) => format!("{name}:{port}"),
                None => name,
            }
        })
        .collect();
    format!(
        "postgres://{}@{}/{}?sslmode={}&schema={schema}",
        config.get_user().unwrap_or_default(),
        hosts.join(","),
        config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or_default(),
        tls.name()
    )
}

/// `verify-ca`: the chain must lead to a trusted root; the name in it may be another.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// How a pool's sessions commit (see [`PgTarget::pool`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sessions {
    Durable,
    Prompt,
    ReadOnly,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn postgres_urls_are_told_from_paths() {
        assert!(is_postgres_url("postgres://h/db"));
        assert!(is_postgres_url("PostgreSQL://h/db"));
        assert!(!is_postgres_url("postgres.db"));
        assert!(!is_postgres_url(".mailplan/p.db"));
    }

    #[test]
    fn the_url_wins_and_the_libpq_variables_fill_the_rest() {
        let vars = [
            ("PGHOST", "db.internal"),
            ("PGPORT", "6432"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "s3cret-env"),
            ("PGDATABASE", "envdb"),
            ("PGSSLMODE", "verify-full"),
        ];
        let t = PgTarget::parse_with("postgres://", env(&vars)).expect("parse");
        assert_eq!(
            t.shown(),
            "postgres://envuser@db.internal:6432/envdb?sslmode=verify-full&schema=mailplan"
        );
        assert_eq!(t.config.get_password(), Some(&b"s3cret-env"[..]));
        let t = PgTarget::parse_with(
            "postgresql://alice:pw%40x@pg.example:5433/mig?sslmode=disable&schema=wave_2\
             &connect_timeout=3",
            env(&vars),
        )
        .expect("parse");
        assert_eq!(
            t.shown(),
            "postgres://alice@pg.example:5433/mig?sslmode=disable&schema=wave_2"
        );
        assert_eq!(t.config.get_password(), Some(&b"pw@x"[..]));
        assert_eq!(t.tls_mode(), TlsMode::Disable);
        assert_eq!(t.schema(), "wave_2");
        assert_eq!(
            t.config.get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        assert_eq!(t.config.get_options(), Some("-c search_path=wave_2"));
        // Nothing given at all: libpq's defaults.
        let t = PgTarget::parse_with("postgres://", env(&[("USER", "me")])).expect("parse");
        assert_eq!(
            t.shown(),
            "postgres://me@localhost/me?sslmode=prefer&schema=mailplan"
        );
    }

    #[test]
    fn no_error_about_a_url_shows_its_password() {
        for url in [
            "postgres://u:hunter2@h/db?sslmode=sometimes",
            "postgres://u:hunter2@h/db?schema=Bad-Name",
            "postgres://u:hunter2@h:notaport/db",
            "postgres://u:hunter2@h/db?nonsense=1",
            "postgres://u:hunter2@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        ] {
            let err = match PgTarget::parse_with(url, env(&[])) {
                Err(e) => e,
                Ok(t) => t.tls_config().expect_err(url),
            };
            let text = format!("{err} {err:?}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(matches!(err, PgError::Url { .. }), "{err:?}");
        }
        let t = PgTarget::parse_with("postgres://u:hunter2@h/db", env(&[])).expect("parse");
        assert!(!format!("{t:?} {}", t.shown()).contains("hunter2"));
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(valid_schema("mailplan"));
        assert!(valid_schema("_m2"));
        for bad in ["", "2m", "Mail", "a-b", "a;drop", &"a".repeat(64)] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }

    #[test]
    fn every_sslmode_gets_a_tls_configuration() {
        for mode in ["disable", "allow", "prefer", "require"] {
            let t = PgTarget::parse_with(&format!("postgres://u@h/db?sslmode={mode}"), env(&[]))
                .expect("parse");
            t.tls_config().expect(mode);
        }
    }
}
