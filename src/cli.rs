//! The command line: clap definitions (doc comments are the help text) and dispatch.
//!
//! Entry point: [`run`], which returns the process exit code (0 ok, 1 steps failed, 2 invalid
//! plan or usage, 130 interrupted).

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::graph::StepGraph;
use crate::plan::diag::{Code, Diagnostic, Diagnostics};
use crate::plan::model::Plan;
use crate::plan::source::SourceFile;
use crate::plan::{self, yaml};
use crate::report::diagnostics::{self, Format};
use crate::report::dry_run::Format as DryRunFormat;
use crate::report::graph::Format as GraphFormat;

/// Exit code: the plan is invalid or the command line is wrong; nothing was executed.
pub const EXIT_INVALID: u8 = 2;

/// Plan, review and run e-mail migrations for many accounts at once.
#[derive(Debug, Parser)]
#[command(name = "mailplan", version, about, long_about = None)]
pub struct Cli {
    /// When to use colours (`auto` honours the `NO_COLOR` variable).
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
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
    },
    /// Print the plan format's JSON Schema (the one in `schemas/plan.schema.json`).
    Schema,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) on standard output.
    Man,
    /// Print the step graph of a valid plan (Graphviz DOT or Mermaid).
    Graph {
        /// The plan file (YAML).
        plan: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
}

/// Run the command line; returns the exit code.
pub fn run() -> u8 {
    let cli = Cli::parse();
    let color = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::env::var_os("NO_COLOR").is_none() && io::stderr().is_terminal(),
    };
    match cli.command {
        Command::Validate { plan, format } => validate(&plan, format, color),
        Command::Plan {
            plan,
            format,
            only,
            exclude,
        } => match load_valid(&plan, color) {
            Ok(mut plan) => {
                let only: Vec<String> = only.iter().map(|a| a.to_lowercase()).collect();
                let exclude: Vec<String> = exclude.iter().map(|a| a.to_lowercase()).collect();
                plan.select(&only, &exclude);
                let graph = StepGraph::build(&plan);
                let mut out = io::BufWriter::new(io::stdout().lock());
                let _ = crate::report::dry_run::render(&plan, &graph, format, &mut out);
                let _ = out.flush();
                0
            }
            Err(code) => code,
        },
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

/// Read and validate a plan; the diagnostics and the plan when it has no error. A valid plan's
/// secret references are checked too (warnings: nothing here executes).
fn read_and_load(path: &Path) -> (Option<Plan>, Diagnostics) {
    match read_source(path) {
        Ok(source) => {
            let (plan, mut diags) = plan::load_with(&source, path, &read_import);
            if let Some(plan) = &plan {
                diags.extend(crate::exec::secrets::check(plan).items);
                diags.sort();
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
    let (plan, diags) = read_and_load(path);
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
