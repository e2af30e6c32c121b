//! What the commands do once the command line is read ([`super::run`] dispatches here): read,
//! select and show a plan (its imports through the bounded file reader), write and check saved
//! plans, run `apply` on a runtime with the run printer, `ovh login`, the man pages, and print
//! an error with its code. Every function returns the process's exit code ([`super::Exit`]).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::exec::runner::ApplyOptions;
use crate::graph::StepGraph;
use crate::plan::diag::{Code, Diagnostic, Diagnostics};
use crate::plan::model::Plan;
use crate::plan::source::SourceFile;
use crate::plan::{self, yaml};
use crate::report::diagnostics::{self, Detail, Format};
use crate::report::dry_run::Format as DryRunFormat;
use crate::report::progress::{Output, Printer};

use super::{Cli, Exit};

/// `mailplan man`: the top page on stdout, or every page (the top one names
/// `mailplan-apply(1)` and the others) written into `dir`.
pub(super) fn man(dir: Option<&Path>) -> u8 {
    let cmd = <Cli as clap::CommandFactory>::command();
    let Some(dir) = dir else {
        return match clap_mangen::Man::new(cmd).render(&mut io::stdout()) {
            Ok(()) => 0,
            Err(_) => 1,
        };
    };
    let written = fs_err::create_dir_all(dir).and_then(|()| {
        clap_mangen::generate_to(cmd, dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("writing the man pages into {}: {e}", dir.display()),
            )
        })
    });
    match written {
        Ok(()) => {
            let _ = writeln!(io::stderr(), "man pages written into {}", dir.display());
            0
        }
        Err(e) => {
            let _ = writeln!(io::stderr(), "{e}");
            1
        }
    }
}

/// A plan loaded for a saved plan: the plan, its text and the digests of the files it imported.
pub(super) struct Loaded {
    pub(super) plan: Plan,
    pub(super) text: std::sync::Arc<str>,
    pub(super) imports: Vec<crate::exec::saved::FileDigest>,
}

impl Loaded {
    /// What `plan --out` saves and `apply FILE` compares (the dry run as JSON inside).
    pub(super) fn record(
        &self,
        path: &Path,
        only: &[String],
        exclude: &[String],
        graph: &StepGraph,
        live: Option<&[crate::exec::refresh::AccountRefresh]>,
    ) -> crate::exec::saved::SavedPlan {
        let mut json = Vec::new();
        let _ =
            crate::report::dry_run::render(&self.plan, graph, DryRunFormat::Json, live, &mut json);
        let dry_run = serde_json::from_slice(&json).unwrap_or(serde_json::Value::Null);
        let plan_path = path.display().to_string();
        let inputs = crate::exec::saved::Inputs {
            plan_path: &plan_path,
            plan_text: &self.text,
            imports: self.imports.clone(),
            only,
            exclude,
        };
        crate::exec::saved::record(inputs, &self.plan, graph, live, dry_run)
    }
}

/// [`load_shown`], recording the plan's text and every import's digest.
pub(super) fn load_recorded(
    path: &Path,
    import_root: Option<&Path>,
    color: bool,
    detail: Detail,
    secrets: Secrets<'_>,
) -> Result<Loaded, u8> {
    let recording = Recording {
        files: ImportFiles::new(path, import_root),
        seen: std::cell::RefCell::new(Vec::new()),
    };
    let (plan, diags, text) = read_and_select_with(path, secrets, &recording);
    let plan = show_loaded(path, plan, &diags, color, detail)?;
    Ok(Loaded {
        plan,
        text: text.unwrap_or_else(|| std::sync::Arc::from("")),
        imports: recording.seen.into_inner(),
    })
}

/// The plan's imports read as [`ImportFiles`] reads them, each one's digest kept for a saved plan.
pub(super) struct Recording {
    files: ImportFiles,
    seen: std::cell::RefCell<Vec<crate::exec::saved::FileDigest>>,
}

