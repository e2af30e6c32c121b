//! The `PostgreSQL` state store: the same records as the `SQLite` one ([`crate::exec::state`]),
//! kept in a database that several `mailplan apply` processes, on several machines, share.
//!
//! Entry points: [`PgTarget::parse`] reads `--state postgres://…` (or `postgresql://…`) and the
//! libpq variables; [`PgStore::open`] (a run that writes) and [`PgStore::open_read_only`]
//! (`status`, `report`) connect, check and migrate; then the operations of `StateStore`, with
//! the same names, semantics and records, as `async fn`s, plus the worker and lease operations
//! that cooperating workers need ([`PgStore::register_worker`], [`PgStore::take_step`],
//! [`PgStore::renew`], [`PgStore::release`], [`PgStore::expire_leases`]).
//!
//! **Client**: `tokio-postgres` with a `deadpool-postgres` pool. `tokio-postgres` is the
//! maintained native async client the rest of the stack fits (tokio, rustls through
//! `tokio-postgres-rustls`), with no compile-time database and no macro layer; `sqlx` would
//! bring a second query layer and its own TLS and runtime features for the dozen statements here.
//! The pool lets the copy's writes, a lease renewal and a status read run at once without a
//! mutex around one connection.
//!
//! **Where**: `postgres://user@host:port/db?sslmode=…&schema=…`; what the URL leaves out comes
//! from `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`,
//! as with libpq (host `localhost`, user `$USER` when neither says). `sslmode` is libpq's:
//! `disable`; `prefer` (the default) and `require` encrypt without checking the certificate
//! (unless `sslrootcert` is given: then as `verify-ca`); `verify-ca` checks the chain;
//! `verify-full` the chain and the host name. The roots are `sslrootcert` (a PEM file) or the
//! system's (`SSL_CERT_FILE` honoured). The password is never shown: messages name the store by
//! [`PgTarget::shown`], built from the parsed settings without it.
//!
//! **Invariants**: everything lives in one `PostgreSQL` schema of mailplan's own (`schema=`,
//! default `mailplan`, a plain lower-case identifier), set as the connections' `search_path`.
//! Its `schema_version` row says it is mailplan's and which version ([`SCHEMA_VERSION`], older
//! ones migrated in place); its `meta` row the plan it belongs to. Before anything is written,
//! [`PgStore::open`] refuses (and leaves untouched) a schema holding another program's tables,
//! one made by a newer mailplan, and another plan's store. Creation and migration hold a
//! transaction-scoped advisory lock, so workers starting together migrate once. Leases are
//! timed by the database's clock, never the workers', so machines with skewed clocks agree.
//! Secrets are never written: only addresses, folder names, counters and servers' words.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::Serialize;
use tokio_postgres::config::{Host, SslMode};
use tokio_rustls::rustls;

use crate::exec::state::{FolderRow, IssueRow, LockHolder, StepRecord, now, timestamp};
use crate::providers::imap::copy::{FolderCounts, FolderRecord, IssueKind};

