//! Throw-away Dovecot IMAP servers on 127.0.0.1: [`Dovecot::start`] renders
//! `tests/dovecot/dovecot.conf.in` (the template `scripts/sandbox` uses too) into a fresh temp
//! dir with two free ports, makes a CA and a server certificate with `tests/dovecot/make-certs`,
//! starts `dovecot -F` and returns once the plain port greets with `* OK`.
//!
//! Invariants: every instance has its own dir, ports, `base_dir` and `state_dir`, so any number run
//! in parallel; the server dies with the [`Dovecot`] value (Drop) and, through a watchdog that
//! holds a pipe from this process, also when the test process is killed before Drop runs.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long Dovecot may take to greet before a start attempt counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Start attempts: a port picked as free may be taken by someone else before Dovecot binds it.
const START_ATTEMPTS: usize = 5;

/// A running Dovecot instance; see the module doc.
#[derive(Debug)]
pub struct Dovecot {
    /// The instance directory: `dovecot.conf`, `users`, `dovecot.log`, `tls/`, `mail/`.
    pub dir: tempfile::TempDir,
    /// Plain IMAP (STARTTLS offered, clear-text LOGIN allowed) on 127.0.0.1.
    pub imap_port: u16,
    /// Implicit TLS on 127.0.0.1, certificate for `localhost` and `127.0.0.1`.
    pub imaps_port: u16,
    /// The watchdog shell; dropping its stdin stops Dovecot.
    watchdog: Option<Child>,
}

impl Dovecot {
    /// Starts a new instance with no users.
    pub fn start() -> Dovecot {
        Dovecot::start_with("")
    }

    /// [`Dovecot::start`] with settings appended to the configuration, e.g. an
    /// `imap_capability` line that makes it advertise what another server advertises.
    pub fn start_with(extra_config: &str) -> Dovecot {
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(extra_config) {
                Ok(dovecot) => return dovecot,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("Dovecot did not start in {START_ATTEMPTS} attempts; last: {last_failure}");
    }

    fn try_start(extra_config: &str) -> Result<Dovecot, String> {
        let dir = tempfile::Builder::new()
            .prefix("mailplan-dovecot-")
            .tempdir()
            .expect("create the Dovecot temp dir");
        let (imap_port, tls_port) = free_ports();
        render(dir.path(), imap_port, tls_port, extra_config);
        let mut watchdog = Command::new("sh")
            // Dovecot runs in the background of this shell with stdin from /dev/null; a second
            // background job blocks reading our pipe (fd 3) and kills Dovecot at EOF, i.e. when
            // Drop closes it or this process dies. The shell itself exits when Dovecot does.
            .args([
                "-c",
                r#"exec 3<&0; dovecot -F -c "$1" </dev/null & d=$!; (cat <&3 >/dev/null; kill $d 2>/dev/null) & wait $d"#,
                "dovecot-watchdog",
            ])
            .arg(dir.path().join("dovecot.conf"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run sh to start dovecot (is dovecot-imapd installed?)");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = watchdog.try_wait().expect("poll the dovecot watchdog") {
                let mut stderr = String::new();
                if let Some(mut pipe) = watchdog.stderr.take() {
                    std::io::Read::read_to_string(&mut pipe, &mut stderr).ok();
                }
                let log =
                    std::fs::read_to_string(dir.path().join("dovecot.log")).unwrap_or_default();
                return Err(format!("dovecot exited ({status}): {stderr}{log}"));
            }
            if greets(imap_port) && TcpStream::connect((Ipv4Addr::LOCALHOST, tls_port)).is_ok() {
                return Ok(Dovecot {
                    dir,
                    imap_port,
                    imaps_port: tls_port,
                    watchdog: Some(watchdog),
                });
            }
            if Instant::now() > deadline {
                drop(watchdog.stdin.take());
                watchdog.wait().ok();
                return Err(format!(
                    "no greeting on port {imap_port} within {START_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:imap_port`.
    pub fn imap_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.imap_port))
    }

    /// `127.0.0.1:imaps_port`.
    pub fn imaps_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.imaps_port))
    }

