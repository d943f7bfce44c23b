//! crondeck: thin entry point. Parse arguments, run, print the full cause
//! chain of any error, and exit with a code that says what went wrong.

use std::process::ExitCode;

use clap::Parser;
use crondeck::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.is_console() {
        init_file_logging(cli.default_log_filter());
    } else {
        init_logging(cli.default_log_filter());
    }
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
/// Colour only on a terminal (and never with NO_COLOR): stderr redirected to
/// a file or a journal gets plain text, not escape codes.
fn init_logging(default: &str) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let colour = std::io::stderr().is_terminal()
        && !std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .event_format(crondeck::logfmt::Prefixed {
            inner: tracing_subscriber::fmt::format(),
        })
        .init();
}

/// The console owns the screen: logs go to a file in the state directory
/// (see `tui::log_path`), never to the terminal. If that file cannot be
/// opened, the console runs without a log rather than draw over itself.
fn init_file_logging(default: &str) {
    let Some(path) = crondeck::tui::log_path() else {
        return;
    };
    let opened = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
        });
    let file = match opened {
        Ok(file) => file,
        Err(e) => {
            let message = format!("crondeck: no log file ({}: {e})", path.display());
            eprintln!("{}", crondeck::text::block(&message));
            return;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .event_format(crondeck::logfmt::Prefixed {
            inner: tracing_subscriber::fmt::format().with_ansi(false),
        })
        .init();
}
