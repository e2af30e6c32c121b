//! Endpoint and credentials, found exactly as the official OVH clients (python-ovh, go-ovh) find
//! them.
//!
//! Entry points: [`Endpoint::parse`] (a name such as `ovh-eu`, or any value containing `/` taken
//! as a literal base URL, for the simulator) and [`load`], which reads a [`ConfigSources`]: the
//! environment and the `ovh.conf` files.
//!
//! Precedence, per key:
//! 1. the endpoint given explicitly (the plan's `ovh: { endpoint }`, `--endpoint`) wins for the
//!    endpoint only;
//! 2. the environment: `OVH_ENDPOINT`, `OVH_APPLICATION_KEY`, `OVH_APPLICATION_SECRET`,
//!    `OVH_CONSUMER_KEY`;
//! 3. the files `/etc/ovh.conf`, then `~/.ovh.conf`, then `./ovh.conf`, a later file overriding
//!    an earlier one key by key: `[default] endpoint=…`, and the keys in the section named after
//!    the endpoint (`[ovh-eu] application_key=…`);
//! 4. the endpoint defaults to `ovh-eu` (as go-ovh does).
//!
//! The files are read with the `configparser` crate, set up as Python's `configparser` (which
//! python-ovh uses) reads them. Writing a consumer key ([`save_consumer_key`], for
//! `ovh login --save`) edits the text line by line instead ([`with_ini_key`]): the INI crates
//! (`configparser`, `rust-ini`) write a file back from their map, which drops its comments and
//! blank lines, and the user's other sections and notes must stay as they were.
//!
//! Invariant: the secret and the consumer key are [`Secret`]s from the moment they are read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::plan::secret::Secret;

use super::error::OvhError;

/// The endpoint names of the official clients (python-ovh, go-ovh, node-ovh) and their base URLs.
pub const KNOWN_ENDPOINTS: &[(&str, &str)] = &[
    ("ovh-eu", "https://eu.api.ovh.com/1.0"),
    ("ovh-ca", "https://ca.api.ovh.com/1.0"),
    ("ovh-us", "https://api.us.ovhcloud.com/1.0"),
    ("kimsufi-eu", "https://eu.api.kimsufi.com/1.0"),
    ("kimsufi-ca", "https://ca.api.kimsufi.com/1.0"),
    ("soyoustart-eu", "https://eu.api.soyoustart.com/1.0"),
    ("soyoustart-ca", "https://ca.api.soyoustart.com/1.0"),
    // node-ovh's aliases.
    ("sys-eu", "https://eu.api.soyoustart.com/1.0"),
    ("sys-ca", "https://ca.api.soyoustart.com/1.0"),
    ("ks-eu", "https://eu.api.kimsufi.com/1.0"),
    ("ks-ca", "https://ca.api.kimsufi.com/1.0"),
];

/// The endpoint used when none is configured anywhere.
pub const DEFAULT_ENDPOINT: &str = "ovh-eu";

/// An API endpoint: the name it was given (also the `ovh.conf` section of its keys) and its base
/// URL, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub base_url: String,
}

impl Endpoint {
    /// A known name, or any value containing `/` as a literal base URL (go-ovh's rule).
    pub fn parse(value: &str) -> Result<Endpoint, OvhError> {
        let value = value.trim();
        if value.contains('/') {
            if !(value.starts_with("http://") || value.starts_with("https://")) {
                return Err(OvhError::config(format!(
                    "endpoint `{value}` is not an http(s) URL"
                )));
            }
            return Ok(Endpoint {
                name: value.to_owned(),
                base_url: value.trim_end_matches('/').to_owned(),
            });
        }
        KNOWN_ENDPOINTS
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(name, url)| Endpoint {
                name: (*name).to_owned(),
                base_url: (*url).to_owned(),
            })
            .ok_or_else(|| {
                let names: Vec<&str> = KNOWN_ENDPOINTS.iter().map(|(n, _)| *n).collect();
                OvhError::config(format!(
                    "unknown endpoint `{value}`: use one of {} or a base URL",
                    names.join(", ")
                ))
            })
    }
}

/// Where a credential value was found, to say so in messages (never the value itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Given explicitly (plan, command line).
    Explicit,
    /// An environment variable.
    Env(String),
    /// A configuration file.
    File(PathBuf),
    /// The built-in default.
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Explicit => f.write_str("the plan or command line"),
            Origin::Env(name) => write!(f, "${name}"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Default => f.write_str("the default"),
        }
    }
}

