//! Console tests without a terminal or a database: fixtures for every
//! health state at a fixed "now" (UTC), snapshot tests of every screen
//! (ratatui `TestBackend` + insta), and unit tests of `update`.

mod audit_nodes;
mod fixtures;
mod history;
mod incident;
mod live;
mod notifications;
mod quit;
mod screens;
mod update_events;
mod update_keys;
