//! Throw-away GNU Mailutils `imap4d` servers on 127.0.0.1 (`mailutils-imap4d`): a server whose
//! folders keep no keywords (its `PERMANENTFLAGS` has no `\*`; an APPEND that carries one is
//! refused whole, "BAD … Unrecognized flag").
//!
//! [`Imap4d::start`] writes a configuration (virtual-domain users from a passwd file of the
//! instance, maildir mailboxes in its dir) and accepts connections on a free port itself, each
//! served by an `imap4d -i` (inetd mode) with the socket as its stdin and stdout.
//! Invariants: every instance has its own dir and port; the acceptor and every `imap4d` end with
//! the [`Imap4d`] value.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The domain of every user (`NAME@DOMAIN` logs in).
pub const DOMAIN: &str = "example.org";

/// A running imap4d acceptor; see the module doc.
#[derive(Debug)]
pub struct Imap4d {
    pub dir: tempfile::TempDir,
    pub port: u16,
    stop: Arc<AtomicBool>,
    children: Arc<Mutex<Vec<Child>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Imap4d {
    pub fn start() -> Imap4d {
        let dir = tempfile::Builder::new()
            .prefix("mailplan-imap4d-")
            .tempdir()
            .expect("create the imap4d temp dir");
        let d = dir.path().to_str().expect("UTF-8 temp dir");
        std::fs::create_dir(dir.path().join("passwd")).expect("create the passwd dir");
        std::fs::write(dir.path().join("passwd").join(DOMAIN), "").expect("write the passwd");
        let config = format!(
            "virtdomain {{\n  passwd-dir {d}/passwd;\n}}\nauth {{\n  authorization virtdomain;\n  \
             authentication generic;\n}}\nmailbox {{\n  mailbox-type maildir;\n  \
             mailbox-pattern \"{d}/mail/${{user}}\";\n}}\nlogging {{\n  syslog no;\n}}\n"
        );
        let conf = dir.path().join("imap4d.conf");
        std::fs::write(&conf, config).expect("write imap4d.conf");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("bound address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let children: Arc<Mutex<Vec<Child>>> = Arc::default();
        let acceptor = {
            let (stop, children) = (Arc::clone(&stop), Arc::clone(&children));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let Ok(output) = stream.try_clone() else {
                        continue;
                    };
                    let child = Command::new("imap4d")
                        .arg("-i")
                        .arg(format!("--config-file={}", conf.display()))
                        .stdin(Stdio::from(OwnedFd::from(stream)))
                        .stdout(Stdio::from(OwnedFd::from(output)))
                        .stderr(Stdio::null())
                        .spawn()
                        .expect("run imap4d (is mailutils-imap4d installed?)");
                    match children.lock() {
                        Ok(mut all) => all.push(child),
                        Err(_) => {
                            let mut child = child;
                            child.kill().ok();
                            child.wait().ok();
                        }
                    }
                }
            })
        };
        Imap4d {
            dir,
            port,
            stop,
            children,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Adds a user `name@DOMAIN` with `password` (stored as a SHA-512 crypt hash).
    pub fn add_user(&self, name: &str, password: &str) {
        let out = Command::new("openssl")
            .args(["passwd", "-6", password])
            .output()
            .expect("run openssl passwd");
        assert!(out.status.success(), "openssl passwd failed");
        let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let home = self.dir.path().join("home").join(name);
        std::fs::create_dir_all(&home).expect("create the user's home");
        let path = self.dir.path().join("passwd").join(DOMAIN);
        let mut lines = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = writeln!(lines, "{name}:{hash}:0:0::{}:/bin/sh", home.display());
        std::fs::write(&path, lines).expect("write the passwd");
    }
}

impl Drop for Imap4d {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor up so that it sees the stop.
        let _ = TcpStream::connect(self.addr());
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.join().ok();
        }
        if let Ok(mut all) = self.children.lock() {
            for child in all.iter_mut() {
                child.kill().ok();
                child.wait().ok();
            }
        }
    }
}