/// The endpoint and the keys that sign requests.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub endpoint: Endpoint,
    pub endpoint_origin: Origin,
    /// The application key identifies the application; it is sent in clear in every request.
    pub application_key: String,
    pub application_secret: Secret,
    /// Absent until `mailplan ovh login` has made one; only unauthenticated calls work without.
    pub consumer_key: Option<Secret>,
    /// Where the consumer key came from, when there is one.
    pub consumer_key_origin: Option<Origin>,
}

/// Where [`load`] looks: an environment lookup and the configuration files, lowest priority
/// first. Tests pass their own, so that no test mutates the process environment.
pub struct ConfigSources<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub files: Vec<PathBuf>,
}

impl std::fmt::Debug for ConfigSources<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSources")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl ConfigSources<'static> {
    /// The real places: the process environment and `/etc/ovh.conf`, `~/.ovh.conf`,
    /// `./ovh.conf`.
    pub fn system() -> Self {
        ConfigSources {
            env: &process_env,
            files: default_files(std::env::home_dir().as_deref(), Path::new(".")),
        }
    }
}

/// The configuration files, lowest priority first.
pub fn default_files(home: Option<&Path>, cwd: &Path) -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("/etc/ovh.conf")];
    if let Some(home) = home {
        files.push(home.join(".ovh.conf"));
    }
    files.push(cwd.join("ovh.conf"));
    files
}

/// One `key=value` with where it came from.
type Values = HashMap<(String, String), (String, PathBuf)>;

/// Find the endpoint and the keys. `endpoint` is the explicit choice (plan or command line), if
/// any. A missing consumer key is not an error here (see [`Credentials::consumer_key`]).
pub fn load(sources: &ConfigSources<'_>, endpoint: Option<&str>) -> Result<Credentials, OvhError> {
    let mut files: Values = HashMap::new();
    for path in &sources.files {
        let text = match fs_err::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(OvhError::config(e.to_string())),
        };
        let rows = parse_ini(&text)
            .map_err(|e| OvhError::config(format!("cannot read {}: {e}", path.display())))?;
        for (section, key, value) in rows {
            files.insert((section, key), (value, path.clone()));
        }
    }
    let get = |section: &str, key: &str| -> Option<(String, Origin)> {
        let var = format!("OVH_{}", key.to_ascii_uppercase());
        if let Some(v) = (sources.env)(&var).filter(|v| !v.is_empty()) {
            return Some((v, Origin::Env(var)));
        }
        files
            .get(&(section.to_owned(), key.to_owned()))
            .filter(|(v, _)| !v.is_empty())
            .map(|(v, path)| (v.clone(), Origin::File(path.clone())))
    };

    let (endpoint_value, endpoint_origin) = match endpoint {
        Some(e) => (e.to_owned(), Origin::Explicit),
        None => get("default", "endpoint")
            .unwrap_or_else(|| (DEFAULT_ENDPOINT.to_owned(), Origin::Default)),
    };
    let parsed = Endpoint::parse(&endpoint_value)
        .map_err(|e| OvhError::config(format!("{} (from {endpoint_origin})", e.message)))?;
    let section = parsed.name.clone();

    let application_key = get(&section, "application_key");
    let application_secret = get(&section, "application_secret");
    let consumer_key = get(&section, "consumer_key");
    let oauth = get(&section, "client_id").or_else(|| get(&section, "client_secret"));

    let looked = || {
        let files: Vec<String> = sources
            .files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!(
            "looked in $OVH_APPLICATION_KEY/$OVH_APPLICATION_SECRET and in section [{section}] \
             of {}",
            files.join(", ")
        )
    };
    match (application_key, application_secret) {
        (Some((key, _)), Some((secret, _))) => {
            if let Some((_, origin)) = oauth {
                return Err(OvhError::config(format!(
                    "both an application key and OAuth2 client credentials are configured for \
                     {section} (client_id/client_secret in {origin}); the two methods cannot be \
                     mixed"
                )));
            }
            let consumer_key_origin = consumer_key.as_ref().map(|(_, o)| o.clone());
            Ok(Credentials {
                endpoint: parsed,
                endpoint_origin,
                application_key: key,
                application_secret: Secret::new(secret),
                consumer_key: consumer_key.map(|(v, _)| Secret::new(v)),
                consumer_key_origin,
            })
        }
        (Some((_, origin)), None) => Err(OvhError::config(format!(
            "an application key is configured for {section} (in {origin}) but no application \
             secret; they must be given together"
        ))),
        (None, Some((_, origin))) => Err(OvhError::config(format!(
            "an application secret is configured for {section} (in {origin}) but no application \
             key; they must be given together"
        ))),
        (None, None) if oauth.is_some() => Err(OvhError::config(format!(
            "only OAuth2 client credentials (client_id/client_secret) are configured for \
             {section}; mailplan signs requests with an application key, secret and consumer \
             key ({})",
            looked()
        ))),
        (None, None) => Err(OvhError::config(format!(
            "no application key and secret for {section}: {}",
            looked()
        ))),
    }
}

