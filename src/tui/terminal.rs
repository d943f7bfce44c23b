//! The terminal: raw mode and the alternate screen while the console runs,
//! and always restored afterwards, on quit, error or panic (by the guard's
//! `Drop` and a panic hook). SIGTERM and SIGHUP become a normal quit in the
//! event loop (see `tui::run`), so they take the same restoring path.

use std::io::{self, Stdout};
use std::sync::Once;

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Owns the terminal while the console runs; restores it when dropped.
pub struct TerminalGuard {
    pub terminal: Term,
}

impl TerminalGuard {
    pub fn enter() -> io::Result<TerminalGuard> {
        install_panic_hook();
        enable_raw_mode()?;
        // From here on, a failure must still restore what was changed.
        let setup = (|| {
            execute!(io::stdout(), EnterAlternateScreen, Hide)?;
            Terminal::new(CrosstermBackend::new(io::stdout()))
        })();
        match setup {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                let _ = restore();
                Err(e)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if let Err(e) = restore() {
            tracing::warn!(error = %e, "could not restore the terminal");
        }
    }
}

/// Leave raw mode and the alternate screen, show the cursor. Harmless when
/// the terminal is already restored.
pub fn restore() -> io::Result<()> {
    disable_raw_mode()?;
    execute!(io::stdout(), LeaveAlternateScreen, Show)
}

/// Restore the terminal before the panic message is printed, so it is
/// readable and the shell is usable afterwards: only for a panic of the UI
/// thread (the one that entered the terminal). A scheduler worker that
/// panics is caught and recorded by the node while the console goes on;
/// restoring the terminal under it would leave the console drawing on the
/// shell's screen.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let ui_thread = std::thread::current().id();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() == ui_thread {
                let _ = restore();
            }
            previous(info);
        }));
    });
}