impl plan::FileReader for Recording {
    fn read(&self, path: &Path, max_len: usize) -> Result<Vec<u8>, String> {
        let bytes = self.files.read(path, max_len)?;
        self.seen.borrow_mut().push(crate::exec::saved::FileDigest {
            path: path.display().to_string(),
            sha256: crate::exec::saved::sha256(&bytes),
        });
        Ok(bytes)
    }

    fn same_file(&self, a: &Path, b: &Path) -> bool {
        self.files.same_file(a, b)
    }
}

/// When `path` is a saved plan: the plan it was made from and the record. `--only`/`--exclude`
/// cannot change what was reviewed.
pub(super) fn saved_plan(
    path: &Path,
    only: &[String],
    exclude: &[String],
    color: bool,
) -> Result<Option<(PathBuf, crate::exec::saved::SavedPlan)>, u8> {
    use crate::exec::saved;
    let Ok(bytes) = fs_err::read(path) else {
        // Not readable here: the plan loader says why.
        return Ok(None);
    };
    if !saved::is_saved_plan(&bytes) {
        return Ok(None);
    }
    let record =
        saved::read(path, &bytes).map_err(|e| print_error(&e, color, Exit::Invalid.code()))?;
    if !only.is_empty() || !exclude.is_empty() {
        let e = saved::SavedPlanError::Unreadable {
            path: path.display().to_string(),
            reason: "--only and --exclude cannot change a saved plan (it keeps the selection \
                     it was made with)"
                .to_owned(),
        };
        return Err(print_error(&e, color, Exit::Invalid.code()));
    }
    Ok(Some((PathBuf::from(&record.plan.path), record)))
}

/// `apply FILE`: refuse, naming each difference, unless what would run now is what was saved.
pub(super) fn check_saved(
    file: &Path,
    saved: &crate::exec::saved::SavedPlan,
    loaded: &Loaded,
    path: &Path,
    only: &[String],
    exclude: &[String],
    color: bool,
) -> Result<(), u8> {
    use crate::exec::saved;
    let graph = StepGraph::build(&loaded.plan);
    let live = if saved.live.is_some() {
        let read = runtime()?.block_on(crate::exec::refresh::refresh(&loaded.plan));
        Some(read.map_err(|e| print_error(&e, color, Exit::Invalid.code()))?)
    } else {
        None
    };
    let now = loaded.record(path, only, exclude, &graph, live.as_deref());
    let list = saved::differences(saved, &now);
    if list.is_empty() {
        let _ = writeln!(
            io::stderr(),
            "{}: the saved plan matches the plan{}; applying it",
            file.display(),
            if live.is_some() {
                " and the live state"
            } else {
                ""
            }
        );
        return Ok(());
    }
    let e = saved::SavedPlanError::Stale {
        path: file.display().to_string(),
        list,
    };
    Err(print_error(&e, color, Exit::Invalid.code()))
}

/// The async runtime of the commands that talk to servers.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            let _ = writeln!(io::stderr(), "cannot start the async runtime: {e}");
            Exit::Failed.code()
        })
}

pub(super) fn apply(plan: Plan, options: &ApplyOptions, output: Output, color: bool) -> u8 {
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let printer = Arc::new(Printer::new(output));
    match runtime.block_on(crate::exec::runner::apply(plan, options, printer)) {
        Ok(summary) => Exit::of_run(&summary).code(),
        Err(e) => print_error(&e, color, Exit::Invalid.code()),
    }
}

