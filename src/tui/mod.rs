//! The operations console (SPEC §5).
pub mod action;
pub mod app;
pub mod format;
pub mod forms;
pub mod keys;
pub mod theme;
pub mod update;
pub mod views;
