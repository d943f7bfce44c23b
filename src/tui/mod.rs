//! The operations console (SPEC §5): `crondeck` with no subcommand.
//!
//! ```text
//!  terminal keys ─┐
//!  resize ────────┤                     ┌──────────────┐   Effect    ┌───────────┐
//!  1 s tick ──────┼──▶ Action ──▶ update(&mut App) ─────┼────────────▶│ data task │──▶ PostgreSQL
//!  SIGTERM/HUP ───┤                     └──────┬───────┘             └─────┬─────┘   (LISTEN too)
//!  DataEvent ◀────┼────────────────────────────┼───────────────────────────┘
//!                 │                            ▼
//!                 │                 views::draw(&App) (only when changed)
//! ```
//!
//! - [`app`] holds the state; [`update`] is the only place it changes, and is
//!   pure; [`views`] draw it, also pure (time and zone are in the state).
//! - [`keys`] is the one key map behind dispatch, footer and help.
//! - [`data`] owns the database connection; the UI never runs SQL.
//! - [`terminal`] restores the terminal on every way out.
//! - The embedded scheduler node (unless `--no-scheduler`) is the engine's
//!   [`crate::scheduler::NodeHandle`]; the console only reads its status.

pub mod action;
pub mod app;
pub mod data;
pub mod format;
pub mod forms;
pub mod keys;
mod natural;
mod run;
pub mod scroll;
pub mod terminal;
pub mod theme;
pub mod update;
pub mod views;

pub use run::{log_path, run, ConsoleDb, ConsoleOptions};

#[cfg(test)]
mod tests;