    /// The CA that signed the server certificate: point `SSL_CERT_FILE` at it to verify.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.path().join("tls/ca.crt")
    }

    /// The rendered configuration, for `doveadm -c` and `dovecot -c`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    /// The server's log (errors, logins), worth printing when a test fails.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Adds (or replaces) a user with a clear-text password. Dovecot re-reads the passwd-file
    /// when it changes, so this works while it runs.
    pub fn add_user(&self, name: &str, password: &str) {
        self.add_user_with(name, password, "");
    }

    /// [`Dovecot::add_user`] with userdb extra fields, e.g. `userdb_quota_max_mail_size=50k`
    /// (space-separated).
    pub fn add_user_with(&self, name: &str, password: &str, extra: &str) {
        for field in [name, password, extra] {
            assert!(
                !field.contains([':', '\n', '\r']),
                "passwd-file fields cannot hold ':' or line breaks: {field:?}"
            );
        }
        let path = self.dir.path().join("users");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let mut lines: Vec<String> = old
            .lines()
            .filter(|line| line.split(':').next() != Some(name))
            .map(str::to_owned)
            .collect();
        lines.push(format!("{name}:{{PLAIN}}{password}::::::{extra}"));
        // Write then rename, so Dovecot never reads a half-written file.
        let tmp = self.dir.path().join("users.tmp");
        std::fs::write(&tmp, lines.join("\n") + "\n").expect("write the passwd-file");
        std::fs::rename(&tmp, &path).expect("replace the passwd-file");
    }

    /// Runs `doveadm -c CONF ARGS…`, panicking with its output when it fails; returns stdout.
    pub fn doveadm(&self, args: &[&str]) -> String {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .output()
            .expect("run doveadm");
        assert!(
            out.status.success(),
            "doveadm {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            // EOF on the watchdog's pipe kills Dovecot; the shell exits once Dovecot has.
            drop(watchdog.stdin.take());
            watchdog.wait().ok();
        }
        // TempDir removes the directory after this.
    }
}

/// Writes the config, the certificates, an empty passwd-file and the mail dirs into `dir`.
fn render(dir: &Path, imap_port: u16, tls_port: u16, extra_config: &str) {
    let template_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dovecot");
    let template = std::fs::read_to_string(template_dir.join("dovecot.conf.in"))
        .expect("read tests/dovecot/dovecot.conf.in");
    let config = template
        .replace("@DIR@", dir.to_str().expect("UTF-8 temp dir"))
        .replace("@IMAP_PORT@", &imap_port.to_string())
        .replace("@IMAPS_PORT@", &tls_port.to_string())
        + "\n"
        + extra_config;
    std::fs::write(dir.join("dovecot.conf"), config).expect("write dovecot.conf");
    std::fs::write(dir.join("users"), "").expect("write the passwd-file");
    let certs = Command::new("bash")
        .arg(template_dir.join("make-certs"))
        .arg(dir)
        .output()
        .expect("run tests/dovecot/make-certs");
    assert!(
        certs.status.success(),
        "make-certs: {}",
        String::from_utf8_lossy(&certs.stderr)
    );
    // Mail is accessed as the dovecot user (Dovecot refuses root for mail): see the template.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .expect("make the Dovecot dir traversable");
    let (uid, gid) = dovecot_ids();
    for sub in ["mail", "home"] {
        let path = dir.join(sub);
        std::fs::create_dir(&path).expect("create a mail dir");
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown a mail dir");
    }
    // A temp dir inside a 0700 directory (a TMPDIR made by mktemp -d) would fail later, deep in
    // the IMAP session, as "Internal error": say why now.
    let reachable = Command::new("runuser")
        .args(["-u", "dovecot", "--", "test", "-w"])
        .arg(dir.join("mail"))
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        reachable,
        "the dovecot user cannot reach {}: point TMPDIR at a directory others may traverse",
        dir.display()
    );
}

/// The uid and gid of the `dovecot` system user (from `id`, to stay free of libc).
fn dovecot_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "dovecot"])
            .output()
            .expect("run id");
        assert!(
            out.status.success(),
            "no dovecot user: is dovecot-imapd installed?"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("id prints a number")
    };
    (id("-u"), id("-g"))
}

/// Two distinct ports the kernel says are free right now (either may be taken again before
/// Dovecot binds it: the caller retries). Both are held at once so they differ.
fn free_ports() -> (u16, u16) {
    let bind = || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("bound address").port();
    (port(&a), port(&b))
}

/// Whether the port accepts a connection and sends an IMAP `* OK` greeting.
fn greets(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let mut line = String::new();
    let greeted = BufReader::new(&stream).read_line(&mut line).is_ok() && line.starts_with("* OK");
    (&stream).write_all(b"z LOGOUT\r\n").ok();
    greeted
}
