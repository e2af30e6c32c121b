//! A throw-away `PostgreSQL` server on 127.0.0.1 for the `PostgreSQL` state store's tests:
//! [`Postgres::shared`] starts one per test-binary run (Debian's `postgresql` package, binaries
//! in `/usr/lib/postgresql/<version>/bin`, the newest taken) with `initdb` into a fresh temp dir
//! and `postgres` on a free port, and [`Postgres::database`] gives each test a database of its
//! own, owned by a password-protected role that is not a superuser.
//!
//! `PostgreSQL` refuses to run as root: when the tests run as root (CI), the server and `initdb`
//! run as the `postgres` user (`setpriv`), in a data directory it owns.
//!
//! Invariants: the server listens on 127.0.0.1 only, with password (SCRAM) authentication, TLS
//! offered (a certificate for `localhost` and 127.0.0.1 from the Dovecot harness's
//! `make-certs`, [`Postgres::ca_cert_path`]) and no socket outside its own dir; it dies with the
//! test process, however that ends, through a watchdog shell that holds a pipe from this process
//! (as the Dovecot harness does), which also removes the temp dir once the server has stopped.
//! [`Postgres::start`] gives an instance of its own that stops on Drop.

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The superuser's password (the tests' own server; never a real secret).
const ADMIN_PASSWORD: &str = "pg-admin-test-pw";
/// The role the store connects as, and its password: tests check it never shows in a message.
pub const USER: &str = "mailplan_test";
pub const PASSWORD: &str = "pg-Secret-7f3a";

const START_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 3;

/// A running `PostgreSQL`; see the module doc.
#[derive(Debug)]
pub struct Postgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// The watchdog shell; closing its stdin stops the server.
    watchdog: Mutex<Option<Child>>,
}

impl Postgres {
    /// The instance shared by every test of this run (started on first use).
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(Postgres::start)
    }

    /// A new instance of its own, stopped on Drop.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match Postgres::try_start(&bin) {
                Ok(pg) => return pg,
                Err(failure) => last = failure,
            }
        }
        panic!("PostgreSQL did not start in {START_ATTEMPTS} attempts; last: {last}");
    }

    fn try_start(bin: &Path) -> Result<Postgres, String> {
        let dir = tempfile::Builder::new()
            .prefix("mailplan-postgres-")
            .tempdir()
            .expect("create the PostgreSQL temp dir")
            // The watchdog removes it once the server has stopped.
            .keep();
        let as_postgres = rustix::process::geteuid().is_root();
        // The `postgres` user must reach its data dir through this one.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the temp dir");
        let (data, sockets) = (dir.join("data"), dir.join("sockets"));
        std::fs::create_dir(&sockets).expect("create the socket dir");
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, format!("{ADMIN_PASSWORD}\n")).expect("write the pwfile");
        // The Dovecot harness's throw-away CA and a certificate for localhost and 127.0.0.1.
        run(
            Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dovecot/make-certs"))
                .arg(&dir),
        );
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir));
        }
        let mut initdb = privileged(as_postgres, &bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        run(&mut initdb);
        let port = free_port();
        let server = bin.join("postgres");
        let mut watchdog = Command::new("sh")
            // As the Dovecot harness: the server runs in the background with stdin from
            // /dev/null; a second job blocks reading our pipe (fd 3) and stops the server (fast
            // shutdown) at EOF, i.e. on Drop or when this process dies; then the dir goes.
            .args([
                "-c",
                r#"exec 3<&0; "$@" </dev/null >"$DIR/postgres.log" 2>&1 & d=$!; (cat <&3 >/dev/null; kill -INT $d 2>/dev/null) & wait $d; s=$?; [ $s -eq 0 ] || head -c 20000 "$DIR/postgres.log" >&2; rm -rf "$DIR""#,
                "postgres-watchdog",
            ])
            .args(privileged(as_postgres, &server).get_program_and_args())
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&sockets)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "ssl=on",
            ])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", dir.join("tls/server.crt").display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", dir.join("tls/server.key").display()))
            .env("DIR", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run sh to start postgres");
        let pg = Postgres {
            port,
            dir,
            bin: bin.to_owned(),
            watchdog: Mutex::new(None),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = watchdog.try_wait().expect("poll the watchdog") {
                let mut stderr = String::new();
                if let Some(mut pipe) = watchdog.stderr.take() {
                    pipe.read_to_string(&mut stderr).ok();
                }
                return Err(format!("postgres exited ({status}): {stderr}"));
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
                && pg.try_sql("postgres", "SELECT 1").is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                drop(watchdog.stdin.take());
                watchdog.wait().ok();
                return Err(format!("no answer on port {port} within {START_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        *pg.watchdog.lock().expect("watchdog lock") = Some(watchdog);
        pg.sql(
            "postgres",
            &format!("CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'"),
        );
        Ok(pg)
    }

    /// A new, empty database owned by [`USER`]; returns its name.
    pub fn database(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.sql("postgres", &format!("CREATE DATABASE {name} OWNER {USER}"));
        name
    }

    /// `postgres://USER:PASSWORD@127.0.0.1:PORT/DB?sslmode=disable`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// The CA that signed the server's certificate (for `sslrootcert`).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("tls/ca.crt")
    }

    /// Runs SQL as the superuser in `db` and returns psql's unaligned output (panics on error).
    pub fn sql(&self, db: &str, sql: &str) -> String {
        self.try_sql(db, sql)
            .unwrap_or_else(|e| panic!("psql {sql:?} in {db}: {e}"))
    }

    fn try_sql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", db, "-X", "-A", "-t", "-q"])
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", ADMIN_PASSWORD)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The server's log so far, worth printing when a test fails.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.lock().ok().and_then(|mut w| w.take()) {
            drop(watchdog.stdin.take());
            watchdog.wait().ok();
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let version = e.file_name().to_str()?.parse().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").exists().then_some((version, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .expect("PostgreSQL's server in /usr/lib/postgresql/*/bin (is `postgresql` installed?)")
}

/// `program`, run as the `postgres` user when `as_postgres`.
fn privileged(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

trait ProgramAndArgs {
    fn get_program_and_args(&self) -> Vec<std::ffi::OsString>;
}

impl ProgramAndArgs for Command {
    fn get_program_and_args(&self) -> Vec<std::ffi::OsString> {
        std::iter::once(self.get_program().to_owned())
            .chain(self.get_args().map(ToOwned::to_owned))
            .collect()
    }
}

fn run(command: &mut Command) {
    let out = command.output().expect("run a PostgreSQL tool");
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port free on 127.0.0.1 now (it may be taken before the server binds it: then a retry).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
