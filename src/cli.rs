//! The command line: clap definitions (doc comments are the help text) and dispatch.
//!
//! Entry point: [`run`], which returns the process exit code ([`Exit`]: 0 ok, 1 steps failed,
//! 2 invalid plan or usage, 130 interrupted).

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use std::sync::Arc;

use crate::exec::runner::{ApplyOptions, RunSummary};
use crate::exec::snapshot;
use crate::exec::store::StateLocation;
use crate::graph::StepGraph;
use crate::plan::diag::{Code, Diagnostic, Diagnostics};
use crate::plan::model::Plan;
use crate::plan::source::SourceFile;
use crate::plan::{self, yaml};
use crate::providers::RunMode;
use crate::report::diagnostics::{self, Detail, Format};
use crate::report::dry_run::Format as DryRunFormat;
use crate::report::graph::Format as GraphFormat;
use crate::report::progress::{Output, Printer};
use crate::report::run::{ReportFormat, StatusFormat};

/// The process's exit codes, the only place they are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything done.
    Done,
    /// Some steps failed (or were skipped because of a failure), or the command failed while
    /// running.
    Failed,
    /// The plan is invalid or the command line is wrong; nothing was executed.
    Invalid,
    /// Interrupted (Ctrl-C or SIGTERM); the next `apply` resumes.
    Interrupted,
}

impl Exit {
    /// 0, 1, 2 or 130.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Done => 0,
            Exit::Failed => 1,
            Exit::Invalid => 2,
            Exit::Interrupted => 130,
        }
    }

    /// What a run exits with.
    pub fn of_run(summary: &RunSummary) -> Self {
        if summary.interrupted {
            Exit::Interrupted
        } else if summary.failed > 0 || summary.skipped > 0 {
            Exit::Failed
        } else {
            Exit::Done
        }
    }
}