/// `text` (an `ovh.conf`) with `key=value` in `[section]`: an existing `key` line of that section
/// replaced, else the line added right after the section's header, else the section appended.
/// Every other line is kept as it was.
pub fn with_ini_key(text: &str, section: &str, key: &str, value: &str) -> String {
    let line_key = |line: &str| {
        let at = line.find(['=', ':'])?;
        Some(line[..at].trim().to_ascii_lowercase())
    };
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut header_at = None;
    let mut done = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim().to_owned());
            out.push(line.to_owned());
            if name.trim() == section && header_at.is_none() {
                header_at = Some(out.len());
            }
            continue;
        }
        let in_section = current.as_deref() == Some(section);
        if in_section
            && !done
            && !line.starts_with([' ', '\t'])
            && !trimmed.starts_with(['#', ';'])
            && line_key(trimmed).as_deref() == Some(key)
        {
            out.push(format!("{key}={value}"));
            done = true;
            continue;
        }
        out.push(line.to_owned());
    }
    if !done {
        match header_at {
            Some(at) => out.insert(at, format!("{key}={value}")),
            None => {
                if out.last().is_some_and(|l| !l.trim().is_empty()) {
                    out.push(String::new());
                }
                out.push(format!("[{section}]"));
                out.push(format!("{key}={value}"));
            }
        }
    }
    out.join("\n") + "\n"
}

/// Store a consumer key in the `ovh.conf` at `path` under `[section]` (see [`with_ini_key`]): the
/// file is written whole to a temporary file beside it, mode 0600, then renamed over it.
pub fn save_consumer_key(path: &Path, section: &str, key: &Secret) -> Result<(), String> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    use std::io::Write as _;
    let old = match fs_err::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.to_string()),
    };
    let text = with_ini_key(&old, section, "consumer_key", key.expose());
    let tmp = path.with_extension("conf.mailplan-tmp");
    let mut file = fs_err::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| e.to_string())?;
    file.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())?;
    drop(file);
    fs_err::rename(&tmp, path).map_err(|e| e.to_string())
}

