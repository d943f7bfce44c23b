//! crondeck: thin entry point. Parse arguments, run, print the full cause
//! chain of any error, and exit with a code that says what went wrong.

use std::process::ExitCode;

use clap::Parser;
use crondeck::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.default_log_filter());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crondeck: cannot start the async runtime: {e}");
            return ExitCode::from(cli::exit::FAILURE);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::from(cli::exit::OK),
        Err(error) => {
            // Errors can quote job names and output: never let them act on the terminal.
            eprintln!("crondeck: {}", crondeck::text::block(&format!("{error:#}")));
            ExitCode::from(cli::exit_code(&error))
        }
    }
}

/// Logs go to stderr: warnings and errors only for commands, so their output
/// stays clean for scripts; more for the headless scheduler. RUST_LOG overrides.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
