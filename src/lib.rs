//! # crondeck
//!
//! A PostgreSQL-backed cron scheduler with a keyboard-driven terminal console.
//!
//! Jobs live in a job database (schema `crondeck`). Any number of scheduler
//! nodes, on any number of hosts, coordinate only through that database.
//!
//! ## Architecture
//!
//! - [`schedule`] and [`timespec`] are pure: schedules, fire times, and the
//!   times and durations operators type. No clock, no I/O.
//! - [`job`] is the job model; [`db`] owns the database: connecting (TLS,
//!   libpq-style strings), numbered migrations, and one module of queries per
//!   table. [`ops`] is the only way a person changes a job: checked, and
//!   audited in the same transaction.
//! - [`embedded`] starts or attaches to the private PostgreSQL server of the
//!   default setup; [`database`] opens whichever database the [`config`]
//!   settings point at, migrating (and seeding the demo jobs) on first use.
//! - [`apply`] makes the jobs match a jobs file ([`jobfile`]); [`check`]
//!   judges the cluster for monitoring systems; [`notify`] sends the events
//!   operators are paged for, once per episode across all nodes; [`metrics`]
//!   exposes the headless scheduler to Prometheus.
//! - [`cli`] turns arguments into validated domain values and calls the above.
//! - [`tui`] is the operations console (`crondeck` alone): a pure `update` of
//!   one state, pure views, and a data task that alone talks to the database.
//!
//! The database, schedule and job modules do not depend on the command line
//! or any user interface (nothing outside `tui` uses it), so they can be used
//! as a library.

pub mod apply;
pub mod check;
pub mod cli;
pub mod config;
pub mod database;
pub mod db;
pub mod embedded;
pub mod health;
pub mod job;
pub mod jobfile;
pub mod logfmt;
pub mod metrics;
pub mod notify;
pub mod odoo;
pub mod ops;
pub mod schedule;
pub mod scheduler;
pub mod signals;
pub mod text;
pub mod timefmt;
pub mod timespec;
pub mod tui;