/// The `key=value` rows of an INI text, in file order, read as python-ovh reads `ovh.conf`
/// (Python's `configparser`, through the `configparser` crate modelled on it): `[section]`,
/// `key = value` or `key: value`, keys lower-cased and section names kept as written, values
/// trimmed, whole-line comments with `#` or `;` and no inline comments (a `#` is part of a value).
/// Lines before the first section and keys without a value (such as an indented continuation
/// line) are ignored; a line the crate cannot read (an empty key) is an error.
fn parse_ini(text: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut defaults = configparser::ini::Ini::new_cs().defaults();
    defaults.enable_inline_comments = false;
    defaults.multiline = false;
    // The crate files lines before any header under its default section; a name with a line
    // break can never come from a `[header]` line, so those lines stay apart and are dropped.
    "\n(before any section)".clone_into(&mut defaults.default_section);
    let mut ini = configparser::ini::Ini::new_from_defaults(defaults);
    let sections = ini.read(text.to_owned())?;
    let mut out = Vec::new();
    for (section, values) in sections {
        if section == ini.defaults().default_section {
            continue;
        }
        for (key, value) in values {
            if let Some(value) = value {
                out.push((section.clone(), key.to_ascii_lowercase(), value));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_replaced_in_its_section_added_to_it_or_to_a_new_one() {
        let text = "[default]\nendpoint=ovh-eu\n\n[ovh-eu]\napplication_key=ak\nconsumer_key = old\n[ovh-ca]\nconsumer_key=ca\n";
        let replaced = with_ini_key(text, "ovh-eu", "consumer_key", "new");
        assert_eq!(
            replaced,
            "[default]\nendpoint=ovh-eu\n\n[ovh-eu]\napplication_key=ak\nconsumer_key=new\n[ovh-ca]\nconsumer_key=ca\n"
        );
        let added = with_ini_key(
            "[ovh-eu]\napplication_key=ak\n",
            "ovh-eu",
            "consumer_key",
            "k",
        );
        assert_eq!(added, "[ovh-eu]\nconsumer_key=k\napplication_key=ak\n");
        let new_section = with_ini_key(
            "[default]\nendpoint=ovh-eu\n",
            "ovh-eu",
            "consumer_key",
            "k",
        );
        assert_eq!(
            new_section,
            "[default]\nendpoint=ovh-eu\n\n[ovh-eu]\nconsumer_key=k\n"
        );
        assert_eq!(
            with_ini_key("", "ovh-eu", "consumer_key", "k"),
            "[ovh-eu]\nconsumer_key=k\n"
        );
        // What is written is what the reader finds.
        let read = parse_ini(&replaced).expect("readable");
        assert!(read.contains(&("ovh-eu".into(), "consumer_key".into(), "new".into())));
        assert!(read.contains(&("ovh-ca".into(), "consumer_key".into(), "ca".into())));
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write the test file");
        path
    }

    #[test]
    fn known_names_and_literal_urls() {
        let e = Endpoint::parse("ovh-ca").expect("known");
        assert_eq!(e.base_url, "https://ca.api.ovh.com/1.0");
        let e = Endpoint::parse("ovh-us").expect("known");
        assert_eq!(e.base_url, "https://api.us.ovhcloud.com/1.0");
        let e = Endpoint::parse("http://127.0.0.1:8080/1.0/").expect("url");
        assert_eq!(e.base_url, "http://127.0.0.1:8080/1.0");
        assert_eq!(e.name, "http://127.0.0.1:8080/1.0/");
        let err = Endpoint::parse("ovh-mars").expect_err("unknown");
        assert!(
            err.message.contains("ovh-eu, ovh-ca, ovh-us"),
            "{}",
            err.message
        );
        assert!(Endpoint::parse("ftp://x/1.0").is_err());
    }

    #[test]
    fn files_are_read_lowest_priority_first_and_override_key_by_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let etc = write(
            dir.path(),
            "etc.conf",
            "[default]\nendpoint=ovh-ca\n[ovh-ca]\napplication_key=etc-ak\napplication_secret=etc-as\nconsumer_key=etc-ck\n",
        );
        let home = write(
            dir.path(),
            "home.conf",
            "[ovh-ca]\n; a comment\napplication_secret = home-as\n",
        );
        let cwd = write(dir.path(), "cwd.conf", "[ovh-ca]\nconsumer_key: cwd-ck\n");
        let missing = dir.path().join("missing.conf");
        let sources = ConfigSources {
            env: &no_env,
            files: vec![etc.clone(), missing, home.clone(), cwd.clone()],
        };
        let c = load(&sources, None).expect("loads");
        assert_eq!(c.endpoint.name, "ovh-ca");
        assert_eq!(c.endpoint_origin, Origin::File(etc));
        assert_eq!(c.application_key, "etc-ak");
        assert_eq!(c.application_secret.expose(), "home-as");
        assert_eq!(c.consumer_key.as_ref().map(Secret::expose), Some("cwd-ck"));
        assert_eq!(c.consumer_key_origin, Some(Origin::File(cwd)));
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it_without_its_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        for text in [
            "[ovh-eu]\napplication_secret=s3cr3t\n=orphan\n",
            "[ovh-eu\napplication_secret=s3cr3t\n",
        ] {
            let conf = write(dir.path(), "bad.conf", text);
            let sources = ConfigSources {
                env: &no_env,
                files: vec![conf.clone()],
            };
            let err = load(&sources, None).expect_err("unreadable");
            assert!(
                err.message.contains(&conf.display().to_string()),
                "{}",
                err.message
            );
            assert!(!err.message.contains("s3cr3t"), "{}", err.message);
        }
    }

    #[test]
    fn values_keep_a_hash_and_a_semicolon_as_python_reads_them() {
        let rows = parse_ini("[ovh-eu]\napplication_secret = a#b;c\n").expect("readable");
        assert_eq!(
            rows,
            vec![("ovh-eu".into(), "application_secret".into(), "a#b;c".into())]
        );
    }

    #[test]
    fn the_environment_wins_over_files_per_key_and_the_explicit_endpoint_over_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = write(
            dir.path(),
            "ovh.conf",
            "[default]\nendpoint=ovh-ca\n[ovh-eu]\napplication_key=file-ak\napplication_secret=file-as\nconsumer_key=file-ck\n[ovh-ca]\napplication_key=ca-ak\napplication_secret=ca-as\n",
        );
        let env = |name: &str| match name {
            "OVH_ENDPOINT" => Some("ovh-eu".to_owned()),
            "OVH_CONSUMER_KEY" => Some("env-ck".to_owned()),
            _ => None,
        };
        let sources = ConfigSources {
            env: &env,
            files: vec![conf],
        };
        let c = load(&sources, None).expect("loads");
        assert_eq!(c.endpoint.name, "ovh-eu");
        assert_eq!(c.endpoint_origin, Origin::Env("OVH_ENDPOINT".into()));
        assert_eq!(c.application_key, "file-ak");
        assert_eq!(c.consumer_key.as_ref().map(Secret::expose), Some("env-ck"));

        // The plan's endpoint beats OVH_ENDPOINT; its section supplies the keys.
        let c = load(&sources, Some("ovh-ca")).expect("loads");
        assert_eq!(c.endpoint.name, "ovh-ca");
        assert_eq!(c.endpoint_origin, Origin::Explicit);
        assert_eq!(c.application_key, "ca-ak");
        // The environment still wins for the consumer key, whatever the section.
        assert_eq!(c.consumer_key.as_ref().map(Secret::expose), Some("env-ck"));
    }

    #[test]
    fn a_literal_url_endpoint_names_its_own_section() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = write(
            dir.path(),
            "ovh.conf",
            "[http://127.0.0.1:9000/1.0]\napplication_key=sim-ak\napplication_secret=sim-as\n",
        );
        let sources = ConfigSources {
            env: &no_env,
            files: vec![conf],
        };
        let c = load(&sources, Some("http://127.0.0.1:9000/1.0")).expect("loads");
        assert_eq!(c.endpoint.base_url, "http://127.0.0.1:9000/1.0");
        assert_eq!(c.application_key, "sim-ak");
        assert!(c.consumer_key.is_none());
    }

    #[test]
    fn defaults_to_ovh_eu_and_reports_what_is_missing_without_values() {
        let env = |name: &str| (name == "OVH_APPLICATION_SECRET").then(|| "s3cr3t".to_owned());
        let sources = ConfigSources {
            env: &env,
            files: vec![],
        };
        let err = load(&sources, None).expect_err("no key");
        assert!(
            err.message.contains("no application key")
                && err.message.contains("$OVH_APPLICATION_SECRET"),
            "{}",
            err.message
        );
        assert!(!err.to_string().contains("s3cr3t"));
        assert_eq!(err.kind.code(), "ovh::config");

        let sources = ConfigSources {
            env: &no_env,
            files: vec![],
        };
        let err = load(&sources, None).expect_err("nothing");
        assert!(err.message.contains("[ovh-eu]"), "{}", err.message);
    }

    #[test]
    fn oauth2_credentials_are_refused_clearly() {
        let env = |name: &str| match name {
            "OVH_CLIENT_ID" | "OVH_CLIENT_SECRET" => Some("x".to_owned()),
            _ => None,
        };
        let sources = ConfigSources {
            env: &env,
            files: vec![],
        };
        let err = load(&sources, None).expect_err("oauth only");
        assert!(err.message.contains("OAuth2"), "{}", err.message);
        let env = |name: &str| match name {
            "OVH_CLIENT_ID" | "OVH_APPLICATION_KEY" | "OVH_APPLICATION_SECRET" => {
                Some("x".to_owned())
            }
            _ => None,
        };
        let sources = ConfigSources {
            env: &env,
            files: vec![],
        };
        let err = load(&sources, None).expect_err("mixed");
        assert!(err.message.contains("cannot be mixed"), "{}", err.message);
    }

    #[test]
    fn default_file_order() {
        let files = default_files(Some(Path::new("/home/u")), Path::new("/w"));
        assert_eq!(
            files,
            vec![
                PathBuf::from("/etc/ovh.conf"),
                PathBuf::from("/home/u/.ovh.conf"),
                PathBuf::from("/w/ovh.conf"),
            ]
        );
    }

    #[test]
    fn ini_reader_follows_configparser() {
        let rows = parse_ini(
            "top=ignored\n[ovh-eu]\nApplication_Key = AK\n# c\n; c\n  continued\nconsumer_key:CK\n",
        )
        .expect("readable");
        assert_eq!(
            rows,
            vec![
                ("ovh-eu".into(), "application_key".into(), "AK".into()),
                ("ovh-eu".into(), "consumer_key".into(), "CK".into()),
            ]
        );
    }
}