/// `mailplan ovh login`: request a consumer key with [`ovh::api::auth::ACCESS_RULES`]; the URL
/// and the key go to stdout (the key to the `--save` file instead, when given), the
/// explanations to stderr.
pub(super) fn ovh_login(endpoint: Option<&str>, save: Option<&Path>, color: bool) -> u8 {
    use crate::providers::ovh::{self, api::auth};
    use crate::report::login::{self, KeyWent};
    let credentials = match ovh::config::load(&ovh::ConfigSources::system(), endpoint) {
        Ok(c) => c,
        Err(e) => return print_error(&e, color, Exit::Invalid.code()),
    };
    let section = credentials.endpoint.name.clone();
    let client = match ovh::Client::new(credentials, ovh::ClientOptions::default()) {
        Ok(c) => c,
        Err(e) => return print_error(&e, color, Exit::Invalid.code()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(io::stderr(), "cannot start the async runtime: {e}");
            return 1;
        }
    };
    let request = auth::CredentialRequest {
        access_rules: auth::ACCESS_RULES.to_vec(),
        redirection: None,
    };
    let pending = match runtime.block_on(auth::request_credential(
        &client,
        "requesting a consumer key",
        &request,
    )) {
        Ok(p) => p,
        Err(e) => return print_error(&e, color, Exit::Failed.code()),
    };
    let stored = save.map(|path| {
        (
            path,
            ovh::config::save_consumer_key(path, &section, &pending.consumer_key),
        )
    });
    let key_went = match &stored {
        None => KeyWent::Printed,
        Some((path, Ok(()))) => KeyWent::Stored(path),
        Some((path, Err(e))) => KeyWent::NotStored(path, e),
    };
    let granted = login::Granted {
        base_url: client.base_url(),
        rules: auth::ACCESS_RULES,
        section: &section,
        validation_url: &pending.validation_url,
        consumer_key: &pending.consumer_key,
        key_went,
    };
    let _ = login::render(&granted, &mut io::stdout().lock(), &mut io::stderr().lock());
    match key_went {
        KeyWent::NotStored(..) => 1,
        KeyWent::Printed | KeyWent::Stored(_) => 0,
    }
}

/// Print an error with its code and help (miette), return `code`.
pub(super) fn print_error(e: &dyn miette::Diagnostic, color: bool, code: u8) -> u8 {
    let handler = miette::GraphicalReportHandler::new_themed(if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    });
    let mut text = String::new();
    if handler.render_report(&mut text, e).is_err() {
        text = e.to_string();
    }
    let _ = writeln!(io::stderr(), "{text}");
    code
}

/// What a command does with the plan's secret references.
#[derive(Debug, Clone, Copy)]
pub(super) enum Secrets<'a> {
    /// `status` and `report` read the state store only: no secret is checked or warned about.
    Unused,
    /// `validate`, `plan`, `graph`: an unresolvable reference is a warning (nothing executes).
    Checked,
    /// Commands that execute keep the selected accounts (`--only`, `--exclude`), and every
    /// secret they need that cannot be resolved is an error: nothing starts half-equipped.
    Required(&'a [String], &'a [String]),
}

/// Read and validate a plan; the diagnostics and the plan when it has no error.
pub(super) fn read_and_select(
    path: &Path,
    import_root: Option<&Path>,
    secrets: Secrets<'_>,
) -> (Option<Plan>, Diagnostics) {
    let files = ImportFiles::new(path, import_root);
    let (plan, diags, _) = read_and_select_with(path, secrets, &files);
    (plan, diags)
}

/// [`read_and_select`] reading the imports through `files`; also returns the plan's text.
pub(super) fn read_and_select_with(
    path: &Path,
    secrets: Secrets<'_>,
    files: &dyn plan::FileReader,
) -> (Option<Plan>, Diagnostics, Option<std::sync::Arc<str>>) {
    match read_source(path) {
        Ok(source) => {
            let (mut plan, mut diags) = plan::load_with(&source, path, files);
            if let Some(p) = &mut plan {
                if let Secrets::Required(only, exclude) = secrets {
                    diags.extend(unknown_selection(p, only, exclude));
                    p.select(only, exclude);
                }
                if !matches!(secrets, Secrets::Unused) {
                    let mut found = crate::exec::secrets::check(p);
                    if matches!(secrets, Secrets::Required(..)) {
                        found.escalate(Code::UnresolvedSecret);
                    }
                    diags.extend(found.items);
                    diags.sort();
                }
            }
            if diags.has_errors() {
                plan = None;
            }
            (plan, diags, Some(std::sync::Arc::clone(&source.text)))
        }
        Err(d) => {
            let mut diags = Diagnostics::default();
            diags.push(d);
            (None, diags, None)
        }
    }
}

