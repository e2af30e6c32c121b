//! Secret references → secret values, and the offline check that they can be resolved.
//!
//! Entry points: [`resolve`] (at run time: an environment variable, a file relative to the
//! plan's folder, or a command's first line of output, with a timeout) and [`check`] (for
//! `validate` and `plan`: `plan::unresolved_secret` **warnings** for an unset variable, a missing
//! or unreadable file, a command whose program is not on `PATH`; no command is run). Anything
//! that executes turns those warnings into errors with
//! [`Diagnostics::escalate`](crate::plan::diag::Diagnostics::escalate).
//!
//! Both also warn (`plan::insecure`, never escalated) about a `file:` secret, and for a plan
//! with OVH steps an `ovh.conf`, that its group or everyone may read.
//!
//! Invariant: a secret value only ever lives in a [`Secret`]; no error or diagnostic built here
//! holds one (they name the reference: the variable, the path, the command).

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::plan::diag::{Code, Diagnostic, Diagnostics};
use crate::plan::model::Plan;
use crate::plan::secret::{Secret, SecretRef};
use crate::plan::source::Origin;

/// How long a `command:` secret may take (a password manager may ask for a passphrase).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest secret read from a file or a command's output.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Why a secret could not be resolved. Never holds the value, only where it was looked for.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SecretError {
    #[error("environment variable {name} is not set")]
    #[diagnostic(code(plan::unresolved_secret), help("set it before running mailplan"))]
    EnvUnset { name: String },
    #[error("environment variable {name} is set but empty")]
    #[diagnostic(
        code(plan::unresolved_secret),
        help("an empty password is never right: set it to the password")
    )]
    EnvEmpty { name: String },
    #[error("environment variable {name} is not valid UTF-8")]
    #[diagnostic(code(plan::unresolved_secret))]
    EnvNotUnicode { name: String },
    #[error("cannot read secret file {}: {reason}", path.display())]
    #[diagnostic(
        code(plan::unresolved_secret),
        help("`file:` paths are relative to the plan's folder")
    )]
    File { path: PathBuf, reason: String },
    #[error("secret command `{command}` {reason}")]
    #[diagnostic(code(plan::unresolved_secret))]
    Command { command: String, reason: String },
    #[error("was not resolved")]
    #[diagnostic(code(plan::unresolved_secret))]
    Unresolved,
}

/// Variables a `command:` secret never sees: the OVH credentials.
const OVH_VARIABLES: &[&str] = &[
    "OVH_APPLICATION_KEY",
    "OVH_APPLICATION_SECRET",
    "OVH_CONSUMER_KEY",
];
/// `command:` secrets run at once, at most.
const COMMANDS_AT_ONCE: usize = 8;

/// Resolve a reference now. `plan_dir` anchors relative `file:` paths and is the commands'
/// working folder. A command runs without the OVH credentials in its environment.
pub fn resolve(reference: &SecretRef, plan_dir: &Path) -> Result<Secret, SecretError> {
    let hidden: Vec<String> = OVH_VARIABLES.iter().map(|v| (*v).to_owned()).collect();
    resolve_with(
        reference,
        plan_dir,
        &|name| std::env::var_os(name),
        COMMAND_TIMEOUT,
        &hidden,
    )
}

/// Resolve every distinct reference of `references` once; commands run concurrently (a few at
/// a time), each without the OVH credentials nor any variable an `env:` reference of
/// `references` names (the other secrets) in its environment.
pub fn resolve_all<'r>(
    references: impl IntoIterator<Item = &'r SecretRef>,
    plan_dir: &Path,
) -> HashMap<&'r SecretRef, Result<Secret, SecretError>> {
    resolve_all_with(
        references,
        plan_dir,
        &|name| std::env::var_os(name),
        COMMAND_TIMEOUT,
    )
}

