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
use crate::report::diagnostics::{self, Format};
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
    if let Some(dir) = &cli.trace_imap
        && let Err(e) = crate::providers::imap::trace::enable(dir)
    {
        eprintln!("--trace-imap: {e}");
        return EXIT_INVALID;
    }
    match cli.command {
        Command::Validate { plan, format } => validate(&plan, format, color),
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
            let executes = refresh.then_some((only.as_slice(), exclude.as_slice()));
            match load_shown(&path, color, executes) {
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
            match load_shown(&path, color, Some((&only, &exclude))) {
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
        } => match load_valid(&path, color) {
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
        } => match load_valid(&path, color) {
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
        Command::Graph { plan, format } => match load_valid(&plan, color) {
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

/// Read and validate a plan; the diagnostics and the plan when it has no error. A valid plan's
/// secret references are checked too (warnings: nothing here executes).
fn read_and_load(path: &Path) -> (Option<Plan>, Diagnostics) {
    read_and_select(path, None)
}

/// [`read_and_load`], then for commands that execute: keep the selected accounts and make every
/// secret they need that cannot be resolved an error, so that nothing starts half-equipped.
fn read_and_select(
    path: &Path,
    executes: Option<(&[String], &[String])>,
) -> (Option<Plan>, Diagnostics) {
    match read_source(path) {
        Ok(source) => {
            let (mut plan, mut diags) = plan::load_with(&source, path, &read_import);
            if let Some(p) = &mut plan {
                if let Some((only, exclude)) = executes {
                    p.select(only, exclude);
                }
                let mut secrets = crate::exec::secrets::check(p);
                if executes.is_some() {
                    secrets.escalate(Code::UnresolvedSecret);
                }
                diags.extend(secrets.items);
                diags.sort();
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
fn load_valid(path: &Path, color: bool) -> Result<Plan, u8> {
    load_shown(path, color, None)
}

/// [`load_valid`] for commands that execute (see [`read_and_select`]).
fn load_shown(
    path: &Path,
    color: bool,
    executes: Option<(&[String], &[String])>,
) -> Result<Plan, u8> {
    let (plan, diags) = read_and_select(path, executes);
    let stderr = io::stderr();
    let mut err = stderr.lock();
    let _ = diagnostics::render(&diags, Format::Human, color, &mut io::sink(), &mut err);
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

fn validate(path: &Path, format: Format, color: bool) -> u8 {
    let diags = read_and_load(path).1;
    let (stdout, stderr) = (io::stdout(), io::stderr());
    let (mut out, mut err) = (stdout.lock(), stderr.lock());
    // A closed pipe on stdout is not worth a second error.
    let _ = diagnostics::render(&diags, format, color, &mut out, &mut err);
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
        let _ = writeln!(err, "{summary}");
    }
    if diags.has_errors() { EXIT_INVALID } else { 0 }
}

/// The CSV imports' [`plan::FileReader`]: a file of the disk, refused before it is read when it
/// is larger than `max_len`.
fn read_import(path: &Path, max_len: usize) -> Result<Vec<u8>, String> {
    let meta = fs_err::metadata(path).map_err(|e| e.to_string())?;
    if meta.is_dir() {
        return Err(format!("{} is a folder", path.display()));
    }
    if usize::try_from(meta.len()).map_or(true, |len| len > max_len) {
        return Err(format!(
            "{} is {} MiB; an import may be at most {} MiB",
            path.display(),
            meta.len() / (1024 * 1024),
            max_len / (1024 * 1024)
        ));
    }
    fs_err::read(path).map_err(|e| e.to_string())
}

/// Read a plan file, refusing what is too large before reading it all.
fn read_source(path: &Path) -> Result<std::sync::Arc<SourceFile>, Diagnostic> {
    let name = path.display().to_string();
    let unreadable = |e: &dyn std::fmt::Display| {
        Diagnostic::error(Code::Unreadable, format!("cannot read the plan: {e}"))
    };
    let meta = fs_err::metadata(path).map_err(|e| unreadable(&e))?;
    if meta.is_dir() {
        return Err(unreadable(&format!("{name} is a folder")));
    }
    let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
    yaml::check_size(&name, len)?;
    let bytes = fs_err::read(path).map_err(|e| unreadable(&e))?;
    yaml::decode(&name, bytes)
}