/// An error for each `--only`/`--exclude` address (lower-cased) that is no account of the plan,
/// with the closest one as a "did you mean": a typo must not turn into a run of nothing.
pub(super) fn unknown_selection(
    plan: &Plan,
    only: &[String],
    exclude: &[String],
) -> Vec<Diagnostic> {
    let known: std::collections::HashSet<&str> =
        plan.accounts.iter().map(|a| a.address.as_str()).collect();
    let addresses: Vec<&str> = plan.accounts.iter().map(|a| a.address.as_str()).collect();
    let flagged = only
        .iter()
        .map(|a| ("--only", a))
        .chain(exclude.iter().map(|a| ("--exclude", a)));
    flagged
        .filter(|(_, a)| !known.contains(a.as_str()))
        .map(|(flag, a)| {
            let help = match plan::decode::did_you_mean(a, &addresses) {
                Some(close) => format!("did you mean `{close}`?"),
                None => "`mailplan plan PLAN` lists the plan's accounts; addresses are matched \
                         ignoring case"
                    .to_owned(),
            };
            Diagnostic::error(
                Code::UnknownAccount,
                format!("{flag} {a}: no account of the plan has this address; nothing was run"),
            )
            .with_help(help)
        })
        .collect()
}

/// For commands that need a valid plan: warnings are shown, errors end the command with 2.
pub(super) fn load_valid(
    path: &Path,
    import_root: Option<&Path>,
    color: bool,
    detail: Detail,
) -> Result<Plan, u8> {
    load_shown(path, import_root, color, detail, Secrets::Checked)
}

/// [`load_valid`], with the secrets checked as the command needs (see [`Secrets`]).
pub(super) fn load_shown(
    path: &Path,
    import_root: Option<&Path>,
    color: bool,
    detail: Detail,
    secrets: Secrets<'_>,
) -> Result<Plan, u8> {
    let (plan, diags) = read_and_select(path, import_root, secrets);
    show_loaded(path, plan, &diags, color, detail)
}

/// Show a loaded plan's diagnostics; the plan, or exit 2 when it has errors.
pub(super) fn show_loaded(
    path: &Path,
    plan: Option<Plan>,
    diags: &Diagnostics,
    color: bool,
    detail: Detail,
) -> Result<Plan, u8> {
    let stderr = io::stderr();
    let mut err = stderr.lock();
    let _ = diagnostics::render(
        diags,
        Format::Human,
        color,
        detail,
        &mut io::sink(),
        &mut err,
    );
    match plan {
        Some(plan) => Ok(plan),
        None => {
            let _ = writeln!(
                err,
                "{}: {} error(s); nothing was executed",
                path.display(),
                diags.error_count()
            );
            Err(Exit::Invalid.code())
        }
    }
}

pub(super) fn validate(
    path: &Path,
    import_root: Option<&Path>,
    format: Format,
    color: bool,
    detail: Detail,
    no_secret_check: bool,
) -> u8 {
    let mut diags = read_and_select(path, import_root, Secrets::Checked).1;
    if no_secret_check {
        diags.items.retain(|d| d.code != Code::UnresolvedSecret);
    }
    let (stdout, stderr) = (io::stdout(), io::stderr());
    let (mut out, mut err) = (stdout.lock(), stderr.lock());
    // A closed pipe on stdout is not worth a second error.
    let _ = diagnostics::render(&diags, format, color, detail, &mut out, &mut err);
    if format == Format::Human {
        let (errors, warnings) = (diags.error_count(), diags.warning_count());
        let summary = if errors == 0 {
            format!("{}: valid ({warnings} warning(s))", path.display())
        } else {
            format!(
                "{}: {errors} error(s), {warnings} warning(s); nothing was executed",
                path.display()
            )
        };
        if errors > 0 || !detail.quiet {
            let _ = writeln!(err, "{summary}");
        }
    }
    if diags.has_errors() {
        Exit::Invalid.code()
    } else {
        0
    }
}

