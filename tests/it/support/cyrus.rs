//! Throw-away Cyrus IMAP 3 servers on 127.0.0.1, beside Dovecot: [`Cyrus::start`] writes an
//! `imapd.conf` and a `cyrus.conf` for one of the usual [`Layout`]s into a fresh temp dir, starts
//! Cyrus's `master` in the foreground and returns once the port greets with `* OK`.
//!
//! The Debian package `cyrus-imapd` conflicts with `dovecot-imapd` (both provide `imap-server`),
//! so only `cyrus-common` (master, `ctl_cyrusdb`), `cyrus-admin` and `sasl2-bin` (`saslpasswd2`)
//! are installed; the `imapd` binary is taken from `/usr/lib/cyrus/bin/imapd` when the package is
//! there, else from the `.deb` unpacked once (`apt-get download`, `dpkg -x`) into
//! `target/tmp/cyrus-imapd/` ([`imapd`]).
//!
//! Invariants: every instance has its own dir, port, sockets and SASL database (users and their
//! passwords are real: a wrong password is refused); the server dies with the [`Cyrus`] value and,
//! through the same watchdog as Dovecot's, when the test process dies.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 5;

/// How a Cyrus server names folders (RFC 2342 NAMESPACE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Debian's default (`altnamespace: no`, `unixhierarchysep: no`): every personal folder
    /// lives under `INBOX.`, separator `.`.
    InboxDot,
    /// The alternate namespace with `.` (`altnamespace: yes`, `unixhierarchysep: no`): personal
    /// folders at the top, separator `.`.
    AltDot,
    /// The alternate namespace with `/` (`altnamespace: yes`, `unixhierarchysep: yes`), Cyrus
    /// 3's built-in default.
    AltSlash,
}

impl Layout {
    /// The personal namespace's prefix and separator.
    pub fn namespace(self) -> (&'static str, char) {
        match self {
            Layout::InboxDot => ("INBOX.", '.'),
            Layout::AltDot => ("", '.'),
            Layout::AltSlash => ("", '/'),
        }
    }

    fn settings(self) -> &'static str {
        match self {
            Layout::InboxDot => "altnamespace: no\nunixhierarchysep: no\n",
            Layout::AltDot => "altnamespace: yes\nunixhierarchysep: no\n",
            Layout::AltSlash => "altnamespace: yes\nunixhierarchysep: yes\n",
        }
    }

    /// A logical folder name (`/` between levels, `INBOX` for the inbox) as this layout names it
    /// on the wire, still in UTF-8.
    pub fn server_name(self, logical: &str) -> String {
        if logical == "INBOX" {
            return logical.to_owned();
        }
        let (prefix, sep) = self.namespace();
        format!("{prefix}{}", logical.replace('/', &sep.to_string()))
    }

    /// The inverse of [`Layout::server_name`], for a decoded name read from the server.
    pub fn logical_name(self, server: &str) -> String {
        if server.eq_ignore_ascii_case("INBOX") {
            return "INBOX".to_owned();
        }
        let (prefix, sep) = self.namespace();
        let rest = server.strip_prefix(prefix).unwrap_or(server);
        rest.replace(sep, "/")
    }
}

/// A running Cyrus instance; see the module doc.
#[derive(Debug)]
pub struct Cyrus {
    /// The instance directory: `imapd.conf`, `cyrus.conf`, `sasldb2`, `conf/`, `spool/`, `log`.
    pub dir: tempfile::TempDir,
    /// Plain IMAP on 127.0.0.1 (clear-text LOGIN allowed).
    pub port: u16,
    pub layout: Layout,
    /// `servername` in `imapd.conf`, unique to the instance: its greeting names it (so a port
    /// taken meanwhile by another test's server is not mistaken for this one) and it is the
    /// SASL realm of its users.
    realm: String,
    watchdog: Option<Child>,
}

impl Cyrus {
    /// A new instance in `layout`, no users.
    pub fn start(layout: Layout) -> Cyrus {
        Cyrus::start_with(layout, "")
    }

    /// [`Cyrus::start`] with lines appended to `imapd.conf`, e.g. `maxmessagesize: 100000` or
    /// `suppress_capabilities: APPENDLIMIT`.
    pub fn start_with(layout: Layout, extra_config: &str) -> Cyrus {
        let imapd = imapd();
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&imapd, layout, extra_config) {
                Ok(cyrus) => return cyrus,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("Cyrus did not start in {START_ATTEMPTS} attempts; last: {last_failure}");
    }

