//! The `mailplan` executable: everything happens in [`mailplan::cli::run`].

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(mailplan::cli::run())
}