/// The CSV imports' [`plan::FileReader`]: regular files under the import root only (the plan's
/// folder, or `--import-root`), compared after links and `..` are resolved, read with a bound.
pub(super) struct ImportFiles {
    /// The root, resolved; or why it could not be.
    root: Result<PathBuf, String>,
    /// Whether the root is the plan's folder (for the message).
    default_root: bool,
}

impl ImportFiles {
    fn new(plan: &Path, import_root: Option<&Path>) -> Self {
        let folder = plan.parent().filter(|p| !p.as_os_str().is_empty());
        let root = import_root.or(folder).unwrap_or_else(|| Path::new("."));
        ImportFiles {
            root: fs_err::canonicalize(root).map_err(|e| e.to_string()),
            default_root: import_root.is_none(),
        }
    }
}

impl plan::FileReader for ImportFiles {
    fn read(&self, path: &Path, max_len: usize) -> Result<Vec<u8>, String> {
        let shown = path.display();
        let root = self.root.as_ref().map_err(Clone::clone)?;
        let real = std::fs::canonicalize(path).map_err(|e| {
            let why = crate::exec::files::ReadError::Io(match e.kind() {
                io::ErrorKind::NotFound => "it does not exist".to_owned(),
                _ => e.to_string(),
            });
            format!("{shown}: {why}")
        })?;
        if !real.starts_with(root) {
            let whose = if self.default_root {
                "the plan's folder"
            } else {
                "the `--import-root` folder"
            };
            return Err(format!(
                "{shown} is outside {whose} ({}); imports are read from there only (`--import-root DIR` widens it)",
                root.display()
            ));
        }
        crate::exec::files::read_regular(&real, max_len as u64).map_err(|e| match e {
            crate::exec::files::ReadError::TooLarge(_) => format!(
                "{shown} holds more than the {} MiB left to read: an import may be at most {} MiB, and the imports of a plan {} MiB together",
                max_len / (1024 * 1024),
                plan::import::MAX_IMPORT_BYTES / (1024 * 1024),
                plan::import::MAX_TOTAL_IMPORT_BYTES / (1024 * 1024)
            ),
            other => format!("{shown}: {other}"),
        })
    }

    fn same_file(&self, a: &Path, b: &Path) -> bool {
        match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        }
    }
}

/// Read a plan file: a regular file only (a FIFO or a device is refused without blocking),
/// refusing what is too large before reading it all, and never reading past the bound.
pub(super) fn read_source(path: &Path) -> Result<std::sync::Arc<SourceFile>, Diagnostic> {
    let name = path.display().to_string();
    let unreadable = |e: &dyn std::fmt::Display| {
        Diagnostic::error(
            Code::Unreadable,
            format!("cannot read the plan {name}: {e}"),
        )
    };
    let meta = fs_err::metadata(path).map_err(|e| unreadable(&e))?;
    if meta.is_file() {
        yaml::check_size(&name, usize::try_from(meta.len()).unwrap_or(usize::MAX))?;
    }
    let bytes = crate::exec::files::read_regular(path, yaml::MAX_PLAN_BYTES as u64).map_err(
        |e| match &e {
            crate::exec::files::ReadError::TooLarge(_) => {
                match yaml::check_size(&name, yaml::MAX_PLAN_BYTES + 1) {
                    Err(d) => d,
                    Ok(()) => unreadable(&e),
                }
            }
            other => unreadable(other),
        },
    )?;
    yaml::decode(&name, bytes)
}