/// Plan, review and run e-mail migrations for many accounts at once.
#[derive(Debug, Parser)]
#[command(name = "mailplan", version, about, long_about = None)]
pub struct Cli {
    /// When to use colours (`auto` honours the `NO_COLOR` variable).
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    /// Show every diagnostic of the plan in full (by default, after the first few of a kind,
    /// one line counts the rest).
    #[arg(long, short = 'v', global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Show errors only: the plan's warnings are counted, not shown, and a valid plan prints
    /// nothing; `apply` shows no progress (no bars, no step lines), only its failed steps and
    /// its final summary.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Let `import:` read CSV files anywhere under this folder (default: only under the plan's
    /// own folder). Only regular files are read, never a file the plan uses as a `file:` secret.
    #[arg(long, global = true, value_name = "DIR")]
    pub import_root: Option<PathBuf>,
    /// Write each IMAP connection's commands and answers to a file of its own in DIR, to attach
    /// to a bug report: passwords masked, message bodies shown as their sizes (see
    /// docs/servers.md).
    #[arg(long, global = true, value_name = "DIR")]
    pub trace_imap: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a plan and report every problem at once (exit 0 with only warnings, 2 on errors).
    Validate {
        /// The plan file (YAML).
        plan: PathBuf,
        /// How to print the diagnostics: `human` (with the YAML around each), `github`
        /// (Actions annotations) or `json` (`mailplan.validate/v1`).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Do not check that the secrets' variables, files and commands exist (a CI job that
        /// reviews the plan and has no secrets): no `plan::unresolved_secret` warnings.
        #[arg(long)]
        no_secret_check: bool,
    },
    /// The offline dry run: per account the ordered steps and what each would do, totals, stages.
    Plan {
        /// The plan file (YAML).
        plan: PathBuf,
        /// `text` for people, `json` for machines (`mailplan.plan/v1`), `markdown` for a
        /// pull-request comment.
        #[arg(long, value_enum, default_value_t = DryRunFormat::Text)]
        format: DryRunFormat,
        /// Only these accounts (addresses).
        #[arg(long, num_args = 1..)]
        only: Vec<String>,
        /// Leave these accounts out (addresses).
        #[arg(long, num_args = 1..)]
        exclude: Vec<String>,
        /// Also read the live state (read-only): log in, list folders, show where each goes and
        /// how many messages each side holds. Exit 1 when a server cannot be read.
        #[arg(long)]
        refresh: bool,
        /// Also save this dry run (with the digests of the plan, its imports and, with
        /// `--refresh`, the live state) for `mailplan apply FILE`, which runs exactly it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print the plan format's JSON Schema (the one in `schemas/plan.schema.json`).
    Schema,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) on standard output, or write every page with `--dir`.
    Man {
        /// Write `mailplan.1` and one page per subcommand (`mailplan-apply.1`, …) into this
        /// folder (made when missing), e.g. `~/.local/share/man/man1`.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Execute the plan: copy and verify mail, recording progress so that a rerun resumes.
    Apply {
        /// The plan file (YAML), or a saved plan (`mailplan plan PLAN --out FILE`): then exactly
        /// what was reviewed runs, or nothing when the plan, an import or the live state changed.
        plan: PathBuf,
        #[command(flatten)]
        state: StateArg,
        /// Steps run at once (accounts copied in parallel).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
        parallelism: u16,
        /// IMAP connections per server at most, all accounts together (default 8, or the
        /// plan's `max-connections` for that server; given here, it also lowers the plan's).
        #[arg(long, value_parser = clap::value_parser!(u16).range(2..=256))]
        max_connections_per_server: Option<u16>,
        /// Connection pairs per account copy; its folders are shared out among them (extra
        /// pairs only on free server slots).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=16))]
        connections_per_account: u16,
        /// OVH API calls per minute at most, all steps together (OVH's fair use is about 60).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        ovh_requests_per_minute: u32,
        /// Run again the steps that failed in an earlier run.
        #[arg(long)]
        retry_failed: bool,
        /// Log in, list and count, and print what would be copied; write nothing anywhere.
        #[arg(long)]
        dry_run: bool,
        /// Take over the state's lock even if another process seems to hold it (a file state;
        /// the workers of a `PostgreSQL` state take no lock).
        #[arg(long)]
        break_lock: bool,
        /// Progress: `text` (bars on a terminal, plain lines otherwise) or `json` lines.
        #[arg(long, value_enum, default_value_t = ProgressFormat::Text)]
        format: ProgressFormat,
        /// Only these accounts (addresses).
        #[arg(long, num_args = 1..)]
        only: Vec<String>,
        /// Leave these accounts out (addresses).
        #[arg(long, num_args = 1..)]
        exclude: Vec<String>,
    },
    /// Where each account stands: steps, messages copied and left, failures; whether an apply is
    /// running now. Exit 0 when no step failed, 1 when one did, 2 on an invalid plan or state.
    Status {
        /// The plan file (YAML).
        plan: PathBuf,
        #[command(flatten)]
        state: StateArg,
        /// `text` for people, `json` for machines (`mailplan.status/v1`).
        #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
        format: StatusFormat,
    },
    /// The migration report: per account messages in the source, on the target, copied by
    /// mailplan, skipped and refused (with the server's reason), bytes and durations.
    Report {
        /// The plan file (YAML).
        plan: PathBuf,
        #[command(flatten)]
        state: StateArg,
        /// `markdown` for a ticket, `html` for a browser or print (self-contained), `json` for
        /// machines (`mailplan.report/v1`).
        #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
        format: ReportFormat,
    },
    /// Print the step graph of a valid plan (Graphviz DOT or Mermaid).
    Graph {
        /// The plan file (YAML).
        plan: PathBuf,
        /// `dot` for Graphviz, `mermaid` for Markdown that renders it (GitHub, GitLab).
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// `OVHcloud` API credentials.
    Ovh {
        #[command(subcommand)]
        command: OvhCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum OvhCommand {
    /// Ask `OVHcloud` for a consumer key limited to the calls mailplan makes, and print the URL
    /// where you validate it. Needs the application key and secret (`OVH_APPLICATION_KEY` and
    /// `OVH_APPLICATION_SECRET`, or `ovh.conf`).
    Login {
        /// `ovh-eu`, `ovh-ca`, `ovh-us`, … or a base URL (default: `$OVH_ENDPOINT`, then
        /// `[default] endpoint` in ovh.conf, then ovh-eu).
        #[arg(long)]
        endpoint: Option<String>,
        /// Store the consumer key in this `ovh.conf` (under the endpoint's section, file mode
        /// 0600) instead of printing it, e.g. `~/.ovh.conf` or `./ovh.conf`.
        #[arg(long, value_name = "PATH")]
        save: Option<PathBuf>,
    },
}

/// `--state PATH|URL`, shared by the commands that read or write a run's state.
#[derive(Debug, Clone, clap::Args)]
pub struct StateArg {
    /// The state store: a file (default: `.mailplan/<plan name>.db` beside the plan), or a
    /// `PostgreSQL` database several machines share, `postgres://USER@HOST:PORT/DB?sslmode=…`
    /// (the libpq variables PGHOST, PGUSER, PGPASSWORD, … fill what it leaves out). Default:
    /// `$MAILPLAN_STATE` when set.
    #[arg(long = "state", value_name = "PATH|URL")]
    pub path: Option<PathBuf>,
}

/// The variable read when `--state` is not given.
const STATE_VARIABLE: &str = "MAILPLAN_STATE";

impl StateArg {
    /// Where the state is: `--state`, else `$MAILPLAN_STATE`, else the default file beside the
    /// plan. A URL stays a URL (never a path beside the plan); one that cannot be read is an
    /// error printed without its password, exit 2.
    fn resolve(&self, plan: &Plan, plan_path: &Path, color: bool) -> Result<StateLocation, u8> {
        let given = self.path.clone().or_else(|| {
            std::env::var_os(STATE_VARIABLE)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        match given {
            Some(value) => StateLocation::parse(&value)
                .map_err(|e| print_error(&e, color, Exit::Invalid.code())),
            None => Ok(StateLocation::File(crate::exec::store::default_path(
                plan_path, &plan.name,
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressFormat {
    Text,
    Json,
}

/// Run the command line; returns the exit code.
pub fn run() -> u8 {
    let cli = Cli::parse();
    let color = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::env::var_os("NO_COLOR").is_none() && io::stderr().is_terminal(),
    };
    let detail = Detail {
        verbose: cli.verbose,
        quiet: cli.quiet,
    };
    let roots = cli.import_root.as_deref();
    if let Some(dir) = &cli.trace_imap
        && let Err(e) = crate::providers::imap::trace::enable(dir)
    {
        let _ = writeln!(io::stderr(), "--trace-imap: {e}");
        return Exit::Invalid.code();
    }
    match cli.command {
        Command::Validate {
            plan,
            format,
            no_secret_check,
        } => validate(&plan, roots, format, color, detail, no_secret_check),
        Command::Plan {
            plan: path,
            format,
            only,
            exclude,
            refresh,
            out,
        } => {
            let only: Vec<String> = only.iter().map(|a| a.to_lowercase()).collect();
            let exclude: Vec<String> = exclude.iter().map(|a| a.to_lowercase()).collect();
            // --refresh logs in: like apply, it needs every selected account's secrets.
            let secrets = if refresh {
                Secrets::Required(&only, &exclude)
            } else {
                Secrets::Checked
            };
            match load_recorded(&path, roots, color, detail, secrets) {
                Ok(mut loaded) => {
                    if !refresh {
                        // (With --refresh, read_and_select checked and selected already.)
                        let mut unknown = Diagnostics::default();
                        unknown.extend(unknown_selection(&loaded.plan, &only, &exclude));
                        if unknown.has_errors() {
                            let mut err = io::stderr().lock();
                            let _ = diagnostics::render(
                                &unknown,
                                Format::Human,
                                color,
                                detail,
                                &mut io::sink(),
                                &mut err,
                            );
                            return Exit::Invalid.code();
                        }
                    }
                    loaded.plan.select(&only, &exclude);
                    let plan = &loaded.plan;
                    let live = if refresh {
                        match runtime().map(|r| r.block_on(crate::exec::refresh::refresh(plan))) {
                            Ok(Ok(live)) => Some(live),
                            Ok(Err(e)) => return print_error(&e, color, Exit::Invalid.code()),
                            Err(code) => return code,
                        }
                    } else {
                        None
                    };
                    let graph = StepGraph::build(plan);
                    let mut stdout = io::BufWriter::new(io::stdout().lock());
                    let _ = crate::report::dry_run::render(
                        plan,
                        &graph,
                        format,
                        live.as_deref(),
                        &mut stdout,
                    );
                    let _ = stdout.flush();
                    if let Some(out) = out {
                        let saved = loaded.record(&path, &only, &exclude, &graph, live.as_deref());
                        if let Err(e) = crate::exec::saved::write(&out, &saved) {
                            return print_error(&e, color, Exit::Failed.code());
                        }
                        let _ = writeln!(
                            io::stderr(),
                            "saved plan written to {}; `mailplan apply {0}` runs exactly this",
                            out.display()
                        );
                    }
                    // A server that could not be read: the dry run is incomplete.
                    match &live {
                        Some(live) if live.iter().any(|a| a.error.is_some()) => Exit::Failed.code(),
                        _ => Exit::Done.code(),
                    }
                }
                Err(code) => code,
            }
        }
        Command::Schema => {
            let _ = io::stdout()
                .lock()
                .write_all(plan::schema::generate().as_bytes());
            0
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "mailplan", &mut io::stdout());
            0
        }
        Command::Man { dir } => man(dir.as_deref()),
        Command::Apply {
            plan: path,
            state,
            parallelism,
            max_connections_per_server,
            connections_per_account,
            ovh_requests_per_minute,
            retry_failed,
            dry_run,
            break_lock,
            format,
            only,
            exclude,
        } => {
            let mut only: Vec<String> = only.iter().map(|a| a.to_lowercase()).collect();
            let mut exclude: Vec<String> = exclude.iter().map(|a| a.to_lowercase()).collect();
            // A saved plan: the plan it was made from, checked against what was reviewed.
            let (path, saved) = match saved_plan(&path, &only, &exclude, color) {
                Ok(Some((plan_path, saved))) => {
                    only.clone_from(&saved.only);
                    exclude.clone_from(&saved.exclude);
                    (plan_path, Some((path, saved)))
                }
                Ok(None) => (path, None),
                Err(code) => return code,
            };
            let loaded = match &saved {
                Some(_) => load_recorded(
                    &path,
                    roots,
                    color,
                    detail,
                    Secrets::Required(&only, &exclude),
                ),
                None => load_shown(
                    &path,
                    roots,
                    color,
                    detail,
                    Secrets::Required(&only, &exclude),
                )
                .map(|plan| Loaded {
                    plan,
                    text: std::sync::Arc::from(""),
                    imports: Vec::new(),
                }),
            };
            match loaded {
                Ok(loaded) => {
                    if let Some((file, saved)) = &saved
                        && let Err(code) =
                            check_saved(file, saved, &loaded, &path, &only, &exclude, color)
                    {
                        return code;
                    }
                    let plan = loaded.plan;
                    let state = match state.resolve(&plan, &path, color) {
                        Ok(state) => state,
                        Err(code) => return code,
                    };
                    let options = ApplyOptions {
                        state,
                        parallelism: usize::from(parallelism),
                        per_server: max_connections_per_server.map(usize::from),
                        connections: usize::from(connections_per_account),
                        ovh_requests_per_minute,
                        retry_failed,
                        break_lock,
                        mode: if dry_run {
                            RunMode::DryRun
                        } else {
                            RunMode::Real
                        },
                        on_second_interrupt: || {
                            std::process::exit(i32::from(Exit::Interrupted.code()));
                        },
                    };
                    let output = match format {
                        ProgressFormat::Json => Output::Json,
                        ProgressFormat::Text if detail.quiet => Output::Quiet,
                        ProgressFormat::Text if io::stderr().is_terminal() => Output::Bars,
                        ProgressFormat::Text => Output::Lines,
                    };
                    apply(plan, &options, output, color)
                }
                Err(code) => code,
            }
        }
        Command::Status {
            plan: path,
            state,
            format,
        } => match load_shown(&path, roots, color, detail, Secrets::Unused) {
            Ok(plan) => match state.resolve(&plan, &path, color).and_then(|state| {
                snapshot::read(&plan, &state)
                    .map_err(|e| print_error(&e, color, Exit::Invalid.code()))
            }) {
                Ok(s) => {
                    let _ = crate::report::run::render_status(&s, format, &mut io::stdout().lock());
                    s.exit_code()
                }
                Err(code) => code,
            },
            Err(code) => code,
        },
        Command::Report {
            plan: path,
            state,
            format,
        } => match load_shown(&path, roots, color, detail, Secrets::Unused) {
            Ok(plan) => match state.resolve(&plan, &path, color).and_then(|state| {
                snapshot::read(&plan, &state)
                    .map_err(|e| print_error(&e, color, Exit::Invalid.code()))
            }) {
                Ok(s) => {
                    let _ = crate::report::run::render_report(&s, format, &mut io::stdout().lock());
                    0
                }
                Err(code) => code,
            },
            Err(code) => code,
        },
        Command::Ovh {
            command: OvhCommand::Login { endpoint, save },
        } => ovh_login(endpoint.as_deref(), save.as_deref(), color),
        Command::Graph { plan, format } => match load_valid(&plan, roots, color, detail) {
            Ok(plan) => {
                let graph = StepGraph::build(&plan);
                let _ =
                    crate::report::graph::render(&plan, &graph, format, &mut io::stdout().lock());
                0
            }
            Err(code) => code,
        },
    }
}

/// `mailplan man`: the top page on stdout, or every page (the top one names
/// `mailplan-apply(1)` and the others) written into `dir`.
fn man(dir: Option<&Path>) -> u8 {
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
struct Loaded {
    plan: Plan,
    text: std::sync::Arc<str>,
    imports: Vec<crate::exec::saved::FileDigest>,
}

impl Loaded {
    /// What `plan --out` saves and `apply FILE` compares (the dry run as JSON inside).
    fn record(
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
fn load_recorded(
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
struct Recording {
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
fn saved_plan(
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
fn check_saved(
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
fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            let _ = writeln!(io::stderr(), "cannot start the async runtime: {e}");
            Exit::Failed.code()
        })
}

fn apply(plan: Plan, options: &ApplyOptions, output: Output, color: bool) -> u8 {
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
fn ovh_login(endpoint: Option<&str>, save: Option<&Path>, color: bool) -> u8 {
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
fn print_error(e: &dyn miette::Diagnostic, color: bool, code: u8) -> u8 {
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
enum Secrets<'a> {
    /// `status` and `report` read the state store only: no secret is checked or warned about.
    Unused,
    /// `validate`, `plan`, `graph`: an unresolvable reference is a warning (nothing executes).
    Checked,
    /// Commands that execute keep the selected accounts (`--only`, `--exclude`), and every
    /// secret they need that cannot be resolved is an error: nothing starts half-equipped.
    Required(&'a [String], &'a [String]),
}

/// Read and validate a plan; the diagnostics and the plan when it has no error.
fn read_and_select(
    path: &Path,
    import_root: Option<&Path>,
    secrets: Secrets<'_>,
) -> (Option<Plan>, Diagnostics) {
    let files = ImportFiles::new(path, import_root);
    let (plan, diags, _) = read_and_select_with(path, secrets, &files);
    (plan, diags)
}

/// [`read_and_select`] reading the imports through `files`; also returns the plan's text.
fn read_and_select_with(
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
fn unknown_selection(plan: &Plan, only: &[String], exclude: &[String]) -> Vec<Diagnostic> {
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
fn load_valid(
    path: &Path,
    import_root: Option<&Path>,
    color: bool,
    detail: Detail,
) -> Result<Plan, u8> {
    load_shown(path, import_root, color, detail, Secrets::Checked)
}

/// [`load_valid`], with the secrets checked as the command needs (see [`Secrets`]).
fn load_shown(
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
fn show_loaded(
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

fn validate(
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
struct ImportFiles {
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
fn read_source(path: &Path) -> Result<std::sync::Arc<SourceFile>, Diagnostic> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_exit_codes() {
        let mut s = RunSummary::default();
        assert_eq!(Exit::of_run(&s).code(), 0);
        s.failed = 1;
        assert_eq!(Exit::of_run(&s).code(), 1);
        s.interrupted = true;
        assert_eq!(Exit::of_run(&s).code(), 130);
    }

    /// Every `--format` of every command says what its values are for.
    #[test]
    fn every_format_option_has_help() {
        fn walk(cmd: &clap::Command, path: &str, seen: &mut usize) {
            for arg in cmd.get_arguments() {
                if arg.get_long() == Some("format") {
                    *seen += 1;
                    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                    assert!(help.len() > 10, "`{path} --format` has no help");
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), seen);
            }
        }
        let mut seen = 0;
        walk(
            &<Cli as clap::CommandFactory>::command(),
            "mailplan",
            &mut seen,
        );
        assert!(seen >= 6, "{seen} --format options");
    }
}