fn resolve_all_with<'r>(
    references: impl IntoIterator<Item = &'r SecretRef>,
    plan_dir: &Path,
    env: &(dyn Fn(&str) -> Option<OsString> + Sync),
    timeout: Duration,
) -> HashMap<&'r SecretRef, Result<Secret, SecretError>> {
    let mut distinct: Vec<&SecretRef> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in references {
        if seen.insert(r) {
            distinct.push(r);
        }
    }
    let mut hidden: Vec<String> = OVH_VARIABLES.iter().map(|v| (*v).to_owned()).collect();
    hidden.extend(distinct.iter().filter_map(|r| match r {
        SecretRef::Env(name) => Some(name.clone()),
        _ => None,
    }));
    let (commands, others): (Vec<&SecretRef>, Vec<&SecretRef>) = distinct
        .into_iter()
        .partition(|r| matches!(r, SecretRef::Command(_)));
    let mut out: HashMap<&SecretRef, Result<Secret, SecretError>> = others
        .into_iter()
        .map(|r| (r, resolve_with(r, plan_dir, env, timeout, &hidden)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::with_capacity(commands.len()));
    std::thread::scope(|scope| {
        for _ in 0..COMMANDS_AT_ONCE.min(commands.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(r) = commands.get(i) else { break };
                    let resolved = resolve_with(r, plan_dir, env, timeout, &hidden);
                    if let Ok(mut results) = results.lock() {
                        results.push((*r, resolved));
                    }
                }
            });
        }
    });
    out.extend(results.into_inner().unwrap_or_default());
    out
}

fn resolve_with(
    reference: &SecretRef,
    plan_dir: &Path,
    env: &dyn Fn(&str) -> Option<OsString>,
    timeout: Duration,
    hidden: &[String],
) -> Result<Secret, SecretError> {
    match reference {
        SecretRef::Env(name) => {
            let value = env(name).ok_or_else(|| SecretError::EnvUnset { name: name.clone() })?;
            if value.is_empty() {
                return Err(SecretError::EnvEmpty { name: name.clone() });
            }
            value
                .into_string()
                .map(Secret::new)
                .map_err(|_| SecretError::EnvNotUnicode { name: name.clone() })
        }
        SecretRef::File(path) => {
            let path = plan_dir.join(path);
            let fail = |reason: String| SecretError::File {
                path: path.clone(),
                reason,
            };
            let bytes = super::files::read_regular(&path, MAX_SECRET_BYTES)
                .map_err(|e| fail(e.to_string()))?;
            let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8".to_owned()))?;
            let text = text
                .strip_suffix('\n')
                .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
            if text.is_empty() {
                return Err(fail("it is empty".to_owned()));
            }
            Ok(Secret::new(text))
        }
        SecretRef::Command(command) => run_command(command, plan_dir, timeout, hidden),
    }
}