    fn try_start(imapd: &Path, layout: Layout, extra_config: &str) -> Result<Cyrus, String> {
        let dir = tempfile::Builder::new()
            .prefix("mailplan-cyrus-")
            .tempdir()
            .expect("create the Cyrus temp dir");
        let port = free_port();
        let d = dir.path().to_str().expect("UTF-8 temp dir");
        let realm = format!("mailplan-test-{port}-{}", std::process::id());
        for sub in ["conf", "spool", "run", "sieve"] {
            std::fs::create_dir(dir.path().join(sub)).expect("create a Cyrus dir");
        }
        let imapd_conf = format!(
            "configdirectory: {d}/conf\npartition-default: {d}/spool\nsievedir: {d}/sieve\n\
             servername: {realm}\nsasl_pwcheck_method: auxprop\nsasl_auxprop_plugin: sasldb\n\
             sasl_sasldb_path: {d}/sasldb2\nsasl_mech_list: PLAIN LOGIN\nallowplaintext: yes\n\
             autocreate_quota: 0\nidlesocket: {d}/run/idle\nlmtpsocket: {d}/run/lmtp\n\
             notifysocket: {d}/run/notify\n{}{extra_config}\n",
            layout.settings()
        );
        std::fs::write(dir.path().join("imapd.conf"), imapd_conf).expect("write imapd.conf");
        let cyrus_conf = format!(
            "START {{\n  recover cmd=\"/usr/lib/cyrus/bin/ctl_cyrusdb -C {d}/imapd.conf -r\"\n}}\n\
             SERVICES {{\n  imap cmd=\"{} -C {d}/imapd.conf\" listen=\"127.0.0.1:{port}\" \
             prefork=0\n}}\nEVENTS {{\n}}\n",
            imapd.display()
        );
        std::fs::write(dir.path().join("cyrus.conf"), cyrus_conf).expect("write cyrus.conf");
        // master drops to the cyrus user: the dir must be its own.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("make the Cyrus dir traversable");
        chown_cyrus(dir.path());
        // master runs in a session of its own (setsid): the signals one instance's master sends
        // or gets when it stops never reach another instance's.
        let mut watchdog = Command::new("sh")
            .args([
                "-c",
                r#"exec 3<&0; setsid /usr/lib/cyrus/bin/master -C "$1/imapd.conf" -M "$1/cyrus.conf" -p "$1/run/master.pid" -D -L "$1/log" </dev/null & d=$!; (cat <&3 >/dev/null; kill $d 2>/dev/null) & wait $d"#,
                "cyrus-watchdog",
            ])
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run sh to start Cyrus master (is cyrus-common installed?)");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = watchdog.try_wait().expect("poll the Cyrus watchdog") {
                let mut stderr = String::new();
                if let Some(mut pipe) = watchdog.stderr.take() {
                    std::io::Read::read_to_string(&mut pipe, &mut stderr).ok();
                }
                let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
                return Err(format!("cyrus master exited ({status}): {stderr}{log}"));
            }
            if greets(port, &realm) {
                return Ok(Cyrus {
                    dir,
                    port,
                    layout,
                    realm,
                    watchdog: Some(watchdog),
                });
            }
            if Instant::now() > deadline {
                drop(watchdog.stdin.take());
                watchdog.wait().ok();
                return Err(format!(
                    "no greeting on port {port} within {START_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Adds (or replaces) a user with its password; its INBOX is created at its first login.
    /// Cyrus names users without dots in the `.`-separator layouts: use plain names.
    pub fn add_user(&self, name: &str, password: &str) {
        assert!(
            !name.contains('.'),
            "Cyrus user names here have no dot: {name}"
        );
        add_sasl_user(self.dir.path(), &self.realm, name, password);
        chown_cyrus(&self.dir.path().join("sasldb2"));
    }

    /// What Cyrus logged (its `master -L` file; the services log to syslog).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Cyrus {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            drop(watchdog.stdin.take());
            watchdog.wait().ok();
        }
    }
}

fn add_sasl_user(dir: &Path, realm: &str, name: &str, password: &str) {
    let mut child = Command::new("saslpasswd2")
        .args(["-p", "-c", "-u", realm, "-f"])
        .arg(dir.join("sasldb2"))
        .arg(name)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run saslpasswd2 (is sasl2-bin installed?)");
    child
        .stdin
        .take()
        .expect("saslpasswd2's stdin")
        .write_all(password.as_bytes())
        .expect("write the password to saslpasswd2");
    let out = child.wait_with_output().expect("saslpasswd2 ends");
    assert!(
        out.status.success(),
        "saslpasswd2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chown_cyrus(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "cyrus:mail"])
        .arg(path)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown cyrus:mail {}", path.display());
}

/// The `imapd` binary: the installed package's, or the `.deb`'s unpacked once under
/// `target/tmp/cyrus-imapd/` (downloaded with `apt-get download`).
pub fn imapd() -> PathBuf {
    static IMAPD: OnceLock<PathBuf> = OnceLock::new();
    IMAPD
        .get_or_init(|| {
            let installed = PathBuf::from("/usr/lib/cyrus/bin/imapd");
            if installed.exists() {
                return installed;
            }
            let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cyrus-imapd");
            let binary = cache.join("usr/lib/cyrus/bin/imapd");
            if binary.exists() {
                return binary;
            }
            // Unpacked beside, then renamed: another test process never sees half of it.
            let work = tempfile::Builder::new()
                .prefix("cyrus-imapd-")
                .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                .expect("create a download dir");
            // apt's sandbox user must be able to write there.
            std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o777))
                .expect("open the download dir");
            let run = |program: &str, args: &[&str]| {
                let out = Command::new(program)
                    .args(args)
                    .current_dir(work.path())
                    .output()
                    .unwrap_or_else(|e| panic!("run {program}: {e}"));
                assert!(
                    out.status.success(),
                    "{program} {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            run("apt-get", &["download", "-q", "cyrus-imapd"]);
            let deb = std::fs::read_dir(work.path())
                .expect("read the download dir")
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "deb"))
                .expect("apt-get download left a .deb");
            run(
                "dpkg",
                &["-x", deb.to_str().expect("UTF-8 path"), "unpacked"],
            );
            let unpacked = work.path().join("unpacked");
            // Another process may have won the race: either copy is the same package.
            if std::fs::rename(&unpacked, &cache).is_err() {
                assert!(
                    binary.exists(),
                    "unpack cyrus-imapd into {}",
                    cache.display()
                );
            }
            binary
        })
        .clone()
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("bound address")
        .port()
}

/// Whether the port greets as the Cyrus instance named `servername`.
fn greets(port: u16, servername: &str) -> bool {
    let Ok(stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let mut line = String::new();
    let greeted = BufReader::new(&stream).read_line(&mut line).is_ok()
        && line.starts_with("* OK")
        && line.contains(servername);
    (&stream).write_all(b"z LOGOUT\r\n").ok();
    greeted
}
