//! The command line: clap definitions (doc comments are the help text) and dispatch.
//!
//! Entry point: [`run`], which returns the process exit code (0 ok, 1 steps failed, 2 invalid
//! plan or usage, 130 interrupted).

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use std::sync::Arc;

use crate::exec::printer::{Output, Printer};
use crate::exec::runner::ApplyOptions;
use crate::exec::snapshot;
use crate::graph::StepGraph;
use crate::plan::diag::{Code, Diagnostic, Diagnostics};
use crate::plan::model::Plan;
use crate::plan::source::SourceFile;
use crate::plan::{self, yaml};
use crate::providers::RunMode;
use crate::report::diagnostics::{self, Detail, Format};
use crate::report::dry_run::Format as DryRunFormat;
use crate::report::graph::Format as GraphFormat;
use crate::report::run::{ReportFormat, StatusFormat};

/// Exit code: the plan is invalid or the command line is wrong; nothing was executed.
pub const EXIT_INVALID: u8 = 2;

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
    /// nothing.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Let `import:` read CSV files anywhere under this folder (default: only under the plan's
    /// own folder). Only regular files are read, never a file the plan uses as a `file:` secret.
    #[arg(long, global = true, value_name = "DIR")]
    pub import_root: Option<PathBuf>,
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
        /// How to print the diagnostics.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// The offline dry run: per account the ordered steps and what each would do, totals, stages.
    Plan {
        /// The plan file (YAML).
        plan: PathBuf,
        #[arg(long, value_enum, default_value_t = DryRunFormat::Text)]
        format: DryRunFormat,
        /// Only these accounts (addresses).
        #[arg(long, num_args = 1..)]
        only: Vec<String>,
        /// Leave these accounts out (addresses).
        #[arg(long, num_args = 1..)]
        exclude: Vec<String>,
        /// Also read the live state (read-only): log in, list folders, show where each goes and
        /// how many messages each side holds.
        #[arg(long)]
        refresh: bool,
    },
    /// Print the plan format's JSON Schema (the one in `schemas/plan.schema.json`).
    Schema,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) on standard output.
    Man,
    /// Execute the plan: copy and verify mail, recording progress so that a rerun resumes.
    Apply {
        /// The plan file (YAML).
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
        /// Take over the state's lock even if another process seems to hold it.
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
    /// Where each account stands: steps, messages copied and left, failures.
    Status {
        /// The plan file (YAML).
        plan: PathBuf,
        #[command(flatten)]
        state: StateArg,
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
        #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
        format: ReportFormat,
    },
    /// Print the step graph of a valid plan (Graphviz DOT or Mermaid).
    Graph {
        /// The plan file (YAML).
        plan: PathBuf,
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

/// `--state PATH`, shared by the commands that read or write a run's state.
#[derive(Debug, Clone, clap::Args)]
pub struct StateArg {
    /// The state store (default: `.mailplan/<plan name>.db` beside the plan).
    #[arg(long = "state", value_name = "PATH")]
    pub path: Option<PathBuf>,
}

impl StateArg {
    fn resolve(&self, plan: &Plan, plan_path: &Path) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| crate::exec::state::default_path(plan_path, &plan.name))
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
    match cli.command {
        Command::Validate { plan, format } => validate(&plan, roots, format, color, detail),
        Command::Plan {
            plan: path,
            format,
            only,
            exclude,
            refresh,
        } => {
            let only: Vec<String> = only.iter().map(|a| a.to_lowercase()).collect();
            let exclude: Vec<String> = exclude.iter().map(|a| a.to_lowercase()).collect();
            // --refresh logs in: like apply, it needs every selected account's secrets.
            let secrets = if refresh {
                Secrets::Required(&only, &exclude)
            } else {
                Secrets::Checked
            };
            match load_shown(&path, roots, color, detail, secrets) {
                Ok(mut plan) => {
                    plan.select(&only, &exclude);
                    let live = if refresh {
                        match runtime().map(|r| r.block_on(crate::exec::refresh::refresh(&plan))) {
                            Ok(Ok(live)) => Some(live),
                            Ok(Err(e)) => return print_error(&e, color, e.exit_code()),
                            Err(code) => return code,
                        }
                    } else {
                        None
                    };
                    let graph = StepGraph::build(&plan);
                    let mut out = io::BufWriter::new(io::stdout().lock());
                    let _ = crate::report::dry_run::render(
                        &plan,
                        &graph,
                        format,
                        live.as_deref(),
                        &mut out,
                    );
                    let _ = out.flush();
                    0
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
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match clap_mangen::Man::new(cmd).render(&mut io::stdout()) {
                Ok(()) => 0,
                Err(_) => 1,
            }
        }
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
            let only: Vec<String> = only.iter().map(|a| a.to_lowercase()).collect();
            let exclude: Vec<String> = exclude.iter().map(|a| a.to_lowercase()).collect();
            match load_shown(
                &path,
                roots,
                color,
                detail,
                Secrets::Required(&only, &exclude),
            ) {
                Ok(plan) => {
                    let options = ApplyOptions {
                        state_path: state.resolve(&plan, &path),
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
                    };
                    let output = match format {
                        ProgressFormat::Json => Output::Json,
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
            Ok(plan) => match snapshot::read(&plan, &state.resolve(&plan, &path)) {
                Ok(s) => {
                    let _ = crate::report::run::render_status(&s, format, &mut io::stdout().lock());
                    0
                }
                Err(e) => print_error(&e, color, EXIT_INVALID),
            },
            Err(code) => code,
        },
        Command::Report {
            plan: path,
            state,
            format,
        } => match load_shown(&path, roots, color, detail, Secrets::Unused) {
            Ok(plan) => match snapshot::read(&plan, &state.resolve(&plan, &path)) {
                Ok(s) => {
                    let _ = crate::report::run::render_report(&s, format, &mut io::stdout().lock());
                    0
                }
                Err(e) => print_error(&e, color, EXIT_INVALID),
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

/// The async runtime of the commands that talk to servers.
fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            let _ = writeln!(io::stderr(), "cannot start the async runtime: {e}");
            1
        })
}

fn apply(plan: Plan, options: &ApplyOptions, output: Output, color: bool) -> u8 {
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let printer = Arc::new(Printer::new(output));
    match runtime.block_on(crate::exec::runner::apply(plan, options, printer)) {
        Ok(summary) => summary.exit_code(),
        Err(e) => {
            let code = e.exit_code();
            print_error(&e, color, code)
        }
    }
}

/// `mailplan ovh login`: request a consumer key with [`ovh::api::auth::ACCESS_RULES`]; the URL
/// and the key go to stdout (the key to the `--save` file instead, when given), the
/// explanations to stderr.
fn ovh_login(endpoint: Option<&str>, save: Option<&Path>, color: bool) -> u8 {
    use crate::providers::ovh::{self, api::auth};
    let credentials = match ovh::config::load(&ovh::ConfigSources::system(), endpoint) {
        Ok(c) => c,
        Err(e) => return print_error(&e, color, EXIT_INVALID),
    };
    let section = credentials.endpoint.name.clone();
    let client = match ovh::Client::new(credentials, ovh::ClientOptions::default()) {
        Ok(c) => c,
        Err(e) => return print_error(&e, color, EXIT_INVALID),
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
        Err(e) => return print_error(&e, color, 1),
    };
    let stderr = io::stderr();
    let mut err = stderr.lock();
    let _ = writeln!(
        err,
        "Requested a consumer key on {} with these access rules:",
        client.base_url()
    );
    for rule in auth::ACCESS_RULES {
        let _ = writeln!(err, "  {:<6} {}", rule.method, rule.path);
    }
    if let Some(path) = save {
        if let Err(e) = ovh::config::save_consumer_key(path, &section, &pending.consumer_key) {
            let _ = writeln!(
                err,
                "cannot store the consumer key in {}: {e}",
                path.display()
            );
            return 1;
        }
        let _ = writeln!(
            err,
            "\nThe consumer key is stored in {} under [{section}] (mode 0600). Open the URL \
             below, log in with the OVHcloud account that is admin and tech contact of the \
             services, and choose a validity period.\n",
            path.display()
        );
        let _ = writeln!(io::stdout(), "validation_url={}", pending.validation_url);
        return 0;
    }
    let _ = writeln!(
        err,
        "\n1. Open the URL below, log in with the OVHcloud account that is admin and tech \
         contact of the services, and choose a validity period.\n2. Store the key, either in \
         the environment (export OVH_CONSUMER_KEY=...) or in ovh.conf (./ovh.conf, \
         ~/.ovh.conf or /etc/ovh.conf) under [{section}] as consumer_key=... (`--save PATH` \
         does that instead of printing it)\n"
    );
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let _ = writeln!(out, "validation_url={}", pending.validation_url);
    let _ = writeln!(out, "consumer_key={}", pending.consumer_key.expose());
    0
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
    match read_source(path) {
        Ok(source) => {
            let files = ImportFiles::new(path, import_root);
            let (mut plan, mut diags) = plan::load_with(&source, path, &files);
            if let Some(p) = &mut plan {
                if let Secrets::Required(only, exclude) = secrets {
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
            (plan, diags)
        }
        Err(d) => {
            let mut diags = Diagnostics::default();
            diags.push(d);
            (None, diags)
        }
    }
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
    let stderr = io::stderr();
    let mut err = stderr.lock();
    let _ = diagnostics::render(
        &diags,
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
            Err(EXIT_INVALID)
        }
    }
}

fn validate(
    path: &Path,
    import_root: Option<&Path>,
    format: Format,
    color: bool,
    detail: Detail,
) -> u8 {
    let diags = read_and_select(path, import_root, Secrets::Checked).1;
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
    if diags.has_errors() { EXIT_INVALID } else { 0 }
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