/// `sh -c COMMAND`, stdin and stderr closed, the first line of stdout within `timeout`; the
/// variables `hidden` removed from its environment. It runs in a process group of its own,
/// killed whole once its answer is read or its time is up: nothing it started lives on.
fn run_command(
    command: &str,
    plan_dir: &Path,
    timeout: Duration,
    hidden: &[String],
) -> Result<Secret, SecretError> {
    let fail = |reason: String| SecretError::Command {
        command: command.to_owned(),
        reason,
    };
    let mut sh = Command::new("sh");
    for name in hidden {
        sh.env_remove(name);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        sh.process_group(0);
    }
    let mut child = sh
        .arg("-c")
        .arg(command)
        .current_dir(if plan_dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            plan_dir
        })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // The command's messages could quote what it read; they are not shown.
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("could not start: {e}")))?;
    let group = Group(Some(rustix::process::Pid::from_child(&child)));
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let read = stdout
                .take(MAX_SECRET_BYTES)
                .read_to_end(&mut bytes)
                .map(|_| bytes);
            let _ = tx.send(read);
        });
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                group.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "did not finish within {} s",
                    timeout.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(fail(format!("could not be waited for: {e}"))),
        }
    };
    if !status.success() {
        return Err(fail(format!("failed ({status})")));
    }
    // A background process still holding stdout must not hang the run.
    let bytes = rx
        .recv_timeout(Duration::from_secs(1))
        .map_err(|_| fail("kept its output open".to_owned()))?
        .map_err(|e| fail(format!("output could not be read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| fail("printed non-UTF-8 output".to_owned()))?;
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(fail("printed nothing".to_owned()));
    }
    Ok(Secret::new(line))
}

/// A command's process group, killed whole when dropped (it may be gone already).
struct Group(Option<rustix::process::Pid>);

impl Group {
    fn kill(&self) {
        if let Some(pid) = self.0 {
            // The child leads its own group (`process_group(0)`): its id is the group's.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One use of a secret reference: the account, the key, where it was written.
type Use<'p> = (&'p str, &'static str, Option<&'p Origin>);

/// Check, without reading any secret or running any command, that every secret reference of
/// the plan can be resolved. One `plan::unresolved_secret` warning per unavailable reference,
/// labelled where it is first used; the help says how many accounts use it.
pub fn check(plan: &Plan) -> Diagnostics {
    let mut diags = check_with(plan, &|name| std::env::var_os(name), &find_program);
    if plan
        .accounts
        .iter()
        .any(|a| a.flow != crate::plan::model::Flow::ImapToImap)
    {
        let files = crate::providers::ovh::config::default_files(
            std::env::home_dir().as_deref(),
            Path::new("."),
        );
        for file in files {
            if let Some(mode) = readable_by_others(&file) {
                diags.push(
                    Diagnostic::warning(
                        Code::Insecure,
                        format!(
                            "{} may be read by others (mode {mode:o}): it holds OVH API keys",
                            file.display()
                        ),
                    )
                    .with_help(format!("chmod 600 {}", file.display())),
                );
            }
        }
        diags.sort();
    }
    diags
}

/// The permission bits of a regular file its group or everyone may read.
fn readable_by_others(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).ok()?;
        let mode = meta.permissions().mode();
        (meta.is_file() && mode & 0o044 != 0).then_some(mode & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

fn check_with(
    plan: &Plan,
    env: &dyn Fn(&str) -> Option<OsString>,
    find: &dyn Fn(&str) -> bool,
) -> Diagnostics {
    let plan_dir = plan.path.parent().unwrap_or_else(|| Path::new(""));
    // Each reference once, with its uses in plan order.
    let mut index: HashMap<&SecretRef, usize> = HashMap::new();
    let mut all: Vec<(&SecretRef, Vec<Use<'_>>)> = Vec::new();
    for a in &plan.accounts {
        let pairs = [
            (
                "source-password",
                &a.source_password,
                &a.secret_origins.source_password,
            ),
            (
                "target-password",
                &a.target_password,
                &a.secret_origins.target_password,
            ),
        ];
        for (role, reference, origin) in pairs {
            if let Some(reference) = reference {
                let i = *index.entry(reference).or_insert_with(|| {
                    all.push((reference, Vec::new()));
                    all.len() - 1
                });
                all[i].1.push((&a.address, role, origin.as_ref()));
            }
        }
    }
    let mut diags = Diagnostics::default();
    for (reference, uses) in &all {
        if let SecretRef::File(path) = reference
            && let Some(mode) = readable_by_others(&plan_dir.join(path))
        {
            let (address, role, origin) = uses[0];
            let mut d = Diagnostic::warning(
                Code::Insecure,
                format!(
                    "secret file {path} may be read by others (mode {mode:o}) ({role} of {address})"
                ),
            );
            if let Some(origin) = origin {
                d = d.with_label(&origin.source, origin.span, reference.to_string());
            }
            diags.push(d.with_help(format!(
                "chmod 600 {path}: whoever can read it has the password"
            )));
        }
    }
    for (reference, uses) in all {
        let why = match reference {
            SecretRef::Env(name) => match env(name) {
                None => format!("environment variable {name} is not set"),
                Some(v) if v.is_empty() => format!("environment variable {name} is set but empty"),
                Some(v) if v.to_str().is_none() => {
                    format!("environment variable {name} is not valid UTF-8")
                }
                Some(_) => continue,
            },
            // Opened without blocking: a FIFO named as a secret does not hang `validate`.
            SecretRef::File(path) => match super::files::open_regular(&plan_dir.join(path)) {
                // An empty file, or one holding a line break alone, holds no password.
                Ok(f) if f.metadata().is_ok_and(|m| m.len() <= 2) => {
                    let mut start = Vec::new();
                    let _ = f.take(3).read_to_end(&mut start);
                    if matches!(start.as_slice(), b"" | b"\n" | b"\r\n") {
                        format!("secret file {path} is empty")
                    } else {
                        continue;
                    }
                }
                Ok(_) => continue,
                Err(e) => format!("secret file {path} cannot be read: {e}"),
            },
            SecretRef::Command(command) => match program_of(command) {
                Some(program) if !find(program) => {
                    format!("the program `{program}` of secret command `{command}` is not on PATH")
                }
                _ => continue,
            },
        };
        let (address, role, origin) = uses[0];
        let mut d = Diagnostic::warning(
            Code::UnresolvedSecret,
            format!("{why} ({role} of {address})"),
        );
        if let Some(origin) = origin {
            d = d.with_label(&origin.source, origin.span, reference.to_string());
        }
        let others = uses.len() - 1;
        let mut help = match reference {
            SecretRef::Env(_) => "set it before `mailplan apply`".to_owned(),
            SecretRef::File(_) => {
                "create it before `mailplan apply`; `file:` paths are relative to the plan's folder"
                    .to_owned()
            }
            SecretRef::Command(_) => {
                "install it or fix the command before `mailplan apply`".to_owned()
            }
        };
        help.push_str("; it is an error for anything that executes");
        if others > 0 {
            help.push('\n');
            help.push_str(&others.to_string());
            help.push_str(" more account(s) use the same reference");
        }
        diags.push(d.with_help(help));
    }
    diags.sort();
    diags
}

/// The program a shell command starts, when it can be told without running a shell: `None` for
/// builtins, variable assignments, and anything starting with shell syntax.
fn program_of(command: &str) -> Option<&str> {
    const BUILTINS: &[&str] = &[
        ".", ":", "[", "cd", "command", "echo", "eval", "exec", "export", "false", "printf",
        "read", "set", "source", "test", "true", "type",
    ];
    let first = command.split_whitespace().next()?;
    let shell_syntax = first.contains([
        '=', '$', '`', '(', ')', '{', '}', '"', '\'', '<', '>', '|', ';', '&', '\\',
    ]);
    (!shell_syntax && !BUILTINS.contains(&first)).then_some(first)
}

/// Whether `program` names an executable file: as a path when it holds a `/`, else on `PATH`.
fn find_program(program: &str) -> bool {
    if program.contains('/') {
        return is_executable(Path::new(program));
    }
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
    })
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::diag::Severity;
    use crate::plan::source::SourceFile;

    const VALUE: &str = "s3cr3t-value-never-printed";

    fn env(name: &str) -> Option<OsString> {
        match name {
            "SET_VAR" => Some(OsString::from(VALUE)),
            "EMPTY_VAR" => Some(OsString::new()),
            _ => None,
        }
    }

    #[test]
    fn resolves_env_file_and_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pw"), format!("{VALUE}\r\n")).expect("write");
        let t = Duration::from_secs(5);
        let get = |r: SecretRef| resolve_with(&r, dir.path(), &env, t, &[]);
        assert_eq!(
            get(SecretRef::Env("SET_VAR".into())).expect("env").expose(),
            VALUE
        );
        assert_eq!(
            get(SecretRef::File("pw".into())).expect("file").expose(),
            VALUE
        );
        let cmd = SecretRef::Command(format!("printf '{VALUE}\\nsecond line\\n'"));
        assert_eq!(get(cmd).expect("command").expose(), VALUE);
        // The working folder is the plan's.
        assert_eq!(
            get(SecretRef::Command("head -n1 pw".into()))
                .expect("cwd")
                .expose(),
            VALUE
        );
    }

    #[test]
    fn errors_name_the_reference_never_the_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pw"), VALUE).expect("write");
        std::fs::write(dir.path().join("empty.pass"), "").expect("write");
        std::fs::write(dir.path().join("newline.pass"), "\n").expect("write");
        let t = Duration::from_millis(300);
        let cases = [
            (
                SecretRef::Env("UNSET_VAR".into()),
                "environment variable UNSET_VAR is not set",
            ),
            (SecretRef::File("nope.pass".into()), "nope.pass"),
            (
                SecretRef::Command("cat pw; cat pw >&2; exit 3".into()),
                "failed (exit status: 3)",
            ),
            (
                SecretRef::Command("sleep 5".into()),
                "did not finish within 0 s",
            ),
            (SecretRef::Command("true".into()), "printed nothing"),
            (SecretRef::Command("echo".into()), "printed nothing"),
            (
                SecretRef::Env("EMPTY_VAR".into()),
                "environment variable EMPTY_VAR is set but empty",
            ),
            (SecretRef::File("empty.pass".into()), "it is empty"),
            (SecretRef::File("newline.pass".into()), "it is empty"),
        ];
        for (reference, expected) in cases {
            let e = resolve_with(&reference, dir.path(), &env, t, &[]).expect_err("fails");
            let text = format!("{e} {e:?}");
            assert!(text.contains(expected), "{text}");
            assert!(
                !text.contains(&format!("{VALUE} ")) && !text.ends_with(VALUE),
                "{text}"
            );
        }
        let ok =
            resolve_with(&SecretRef::Env("SET_VAR".into()), dir.path(), &env, t, &[]).expect("ok");
        assert_eq!(format!("{ok} {ok:?}"), "**** ****");
    }

    /// Mode 0600, as a secret file should be (a wider one gets a `plan::insecure` warning).
    fn private(path: &Path) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_others_may_read_is_a_warning_that_never_blocks() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("open.pass");
        std::fs::write(&path, VALUE).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let text = "version: 1
platforms:
  a: { type: imap, imap: { host: a.example } }
  b: { type: imap, imap: { host: b.example } }
accounts:
  - { address: x@y.example, from: a, to: b, source-password: { file: open.pass }, target-password: { env: SET_VAR } }
  - { address: z@y.example, from: a, to: b, source-password: { file: open.pass }, target-password: { env: SET_VAR } }
";
        let source = SourceFile::new("p.yaml", text);
        let (plan, diags) = crate::plan::load(&source, &dir.path().join("p.yaml"));
        let plan = plan.unwrap_or_else(|| panic!("{:?}", diags.items));
        let mut diags = check_with(&plan, &env, &|_| true);
        diags.escalate(Code::UnresolvedSecret);
        assert_eq!(diags.items.len(), 1, "{:?}", diags.items);
        let d = &diags.items[0];
        assert_eq!((d.code, d.severity), (Code::Insecure, Severity::Warning));
        assert!(
            d.message
                .contains("open.pass may be read by others (mode 644)"),
            "{}",
            d.message
        );
        assert!(
            !d.message.contains(VALUE)
                && d.help
                    .as_deref()
                    .is_some_and(|h| h.starts_with("chmod 600"))
        );
        assert_eq!(d.location().map(|(_, line, _)| line), Some(6));
        private(&path);
        assert!(check_with(&plan, &env, &|_| true).items.is_empty());
    }

    #[test]
    fn a_command_that_times_out_is_killed_with_everything_it_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cmd = SecretRef::Command("sleep 30 & echo $! > child.pid; wait".into());
        let e = resolve_with(&cmd, dir.path(), &env, Duration::from_millis(500), &[])
            .expect_err("times out");
        assert!(e.to_string().contains("did not finish"), "{e}");
        let pid = std::fs::read_to_string(dir.path().join("child.pid")).expect("pid");
        let stat = format!("/proc/{}/stat", pid.trim());
        // Killed with its group (its parent gone, it is reaped by init shortly after).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = std::fs::read_to_string(&stat).unwrap_or_default();
            let gone = state.is_empty()
                || state
                    .rsplit(") ")
                    .next()
                    .is_some_and(|s| s.starts_with('Z'));
            if gone {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the command's child lives on: {state}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn references_are_resolved_once_concurrently_and_commands_see_no_other_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Duration::from_secs(20);
        // Each waits for the other: run one after the other, both would time out.
        let a = SecretRef::Command(
            "echo run >> runs; touch a; while [ ! -e b ]; do sleep 0.05; done; echo pw-a".into(),
        );
        let b =
            SecretRef::Command("touch b; while [ ! -e a ]; do sleep 0.05; done; echo pw-b".into());
        // A variable of this process stands for one an `env:` reference names: the commands do
        // not see it (PATH is not one: the shell sets a default).
        let (name, _) = std::env::vars()
            .find(|(k, v)| {
                k != "PATH"
                    && !v.is_empty()
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
            .expect("a variable");
        let path = SecretRef::Env(name.clone());
        let shown = SecretRef::Command(format!("printf '%s\\n' \"${{{name}-hidden}}\""));
        let ovh = SecretRef::Command("echo \"${OVH_APPLICATION_SECRET-hidden}\"".into());
        let refs = [&a, &b, &a, &path, &shown, &a, &ovh];
        let all = resolve_all_with(refs, dir.path(), &|n| std::env::var_os(n), t);
        assert_eq!(all.len(), 5);
        let value = |r: &SecretRef| all[r].as_ref().map(|s| s.expose().to_owned()).expect("ok");
        assert_eq!(value(&a), "pw-a");
        assert_eq!(value(&b), "pw-b");
        assert_eq!(value(&shown), "hidden");
        assert_eq!(value(&ovh), "hidden");
        let runs = std::fs::read_to_string(dir.path().join("runs")).expect("runs");
        assert_eq!(runs, "run\n", "a reference used three times ran once");
    }

    #[test]
    fn check_warns_once_per_reference_at_its_first_use_and_escalates() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("here.pass"), VALUE).expect("write");
        std::fs::write(dir.path().join("empty.pass"), "\n").expect("write");
        private(&dir.path().join("here.pass"));
        private(&dir.path().join("empty.pass"));
        let text = "version: 1
platforms:
  a: { type: imap, imap: { host: a.example } }
  b: { type: imap, imap: { host: b.example } }
accounts:
  - { address: x@y.example, from: a, to: b, source-password: { env: SET_VAR }, target-password: { env: UNSET_VAR } }
  - { address: z@y.example, from: a, to: b, source-password: { file: here.pass }, target-password: { env: UNSET_VAR } }
  - { address: w@y.example, from: a, to: b, source-password: { file: gone.pass }, target-password: { command: nosuchprogram-xyz show w } }
  - { address: v@y.example, from: a, to: b, source-password: { command: \"pass show v\" }, target-password: { command: \"PW=1 helper\" } }
  - { address: u@y.example, from: a, to: b, source-password: { env: EMPTY_VAR }, target-password: { file: empty.pass } }
";
        let source = SourceFile::new("p.yaml", text);
        let (plan, diags) = crate::plan::load(&source, &dir.path().join("p.yaml"));
        let plan = plan.unwrap_or_else(|| panic!("{:?}", diags.items));
        let mut diags = check_with(&plan, &env, &|p| p == "pass");
        let found: Vec<(String, usize, usize)> = diags
            .items
            .iter()
            .map(|d| {
                let (_, line, col) = d.location().unwrap_or(("", 0, 0));
                (d.message.clone(), line, col)
            })
            .collect();
        assert_eq!(
            found,
            [
                ("environment variable UNSET_VAR is not set (target-password of x@y.example)".to_owned(), 6, 97),
                ("secret file gone.pass cannot be read: it does not exist (source-password of w@y.example)".to_owned(), 8, 62),
                ("the program `nosuchprogram-xyz` of secret command `nosuchprogram-xyz show w` is not on PATH (target-password of w@y.example)".to_owned(), 8, 100),
                ("environment variable EMPTY_VAR is set but empty (source-password of u@y.example)".to_owned(), 10, 62),
                ("secret file empty.pass is empty (target-password of u@y.example)".to_owned(), 10, 99),
            ]
        );
        assert!(
            diags.items[0]
                .help
                .as_deref()
                .is_some_and(|h| h.ends_with("1 more account(s) use the same reference"))
        );
        assert!(
            diags
                .items
                .iter()
                .all(|d| d.severity == Severity::Warning && d.code == Code::UnresolvedSecret)
        );
        diags.escalate(Code::UnresolvedSecret);
        assert_eq!(diags.error_count(), 5);
    }

    #[test]
    fn programs_are_told_apart_from_shell_syntax() {
        assert_eq!(program_of("pass show x"), Some("pass"));
        assert_eq!(program_of("/usr/bin/op read x"), Some("/usr/bin/op"));
        assert_eq!(program_of("echo x"), None);
        assert_eq!(program_of("PW=1 helper"), None);
        assert_eq!(program_of("$HOME/bin/x"), None);
        assert!(find_program("sh"));
        assert!(!find_program("nosuchprogram-xyz"));
    }
}