/// The errors of the `PostgreSQL` store. Every message names the store by its URL without the
/// password; the codes are the `SQLite` store's where the meaning is the same.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PgError {
    #[error("state store {shown}: {message}")]
    #[diagnostic(
        code(exec::state_url),
        help(
            "write it as postgres://USER@HOST:PORT/DATABASE?sslmode=verify-full&schema=mailplan; \
             PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE and PGSSLMODE fill what it leaves out"
        )
    )]
    Url { shown: String, message: String },
    #[error("state store {shown}: cannot connect: {message}")]
    #[diagnostic(
        code(exec::state_unreachable),
        help(
            "check that PostgreSQL runs there and accepts this user (pg_hba.conf), the host and \
             port, the password (in the URL or PGPASSWORD; ~/.pgpass is not read) and sslmode"
        )
    )]
    Unreachable { shown: String, message: String },
    #[error("state store {shown}: {message}")]
    #[diagnostic(code(exec::state))]
    Store { shown: String, message: String },
    #[error("the state {shown} is locked by {host}, pid {pid}, since {since}")]
    #[diagnostic(
        code(exec::locked),
        help(
            "another `mailplan apply` is running on this plan; wait for it, or, if that process \
             is gone (another machine, a reboot), run again with --break-lock"
        )
    )]
    Locked {
        shown: String,
        host: String,
        pid: u32,
        since: String,
    },
    #[error(
        "the schema `{schema}` of {shown} is not a mailplan state store ({what}); it was left \
         untouched"
    )]
    #[diagnostic(
        code(exec::state_foreign),
        help(
            "give mailplan a schema of its own: add schema=NAME to the URL (a new one is created)"
        )
    )]
    Foreign {
        shown: String,
        schema: String,
        what: String,
    },
    #[error(
        "the state store {shown} has schema version {found}, newer than this mailplan's \
         ({supported}); it was left untouched"
    )]
    #[diagnostic(
        code(exec::state_version),
        help("use the mailplan release that wrote it, or a newer one")
    )]
    Newer {
        shown: String,
        found: i64,
        supported: i64,
    },
    #[error(
        "the state store {shown} belongs to the plan `{found}`, not `{plan}`; it was left untouched"
    )]
    #[diagnostic(
        code(exec::state_plan),
        help(
            "each plan keeps its own store: give another schema (schema=NAME in the URL), or run \
             the plan `{found}`"
        )
    )]
    OtherPlan {
        shown: String,
        found: String,
        plan: String,
    },
}

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

    /// A pool of at most `size` connections; none is made yet.
    fn pool(&self, size: usize, read_only: bool) -> Result<Pool, PgError> {
        let mut config = self.config.clone();
        if read_only {
            // The server refuses any write, whatever a caller tries.
            let options = format!(
                "{} -c default_transaction_read_only=on",
                config.get_options().unwrap_or_default()
            );
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
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
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

/// `prefer` and `require` as libpq does them: encrypted, the certificate not checked (the
/// signatures of the handshake still are).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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

/// The version this mailplan writes in `schema_version`: one per entry of `MIGRATIONS`.
pub const SCHEMA_VERSION: i64 = 1;
/// What `schema_version.application` says in a mailplan store.
const APPLICATION: &str = "mailplan";
/// `MIGRATIONS[v]` takes a store from version `v` to `v + 1` (0: an empty schema). Version 1:
/// the `SQLite` store's tables at its version 2 (folder records with routes), the `workers`
/// of a shared run and the lease of each step; `seq` keeps the order steps were first written
/// in, which `SQLite` reads from its `rowid`.
const MIGRATIONS: &[&str] = &["
CREATE TABLE schema_version (
    id INTEGER PRIMARY KEY CHECK (id = 1), application TEXT NOT NULL, version BIGINT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE lock (
    id INTEGER PRIMARY KEY CHECK (id = 1), host TEXT NOT NULL, pid BIGINT NOT NULL,
    since TEXT NOT NULL);
CREATE TABLE workers (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, host TEXT NOT NULL, pid BIGINT NOT NULL,
    started TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    heartbeat TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
CREATE TABLE steps (
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    key TEXT PRIMARY KEY, account TEXT, kind TEXT NOT NULL, fingerprint TEXT NOT NULL,
    status TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, started_at BIGINT,
    finished_at BIGINT, duration_ms BIGINT, output TEXT, error TEXT,
    leased_by BIGINT REFERENCES workers (id) ON DELETE SET NULL, lease_until TIMESTAMPTZ);
CREATE INDEX steps_leases ON steps (leased_by) WHERE leased_by IS NOT NULL;
CREATE TABLE folders (
    account TEXT NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL,
    route TEXT NOT NULL DEFAULT '',
    uidvalidity BIGINT NOT NULL DEFAULT 0, last_uid BIGINT NOT NULL DEFAULT 0,
    pending BOOLEAN NOT NULL DEFAULT FALSE, failed_now BIGINT NOT NULL DEFAULT 0,
    copied BIGINT NOT NULL DEFAULT 0, failed BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0, updated_at BIGINT,
    PRIMARY KEY (account, source));
CREATE TABLE issues (
    account TEXT NOT NULL, folder TEXT NOT NULL, uid BIGINT NOT NULL, kind TEXT NOT NULL,
    detail TEXT NOT NULL, PRIMARY KEY (account, folder, uid));
"];

/// A worker's id in the `workers` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct WorkerId(pub i64);

/// A worker of a shared run, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerRow {
    pub id: WorkerId,
    pub host: String,
    pub pid: u32,
    /// Seconds since the epoch, by the database's clock.
    pub started: i64,
    pub heartbeat: i64,
    /// The keys of the steps it holds a lease on, in plan order.
    pub steps: Vec<String>,
}

/// A step a worker took: its key and what it needs to start it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leased {
    pub key: String,
    pub account: Option<String>,
    pub kind: String,
    pub fingerprint: String,
    /// `ready`, or `running` when it was taken over from a worker whose lease expired (the
    /// step then resumes from its folder records).
    pub status: String,
}

/// The store. `Sync`: its pool serves concurrent callers.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: Pool,
    shown: String,
}

/// The pool size of a store that writes: the copy's writes, the lease renewals and a read.
const POOL_SIZE: usize = 8;

impl PgStore {
    /// Connect (creating the schema when there is none) for a run of the plan `plan` that
    /// writes. Refuses, before writing anything, a schema that is not mailplan's, one of a newer
    /// mailplan, another plan's store; migrates an older schema.
    pub async fn open(target: &PgTarget, plan: &str) -> Result<PgStore, PgError> {
        let store = PgStore {
            pool: target.pool(POOL_SIZE, false)?,
            shown: target.shown.clone(),
        };
        let mut client = store.connect().await?;
        let tx = client.transaction().await.map_err(|e| store.error(&e))?;
        // Workers that start together: one creates or migrates, the others wait and then see it.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('mailplan store ' || $1::text))",
            &[&target.schema],
        )
        .await
        .map_err(|e| store.error(&e))?;
        let version = match store.inspect(&tx, &target.schema).await? {
            Found::Nothing => 0,
            Found::Store { version, plan: p } => {
                store.check_identity(version, p, plan)?;
                version
            }
        };
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", target.schema))
            .await
            .map_err(|e| store.error(&e))?;
        for (v, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            tx.batch_execute(sql).await.map_err(|e| store.error(&e))?;
            let next = i64::try_from(v + 1).unwrap_or(i64::MAX);
            tx.execute(
                "INSERT INTO schema_version (id, application, version) VALUES (1, $1, $2)
                 ON CONFLICT (id) DO UPDATE SET version = $2",
                &[&APPLICATION, &next],
            )
            .await
            .map_err(|e| store.error(&e))?;
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('plan_name', $1)
             ON CONFLICT (key) DO UPDATE SET value = $1",
            &[&plan],
        )
        .await
        .map_err(|e| store.error(&e))?;
        tx.commit().await.map_err(|e| store.error(&e))?;
        Ok(store)
    }

    /// Connect to an existing store of the plan `plan` without writing anything (`status`,
    /// `report`, dry runs): `None` when there is none yet; the same refusals as
    /// [`PgStore::open`]. The server itself refuses writes on these connections.
    pub async fn open_read_only(target: &PgTarget, plan: &str) -> Result<Option<PgStore>, PgError> {
        let store = PgStore {
            pool: target.pool(2, true)?,
            shown: target.shown.clone(),
        };
        let client = store.connect().await?;
        match store.inspect(&client, &target.schema).await? {
            Found::Nothing => Ok(None),
            Found::Store { version, plan: p } => {
                store.check_identity(version, p, plan)?;
                drop(client);
                Ok(Some(store))
            }
        }
    }

    /// The store as messages name it (the URL without the password).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    async fn connect(&self) -> Result<deadpool_postgres::Object, PgError> {
        self.pool.get().await.map_err(|e| {
            let message = match e {
                deadpool_postgres::PoolError::Backend(e) => words(&e),
                other => other.to_string(),
            };
            PgError::Unreachable {
                shown: self.shown.clone(),
                message,
            }
        })
    }

    fn error(&self, e: &tokio_postgres::Error) -> PgError {
        PgError::Store {
            shown: self.shown.clone(),
            message: words(e),
        }
    }

    /// What the schema holds, read without writing anything.
    async fn inspect(
        &self,
        client: &impl deadpool_postgres::GenericClient,
        schema: &str,
    ) -> Result<Found, PgError> {
        let tables: Vec<String> = client
            .query(
                "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = $1
                 ORDER BY tablename",
                &[&schema],
            )
            .await
            .map_err(|e| self.error(&e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if tables.is_empty() {
            return Ok(Found::Nothing);
        }
        let foreign = |what: String| PgError::Foreign {
            shown: self.shown.clone(),
            schema: schema.to_owned(),
            what,
        };
        if !tables.iter().any(|t| t == "schema_version") {
            let mut named: Vec<&str> = tables.iter().map(String::as_str).collect();
            named.truncate(5);
            return Err(foreign(format!(
                "it holds another program's tables: {}",
                named.join(", ")
            )));
        }
        let row = client
            .query_opt(
                "SELECT application, version FROM schema_version WHERE id = 1",
                &[],
            )
            .await
            .map_err(|e| foreign(words(&e)))?;
        let Some(row) = row else {
            return Err(foreign("its schema_version table is empty".to_owned()));
        };
        let (application, version): (String, i64) = (row.get(0), row.get(1));
        if application != APPLICATION {
            return Err(foreign(format!("its schema_version says `{application}`")));
        }
        let plan = if tables.iter().any(|t| t == "meta") {
            client
                .query_opt("SELECT value FROM meta WHERE key = 'plan_name'", &[])
                .await
                .map_err(|e| self.error(&e))?
                .map(|r| r.get(0))
        } else {
            None
        };
        Ok(Found::Store { version, plan })
    }

    fn check_identity(
        &self,
        version: i64,
        found: Option<String>,
        plan: &str,
    ) -> Result<(), PgError> {
        if version > SCHEMA_VERSION {
            return Err(PgError::Newer {
                shown: self.shown.clone(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        match found {
            Some(found) if found != plan => Err(PgError::OtherPlan {
                shown: self.shown.clone(),
                found,
                plan: plan.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, PgError> {
        let client = self.connect().await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.error(&e))?;
        client
            .execute(&statement, params)
            .await
            .map_err(|e| self.error(&e))
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, PgError> {
        let client = self.connect().await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.error(&e))?;
        client
            .query(&statement, params)
            .await
            .map_err(|e| self.error(&e))
    }

    /// Take the run lock, or say who holds it. A lock left by a dead process of this host is
    /// taken over; `force` takes over any lock. (A shared run's workers take leases instead.)
    pub async fn lock(&self, host: &str, pid: u32, force: bool) -> Result<(), PgError> {
        let mut client = self.connect().await?;
        let tx = client.transaction().await.map_err(|e| self.error(&e))?;
        // Row locks cannot guard a row that is not there yet: lock the table for this one
        // short transaction, as SQLite's IMMEDIATE transaction does.
        tx.batch_execute("LOCK TABLE lock IN EXCLUSIVE MODE")
            .await
            .map_err(|e| self.error(&e))?;
        let held = tx
            .query_opt("SELECT host, pid, since FROM lock WHERE id = 1", &[])
            .await
            .map_err(|e| self.error(&e))?;
        if let Some(row) = held {
            let holder = LockHolder {
                host: row.get(0),
                pid: to_u32(row.get(1)),
                since: row.get(2),
            };
            let stale = holder.host == host && (holder.pid == pid || !holder.alive(host));
            if !stale && !force {
                return Err(PgError::Locked {
                    shown: self.shown.clone(),
                    host: holder.host,
                    pid: holder.pid,
                    since: holder.since,
                });
            }
        }
        tx.execute(
            "INSERT INTO lock (id, host, pid, since) VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET host = $1, pid = $2, since = $3",
            &[&host, &i64::from(pid), &timestamp(now())],
        )
        .await
        .map_err(|e| self.error(&e))?;
        tx.commit().await.map_err(|e| self.error(&e))
    }

    /// Who holds the run lock, if anyone.
    pub async fn lock_holder(&self) -> Result<Option<LockHolder>, PgError> {
        Ok(self
            .query("SELECT host, pid, since FROM lock WHERE id = 1", &[])
            .await?
            .first()
            .map(|r| LockHolder {
                host: r.get(0),
                pid: to_u32(r.get(1)),
                since: r.get(2),
            }))
    }

    pub async fn unlock(&self, pid: u32) -> Result<(), PgError> {
        self.execute("DELETE FROM lock WHERE pid = $1", &[&i64::from(pid)])
            .await
            .map(drop)
    }

    pub async fn meta(&self, key: &str) -> Result<Option<String>, PgError> {
        Ok(self
            .query("SELECT value FROM meta WHERE key = $1", &[&key])
            .await?
            .first()
            .map(|r| r.get(0)))
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), PgError> {
        self.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = $2",
            &[&key, &value],
        )
        .await
        .map(drop)
    }

    pub async fn step(&self, key: &str) -> Result<Option<StepRecord>, PgError> {
        Ok(self
            .query(
                "SELECT key, account, kind, fingerprint, status, attempts, started_at, \
                 finished_at, duration_ms, output, error FROM steps WHERE key = $1",
                &[&key],
            )
            .await?
            .first()
            .map(step_row))
    }

    /// Every step, in the order they were first written.
    pub async fn steps(&self) -> Result<Vec<StepRecord>, PgError> {
        Ok(self
            .query(
                "SELECT key, account, kind, fingerprint, status, attempts, started_at, \
                 finished_at, duration_ms, output, error FROM steps ORDER BY seq",
                &[],
            )
            .await?
            .iter()
            .map(step_row)
            .collect())
    }

    /// A step starts: status `running`, one more attempt (the first of a new round after
    /// `done`).
    pub async fn step_started(
        &self,
        key: &str,
        account: Option<&str>,
        kind: &str,
        fingerprint: &str,
    ) -> Result<(), PgError> {
        self.execute(
            "INSERT INTO steps (key, account, kind, fingerprint, status, attempts, started_at)
             VALUES ($1, $2, $3, $4, 'running', 1, $5)
             ON CONFLICT (key) DO UPDATE SET fingerprint = $4, status = 'running',
               attempts = CASE WHEN steps.status = 'done' THEN 1 ELSE steps.attempts + 1 END,
               started_at = $5, finished_at = NULL, error = NULL",
            &[&key, &account, &kind, &fingerprint, &now()],
        )
        .await
        .map(drop)
    }

    /// A running step tries again after a network error or a "try later" answer.
    pub async fn step_retried(&self, key: &str) -> Result<(), PgError> {
        self.execute(
            "UPDATE steps SET attempts = attempts + 1 WHERE key = $1",
            &[&key],
        )
        .await
        .map(drop)
    }

    /// A step ends (`done`, `failed`, `skipped`, `interrupted`).
    pub async fn step_finished(
        &self,
        key: &str,
        status: &str,
        duration_ms: Option<i64>,
        output: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), PgError> {
        self.execute(
            "UPDATE steps SET status = $2, finished_at = $3, duration_ms = $4,
               output = COALESCE($5, output), error = $6 WHERE key = $1",
            &[&key, &status, &now(), &duration_ms, &output, &error],
        )
        .await
        .map(drop)
    }

    /// A step that never started because a dependency failed.
    pub async fn step_skipped(
        &self,
        key: &str,
        account: Option<&str>,
        kind: &str,
        fingerprint: &str,
        reason: &str,
    ) -> Result<(), PgError> {
        self.execute(
            "INSERT INTO steps (key, account, kind, fingerprint, status, error)
             VALUES ($1, $2, $3, $4, 'skipped', $5)
             ON CONFLICT (key) DO UPDATE SET status = 'skipped', error = $5
             WHERE steps.status <> 'done'",
            &[&key, &account, &kind, &fingerprint, &reason],
        )
        .await
        .map(drop)
    }

    /// The record of a folder copied along `route` to `target`; none when it was copied along
    /// another route or to another folder (the plan changed since).
    pub async fn folder(
        &self,
        account: &str,
        source: &str,
        target: &str,
        route: &str,
    ) -> Result<Option<FolderRecord>, PgError> {
        Ok(self
            .query(
                "SELECT uidvalidity, last_uid, pending, failed_now FROM folders
                 WHERE account = $1 AND source = $2 AND target = $3 AND route = $4",
                &[&account, &source, &target, &route],
            )
            .await?
            .first()
            .map(|r| FolderRecord {
                uidvalidity: to_u32(r.get(0)),
                last_uid: to_u32(r.get(1)),
                pending: r.get(2),
                failed: to_u64(r.get(3)),
            }))
    }

    /// The batch marker, written before a group's first APPEND: committed (`PostgreSQL`'s
    /// default `synchronous_commit` flushes the WAL before the commit returns) before any
    /// message is sent. The folder is pending, and its record then belongs to `route` and
    /// `target`.
    pub async fn begin_batch(
        &self,
        account: &str,
        source: &str,
        target: &str,
        route: &str,
        uidvalidity: u32,
    ) -> Result<(), PgError> {
        self.execute(
            "INSERT INTO folders (account, source, target, route, uidvalidity, pending,
               updated_at)
             VALUES ($1, $2, $3, $6, $4, TRUE, $5)
             ON CONFLICT (account, source) DO UPDATE SET target = $3, route = $6,
               pending = TRUE, updated_at = $5",
            &[
                &account,
                &source,
                &target,
                &i64::from(uidvalidity),
                &now(),
                &route,
            ],
        )
        .await
        .map(drop)
    }

    /// After a batch (or a pass that had nothing to send): the folder's new mark along `route`
    /// to `target`, and what the batch did (added to the totals).
    pub async fn end_batch(
        &self,
        account: &str,
        source: &str,
        target: &str,
        route: &str,
        record: FolderRecord,
        counts: &FolderCounts,
    ) -> Result<(), PgError> {
        self.execute(
            "INSERT INTO folders (account, source, target, route, uidvalidity, last_uid,
               pending, failed_now, copied, failed, bytes, updated_at)
             VALUES ($1, $2, $11, $12, $3, $4, $10, $5, $6, $7, $8, $9)
             ON CONFLICT (account, source) DO UPDATE SET target = $11, route = $12,
               uidvalidity = $3, last_uid = $4, pending = $10, failed_now = $5,
               copied = folders.copied + $6, failed = folders.failed + $7,
               bytes = folders.bytes + $8, updated_at = $9",
            &[
                &account,
                &source,
                &i64::from(record.uidvalidity),
                &i64::from(record.last_uid),
                &to_i64(record.failed),
                &to_i64(counts.copied),
                &to_i64(counts.failed),
                &to_i64(counts.bytes),
                &now(),
                &record.pending,
                &target,
                &route,
            ],
        )
        .await
        .map(drop)
    }

    pub async fn issue(
        &self,
        account: &str,
        folder: &str,
        uid: u32,
        kind: IssueKind,
        detail: &str,
    ) -> Result<(), PgError> {
        self.execute(
            "INSERT INTO issues (account, folder, uid, kind, detail) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (account, folder, uid) DO UPDATE SET kind = $4, detail = $5",
            &[&account, &folder, &i64::from(uid), &kind.name(), &detail],
        )
        .await
        .map(drop)
    }

    pub async fn clear_issues(&self, account: &str, folder: &str) -> Result<(), PgError> {
        self.execute(
            "DELETE FROM issues WHERE account = $1 AND folder = $2",
            &[&account, &folder],
        )
        .await
        .map(drop)
    }

    pub async fn folders(&self, account: &str) -> Result<Vec<FolderRow>, PgError> {
        Ok(self
            .query(
                "SELECT account, source, target, uidvalidity, last_uid, pending, failed_now,
                   copied, failed, bytes FROM folders WHERE account = $1 ORDER BY source",
                &[&account],
            )
            .await?
            .iter()
            .map(|r| FolderRow {
                account: r.get(0),
                source: r.get(1),
                target: r.get(2),
                record: FolderRecord {
                    uidvalidity: to_u32(r.get(3)),
                    last_uid: to_u32(r.get(4)),
                    pending: r.get(5),
                    failed: to_u64(r.get(6)),
                },
                copied: to_u64(r.get(7)),
                failed: to_u64(r.get(8)),
                bytes: to_u64(r.get(9)),
            })
            .collect())
    }

    pub async fn issues(&self, account: &str) -> Result<Vec<IssueRow>, PgError> {
        Ok(self
            .query(
                "SELECT account, folder, uid, kind, detail FROM issues WHERE account = $1
                 ORDER BY folder, uid",
                &[&account],
            )
            .await?
            .iter()
            .map(|r| IssueRow {
                account: r.get(0),
                folder: r.get(1),
                uid: to_u32(r.get(2)),
                kind: r.get(3),
                detail: r.get(4),
            })
            .collect())
    }

    // ---- Workers and leases (issue 19's shared runs) ----

    /// A worker joins the run: its row, with the database's time as `started` and `heartbeat`.
    pub async fn register_worker(&self, host: &str, pid: u32) -> Result<WorkerId, PgError> {
        let rows = self
            .query(
                "INSERT INTO workers (host, pid) VALUES ($1, $2) RETURNING id",
                &[&host, &i64::from(pid)],
            )
            .await?;
        Ok(WorkerId(rows.first().map_or(0, |r| r.get(0))))
    }

    /// The worker is alive: its heartbeat is now. `false` when its row is gone (it was
    /// retired as dead by [`PgStore::expire_leases`]): it must stop taking steps.
    pub async fn heartbeat(&self, worker: WorkerId) -> Result<bool, PgError> {
        Ok(self
            .execute(
                "UPDATE workers SET heartbeat = clock_timestamp() WHERE id = $1",
                &[&worker.0],
            )
            .await?
            == 1)
    }

    /// A worker leaves: its leases are released and its row removed.
    pub async fn retire_worker(&self, worker: WorkerId) -> Result<(), PgError> {
        // ON DELETE SET NULL clears `leased_by`; the lease time goes with it.
        self.execute(
            "UPDATE steps SET lease_until = NULL WHERE leased_by = $1",
            &[&worker.0],
        )
        .await?;
        self.execute("DELETE FROM workers WHERE id = $1", &[&worker.0])
            .await
            .map(drop)
    }

    /// The workers of the run and the steps each holds, oldest first.
    pub async fn workers(&self) -> Result<Vec<WorkerRow>, PgError> {
        let rows = self
            .query(
                "SELECT w.id, w.host, w.pid,
                   extract(epoch FROM w.started)::bigint, extract(epoch FROM w.heartbeat)::bigint,
                   COALESCE(array_agg(s.key ORDER BY s.seq) FILTER (WHERE s.key IS NOT NULL),
                            '{}')
                 FROM workers w LEFT JOIN steps s ON s.leased_by = w.id
                 GROUP BY w.id ORDER BY w.id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| WorkerRow {
                id: WorkerId(r.get(0)),
                host: r.get(1),
                pid: to_u32(r.get(2)),
                started: r.get(3),
                heartbeat: r.get(4),
                steps: r.get(5),
            })
            .collect())
    }

    /// A step is ready to run (its dependencies are done): recorded as `ready` for any worker
    /// to take, unless it is done, already waiting or in a worker's hands.
    pub async fn step_ready(
        &self,
        key: &str,
        account: Option<&str>,
        kind: &str,
        fingerprint: &str,
    ) -> Result<(), PgError> {
        self.execute(
            "INSERT INTO steps (key, account, kind, fingerprint, status)
             VALUES ($1, $2, $3, $4, 'ready')
             ON CONFLICT (key) DO UPDATE SET status = 'ready', fingerprint = $4
             WHERE steps.status NOT IN ('done', 'ready') AND steps.leased_by IS NULL",
            &[&key, &account, &kind, &fingerprint],
        )
        .await
        .map(drop)
    }

    /// Take one step for `worker`, leased for `lease`: the first ready step no worker holds,
    /// or a step whose holder's lease ran out or was freed by [`PgStore::expire_leases`] (it is
    /// `running` when that worker died in it: in a shared run every running step is leased, so
    /// a running step without a live lease is a lost worker's).
    /// Rows another taker is locking are skipped (`FOR UPDATE SKIP LOCKED`), so takers never
    /// wait on each other and never get the same step. `None` when nothing is to be taken.
    pub async fn take_step(
        &self,
        worker: WorkerId,
        lease: Duration,
    ) -> Result<Option<Leased>, PgError> {
        let rows = self
            .query(
                "UPDATE steps SET leased_by = $1,
                   lease_until = clock_timestamp() + $2 * interval '1 millisecond'
                 WHERE key = (
                   SELECT key FROM steps
                   WHERE status IN ('ready', 'running')
                     AND (leased_by IS NULL OR lease_until < clock_timestamp())
                   ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING key, account, kind, fingerprint, status",
                &[&worker.0, &millis(lease)],
            )
            .await?;
        Ok(rows.first().map(|r| Leased {
            key: r.get(0),
            account: r.get(1),
            kind: r.get(2),
            fingerprint: r.get(3),
            status: r.get(4),
        }))
    }

    /// Extend `worker`'s lease on `key` to `lease` from now. `false` when the worker no longer
    /// holds it (it expired and another worker took it): the worker must stop that step.
    pub async fn renew(
        &self,
        worker: WorkerId,
        key: &str,
        lease: Duration,
    ) -> Result<bool, PgError> {
        Ok(self
            .execute(
                "UPDATE steps SET lease_until = clock_timestamp() + $3 * interval '1 millisecond'
                 WHERE key = $2 AND leased_by = $1",
                &[&worker.0, &key, &millis(lease)],
            )
            .await?
            == 1)
    }

    /// `worker` lets go of `key` (after recording its outcome, or on a clean stop).
    pub async fn release(&self, worker: WorkerId, key: &str) -> Result<(), PgError> {
        self.execute(
            "UPDATE steps SET leased_by = NULL, lease_until = NULL
             WHERE key = $2 AND leased_by = $1",
            &[&worker.0, &key],
        )
        .await
        .map(drop)
    }

    /// Clear the leases that ran out, and retire the workers whose heartbeat is older than
    /// `dead_after` (their remaining leases go with them). Returns the keys set free, in plan
    /// order. [`PgStore::take_step`] takes expired steps over by itself; this is the sweep
    /// that makes `status` true and frees what a lost worker held in the database.
    pub async fn expire_leases(&self, dead_after: Duration) -> Result<Vec<String>, PgError> {
        let mut client = self.connect().await?;
        let tx = client.transaction().await.map_err(|e| self.error(&e))?;
        let mut freed: Vec<(i64, String)> = tx
            .query(
                "UPDATE steps SET leased_by = NULL, lease_until = NULL
                 WHERE key IN (
                   SELECT key FROM steps
                   WHERE leased_by IS NOT NULL AND (lease_until < clock_timestamp()
                     OR leased_by IN (SELECT id FROM workers
                       WHERE heartbeat < clock_timestamp() - $1 * interval '1 millisecond'))
                   FOR UPDATE SKIP LOCKED)
                 RETURNING seq, key",
                &[&millis(dead_after)],
            )
            .await
            .map_err(|e| self.error(&e))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        tx.execute(
            "DELETE FROM workers
             WHERE heartbeat < clock_timestamp() - $1 * interval '1 millisecond'",
            &[&millis(dead_after)],
        )
        .await
        .map_err(|e| self.error(&e))?;
        tx.commit().await.map_err(|e| self.error(&e))?;
        freed.sort();
        Ok(freed.into_iter().map(|(_, key)| key).collect())
    }
}

/// What a schema holds.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Nothing,
    Store { version: i64, plan: Option<String> },
}

fn step_row(r: &tokio_postgres::Row) -> StepRecord {
    StepRecord {
        key: r.get(0),
        account: r.get(1),
        kind: r.get(2),
        fingerprint: r.get(3),
        status: r.get(4),
        attempts: to_u32(r.get(5)),
        started_at: r.get(6),
        finished_at: r.get(7),
        duration_ms: r.get(8),
        output: r.get(9),
        error: r.get(10),
    }
}

/// The columns are `BIGINT` for `u32` and `u64` values mailplan wrote itself: in range.
fn to_u32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or_default()
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A client error in plain words: the server's message (and detail) for a database error,
/// else the error and its causes (`error connecting to server: Connection refused`).
fn words(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            let _ = write!(text, " ({detail})");
        }
        return text;
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            let _ = write!(text, ": {said}");
        }
        source = cause.source();
    }
    text
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
    fn there_is_one_migration_per_schema_version() {
        assert_eq!(i64::try_from(MIGRATIONS.len()), Ok(SCHEMA_VERSION));
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
