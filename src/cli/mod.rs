//! The command line: clap definitions (doc comments are the help text) and dispatch; what the
//! commands do beyond that is in `commands` (reading and showing plans, saved plans, `apply`
//! on a runtime, `ovh login`, man pages, errors).
//!
//! Entry point: [`run`], which returns the process exit code ([`Exit`]: 0 ok, 1 steps failed,
//! 2 invalid plan or usage, 130 interrupted).

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::exec::runner::{ApplyOptions, RunSummary};
use crate::exec::snapshot;
use crate::exec::store::StateLocation;
use crate::graph::StepGraph;
use crate::plan::diag::Diagnostics;
use crate::plan::model::Plan;
use crate::plan::{self};
use crate::providers::RunMode;
use crate::report::diagnostics::{self, Detail, Format};
use crate::report::dry_run::Format as DryRunFormat;
use crate::report::graph::Format as GraphFormat;
use crate::report::progress::Output;
use crate::report::run::{ReportFormat, StatusFormat};

mod commands;
use commands::{
    Loaded, Secrets, apply, check_saved, load_recorded, load_shown, load_valid, man, ovh_login,
    print_error, runtime, saved_plan, unknown_selection, validate,
};

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
